"""Typed settings from the environment: the configuration contract of DESIGN.md.

Everything is optional. A bad value fails at start with one line naming the variable,
because a hub that starts half-configured loses messages later instead of failing now.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal, Mapping

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.platforms import PLATFORMS, load_class

ENV_PREFIX = "LOOMI_"
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class SettingsError(Exception):
    """One clear line: which variable is wrong and why."""


class PlatformSettings(BaseSettings):
    """`LOOMI_<PLATFORM>_*` every platform shares: where its connector sends its calls and the
    app's OAuth client. A platform with more (Slack's app token…) names its own subclass in
    its row of the platform table (`settings_model`), kept in its connector folder."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    base_url: str
    client_id: str | None = None
    client_secret: SecretStr | None = None
    redirect_uri: str | None = None
    auth_url: str | None = None  # the authorize page, where it is not under base_url
    token_url: str | None = None  # the token endpoint, where it is not under base_url

    @field_validator("base_url", "token_url", "auth_url", "redirect_uri")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @property
    def oauth_configured(self) -> bool:
        return bool(self.client_id and self.client_secret)


def http_url(value: str | None) -> str | None:
    """A URL setting: http(s) only, no trailing slash."""
    if value is None:
        return value
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False)

    home: Path = Field(default_factory=lambda: Path.home() / ".openloomi")
    database_url: str | None = None
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=3414, ge=0, le=65535)
    fallback_port: int = Field(default=3515, ge=0, le=65535)
    public_url: str | None = None
    secret_key: SecretStr | None = None
    old_secret_keys: SecretStr | None = None  # comma-separated, still accepted for decryption
    token_ttl_days: int = Field(default=90, ge=1, le=3650)
    owner_email: str = "owner@localhost"
    owner_name: str = "Owner"
    login_max_failures: int = Field(default=5, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    cookie_secure: bool = False
    log_level: str = "info"
    in_process_worker: bool = True
    lease_ms: int = Field(default=10_000, ge=500)  # a dead worker's listeners move after this
    heartbeat_seconds: float = Field(default=1.0, gt=0)  # lease renewal; a worker silent for 5 beats is taken over
    scan_seconds: float = Field(default=2.0, gt=0)
    ingest_batch: int = Field(default=500, ge=1, le=5000)
    ingest_claim_idle_ms: int = Field(default=30_000, ge=100)
    inbound_shards: int = Field(default=4, ge=1, le=256)  # inbound streams; fixed per deployment (`loomi reshard`)
    ai_base_url: str | None = None
    ai_api_key: SecretStr | None = None
    ai_model: str | None = None
    ai_providers_file: Path | None = None
    ai_discover: bool = True  # probe local model servers (Ollama, llama.cpp, LM Studio) when none is configured
    ai_discover_ports: str = "11434,8080,1234"  # comma-separated loopback ports to probe
    ai_discover_host: str = "127.0.0.1"
    ai_discover_seconds: float = Field(default=30.0, gt=0)  # how often to look again
    auth_cache_seconds: float = Field(default=30.0, ge=0)  # principal cache (0: every request asks the database)
    metrics_token: SecretStr | None = None  # /metrics: bearer token asked for; unset: loopback scrapers only
    metrics_cache_seconds: float = Field(default=5.0, ge=0)  # cluster facts of /metrics and /status read at most this often
    upload_max_bytes: int = Field(default=25 << 20, ge=1)  # one AI upload (OpenAI's audio limit)
    user_quota_bytes: int = Field(default=1 << 30, ge=0)  # all of one user's AI uploads
    rag_max_file_bytes: int = Field(default=50 << 20, ge=1)  # one RAG document (LOOMI_RAG_MAX_FILE_BYTES)
    rag_user_quota_bytes: int = Field(default=1 << 30, ge=0)  # all of one user's RAG documents and pending uploads
    files_dir: Path | None = None  # /api/files bytes (LOOMI_FILES_DIR); default $LOOMI_HOME/files
    preview_max_bytes: int = Field(default=2 << 20, ge=1)  # external-preview: most bytes read from a page
    preview_timeout_seconds: float = Field(default=8.0, gt=0)  # external-preview: whole fetch, all redirects
    preview_allow_networks: str = ""  # external-preview: CIDRs allowed despite being private (tests, intranets)
    vector_ann_threshold: int = Field(default=5000, ge=0)  # a person's vectors above this use the HNSW index (ai/ann.py)
    registration: Literal["auto", "open", "owner-only", "invite"] = "auto"  # see registration_policy

    platforms: dict[str, PlatformSettings] = Field(default_factory=dict, exclude=True)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL: {value.split('@')[-1]!r}") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError("only sqlite and postgresql are supported")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in ("critical", "error", "warning", "info", "debug"):
            raise ValueError("must be one of critical, error, warning, info, debug")
        return value.lower()

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'hub.db'}"

    @property
    def registration_policy(self) -> str:
        """`auto`: open while only this machine can reach the hub (a loopback LOOMI_HOST and no
        LOOMI_PUBLIC_URL elsewhere), else `invite`, so publishing a hub never opens sign-up."""
        if self.registration != "auto":
            return self.registration
        from urllib.parse import urlparse

        public_host = urlparse(self.public_url).hostname if self.public_url else None
        local = self.host in _LOOPBACK and (public_host is None or public_host in _LOOPBACK)
        return "open" if local else "invite"

    def platform(self, name: str) -> PlatformSettings:
        return self.platforms[name]

    def base_url_for_links(self, port: int | None = None) -> str:
        """The URL a browser reaches us on: OAuth redirect URIs are built from it."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{port or self.port}"


def _variable(prefix: str, loc: tuple) -> str:
    return (prefix + "_".join(str(part) for part in loc if isinstance(part, str))).upper()


def _first_error(err: ValidationError, prefix: str) -> SettingsError:
    first = err.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    return SettingsError(f"{_variable(prefix, first['loc'])}: {message}")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: the process environment); raise SettingsError."""
    env = os.environ if env is None else env
    saved = None
    if env is not os.environ:  # pydantic-settings reads os.environ: swap it in for the call
        saved, os.environ = os.environ, dict(env)  # type: ignore[assignment]
    try:
        try:
            settings = Settings()
        except ValidationError as err:
            raise _first_error(err, ENV_PREFIX) from None
        for name, platform in PLATFORMS.items():
            prefix = f"{ENV_PREFIX}{name.upper()}_"
            model = load_class(platform.settings_model) if platform.settings_model else PlatformSettings
            try:
                settings.platforms[name] = model(
                    _env_prefix=prefix, base_url=os.environ.get(prefix + "BASE_URL", platform.base_url)
                )
            except ValidationError as err:
                raise _first_error(err, prefix) from None
        return settings
    finally:
        if saved is not None:
            os.environ = saved  # type: ignore[assignment]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def ensure_home(settings: Settings) -> Path:
    """LOOMI_HOME holds the messages database, keys and token: private to its owner (0700)."""
    if not settings.home.exists():
        settings.home.mkdir(parents=True, mode=0o700)
        os.chmod(settings.home, 0o700)  # mkdir's mode is filtered by the umask
    return settings.home


def secret_key(settings: Settings) -> str:
    """`LOOMI_SECRET_KEY`, or one generated once into LOOMI_HOME (mode 0600)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.home / "secret_key"
    if not path.exists():
        ensure_home(settings)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


OLD_KEYS_FILE = "old_secret_keys"  # LOOMI_HOME/old_secret_keys: generated keys `loomi keys rotate --new-key` replaced


def old_secret_keys(settings: Settings) -> list[str]:
    """LOOMI_OLD_SECRET_KEYS, then the replaced generated keys kept in LOOMI_HOME (one a line)."""
    raw = settings.old_secret_keys.get_secret_value() if settings.old_secret_keys else ""
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    path = settings.home / OLD_KEYS_FILE
    if settings.secret_key is None and path.exists():
        keys += [line.strip() for line in path.read_text().splitlines() if line.strip() and line.strip() not in keys]
    return keys
