"""`python -m tests.mutants [NAME ...]`: run the mutation check and print its table.

Exit 0 when every mutant chosen is killed, 1 when any survived or could not be tried, 2 for a
name that matches no mutant. `--check` only verifies that every edit still applies (no tests run).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

from tests.mutants import runner
from tests.mutants.catalog import Mutant, by_name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="mutants to run (NAME or NAME-*); all if none"
    )
    parser.add_argument(
        "--source", type=Path, default=runner.REPO,
        help="the tree to copy and mutate (default: this checkout, with its uncommitted files); "
        "e.g. a `git archive HEAD` export when the working tree is mid-change",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests, run nothing")
    parser.add_argument(
        "--check", action="store_true", help="only check that every edit applies exactly once"
    )
    parser.add_argument(
        "--each", action="store_true", help="run each named test alone: does every one kill its mutant?"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests unmutated")
    parser.add_argument("--timeout", type=float, default=runner.RUN_TIMEOUT_S, help="seconds per mutant")
    return parser


def _check(mutants: tuple[Mutant, ...], source: Path) -> int:
    failed = 0
    with tempfile.TemporaryDirectory(prefix="drawstate-mutant-check-") as scratch:
        root = Path(scratch)
        runner.copy_tree(source, root)
        for mutant in mutants:
            original = (root / mutant.file).read_text() if (root / mutant.file).is_file() else ""
            try:
                runner.apply(mutant, root)
            except runner.MutantError as exc:
                failed += 1
                print(f"{mutant.name}: {exc}")
                continue
            (root / mutant.file).write_text(original)
            print(f"{mutant.name}: applies")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        mutants = by_name(args.names)
    except KeyError as exc:
        print(
            f"no mutant named {exc.args[0]!r}; `python -m tests.mutants --list` lists them", file=sys.stderr
        )
        return 2
    source = args.source.resolve()
    if args.list:
        for mutant in mutants:
            print(f"{mutant.name}  ({mutant.file}): breaks {mutant.breaks}")
            for test in mutant.tests:
                print(f"    {test}")
        return 0
    if args.check:
        return _check(mutants, source)
    started = datetime.datetime.now(datetime.UTC)
    print(f"mutation check of {runner.describe(source)}, {started:%Y-%m-%d %H:%M} UTC\n", flush=True)
    outcomes = runner.run_catalog(
        mutants,
        source,
        baseline=not args.no_baseline,
        timeout_s=args.timeout,
        each=args.each,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(runner.table(outcomes, each=args.each))
    bad = [outcome for outcome in outcomes if outcome.status != "killed"]
    for outcome in bad:
        print(f"\n{outcome.mutant.name} {outcome.status.upper()}: {outcome.detail}", file=sys.stderr)
    killed = len(outcomes) - len(bad)
    what = "runs of one mutant against one test" if args.each else "mutants"
    print(f"\n{killed} of {len(outcomes)} {what} killed", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
