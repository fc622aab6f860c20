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


class ScipyMinimize(WholeRunAlgorithm):
    """The adapter every ``scipy.optimize.minimize`` method shares.

    The wrapped objective gives value and gradient from one evaluation (``jac=True``); bounds
    are passed when the method supports them; every iteration is reported to the monitor
    through scipy's ``intermediate_result`` callback, which stops the run by raising
    ``StopIteration``; scipy's status maps onto `ReturnCode`, and a non-finite value at the
    returned point is ``NONFINITE`` whatever scipy says.

    Class data:
        method: scipy's name for the method.
        statuses: scipy's status codes for the method, mapped onto return codes.
    """

    method: ClassVar[str]
    statuses: ClassVar[dict[int, ReturnCode]]

    def options(self, monitor: Monitor) -> dict[str, Any]:
        """The method's ``options=`` for scipy."""
        raise NotImplementedError

    def run(self, objective: Objective, monitor: Monitor) -> RunResult:
        stopped: list[ReturnCode] = []

        def callback(intermediate_result: Any) -> None:
            code = monitor.after_step(intermediate_result.x, intermediate_result.fun)
            if code is not None:
                stopped.append(code)
                raise StopIteration

        # The loss at every evaluated point, by the point's hash: scipy can return a point with
        # the value of a later, rejected trial (L-BFGS-B after an aborted line search).
        seen: dict[int, tuple[float, bool]] = {}

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            loss, grad = objective.value_and_grad(x)
            seen[hash(x.tobytes())] = (loss, bool(np.isfinite(loss) and np.isfinite(grad).all()))
            return loss, grad

        bounds = None
        if self.traits.supports_bounds and objective.lb is not None and objective.ub is not None:
            bounds = scipy.optimize.Bounds(objective.lb, objective.ub)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
            # Non-finite trial values are reported through the return code, not as warnings.
            warnings.simplefilter("ignore", RuntimeWarning)
            res = scipy.optimize.minimize(
                fun,
                objective.x0,
                jac=True,
                method=self.method,
                bounds=bounds,
                options=self.options(monitor),
                callback=callback,
            )
        x = np.asarray(res.x, dtype=np.float64)
        loss, finite = seen.get(hash(x.tobytes()), (math.nan, False))
        if hash(x.tobytes()) not in seen:
            loss = objective.value(x)
            finite = math.isfinite(loss)
        if stopped:
            return RunResult(x, loss, stopped[0], stopped[0].message, res)
        if not finite:
            return RunResult(x, loss, ReturnCode.NONFINITE, ReturnCode.NONFINITE.message, res)
        return RunResult(x, loss, self.statuses.get(res.status, ReturnCode.FAILURE), str(res.message), res)


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
    )

    def __post_init__(self) -> None:
        check_positive_int("memory", self.memory)
        check_positive("gtol", self.gtol)
        check_positive("ftol", self.ftol)

    def options(self, monitor: Monitor) -> dict[str, Any]:
        options: dict[str, Any] = {"maxcor": self.memory, "gtol": self.gtol, "ftol": self.ftol}
        if monitor.maxiters is not None:
            options["maxiter"] = monitor.maxiters
        return options
