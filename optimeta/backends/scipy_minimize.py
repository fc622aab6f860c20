"""scipy's methods as whole-run algorithms: one adapter (`ScipyAdapter`), one class per method.

``scipy.optimize.minimize`` methods go through `ScipyMinimize`; the global optimisers call
their own scipy function through the same adapter.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.optimize

from .._constraints import on_free_coordinates, to_scipy
from .._quiet import silenced
from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Monitor, RunResult, WholeRunAlgorithm, check_positive, check_positive_int

if TYPE_CHECKING:
    from .._objective import Objective

__all__ = ["C_INT_MAX", "LBFGS", "NonFiniteRun", "ScipyAdapter", "ScipyCalls", "ScipyMinimize", "c_int"]

#: scipy's notes on how a run went, which its return code and message report.
_SCIPY_NOTES = (
    ("delta_grad == 0.0", UserWarning),
    ("differential evolution didn't find a solution", UserWarning),
)

#: The largest count scipy's compiled methods take (a C ``int``: SLSQP, COBYLA, DIRECT).
C_INT_MAX = 2**31 - 1


def c_int(count: int) -> int:
    """An iteration or evaluation budget as scipy's compiled code can take it: at most `C_INT_MAX`.

    A larger budget (``maxiters=2**63``) is one no run reaches; passed as it is, it overflows
    (SLSQP stops after 0 iterations, COBYLA and DIRECT raise ``OverflowError``).
    """
    return min(int(count), C_INT_MAX)


class _Stop(Exception):
    """Ends scipy's run from inside a callback or an evaluation, for the given reason."""

    def __init__(self, code: ReturnCode, message: str | None = None) -> None:
        super().__init__(code.message if message is None else message)
        self.code = code
        self.message = code.message if message is None else message


class _UserError(Exception):
    """Carries an exception raised by the user's objective through scipy, which would otherwise
    turn some into its own (differential evolution's map wrapper) or match their messages."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class NonFiniteRun(Exception):
    """Raised by a method's `ScipyAdapter.call` when scipy gave up on non-finite values."""


class _NonFiniteSecondDerivatives(Exception):
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
            raise _Stop(ReturnCode.NONFINITE)
        self.seen[x.tobytes()] = (loss, finite)
        if finite and (self.best is None or loss < self.best[0]):
            self.best = (loss, x.copy())
        # A method that goes on evaluating after its callback stopped it (differential
        # evolution's polish) is timed at every evaluation as well.
        if self.limited and (self.timed or self.stopped) and self.monitor.out_of_time():
            raise _Stop(ReturnCode.MAXTIME)

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
            raise _Stop(ReturnCode.MAXITERS, f"the evaluation limit was reached (maxfun={self.maxfun})")
        self.evaluations += 1

    def value(self, x: np.ndarray) -> float:
        x = self._inside(x)
        self._count()
        try:
            loss = self.objective.value(x)
        except Exception as exc:
            raise _UserError(exc) from exc
        self._record(x, loss, math.isfinite(loss))
        return loss

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        x = self._inside(x)
        self._count()
        try:
            loss, grad = self.objective.value_and_grad(x)
        except Exception as exc:
            raise _UserError(exc) from exc
        self._record(x, loss, bool(np.isfinite(loss) and np.isfinite(grad).all()))
        return loss, (grad if self.fixed is None else grad[~self.fixed])

    def grad(self, x: np.ndarray) -> np.ndarray:
        """The gradient alone, for scipy interfaces that ask for it apart from the value."""
        return self.value_and_grad(x)[1]

    @staticmethod
    def _checked(second: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
        # A product with a non-finite vector is scipy's own doing (its Lanczos near a minimum).
        if not np.isfinite(second).all() and (v is None or np.isfinite(v).all()):
            raise _NonFiniteSecondDerivatives
        return second

    def hessp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        try:
            product = self.objective.hessp(x, v)
        except Exception as exc:
            raise _UserError(exc) from exc
        return self._checked(product, v)

    def hess(self, x: np.ndarray) -> np.ndarray:
        try:
            matrix = self.objective.hessian(x)
        except Exception as exc:
            raise _UserError(exc) from exc
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
            raise _Stop(self.stopped[0])

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


class ScipyAdapter(WholeRunAlgorithm):
    """The whole-run adapter every scipy method shares: ``scipy.optimize.minimize`` methods and
    the global optimisers alike.

    A method says how scipy is called (`call`, with the functions of `ScipyCalls`); the adapter
    reports every iteration to the monitor through scipy's callback, which stops the run; maps
    scipy's status onto `ReturnCode`; and reports the returned point with the value computed
    there. A non-finite value at the returned point is ``NONFINITE`` whatever scipy says. A
    method without per-iteration callbacks (``supports_callback=False``) takes its iteration
    budget as its own option, reports scipy's ``nit``, and is stopped by ``maxtime`` at the first
    evaluation past it, at the best point seen; so is a method that goes on evaluating after
    its callback stopped it (differential evolution's polish), at its last iterate.

    ``f`` is never called outside the bounds: a point scipy tries past them (methods that treat
    bounds as constraints they may violate on the way, such as COBYLA and trust-constr, or a
    rounding error of a rescaling) is evaluated, and reported, at the nearest point of the box.

    Class data:
        statuses: scipy's status codes for the method, mapped onto return codes (others:
            SUCCESS when scipy reports success, FAILURE otherwise).
        legacy_callback: The method calls ``callback(xk)``, not ``callback(intermediate_result)``.
        drops_fixed: The method cannot take a coordinate fixed by the bounds (lb == ub):
            scipy is given the free coordinates alone (`ScipyCalls.drop_fixed`).
        evaluates_start: The method may never evaluate ``u0`` (it samples the box, or rescales
            ``u0``): the adapter evaluates it first (with the gradient, when the method uses
            one), so that a run not finite at ``u0`` ends there, after one call, as every
            other run does.
    """

    statuses: ClassVar[dict[int, ReturnCode]] = {}
    legacy_callback: ClassVar[bool] = False
    drops_fixed: ClassVar[bool] = False
    evaluates_start: ClassVar[bool] = False

    def evaluation_limit(self, n: int) -> int | None:
        """The method's own limit on evaluations for `n` variables (its ``maxfun``), or None.

        Raises:
            ValueError: When scipy could not hold the limit (before any call of f).
        """
        return None

    @abc.abstractmethod
    def call(self, calls: ScipyCalls, monitor: Monitor) -> Any:
        """Run scipy's method; return its ``OptimizeResult``."""
        raise NotImplementedError

    def retcode(self, res: Any, monitor: Monitor) -> ReturnCode:
        """The return code for scipy's result of a run that ran to its own end."""
        return self.statuses.get(res.get("status"), ReturnCode.SUCCESS if res.success else ReturnCode.FAILURE)

    def run(self, objective: Objective, monitor: Monitor) -> RunResult:
        reports = self.traits.supports_callback
        calls = ScipyCalls(objective, monitor, timed=not reports, maxfun=self.evaluation_limit(objective.x0.size))
        if self.drops_fixed:
            calls.drop_fixed()
        lb, ub = objective.lb, objective.ub
        if (
            lb is not None
            and ub is not None
            and (np.array_equal(lb, ub) or (calls.fixed is not None and calls.fixed.all()))
        ):
            # Every coordinate fixed by its bounds: the box is one point, which some scipy
            # methods refuse (or crash on); it is the answer, with its value.
            x = calls.full(np.empty(0)) if calls.fixed is not None else lb.copy()
            loss, finite = calls.loss_at(x)
            code = ReturnCode.SUCCESS if finite else ReturnCode.NONFINITE
            message = "the bounds fix every coordinate (lb == ub): the box's one point" if finite else code.message
            point = scipy.optimize.OptimizeResult(
                x=x, fun=loss, success=finite, status=0, message=message, nit=0, nfev=objective.fevals
            )
            return RunResult(x, loss, code, message, point)
        res: Any = None
        overflow = ""
        # Non-finite trial values are reported through the return code, not as warnings; and
        # scipy's notes on how the run went, which the return code and message report:
        # trust-constr's quasi-Newton update without curvature (a linear constraint), and
        # differential evolution without a feasible point (it polishes the least infeasible).
        with np.errstate(all="ignore"), silenced(*_SCIPY_NOTES):
            try:
                if self.evaluates_start:
                    (calls.value_and_grad if self.traits.requires_gradient else calls.value)(calls.x0)
                res = self.call(calls, monitor)
            except _UserError as wrapped:
                raise wrapped.error from None
            except _Stop as stop:
                if not calls.stopped:
                    calls.stopped.append(stop.code)
                    calls.stop_message = stop.message
            except NonFiniteRun:
                calls.stopped.append(ReturnCode.NONFINITE)
            except _NonFiniteSecondDerivatives:
                overflow = "the second derivatives (a Hessian or a Hessian-vector product) were not finite"
            except ValueError as exc:
                # scipy's own check on a matrix it built from overflowing second derivatives.
                if "infs or NaNs" not in str(exc):
                    raise
                overflow = f"scipy's {type(self).__name__} met infs or NaNs in its own arithmetic"
        if not reports and res is not None:
            monitor.iterations = int(res.get("nit", 0))
        if res is None:
            # scipy returned nothing: a callback or the time budget stopped it, or it could not
            # go on. The run ends at its last iterate (with callbacks) or its best point (without).
            if calls.last:
                x = calls.last[0]
            elif calls.best is not None:
                x = calls.best[1]
            else:
                x = objective.x0
            loss, finite = calls.loss_at(x)
            if overflow:
                code, message = ReturnCode.FAILURE, f"{overflow}; stopped at the last iterate"
            else:
                code, message = calls.stopped[0], calls.stop_message or calls.stopped[0].message
            if not finite:
                code, message = ReturnCode.NONFINITE, ReturnCode.NONFINITE.message
                if calls.best is not None:  # the best finite point seen, with its value
                    loss, x = calls.best[0], calls.best[1]
            res = scipy.optimize.OptimizeResult(
                x=x, fun=loss, success=False, status=-1, message=message, nit=monitor.iterations, nfev=objective.fevals
            )
            return RunResult(x, loss, code, message, res)
        message = res.message if isinstance(res.message, str) else "; ".join(map(str, res.message))
        if res.get("x") is not None:
            res.x = calls.full(res.x)
        if res.get("x") is None or np.size(res.x) != objective.x0.size:
            # scipy found no point to return (SHGO without a minimiser): the best one evaluated.
            x = calls.best[1] if calls.best is not None else objective.x0
            loss, finite = calls.loss_at(x)
            if not finite:
                return RunResult(x, loss, ReturnCode.NONFINITE, ReturnCode.NONFINITE.message, res)
            return RunResult(x, loss, ReturnCode.FAILURE, f"{message}; the best point evaluated", res)
        x = np.asarray(res.x, dtype=np.float64)
        if objective.lb is not None and objective.ub is not None and self.traits.supports_bounds:
            # Derivative-free methods may end a rounding error outside the box (COBYLA).
            x = np.clip(x, objective.lb, objective.ub)
        loss, finite = calls.loss_at(x)
        if not finite:  # whatever stopped the run: SUCCESS or a budget is never reported there
            if calls.best is not None:  # the best finite point seen, with its value
                x = calls.best[1]
                loss = calls.best[0]
            return RunResult(x, loss, ReturnCode.NONFINITE, ReturnCode.NONFINITE.message, res)
        if calls.stopped:
            return RunResult(x, loss, calls.stopped[0], calls.stop_message or calls.stopped[0].message, res)
        code = self.retcode(res, monitor)
        if code is not ReturnCode.SUCCESS and res.success:
            message = code.message  # scipy's "terminated successfully" would contradict the code
        return RunResult(x, loss, code, message, res)


class ScipyMinimize(ScipyAdapter):
    """A ``scipy.optimize.minimize`` method through `ScipyAdapter`.

    The objective gives value and gradient from one evaluation (``jac=True``), or the value
    alone for a derivative-free method, plus Hessian-vector products or Hessians where the
    method needs them; bounds and constraints are passed when the method supports them.

    Class data:
        method: scipy's name for the method.
        derivatives: What the method is given: "none" (values only), "gradient", "hessp"
            (Hessian-vector products too) or "hess" (full Hessians too).
    """

    method: ClassVar[str]
    derivatives: ClassVar[str] = "gradient"

    @abc.abstractmethod
    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        """The method's ``options=`` for scipy, for `n` variables."""
        raise NotImplementedError

    @staticmethod
    def maxiter(monitor: Monitor) -> dict[str, Any]:
        """scipy's ``maxiter`` option from the run's budget (none without one)."""
        return {} if monitor.maxiters is None else {"maxiter": monitor.maxiters}

    def call(self, calls: ScipyCalls, monitor: Monitor) -> Any:
        kwargs: dict[str, Any] = {"fun": calls.value_and_grad, "jac": True}
        if self.derivatives == "none":
            kwargs = {"fun": calls.value}
        elif self.derivatives == "hessp":
            kwargs["hessp"] = calls.hessp
        elif self.derivatives == "hess":
            kwargs["hess"] = calls.hess
        if self.traits.supports_bounds and calls.bounds is not None:
            kwargs["bounds"] = calls.bounds
        if self.traits.supports_constraints and calls.constraints:
            kwargs["constraints"] = calls.constraints
        options = {
            key: c_int(value) if isinstance(value, int) and not isinstance(value, bool) else value
            for key, value in self.options(monitor, calls.objective.x0.size).items()
        }
        return scipy.optimize.minimize(
            x0=calls.x0,
            method=self.method,
            options=options,
            callback=calls.legacy if self.legacy_callback else calls.callback,
            **kwargs,
        )


@register
@dataclass(frozen=True, kw_only=True)
class LBFGS(ScipyMinimize):
    r"""Limited-memory BFGS with box constraints (L-BFGS-B), run by ``scipy.optimize.minimize``.

    Keeps the last ``memory`` curvature pairs instead of a dense inverse Hessian, and handles
    ``lb <= u <= ub`` by projected search (Byrd, Lu, Nocedal & Zhu, 1995). It stops with
    ``SUCCESS`` when the projected gradient's largest component is at most ``gtol`` or the
    relative reduction of f is at most ``ftol``.

    Args:
        memory: Curvature pairs kept (scipy's ``maxcor``), >= 1.
        gtol: Projected-gradient tolerance, > 0.
        ftol: Relative reduction of f at which to stop, > 0.

    Traits:
        commits_state_per_step (the state returned at each accepted iterate is committed once
        per iteration; trial calls share the snapshot), requires_gradient, supports_bounds,
        supports_callback. Not ``single_call_per_step`` and not ``tolerates_stochastic_loss``
        (its line search compares exact values).

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 2.0) ** 2), np.zeros(2),
        ...                               bounds=(np.zeros(2), np.ones(2)))
        >>> sol = om.solve(prob, om.LBFGS())
        >>> sol.retcode.name, sol.u
        ('SUCCESS', array([1., 1.]))

    References:
        Byrd, Lu, Nocedal & Zhu (1995), "A Limited Memory Algorithm for Bound Constrained
        Optimization", SIAM J. Sci. Comput. 16(5).
    """

    memory: int = 10
    gtol: float = 1e-5
    ftol: float = 2.220446049250313e-09

    method: ClassVar[str] = "L-BFGS-B"
    default_for: ClassVar[str] = "bounded_or_large"  # om.default_algorithm with bounds or many variables
    # 0 converged; 1 too many iterations or evaluations; 2 abnormal end of the line search.
    statuses: ClassVar[dict[int, ReturnCode]] = {0: ReturnCode.SUCCESS, 1: ReturnCode.MAXITERS, 2: ReturnCode.FAILURE}
    traits: ClassVar[Traits] = Traits(
        single_call_per_step=False,
        commits_state_per_step=True,
        tolerates_stochastic_loss=False,
        requires_gradient=True,
        supports_bounds=True,
        requires_bounds=False,
        supports_callback=True,
        requires_hessian=False,
        supports_constraints=False,
        supports_checkpoint=False,
        has_convergence_test=True,
        supports_minibatches=False,
    )

    def __post_init__(self) -> None:
        check_positive_int("memory", self.memory)
        check_positive("gtol", self.gtol)
        check_positive("ftol", self.ftol)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        return {"maxcor": self.memory, "gtol": self.gtol, "ftol": self.ftol, **self.maxiter(monitor)}
