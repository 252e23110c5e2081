"""The upstream table: which provider serves which model, read once from configuration.

Upstreams are data, like the platform registry: `LOOMI_AI_BASE_URL` / `_API_KEY` / `_MODEL`
make one provider named "default" that serves any model; `LOOMI_AI_PROVIDERS_FILE` (JSON or
TOML) adds any number, with model lists, aliases, timeouts, retries and prices:

    default_model = "smart"
    [[providers]]
    name = "openai"
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"        # or api_key = "..."
    models = ["gpt-4o-mini", "text-embedding-3-small"]   # omit: serves any model
    timeout = 60                           # seconds between bytes
    connect_timeout = 5
    retries = 1                            # extra tries on this provider before the next
    [providers.pricing."gpt-4o-mini"]      # USD per million tokens
    input = 0.15
    output = 0.6
    [[providers]]
    name = "claude"
    kind = "anthropic"                     # the Messages API (ai/upstreams/anthropic.py); chat only
    base_url = "https://api.anthropic.com"
    api_key_env = "ANTHROPIC_API_KEY"
    [aliases]
    smart = ["openai/gpt-4o-mini", "backup/llama3"]   # tried in order: fallback

A model resolves to an ordered list of targets: providers that list it, then providers that
serve any model, then the offline backend when it can stand in. The gateway walks that list,
so fallback is the same code as routing. Keys are held out of `repr` so they cannot reach
logs through a stray print of the table.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.settings import Settings

KINDS = frozenset({"openai", "anthropic", "local"})  # one adapter each in ai/upstreams (a test checks they match)
CAPABILITIES = frozenset({"chat", "embeddings", "images", "speech", "transcriptions"})
KIND_CAPABILITIES = {"anthropic": frozenset({"chat"})}  # what a kind can do when the file does not say
LOCAL = "local"


class ProviderConfigError(Exception):
    """The providers file is unreadable or wrong: one line naming the file and the field."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    kind: str = "openai"
    api_key: str | None = field(default=None, repr=False)
    models: tuple[str, ...] = ()  # empty: any model
    default_model: str | None = None
    capabilities: frozenset[str] = CAPABILITIES
    timeout: float = 60.0
    connect_timeout: float = 5.0
    retries: int = 1
    pricing: dict[str, Price] = field(default_factory=dict, hash=False, compare=False)
    headers: dict[str, str] = field(default_factory=dict, hash=False, compare=False, repr=False)
    last_resort: bool = False  # stands in for any model, after everyone else (the offline backend)

    @property
    def serves_any(self) -> bool:
        return not self.models

    def price(self, model: str) -> Price:
        return self.pricing.get(model, Price())


@dataclass(frozen=True)
class Target:
    provider: Provider
    model: str

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"


class _PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


class _ProviderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    base_url: str
    kind: str = "openai"
    api_key: str | None = None
    api_key_env: str | None = None
    models: list[str] = Field(default_factory=list)
    default_model: str | None = None
    capabilities: list[str] | None = None
    timeout: float = Field(default=60.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    retries: int = Field(default=1, ge=0, le=10)
    pricing: dict[str, _PriceIn] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind {value!r}; known: {', '.join(sorted(KINDS))}")
        return value

    @field_validator("capabilities")
    @classmethod
    def _caps(cls, value: list[str] | None) -> list[str] | None:
        unknown = set(value or ()) - CAPABILITIES
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
        return value


class _FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_model: str | None = None
    providers: list[_ProviderIn] = Field(default_factory=list)
    aliases: dict[str, str | list[str]] = Field(default_factory=dict)
    pricing: dict[str, _PriceIn] = Field(default_factory=dict)


def _to_provider(p: _ProviderIn, pricing: dict[str, _PriceIn]) -> Provider:
    key = p.api_key
    if key is None and p.api_key_env:
        key = os.environ.get(p.api_key_env)
    prices = {model: Price(v.input, v.output) for model, v in {**pricing, **p.pricing}.items()}
    return Provider(
        name=p.name,
        base_url=p.base_url,
        kind=p.kind,
        api_key=key or None,
        models=tuple(p.models),
        default_model=p.default_model,
        capabilities=frozenset(p.capabilities) if p.capabilities is not None else KIND_CAPABILITIES.get(p.kind, CAPABILITIES),
        timeout=p.timeout,
        connect_timeout=p.connect_timeout,
        retries=p.retries,
        pricing=prices,
        headers=dict(p.headers),
    )


def read_providers_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ProviderConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(raw.decode())
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProviderConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {err}") from None


class ProviderTable:
    """Providers in priority order, aliases, and the default chat model."""

    def __init__(
        self,
        providers: Iterable[Provider],
        aliases: dict[str, list[str]] | None = None,
        default_model: str | None = None,
    ) -> None:
        self.providers = list(providers)
        names = [p.name for p in self.providers]
        duplicated = {n for n in names if names.count(n) > 1}
        if duplicated:
            raise ProviderConfigError(f"duplicate provider names: {sorted(duplicated)}")
        self.by_name = {p.name: p for p in self.providers}
        self.aliases = {k: list(v) for k, v in (aliases or {}).items()}
        self._default_model = default_model

    @property
    def upstreams(self) -> list[Provider]:
        return [p for p in self.providers if p.kind != LOCAL]

    @property
    def default_model(self) -> str | None:
        if self._default_model:
            return self._default_model
        for provider in self.upstreams:
            if "chat" in provider.capabilities and (provider.default_model or provider.models):
                return provider.default_model or provider.models[0]
        for provider in self.providers:
            if provider.kind == LOCAL and "chat" in provider.capabilities and provider.default_model:
                return provider.default_model
        return None

    def serves(self, capability: str) -> bool:
        return any(capability in p.capabilities for p in self.providers)

    def route(self, capability: str, model: str | None) -> list[Target]:
        """Every target able to serve `model` for `capability`, best first (the fallback chain)."""
        if not model and capability == "chat":
            model = self.default_model
        if not model:  # no name: only a backend that stands in for any model can answer
            return [Target(p, "") for p in self.providers if capability in p.capabilities and p.last_resort]
        targets: list[Target] = []
        for name in self.aliases.get(model, [model]):
            prefix, slash, rest = name.partition("/")
            pinned = self.by_name.get(prefix) if slash else None
            if pinned is not None:
                if capability in pinned.capabilities:
                    targets.append(Target(pinned, rest))
                continue
            able = [p for p in self.providers if capability in p.capabilities]
            targets += [Target(p, name) for p in able if name in p.models]
            targets += [Target(p, name) for p in able if p.serves_any and not p.last_resort]
            targets += [Target(p, name) for p in able if p.last_resort and name not in p.models]
        seen: set[tuple[str, str]] = set()
        unique = []
        for target in targets:
            if (target.provider.name, target.model) not in seen:
                seen.add((target.provider.name, target.model))
                unique.append(target)
        return unique

    def models(self) -> list[tuple[str, str]]:
        """(model id, owner) pairs this table names: listed models, defaults and aliases."""
        out: dict[str, str] = {}
        for provider in self.providers:
            for model in provider.models:
                out.setdefault(model, provider.name)
            if provider.default_model:
                out.setdefault(provider.default_model, provider.name)
        for alias in self.aliases:
            out.setdefault(alias, "alias")
        return list(out.items())


def load_table(settings: Settings, local: list[Provider] | None = None) -> ProviderTable:
    """The table from settings: the providers file, then LOOMI_AI_BASE_URL, then offline ones."""
    providers: list[Provider] = []
    aliases: dict[str, list[str]] = {}
    default_model = settings.ai_model
    if settings.ai_providers_file is not None:
        data = read_providers_file(Path(settings.ai_providers_file))
        try:
            parsed = _FileIn.model_validate(data)
        except ValidationError as err:
            first = err.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ProviderConfigError(f"{settings.ai_providers_file}: {where}: {first['msg']}") from None
        providers += [_to_provider(p, parsed.pricing) for p in parsed.providers]
        aliases = {k: [v] if isinstance(v, str) else list(v) for k, v in parsed.aliases.items()}
        default_model = default_model or parsed.default_model
    if settings.ai_base_url:
        if not settings.ai_base_url.startswith(("http://", "https://")):
            raise ProviderConfigError(f"LOOMI_AI_BASE_URL: must be an http(s) URL, got {settings.ai_base_url!r}")
        key = settings.ai_api_key.get_secret_value() if settings.ai_api_key else None
        providers.append(
            Provider(name="default", base_url=settings.ai_base_url.rstrip("/"), api_key=key or None, default_model=settings.ai_model)
        )
    return ProviderTable(providers + list(local or []), aliases, default_model)
