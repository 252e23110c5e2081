"""Fetch a public web page for a link preview, and nothing else.

Server-side request forgery is the risk: a URL naming (or resolving to, or redirecting to) the
hub's own machine, its network or a cloud metadata service. So: http(s) only, no credentials in
the URL; the host is resolved here (numeric forms too: `2130706433`, `0177.0.0.1`, `0x7f.1` are
read as inet_aton reads them) and every address it resolves to must be public (not loopback,
private, link-local, multicast, reserved, unspecified, shared 100.64/10, or an IPv4-mapped/NAT64
form of those); the connection then goes to that checked address with the original Host header
and TLS name (the address is pinned: a second DNS answer cannot switch it). Redirects are
followed by hand, at most MAX_REDIRECTS, each hop checked the same way. The whole fetch has one
deadline and the body is read up to a byte limit.

`allow` lists networks let through anyway (LOOMI_PREVIEW_ALLOW_NETWORKS: tests, intranets);
`resolve` can be replaced (tests point names at loopback servers without any DNS), and
`verify` (tests trust their own certificate authority).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable
from urllib.parse import urljoin, urlsplit

import httpx

MAX_REDIRECTS = 5
USER_AGENT = "openloomi-hub-preview/1.0"
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class Refused(ValueError):
    """The URL (or a redirect) is not a public http(s) address (400)."""


class FetchFailed(RuntimeError):
    """The page could not be fetched in time or at all (502/504)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Page:
    url: str
    status: int
    content_type: str
    body: bytes
    truncated: bool


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def parse_networks(text: str) -> list[Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


def numeric_host(host: str) -> IP | None:
    """An address written as a number in any form a resolver accepts, or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # decimal, octal, hex, short forms
    except OSError:
        return None


def is_public(ip: IP) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            return is_public(embedded)
        if ip.sixtofour is not None or ip.teredo is not None:
            return False
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return False
    return ip.is_global and not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def check_ip(ip: IP, allow: Iterable[Network]) -> None:
    if any(ip.version == net.version and ip in net for net in allow):
        return
    if not is_public(ip):
        raise Refused(f"the address {ip} is not public")


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or Refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused("only http and https URLs are fetched")
    if parts.username is not None or parts.password is not None:
        raise Refused("URLs with credentials are not fetched")
    host = (parts.hostname or "").rstrip(".")
    if not host or any(ord(ch) < 33 for ch in host) or "%" in host:
        raise Refused("the URL has no valid host")
    return scheme, host, port or (443 if scheme == "https" else 80)


async def pick_address(host: str, port: int, resolve: Resolver, allow: list[Network]) -> IP:
    """The address to connect to: every address the host resolves to must be allowed."""
    fixed = numeric_host(host)
    if fixed is not None:
        check_ip(fixed, allow)
        return fixed
    try:
        found = await resolve(host, port)
    except (OSError, UnicodeError) as err:
        raise FetchFailed(f"cannot resolve {host}: {type(err).__name__}") from None
    addresses = []
    for text in found:
        ip = ipaddress.ip_address(text.split("%")[0])
        check_ip(ip, allow)
        addresses.append(ip)
    if not addresses:
        raise FetchFailed(f"cannot resolve {host}")
    return addresses[0]


async def fetch(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    allow: list[Network] | None = None,
    resolve: Resolver = system_resolve,
    verify: ssl.SSLContext | bool = True,
) -> Page:
    """GET a public page (following checked redirects); Refused or FetchFailed otherwise."""
    allow = allow or []
    try:
        async with asyncio.timeout(timeout):
            # The transport itself, not a client: a client parses every Location header (and fails
            # on forms such as `0177.0.0.1`) before we could check it ourselves.
            async with httpx.AsyncHTTPTransport(retries=0, verify=verify, trust_env=False) as transport:
                for _hop in range(MAX_REDIRECTS + 1):
                    page, location = await _one(transport, url, max_bytes, timeout, allow, resolve)
                    if location is None:
                        return page
                    url = urljoin(url, location)
                raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise FetchFailed(f"no answer within {timeout} s", 504) from None


async def _one(
    transport: httpx.AsyncHTTPTransport, url: str, max_bytes: int, timeout: float, allow: list[Network], resolve: Resolver
) -> tuple[Page, str | None]:
    scheme, host, port = split_url(url)
    ip = await pick_address(host, port, resolve, allow)
    parts = urlsplit(url)
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    pinned = f"{scheme}://{literal}:{port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    default_port = port == (443 if scheme == "https" else 80)
    host_header = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
    extensions: dict[str, object] = {"timeout": httpx.Timeout(timeout).as_dict()}
    if scheme == "https":
        extensions["sni_hostname"] = host  # TLS checks the certificate against the name, not the pinned address
    request = httpx.Request(
        "GET", pinned,
        headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": "text/html,text/plain;q=0.9,*/*;q=0.5",
                 "Accept-Encoding": "identity"},  # no compressed bodies: the byte limit counts what arrives
        extensions=extensions,
    )
    try:
        response = await transport.handle_async_request(request)
    except httpx.HTTPError as err:
        raise FetchFailed(f"cannot fetch {host}: {type(err).__name__}") from None
    try:
        if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("location"):
            return Page(url, response.status_code, "", b"", False), response.headers["location"]
        body = bytearray()
        truncated = False
        async for block in response.aiter_bytes():
            body.extend(block)
            if len(body) > max_bytes:
                del body[max_bytes:]
                truncated = True
                break
        return Page(url, response.status_code, response.headers.get("content-type", ""), bytes(body), truncated), None
    except httpx.HTTPError as err:
        raise FetchFailed(f"cannot fetch {host}: {type(err).__name__}") from None
    finally:
        await response.aclose()
