"""Codec micro-benchmarks (pytest-benchmark): the per-save CPU of encoding, decoding and validating a state.

Run only when asked:  python -m pytest benchmarks/test_codec.py --benchmark-only
(the default `pytest` collects tests/ only). States of 10, 100 and 1000 draws,
results and prize_results filled. What each step is on the save path:

- client: DrawState.to_dict, check_state (Client.save validates before sending),
  msgpack encode_frame; daemon: decode_body, check_state, JSON encode_head
  (orjson) for the Lua script; load: decode_state (orjson + check_state).
- direct redis-py: json.dumps of to_dict (the stdlib JSON a game process would use).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from benchmarks.workloads import new_state
from drawstate.model import DrawState, check_state
from drawstate.protocol import HEADER_SIZE, decode_body, encode_frame
from drawstated.codec import decode_state, encode_head, encode_state

pytest.importorskip("pytest_benchmark")

SIZES = (10, 100, 1000)


def _state(draws: int) -> DrawState:
    return new_state("player:1001", draws, prizes=True, rng=random.Random(draws), prefilled=draws)


@pytest.fixture(params=SIZES, ids=lambda draws: f"{draws}-draws")
def state(request: pytest.FixtureRequest) -> DrawState:
    return _state(request.param)


def _request(state: DrawState) -> dict[str, Any]:
    data = state.to_dict()
    data.pop("version")
    return {"id": 1, "op": "save", "state": data, "token": "0123456789abcdef", "deadline_ms": 1000}


@pytest.mark.benchmark(group="client: DrawState.to_dict")
def test_to_dict(benchmark: Any, state: DrawState) -> None:
    benchmark(state.to_dict)


@pytest.mark.benchmark(group="validation: check_state")
def test_check_state(benchmark: Any, state: DrawState) -> None:
    benchmark(check_state, state.to_dict())


@pytest.mark.benchmark(group="validation: DrawState.from_dict (check + build)")
def test_from_dict(benchmark: Any, state: DrawState) -> None:
    benchmark(DrawState.from_dict, state.to_dict())


@pytest.mark.benchmark(group="msgpack: encode_frame (save request)")
def test_msgpack_encode_frame(benchmark: Any, state: DrawState) -> None:
    benchmark(encode_frame, _request(state))


@pytest.mark.benchmark(group="msgpack: decode_body (save request)")
def test_msgpack_decode_body(benchmark: Any, state: DrawState) -> None:
    body = encode_frame(_request(state))[HEADER_SIZE:]
    assert decode_body(body)["state"]["completed_count"] == state.completed_count
    benchmark(decode_body, body)


@pytest.mark.benchmark(group="json: encode_head (orjson, daemon)")
def test_json_encode_head(benchmark: Any, state: DrawState) -> None:
    benchmark(encode_head, state.to_dict())


@pytest.mark.benchmark(group="json: decode_state (orjson + check_state)")
def test_json_decode_state(benchmark: Any, state: DrawState) -> None:
    raw = encode_state(state.to_dict())
    assert decode_state(raw)["completed_count"] == state.completed_count
    benchmark(decode_state, raw)


@pytest.mark.benchmark(group="json: stdlib dumps (direct redis-py path)")
def test_json_stdlib_dumps(benchmark: Any, state: DrawState) -> None:
    benchmark(json.dumps, state.to_dict())
