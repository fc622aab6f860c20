"""BFGS through ``scipy.optimize.minimize(method="BFGS")``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.optimize

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Monitor, RunResult, WholeRunAlgorithm, check_positive

if TYPE_CHECKING:
    from .._objective import Objective

__all__ = ["BFGS"]

# scipy's BFGS status codes: 0 converged, 1 maxiter, 2 precision loss (line search failed),
# 3 NaN encountered.
_STATUS = {0: ReturnCode.SUCCESS, 1: ReturnCode.MAXITERS, 2: ReturnCode.FAILURE, 3: ReturnCode.NONFINITE}


@register
@dataclass(frozen=True, kw_only=True)
class BFGS(WholeRunAlgorithm):
    r"""Quasi-Newton BFGS with a Wolfe line search, run by ``scipy.optimize.minimize``.

    Builds an approximation :math:`H_k` of the inverse Hessian from gradient differences and
    steps along :math:`-H_k \nabla f(u_k)` with a step length satisfying the strong Wolfe
    conditions. Value and gradient come from one evaluation (``jac=True``). It stops with
    ``SUCCESS`` when :math:`\|\nabla f(u_k)\|_\infty \le` ``gtol``.

    Args:
        gtol: Gradient-norm tolerance for convergence, > 0.

    Traits:
        requires_gradient and supports_callback. Not ``single_call_per_step`` (the line search
        calls the objective 1 to 25 times per step) and not ``tolerates_stochastic_loss`` (the
        Wolfe conditions compare exact values), so stateful and stochastic problems are refused.
        No bounds.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - p) ** 2), np.zeros(3),
        ...                               p=np.arange(3.0))
        >>> sol = om.solve(prob, om.BFGS())
        >>> sol.retcode.name, bool(np.allclose(sol.u, [0.0, 1.0, 2.0]))
        ('SUCCESS', True)

    References:
        Nocedal & Wright (2006), "Numerical Optimization", 2nd ed., Springer, algorithm 6.1.
    """

    gtol: float = 1e-5

    traits: ClassVar[Traits] = Traits(
        single_call_per_step=False,
        commits_state_per_step=True,
        tolerates_stochastic_loss=False,
        requires_gradient=True,
        supports_bounds=False,
        requires_bounds=False,
        supports_callback=True,
    )

    def __post_init__(self) -> None:
        check_positive("gtol", self.gtol)

    def run(self, objective: Objective, monitor: Monitor) -> RunResult:
        stopped: list[ReturnCode] = []

        def callback(intermediate_result: Any) -> None:
            code = monitor.after_step(intermediate_result.x, intermediate_result.fun)
            if code is not None:
                stopped.append(code)
                raise StopIteration

        options: dict[str, Any] = {"gtol": self.gtol}
        if monitor.maxiters is not None:
            options["maxiter"] = monitor.maxiters
        res = scipy.optimize.minimize(
            objective.value_and_grad,
            objective.x0,
            jac=True,
            method="BFGS",
            options=options,
            callback=callback,
        )
        if stopped:
            return RunResult(res.x, float(res.fun), stopped[0], stopped[0].message, res)
        if not (np.isfinite(res.fun) and np.isfinite(res.jac).all()):
            # scipy calls a line search that ran into -inf or NaN a loss of precision (status 2).
            return RunResult(res.x, float(res.fun), ReturnCode.NONFINITE, str(res.message), res)
        return RunResult(res.x, float(res.fun), _STATUS.get(res.status, ReturnCode.FAILURE), str(res.message), res)
