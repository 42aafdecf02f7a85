"""The data dir holds the journal and the embedded Redis's states: the daemon keeps it private.

`_prepare_data_dir` on real directories: the default one (drawstate's own) is made 0700 again when
an older version left it open; one the operator chose keeps its mode, with a warning that says who
can reach it.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from drawstated.config import default_data_dir
from drawstated.server.locks import _prepare_data_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_missing_data_dir_is_created_0700(tmp_path):
    data_dir = tmp_path / "new" / "data"
    _prepare_data_dir(data_dir)
    assert _mode(data_dir) == 0o700


def test_the_default_data_dir_left_open_is_made_private_again(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    data_dir = default_data_dir()
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        _prepare_data_dir(data_dir)
    assert _mode(data_dir) == 0o700
    assert "made it 0700" in caplog.text


@pytest.mark.parametrize(
    ("mode", "who"), [(0o750, "read"), (0o755, "read"), (0o770, "written"), (0o757, "written")]
)
def test_a_data_dir_the_operator_chose_keeps_its_mode_and_gets_a_warning_naming_the_access(
    tmp_path, caplog, mode, who
):
    data_dir = tmp_path / "volume"
    data_dir.mkdir()
    data_dir.chmod(mode)
    with caplog.at_level(logging.WARNING):
        _prepare_data_dir(data_dir)
    assert _mode(data_dir) == mode
    assert f"data dir can be {who} by group or others" in caplog.text


def test_a_private_data_dir_is_left_alone_without_a_warning(tmp_path, caplog):
    data_dir = tmp_path / "private"
    data_dir.mkdir(mode=0o700)
    with caplog.at_level(logging.WARNING):
        _prepare_data_dir(data_dir)
    assert _mode(data_dir) == 0o700
    assert caplog.text == ""
