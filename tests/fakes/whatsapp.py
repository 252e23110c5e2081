"""Meta's side of a WhatsApp Cloud API number, on 127.0.0.1.

Two halves, both speaking the real protocol:
- `FakeGraph` is the Graph API (`{base}/v21.0`): `GET /{phone-number-id}` (fields
  verified_name, display_phone_number) and `POST /{phone-number-id}/messages`, bearer tokens,
  Meta's error JSON (190 bad token, 100 unknown object, 130429/131056 rate limits with HTTP 429
  or 400 as Meta answers them). Records what was sent; `fail_next` injects errors.
- `Meta` builds what Meta POSTs to a webhook URL: deliveries `{object:
  "whatsapp_business_account", entry:[{id, changes:[{field:"messages", value:{…}}]}]}` with
  messages (text, media with captions, replies via `context`, reactions) and statuses, signs
  them (`X-Hub-Signature-256: sha256=HMAC-SHA256(app secret, body)`) and delivers them like
  Meta does: retried while the answer is not 2xx. Also the verification GET.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import Counter
from typing import Any

import httpx
import orjson
from aiohttp import web

__all__ = ["FakeGraph", "Meta", "signature"]
Json = dict[str, Any]
VERSION = "v21.0"


def signature(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def wamid() -> str:
    """Meta's message ids: `wamid.` + base64 of an opaque protobuf; random is as good here."""
    return "wamid.HBgL" + secrets.token_urlsafe(30).replace("-", "A").replace("_", "B")


class Meta:
    """Builds, signs and POSTs Meta's webhook deliveries for one phone number."""

    def __init__(self, app_secret: str, phone_number_id: str, display_phone_number: str = "15550001234",
                 waba_id: str = "102290129340398") -> None:
        self.app_secret, self.phone_number_id = app_secret, phone_number_id
        self.display_phone_number, self.waba_id = display_phone_number, waba_id
        self.delivered: list[tuple[int, str]] = []  # (status, body) of every POST made

    def delivery(self, *, messages: list[Json] | None = None, statuses: list[Json] | None = None,
                 contacts: list[Json] | None = None, phone_number_id: str | None = None) -> Json:
        value: Json = {"messaging_product": "whatsapp",
                       "metadata": {"display_phone_number": self.display_phone_number,
                                    "phone_number_id": phone_number_id or self.phone_number_id}}
        if contacts:
            value["contacts"] = contacts
        if messages:
            value["messages"] = messages
        if statuses:
            value["statuses"] = statuses
        return {"object": "whatsapp_business_account",
                "entry": [{"id": self.waba_id, "changes": [{"field": "messages", "value": value}]}]}

    def message(self, wa_id: str, name: str, kind: str = "text", *, text: str = "", reply_to: str | None = None,
                media: Json | None = None, message_id: str | None = None, timestamp: int | None = None) -> tuple[Json, str]:
        """One inbound message delivery; returns (delivery, wamid)."""
        native_id = message_id or wamid()
        msg: Json = {"from": wa_id, "id": native_id, "timestamp": str(timestamp or int(time.time())), "type": kind}
        if kind == "text":
            msg["text"] = {"body": text}
        elif kind in ("image", "video", "audio", "document", "sticker"):
            msg[kind] = {"id": str(secrets.randbelow(10**15)), "mime_type": "image/jpeg",
                         "sha256": secrets.token_hex(16), **({"caption": text} if text else {}), **(media or {})}
        if reply_to:
            msg["context"] = {"from": self.display_phone_number, "id": reply_to}
        contacts = [{"profile": {"name": name}, "wa_id": wa_id}]
        return self.delivery(messages=[msg], contacts=contacts), native_id

    def reaction(self, wa_id: str, name: str, message_id: str, emoji: str) -> Json:
        msg = {"from": wa_id, "id": wamid(), "timestamp": str(int(time.time())), "type": "reaction",
               "reaction": {"message_id": message_id, "emoji": emoji}}
        return self.delivery(messages=[msg], contacts=[{"profile": {"name": name}, "wa_id": wa_id}])

    def status(self, message_id: str, status: str, recipient: str, *, timestamp: int | None = None) -> Json:
        entry: Json = {"id": message_id, "status": status, "timestamp": str(timestamp or int(time.time())),
                       "recipient_id": recipient}
        if status in ("sent", "delivered"):
            entry["conversation"] = {"id": secrets.token_hex(16), "origin": {"type": "service"}}
            entry["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
        if status == "failed":
            entry["errors"] = [{"code": 131047, "title": "Re-engagement message"}]
        return self.delivery(statuses=[entry])

    def signed(self, delivery: Json, app_secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps(delivery)
        return body, {"Content-Type": "application/json",
                      "X-Hub-Signature-256": signature(body, app_secret or self.app_secret)}

    async def deliver(self, url: str, delivery: Json, *, retries: int = 2, app_secret: str | None = None,
                      retry_pause: float = 0.05) -> int:
        """POST like Meta: retried while the answer is not 2xx. Returns the last status."""
        body, headers = self.signed(delivery, app_secret)
        async with httpx.AsyncClient(timeout=10) as http:
            for attempt in range(retries + 1):
                r = await http.post(url, content=body, headers=headers)
                self.delivered.append((r.status_code, r.text))
                if r.is_success:
                    break
                if attempt < retries:
                    await asyncio.sleep(retry_pause)
        return r.status_code

    @staticmethod
    def verification(verify_token: str, challenge: str | None = None) -> tuple[Json, str]:
        """The GET Meta sends when the callback URL is saved; returns (query, expected answer)."""
        challenge = challenge or str(secrets.randbelow(10**10))
        return {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}, challenge


class FakeGraph:
    """The Graph API endpoints the connector calls, with Meta's error shapes."""

    def __init__(self) -> None:
        self.port = 0
        self.numbers: dict[str, Json] = {}  # phone number id -> {token, verified_name, display_phone_number}
        self.sent: list[Json] = []  # request bodies of accepted sends, with "id" added
        self.calls: Counter[str] = Counter()
        self._faults: list[tuple[int, int, str]] = []  # (http status, code, message) for the next sends
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{VERSION}"

    def add_number(self, phone_number_id: str, token: str, verified_name: str = "Loomi Test",
                   display_phone_number: str = "+1 555-000-1234") -> None:
        self.numbers[phone_number_id] = {"token": token, "verified_name": verified_name,
                                         "display_phone_number": display_phone_number}

    def revoke(self, phone_number_id: str) -> None:
        self.numbers[phone_number_id]["token"] = None

    def fail_next(self, times: int = 1, *, status: int = 429, code: int = 130429,
                  message: str = "(#130429) Rate limit hit") -> None:
        self._faults.extend([(status, code, message)] * times)

    async def __aenter__(self) -> FakeGraph:
        app = web.Application()
        app.router.add_get(f"/{VERSION}/{{number_id}}", self._number)
        app.router.add_post(f"/{VERSION}/{{number_id}}/messages", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @staticmethod
    def _error(status: int, code: int, message: str, kind: str = "OAuthException") -> web.Response:
        return web.json_response({"error": {"message": message, "type": kind, "code": code,
                                            "fbtrace_id": secrets.token_urlsafe(12)}}, status=status)

    def _authorized(self, request: web.Request) -> Json | web.Response:
        number = self.numbers.get(request.match_info["number_id"])
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or len(header) < 20:
            return self._error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        if number is None:
            return self._error(400, 100, f"Unsupported get request. Object with ID '{request.match_info['number_id']}' "
                               "does not exist, cannot be loaded due to missing permissions, or does not support "
                               "this operation.", "GraphMethodException")
        if number["token"] is None or header.removeprefix("Bearer ") != number["token"]:
            return self._error(401, 190, "Error validating access token: Session has expired or the user has "
                               "changed the password.")
        return number

    async def _number(self, request: web.Request) -> web.Response:
        self.calls["number"] += 1
        number = self._authorized(request)
        if isinstance(number, web.Response):
            return number
        fields = request.query.get("fields", "id,display_phone_number,verified_name").split(",")
        full = {"id": request.match_info["number_id"], "verified_name": number["verified_name"],
                "display_phone_number": number["display_phone_number"], "quality_rating": "GREEN"}
        return web.json_response({k: v for k, v in full.items() if k in fields or k == "id"})

    async def _send(self, request: web.Request) -> web.Response:
        self.calls["messages"] += 1
        number = self._authorized(request)
        if isinstance(number, web.Response):
            return number
        if self._faults:
            status, code, message = self._faults.pop(0)
            return self._error(status, code, message, "OAuthException")
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, 100, "Invalid parameter", "OAuthException")
        if body.get("messaging_product") != "whatsapp":
            return self._error(400, 100, "(#100) The parameter messaging_product is required.")
        if not body.get("to"):
            return self._error(400, 100, "(#100) The parameter to is required.")
        if body.get("type", "text") == "text" and not (body.get("text") or {}).get("body"):
            return self._error(400, 100, "(#100) The parameter text['body'] is required.")
        native_id = wamid()
        self.sent.append({**body, "id": native_id})
        return web.json_response({"messaging_product": "whatsapp",
                                  "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                                  "messages": [{"id": native_id}]})
