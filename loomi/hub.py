"""The runtime every part shares: settings, database engine, Redis, vault and token service.

One object, opened once per process (API, worker, CLI command), so no module reaches for
globals and tests can open as many hubs as they like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from config.settings import Settings, old_secret_keys, secret_key
from connectors.base import Connector
from connectors.registry import make_connector
from loomi.tokens import TokenService
from store.crypto import Vault
from store.db import create_engine


@dataclass
class Hub:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    vault: Vault
    tokens: TokenService
    extras: dict[str, Any] = field(default_factory=dict)  # per-process services: supervisors, clients
    connectors: dict[str, Connector] = field(default_factory=dict, repr=False)

    @classmethod
    async def open(cls, settings: Settings, redis_url: str | None = None) -> "Hub":
        url = redis_url or settings.redis_url
        if url is None:
            raise RuntimeError("no Redis: set LOOMI_REDIS_URL or let `loomi serve` start the embedded one")
        secret, old = secret_key(settings), old_secret_keys(settings)
        return cls(
            settings=settings,
            engine=create_engine(settings.database),
            redis=Redis.from_url(url, decode_responses=False),
            # a key generated into LOOMI_HOME may be replaced while we run (loomi keys rotate --new-key)
            vault=Vault(secret, old, reload=None if settings.secret_key else lambda: (secret_key(settings), old_secret_keys(settings))),
            tokens=TokenService(secret, old, ttl_seconds=settings.token_ttl_days * 86400),
        )

    def connector(self, platform: str) -> Connector:
        """The process's one connector for `platform` (connectors are per platform, not per
        account). Raises connectors.registry.UnknownPlatform."""
        if platform not in self.connectors:
            self.connectors[platform] = make_connector(platform, self.settings.platform(platform))
        return self.connectors[platform]

    @property
    def redis_url(self) -> str:
        kwargs = self.redis.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
        return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

    async def close(self) -> None:
        for extra in self.extras.values():
            closer = getattr(extra, "aclose", None)
            if closer is not None:
                await closer()
        await self.redis.aclose()
        await self.engine.dispose()
