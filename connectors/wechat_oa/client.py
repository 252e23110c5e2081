"""wechatpy's API client pointed at LOOMI_WECHAT_OA_BASE_URL, and its errors mapped.

wechatpy is synchronous (requests): calls run in a thread. One client per app id, so the
access token (valid two hours, and fetching it is itself rate limited) is reused.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, TypeVar

from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from connectors.base import NeedsReauth, RateLimited

T = TypeVar("T")
REJECTED = {40001, 40002, 40013, 40125, 40164, 41004, 42001, 48001}  # bad/expired credentials, IP not allowed, no right
RATE_LIMITED = {45009: 3600.0, 45011: 60.0, 45047: 60.0}  # daily quota, per-minute frequency, too many sends
_clients: dict[tuple[str, str, str], "HubWeChatClient"] = {}
_lock = threading.Lock()


class HubWeChatClient(WeChatClient):
    """wechatpy's client with every call under `API_BASE_URL`: wechatpy redirects the API calls
    through it but hard-codes the access-token URL."""

    def fetch_access_token(self) -> dict[str, Any]:
        return self._fetch_access_token(
            url=f"{self.API_BASE_URL}token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


def client(base_url: str, app_id: str, secret: str) -> HubWeChatClient:
    key = (base_url, app_id, secret)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = HubWeChatClient(app_id, secret, timeout=15)
            found.API_BASE_URL = f"{base_url.rstrip('/')}/cgi-bin/"
            _clients[key] = found
        return found


async def call(fn: Callable[[], T]) -> T:
    """Run a wechatpy call in a thread and map WeChat's errcodes onto the hub's exceptions."""
    try:
        return await asyncio.to_thread(fn)
    except WeChatClientException as err:
        raise mapped(err) from None


def mapped(err: WeChatClientException) -> Exception:
    code: Any = err.errcode
    if code in REJECTED:
        return NeedsReauth(f"WeChat rejected the app credentials: {code} {err.errmsg}")
    if code in RATE_LIMITED:
        return RateLimited(RATE_LIMITED[code], f"WeChat rate limit: {code} {err.errmsg}")
    return err
