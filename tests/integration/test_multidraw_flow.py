"""MultiDraw's own rules: the context-manager policy, create-only start, no draw past the total."""

from __future__ import annotations

import pytest

from drawstate import (
    DrawStateError,
    MultiDraw,
    Prize,
    VersionConflict,
)

GOLD = Prize("gold", "Gold Dragon", 0.1, 500)
SILVER = Prize("silver", "Silver Wolf", 0.3, 100)
BRONZE = Prize("bronze", "Bronze Cat", 0.6, 20)
METADATA = {"user_id": "1001", "banner": "summer", "price_paid": "1600"}


def test_an_exception_in_the_block_keeps_the_operation_for_resume_by_default(client):
    with pytest.raises(ZeroDivisionError), MultiDraw.start(client, "player:keep", 10) as draw:
        draw.record(4)
        draw.record(1 // 0)
    resumed = MultiDraw.resume(client, "player:keep")
    assert resumed is not None
    assert resumed.operation_id == draw.operation_id and resumed.next_draw_index == 2
    assert resumed.state.results == [4]


def test_on_error_rollback_rolls_back_but_not_on_keyboard_interrupt(client):
    with pytest.raises(ValueError), MultiDraw.start(client, "player:oe", 10, on_error="rollback") as draw:
        draw.record(SILVER)
        raise ValueError("payment check failed")
    assert draw.closed == "rollback" and client.load("player:oe") is None
    with (
        pytest.raises(KeyboardInterrupt),
        MultiDraw.start(client, "player:ki", 10, on_error="rollback") as kept,
    ):
        kept.record(SILVER)
        raise KeyboardInterrupt
    assert kept.closed is None and client.load("player:ki") is not None


def test_a_block_that_records_every_draw_completes_on_exit_and_one_that_does_not_keeps_it(client):
    with MultiDraw.start(client, "player:cm", 2) as draw:
        draw.record(GOLD)
        draw.record(BRONZE)
    assert draw.closed == "complete" and client.load("player:cm") is None
    with MultiDraw.start(client, "player:cm2", 2) as unfinished:
        unfinished.record(GOLD)
    assert unfinished.closed is None and client.load("player:cm2") is not None


# --- the rules of record, start and complete --------------------------------------------


def test_record_refuses_to_record_past_total_count_and_complete_refuses_an_unfinished_operation(client):
    draw = MultiDraw.start(client, "player:rules", 2, metadata=METADATA)
    assert draw.version == 1 and draw.next_draw_index == 1 and draw.remaining == 2
    with pytest.raises(ValueError, match="still to make"):
        draw.complete()
    assert draw.record(GOLD) == 1
    assert draw.record(DrawStateError("prize table unavailable")) == 2  # a failed draw
    assert draw.finished and draw.remaining == 0
    with pytest.raises(ValueError, match="all 2 draws"):
        draw.record(SILVER)
    stored = client.load("player:rules")
    assert stored is not None and stored.completed_count == 1 and stored.errors[0].draw_index == 2
    assert stored.version == draw.version == 3
    assert draw.complete().prize_results == [GOLD]


def test_start_is_create_only(client):
    first = MultiDraw.start(client, "player:dup", 10)
    with pytest.raises(VersionConflict):
        MultiDraw.start(client, "player:dup", 10, operation_id=first.operation_id)


# --- a rollback during a Redis outage ----------------------------------------------------
