"""drawstated: the drawstate sidecar daemon.

Game processes speak the wire protocol (msgpack frames over a Unix socket) to this daemon; the
daemon alone speaks to Redis. The layers, top to bottom (a layer imports only those below it):

    cli/        the `drawstate` command: serve, client commands, operator tools, import-legacy
    server/     the process: listener, one Connection per client (framing, decoding limits,
                flow control), start-up and shutdown, locks, systemd, metrics, embedded Redis
    ops/        one module per op of the protocol and the OpTable the connection dispatches on;
                request-field parsing in ops/fields.py
    deferred.py rollbacks Redis could not take in time, kept in journal.py until it can
    storage/    what the ops read and write: Store (operation state through the Lua scripts),
                the outcome stream and its Publisher, the Sweeper that expires and publishes
    redis/      talking to Redis: RESP connections, the auto-pipeline, the Cluster router,
                Sentinel, typed error replies, the retry policy, the Lua scripts
    legacy/     reading states the original engine wrote (import-legacy)
    reference/  docs generated from the code: the limits table, the reference blocks

At the top level, beside them: config and options (one Config, built from flags or env), keys
(the Redis key layout), codec (a state's stored JSON), errors (wire error codes), stats, logs.
docs/architecture.md follows one request from frame to Redis and back.
"""

from drawstate import __version__

__all__ = ["__version__"]
