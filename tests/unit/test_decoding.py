"""drawstated.server.decoding: a request frame decodes within its limits, and never to more than its cost.

The cost (frame bytes + ITEM_BYTES per item) is what the in-flight byte budget charges, so it
must bound what decoding really allocates: tracemalloc measures the worst shapes msgpack allows.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import pytest

from drawstate.limits import MAX_FRAME_BYTES, MAX_TOTAL
from drawstate.protocol import FrameError
from drawstated.config import Config
from drawstated.server.decoding import MAX_REQUEST_DEPTH, RefusedRequest, RequestDecoder

DECODER = RequestDecoder(Config(socket_path=Path("/tmp/unused.sock"), data_dir=Path("/tmp/unused")))


def _largest_save() -> dict[str, Any]:
    """A save of a state at MAX_TOTAL draws, each with its result and prize, and full metadata."""
    prize = {"id": "gold", "name": "Gold", "probability": 0.5, "value": 1}
    state = {
        "lock_key": "player:1",
        "operation_id": "op-1",
        "total_count": MAX_TOTAL,
        "completed_count": MAX_TOTAL,
        "results": list(range(MAX_TOTAL)),
        "prize_results": [dict(prize) for _ in range(MAX_TOTAL)],
        "start_time": 1,
        "last_update_time": 1,
        "metadata": {f"k{i}": "v" for i in range(32)},
    }
    return {"id": 1, "op": "save", "deadline_ms": 2000, "state": state}


def _fill(element: Any, per_list: int = MAX_TOTAL, items_each: int = 1) -> bytes:
    """As many lists of `element` as the item limit allows (the shape msgpack inflates most)."""
    lists = DECODER.max_items // (per_list * items_each + 1)
    return msgpack.packb({"id": 1, "op": "ping", "pad": [[element] * per_list for _ in range(lists)]})


HOSTILE = {
    "empty maps": _fill({}),
    "empty lists": _fill([]),
    "small negative ints": _fill(-20),
    "two-character strings": _fill("ab"),
    "floats": _fill(1.5),
    "maps of short keys and ints": msgpack.packb(
        {"id": 1, "op": "ping", "pad": [{f"{k:03x}": -20 for k in range(250)} for _ in range(250)]}
    ),
    "nested pairs": _fill([[]], per_list=1000, items_each=2),
}


def test_the_largest_valid_request_decodes() -> None:
    body = msgpack.packb(_largest_save())
    assert len(body) < MAX_FRAME_BYTES
    request, cost = DECODER.decode(body)
    assert request == _largest_save()
    assert cost < 12 * 2**20


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_what_a_frame_decodes_to_stays_within_its_charged_cost(shape: str) -> None:
    body = HOSTILE[shape]
    gc.collect()
    tracemalloc.start()
    try:
        _, cost = DECODER.decode(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{shape}: {len(body)} bytes -> peak {peak / 2**20:.2f} MiB, charged {cost / 2**20:.2f} MiB")
    assert peak <= cost


def test_a_frame_of_empty_maps_is_refused_before_it_inflates() -> None:
    body = msgpack.packb([[{}] * 1000] * 1000)  # ~1 MB on the wire, ~70 MB of Python if decoded
    gc.collect()
    tracemalloc.start()
    try:
        with pytest.raises(FrameError) as refused:
            DECODER.decode(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.code == "invalid_request"
    assert "items" in str(refused.value)
    assert peak < 8 * 2**20


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (msgpack.packb([0] * (DECODER.max_items + 1)), "items"),
        (msgpack.packb({str(k): 0 for k in range(DECODER.max_items + 1)}), "items"),
        (b"\xdd\xff\xff\xff\xff", "items"),  # an array declaring 2^32-1 elements, never allocated
        (b"\x91" * (MAX_REQUEST_DEPTH + 1) + b"\xc0", "nests deeper"),
        (msgpack.packb(msgpack.ExtType(1, b"x")), "extension types"),
        (b"\xc1", "not valid msgpack"),
    ],
    ids=["long array", "wide map", "declared huge", "deep nesting", "extension type", "reserved byte"],
)
def test_frames_past_a_decoding_limit_are_invalid_requests(body: bytes, problem: str) -> None:
    with pytest.raises(FrameError) as refused:
        DECODER.decode(body)
    assert refused.value.code == "invalid_request"
    assert problem in str(refused.value)


def test_a_refused_request_keeps_its_id_when_it_can_be_read_without_decoding_the_rest() -> None:
    past_the_limit = [[{}] * 10_000] * (DECODER.max_items // 10_000 + 1)
    for request in ({"id": 7, "op": "ping", "pad": past_the_limit}, {"pad": past_the_limit, "id": 7}):
        with pytest.raises(RefusedRequest) as refused:
            DECODER.decode(msgpack.packb(request))
        assert refused.value.request_id == 7
    with pytest.raises(RefusedRequest) as no_id:
        DECODER.decode(msgpack.packb({"id": -1, "pad": past_the_limit}))
    assert no_id.value.request_id is None


def test_a_state_past_its_rules_but_within_the_decoding_limits_decodes() -> None:
    """So the save is refused by its rules (draw_state_corrupted), with its id, as before."""
    request = _largest_save()
    request["state"]["results"] = list(range(MAX_TOTAL + 1))
    decoded, _ = DECODER.decode(msgpack.packb(request))
    assert len(decoded["state"]["results"]) == MAX_TOTAL + 1


def test_nesting_at_the_limit_is_accepted() -> None:
    request, _ = DECODER.decode(b"\x91" * MAX_REQUEST_DEPTH + b"\xc0")
    depth = 0
    while isinstance(request, list):
        request, depth = request[0], depth + 1
    assert depth == MAX_REQUEST_DEPTH
