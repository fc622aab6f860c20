"""Constrained methods of ``scipy.optimize.minimize``: SLSQP and trust-constr with gradients,
COBYLA and COBYQA without.

All four take general constraints (``OptimizationProblem(constraints=...)``, trait
``supports_constraints``) and bounds, and run unconstrained problems as well. The returned point
satisfies the constraints to the method's own tolerance; a run that cannot find a feasible
point ends with FAILURE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Example, Monitor
from ._checks import check_positive
from ._scipy_traits import minimize_traits
from .scipy_minimize import ScipyMinimize

__all__ = ["COBYLA", "COBYQA", "SLSQP", "TrustConstr"]

_EXAMPLE = """
    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> line = om.Constraint(lambda u, p: u[0] + u[1], ub=1.0)      # u0 + u1 <= 1
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2),
        ...                               constraints=[line])
        >>> sol = om.solve(prob, om.{name})
        >>> sol.retcode.name, bool(np.allclose(sol.u, 0.5, atol=1e-4))
        ('SUCCESS', True)
"""


def _uncapped(n: int, maxiters: int | None, default: int) -> int:
    """An evaluation cap for a method whose callback comes once per evaluation or more often:
    scipy's default, raised so that it never ends a run before ``maxiters`` reported steps."""
    return default if maxiters is None else max(default, 4 * (maxiters + n + 2))


def _verdict(statuses: dict[int, ReturnCode], res: Any) -> ReturnCode:
    """scipy's status mapped onto a return code; a status of convergence that scipy itself does
    not call a success (the point found violates the constraints) is FAILURE."""
    code = statuses.get(res.get("status"), ReturnCode.SUCCESS if res.success else ReturnCode.FAILURE)
    return ReturnCode.FAILURE if code is ReturnCode.SUCCESS and not res.success else code


@register
@dataclass(frozen=True, kw_only=True)
class SLSQP(ScipyMinimize):
    __doc__ = (
        r"""Sequential least-squares quadratic programming (Kraft's SLSQP), run by
    ``scipy.optimize.minimize``: quasi-Newton steps on the Lagrangian, each from a
    least-squares QP with the linearised constraints, then a line search on a merit function.

    Args:
        ftol: Stop when the objective changes by at most this between iterations, > 0.

    Traits:
        requires_gradient, supports_bounds, supports_constraints, supports_callback. Not
        commits_state_per_step (its merit line search may end at a point of an earlier
        iteration), not stochastic-tolerant.
    """
        + _EXAMPLE.format(name="SLSQP(ftol=1e-10)")
        + """
    References:
        Kraft (1988), "A software package for sequential quadratic programming", DFVLR-FB 88-28.
    """
    )

    ftol: float = 1e-6

    method: ClassVar[str] = "SLSQP"
    # 9: the iteration limit; the other nonzero modes are failures of the QP or line search.
    statuses: ClassVar[dict[int, ReturnCode]] = {0: ReturnCode.SUCCESS, 9: ReturnCode.MAXITERS}
    traits: ClassVar[Traits] = minimize_traits(bounds=True, constraints=True, commits=False)
    default_for: ClassVar[str] = "constrained"  # om.default_algorithm with general constraints

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (
            # ftol has a narrow window on the catalogue: from 8e-11 up it stops 1.1e-5 short on the
            # Rosenbrock function; from 3e-11 down its line search fails at the boxed parabola's
            # optimum ("Positive directional derivative for linesearch").
            Example("SLSQP", cls(ftol=5e-11)),
        )

    def __post_init__(self) -> None:
        check_positive("ftol", self.ftol)

    def retcode(self, res: Any, monitor: Monitor) -> ReturnCode:
        return _verdict(self.statuses, res)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        # Without maxiters, scipy's limit: 100 iterations.
        return {"ftol": self.ftol, **self.maxiter(monitor)}


@register
@dataclass(frozen=True, kw_only=True)
class TrustConstr(ScipyMinimize):
    __doc__ = (
        r"""scipy's trust-region method for constrained problems (``trust-constr``): an
    equality-constrained SQP trust region, wrapped in an interior-point (barrier) method when
    there are inequalities or bounds. The objective's Hessian is approximated by BFGS updates
    from gradients; a `Constraint`'s Jacobian comes from autograd.

    Args:
        gtol: Tolerance on the Lagrangian's gradient norm, > 0.
        xtol: Tolerance on the trust-region radius, > 0.
        barrier_tol: Barrier parameter at which to stop, > 0.

    Traits:
        requires_gradient, supports_bounds, supports_constraints, supports_callback. Not
        commits_state_per_step (a rejected trust-region step ends where the last one did), not
        stochastic-tolerant.
    """
        + _EXAMPLE.format(name="TrustConstr()").replace("atol=1e-4", "atol=1e-3")
        + """
    References:
        Byrd, Hribar & Nocedal (1999), "An interior point algorithm for large-scale nonlinear
        programming", SIAM J. Optim. 9(4); Conn, Gould & Toint (2000), "Trust Region Methods".
    """
    )

    gtol: float = 1e-8
    xtol: float = 1e-8
    barrier_tol: float = 1e-8

    method: ClassVar[str] = "trust-constr"
    # 0: the iteration or evaluation limit; 1: gtol met; 2: xtol met (converged to a point the
    # radius cannot improve); 3: stopped by the callback (reported as TERMINATED before this).
    statuses: ClassVar[dict[int, ReturnCode]] = {
        0: ReturnCode.MAXITERS,
        1: ReturnCode.SUCCESS,
        2: ReturnCode.SUCCESS,
        3: ReturnCode.TERMINATED,
    }
    traits: ClassVar[Traits] = minimize_traits(bounds=True, constraints=True, commits=False)

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (
            # The interior point reaches an active inequality to 1e-5 only with tolerances this tight.
            Example("TrustConstr", cls(gtol=1e-15, xtol=1e-15, barrier_tol=1e-15)),
        )

    def __post_init__(self) -> None:
        for name in ("gtol", "xtol", "barrier_tol"):
            check_positive(name, getattr(self, name))

    def retcode(self, res: Any, monitor: Monitor) -> ReturnCode:
        return _verdict(self.statuses, res)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        # Without maxiters, scipy's limit: 1000 iterations.
        return {"gtol": self.gtol, "xtol": self.xtol, "barrier_tol": self.barrier_tol, **self.maxiter(monitor)}


@register
@dataclass(frozen=True, kw_only=True)
class COBYLA(ScipyMinimize):
    __doc__ = (
        r"""Constrained optimisation by linear approximations (Powell's COBYLA, scipy's PRIMA
    implementation): linear models of the objective and constraints from values at a simplex,
    inside a shrinking trust region. Derivative-free.

    Args:
        rhobeg: Initial trust-region radius (about a tenth of the expected distance to the
            solution), > 0.
        tol: Final trust-region radius: the accuracy sought in u, > 0, below ``rhobeg``.
        catol: Tolerated constraint violation at the solution, > 0.

    Traits:
        supports_bounds, supports_constraints, supports_callback; no gradient used
        (requires_gradient=False). Not commits_state_per_step, not
        stochastic-tolerant.
    """
        + _EXAMPLE.format(name="COBYLA(tol=1e-8, catol=1e-10)")
        + """
    References:
        Powell (1994), "A direct search optimization method that models the objective and
        constraint functions by linear interpolation"; Zhang (2023), PRIMA.
    """
    )

    rhobeg: float = 1.0
    tol: float = 1e-4
    catol: float = 2e-4

    method: ClassVar[str] = "COBYLA"
    drops_fixed: ClassVar[bool] = True  # scipy's COBYLA drops them itself, then fails when none is left
    # 0: the radius reached tol; 1: a target value was reached; 3: the evaluation limit.
    statuses: ClassVar[dict[int, ReturnCode]] = {0: ReturnCode.SUCCESS, 1: ReturnCode.SUCCESS, 3: ReturnCode.MAXITERS}
    derivatives: ClassVar[str] = "none"
    traits: ClassVar[Traits] = minimize_traits(bounds=True, gradient=False, constraints=True, commits=False)

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("COBYLA", cls(rhobeg=0.1, tol=1e-8, catol=1e-10)),)

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> COBYLA:
        # scipy's defaults but for the constraint tolerance, tightened to COBYQA's.
        return cls(catol=1e-8)

    def __post_init__(self) -> None:
        for name in ("rhobeg", "tol", "catol"):
            check_positive(name, getattr(self, name))
        if self.tol > self.rhobeg:
            raise ValueError(f"tol must not exceed rhobeg, got tol={self.tol!r} > rhobeg={self.rhobeg!r}")

    def retcode(self, res: Any, monitor: Monitor) -> ReturnCode:
        return _verdict(self.statuses, res)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        # scipy's COBYLA calls its evaluation limit maxiter.
        maxfun = _uncapped(n, monitor.maxiters, 1000 * n)
        return {"rhobeg": self.rhobeg, "tol": self.tol, "catol": self.catol, "maxiter": maxfun}


@register
@dataclass(frozen=True, kw_only=True)
class COBYQA(ScipyMinimize):
    __doc__ = (
        r"""Constrained optimisation by quadratic approximations (Ragonneau & Zhang's COBYQA):
    quadratic models from values only, in a trust region, with an SQP step on the models.
    Derivative-free; its callback comes once per evaluation, and those are its iterations.

    Args:
        initial_tr_radius: Initial trust-region radius, > 0.
        final_tr_radius: Final trust-region radius: the accuracy sought in u, > 0, below the
            initial one.
        feasibility_tol: Tolerated constraint violation at the solution, > 0.

    Traits:
        supports_bounds, supports_constraints, supports_callback; no gradient used
        (requires_gradient=False). Not commits_state_per_step, not
        stochastic-tolerant.
    """
        + _EXAMPLE.format(name="COBYQA(final_tr_radius=1e-8)")
        + """
    References:
        Ragonneau (2022), "Model-Based Derivative-Free Optimization Methods and Software",
        PhD thesis, The Hong Kong Polytechnic University.
    """
    )

    initial_tr_radius: float = 1.0
    final_tr_radius: float = 1e-6
    feasibility_tol: float = 1.4901161193847656e-08

    method: ClassVar[str] = "COBYQA"
    # 0-2: converged (radius, target, fixed variables); 5 and 6: evaluation or iteration limit.
    statuses: ClassVar[dict[int, ReturnCode]] = {
        0: ReturnCode.SUCCESS,
        1: ReturnCode.SUCCESS,
        2: ReturnCode.SUCCESS,
        5: ReturnCode.MAXITERS,
        6: ReturnCode.MAXITERS,
    }
    derivatives: ClassVar[str] = "none"
    traits: ClassVar[Traits] = minimize_traits(bounds=True, gradient=False, constraints=True, commits=False)

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("COBYQA", cls(final_tr_radius=1e-8)),)

    def __post_init__(self) -> None:
        for name in ("initial_tr_radius", "final_tr_radius", "feasibility_tol"):
            check_positive(name, getattr(self, name))
        if self.final_tr_radius > self.initial_tr_radius:
            raise ValueError(
                f"final_tr_radius must not exceed initial_tr_radius, got {self.final_tr_radius!r} > "
                f"{self.initial_tr_radius!r}"
            )

    def retcode(self, res: Any, monitor: Monitor) -> ReturnCode:
        return _verdict(self.statuses, res)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        cap = _uncapped(n, monitor.maxiters, 500 * n)
        return {
            "initial_tr_radius": self.initial_tr_radius,
            "final_tr_radius": self.final_tr_radius,
            "feasibility_tol": self.feasibility_tol,
            "maxfev": cap,
            "maxiter": 2 * cap,
        }
