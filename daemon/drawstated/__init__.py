"""drawstated: the drawstate sidecar daemon (uvloop server, Redis store, CLI)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("drawstate")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
