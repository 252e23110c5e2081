"""The WhatsApp fakes themselves, spoken to over HTTP as Meta's documentation describes (Meta
publishes no Python SDK for the Cloud API; the connector uses httpx, as here)."""

from __future__ import annotations

import hashlib
import hmac

import httpx
from aiohttp import web

from tests.fakes.whatsapp import FakeGraph, Meta

NUMBER, TOKEN = "106540352242922", "EAAtestTokenForTheFakeGraphApi0000"


async def test_the_graph_api_reads_numbers_and_takes_sends() -> None:
    async with FakeGraph() as graph:
        graph.add_number(NUMBER, TOKEN, verified_name="Cafe")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=graph.base_url + "/") as http:
            number = (await http.get(NUMBER, params={"fields": "verified_name"}, headers=auth)).json()
            assert number == {"id": NUMBER, "verified_name": "Cafe"}
            bad = await http.get(NUMBER, headers={"Authorization": "Bearer EAAnotTheTokenAtAll000"})
            assert bad.status_code == 401 and bad.json()["error"]["code"] == 190
            unknown = await http.get("999999", headers=auth)
            assert unknown.status_code == 400 and unknown.json()["error"]["code"] == 100
            body = {"messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": {"body": "hi"}}
            sent = (await http.post(f"{NUMBER}/messages", json=body, headers=auth)).json()
            assert sent["messages"][0]["id"].startswith("wamid.") and graph.sent[0]["text"] == {"body": "hi"}
            graph.fail_next(1)
            limited = await http.post(f"{NUMBER}/messages", json=body, headers=auth)
            assert limited.status_code == 429 and limited.json()["error"]["code"] == 130429
            assert (await http.post(f"{NUMBER}/messages", json=body, headers=auth)).status_code == 200
            missing = await http.post(f"{NUMBER}/messages", json={"to": "1"}, headers=auth)
            assert missing.status_code == 400 and len(graph.sent) == 2


async def test_meta_signs_deliveries_and_retries_until_answered() -> None:
    seen: list[tuple[bytes, str]] = []
    answers = [500, 503, 200]

    async def hook(request: web.Request) -> web.Response:
        seen.append((await request.read(), request.headers["X-Hub-Signature-256"]))
        return web.Response(status=answers[len(seen) - 1])

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        meta = Meta("app-secret", NUMBER)
        delivery, wamid = meta.message("16505551234", "Alice", text="hello")
        status = await meta.deliver(f"http://127.0.0.1:{runner.addresses[0][1]}/hook", delivery)
        assert status == 200 and len(seen) == 3 and len({body for body, _ in seen}) == 1  # the same delivery, retried
        body, signature = seen[0]
        assert signature == "sha256=" + hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
        assert b'"phone_number_id":"106540352242922"' in body and wamid.encode() in body
    finally:
        await runner.cleanup()
