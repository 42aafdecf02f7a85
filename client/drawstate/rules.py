"""The rules of a DrawState, checked on its plain dict form (what msgpack and JSON decode to).

The daemon checks every state a client sends and every state it reads back
from Redis, without building objects; a valid state passes in one C-level
sweep, and only a broken one is walked rule by rule to name the problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from drawstate.limits import DEFAULT_LIMITS, DRAW_INT_MAX, DRAW_INT_MIN, INT64_MAX, Limits

OPERATION_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
#: The fields of a DrawState, in the original engine's JSON order.
FIELD_ORDER = (
    "lock_key",
    "operation_id",
    "total_count",
    "completed_count",
    "results",
    "prize_results",
    "errors",
    "start_time",
    "last_update_time",
    "version",
    "metadata",
)
_STATE_FIELDS = frozenset(FIELD_ORDER)
_PRIZE_FIELDS = frozenset({"id", "name", "probability", "value"})
_ERROR_FIELDS = frozenset({"draw_index", "error_message", "timestamp"})


class InvalidState(ValueError):
    """A DrawState rule was broken; `path` names the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# --- rule checks on the dict form -------------------------------------------------


def _int(data: Mapping[str, Any], key: str, path: str, low: int, high: int) -> int:
    value = data.get(key)
    # bool is an int in Python, never in the contract.
    if type(value) is not int:
        raise InvalidState(f"{path}{key}", f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidState(f"{path}{key}", f"must be in [{low}, {high}], got {value}")
    return value


def _str(data: Mapping[str, Any], key: str, path: str, max_chars: int, *, empty: bool) -> str:
    value = data.get(key)
    if type(value) is not str:
        raise InvalidState(f"{path}{key}", f"must be a string, got {type(value).__name__}")
    if not empty and not value:
        raise InvalidState(f"{path}{key}", "must not be empty")
    if len(value) > max_chars:
        raise InvalidState(f"{path}{key}", f"longer than {max_chars} characters")
    _check_unicode(value, f"{path}{key}")
    return value


def _check_unicode(value: str, path: str) -> None:
    """Reject lone surrogates: no JSON, msgpack or Go peer can carry them (ASCII is the fast path)."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidState(path, "is not valid Unicode text (lone surrogate)") from None


def _list(data: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = data.get(key)
    if value is None:
        return ()
    if type(value) not in (list, tuple):
        raise InvalidState(key, f"must be a list, got {type(value).__name__}")
    return value  # type: ignore[no-any-return]


def _only(data: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    if allowed.issuperset(data):
        return
    extra = data.keys() - allowed
    if extra:
        raise InvalidState(path or "state", f"unknown field(s): {', '.join(sorted(map(str, extra)))}")


def check_lock_key(value: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """A lock key is 1..max printable characters without `{` or `}` (it is a Redis hash tag)."""
    if type(value) is not str or not value:
        raise InvalidState("lock_key", "must be a non-empty string")
    if len(value) > limits.max_lock_key_chars:
        raise InvalidState("lock_key", f"longer than {limits.max_lock_key_chars} characters")
    if not value.isprintable() or "{" in value or "}" in value:
        raise InvalidState("lock_key", "must be printable and contain no '{' or '}'")
    return value


def check_operation_id(value: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """An operation id is 1..max characters of [A-Za-z0-9_-]."""
    if type(value) is not str or not value:
        raise InvalidState("operation_id", "must be a non-empty string")
    if len(value) > limits.max_operation_id_chars:
        raise InvalidState("operation_id", f"longer than {limits.max_operation_id_chars} characters")
    if not OPERATION_ID_RE.fullmatch(value):
        raise InvalidState("operation_id", "may hold only A-Z a-z 0-9 _ -")
    return value


def _check_prize(item: Any, path: str, limits: Limits) -> None:
    if not isinstance(item, Mapping):
        raise InvalidState(path, "must be a map")
    _only(item, _PRIZE_FIELDS, path)
    _str(item, "id", path + ".", limits.max_prize_text_chars, empty=False)
    _str(item, "name", path + ".", limits.max_prize_text_chars, empty=True)
    probability = item.get("probability")
    if type(probability) is int:
        probability = float(probability)
    if type(probability) is not float or not 0.0 <= probability <= 1.0:
        raise InvalidState(path + ".probability", "must be a number in [0, 1]")
    _int(item, "value", path + ".", DRAW_INT_MIN, DRAW_INT_MAX)


_prize_id = itemgetter("id")
_prize_name = itemgetter("name")
_prize_probability = itemgetter("probability")
_prize_value = itemgetter("value")


def _prizes_look_valid(prizes: Sequence[Any], limits: Limits) -> bool:
    """Column-wise checks in C for long prize lists; False sends them through the exact loop.

    True only when every rule holds; the per-prize loop stays the authority on what is wrong.
    """
    try:
        # Four keys each, and all four present (itemgetter raises otherwise): exactly the fields.
        if set(map(type, prizes)) != {dict} or set(map(len, prizes)) != {len(_PRIZE_FIELDS)}:
            return False
        ids, names = list(map(_prize_id, prizes)), list(map(_prize_name, prizes))
        probabilities, values = list(map(_prize_probability, prizes)), list(map(_prize_value, prizes))
    except (KeyError, TypeError, AttributeError):
        return False
    text_ok = (
        set(map(type, ids)) == {str}
        and set(map(type, names)) == {str}
        and min(map(len, ids)) >= 1
        and max(map(len, ids)) <= limits.max_prize_text_chars
        and max(map(len, names)) <= limits.max_prize_text_chars
        and all(map(str.isascii, ids))
        and all(map(str.isascii, names))
    )
    numbers_ok = (
        set(map(type, probabilities)) <= {float, int}
        and not any(map(math.isnan, probabilities))
        and min(probabilities) >= 0
        and max(probabilities) <= 1
        and set(map(type, values)) == {int}
        and min(values) >= DRAW_INT_MIN
        and max(values) <= DRAW_INT_MAX
    )
    return text_ok and numbers_ok


def _check_error(item: Any, path: str, total: int, limits: Limits) -> None:
    if not isinstance(item, Mapping):
        raise InvalidState(path, "must be a map")
    _only(item, _ERROR_FIELDS, path)
    _int(item, "draw_index", path + ".", 1, total)
    _str(item, "error_message", path + ".", limits.max_error_message_chars, empty=True)
    _int(item, "timestamp", path + ".", 0, INT64_MAX)


def _check_errors(errors: Sequence[Any], total: int, completed: int, limits: Limits) -> None:
    """Each failed draw is well formed, and the failed draw indexes rise within the draws made.

    Draws are numbered in the order they are made and a failed one takes its number, so no
    number is both failed and granted: the granted ones are the numbers no error holds.
    """
    drawn = completed + len(errors)
    previous = 0
    for i, error in enumerate(errors):
        _check_error(error, f"errors[{i}]", total, limits)
        index = error["draw_index"]
        if index <= previous:
            raise InvalidState(f"errors[{i}].draw_index", f"{index} does not follow {previous}: indexes rise")
        if index > drawn:
            raise InvalidState(
                f"errors[{i}].draw_index", f"{index} is past the {drawn} draws made (completed + failed)"
            )
        previous = index


def _check_metadata(value: Any, limits: Limits) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise InvalidState("metadata", "must be a map of string to string")
    if len(value) > limits.max_metadata_entries:
        raise InvalidState("metadata", f"more than {limits.max_metadata_entries} entries")
    for key, item in value.items():
        if type(key) is not str or not key or len(key) > limits.max_metadata_key_chars:
            raise InvalidState("metadata", f"keys must be 1..{limits.max_metadata_key_chars} chars")
        if type(item) is not str or len(item) > limits.max_metadata_value_chars:
            raise InvalidState(
                f"metadata.{key}",
                f"must be a string of at most {limits.max_metadata_value_chars} chars",
            )
        _check_unicode(key, "metadata")
        _check_unicode(item, f"metadata.{key}")


_OPERATION_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def check_state(data: object, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise InvalidState unless `data` (the dict form) obeys every DrawState rule.

    The daemon runs this on every save, so a valid state takes one straight pass
    of C-level checks (`_looks_valid`); only a state that fails it goes through
    the rule-by-rule walk that names what is wrong.
    """
    if type(data) is dict and _looks_valid(data, limits):
        return
    _explain(data, limits)


class Recorded(NamedTuple):
    """What a state that obeyed every rule fixes for the states that extend it.

    Its total, how many results, prizes and failed draws it held, and the draw index of its last
    failed draw (0 without any): enough to check a state that starts with the same draws by what
    it appends (`check_appended`).
    """

    total: int
    results: int
    prizes: int
    errors: int
    last_error_index: int


def recorded(data: Mapping[str, Any]) -> Recorded:
    """The Recorded of a state that passed `check_state`."""
    errors = data.get("errors") or ()
    return Recorded(
        data["total_count"],
        len(data.get("results") or ()),
        len(data.get("prize_results") or ()),
        len(errors),
        errors[-1]["draw_index"] if errors else 0,
    )


def check_appended(data: object, prefix: Recorded, limits: Limits = DEFAULT_LIMITS) -> bool:  # noqa: PLR0911  # one exit per rule keeps it flat
    """True only if `data` obeys every rule, given that its lists start with `prefix`'s draws.

    The caller vouches that the first `prefix.results` results, `prefix.prizes` prizes and
    `prefix.errors` failed draws of `data` are, element for element, those of a state that passed
    `check_state` under the same limits with total `prefix.total`. Each of those was checked on
    its own then, and a failed draw's bounds depend only on the total, which must be the same
    here; so only the draws after them are checked, plus the rules that span the whole state in
    O(1): the other fields, the list lengths against the counts, and the rising failed-draw
    indexes from the last recorded one. False means "not shown valid this way": check_state
    decides (and names what is wrong), so this never refuses a state on its own.
    """
    if not (type(data) is dict and _STATE_FIELDS.issuperset(data) and _fields_look_valid(data, limits)):
        return False
    get = data.get
    total, completed = data["total_count"], data["completed_count"]  # ints: _fields_look_valid
    results, prizes, errors = get("results"), get("prize_results"), get("errors")
    results = [] if results is None else results
    prizes = [] if prizes is None else prizes
    errors = [] if errors is None else errors
    if not (total == prefix.total and type(results) is type(prizes) is type(errors) is list):
        return False
    drawn = completed + len(errors)
    if not (
        prefix.results <= len(results) <= completed
        and prefix.prizes <= len(prizes) <= completed
        and prefix.errors <= len(errors)
        and drawn <= total
        and prefix.last_error_index <= drawn
    ):
        return False
    new_results, new_prizes = results[prefix.results :], prizes[prefix.prizes :]
    if new_results and not _results_look_valid(new_results):
        return False
    if new_prizes and not (
        _prizes_look_valid(new_prizes, limits)
        or _obeys(lambda item: _check_prize(item, "", limits), new_prizes)
    ):
        return False
    previous = prefix.last_error_index
    for error in errors[prefix.errors :]:
        if not _obeys(lambda item: _check_error(item, "", total, limits), (error,)):
            return False
        index = error["draw_index"]
        if not previous < index <= drawn:
            return False
        previous = index
    return _metadata_looks_valid(get("metadata"), limits)


def _obeys(check: Callable[[Any], None], items: Sequence[Any]) -> bool:
    """Whether every item passes an exact per-item check (which rule it breaks is not asked here)."""
    try:
        for item in items:
            check(item)
    except InvalidState:
        return False
    return True


def _looks_valid(data: dict[str, Any], limits: Limits) -> bool:
    """True only if every rule holds (False may still be valid: _explain decides)."""
    if not (_STATE_FIELDS.issuperset(data) and _fields_look_valid(data, limits)):
        return False
    get = data.get
    completed = data["completed_count"]  # an int: _fields_look_valid
    results, prizes, errors = get("results"), get("prize_results"), get("errors")
    if errors is not None and (type(errors) is not list or errors):  # failed draws: the exact walk
        return False
    if results is not None and not (
        type(results) is list and len(results) <= completed and (not results or _results_look_valid(results))
    ):
        return False
    if prizes is not None and not (
        type(prizes) is list
        and len(prizes) <= completed
        and (not prizes or _prizes_look_valid(prizes, limits))
    ):
        return False
    return _metadata_looks_valid(get("metadata"), limits)


def _fields_look_valid(data: dict[str, Any], limits: Limits) -> bool:
    """The rules on the fields that are not lists or metadata: identity, counts, times, version."""
    get = data.get
    lock_key, operation_id = get("lock_key"), get("operation_id")
    total, completed = get("total_count"), get("completed_count")
    start, last, version = get("start_time"), get("last_update_time"), get("version")
    return (
        type(lock_key) is str
        and 0 < len(lock_key) <= limits.max_lock_key_chars
        and lock_key.isprintable()
        and "{" not in lock_key
        and "}" not in lock_key
        and type(operation_id) is str
        and 0 < len(operation_id) <= limits.max_operation_id_chars
        and operation_id.isascii()
        and not operation_id.strip(_OPERATION_ID_CHARS)
        and type(total) is int
        and type(completed) is int
        and 1 <= total <= limits.max_total
        and 0 <= completed <= total
        and type(start) is int
        and type(last) is int
        and 1 <= start <= last <= INT64_MAX
        and (version is None or (type(version) is int and 0 <= version <= INT64_MAX))
    )


def _results_look_valid(results: Sequence[Any]) -> bool:
    """A non-empty list of results, checked in C: every one an int within the draw bounds."""
    return set(map(type, results)) == {int} and min(results) >= DRAW_INT_MIN and max(results) <= DRAW_INT_MAX


def _metadata_looks_valid(metadata: Any, limits: Limits) -> bool:
    if not metadata:
        return metadata is None or type(metadata) is dict
    return (
        type(metadata) is dict
        and len(metadata) <= limits.max_metadata_entries
        and set(map(type, metadata)) == {str}
        and set(map(type, metadata.values())) == {str}
        and min(map(len, metadata)) >= 1
        and max(map(len, metadata)) <= limits.max_metadata_key_chars
        and max(map(len, metadata.values())) <= limits.max_metadata_value_chars
        and all(map(str.isascii, metadata))
        and all(map(str.isascii, metadata.values()))
    )


def _explain(data: object, limits: Limits) -> None:
    """Walk every rule in order and raise InvalidState naming the first one broken."""
    if not isinstance(data, Mapping):
        raise InvalidState("state", f"must be a map, got {type(data).__name__}")
    _only(data, _STATE_FIELDS, "")
    check_lock_key(data.get("lock_key"), limits)
    check_operation_id(data.get("operation_id"), limits)
    total = _int(data, "total_count", "", 1, limits.max_total)
    completed = _int(data, "completed_count", "", 0, total)
    results = _list(data, "results")
    prizes = _list(data, "prize_results")
    errors = _list(data, "errors")
    if len(results) > completed:
        raise InvalidState("results", f"{len(results)} results but completed_count is {completed}")
    if len(prizes) > completed:
        raise InvalidState("prize_results", f"{len(prizes)} prizes but completed_count is {completed}")
    if completed + len(errors) > total:
        raise InvalidState("errors", f"completed_count + {len(errors)} errors exceeds total_count")
    # Fast path in C (a 1000-draw state is checked on every save); the loop only names the culprit.
    if results and (
        set(map(type, results)) != {int} or min(results) < DRAW_INT_MIN or max(results) > DRAW_INT_MAX
    ):
        for i, result in enumerate(results):
            if type(result) is not int or not DRAW_INT_MIN <= result <= DRAW_INT_MAX:
                raise InvalidState(f"results[{i}]", f"must be an integer within ±{DRAW_INT_MAX}")
    if prizes and not _prizes_look_valid(prizes, limits):
        for i, prize in enumerate(prizes):
            _check_prize(prize, f"prize_results[{i}]", limits)
    _check_errors(errors, total, completed, limits)
    start = _int(data, "start_time", "", 1, INT64_MAX)
    _int(data, "last_update_time", "", start, INT64_MAX)
    if data.get("version") is not None:
        _int(data, "version", "", 0, INT64_MAX)
    _check_metadata(data.get("metadata"), limits)
