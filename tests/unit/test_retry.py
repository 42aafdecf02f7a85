"""Redis error replies are typed as they are parsed, and the type alone says whether to retry.

Each reply goes through hiredis with the daemon's `parse_error`, as on a live connection, so a
reply Redis words differently from what the classes expect fails here, in milliseconds.
"""

from __future__ import annotations

import hiredis
import pytest
from redis import exceptions as redis_errors
from redis.exceptions import InvalidResponse

from drawstated.redis import errors
from drawstated.redis.retry import is_transient


def parsed(reply: str) -> BaseException:
    """One error reply as RespConnection's reader returns it."""
    reader = hiredis.Reader(protocolError=InvalidResponse, replyError=errors.parse_error)
    reader.feed(f"-{reply}\r\n".encode())
    error = reader.gets()
    assert isinstance(error, BaseException), error
    return error


RETRYABLE_REPLIES = {
    "LOADING Redis is loading the dataset in memory": errors.LoadingError,
    "READONLY You can't write against a read only replica.": errors.ReadOnlyError,
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL.": errors.BusyError,
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is no": errors.MasterDownError,
    "TRYAGAIN Multiple keys request during rehashing of slot": errors.TryAgainError,
    "CLUSTERDOWN The cluster is down": errors.ClusterDownError,
    "OOM command not allowed when used memory > 'maxmemory'.": errors.OutOfMemoryError,
    # Redirections the cluster router stopped following: the slot is changing hands.
    "MOVED 5290 127.0.0.1:33025": errors.MovedError,
    "ASK 5290 127.0.0.1:33025": errors.AskError,
}
ANSWER_REPLIES = {
    "NOSCRIPT No matching script. Please use EVAL.": errors.NoScriptError,
    "NOGROUP No such key 'ds:{events}' or consumer group 'refunds' in XREADGROUP": errors.NoGroupError,
    "BUSYGROUP Consumer Group name already exists": errors.BusyGroupError,
    "ERR Error running script: user_script:12: bad argument": errors.ReplyError,
    "WRONGTYPE Operation against a key holding the wrong kind of value": errors.ReplyError,
    "BUSYKEY Target key name already exists.": errors.ReplyError,
}


@pytest.mark.parametrize("reply", RETRYABLE_REPLIES, ids=lambda reply: reply.split()[0])
def test_outages_and_slots_in_flux_are_typed_retryable(reply: str) -> None:
    error = parsed(reply)
    assert type(error) is RETRYABLE_REPLIES[reply]
    assert isinstance(error, redis_errors.ResponseError)
    assert str(error) == reply  # the message as Redis wrote it, code and all
    assert is_transient(error)


@pytest.mark.parametrize("reply", ANSWER_REPLIES, ids=lambda reply: reply.split()[0])
def test_answers_are_typed_and_not_retried(reply: str) -> None:
    error = parsed(reply)
    assert type(error) is ANSWER_REPLIES[reply]
    assert error.code == reply.split()[0]
    assert not is_transient(error)


def test_only_readonly_and_masterdown_demote_a_master() -> None:
    demoting = {reply for reply in RETRYABLE_REPLIES if isinstance(parsed(reply), errors.DemotedReply)}
    assert {reply.split()[0] for reply in demoting} == {"READONLY", "MASTERDOWN"}


def test_a_redirect_says_where() -> None:
    moved = parsed("MOVED 5290 10.0.0.7:7001")
    assert isinstance(moved, errors.Redirect)
    assert (moved.slot, moved.target) == (5290, "10.0.0.7:7001")


def test_a_redirect_that_does_not_say_where_is_an_answer_not_followed() -> None:
    error = parsed("MOVED somewhere")
    assert type(error) is errors.ReplyError
    assert not is_transient(error)


def test_errors_nested_in_an_array_are_typed_too() -> None:
    reader = hiredis.Reader(protocolError=InvalidResponse, replyError=errors.parse_error)
    reader.feed(b"*2\r\n-OOM over maxmemory\r\n:1\r\n")
    first, second = reader.gets()
    assert isinstance(first, errors.OutOfMemoryError) and second == 1


@pytest.mark.parametrize(
    "exc",
    [
        redis_errors.ConnectionError("Connection refused"),
        redis_errors.TimeoutError("Timeout reading from socket"),
        redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),  # from redis-py's Sentinel
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_lost_connections_are_retried(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [TimeoutError(), ValueError("not a redis error at all"), redis_errors.ResponseError("ERR plain")],
    ids=lambda exc: type(exc).__name__,
)
def test_our_own_deadline_and_other_errors_are_not(exc: BaseException) -> None:
    assert not is_transient(exc)  # TimeoutError: the request's own deadline; another attempt cannot beat it
