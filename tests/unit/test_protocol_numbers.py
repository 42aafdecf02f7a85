"""Every default and limit docs/protocol.md states is the code's: read from the doc, compared to the constant.

protocol.md is prose for implementers of other clients, so it is not generated; instead each number
it states is found by a pattern and compared with the constant that governs it. A statement the
patterns no longer find fails too: reword a sentence, and update its pattern here with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from drawstate import limits
from drawstated import config, stats
from drawstated.config import Config
from drawstated.ops import fields, outcomes, ping, rollback
from drawstated.server import connection
from drawstated.storage import stream

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
#: Digits as protocol.md writes them: "1 048 576", "2 592 000", "10 000" (any space kind groups).
_NUMBER = r"(\d{1,3}(?:[  \u2009\u202f]\d{3})+|\d+(?:\.\d+)?)"
#: A hyphen, an en dash (U+2013, "1 to 64 chars") or a minus sign (U+2212, "30000) minus 15").
_DASH = "[-\u2013\u2212]"
_DEFAULTS = Config(socket_path=Path("/tmp/unused.sock"), data_dir=Path("/tmp/unused"))


@dataclass(frozen=True)
class Stated:
    what: str
    pattern: str  # with {n} where the number stands, {dash} for any dash
    code: float
    scale: float = 1  # the doc's unit in the code's: 1000 when the doc says ms and the code s

    def found(self, text: str) -> list[float]:
        regex = re.compile(self.pattern.replace("{n}", _NUMBER).replace("{dash}", _DASH), re.DOTALL)
        return [_number(match) * self.scale for match in regex.findall(text)]


def _number(text: str) -> float:
    return float(re.sub(r"\D", "", text) if "." not in text else text)


MIB = 2**20
STATED = [
    Stated("max frame body", r"Max body length: {n} bytes", limits.MAX_FRAME_BYTES),
    Stated("max frame in MiB", r"declared body length is over {n} MiB", limits.MAX_FRAME_BYTES / MIB),
    Stated("state cap in KiB", r"larger than the {n} KiB DrawState cap", limits.MAX_STATE_BYTES / 1024),
    Stated("state cap in bytes", r"must be ≤ {n} bytes", limits.MAX_STATE_BYTES),
    Stated("state cap on save", r"canonical JSON must be ≤ {n} bytes", limits.MAX_STATE_BYTES),
    Stated("default deadline", r"default {n}, `--deadline-ms`", config.DEFAULT_DEADLINE_MS),
    Stated("deadline cap", r"min\(deadline_ms, {n}\)", config.MAX_DEADLINE_MS),
    Stated("reply margin", r"min\(deadline_ms, \d+\) {dash} {n}`? ?ms", config.REPLY_MARGIN_MS),
    Stated("redis probe", r"min\(deadline, {n} ms\)", ping.REDIS_PROBE_S, scale=1 / 1000),
    Stated("in-flight cap", r"in-flight cap per connection \| {n}", config.MAX_INFLIGHT_PER_CONNECTION),
    Stated(
        "in-flight cap (prose)",
        r"At {n} requests running on one connection",
        config.MAX_INFLIGHT_PER_CONNECTION,
    ),
    Stated("write buffer mark", r"client not reading replies \| {n} MiB", connection.WRITE_BUFFER_HIGH / MIB),
    Stated(
        "write buffer mark (prose)",
        r"replies waiting to be sent exceed {n} MiB",
        connection.WRITE_BUFFER_HIGH / MIB,
    ),
    Stated(
        "write buffer low mark",
        r"until the buffer drains \(to about {n} KiB\)",
        connection.WRITE_BUFFER_HIGH / 4 / 1024,
    ),
    Stated("partial-frame timeout", r"partial-frame timeout \| {n} s", config.PARTIAL_FRAME_TIMEOUT_S),
    Stated("connection limit", r"connection limit \| {n}", config.MAX_CONNECTIONS),
    Stated("shutdown grace", r"shutdown \(SIGTERM/SIGINT\) \| {n} s grace", config.SHUTDOWN_GRACE_S),
    Stated("token length", r"`token` \| str \| no \| 1{dash}{n} chars", limits.MAX_TOKEN_CHARS),
    Stated("ttl cap", r"`ttl_s` \| int \| no \| 1 … {n}", config.MAX_TTL_S),
    Stated("ttl cap in days", r"\({n} days\)", config.MAX_TTL_S / 86_400),
    Stated("default ttl", r"`--ttl` \({n}\)", config.DEFAULT_TTL_S),
    Stated("default ttl (s)", r"`--ttl` \(default {n} s\)", config.DEFAULT_TTL_S),
    Stated("min replicas", r"`--min-replicas` replicas, default {n}", _DEFAULTS.min_replicas),
    Stated("rollback reason", r"`reason` \| str \| no \| ≤ {n} chars", limits.MAX_REASON_CHARS),
    Stated("defer margin", r"keeps back {n} ms of the deadline", rollback.DEFER_MARGIN_S, scale=1 / 1000),
    Stated(
        "defer margin, short deadlines", r"shorter than {n} ms", 4 * rollback.DEFER_MARGIN_S, scale=1 / 1000
    ),
    Stated("page size", r"`limit` \| int \| no \| 1 … {n}", fields.MAX_PENDING_LIMIT),
    Stated(
        "default page size",
        r"`limit` \| int \| no \| 1 … [\d  ]+, default {n}",
        fields.DEFAULT_PENDING_LIMIT,
    ),
    Stated("cursor length", r"`cursor` \| str \| no \| ≤ {n} chars", fields.MAX_CURSOR_CHARS),
    Stated("latency samples", r"over the last {n} requests of each op", stats.LATENCY_SAMPLES),
    Stated("group name length", r"`group` \| str \| yes \| 1{dash}{n} chars", 64),
    Stated("claim idle cap", r"`claim_idle_ms` \| int \| no \| 1 … {n}", outcomes.MAX_CLAIM_IDLE_MS),
    Stated("ack ids", r"`ids` \| array of str \| yes \| 1 … {n} stream ids", outcomes.MAX_ACK_IDS),
    Stated("raw state in an event", r"its raw text \(≤ {n} chars\)", stream.RAW_STATE_CHARS),
    Stated("lock key length", r"`lock_key` \| str \| yes \| 1{dash}{n} chars", limits.MAX_LOCK_KEY_CHARS),
    Stated(
        "operation id length",
        r"`operation_id` \| str \| yes \| 1{dash}{n} chars",
        limits.MAX_OPERATION_ID_CHARS,
    ),
    Stated("total_count cap", r"`total_count` \| int \| yes \| 1 … {n}", limits.MAX_TOTAL),
    Stated("metadata entries", r"≤ {n} entries\. Keys", limits.MAX_METADATA_ENTRIES),
    Stated("metadata key length", r"Keys 1{dash}{n} chars", limits.MAX_METADATA_KEY_CHARS),
    Stated("metadata value length", r"values 0{dash}{n} chars", limits.MAX_METADATA_VALUE_CHARS),
    Stated("prize id length", r"id: str 1{dash}{n} chars", limits.MAX_PRIZE_TEXT_CHARS),
    Stated("prize name length", r"name: str 0{dash}{n} chars", limits.MAX_PRIZE_TEXT_CHARS),
    Stated("error message length", r"error_message: str 0{dash}{n} chars", limits.MAX_ERROR_MESSAGE_CHARS),
    Stated("saved state over", r"A saved state over {n} KiB", limits.MAX_STATE_BYTES / 1024),
]
#: Statements that protocol.md may leave out (they are said elsewhere in it too).
OPTIONAL = {
    "default ttl",
    "default ttl (s)",
    "ttl cap in days",
    "state cap in bytes",
    "write buffer low mark",
}


@pytest.mark.parametrize("stated", STATED, ids=[s.what for s in STATED])
def test_each_number_protocol_md_states_is_the_code_s(stated: Stated) -> None:
    found = stated.found(DOC.read_text())
    if not found:
        if stated.what in OPTIONAL:
            pytest.skip(f"protocol.md does not state the {stated.what} in this form")
        pytest.fail(
            f"protocol.md no longer states the {stated.what} as /{stated.pattern}/: update the pattern"
        )
    wrong = [value for value in found if abs(value - stated.code) > 1e-9]
    assert not wrong, f"protocol.md gives the {stated.what} as {wrong}, the code says {stated.code}"


def test_the_ops_protocol_md_says_are_stopped_when_the_client_leaves_are_the_daemon_s_reads() -> None:
    from drawstated.ops import READ_ONLY_OPS

    text = " ".join(DOC.read_text().split())
    match = re.search(r"it stops the reads among them: (.+?)\. Nobody is left", text)
    assert match, "protocol.md no longer says which ops are stopped when the client leaves"
    named = set(re.findall(r"`(\w+)`", match.group(1)))
    assert named == READ_ONLY_OPS, (
        f"protocol.md names {sorted(named)}, the daemon stops {sorted(READ_ONLY_OPS)}"
    )
