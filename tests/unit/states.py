"""Valid DrawState dicts and their parts for the rule tests, and an assertion that names the broken field."""

from __future__ import annotations

from typing import Any

import pytest

from drawstate.limits import Limits
from drawstate.model import InvalidState, check_state

START = 1_700_000_000


def valid_state(**changes: Any) -> dict[str, Any]:
    """A small valid state (3 of 10 draws done, one failed draw); `changes` override fields."""
    state: dict[str, Any] = {
        "lock_key": "player:1001",
        "operation_id": "20240101_120000_deadbeef",
        "total_count": 10,
        "completed_count": 3,
        "results": [7, 42, -1],
        "prize_results": [
            {"id": "sword", "name": "Sword", "probability": 0.25, "value": 100},
            {"id": "gem", "name": "", "probability": 1, "value": -5},
        ],
        "errors": [{"draw_index": 4, "error_message": "rng timeout", "timestamp": START + 5}],
        "start_time": START,
        "last_update_time": START + 10,
        "version": 2,
        "metadata": {"user_id": "1001", "banner": "summer"},
    }
    state.update(changes)
    return state


def prize(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": "sword", "name": "Sword", "probability": 0.5, "value": 10}
    item.update(changes)
    return item


def draw_error(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"draw_index": 1, "error_message": "boom", "timestamp": START}
    item.update(changes)
    return item


def without(field: str, **changes: Any) -> dict[str, Any]:
    state = valid_state(**changes)
    del state[field]
    return state


def assert_rejected(state: object, path: str, limits: Limits | None = None) -> InvalidState:
    with pytest.raises(InvalidState) as info:
        if limits is None:
            check_state(state)
        else:
            check_state(state, limits)
    assert info.value.path == path, f"expected path {path!r}, got {info.value.path!r}: {info.value}"
    assert str(info.value).startswith(f"{path}: ")
    return info.value


def minimal_state(**changes: Any) -> dict[str, Any]:
    """A valid state without lists, so the counts can move freely."""
    state = valid_state(results=[], prize_results=[], errors=[], completed_count=0)
    state.update(changes)
    return state
