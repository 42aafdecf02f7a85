"""The benchmark harness runs end to end: `python -m benchmarks --quick` writes JSON, markdown and a plot.

No thresholds: machines are noisy. It checks the shape of the results, that
work was done, and that the Redis and daemon the harness started are gone —
in both topologies: one redis-server, and a 3-master + 3-replica Cluster.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PERCENTILES = {"p50", "p90", "p99", "p99.9"}

pytest.importorskip("matplotlib", reason="matplotlib is in the bench extra")


def _refuses(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_quick_benchmark_writes_results_and_leaves_no_process_behind(tmp_path, topology):
    out = tmp_path / "bench"
    command = ["--quick", "--topology", topology, "--scenarios", "latency,throughput,clients",
               "--duration", "0.5", "--out", str(out)]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["quick"] is True
    assert data["meta"]["topology"] == topology
    assert set(data["scenarios"]) == {"latency", "throughput", "clients"}

    latency = data["scenarios"]["latency"]
    for target in ("sidecar", "direct"):
        side = latency[target]
        assert side["ops"] > 0
        assert side["ops_per_s"] > 0
        assert set(side["latency_us"]) >= PERCENTILES
        assert side["latency_us"]["p50"] > 0
    assert latency["sidecar"]["daemon_cpu_s_per_1k_ops"] is not None
    assert latency["daemon_rss_max_mb"] > 0
    assert set(latency["added_us"]) == PERCENTILES
    assert [block["target"] for block in latency["blocks"]] == ["sidecar", "direct"]

    levels = data["scenarios"]["throughput"]["levels"]
    assert [level["processes"] for level in levels] == [1, 8]
    for level in levels:
        assert level["sidecar"]["ops_per_s"] > 0
        assert level["direct"]["ops_per_s"] > 0
        assert level["ratio"] > 0
        # What a save costs the host: client + daemon + Redis, against redis-py client + Redis.
        sidecar, direct = level["sidecar"]["host_cpu_us_per_op"], level["direct"]["host_cpu_us_per_op"]
        assert {"client", "daemon", "redis"} <= set(sidecar) and "daemon" not in direct
        for parts in (sidecar, direct):
            assert parts["total"] > 0
            assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"), abs=0.2)
        assert level["host_cpu_ratio"] == pytest.approx(sidecar["total"] / direct["total"], rel=0.01)

    # One process's threads, shared pool, own Clients and asyncio tasks all saved, beside direct.
    rows = {row["key"]: row for row in data["scenarios"]["clients"]["rows"]}
    assert {"thread", "threads-shared", "threads-own", "uvloop-16", "direct-threads"} <= set(rows)
    for row in rows.values():
        assert row["ops_per_s"] > 0, row["label"]
        assert row["errors"] == 0, row["label"]
        assert row["target"] == "direct" or row["ratio"] > 0
    assert rows["threads-shared"]["daemon_cpu_s_per_1k_ops"] is not None
    assert rows["threads-shared"]["host_cpu_us_per_op"]["total"] > 0
    assert rows["direct-threads"]["host_cpu_us_per_op"]["total"] > 0
    assert all(row["host_cpu_ratio"] > 0 for row in rows.values() if row["target"] == "sidecar")

    if topology == "cluster":
        cluster = data["meta"]["redis"]
        assert (cluster["masters"], cluster["replicas"], cluster["masters_changed"]) == (3, 3, False)
        # Both targets' keys carry the lock key as a hash tag: every master got some.
        assert len(cluster["keys_per_master"]) == 3
        assert all(count > 0 for count in cluster["keys_per_master"].values())
        for target in ("sidecar", "direct"):
            assert latency[target]["redis_cpu_s_per_1k_ops"] is not None  # the masters, summed
            assert latency[target]["replicas_cpu_s_per_1k_ops"] is not None
    else:
        assert latency["sidecar"]["replicas_cpu_s_per_1k_ops"] is None

    markdown = (out / "results.md").read_text()
    assert f"Topology: **{topology}**" in markdown
    assert "## latency" in markdown
    assert "## throughput" in markdown
    assert "## clients" in markdown
    assert "## total host CPU per save" in markdown
    assert "| throughput, 8 processes |" in markdown
    assert (out / "results.png").stat().st_size > 0

    # Progress went to stderr, and the daemon it named is gone with its temp dir.
    found = re.search(r"daemon at (\S+)/d\.sock \(pid (\d+)\)", result.stderr)
    assert found, result.stderr
    assert not Path(f"/proc/{found.group(2)}").exists()
    assert not Path(found.group(1)).exists()
    assert "latency block 1/2 sidecar" in result.stderr
    if topology == "cluster":  # ... and so are the cluster's nodes
        assert all(map(_refuses, data["meta"]["redis"]["seeds"]))
