"""Every registered algorithm, and the peers, on every benchmark problem.

A compatible pair runs; an incompatible one is recorded as refused, with the traits named by the
`IncompatibleAlgorithmError` that `solve` raised. Every run gets its objective wrapped in one
`Counter`, the same for optimeta and for the peers, which counts calls and records the best value
seen against evaluations and time for the convergence plots.

The runs are independent: with an executor (a process pool, a Dask cluster) they run in
parallel, each one rebuilding its problem and peer by name in the worker, timed there, and the
results come back in the order of the serial run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import autograd
import numpy as np
from autograd.tracer import getval

import optimeta as om
from optimeta.backends._base import Algorithm

from .peers import Peer, available_peers
from .problems import BenchProblem, make_problems


@dataclass
class Result:
    """One row of the results: a solver on a problem."""

    problem: str
    solver: str
    source: str  # "optimeta" or "peer"
    status: str  # "ok", "refused", "not configured" or "error"
    refused_by: list[str] = field(default_factory=list)
    objective: float | None = None
    gap: float | None = None
    fevals: int | None = None
    gevals: int | None = None
    iterations: int | None = None
    time: float | None = None
    success: bool | None = None
    message: str = ""
    history: dict[str, list[float]] = field(default_factory=dict)


class Counter:
    """Counts objective calls and records the best objective seen, with evaluations and time."""

    def __init__(self, f_star: float | None) -> None:
        self.f_star = f_star
        self.calls = 0
        self.best = math.inf
        self.start = time.perf_counter()
        self.evals: list[float] = []
        self.times: list[float] = []
        self.values: list[float] = []

    def record(self, value: Any) -> None:
        self.calls += 1
        value = float(getval(value))  # autograd boxes (nested, for second derivatives) hold the value
        if value < self.best:
            self.best = value
            self.evals.append(self.calls)
            self.times.append(time.perf_counter() - self.start)
            self.values.append(value if self.f_star is None else max(value - self.f_star, 0.0))

    def wrap(self, f: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            out = f(*args)
            self.record(out[0] if isinstance(out, tuple) else out)
            return out

        return counted

    def history(self) -> dict[str, list[float]]:
        return {"evaluations": self.evals, "time": self.times, "value": self.values}


def _score(problem: BenchProblem, u: Any, objective: float) -> tuple[float, float | None]:
    """The objective to report (noise-free where known) and its gap to the optimum."""
    if problem.exact is not None:
        objective = problem.exact(u)
    gap = None if problem.f_star is None else objective - problem.f_star
    return objective, gap


def run_algorithm(problem: BenchProblem, name: str, cls: type[Algorithm]) -> Result:
    """`cls` on `problem`, configured by its `benchmark_config` (from the problem's step sizes);
    a class that gives none is recorded as "not configured"."""
    algorithm = cls.benchmark_config(problem.rates)
    if algorithm is None:
        return Result(problem.name, name, "optimeta", "not configured")
    counter = Counter(problem.f_star)
    prob = problem.problem(counter.wrap(problem.objective()))
    start = time.perf_counter()
    try:
        # The probe's two calls at u0 would shift every curve against the peers': the problems
        # here declare what they are, so it is skipped.
        sol = om.solve(prob, algorithm, maxiters=problem.maxiters, check_determinism=False, **problem.solve_options)
    except om.IncompatibleAlgorithmError as exc:
        traits = sorted({t for v in exc.violations for t in v.traits})
        return Result(problem.name, name, "optimeta", "refused", refused_by=traits, message=str(exc).splitlines()[1])
    except Exception as exc:  # noqa: BLE001 - a failed run is a row of the table, not the end of the suite
        return Result(problem.name, name, "optimeta", "error", message=f"{type(exc).__name__}: {exc}")
    objective, gap = _score(problem, sol.u, sol.objective)
    return Result(
        problem.name,
        name,
        "optimeta",
        "ok",
        objective=objective,
        gap=gap,
        fevals=sol.stats.fevals,
        gevals=sol.stats.gevals,
        iterations=sol.stats.iterations,
        time=time.perf_counter() - start,
        success=sol.success,
        message=sol.retcode.name,
        history=counter.history(),
    )


def run_peer(problem: BenchProblem, peer: Peer) -> Result:
    if not peer.applies(problem):
        return Result(problem.name, peer.name, "peer", "not applicable")
    counter = Counter(problem.f_star)
    f = problem.objective()
    value_and_grad = autograd.value_and_grad(lambda x: f(x, problem.p))
    calls = [0]

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        calls[0] += 1
        value, grad = value_and_grad(x)
        counter.record(value)
        return float(value), np.asarray(grad, dtype=np.float64)

    start = time.perf_counter()
    try:
        out = peer.run(problem, fg)
    except Exception as exc:  # noqa: BLE001 - a peer's failure is data for the table, not a crash
        return Result(problem.name, peer.name, "peer", "error", message=f"{type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - start
    objective, gap = _score(problem, out.x, float(f(out.x, problem.p)))
    return Result(
        problem.name,
        peer.name,
        "peer",
        "ok",
        objective=objective,
        gap=gap,
        fevals=calls[0],
        gevals=calls[0],
        iterations=out.iterations,
        time=elapsed,
        success=out.success,
        message=out.message,
        history=counter.history(),
    )


def _progress(items: Iterable[Any], enabled: bool, total: int | None = None) -> Iterable[Any]:
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            return items
        return tqdm(items, desc="benchmarks", unit="run", total=total)
    return items


#: Run by ``--full`` (or when named): the rest of the first-order family, untuned variants of
#: Adam and SGD whose 2000 steps a problem would add a minute to the quick suite.
FULL_ONLY = frozenset({"AdamW", "AMSGrad", "Adamax", "NAdam", "RMSProp", "Adagrad", "Adadelta", "Lion"})


#: Derivative-free model-based methods grow slow with the dimension (their 2000 iterations on
#: the 10- and 20-variable problems add half a minute): the quick suite runs them only on the
#: problems of at most this many variables; ``--full`` runs them everywhere.
QUICK_MAX_SIZE = {"COBYLA": 4, "COBYQA": 4}


def _moved(u: Any, relative: float, tiny: float) -> Any:
    if isinstance(u, dict):
        return {key: _moved(value, relative, tiny) for key, value in u.items()}
    if isinstance(u, (list, tuple)):
        return type(u)(_moved(value, relative, tiny) for value in u)
    return np.asarray(u, dtype=np.float64) * (1.0 + relative) + tiny


def perturb(problem: BenchProblem, relative: float = 1e-12, tiny: float = 1e-300) -> BenchProblem:
    """`problem` from u0 * (1 + relative) + tiny (every leaf of a pytree u0): a rounding error's
    worth of difference, to find the runs whose outcome such a difference changes."""
    u0 = _moved(problem.u0, relative, tiny)
    if "bounds" in problem.options:  # a start on a bound stays on it
        u0 = np.clip(u0, *problem.options["bounds"])
    return dataclasses.replace(problem, u0=u0)


def run_suite(
    problems: list[BenchProblem],
    algorithms: list[str] | None,
    peers: list[Peer],
    progress: bool = True,
    full: bool = True,
    executor: Executor | None = None,
    perturbed: bool = False,
) -> list[Result]:
    """Every chosen algorithm and peer on every problem: serially, or on ``executor``, where
    each run rebuilds its problem and peer by name (from `make_problems` and `available_peers`),
    so the problems must be the suite's own. With `perturbed`, every run starts from its
    problem's u0 moved by `perturb`."""
    registered = {cls.__name__: cls for cls in om.algorithms()}
    if algorithms is None:
        names = [n for n in registered if full or n not in FULL_ONLY]
    else:
        names = [n for n in registered if n in algorithms]
    chosen_peers = [p for p in peers if algorithms is None or p.name in algorithms]
    jobs: list[tuple[BenchProblem, str | Peer]] = [
        (p, n)
        for p in problems
        for n in names
        if full or algorithms is not None or np.size(p.u0) <= QUICK_MAX_SIZE.get(n, np.size(p.u0))
    ]
    jobs += [(p, peer) for p in problems for peer in chosen_peers]
    if executor is not None:
        return _run_on(executor, jobs, progress, perturbed)
    if perturbed:
        moved = {p.name: perturb(p) for p in problems}
        jobs = [(moved[p.name], solver) for p, solver in jobs]
    return [_run_job(problem, solver) for problem, solver in _progress(jobs, progress)]


def _run_job(problem: BenchProblem, solver: str | Peer) -> Result:
    # Divergent runs overflow on purpose-built hard problems; their NONFINITE rows say so.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if isinstance(solver, str):
            return run_algorithm(problem, solver, _registered()[solver])
        return run_peer(problem, solver)


def _run_on(
    executor: Executor, jobs: list[tuple[BenchProblem, str | Peer]], progress: bool, perturbed: bool = False
) -> list[Result]:
    """The jobs on `executor`, sent by name (the problems hold closures that a process pool
    cannot pickle); the results in the order of the jobs."""
    known = _problems()
    for problem, _ in jobs:
        if problem.name not in known:
            raise ValueError(f"with an executor, the problems must be the suite's own, got {problem.name!r}")
    futures = [
        executor.submit(run_named, problem.name, solver if isinstance(solver, str) else solver.name, perturbed)
        for problem, solver in jobs
    ]
    try:
        for _ in _progress(as_completed(futures), progress, total=len(futures)):
            pass
        return [future.result() for future in futures]
    finally:
        for future in futures:
            future.cancel()


def run_named(problem: str, solver: str, perturbed: bool = False) -> Result:
    """One run, named by its problem and its solver (a registered algorithm or a peer), in
    whichever process the executor runs it (from the moved u0 with `perturbed`)."""
    peers = {peer.name: peer for peer in available_peers()}
    bench = _problems()[problem]
    return _run_job(perturb(bench) if perturbed else bench, peers.get(solver, solver))


@functools.cache
def _problems() -> dict[str, BenchProblem]:
    """The suite's problems by name, built once per process."""
    return {problem.name: problem for problem in make_problems()}


@functools.cache
def _registered() -> dict[str, type]:
    return {cls.__name__: cls for cls in om.algorithms()}


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "" if value is None else format(value, spec)


def markdown(results: list[Result]) -> str:
    """One table: a row per solver and problem, refused pairs with the traits that refuse them."""
    lines = [
        "| problem | solver | status | objective | gap | f evals | g evals | iterations | time (s) | success |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.status == "not applicable":
            continue
        status = r.status if r.status != "refused" else "refused: " + ", ".join(r.refused_by)
        if r.status == "ok":
            status = r.message
        lines.append(
            f"| {r.problem} | {r.solver} | {status} | {_fmt(r.objective, '.6g')} | {_fmt(r.gap)} | "
            f"{_fmt(r.fevals, 'd')} | {_fmt(r.gevals, 'd')} | {_fmt(r.iterations, 'd')} | {_fmt(r.time, '.3f')} | "
            f"{'' if r.success is None else ('yes' if r.success else 'no')} |"
        )
    return "\n".join(lines)


def summary(results: list[Result]) -> str:
    """A solver-by-problem table of the gap to the optimum reached (final objective where the
    optimum is unknown); refused pairs show the refusing traits, empty cells pairs not run."""
    problems = list(dict.fromkeys(r.problem for r in results))
    cells: dict[tuple[str, str], str] = {}
    for r in results:
        if r.status == "ok":
            value = r.gap if r.gap is not None else r.objective
            cells[r.problem, r.solver] = _fmt(value, ".1e") + ("" if r.message != "NONFINITE" else " (NaN/Inf)")
        elif r.status == "refused":
            cells[r.problem, r.solver] = "refused: " + ", ".join(r.refused_by)
    lines = ["| solver | " + " | ".join(problems) + " |", "|---" * (len(problems) + 1) + "|"]
    for solver in dict.fromkeys(r.solver for r in results):
        lines.append(f"| {solver} | " + " | ".join(cells.get((p, solver), "") for p in problems) + " |")
    return "\n".join(lines)


def plot(results: list[Result], out: Path) -> list[Path]:
    """One PNG per problem: best gap (or objective) against evaluations and against time, drawn
    by `om.plot` (peers' runs as `om.History` objects, dashed)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return []
    paths = []
    for problem in dict.fromkeys(r.problem for r in results):
        runs = [r for r in results if r.problem == problem and r.status == "ok" and r.history.get("value")]
        if not runs:
            continue
        curves = {}
        for r in runs:
            values = np.maximum(np.asarray(r.history["value"], dtype=np.float64), 1e-16)
            curves[r.solver] = om.History(
                iteration=np.arange(1, values.size + 1),
                objective=values,
                fevals=np.asarray(r.history["evaluations"], dtype=np.int64),
                time=np.asarray(r.history["time"], dtype=np.float64),
            )
        fig = Figure(figsize=(11, 4), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, x in zip(axes, ("evaluations", "time")):
            om.plot(curves, x=x, ax=ax, log=True)
            for line, r in zip(ax.get_lines(), runs):
                line.set_drawstyle("steps-post")
                line.set_linestyle("-" if r.source == "optimeta" else "--")
            ax.set_xscale("log")
            ax.set_ylabel("best objective" if runs[0].gap is None else "best objective - optimum")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].get_legend().remove()
        axes[1].legend(fontsize=8)
        fig.suptitle(problem)
        path = out / f"{problem}.png"
        fig.savefig(path, dpi=90)
        paths.append(path)
    return paths


def write(results: list[Result], out: Path) -> dict[str, Any]:
    """Write results.md, summary.md, results.json and the plots into `out`; return what was written."""
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    (out / "results.md").write_text(table + "\n")
    (out / "summary.md").write_text(summary(results) + "\n")
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    return {"table": table, "summary": summary(results), "plots": plot(results, out)}
