"""What a preview shows: a web page's title, description and text, or a workspace file as
text, Markdown (rendered with markdown-it-py, raw HTML disabled) or an image data URL."""

from __future__ import annotations

import base64
import mimetypes
import re
from typing import Any

from bs4 import BeautifulSoup
from markdown_it import MarkdownIt

MAX_TEXT = 20_000
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}  # no SVG: it can carry script
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".json", ".csv", ".log", ".py", ".js", ".ts", ".yaml", ".yml", ".toml", ".html", ".xml"}


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def page_summary(content_type: str, body: bytes, url: str) -> dict[str, Any]:
    """Title, description, image URL and text of a fetched page (HTML via BeautifulSoup)."""
    base = content_type.split(";")[0].strip().lower()
    out: dict[str, Any] = {"title": None, "description": None, "image": None, "siteName": None, "text": ""}
    if base in ("text/html", "application/xhtml+xml") or (not base and body.lstrip()[:1] == b"<"):
        soup = BeautifulSoup(body, "html.parser")

        def meta(*keys: str) -> str | None:
            for key in keys:
                tag = soup.find("meta", attrs={"property": key}) or soup.find("meta", attrs={"name": key})
                if tag and tag.get("content"):
                    return _squash(str(tag["content"]))[:1000]
            return None

        out["title"] = meta("og:title", "twitter:title") or (_squash(soup.title.get_text())[:500] if soup.title else None)
        out["description"] = meta("og:description", "description", "twitter:description")
        out["image"] = meta("og:image", "twitter:image")
        out["siteName"] = meta("og:site_name")
        for tag in soup(["script", "style", "noscript", "template"]):
            tag.decompose()
        out["text"] = _squash(soup.get_text(" "))[:MAX_TEXT]
    elif base.startswith("text/") or base in ("application/json",):
        out["text"] = body.decode("utf-8", "replace")[:MAX_TEXT]
    return out


def file_kind(name: str) -> tuple[str, str]:
    """(kind, content type) of a workspace file by its name: markdown, text, image or binary."""
    lower = name.lower()
    ctype = mimetypes.guess_type(lower)[0] or "application/octet-stream"
    if lower.endswith((".md", ".markdown")):
        return "markdown", "text/markdown"
    if ctype in IMAGE_TYPES:
        return "image", ctype
    if ctype.startswith("text/") or any(lower.endswith(s) for s in TEXT_SUFFIXES):
        return "text", ctype if ctype.startswith("text/") else "text/plain"
    return "binary", ctype


def file_preview(name: str, data: bytes, truncated: bool) -> dict[str, Any]:
    kind, ctype = file_kind(name)
    out: dict[str, Any] = {"kind": kind, "contentType": ctype, "truncated": truncated}
    if kind in ("text", "markdown"):
        text = data.decode("utf-8", "replace")
        out["text"] = text[:MAX_TEXT]
        out["truncated"] = truncated or len(text) > MAX_TEXT
        if kind == "markdown":
            out["html"] = MarkdownIt("commonmark", {"html": False}).render(out["text"])
    elif kind == "image" and not truncated:
        out["dataUrl"] = f"data:{ctype};base64,{base64.b64encode(data).decode()}"
    return out
