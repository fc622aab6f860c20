"""Faults of ensembles: a KeyboardInterrupt (SystemExit, GeneratorExit) in a task of `solve_many`
ends it promptly, on every executor (Dask's too), with its own type, the partial solution and a
note naming the task; and `multistart` refuses an ``n`` whose start points cannot be held before
it draws any or calls f.

The objectives are defined at the top level of this module, so that the workers of a Dask
cluster of processes can import them.
"""

from __future__ import annotations

import copyreg
import multiprocessing
import re
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest

import optimeta as om

# --- objectives (top level: importable by the workers) --------------------------------------------


class TaskFailed(Exception):
    """The user's own error."""


#: What `interrupting` raises, by name (the type travels to the workers as a name).
KINDS: dict[str, type[BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "GeneratorExit": GeneratorExit,
    "TaskFailed": TaskFailed,
}


def interrupting(u: Any, p: Any, state: Any) -> Any:
    """Raises ``KINDS[p[1]]`` at call ``p[0]`` (0: never), after sleeping ``p[2]`` seconds a call."""
    at, kind, delay = p
    time.sleep(delay)
    if state["calls"] + 1 == at:
        raise KINDS[kind](f"{kind} at call {at}")
    return anp.sum((u - 1.0) ** 2), {"calls": state["calls"] + 1}


def task(at: int, kind: str = "KeyboardInterrupt", delay: float = 0.0) -> tuple[om.OptimizationProblem, om.Adam]:
    prob = om.OptimizationProblem(interrupting, np.zeros(2), p=(at, kind, delay), state={"calls": 0})
    return prob, om.Adam(lr=0.1)


class Counted:
    """A quadratic that counts its calls (in this process)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, u: Any, p: Any) -> Any:
        self.calls += 1
        return anp.sum((u - 1.0) ** 2)


# --- executors -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _tblib_reducers() -> Iterator[None]:
    # Importing distributed registers tblib's reducers (copyreg) for every exception class there
    # is: the table is restored after this module, for the tests of other modules that copy
    # exceptions (as tests/test_ensemble.py does).
    reducers = dict(copyreg.dispatch_table)
    try:
        yield
    finally:
        copyreg.dispatch_table.clear()
        copyreg.dispatch_table.update(reducers)


def _dask_client(processes: bool) -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with distributed.Client(
        n_workers=1, threads_per_worker=1, processes=processes, dashboard_address="127.0.0.1:0"
    ) as client:
        yield client


@pytest.fixture(scope="module")
def dask_client_threads(_tblib_reducers: None) -> Iterator[Any]:
    """An in-process Dask cluster: one worker thread, in this process."""
    yield from _dask_client(processes=False)


@pytest.fixture(scope="module")
def dask_client_processes(_tblib_reducers: None) -> Iterator[Any]:
    """A Dask cluster of one worker process."""
    yield from _dask_client(processes=True)


@pytest.fixture(scope="module")
def threads() -> Iterator[Executor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture(scope="module")
def processes() -> Iterator[Executor]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


WHERES = ["serial", "threads", "processes", "dask_threads", "dask_processes"]


def executor_for(where: str, request: pytest.FixtureRequest) -> Executor | None:
    if where == "serial":
        return None
    if where.startswith("dask_"):
        client = request.getfixturevalue(f"dask_client_{where[len('dask_') :]}")
        pool: Executor = client.get_executor()
        return pool
    pool = request.getfixturevalue(where)
    return pool


def task_note(index: int, total: int, serial: bool) -> str:
    later = "were not run" if serial else "were cancelled, or their results dropped where they had started"
    return f"optimeta: tasks[{index}] of solve_many raised this ({total} tasks); the ones after it {later}"


# --- a KeyboardInterrupt (SystemExit, GeneratorExit) in a task --------------------------------------


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "SystemExit", "GeneratorExit"])
@pytest.mark.parametrize("where", WHERES)
def test_an_interrupt_in_a_task_keeps_its_type_and_names_the_task(
    where: str, kind: str, request: pytest.FixtureRequest
) -> None:
    pool = executor_for(where, request)
    tasks = [task(0), task(3, kind), task(0)]  # tasks[1] raises at its 3rd call
    start = time.perf_counter()
    with pytest.raises(KINDS[kind]) as info:
        om.solve_many(tasks, maxiters=10, executor=pool)
    assert time.perf_counter() - start < 10.0  # promptly: no hang, no retries on other workers
    exc = info.value
    assert type(exc) is KINDS[kind]
    assert exc.args == (f"{kind} at call 3",)
    if kind == "SystemExit":
        assert isinstance(exc, SystemExit) and exc.code == "SystemExit at call 3"
    notes = exc.__notes__
    assert len(notes) == 2
    assert notes[0] == (
        "optimeta: raised during step 3 of Adam (2 steps completed); the solution so far is attached as "
        ".partial_solution"
    )
    assert notes[1] == task_note(1, 3, serial=pool is None)
    partial = exc.partial_solution  # type: ignore[attr-defined]
    assert isinstance(partial, om.Solution)
    assert partial.retcode is om.ReturnCode.FAILURE
    assert partial.message == f"interrupted by {kind} during step 3 of Adam"
    assert partial.stats.iterations == 2 and partial.stats.fevals == 3 and partial.state == {"calls": 2}
    assert partial.u.tobytes() == om.solve(*task(0), maxiters=2).u.tobytes()
    if where in ("processes", "dask_threads", "dask_processes"):  # pickled: the worker's traceback
        assert "in interrupting" in str(exc.__cause__) and f"{kind} at call 3" in str(exc.__cause__)


@pytest.mark.parametrize("where", ["dask_threads", "dask_processes"])
def test_a_dask_worker_survives_an_interrupt_in_a_task(where: str, request: pytest.FixtureRequest) -> None:
    client = request.getfixturevalue(f"dask_client_{where[len('dask_') :]}")
    workers = set(client.scheduler_info()["workers"])
    with pytest.raises(KeyboardInterrupt):
        om.solve_many([task(1)], maxiters=5, executor=client.get_executor())
    (sol,) = om.solve_many([task(0)], maxiters=5, executor=client.get_executor())
    assert sol.retcode is om.ReturnCode.MAXITERS and sol.state == {"calls": 5}
    assert set(client.scheduler_info()["workers"]) == workers  # the same worker: not killed and restarted


@pytest.mark.parametrize("where", ["threads", "dask_threads"])
def test_the_first_failure_in_input_order_wins_be_it_an_interrupt_or_an_exception(
    where: str, request: pytest.FixtureRequest
) -> None:
    pool = executor_for(where, request)
    # tasks[1] is interrupted at its 3rd call, after tasks[2] has failed at its first.
    with pytest.raises(KeyboardInterrupt) as interrupted:
        om.solve_many([task(0), task(3, delay=0.05), task(1, "TaskFailed")], maxiters=10, executor=pool)
    assert interrupted.value.__notes__[-1] == task_note(1, 3, serial=False)
    # tasks[1] fails at its 3rd call, after tasks[2] has been interrupted at its first.
    with pytest.raises(TaskFailed) as failed:
        om.solve_many([task(0), task(3, "TaskFailed", delay=0.05), task(1)], maxiters=10, executor=pool)
    assert str(failed.value) == "TaskFailed at call 3"
    assert failed.value.__notes__[-1] == task_note(1, 3, serial=False)


def test_serially_no_task_after_the_interrupted_one_runs() -> None:
    counted = Counted()
    after = om.OptimizationProblem(counted, np.zeros(2))
    with pytest.raises(KeyboardInterrupt) as info:
        om.solve_many([task(0), task(2), (after, om.BFGS())], maxiters=10)
    assert info.value.__notes__[-1] == task_note(1, 3, serial=True)
    assert counted.calls == 0


# --- multistart refuses an n whose start points cannot be held ------------------------------------


def _boxed(counted: Counted, size: int) -> om.OptimizationProblem:
    return om.OptimizationProblem(counted, np.zeros(size), bounds=(np.full(size, -2.0), np.full(size, 2.0)))


def _too_many(limit: int, size: int, shown: str) -> str:
    return (
        "^"
        + re.escape(
            f"n must be a positive integer of at most {limit} start points for a u0 of {size} values, got {shown}: "
            "multistart draws every start point before the first run, and holds at most 2**31 start-point values "
            "(16 GiB of float64)"
        )
        + "$"
    )


@pytest.mark.parametrize(
    ("n", "size", "limit", "shown"),
    [
        (10**12, 2, 2**30, "1000000000000"),
        (10**40, 1, 2**31, str(10**40)),
        (2**31 + 1, 1, 2**31, str(2**31 + 1)),
        (np.int64(10**12), 2, 2**30, "np.int64(1000000000000)"),
        (np.int64(2**62), 4, 2**29, "np.int64(4611686018427387904)"),  # n * 4 overflows int64
        (2049, 2**20, 2048, "2049"),
    ],
    ids=["1e12", "1e40", "just-over", "np.int64", "np.int64-overflowing", "large-u0"],
)
def test_multistart_refuses_too_many_start_points_before_any_call(n: Any, size: int, limit: int, shown: str) -> None:
    counted = Counted()
    with pytest.raises(ValueError, match=_too_many(limit, size, shown)):
        om.multistart(_boxed(counted, size), om.LBFGS(), n=n, seed=0)
    assert counted.calls == 0


def test_multistart_counts_the_values_of_a_tree_u0() -> None:
    counted = Counted()
    u0 = {"w": np.zeros((3, 4)), "b": 0.0}
    lb, ub = {"w": np.full((3, 4), -1.0), "b": -1.0}, {"w": np.full((3, 4), 1.0), "b": 1.0}
    prob = om.OptimizationProblem(lambda u, p: counted(u["w"], p) + u["b"] ** 2, u0, bounds=(lb, ub))
    with pytest.raises(ValueError, match=_too_many(2**31 // 13, 13, "1000000000000")):
        om.multistart(prob, om.LBFGS(), n=10**12)
    assert counted.calls == 0


@pytest.mark.parametrize(("n", "size"), [(2**30, 2), (2048, 2**20), (2**31, 1)])
def test_multistart_takes_n_up_to_the_bound(n: int, size: int) -> None:
    # The largest n passes the check of n: the next check (of include_u0) refuses the call, before
    # anything is drawn or f called.
    counted = Counted()
    with pytest.raises(TypeError, match="^include_u0 must be True or False, got 'yes'$"):
        om.multistart(_boxed(counted, size), om.LBFGS(), n=n, include_u0="yes")  # type: ignore[arg-type]
    assert counted.calls == 0


def test_multistart_still_refuses_a_non_positive_n_first() -> None:
    counted = Counted()
    with pytest.raises(ValueError, match=r"^n must be a positive integer \(the number of runs\), got 0$"):
        om.multistart(_boxed(counted, 2**20), om.LBFGS(), n=0)
    assert counted.calls == 0
