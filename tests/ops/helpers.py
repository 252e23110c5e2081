"""Shared pieces of the operator's-view tests: an account row, Telegram updates through the real
stream and the real Ingestor, and a parsed /metrics scrape."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from connectors.base import Envelope
from loomi.hub import Hub
from store.ids import now_ms
from store.schema import accounts
from workers.ingest import Ingestor, ensure_group
from workers.stream import append

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def add_account(hub: Hub, user_id: str, name: str, platform: str = "telegram") -> str:
    """An account row no listener runs (it has no credentials): its messages come through `queue_updates`."""
    account_id = f"acct_ops_{secrets.token_hex(4)}"
    async with hub.engine.begin() as conn:
        await conn.execute(accounts.insert().values(
            id=account_id, user_id=user_id, platform=platform, external_id=secrets.token_hex(4), name=name, credentials=None,
            settings={}, resume={}, enabled=True, state="stopped", created_at=now_ms(), updated_at=now_ms(),
        ))
    return account_id


def update(i: int, text: str) -> dict[str, Any]:
    return {
        "update_id": 50_000 + i,
        "message": {
            "message_id": i, "date": 1_700_000_000 + i, "chat": {"id": -100, "type": "supergroup", "title": "Team"},
            "from": {"id": 9, "is_bot": False, "first_name": "Alice"}, "text": text,
        },
    }


async def queue_updates(hub: Hub, account_id: str, n: int, platform: str = "telegram") -> int:
    base = secrets.randbelow(10**6) * 100
    envelopes = [Envelope(platform, account_id, f"ops-{base + i}", now_ms(), update(base + i, f"ops message {i}")) for i in range(n)]
    await ensure_group(hub.redis)
    return await append(hub.redis, envelopes)


async def ingest_all(hub: Hub) -> int:
    """Run the real ingest until the stream is drained; returns entries handled."""
    await ensure_group(hub.redis)
    ingestor = Ingestor(hub, f"ops-{secrets.token_hex(3)}", block_ms=50)
    total = 0
    while (done := await ingestor.step()):
        total += done
    return total


async def scrape(client: httpx.AsyncClient, **headers: str) -> tuple[Samples, str]:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, response.text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)
