"""`init`, `Solver` and `resume`: a step-wise run taken one step at a time, checkpointed and resumed.

Optimization.jl's ``init`` / ``solve!`` interface, for long ML runs: the run is the one that
`solve` makes (the same driver loop, the same checks), held open between steps. A `Checkpoint`
is a plain picklable value (the problem, the algorithm, the iterate, the algorithm's state, the
committed state, the counters and the position in the data), so a run checkpointed at step k
and resumed in a fresh process is bitwise identical to the uninterrupted run.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import numpy as np

from ._objective import Objective
from ._observe import History, check_observe_options, logging_to_stderr
from ._problem import OptimizationProblem
from ._solution import ReturnCode, Solution
from ._solve import (
    Callback,
    _arguments,
    _attach_partial,
    _batches,
    _drive,
    _Monitor,
    _prepared,
    _stepwise_solution,
    observer_for,
    planned_steps,
)
from ._state import copy_state
from .backends._base import Algorithm, StepwiseAlgorithm, suggest_keywords
from .traits import Requirements, check_compatible, requirements, traits

__all__ = ["Checkpoint", "Solver", "init", "resume"]


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Everything a `Solver` needs to go on, as plain picklable data (pickle it to a file).

    Pickling needs the objective ``f`` (and ``grad``, ``p``, the state and ``data``) to be
    picklable: a function defined at a module's top level is, a lambda is not.

    Attributes:
        problem: The problem.
        algorithm: The algorithm instance.
        x: The current iterate, flattened.
        opt_state: The algorithm's own state (step counts, moments, curvature pairs).
        state: The committed state of a stateful problem (None otherwise).
        counts: Iterations, calls of f, gradients, probe calls and second derivatives so far.
        skips: ``max_skips`` of ``nan_policy="skip"`` (0 for "stop"), the steps skipped so far,
            and those skipped in a row up to now.
        elapsed: Seconds the run has taken so far (``maxtime`` counts them).
        maxiters: The run's iteration budget.
        maxtime: The run's time budget.
        data: The minibatches (a sequence) or None.
        epochs: Passes over ``data``.
        consumed: Steps taken from the schedule of batches so far.
        loss: The loss the last step reported.
        ended: Why the run ended, or None while it may go on.
        solution: The `Solution`, once `Solver.solve` has made it.
        best: A deterministic problem's best finite iterate so far and its loss (the answer of
            a run that ends on a non-finite value), or None.
        evaluated: The partial solution's iterate and loss so far (see `solve`), or None
            before the first step.
        observe: The run's ``record``, ``progress`` and ``verbose``.
        history: What ``record`` kept of the steps so far (None without ``record``).
    """

    problem: OptimizationProblem
    algorithm: Algorithm
    x: np.ndarray
    opt_state: Any
    state: Any
    counts: tuple[int, int, int, int, int]
    skips: tuple[int, int, int]
    elapsed: float
    maxiters: int | None
    maxtime: float | None
    data: Sequence[Any] | None
    epochs: int
    consumed: int
    loss: float
    ended: ReturnCode | None
    solution: Solution | None = None
    best: tuple[float, np.ndarray] | None = None
    evaluated: tuple[np.ndarray, float] | None = None
    observe: tuple[bool | str, bool, bool] = (False, False, False)
    history: History | None = None


class Solver:
    """A step-wise run held open: `step` it, `solve` it to the end, `checkpoint` it.

    Made by `init` or `resume`, never directly. The run is the one `solve` would make with the
    same arguments: ``init(prob, alg, maxiters=N).solve()`` gives the same `Solution`, bit for bit,
    however many `step` and `checkpoint` calls come in between. With ``record``, its
    ``history`` holds every step of the run (those before a checkpoint included); with
    ``progress``, the bar advances with every step and closes with `solve`; with ``verbose``,
    the run logs its start (at the first step), its progress and, in `solve`, its end.

    Attributes:
        algorithm: The algorithm instance.
        iterations: Steps completed so far.
        done: Whether the run has ended (a budget, convergence, the data, a non-finite value or
            the callback).
        retcode: Why it ended, or None while it may go on.
    """

    def __init__(
        self,
        prob: OptimizationProblem,
        alg: StepwiseAlgorithm[Any],
        req: Requirements,
        objective: Objective,
        monitor: _Monitor,
        x: np.ndarray,
        opt_state: Any,
        data: Sequence[Any] | None,
        epochs: int,
        consumed: int,
        loss: float,
        ended: ReturnCode | None,
        observe: tuple[bool | str, bool, bool] = (False, False, False),
    ) -> None:
        self._prob = prob
        self.algorithm = alg
        self._req = req
        self._objective = objective
        self._monitor = monitor
        self._x = x
        self._opt_state = opt_state
        self._data = data
        self._epochs = epochs
        self._schedule = _Counted(itertools.islice(_batches(data, epochs, prob.p), consumed, None), consumed)
        self._loss = loss
        self.retcode = ended
        self._solution: Solution | None = None
        self._observe = observe
        self._observer = observer_for(prob, *observe)
        self._started = False  # whether the observer was told that the run (re)started
        if self._observer is not None:
            self._observer.layout = objective.layout
            monitor.observer = self._observer

    @property
    def iterations(self) -> int:
        return self._monitor.iterations

    @property
    def done(self) -> bool:
        return self.retcode is not None

    @property
    def u(self) -> Any:
        """A copy of the current iterate, with the structure of ``u0``."""
        return self._objective.layout.to_user(self._x)

    @property
    def state(self) -> Any:
        """A copy of the committed state (None for a stateless problem)."""
        return copy_state(self._objective.state)

    def step(self) -> bool:
        """Take one step (nothing once the run has ended); True while the run may go on.

        Raises:
            Exception: Whatever the objective, the gradient or the callback raised, with the
                note and ``partial_solution`` that `solve` attaches.
        """
        if self.retcode is not None:
            return False
        self._advance(1)
        return self.retcode is None

    def solve(self) -> Solution:
        """Run to the end and return the `Solution` (the same one on every later call)."""
        if self.retcode is None:
            self._advance(None)
        if self._solution is None:
            assert self.retcode is not None
            end = (self._x, self._loss, self.retcode)
            sol = _stepwise_solution(
                self.algorithm,
                self._req,
                self._objective,
                self._monitor,
                end,
                self._data,
                self._epochs,
                self._opt_state,
            )
            observer = self._observer
            if observer is not None:
                sol = replace(sol, history=observer.history())
                with logging_to_stderr(observer.verbose, observer.progress):
                    observer.end(sol)
            self._solution = sol
        return self._solution

    def _advance(self, limit: int | None) -> None:
        monitor, observer = self._monitor, self._observer
        with logging_to_stderr(self._observe[2], self._observe[1]):
            if observer is not None and not self._started:
                total = planned_steps(monitor.maxiters, self._data, self._epochs)
                observer.start(type(self.algorithm).__name__, self._x.size, total, monitor.iterations)
                self._started = True
            try:
                x, opt_state, loss, code = _drive(
                    self.algorithm,
                    self._objective,
                    monitor,
                    self._schedule,
                    self._x,
                    self._opt_state,
                    limit,
                    self._loss,
                )
            except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
                _attach_partial(exc, self.algorithm, self._objective, monitor)
                if observer is not None:
                    partial = getattr(exc, "partial_solution", None)
                    if isinstance(partial, Solution):
                        exc.partial_solution = replace(partial, history=observer.history())  # type: ignore[attr-defined]
                    observer.end(None, exc)
                    self._started = False
                raise
        self._x, self._opt_state, self._loss, self.retcode = x, opt_state, loss, code

    def checkpoint(self) -> Checkpoint:
        """The run so far as a `Checkpoint` (copies: stepping on does not change it)."""
        if self._data is not None and not isinstance(self._data, Sequence):
            raise ValueError(
                f"a run over data={type(self._data).__name__} cannot be checkpointed: its position cannot be "
                "found again; pass the minibatches as a list or another sequence"
            )
        obj, monitor = self._objective, self._monitor
        return Checkpoint(
            problem=self._prob,
            algorithm=self.algorithm,
            x=self._x.copy(),
            opt_state=copy.deepcopy(self._opt_state),
            state=copy_state(obj.state),
            counts=(monitor.iterations, obj.fevals, obj.gevals, obj.probe_fevals, obj.hevals),
            skips=(monitor.max_skips, monitor.skipped, monitor.skips_in_a_row),
            elapsed=time.perf_counter() - monitor.start,
            maxiters=monitor.maxiters,
            maxtime=monitor.maxtime,
            data=self._data,
            epochs=self._epochs,
            consumed=self._schedule.count,
            loss=self._loss,
            ended=self.retcode,
            solution=self._solution,
            best=None if monitor.best is None else (monitor.best[0], monitor.best[1].copy()),
            evaluated=None if monitor.last is None else (monitor.last[0].copy(), monitor.last[1]),
            observe=self._observe,
            history=None if self._observer is None else self._observer.history(),
        )


@suggest_keywords("options")
def init(
    prob: OptimizationProblem,
    alg: Algorithm | None = None,
    *,
    maxiters: int | None = None,
    maxtime: float | None = None,
    callback: Callback | None = None,
    data: Sequence[Any] | None = None,
    epochs: int = 1,
    check_determinism: bool = True,
    nan_policy: str = "stop",
    max_skips: int = 10,
    record: bool | str = False,
    progress: bool = False,
    verbose: bool = False,
) -> Solver:
    """Start a step-wise run without taking a step: a `Solver` to step, checkpoint and solve.

    Takes every option of `solve`, with the same meaning, and makes its checks (the options,
    traits, budget, determinism probe) now, before the first step, with the same errors. Only algorithms with the trait ``supports_checkpoint`` (the
    step-wise ones: the first-order family, BFGS, OLBFGS) can be run so; the scipy methods run
    as one call and cannot be stopped and resumed.

    Args:
        prob: The problem.
        alg: A step-wise algorithm instance (None: `default_algorithm`, if it is one).
        maxiters, maxtime, callback, data, epochs, check_determinism, nan_policy, max_skips, record,
            progress, verbose: As for `solve`, over the whole run (`Solver.step`, `Solver.solve`,
            and the runs resumed from its checkpoints): ``record`` gives the final `Solution` the
            history of every step.

    Returns:
        The `Solver`.

    Raises:
        ValueError: An algorithm without ``supports_checkpoint``; any error `solve` raises for
            the same arguments.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om, pickle
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> solver = om.init(prob, om.Adam(lr=0.1), maxiters=100)
        >>> for _ in range(40):
        ...     _ = solver.step()
        >>> saved = solver.checkpoint()
        >>> resumed = om.resume(saved).solve()
        >>> full = om.solve(prob, om.Adam(lr=0.1), maxiters=100)
        >>> resumed.u.tobytes() == full.u.tobytes(), resumed.stats.iterations
        (True, 100)
    """
    if alg is not None and isinstance(alg, Algorithm) and not traits(alg).supports_checkpoint:
        _not_checkpointable(alg)
    alg, chosen, skips, req = _arguments(
        prob,
        alg,
        maxiters,
        maxtime,
        callback,
        data,
        epochs,
        check_determinism,
        nan_policy,
        max_skips,
        record,
        progress,
        verbose,
    )
    if not isinstance(alg, StepwiseAlgorithm):  # a default that runs whole (LBFGS, SLSQP)
        _not_checkpointable(alg)
    objective = _prepared(prob, alg, req, maxiters, maxtime, data, check_determinism, chosen)
    monitor = _Monitor(objective, maxiters, maxtime, callback)
    monitor.max_skips = skips
    monitor.keep_best = not req.stochastic and not req.evolving_state
    x0 = objective.x0.copy()
    observe = (record, progress, verbose)
    return Solver(prob, alg, req, objective, monitor, x0, alg.init(x0), data, epochs, 0, math.nan, None, observe)


@suggest_keywords("options")
def resume(
    checkpoint: Checkpoint,
    *,
    callback: Callback | None = None,
    progress: bool | None = None,
    verbose: bool | None = None,
) -> Solver:
    """A `Solver` that goes on from a `Checkpoint`, in this process or another one.

    The problem, the algorithm, the budgets, the data and ``record`` (with the history so far)
    come from the checkpoint; a callback (which a checkpoint does not hold) may be given anew,
    and ``progress`` and ``verbose`` changed. No determinism probe runs again.

    Args:
        checkpoint: From `Solver.checkpoint` (possibly unpickled).
        callback: As for `solve`.
        progress: As for `solve`; None: as the checkpointed run.
        verbose: As for `solve`; None: as the checkpointed run.

    Returns:
        The `Solver`, at the checkpoint's step.

    Raises:
        TypeError: ``checkpoint`` is not a `Checkpoint`, ``callback`` is not callable, or
            ``progress`` or ``verbose`` is not a bool or None.
    """
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"checkpoint must be an om.Checkpoint (from Solver.checkpoint()), got {checkpoint!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(info) or None, got {callback!r}")
    record, kept_progress, kept_verbose = checkpoint.observe
    progress = kept_progress if progress is None else progress
    verbose = kept_verbose if verbose is None else verbose
    check_observe_options(record, progress, verbose)
    prob, alg = checkpoint.problem, checkpoint.algorithm
    assert isinstance(alg, StepwiseAlgorithm)
    req = requirements(prob, callback=callback is not None, data=checkpoint.data is not None)
    check_compatible(alg, req)
    declared = traits(alg)
    objective = Objective(prob, per_step_commit=declared.commits_state_per_step and not declared.single_call_per_step)
    objective.state = copy_state(checkpoint.state)
    iterations, objective.fevals, objective.gevals, objective.probe_fevals, objective.hevals = checkpoint.counts
    monitor = _Monitor(objective, checkpoint.maxiters, checkpoint.maxtime, callback)
    monitor.iterations = iterations
    monitor.max_skips, monitor.skipped, monitor.skips_in_a_row = checkpoint.skips
    monitor.start = time.perf_counter() - checkpoint.elapsed
    monitor.keep_best = not req.stochastic and not req.evolving_state
    if checkpoint.best is not None:
        monitor.best = (checkpoint.best[0], checkpoint.best[1].copy())
    x = checkpoint.x.copy()
    if checkpoint.evaluated is not None:  # the run so far, should the next step raise
        monitor.last = (checkpoint.evaluated[0].copy(), checkpoint.evaluated[1])
    solver = Solver(
        prob,
        alg,
        req,
        objective,
        monitor,
        x,
        copy.deepcopy(checkpoint.opt_state),
        checkpoint.data,
        checkpoint.epochs,
        checkpoint.consumed,
        checkpoint.loss,
        checkpoint.ended,
        (record, progress, verbose),
    )
    if solver._observer is not None:
        solver._observer.restore(checkpoint.history)
    solver._solution = checkpoint.solution
    return solver


class _Counted:
    """The schedule of batches, counting those taken (a checkpoint's position in the data)."""

    __slots__ = ("_items", "count")

    def __init__(self, items: Iterator[tuple[int | None, Any]], count: int) -> None:
        self._items = items
        self.count = count

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> tuple[int | None, Any]:
        item = next(self._items)
        self.count += 1
        return item


def _not_checkpointable(alg: Algorithm) -> NoReturn:
    from .traits import algorithms

    name = type(alg).__name__
    raise ValueError(
        f"{name} cannot be run step by step (supports_checkpoint=False): it runs as one call to its backend. "
        f"Use om.solve(prob, {name}(...)), or one of: "
        + ", ".join(cls.__name__ for cls in algorithms(supports_checkpoint=True))
    )
