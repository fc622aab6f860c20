"""The executor side of an ensemble (`solve_many`): the tasks, and how they run and fail.

A `Task` is one `solve`; `run_serially` runs the tasks here, one after another, and
`run_in_parallel` on a ``concurrent.futures`` executor, collecting the solutions in input order
and raising the first failure in input order. A ``BaseException`` that is not an ``Exception``
travels back from a task on an executor inside an `Interrupted`, which pickles it with its
type, its attributes and the worker's traceback (`carried`).
"""

from __future__ import annotations

import pickle
import traceback
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any

from ._problem import OptimizationProblem
from ._solution import Solution
from ._solve import solve
from ._state import add_note
from .backends._base import Algorithm

__all__ = [
    "Interrupted",
    "RemoteTraceback",
    "Task",
    "carried",
    "check_picklable",
    "run_in_parallel",
    "run_serially",
    "run_task",
    "solve_task",
]


@dataclass(frozen=True)
class Task:
    """One solve of an ensemble. The index keeps equal tasks apart on executors that reuse the
    result of an identical call (Dask's default ``pure=True``)."""

    index: int
    problem: OptimizationProblem
    algorithm: Algorithm | None
    options: dict[str, Any]


def solve_task(task: Task) -> Solution:
    """A task's solve, as `solve` makes it."""
    return solve(task.problem, task.algorithm, **task.options)


def run_task(task: Task) -> Solution:
    """A task's solve on an executor, in whichever process (or thread) the executor runs it.

    An executor handles an ``Exception`` that a task raises, but not always the other
    ``BaseException`` types: a Dask worker lets a ``KeyboardInterrupt`` or a ``SystemExit`` escape
    the thread that runs the task, which an in-process cluster then never finishes and which
    kills a worker process (the task ends as ``distributed.KilledWorker``, after the retries).
    Those travel back inside an `Interrupted`, an ordinary exception, that `run_in_parallel` turns
    back into the original.
    """
    try:
        return solve_task(task)
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt, SystemExit, GeneratorExit: raised in the carrier
        carrier = Interrupted(exc, "".join(traceback.format_exception(exc)))
    raise carrier  # outside the except clause: the carrier has no __context__ to send along


class RemoteTraceback(Exception):
    """The traceback of an exception rebuilt in another process, as its ``__cause__`` (as
    ``concurrent.futures``' process pool shows the traceback of a worker's exception)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class Interrupted(Exception):
    """Carries a ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
    ``SystemExit``, ``GeneratorExit``) out of a task on an executor, as an ordinary exception.

    ``original`` is the exception itself where the carrier has not been pickled (a thread
    pool), and otherwise one rebuilt from its type, its ``args`` and its attributes (its notes
    and ``partial_solution`` among them), with the worker's traceback as its ``__cause__``.
    The message stays short: Dask replaces an exception with a long one by another.
    """

    def __init__(self, original: BaseException, remote_traceback: str) -> None:
        super().__init__(
            f"{type(original).__name__} in a task of optimeta's solve_many, which raises it as it is in the caller"
        )
        self.original = original
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        original = self.original
        return (carried, (type(original), original.args, dict(vars(original)), self.remote_traceback))


def carried(
    cls: type[BaseException], args: tuple[Any, ...], attributes: dict[str, Any], remote_traceback: str
) -> Interrupted:
    """An `Interrupted` unpickled: its exception rebuilt as an instance of its own type."""
    try:
        original = cls(*args)  # SystemExit sets its code from args
    except Exception:  # noqa: BLE001 - a type whose __init__ does not take its args back
        original = cls.__new__(cls)
        original.args = args
    for name, value in attributes.items():
        setattr(original, name, value)
    original.__cause__ = RemoteTraceback(remote_traceback)
    return Interrupted(original, remote_traceback)


def check_picklable(work: list[Task], label: str, shared: bool) -> None:
    """Refuse, before any task starts, a task that a process pool cannot send to a worker."""
    for task in work[:1] if shared else work:  # tasks from u0s differ only in u0, an array
        try:
            pickle.dumps(task)
        except Exception as exc:
            raise TypeError(
                f"a ProcessPoolExecutor pickles every task, and {label}[{task.index}] cannot be pickled "
                f"({type(exc).__name__}: {exc}): define f (and grad, constraints, a callback) at the top level "
                "of a module, not as a lambda or a nested function, or run the tasks with executor=None or on "
                "a Dask executor, which sends them with cloudpickle"
            ) from exc


def _failed(exc: BaseException, label: str, index: int, total: int, serial: bool) -> None:
    later = "were not run" if serial else "were cancelled, or their results dropped where they had started"
    add_note(exc, f"optimeta: {label}[{index}] of solve_many raised this ({total} tasks); the ones after it {later}")


def run_serially(work: list[Task], label: str) -> list[Solution]:
    """Run the tasks here, one after another; the first that raises ends the ensemble."""
    solutions = []
    for task in work:
        try:
            solutions.append(solve_task(task))
        except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
            _failed(exc, label, task.index, len(work), serial=True)
            raise
    return solutions


def run_in_parallel(work: list[Task], label: str, executor: Executor) -> list[Solution]:
    """Submit every task, then collect the solutions in order; on a failure, wait only for the
    tasks before it (one of them may have failed too: the first in input order is raised)."""
    futures: list[Future[Solution]] = []
    try:
        for task in work:
            futures.append(executor.submit(run_task, task))
        index = {future: i for i, future in enumerate(futures)}
        first_failed = len(futures)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if not future.cancelled() and future.exception() is not None:
                    first_failed = min(first_failed, index[future])
            if first_failed < len(futures):
                for future in pending:
                    if index[future] > first_failed:
                        future.cancel()
                pending = {future for future in pending if index[future] < first_failed}
        if first_failed < len(futures):
            exc = futures[first_failed].exception()
            assert exc is not None
            if isinstance(exc, Interrupted):
                exc = exc.original  # its own type again: a KeyboardInterrupt is one here too
            _failed(exc, label, first_failed, len(work), serial=False)
            raise exc
        return [future.result() for future in futures]
    finally:
        for future in futures:
            future.cancel()  # nothing for a finished task; an interrupted wait leaves none queued
