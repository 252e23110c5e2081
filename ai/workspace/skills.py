"""Skills from SKILL.md text or a zip, checked before anything is written.

SKILL.md is YAML front matter and a Markdown body. Front matter is fenced by `---` lines, or,
as in the openloomi seed document itself, a leading block of `key: value` lines that YAML
reads as a mapping with `name` and `description`. YAML is read with `safe_load` (no tags that
build objects).

A zip is read entry by entry with limits that hold whatever its headers claim: at most
MAX_ENTRIES entries, MAX_TOTAL_BYTES uncompressed in all, no entry over MAX_RATIO times its
compressed size, and each entry read with a cap so a lying header cannot inflate past it. Names
are checked as workspace paths (no `..`, absolute paths, backslashes, NUL), symlink entries are
refused, and SKILL.md must be at the root or in one top folder that everything shares.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
from dataclasses import dataclass, field
from typing import Any

import yaml

from ai.workspace.paths import UnsafePath, parts_of

MAX_ENTRIES = 200
MAX_TOTAL_BYTES = 20 << 20
MAX_ENTRY_BYTES = 10 << 20
MAX_RATIO = 100
MAX_SKILL_MD = 256 << 10
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


class SkillError(ValueError):
    """The skill is refused (400), `code` says why."""

    def __init__(self, message: str, code: str = "invalid_skill") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Skill:
    name: str
    description: str
    version: str | None
    content: str
    meta: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":
        for end in range(1, len(lines)):
            if lines[end].strip() in ("---", "..."):
                return _mapping("\n".join(lines[1:end])), "\n".join(lines[end + 1 :])
        raise SkillError("The front matter starts with '---' but never ends", "invalid_front_matter")
    # The seed's form: leading lowercase `key: value` lines (an empty-valued key too), no fences.
    end = 0
    while end < len(lines) and re.match(r"^[a-z_][a-z0-9_-]*:(\s|$)", lines[end]):
        end += 1
    if end == 0:
        raise SkillError("SKILL.md has no YAML front matter with `name` and `description`", "invalid_front_matter")
    return _mapping("\n".join(lines[:end])), "\n".join(lines[end:])


def _mapping(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as err:
        raise SkillError(f"The front matter is not valid YAML: {type(err).__name__}", "invalid_front_matter") from None
    if not isinstance(data, dict):
        raise SkillError("The front matter must be a YAML mapping", "invalid_front_matter")
    return data


def _plain(value: Any) -> Any:
    """JSON-safe front matter: dates and other YAML scalars become text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name.strip()):
        raise SkillError("`name` must be 1-100 letters, digits, spaces, '.', '_' or '-'", "invalid_name")
    return name.strip()


def parse_skill_md(text: str) -> Skill:
    """A Skill from SKILL.md text; `name` and `description` are required."""
    if len(text.encode()) > MAX_SKILL_MD:
        raise SkillError(f"SKILL.md is over {MAX_SKILL_MD} bytes", "skill_too_large")
    if "\x00" in text:
        raise SkillError("SKILL.md contains a NUL character")
    data, _body = _front_matter(text)
    name = check_name(data.get("name"))
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        raise SkillError("The front matter needs a `description`", "invalid_front_matter")
    meta = _plain({k: v for k, v in data.items() if k not in ("name", "description")})
    version = meta.get("version")
    if version is None and isinstance(meta.get("metadata"), dict):
        version = meta["metadata"].get("version")
    return Skill(name, description.strip()[:2000], None if version is None else str(version)[:50], text, meta)


def decode_md(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SkillError("SKILL.md is not UTF-8 text") from None


def parse_zip(data: bytes) -> Skill:
    """A Skill and its other files from a zip, refusing zip slip and zip bombs."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise SkillError("Not a valid zip file", "invalid_zip") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(archive.infolist()) > MAX_ENTRIES:
            raise SkillError(f"The zip has more than {MAX_ENTRIES} entries", "zip_bomb")
        declared = 0
        for info in infos:
            _check_entry(info)
            declared += info.file_size
        if declared > MAX_TOTAL_BYTES:
            raise SkillError(f"The zip unpacks to more than {MAX_TOTAL_BYTES} bytes", "zip_bomb")
        names = [i.filename for i in infos]
        prefix = _prefix(names)
        files: dict[str, bytes] = {}
        total = 0
        for info in infos:
            body = _read_capped(archive, info, MAX_TOTAL_BYTES - total)
            total += len(body)
            files[info.filename[len(prefix) :]] = body
    md = files.pop("SKILL.md")
    skill = parse_skill_md(decode_md(md))
    skill.files = files
    return skill


def _check_entry(info: zipfile.ZipInfo) -> None:
    try:
        parts_of(info.filename)
    except UnsafePath as err:
        raise SkillError(f"Unsafe path in zip ({err})", "zip_slip") from None
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise SkillError("Symbolic links in the zip are not allowed", "zip_slip")
    if info.flag_bits & 0x1:
        raise SkillError("Encrypted zip entries are not supported", "invalid_zip")
    if info.file_size > MAX_ENTRY_BYTES:
        raise SkillError(f"An entry unpacks to more than {MAX_ENTRY_BYTES} bytes", "zip_bomb")
    if info.file_size > 1024 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise SkillError(f"An entry's compression ratio is over {MAX_RATIO}:1", "zip_bomb")


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, room: int) -> bytes:
    """Read at most what the header declared (and the room left): a lying header stops here."""
    cap = min(info.file_size, room, MAX_ENTRY_BYTES)
    try:
        with archive.open(info) as handle:
            body = handle.read(cap + 1)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as err:
        raise SkillError(f"A zip entry cannot be read: {type(err).__name__}", "invalid_zip") from None
    if len(body) > cap:
        raise SkillError("An entry unpacks to more than its header or the limits allow", "zip_bomb")
    return body


def _prefix(names: list[str]) -> str:
    if "SKILL.md" in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        top = tops.pop() + "/"
        if top + "SKILL.md" in names:
            return top
    raise SkillError("The zip needs SKILL.md at its root or in its single top folder", "missing_skill_md")
