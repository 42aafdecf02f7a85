"""The daemon's configuration: one frozen dataclass, passed down explicitly.

Built by the CLI from flags and DRAWSTATE_* variables, or directly in Python
(tests, embedding). Secrets arrive only from the environment or a file, and
`repr` never shows them, nor a password embedded in the Redis URL.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio.connection import parse_url

from drawstate.limits import MAX_FRAME_BYTES, MIB, Limits
from drawstate.paths import default_socket_path
from drawstate.protocol import DURABILITIES, Durability
from drawstated.keys import check_prefix

DEFAULT_PREFIX = "lottery"
DEFAULT_TTL_S = 3600
DEFAULT_DEADLINE_MS = 2000
#: Deadlines longer than this are clipped: nobody waits a minute on a draw.
MAX_DEADLINE_MS = 30_000
#: Time kept back from a deadline to encode and send the reply before the client gives up.
REPLY_MARGIN_MS = 15
MAX_CONNECTIONS = 1024
#: A client that never reads can pin this many replies (each up to a state) in daemon memory.
MAX_INFLIGHT_PER_CONNECTION = 32
#: Bytes the daemon holds for all clients at once: unread input, requests in flight (decoded,
#: plus a reserve for their replies) and replies not taken yet. Past it, no connection is read.
MAX_INFLIGHT_BYTES = 192 * MIB
#: The same for one connection: past it, that connection is not read until its requests finish.
MAX_INFLIGHT_BYTES_PER_CONNECTION = 48 * MIB
#: A connection silent this long while holding a partial frame is closed (slow-loris guard).
PARTIAL_FRAME_TIMEOUT_S = 10.0
SOCKET_MODE = 0o660
REDIS_POOL_SIZE = 4
#: Bounds one Redis round trip even when no request deadline would (e.g. background cleanup).
REDIS_SOCKET_TIMEOUT_S = 5.0
#: Events the outcome stream keeps as history (more only while a consumer group owes them).
AUDIT_MAXLEN = 100_000
#: Operations whose last accepted state the daemon remembers, so their next save is checked by
#: what it appends (ops/accepted.py): about 1 KB each with its key, ~4 MB in all. 0 checks every
#: save whole. An entry only spares work: an operation it no longer holds gets the full check.
ACCEPTED_CACHE_ENTRIES = 4096
#: What the accepted states' heads may take in all (a 1000-draw state's is ~87 KB, a 10-draw one's ~1 KB).
ACCEPTED_CACHE_BYTES = 8 * 1024 * 1024
#: Seconds between sweeps; an operation's expire event is written within its TTL plus this.
SWEEP_INTERVAL_S = 30.0
#: A state's key outlives its logical expiry this long, so a sweeper can still read and record it
#: even if every daemon was down when it expired.
EXPIRE_GRACE_S = 86_400
SHUTDOWN_GRACE_S = 10.0
CLEANUP_RETRY_S = 1.0
MAX_TTL_S = 30 * 24 * 3600
PASSWORD_ENV = "DRAWSTATE_REDIS_PASSWORD"  # noqa: S105  # the variable name, not a secret
PASSWORD_FILE_ENV = "DRAWSTATE_REDIS_PASSWORD_FILE"  # noqa: S105  # a variable name


def default_data_dir() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "drawstate"


def redact_url(url: str | None) -> str | None:
    """The URL with any password (in the userinfo or a `password=` query) replaced by ***."""
    if not url:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query_has_password = any(key.lower() == "password" for key, _ in query)
    if parts.password is None and not query_has_password:
        return url
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:" if parts.username else ":"
        parts = parts._replace(netloc=f"{user}***@{netloc}")
    if query_has_password:
        query = [(key, "***" if key.lower() == "password" else value) for key, value in query]
        parts = parts._replace(query=urlencode(query, safe="*/"))
    # urlunsplit drops the empty authority of unix:///path; keep the URL's own form.
    redacted = urlunsplit(parts)
    return redacted.replace(":/", ":///", 1) if url.startswith(f"{parts.scheme}:///") else redacted


def _host_ports(items: tuple[str, ...]) -> list[tuple[str, int]]:
    addresses = []
    for item in items:
        host, _, port = item.rpartition(":")
        addresses.append((host.strip("[]") or "127.0.0.1", int(port)))
    return addresses


def password_from_env() -> str | None:
    """DRAWSTATE_REDIS_PASSWORD, else the contents of DRAWSTATE_REDIS_PASSWORD_FILE."""
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    path = os.environ.get(PASSWORD_FILE_ENV)
    if path:
        return Path(path).read_text().strip() or None
    return None


@dataclass(frozen=True)
class Config:
    """Everything the daemon needs to run; no module reads the environment behind its back."""

    socket_path: Path = field(default_factory=default_socket_path)
    #: None (and no Sentinel) → an embedded redis-server in data_dir. A given URL is never replaced.
    #: With Sentinel, the URL only carries options (db, TLS); the master's address comes from Sentinel.
    redis_url: str | None = None
    #: Sentinel addresses ("host:port") and the name of the master they watch.
    redis_sentinels: tuple[str, ...] = ()
    sentinel_master: str | None = None
    #: Redis Cluster seed nodes ("host:port"); the rest of the cluster is discovered from them.
    redis_cluster: tuple[str, ...] = ()
    data_dir: Path = field(default_factory=default_data_dir)
    prefix: str = DEFAULT_PREFIX
    ttl_s: int = DEFAULT_TTL_S
    log_format: str = "text"
    log_level: str = "INFO"
    #: Prometheus /metrics port; None (the default) serves no metrics. 0 picks a free port.
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    default_deadline_ms: int = DEFAULT_DEADLINE_MS
    max_deadline_ms: int = MAX_DEADLINE_MS
    reply_margin_ms: int = REPLY_MARGIN_MS
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_connections: int = MAX_CONNECTIONS
    max_inflight_per_connection: int = MAX_INFLIGHT_PER_CONNECTION
    max_inflight_bytes: int = MAX_INFLIGHT_BYTES
    max_inflight_bytes_per_connection: int = MAX_INFLIGHT_BYTES_PER_CONNECTION
    partial_frame_timeout_s: float = PARTIAL_FRAME_TIMEOUT_S
    socket_mode: int = SOCKET_MODE
    socket_group: str | None = None
    #: Peer uids allowed to connect (SO_PEERCRED); None lets anyone the socket mode lets in.
    allowed_uids: frozenset[int] | None = None
    #: Peer gids allowed to connect; a peer passes if its uid or its gid is allowed.
    allowed_gids: frozenset[int] | None = None
    redis_username: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    #: TLS to Redis (rediss:// URLs): CA bundle to trust, and a client certificate and key.
    redis_tls_ca: Path | None = None
    redis_tls_cert: Path | None = None
    redis_tls_key: Path | None = None
    redis_pool_size: int = REDIS_POOL_SIZE
    redis_socket_timeout_s: float = REDIS_SOCKET_TIMEOUT_S
    audit_maxlen: int = AUDIT_MAXLEN
    accepted_cache_entries: int = ACCEPTED_CACHE_ENTRIES
    accepted_cache_bytes: int = ACCEPTED_CACHE_BYTES
    sweep_interval_s: float = SWEEP_INTERVAL_S
    expire_grace_s: int = EXPIRE_GRACE_S
    #: Consumer groups created at start, so the stream keeps their events from the first one on.
    outcome_groups: tuple[str, ...] = ()
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    cleanup_retry_s: float = CLEANUP_RETRY_S
    max_ttl_s: int = MAX_TTL_S
    #: Durability of a save that does not say: "ack" (primary) or "replicated" (WAIT).
    durability: Durability = "ack"
    #: Replicas that must acknowledge a "replicated" save.
    min_replicas: int = 1
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        if not 1 <= self.ttl_s <= self.max_ttl_s:
            raise ValueError(f"ttl must be 1..{self.max_ttl_s} seconds, got {self.ttl_s}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log format must be text or json, got {self.log_format!r}")
        if self.max_frame_bytes <= self.limits.max_state_bytes:
            raise ValueError("max_frame_bytes must exceed max_state_bytes so a state at its cap fits")
        self._check_redis_target()
        if self.durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITIES)}, got {self.durability!r}")
        if self.socket_mode & 0o007:
            raise ValueError(f"socket mode {self.socket_mode:o} would make the socket world-accessible")
        for name, least in (
            ("max_connections", 1),
            ("max_inflight_per_connection", 1),
            ("max_inflight_bytes", 1),
            ("max_inflight_bytes_per_connection", 1),
            ("redis_pool_size", 1),
            ("accepted_cache_entries", 0),
            ("accepted_cache_bytes", 0),
        ):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}")

    def _check_redis_target(self) -> None:
        """Where Redis is: one URL, Sentinel (addresses and a master name) or Cluster, and its TLS files."""
        if bool(self.redis_sentinels) != bool(self.sentinel_master):
            raise ValueError("Sentinel needs both its addresses (redis_sentinels) and the master name")
        if self.redis_sentinels and self.redis_cluster:
            raise ValueError("choose Sentinel or Cluster, not both")
        for item in (*self.redis_sentinels, *self.redis_cluster):
            if not item.rpartition(":")[2].isdigit():
                raise ValueError(f"redis node address {item!r} is not host:port")
        if self.redis_url is not None:
            try:
                parse_url(self.redis_url)
            except ValueError as exc:  # its scheme or port; the message never holds the URL (a password)
                raise ValueError(f"the Redis URL is not one: {exc}") from None
        if self.redis_tls_key and not self.redis_tls_cert:
            raise ValueError("a TLS client key needs its certificate (redis_tls_cert)")

    def __repr__(self) -> str:
        shown = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "redis_password":
                value = "***" if value else None
            elif item.name == "redis_url":
                value = redact_url(value)
            shown.append(f"{item.name}={value!r}")
        return f"Config({', '.join(shown)})"

    __str__ = __repr__

    def essentials(self) -> dict[str, Any]:
        """What an operator reads first in the start-up line: where, which Redis, where data lives, TTL,
        durability. The whole configuration goes to the log at DEBUG."""
        if self.redis_cluster:
            redis = "cluster " + ",".join(self.redis_cluster)
        elif self.redis_sentinels:
            redis = f"sentinel {self.sentinel_master}@" + ",".join(self.redis_sentinels)
        else:
            redis = redact_url(self.redis_url) or f"embedded ({self.data_dir})"
        return {
            "socket": str(self.socket_path),
            "redis": redis,
            "data_dir": str(self.data_dir),
            "ttl_s": self.ttl_s,
            "durability": self.durability,
        }

    @property
    def outcome_lease_ms(self) -> int:
        """How long a daemon that ends an operation owns writing its event (and deciding its refund).

        Twice the longest deadline: a healthy daemon settles within one request's deadline, so
        a sweeper only ever takes over from one that died or lost Redis.
        """
        return 2 * self.max_deadline_ms

    @property
    def embedded(self) -> bool:
        return self.redis_url is None and not self.redis_sentinels and not self.redis_cluster

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return _host_ports(self.redis_sentinels)

    def cluster_seeds(self) -> list[tuple[str, int]]:
        return _host_ports(self.redis_cluster)

    def redis_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for rediss:// URLs, or None to use the system's trust store."""
        if not (self.redis_tls_ca or self.redis_tls_cert):
            return None
        context = ssl.create_default_context(cafile=str(self.redis_tls_ca) if self.redis_tls_ca else None)
        if self.redis_tls_cert:
            context.load_cert_chain(self.redis_tls_cert, self.redis_tls_key)
        return context

    def replace(self, **changes: object) -> Config:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
