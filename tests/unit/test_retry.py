"""drawstated.retry.is_transient: which Redis failures are worth another attempt within the deadline."""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors

from drawstated.retry import is_transient

TRANSIENT = [
    redis_errors.ConnectionError("Connection refused"),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
    redis_errors.ReadOnlyError("READONLY You can't write against a read only replica."),
    ConnectionResetError(104, "Connection reset by peer"),
    redis_errors.ResponseError("BUSY Redis is busy running a script."),
    redis_errors.ResponseError("MASTERDOWN Link with MASTER is down"),
    redis_errors.ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
    redis_errors.ResponseError("CLUSTERDOWN The cluster is down"),
    redis_errors.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
    # Redirections the cluster router stopped following: the slot is changing hands.
    redis_errors.ResponseError("MOVED 5290 127.0.0.1:33025"),
    redis_errors.ResponseError("ASK 5290 127.0.0.1:33025"),
]
FINAL = [
    TimeoutError(),  # the request's own deadline: another attempt cannot beat it
    redis_errors.ResponseError("NOSCRIPT No matching script. Please use EVAL."),
    redis_errors.ResponseError("ERR Error running script: user_script:12: bad argument"),
    redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    ValueError("not a redis error at all"),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda exc: str(exc).split()[0])
def test_outages_and_slots_in_flux_are_retried(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", FINAL, ids=lambda exc: type(exc).__name__ + ":" + str(exc)[:12])
def test_answers_and_our_own_deadline_are_not(exc: BaseException) -> None:
    assert not is_transient(exc)
