"""Uploads are the owner's: listed, fetched, read back and deleted with the official `openai`
client (OpenAI's files API shapes); anybody else gets a 404, on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import register


def sdk(server: Any, who: dict[str, Any]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=who["token"], base_url=server.url + "/api/ai/v1", max_retries=0)


async def test_owner_lists_fetches_reads_and_deletes(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    mine = sdk(server, me)
    first = await mine.files.create(file=("notes.txt", b"first file\n", "text/plain"), purpose="assistants")
    r = await client.post("/api/ai/v1/upload", headers=me["headers"],
                          files={"file": ("data.jsonl", b'{"a": 1}\n', "application/jsonl")}, data={"purpose": "batch"})
    assert r.status_code == 200, r.text
    second = r.json()

    listed = await mine.files.list()
    assert [f.id for f in listed.data] == [second["id"], first.id]  # newest first
    assert listed.data[1].filename == "notes.txt" and listed.data[1].bytes == 11 and listed.data[1].purpose == "assistants"
    assert [f.id for f in (await mine.files.list(purpose="batch")).data] == [second["id"]]
    page = await mine.files.list(limit=1)
    assert [f.id for f in page.data] == [second["id"]] and page.has_more is True
    assert [f.id for f in (await mine.files.list(limit=1, after=second["id"])).data] == [first.id]

    fetched = await mine.files.retrieve(first.id)
    assert fetched.id == first.id and fetched.filename == "notes.txt" and fetched.object == "file"
    content = await mine.files.content(first.id)
    assert content.content == b"first file\n"
    raw = await client.get(f"/api/ai/v1/files/{second['id']}/content", headers=me["headers"])
    assert raw.status_code == 200 and raw.content == b'{"a": 1}\n' and raw.headers["content-type"].startswith("application/jsonl")

    deleted = await mine.files.delete(first.id)
    assert deleted.deleted is True and deleted.id == first.id
    folder = Path(hub.settings.home) / "ai-uploads" / me["user"]["id"]
    assert not (folder / first.id).exists() and not (folder / f"{first.id}.json").exists()
    assert [f.id for f in (await mine.files.list()).data] == [second["id"]]
    with pytest.raises(openai.NotFoundError):
        await mine.files.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        await mine.files.delete(first.id)  # twice: already gone


async def test_other_users_get_404_and_change_nothing(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    owner, other = await register(client), await register(client)
    created = await sdk(server, owner).files.create(file=("secret.txt", b"owner only", "text/plain"), purpose="assistants")
    theirs = sdk(server, other)
    assert (await theirs.files.list()).data == []
    for call in (theirs.files.retrieve, theirs.files.content, theirs.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            await call(created.id)
        assert caught.value.code == "file_not_found"
    r = await client.get(f"/api/ai/v1/files/{created.id}/content", headers=other["headers"])
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error" and b"owner only" not in r.content
    # still there for its owner
    assert (await sdk(server, owner).files.content(created.id)).content == b"owner only"
    # not authenticated: 401, in OpenAI's shape
    r = await client.get(f"/api/ai/v1/files/{created.id}")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("bad", ["..%2F..%2Ftoken", "file_x.json", "not-a-file-id", "file_" + "a" * 300])
async def test_ids_that_are_not_file_ids_are_404(client: httpx.AsyncClient, user: dict, bad: str) -> None:
    for method in ("GET", "DELETE"):
        r = await client.request(method, f"/api/ai/v1/files/{bad}", headers=user["headers"])
        assert r.status_code == 404, (method, bad, r.text)
    r = await client.get(f"/api/ai/v1/files/{bad}/content", headers=user["headers"])
    assert r.status_code == 404


async def test_deleting_frees_the_quota(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    saved = hub.settings.user_quota_bytes
    hub.settings.user_quota_bytes = 100
    try:
        one = await sdk(server, me).files.create(file=("a.bin", b"x" * 80, "application/octet-stream"), purpose="assistants")
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk(server, me).files.create(file=("b.bin", b"y" * 80, "application/octet-stream"), purpose="assistants")
        assert caught.value.status_code == 413
        await sdk(server, me).files.delete(one.id)
        two = await sdk(server, me).files.create(file=("b.bin", b"y" * 80, "application/octet-stream"), purpose="assistants")
        assert [f.id for f in (await sdk(server, me).files.list()).data] == [two.id]
    finally:
        hub.settings.user_quota_bytes = saved
