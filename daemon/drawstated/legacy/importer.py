"""The Go engine's in-flight states copied into the sidecar's layout, once: `drawstate import-legacy`.

An operator tool for the cut-over, not a daemon op: it talks to Redis directly with redis-py,
since no daemon op writes a state that a game did not save. It walks `<engine prefix>:state:*`
with SCAN on every master (a bounded COUNT per step, never KEYS), reads each step's keys with GET
and PTTL in one pipeline, converts each value with convert.convert, and writes each state that
converts with lua/import.lua: version 1, a fresh token, the engine key's remaining TTL as its
logical TTL, and the index entry. That script writes nothing where the operation already has a
state (a save moved it on, or an earlier run took it) or a tombstone (it ended), so a repeated run
imports nothing twice and never overwrites the sidecar's newer data. A refused state is reported
with its key and reason and left as it is. With `delete_source` an engine key goes once its
operation is in the sidecar's layout, and only while it still holds the value read
(lua/drop_source.lua). docs/migration.md §4 says how to run it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from drawstate.limits import Limits
from drawstated import keys
from drawstated.codec import encode_head
from drawstated.config import DEFAULT_PREFIX, DEFAULT_TTL_S, EXPIRE_GRACE_S, Config
from drawstated.legacy.convert import (
    ENGINE_PREFIX,
    Converted,
    NotEngineState,
    Refusal,
    convert,
    state_key_head,
)
from drawstated.redis.scripts import Script

#: Keys SCAN is asked for per step; each step's keys are read, and written, in one pipeline.
SCAN_COUNT = 200
#: An imported state's token: this and 24 hex digits (a token is 1-64 of [A-Za-z0-9_-]).
TOKEN_PREFIX = "import-"  # noqa: S105  # a save token's prefix, not a secret
TOKEN_BYTES = 12
MS_PER_S = 1000
#: PTTL's answers for a key without an expiry and for a key that is gone.
PTTL_NO_EXPIRY = -1
PTTL_GONE = -2

#: Exit codes of `drawstate import-legacy`.
EXIT_OK = 0
#: Every importable state was imported (or was there already), but some were refused.
EXIT_REFUSED = 1
#: Bad options (click's own code for bad arguments, also used for a bad configuration).
EXIT_USAGE = 2
#: Redis could not be reached, or failed during the run; what was done is reported, run it again.
EXIT_REDIS = 3

_INDEX_RE = re.compile(r"\[\d+\]")

RedisClient: TypeAlias = redis.Redis | RedisCluster


@dataclass(frozen=True)
class Settings:
    """What one run does; defaults are the daemon's own, so a run next to a default daemon needs none."""

    #: The sidecar's prefix (where states are written).
    prefix: str = DEFAULT_PREFIX
    #: The engine's prefix (where states are read); the sidecar's by default, as both use "lottery".
    engine_prefix: str = ENGINE_PREFIX
    #: The logical TTL of a state whose engine key has no expiry (the daemon's default ttl_s).
    default_ttl_s: int = DEFAULT_TTL_S
    #: How long a state's key outlives its logical expiry (the daemon's expire_grace_s).
    grace_s: int = EXPIRE_GRACE_S
    limits: Limits = field(default_factory=Limits)
    dry_run: bool = False
    delete_source: bool = False
    scan_count: int = SCAN_COUNT

    def __post_init__(self) -> None:
        keys.check_prefix(self.prefix)
        keys.check_prefix(self.engine_prefix)
        for name in ("default_ttl_s", "grace_s", "scan_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @classmethod
    def from_config(cls, config: Config, **changes: Any) -> Settings:
        """The settings of the daemon `config` describes (prefix, default TTL, grace, limits)."""
        base = {
            "prefix": config.prefix,
            "engine_prefix": config.prefix,
            "default_ttl_s": config.ttl_s,
            "grace_s": config.expire_grace_s,
            "limits": config.limits,
        }
        return cls(**{**base, **{name: value for name, value in changes.items() if value is not None}})


def reason_of(refusal: Refusal) -> str:
    """What refusals are counted by: the field, list positions dropped (`errors[].draw_index`)."""
    return _INDEX_RE.sub("[]", refusal.field)


@dataclass
class Report:
    """What a run did (in a dry run: would do); filled in as it goes, so a failed run still tells."""

    dry_run: bool = False
    #: Keys in the engine's layout examined (the sidecar's own are not counted here).
    examined: int = 0
    imported: int = 0
    #: The operation has a state in the sidecar's layout already: left as it is.
    already_present: int = 0
    #: The operation ended in the sidecar (a tombstone): it never comes back.
    already_closed: int = 0
    refused: list[Refusal] = field(default_factory=list)
    #: Gone between SCAN and GET: expired or deleted meanwhile.
    vanished: int = 0
    #: The sidecar's own states the scan met under the same prefix, left alone.
    sidecar_states: int = 0
    #: Engine keys deleted (delete_source), and those kept because their value changed after the read.
    deleted: int = 0
    kept_changed: list[str] = field(default_factory=list)

    def refused_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(reason_of(refusal) for refusal in self.refused).items()))

    def examples(self) -> dict[str, str]:
        """The text of the first refusal met for each reason."""
        first: dict[str, str] = {}
        for refusal in self.refused:
            first.setdefault(reason_of(refusal), str(refusal))
        return first

    @property
    def exit_code(self) -> int:
        return EXIT_REFUSED if self.refused else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "examined": self.examined,
            "imported": self.imported,
            "already_present": self.already_present,
            "already_closed": self.already_closed,
            "refused": len(self.refused),
            "refused_by_reason": self.refused_by_reason(),
            "vanished": self.vanished,
            "sidecar_states": self.sidecar_states,
            "deleted": self.deleted,
            "kept_changed": self.kept_changed,
            "refusals": [
                {"key": r.key, "reason": reason_of(r), "field": r.field, "problem": r.problem}
                for r in self.refused
            ],
        }


@dataclass(frozen=True, slots=True)
class _Planned:
    """A converted state, the engine value it came from, and the logical TTL it gets."""

    name: bytes
    converted: Converted
    raw: bytes
    ttl_ms: int


class Importer:
    """One run over one Redis (standalone, Sentinel's master, or every master of a Cluster)."""

    def __init__(self, client: RedisClient, settings: Settings, report: Report | None = None) -> None:
        self.client = client
        self.settings = settings
        self.report = report if report is not None else Report(dry_run=settings.dry_run)
        self._import = Script.load("import")
        self._drop = Script.load("drop_source")
        #: Keys already handled: SCAN may return a key twice while Redis rehashes (our own writes
        #: grow the keyspace), and a state this run wrote is not "the sidecar's own" found there.
        self._seen: set[bytes] = set()

    def run(self) -> Report:
        """Walk every master; raises redis.RedisError or RedisClusterException, with `report` kept."""
        pattern = state_key_head(self.settings.engine_prefix) + "*"
        for node in scan_targets(self.client):
            for names in scan_steps(node, pattern, self.settings.scan_count):
                self.step(names)
        return self.report

    def step(self, names: list[bytes]) -> None:
        """Read, convert, import and (with delete_source) delete one SCAN step's keys."""
        fresh = [name for name in dict.fromkeys(names) if name not in self._seen]
        self._seen.update(fresh)
        planned = self._plan(fresh)
        outcomes = self._check(planned) if self.settings.dry_run else self._write(planned)
        for outcome in outcomes:
            if outcome == "imported":
                self.report.imported += 1
            elif outcome == "present":
                self.report.already_present += 1
            else:
                self.report.already_closed += 1
        if self.settings.delete_source:  # each one's operation is in the sidecar's layout now
            self._delete(planned)

    def _plan(self, names: list[bytes]) -> list[_Planned]:
        reads = self.client.pipeline(transaction=False)
        for name in names:
            reads.get(name)
            reads.pttl(name)
        replies = reads.execute(raise_on_error=False)
        planned = []
        for name, raw, pttl in zip(names, replies[0::2], replies[1::2], strict=True):
            item = self._examine(name, raw, pttl)
            if item is not None:
                planned.append(item)
        return planned

    def _examine(self, name: bytes, raw: Any, pttl: Any) -> _Planned | None:
        """The import to make of one key, or None (counted or reported here)."""
        key = name.decode("utf-8", "backslashreplace")
        refusal = None
        if isinstance(raw, redis.ResponseError) and "WRONGTYPE" in str(raw):
            refusal = Refusal(key, "document", "not a string value")
        elif key.encode() != name:  # never guess the key a lock key of other bytes would make
            refusal = Refusal(key, "key", "not UTF-8")
        for reply in (raw, pttl):
            if isinstance(reply, Exception) and refusal is None:
                raise reply
        if refusal is None and (raw is None or pttl == PTTL_GONE):
            self.report.vanished += 1
            return None
        outcome = refusal or convert(key, raw, self.settings.engine_prefix, self.settings.limits)
        if isinstance(outcome, NotEngineState):
            self.report.sidecar_states += 1
            return None
        self.report.examined += 1
        if isinstance(outcome, Refusal):
            self.report.refused.append(outcome)
            return None
        ttl_ms = self.settings.default_ttl_s * MS_PER_S if pttl == PTTL_NO_EXPIRY else int(pttl)
        return _Planned(name, outcome, raw, ttl_ms)

    def _state_keys(self, converted: Converted) -> list[str]:
        prefix, lock_key, operation_id = self.settings.prefix, converted.lock_key, converted.operation_id
        return [
            keys.state_key(prefix, lock_key, operation_id),
            keys.index_key(prefix, lock_key),
            keys.closed_key(prefix, lock_key, operation_id),
        ]

    def _write(self, planned: list[_Planned]) -> list[str]:
        """import.lua for each state. EVAL, not EVALSHA: a run is short, and no NOSCRIPT can come."""
        writes = self.client.pipeline(transaction=False)
        for item in planned:
            names = self._state_keys(item.converted)
            self._seen.add(names[0].encode())
            state = item.converted.state
            writes.execute_command(
                "EVAL",
                self._import.source,
                len(names),
                *names,
                item.converted.operation_id,
                encode_head(state, self.settings.limits),
                TOKEN_PREFIX + secrets.token_hex(TOKEN_BYTES),
                item.ttl_ms,
                self.settings.grace_s * MS_PER_S,
                state["last_update_time"] * MS_PER_S,
            )
        return [_text(reply) for reply in writes.execute()]

    def _check(self, planned: list[_Planned]) -> list[str]:
        """What import.lua would answer, read without writing (a dry run)."""
        reads = self.client.pipeline(transaction=False)
        for item in planned:
            state, _, tomb = self._state_keys(item.converted)
            reads.exists(tomb)
            reads.exists(state)
        replies = reads.execute()
        return [
            "closed" if closed else "present" if present else "imported"
            for closed, present in zip(replies[0::2], replies[1::2], strict=True)
        ]

    def _delete(self, taken: list[_Planned]) -> None:
        if self.settings.dry_run:
            self.report.deleted += len(taken)
            return
        drops = self.client.pipeline(transaction=False)
        for item in taken:
            digest = hashlib.sha1(item.raw, usedforsecurity=False).hexdigest()
            drops.execute_command("EVAL", self._drop.source, 1, item.name, digest)
        for item, reply in zip(taken, drops.execute(), strict=True):
            outcome = _text(reply)
            if outcome == "deleted":
                self.report.deleted += 1
            elif outcome == "changed":
                self.report.kept_changed.append(item.converted.key)


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def scan_targets(client: RedisClient) -> list[redis.Redis]:
    """The servers a full SCAN walks: the one server, or every master of a Cluster."""
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]  # type: ignore[no-untyped-call]
    return [client]


def scan_steps(node: redis.Redis, pattern: str, count: int) -> Iterator[list[bytes]]:
    """The keys matching `pattern` on one server, a SCAN step (about `count` keys) at a time."""
    cursor = 0
    while True:
        cursor, names = node.scan(cursor=cursor, match=pattern, count=count)
        if names:
            yield [name if isinstance(name, bytes) else name.encode() for name in names]
        if cursor == 0:
            return


def connect(config: Config) -> RedisClient:
    """redis-py on the Redis `config` names, as the daemon reaches it (same URL, seeds, TLS, auth).

    With Sentinel or Cluster the URL only carries options (rediss:// for TLS, the db).
    Raises ValueError when the config names no Redis: the import never uses an embedded one.
    """
    url = config.redis_url or ""
    parts = urlsplit(url)
    tls = parts.scheme == "rediss"
    options: dict[str, Any] = {
        "username": config.redis_username,
        "password": config.redis_password,
        "socket_timeout": config.redis_socket_timeout_s,
        "socket_connect_timeout": config.redis_socket_timeout_s,
    }
    if tls:
        options.update(
            ssl_ca_certs=config.redis_tls_ca and str(config.redis_tls_ca),
            ssl_certfile=config.redis_tls_cert and str(config.redis_tls_cert),
            ssl_keyfile=config.redis_tls_key and str(config.redis_tls_key),
        )
    options = {name: value for name, value in options.items() if value is not None}
    if config.redis_cluster:
        seeds = [ClusterNode(host, port) for host, port in config.cluster_seeds()]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=seeds, ssl=tls, **options)
    if config.redis_sentinels:
        assert config.sentinel_master is not None  # Config requires both
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            config.sentinel_addresses(),
            sentinel_kwargs={"socket_timeout": config.redis_socket_timeout_s},
        )
        db = int(parts.path.strip("/") or 0) if parts.scheme in ("redis", "rediss") else 0
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            config.sentinel_master, db=db, ssl=tls, **options
        )
        return master
    if not url:
        raise ValueError("name the Redis to import from: --redis-url, --redis-cluster or --redis-sentinel")
    return redis.Redis.from_url(url, **options)
