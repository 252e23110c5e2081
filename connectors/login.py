"""Signing in to the hub with a provider account (GitHub, Google): the person, not a chat account.

An optional ability beside the chat connectors of `connectors/base.py`: the shared OAuth
machinery (`connectors/oauth.py`) builds the authorize URL and exchanges the code; a
LoginProvider only turns the token response into a LoginProfile. Providers are found through
their row of the platform table (`login`), like chat connectors (`connector`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
from pydantic import field_validator

from config.platforms import PLATFORMS, load_class
from config.settings import PlatformSettings, http_url

class LoginSettings(PlatformSettings):
    """A sign-in provider's hosts where it has several (`LOOMI_GITHUB_API_URL`…)."""

    api_url: str | None = None

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        return http_url(value)


@dataclass(frozen=True)
class LoginProfile:
    email: str  # verified by the provider, lower-case
    name: str
    avatar_url: str | None
    provider_user_id: str  # GitHub numeric id, Google `sub`: stable where emails are not


class LoginRefused(Exception):
    """The provider would not tell us who this is (token rejected, API error, unreachable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class EmailUnverified(Exception):
    """The account has no verified email: signing in with it could take over someone's account."""


@runtime_checkable
class LoginProvider(Protocol):
    platform: ClassVar[str]

    def __init__(self, settings: PlatformSettings) -> None: ...

    async def profile(self, token: dict[str, Any]) -> LoginProfile:
        """The person behind a token endpoint answer. Raise EmailUnverified when the provider
        vouches for no email, LoginRefused when it will not answer. Never log the token."""


@lru_cache(maxsize=None)
def login_provider_class(name: str) -> type[LoginProvider]:
    platform = PLATFORMS[name]
    if platform.login is None:
        raise KeyError(name)
    return load_class(platform.login)


def make_login_provider(name: str, settings: PlatformSettings) -> LoginProvider:
    """Raises KeyError for a platform that offers no sign-in."""
    return login_provider_class(name)(settings)


def api_root(settings: LoginSettings) -> str:
    """`LOOMI_<P>_API_URL`, else `LOOMI_<P>_BASE_URL`, else the platform's public API."""
    return (settings.api_url or settings.base_url).rstrip("/")


def access_token(token: dict[str, Any]) -> str:
    value = token.get("access_token") if isinstance(token, dict) else None
    if not isinstance(value, str) or not value:
        raise LoginRefused("token_rejected", "the token endpoint returned no access token")
    return value


def clean_avatar(url: Any) -> str | None:
    if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) <= 2000:
        return url
    return None


def clean_name(name: Any, fallback: str) -> str:
    text = name.strip() if isinstance(name, str) else ""
    return (text or fallback)[:200]


def clean_email(email: Any) -> str | None:
    if not isinstance(email, str):
        return None
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    return email if at and local and domain and len(email) <= 320 else None


async def get_json(http: httpx.AsyncClient, path: str, provider: str) -> Any:
    """GET a profile resource; every failure becomes LoginRefused (no token in the message)."""
    try:
        response = await http.get(path)
    except httpx.HTTPError as err:
        raise LoginRefused("provider_unreachable", f"{provider} could not be reached: {type(err).__name__}") from None
    if response.status_code == 401:
        raise LoginRefused("token_rejected", f"{provider} rejected the access token")
    if response.status_code >= 400:
        raise LoginRefused("provider_error", f"{provider} answered HTTP {response.status_code} on {path}")
    try:
        return response.json()
    except ValueError:
        raise LoginRefused("provider_error", f"{provider} answered {path} with something other than JSON") from None
