"""The attributedBody reader on typedstream blobs laid out as NSArchiver writes them."""

from __future__ import annotations

import pytest

from connectors.imessage.typedstream import TypedStreamError, attributed_text
from tests.fakes.imessage import archived

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
