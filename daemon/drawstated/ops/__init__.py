"""The ops of the wire protocol, one module each, and the table the connection dispatches on.

An op is built once per daemon with the OpContext (context.py) and comes in one of two shapes: a
FastOp answers from the Redis reply's callback, with no task (save, the hot path); a coroutine op
is awaited in a task (everything else). `OpTable.fast` and `OpTable.coroutines` hold each shape;
every name in protocol.OPS is in exactly one of them. `READ_ONLY_OPS` names the coroutine ops
that only read: the connection stops them when their client leaves, since nobody is left to read
their reply (every other op runs to its end: it may have changed Redis).

To add an op: write ops/<name>.py with a class taking the OpContext, add it here (and to
READ_ONLY_OPS if it only reads), add its name to protocol.OPS and its fields to docs/protocol.md
(docs/architecture.md walks through it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drawstate import protocol
from drawstated.ops.audit import Audit
from drawstated.ops.complete import Complete
from drawstated.ops.context import CoroutineOp, FastOp, OpContext
from drawstated.ops.load import Load
from drawstated.ops.outcomes import Ack, Outcomes
from drawstated.ops.pending import Pending
from drawstated.ops.ping import Ping
from drawstated.ops.rollback import Rollback
from drawstated.ops.save import Save
from drawstated.ops.stats import StatsOp

#: The ops that change nothing a caller depends on, so a request of one may be cancelled at any
#: await. At most they drop index entries of states already gone (inside a script on one server;
#: on Cluster an idempotent clean-up) or reload the scripts. Not `outcomes`: its read delivers
#: events to a consumer. docs/protocol.md §5 names them.
READ_ONLY_OPS = frozenset({"ping", "load", "pending", "stats", "audit"})


@dataclass(frozen=True)
class OpTable:
    """Every op of one daemon, by name, in the shape it is served in."""

    fast: dict[str, FastOp] = field(default_factory=dict)
    coroutines: dict[str, CoroutineOp] = field(default_factory=dict)

    @classmethod
    def build(cls, ctx: OpContext) -> OpTable:
        table = cls(
            fast={"save": Save(ctx)},
            coroutines={
                "ping": Ping(ctx),
                "load": Load(ctx),
                "rollback": Rollback(ctx),
                "complete": Complete(ctx),
                "pending": Pending(ctx),
                "stats": StatsOp(ctx),
                "audit": Audit(ctx),
                "outcomes": Outcomes(ctx),
                "ack": Ack(ctx),
            },
        )
        served = sorted([*table.fast, *table.coroutines])
        assert served == sorted(protocol.OPS) and not table.fast.keys() & table.coroutines.keys(), served
        assert table.coroutines.keys() >= READ_ONLY_OPS, READ_ONLY_OPS
        return table
