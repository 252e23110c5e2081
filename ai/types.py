"""The one internal request and response every upstream adapter maps onto.

OpenAI's chat-completions shape is the lingua franca: the clients speak it and most upstreams
do, so choices and deltas stay plain dicts (tool calls, logprobs and vendor fields pass
through untouched) and only what the gateway itself needs to read is typed: model, stream,
usage. An adapter for a different upstream kind translates to and from this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class AIError(Exception):
    """A failure the client should see: HTTP status, a stable code, a message without secrets.

    `retryable`: transient (timeout, 5xx, 429): worth another try on the same provider, then
    the next. `fallback`: this provider cannot do it (bad upstream key, unknown model): go
    straight to the next one. Neither: the request itself is wrong; stop and tell the client.
    """

    def __init__(self, status: int, message: str, code: str, retryable: bool = False, fallback: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.retryable, self.fallback = retryable, fallback or retryable


def not_configured(what: str) -> AIError:
    return AIError(
        503,
        f"No AI provider is configured for {what}: set LOOMI_AI_BASE_URL (and LOOMI_AI_API_KEY) "
        "or LOOMI_AI_PROVIDERS_FILE, or install the offline extra",
        "ai_provider_not_configured",
    )


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def openai(self) -> dict[str, int]:
        return {"prompt_tokens": self.input_tokens, "completion_tokens": self.output_tokens, "total_tokens": self.total}

    @classmethod
    def from_openai(cls, data: dict[str, Any] | None) -> "Usage | None":
        if not isinstance(data, dict):
            return None
        return cls(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


@dataclass
class ChatRequest:
    """What the client asked for; `params` holds every other OpenAI field, passed through."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatChunk:
    """One streamed piece: OpenAI `choices` (deltas) and, on the last one, usage."""

    id: str
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. system_fingerprint

    def openai(self, model: str | None = None, with_usage: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": model or self.model,
            **self.extra,
            "choices": self.choices,
        }
        if with_usage and self.usage is not None:
            out["usage"] = self.usage.openai()
        return out

    def text(self) -> str:
        parts = []
        for choice in self.choices:
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str):
                parts.append(content)
        return "".join(parts)


@dataclass
class ChatResult:
    """A whole (non-streamed) completion."""

    id: str
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage
    extra: dict[str, Any] = field(default_factory=dict)

    def openai(self, model: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": model or self.model,
            **self.extra,
            "choices": self.choices,
            "usage": self.usage.openai(),
        }

    def text(self) -> str:
        parts = []
        for choice in self.choices:
            content = (choice.get("message") or {}).get("content")
            if isinstance(content, str):
                parts.append(content)
        return "".join(parts)
