"""/api/workspace/external-preview: public pages only, on SQLite and PostgreSQL.

No traffic leaves this machine. Names resolve through a test resolver (app.state's
`preview_resolver`, a dict; unknown names fail without any DNS query). The page server is a
real aiohttp server on 127.0.0.2; it is reachable only while a test allow-lists 127.0.0.2/32
through LOOMI_PREVIEW_ALLOW_NETWORKS (set on the session hub and restored), so redirects to
127.0.0.1, localhost or [::1] stay refused. Hostile URLs are refused before any connection:
none of them names an address that would pass.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import httpx
import pytest
from aiohttp import web

from tests.api.test_bad_input import assert_seed_400

PAGE = (b"<html><head><title>Fallback title</title><meta property='og:title' content='Release 2.0'>"
        b"<meta name='description' content='Everything new in 2.0'><script>var hidden = 1;</script></head>"
        b"<body><h1>Release</h1><p>Faster sync and <b>fewer</b> bugs.</p></body></html>")


class PageServer:
    """Pages, redirects, a slow and a huge answer; remembers the Host header of each request."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/page", self.page)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/loop", self.loop)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/big", self.big)
        app.router.add_get("/plain", self.plain)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.2", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def page(self, request: web.Request) -> web.Response:
        self.hosts.append(request.headers.get("Host", ""))
        return web.Response(body=PAGE, content_type="text/html")

    async def plain(self, request: web.Request) -> web.Response:
        return web.Response(text="just text", content_type="text/plain")

    async def redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})  # as given: HTTPFound would parse it

    async def loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 65536)
        return response


NAMES = {
    "public.test": ["127.0.0.2"],  # allow-listed only inside tests that set the setting
    "localhost": ["127.0.0.1", "::1"],
    "private.test": ["10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["127.0.0.2", "192.168.1.10"],  # one private answer is enough to refuse
    "v6private.test": ["fd00::1"],
}


class Resolver:
    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names, self.calls = names, []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.names:
            raise OSError(f"test resolver: no such name {host}")
        return self.names[host]


@pytest.fixture
async def pages() -> AsyncIterator[PageServer]:
    server = PageServer()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


@pytest.fixture
def resolver(server: Any) -> Any:
    app = server.server.config.app
    resolve = Resolver(dict(NAMES))
    app.state.preview_resolver = resolve
    yield resolve
    app.state.preview_resolver = None


@pytest.fixture
def allow_test_server(hub: Any) -> Any:
    old = hub.settings.preview_allow_networks
    hub.settings.preview_allow_networks = "127.0.0.2/32"
    yield
    hub.settings.preview_allow_networks = old


async def preview(client: httpx.AsyncClient, user: dict[str, Any], url: str) -> httpx.Response:
    return await client.get("/api/workspace/external-preview", params={"url": url}, headers=user["headers"])


async def test_public_page_title_description_text(client: httpx.AsyncClient, user: dict[str, Any], pages: PageServer, resolver: Resolver,
                                                  allow_test_server: None) -> None:
    r = await preview(client, user, f"http://public.test:{pages.port}/page")
    assert r.status_code == 200, r.text
    p = r.json()["preview"]
    assert p["title"] == "Release 2.0" and p["description"] == "Everything new in 2.0" and p["status"] == 200
    assert "Faster sync and fewer bugs." in p["text"] and "hidden" not in p["text"]
    assert pages.hosts == [f"public.test:{pages.port}"]  # the name went in Host; the connection went to the checked address
    assert resolver.calls == ["public.test"]  # resolved once: the connection used that answer (no second lookup to rebind)
    plain = (await preview(client, user, f"http://public.test:{pages.port}/plain")).json()["preview"]
    assert plain["text"] == "just text" and plain["title"] is None


async def test_redirects_are_followed_and_each_hop_checked(client: httpx.AsyncClient, user: dict[str, Any], pages: PageServer,
                                                           resolver: Resolver, allow_test_server: None) -> None:
    base = f"http://public.test:{pages.port}"
    ok = await client.get("/api/workspace/external-preview", params={"url": f"{base}/redirect?to={base}/page"}, headers=user["headers"])
    assert ok.status_code == 200 and ok.json()["preview"]["finalUrl"] == f"{base}/page"
    for target in (f"http://127.0.0.1:{pages.port}/page", f"http://localhost:{pages.port}/page", f"http://[::1]:{pages.port}/page",
                   "http://169.254.169.254/latest/meta-data/", "http://private.test/", "http://2130706433/", "file:///etc/passwd",
                   f"http://0177.0.0.1:{pages.port}/"):
        r = await preview(client, user, f"{base}/redirect?to={target}")
        assert r.status_code == 400, (target, r.text)
        assert_seed_400(r)
        assert r.json()["code"] == "url_not_allowed", target
    loop = await preview(client, user, f"{base}/loop")
    assert loop.status_code == 502 and "redirects" in loop.json()["cause"]


async def test_time_and_size_limits(hub: Any, client: httpx.AsyncClient, user: dict[str, Any], pages: PageServer, resolver: Resolver,
                                    allow_test_server: None) -> None:
    old = hub.settings.preview_timeout_seconds, hub.settings.preview_max_bytes
    hub.settings.preview_timeout_seconds, hub.settings.preview_max_bytes = 0.5, 10_000
    try:
        started = asyncio.get_running_loop().time()
        slow = await preview(client, user, f"http://public.test:{pages.port}/slow")
        assert slow.status_code == 504 and slow.json()["code"] == "fetch_failed"
        assert asyncio.get_running_loop().time() - started < 3
        big = (await preview(client, user, f"http://public.test:{pages.port}/big")).json()["preview"]
        assert big["truncated"] is True and len(big["text"]) == 10_000
    finally:
        hub.settings.preview_timeout_seconds, hub.settings.preview_max_bytes = old


async def test_default_refuses_loopback_even_the_test_server(client: httpx.AsyncClient, user: dict[str, Any], pages: PageServer,
                                                             resolver: Resolver) -> None:
    for url in (f"http://127.0.0.2:{pages.port}/page", f"http://public.test:{pages.port}/page", f"http://127.0.0.1:{pages.port}/page"):
        r = await preview(client, user, url)
        assert_seed_400(r)
        assert r.json()["code"] == "url_not_allowed"
    assert pages.hosts == []  # never reached


HOSTILE = [
    "http://127.0.0.1/", "http://127.1/", "http://0.0.0.0/", "http://0/", "http://localhost/", "http://[::1]/", "http://[::]/",
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[64:ff9b::7f00:1]/", "http://2130706433/", "http://0177.0.0.1/",
    "http://0x7f.0.0.1/", "http://0x7f000001/", "http://017700000001/", "http://10.0.0.1/", "http://10.255.255.255:8080/x",
    "http://172.16.0.1/", "http://192.168.0.1/", "http://100.64.0.1/", "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/", "http://[fe80::1]/", "http://224.0.0.1/", "http://240.0.0.1/", "http://255.255.255.255/",
    "http://private.test/", "http://metadata.test/", "http://mixed.test/", "http://v6private.test/", "http://localhost.:80/",
    "file:///etc/passwd", "ftp://public.test/", "gopher://public.test/", "javascript:alert(1)", "http://user:pw@public.test/",
    "http:///nohost", "http://[::1/", "not a url",
]


@pytest.mark.parametrize("url", HOSTILE)
async def test_hostile_urls_are_refused(client: httpx.AsyncClient, user: dict[str, Any], resolver: Resolver, url: str) -> None:
    r = await preview(client, user, url)
    body = assert_seed_400(r)
    assert body["code"] == "url_not_allowed", body


async def test_unknown_names_fail_without_leaving_the_machine(client: httpx.AsyncClient, user: dict[str, Any], resolver: Resolver) -> None:
    r = await preview(client, user, "http://nowhere.invalid/")
    assert r.status_code == 502 and r.json()["code"] == "fetch_failed" and resolver.calls == ["nowhere.invalid"]


async def test_bad_input_and_login(client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    assert_seed_400(await client.get("/api/workspace/external-preview", headers=user["headers"]))
    assert_seed_400(await preview(client, user, "http://x/" + "a" * 2100))
    assert (await client.get("/api/workspace/external-preview", params={"url": "http://public.test/"})).status_code == 401


@pytest.mark.parametrize(("cert_name", "ok"), [("public.test", True), ("someone-else.test", False)])
async def test_https_to_the_pinned_address_checks_the_certificate_against_the_name(
    server: Any, client: httpx.AsyncClient, user: dict[str, Any], resolver: Resolver, allow_test_server: None, cert_name: str, ok: bool
) -> None:
    """The connection goes to the checked address, yet TLS (SNI and the certificate check) uses
    the URL's name: a certificate for another name is refused, not skipped."""
    from tests.workspace.certs import TestCA

    ca = TestCA()
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    app.router.add_get("/page", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0, ssl_context=ca.server_context(cert_name))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.server.config.app.state.preview_ssl_context = ca.client_context()
    try:
        r = await preview(client, user, f"https://public.test:{port}/page")
        if ok:
            assert r.status_code == 200, r.text
            assert r.json()["preview"]["title"] == "Release 2.0"
        else:
            assert r.status_code == 502 and r.json()["code"] == "fetch_failed", r.text
            assert "ConnectError" in r.json()["cause"]  # the TLS handshake failed on the name
    finally:
        server.server.config.app.state.preview_ssl_context = None
        await runner.cleanup()
