"""The docs' reference tables, made from the code, so no default or limit in docs/ can drift from it.

Each table sits in its doc between `<!-- generated: NAME -->` and `<!-- end generated -->`.
`python -m drawstated.reference` rewrites them; tests/unit/test_reference_docs.py fails when a
doc differs from what this module makes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from drawstated.options import reference_table
from drawstated.reference.limits import limits_table, memory_summary, rss_bound

#: doc file (relative to the repository) → generated block name → what makes it.
GENERATED: dict[str, dict[str, Callable[[], str]]] = {
    "docs/operations.md": {"options": reference_table, "memory": memory_summary},
    "docs/limits.md": {"limits": limits_table, "rss_bound": rss_bound},
}
_BLOCK_RE = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.DOTALL)


def render(text: str, blocks: dict[str, Callable[[], str]]) -> str:
    """`text` with every generated block it holds made anew; KeyError for an unknown block."""

    def fill(match: re.Match[str]) -> str:
        return match[1] + blocks[match[2]]() + match[4]

    return _BLOCK_RE.sub(fill, text)


def main(root: Path) -> int:
    for relative, blocks in GENERATED.items():
        path = root / relative
        text = path.read_text()
        rendered = render(text, blocks)
        if rendered != text:
            path.write_text(rendered)
            print(f"rewrote {relative}")
    return 0
