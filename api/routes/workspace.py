"""Workspace module (/api/workspace/*): a person's workspace folder, previews, and skills.

The workspace is `$LOOMI_HOME/workspace/<user id>/`; every path goes through ai.workspace.paths
(400 for anything that could leave it, checked on the raw request path too, so `%2f`, `%5c`
and double-encoded forms are refused before decoding can hide them). Artifacts are the files
under its `artifacts/` folder (what the assistant and skills produce). A PUT body is the file's
bytes, or JSON `{content, encoding: utf8|base64}`; the default 1 MiB request limit applies and
the workspace as a whole counts against LOOMI_USER_QUOTA_BYTES.

External previews fetch only public http(s) pages (ai.workspace.fetch). Skills are rows of
`skills` (store.skills); a zip upload's other files live under `$LOOMI_HOME/skills/<user>/<id>/`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import AliasChoices, Field
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ai.workspace import fetch, preview, skills
from ai.workspace import paths as ws
from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.errors import ApiError, bad_request, not_found
from api.responses import json
from api.routes.messages import iso
from api.schemas import Body
from loomi.hub import Hub
from store import skills as skill_store
from store.ids import new_id, now_ms

MAX_UPLOAD_BYTES = 10 << 20  # one skill upload (zip or SKILL.md) as sent
PREVIEW_READ = 512 << 10  # most bytes of a workspace file a preview reads
ARTIFACTS = "artifacts"
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
_quota_locks: dict[str, asyncio.Lock] = {}  # per person, in this process


def root(request: Request, user: Principal) -> Path:
    return ws.root_of(Path(hub_of(request).settings.home), user.id)


def unsafe(err: Exception) -> ApiError:
    return bad_request("Unsafe path", "unsafe_path", str(err))


def checked_parts(path: str, raw: bytes | None = None) -> list[str]:
    try:
        if raw is not None:
            ws.check_raw(raw)
        return ws.parts_of(path)
    except ws.UnsafePath as err:
        raise unsafe(err) from None


def entry_json(rel: str, info: Any) -> dict[str, Any]:
    kind, ctype = preview.file_kind(rel)
    return {"path": rel, "name": rel.rsplit("/", 1)[-1], "kind": kind, "contentType": ctype, "size": info.st_size,
            "modifiedAt": datetime.fromtimestamp(info.st_mtime, timezone.utc).isoformat().replace("+00:00", "Z")}


async def _run(fn: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args)
    except ws.UnsafePath as err:
        raise unsafe(err) from None
    except ws.Missing:
        raise not_found("No such file in the workspace", "file_not_found") from None


class FilesQuery(Body):
    dir: str | None = Field(default=None, max_length=ws.MAX_PATH)
    limit: int = Field(default=1000, ge=1, le=5000)


async def _listing(request: Request, user: Principal, under: list[str] | None, limit: int) -> list[dict[str, Any]]:
    try:
        found = await _run(ws.walk, root(request, user), under, limit + 1)
    except ApiError as err:
        if err.status == 404:
            return []
        raise
    return [entry_json(rel, info) for rel, info in found]


@endpoint(query=FilesQuery)
async def list_files(request: Request, user: Principal, query: FilesQuery):
    """Files in the person's workspace (or under `?dir=`): `{files, total, truncated}`."""
    under = checked_parts(query.dir) if query.dir else None
    items = await _listing(request, user, under, query.limit)
    return {"files": items[: query.limit], "total": min(len(items), query.limit), "truncated": len(items) > query.limit}


@endpoint()
async def list_artifacts(request: Request, user: Principal):
    """What the assistant and skills produced (files under `artifacts/`): `{artifacts}`."""
    items = await _listing(request, user, [ARTIFACTS], 5000)
    return {"artifacts": items, "total": len(items)}


def _path_parts(request: Request) -> list[str]:
    return checked_parts(request.path_params.get("path", ""), request.scope.get("raw_path"))


@endpoint()
async def get_file(request: Request, user: Principal):
    """A workspace file's bytes (sandboxed, never sniffed)."""
    parts = _path_parts(request)
    data = await _run(ws.read_file, root(request, user), parts)
    _kind, ctype = preview.file_kind(parts[-1])
    return Response(data, media_type=ctype, headers=SAFE_HEADERS)


async def _put_body(request: Request) -> bytes:
    raw = await request.body()
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return raw
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("Request body is not valid JSON", "invalid_json") from None
    if not isinstance(data, dict) or not isinstance(data.get("content"), str):
        raise bad_request("Send `{content, encoding?}` or the file's bytes", "invalid_input")
    if data.get("encoding") == "base64":
        try:
            return base64.b64decode(data["content"], validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("`content` is not valid base64", "invalid_input") from None
    if data.get("encoding", "utf8") not in ("utf8", "utf-8"):
        raise bad_request("`encoding` must be utf8 or base64", "invalid_input")
    return data["content"].encode()


@endpoint()
async def put_file(request: Request, user: Principal):
    """Write a workspace file (folders made as needed): `{success, file}`."""
    hub = hub_of(request)
    parts = _path_parts(request)
    data = await _put_body(request)
    folder = root(request, user)
    async with _quota_locks.setdefault(user.id, asyncio.Lock()):  # two writes at once must not share the same room
        used, _count = await asyncio.to_thread(ws.used_bytes, folder)
        quota = hub.settings.user_quota_bytes
        if used + len(data) > quota:
            raise ApiError(413, "Storage quota exceeded", "quota_exceeded", f"{used} of {quota} bytes used (LOOMI_USER_QUOTA_BYTES)")
        await _run(ws.write_file, folder, parts, data)
    info = await _run(ws.stat_file, folder, parts)
    return {"success": True, "file": entry_json("/".join(parts), info)}


@endpoint()
async def delete_file(request: Request, user: Principal):
    """Delete a workspace file (or an empty folder): `{success, deleted}`."""
    parts = _path_parts(request)
    await _run(ws.delete_file, root(request, user), parts)
    return {"success": True, "deleted": "/".join(parts)}


class PreviewQuery(Body):
    path: str = Field(min_length=1, max_length=ws.MAX_PATH)


@endpoint(query=PreviewQuery)
async def preview_file(request: Request, user: Principal, query: PreviewQuery):
    """A workspace file as text, rendered Markdown or an image data URL: `{preview}`."""
    parts = checked_parts(query.path)
    folder = root(request, user)
    info = await _run(ws.stat_file, folder, parts)
    data = await _run(ws.read_file, folder, parts, PREVIEW_READ)
    truncated = len(data) > PREVIEW_READ
    out = preview.file_preview(parts[-1], data[:PREVIEW_READ], truncated)
    return {"success": True, "preview": {"path": "/".join(parts), "size": info.st_size, **out}}


class ExternalQuery(Body):
    url: str = Field(min_length=1, max_length=2000)


@endpoint(query=ExternalQuery)
async def external_preview(request: Request, user: Principal, query: ExternalQuery):
    """Title, description and text of a public web page: `{preview}` (private addresses refused)."""
    hub = hub_of(request)
    settings = hub.settings
    try:
        allow = fetch.parse_networks(settings.preview_allow_networks)
    except ValueError:
        raise ApiError(500, "LOOMI_PREVIEW_ALLOW_NETWORKS is not a list of networks", "bad_setting") from None
    resolver = getattr(request.app.state, "preview_resolver", None) or fetch.system_resolve  # tests replace it
    try:
        page = await fetch.fetch(query.url, max_bytes=settings.preview_max_bytes, timeout=settings.preview_timeout_seconds,
                                 allow=allow, resolve=resolver,
                                 verify=getattr(request.app.state, "preview_ssl_context", None) or True)  # tests: their own CA
    except fetch.Refused as err:
        raise bad_request("URL not allowed", "url_not_allowed", str(err)) from None
    except fetch.FetchFailed as err:
        raise ApiError(err.status, "Could not fetch the page", "fetch_failed", str(err)) from None
    summary = await asyncio.to_thread(preview.page_summary, page.content_type, page.body, page.url)
    return {"success": True, "preview": {"url": query.url, "finalUrl": page.url, "status": page.status,
                                         "contentType": page.content_type, "truncated": page.truncated, **summary}}


# ---- skills ------------------------------------------------------------------------------


def skills_dir(hub: Hub, user_id: str, skill_id: str | None = None) -> Path:
    base = Path(hub.settings.home) / "skills" / user_id
    return base / skill_id if skill_id else base


def skill_json(row: dict[str, Any], full: bool = False) -> dict[str, Any]:
    out = {"id": row["id"], "name": row["name"], "description": row["description"], "version": row["version"],
           "enabled": bool(row["enabled"]), "source": row["source"], "metadata": row["meta"] or {},
           "files": row["files"] or [], "createdAt": iso(row["created_at"]), "updatedAt": iso(row["updated_at"])}
    if full:
        out["content"] = row["content"]
    return out


def skill_not_found() -> ApiError:
    return not_found("Skill not found", "skill_not_found")


def invalid(err: skills.SkillError) -> ApiError:
    return bad_request("Invalid skill", err.code, str(err))


def compose(name: str, description: str, body: str, meta: dict[str, Any] | None) -> str:
    """A SKILL.md from fields: YAML front matter (safe_dump) and the body."""
    front = {"name": name, "description": description, **(meta or {})}
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n" + body


def from_fields(name: str | None, description: str | None, content: str | None, meta: dict[str, Any] | None) -> skills.Skill:
    """A Skill from a SKILL.md `content` (front matter wins unless fields are given) or from fields."""
    try:
        if content is not None:
            try:
                parsed = skills.parse_skill_md(content)
            except skills.SkillError:
                if not (name and description) or content.lstrip().startswith("---"):
                    raise  # fenced front matter must parse; unfenced text with fields given is the body
                parsed = skills.parse_skill_md(compose(skills.check_name(name), description, content, meta))
                return parsed
            if name:
                parsed.name = skills.check_name(name)
            if description:
                parsed.description = description
            if meta:
                parsed.meta = {**parsed.meta, **meta}
            return parsed
        if not (name and description):
            raise skills.SkillError("Give `name` and `description`, or a SKILL.md `content` with front matter", "invalid_input")
        return skills.parse_skill_md(compose(skills.check_name(name), description, "", meta))
    except skills.SkillError as err:
        raise invalid(err) from None


async def _insert(hub: Hub, user_id: str, skill: skills.Skill, source: str, enabled: bool = True) -> dict[str, Any]:
    skill_id = new_id("skill")
    now = now_ms()
    row = {"id": skill_id, "user_id": user_id, "name": skill.name, "description": skill.description, "version": skill.version,
           "content": skill.content, "meta": skill.meta, "files": sorted(skill.files), "enabled": enabled, "source": source,
           "created_at": now, "updated_at": now}
    folder = skills_dir(hub, user_id, skill_id)
    if skill.files:
        await asyncio.to_thread(_write_skill_files, folder, skill.files)
    try:
        async with hub.engine.begin() as conn:
            await skill_store.create(conn, row)
    except skill_store.NameTaken:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise ApiError(409, "A skill with that name exists", "skill_exists", skill.name) from None
    except skill_store.TooMany:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise ApiError(400, "Too many skills", "too_many_skills", f"at most {skill_store.MAX_SKILLS}") from None
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise
    return row


def _write_skill_files(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        ws.write_file(folder, ws.parts_of(rel), data)  # the same no-escape walk as the workspace


class SkillBody(Body):
    name: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    content: str | None = Field(default=None, max_length=skills.MAX_SKILL_MD, validation_alias=AliasChoices("content", "instructions"))
    metadata: dict[str, Any] | None = None
    enabled: bool | None = None


@endpoint()
async def list_skills(request: Request, user: Principal):
    """The person's skills (seed curl 7): `{skills, total}`."""
    async with hub_of(request).engine.connect() as conn:
        rows = await skill_store.list_skills(conn, user.id)
    return {"success": True, "skills": [skill_json(r) for r in rows], "total": len(rows)}


@endpoint(body=SkillBody)
async def create_skill(request: Request, user: Principal, body: SkillBody):
    """Create a skill from `{name, description, content?}` or a SKILL.md `content`: `{success, skill}` (201)."""
    skill = from_fields(body.name, body.description, body.content, body.metadata)
    row = await _insert(hub_of(request), user.id, skill, "created", True if body.enabled is None else body.enabled)
    return json({"success": True, "skill": skill_json(row, full=True)}, 201)


async def _skill(request: Request, user: Principal, skill_id: str) -> dict[str, Any]:
    row = None
    if len(skill_id) <= 40:
        async with hub_of(request).engine.connect() as conn:
            row = await skill_store.get(conn, user.id, skill_id)
    if row is None:
        raise skill_not_found()
    return row


@endpoint()
async def get_skill(request: Request, user: Principal):
    """One skill with its SKILL.md: `{skill}`."""
    return {"success": True, "skill": skill_json(await _skill(request, user, request.path_params["skillId"]), full=True)}


@endpoint(body=SkillBody)
async def update_skill(request: Request, user: Principal, body: SkillBody):
    """Change name, description, content, metadata or enabled: `{success, skill}`."""
    hub = hub_of(request)
    row = await _skill(request, user, request.path_params["skillId"])
    changes: dict[str, Any] = {}
    if body.content is not None or body.name is not None or body.description is not None or body.metadata is not None:
        skill = from_fields(body.name or row["name"], body.description or row["description"],
                            body.content if body.content is not None else row["content"], body.metadata)
        changes.update(name=skill.name, description=skill.description, version=skill.version, content=skill.content, meta=skill.meta)
    if body.enabled is not None:
        changes["enabled"] = body.enabled
    if not changes:
        raise bad_request("Nothing to change", "invalid_input", "give name, description, content, metadata or enabled")
    changes["updated_at"] = now_ms()
    try:
        async with hub.engine.begin() as conn:
            updated = await skill_store.update(conn, user.id, row["id"], changes)
    except skill_store.NameTaken:
        raise ApiError(409, "A skill with that name exists", "skill_exists", changes.get("name")) from None
    if updated is None:
        raise skill_not_found()
    return {"success": True, "skill": skill_json(updated, full=True)}


@endpoint()
async def delete_skill(request: Request, user: Principal):
    """Delete a skill and its files: `{success, deleted}`."""
    hub = hub_of(request)
    row = await _skill(request, user, request.path_params["skillId"])
    async with hub.engine.begin() as conn:
        if not await skill_store.delete(conn, user.id, row["id"]):
            raise skill_not_found()
    await asyncio.to_thread(shutil.rmtree, skills_dir(hub, user.id, row["id"]), True)
    return {"success": True, "deleted": row["id"]}


class ToggleBody(Body):
    skill_id: str = Field(min_length=1, max_length=40, validation_alias=AliasChoices("skillId", "id"))
    enabled: bool | None = None


@endpoint(body=ToggleBody)
async def toggle_skill(request: Request, user: Principal, body: ToggleBody):
    """Enable or disable a skill (`{skillId, enabled?}`; without `enabled` it flips): `{success, skill}`."""
    row = await _skill(request, user, body.skill_id)
    enabled = (not row["enabled"]) if body.enabled is None else body.enabled
    async with hub_of(request).engine.begin() as conn:
        updated = await skill_store.update(conn, user.id, row["id"], {"enabled": enabled, "updated_at": now_ms()})
    if updated is None:
        raise skill_not_found()
    return {"success": True, "skill": skill_json(updated)}


@endpoint()
async def upload_skill(request: Request, user: Principal):
    """A skill from a multipart `file`: a zip (SKILL.md and its files) or a SKILL.md: `{success, skill}` (201)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("Send the skill as multipart/form-data", "invalid_input")
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as err:  # python-multipart raises several types on malformed bodies
        if isinstance(getattr(err, "status", None), int):
            raise
        raise bad_request("Malformed multipart body", "invalid_input", type(err).__name__) from None
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise bad_request("Missing multipart file field `file`", "invalid_input")
        if (part.size or 0) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Skill upload too large", "file_too_large", f"the limit is {MAX_UPLOAD_BYTES} bytes")
        data = await part.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Skill upload too large", "file_too_large", f"the limit is {MAX_UPLOAD_BYTES} bytes")
        name = (part.filename or "").lower()
    finally:
        await form.close()
    try:
        if data[:4] == b"PK\x03\x04" or name.endswith(".zip"):
            skill = await asyncio.to_thread(skills.parse_zip, data)
        else:
            skill = skills.parse_skill_md(skills.decode_md(data))
    except skills.SkillError as err:
        raise invalid(err) from None
    row = await _insert(hub_of(request), user.id, skill, "upload")
    return json({"success": True, "skill": skill_json(row, full=True)}, 201)


class MetadataQuery(Body):
    skill_id: str | None = Field(default=None, max_length=40, validation_alias=AliasChoices("skillId", "id"))


@endpoint(query=MetadataQuery)
async def skills_metadata(request: Request, user: Principal, query: MetadataQuery):
    """Name, description, version and state of each skill (no content), or of `?skillId=`."""
    if query.skill_id:
        rows = [await _skill(request, user, query.skill_id)]
    else:
        async with hub_of(request).engine.connect() as conn:
            rows = await skill_store.list_skills(conn, user.id)
    items = [{"id": r["id"], "name": r["name"], "description": r["description"], "version": r["version"],
              "enabled": bool(r["enabled"]), "metadata": r["meta"] or {}, "fileCount": len(r["files"] or [])} for r in rows]
    return {"success": True, "skills": items, "total": len(items), "enabled": sum(1 for i in items if i["enabled"])}


routes = [
    Route("/api/workspace/artifacts", list_artifacts, methods=["GET"]),
    Route("/api/workspace/files", list_files, methods=["GET"]),
    Route("/api/workspace/file/{path:path}", get_file, methods=["GET"]),
    Route("/api/workspace/file/{path:path}", put_file, methods=["PUT"]),
    Route("/api/workspace/file/{path:path}", delete_file, methods=["DELETE"]),
    Route("/api/workspace/preview", preview_file, methods=["GET"]),
    Route("/api/workspace/external-preview", external_preview, methods=["GET"]),
    Route("/api/workspace/skills", list_skills, methods=["GET"]),
    Route("/api/workspace/skills", create_skill, methods=["POST"]),
    Route("/api/workspace/skills/metadata", skills_metadata, methods=["GET"]),
    Route("/api/workspace/skills/toggle", toggle_skill, methods=["POST"]),
    Route("/api/workspace/skills/upload", upload_skill, methods=["POST"]),
    Route("/api/workspace/skills/{skillId}", get_skill, methods=["GET"]),
    Route("/api/workspace/skills/{skillId}", update_skill, methods=["PUT"]),
    Route("/api/workspace/skills/{skillId}", delete_skill, methods=["DELETE"]),
]
