"""``python -m benchmarks``: compare every algorithm and the peers on the benchmark problems.

Options: ``--quick`` (the default; under 3 minutes on 2 cores; every algorithm but the untuned
variants of the first-order family in ``suite.FULL_ONLY``, with COBYLA and COBYQA only on the
small problems, ``suite.QUICK_MAX_SIZE``) or ``--full``; ``--problems`` and
``--algorithms`` filter by name; ``--out DIR`` (default ``bench-results/``) receives results.md,
summary.md, results.json and one PNG per problem; ``--perf`` runs the performance section instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optimeta as om

from . import perf
from .peers import available_peers
from .problems import make_problems
from .suite import run_suite, write


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the quick suite (default)")
    size.add_argument("--full", action="store_true", help="every problem")
    parser.add_argument("--problems", help="comma-separated problem names")
    parser.add_argument("--algorithms", help="comma-separated algorithm or peer names (e.g. Adam,scipy:BFGS)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument("--perf", action="store_true", help="run the performance ratios instead")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.perf:
        perf.main(args.out)
        return 0
    wanted = _names(args.problems)
    problems = [p for p in make_problems() if (args.full or p.quick) and (wanted is None or p.name in wanted)]
    if wanted is not None:
        unknown = set(wanted) - {p.name for p in make_problems()}
        if unknown:
            parser.error(f"unknown problem(s): {', '.join(sorted(unknown))}")
    peers = available_peers()
    solvers = _names(args.algorithms)
    if solvers is not None:
        known = {cls.__name__ for cls in om.algorithms()} | {peer.name for peer in peers}
        if set(solvers) - known:
            parser.error(
                f"unknown algorithm(s): {', '.join(sorted(set(solvers) - known))}; known: {', '.join(sorted(known))}"
            )
    results = run_suite(problems, solvers, peers, progress=not args.no_progress, full=args.full)
    written = write(results, args.out)
    sys.stdout.write(written["table"] + "\n\nGap to the optimum (objective where unknown):\n\n")
    sys.stdout.write(written["summary"] + "\n")
    sys.stdout.write(f"\nresults.md, summary.md, results.json and {len(written['plots'])} plots in {args.out}/\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
