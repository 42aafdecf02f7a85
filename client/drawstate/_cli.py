"""The `drawstate` command's front door (also `python -m drawstate`).

The commands live with the daemon (drawstated.cli) and need its extra (click, orjson, redis-py):
a client-only install (`pip install drawstate`, msgpack alone) gets one line saying what to
install instead of a traceback.
"""

from __future__ import annotations

import sys

#: Modules the daemon extra brings; one missing means the extra is not installed.
_DAEMON_EXTRA_MODULES = frozenset({"click", "orjson", "redis", "tenacity", "uvloop", "prometheus_client"})
EXIT_MISSING_EXTRA = 2


def main() -> None:
    try:
        from drawstated.cli import main as cli_main  # noqa: PLC0415  # only when the command runs
    except ModuleNotFoundError as exc:
        if exc.name not in _DAEMON_EXTRA_MODULES:
            raise
        sys.stderr.write(
            f"drawstate: the command needs the daemon extra ({exc.name} is missing): "
            "pip install 'drawstate[daemon]'\n"
        )
        sys.exit(EXIT_MISSING_EXTRA)
    cli_main()
