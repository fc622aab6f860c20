"""``python -m benchmarks``: compare every algorithm and the peers on the benchmark problems.

Options: ``--quick`` (the default; every algorithm but the untuned variants of the first-order
family in ``suite.FULL_ONLY``, with COBYLA and COBYQA only on the small problems,
``suite.QUICK_MAX_SIZE``) or ``--full``; ``--problems`` and ``--algorithms`` filter by name;
``--out DIR`` (default ``bench-results/``) is the run's folder: what an earlier run wrote there is
deleted first, then it receives results.md, summary.md, results.json, one PNG per problem and
manifest.json (command, versions, machine, date). ``--perf`` runs the performance measurements
instead (into ``bench-results/perf/`` by default: perf.md, perf.json, manifest.json) and exits
with 1, naming them, when a ratio misses its target. ``--update-readme`` runs the quick suite
twice (the second time from a u0 moved by a rounding error) and writes the gap table into
README.md between its markers, cells sensitive to rounding marked (with ``--perf``: the
performance table), and rewrites the README's trait table too; ``--check-readme`` runs the
quick suite (or reads ``--results DIR``) and exits with 1, naming them, where its cells disagree
with the README's (`benchmarks.readme`). ``--traits`` runs no benchmark: it prints the trait
table generated from the registry (`benchmarks.trait_table`), with ``--update-readme`` writes it
into the README, with ``--check-readme`` exits with 1 where the README's differs.
``--executor processes`` runs the independent runs on a process pool with one worker per core,
``--executor dask`` on a Dask cluster: a ``LocalCluster`` started for the run, or the one whose
scheduler ``--scheduler ADDRESS`` names (its workers must be able to import ``benchmarks`` and
``optimeta``, e.g. started from the repository's root). Each run is timed in its worker; the
tables are those of the serial run (the default). Without the extra ``bench``, the peers and
plots that need it are skipped, with a notice on stderr saying which and how to install them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optimeta as om

from . import perf, readme, runinfo, trait_table
from .peers import OPTIONAL_PEERS, available_peers, missing_peers
from .problems import BenchProblem, make_problems
from .suite import FULL_ONLY, QUICK_MAX_SIZE, Result, run_suite, write

DEFAULT_OUT = Path("bench-results")


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def _epilog(problems: list[BenchProblem]) -> str:
    """The problems, algorithms and peers, for ``--help``."""
    quick = [p.name for p in problems if p.quick]
    full = [p.name for p in problems if not p.quick]
    algorithms = [cls.__name__ for cls in om.algorithms()]
    small = ", ".join(f"{name} (quick: at most {size} variables)" for name, size in QUICK_MAX_SIZE.items())
    optional = [f"{name} (needs {', '.join(modules)})" for modules, names in OPTIONAL_PEERS.items() for name in names]
    lines = [
        "problems (--problems):",
        "  " + ", ".join(quick),
        "  with --full or when named: " + ", ".join(full),
        "algorithms (--algorithms):",
        "  " + ", ".join(n for n in algorithms if n not in FULL_ONLY),
        "  with --full or when named: " + ", ".join(n for n in algorithms if n in FULL_ONLY),
        "  " + small,
        "peers (--algorithms):",
        "  "
        + ", ".join(p.name for p in available_peers() if p.name not in {n for v in OPTIONAL_PEERS.values() for n in v}),
        "  " + ", ".join(optional) + f": {runinfo.INSTALL}",
        "examples:",
        "  python -m benchmarks                                 the quick suite into bench-results/",
        "  python -m benchmarks --problems beale --algorithms BFGS,scipy:BFGS --out /tmp/beale",
        "  python -m benchmarks --perf                          performance ratios; exit 1 if a target is missed",
        "  python -m benchmarks --update-readme                 rewrite README.md's benchmark and trait tables",
        "  python -m benchmarks --check-readme                  exit 1 where a fresh run disagrees with it",
        "  python -m benchmarks --traits --update-readme        rewrite README.md's trait table only (no run)",
    ]
    return "\n".join(lines)


def _parser(problems: list[BenchProblem]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(__doc__ or "").splitlines()[0],
        epilog=_epilog(problems),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the quick suite (default)")
    size.add_argument("--full", action="store_true", help="every problem and algorithm")
    parser.add_argument("--problems", help="comma-separated problem names (listed below)")
    parser.add_argument("--algorithms", help="comma-separated algorithm or peer names (e.g. Adam,scipy:BFGS)")
    parser.add_argument(
        "--out",
        type=Path,
        help="the run's output folder, cleared of an earlier run's files first "
        f"(default {DEFAULT_OUT}/, with --perf {DEFAULT_OUT}/perf/)",
    )
    parser.add_argument(
        "--perf", action="store_true", help="run the performance ratios instead; exit 1 if a target is missed"
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="run the quick suite twice (u0 moved by a rounding error the second time) and write its table into "
        "README.md, cells sensitive to rounding marked ~, and the trait table (with --perf: the performance table; "
        "with --traits: the trait table only)",
    )
    parser.add_argument(
        "--check-readme",
        action="store_true",
        help="run the quick suite and exit 1, naming them, where its cells disagree with README.md's table "
        "(with --traits: where README.md's trait table differs from the registry's)",
    )
    parser.add_argument(
        "--traits",
        action="store_true",
        help="no benchmark run: print the trait table generated from the registered algorithms "
        "(with --update-readme: write it into README.md; with --check-readme: exit 1 where README.md's differs)",
    )
    parser.add_argument(
        "--results", type=Path, metavar="DIR", help="with --check-readme: check the quick run already in DIR"
    )
    parser.add_argument("--readme", type=Path, default=readme.README, help="the README to update or check")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    all_problems = make_problems()
    parser = _parser(all_problems)
    args = parser.parse_args(argv)
    if args.scheduler is not None and args.executor != "dask":
        parser.error("--scheduler names a Dask scheduler: use it with --executor dask")
    if args.perf and args.executor != "serial":
        parser.error("--perf measures in this process: --executor applies to the suite only")
    if args.update_readme and args.check_readme:
        parser.error("--update-readme and --check-readme: one at a time")
    if args.traits:
        given = [
            option
            for option, used in (
                ("--quick", args.quick),
                ("--full", args.full),
                ("--problems", args.problems),
                ("--algorithms", args.algorithms),
                ("--out", args.out),
                ("--perf", args.perf),
                ("--results", args.results),
                ("--executor", args.executor != "serial"),
                ("--scheduler", args.scheduler),
            )
            if used
        ]
        if given:
            parser.error(f"--traits runs no benchmark: no {', '.join(given)}")
        return _traits(args)
    if args.results is not None and not args.check_readme:
        parser.error("--results DIR names the results to check: use it with --check-readme")
    if (args.update_readme or args.check_readme) and not args.perf and (args.full or args.problems or args.algorithms):
        parser.error("the README's table is the whole quick suite: no --full, --problems or --algorithms")
    if args.update_readme and not args.perf and missing_peers():
        missing = ", ".join(name for names in missing_peers().values() for name in names)
        parser.error(f"the README's table has every peer, and {missing} cannot run here: {runinfo.INSTALL}")
    if args.check_readme and args.perf:
        parser.error("--check-readme checks the suite's table; the performance table is machine-dependent")
    if args.update_readme and not args.perf:
        # Checked before the run, which takes minutes, rather than when its tables are written.
        text = args.readme.read_text() if args.readme.is_file() else ""
        for start, end in ((readme.START, readme.END), (trait_table.START, trait_table.END)):
            if start not in text or end not in text:
                parser.error(f"{args.readme} has no {start} ... {end} markers to write a table between")
    started, clock = runinfo.now(), time.perf_counter()
    if args.perf:
        return _perf(args, argv, started, clock)
    if args.check_readme and args.results is not None:
        return _check(args, _load(args.results), args.results)

    wanted = _names(args.problems)
    if wanted is not None:
        unknown = set(wanted) - {p.name for p in all_problems}
        if unknown:
            parser.error(f"unknown problem(s): {', '.join(sorted(unknown))}; see --help")
    problems = [p for p in all_problems if (args.full or p.quick) and (wanted is None or p.name in wanted)]
    peers = available_peers()
    solvers = _names(args.algorithms)
    if solvers is not None:
        known = {cls.__name__ for cls in om.algorithms()} | {peer.name for peer in peers}
        if set(solvers) - known:
            missing = {name for names in missing_peers().values() for name in names} & set(solvers)
            hint = f" ({', '.join(sorted(missing))}: {runinfo.INSTALL})" if missing else ""
            parser.error(
                f"unknown algorithm(s): {', '.join(sorted(set(solvers) - known))}{hint}; known: {', '.join(sorted(known))}"
            )
    skipped = runinfo.skipped(progress=not args.no_progress)
    runinfo.stderr(runinfo.notice(skipped))
    out = args.out or DEFAULT_OUT
    runinfo.clear(out)
    with _executor(args.executor, args.scheduler) as executor:
        results = run_suite(problems, solvers, peers, progress=not args.no_progress, full=args.full, executor=executor)
        perturbed = None
        if args.update_readme:
            sys.stderr.write("the same runs again, from u0 moved by a rounding error (to mark sensitive cells)\n")
            perturbed = run_suite(
                problems, solvers, peers, progress=not args.no_progress, full=False, executor=executor, perturbed=True
            )
    written = write(results, out)
    files = ["results.md", "summary.md", "results.json", *(path.name for path in written["plots"])]
    sys.stdout.write(written["table"] + "\n\nGap to the optimum (objective where unknown):\n\n")
    sys.stdout.write(written["summary"] + "\n")
    extra: dict[str, Any] = {
        "kind": "update-readme" if args.update_readme else "check-readme" if args.check_readme else "suite",
        "quick_suite": not (args.full or wanted or solvers),
        "problems": [p.name for p in problems],
        "algorithms": solvers,
        "executor": args.executor,
        "skipped": skipped,
    }
    status = 0
    if perturbed is not None:
        (out / "perturbed.json").write_text(json.dumps([asdict(r) for r in perturbed], indent=1))
        f_stars = {p.name: p.f_star for p in all_problems}
        table = readme.table(results, perturbed, f_stars)
        block = _readme_block(table, started, time.perf_counter() - clock)
        (out / "readme-table.md").write_text(block + "\n")
        args.readme.write_text(trait_table.update(readme.replace_block(args.readme.read_text(), block)))
        files += ["perturbed.json", "readme-table.md"]
        extra["sensitive"] = sorted(f"{s} on {p}" for s, p in table.sensitive)
        sys.stdout.write(
            f"\nwrote the table into {args.readme} ({len(table.sensitive)} cells sensitive to rounding), "
            "and the trait table\n"
        )
    runinfo.write_manifest(out, argv, started, time.perf_counter() - clock, files, **extra)
    sys.stdout.write(f"\n{', '.join(files[:3])}, {len(written['plots'])} plots and manifest.json in {out}/\n")
    if args.check_readme:
        status = _check(args, results, out)
    return status


def _readme_block(table: readme.Table, started: Any, wall: float) -> str:
    machine, versions = runinfo.machine(), runinfo.versions()
    stack = ", ".join(f"{k} {versions[k]}" for k in ("numpy", "scipy", "torch", "jax", "optax") if k in versions)
    return (
        f"Written by `python -m benchmarks --update-readme` on {started:%Y-%m-%d} ({machine['cpu']}, "
        f"{machine['cores']} cores, BLAS {machine['blas']}; {stack}; the two runs took {wall:.0f} s), "
        "checked by `python -m benchmarks --check-readme`.\n\n"
        + table.markdown()
        + f"\n\n`{readme.SENSITIVE}`: sensitive to rounding ({len(table.sensitive)} cells): the cell's class moved when "
        "u0 moved by a rounding error, so another machine may show another class there; the check skips its "
        "class (not a refusal)."
    )


def _traits(args: argparse.Namespace) -> int:
    """``--traits``: the trait table generated from the registry, printed, written into the
    README (``--update-readme``) or checked against it (``--check-readme``)."""
    if not (args.update_readme or args.check_readme):
        sys.stdout.write(trait_table.markdown() + "\n")
        return 0
    try:
        text = args.readme.read_text()
        if args.update_readme:
            args.readme.write_text(trait_table.update(text))
            sys.stdout.write(f"wrote the trait table of {len(om.algorithms())} algorithms into {args.readme}\n")
            return 0
        diff = trait_table.differences(text)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{args.readme}: {exc}") from None
    if diff:
        sys.stderr.write(
            f"{args.readme}'s trait table differs from the registry's (update it with `{trait_table.COMMAND}`):\n"
        )
        sys.stderr.write("".join(f"  {line}\n" for line in diff))
        return 1
    sys.stdout.write(f"{args.readme}'s trait table agrees with the registry\n")
    return 0


def _load(folder: Path) -> list[Result]:
    manifest_path = folder / runinfo.MANIFEST
    if not manifest_path.is_file():
        raise SystemExit(f"{folder} holds no {runinfo.MANIFEST}: not a benchmark run's folder")
    manifest = json.loads(manifest_path.read_text())
    if not manifest.get("quick_suite"):
        raise SystemExit(
            f"{folder} holds the results of `{manifest.get('command')}`, not of the whole quick suite: "
            "run `python -m benchmarks` (no --full, --problems or --algorithms) to check the README"
        )
    return [Result(**row) for row in json.loads((folder / "results.json").read_text())]


def _check(args: argparse.Namespace, results: list[Result], folder: Path) -> int:
    """Compare `results` with the README's table; 1, naming each, where cells disagree."""
    f_stars = {p.name: p.f_star for p in make_problems()}
    skipped = [name for names in missing_peers().values() for name in names]
    mismatches = readme.compare(readme.parse(args.readme.read_text()), readme.table(results), f_stars, skipped)
    if skipped:
        runinfo.stderr(f"note: not checked, not installed here: {', '.join(skipped)} ({runinfo.INSTALL})")
    if mismatches:
        sys.stderr.write(
            f"{len(mismatches)} cell(s) of {args.readme} disagree with the run in {folder}/ "
            "(update it with `python -m benchmarks --update-readme`):\n"
        )
        sys.stderr.write("".join(f"  {m}\n" for m in mismatches))
        return 1
    sys.stdout.write(f"{args.readme}'s benchmark table agrees with the run in {folder}/\n")
    return 0


def _perf(args: argparse.Namespace, argv: list[str], started: Any, clock: float) -> int:
    skipped = runinfo.skipped(perf=True)
    runinfo.stderr(runinfo.notice(skipped))
    out = args.out or DEFAULT_OUT / "perf"
    runinfo.clear(out)
    rows = perf.main(out)
    wall = time.perf_counter() - clock
    missed = perf.missed(rows)
    files = ["perf.md", "perf.json"]
    if args.update_readme:
        machine = runinfo.machine()
        block = (
            f"Measured by `python -m benchmarks --perf --update-readme` on {started:%Y-%m-%d} ({machine['cpu']}, "
            f"{machine['cores']} cores, shared; {wall:.0f} s):\n\n" + perf.markdown(rows)
        )
        args.readme.write_text(readme.replace_block(args.readme.read_text(), block, readme.PERF_START, readme.PERF_END))
    runinfo.write_manifest(out, argv, started, wall, files, kind="perf", skipped=skipped, missed=missed)
    sys.stdout.write(f"\nperf.md, perf.json and manifest.json in {out}/\n")
    if missed:
        sys.stderr.write(f"{len(missed)} performance target(s) missed:\n" + "".join(f"  {m}\n" for m in missed))
        return 1
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
