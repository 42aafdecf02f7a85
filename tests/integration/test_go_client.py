"""The Go client's own tests (clients/go), run from the one test command: go vet, gofmt and go test ./...

They build the Debian way (clients/go/debian-go: GOPATH mode, no network,
Debian's msgpack package) and start their own redis-server and daemon through
this interpreter, which must import drawstated. Without `go` or Debian's
msgpack package this module skips, saying what to install; .ci/run installs both.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.golang import GO_MODULE, GO_TEST_TIMEOUT_S, debian_go, go_unavailable

pytestmark = pytest.mark.skipif(
    go_unavailable() is not None, reason=f"Go client not tested: {go_unavailable()}"
)

#: The Go tests must not skip for want of a daemon here: this interpreter runs one.
REQUIRE_DAEMON = {"DRAWSTATE_GO_REQUIRE_DAEMON": "1"}


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_go_vet_finds_nothing():
    result = debian_go("vet", "./...")
    assert result.returncode == 0, _report(result)


def test_go_sources_are_gofmt_clean():
    gofmt = shutil.which("gofmt")
    if gofmt is None:
        pytest.skip("gofmt is not on PATH")
    result = subprocess.run([gofmt, "-l", "."], cwd=GO_MODULE, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f"gofmt -w these files:\n{result.stdout}"


@pytest.mark.timeout(GO_TEST_TIMEOUT_S + 60)
def test_go_client_tests_pass_against_a_real_daemon():
    result = debian_go("test", "-count=1", "./...", timeout=GO_TEST_TIMEOUT_S, **REQUIRE_DAEMON)
    assert result.returncode == 0, _report(result)
    passed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok")}
    module = "github.com/drawstate/drawstate/clients/go"
    for package in ("drawstate", "examples/gacha", "internal/enginefixtures"):
        assert f"{module}/{package}" in passed, _report(result)
