"""Caller mistakes in a client's arguments are ValueErrors at once, never a confusing error later.

A timeout of 0, a negative one, infinity or NaN used to reach the socket calls (OverflowError on
every call) or come back as a SidecarTimeout that says the request "may have taken effect".
Nothing here needs a daemon: the checks run before anything is sent.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from drawstate import Client
from drawstate.aio import AsyncClient
from drawstate.ops import MAX_TIMEOUT_S

BAD_TIMEOUTS = [0, -1, -0.5, math.inf, -math.inf, math.nan, MAX_TIMEOUT_S * 2, True, "5"]


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=repr)
def test_a_client_refuses_a_timeout_that_is_not_a_finite_positive_number(
    timeout: object, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="timeout must be"):
        Client(tmp_path / "d.sock", timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be"):
        AsyncClient(tmp_path / "d.sock", timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=repr)
def test_a_call_refuses_such_a_timeout_before_sending_anything(timeout: object, tmp_path: Path) -> None:
    # No daemon listens at this path: a call that got as far as connecting would raise SidecarUnavailable.
    with Client(tmp_path / "nobody.sock", timeout=1.0) as client, pytest.raises(ValueError, match="timeout"):
        client.ping(timeout=timeout)  # type: ignore[arg-type]

    async def ping() -> None:
        async with AsyncClient(tmp_path / "nobody.sock", timeout=1.0) as client:
            await client.ping(timeout=timeout)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(ping())


@pytest.mark.parametrize("timeout", [0.001, 1, 5.0, MAX_TIMEOUT_S])
def test_finite_positive_timeouts_up_to_a_day_are_taken(timeout: float, tmp_path: Path) -> None:
    assert Client(tmp_path / "d.sock", timeout=timeout).timeout == timeout
