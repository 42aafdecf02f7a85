"""The money invariants under chaos: a randomized run of real processes, then each operation's ledger checked.

Two hosts share one redis-server: host A's daemon reaches it through a proxy the test cuts and
restores, host B's directly. Game processes on both hosts run multi-draws (tests/chaos/
ledger_actors.py) and are SIGKILLed at random; a recovery worker on each host resumes or rolls
back what they abandon (one game per host and host A's worker send saves as appends); both
daemons are SIGKILLed and restarted; short TTLs let operations expire; the refund worker of
examples/refund_worker.py settles what the outcome stream owes: it grants the recorded draws no
game granted and refunds the rest. Every process grants through one backend database (the
worker's grants table, keyed by operation id and draw index) and writes what it granted and
refunded. Before the chaos, a scenario phase (ledger_scenarios.py) forces each money path a seed
could miss. When the chaos stops, whatever is left is settled (open rollbacks resent with their
stored token, live operations rolled back), and the ledger is checked against the four
invariants of docs/recovery.md for every operation (ledger_check.py): every result in a final
state granted exactly once, refunds covering exactly the rest. The run prints how often each
money path was taken and fails if one never was.

The default run is bounded (DRAWSTATE_LEDGER_SECONDS, 35 s of chaos after about 10 s of
scenarios); `-m slow` runs ten minutes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drawstate import Client, DrawStateError, MultiDraw
from drawstate.limits import DEFAULT_LIMITS
from drawstated.storage.stream import event_item
from testbed.redis_proc import RedisProcess
from tests.chaos.ledger_actors import BACKEND, Ledger, open_backend, read_ledgers, roll_back
from tests.chaos.ledger_check import MONEY_PATHS, Grant, check
from tests.chaos.ledger_scenarios import force_money_paths
from tests.support.daemon import DaemonProcess
from tests.support.proxy import TcpProxy

REPO = Path(__file__).resolve().parents[2]
REFUND_WORKER = REPO / "examples" / "refund_worker.py"
GAMES_PER_HOST = 2
#: Daemon options: sweeps and refund decisions left by a dead daemon settle within seconds.
DAEMON_ARGS = (
    "--sweep-interval",
    "0.5",
    "--max-deadline-ms",
    "2000",
    "--cleanup-retry",
    "0.2",
    "--ttl",
    "600",
)
#: Actor options that have its client send each save of an operation it holds a base for as an
#: append: from an operation's second draw on, pulls of a few draws being far below the threshold.
APPENDS = ("--append-from", "1")
#: How long everything settles after the chaos stops, at most.
SETTLE_S = 60.0


@dataclass
class Host:
    name: str
    directory: Path
    redis_url: str
    daemon: DaemonProcess | None = None
    games: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    recovery: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "d.sock"

    def start_daemon(self) -> None:
        self.daemon = DaemonProcess(
            self.socket,
            ["--redis-url", self.redis_url, "--data-dir", str(self.directory / "data"), *DAEMON_ARGS],
        )
        self.daemon.log_path = self.directory / "daemon.log"
        self.daemon.start()


class Chaos:
    """The run: hosts, actors, the refund worker, and what the chaos did."""

    def __init__(self, root: Path, redis: RedisProcess, proxy: TcpProxy, seed: int) -> None:
        self.root = root
        self.ledger = root / "ledger"
        self.ledger.mkdir()
        self.seed = seed
        self.rng = random.Random(seed)
        self.hosts = [
            Host("a", root / "a", proxy.url),  # reaches Redis through the proxy the test cuts
            Host("b", root / "b", redis.url),
        ]
        self.proxy = proxy
        self.redis = redis
        self.refund_worker: subprocess.Popen[bytes] | None = None
        #: What the chaos did, each blow listed even if the seed never dealt it.
        self.counts: Counter[str] = Counter(
            dict.fromkeys(
                ("game processes killed", "host A cut off from Redis", "daemon a killed", "daemon b killed"),
                0,
            )
        )

    def env(self, host: Host) -> dict[str, str]:
        return {**os.environ, "DRAWSTATE_SOCKET": str(host.socket), "PYTHONPATH": _pythonpath()}

    def actor(self, host: Host, role: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.ledger_actors", role, "--ledger", str(self.ledger),
                 "--name", name, "--seed", str(self.rng.randrange(10**9)), *args],
                cwd=REPO, env=self.env(host), stdout=log, stderr=log,
            )  # fmt: skip

    def game(self, host: Host, name: str) -> subprocess.Popen[bytes]:
        """A game process; the first of each host sends its saves as appends (APPENDS)."""
        return self.actor(host, "game", name, *(APPENDS if name == f"game-{host.name}0" else ()))

    def recovery(self, host: Host) -> subprocess.Popen[bytes]:
        """The host's recovery worker; host A's sends the saves of what it resumes as appends."""
        appends = APPENDS if host is self.hosts[0] else ()
        return self.actor(host, "recovery", f"recovery-{host.name}", "--older-than", "3", *appends)

    def start(self) -> None:
        """The daemons and the refund worker, the forced scenarios, then the game processes."""
        open_backend(self.ledger).close()  # the shared database, in WAL mode before anyone writes
        for host in self.hosts:
            host.directory.mkdir()
            host.start_daemon()
        self.start_refund_worker()
        began = time.monotonic()
        force_money_paths(self.ledger, self.hosts[0].socket, self.hosts[1].socket, self.proxy, self.redis)
        self.counts["scenario phase seconds"] = round(time.monotonic() - began)
        for host in self.hosts:
            for i in range(GAMES_PER_HOST):
                name = f"game-{host.name}{i}"
                host.games[name] = self.game(host, name)
            host.recovery = self.recovery(host)

    def start_refund_worker(self) -> None:
        host = self.hosts[1]
        with open(self.root / "refund-worker.log", "ab") as log:
            self.refund_worker = subprocess.Popen(
                [sys.executable, str(REFUND_WORKER), "--ledger", str(self.ledger / BACKEND),
                 "--consumer", "worker-1", "--claim-idle", "5000"],
                env=self.env(host), stdout=log, stderr=log,
            )  # fmt: skip

    def step(self) -> None:
        """One random blow, then keep every process that should run running."""
        roll = self.rng.random()
        if roll < 0.5:
            host = self.rng.choice(self.hosts)
            name = self.rng.choice(sorted(host.games))
            host.games[name].kill()
            host.games[name].wait()
            self.counts["game processes killed"] += 1
            host.games[name] = self.game(host, name)
        elif roll < 0.7:
            self.proxy.cut()  # host A loses Redis; host B keeps it
            self.counts["host A cut off from Redis"] += 1
            time.sleep(self.rng.uniform(1.0, 5.0))
            self.proxy.restore()
        elif roll < 0.85:
            host = self.rng.choice(self.hosts)
            assert host.daemon is not None and host.daemon.proc is not None
            host.daemon.proc.kill()
            host.daemon.proc.wait()
            self.counts[f"daemon {host.name} killed"] += 1
            host.start_daemon()  # same data dir: it replays its journal of deferred rollbacks
        else:
            time.sleep(self.rng.uniform(0.2, 1.0))
        self.keep_running()

    def keep_running(self) -> None:
        for host in self.hosts:
            if host.recovery is not None and host.recovery.poll() is not None:
                host.recovery = self.recovery(host)
        if self.refund_worker is not None and self.refund_worker.poll() is not None:
            self.start_refund_worker()  # it exits when its daemon goes away; start it again

    def stop_actors(self) -> None:
        for host in self.hosts:
            for process in [*host.games.values(), host.recovery]:
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
        if self.refund_worker is not None and self.refund_worker.poll() is None:
            self.refund_worker.send_signal(signal.SIGTERM)
            self.refund_worker.wait(10)

    def stop_daemons(self) -> None:
        for host in self.hosts:
            if host.daemon is not None:
                host.daemon.stop()


def _pythonpath() -> str:
    return os.pathsep.join([str(REPO), str(REPO / "client"), str(REPO / "daemon")])


def settle(chaos: Chaos) -> None:
    """Whatever the chaos left: resend open rollbacks with their token, roll back what is live, wait
    until every deferred rollback is applied, every event written and the refund worker drained."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        unresolved = _run_resolve(chaos)
        live = _roll_back_live(chaos)
        if not unresolved and not live and _quiet(chaos):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the run did not settle: rollbacks in doubt or operations still live")
    _drain_refunds(chaos)


def _run_resolve(chaos: Chaos) -> int:
    host = chaos.hosts[1]
    result = subprocess.run(
        [sys.executable, "-m", "tests.chaos.ledger_actors", "resolve",
         "--ledger", str(chaos.ledger), "--name", "resolve"],
        cwd=REPO, env=chaos.env(host), capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode


def _roll_back_live(chaos: Chaos) -> int:
    """Roll back every operation still live, as a last recovery pass (intent first, pay if final)."""
    ledger = Ledger(chaos.ledger, "settle")
    live = 0
    try:
        with Client(chaos.hosts[1].socket, timeout=2) as client:
            for item in client.iter_pending():
                live += 1
                try:
                    draw = MultiDraw.resume(client, item.lock_key, item.operation_id, claim=False)
                    if draw is not None:
                        roll_back(ledger, draw, "settle: still live at the end")
                except DrawStateError:
                    continue
    finally:
        ledger.close()
    return live


def _quiet(chaos: Chaos) -> bool:
    """No deferred rollback waiting in either journal, no event unwritten, no state left."""
    for host in chaos.hosts:
        with Client(host.socket, timeout=2) as client:
            if client.stats().deferred_rollbacks:
                return False
    with chaos.redis.client() as rdb:
        return not rdb.keys("lottery:outbox:*") and not rdb.keys("lottery:state:*")


def _drain_refunds(chaos: Chaos) -> None:
    host = chaos.hosts[1]
    result = subprocess.run(
        [sys.executable, str(REFUND_WORKER), "--ledger", str(chaos.ledger / BACKEND),
         "--consumer", "worker-1", "--claim-idle", "1", "--stop-when-idle"],
        env=chaos.env(host), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


def verdict_of(chaos: Chaos) -> Any:
    with chaos.redis.client() as rdb:
        entries = rdb.xrange("lottery:audit")
        states_left = [key.decode().rsplit(":", 1)[1] for key in rdb.keys("lottery:state:*")]
    events = [event_item(entry_id, fields, DEFAULT_LIMITS) for entry_id, fields in entries]
    with closing(sqlite3.connect(chaos.ledger / BACKEND)) as db:
        stream_refunds = dict(db.execute("SELECT operation_id, draws FROM refunds").fetchall())
        grants = [
            Grant(op, idx, json.loads(result), by)
            for op, idx, result, by in db.execute(
                "SELECT operation_id, draw_index, result, granted_by FROM grants"
            )
        ]
        parked = [op for (op,) in db.execute("SELECT operation_id FROM manual")]
    return check(
        read_ledgers(chaos.ledger), events, stream_refunds, states_left, grants=grants, parked=parked
    )


@pytest.fixture
def chaos() -> Iterator[Chaos]:
    root = Path(tempfile.mkdtemp(prefix="dsl-", dir="/tmp"))  # unix socket paths stay short
    redis = RedisProcess().start()
    proxy = TcpProxy(redis.socket).start()
    seed = int(os.environ.get("DRAWSTATE_LEDGER_SEED", str(time.time_ns() % 10**6)))
    run = Chaos(root, redis, proxy, seed)
    try:
        yield run
    finally:
        run.stop_actors()
        run.stop_daemons()
        proxy.close()
        redis.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _run(chaos: Chaos, seconds: float, chaos_report: dict[str, Any]) -> None:
    chaos.start()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        chaos.step()
    chaos.proxy.restore()
    for host in chaos.hosts:
        for game in host.games.values():  # the games die mid-flight, as at a real outage's end
            game.kill()
            game.wait()
    chaos.stop_actors()
    settle(chaos)
    verdict = verdict_of(chaos)
    counts = {"ledger append-then-whole": 0, **chaos.counts, **verdict.counts}
    chaos_report[f"ledger ({seconds:.0f} s, DRAWSTATE_LEDGER_SEED={chaos.seed})"] = dict(
        sorted(counts.items())
    )
    print("ledger counts:")
    for name, count in sorted(counts.items()):
        print(f"  {name}: {count}")
    assert verdict.counts["operations"] > 20
    assert not verdict.violations, "\n".join(verdict.violations[:50])
    never = [name for name in MONEY_PATHS if not verdict.counts[name]]
    assert not never, f"money paths this run never took: {never}"
    assert verdict.counts["ledger append"] > 0, "no save was made as an append"


@pytest.mark.timeout(300)
def test_every_paid_draw_is_delivered_or_refunded_exactly_once_under_chaos(chaos, chaos_report):
    _run(chaos, float(os.environ.get("DRAWSTATE_LEDGER_SECONDS", "35")), chaos_report)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_paid_draw_is_delivered_or_refunded_exactly_once_for_ten_minutes(chaos, chaos_report):
    _run(chaos, 600.0, chaos_report)
