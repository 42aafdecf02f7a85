"""The client-side CLI's pure parts: reading `--since` and the one-line form of an audit event."""

from __future__ import annotations

import pytest

from drawstated.cli.client import describe_event, parse_since

NOW = 1_700_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1699990000", 1_699_990_000),
        ("90s", NOW - 90),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        (" 3H ", NOW - 3 * 3600),
    ],
)
def test_since_reads_unix_seconds_or_an_age_before_now(text, expected):
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "-5m", "10w", "1.5h", "2024-01-01"])
def test_since_rejects_anything_else(text):
    with pytest.raises(ValueError, match="unix seconds"):
        parse_since(text, now=NOW)


def test_an_event_is_one_line_with_counts_granted_draws_and_reason():
    line = describe_event(
        {
            "event": "rollback",
            "lock_key": "player:1",
            "operation_id": "op_1",
            "time": NOW,
            "reason": "crash\nrefund",
            "existed": 1,
            "completed_count": 3,
            "total_count": 10,
            "errors": 1,
            "results": [],
            "prize_results": [{"id": "gold"}, {"id": "bronze"}, {"id": "bronze"}],
        }
    )
    assert "\n" not in line
    assert line.startswith("2023-11-14 22:13:20Z  rollback")
    assert "player:1  op_1  3/10 draws, 1 failed  granted: gold x1, bronze x2" in line
    assert line.endswith("reason: 'crash\\nrefund'")


def test_an_event_without_a_state_or_with_an_unreadable_one_says_so():
    gone = describe_event(
        {"event": "complete", "lock_key": "k", "operation_id": "o", "time": 0, "existed": 0}
    )
    assert "no state" in gone and "reason" not in gone
    raw = describe_event({"event": "rollback", "existed": 1, "corrupted_state": "{oops", "time": 0})
    assert "unreadable" in raw
