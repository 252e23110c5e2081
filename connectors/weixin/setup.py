"""Connecting a WeChat bot: a pasted bot token, or the QR login (LoginFlow).

QR login, as iLink does it: `get_bot_qrcode?bot_type=3` gives a `qrcode` id and the content
to show (`qrcode_img_content`, a URL the phone opens); `get_qrcode_status?qrcode=` then says
`wait`, `scaned`, `need_verifycode` (the person types the pairing code shown on the phone),
`scaned_but_redirect` (poll `redirect_host` from now on), `expired`, or `confirmed` with the
`bot_token`, `ilink_bot_id` (the account), `baseurl` (where its API lives) and
`ilink_user_id` (who scanned). The account is created only on `confirmed`.

Credentials: `bot_token`, `base_url`, `ilink_user_id`. External id: `ilink_bot_id`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from connectors.base import AccountSpec, LoginStep, NeedsReauth, SetupContext
from connectors.weixin.client import ILink, ILinkError, check

BOT_TYPE = "3"  # what Tencent's plugin asks for: a ClawBot
STATUS_TIMEOUT = 5.0  # seconds one status poll may take; the client polls again after it


async def connect_token(base_url: str, fields: dict[str, Any]) -> AccountSpec:
    """`{"botToken", "botId"?, "baseUrl"?}` -> the account, once iLink accepts the token."""
    token = fields.get("botToken")
    if not isinstance(token, str) or not token.strip():
        raise ValueError("botToken is required")
    token = token.strip()
    bot_id = fields.get("botId")
    if bot_id is not None and (not isinstance(bot_id, str) or not bot_id.strip()):
        raise ValueError("botId must be a non-empty string")
    account_base = fields.get("baseUrl") or base_url
    if not isinstance(account_base, str) or not account_base.startswith(("http://", "https://")):
        raise ValueError("baseUrl must be an http(s) URL")
    async with ILink(account_base, token) as ilink:
        try:
            await ilink.post("msg/notifystart", {})
        except ILinkError as err:
            raise NeedsReauth(f"WeChat refused the bot token: {err}") from None
    external = (bot_id or "").strip() or _bot_id_from(token)
    return AccountSpec(external_id=external, name=f"WeChat {external}",
                       credentials={"bot_token": token, "base_url": account_base.rstrip("/")})


def _bot_id_from(token: str) -> str:
    """iLink tokens read `<ilink_bot_id>:<secret>`; anything else gets a stable digest."""
    head, sep, _ = token.partition(":")
    if sep and head.endswith("@im.bot"):
        return head
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:16]


async def login_start(base_url: str, fields: dict[str, Any], setup: SetupContext) -> LoginStep:
    if fields.get("botToken") is not None:
        return LoginStep(kind="done", message="connected", spec=await connect_token(base_url, fields))
    async with ILink(base_url) as ilink:
        answer = await _qr(ilink)
    qrcode, content = answer.get("qrcode"), answer.get("qrcode_img_content")
    if not isinstance(qrcode, str) or not qrcode or not isinstance(content, str) or not content:
        raise ILinkError("get_bot_qrcode", -1, "no QR code in the answer")
    return LoginStep(kind="qr", message="Scan this QR code with WeChat, then confirm on the phone",
                     qr_url=content, state={"qrcode": qrcode, "base_url": base_url})


async def _qr(ilink: ILink) -> dict[str, Any]:
    response = await ilink.http.post(f"{ilink.base_url}/ilink/bot/get_bot_qrcode", params={"bot_type": BOT_TYPE},
                                     json={"local_token_list": []}, headers={"iLink-App-ClientVersion": "1"})
    return check("get_bot_qrcode", response)


async def login_next(base_url: str, state: dict[str, Any], fields: dict[str, Any], setup: SetupContext) -> LoginStep:
    qrcode = state.get("qrcode")
    if not isinstance(qrcode, str) or not qrcode:
        raise ValueError("this login has no QR code: start again")
    poll_base = state.get("base_url") or base_url
    params = {"qrcode": qrcode}
    code = fields.get("verifyCode") or state.get("verify_code")
    if code is not None:
        if not isinstance(code, str) or not code.strip():
            raise ValueError("verifyCode must be the code shown on the phone")
        params["verify_code"] = code.strip()
    async with ILink(poll_base) as ilink:
        try:
            answer = await ilink.get("get_qrcode_status", params, timeout=STATUS_TIMEOUT)
        except httpx.TimeoutException:
            answer = {"status": "wait"}  # iLink holds this poll; a timeout just means "not yet"
    status = answer.get("status")
    keep = {**state, **({"verify_code": params["verify_code"]} if "verify_code" in params else {})}
    if status in ("wait", None):
        return LoginStep(kind="wait", message="waiting for the scan", state=keep)
    if status == "scaned":
        return LoginStep(kind="wait", message="scanned: confirm on the phone", state=keep)
    if status == "scaned_but_redirect" and isinstance(answer.get("redirect_host"), str):
        return LoginStep(kind="wait", message="scanned: confirm on the phone",
                         state={**keep, "base_url": f"https://{answer['redirect_host']}"})
    if status == "need_verifycode":
        return LoginStep(kind="fields", message="type the code shown on the phone", fields=["verifyCode"],
                         state={k: v for k, v in keep.items() if k != "verify_code"})
    if status == "confirmed":
        return LoginStep(kind="done", message="connected", spec=_confirmed(answer, poll_base))
    if status in ("expired", "verify_code_blocked"):
        return LoginStep(kind="failed", message="the QR code expired: start again")
    return LoginStep(kind="failed", message=f"WeChat login ended: {status}")


def _confirmed(answer: dict[str, Any], base_url: str) -> AccountSpec:
    token, bot_id = answer.get("bot_token"), answer.get("ilink_bot_id")
    if not isinstance(token, str) or not token or not isinstance(bot_id, str) or not bot_id:
        raise NeedsReauth("WeChat confirmed the login but sent no bot_token / ilink_bot_id")
    account_base = answer.get("baseurl") if isinstance(answer.get("baseurl"), str) and answer["baseurl"] else base_url
    owner = answer.get("ilink_user_id") if isinstance(answer.get("ilink_user_id"), str) else None
    credentials = {"bot_token": token, "base_url": account_base.rstrip("/")}
    if owner:
        credentials["ilink_user_id"] = owner
    return AccountSpec(external_id=bot_id, name=f"WeChat {owner or bot_id}", credentials=credentials,
                       settings={"owner": owner} if owner else {})
