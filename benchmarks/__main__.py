"""`python -m benchmarks`: the command line (click parses, runner.run works).

Exit codes: 0 done, 1 a run failed, 2 bad arguments (click), 130 interrupted.
SIGTERM is turned into an orderly exit, so the finally blocks stop Redis, the
daemon and the workers just as on Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from benchmarks.settings import QUICK, SCENARIOS, TOPOLOGIES, Settings

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _ints(value: str | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(part) for part in value.split(",") if part.strip())


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(EXIT_TERMINATED)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--quick", is_flag=True, help="Short smoke run (CI): well under 30 s on 2 cores.")
@click.option(
    "--scenarios",
    default=",".join(SCENARIOS),
    help="Comma-separated: latency, throughput, sizes, mix, clients.",
)
@click.option("--rate", type=float, help="latency: saves/s. [default: 1000]")
@click.option(
    "--duration",
    type=float,
    help="Seconds measured per target in each step. [default: 5, quick: 1]",
)
@click.option("--block", type=float, help="latency: seconds per alternating block. [default: 1, quick: 0.5]")
@click.option("--senders", type=click.IntRange(1), help="latency: paced sender processes. [default: 4]")
@click.option("--processes", help="throughput: client process counts. [default: 1,8,32,64; quick: 1,8]")
@click.option("--sizes", "sizes_", help="sizes: draws per state. [default: 10,100,1000]")
@click.option("--samples", type=click.IntRange(1), help="sizes: saves per size and target. [default: 2000]")
@click.option("--mix-clients", type=click.IntRange(1), help="mix: client processes. [default: 4, quick: 2]")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Results directory. [default: benchmarks/results/<timestamp>/]",
)
@click.option(
    "--topology",
    type=click.Choice(TOPOLOGIES),
    default="standalone",
    help="Our own Redis: one server (unix socket), or a 3-master + 3-replica Cluster (loopback TCP) "
    "that the daemon reaches with --redis-cluster and direct with redis.RedisCluster.",
)
@click.option("--redis-url", help="Use this running Redis instead of starting one.")
@click.option("--socket", "socket_path", help="Use the daemon on this socket (needs --redis-url).")
@click.option("--daemon-pid", type=int, help="Given daemon's pid, to measure its CPU and RSS.")
@click.option("--redis-pid", type=int, help="Given Redis's pid, to measure its CPU and RSS.")
@click.option("--prefix", default="lottery", help="Key prefix of the direct runs' keys.")
@click.option("--aof", is_flag=True, help="Run our own Redis with AOF (everysec), as the embedded one does.")
@click.option("--no-plot", is_flag=True, help="Skip results.png (no matplotlib needed).")
def main(quick: bool, scenarios: str, sizes_: str | None, no_plot: bool, **options: Any) -> None:
    """Latency and throughput of the drawstate sidecar against direct redis-py on the same Redis."""
    values: dict[str, Any] = dict(QUICK) if quick else {}
    values.update({key: value for key, value in options.items() if value is not None})
    try:
        for key, raw in (("processes", options.get("processes")), ("sizes", sizes_)):
            if raw is not None:
                values[key] = _ints(raw)
        settings = Settings(
            scenarios=tuple(s.strip() for s in scenarios.split(",") if s.strip()),
            quick=quick,
            plot=not no_plot,
            **values,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    from benchmarks.runner import run  # keep --help fast

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run(settings)
    except KeyboardInterrupt:
        click.echo("interrupted: Redis, the daemon and the workers were stopped", err=True)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main(prog_name="python -m benchmarks")
