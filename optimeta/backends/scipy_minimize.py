"""Whole-run algorithms through ``scipy.optimize.minimize``: one adapter, one class per method."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.optimize

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Monitor, RunResult, WholeRunAlgorithm, check_positive, check_positive_int

if TYPE_CHECKING:
    from .._objective import Objective

__all__ = ["LBFGS", "ScipyMinimize"]


class _Stop(Exception):
    """Raised by a legacy-style callback (``callback(xk)``) to end scipy's run."""


class _NonFiniteSecondDerivatives(Exception):
    """A Hessian or Hessian-vector product was not finite: scipy cannot go on from there."""


class ScipyMinimize(WholeRunAlgorithm):
    """The adapter every ``scipy.optimize.minimize`` method shares.

    The wrapped objective gives value and gradient from one evaluation (``jac=True``), or the
    value alone for a derivative-free method, plus Hessian-vector products or Hessians where the
    method needs them; bounds are passed when the method supports them; every iteration is
    reported to the monitor through scipy's callback, which stops the run; scipy's status maps
    onto `ReturnCode`, and a non-finite value at the returned point is ``NONFINITE`` whatever
    scipy says.

    Class data:
        method: scipy's name for the method.
        statuses: scipy's status codes for the method, mapped onto return codes (others:
            SUCCESS when scipy reports success, FAILURE otherwise).
        derivatives: What the method is given: "none" (values only), "gradient", "hessp"
            (Hessian-vector products too) or "hess" (full Hessians too).
        legacy_callback: The method calls ``callback(xk)``, not ``callback(intermediate_result)``.
    """

    method: ClassVar[str]
    statuses: ClassVar[dict[int, ReturnCode]] = {}
    derivatives: ClassVar[str] = "gradient"
    legacy_callback: ClassVar[bool] = False

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        """The method's ``options=`` for scipy, for `n` variables."""
        raise NotImplementedError

    @staticmethod
    def maxiter(monitor: Monitor) -> dict[str, Any]:
        """scipy's ``maxiter`` option from the run's budget (none without one)."""
        return {} if monitor.maxiters is None else {"maxiter": monitor.maxiters}

    def run(self, objective: Objective, monitor: Monitor) -> RunResult:
        stopped: list[ReturnCode] = []
        last: list[np.ndarray] = []
        # The loss at every evaluated point, by the point's bytes: scipy can return a point with
        # the value of a later, rejected trial (L-BFGS-B after an aborted line search).
        seen: dict[bytes, tuple[float, bool]] = {}

        def report(x: np.ndarray, loss: float) -> bool:
            last[:] = [np.array(x, dtype=np.float64)]
            code = monitor.after_step(x, loss)
            if code is not None:
                stopped.append(code)
            return code is not None

        def callback(intermediate_result: Any) -> None:
            if report(intermediate_result.x, intermediate_result.fun):
                raise StopIteration

        def legacy(xk: np.ndarray) -> None:
            x = np.array(xk, dtype=np.float64)
            known = seen.get(x.tobytes())
            if report(x, known[0] if known is not None else value(x)):
                raise _Stop

        def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
            loss, grad = objective.value_and_grad(x)
            seen[x.tobytes()] = (loss, bool(np.isfinite(loss) and np.isfinite(grad).all()))
            return loss, grad

        def value(x: np.ndarray) -> float:
            loss = objective.value(x)
            seen[np.asarray(x, dtype=np.float64).tobytes()] = (loss, math.isfinite(loss))
            return loss

        def checked(second: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
            # A product with a non-finite vector is scipy's own doing (its Lanczos near a minimum).
            if not np.isfinite(second).all() and (v is None or np.isfinite(v).all()):
                raise _NonFiniteSecondDerivatives
            return second

        kwargs: dict[str, Any] = {"fun": value_and_grad, "jac": True}
        if self.derivatives == "none":
            kwargs = {"fun": value}
        elif self.derivatives == "hessp":
            kwargs["hessp"] = lambda x, v: checked(objective.hessp(x, v), v)
        elif self.derivatives == "hess":
            kwargs["hess"] = lambda x: checked(objective.hessian(x))
        if self.traits.supports_bounds and objective.lb is not None and objective.ub is not None:
            kwargs["bounds"] = scipy.optimize.Bounds(objective.lb, objective.ub)
        res: Any = None
        overflow = ""
        with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            # Non-finite trial values are reported through the return code, not as warnings.
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                res = scipy.optimize.minimize(
                    x0=objective.x0,
                    method=self.method,
                    options=self.options(monitor, objective.x0.size),
                    callback=legacy if self.legacy_callback else callback,
                    **kwargs,
                )
            except _Stop:
                pass
            except _NonFiniteSecondDerivatives:
                overflow = "the second derivatives (a Hessian or a Hessian-vector product) were not finite"
            except ValueError as exc:
                # scipy's own check on a matrix it built from overflowing second derivatives.
                if "infs or NaNs" not in str(exc):
                    raise
                overflow = f"scipy's {self.method} met infs or NaNs in its own arithmetic"
        if overflow:
            # scipy cannot go on, and left no result: the run ends at its last iterate, whose value
            # and gradient are finite (a non-finite one would have ended it as NONFINITE).
            x = last[0] if last else objective.x0
            known = seen.get(x.tobytes())
            loss = known[0] if known is not None else value(x)
            message = f"{overflow}; stopped at the last iterate"
            res = scipy.optimize.OptimizeResult(
                x=x, fun=loss, success=False, status=-1, message=message, nit=monitor.iterations, nfev=objective.fevals
            )
            return RunResult(x, loss, ReturnCode.FAILURE, message, res)
        x = last[0] if res is None else np.asarray(res.x, dtype=np.float64)
        known = seen.get(x.tobytes())
        loss, finite = known if known is not None else (value(x), None)
        finite = math.isfinite(loss) if finite is None else finite
        if res is None:  # a legacy-style run stopped by the callback: scipy returned nothing
            res = scipy.optimize.OptimizeResult(
                x=x,
                fun=loss,
                success=False,
                status=-1,
                message=stopped[0].message,
                nit=monitor.iterations,
                nfev=objective.fevals,
            )
        if stopped:
            return RunResult(x, loss, stopped[0], stopped[0].message, res)
        if not finite:
            return RunResult(x, loss, ReturnCode.NONFINITE, ReturnCode.NONFINITE.message, res)
        code = self.statuses.get(res.status, ReturnCode.SUCCESS if res.success else ReturnCode.FAILURE)
        return RunResult(x, loss, code, str(res.message), res)


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
        uses_gradient=True,
        requires_hessian=False,
    )

    def __post_init__(self) -> None:
        check_positive_int("memory", self.memory)
        check_positive("gtol", self.gtol)
        check_positive("ftol", self.ftol)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        return {"maxcor": self.memory, "gtol": self.gtol, "ftol": self.ftol, **self.maxiter(monitor)}
