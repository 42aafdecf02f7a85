"""docs/limits.md read as data: one Row per documented limit, for the tests that hold it to the code."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chaos.probes import KNOWN_CODES

DOC = Path(__file__).resolve().parents[2] / "docs" / "limits.md"


@dataclass(frozen=True)
class Row:
    name: str
    constant: str | None
    module: str | None
    default: str
    field: str | None
    option: str | None
    outcome: frozenset[str]  # wire codes, plus "paused" / "closed"

    @property
    def value(self) -> Any:
        assert self.constant and self.module
        return getattr(importlib.import_module(self.module), self.constant)


def _outcome(cell: str) -> frozenset[str]:
    tokens = set(re.findall(r"`([a-z_]+)`", cell)) & KNOWN_CODES
    tokens |= {word for word in ("paused", "closed") if word in cell}
    return frozenset(tokens)


def _rows() -> list[Row]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) != 5 or cells[0] in ("limit", "---|---|---|---|---") or set(cells[0]) == {"-"}:
            continue
        constant = re.match(r"`([A-Z0-9_]+)` \(`([a-z_.]+)`\)", cells[1])
        field = re.match(r"`([a-z_.]+)`", cells[3])
        option = re.search(r"`(--[a-z-]+)`", cells[3])
        rows.append(
            Row(
                name=cells[0],
                constant=constant[1] if constant else None,
                module=constant[2] if constant else None,
                default=cells[2],
                field=field[1] if field else None,
                option=option[1] if option else None,
                outcome=_outcome(cells[4]),
            )
        )
    return rows


ROWS = _rows()
ROWS_BY_NAME = {row.name: row for row in ROWS}
