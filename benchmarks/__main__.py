"""``python -m benchmarks``: compare every algorithm and the peers on the benchmark problems.

Options: ``--quick`` (the default; under 3 minutes on 2 cores; every algorithm but the untuned
variants of the first-order family in ``suite.FULL_ONLY``, with COBYLA and COBYQA only on the
small problems, ``suite.QUICK_MAX_SIZE``) or ``--full``; ``--problems`` and
``--algorithms`` filter by name; ``--out DIR`` (default ``bench-results/``) receives results.md,
summary.md, results.json and one PNG per problem; ``--perf`` runs the performance section instead.
``--executor processes`` runs the independent runs on a process pool with one worker per core,
``--executor dask`` on a Dask cluster: a ``LocalCluster`` started for the run, or the one whose
scheduler ``--scheduler ADDRESS`` names (its workers must be able to import ``benchmarks`` and
``optimeta``, e.g. started from the repository's root). Each run is timed in its worker; the
tables are those of the serial run (the default).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

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
    parser.add_argument(
        "--executor",
        choices=("serial", "processes", "dask"),
        default="serial",
        help="where the runs go: here one after another (default), a process pool, or a Dask cluster",
    )
    parser.add_argument(
        "--scheduler", metavar="ADDRESS", help="with --executor dask: an existing cluster's scheduler address"
    )
    args = parser.parse_args(argv)
    if args.scheduler is not None and args.executor != "dask":
        parser.error("--scheduler names a Dask scheduler: use it with --executor dask")
    if args.perf and args.executor != "serial":
        parser.error("--perf measures in this process: --executor applies to the suite only")

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
    with _executor(args.executor, args.scheduler) as executor:
        results = run_suite(problems, solvers, peers, progress=not args.no_progress, full=args.full, executor=executor)
    written = write(results, args.out)
    sys.stdout.write(written["table"] + "\n\nGap to the optimum (objective where unknown):\n\n")
    sys.stdout.write(written["summary"] + "\n")
    sys.stdout.write(f"\nresults.md, summary.md, results.json and {len(written['plots'])} plots in {args.out}/\n")
    return 0


@contextmanager
def _executor(kind: str, scheduler: str | None) -> Iterator[Executor | None]:
    """The executor that ``--executor``/``--scheduler`` ask for, closed (with what it started) after
    the run."""
    if kind == "serial":
        yield None
        return
    cores = os.cpu_count() or 1
    if kind == "processes":
        # spawn: the peers' jax and torch run threads, which a forked worker would inherit broken.
        with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool
        return
    try:
        import dask
        import distributed
    except ImportError:
        raise SystemExit("--executor dask needs dask.distributed: pip install 'optimeta[dask]'") from None
    with ExitStack() as stack:
        address: Any = scheduler
        if scheduler is None:
            # Dask starts workers with OMP/MKL/OPENBLAS_NUM_THREADS=1, and OpenBLAS on one thread
            # rounds differently from OpenBLAS on several: the workers keep this process's setting,
            # so that their results are bitwise the serial run's.
            environ = dask.config.get("distributed.nanny.pre-spawn-environ")
            same_blas = {key: value for key, value in environ.items() if not key.endswith("_NUM_THREADS")}
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ": same_blas}))
            address = stack.enter_context(
                distributed.LocalCluster(n_workers=cores, threads_per_worker=1, dashboard_address=None)
            )
        client = stack.enter_context(distributed.Client(address))
        # pure=False: every run is its own measurement, never a result reused from an equal call.
        yield client.get_executor(pure=False)


if __name__ == "__main__":
    raise SystemExit(main())
