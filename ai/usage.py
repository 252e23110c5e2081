"""Usage accounting: every AI call becomes a "usage" row in the ledger.

Tokens come from the upstream's own usage report when it sends one, otherwise from the
offline tokenizer, so a provider that omits usage (or a stream the client cut short) is
still billed for what was produced. Rows are written in batches by a background task after
the response: the ledger adds no latency to a completion, and a client that hangs up cannot
cancel its own billing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ai.providers import Target
from ai.types import Usage
from store.ledger import add_entries, entry

log = logging.getLogger("loomi.ai")


def count_text(text: str, model: str | None = None) -> int:
    from ai.local.tokens import count_tokens

    return int(count_tokens(text, model)) if text else 0


def count_messages(messages: list[dict[str, Any]], model: str | None = None) -> int:
    from ai.local.tokens import count_message_tokens

    return int(count_message_tokens(messages, model))


class UsageRecorder:
    """Collects usage rows and writes them in batches, off the request path.

    A row is written within FLUSH_SECONDS of its call ending, many calls per transaction, so
    the ledger costs a busy gateway one commit per batch instead of one per call. `drain`
    writes whatever is pending (shutdown, tests).
    """

    FLUSH_SECONDS = 0.25

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._pending: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None

    def record(self, user_id: str, target: Target, what: str, usage: Usage, model: str | None = None) -> None:
        model = model or target.model
        cost = target.provider.price(target.model).cost(usage.input_tokens, usage.output_tokens)
        description = f"{what} · {model} via {target.provider.name} · {usage.input_tokens}+{usage.output_tokens} tokens"
        self._pending.append(entry(
            user_id, source="usage", description=description, model=model,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, delta=-cost,
        ))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.FLUSH_SECONDS)
        await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.engine.begin() as conn:
                    await add_entries(conn, batch)
            except Exception:  # a lost ledger row must not surface as a failed completion
                log.exception("could not record AI usage (%d rows)", len(batch))

    async def drain(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._flush()
