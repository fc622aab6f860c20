"""scipy's ``scipy.optimize.minimize`` methods as whole-run algorithms: `ScipyMinimize`, and
`LBFGS`, the default for bounded or large problems.

Every scipy method goes through one adapter, `ScipyAdapter` (``_scipy_adapter``), with the
objective as scipy's functions see it, `ScipyCalls` (``_scipy_calls``); this module re-exports
them, with `NonFiniteRun` and `c_int`, for the method families (``scipy_gradient``,
``scipy_newton``, ``scipy_derivative_free``, ``scipy_constrained``, ``scipy_global``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import scipy.optimize

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Monitor
from ._checks import check_positive, check_positive_int
from ._scipy_adapter import ScipyAdapter
from ._scipy_calls import C_INT_MAX, NonFiniteRun, ScipyCalls, c_int

__all__ = ["C_INT_MAX", "LBFGS", "NonFiniteRun", "ScipyAdapter", "ScipyCalls", "ScipyMinimize", "c_int"]


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
