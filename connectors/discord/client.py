"""discord.py's HTTP client aimed at `LOOMI_DISCORD_BASE_URL`, and the error mapping shared by
the listener, history, sends and OAuth.

Why a subclass: discord.py builds every URL from the class attribute `Route.BASE`; patching it
would aim every client in the process at one host. `request` rewrites the route's URL onto
this client's base instead, and everything else - bucket tracking from `X-RateLimit-*`,
waiting out 429s for `retry_after`, the global limit - stays discord.py's.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, TypeVar

import discord
from discord.http import HTTPClient, Route

from connectors.base import NeedsReauth, NotConfigured, RateLimited
from connectors.discord.settings import DiscordSettings

T = TypeVar("T")

# The longest 429 wait discord.py sits out itself (its minimum is 30 s); beyond it the call
# raises and the caller gets RateLimited with Discord's retry_after.
MAX_RATELIMIT_WAIT = 30.0
DISCORD_EPOCH_MS = 1_420_070_400_000


class LoomiHTTP(HTTPClient):
    """discord.py's HTTPClient whose routes go to `base_url`."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(asyncio.get_running_loop(), max_ratelimit_timeout=MAX_RATELIMIT_WAIT, **kwargs)
        self.base_url = base_url.rstrip("/")

    async def request(self, route: Route, **kwargs: Any) -> Any:
        if route.url.startswith(Route.BASE) and Route.BASE != self.base_url:
            route.url = self.base_url + route.url[len(Route.BASE):]
        return await super().request(route, **kwargs)


def bot_token(settings: DiscordSettings) -> str:
    if settings.bot_token is None or not settings.bot_token.get_secret_value().strip():
        raise NotConfigured("LOOMI_DISCORD_BOT_TOKEN", "set LOOMI_DISCORD_BOT_TOKEN to the bot's token")
    return settings.bot_token.get_secret_value().strip()


async def open_http(settings: DiscordSettings) -> tuple[LoomiHTTP, dict[str, Any]]:
    """A logged-in client and the bot user (`GET /users/@me`, which discord.py's login does)."""
    http = LoomiHTTP(settings.base_url)
    try:
        me = await call(http.static_login(bot_token(settings)))
    except BaseException:
        await http.close()
        raise
    return http, me


async def call(request: Awaitable[T]) -> T:
    """Await one discord.py REST call, mapping its refusals onto the hub's exceptions:
    401 -> NeedsReauth (the bot token is dead), a 429 discord.py would not wait out ->
    RateLimited with Discord's retry_after. Other HTTP errors propagate."""
    try:
        return await request
    except discord.LoginFailure:
        raise NeedsReauth("Discord rejected the bot token (401 Unauthorized)") from None
    except discord.RateLimited as err:
        raise RateLimited(err.retry_after, f"Discord rate limit: retry after {err.retry_after:.1f} s") from None
    except discord.HTTPException as err:
        if err.status == 401:
            raise NeedsReauth(f"Discord rejected the bot token: {err.text or 'Unauthorized'}") from None
        if err.status == 429:  # still limited after discord.py's own retries
            raise RateLimited(retry_after(err), "Discord rate limit after retries") from None
        raise


def retry_after(err: discord.HTTPException) -> float:
    headers = getattr(err.response, "headers", None) or {}
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return max(0.0, float(headers[name]))
        except (KeyError, TypeError, ValueError):
            continue
    return 1.0


def snowflake_ms(snowflake: int | str) -> int:
    """When a snowflake was made (epoch ms): its top 42 bits count ms since 2015."""
    return (int(snowflake) >> 22) + DISCORD_EPOCH_MS


def snowflake_before_ms(ms: int) -> int:
    """The largest snowflake made before `ms`: `after=` it reads everything from `ms` on. The
    hub's `oldest` is exclusive, but another message can share that millisecond; re-reading
    one millisecond costs nothing (ingest keeps each message once) and loses nothing."""
    return ((ms - DISCORD_EPOCH_MS) << 22) - 1


class Rest:
    """One logged-in client per connector and event loop, shared by sends, history and OAuth:
    discord.py learns rate-limit buckets per client, so calls must share one to be paced."""

    def __init__(self, settings: DiscordSettings) -> None:
        self.settings = settings
        self._http: LoomiHTTP | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self.bot_user_id: str | None = None
        self._guild_of: dict[str, str | None] = {}  # channel id -> guild id (channels never move)

    async def http(self) -> LoomiHTTP:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._http, self._loop, self._lock = None, loop, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            if self._http is None:
                self._http, me = await open_http(self.settings)
                self.bot_user_id = str(me["id"])
        return self._http

    def remember(self, channel: dict[str, Any]) -> None:
        self._guild_of[str(channel["id"])] = str(channel["guild_id"]) if channel.get("guild_id") else None

    async def require_guild(self, guild_id: str, channel_id: str) -> None:
        """Channel ids are global and the bot sits in many guilds: an account may only read and
        write the channels of its own guild."""
        if channel_id not in self._guild_of:
            http = await self.http()
            self.remember(await call(http.get_channel(channel_id)))
        if self._guild_of[channel_id] != guild_id:
            raise ValueError(f"channel {channel_id} is not in this account's guild")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
