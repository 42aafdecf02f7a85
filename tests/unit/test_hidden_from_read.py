"""drawstated.deferred.HiddenFromRead: a read never returns an operation whose rollback was deferred.

The race it closes: a read starts while a rollback is deferred, fetches the
state, and the background cleanup applies the rollback before the read is
answered. Checked only against what is pending at the end, the read would
return an operation the caller was told is rolled back.
"""

from __future__ import annotations

from drawstated.deferred import HiddenFromRead

APPLIED = ("player:1", "op-applied")
ADDED = ("player:1", "op-added")
LIVE = ("player:1", "op-live")


def test_an_operation_deferred_when_the_read_began_stays_hidden_after_its_rollback_is_applied():
    pending = {APPLIED}
    hidden = HiddenFromRead(frozenset(pending), pending)
    pending.discard(APPLIED)  # the background cleanup took it while the read was in flight
    assert APPLIED in hidden


def test_an_operation_deferred_during_the_read_is_hidden_too():
    pending: set[tuple[str, str]] = set()
    hidden = HiddenFromRead(frozenset(pending), pending)
    pending.add(ADDED)  # a rollback deferred while the read was in flight
    assert ADDED in hidden


def test_an_operation_never_deferred_is_returned():
    pending = {APPLIED}
    hidden = HiddenFromRead(frozenset(pending), pending)
    assert LIVE not in hidden
    assert ("player:2", APPLIED[1]) not in hidden  # same id under another lock key
