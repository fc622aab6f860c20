"""A step-wise run held open: the iterate, the algorithm's state and the schedule of batches
between steps.

`solve` runs a session to its end at once (`optimeta._runner.Run.run_stepwise`); `init` and
`resume` hand one to a `Solver`, to step, checkpoint and solve. Both advance it with
`Session.advance` and end it with `Session.finish`, so ``solve(...)`` and ``init(...).solve()``
are one code path and cannot diverge.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ._objective import Objective
from ._run import Monitor, Step, attach_partial, drive, stepwise_solution
from ._solution import ReturnCode, Solution
from .backends._base import StepwiseAlgorithm

__all__ = ["Session"]


class Session:
    """One step-wise run between steps.

    Attributes:
        alg: The algorithm. objective, monitor: The run's objective wrapper and monitor.
        x: The current flat iterate (NumPy, or a jax array on the native path). opt_state: The
            algorithm's state at `x`. step: The step function (None: the algorithm's own).
        loss: The last step's loss (NaN before the first). retcode: Why the run ended, or None.
        data, epochs: The run's minibatches (or None) and passes over them.
    """

    __slots__ = (
        "alg",
        "data",
        "epochs",
        "loss",
        "monitor",
        "objective",
        "opt_state",
        "req",
        "retcode",
        "schedule",
        "step",
        "x",
    )

    def __init__(
        self,
        alg: StepwiseAlgorithm[Any],
        objective: Objective,
        monitor: Monitor,
        schedule: Iterator[tuple[int | None, Any]],
        x: np.ndarray,
        opt_state: Any,
        data: Iterable[Any] | None,
        epochs: int,
        loss: float = math.nan,
        retcode: ReturnCode | None = None,
        step: Step | None = None,
    ) -> None:
        self.alg, self.objective, self.monitor, self.schedule = alg, objective, monitor, schedule
        self.step = step
        self.x, self.opt_state, self.loss, self.retcode = x, opt_state, loss, retcode
        self.data, self.epochs = data, epochs

    def advance(self, limit: int | None) -> None:
        """Take up to `limit` steps (None: to the end) by the one driver loop; whatever the
        objective or the callback raises gets the note and the partial solution."""
        # A native step's run goes on in its framework's context (jax's 64-bit types for a
        # float64 run: see `optimeta._native_base.NativeStep.scope`).
        scope = getattr(self.step, "scope", contextlib.nullcontext)()
        try:
            with scope:
                x, opt_state, loss, code = drive(
                    self.alg,
                    self.objective,
                    self.monitor,
                    self.schedule,
                    self.x,
                    self.opt_state,
                    limit,
                    self.loss,
                    self.step,
                )
        except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
            attach_partial(exc, self.alg, self.objective, self.monitor)
            raise
        self.x, self.opt_state, self.loss, self.retcode = x, opt_state, loss, code

    def finish(self) -> Solution:
        """The `Solution` of the ended run (see `optimeta._run.stepwise_solution`)."""
        if self.retcode is None:
            raise RuntimeError("the run has not ended: advance it to its end first")
        end = (self.x, self.loss, self.retcode)
        try:  # a deterministic run ends with an evaluation at its iterate, which may raise
            return stepwise_solution(
                self.alg, self.objective, self.monitor, end, self.data, self.epochs, self.opt_state
            )
        except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
            attach_partial(exc, self.alg, self.objective, self.monitor)
            raise
