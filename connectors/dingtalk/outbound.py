"""Sending: the chat's session webhook while a fresh one is known, else the robot OpenAPI.

Every robot message DingTalk delivers carries a `sessionWebhook` (valid until
`sessionWebhookExpiredTime`, about 90 minutes) that posts straight back into that chat with no
token and no per-app quota; the listener keeps the latest per chat in memory (never in the
store: the URL is a credential, so `Outbound.last_inbound` carries none unless the store is
ever changed to keep it). Without one (expired, sent by another worker process, a chat the
robot has not heard from) the robot API is used:
`/v1.0/robot/oToMessages/batchSend` for `user:{staffId}` chats and
`/v1.0/robot/groupMessages/send` for `group:{openConversationId}`, with the app's token in
`x-acs-dingtalk-access-token`.

Ids: the robot API answers a `processQueryKey` (its id for the send); a session webhook answers
only `{errcode, errmsg}`, so those sends get a local id `session:{uuid}`. Robots never receive
their own messages, so there is no echo to merge either way. Throttling (429 / `Throttling`)
is waited out within a small budget, then handed to the caller as RateLimited.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.base import Account, NeedsReauth, Outbound, RateLimited, Sent
from connectors.dingtalk.api import ApiError, OpenApi, credentials

FRESH_MARGIN_MS = 60_000  # a session webhook this close to expiry is not used


@dataclass
class _Hook:
    url: str
    expires_ms: int


class SessionWebhooks:
    """The latest session webhook per (account, chat), in this process's memory only."""

    def __init__(self) -> None:
        self._hooks: dict[tuple[str, str], _Hook] = {}

    def remember(self, account_id: str, chat_id: str, data: dict[str, Any]) -> None:
        url, expires = data.get("sessionWebhook"), data.get("sessionWebhookExpiredTime")
        if isinstance(url, str) and url.startswith(("http://", "https://")) and isinstance(expires, int):
            known = self._hooks.get((account_id, chat_id))
            if known is None or expires >= known.expires_ms:
                self._hooks[(account_id, chat_id)] = _Hook(url, expires)

    def fresh(self, account_id: str, chat_id: str) -> str | None:
        hook = self._hooks.get((account_id, chat_id))
        if hook is None or hook.expires_ms - FRESH_MARGIN_MS < time.time() * 1000:
            return None
        return hook.url

    def forget(self, account_id: str, chat_id: str) -> None:
        self._hooks.pop((account_id, chat_id), None)


async def send(api: OpenApi, hooks: SessionWebhooks, account: Account, outbound: Outbound, *, budget: float) -> Sent:
    client_id, secret = credentials(account)
    if not outbound.text.strip():
        raise ValueError("DingTalk cannot send an empty message")
    target = _target(outbound.chat_id)
    async with api.client() as http:
        hook = hooks.fresh(account.id, outbound.chat_id) or _fresh_in(outbound.last_inbound)
        if hook is not None:
            raw = await _via_session(http, hook, outbound.text)
            if raw is not None:
                return Sent(f"session:{uuid.uuid4().hex}", outbound.chat_id, _now_ms(), raw)
            hooks.forget(account.id, outbound.chat_id)  # expired or refused: the API it is
        waited = 0.0
        while True:
            try:
                raw = await _via_api(api, http, client_id, secret, target, outbound.text)
                break
            except RateLimited as exc:
                if waited + exc.retry_after > budget:
                    raise
                await asyncio.sleep(exc.retry_after)
                waited += exc.retry_after
    key = raw.get("processQueryKey")
    if not isinstance(key, str) or not key:
        raise ApiError(200, "", "DingTalk accepted the message but gave no processQueryKey")
    return Sent(key, outbound.chat_id, _now_ms(), raw)


def _fresh_in(last_inbound: dict[str, Any] | None) -> str | None:
    """A session webhook in the chat's latest stored message, if the store ever holds one (ours
    strip it: see inbound.stored_payload) and it is still fresh."""
    if not isinstance(last_inbound, dict):
        return None
    url, expires = last_inbound.get("sessionWebhook"), last_inbound.get("sessionWebhookExpiredTime")
    if isinstance(url, str) and url.startswith(("http://", "https://")) and isinstance(expires, int) \
            and expires - FRESH_MARGIN_MS > _now_ms():
        return url
    return None


def _target(chat_id: str) -> tuple[str, str]:
    kind, _, ident = chat_id.partition(":")
    if kind not in ("user", "group") or not ident:
        raise ValueError(f"not a DingTalk chat id: {chat_id!r} (user:<staffId> or group:<openConversationId>)")
    return kind, ident


async def _via_session(http: httpx.AsyncClient, url: str, text: str) -> dict[str, Any] | None:
    """Post through the session webhook; None when it did not take the message."""
    try:
        response = await http.post(url, json={"msgtype": "text", "text": {"content": text}})
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if response.status_code == 200 and isinstance(body, dict) and body.get("errcode") in (0, None):
        return body
    return None  # 300001 expired, 130101 throttled…: the robot API has its own quota


async def _via_api(api: OpenApi, http: httpx.AsyncClient, client_id: str, secret: str,
                   target: tuple[str, str], text: str) -> dict[str, Any]:
    kind, ident = target
    body: dict[str, Any] = {"robotCode": client_id, "msgKey": "sampleText",
                            "msgParam": json.dumps({"content": text}, ensure_ascii=False)}
    if kind == "user":
        path, body["userIds"] = "/v1.0/robot/oToMessages/batchSend", [ident]
    else:
        path, body["openConversationId"] = "/v1.0/robot/groupMessages/send", ident
    for attempt in (1, 2):
        token = await api.access_token(http, client_id, secret, fresh=attempt == 2)
        try:
            raw = await api.call(http, path, body, token=token)
        except ApiError as err:
            if err.status == 401 or err.code == "InvalidAuthentication":
                if attempt == 1:
                    continue  # the cached token went stale: one more try with a new one
                raise NeedsReauth(f"DingTalk rejected the app's access token: {err.message}") from None
            raise
        if kind == "user" and ident in (raw.get("flowControlledStaffIdList") or ()):
            raise RateLimited(60.0, "DingTalk flow-controlled this recipient")
        if kind == "user" and ident in (raw.get("invalidStaffIdList") or ()):
            raise ApiError(200, "invalidStaffId", f"DingTalk does not know staff id {ident}")
        return raw
    raise AssertionError("unreachable")


def _now_ms() -> int:
    return int(time.time() * 1000)
