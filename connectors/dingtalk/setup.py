"""Connecting a robot: the person pastes their app's clientId (AppKey) and clientSecret
(AppSecret); DingTalk issuing an access token for them proves they are right.

No app-level setting is needed: every account brings its own app (企业内部应用), so this
platform never answers `platform_not_configured`.
"""

from __future__ import annotations

from typing import Any

from connectors.base import AccountSpec
from connectors.dingtalk.api import OpenApi


def fields_of(fields: dict[str, Any]) -> tuple[str, str]:
    """`{clientId, clientSecret}` (also accepted: DingTalk's older names appKey/appSecret)."""
    client_id = fields.get("clientId") or fields.get("appKey")
    secret = fields.get("clientSecret") or fields.get("appSecret")
    missing = [name for name, value in (("clientId", client_id), ("clientSecret", secret))
               if not isinstance(value, str) or not value.strip()]
    if missing:
        raise ValueError(f"{' and '.join(missing)} required (the robot app's AppKey and AppSecret)")
    return str(client_id).strip(), str(secret).strip()


async def connect(api: OpenApi, fields: dict[str, Any]) -> AccountSpec:
    """-> the account: external id = clientId (also the robotCode), credentials
    `client_id`, `client_secret`. NeedsReauth carries DingTalk's complaint."""
    client_id, secret = fields_of(fields)
    async with api.client() as http:
        await api.access_token(http, client_id, secret, fresh=True)
    name = fields.get("name") if isinstance(fields.get("name"), str) and fields["name"].strip() else None
    return AccountSpec(
        external_id=client_id,
        name=name or f"DingTalk robot {client_id}",
        credentials={"client_id": client_id, "client_secret": secret},
        settings={},
    )
