"""The two shapes of algorithm, and the validation helpers their hyperparameters share.

* `StepwiseAlgorithm`: pure ``init`` / ``step`` on flat vectors, driven by the one loop in
  ``_solve.py``. `FirstOrderAlgorithm` narrows it to "one value-and-gradient evaluation, then an
  update", and projects every update onto the box when the problem has bounds.
* `WholeRunAlgorithm`: hands the wrapped objective to an external solver (scipy) for the whole
  run, reporting each of its iterations to a `Monitor` that applies budgets and the callback.

Algorithms are frozen dataclasses of hyperparameters; whatever changes during a run lives in an
explicit state object that ``init`` makes and ``step`` returns.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np

from .._solution import ReturnCode
from ..traits import Traits

if TYPE_CHECKING:
    from .._objective import Objective

__all__ = [
    "FIRST_ORDER_TRAITS",
    "Algorithm",
    "Box",
    "Evaluate",
    "FirstOrderAlgorithm",
    "Monitor",
    "NonFiniteEvaluation",
    "RunResult",
    "StepwiseAlgorithm",
    "WholeRunAlgorithm",
    "check_fraction",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_range",
    "check_rate",
    "evaluate_finite",
    "rate_at",
]

S = TypeVar("S")

#: The objective as an algorithm sees it: flat vector -> (loss to minimise, gradient).
Evaluate = Callable[[np.ndarray], tuple[float, np.ndarray]]
#: Lower and upper bounds of the flat vector.
Box = tuple[np.ndarray, np.ndarray]


class Algorithm:
    """Base of every algorithm: a frozen dataclass of hyperparameters plus its `traits`."""

    traits: ClassVar[Traits]


class NonFiniteEvaluation(Exception):
    """The objective or its gradient was not finite at the point `x` a step had to use."""

    def __init__(self, x: np.ndarray, loss: float) -> None:
        super().__init__(loss)
        self.x = x
        self.loss = loss


def evaluate_finite(evaluate: Evaluate, x: np.ndarray) -> tuple[float, np.ndarray]:
    """`evaluate(x)`, or `NonFiniteEvaluation` at `x` when the loss or gradient is NaN or infinite."""
    loss, grad = evaluate(x)
    if not (math.isfinite(loss) and all_finite(grad)):
        raise NonFiniteEvaluation(x, loss)
    return loss, grad


_all_true = np.logical_and.reduce  # ndarray.all() without its Python-level wrapper


def all_finite(v: np.ndarray) -> bool:
    """Whether every element of `v` is finite."""
    return bool(_all_true(np.isfinite(v)))


class StepwiseAlgorithm(Algorithm, Generic[S]):
    """An algorithm advanced one step at a time by the driver loop in ``_solve.py``.

    Class data:
        needs_budget: The algorithm has no convergence test of its own, so ``solve`` needs
            ``maxiters``, ``maxtime`` or ``data``.
        loss_at_new_iterate: ``step`` reports the loss at the iterate it returns, so a
            deterministic problem needs no final evaluation.
    """

    needs_budget: ClassVar[bool] = True
    loss_at_new_iterate: ClassVar[bool] = False

    def init(self, x0: np.ndarray) -> S:
        """The algorithm's state before the first step."""
        raise NotImplementedError

    def step(self, evaluate: Evaluate, x: np.ndarray, state: S, box: Box | None) -> tuple[np.ndarray, S, float]:
        """One step from ``x``: returns the new iterate, the new state and the loss evaluated.

        ``evaluate`` returns values as they are; a step that cannot use a non-finite one raises
        `NonFiniteEvaluation` (see `evaluate_finite`). A step that ends the run (see `terminate`)
        without moving returns the very ``x`` it was given: it then counts as no iteration.
        """
        raise NotImplementedError

    def terminate(self, state: S) -> ReturnCode | None:
        """After a step: a return code to end the run (convergence, failure), or None."""
        return None


#: The traits of the first-order family: one value-and-gradient call per step, no test that
#: trusts exact values, bounds by projection.
FIRST_ORDER_TRAITS = Traits(
    single_call_per_step=True,
    commits_state_per_step=False,
    tolerates_stochastic_loss=True,
    requires_gradient=True,
    supports_bounds=True,
    requires_bounds=False,
    supports_callback=True,
    uses_gradient=True,
    requires_hessian=False,
    supports_constraints=False,
    requires_constraints=False,
    supports_checkpoint=True,
)


class FirstOrderAlgorithm(StepwiseAlgorithm[S]):
    """One value-and-gradient evaluation per step followed by a pure `update`.

    With bounds, the updated iterate is projected onto the box ``[lb, ub]``.
    """

    def update(self, grad: np.ndarray, x: np.ndarray, state: S) -> tuple[np.ndarray, S]:
        """The iterate after one update with gradient ``grad`` at ``x``, and the new state."""
        raise NotImplementedError

    def step(self, evaluate: Evaluate, x: np.ndarray, state: S, box: Box | None) -> tuple[np.ndarray, S, float]:
        loss, grad = evaluate(x)  # evaluate_finite, inlined: the driver's hot path
        if not (math.isfinite(loss) and _all_true(np.isfinite(grad))):
            raise NonFiniteEvaluation(x, loss)
        x_new, state = self.update(grad, x, state)
        if box is not None:
            # A new iterate is the algorithm's own until returned: it is projected in place.
            x_new = np.clip(x_new, box[0], box[1], out=None if x_new is x else x_new)
        return x_new, state, loss


class Monitor(Protocol):
    """The driver's bookkeeping, as a whole-run algorithm reports to it."""

    maxiters: int | None
    iterations: int

    def after_step(self, x: np.ndarray, loss: float) -> ReturnCode | None:
        """Record one completed iteration; a return code means: stop now, for this reason."""
        ...

    def out_of_time(self) -> bool:
        """Whether the time budget (maxtime) is used up."""
        ...


@dataclass(frozen=True)
class RunResult:
    """What a whole-run algorithm hands back to ``solve``.

    Attributes:
        x: The final flat iterate.
        loss: The objective at ``x`` in the minimisation sense.
        retcode: Why the run ended.
        message: The backend's own explanation.
        original: The backend's raw result.
    """

    x: np.ndarray
    loss: float
    retcode: ReturnCode
    message: str
    original: Any


class WholeRunAlgorithm(Algorithm):
    """An algorithm that runs an external solver from start to end."""

    def run(self, objective: Objective, monitor: Monitor) -> RunResult:
        """Minimise ``objective`` from ``objective.x0``, calling ``monitor.after_step`` each iteration."""
        raise NotImplementedError


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def check_range(
    name: str, value: Any, lo: float, hi: float, *, closed_lo: bool = False, closed_hi: bool = True
) -> None:
    """Require a real ``value`` in the interval from `lo` to `hi` (ends closed as asked)."""
    v = _real(name, value)
    above = v >= lo if closed_lo else v > lo
    below = v <= hi if closed_hi else v < hi
    if not (above and below):
        interval = f"{'[' if closed_lo else '('}{lo:g}, {hi:g}{']' if closed_hi else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    """Require a finite real ``value > 0``; the error echoes the bad value."""
    if not (math.isfinite(_real(name, value)) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    """Require a finite real ``value >= 0``; the error echoes the bad value."""
    if not (math.isfinite(_real(name, value)) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    """Require an integer ``value >= 1``; the error echoes the bad value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_fraction(name: str, value: Any) -> None:
    """Require a real ``0 <= value < 1``; the error echoes the bad value."""
    if not 0 <= _real(name, value) < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_rate(name: str, value: Any) -> None:
    """Require a step size: a finite real ``value > 0``, or a schedule ``value(step) -> float``."""
    if callable(value) and not isinstance(value, type):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number or a schedule lr(step) -> float, got {value!r}")
    check_positive(name, value)


def rate_at(name: str, value: Any, step: int) -> float:
    """The step size for update number `step` (0 for the first): `value` itself, or `value(step)`.

    A schedule's value must be a finite number >= 0; anything else is a ValueError naming it.
    """
    if not callable(value):
        return float(value)
    out = value(step)
    if isinstance(out, bool) or not isinstance(out, numbers.Real) or not (math.isfinite(out) and float(out) >= 0):
        raise ValueError(
            f"the schedule {name}={value!r} returned {out!r} at step {step}; it must return a finite number >= 0"
        )
    return float(out)
