"""A game process that resumes an interrupted multi-draw on cue: one side of the concurrent-resume race.

    DRAWSTATE_SOCKET=... python tests/support/resumer.py LOCK_KEY

It loads the newest live operation of LOCK_KEY without claiming it and prints
"loaded <version>"; on the first stdin line it claims it and prints "claimed
<version>" or "lost <code>"; the winner then waits for a second line, records
the remaining draws, completes, and prints "completed <draws>". The test
drives both sides over stdin, so both load before either claims.
"""

from __future__ import annotations

import sys

from drawstate import Client, MultiDraw, OperationClosed, Prize, VersionConflict

FILLER = Prize("bronze", "Bronze Cat", 0.6, 20)


def main(lock_key: str) -> int:
    with Client(timeout=5) as client:
        draw = MultiDraw.resume(client, lock_key, claim=False)
        if draw is None:
            print("nothing", flush=True)
            return 1
        print(f"loaded {draw.version}", flush=True)
        sys.stdin.readline()
        try:
            version = draw.claim()
        except (VersionConflict, OperationClosed) as exc:
            print(f"lost {exc.code}", flush=True)
            return 3
        print(f"claimed {version}", flush=True)
        sys.stdin.readline()
        while not draw.finished:
            draw.record(FILLER)
        final = draw.complete()
        print(f"completed {final.completed_count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
