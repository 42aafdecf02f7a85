"""Running the Go side from the Python tests: the client module in clients/go, built as Debian builds Go.

Every go command goes through clients/go/debian-go (GOPATH mode, no network,
dependencies from Debian's packages), so the tests need `go` and Debian's
msgpack package and nothing else; without them they skip, saying what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GO_MODULE = REPO / "clients" / "go"
DEBIAN_GO = GO_MODULE / "debian-go"
#: Debian's msgpack package puts its sources here; debian-go takes them from there.
DEBIAN_MSGPACK = Path(os.environ.get("DEBIAN_GOCODE", "/usr/share/gocode/src")) / (
    "github.com/vmihailenco/msgpack/v5"
)
#: Building a package or running the Go tests can take minutes on a busy 2-core machine.
GO_BUILD_TIMEOUT_S = 600.0
GO_TEST_TIMEOUT_S = 900.0


def go_unavailable() -> str | None:
    """Why the Go side cannot run here (with what to install), or None when it can."""
    if shutil.which("go") is None:
        return "no `go` command: apt-get install golang-go (.ci/run installs it)"
    if not DEBIAN_MSGPACK.is_dir():
        return f"{DEBIAN_MSGPACK} is missing: apt-get install golang-github-vmihailenco-msgpack.v5-dev"
    return None


def go_env(**extra: str) -> dict[str, str]:
    """The environment for go commands: this interpreter runs the daemons the Go tests start."""
    return {**os.environ, "DRAWSTATE_PYTHON": sys.executable, **extra}


def debian_go(
    *args: str, timeout: float = GO_BUILD_TIMEOUT_S, **extra: str
) -> subprocess.CompletedProcess[str]:
    """`go <args>` in clients/go, the Debian way; the output is captured for the assertion message."""
    return subprocess.run(
        [str(DEBIAN_GO), *args],
        cwd=GO_MODULE,
        env=go_env(**extra),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def build(package: str, output: Path) -> Path:
    """Build one main package of clients/go (e.g. ./internal/enginefixtures) into `output`."""
    result = debian_go("build", "-o", str(output), package)
    if result.returncode != 0:
        raise RuntimeError(f"go build {package} failed:\n{result.stdout}{result.stderr}")
    return output
