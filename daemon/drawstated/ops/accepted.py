"""Saves checked by what they append, against what this daemon last saw accepted per operation.

Checked whole, a 1000-draw save cost the daemon ~10 times a 10-draw one, re-checking draws that
were checked when they were first saved and can never change since (save.lua refuses a save
whose stored lists are not prefixes of the new ones). So the save op keeps, for the operations
it saved last, an `Accepted`: the rules' view of the state Redis accepted (`rules.Recorded`: its
total, list lengths and last failed draw), per draw list the length and SHA-256 of its canonical
text, its identity's hash and `_digest` (codec.py), and its canonical head. `AcceptedStates`
holds them: an LRU of at most `--accepted-cache` entries whose heads take at most
`--accepted-cache-bytes`, emptied by a restart.

A save sends either the whole state (`check_save`) or only the draws it adds to an accepted
state whose `_digest` (its `base`) it names (`check_append`, protocol.md §7.2): the head is
then spliced from the accepted one, and the save goes on as the whole state's would.

`check_save` takes a new state and the entry for its lock key and operation id, if any:

1. `rules.check_appended`: every rule on the draws after the accepted ones, and the rules that
   span the state in O(1) (the other fields, list lengths against the counts, failed-draw
   indexes rising from the last accepted one, the same total);
2. the canonical head is encoded, as for any save, and each draw list's first bytes, as many as
   the accepted list's text held, must have its SHA-256 and end between two elements.

Only when both hold is the full check skipped. Otherwise (no entry, a step failing, the state not
encoding) `check_state` runs as it did for every save before, and it alone refuses a state and
names the broken rule. So the entry can only spare work, never change an answer: a state passes
without the full check only when it is, element for element, the draws of a state that passed it
followed by draws that passed the same per-draw rules.

Why skipping the prefix is safe:

- It was checked. An entry is made only from a state that passed the rules in this daemon, under
  its limits (fixed until a restart, which empties the cache), once Redis accepted it.
- It is the same. Canonical JSON is one text per value (an int's digits are neither a bool's nor
  a float's text; a prize keeps its keys in its own order; what orjson cannot encode sends the
  state to the full check), so equal SHA-256 over equal lengths that end between two elements
  means the same elements. Finding two texts with one SHA-256 is beyond any attacker.
- Nothing in it depends on Redis. Another daemon may have saved the operation since, a save may
  have been lost in flight or undone by a failover, or the operation may have been rolled back:
  the new state is still judged against draws this daemon found valid, and save.lua still judges
  it against what is stored (below).

What the cache does not change is what save.lua checks. A replayed token is answered before any
comparison and leaves the entry as it was (the stored state is the first attempt's, not
necessarily this one). A save refused because its operation ended drops the entry; other entries
age out of the LRU. A miss, an eviction or a restart costs one full check, as every save paid.

save.lua's side: `expect_digest` is the `_digest` that the new state's identity and the first
bytes of its lists, at the accepted lengths, hash to: a claim computed from the new head alone
(when identity and those bytes are exactly the accepted ones, that is the accepted digest, reused).
When it equals the stored state's `_digest`, the stored identity is the new one and every stored
list is a prefix of the new one, so save.lua skips its own comparisons, which read both documents
whole. A stale or wrong entry only makes the claim miss: save.lua then compares the text as before.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from drawstate.limits import Limits
from drawstate.rules import Recorded, check_appended, check_state, recorded
from drawstated.codec import (
    DRAW_LISTS,
    StateTooLarge,
    check_size,
    draw_lists,
    encode_head,
    extend_head,
    identity_text,
    state_digest,
)

_COMMA = ord(",")


class Accepted(NamedTuple):
    """An accepted state, as a save that extends it is checked against."""

    recorded: Recorded
    #: Per draw list (codec.DRAW_LISTS): the length of its text between the brackets, and its SHA-256.
    lengths: tuple[int, ...]
    hashes: tuple[bytes, ...]
    #: The SHA-256 of its identity (codec.identity_text), and its `_digest`.
    identity: bytes
    digest: str
    #: Its canonical head (codec.encode_head) and start time: what a save sending only the draws
    #: it appends (`check_append`) is spliced into.
    head: bytes
    start_time: int


class CheckedSave(NamedTuple):
    """A state that passed the rules, encoded for save.lua."""

    head: bytes
    #: Its `_digest`, stored with it.
    digest: str
    #: The `_digest` of the accepted state it extends, as computed from this state; "" when unknown.
    expect_digest: str
    #: What to remember once Redis accepts it.
    accepted: Accepted


class AcceptedStates:
    """The last accepted state of up to `max_entries` operations whose heads take at most `max_bytes`,
    least recently used dropped first."""

    __slots__ = ("_entries", "head_bytes", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        #: The heads' bytes held now.
        self.head_bytes = 0
        self._entries: OrderedDict[tuple[str, str], Accepted] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, lock_key: object, operation_id: object) -> Accepted | None:
        """The entry for a state's raw fields (not yet checked: anything but two strings misses)."""
        if type(lock_key) is not str or type(operation_id) is not str:
            return None
        key = (lock_key, operation_id)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, lock_key: str, operation_id: str, accepted: Accepted) -> None:
        if self.max_entries < 1 or len(accepted.head) > self.max_bytes:
            self.discard(lock_key, operation_id)
            return
        key = (lock_key, operation_id)
        self.discard(lock_key, operation_id)
        self._entries[key] = accepted
        self.head_bytes += len(accepted.head)
        while len(self._entries) > self.max_entries or self.head_bytes > self.max_bytes:
            self.head_bytes -= len(self._entries.popitem(last=False)[1].head)

    def discard(self, lock_key: str, operation_id: str) -> None:
        dropped = self._entries.pop((lock_key, operation_id), None)
        if dropped is not None:
            self.head_bytes -= len(dropped.head)


def check_save(state: Mapping[str, Any], limits: Limits, previous: Accepted | None) -> CheckedSave:
    """Check and encode a client's state, by what it appends to `previous` when that shows it valid.

    Raises what check_state and encode_head raise (InvalidState, StateTooLarge), for the same
    states and with the same messages as without `previous`.
    """
    if previous is not None and check_appended(state, previous.recorded, limits):
        try:
            head = encode_head(state, limits)
        except (StateTooLarge, orjson.JSONEncodeError):
            pass  # the full check below says what is wrong, as it would have without an entry
        else:
            lists = _ListHashes(head, state, previous)
            if not lists.extends:
                check_state(state, limits)
            return lists.checked(state, head, previous)
    check_state(state, limits)
    head = encode_head(state, limits)
    return _ListHashes(head, state, previous).checked(state, head, previous)


#: The fields of a save that sends only what it appends (protocol.md §7.2, "Sending only what a save
#: appends"): the operation, the base it extends, the two counters and the new draws.
APPEND_FIELDS = frozenset(
    {"lock_key", "operation_id", "base", "completed_count", "last_update_time", *DRAW_LISTS}
)


def check_append(append: Mapping[str, Any], limits: Limits, previous: Accepted) -> CheckedSave:
    """Check and encode the state `previous` becomes with `append`'s draws and counters.

    The same answer, head and digest as check_save of that whole state (tests/unit/test_appended.py
    holds it to that): the rules run on the new draws against `previous.recorded`, as check_save
    runs them on a state that extends `previous`, and the head is `previous.head` with the new
    draws' text spliced in (codec.extend_head). Whenever that way does not show the state valid,
    the whole state is rebuilt from `previous.head` and check_save decides and names what is wrong.
    The caller has checked that `append` names `previous`'s operation and base.
    """
    # Absent or nil is no new draws; any other value that is not a list goes to the whole check.
    news: list[Any] = [[] if append.get(name) is None else append.get(name) for name in DRAW_LISTS]
    # Any type here: check_appended passes only ints, and whole_state's check names anything else.
    completed: Any = append.get("completed_count")
    last_update: Any = append.get("last_update_time")
    known = previous.recorded
    if all(type(items) is list for items in news):
        results, prizes, errors = news
        stand_in = {  # the draws before the new ones were checked when `previous` was: not looked at
            "lock_key": append["lock_key"],
            "operation_id": append["operation_id"],
            "total_count": known.total,
            "completed_count": completed,
            "results": [None] * known.results + results,
            "prize_results": [None] * known.prizes + prizes,
            "errors": [None] * known.errors + errors,
            "start_time": previous.start_time,
            "last_update_time": last_update,
        }
        if check_appended(stand_in, known, limits):
            try:
                added = [orjson.dumps(items)[1:-1] if items else b"" for items in news]
            except orjson.JSONEncodeError:
                pass  # the whole check below says what is wrong
            else:
                return _extended(previous, limits, completed, last_update, added, news)
    return check_save(whole_state(append, previous), limits, previous)


def _extended(
    previous: Accepted,
    limits: Limits,
    completed: int,
    last_update: int,
    added: list[bytes],
    news: list[list[Any]],
) -> CheckedSave:
    """The save of `previous` extended by the draws in `news` (`added`: their text), shown valid."""
    head, texts = extend_head(previous.head, previous.lengths, completed, last_update, added)
    check_size(len(head) + 1, limits)  # its closing brace included, as encode_head counts it
    hashes = tuple(
        known if not new else hashlib.sha256(text).digest()
        for known, new, text in zip(previous.hashes, added, texts, strict=True)
    )
    lengths = tuple(len(text) for text in texts)
    digest = state_digest(previous.identity, lengths, hashes)
    known, (results, prizes, errors) = previous.recorded, news
    recorded_now = Recorded(
        known.total,
        known.results + len(results),
        known.prizes + len(prizes),
        known.errors + len(errors),
        errors[-1]["draw_index"] if errors else known.last_error_index,
    )
    accepted = Accepted(recorded_now, lengths, hashes, previous.identity, digest, head, previous.start_time)
    return CheckedSave(head, digest, previous.digest, accepted)


def whole_state(append: Mapping[str, Any], previous: Accepted) -> dict[str, Any]:
    """The state a save sending only what it appends stands for, decoded whole from `previous.head`."""
    state: dict[str, Any] = orjson.loads(previous.head + b"}")
    for name in DRAW_LISTS:
        items = append.get(name)
        if items is not None:
            state[name] = state.get(name, []) + items if type(items) is list else items
    state["completed_count"] = append.get("completed_count")
    state["last_update_time"] = append.get("last_update_time")
    return state


_EMPTY_HASH = hashlib.sha256(b"").digest()


class _ListHashes:
    """Each draw list's text length and SHA-256 in a head, and the same of its first bytes.

    Any head: whether its state is valid is judged elsewhere, before `checked`.
    """

    __slots__ = ("extends", "hashes", "known_hashes", "known_lengths", "lengths")

    def __init__(self, head: bytes, state: Mapping[str, Any], previous: Accepted | None) -> None:
        self.lengths: list[int] = []
        self.hashes: list[bytes] = []
        #: At the lengths of `previous`'s lists; None when one does not end between two elements there.
        self.known_lengths: list[int] | None = None if previous is None else []
        self.known_hashes: list[bytes] = []
        #: The lists start with exactly `previous`'s.
        self.extends = previous is not None
        for i, text in enumerate(draw_lists(head, state)):
            size = len(text)
            self.lengths.append(size)
            known = -1 if previous is None else previous.lengths[i]
            if known in (0, size):  # nothing recorded, or nothing appended: one hash
                full = hashlib.sha256(text).digest() if size else _EMPTY_HASH
                prefix = _EMPTY_HASH if known == 0 else full
            elif 0 < known < size and text[known] == _COMMA:
                digest = hashlib.sha256(text[:known])
                prefix = digest.digest()
                digest.update(text[known:])
                full = digest.digest()
            else:  # no previous, or its list is not a prefix of this one at an element boundary
                self.hashes.append(hashlib.sha256(text).digest() if size else _EMPTY_HASH)
                self.known_lengths = None
                self.extends = False
                continue
            self.hashes.append(full)
            if self.known_lengths is not None:
                self.known_lengths.append(known)
                self.known_hashes.append(prefix)
            if previous is None or prefix != previous.hashes[i]:
                self.extends = False

    def checked(self, state: Mapping[str, Any], head: bytes, previous: Accepted | None) -> CheckedSave:
        """The save of a state that passed the rules, with this head."""
        identity = hashlib.sha256(identity_text(state)).digest()
        if previous is not None and self.extends and identity == previous.identity:
            claim = previous.digest  # what the claim hashes to: the same identity and lists
        elif self.known_lengths is not None:
            claim = state_digest(identity, self.known_lengths, self.known_hashes)
        else:
            claim = ""
        lengths, hashes = tuple(self.lengths), tuple(self.hashes)
        digest = state_digest(identity, lengths, hashes)
        accepted = Accepted(recorded(state), lengths, hashes, identity, digest, head, state["start_time"])
        return CheckedSave(head, digest, claim, accepted)
