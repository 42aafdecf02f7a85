"""docs/limits.md against the code: each documented constant, default, Config field and option exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drawstate import limits
from drawstated import config as config_module
from drawstated.config import Config
from drawstated.options import SERVE_OPTIONS
from tests.chaos.limits_table import ROWS, ROWS_BY_NAME


def test_the_table_parses_and_names_each_limit_once():
    assert len(ROWS) >= 30
    assert len(ROWS_BY_NAME) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_documented_constant_default_field_and_option_match_the_code(row):
    number = re.match(r"[0-9.]+", row.default)
    assert number, f"default of {row.name!r} does not start with its value"
    documented = float(number[0]) if "." in number[0] else int(number[0])
    if row.constant:
        assert row.value == documented, f"{row.constant} is {row.value}, the doc says {documented}"
    if row.field:
        config = Config(socket_path=Path("/tmp/unused.sock"), data_dir=Path("/tmp/unused"))
        owner = config.limits if row.field.startswith("limits.") else config
        assert getattr(owner, row.field.removeprefix("limits.")) == documented
    if row.option:
        [option] = [o for o in SERVE_OPTIONS if o.flag == row.option]
        assert option.field == row.field, f"{row.option} sets {option.field}, not {row.field}"


def test_every_named_limit_constant_is_in_the_table():
    documented = {(row.module, row.constant) for row in ROWS}
    named = {("drawstate.limits", name) for name in dir(limits) if name.startswith("MAX_")}
    named |= {("drawstate.limits", "INT64_MAX"), ("drawstate.limits", "DRAW_INT_MAX")}
    named |= {
        ("drawstated.config", name)
        for name in dir(config_module)
        if (name.startswith("MAX_") or name.endswith(("_TIMEOUT_S", "_GRACE_S", "_MAXLEN")))
        and not hasattr(limits, name)  # imported from drawstate.limits, listed under it
    }
    named |= {
        ("drawstated.server.connection", "WRITE_BUFFER_HIGH"),
        ("drawstated.ops.fields", "MAX_PENDING_LIMIT"),
    }
    assert named - documented == set()
