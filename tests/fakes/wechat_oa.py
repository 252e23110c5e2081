"""WeChat's side of an Official Account / WeCom callback, on 127.0.0.1.

Two halves, both speaking the real protocol:
- `Callbacks` builds what WeChat's servers POST to a callback URL: the XML message, plain
  (`?signature&timestamp&nonce&openid`) or encrypted with wechatpy's `WeChatCrypto`
  (`encrypt_type=aes&msg_signature=…`, `<Encrypt>` body; WeCom always encrypted), and the GET
  URL check (`echostr`), and delivers them like WeChat does (a retry when not answered 2xx).
- `FakeWechatApi` is the REST API wechatpy's `WeChatClient` calls (`API_BASE_URL` pointed at
  it): `GET /cgi-bin/token` and `POST /cgi-bin/message/custom/send`, with WeChat's errcodes
  (40125 bad secret, 40001 bad token, 45015 outside the 48 h window, 45047/45011 limits).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import Counter
from typing import Any

import httpx
from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.utils import WeChatSigner

__all__ = ["Callbacks", "FakeWechatApi"]
Json = dict[str, Any]


def _sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


class Callbacks:
    """Builds and posts WeChat's callbacks for one account (token, app id, AES key)."""

    def __init__(self, token: str, app_id: str, aes_key: str | None = None, *, kind: str = "oa",
                 account_id: str = "gh_0123456789ab") -> None:
        self.token, self.app_id, self.aes_key, self.kind = token, app_id, aes_key, kind
        self.account_id = account_id  # ToUserName: the OA's original id (gh_…) or the corp id
        self._ids = itertools.count(24_000_000_000_000_001)
        self.delivered: list[tuple[int, str]] = []  # (status, body) of every POST made

    def message_xml(self, from_user: str, msg_type: str = "text", *, content: str = "", msg_id: int | None = None,
                    create_time: int | None = None, extra: Json | None = None) -> tuple[str, int]:
        """One message as WeChat writes it; returns (xml, MsgId)."""
        msg_id = msg_id or next(self._ids)
        fields: Json = {"ToUserName": self.account_id, "FromUserName": from_user,
                        "CreateTime": create_time or int(time.time()), "MsgType": msg_type}
        if msg_type == "text":
            fields["Content"] = content
        fields.update(extra or {})
        if msg_type != "event":
            fields["MsgId"] = msg_id
        if self.kind == "wecom":
            fields.setdefault("AgentID", 1000002)
        body = "".join(f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
        return f"<xml>{body}</xml>", msg_id

    def signed(self, xml: str, *, encrypted: bool | None = None, timestamp: int | None = None,
               openid: str = "") -> tuple[dict[str, str], bytes]:
        """(query, body) as WeChat POSTs `xml`: plain or safe mode (WeCom: always encrypted)."""
        ts, nonce = str(timestamp or int(time.time())), secrets.token_hex(5)
        encrypted = self.kind == "wecom" if encrypted is None else encrypted
        query = {"timestamp": ts, "nonce": nonce}
        if self.kind == "oa":
            query |= {"signature": _sign(self.token, ts, nonce), "openid": openid}
        if not encrypted:
            return query, xml.encode()
        assert self.aes_key, "encrypted callbacks need the account's EncodingAESKey"
        crypto = (WeComCrypto if self.kind == "wecom" else WeChatCrypto)(self.token, self.aes_key, self.app_id)
        envelope = crypto.encrypt_message(xml, nonce, ts)
        encrypt = envelope.split("<Encrypt><![CDATA[", 1)[1].split("]]>", 1)[0]
        signature = envelope.split("<MsgSignature><![CDATA[", 1)[1].split("]]>", 1)[0]
        if self.kind == "oa":
            query |= {"encrypt_type": "aes", "msg_signature": signature}
        else:
            query |= {"msg_signature": signature}
        body = f"<xml><ToUserName><![CDATA[{self.account_id}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        return query, body.encode()

    def url_check(self, echo: str = "") -> tuple[dict[str, str], str]:
        """The GET WeChat sends when the URL is saved in the console; returns (query, expected answer)."""
        ts, nonce, echo = str(int(time.time())), secrets.token_hex(5), echo or secrets.token_hex(8)
        if self.kind == "oa":
            return {"signature": _sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": echo}, echo
        assert self.aes_key
        crypto = WeComCrypto(self.token, self.aes_key, self.app_id)
        sealed = crypto.encrypt_message(echo, nonce, ts).split("<Encrypt><![CDATA[", 1)[1].split("]]>", 1)[0]
        return {"msg_signature": _sign(self.token, ts, nonce, sealed), "timestamp": ts, "nonce": nonce, "echostr": sealed}, echo

    async def deliver(self, url: str, xml: str, *, encrypted: bool | None = None, retries: int = 2) -> tuple[int, str]:
        """POST like WeChat: up to `retries` more tries while the answer is not 2xx."""
        query, body = self.signed(xml, encrypted=encrypted)
        async with httpx.AsyncClient(timeout=5) as http:
            for _ in range(retries + 1):
                r = await http.post(url, params=query, content=body, headers={"Content-Type": "text/xml"})
                self.delivered.append((r.status_code, r.text))
                if 200 <= r.status_code < 300:
                    break
        return r.status_code, r.text


class FakeWechatApi:
    """The REST half: access tokens and customer-service sends, with WeChat's errcodes."""

    def __init__(self) -> None:
        self.port = 0
        self.apps: dict[str, str] = {}  # app id -> secret
        self.tokens: dict[str, str] = {}  # access token -> app id
        self.sent: list[Json] = []
        self.calls: Counter[str] = Counter()
        self.window: set[str] | None = None  # openids inside the 48 h window (None: everyone)
        self._faults: dict[str, list[int]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_app(self, app_id: str, secret: str) -> None:
        self.apps[app_id] = secret

    def fail_next(self, endpoint: str, errcode: int = 45047, times: int = 1) -> None:
        self._faults.setdefault(endpoint, []).extend([errcode] * times)

    async def __aenter__(self) -> FakeWechatApi:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def _fault(self, endpoint: str) -> web.Response | None:
        self.calls[endpoint] += 1
        faults = self._faults.get(endpoint)
        if faults:
            return web.json_response({"errcode": faults.pop(0), "errmsg": "api freq out of limit"})
        return None

    async def _token(self, request: web.Request) -> web.Response:
        q = request.query
        if (fault := self._fault("token")) is not None:
            return fault
        if q.get("grant_type") != "client_credential":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        if q.get("appid") not in self.apps:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if self.apps[q["appid"]] != q.get("secret"):
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        token = secrets.token_urlsafe(32)
        self.tokens[token] = q["appid"]
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def _send(self, request: web.Request) -> web.Response:
        if (fault := self._fault("message/custom/send")) is not None:
            return fault
        if request.query.get("access_token") not in self.tokens:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        body = await request.json()
        if self.window is not None and body.get("touser") not in self.window:
            return web.json_response({"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"})
        self.sent.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})
