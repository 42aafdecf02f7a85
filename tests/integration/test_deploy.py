"""Deployment files: systemd units that verify, and a Dockerfile whose install is the README's."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"


def _unit(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    # The binary path is the deployment's choice; verify everything else as written.
    service = (UNITS / "drawstated.service").read_text()
    drawstate = shutil.which("drawstate") or sys.executable
    (tmp_path / "drawstated.service").write_text(service.replace("/usr/local/bin/drawstate", drawstate))
    shutil.copy(UNITS / "drawstated.socket", tmp_path)
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(tmp_path / "drawstated.service"),
            str(tmp_path / "drawstated.socket"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_service_is_notify_hardened_and_matches_its_socket():
    service, socket_unit = _unit("drawstated.service"), _unit("drawstated.socket")
    assert service["Type"] == ["notify"]
    assert service["Restart"] == ["on-failure"]
    assert service["DynamicUser"] == ["yes"] and service["RuntimeDirectory"] == ["drawstate"]
    assert service["EnvironmentFile"]
    for key, value in {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
    }.items():  # fmt: skip
        assert service[key] == [value], key
    assert "AF_UNIX" in service["RestrictAddressFamilies"][0]
    assert service["MemoryMax"] and service["WatchdogSec"]
    socket_path = socket_unit["ListenStream"][0]
    assert f"--socket {socket_path}" in service["ExecStart"][0]
    assert socket_unit["SocketMode"] == ["0660"]
    assert not any("PASSWORD" in line for line in service["ExecStart"])  # secrets come from the env file


def _dockerfile_install() -> str:
    dockerfile = (REPO / "Dockerfile").read_text()
    [command] = re.findall(r"^RUN (pip install .*)$", dockerfile, flags=re.MULTILINE)
    return command


def test_dockerfile_installs_with_the_readme_command_and_checks_health_with_ping():
    readme = (REPO / "README.md").read_text()
    install = _dockerfile_install()
    spec = shlex.split(install)[-1]
    assert f"pip install '{spec}'" in readme
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r'HEALTHCHECK .*CMD \["drawstate", "ping"', dockerfile)
    assert re.search(r"^USER 10001", dockerfile, flags=re.MULTILINE)
    assert '"/run/drawstate"' in dockerfile
    # The build stage has the compiler and setup.py, so the image runs the compiled hot path; the
    # final stage installs nothing (it stays slim).
    build, final = dockerfile.split("\nFROM ")[1:]
    assert "setup.py" in build and re.search(r"apt-get install .*\bgcc\b", build)
    assert "apt-get" not in final and "gcc" not in final


def test_the_dockerfile_install_in_a_fresh_venv_runs_the_readme_daemon(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    install = shlex.split(_dockerfile_install())
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", *install, "--disable-pip-version-check", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sock = tmp_path / "d.sock"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DRAWSTATE_SOCKET": str(sock), "HOME": str(tmp_path)}
    daemon = subprocess.Popen(
        [str(bin_dir / "drawstate"), "serve", "--data-dir", str(tmp_path / "data")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def pings() -> bool:
            ping = [str(bin_dir / "drawstate"), "ping", "--timeout", "1"]
            return subprocess.run(ping, env=env, capture_output=True, check=False).returncode == 0

        wait_until(pings, timeout=30, interval=0.1)
        stats = [str(bin_dir / "drawstate"), "stats", "--json"]
        snapshot = json.loads(subprocess.run(stats, env=env, capture_output=True, check=True).stdout)
        # The install compiles the hot path wherever a C compiler is (the Dockerfile's build stage has one).
        assert snapshot["hot_path"] == ("compiled" if shutil.which("cc") else "pure")
    finally:
        daemon.terminate()
        assert daemon.wait(30) == 0
