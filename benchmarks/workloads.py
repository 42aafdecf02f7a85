"""The states the benchmarks save: how big they are and how they change from one save to the next.

A `SaveStream` plays one game process's saves: an operation starts prefilled
so that its saves end at `draws` draws, every save appends one draw (a result,
and a prize when asked) and bumps completed_count, and after `saves_per_op`
saves the next operation starts on the next of a few rotating lock keys. The
sidecar and the direct runs use the same streams, so both write the same JSON.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field

from drawstate import DrawState, Prize, new_operation_id

#: The latency and throughput state: ~100 draws with metadata, about 1 KB of JSON.
DEFAULT_DRAWS = 100
SAVES_PER_OP = 10
LOCK_KEYS_PER_STREAM = 16
METADATA = {
    "user_id": "1000421",
    "banner": "summer_limited_2025",
    "price_paid": "1600",
    "currency": "gem",
    "region": "eu-1",
    "client": "4.12.0",
}
_PRIZES = (
    Prize("ssr_sword_of_summer", "Sword of Summer", 0.006, 5000),
    Prize("sr_beach_umbrella", "Beach Umbrella", 0.051, 800),
    Prize("r_sea_shell", "Sea Shell", 0.943, 50),
)


def draw_result(rng: random.Random) -> int:
    """A range-draw result: a five-digit item id."""
    return rng.randrange(10_000, 100_000)


def draw_prize(rng: random.Random) -> Prize:
    return rng.choices(_PRIZES, weights=[p.probability for p in _PRIZES])[0]


def saves_per_op(draws: int) -> int:
    """Saves per operation: 10, fewer for tiny states so every save still holds about `draws`."""
    return max(1, min(SAVES_PER_OP, draws // 2))


def new_state(
    lock_key: str, draws: int, *, prizes: bool, rng: random.Random, prefilled: int | None = None
) -> DrawState:
    """A fresh operation whose saves will end at `draws` draws (prefilled with `prefilled`)."""
    filled = draws - saves_per_op(draws) if prefilled is None else prefilled
    now = int(time.time())
    return DrawState(
        lock_key=lock_key,
        operation_id=new_operation_id(),
        total_count=draws,
        completed_count=filled,
        results=[draw_result(rng) for _ in range(filled)],
        prize_results=[draw_prize(rng) for _ in range(filled)] if prizes else [],
        start_time=now,
        last_update_time=now,
        metadata=dict(METADATA),
    )


def record_draw(state: DrawState, rng: random.Random, *, prizes: bool) -> None:
    """One more successful draw, as a game process records it before saving."""
    state.results.append(draw_result(rng))
    if prizes:
        state.prize_results.append(draw_prize(rng))
    state.completed_count += 1
    state.last_update_time = int(time.time())


def json_bytes(state: DrawState) -> int:
    """The size a state's JSON has, as measured for the reports."""
    return len(json.dumps(state.to_dict()))


@dataclass
class SaveStream:
    """Endless saves of one game process: next() returns the state to save now."""

    tag: str
    draws: int = DEFAULT_DRAWS
    prizes: bool = False
    lock_keys: int = LOCK_KEYS_PER_STREAM
    seed: int = 0
    rng: random.Random = field(init=False)
    state: DrawState | None = field(init=False, default=None)
    ops_started: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next(self) -> DrawState:
        state = self.state
        if state is None or state.completed_count >= state.total_count:
            lock_key = f"{self.tag}:{self.ops_started % self.lock_keys}"
            state = self.state = new_state(lock_key, self.draws, prizes=self.prizes, rng=self.rng)
            self.ops_started += 1
        record_draw(state, self.rng, prizes=self.prizes)
        return state


def sample_sizes(draws: int, *, prizes: bool, saves: int = 200) -> dict[str, int]:
    """min / mean / max JSON bytes of the states a stream of `draws` saves."""
    stream = SaveStream("bench-size-probe:0", draws, prizes)
    sizes = [json_bytes(stream.next()) for _ in range(saves)]
    return {"min": min(sizes), "mean": round(sum(sizes) / len(sizes)), "max": max(sizes)}
