"""`init`, `Solver` and `resume`: a step-wise run taken one step at a time, checkpointed and resumed.

Optimization.jl's ``init`` / ``solve!`` interface, for long ML runs: the run is the one that
`solve` makes (the same driver loop, the same checks), held open between steps. A `Checkpoint`
is data only (the algorithm and its state, the iterate, the committed state, the counters, the
budgets used and the position in the data), never the problem, the objective or the data:
`resume` is given the problem (and the data) again and checks that the checkpoint fits them.
`Checkpoint.save` writes it to an ``.npz`` file that `Checkpoint.load` reads without running
code, so a run checkpointed at step k and resumed in a fresh process is bitwise identical to the
uninterrupted run.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ._checkpoint_io import Checkpoint, Counts, Skips, describe_layout
from ._keywords import suggest_keywords
from ._native import native_step
from ._objective import Objective
from ._observe import logging_to_stderr
from ._problem import OptimizationProblem
from ._run import (
    Callback,
    Monitor,
    batches,
    observer_for,
    planned_steps,
    solution,
)
from ._runner import Run, arguments
from ._session import Session
from ._solution import ReturnCode, Solution
from ._state import copy_state
from .backends._base import Algorithm, StepwiseAlgorithm
from .traits import Requirements

__all__ = ["Checkpoint", "Counts", "Skips", "Solver", "init"]


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
        monitor: Monitor,
        x: np.ndarray,
        opt_state: Any,
        data: Sequence[Any] | None,
        epochs: int,
        consumed: int,
        loss: float,
        ended: ReturnCode | None,
        observe: tuple[bool | str, bool, bool] = (False, False, False),
        history: Any = None,
        final: tuple[float, str] | None = None,
    ) -> None:
        self._prob = prob
        self.algorithm = alg
        self._req = req
        self._objective = objective
        self._monitor = monitor
        self._data = data
        self._epochs = epochs
        self._schedule = _Counted(itertools.islice(batches(data, epochs, prob.p), consumed, None), consumed)
        # The run's step: native when the gradient source can run it (as in solve), on NumPy otherwise.
        self._native = native_step(objective, alg)
        if self._native is not None:
            x, opt_state = self._native.adopt(x, opt_state)
            native = self._native.array  # a resumed run's best and last iterates too
            if monitor.best is not None:
                monitor.best = (monitor.best[0], native(monitor.best[1]))
            if monitor.last is not None:
                monitor.last = (native(monitor.last[0]), monitor.last[1])
        self._session = Session(
            alg, objective, monitor, self._schedule, x, opt_state, data, epochs, loss, ended, self._native
        )
        self.solution: Solution | None = None
        # Once the Solution is made: its loss (minimisation sense) and message, which a
        # checkpoint keeps so that a resumed solve() rebuilds it without calling f again.
        self._final = final
        self._observe = observe
        self._observer = observer_for(prob, *observe)
        self._started = False  # whether the observer was told that the run (re)started
        if self._observer is not None:
            self._observer.layout = objective.layout
            monitor.observer = self._observer
            if history is not None:  # resumed: the steps before the checkpoint
                self._observer.restore(history)

    @property
    def retcode(self) -> ReturnCode | None:
        """Why the run ended, or None while it may go on."""
        return self._session.retcode

    @property
    def iterations(self) -> int:
        return self._monitor.iterations

    @property
    def done(self) -> bool:
        return self.retcode is not None

    @property
    def u(self) -> Any:
        """A copy of the current iterate, with the structure of ``u0``."""
        return self._objective.layout.to_user(self._session.x)

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
        if self.solution is None:
            assert self.retcode is not None
            session = self._session
            if self._final is None:
                sol = session.finish()
                self._final = (session.objective.sign * sol.objective, sol.message)
            else:  # resumed after the Solution was made: the same one, without calling f again
                loss, message = self._final
                x, opt_state = session.x, session.opt_state
                sol = solution(
                    self.algorithm, session.objective, session.monitor, x, loss, self.retcode, message, None, opt_state
                )
            observer = self._observer
            if observer is not None:
                sol = replace(sol, history=observer.history())
                with logging_to_stderr(observer.verbose, observer.progress):
                    observer.end(sol)
            self.solution = sol
        return self.solution

    def _advance(self, limit: int | None) -> None:
        monitor, observer = self._monitor, self._observer
        with logging_to_stderr(self._observe[2], self._observe[1]):
            if observer is not None and not self._started:
                total = planned_steps(monitor.maxiters, self._data, self._epochs)
                observer.start(type(self.algorithm).__name__, self._session.x.size, total, monitor.iterations)
                self._started = True
            try:
                self._session.advance(limit)
            except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
                if observer is not None:
                    partial = getattr(exc, "partial_solution", None)
                    if isinstance(partial, Solution):
                        exc.partial_solution = replace(partial, history=observer.history())  # type: ignore[attr-defined]
                    observer.end(None, exc)
                    self._started = False
                raise

    def _host(self, x: Any) -> np.ndarray:
        """An iterate as a checkpoint keeps it: a float64 NumPy copy (of a native one too)."""
        host: np.ndarray = x.copy() if self._native is None else self._native.host(x)
        return host

    def checkpoint(self) -> Checkpoint:
        """The run so far as a `Checkpoint`: data only (copies: stepping on does not change it).

        It holds no problem, objective or data: resume it with ``om.resume(checkpoint, prob)``
        (``data=`` the same minibatches for a run over data). After `solve`, it holds the
        Solution's loss and message, and a resumed ``solve()`` gives that Solution again.

        Raises:
            ValueError: The run goes over ``data`` that is not a sequence (a one-shot iterator),
                whose position cannot be found again.
        """
        if self._data is not None and not isinstance(self._data, Sequence):
            raise ValueError(
                f"a run over data={type(self._data).__name__} cannot be checkpointed: its position cannot be "
                "found again; pass the minibatches as a list or another sequence"
            )
        obj, monitor = self._objective, self._monitor
        x, opt_state = self._session.x, self._session.opt_state
        if self._native is not None:  # a native run's arrays, as NumPy
            x, opt_state = self._native.export(x, opt_state)
        return Checkpoint(
            algorithm=self.algorithm,
            x=x.copy(),
            opt_state=copy.deepcopy(opt_state),
            state=copy_state(obj.user_state()),
            counts=Counts(monitor.iterations, obj.fevals, obj.gevals, obj.probe_fevals, obj.hevals),
            skips=Skips(monitor.max_skips, monitor.skipped, monitor.skips_in_a_row),
            elapsed=time.perf_counter() - monitor.start,
            maxiters=monitor.maxiters,
            maxtime=monitor.maxtime,
            epochs=self._epochs,
            consumed=self._schedule.count,
            loss=self._session.loss,
            ended=self.retcode,
            layout=describe_layout(obj.layout.treedef),
            stateful=obj.stateful,
            data_length=None if self._data is None else len(self._data),
            final=self._final,
            best=None if monitor.best is None else (monitor.best[0], self._host(monitor.best[1])),
            evaluated=None if monitor.last is None else (self._host(monitor.last[0]), monitor.last[1]),
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
        IncompatibleAlgorithmError: An algorithm without ``supports_checkpoint`` (a rule of
            ``traits.py``, which lists the step-wise algorithms), among the refusals `solve`
            makes; any other error `solve` raises for the same arguments.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om, pickle
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> solver = om.init(prob, om.Adam(lr=0.1), maxiters=100)
        >>> for _ in range(40):
        ...     _ = solver.step()
        >>> saved = pickle.loads(pickle.dumps(solver.checkpoint()))  # data only: a lambda objective is fine
        >>> resumed = om.resume(saved, prob).solve()
        >>> full = om.solve(prob, om.Adam(lr=0.1), maxiters=100)
        >>> resumed.u.tobytes() == full.u.tobytes(), resumed.stats.iterations
        (True, 100)
    """
    alg, chosen, options, req = arguments(
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
        stepwise_reason="om.init takes the run step by step, to checkpoint and resume it",
    )
    if not isinstance(alg, StepwiseAlgorithm):  # declared supports_checkpoint, yet not step-wise
        raise TypeError(f"{type(alg).__name__} declares supports_checkpoint=True but is not a StepwiseAlgorithm")
    objective, monitor = Run(prob, req, options, chosen=chosen).open(alg)
    x0 = objective.x0.copy()
    observe = (record, progress, verbose)
    return Solver(prob, alg, req, objective, monitor, x0, alg.init(x0), data, epochs, 0, math.nan, None, observe)


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
