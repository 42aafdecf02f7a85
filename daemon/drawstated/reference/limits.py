"""docs/limits.md's table and memory bound, made from the constants themselves so neither can drift.

Each row names its constant by module and name; the default shown is that constant's value, read
when the doc is generated (drawstated.reference). The worst-case RSS is computed here from the
same constants, and tests/chaos/test_memory_bound.py holds the daemon to it.
"""

# ruff: noqa: RUF001  # the docs' typography: multiplication and minus signs in the rendered text

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from drawstate.limits import MAX_FRAME_BYTES, MAX_STATE_BYTES, MIB
from drawstated import config
from drawstated.server import decoding, flow, process

#: What an idle daemon (interpreter, uvloop, redis-py, its own modules) holds, rounded up: the
#: chaos tests measure 38-40 MiB.
IDLE_RSS_BYTES = 48 * MIB
#: What one open connection costs beyond the budget (its protocol object, transport, buffers'
#: headers): measured at ~5 KiB (tests/chaos/test_connections.py), rounded up.
CONNECTION_BYTES = 16 * 1024
#: One read from a socket (uvloop's read buffer): read before the budget can say stop.
READ_CHUNK_BYTES = 256 * 1024
#: What one remembered accepted state costs beyond its head (ops/accepted.py: its key, its
#: hashes and the tuples holding them), rounded up.
ACCEPTED_ENTRY_BYTES = 1024


def accepted_cache_bytes() -> int:
    """What the save op's accepted states can hold with the default limits: heads plus entries."""
    return config.ACCEPTED_CACHE_BYTES + config.ACCEPTED_CACHE_ENTRIES * ACCEPTED_ENTRY_BYTES


@dataclass(frozen=True)
class Row:
    name: str
    module: str | None  # the constant's module, or None for a limit with no constant
    constant: str | None
    field: str  # "field · option", or "—"
    when: str
    unit: Callable[[int | float], str] = lambda value: ""

    def default(self) -> str:
        assert self.module and self.constant
        value = getattr(importlib.import_module(self.module), self.constant)
        shown = self.unit(value)
        return f"{value}{shown}"

    def line(self) -> str:
        where = f"`{self.constant}` (`{self.module}`)"
        return f"| {self.name} | {where} | {self.default()} | {self.field} | {self.when} |"


def _mib(value: float) -> str:
    return f" ({value / MIB:g} MiB)" if value >= MIB else f" ({value / 1024:g} KiB)"


def _s(value: float) -> str:
    return " s"


def _ms(value: float) -> str:
    return " ms"


def _days(value: float) -> str:
    return f" ({value / 86_400:g} days)"


L, C = "drawstate.limits", "drawstated.config"
ROWS = (
    Row(
        "frame size",
        L,
        "MAX_FRAME_BYTES",
        "`max_frame_bytes` · `--max-frame-bytes`",
        "`frame_too_large` with id nil, then the connection is closed. Checked on the 4-byte header, "
        "before any of the body is read; requests already in flight are answered first.",
        _mib,
    ),
    Row(
        "request items",
        "drawstated.server.decoding",
        "MAX_REQUEST_ITEMS",
        "— (`REQUEST_ITEMS_PER_DRAW` × `limits.max_total` + `REQUEST_ITEMS_SLACK`)",
        "`invalid_request`, with the request's id when it can be read without decoding the rest (else id "
        "nil): array elements plus map entries, summed over the frame, and declared by any one array or "
        "map; decoding stops at the first one past it. A state of `max_total` draws, each with its result "
        "and prize, takes 6 per draw. Extension types are refused the same way.",
    ),
    Row(
        "request nesting",
        "drawstated.server.decoding",
        "MAX_REQUEST_DEPTH",
        "—",
        "`invalid_request`, with the id as above (a save nests 4 deep: request, state, `prize_results`, "
        "prize).",
    ),
    Row(
        "connections",
        C,
        "MAX_CONNECTIONS",
        "`max_connections` · `--max-connections`",
        "`overloaded` (retryable) with id nil as soon as the connection is accepted, then it is closed.",
    ),
    Row(
        "in flight per connection",
        C,
        "MAX_INFLIGHT_PER_CONNECTION",
        "`max_inflight_per_connection` · `--max-inflight`",
        "reading is paused, no error: further frames wait in the socket (then the client's writes block) "
        "until a request finishes.",
    ),
    Row(
        "in-flight bytes per connection",
        C,
        "MAX_INFLIGHT_BYTES_PER_CONNECTION",
        "`max_inflight_bytes_per_connection` · `--max-inflight-bytes-per-connection`",
        "reading is paused, no error, until the connection's own requests finish: it holds its requests "
        "in flight (each charged its decoded size plus a reserve for its reply) and its unread replies. "
        "A connection with nothing in flight may always start one request.",
        _mib,
    ),
    Row(
        "in-flight bytes in total",
        C,
        "MAX_INFLIGHT_BYTES",
        "`max_inflight_bytes` · `--max-inflight-bytes`",
        "reading is paused on every connection, no error, until what the daemon holds for all of them "
        "(unread input, requests in flight with their reply reserves, unread replies) is back under 3/4 "
        "of it. A connection paused so with half a frame still ends at the partial-frame timeout.",
        _mib,
    ),
    Row(
        "remembered accepted states",
        C,
        "ACCEPTED_CACHE_ENTRIES",
        "`accepted_cache_entries` · `--accepted-cache`",
        "the least recently saved operation's state is forgotten, no error: its next save is checked "
        "whole, and a save sending only its new draws (`append`) gets `base_unknown`, so the client "
        "sends the whole state.",
    ),
    Row(
        "bytes of remembered accepted states",
        C,
        "ACCEPTED_CACHE_BYTES",
        "`accepted_cache_bytes` · `--accepted-cache-bytes`",
        "as above, for the states' canonical JSON taken together; a state larger than all of it is not "
        "remembered.",
        _mib,
    ),
    Row(
        "reply reserve of load, rollback, complete",
        "drawstated.server.flow",
        "STATE_REPLY_FACTOR",
        "— (× `limits.max_state_bytes` + `max_frame_bytes`)",
        "charged to the in-flight budget for each such request, for the state its reply may hold: a "
        "state of many small prizes takes ~17 times its JSON size in Python at the peak.",
        lambda v: " ×",
    ),
    Row(
        "unread replies per connection",
        "drawstated.server.connection",
        "WRITE_BUFFER_HIGH",
        "—",
        "reading is paused, no error, until the client has read its replies down to a quarter of the mark.",
        _mib,
    ),
    Row(
        "partial-frame timeout",
        C,
        "PARTIAL_FRAME_TIMEOUT_S",
        "`partial_frame_timeout_s` · `--partial-frame-timeout`",
        "the connection is closed without a reply. The clock starts when a frame is left incomplete and "
        "restarts only when a whole frame arrives, so trickling bytes does not extend it.",
        _s,
    ),
    Row("request id", L, "INT64_MAX", "—", "`invalid_request` with id nil; the connection stays open."),
    Row(
        "longest deadline",
        C,
        "MAX_DEADLINE_MS",
        "`max_deadline_ms` · `--max-deadline-ms`",
        "clipped to it, no error. (`deadline_ms` below 1 is `invalid_request`.)",
        _ms,
    ),
    Row(
        "default deadline",
        C,
        "DEFAULT_DEADLINE_MS",
        "`default_deadline_ms` · `--deadline-ms`",
        "applies to a request that names no `deadline_ms`; past it, `deadline_exceeded` or "
        "`redis_unavailable`.",
        _ms,
    ),
    Row(
        "reply margin",
        C,
        "REPLY_MARGIN_MS",
        "`reply_margin_ms` · —",
        "kept back from every deadline so the reply reaches the client before its own deadline.",
        _ms,
    ),
    Row(
        "state size",
        L,
        "MAX_STATE_BYTES",
        "`limits.max_state_bytes` · `--max-state-bytes`",
        "`invalid_request` (the canonical JSON of the state is measured); a state is never truncated.",
        _mib,
    ),
    Row("total_count", L, "MAX_TOTAL", "`limits.max_total` · `--max-total`", "`draw_state_corrupted`."),
    Row(
        "list lengths",
        L,
        "MAX_TOTAL",
        "`limits.max_total` · `--max-total`",
        "`draw_state_corrupted`: `results` and `prize_results` may not be longer than `completed_count`, "
        "`completed_count + len(errors)` may not pass `total_count`, which is at most `MAX_TOTAL`.",
    ),
    Row(
        "lock key length",
        L,
        "MAX_LOCK_KEY_CHARS",
        "`limits.max_lock_key_chars` · —",
        "`draw_state_corrupted` inside a state; `invalid_request` as a request field (`load`, "
        "`complete`, …).",
    ),
    Row(
        "operation id length",
        L,
        "MAX_OPERATION_ID_CHARS",
        "`limits.max_operation_id_chars` · —",
        "`draw_state_corrupted` inside a state; `invalid_request` as a request field.",
    ),
    Row(
        "metadata entries",
        L,
        "MAX_METADATA_ENTRIES",
        "`limits.max_metadata_entries` · `--max-metadata-entries`",
        "`draw_state_corrupted`.",
    ),
    Row(
        "metadata key length",
        L,
        "MAX_METADATA_KEY_CHARS",
        "`limits.max_metadata_key_chars` · —",
        "`draw_state_corrupted`.",
    ),
    Row(
        "metadata value length",
        L,
        "MAX_METADATA_VALUE_CHARS",
        "`limits.max_metadata_value_chars` · —",
        "`draw_state_corrupted`.",
    ),
    Row(
        "prize id and name length",
        L,
        "MAX_PRIZE_TEXT_CHARS",
        "`limits.max_prize_text_chars` · —",
        "`draw_state_corrupted`.",
    ),
    Row(
        "error message length",
        L,
        "MAX_ERROR_MESSAGE_CHARS",
        "`limits.max_error_message_chars` · —",
        "`draw_state_corrupted`.",
    ),
    Row(
        "draw results and prize values",
        L,
        "DRAW_INT_MAX",
        "—",
        "`draw_state_corrupted` beyond ±`DRAW_INT_MAX`.",
        lambda v: " (2⁵³−1)",
    ),
    Row("save token length", L, "MAX_TOKEN_CHARS", "—", "`invalid_request`."),
    Row("rollback reason length", L, "MAX_REASON_CHARS", "—", "`invalid_request`."),
    Row("ttl_s", C, "MAX_TTL_S", "`max_ttl_s` · `--max-ttl`", "`invalid_request`.", _days),
    Row(
        "page size of pending and audit",
        "drawstated.ops.fields",
        "MAX_PENDING_LIMIT",
        "—",
        "`invalid_request`. A page also ends before its reply would pass the frame size, and a filtered "
        "`audit` after half its deadline, each with a cursor to go on from.",
    ),
    Row(
        "cursor length of pending and audit",
        "drawstated.ops.fields",
        "MAX_CURSOR_CHARS",
        "—",
        "`invalid_request`, as is any cursor this daemon did not give out.",
    ),
    Row(
        "Redis stall detector",
        C,
        "REDIS_SOCKET_TIMEOUT_S",
        "`redis_socket_timeout_s` · `--redis-socket-timeout`",
        "the silent Redis connection is dropped and a new one opened; a request waiting on it still ends "
        "by its own deadline, with `deadline_exceeded` (or `redis_unavailable` when its last attempt "
        "failed outright).",
        _s,
    ),
    Row(
        "Redis probe of ping and stats",
        "drawstated.ops.ping",
        "REDIS_PROBE_S",
        "—",
        'the reply says `redis: "down"`; ping and stats never fail because of Redis.',
        _s,
    ),
    Row(
        "Redis connections",
        C,
        "REDIS_POOL_SIZE",
        "`redis_pool_size` · `--redis-pool-size`",
        "commands wait for a connection: auto-pipeline batches grow.",
    ),
    Row(
        "audit stream length",
        C,
        "AUDIT_MAXLEN",
        "`audit_maxlen` · `--audit-maxlen`",
        "the oldest events are trimmed (`MAXLEN ~`).",
    ),
    Row(
        "expire grace",
        C,
        "EXPIRE_GRACE_S",
        "`expire_grace_s` · `--expire-grace`",
        "no error: a state's key outlives its logical expiry this long, so a sweeper can still record "
        "its expiry even if every daemon was down when it expired.",
        _s,
    ),
    Row(
        "shutdown grace",
        C,
        "SHUTDOWN_GRACE_S",
        "`shutdown_grace_s` · `--shutdown-grace`",
        "connections are closed with requests unanswered; clients resend them (every op is idempotent).",
        _s,
    ),
    Row(
        "listen backlog",
        "drawstated.server.process",
        "LISTEN_BACKLOG",
        "—",
        "a client's `connect()` waits in the kernel.",
    ),
)


def limits_table() -> str:
    lines = [
        "| limit | constant | default | config field · option | when exceeded |",
        "|---|---|---|---|---|",
        *(row.line() for row in ROWS),
    ]
    return "\n".join(lines) + "\n"


def largest_request_cost() -> int:
    """What one request can be charged at most: a frame decoded at the items limit, plus a page reserve."""
    decoded = MAX_FRAME_BYTES + decoding.ITEM_BYTES * decoding.MAX_REQUEST_ITEMS
    page_reserve = (flow.PAGE_READ_CHUNK + flow.STATE_REPLY_FACTOR) * MAX_STATE_BYTES + 2 * MAX_FRAME_BYTES
    return decoded + page_reserve


def rss_bound_bytes(max_inflight_bytes: int, max_connections: int) -> int:
    """The worst-case RSS of a daemon with these limits (the rest at their defaults)."""
    return (
        IDLE_RSS_BYTES
        + max_inflight_bytes
        + largest_request_cost()
        + READ_CHUNK_BYTES
        + max_connections * CONNECTION_BYTES
        + accepted_cache_bytes()
    )


def rss_bound() -> str:
    """docs/limits.md's worst-case RSS, with the default limits put in."""
    default = rss_bound_bytes(config.MAX_INFLIGHT_BYTES, config.MAX_CONNECTIONS)
    return (
        "```\n"
        "peak RSS ≤ idle RSS + max_inflight_bytes + largest request + one read + max_connections × per "
        "connection + accepted states\n"
        f"         = {IDLE_RSS_BYTES // MIB} MiB + {config.MAX_INFLIGHT_BYTES // MIB} MiB"
        f" + {largest_request_cost() / MIB:.1f} MiB + {READ_CHUNK_BYTES // 1024} KiB"
        f" + {config.MAX_CONNECTIONS} × {CONNECTION_BYTES // 1024} KiB"
        f" + {accepted_cache_bytes() // MIB} MiB\n"
        f"         = {default / MIB:.0f} MiB with the defaults (the unit's MemoryMax is 512 MiB)\n"
        "```\n"
        "\n"
        f"- idle RSS: `IDLE_RSS_BYTES` ({IDLE_RSS_BYTES // MIB} MiB), an idle daemon rounded up;\n"
        f"- largest request: one frame decoded at the items limit ({MAX_FRAME_BYTES // MIB} MiB +"
        f" {decoding.ITEM_BYTES} B × {decoding.MAX_REQUEST_ITEMS} items) plus a page's reply reserve"
        f" (({flow.PAGE_READ_CHUNK} + {flow.STATE_REPLY_FACTOR}) × `max_state_bytes` + 2 frames):"
        " the request that takes the budget past its mark is the last one admitted;\n"
        f"- one read: {READ_CHUNK_BYTES // 1024} KiB taken from a socket before the budget can say stop;\n"
        f"- per connection: `CONNECTION_BYTES` ({CONNECTION_BYTES // 1024} KiB), its objects and buffer"
        " headers;\n"
        f"- accepted states: `--accepted-cache-bytes` ({config.ACCEPTED_CACHE_BYTES // MIB} MiB) of the"
        f" states the save op remembers, plus `ACCEPTED_ENTRY_BYTES` ({ACCEPTED_ENTRY_BYTES} B) for each"
        f" of at most `--accepted-cache` ({config.ACCEPTED_CACHE_ENTRIES}) entries.\n"
        f"\nThe listen backlog ({process.LISTEN_BACKLOG}) and the kernel's socket buffers are not the"
        " daemon's RSS.\n"
    )


def memory_summary() -> str:
    """docs/operations.md's paragraph on memory, with the defaults put in."""
    default = rss_bound_bytes(config.MAX_INFLIGHT_BYTES, config.MAX_CONNECTIONS)
    return (
        f"The daemon holds at most `--max-inflight-bytes` ({config.MAX_INFLIGHT_BYTES // MIB} MiB by"
        " default) for all its clients (bytes read and not yet decoded, requests in flight charged what"
        " they decode to plus a reserve for their reply, replies not yet read) and"
        f" `--max-inflight-bytes-per-connection` ({config.MAX_INFLIGHT_BYTES_PER_CONNECTION // MIB} MiB)"
        " for one; past either it stops reading, refusing nothing, until requests finish and clients"
        f" read. With the defaults its RSS stays under {default / MIB:.0f} MiB"
        " ([limits.md](limits.md#what-the-daemons-memory-can-come-to) gives the formula and the"
        " measured peak), under the unit's `MemoryMax=512M`; lower `--max-inflight-bytes` with"
        " `MemoryMax`, and `--max-state-bytes` where states are small (it sets the reply reserves).\n"
    )
