"""What the workers run: paced (open-loop) senders and closed-loop clients. Times are time.monotonic().

Open loop, no coordinated omission. The schedule is fixed in advance: slot i
of a block is due at `start + i / rate`. With S sender processes, sender j owns
slots j, j+S, j+2S, ... — each sends at rate/S through its own connection.
Latency is measured from the slot's INTENDED time to the reply, so when a
reply is slow and the sender's next slot goes out late, that lateness counts
in full; and because the other S-1 senders hold their own connections, one
slow reply does not delay their slots. A sender never skips a late slot: it
sends at once and lets the latency show it. Each reply also carries the
service time (from the actual send) and the send lag (actual - intended), so
a report can tell the system's delay from the harness falling behind.

Closed loop: each client sends its next request as soon as the last reply
arrives, from a shared start time until a shared end time; only requests that
complete inside the window count.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import redis

from benchmarks.measure import samples
from benchmarks.pool import Handler, WorkerContext
from benchmarks.targets import Target
from benchmarks.workloads import SaveStream, new_state, record_draw
from drawstate import DrawStateError

#: Operation failures that a run counts and survives (anything else is a harness bug and fails it).
COUNTED_ERRORS = (DrawStateError, redis.RedisError, OSError)

MIX_DRAWS = 10
MIX_ROLLBACK_SHARE = 0.1
WARMUP_SAVES = 5


def sleep_until(when: float) -> None:
    """Block until `when` (time.monotonic()); at once if it has passed."""
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def prepare(context: WorkerContext, *, targets: list[str], tag: str) -> Iterator[dict[str, Any]]:
    """Connect to each target and warm it up with a few saves; reply when ready."""
    for name in targets:
        target = context.target(name)
        target.ping()
        stream = SaveStream(f"{tag}:warm:{name}:{context.index}", seed=context.index)
        for _ in range(WARMUP_SAVES):
            target.save(stream.next())
    yield {"ready": context.index}


def paced(
    context: WorkerContext, *, blocks: list[dict[str, Any]], rate: float, senders: int, tag: str
) -> Iterator[dict[str, Any]]:
    """Send this sender's slots of each block on schedule; reply once per block."""
    interval = 1.0 / rate
    streams = {
        name: SaveStream(f"{tag}:lat:{name}:{context.index}", seed=context.index)
        for name in {block["target"] for block in blocks}
    }
    for block in blocks:
        target = context.target(block["target"])
        stream = streams[block["target"]]
        start = block["start"]
        latency, service, lag = samples(), samples(), samples()
        errors = 0
        last_done = start
        for slot in range(context.index, block["slots"], senders):
            intended = start + slot * interval
            state = stream.next()  # the game's own bookkeeping, done before the save is due
            sleep_until(intended)
            sent = time.monotonic()
            try:
                target.save(state)
            except COUNTED_ERRORS:
                errors += 1
                continue
            last_done = time.monotonic()
            latency.append(last_done - intended)
            service.append(last_done - sent)
            lag.append(sent - intended)
        yield {"latency": latency, "service": service, "lag": lag, "errors": errors, "last_done": last_done}


class Recorder:
    """Latencies per operation name for the operations that complete inside [now, end_at]."""

    def __init__(self, end_at: float) -> None:
        self.end_at = end_at
        self.ops: dict[str, Any] = {}
        self.errors = 0

    def __call__(self, name: str, operation: Callable[[Any], Any], arg: Any) -> bool:
        """Run one operation and record it; False once the window is over (do not start another)."""
        if time.monotonic() >= self.end_at:
            return False
        began = time.monotonic()
        try:
            operation(arg)
        except COUNTED_ERRORS:
            self.errors += 1
            return True
        self.finished(name, began)
        return True

    def finished(self, name: str, began: float) -> None:
        """Record an operation that began at `began` and ended now, if it ended inside the window."""
        done = time.monotonic()
        if done <= self.end_at:
            self.ops.setdefault(name, samples()).append(done - began)

    def count(self, name: str) -> int:
        return len(self.ops.get(name, ()))


def _saves(target: Target, stream: SaveStream, record: Recorder, max_ops: int) -> None:
    while record.count("save") < max_ops and record("save", target.save, stream.next()):
        pass


def _multidraws(target: Target, tag: str, seed: int, record: Recorder) -> int:
    """Whole multi-draws: start, a save per draw, load, then complete (90%) or rollback (10%)."""
    rng = random.Random(seed)
    finished = 0
    while True:
        state = new_state(f"{tag}:{finished % 16}", MIX_DRAWS, prizes=True, rng=rng, prefilled=0)
        if not record("start", target.save, state):
            return finished
        for _ in range(MIX_DRAWS):
            record_draw(state, rng, prizes=True)
            if not record("save", target.save, state):
                return finished
        if not record("load", target.load, state):
            return finished
        rollback = rng.random() < MIX_ROLLBACK_SHARE
        if rollback and not record("rollback", target.rollback, state):
            return finished
        if not rollback and not record("complete", target.complete, state):
            return finished
        if time.monotonic() <= record.end_at:
            finished += 1


def closed(
    context: WorkerContext,
    *,
    target: str,
    workload: str,
    start_at: float,
    end_at: float,
    tag: str,
    draws: int = 100,
    prizes: bool = False,
    max_ops: int = 2**62,
) -> Iterator[dict[str, Any]]:
    """Back-to-back operations from start_at to end_at (or max_ops); reply with their latencies."""
    client = context.target(target)
    seed = zlib.crc32(f"{tag}:{context.index}".encode())
    stream_tag = f"{tag}:{target}:{context.index}"
    record = Recorder(end_at)
    finished = 0
    sleep_until(start_at)
    cpu_before = time.process_time()
    began = time.monotonic()
    if workload == "save":
        _saves(client, SaveStream(stream_tag, draws, prizes, seed=seed), record, max_ops)
    elif workload == "mix":
        finished = _multidraws(client, stream_tag, seed, record)
    else:
        raise ValueError(f"unknown workload {workload!r}")
    cpu = time.process_time() - cpu_before
    yield {
        "ops": record.ops,
        "errors": record.errors,
        "multidraws": finished,
        "elapsed_s": min(time.monotonic(), end_at) - began,
        "client_cpu_s": cpu,
    }


HANDLERS: dict[str, Handler] = {"prepare": prepare, "paced": paced, "closed": closed}
