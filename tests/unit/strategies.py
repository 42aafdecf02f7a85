"""Hypothesis strategies that build only valid DrawStates (DESIGN §2), shared by the unit tests.

Every rule is respected by construction, not by filtering: counts are drawn
first and the lists are sized from them. Lists and maps stay short so the unit
suite stays fast; the boundaries (200-char lock keys, 32 metadata entries, ...)
are pinned by the example tests in test_model.py.
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from drawstate.limits import (
    DRAW_INT_MAX,
    DRAW_INT_MIN,
    INT64_MAX,
    MAX_LOCK_KEY_CHARS,
    MAX_OPERATION_ID_CHARS,
    MAX_TOTAL,
)

#: Shared by every property: no deadline (CI machines vary), no example database written into the
#: repo. A whole state or message stream costs a few ms to generate; 100 examples per property
#: keep the unit suite fast. Raise max_examples locally when hunting for a bug.
PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# str.isprintable() is False for the Unicode "Other" (C*) and "Separator" (Z*) categories,
# except the ASCII space; letters, marks, numbers, punctuation (":" included) and symbols are.
_LOCK_KEY_CHARS = st.characters(
    categories=("L", "M", "N", "P", "S"), include_characters=" ", exclude_characters="{}"
)
lock_keys = st.text(_LOCK_KEY_CHARS, min_size=1, max_size=MAX_LOCK_KEY_CHARS)
operation_ids = st.text(
    string.ascii_letters + string.digits + "_-", min_size=1, max_size=MAX_OPERATION_ID_CHARS
)
draw_ints = st.integers(DRAW_INT_MIN, DRAW_INT_MAX)
# Any valid UTF-8 text (hypothesis' default alphabet never yields lone surrogates); short, since
# long strings cost generation time and the length caps are pinned by test_model.py.
_text = st.text(max_size=20)


def prizes() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=20),
            "name": _text,
            "probability": st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
            "value": draw_ints,
        }
    )


def draw_errors(total: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "draw_index": st.integers(1, total),
            "error_message": _text,
            "timestamp": st.integers(0, INT64_MAX),
        }
    )


metadata_maps = st.dictionaries(st.text(min_size=1, max_size=20), _text, max_size=4)


@st.composite
def valid_states(draw: st.DrawFn, *, max_items: int = 3) -> dict[str, Any]:
    """The dict form of a state obeying every DrawState rule; `max_items` bounds each list."""
    total = draw(st.integers(1, MAX_TOTAL) | st.integers(1, max_items))
    completed = draw(st.integers(0, total))
    results = draw(st.lists(draw_ints, max_size=min(completed, max_items)))
    prize_results = draw(st.lists(prizes(), max_size=min(completed, max_items)))
    failed = draw(st.integers(0, min(total - completed, max_items)))
    # Failed draws take rising indexes among the completed + failed draws made.
    indexes = (
        sorted(draw(st.sets(st.integers(1, completed + failed), min_size=failed, max_size=failed)))
        if failed
        else []
    )
    errors = [{**draw(draw_errors(total)), "draw_index": index} for index in indexes]
    start = draw(st.integers(1, INT64_MAX))
    last = draw(st.integers(start, INT64_MAX))
    state: dict[str, Any] = {
        "lock_key": draw(lock_keys),
        "operation_id": draw(operation_ids),
        "total_count": total,
        "completed_count": completed,
        "results": results,
        "prize_results": prize_results,
        "errors": errors,
        "start_time": start,
        "last_update_time": last,
        "metadata": draw(metadata_maps),
    }
    if draw(st.booleans()):
        state["version"] = draw(st.integers(0, INT64_MAX))
    return state
