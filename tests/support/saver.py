"""A game-like load process for failover tests: saves one operation draw after draw, forever retrying.

Usage: python -m tests.support.saver SOCKET LOCK_KEY SECONDS DURABILITY [STOP_FILE]
It stops after SECONDS, or as soon as STOP_FILE exists.
Prints one JSON line: the last acknowledged completed_count, error counts by
code, any non-retryable error, and the longest stretch without an ack.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from drawstate import Client, DrawState, DrawStateError, new_operation_id


def main() -> None:
    socket_path, lock_key, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    durability = sys.argv[4]
    stop_file = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    now = int(time.time())
    state = DrawState(lock_key, new_operation_id(), 10_000, start_time=now, last_update_time=now)
    errors: Counter[str] = Counter()
    fatal: list[str] = []
    acked, longest_gap, last_ack = 0, 0.0, time.monotonic()
    stop_at = time.monotonic() + seconds
    with Client(socket_path, timeout=2.0) as client:
        while time.monotonic() < stop_at and not fatal and not (stop_file and stop_file.exists()):
            state.completed_count += 1
            state.results.append(state.completed_count)
            token = f"{lock_key}-{state.completed_count}".replace(":", "_")
            while time.monotonic() < stop_at + 30:  # a save is retried until acknowledged
                try:
                    client.save(state, token=token, durability=durability)
                except DrawStateError as exc:
                    errors[exc.code] += 1
                    if not exc.retryable:
                        fatal.append(f"{exc.code}: {exc.message}")
                        break
                    time.sleep(0.01)
                    continue
                acked = state.completed_count
                now_m = time.monotonic()
                longest_gap, last_ack = max(longest_gap, now_m - last_ack), now_m
                break
    report = {"lock_key": lock_key, "operation_id": state.operation_id, "acked": acked}
    report.update(errors=dict(errors), fatal=fatal, longest_gap_s=round(longest_gap, 3))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
