"""Connecting an Official Account or WeCom app: the person pastes what the admin console shows.

Fields: `token` (the callback token, 3–32 letters or digits), `appId` (WeCom: the corp id),
`encodingAesKey` (43 characters; needed for safe mode and always for WeCom), `appSecret`
(optional: needed to send; checked against WeChat by fetching an access token), `kind`
("oa", default, or "wecom"). The callback URL the person enters in the console is
`{public_url}/api/wechat_oa/webhook/{accountId}`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from connectors.base import AccountSpec, SetupContext
from connectors.wechat_oa.client import call, client

TOKEN = re.compile(r"[A-Za-z0-9]{3,32}")


async def connect(base_url: str, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
    token, app_id = _text(fields, "token"), _text(fields, "appId")
    key, secret = _text(fields, "encodingAesKey", required=False), _text(fields, "appSecret", required=False)
    kind = fields.get("kind") or "oa"
    if kind not in ("oa", "wecom"):
        raise ValueError("kind must be oa or wecom")
    if not TOKEN.fullmatch(token):
        raise ValueError("token must be 3 to 32 letters or digits, as the WeChat console requires")
    if key is not None and not _aes_key(key):
        raise ValueError("encodingAesKey must be the 43 characters the WeChat console shows")
    if kind == "wecom" and key is None:
        raise ValueError("WeCom callbacks are always encrypted: encodingAesKey is required")
    credentials = {"token": token, "app_id": app_id}
    if key is not None:
        credentials["encoding_aes_key"] = key
    if secret is not None:
        if kind == "wecom":
            raise ValueError("sending through WeCom is not supported: leave appSecret out")
        wechat = client(base_url, app_id, secret)
        await call(wechat.fetch_access_token)  # a wrong secret or app id is refused here (NeedsReauth)
        credentials["app_secret"] = secret
    label = "WeCom" if kind == "wecom" else "WeChat Official Account"
    return AccountSpec(external_id=app_id, name=f"{label} {app_id}", credentials=credentials,
                       settings={"kind": kind, "public_url": setup.public_url})


def _text(fields: dict[str, Any], name: str, *, required: bool = True) -> Any:
    value = fields.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is required" if required else f"{name} must be a non-empty string")
    return value.strip()


def _aes_key(key: str) -> bool:
    try:
        return len(key) == 43 and len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        return False
