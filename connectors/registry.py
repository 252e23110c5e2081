"""Which connector serves which platform. Adding a platform is one folder plus one line here."""

from __future__ import annotations

import importlib
from functools import lru_cache

from config.settings import PlatformSettings
from connectors.base import Connector

CONNECTORS: dict[str, str] = {
    "slack": "connectors.slack.connector:SlackConnector",
    "telegram": "connectors.telegram.connector:TelegramConnector",
}


class UnknownPlatform(KeyError):
    pass


@lru_cache(maxsize=None)
def connector_class(platform: str) -> type[Connector]:
    try:
        module, _, name = CONNECTORS[platform].partition(":")
    except KeyError:
        raise UnknownPlatform(platform) from None
    return getattr(importlib.import_module(module), name)


def make_connector(platform: str, settings: PlatformSettings) -> Connector:
    return connector_class(platform)(settings)
