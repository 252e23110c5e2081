"""The shape of the code: layers import only downwards, no two modules import each other,
and every row of the platform table keeps the promises it makes.

Layers, lowest first: `config` (settings, the platform table) and the log filter < `store`
(schema, the message model, repositories) < `connectors` (one folder per platform) < the
runtime every process shares (`loomi.hub`, tokens, the local owner) < `ai` < `workers` and
`imports` < `api` < the process entry points (`loomi.cli`, `loomi.runtime`). Imports inside
functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from config.platforms import ABILITIES, PLATFORMS, load_class
from config.settings import PlatformSettings, load_settings
from connectors import base

ROOT = Path(__file__).resolve().parents[1]
LAYERS: list[tuple[str, ...]] = [
    ("config", "loomi.logs"),
    ("store",),
    ("connectors",),
    ("loomi.hub", "loomi.tokens", "loomi.owner", "loomi.embedded_redis"),
    ("ai",),
    ("workers", "imports"),
    ("api", "ai.wire"),  # ai.wire: the OpenAI-shaped HTTP errors of the AI routes
    ("loomi",),
]
PACKAGES = {"config", "store", "connectors", "loomi", "ai", "workers", "imports", "api"}


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer: add its package to LAYERS"
    return rank


def modules() -> dict[str, set[str]]:
    """module -> the hub modules it imports (anywhere in its body)."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in PACKAGES or "migrations" in rel.parts:
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        found[name] = deps
    return {name: {d for d in deps if d in found and d != name} for name, deps in found.items()}


MODULES = modules()


def test_layers_import_only_downwards() -> None:
    upward = sorted(
        f"{module} -> {dep}"
        for module, deps in MODULES.items()
        for dep in deps
        if layer_of(dep) > layer_of(module)
    )
    assert upward == []


def test_no_two_modules_import_each_other() -> None:
    pairs = sorted({tuple(sorted((a, b))) for a, deps in MODULES.items() for b in deps if a in MODULES.get(b, ())})
    assert pairs == []


# ---- the platform table ----------------------------------------------------------------------

PROTOCOLS = {
    "oauth": base.OAuthSetup,
    "credentials": base.CredentialSetup,
    "login_flow": base.LoginFlow,
    "webhook": base.WebhookReceiver,
    "webhook_verify": base.WebhookVerifier,
    "backfill": base.Backfiller,
    "app_listener": base.AppListener,
    "disconnect": base.Disconnecter,
    "local_listener": base.LocalListener,
}


def test_every_ability_name_has_its_protocol() -> None:
    assert set(PROTOCOLS) == set(ABILITIES)


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_each_row_keeps_its_promises(name: str) -> None:
    row = PLATFORMS[name]
    settings = load_settings({}).platform(name)
    assert isinstance(settings, PlatformSettings) and settings.base_url == row.base_url
    if row.settings_model:
        assert type(settings) is load_class(row.settings_model)
    if row.login:
        assert row.connector is None and row.authorize_url and row.token_url
        return
    if row.connector is None:
        assert not row.abilities, f"{name} claims abilities but has no connector yet"
        return
    connector = load_class(row.connector)(settings)
    assert isinstance(connector, base.Connector) and connector.platform == name
    claimed = {ability for ability, protocol in PROTOCOLS.items() if isinstance(connector, protocol)}
    assert claimed == set(row.abilities), f"{name}: the row claims {sorted(row.abilities)}, the connector has {sorted(claimed)}"
    if "oauth" in row.abilities:
        assert row.authorize_url and row.token_url, f"{name} does OAuth but its row has no OAuth endpoints"
    if "credentials" in row.abilities or "login_flow" in row.abilities:
        assert not ("credentials" in row.abilities and "login_flow" in row.abilities), "one way to connect by hand"
