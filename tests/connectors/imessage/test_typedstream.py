"""The attributedBody reader on typedstream blobs laid out as NSArchiver writes them."""

from __future__ import annotations

import pytest

from connectors.imessage.typedstream import TypedStreamError, _Unarchiver, attributed_text, mentions
from tests.fakes.imessage import archived, archived_runs, with_mentions

# The layout public decoders document for a Messages attributedBody (NSAttributedString ->
# NSString "Hello, world!", then one attribute run with __kIMMessagePartAttributeName = 0).
DOCUMENTED = bytes.fromhex(
    "040b73747265616d747970656481e803840140848484124e5341747472696275746564537472696e67"
    "008484084e534f626a6563740085928484840"
    "84e53537472696e67019484012b0d48656c6c6f2c20776f726c6421"
    "8684026949010d928484840c4e5344696374696f6e617279009484016901928496961d5f5f6b494d"
    "4d657373616765506172744174747269627574654e616d658692848484084e534e756d626572008484"
    "074e5356616c7565009484012a849999008686"
    "86"
)


def test_the_documented_blob() -> None:
    assert attributed_text(DOCUMENTED) == "Hello, world!"


@pytest.mark.parametrize("text", [
    "", "ok", "x" * 127, "y" * 128, "é" * 100, "z" * 40_000, "a" * 70_000,
    "emoji 👍🏽 and 中文 and a link https://example.com", "line\nbreaks\ttabs",
])
def test_texts_of_every_length_encoding_round_trip(text: str) -> None:
    assert attributed_text(archived(text)) == text


def test_length_encodings_are_typedstreams() -> None:
    """1 byte below 128, 0x81 + 2 bytes little-endian, 0x82 + 4 bytes past 32767."""
    assert b"\x84\x01+\x05hello" in archived("hello")
    assert b"\x84\x01+\x81\x80\x00" in archived("y" * 128)
    assert b"\x84\x01+\x82\x70\x11\x01\x00" in archived("a" * 70_000)


def test_a_big_endian_typedstream() -> None:
    """NeXT-era archives say `typedstream` and store multi-byte integers big-endian."""
    blob = (b"\x04\x0btypedstream\x81\x03\xe8\x84\x01@\x84\x84\x84\x08NSString\x01\x84\x84\x08NSObject\x00\x85"
            b"\x84\x01+\x81\x01\x00" + b"q" * 256 + b"\x86")
    assert attributed_text(blob) == "q" * 256


@pytest.mark.parametrize("blob", [
    b"", b"bplist00\xd4\x01\x02", b"\x04\x0bstreamtyped\x81\xe8\x03",  # header only: no string
    archived("truncated")[:archived("truncated").index(b"trunc") + 5],  # the length says more bytes than there are
    b"\x04\x0bstreamtyped\x81\xe8\x03\x84\x84\x84\x08NSString\x01\x84\x01+\x03\xff\xfe\xfd",  # not UTF-8
])
def test_what_is_not_an_archived_string_raises(blob: bytes) -> None:
    with pytest.raises(TypedStreamError):
        attributed_text(blob)


def test_the_documented_blob_unarchives_whole() -> None:
    """Every byte accounted for: objects, classes and C strings in one reference table (the
    NSNumber's objCType `i` is a C string: `84 99`, then `99` is the group's encoding)."""
    reader = _Unarchiver(DOCUMENTED)
    assert reader.root() == {"text": "Hello, world!", "runs": [{"__kIMMessagePartAttributeName": 0}]}
    assert reader.pos == len(DOCUMENTED)


def test_the_archiver_writes_the_documented_layout() -> None:
    assert archived_runs("Hello, world!", [(13, {"__kIMMessagePartAttributeName": 0})]) == archived("Hello, world!")


def test_mentions_are_read_from_the_attribute_runs() -> None:
    blob = with_mentions("hey @Alice and @Bob, then @Alice again 👋", {"@Alice": "+15551230001", "@Bob": "bob@example.com"})
    assert attributed_text(blob) == "hey @Alice and @Bob, then @Alice again 👋"
    assert mentions(blob) == ["+15551230001", "bob@example.com"]  # the repeated run is a reference
    assert mentions(archived("no one")) == []
    assert mentions(DOCUMENTED[:-20]) == []  # unreadable attributes: no mentions, no error
