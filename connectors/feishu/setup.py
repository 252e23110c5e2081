"""`POST /api/feishu/listener/init {appId, appSecret, encryptKey?, verificationToken?, mode?}`.

A Feishu account is one self-built app with its bot: the app id and secret are checked by
fetching a tenant token (`/open-apis/auth/v3/tenant_access_token/internal`) and the bot's
identity (`/open-apis/bot/v3/info`); Feishu's `msg` is what the person sees when either refuses.
`mode` "websocket" (default: the long connection, no public URL needed) or "webhook" (Feishu
posts events to `{public_url}/api/feishu/webhook/{account id}`, which the person pastes into the
app's event subscription page; it needs the app's Verification Token or Encrypt Key).

Credentials: `app_id`, `app_secret`, `bot_open_id`, and when given `encrypt_key`,
`verification_token`. Settings: `mode`, `public_url`. External id: the app id (events name it
in `header.app_id`).
"""

from __future__ import annotations

from typing import Any

from lark_oapi.core.enum import HttpMethod

from connectors.base import AccountSpec, NeedsReauth, SetupContext
from connectors.feishu.client import FeishuApi, FeishuError

MODES = ("websocket", "webhook")


def _field(fields: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = fields.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
            return value.strip() or None
    return None


async def connect(base_url: str, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
    app_id = _field(fields, "appId", "app_id")
    app_secret = _field(fields, "appSecret", "app_secret")
    if not app_id or not app_secret:
        raise ValueError("appId and appSecret are required")
    encrypt_key = _field(fields, "encryptKey", "encrypt_key")
    verification_token = _field(fields, "verificationToken", "verification_token")
    mode = _field(fields, "mode") or "websocket"
    if mode not in MODES:
        raise ValueError("mode must be websocket or webhook")
    if mode == "webhook" and not (encrypt_key or verification_token):
        raise ValueError("webhook mode needs the app's encryptKey or verificationToken to check Feishu's calls")
    api = FeishuApi(base_url, app_id, app_secret)
    await api.token(fresh=True)  # NeedsReauth with Feishu's msg when it refuses the app
    try:
        info = await api.raw(HttpMethod.GET, "/open-apis/bot/v3/info")
    except FeishuError as err:
        raise NeedsReauth(f"Feishu refused the bot info (is the bot feature enabled?): {err.msg or err.code}") from None
    bot = info.get("bot") if isinstance(info.get("bot"), dict) else {}
    credentials = {"app_id": app_id, "app_secret": app_secret, "bot_open_id": bot.get("open_id"),
                   "encrypt_key": encrypt_key, "verification_token": verification_token}
    return AccountSpec(
        external_id=app_id,
        name=str(bot.get("app_name") or app_id),
        credentials={k: v for k, v in credentials.items() if v},
        settings={"mode": mode, "public_url": setup.public_url},
    )
