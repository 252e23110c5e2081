"""GET /api/messages over HTTP on both databases: every filter (and its openloomi alias)
returns exactly the rows it names, paged by cursor; each listed message is what
`message_json` makes of the stored row (the listing formats driver rows itself)."""

from __future__ import annotations

from typing import Any

import httpx

from api.routes.messages import message_json
from connectors.base import AccountSpec, Attachment, Change, ChangeKind, ChatType, Message, Reaction
from store.accounts import upsert_account
from store.messages import Owned, apply_changes, get_message

T0 = 1_700_000_000_000


async def _seed(hub, user: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """60 messages over two accounts (Slack, Telegram), three chats, senders, a thread, with
    attachments, mentions, a reaction, an edit and a deletion. Returns (what was sent, accounts)."""
    uid = user["user"]["id"]
    async with hub.engine.begin() as conn:
        accounts = [
            (await upsert_account(conn, hub.vault, uid, p, AccountSpec(external_id=f"{p}-{uid}", name=p, credentials={"t": "x"})))["id"]
            for p in ("slack", "telegram")
        ]
    made = []
    for i in range(60):
        account, platform = (accounts[0], "slack") if i % 3 else (accounts[1], "telegram")
        made.append({
            "account": account, "platform": platform, "chat": f"C{i % 3}", "native": str(i), "sent_at": T0 + i * 60_000,
            "sender": f"U{i % 4}", "thread": "T1" if i % 3 == 1 and i % 2 else None,
            "text": f"note {i}" + (" lunch plans" if i % 7 == 0 else "") + (" quarterly" if i == 41 else ""),
        })
    changes = [
        Owned(uid, m["account"], m["platform"], Change(ChangeKind.UPSERT, m["chat"], m["native"], Message(
            chat_id=m["chat"], native_id=m["native"], sent_at=m["sent_at"], text=m["text"], sender_id=m["sender"],
            sender_name=f"Name {m['sender']}", thread_id=m["thread"], chat_type=ChatType.GROUP, chat_name=f"room {m['chat']}",
            attachments=[Attachment(name="p.png", url=f"https://x.test/{m['native']}.png")] if int(m["native"]) % 10 == 0 else [],
            mentions=["U1", "U2"] if int(m["native"]) % 11 == 0 else [],
        )), {"n": m["native"]})
        for m in made
    ]
    first = made[1]
    changes.append(Owned(uid, first["account"], first["platform"], Change(
        ChangeKind.REACTION, first["chat"], first["native"], reaction=Reaction(emoji="👍", sender_id="U3", added=True), at=T0 + 5), None))
    changes.append(Owned(uid, made[2]["account"], made[2]["platform"], Change(
        ChangeKind.EDIT, made[2]["chat"], made[2]["native"], Message(chat_id=made[2]["chat"], native_id="2", sent_at=made[2]["sent_at"],
                                                                      text="note 2 edited"), at=T0 + 9_000_000), None))
    changes.append(Owned(uid, made[4]["account"], made[4]["platform"], Change(ChangeKind.DELETE, made[4]["chat"], "4", at=T0 + 9_000_001), None))
    async with hub.engine.begin() as conn:
        await apply_changes(conn, changes)
    return made, accounts


async def _all(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        page = await client.get("/api/messages", params={"limit": 7, **params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        out += body["messages"]
        assert body["hasMore"] == bool(body["nextCursor"])
        cursor = body["nextCursor"]
        if not cursor:
            return out


def _natives(listed: list[dict[str, Any]]) -> list[int]:
    return [int(m["nativeId"]) for m in listed]


def _expect(made: list[dict[str, Any]], keep) -> list[int]:  # noqa: ANN001
    """Newest first, the deleted message (4) left out."""
    return [int(m["native"]) for m in sorted(made, key=lambda m: -m["sent_at"]) if keep(m) and m["native"] != "4"]


async def test_every_filter_returns_exactly_its_rows(client: httpx.AsyncClient, hub, user: dict) -> None:
    made, accounts = await _seed(hub, user)
    h = user["headers"]
    assert _natives(await _all(client, h)) == _expect(made, lambda m: True)
    cases = [
        ({"chatId": "C1"}, lambda m: m["chat"] == "C1"),
        ({"channel": "C2"}, lambda m: m["chat"] == "C2"),
        ({"accountId": accounts[1]}, lambda m: m["account"] == accounts[1]),
        ({"botId": accounts[0]}, lambda m: m["account"] == accounts[0]),
        ({"platform": "telegram"}, lambda m: m["platform"] == "telegram"),
        ({"senderId": "U3"}, lambda m: m["sender"] == "U3"),
        ({"person": "U0"}, lambda m: m["sender"] == "U0"),
        ({"threadId": "T1"}, lambda m: m["thread"] == "T1"),
        ({"chatId": "C1", "senderId": "U1", "platform": "slack"}, lambda m: (m["chat"], m["sender"], m["platform"]) == ("C1", "U1", "slack")),
        ({"since": T0 + 10 * 60_000, "until": T0 + 30 * 60_000}, lambda m: T0 + 600_000 <= m["sent_at"] < T0 + 1_800_000),
        ({"startTime": "2023-11-14T22:23:20Z", "endTime": T0 + 20 * 60_000}, lambda m: T0 + 600_000 <= m["sent_at"] < T0 + 1_200_000),
        ({"q": "lunch"}, lambda m: "lunch" in m["text"]),
        ({"keywords": "LUNCH plans"}, lambda m: "lunch plans" in m["text"]),
        ({"q": "lunch", "chatId": "C0"}, lambda m: "lunch" in m["text"] and m["chat"] == "C0"),
        ({"q": "quarterly", "platform": "slack"}, lambda m: "quarterly" in m["text"]),
        ({"q": "nothing-like-this"}, lambda m: False),
    ]
    for params, keep in cases:
        assert _natives(await _all(client, h, **params)) == _expect(made, keep), params
    with_deleted = _natives(await _all(client, h, includeDeleted="true"))
    assert with_deleted == [int(m["native"]) for m in sorted(made, key=lambda m: -m["sent_at"])]


async def test_a_cursor_page_continues_under_until(client: httpx.AsyncClient, hub, user: dict) -> None:
    made, _ = await _seed(hub, user)
    h = user["headers"]
    first = (await client.get("/api/messages", params={"limit": 5}, headers=h)).json()
    until = T0 + 20 * 60_000  # below the cursor: it wins; then above it on the next page
    rest = await _all(client, h, cursor=first["nextCursor"], until=until)
    assert _natives(rest) == _expect(made, lambda m: m["sent_at"] < until)
    rest = await _all(client, h, cursor=first["nextCursor"], until=T0 + 10**9)
    assert _natives(first["messages"]) + _natives(rest) == _expect(made, lambda m: True)


async def test_listed_messages_are_message_json_of_the_rows(client: httpx.AsyncClient, hub, user: dict) -> None:
    await _seed(hub, user)
    listed = await _all(client, user["headers"], includeDeleted="true", limit=500)
    assert len(listed) == 60
    async with hub.engine.connect() as conn:
        for item in listed:
            row = await get_message(conn, user["user"]["id"], item["id"])
            assert row is not None
            assert item == httpx.Response(200, json=message_json(row)).json()
    by_native = {m["nativeId"]: m for m in listed}
    assert by_native["0"]["attachments"] and by_native["0"]["attachments"][0]["url"].endswith("/0.png")
    assert by_native["11"]["mentions"] == ["U1", "U2"] and by_native["1"]["reactions"][0]["emoji"] == "👍"
    assert by_native["2"]["originalText"] == "note 2" and by_native["2"]["editedAt"]
    assert by_native["4"]["deletedAt"] and by_native["5"]["attachments"] == [] and by_native["5"]["isSelf"] is False
