"""`solve_many` and `multistart`: the same solutions, bitwise, serially, on a process pool and on a
real Dask cluster; input order kept; every check before any solve; a failing task's exception;
starting points drawn reproducibly in the box and the best run chosen.

The objectives are defined at the top level of this module so that a process pool can pickle
them; the workers import this module to run them.
"""

from __future__ import annotations

import copyreg
import math
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest

import optimeta as om
from optimeta.backends._base import Algorithm

# --- objectives (top level: picklable) ----------------------------------------------------------


def rosen(u: Any, p: Any) -> Any:
    return anp.sum(100.0 * (u[1:] - u[:-1] ** 2) ** 2 + (1.0 - u[:-1]) ** 2)


def rastrigin(u: Any, p: Any) -> Any:
    return 10.0 * u.size + anp.sum(u**2 - 10.0 * anp.cos(2 * np.pi * u))


def dropout(u: Any, p: Any, state: Any) -> Any:
    """Noise from an explicit key, and running statistics of u in the state."""
    mask = np.random.default_rng(state["key"]).random(u.shape) > 0.2
    loss = anp.sum((u * mask - p) ** 2)
    return loss, {"key": state["key"] + 1, "mean": 0.9 * state["mean"] + 0.1 * u}


def tree_loss(u: Any, p: Any) -> Any:
    return anp.sum((u["w"] - 2.0) ** 2) + (u["b"] + 1.0) ** 2


def slow_quadratic(u: Any, p: Any) -> Any:
    """A quadratic around ``p[0]`` that takes ``p[1]`` seconds a call."""
    time.sleep(p[1])
    return anp.sum((u - p[0]) ** 2)


def wells(u: Any, p: Any) -> Any:
    """Two wells per coordinate, the one at -1 deeper than the one at +1."""
    return anp.sum((u**2 - 1.0) ** 2 + 0.3 * u)


def peaks(u: Any, p: Any) -> Any:
    return -wells(u, p)


def remember_start(u: Any, p: Any, state: Any) -> Any:
    """Keeps the point of its first call (the run's start) in the state."""
    start = u if state["start"] is None else state["start"]
    return anp.sum((u - p) ** 2), {"start": start}


def cliff(u: Any, p: Any) -> Any:
    """A well at -1 (value 0) left of 0, and right of it a slope down to a NaN region past 1."""
    return anp.sum(anp.where(u >= 1.0, np.nan, anp.where(u < 0.0, (u + 1.0) ** 2, -u)))


_HIDDEN = np.random.default_rng(0)


def hidden_noise(u: Any, p: Any) -> Any:
    """Noise from a global generator, which the determinism probe finds."""
    return anp.sum(u**2) * _HIDDEN.uniform(0.9, 1.1)


def drifting(u: Any, p: Any, state: Any) -> Any:
    """Changes a state declared constant."""
    return anp.sum(u**2), {"mean": state["mean"] + 1.0}


class TaskFailed(Exception):
    """The user's own error."""


def failing(u: Any, p: Any, state: Any) -> Any:
    """Raises at call ``p[0]`` (after sleeping ``p[1]`` seconds a call)."""
    time.sleep(p[1])
    if state["calls"] + 1 == p[0]:
        raise TaskFailed(f"call {p[0]} failed on purpose")
    return anp.sum(u**2), {"calls": state["calls"] + 1}


# --- executors: one process pool and one Dask cluster for the module -----------------------------


@pytest.fixture(scope="module")
def processes() -> Iterator[Executor]:
    # spawn: no fork of a process that runs threads (the Dask client's), on every platform.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A real Dask cluster of two worker processes, whose BLAS runs as in this process.

    Dask starts its workers with ``OMP_NUM_THREADS=1`` (and MKL's and OpenBLAS's), and OpenBLAS
    on one thread rounds differently from OpenBLAS on several (SLSQP's last bits change): the
    workers here inherit this process's setting instead, as a process pool's do.
    """
    # Importing distributed registers tblib's reducers (copyreg) for every exception class there
    # is, with which copy.copy(exception) shares the original's attributes: the table is restored
    # after this module, for the tests of other modules that copy exceptions.
    reducers = dict(copyreg.dispatch_table)
    distributed = pytest.importorskip("distributed")
    import dask

    environ = dask.config.get("distributed.nanny.pre-spawn-environ")
    same_blas = {key: value for key, value in environ.items() if not key.endswith("_NUM_THREADS")}
    try:
        with (
            dask.config.set({"distributed.nanny.pre-spawn-environ": same_blas}),
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as local,
        ):
            yield local
    finally:
        copyreg.dispatch_table.clear()
        copyreg.dispatch_table.update(reducers)


@pytest.fixture(scope="module")
def dask(cluster: Any) -> Iterator[Executor]:
    import distributed

    with distributed.Client(cluster) as client:
        yield client.get_executor()


@pytest.fixture(scope="module")
def threads() -> Iterator[Executor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture(params=["threads", "processes", "dask"])
def executor(request: pytest.FixtureRequest) -> Executor:
    pool: Executor = request.getfixturevalue(request.param)
    return pool


# --- comparing solutions bitwise ------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal, bitwise for floats and arrays, through dicts, lists and tuples."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float) or isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def assert_identical(a: om.Solution, b: om.Solution) -> None:
    assert same(a.u, b.u)
    assert same(a.objective, b.objective)
    assert same(a.state, b.state)
    assert a.retcode is b.retcode and a.message == b.message and a.algorithm == b.algorithm
    for name in ("iterations", "fevals", "gevals", "probe_fevals", "hevals", "skipped"):
        assert getattr(a.stats, name) == getattr(b.stats, name), name
    if isinstance(a.original, tuple):  # a Chain's stages, a multistart's runs
        assert len(a.original) == len(b.original)
        for x, y in zip(a.original, b.original):
            assert_identical(x, y)


def cases() -> list[tuple[om.OptimizationProblem, Algorithm]]:
    box = (np.full(2, -5.12), np.full(2, 5.12))
    return [
        (om.OptimizationProblem(rosen, np.array([-1.2, 1.0, -1.2])), om.BFGS()),
        (om.OptimizationProblem(rosen, np.array([-1.2, 1.0])), om.NelderMead()),
        (om.OptimizationProblem(rosen, np.array([0.5, 0.5]), bounds=(np.zeros(2), np.full(2, 0.8))), om.LBFGS()),
        (
            om.OptimizationProblem(dropout, np.zeros(3), p=np.ones(3), state={"key": 7, "mean": np.zeros(3)}),
            om.Adam(lr=0.05),
        ),
        (om.OptimizationProblem(rastrigin, np.full(2, 2.9), bounds=box), om.DifferentialEvolution(seed=0)),
        (om.OptimizationProblem(rastrigin, np.full(2, 2.9), bounds=box), om.DifferentialEvolution(seed=1)),
        (om.OptimizationProblem(tree_loss, {"w": np.zeros(2), "b": 0.0}), om.Chain((om.Adam(lr=0.1), 20), om.BFGS())),
        (om.OptimizationProblem(rosen, np.array([-1.2, 1.0, -1.2, 1.0])), om.SLSQP()),
    ]


# --- identical results ----------------------------------------------------------------------------


def test_executors_give_bitwise_the_serial_solutions(executor: Executor) -> None:
    tasks = cases()
    serial = om.solve_many(tasks, maxiters=60)
    assert serial[0].success and serial[1].retcode is om.ReturnCode.MAXITERS and serial[2].success
    assert serial[3].state["key"] == 7 + 60 and serial[4].u.tobytes() != serial[5].u.tobytes()
    for sol, (prob, alg) in zip(serial, tasks):  # each one is the solve of its task
        assert_identical(sol, om.solve(prob, alg, maxiters=60))
    parallel = om.solve_many(tasks, maxiters=60, executor=executor)
    assert len(parallel) == len(serial)
    for a, b in zip(serial, parallel):
        assert_identical(a, b)


def test_input_order_is_kept_whatever_finishes_first(executor: Executor) -> None:
    # The first task is the slowest: the others finish before it.
    delays = [0.1, 0.0, 0.02, 0.0]
    tasks = [om.OptimizationProblem(slow_quadratic, np.zeros(2), p=(float(i), d)) for i, d in enumerate(delays)]
    sols = om.solve_many(tasks, om.BFGS(), executor=executor)
    assert [round(float(s.u[0]), 6) for s in sols] == [0.0, 1.0, 2.0, 3.0]
    u0s = [np.full(2, float(k)) for k in range(5)]
    prob = om.OptimizationProblem(remember_start, np.zeros(2), p=np.ones(2), state={"start": None})
    started = om.solve_many(prob, om.Adam(lr=0.1), u0s=u0s, maxiters=5, executor=executor)
    assert [s.state["start"].tolist() for s in started] == [u.tolist() for u in u0s]


def test_multistart_on_an_executor_is_the_serial_one(executor: Executor) -> None:
    prob = om.OptimizationProblem(wells, np.full(3, 0.5), bounds=(np.full(3, -2.0), np.full(3, 2.0)))
    serial = om.multistart(prob, om.LBFGS(), n=6, seed=4)
    assert_identical(serial, om.multistart(prob, om.LBFGS(), n=6, seed=4, executor=executor))


# --- a task that raises ---------------------------------------------------------------------------


def failing_tasks(slow_failure: float) -> list[tuple[om.OptimizationProblem, om.Adam]]:
    def prob(at: int, delay: float) -> om.OptimizationProblem:
        return om.OptimizationProblem(failing, np.ones(2), p=(at, delay), state={"calls": 0})

    # tasks[1] fails at its 3rd call, after tasks[2] has failed at its first.
    return [(prob(0, 0.0), om.Adam(lr=0.1)), (prob(3, slow_failure), om.Adam(lr=0.1)), (prob(1, 0.0), om.Adam())]


@pytest.mark.parametrize("where", ["serial", "processes", "dask"])
def test_the_first_failing_task_in_input_order_raises_with_its_partial_solution(
    where: str, request: pytest.FixtureRequest
) -> None:
    pool = None if where == "serial" else request.getfixturevalue(where)
    with pytest.raises(TaskFailed) as info:
        om.solve_many(failing_tasks(0.1), maxiters=10, executor=pool)
    exc = info.value
    assert str(exc) == "call 3 failed on purpose"
    notes = exc.__notes__
    assert notes[0].startswith("optimeta: raised during step 3 of Adam (2 steps completed)")
    later = "were not run" if pool is None else "were cancelled, or their results dropped"
    assert notes[-1] == f"optimeta: tasks[1] of solve_many raised this (3 tasks); the ones after it {later}" + (
        "" if pool is None else " where they had started"
    )
    partial = exc.partial_solution
    assert partial.retcode is om.ReturnCode.FAILURE and partial.stats.iterations == 2 and partial.state == {"calls": 2}
    serial = om.solve(*failing_tasks(0.0)[0], maxiters=2)
    assert partial.u.tobytes() == serial.u.tobytes()


@pytest.mark.parametrize("where", ["serial", "processes", "dask"])
def test_the_library_s_own_errors_cross_processes_whole(where: str, request: pytest.FixtureRequest) -> None:
    pool = None if where == "serial" else request.getfixturevalue(where)
    hidden = om.OptimizationProblem(hidden_noise, np.ones(2))
    with pytest.raises(om.IncompatibleAlgorithmError) as refused:
        om.solve_many([hidden], om.BFGS(), executor=pool)
    assert str(refused.value).startswith("BFGS(gtol=1e-05) cannot solve this problem (found by the determinism probe")
    assert refused.value.algorithm == om.BFGS() and refused.value.violations[0].traits == ("tolerates_stochastic_loss",)
    assert refused.value.__notes__[-1].startswith("optimeta: tasks[0] of solve_many raised this (1 tasks)")
    constant = om.OptimizationProblem(drifting, np.ones(2), state={"mean": 0.0}, state_mode="constant")
    with pytest.raises(om.StateMutationError) as changed:
        om.solve_many([constant], om.Adam(), maxiters=5, executor=pool)
    assert (changed.value.call, changed.value.path) == (1, "state['mean']")
    assert changed.value.__notes__[0].startswith("optimeta: raised during step 1 of Adam (0 steps completed)")
    assert changed.value.partial_solution.state == {"mean": 0.0}


# --- multistart -------------------------------------------------------------------------------------


def test_multistart_starts_are_u0_then_uniform_draws_in_the_box() -> None:
    lb, ub = np.array([-1.0, 0.0, 3.0]), np.array([2.0, 0.5, 3.0])  # the last coordinate fixed
    prob = om.OptimizationProblem(
        remember_start, np.array([0.0, 0.25, 3.0]), p=np.ones(3), state={"start": None}, bounds=(lb, ub)
    )
    sol = om.multistart(prob, om.Adam(lr=0.01), n=7, seed=11, maxiters=3)
    starts = np.array([run.state["start"] for run in sol.original])
    assert starts[0].tobytes() == prob.u0.tobytes()
    expected = lb + (ub - lb) * np.random.default_rng(11).random((6, 3))
    assert starts[1:].tobytes() == expected.tobytes()
    assert np.all((lb <= starts) & (starts <= ub)) and len(np.unique(starts[:, 0])) == 7
    drawn = om.multistart(prob, om.Adam(lr=0.01), n=3, seed=11, include_u0=False, maxiters=3)
    assert np.array([run.state["start"] for run in drawn.original]).tobytes() == expected[:3].tobytes()


def test_multistart_is_reproducible_with_a_seed_and_picks_the_best() -> None:
    prob = om.OptimizationProblem(wells, np.full(2, 0.5), bounds=(np.full(2, -2.0), np.full(2, 2.0)))
    single = om.solve(prob, om.LBFGS())
    sol = om.multistart(prob, om.LBFGS(), n=10, seed=3)
    assert_identical(sol, om.multistart(prob, om.LBFGS(), n=10, seed=3))
    other = om.multistart(prob, om.LBFGS(), n=10, seed=4)
    assert other.original[1].u.tobytes() != sol.original[1].u.tobytes()
    objectives = [run.objective for run in sol.original]
    best = int(np.argmin(objectives))
    assert len(sol.original) == 10 and sol.original[0].objective == single.objective
    assert sol.objective == min(objectives) < single.objective
    assert sol.u is sol.original[best].u and sol.state is None and sol.retcode is sol.original[best].retcode
    assert sol.message == f"the best of 10 runs is original[{best}]: {sol.original[best].message}"
    assert sol.stats.fevals == sum(run.stats.fevals for run in sol.original)
    assert sol.stats.iterations == sum(run.stats.iterations for run in sol.original)
    assert np.allclose(sol.u, -1.0355787, atol=1e-5)


def test_multistart_maximises_with_sense_max() -> None:
    prob = om.OptimizationProblem(peaks, np.full(2, 0.5), bounds=(np.full(2, -2.0), np.full(2, 2.0)), sense="max")
    sol = om.multistart(prob, om.LBFGS(), n=10, seed=3)
    objectives = [run.objective for run in sol.original]
    assert sol.objective == max(objectives) > min(objectives) and sol.objective > 0
    assert sol.u is sol.original[int(np.argmax(objectives))].u


def test_a_non_finite_run_never_beats_a_finite_one() -> None:
    prob = om.OptimizationProblem(cliff, np.array([-0.5]), bounds=(np.array([-2.0]), np.array([2.0])))
    sol = om.multistart(prob, om.Adam(lr=0.1), n=12, seed=0, maxiters=200)
    nonfinite = [run for run in sol.original if run.retcode is om.ReturnCode.NONFINITE]
    # Runs that start right of 0 slide down to the NaN region and end there, NONFINITE, either at
    # their best finite point (lower than the well's 0) or, started past 1, at a NaN.
    assert any(math.isfinite(run.objective) and run.objective < -0.5 for run in nonfinite)
    assert any(math.isnan(run.objective) for run in nonfinite)
    assert sol.retcode is om.ReturnCode.MAXITERS and 0.0 <= sol.objective < 1e-3
    assert sol.objective == min(run.objective for run in sol.original if run.retcode is om.ReturnCode.MAXITERS)


@pytest.mark.parametrize(
    ("bounds", "shown"),
    [(None, "bounds=None"), ((np.zeros(2), None), "bounds=(array([0., 0.]), array([inf, inf]))")],
)
def test_multistart_refuses_a_problem_without_a_finite_box(bounds: Any, shown: str) -> None:
    prob = om.OptimizationProblem(wells, np.ones(2), bounds=bounds)
    message = (
        "multistart draws starting points in the problem's box, so its bounds must be finite on every "
        f"coordinate: build the problem with bounds=(lb, ub), got {shown}"
    )
    with pytest.raises(ValueError, match=f"^{_escaped(message)}$"):
        om.multistart(prob, om.LBFGS(), n=3)


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "3"])
def test_multistart_refuses_a_bad_n(n: Any) -> None:
    prob = om.OptimizationProblem(wells, np.ones(2), bounds=(np.zeros(2), np.full(2, 2.0)))
    with pytest.raises(ValueError, match=f"^n must be a positive integer \\(the number of runs\\), got {n!r}$"):
        om.multistart(prob, om.LBFGS(), n=n)


# --- every check before any solve --------------------------------------------------------------------


class Counted:
    """A quadratic that counts its calls (not picklable: used where nothing may run)."""

    def __init__(self, stateful: bool = False) -> None:
        self.calls = 0
        self.stateful = stateful

    def __call__(self, u: Any, p: Any, *state: Any) -> Any:
        self.calls += 1
        loss = anp.sum((u - 1.0) ** 2)
        return (loss, {"k": state[0]["k"] + 1}) if self.stateful else loss


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_an_incompatible_pair_anywhere_is_refused_before_any_call() -> None:
    plain, stateful = Counted(), Counted(stateful=True)
    good = om.OptimizationProblem(plain, np.zeros(2))
    bad = om.OptimizationProblem(stateful, np.zeros(2), state={"k": 0})
    with pytest.raises(om.IncompatibleAlgorithmError, match=r"^BFGS\(gtol=1e-05\) cannot solve this problem") as info:
        om.solve_many([(good, om.BFGS()), (good, om.NelderMead()), (bad, om.BFGS())])
    assert info.value.__notes__ == ["optimeta: solve_many refused tasks[2] before starting any solve"]
    assert plain.calls == stateful.calls == 0


def test_a_missing_budget_is_refused_before_any_call() -> None:
    plain = Counted()
    prob = om.OptimizationProblem(plain, np.zeros(2))
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve_many([(prob, om.BFGS()), (prob, om.Chain((om.BFGS(), 5), om.Adam()))])
    assert [v.trait for v in info.value.violations] == ["has_convergence_test"]
    assert "no maxiters=, maxtime= or data= bounds the run" in str(info.value)
    assert "pass maxiters= or maxtime= (or data=), e.g. maxiters=1000" in str(info.value)
    assert info.value.__notes__ == ["optimeta: solve_many refused tasks[1] before starting any solve"]
    assert plain.calls == 0


def _bad_calls() -> list[Any]:
    """(id, the call's arguments from a counted problem and a boxed one, error type, message start)."""
    algorithm_message = (
        "tasks[{i}] must be an OptimizationProblem or a pair (problem, algorithm instance such as om.BFGS()), got "
    )
    return [
        (
            "executor",
            lambda prob, boxed: {"tasks": [prob], "executor": "processes"},
            TypeError,
            (
                "executor must be a concurrent.futures.Executor (a ProcessPoolExecutor, distributed.Client(...)."
                "get_executor(), ...) or None to run here, got 'processes'"
            ),
        ),
        (
            "one problem",
            lambda prob, boxed: {"tasks": prob},
            TypeError,
            (
                "tasks must be a sequence of problems or (problem, algorithm) pairs, got one problem; to solve it "
                "from many starting points pass u0s=, e.g. solve_many(prob, alg, u0s=[...]), and for many "
                "algorithms pass pairs, e.g. solve_many([(prob, a) for a in algs])"
            ),
        ),
        (
            "an algorithm's name",
            lambda prob, boxed: {"tasks": [(prob, "BFGS")]},
            TypeError,
            algorithm_message.format(i=0) + "(PROB, 'BFGS')",
        ),
        ("not a task", lambda prob, boxed: {"tasks": [prob, prob, 3]}, TypeError, algorithm_message.format(i=2) + "3"),
        (
            "tasks not iterable",
            lambda prob, boxed: {"tasks": 5},
            TypeError,
            "tasks must be a sequence of problems or (problem, algorithm) pairs, got 5",
        ),
        (
            "a misspelt option",
            lambda prob, boxed: {"tasks": [prob], "maxiter": 10},
            TypeError,
            (
                "solve_many got an unexpected keyword argument 'maxiter'; the options it passes to every solve "
                "are: maxiters, maxtime, callback, data, "
            ),
        ),
        (
            "a bad budget",
            lambda prob, boxed: {"tasks": [prob], "maxiters": 0},
            ValueError,
            "maxiters must be a positive integer or None, got 0",
        ),
        (
            "a u0 outside the box",
            lambda prob, boxed: {"tasks": boxed, "u0s": [np.zeros(2), np.full(2, 3.0)]},
            ValueError,
            (
                "u0s[1]: bounds must satisfy lb <= u0 <= ub, got u0 > ub at u0[0]: lb=np.float64(-1.0), "
                "u0=np.float64(3.0), ub=np.float64(1.0)"
            ),
        ),
        (
            "u0s with many problems",
            lambda prob, boxed: {"tasks": [prob, prob], "u0s": [np.zeros(2)]},
            TypeError,
            "with u0s=, tasks must be one OptimizationProblem to start from each u0, got [PROB, PROB]",
        ),
        (
            "u0s an array",
            lambda prob, boxed: {"tasks": prob, "u0s": np.zeros((3, 2))},
            TypeError,
            "u0s must be a sequence of starting points (a list of arrays), got array(",
        ),
        (
            "one-shot data",
            lambda prob, boxed: {"tasks": [prob], "alg": om.Adam(), "data": iter([1.0, 2.0])},
            ValueError,
            (
                "data= is given to every task, so it must be iterable more than once (a list of minibatches), "
                "got a one-shot iterator <list_iterator object at"
            ),
        ),
        (
            "an algorithm class",
            lambda prob, boxed: {"tasks": [prob], "alg": om.BFGS},
            TypeError,
            "alg must be an algorithm instance, e.g. BFGS(), got the class BFGS",
        ),
    ]


@pytest.mark.parametrize(("build", "error", "message"), [c[1:] for c in _bad_calls()], ids=[c[0] for c in _bad_calls()])
def test_bad_arguments_are_refused_before_any_call(build: Any, error: type[Exception], message: str) -> None:
    plain = Counted()
    prob = om.OptimizationProblem(plain, np.zeros(2))
    boxed = om.OptimizationProblem(plain, np.zeros(2), bounds=(-np.ones(2), np.ones(2)))
    call = build(prob, boxed)
    with pytest.raises(error) as info:
        om.solve_many(call.pop("tasks"), call.pop("alg", om.BFGS()), **call)
    assert str(info.value).startswith(message.replace("PROB", repr(prob))), str(info.value)
    assert plain.calls == 0


def test_a_callback_does_not_cross_processes(processes: Executor, threads: Executor) -> None:
    prob = om.OptimizationProblem(rosen, np.zeros(2))
    with pytest.raises(ValueError, match=r"^callback= cannot be used with executor=<concurrent\.futures\.process"):
        om.solve_many([prob], om.BFGS(), callback=print, executor=processes)
    seen: list[int] = []  # in this process, with threads as serially
    sols = om.solve_many([prob, prob], om.BFGS(), callback=lambda info: seen.append(info.iteration), executor=threads)
    assert len(seen) == sum(s.stats.iterations for s in sols) > 0


def test_a_process_pool_refuses_a_lambda_before_any_task_starts(processes: Executor) -> None:
    plain = Counted()  # picklable: a class defined at the top level
    tasks = [om.OptimizationProblem(plain, np.zeros(2)), om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.ones(2))]
    with pytest.raises(TypeError) as info:
        om.solve_many(tasks, om.BFGS(), executor=processes)
    message = str(info.value)
    assert message.startswith("a ProcessPoolExecutor pickles every task, and tasks[1] cannot be pickled (")
    assert "<lambda>" in message  # pickle's own words, which vary with the Python version
    assert message.endswith(
        "): define f (and grad, constraints, a callback) at the top level of a module, not as a lambda or a "
        "nested function, or run the tasks with executor=None or on a Dask executor, which sends them with "
        "cloudpickle"
    )
    assert plain.calls == 0


def test_dask_takes_a_lambda(dask: Executor) -> None:
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - p) ** 2), np.zeros(2), p=np.ones(2))
    (sol,) = om.solve_many([prob], om.BFGS(), executor=dask)
    assert_identical(sol, om.solve(prob, om.BFGS()))


def test_no_input_is_written_to(processes: Executor) -> None:
    state = {"key": 3, "mean": np.zeros(3)}
    u0, p = np.zeros(3), np.ones(3)
    lb, ub = np.full(3, -2.0), np.full(3, 2.0)
    starts = [np.full(3, 0.5), np.full(3, -0.5)]
    prob = om.OptimizationProblem(dropout, u0, p=p, state=state, bounds=(lb, ub))
    inputs = [u0, p, state["mean"], lb, ub, *starts]
    before = [a.tobytes() for a in inputs]
    for pool in (None, processes):
        om.solve_many(prob, om.Adam(lr=0.1), u0s=starts, maxiters=20, executor=pool)
        om.solve_many([prob, (prob, om.SGD(lr=0.1))], om.Adam(lr=0.1), maxiters=20, executor=pool)
        om.multistart(prob, om.Adam(lr=0.1), n=3, seed=0, maxiters=20, executor=pool)
    assert [a.tobytes() for a in inputs] == before and state["key"] == 3


def test_empty_ensembles_and_default_algorithms() -> None:
    assert om.solve_many([]) == []
    prob = om.OptimizationProblem(rosen, np.array([-1.2, 1.0]))
    assert om.solve_many(prob, u0s=[]) == []
    (sol,) = om.solve_many([prob])
    assert sol.algorithm == om.BFGS() and sol.success


# --- the benchmark suite on an executor -------------------------------------------------------------


def _bench_rows(out: Any) -> list[dict[str, Any]]:
    """results.json without the timings."""
    import json

    rows: list[dict[str, Any]] = json.loads((out / "results.json").read_text())
    for row in rows:
        row.pop("time")
        row["history"].pop("time", None)
    return rows


def test_the_benchmark_suite_gives_the_serial_tables_on_processes_and_dask(tmp_path: Any, cluster: Any) -> None:
    from benchmarks.__main__ import main

    tiny = ["--problems", "rosenbrock-2,hs71", "--algorithms", "BFGS,SLSQP,Adam,scipy:SLSQP", "--no-progress"]
    assert main([*tiny, "--out", str(tmp_path / "serial")]) == 0
    serial = _bench_rows(tmp_path / "serial")
    assert [(r["problem"], r["solver"], r["status"]) for r in serial] == [
        ("rosenbrock-2", "Adam", "ok"),
        ("rosenbrock-2", "BFGS", "ok"),
        ("rosenbrock-2", "SLSQP", "ok"),
        ("hs71", "Adam", "refused"),
        ("hs71", "BFGS", "refused"),
        ("hs71", "SLSQP", "ok"),
        ("rosenbrock-2", "scipy:SLSQP", "ok"),
        ("hs71", "scipy:SLSQP", "ok"),
    ]
    assert main([*tiny, "--out", str(tmp_path / "processes"), "--executor", "processes"]) == 0
    assert _bench_rows(tmp_path / "processes") == serial
    dask = ["--executor", "dask", "--scheduler", cluster.scheduler_address]
    assert main([*tiny, "--out", str(tmp_path / "dask"), *dask]) == 0
    assert _bench_rows(tmp_path / "dask") == serial


def test_the_benchmark_scheduler_needs_dask() -> None:
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit):
        main(["--executor", "processes", "--scheduler", "tcp://127.0.0.1:8786"])
