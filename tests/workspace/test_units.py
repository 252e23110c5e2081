"""The workspace helpers without the app: path checks, the no-follow walk against a planted
symlink, SKILL.md parsing (fenced, the seed's unfenced form, unsafe YAML), zip limits, and the
address rules external-preview applies (no network: only parsing and classification)."""

from __future__ import annotations

import io
import ipaddress
import os
import zipfile
from pathlib import Path

import pytest

from ai.workspace import fetch, paths, skills

SEED = Path("/work/shared/seed/000_c12e6ea94e6211f8.txt")


@pytest.mark.parametrize("path", ["../a", "a/..", "a/./b", "a//b", "/a", "C:/a", "c:x", "a\\b", "a\x00b", "a\nb", "", "a%2fb",
                                  "a%5Cb", "%2e%2e", "a%2500", "x/" * 40 + "y", "a" * 300])
def test_hostile_relative_paths(path: str) -> None:
    with pytest.raises(paths.UnsafePath):
        paths.parts_of(path)


@pytest.mark.parametrize(("path", "parts"), [("a", ["a"]), ("a/b.txt", ["a", "b.txt"]), ("dir/", ["dir"]), ("..a/b..", ["..a", "b.."]),
                                             ("with space/ünï.md", ["with space", "ünï.md"])])
def test_ordinary_paths(path: str, parts: list[str]) -> None:
    assert paths.parts_of(path) == parts


@pytest.mark.parametrize("raw", [b"/x/a%2Fb", b"/x/%2e%2e/y", b"/x/a%5c", b"/x/%252f", b"/x/a%00"])
def test_raw_paths_with_encoded_separators(raw: bytes) -> None:
    with pytest.raises(paths.UnsafePath):
        paths.check_raw(raw)


def test_a_symlink_swapped_in_for_a_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    outside = tmp_path / "outside"
    outside.mkdir()
    paths.write_file(root, ["d", "f.txt"], b"one")
    assert paths.read_file(root, ["d", "f.txt"]) == b"one"
    (root / "d" / "f.txt").unlink()
    (root / "d").rmdir()
    os.symlink(outside, root / "d")  # what a race would plant between a check and an open
    for call in (lambda: paths.read_file(root, ["d", "f.txt"]), lambda: paths.write_file(root, ["d", "f.txt"], b"two"),
                 lambda: paths.delete_file(root, ["d", "f.txt"])):
        with pytest.raises(paths.UnsafePath):
            call()
    assert list(outside.iterdir()) == []


def test_skill_md_forms() -> None:
    fenced = skills.parse_skill_md("---\nname: a-skill\ndescription: Does a\nmetadata:\n  version: 2\n---\nbody\n")
    assert (fenced.name, fenced.description, fenced.version) == ("a-skill", "Does a", "2")
    seed = skills.parse_skill_md(SEED.read_text())
    assert seed.name == "openloomi-api" and seed.version == "0.5.1" and "Note" not in seed.meta
    with pytest.raises(skills.SkillError):
        skills.parse_skill_md("---\nname: !!python/object/apply:os.system ['id']\ndescription: x\n---\n")
    with pytest.raises(skills.SkillError):
        skills.parse_skill_md("---\nname: x\ndescription: y\n")  # never closed


def test_zip_entry_read_is_capped_by_its_header() -> None:
    """A header that understates an entry's size cannot make the reader inflate past it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("SKILL.md", "---\nname: s\ndescription: d\n---\n")
        archive.writestr("big.txt", b"a" * 50_000)
    data = bytearray(buffer.getvalue())
    # shrink big.txt's declared size in the central directory (offset 24 of its record) to 100
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    with pytest.raises(skills.SkillError) as err:
        skills.parse_zip(bytes(data))
    assert err.value.code in ("zip_bomb", "invalid_zip")


@pytest.mark.parametrize(("host", "public"), [
    ("127.0.0.1", False), ("2130706433", False), ("0177.0.0.1", False), ("0x7f.1", False), ("127.1", False), ("::1", False),
    ("::ffff:127.0.0.1", False), ("64:ff9b::a00:1", False), ("10.0.0.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("fd00:ec2::254", False), ("fe80::1", False), ("224.0.0.1", False), ("0.0.0.0", False), ("2002:7f00:1::", False),
    ("8.8.8.8", True), ("2001:4860:4860::8888", True),
])
def test_address_rules(host: str, public: bool) -> None:
    ip = fetch.numeric_host(host)
    assert ip is not None and fetch.is_public(ip) is public


def test_allow_list_lets_only_its_networks_through() -> None:
    allow = fetch.parse_networks("127.0.0.2/32, 10.9.0.0/16")
    fetch.check_ip(ipaddress.ip_address("127.0.0.2"), allow)
    fetch.check_ip(ipaddress.ip_address("10.9.1.1"), allow)
    for other in ("127.0.0.1", "10.8.0.1", "::1"):
        with pytest.raises(fetch.Refused):
            fetch.check_ip(ipaddress.ip_address(other), allow)


async def test_every_resolved_address_must_pass() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.1"]

    with pytest.raises(fetch.Refused):
        await fetch.pick_address("example.test", 80, resolve, [])
