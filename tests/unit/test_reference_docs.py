"""The docs' generated reference tables match the code they come from (drawstated.reference)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drawstated.reference import GENERATED, render

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("relative", sorted(GENERATED))
def test_generated_tables_in_the_docs_match_the_code(relative: str) -> None:
    text = (ROOT / relative).read_text()
    for name in GENERATED[relative]:
        assert f"<!-- generated: {name} -->" in text, f"{relative} lost its {name} table"
    assert render(text, GENERATED[relative]) == text, (
        f"{relative} differs from the code: run `python -m drawstated.reference` and commit the result"
    )
