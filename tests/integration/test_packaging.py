"""The client installs and imports alone: a game host needs msgpack and nothing else."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BLOCK_DAEMON_DEPS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('redis', 'uvloop', 'orjson', 'tenacity', 'click', 'hiredis'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {client!r})
import drawstate
from drawstate import Client, DrawState, MultiDraw, Refund, new_operation_id
from drawstate.aio import AsyncClient, AsyncMultiDraw
state = DrawState('p:1', new_operation_id(), 10, start_time=1, last_update_time=1)
state.validate()
print('ok')
"""


def test_client_imports_and_validates_with_daemon_dependencies_blocked():
    code = BLOCK_DAEMON_DEPS.format(client=str(REPO / "client"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr


def test_pip_install_without_extras_gives_a_working_client(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    probe = (
        "import importlib.util, drawstate;"
        "missing = [m for m in ('redis', 'uvloop', 'orjson') if importlib.util.find_spec(m) is None];"
        "print(len(missing), drawstate.new_operation_id())"
    )
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "3"  # none of the daemon's dependencies were installed
    # The command is there, and says in one line what it needs rather than crashing.
    command = subprocess.run(
        [str(env_dir / "bin" / "drawstate"), "ping"], capture_output=True, text=True, check=False
    )
    assert command.returncode == 2
    assert command.stderr.strip().splitlines() == [
        "drawstate: the command needs the daemon extra (click is missing): pip install 'drawstate[daemon]'"
    ]
    asyncio_client = subprocess.run(
        [str(python), "-c", "from drawstate.aio import AsyncClient, AsyncMultiDraw; print('ok')"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert asyncio_client.stdout.strip() == "ok", asyncio_client.stderr


def test_python_dash_m_drawstate_is_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "drawstate", "--help"], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "outcomes" in result.stdout
