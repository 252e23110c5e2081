"""Registering a business number: the person pastes what the Meta app dashboard shows.

Fields: `phoneNumberId` (the number's Graph id, not the phone number), `accessToken` (a system
user's permanent token), `appSecret` (signs every webhook delivery), `verifyToken` (any string
the person also types into the dashboard; Meta echoes it on the verification GET). Checked by
reading the number (`GET /{phoneNumberId}?fields=verified_name,display_phone_number`); Meta's
complaint about a bad token becomes NeedsReauth. The webhook URL to paste into the dashboard,
`{public_url}/api/whatsapp/webhook/{accountId}`, is kept as a template in the settings (the
account id does not exist yet): the API fills it in when it shows the account.
"""

from __future__ import annotations

import re
from typing import Any

from connectors.base import AccountSpec, NeedsReauth, SetupContext
from connectors.whatsapp.graph import GraphError, checked, client

PHONE_NUMBER_ID = re.compile(r"[0-9]{5,30}")


async def connect(base_url: str, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
    number_id = _text(fields, "phoneNumberId")
    token, app_secret, verify_token = _text(fields, "accessToken"), _text(fields, "appSecret"), _text(fields, "verifyToken")
    if not PHONE_NUMBER_ID.fullmatch(number_id):
        raise ValueError("phoneNumberId must be the number's Graph id (digits), as the WhatsApp API setup page shows it")
    async with client(base_url, token) as graph:
        try:
            number = checked(await graph.get(number_id, params={"fields": "verified_name,display_phone_number"}))
        except GraphError as err:
            if err.status >= 500:
                raise
            raise NeedsReauth(f"Meta: {err.message}") from None  # e.g. a number id this token cannot see
    name = number.get("verified_name") or number.get("display_phone_number") or number_id
    display = number.get("display_phone_number")
    return AccountSpec(
        external_id=number_id,
        name=f"{name} ({display})" if display and display != name else str(name),
        credentials={"access_token": token, "app_secret": app_secret, "verify_token": verify_token},
        settings={
            "public_url": setup.public_url,
            "webhookUrl": f"{setup.public_url}/api/whatsapp/webhook/{{accountId}}",
            "display_phone_number": display,
        },
    )


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if isinstance(value, int) and name == "phoneNumberId":
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is required")
    return value.strip()
