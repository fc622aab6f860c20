"""The run of a step-wise algorithm, shared by `solve` and `Solver`: the monitor of budgets,
callback and observer; the one driver loop; the Solution, and the partial solution an exception
carries."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

import numpy as np

from ._objective import Objective
from ._observe import Observer
from ._problem import OptimizationProblem
from ._solution import IterationInfo, ReturnCode, Solution, Stats
from ._state import add_note, copy_state
from .backends._base import Algorithm, NonFiniteEvaluation, StepwiseAlgorithm

__all__ = [
    "Callback",
    "Monitor",
    "Step",
    "attach_partial",
    "batches",
    "drive",
    "observer_for",
    "planned_steps",
    "solution",
    "stepwise_solution",
]

Callback = Callable[[IterationInfo], "bool | None"]

#: A step function as the driver calls it: ``step(evaluate, x, state, box) -> (x_new, state, loss)``.
Step = Callable[[Any, Any, Any, Any], "tuple[Any, Any, float]"]


class Monitor:
    """Budgets, elapsed time and the callback: the per-step bookkeeping of both algorithm shapes."""

    def __init__(
        self, objective: Objective, maxiters: int | None, maxtime: float | None, callback: Callback | None
    ) -> None:
        self.objective = objective
        self.maxiters = maxiters
        self.maxtime = maxtime
        self.callback = callback
        self.iterations = 0
        self.epoch: int | None = None
        self.start = time.perf_counter()
        # The partial solution's iterate and loss if the run is interrupted: the last iterate
        # whose loss a completed step computed, and that loss. The iterate is kept by reference:
        # the algorithm owns it, and never writes to an iterate that is still referenced.
        self.last: tuple[np.ndarray, float] | None = None
        # nan_policy="skip": how many non-finite steps in a row may be skipped (0: none), and
        # how many were, in all and in the current row.
        self.max_skips = 0
        self.skipped = 0
        self.skips_in_a_row = 0
        # A deterministic problem's best finite iterate and its loss, for a run that ends on a
        # non-finite value (kept by reference: see `drive`).
        self.keep_best = False
        self.best: tuple[float, np.ndarray] | None = None
        self.observer: Observer | None = None  # record=, progress=, verbose=

    def after_step(self, x: np.ndarray, loss: float, evaluated: np.ndarray | None = None) -> ReturnCode | None:
        """Record a completed step that moved to `x` and reported `loss`, computed at
        `evaluated` (at `x` when None); a return code means: stop now, for this reason."""
        self.iterations += 1
        obj = self.objective
        if obj.per_step_commit:
            obj.commit_at(x)
        self.last = (x if evaluated is None else evaluated, loss)
        if self.observer is not None:
            self.observer.step(self.iterations, x, loss, obj.fevals, time.perf_counter() - self.start)
        if self.callback is not None:
            info = IterationInfo(
                self.iterations, obj.layout.to_user(x), obj.sign * float(loss), copy_state(obj.user_state()), self.epoch
            )
            try:
                answer = self.callback(info)
            except StopIteration:
                return ReturnCode.TERMINATED
            if answer is not None and not isinstance(answer, (bool, np.bool_)):
                raise TypeError(f"callback must return True (stop), False or None, got {answer!r}")
            if answer:
                return ReturnCode.TERMINATED
        if self.maxiters is not None and self.iterations >= self.maxiters:
            return ReturnCode.MAXITERS
        if self.out_of_time():
            return ReturnCode.MAXTIME
        return None

    def out_of_time(self) -> bool:
        return self.maxtime is not None and time.perf_counter() - self.start >= self.maxtime


def batches(data: Iterable[Any] | None, epochs: int, p: Any) -> Iterator[tuple[int | None, Any]]:
    """(epoch, p) for each step: the minibatches of every epoch in order, or `p` forever."""
    if data is None:
        return itertools.repeat((None, p))
    return ((epoch, batch) for epoch in range(1, epochs + 1) for batch in data)


def drive(
    alg: StepwiseAlgorithm[Any],
    objective: Objective,
    monitor: Monitor,
    schedule: Iterator[tuple[int | None, Any]],
    x: np.ndarray,
    opt_state: Any,
    limit: int | None = None,
    loss: float = math.nan,
    step: Step | None = None,
) -> tuple[np.ndarray, Any, float, ReturnCode | None]:
    """The driver loop: one step per batch from iterate `x` and algorithm state `opt_state` until
    the monitor stops the run, the data runs out, or an evaluation is not finite; then (x,
    opt_state, loss, return code). With `limit`, at most that many steps: the return code is None
    when the run may go on. `loss` is the last step's, returned when no step is taken. `step` is
    the step function (None: the algorithm's `step_donated`; the native jax path gives its
    compiled one, `optimeta._native_jax.NativeJaxStep`)."""

    box = None if objective.lb is None or objective.ub is None else (objective.lb, objective.ub)
    taken = 0
    keep_best = monitor.keep_best
    loss_before = not alg.loss_at_new_iterate
    if step is None:
        step = alg.step_donated
    for monitor.epoch, objective.p in schedule:
        # The driver donates the iterate and state it holds (`step_donated`): a large update may
        # write over them, in place. A deterministic run keeps its best iterate, by a view:
        # this one, whose loss the step reports, is held through the step, so that the update
        # writes elsewhere (an iterate anyone views is never written over).
        held = _alias(x) if keep_best and loss_before else None
        try:
            x_new, opt_state, loss = step(objective.value_and_grad, x, opt_state, box)
        except NonFiniteEvaluation as exc:  # the point and the value that was not finite there
            if exc.state is not None:  # a donated state, handed back as it was
                opt_state = exc.state
            if monitor.skips_in_a_row >= monitor.max_skips:
                x, loss = _nonfinite_end(objective, monitor, x, exc.x, exc.loss, exc.start)
                return x, opt_state, loss, ReturnCode.NONFINITE
            # nan_policy="skip": a step without an update, counted as an iteration.
            monitor.skips_in_a_row += 1
            monitor.skipped += 1
            loss = exc.loss
            stopped = monitor.after_step(x, loss)
            if stopped is not None:
                return x, opt_state, loss, stopped
        else:
            ended = alg.terminate(opt_state)
            if ended is not None and x_new is x:
                return x, opt_state, loss, ended  # ended without moving: no iteration to count or commit
            if ended is ReturnCode.NONFINITE:
                # A line search accepted a point whose value or gradient is not finite: the step
                # is not taken, as one whose evaluation was not finite.
                x, loss = _nonfinite_end(objective, monitor, x, x_new, loss)
                return x, opt_state, loss, ended
            monitor.skips_in_a_row = 0
            if keep_best and (monitor.best is None or loss < monitor.best[0]):
                monitor.best = (loss, held if held is not None else _alias(x_new))
            x = x_new
            # A deterministic run's partial solution is the iterate the loss was computed at
            # (held through the step); a noisy run's keeps no earlier iterate, so that its
            # update may write over the memory of the one it was given.
            stopped = monitor.after_step(x, loss, held)
            if ended is not None:
                return x, opt_state, loss, ended
            if stopped is not None:
                return x, opt_state, loss, stopped
        if limit is not None:
            taken += 1
            if taken >= limit:
                return x, opt_state, loss, None
    return x, opt_state, loss, ReturnCode.MAXITERS


def _alias(x: Any) -> Any:
    """Another reference to iterate `x`: a view of a NumPy array (which a donated update then
    never writes over), a framework's immutable array itself."""
    return x.view() if isinstance(x, np.ndarray) else x


def _nonfinite_end(
    objective: Objective,
    monitor: Monitor,
    x: np.ndarray,
    bad_x: np.ndarray,
    bad_loss: float,
    start: float | None = None,
) -> tuple[np.ndarray, float]:
    """Where a run that met a non-finite value at `bad_x` (from iterate `x`) ends, and its loss:
    a stateful run at its last iterate, with that step's loss (none before the first step) and
    the state that went with it; a deterministic one at its best finite iterate; otherwise at
    `bad_x`."""
    if objective.stateful:
        objective.revert()
        if monitor.last is not None:
            return x, monitor.last[1]
        return x, bad_loss if bad_x is x else math.nan
    if monitor.best is not None:
        return monitor.best[1], monitor.best[0]
    if monitor.keep_best and bad_x is not x:
        # No finite iterate kept yet (an algorithm that reports the loss at its new iterate,
        # in its first step): x, with the finite loss the step found there (`start`), or
        # evaluated once more, if it is finite there.
        if start is not None:
            return x, start
        loss, grad = objective.value_and_grad(x)
        if math.isfinite(loss) and np.isfinite(grad).all():
            return x, loss
    return bad_x, bad_loss


def stepwise_solution(
    alg: StepwiseAlgorithm[Any],
    objective: Objective,
    monitor: Monitor,
    end: tuple[np.ndarray, float, ReturnCode],
    data: Any,
    epochs: int,
    opt_state: Any = None,
) -> Solution:
    """The `Solution` of an ended step-wise run: on a deterministic problem, with one counted
    evaluation at the returned iterate when the last step reported the loss before its update;
    `opt_state` is the algorithm's state at the end (`Solution.opt_state`)."""
    x, loss, retcode = end
    message = retcode.message
    if data is not None and retcode is ReturnCode.MAXITERS and monitor.iterations != monitor.maxiters:
        message = f"all {epochs} epoch(s) of data were used ({monitor.iterations} steps)"
    deterministic = monitor.keep_best  # decided once, by the run (`optimeta._runner.Run`)
    if deterministic and retcode is not ReturnCode.NONFINITE and not alg.loss_at_new_iterate:
        loss = objective.value(x)
    return solution(alg, objective, monitor, x, loss, retcode, message, None, opt_state)


def attach_partial(
    exc: BaseException, alg: Algorithm, objective: Objective, monitor: Monitor, *, probe: bool = False
) -> None:
    """Give an exception that ends a run a note naming the algorithm and the step, and the
    partial solution so far as ``exc.partial_solution``: the last iterate whose loss a completed
    step computed, with that loss (u0 and NaN before the first step; for a noisy or stateful
    run, the last iterate, with the loss its step reported), the committed state, and the
    stats. `probe`: raised by the determinism probe, before the first step."""
    if hasattr(exc, "partial_solution"):
        return  # raised by a nested solve (a Chain's stage), which attached its own
    if monitor.last is None:
        x, loss = objective.x0, math.nan
    else:
        x, loss = monitor.last
    name = type(alg).__name__
    where = (
        f"the determinism probe at u0, before step 1 of {name}" if probe else f"step {monitor.iterations + 1} of {name}"
    )
    message = f"interrupted by {type(exc).__name__} during {where}"
    partial = solution(alg, objective, monitor, x, loss, ReturnCode.FAILURE, message, None)
    try:
        exc.partial_solution = partial  # type: ignore[attr-defined]
    except AttributeError:  # an exception type with __slots__: the note still says what happened
        pass
    note = (
        f"optimeta: raised during {where} ({monitor.iterations} steps completed); the solution so far is "
        "attached as .partial_solution"
    )
    add_note(exc, note)


def observer_for(prob: OptimizationProblem, record: bool | str, progress: bool, verbose: bool) -> Observer | None:
    """What watches a run with these (checked) options, or None when nothing does."""
    return Observer(record, progress, verbose, prob.sense) if record or progress or verbose else None


def planned_steps(maxiters: int | None, data: Any, epochs: int) -> int | None:
    """The steps a run plans, if known (a progress bar's total)."""
    if data is not None and isinstance(data, Sized):
        return epochs * len(data) if maxiters is None else min(maxiters, epochs * len(data))
    return maxiters


def solution(
    alg: Algorithm,
    objective: Objective,
    monitor: Monitor,
    x: np.ndarray,
    loss: float,
    retcode: ReturnCode,
    message: str,
    original: Any,
    opt_state: Any = None,
) -> Solution:
    elapsed = time.perf_counter() - monitor.start
    return Solution(
        u=objective.layout.to_user(x),
        objective=objective.sign * float(loss),
        state=objective.user_state(),
        retcode=retcode,
        message=message,
        stats=Stats(
            monitor.iterations,
            objective.fevals,
            objective.gevals,
            elapsed,
            objective.probe_fevals,
            objective.hevals,
            monitor.skipped,
        ),
        algorithm=alg,
        original=original,
        opt_state=opt_state,
        sense="min" if objective.sign > 0 else "max",
    )
