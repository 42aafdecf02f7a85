"""drawstated: the drawstate sidecar daemon (uvloop server, Redis store, CLI)."""

from drawstate import __version__

__all__ = ["__version__"]
