"""Cut a document's blocks into passages for search: on its structure, with overlap.

A heading starts a new section; paragraphs of a section are packed into chunks of about
TARGET_CHARS (the embedding model reads 256 word pieces, ~1000 characters of English). A chunk
that continues a section repeats the tail of the one before it (OVERLAP_CHARS, cut on a word)
so a sentence on the boundary is whole in at least one chunk. A paragraph longer than
MAX_CHARS is split on sentences, then words. Each chunk keeps the heading path above it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ai.rag.extract import Block

TARGET_CHARS = 900
MAX_CHARS = 1200
OVERLAP_CHARS = 150
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass(frozen=True)
class Chunk:
    position: int
    heading: str | None
    text: str
    start_char: int  # offset of the chunk's first new (non-overlap) text in the extracted text


def _split_long(text: str) -> list[str]:
    """Pieces of at most MAX_CHARS: sentences packed together, words when a sentence is too long."""
    pieces: list[str] = []
    for sentence in _SENTENCE.split(text):
        while len(sentence) > MAX_CHARS:
            cut = sentence.rfind(" ", 0, MAX_CHARS)
            cut = cut if cut > MAX_CHARS // 2 else MAX_CHARS
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if pieces and len(pieces[-1]) + 1 + len(sentence) <= TARGET_CHARS:
            pieces[-1] = f"{pieces[-1]} {sentence}"
        elif sentence:
            pieces.append(sentence)
    return pieces


def _tail(text: str) -> str:
    """The last ~OVERLAP_CHARS of `text`, from a sentence start if one is near, else a word."""
    if len(text) <= OVERLAP_CHARS:
        return text
    window = text[-2 * OVERLAP_CHARS :]
    starts = [m.end() for m in _SENTENCE.finditer(window)]
    fits = [i for i in starts if len(window) - i <= 2 * OVERLAP_CHARS and len(window) - i >= OVERLAP_CHARS // 3]
    if fits:
        return window[min(fits, key=lambda i: abs(len(window) - i - OVERLAP_CHARS)) :]
    cut = text.find(" ", len(text) - OVERLAP_CHARS)
    return text[cut + 1 :] if cut != -1 else text[-OVERLAP_CHARS:]


def chunk(blocks: list[Block]) -> list[Chunk]:
    chunks: list[Chunk] = []
    path: list[tuple[int, str]] = []  # (level, heading) of the headings above
    parts: list[str] = []
    overlap = ""
    start, offset = 0, 0

    def heading() -> str | None:
        return " > ".join(h for _, h in path) or None

    def flush(keep_overlap: bool) -> None:
        nonlocal parts, overlap
        body = "\n\n".join(parts)
        if body:
            text = f"{overlap} {body}".strip() if overlap else body
            chunks.append(Chunk(len(chunks), heading(), text, start))
            overlap = _tail(body) if keep_overlap else ""
        parts = []

    for block in blocks:
        if block.level:
            flush(keep_overlap=False)
            overlap = ""
            path = [(lvl, h) for lvl, h in path if lvl < block.level] + [(block.level, block.text[:200])]
            start = offset
            offset += len(block.text) + 2
            continue
        for piece in _split_long(block.text) if len(block.text) > MAX_CHARS else [block.text]:
            size = sum(len(p) + 2 for p in parts) + len(overlap)
            if parts and size + len(piece) > TARGET_CHARS:
                flush(keep_overlap=True)
            if not parts:
                start = offset
            parts.append(piece)
            offset += len(piece) + 2
    flush(keep_overlap=False)
    if not chunks and path:  # a document of headings only
        chunks.append(Chunk(0, None, " > ".join(h for _, h in path), 0))
    return chunks
