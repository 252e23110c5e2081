"""The iLink bot API over httpx: the headers every call carries and the answer's `ret`.

iLink answers HTTP 200 whatever happened and puts the outcome in `ret` / `errcode` (0 = ok);
`-14` means the bot's session expired (logged out on the phone, or the token was revoked) and
only a new QR scan helps. A gateway 429 (with `Retry-After`) is mapped to RateLimited.
There is no official Python SDK; field names follow Tencent's openclaw-weixin plugin.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx

from connectors.base import NeedsReauth, RateLimited

PLATFORM = "weixin"
SESSION_EXPIRED = -14
CHANNEL_VERSION = "1.0.2"  # what `base_info.channel_version` says about this client
BASE_INFO = {"channel_version": CHANNEL_VERSION, "bot_agent": "openloomi-hub"}


class ILinkError(Exception):
    """iLink refused a call (`ret`/`errcode` not 0, other than -14)."""

    def __init__(self, endpoint: str, ret: int, message: str) -> None:
        super().__init__(f"iLink {endpoint} failed: ret {ret} {message}".strip())
        self.ret = ret


def uin() -> str:
    """`X-WECHAT-UIN`: a random u32 as decimal text, base64-encoded (a fresh one per request)."""
    return base64.b64encode(str(secrets.randbits(32)).encode()).decode()


def headers(token: str | None) -> dict[str, str]:
    out = {"AuthorizationType": "ilink_bot_token", "X-WECHAT-UIN": uin()}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


def check(endpoint: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON answer, or the exception its `ret` (or HTTP status) means."""
    if response.status_code == 429:
        raise RateLimited(_retry_after(response), f"iLink {endpoint} rate limited")
    response.raise_for_status()
    text = response.text.strip()
    data = response.json() if text else {}
    if not isinstance(data, dict):
        raise ILinkError(endpoint, -1, "answer is not a JSON object")
    ret = data.get("ret") or data.get("errcode") or 0
    if ret == SESSION_EXPIRED or data.get("errcode") == SESSION_EXPIRED:
        said = str(data.get("errmsg") or "session expired")[:100]
        raise NeedsReauth(f"WeChat ended the bot's session (ret -14: {said}): scan the QR code again")
    if ret:
        raise ILinkError(endpoint, int(ret) if isinstance(ret, int) else -1, str(data.get("errmsg") or ""))
    return data


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(float(response.headers.get("Retry-After", "1")), 0.0)
    except ValueError:
        return 1.0


class ILink:
    """One bot's calls. `base_url` is the account's (login may move it) or LOOMI_WEIXIN_BASE_URL."""

    def __init__(self, base_url: str, token: str | None = None, *, http: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._own = http is None
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(15.0))

    async def __aenter__(self) -> ILink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self.http.aclose()

    async def post(self, endpoint: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        response = await self.http.post(
            f"{self.base_url}/ilink/bot/{endpoint}",
            json={**body, "base_info": BASE_INFO},
            headers=headers(self.token),
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        return check(endpoint, response)

    async def get(self, endpoint: str, params: dict[str, str], *, timeout: float | None = None) -> dict[str, Any]:
        response = await self.http.get(
            f"{self.base_url}/ilink/bot/{endpoint}",
            params=params,
            headers={"iLink-App-ClientVersion": "1"},
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        return check(endpoint, response)
