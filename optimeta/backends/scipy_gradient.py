"""Gradient methods of ``scipy.optimize.minimize``: nonlinear conjugate gradients and truncated Newton."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Monitor
from ._checks import check_nonnegative, check_positive, check_positive_int
from ._scipy_traits import GRADIENT_STATUSES, minimize_traits
from .scipy_minimize import ScipyMinimize

__all__ = ["CG", "TNC"]


@register
@dataclass(frozen=True, kw_only=True)
class CG(ScipyMinimize):
    r"""Nonlinear conjugate gradients (Polak-Ribière), run by ``scipy.optimize.minimize``.

    Directions :math:`d_k = -g_k + \beta_k d_{k-1}` with
    :math:`\beta_k = g_k^\top (g_k - g_{k-1}) / \|g_{k-1}\|^2`, and a Wolfe line search; memory
    O(n). Stops with SUCCESS when the gradient's largest component is at most ``gtol``.

    Args:
        gtol: Gradient tolerance, > 0.

    Traits:
        commits_state_per_step, requires_gradient, supports_callback. No bounds;
        not stochastic-tolerant (its line search compares exact values).

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 2.0) ** 2), np.zeros(3))
        >>> sol = om.solve(prob, om.CG())
        >>> sol.retcode.name, bool(np.allclose(sol.u, 2.0))
        ('SUCCESS', True)

    References:
        Polak & Ribière (1969); Nocedal & Wright (2006), "Numerical Optimization", section 5.2.
    """

    gtol: float = 1e-5

    method: ClassVar[str] = "CG"
    statuses: ClassVar[dict[int, ReturnCode]] = GRADIENT_STATUSES
    traits: ClassVar[Traits] = minimize_traits(bounds=False)

    def __post_init__(self) -> None:
        check_positive("gtol", self.gtol)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        return {"gtol": self.gtol, **self.maxiter(monitor)}


@register
@dataclass(frozen=True, kw_only=True)
class TNC(ScipyMinimize):
    r"""Truncated Newton with bounds (Nash, 1984), run by ``scipy.optimize.minimize``.

    Each iteration solves the Newton system approximately by conjugate gradients, with
    Hessian-vector products from differences of gradients, and projects onto the box.

    Args:
        gtol: Projected-gradient tolerance, > 0.
        ftol: Change in f at which to stop, >= 0 (0: scipy's default, which stops far from
            the minimum on curved valleys).
        xtol: Change in u at which to stop, >= 0 (0: scipy's default).
        maxfun: Most objective calls, >= 1 (scipy's own default, max(100, 10 n), ends long runs
            early): no more calls of f are made (scipy's own limit lets it finish a line search
            past it); reaching it ends the run with MAXITERS.

    Traits:
        commits_state_per_step, requires_gradient, supports_bounds,
        supports_callback. Not stochastic-tolerant.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 2.0) ** 2), np.zeros(2),
        ...                               bounds=(np.zeros(2), np.ones(2)))
        >>> bool(np.allclose(om.solve(prob, om.TNC()).u, 1.0))
        True

    References:
        Nash (1984), "Newton-type minimization via the Lanczos method", SIAM J. Numer. Anal. 21(4).
    """

    gtol: float = 1e-8
    ftol: float = 1e-14
    xtol: float = 1e-12
    maxfun: int = 15_000

    method: ClassVar[str] = "TNC"
    # 0-2 converged (projected gradient, f, u); 3 evaluation limit; 4 line search failed;
    # 5 the box is a point; 6 no further progress; 7 stopped by scipy's callback.
    statuses: ClassVar[dict[int, ReturnCode]] = {
        0: ReturnCode.SUCCESS,
        1: ReturnCode.SUCCESS,
        2: ReturnCode.SUCCESS,
        3: ReturnCode.MAXITERS,
        4: ReturnCode.FAILURE,
        5: ReturnCode.SUCCESS,
        6: ReturnCode.FAILURE,
        7: ReturnCode.TERMINATED,
    }
    legacy_callback: ClassVar[bool] = True
    traits: ClassVar[Traits] = minimize_traits(bounds=True)

    def __post_init__(self) -> None:
        check_positive("gtol", self.gtol)
        check_nonnegative("ftol", self.ftol)
        check_nonnegative("xtol", self.xtol)
        check_positive_int("maxfun", self.maxfun)

    def evaluation_limit(self, n: int) -> int:
        return int(self.maxfun)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        options: dict[str, Any] = {"gtol": self.gtol}
        if self.ftol:
            options["ftol"] = self.ftol
        if self.xtol:
            options["xtol"] = self.xtol
        options["maxfun"] = self.maxfun
        return options
