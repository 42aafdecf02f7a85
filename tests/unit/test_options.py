"""The serve options table: every row names a real Config field and maps to it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from drawstate.limits import Limits
from drawstated.cli import main
from drawstated.config import Config
from drawstated.options import SERVE_OPTIONS, config_from_options

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_every_option_names_a_config_field_and_a_drawstate_env_var():
    config_fields = {f.name for f in dataclasses.fields(Config)}
    limit_fields = {f.name for f in dataclasses.fields(Limits)}
    for option in SERVE_OPTIONS:
        name = option.field.removeprefix("limits.")
        assert name in (limit_fields if option.field.startswith("limits.") else config_fields), option.flag
        assert option.envvar == "DRAWSTATE_" + option.flag[2:].upper().replace("-", "_")


def test_no_option_carries_a_secret():
    assert not [o.flag for o in SERVE_OPTIONS if "password" in o.flag or "password" in o.field]


def test_options_not_given_keep_the_config_defaults(monkeypatch):
    monkeypatch.delenv("DRAWSTATE_REDIS_PASSWORD", raising=False)
    monkeypatch.delenv("DRAWSTATE_REDIS_PASSWORD_FILE", raising=False)
    assert config_from_options({}) == Config()


def test_options_are_converted_into_the_config(monkeypatch):
    monkeypatch.setenv("DRAWSTATE_REDIS_PASSWORD", "from-env")
    config = config_from_options(
        {
            "redis_sentinels": "10.0.0.1:26379, 10.0.0.2:26379",
            "sentinel_master": "gacha",
            "socket_mode": "640",
            "allowed_uids": (1000, 1001),
            "log_level": "debug",
            "limits__max_total": 50,
        }
    )
    assert config.redis_sentinels == ("10.0.0.1:26379", "10.0.0.2:26379")
    assert config.socket_mode == 0o640
    assert config.allowed_uids == frozenset({1000, 1001})
    assert config.log_level == "DEBUG"
    assert config.limits.max_total == 50
    assert config.redis_password == "from-env"


@pytest.mark.parametrize("option", SERVE_OPTIONS, ids=lambda o: o.flag)
def test_every_option_is_in_serve_help(option):
    result = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200)
    assert option.flag in result.output


@pytest.mark.skipif(not DOCS.exists(), reason="docs/operations.md not written")
def test_operations_doc_lists_every_option_with_its_env_var_and_default():
    text = DOCS.read_text()
    for option in SERVE_OPTIONS:
        assert f"`{option.flag}`" in text, option.flag
        assert f"`{option.envvar}`" in text, option.envvar
