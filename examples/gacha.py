"""A gacha game process: a 10-pull on a banner of weighted prizes, kept safe by drawstate's MultiDraw.

Each pull is drawn with random.choices (gold 0.1, silver 0.3, bronze 0.6),
recorded through MultiDraw, and only then granted. Crash it halfway
(`--crash-after N`: the process sends itself SIGKILL right after draw N is
saved), then run it again with `--resume` to finish the same 10-pull from
draw N+1, or with `--rollback` to cancel it: the player keeps what was
granted and gets the price of the draws never made back.

    drawstate serve &                              # the sidecar (or DRAWSTATE_SOCKET=...)
    python examples/gacha.py --seed 7 --crash-after 4
    python examples/gacha.py --seed 7 --resume     # draws 5..10, then completes
    python examples/gacha.py --seed 7 --crash-after 4
    python examples/gacha.py --rollback            # keeps draws 1..4, refunds 6 of 10

`--seed` makes every draw reproducible (draw i uses its own RNG seeded with
"<seed>:<i>"), so a crashed-and-resumed 10-pull grants exactly what an
uninterrupted one would. Without it the draws are random.

The rule that keeps grants exact: a draw is granted only once `record` has
returned, and every grant is idempotent, keyed by (operation id, draw index),
so on resume every result already in the state can be granted again safely (a
crash may have come between a save and its grant). When `record` cannot tell
whether a save landed (OutcomeUnknown), nothing is granted; `--resume` settles it.
A rollback refunds here only when it is final; otherwise the refund worker
(examples/refund_worker.py) pays it from the outcome stream.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from collections import Counter

from drawstate import (
    Client,
    DrawState,
    DrawStateError,
    MultiDraw,
    OperationClosed,
    OutcomeUnknown,
    Prize,
    VersionConflict,
)

#: The banner: (prize, weight). random.choices draws by these weights.
BANNER = [
    Prize("gold", "Gold Dragon", 0.1, 500),
    Prize("silver", "Silver Wolf", 0.3, 100),
    Prize("bronze", "Bronze Cat", 0.6, 20),
]
EXIT_NOTHING = 1
EXIT_LOST = 3


class PrizeServiceError(RuntimeError):
    """The (pretend) inventory service failed to hand out a prize: the draw fails."""


def draw_prize(seed: int | None, index: int) -> Prize:
    rng = random.Random(f"{seed}:{index}") if seed is not None else random.Random()
    return rng.choices(BANNER, weights=[prize.probability for prize in BANNER])[0]


def summary(prizes: list[Prize]) -> str:
    counts = Counter(prize.id for prize in prizes)
    parts = [f"{prize.name} x{counts[prize.id]}" for prize in BANNER if counts[prize.id]]
    total = sum(prize.value for prize in prizes)
    return f"{', '.join(parts) or 'nothing'} (value {total})"


def print_completed(final: DrawState) -> None:
    granted = summary(final.prize_results)
    print(f"completed: granted {final.completed_count} of {final.total_count} draws: {granted}")


def grant(operation_id: str, draw_index: int, prize: Prize) -> None:
    """Hand the prize to the player. In a real game: idempotent, keyed by (operation_id, draw_index),
    e.g. an INSERT that a unique key turns into a no-op the second time."""


def draw_the_rest(draw: MultiDraw, args: argparse.Namespace) -> None:
    """Draw, record, then grant, until every draw of the operation is made."""
    while not draw.finished:
        index = draw.next_draw_index
        try:
            if index == args.fail_draw:
                raise PrizeServiceError("inventory service timed out")
            prize = draw_prize(args.seed, index)
        except PrizeServiceError as exc:
            draw.record(exc)  # a failed draw: it grants nothing, and a rollback refunds it
            print(f"  draw {index:>2}/{draw.total_count}: failed ({exc})")
        else:
            draw.record(prize)  # saved: now it is safe to grant
            grant(draw.operation_id, index, prize)
            print(f"  draw {index:>2}/{draw.total_count}: {prize.name} ({prize.id}, value {prize.value})")
        if index == args.crash_after:
            print(f"  crashing: SIGKILL after draw {index}")
            os.kill(os.getpid(), signal.SIGKILL)


def new_pull(client: Client, args: argparse.Namespace) -> int:
    lock_key = f"player:{args.player}"
    metadata = {"user_id": args.player, "banner": args.banner, "price_paid": str(args.price)}
    # The default on_error policy ("keep"): if anything raises in the block, the
    # operation stays in Redis for --resume or --rollback.
    with MultiDraw.start(client, lock_key, args.pulls, metadata=metadata, ttl_s=args.ttl) as draw:
        print(
            f"player {args.player}: {args.pulls}-pull on banner {args.banner!r} for {args.price} gems "
            f"(operation {draw.operation_id})"
        )
        draw_the_rest(draw, args)
        final = draw.complete()
    print_completed(final)
    return 0


def granted_draws(state: DrawState) -> list[tuple[int, Prize]]:
    """(draw index, prize) of every granted draw: the indexes no failed draw holds, in order."""
    failed = {error.draw_index for error in state.errors}
    drawn = state.completed_count + len(state.errors)
    indexes = [index for index in range(1, drawn + 1) if index not in failed]
    return list(zip(indexes, state.prize_results, strict=False))


def resume(client: Client, args: argparse.Namespace) -> int:
    draw = MultiDraw.resume(client, f"player:{args.player}", ttl_s=args.ttl)
    if draw is None:
        print(f"player {args.player}: nothing to resume")
        return EXIT_NOTHING
    print(
        f"player {args.player}: resuming operation {draw.operation_id} "
        f"at draw {draw.next_draw_index}/{draw.total_count}"
    )
    kept = draw.state
    for index, prize in granted_draws(kept):  # owed to the player; granting twice is a no-op
        grant(kept.operation_id, index, prize)
    print(f"  kept from before the crash: {summary(kept.prize_results)}")
    with draw:
        draw_the_rest(draw, args)
        final = draw.complete()
    print_completed(final)
    return 0


def rollback(client: Client, args: argparse.Namespace) -> int:
    draw = MultiDraw.resume(client, f"player:{args.player}")
    if draw is None:
        print(f"player {args.player}: nothing to roll back")
        return EXIT_NOTHING
    refund = draw.rollback(args.reason)
    price = int(refund.metadata.get("price_paid", "0"))
    total = refund.state.total_count
    gems = price * refund.ungranted_count // total
    print(f"player {args.player}: rolled back operation {draw.operation_id} (cleanup {refund.cleanup})")
    granted = summary(refund.prize_results)
    print(f"  granted before the crash: {refund.granted_count} of {total} draws: {granted}")
    if refund.final:
        print(f"  refunded: {refund.ungranted_count} of {total} draws = {gems} of {price} gems")
    else:  # Redis was unreachable: the refund worker pays it from the outcome stream once applied
        print(f"  refund pending: the outcome stream carries it (about {gems} of {price} gems)")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="finish the player's interrupted pull")
    mode.add_argument("--rollback", action="store_true", help="cancel it and refund the draws not made")
    parser.add_argument("--player", default="1001", help="user id; the lock key is player:<id>")
    parser.add_argument("--banner", default="summer")
    parser.add_argument("--pulls", type=int, default=10, help="draws in the multi-draw")
    parser.add_argument("--price", type=int, default=1600, help="gems paid for the whole multi-draw")
    parser.add_argument("--seed", type=int, help="make every draw reproducible")
    parser.add_argument("--crash-after", type=int, metavar="N", help="SIGKILL this process after draw N")
    parser.add_argument("--fail-draw", type=int, metavar="N", help="make draw N fail (a DrawError)")
    parser.add_argument("--reason", default="player cancelled after a crash", help="rollback reason")
    parser.add_argument("--ttl", type=int, help="seconds the saved state outlives its last save")
    parser.add_argument("--socket", help="daemon socket [default: $DRAWSTATE_SOCKET or the default path]")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per daemon call")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # each line is out before a SIGKILL can lose it
    with Client(args.socket, timeout=args.timeout) as client:
        try:
            if args.resume:
                return resume(client, args)
            if args.rollback:
                return rollback(client, args)
            return new_pull(client, args)
        except OutcomeUnknown as exc:
            print(
                f"player {args.player}: a save is in doubt ({exc.code}); nothing granted for it: run --resume"
            )
            return 2
        except (VersionConflict, OperationClosed) as exc:
            print(f"player {args.player}: another process has this operation ({exc.code}); stopping")
            return EXIT_LOST
        except DrawStateError as exc:
            print(f"player {args.player}: drawstate error {exc}; the operation is kept for --resume")
            return 2


if __name__ == "__main__":
    sys.exit(main())
