"""The mutation check: break one invariant at a time in a copy of the tree and run the tests that name it.

`catalog.py` lists the mutants (an exact textual edit each, named for the invariant it breaks, with
the tests that must notice); `runner.py` copies the tree, applies one mutant, runs those tests
there and says whether they killed it; `python -m tests.mutants` prints the table. docs/testing.md
says how to run it and how to add a mutant for a new invariant.
"""
