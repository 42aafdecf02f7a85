"""The mutation check under pytest: every mutant of the catalog is killed by the tests that name it.

The whole catalog runs only under `-m slow` (it takes minutes). Two quick checks run by default,
so the catalog cannot rot unseen: every edit still applies exactly once to this tree, and every
test a mutant names still exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.mutants import runner
from tests.mutants.catalog import MUTANTS, Mutant

#: The whole catalog, with its baseline: a few minutes on a quiet machine, far more on a busy one.
CATALOG_TIMEOUT_S = 3600


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mutant: mutant.name)
def test_every_edit_of_the_mutant_applies_exactly_once_to_this_tree(mutant: Mutant, tmp_path: Path) -> None:
    target = tmp_path / mutant.file
    target.parent.mkdir(parents=True)
    target.write_text((runner.REPO / mutant.file).read_text())
    runner.apply(mutant, tmp_path)
    assert target.read_text() != (runner.REPO / mutant.file).read_text()


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mutant: mutant.name)
def test_every_test_the_mutant_names_exists(mutant: Mutant) -> None:
    for spec in mutant.tests:
        path, _, name = spec.partition("::")
        assert (runner.REPO / path).is_file(), spec
        if name:
            source = (runner.REPO / path).read_text()
            assert re.search(rf"^(async )?def {re.escape(name)}\(", source, re.MULTILINE), spec


def test_mutant_names_are_unique():
    names = [mutant.name for mutant in MUTANTS]
    assert len(names) == len(set(names))


@pytest.mark.slow
@pytest.mark.timeout(CATALOG_TIMEOUT_S)
def test_every_mutant_of_the_catalog_is_killed_by_the_tests_that_name_its_invariant():
    outcomes = runner.run_catalog(MUTANTS, runner.REPO)
    not_killed = [f"{o.mutant.name}: {o.status} {o.detail[-600:]}" for o in outcomes if o.status != "killed"]
    assert not not_killed, runner.table(outcomes) + "\n\n" + "\n\n".join(not_killed)
