"""Which connector serves which platform: the `connector` column of the platform table."""

from __future__ import annotations

from functools import lru_cache

from config.platforms import PLATFORMS, load_class
from config.settings import PlatformSettings
from connectors.base import Connector


class UnknownPlatform(KeyError):
    pass


def chat_platforms() -> list[str]:
    """Platforms a person can connect a chat account on."""
    return [name for name, row in PLATFORMS.items() if row.connector]


def has_connector(platform: str) -> bool:
    row = PLATFORMS.get(platform)
    return bool(row and row.connector)


@lru_cache(maxsize=None)
def connector_class(platform: str) -> type[Connector]:
    if not has_connector(platform):
        raise UnknownPlatform(platform)
    return load_class(PLATFORMS[platform].connector)  # type: ignore[arg-type]


def make_connector(platform: str, settings: PlatformSettings) -> Connector:
    return connector_class(platform)(settings)
