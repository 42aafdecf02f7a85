"""The soak harness: a short bounded run in every test run, the real 10 minutes only when asked (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _soak(tmp_path: Path, *args: str, timeout: float) -> dict:
    out = tmp_path / "soak"
    command = [sys.executable, "-m", "benchmarks.soak", *args, "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "soak.json").read_text())


def test_short_soak_serves_every_flow_with_flat_memory_and_descriptors(tmp_path):
    report = _soak(tmp_path, "--duration", "8", "--rate", "400", "--processes", "2", timeout=60)
    assert report["errors"] == 0
    assert report["flows"] > 100
    # The Redis pool opens its connections on demand (at most --redis-pool-size): a leak would grow.
    assert report["fds_end"] <= report["fds_start"] + 2
    assert report["rss_end_mb"] - report["rss_start_mb"] < 8


@pytest.mark.slow
def test_ten_minute_soak_at_two_thousand_ops_keeps_memory_and_descriptors_flat(tmp_path):
    report = _soak(tmp_path, "--duration", "600", "--rate", "2000", timeout=900)
    assert report["errors"] == 0
    assert report["fds_end"] <= report["fds_start"] + 2
    assert report["rss_end_mb"] - report["rss_start_mb"] < 10
