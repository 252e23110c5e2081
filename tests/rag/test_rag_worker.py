"""The worker runs RAG's background work by itself: an async upload becomes `ready` with no
test code driving it (woken by the upload, under the cross-worker lock), and the chunker keeps
structure and overlap."""

from __future__ import annotations

from typing import Any

import httpx

from ai.rag.chunking import MAX_CHARS, OVERLAP_CHARS, chunk
from ai.rag.extract import Block
from tests.rag import docs
from tests.waiting import eventually
from workers.process import HubWorker


async def test_the_worker_extracts_and_embeds_an_async_upload(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    worker = HubWorker(hub, name="rag-test")
    await worker.start()
    try:
        response = await client.post("/api/rag/upload/async", files={"file": ("m.md", docs.md("zqworker"), "text/markdown")},
                                     headers=user["headers"])
        job = response.json()["jobId"]

        async def ready() -> dict[str, Any] | None:
            status = (await client.get("/api/rag/upload/async/status", params={"jobId": job}, headers=user["headers"])).json()
            return status if status["status"] == "ready" else None

        status = await eventually(ready, timeout=60, what="the worker to finish the document")
        assert status["document"]["embeddedChunks"] == status["document"]["chunkCount"] >= 1
    finally:
        await worker.stop()


def test_chunks_follow_headings_and_overlap_inside_a_section() -> None:
    sentences = " ".join(f"Sentence {i} says something about topic {i % 7}." for i in range(120))
    blocks = [Block("Guide", 1), Block("Intro text."), Block("Setup", 2), Block(sentences), Block("Other", 2), Block("Short.")]
    chunks = chunk(blocks)
    assert chunks[0].heading == "Guide" and chunks[0].text == "Intro text."
    setup = [c for c in chunks if c.heading == "Guide > Setup"]
    assert len(setup) >= 3 and all(len(c.text) <= MAX_CHARS + 2 * OVERLAP_CHARS for c in setup)
    for before, after in zip(setup, setup[1:]):
        head = after.text[:40]
        assert head in before.text  # the next chunk starts with the tail of the one before
    assert chunks[-1].heading == "Guide > Other" and chunks[-1].text == "Short."  # no overlap across sections
    assert [c.position for c in chunks] == list(range(len(chunks)))
