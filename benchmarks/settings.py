"""One run's settings: a frozen dataclass with the full defaults and the --quick ones.

`duration` is the time measured per target in each step: the latency scenario
gives each target `duration` seconds in blocks of `block` seconds (alternating
sidecar, direct, sidecar, ...); throughput runs each target `duration` seconds
per process count; mix runs each target `duration` seconds; sizes stops a
(size, target) pair after `samples` saves or `duration` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCENARIOS = ("latency", "throughput", "sizes", "mix", "clients")
TOPOLOGIES = ("standalone", "cluster")


@dataclass(frozen=True)
class Settings:
    scenarios: tuple[str, ...] = SCENARIOS
    quick: bool = False
    out: Path | None = None
    #: latency: target saves per second, seconds per alternating block, sender processes.
    rate: float = 1000.0
    duration: float = 5.0
    block: float = 1.0
    senders: int = 4
    #: latency: unrecorded seconds per target before the first block.
    warmup: float = 0.5
    #: throughput: closed-loop client process counts.
    processes: tuple[int, ...] = (1, 8, 32, 64)
    #: sizes: draws per state, saves measured per (size, target).
    sizes: tuple[int, ...] = (10, 100, 1000)
    samples: int = 2000
    #: mix: client processes running whole multi-draws.
    mix_clients: int = 4
    #: our own Redis: one redis-server on a unix socket, or a 3-master + 3-replica Cluster on loopback TCP.
    topology: str = "standalone"
    #: given environment (None: start our own).
    redis_url: str | None = None
    socket_path: str | None = None
    daemon_pid: int | None = None
    redis_pid: int | None = None
    prefix: str = "lottery"
    aof: bool = False
    plot: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.scenarios) - set(SCENARIOS)
        if unknown or not self.scenarios:
            raise ValueError(f"scenarios must be some of {', '.join(SCENARIOS)}; got {sorted(unknown)}")
        if self.rate <= 0 or self.duration <= 0 or self.block <= 0:
            raise ValueError("rate, duration and block must be positive")
        if self.senders < 1 or self.mix_clients < 1 or self.samples < 1:
            raise ValueError("senders, mix clients and samples must be at least 1")
        if not self.processes or min(self.processes) < 1 or not self.sizes or min(self.sizes) < 1:
            raise ValueError("process counts and sizes must be positive")
        if self.socket_path is not None and self.redis_url is None:
            raise ValueError("--socket needs --redis-url too: the direct runs write to the daemon's Redis")
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}; got {self.topology!r}")
        given = (self.redis_url, self.socket_path, self.daemon_pid, self.redis_pid)
        if self.topology == "cluster" and any(value is not None for value in given):
            raise ValueError(
                "--topology cluster builds its own cluster and daemon: "
                "it takes no --redis-url, --socket, --daemon-pid or --redis-pid"
            )


#: What --quick changes (CI's smoke run: the whole thing in well under 30 s on 2 cores).
QUICK = {
    "duration": 1.0,
    "block": 0.5,
    "warmup": 0.2,
    "processes": (1, 8),
    "samples": 200,
    "mix_clients": 2,
}
