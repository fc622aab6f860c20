"""Ensembles of independent solves: `solve_many` on any ``concurrent.futures`` executor, and
`multistart`, the best of many runs from starting points drawn in the box.

This module checks an ensemble's arguments (every task before any starts) and assembles its
result (the best of a multistart); how the tasks run, here or on an executor, and how they
fail is in `_ensemble_run`.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from ._ensemble_run import Task, check_picklable, run_in_parallel, run_serially
from ._problem import OptimizationProblem, flat
from ._runner import arguments
from ._solution import ReturnCode, Solution, Stats
from ._solve import solve
from ._state import add_note
from ._values import is_positive_int
from .backends._base import Algorithm

__all__ = ["multistart", "solve_many"]

_SOLVE_SIGNATURE = inspect.signature(solve)
#: The keyword arguments `solve` takes besides the problem and the algorithm.
_SOLVE_OPTIONS = tuple(name for name in _SOLVE_SIGNATURE.parameters if name not in ("prob", "alg"))
#: Those that `solve` checks, with the pair's traits, before it calls anything.
_CHECKED = frozenset(inspect.signature(arguments).parameters)
#: The most start-point values (n times the size of u0) that `multistart` draws.
_MAX_START_VALUES = 2**31


def solve_many(
    tasks: Iterable[OptimizationProblem | tuple[OptimizationProblem, Algorithm | None]] | OptimizationProblem,
    alg: Algorithm | None = None,
    *,
    u0s: Iterable[Any] | None = None,
    executor: Executor | None = None,
    **solve_kwargs: Any,
) -> list[Solution]:
    """Run independent solves, serially or on an executor, and return their solutions in order.

    An ensemble is a list of tasks, each one `solve`: many problems, many algorithms (random
    ones with different seeds), or one problem from many starting points. Every task gets the
    same ``solve_kwargs``. All of it is checked before the first solve starts: the arguments,
    and every problem/algorithm pair against its traits, so an incompatible pair anywhere is
    refused before the objective is called in any task.

    With ``executor=None`` the tasks run one after another in this process. Any
    ``concurrent.futures.Executor`` runs them in parallel: a ``ProcessPoolExecutor``, or a Dask
    cluster's ``distributed.Client(...).get_executor()``. Each solve is the one `solve` makes
    in this process, so the solutions are bitwise the serial ones (``u``, ``objective``,
    ``state``, ``retcode``, ``stats`` but its times), random algorithms given their ``seed``,
    where the workers compute as this process does: the same versions of the libraries and
    the same number of BLAS threads. Dask starts its workers with ``OMP_NUM_THREADS=1`` (and
    MKL's and OpenBLAS's; its setting ``distributed.nanny.pre-spawn-environ``), and OpenBLAS
    on one thread rounds differently from OpenBLAS on several (SLSQP's last bits change): give
    both sides the same setting.

    A process pool pickles every task: the objective (and ``grad``, constraints, ``p``, the
    state) must be picklable, as a function defined at the top level of a module is and a
    lambda or a nested function is not; this is checked before any task starts. Dask sends
    tasks with cloudpickle, which takes lambdas too, and its workers must be able to import the
    modules your functions live in. A callback runs in the calling process only: it is refused
    with an executor other than a ``ThreadPoolExecutor``, since in another process it would see
    copies and nothing it records would come back.

    Args:
        tasks: A sequence whose items are problems, each solved with ``alg``, or
            ``(problem, algorithm)`` pairs, each solved with its own algorithm (None: the
            problem's `default_algorithm`). With ``u0s``, a single problem.
        alg: The algorithm for the items that are bare problems (None: each problem's
            `default_algorithm`).
        u0s: Starting points: one task per point, the problem ``tasks`` with its ``u0``
            replaced (each with the structure the problem's bounds need).
        executor: Where the tasks run: None (the default) runs them here, one after another.
            The executor is the caller's: it is not shut down.
        **solve_kwargs: Options of `solve` given to every task (``maxiters``, ``maxtime``,
            ``nan_policy``, ``data``, ...).

    Returns:
        The solutions, one per task, in the order of the tasks.

    Raises:
        Exception: The first task, in input order, that raised: its exception as `solve` raised
            it (with ``partial_solution`` and `solve`'s note), with a note naming the task; the
            tasks after it that have not started are cancelled (serially: not run), and the
            results of those already running are dropped.
        KeyboardInterrupt: One raised in a task (by ``f``, say) is raised as an exception above
            is: its own type, with ``partial_solution``, `solve`'s note and the note naming the
            task; so are ``SystemExit`` and ``GeneratorExit``, on every executor. On a Dask
            executor, whose worker they would kill (or, in-process, never let the task end), the
            task sends them back as an ordinary exception, and they are raised again as their
            own type, with the worker's traceback as their ``__cause__``.
        IncompatibleAlgorithmError: A pair that its algorithm's traits refuse, before any solve.
        TypeError: A task that is neither a problem nor a ``(problem, algorithm)`` pair, an
            executor that is not a ``concurrent.futures.Executor``, an unknown option, or a task
            that a process pool cannot pickle.
        ValueError: Bad option values, a step-wise algorithm without a budget, a ``u0`` that the
            problem refuses, a callback with a process-based executor, or ``data`` that can be
            iterated only once.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> sols = om.solve_many(prob, om.BFGS(), u0s=[np.zeros(2), np.full(2, 5.0)])
        >>> [s.retcode.name for s in sols], np.round(sols[1].u, 6)
        (['SUCCESS', 'SUCCESS'], array([1., 1.]))
        >>> sols = om.solve_many([(prob, om.BFGS()), (prob, om.Adam(lr=0.1))], maxiters=100)
        >>> [type(s.algorithm).__name__ for s in sols]
        ['BFGS', 'Adam']
    """
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(
            "executor must be a concurrent.futures.Executor (a ProcessPoolExecutor, "
            f"distributed.Client(...).get_executor(), ...) or None to run here, got {executor!r}"
        )
    for name in solve_kwargs:
        if name not in _SOLVE_OPTIONS:
            raise TypeError(
                f"solve_many got an unexpected keyword argument {name!r}; the options it passes to every "
                f"solve are: {', '.join(_SOLVE_OPTIONS)}"
            )
    label, pairs = _tasks(tasks, alg, u0s)
    _check_options(solve_kwargs, executor)
    for i, (prob, task_alg) in enumerate(pairs):
        try:
            _check_task(prob, task_alg, solve_kwargs)
        except Exception as exc:
            add_note(exc, f"optimeta: solve_many refused {label}[{i}] before starting any solve")
            raise
    work = [Task(i, prob, task_alg, solve_kwargs) for i, (prob, task_alg) in enumerate(pairs)]
    if isinstance(executor, ProcessPoolExecutor):
        check_picklable(work, label, u0s is not None)
    if executor is None:
        return run_serially(work, label)
    return run_in_parallel(work, label, executor)


def _tasks(
    tasks: Any, alg: Algorithm | None, u0s: Iterable[Any] | None
) -> tuple[str, list[tuple[OptimizationProblem, Algorithm | None]]]:
    """The (problem, algorithm) of every task, and what the tasks are called in messages."""
    if u0s is not None:
        if not isinstance(tasks, OptimizationProblem):
            raise TypeError(f"with u0s=, tasks must be one OptimizationProblem to start from each u0, got {tasks!r}")
        if not isinstance(u0s, Iterable) or isinstance(u0s, (str, bytes, np.ndarray)):
            raise TypeError(f"u0s must be a sequence of starting points (a list of arrays), got {u0s!r}")
        pairs = []
        for i, u0 in enumerate(u0s):
            try:
                pairs.append((replace(tasks, u0=u0), alg))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"u0s[{i}]: {exc}") from None
        return "u0s", pairs
    if isinstance(tasks, OptimizationProblem):
        raise TypeError(
            "tasks must be a sequence of problems or (problem, algorithm) pairs, got one problem; to solve it "
            "from many starting points pass u0s=, e.g. solve_many(prob, alg, u0s=[...]), and for many "
            "algorithms pass pairs, e.g. solve_many([(prob, a) for a in algs])"
        )
    if not isinstance(tasks, Iterable) or isinstance(tasks, (str, bytes, dict)):
        raise TypeError(f"tasks must be a sequence of problems or (problem, algorithm) pairs, got {tasks!r}")
    pairs = []
    for i, item in enumerate(tasks):
        if isinstance(item, OptimizationProblem):
            pairs.append((item, alg))
        elif (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], OptimizationProblem)
            and (item[1] is None or isinstance(item[1], Algorithm))
        ):
            pairs.append((item[0], item[1]))
        else:
            raise TypeError(
                f"tasks[{i}] must be an OptimizationProblem or a pair (problem, algorithm instance such as "
                f"om.BFGS()), got {item!r}"
            )
    return "tasks", pairs


def _check_options(options: dict[str, Any], executor: Executor | None) -> None:
    """What an ensemble needs of `solve`'s options beyond what `solve` checks."""
    if options.get("callback") is not None and executor is not None and not isinstance(executor, ThreadPoolExecutor):
        raise ValueError(
            f"callback= cannot be used with executor={executor!r}: the solves run in other processes, where "
            "the callback would see copies and nothing it records would come back; pass executor=None or a "
            "ThreadPoolExecutor to use a callback, or bound the runs with maxiters= or maxtime="
        )
    data = options.get("data")
    if isinstance(data, Iterator):
        raise ValueError(  # noqa: TRY004 - a ValueError, as solve's own for a one-shot iterator
            "data= is given to every task, so it must be iterable more than once (a list of minibatches), "
            f"got a one-shot iterator {data!r}"
        )


def _check_task(prob: OptimizationProblem, alg: Algorithm | None, options: dict[str, Any]) -> None:
    """`solve`'s own checks of one task (the traits included, its budget among them), without a call of f."""
    bound = _SOLVE_SIGNATURE.bind(prob, alg, **options)
    bound.apply_defaults()
    arguments(**{name: value for name, value in bound.arguments.items() if name in _CHECKED})


def multistart(
    prob: OptimizationProblem,
    alg: Algorithm | None = None,
    *,
    n: int,
    seed: int | np.random.Generator | None = None,
    include_u0: bool = True,
    executor: Executor | None = None,
    **solve_kwargs: Any,
) -> Solution:
    """Solve from ``n`` starting points in the problem's box and return the best run, with all
    of them attached.

    The first run starts from the problem's own ``u0`` (unless ``include_u0=False``); the others
    from points drawn uniformly in the box ``lb <= u <= ub``, ``lb + (ub - lb) * r`` for ``r``
    from ``numpy.random.default_rng(seed).random``, so a seed makes the starts, and with a
    deterministic algorithm the result, reproducible. The runs go through `solve_many` (every
    check first, then serially or on ``executor``), and every run starts from the problem's
    initial state.

    The best run has the lowest objective in the problem's sense (the highest for
    ``sense="max"``), among the runs that ended neither with ``NONFINITE`` nor with ``FAILURE``;
    only when none did, among those, and a run whose objective is not finite comes last. Ties go
    to the earlier start.

    Args:
        prob: The problem; it must bound every coordinate by finite numbers on both sides.
        alg: The algorithm of every run (None: the problem's `default_algorithm`), which must
            accept bounds.
        n: The number of runs (starting points), a positive integer. Every start point is drawn
            before the first run, so ``n`` times the size of ``u0`` may be at most ``2**31``
            values: a larger ``n`` is refused before anything is drawn or any call of ``f``.
        seed: Seeds ``numpy.random.default_rng``: an int, None for fresh entropy, or a
            ``Generator``, which is used (and advanced) as it is.
        include_u0: Start the first run from ``prob.u0`` (the default) rather than from a drawn
            point.
        executor: Where the runs go, as for `solve_many`.
        **solve_kwargs: Options of `solve` for every run.

    Returns:
        A `Solution` whose ``u``, ``objective``, ``state``, ``retcode`` and ``algorithm`` are the
        best run's; ``message`` names that run (``original[k]``); ``stats`` adds up the runs' counts, with ``time``
        the wall-clock time of the whole multistart; ``original`` is the tuple of every run's
        `Solution`, in the order of the starts (the best one's own ``original`` is there).

    Raises:
        ValueError: A problem without finite bounds on every coordinate, or a bad ``n`` (not a
            positive integer, or too many start points to hold); any error `solve_many` raises.
        TypeError: ``prob`` not a problem, ``include_u0`` not a bool.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> def wells(u, p):                                 # minima at -1 (deeper) and +1
        ...     return anp.sum((u ** 2 - 1.0) ** 2 + 0.3 * u)
        >>> prob = om.OptimizationProblem(wells, np.full(2, 0.5), bounds=(-np.full(2, 2.0), np.full(2, 2.0)))
        >>> round(om.solve(prob, om.LBFGS()).objective, 4)             # from u0: the shallow well
        0.5883
        >>> sol = om.multistart(prob, om.LBFGS(), n=8, seed=0)
        >>> round(sol.objective, 4), np.round(sol.u, 3), len(sol.original)
        (-0.6109, array([-1.036, -1.036]), 8)
        >>> sol.message
        'the best of 8 runs is original[2]: CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL'
        >>> sol.original[2].u is sol.u
        True
    """
    lb, ub, to_user = _box(prob, n, include_u0)
    start = time.perf_counter()
    drawn = _draw(lb, ub, int(n) - 1 if include_u0 else int(n), seed)
    u0s = [prob.u0] if include_u0 else []
    u0s += [to_user(x) for x in drawn]
    runs = solve_many(prob, alg, u0s=u0s, executor=executor, **solve_kwargs)
    return _best_of(runs, prob.sense, start)


def _box(
    prob: OptimizationProblem, n: int, include_u0: bool
) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], Any]]:
    """`multistart`'s arguments checked: the problem's finite box (``lb``, ``ub``, flat) and the
    map of a flat point to the structure of ``u0``."""
    if not isinstance(prob, OptimizationProblem):
        raise TypeError(f"prob must be an OptimizationProblem, got {prob!r}")
    if not is_positive_int(n):
        raise ValueError(f"n must be a positive integer (the number of runs), got {n!r}")
    on_flat = flat(prob)
    size = on_flat.layout.size
    if int(n) * size > _MAX_START_VALUES:  # Python ints: no overflow of a NumPy n
        raise ValueError(
            f"n must be a positive integer of at most {_MAX_START_VALUES // size} start points for a u0 of {size} "
            f"values, got {n!r}: multistart draws every start point before the first run, and holds at most "
            "2**31 start-point values (16 GiB of float64)"
        )
    if not isinstance(include_u0, bool):
        raise TypeError(f"include_u0 must be True or False, got {include_u0!r}")
    lb, ub = on_flat.lb, on_flat.ub
    if lb is None or ub is None or not (np.isfinite(lb).all() and np.isfinite(ub).all()):
        raise ValueError(
            "multistart draws starting points in the problem's box, so its bounds must be finite on every "
            f"coordinate: build the problem with bounds=(lb, ub), got bounds={prob.bounds!r}"
        )
    return lb, ub, on_flat.layout.to_user


def _draw(lb: np.ndarray, ub: np.ndarray, count: int, seed: int | np.random.Generator | None) -> np.ndarray:
    """`count` flat points drawn uniformly in the box, ``lb + (ub - lb) * r``."""
    rng = np.random.default_rng(seed)
    r = rng.random((count, lb.size))
    # lb + (ub - lb) * r rounds into [lb, ub] but for the last ulp, which the clip removes.
    points: np.ndarray = np.clip(lb + (ub - lb) * r, lb, ub)
    return points


def _best_of(runs: list[Solution], sense: str, start: float) -> Solution:
    """The best run (`_rank`), naming it in its message, with the runs' counts added up, the
    time since `start`, and every run as ``original``."""
    best = min(range(len(runs)), key=lambda i: _rank(runs[i], sense))
    stats = Stats.total([run.stats for run in runs], time=time.perf_counter() - start)
    chosen = runs[best]
    return replace(
        chosen,
        message=f"the best of {len(runs)} runs is original[{best}]: {chosen.message}",
        stats=stats,
        original=tuple(runs),
    )


def _rank(sol: Solution, sense: str) -> tuple[int, float]:
    """Sort key of a run: ended well before failed or non-finite, then by objective."""
    if not math.isfinite(sol.objective):
        return (2, 0.0)
    failed = sol.retcode in (ReturnCode.NONFINITE, ReturnCode.FAILURE)
    return (int(failed), -sol.objective if sense == "max" else sol.objective)
