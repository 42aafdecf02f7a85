"""drawstated.server.flow.MemoryBudget: who waits, and when waiting connections are let back in.

The budget's rules in isolation (the chaos tests drive it through a real daemon): resume under the
low-water mark, never leave everyone waiting while nothing runs, wake from the loop.
"""

from __future__ import annotations

import asyncio

from drawstated.server.flow import LOW_WATER, MemoryBudget

TOTAL = 1000


async def _settle() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_waiting_connections_resume_once_the_total_is_back_under_the_low_water_mark() -> None:
    budget = MemoryBudget(TOTAL, TOTAL)
    resumed: list[str] = []
    budget.change_in_flight(TOTAL)
    assert budget.full()
    budget.wait("a", lambda: resumed.append("a"))
    budget.wait("b", lambda: resumed.append("b"))
    budget.change_in_flight(-10)  # still over the low-water mark: nobody yet
    await _settle()
    assert resumed == []
    budget.change_in_flight(-(TOTAL - int(TOTAL * LOW_WATER)))
    assert resumed == []  # not nested in the release: from the loop
    await _settle()
    assert resumed == ["a", "b"]  # in the order they paused


async def test_with_nothing_in_flight_waiting_connections_are_let_in_even_over_the_mark() -> None:
    budget = MemoryBudget(TOTAL, TOTAL)
    resumed: list[str] = []
    budget.change(2 * TOTAL)  # bytes read and not decoded: over, with no request running
    assert budget.over() and not budget.full()  # a frame may still be decoded
    budget.change_in_flight(100)
    budget.wait("a", lambda: resumed.append("a"))
    budget.change_in_flight(-100)  # the last request ended: someone must be let in
    await _settle()
    assert resumed == ["a"]


async def test_a_connection_that_closed_is_not_resumed() -> None:
    budget = MemoryBudget(TOTAL, TOTAL)
    resumed: list[str] = []
    budget.change_in_flight(TOTAL)
    budget.wait("gone", lambda: resumed.append("gone"))
    budget.forget("gone")
    budget.change_in_flight(-TOTAL)
    await _settle()
    assert resumed == []
    assert budget.held == 0
