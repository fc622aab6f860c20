"""`ScipyAdapter`: the whole-run adapter every scipy method shares, from the call of scipy to
the run's result.

A method says how scipy is called (`ScipyAdapter.call`, with the functions of `ScipyCalls`);
the adapter runs it with scipy's notes and floating-point warnings silenced, and maps what came
back onto a `RunResult`: a box of one point, a run that scipy returned (`ReturnCode` from its
status), or one stopped from inside (a budget, the callback, a non-finite value), always with
the value computed at the point reported. ``scipy.optimize.minimize`` methods go through
`ScipyMinimize` (``scipy_minimize``); the global optimisers call their own scipy function.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.optimize

from .._quiet import silenced
from .._solution import ReturnCode
from ._base import Monitor, RunResult, WholeRunAlgorithm
from ._scipy_calls import NonFiniteRun, NonFiniteSecondDerivatives, ScipyCalls, ScipyStop, UserError

if TYPE_CHECKING:
    from .._objective import Objective

__all__ = ["ScipyAdapter"]

#: scipy's notes on how a run went, which its return code and message report.
_SCIPY_NOTES = (
    ("delta_grad == 0.0", UserWarning),
    ("differential evolution didn't find a solution", UserWarning),
)


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
            return _one_point(calls, calls.full(np.empty(0)) if calls.fixed is not None else lb.copy())
        res, overflow = self._scipy(calls, monitor)
        if not reports and res is not None:
            monitor.iterations = int(res.get("nit", 0))
        if res is None:
            return _stopped(calls, monitor, overflow)
        return self._returned(res, calls, monitor)

    def _scipy(self, calls: ScipyCalls, monitor: Monitor) -> tuple[Any, str]:
        """scipy's result (None when it returned nothing) and, for a run that second derivatives
        or scipy's own arithmetic could not go on with, why."""
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
            except UserError as wrapped:
                raise wrapped.error from None
            except ScipyStop as stop:
                if not calls.stopped:
                    calls.stopped.append(stop.code)
                    calls.stop_message = stop.message
            except NonFiniteRun:
                calls.stopped.append(ReturnCode.NONFINITE)
            except NonFiniteSecondDerivatives:
                overflow = "the second derivatives (a Hessian or a Hessian-vector product) were not finite"
            except ValueError as exc:
                # scipy's own check on a matrix it built from overflowing second derivatives.
                if "infs or NaNs" not in str(exc):
                    raise
                overflow = f"scipy's {type(self).__name__} met infs or NaNs in its own arithmetic"
        return res, overflow

    def _returned(self, res: Any, calls: ScipyCalls, monitor: Monitor) -> RunResult:
        """The result of a run that scipy returned, at its point (or the best one evaluated)."""
        objective = calls.objective
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


def _one_point(calls: ScipyCalls, x: np.ndarray) -> RunResult:
    """The run on a box that the bounds shrink to the one point `x`: that point, with its value."""
    loss, finite = calls.loss_at(x)
    code = ReturnCode.SUCCESS if finite else ReturnCode.NONFINITE
    message = "the bounds fix every coordinate (lb == ub): the box's one point" if finite else code.message
    point = scipy.optimize.OptimizeResult(
        x=x, fun=loss, success=finite, status=0, message=message, nit=0, nfev=calls.objective.fevals
    )
    return RunResult(x, loss, code, message, point)


def _stopped(calls: ScipyCalls, monitor: Monitor, overflow: str) -> RunResult:
    """The result of a run that scipy returned nothing of: a callback or the time budget stopped
    it, or it could not go on. The run ends at its last iterate (with callbacks) or its best
    point (without); at the best finite point seen when that one is not finite."""
    if calls.last:
        x = calls.last[0]
    elif calls.best is not None:
        x = calls.best[1]
    else:
        x = calls.objective.x0
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
        x=x, fun=loss, success=False, status=-1, message=message, nit=monitor.iterations, nfev=calls.objective.fevals
    )
    return RunResult(x, loss, code, message, res)
