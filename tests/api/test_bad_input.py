"""Bad input is a 400 in the seed's format, never a 500 (issue 7, item 8).

Each case here was a 500 with a traceback in the log: huge numbers (OverflowError in the
driver), non-ASCII digits in cursors, NUL characters (PostgreSQL cannot store them, SQLite's
full-text search chokes on them) and JSON nested deeper than serializers go. On both databases.
Under `/api/ai/v1/` every error, whatever raised it, is in OpenAI's shape instead.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

HUGE = str(10**30)


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def assert_seed_400(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    assert set(body) <= {"error", "code", "cause"} and isinstance(body["error"], str) and body["code"], body
    return body


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert isinstance(error, dict), response.text
    assert isinstance(error["message"], str) and isinstance(error["type"], str) and "code" in error, error
    return error


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/billing/ledger", {"offset": HUGE}),
        ("/api/billing/ledger", {"limit": "10", "offset": "-" + HUGE}),
        ("/api/messages", {"since": HUGE}),
        ("/api/messages", {"until": "-" + HUGE}),
        ("/api/messages", {"cursor": _cursor(f"{HUGE}:msg_1")}),
        ("/api/messages", {"cursor": _cursor("\u00b2:msg_1")}),  # '²'.isdigit() is True; int('²') raises
        ("/api/messages", {"cursor": _cursor("\u0663:msg_1")}),  # an Arabic-Indic 3
        ("/api/messages", {"cursor": _cursor("1700000000000:msg\x00x")}),
        ("/api/messages/sync", {"cursor": _cursor(HUGE)}),
        ("/api/messages/sync", {"cursor": _cursor("\u00b2")}),
        ("/api/messages", {"q": "a\x00b"}),
        ("/api/messages", {"chatId": "a\x00b"}),
        ("/api/messages", {"senderId": "\x00"}),
        ("/api/messages/raw", {"accountId": "acct\x00"}),
        ("/api/messages/check", {"id": "msg\x00"}),
    ],
)
async def test_bad_query_values_are_400(client: httpx.AsyncClient, user: dict, path: str, params: dict[str, str]) -> None:
    r = await client.get(path, params=params, headers=user["headers"])
    body = assert_seed_400(r)
    assert "\x00" not in r.text and HUGE not in r.text  # named, never echoed
    assert body["code"] in ("invalid_input", "invalid_cursor")


@pytest.mark.parametrize(
    "body",
    [
        {"accountId": "acct_x", "chatId": "C1", "text": "hello\x00world"},
        {"accountId": "acct_x", "chatId": "C\x00", "text": "hello"},
        {"accountId": "acct_x", "recipients": ["C1", "\x00"], "message": "hello"},
        {"accountId": "acct_x", "chatId": "C1", "text": "hello", "idempotencyKey": "k\x00"},
    ],
)
async def test_nul_in_a_send_is_400_and_sends_nothing(client: httpx.AsyncClient, user: dict, body: dict) -> None:
    assert_seed_400(await client.post("/api/messages", json=body, headers=user["headers"]))
    listed = await client.get("/api/messages", headers=user["headers"])
    assert listed.status_code == 200 and listed.json()["messages"] == []


async def test_nul_in_names_and_a_nul_key_are_400_and_change_nothing(client: httpx.AsyncClient, user: dict) -> None:
    before = (await client.get("/api/remote-auth/user", headers=user["headers"])).json()
    assert_seed_400(await client.put("/api/remote-auth/user", json={"name": "Mal\x00lory"}, headers=user["headers"]))
    assert_seed_400(await client.put("/api/remote-auth/user", json={"name": "ok", "na\x00me": 1}, headers=user["headers"]))
    assert (await client.get("/api/remote-auth/user", headers=user["headers"])).json() == before
    r = await client.post("/api/remote-auth/register", json={"email": "nul@example.com", "password": "long enough pw", "name": "a\x00"})
    assert_seed_400(r)


async def test_deep_json_is_400(client: httpx.AsyncClient, user: dict) -> None:
    deep = {"model": "m", "messages": [{"role": "user", "content": "hi", "extra": _nested(600)}]}
    assert_seed_400(await client.post("/api/ai/chat", json=deep, headers=user["headers"]))
    error = assert_openai_error(await client.post("/api/ai/v1/chat/completions", json=deep, headers=user["headers"]), 400)
    assert error["type"] == "invalid_request_error" and "nested" in error["message"]
    error = assert_openai_error(await client.post("/api/ai/v1/messages/count_tokens", json=deep, headers=user["headers"]), 400)
    assert_seed_400(await client.put("/api/remote-auth/user", json={"name": "x", "extra": _nested(600)}, headers=user["headers"]))
    # nesting within the limit is still fine
    r = await client.post("/api/ai/v1/messages/count_tokens", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi", "extra": _nested(20)}]}, headers=user["headers"])
    assert r.status_code == 200, r.text


async def test_openai_routes_answer_every_error_in_openai_shape(client: httpx.AsyncClient, user: dict) -> None:
    auth = user["headers"]
    assert_openai_error(await client.get("/api/ai/v1/models"), 401)
    assert_openai_error(await client.post("/api/ai/v1/chat/completions", content=b"{not json", headers=auth), 400)
    assert_openai_error(await client.post("/api/ai/v1/chat/completions", json={"messages": []}, headers=auth), 400)
    assert_openai_error(await client.post("/api/ai/v1/chat/completions", json={"messages": [{"role": "user", "content": "a\x00"}]}, headers=auth), 400)
    assert_openai_error(await client.post("/api/ai/v1/embeddings", json={"input": "x", "dimensions": HUGE}, headers=auth), 400)
    assert_openai_error(await client.get("/api/ai/v1/nope", headers=auth), 404)
    assert_openai_error(await client.get("/api/ai/v1/models/no-such-model", headers=auth), 404)
    assert_openai_error(await client.get("/api/ai/v1/models/a%00b", headers=auth), 400)
    assert_openai_error(await client.delete("/api/ai/v1/chat/completions", headers=auth), 404)
    # the rest of the API keeps the seed's format
    assert_seed_400(await client.post("/api/ai/chat", content=b"{not json", headers=auth))
