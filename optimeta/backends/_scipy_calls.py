"""The objective as scipy's functions see it (`ScipyCalls`), and the signals that end a scipy run
from inside one of them.

A scipy method's run calls back into optimeta through `ScipyCalls`: values, gradients, second
derivatives and the per-iteration callbacks, on the flat vector. Those calls stop the run by
raising `ScipyStop` (a budget, the callback) or `NonFiniteSecondDerivatives`, and carry the
user's own exceptions through scipy in a `UserError`; `ScipyAdapter` (``_scipy_adapter``) turns
each into the run's result. `c_int` caps a budget for scipy's compiled methods.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.optimize

from .._constraints import on_free_coordinates, to_scipy
from .._solution import ReturnCode

if TYPE_CHECKING:
    from .._objective import Objective
    from ._base import Monitor

__all__ = [
    "C_INT_MAX",
    "NonFiniteRun",
    "NonFiniteSecondDerivatives",
    "ScipyCalls",
    "ScipyStop",
    "UserError",
    "c_int",
]

#: The largest count scipy's compiled methods take (a C ``int``: SLSQP, COBYLA, DIRECT).
C_INT_MAX = 2**31 - 1


def c_int(count: int) -> int:
    """An iteration or evaluation budget as scipy's compiled code can take it: at most `C_INT_MAX`.

    A larger budget (``maxiters=2**63``) is one no run reaches; passed as it is, it overflows
    (SLSQP stops after 0 iterations, COBYLA and DIRECT raise ``OverflowError``).
    """
    return min(int(count), C_INT_MAX)


class ScipyStop(Exception):
    """Ends scipy's run from inside a callback or an evaluation, for the given reason."""

    def __init__(self, code: ReturnCode, message: str | None = None) -> None:
        super().__init__(code.message if message is None else message)
        self.code = code
        self.message = code.message if message is None else message


class UserError(Exception):
    """Carries an exception raised by the user's objective through scipy, which would otherwise
    turn some into its own (differential evolution's map wrapper) or match their messages."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class NonFiniteRun(Exception):
    """Raised by a method's `ScipyAdapter.call` when scipy gave up on non-finite values."""


class NonFiniteSecondDerivatives(Exception):
    """A Hessian or Hessian-vector product was not finite: scipy cannot go on from there."""


class ScipyCalls:
    """The objective as scipy's functions see it, for one run: values, gradients, second
    derivatives, the callbacks, bounds and constraints, all on the flat vector.

    Every evaluated point's value is kept (by the point's bytes), so the run's result is always
    reported with the value computed at that very point; the best finite point is kept too, for
    a method stopped (by its time budget or evaluation limit) before it returned anything.

    The run's limits are checked at every evaluation: `maxfun`, the method's own evaluation
    limit, which no evaluation passes (scipy finishes its iteration past its own), and, for a
    method without callbacks (`timed`) or one that goes on after its callback stopped it (a
    polish), ``maxtime``: scipy is stopped at the first evaluation past it.
    """

    def __init__(self, objective: Objective, monitor: Monitor, *, timed: bool, maxfun: int | None = None) -> None:
        self.objective = objective
        self.monitor = monitor
        self.timed = timed  # maxtime is checked at every evaluation (a method without callbacks)
        self.limited = True  # the time budget and `maxfun` apply (not to the result's own value)
        self.maxfun = maxfun
        self.evaluations = 0
        self.stopped: list[ReturnCode] = []
        self.stop_message: str | None = None  # why the run was stopped, when not the code's own message
        self.last: list[np.ndarray] = []
        self.seen: dict[bytes, tuple[float, bool]] = {}
        self.best: tuple[float, np.ndarray] | None = None
        self.bounds = None
        self.fixed: np.ndarray | None = None  # the coordinates scipy is not given (`drop_fixed`)
        self.start = objective.x0  # where those coordinates stay
        if objective.lb is not None and objective.ub is not None:
            self.bounds = scipy.optimize.Bounds(objective.lb, objective.ub)
        self.constraints = to_scipy(objective.constraints, objective.layout, objective.p)

    def _record(self, x: np.ndarray, loss: float, finite: bool) -> None:
        if not finite and not self.seen and x.tobytes() == self.objective.x0.tobytes():
            # Not finite at u0: the run ends there at once, as a step-wise one does.
            self.seen[x.tobytes()] = (loss, finite)
            self.last[:] = [x.copy()]
            raise ScipyStop(ReturnCode.NONFINITE)
        self.seen[x.tobytes()] = (loss, finite)
        if finite and (self.best is None or loss < self.best[0]):
            self.best = (loss, x.copy())
        # A method that goes on evaluating after its callback stopped it (differential
        # evolution's polish) is timed at every evaluation as well.
        if self.limited and (self.timed or self.stopped) and self.monitor.out_of_time():
            raise ScipyStop(ReturnCode.MAXTIME)

    def drop_fixed(self) -> None:
        """Hand scipy the free coordinates alone, for a method that cannot take a coordinate
        its bounds fix: `x0`, the bounds, the gradient and the constraints lose the fixed ones,
        which stay at their start. A coordinate counts as fixed when its box is narrower than
        the bounds' rounding (``10 n eps`` times their largest magnitude, as scipy's COBYLA
        measures it)."""
        lb, ub = self.objective.lb, self.objective.ub
        if lb is None or ub is None:
            return
        magnitude = max(1.0, np.abs(lb[np.isfinite(lb)]).max(initial=1.0), np.abs(ub[np.isfinite(ub)]).max(initial=1.0))
        fixed = (lb == ub) | (ub - lb < 10.0 * np.finfo(np.float64).eps * lb.size * magnitude)
        if not fixed.any():
            return
        free = ~fixed
        self.fixed = fixed
        self.start = np.clip(self.objective.x0, lb, ub)
        self.bounds = scipy.optimize.Bounds(lb[free], ub[free])
        self.constraints = [on_free_coordinates(c, self.full, free, self.start[fixed]) for c in self.constraints]

    @property
    def x0(self) -> np.ndarray:
        """The starting point as scipy sees it."""
        return self.objective.x0 if self.fixed is None else self.start[~self.fixed]

    def full(self, x: np.ndarray) -> np.ndarray:
        """A point of scipy's with every coordinate: one of the free coordinates alone (a
        method given them by `drop_fixed`) gets the fixed ones back."""
        x = np.asarray(x, dtype=np.float64)
        if self.fixed is not None and x.size == np.count_nonzero(~self.fixed) != self.fixed.size:
            whole: np.ndarray = self.start.copy()
            whole[~self.fixed] = x
            return whole
        return x

    def _inside(self, x: np.ndarray) -> np.ndarray:
        x = self.full(x)
        if self.bounds is not None:
            x = np.clip(x, self.objective.lb, self.objective.ub)
        return x

    def _count(self) -> None:
        # The method's evaluation limit is a hard one: scipy's methods finish an iteration (or
        # a line search) past theirs.
        if self.maxfun is not None and self.limited and self.evaluations >= self.maxfun:
            raise ScipyStop(ReturnCode.MAXITERS, f"the evaluation limit was reached (maxfun={self.maxfun})")
        self.evaluations += 1

    def value(self, x: np.ndarray) -> float:
        x = self._inside(x)
        self._count()
        try:
            loss = self.objective.value(x)
        except Exception as exc:
            raise UserError(exc) from exc
        self._record(x, loss, math.isfinite(loss))
        return loss

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        x = self._inside(x)
        self._count()
        try:
            loss, grad = self.objective.value_and_grad(x)
        except Exception as exc:
            raise UserError(exc) from exc
        self._record(x, loss, bool(np.isfinite(loss) and np.isfinite(grad).all()))
        return loss, (grad if self.fixed is None else grad[~self.fixed])

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The gradient alone, for scipy interfaces that ask for it apart from the value."""
        return self.value_and_grad(x)[1]

    @staticmethod
    def _checked(second: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
        # A product with a non-finite vector is scipy's own doing (its Lanczos near a minimum).
        if not np.isfinite(second).all() and (v is None or np.isfinite(v).all()):
            raise NonFiniteSecondDerivatives
        return second

    def hessp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        try:
            product = self.objective.hessp(x, v)
        except Exception as exc:
            raise UserError(exc) from exc
        return self._checked(product, v)

    def hess(self, x: np.ndarray) -> np.ndarray:
        try:
            matrix = self.objective.hessian(x)
        except Exception as exc:
            raise UserError(exc) from exc
        return self._checked(matrix)

    def report(self, x: np.ndarray, loss: float) -> bool:
        """One iteration to the monitor; True when the run must stop."""
        self.last[:] = [np.array(self._inside(x), dtype=np.float64)]
        code = self.monitor.after_step(self.last[0], loss)
        if code is not None:
            self.stopped.append(code)
        return code is not None

    def callback(self, intermediate_result: Any) -> None:
        """scipy's callback with the iteration's result (``x`` and ``fun``)."""
        if self.report(intermediate_result.x, intermediate_result.fun):
            raise StopIteration

    def legacy(self, xk: np.ndarray, *_: Any) -> None:
        """scipy's older callback, ``callback(xk)``: the value comes from the evaluation at xk."""
        x = np.array(self._inside(xk), dtype=np.float64)
        if self.report(x, self.loss_at(x)[0]):
            raise ScipyStop(self.stopped[0])

    def loss_at(self, x: np.ndarray) -> tuple[float, bool]:
        """(value, finite) at x: from the evaluation made there, or a new one."""
        known = self.seen.get(x.tobytes())
        if known is not None:
            return known
        limited, self.limited = self.limited, False  # the result's own value, never cut short
        try:
            loss = self.value(x)
        finally:
            self.limited = limited
        return loss, math.isfinite(loss)
