"""`drawstate import-legacy` against a real Redis and a real Cluster, with a real daemon to resume through.

1,000 states in the Go engine's layout are planted (the committed fixtures byte for byte, the
rest written the way Go writes them, some refused, most with a TTL): a dry run writes nothing,
the first run imports every valid one and reports the rest by reason, each imported operation
loads, is listed by `pending` and resumes through MultiDraw, the TTL is kept, a second run
imports nothing and overwrites nothing the sidecar saved since, and `--delete-source` removes
exactly the engine keys whose operations are in the sidecar's layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from drawstate import MultiDraw
from drawstated.legacy.convert import Converted, Refusal, convert
from drawstated.legacy.importer import (
    EXIT_OK,
    EXIT_REDIS,
    EXIT_REFUSED,
    EXIT_USAGE,
    Importer,
    Settings,
    reason_of,
)
from testbed.topology import SentinelTopology, free_port
from tests.support.shared_redis import CLUSTER_PREFIX, direct_client

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "go_engine"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
MIGRATION_DOC = REPO / "docs" / "migration.md"

PLANTED = 1_000
#: Generated states each kind of refusal gets (the fixtures add one or two of each more).
PER_INVALID_KIND = 12
#: Every this many generated valid states, one has no TTL (it gets --ttl).
NO_TTL_EVERY = 10
TTL_FOR_NO_EXPIRY_S = 7_200
START_TIME = 1_767_225_600
CLI_TIMEOUT_S = 60
#: How far the imported TTL may be from the source's: the two are read a few ms apart.
TTL_TOLERANCE_MS = 1_000
GRACE_S = 86_400


def _go_json(document: dict[str, Any]) -> bytes:
    """Compact JSON with <, >, & escaped as Go's encoding/json writes them."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.encode()


def _valid(i: int) -> tuple[str, bytes]:
    """A state the engine left mid-way: 3 operations per lock key, 0-9 of 10 draws made."""
    lock_key, done = f"player:{i // 3}", i % 10
    document: dict[str, Any] = {
        "lock_key": lock_key,
        "total_count": 10,
        "completed_count": done,
        "results": [i * 10 + n for n in range(done)] if i % 4 else None,
        "prize_results": None,
        "errors": [] if i % 5 else None,
        "start_time": START_TIME,
        "last_update_time": START_TIME + done + i,
    }
    if not i % 4:
        document["prize_results"] = [
            {"id": f"p{n}", "name": "Gold & <Rare>", "probability": 0.25, "value": n} for n in range(done)
        ]
    return f"lottery:state:{lock_key}:op_{i:05d}", _go_json(document)


def _invalid(kind: str, i: int) -> tuple[str, bytes]:
    """A state the engine accepts and the sidecar refuses; the reason the report counts it by is `kind`."""
    document: dict[str, Any] = {
        "lock_key": f"bad:{i}",
        "total_count": 10,
        "completed_count": 2,
        "results": [1, 2],
        "prize_results": None,
        "errors": None,
        "start_time": START_TIME,
        "last_update_time": START_TIME + 5,
    }
    if kind == "total_count":
        document["total_count"] = 10_001
    elif kind == "errors[].draw_index":
        document["errors"] = [{"draw_index": 0, "error_message": "rng timeout", "timestamp": START_TIME}]
    elif kind == "last_update_time":
        document["last_update_time"] = 0
    elif kind == "prize_results[]":
        document.update(
            results=None, prize_results=[{"id": "a", "name": "A", "probability": 1, "value": 1}, None]
        )
    elif kind == "results[]":
        document["results"] = [1, 2**53 + 1]
    elif kind == "lock_key":
        document["lock_key"] = f"bad_{{{i}}}"
    key = f"lottery:state:{document['lock_key']}:op_bad_{i:05d}"
    if kind == "document":
        return key, _go_json(document)[:40]  # a truncated write
    return key, _go_json(document)


INVALID_KINDS = (
    "total_count",
    "errors[].draw_index",
    "last_update_time",
    "prize_results[]",
    "results[]",
    "lock_key",
    "document",
)


class Planted:
    """What the test put in Redis, and what the import should make of it."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.ttl_ms: dict[str, int | None] = {}
        self.reasons: Counter[str] = Counter()
        self.refused: set[str] = set()
        self.valid: dict[str, Converted] = {}

    def add(self, key: str, raw: bytes, ttl_ms: int | None) -> None:
        self.values[key], self.ttl_ms[key] = raw, ttl_ms
        outcome = convert(key, raw)
        if isinstance(outcome, Converted):
            self.valid[key] = outcome
        else:
            assert isinstance(outcome, Refusal), outcome
            self.refused.add(key)


def _plant(rdb: Any) -> Planted:
    planted = Planted()
    engine = [e for e in MANIFEST["fixtures"] if e["expect"] != "not_engine"]
    for entry in engine:
        planted.add(entry["key"], (FIXTURES / entry["file"]).read_bytes(), 3_600_000)
        if entry["expect"] == "refused":
            planted.reasons[reason_of(Refusal(entry["key"], entry["field"], ""))] += 1
    for n, kind in enumerate(INVALID_KINDS * PER_INVALID_KIND):
        key, raw = _invalid(kind, n)
        planted.add(key, raw, 1_800_000 + n)
        planted.reasons[kind] += 1
    for i in range(PLANTED - len(planted.values)):
        key, raw = _valid(i)
        planted.add(key, raw, None if i % NO_TTL_EVERY == 0 else 600_000 + i * 997)
    assert len(planted.values) == PLANTED
    assert len(planted.refused) == sum(planted.reasons.values())  # every invalid one is refused
    pipe = rdb.pipeline(transaction=False)
    for key, raw in planted.values.items():
        pipe.set(key, raw, px=planted.ttl_ms[key])
    sidecar = next(e for e in MANIFEST["fixtures"] if e["expect"] == "not_engine")
    pipe.set(sidecar["key"], (FIXTURES / sidecar["file"]).read_bytes())
    pipe.execute()
    return planted


def _cli(redis_url: str, *args: str) -> tuple[int, dict[str, Any]]:
    where = (
        ["--redis-cluster", redis_url.removeprefix(CLUSTER_PREFIX)]
        if redis_url.startswith(CLUSTER_PREFIX)
        else ["--redis-url", redis_url]
    )
    result = subprocess.run(
        [sys.executable, "-c", "from drawstated.cli import main; main()", "import-legacy", *where, *args],
        env=_env(),
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.stdout, result.stderr.decode()
    return result.returncode, orjson.loads(result.stdout)


def _snapshot(rdb: Any) -> dict[bytes, bytes | None]:
    names = sorted(rdb.scan_iter(match="*", count=500))
    pipe = rdb.pipeline(transaction=False)
    for name in names:
        pipe.dump(name)
    return dict(zip(names, pipe.execute(), strict=True))


def _redis_now_ms(rdb: Any) -> int:
    seconds, micros = rdb.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _counts(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("imported", "already_present", "already_closed", "refused", "deleted", "vanished")
    return {name: report[name] for name in keys}


def test_import_of_1000_engine_states_resumes_every_valid_one_and_runs_again_as_a_no_op(
    redis_url, rdb, client
):
    planted = _plant(rdb)
    valid, refused_count = len(planted.valid), len(planted.refused)
    print(f"\n[{redis_url[:7]}] planted {PLANTED}: {valid} valid, {refused_count} invalid")

    # A dry run, even with --delete-source, writes and deletes nothing but says what a run would do.
    before = _snapshot(rdb)
    code, dry = _cli(redis_url, "--dry-run", "--delete-source", "--json", "--ttl", str(TTL_FOR_NO_EXPIRY_S))
    assert _snapshot(rdb) == before
    assert (code, dry["dry_run"], dry["imported"], dry["deleted"]) == (EXIT_REFUSED, True, valid, valid)
    print(f"  dry run:  {_counts(dry)}")

    started = time.monotonic()
    code, first = _cli(redis_url, "--json", "--ttl", str(TTL_FOR_NO_EXPIRY_S))
    print(f"  first:    {_counts(first)} by reason {first['refused_by_reason']}")
    assert code == EXIT_REFUSED
    assert _counts(first) == _counts(dry) | {"deleted": 0}
    assert (first["imported"], first["already_present"], first["refused"]) == (valid, 0, refused_count)
    assert first["refused_by_reason"] == dict(planted.reasons)
    assert {item["key"] for item in first["refusals"]} == planted.refused
    assert first["sidecar_states"] == 1  # the sidecar's own state, met under the same prefix

    # The TTL is the source's, within a second (both read at one Redis instant); none gets --ttl.
    pipe = rdb.pipeline(transaction=False)
    for key, converted in planted.valid.items():
        pipe.pttl(key)
        pipe.get(f"lottery:state:{{{converted.lock_key}}}:{converted.operation_id}")
        pipe.pttl(f"lottery:state:{{{converted.lock_key}}}:{converted.operation_id}")
    replies, now_ms = pipe.execute(), _redis_now_ms(rdb)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    for (key, converted), (source_ttl, raw, key_ttl) in zip(
        planted.valid.items(), zip(*[iter(replies)] * 3, strict=True), strict=True
    ):
        stored = orjson.loads(raw)
        assert stored.pop("version") == 1 and stored.pop("_token").startswith("import-")
        logical_ms = stored.pop("_expires") - now_ms
        assert stored == converted.state
        if planted.ttl_ms[key] is None:
            assert source_ttl == -1
            assert TTL_FOR_NO_EXPIRY_S * 1000 - elapsed_ms - TTL_TOLERANCE_MS <= logical_ms
            assert logical_ms <= TTL_FOR_NO_EXPIRY_S * 1000
        else:
            assert abs(logical_ms - source_ttl) < TTL_TOLERANCE_MS, key
        assert abs(key_ttl - GRACE_S * 1000 - logical_ms) < TTL_TOLERANCE_MS, key

    # Every valid operation is listed by pending, and resumes through MultiDraw with its draws.
    listed = {(item.lock_key, item.operation_id) for item in client.iter_pending()}
    expected = {(c.lock_key, c.operation_id) for c in planted.valid.values()}
    sidecar_own = ("player:9", "20240101_000000_0000abcd")  # the planted sidecar state, listed or not
    assert listed - {sidecar_own} == expected
    sessions = {}
    for converted in planted.valid.values():
        session = MultiDraw.resume(client, converted.lock_key, converted.operation_id)
        assert session is not None and session.version == 2
        assert session.state.results == converted.state.get("results", [])
        assert session.next_draw_index == converted.state["completed_count"] + 1 + len(
            converted.state.get("errors", [])
        )
        sessions[converted.operation_id] = session
    moved = [s for s in sessions.values() if not s.state.finished][:20]
    for session in moved:
        session.record(7)
    *moved, completed, rolled_back = moved
    completed.complete(allow_partial=True)
    rolled_back.rollback("refunded at cut-over")

    # A second run imports nothing, overwrites no save made since, and brings no ended one back.
    code, second = _cli(redis_url, "--json")
    print(f"  second:   {_counts(second)}")
    assert code == EXIT_REFUSED
    assert (second["imported"], second["already_present"], second["already_closed"]) == (0, valid - 2, 2)
    assert second["refused_by_reason"] == dict(planted.reasons)
    for session in moved:
        state = client.load(session.lock_key, session.operation_id)
        assert state is not None and state.version == 3 and state.results[-1:] == [7]
    for session in (completed, rolled_back):
        assert client.load(session.lock_key, session.operation_id) is None

    # --delete-source removes the engine keys of imported (and ended) operations, no refused one.
    code, third = _cli(redis_url, "--json", "--delete-source")
    print(f"  deleting: {_counts(third)}")
    assert (code, third["imported"], third["deleted"], third["kept_changed"]) == (EXIT_REFUSED, 0, valid, [])
    left = {
        name.decode()
        for name in rdb.scan_iter(match="lottery:state:*", count=500)
        if not name.startswith(b"lottery:state:{")
    }
    assert left == planted.refused
    code, last = _cli(redis_url, "--json")
    assert (code, last["examined"], last["imported"], last["refused"]) == (
        EXIT_REFUSED,
        refused_count,
        0,
        refused_count,
    )
    assert client.load(moved[0].lock_key, moved[0].operation_id) is not None


def test_delete_source_keeps_an_engine_key_written_again_after_it_was_read(redis_url, rdb):
    key, raw = _valid(31)
    rdb.set(key, raw)

    class EngineStillWriting(Importer):
        def _write(self, planned):  # the engine writes its key again between the read and the delete
            outcomes = super()._write(planned)
            rdb.set(key, raw.replace(b'"completed_count":1', b'"completed_count":2'))
            return outcomes

    with direct_client(redis_url) as importer_client:
        report = EngineStillWriting(importer_client, Settings(delete_source=True)).run()
    assert (report.imported, report.deleted, report.kept_changed) == (1, 0, [key])
    assert rdb.exists(key)


def _env() -> dict[str, str]:
    """This process's environment without DRAWSTATE_* settings that would point the command elsewhere."""
    return {name: value for name, value in os.environ.items() if not name.startswith("DRAWSTATE_")}


def _cli_text(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from drawstated.cli import main; main()", "import-legacy", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_a_run_with_nothing_refused_exits_0(redis_url, rdb):
    key, raw = _valid(1)
    rdb.set(key, raw, px=60_000)
    code, report = _cli(redis_url, "--json")
    assert (code, report["imported"], report["refused"]) == (EXIT_OK, 1, 0)


def test_import_through_sentinel_writes_on_the_master_it_names():
    topology = SentinelTopology(replicas=0)
    try:
        key, raw = _valid(2)
        with topology.master.client() as master:
            master.set(key, raw, px=60_000)
            result = _cli_text(
                "--redis-sentinel", ",".join(topology.addresses), "--sentinel-master", topology.name, "--json"
            )
            assert result.returncode == EXIT_OK, result.stderr
            assert orjson.loads(result.stdout)["imported"] == 1
            assert master.exists("lottery:state:{player:0}:op_00002", "lottery:ops:{player:0}") == 2
    finally:
        topology.cleanup()


def test_import_takes_the_redis_password_from_the_environment_only(own_redis):
    password = "import-test-pa55"  # a throwaway password of this test's own server
    with own_redis.client() as client:
        key, raw = _valid(3)
        client.set(key, raw)
        client.config_set("requirepass", password)
    refused = _cli_text("--redis-url", own_redis.url)
    assert refused.returncode == EXIT_REDIS, refused.stderr
    result = subprocess.run(
        [sys.executable, "-c", "from drawstated.cli import main; main()", "import-legacy", "--json"],
        env={**_env(), "DRAWSTATE_REDIS_URL": own_redis.url, "DRAWSTATE_REDIS_PASSWORD": password},
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert orjson.loads(result.stdout)["imported"] == 1
    assert password.encode() not in result.stdout + result.stderr + refused.stderr.encode()


def test_an_unreachable_redis_exits_3_naming_it():
    address = f"127.0.0.1:{free_port()}"
    result = _cli_text("--redis-url", f"redis://{address}")
    assert result.returncode == EXIT_REDIS, result.stderr
    assert address in result.stderr


def test_import_legacy_without_a_redis_named_is_a_usage_error():
    result = _cli_text()
    assert result.returncode == EXIT_USAGE
    assert "--redis-url" in result.stderr


def test_migration_doc_names_every_option_of_import_legacy():
    from drawstated.cli.importing import import_legacy

    section = MIGRATION_DOC.read_text().split("## 4.", 1)[1].split("\n## 5.", 1)[0]
    flags = [opt for param in import_legacy.params for opt in param.opts if opt.startswith("--")]
    missing = [flag for flag in flags if f"`{flag}" not in section and flag != "--help"]
    assert not missing
