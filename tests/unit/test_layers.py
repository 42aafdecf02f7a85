"""The daemon's layers, as drawstated/__init__.py draws them: a layer imports only layers below it.

Read from the source with ast (nothing is imported), so a new import that reaches upwards, and
with it the first step of a cycle, fails here before anyone has to untangle it.
"""

from __future__ import annotations

import ast
from pathlib import Path

DAEMON = Path(__file__).resolve().parents[2] / "daemon" / "drawstated"

#: Top to bottom; a module may import its own layer and any layer after it.
LAYERS = [
    {"cli", "reference", "__main__"},
    {"server"},
    {"ops"},
    {"deferred", "journal"},
    {"legacy"},
    {"storage"},
    {"redis"},
    {"config", "options", "keys", "codec", "errors", "stats", "logs", "__version__"},
]


def _layer(part: str) -> int:
    for depth, names in enumerate(LAYERS):
        if part in names:
            return depth
    raise AssertionError(f"drawstated.{part} is in no layer: add it to LAYERS and to the map")


def _imports(path: Path) -> set[str]:
    """The drawstated.<first part> names a module imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name.split(".")[1] for name in names if name.startswith("drawstated.")}
    return found


def test_every_module_imports_only_its_own_layer_and_those_below() -> None:
    upward = []
    for path in sorted(DAEMON.rglob("*.py")):
        relative = path.relative_to(DAEMON)
        if relative.name == "__init__.py" and len(relative.parts) == 1:
            continue  # the package itself: only the version
        own = _layer(relative.parts[0].removesuffix(".py"))
        upward += [f"{relative} imports drawstated.{name}" for name in _imports(path) if _layer(name) < own]
    assert not upward, "\n".join(upward)


def test_the_map_names_every_package_and_module() -> None:
    parts = {p.name.removesuffix(".py") for p in DAEMON.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts -= {"__init__", "__pycache__"}
    assert parts == set().union(*LAYERS) - {"__version__"}
