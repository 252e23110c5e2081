"""Settings: the contract's defaults and one clear line per bad variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.platforms import PLATFORMS
from config.settings import SettingsError, load_settings


def test_defaults_follow_the_contract(tmp_path: Path) -> None:
    s = load_settings({"LOOMI_HOME": str(tmp_path)})
    assert (s.host, s.port, s.fallback_port) == ("127.0.0.1", 3414, 3515)
    assert s.database == f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    assert s.redis_url is None
    assert s.platform("slack").base_url == "https://slack.com/api"
    assert s.platform("telegram").base_url == "https://api.telegram.org"


def test_every_platform_base_url_is_configurable() -> None:
    env = {f"LOOMI_{name.upper()}_BASE_URL": f"http://127.0.0.1:9/{name}/" for name in PLATFORMS}
    s = load_settings(env)
    for name in PLATFORMS:
        assert s.platform(name).base_url == f"http://127.0.0.1:9/{name}"


@pytest.mark.parametrize(
    "env,variable",
    [
        ({"LOOMI_PORT": "abc"}, "LOOMI_PORT"),
        ({"LOOMI_PORT": "70000"}, "LOOMI_PORT"),
        ({"LOOMI_DATABASE_URL": "mysql://u@h/db"}, "LOOMI_DATABASE_URL"),
        ({"LOOMI_REDIS_URL": "http://x"}, "LOOMI_REDIS_URL"),
        ({"LOOMI_DISCORD_BASE_URL": "discord.com"}, "LOOMI_DISCORD_BASE_URL"),
        ({"LOOMI_LOG_LEVEL": "loud"}, "LOOMI_LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_variable(env: dict, variable: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert str(err.value).startswith(variable + ":")


def test_cli_fails_at_start_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loomi.cli", "serve"],
        env={"LOOMI_HOME": str(tmp_path), "LOOMI_PORT": "nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "LOOMI_PORT" in lines[0]
