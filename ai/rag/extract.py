"""Text out of an uploaded document, as blocks that keep its structure.

Each format is read by a library made for it: markdown-it-py for Markdown, BeautifulSoup for
HTML, pypdf for PDF, python-docx for Word; plain text is split on blank lines. A block is a
heading or a paragraph; the chunker (ai/rag/chunking.py) groups paragraphs under their heading.
Anything a library cannot read is an `ExtractError` with a reason the person can act on.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import PurePath

KINDS = ("txt", "md", "html", "pdf", "docx")
_EXTENSIONS = {
    ".txt": "txt", ".text": "txt", ".log": "txt", ".csv": "txt",
    ".md": "md", ".markdown": "md",
    ".html": "html", ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
_TYPES = {
    "text/plain": "txt", "text/csv": "txt",
    "text/markdown": "md", "text/x-markdown": "md",
    "text/html": "html", "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
}
CONTENT_TYPES = {"txt": "text/plain", "md": "text/markdown", "html": "text/html", "pdf": "application/pdf",
                 "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
_BLANK = re.compile(r"\n\s*\n")
_SPACE = re.compile(r"[ \t\r\f\v]+")


class ExtractError(ValueError):
    """The file cannot be read as the kind it claims to be (or any kind we know)."""


@dataclass(frozen=True)
class Block:
    text: str
    level: int = 0  # 1-6 for a heading, 0 for body text


def kind_of(filename: str, content_type: str | None) -> str:
    """txt | md | html | pdf | docx, by extension first (browsers send octet-stream often)."""
    ext = PurePath(filename or "").suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    base = (content_type or "").split(";")[0].strip().lower()
    if base in _TYPES:
        return _TYPES[base]
    raise ExtractError(f"unsupported file type {ext or base or 'unknown'!r}: send txt, md, html, pdf or docx")


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text.replace("\x00", "")).strip()


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Windows-1252; binary content is refused."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data[:65536]:
        raise ExtractError("not a text file (binary content)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    if len(_CONTROL.findall(text[:65536])) > len(text[:65536]) // 10:
        raise ExtractError("not a text file (binary content)")
    return _CONTROL.sub(" ", text)


def _paragraphs(text: str) -> list[Block]:
    return [Block(c) for part in _BLANK.split(text) if (c := _clean(part))]


def _markdown(data: bytes) -> list[Block]:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(_decode(data))
    blocks: list[Block] = []
    level = 0
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            level = int(tok.tag[1])
        elif tok.type == "inline":
            text = _clean(tok.content)
            if text:
                blocks.append(Block(text, level))
            level = 0
        elif tok.type in ("fence", "code_block") and tok.content.strip():
            blocks.append(Block(tok.content.strip()))
    return blocks


_HTML_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption")


def _html(data: bytes) -> list[Block]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    blocks: list[Block] = []
    found = soup.find_all(_HTML_BLOCKS)
    for tag in found:
        if tag.find_parent(_HTML_BLOCKS) is not None:
            continue  # its text is already in the enclosing block
        text = _clean(tag.get_text(" "))
        if text:
            blocks.append(Block(text, int(tag.name[1]) if tag.name[0] == "h" and tag.name[1:].isdigit() else 0))
    if not found:  # a page of bare text in divs
        blocks = _paragraphs(soup.get_text("\n\n"))
    return blocks


def _pdf(data: bytes) -> list[Block]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ExtractError("the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
    except ExtractError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as err:
        raise ExtractError(f"not a readable PDF ({type(err).__name__})") from None
    return [block for page in pages for block in _paragraphs(page)]


def _docx(data: bytes) -> list[Block]:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise ExtractError(f"not a readable .docx ({type(err).__name__})") from None
    blocks: list[Block] = []
    for para in document.paragraphs:
        text = _clean(para.text)
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        level = 0
        if style.startswith("Heading") and style[7:].strip().isdigit():
            level = min(6, int(style[7:]))
        elif style == "Title":
            level = 1
        blocks.append(Block(text, level))
    for table in document.tables:
        for row in table.rows:
            text = _clean(" | ".join(cell.text for cell in row.cells))
            if text:
                blocks.append(Block(text))
    return blocks


def extract(data: bytes, kind: str) -> list[Block]:
    """The document's blocks in reading order; ExtractError when there is no text in it."""
    readers = {"txt": lambda d: _paragraphs(_decode(d)), "md": _markdown, "html": _html, "pdf": _pdf, "docx": _docx}
    if kind not in readers:
        raise ExtractError(f"unsupported kind {kind!r}")
    blocks = readers[kind](data)
    if not blocks:
        raise ExtractError("no text found in the document")
    return blocks
