"""Newton methods of ``scipy.optimize.minimize``: line-search Newton-CG and three trust-region methods.

They need second derivatives (trait ``requires_hessian``): Hessian-vector products or Hessians
from autograd (reverse over reverse), or from forward differences of the user's ``grad``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Monitor
from ._checks import check_positive
from ._scipy_traits import GRADIENT_STATUSES, minimize_traits
from .scipy_minimize import ScipyMinimize

__all__ = ["Dogleg", "NewtonCG", "TrustExact", "TrustKrylov", "TrustNCG"]

_NEWTON = minimize_traits(bounds=False, hessian=True, commits=False)
_EXAMPLE = """
    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> f = lambda u, p: anp.sum(100.0 * (u[1:] - u[:-1] ** 2) ** 2 + (1.0 - u[:-1]) ** 2)
        >>> sol = om.solve(om.OptimizationProblem(f, np.zeros(3)), om.{name}())
        >>> sol.retcode.name, bool(np.allclose(sol.u, 1.0, atol=1e-5)), sol.stats.hevals > 0
        ('SUCCESS', True, True)
"""


class _Newton(ScipyMinimize):
    gtol: float
    statuses: ClassVar[dict[int, ReturnCode]] = GRADIENT_STATUSES

    def __post_init__(self) -> None:
        check_positive("gtol", self.gtol)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        # Newton-CG's test is on the step (scipy's xtol); the trust regions' on the gradient.
        tolerance = "xtol" if self.method == "Newton-CG" else "gtol"
        return {tolerance: self.gtol, **self.maxiter(monitor)}


@register
@dataclass(frozen=True, kw_only=True)
class NewtonCG(_Newton):
    __doc__ = (
        r"""Line-search Newton-CG: the Newton step :math:`\nabla^2 f\, d = -\nabla f` solved
    inexactly by conjugate gradients with Hessian-vector products, then a Wolfe line search.

    Args:
        gtol: Stop when the average relative change of u is at most this (scipy's ``xtol``), > 0.

    Traits:
        requires_gradient, requires_hessian (Hessian-vector products), supports_callback. No
        bounds; not commits_state_per_step, not stochastic-tolerant.
    """
        + _EXAMPLE.format(name="NewtonCG")
        + """
    References:
        Nocedal & Wright (2006), "Numerical Optimization", algorithm 7.1.
    """
    )

    gtol: float = 1e-8

    method: ClassVar[str] = "Newton-CG"
    derivatives: ClassVar[str] = "hessp"
    traits: ClassVar[Traits] = _NEWTON


@register
@dataclass(frozen=True, kw_only=True)
class TrustNCG(_Newton):
    __doc__ = (
        r"""Trust-region Newton with the Steihaug conjugate-gradient subproblem solver.

    Args:
        gtol: Gradient tolerance, > 0.

    Traits:
        requires_gradient, requires_hessian (Hessian-vector products), supports_callback. No
        bounds; not commits_state_per_step, not stochastic-tolerant.
    """
        + _EXAMPLE.format(name="TrustNCG")
        + """
    References:
        Steihaug (1983), "The conjugate gradient method and trust regions in large scale
        optimization", SIAM J. Numer. Anal. 20(3).
    """
    )

    gtol: float = 1e-6

    method: ClassVar[str] = "trust-ncg"
    derivatives: ClassVar[str] = "hessp"
    traits: ClassVar[Traits] = _NEWTON


@register
@dataclass(frozen=True, kw_only=True)
class TrustKrylov(_Newton):
    __doc__ = (
        r"""Trust-region Newton with the generalized Lanczos (GLTR) subproblem solver: nearly exact
    steps from Hessian-vector products alone.

    Args:
        gtol: Gradient tolerance, > 0.

    Traits:
        requires_gradient, requires_hessian (Hessian-vector products), supports_callback. No
        bounds; not commits_state_per_step, not stochastic-tolerant.
    """
        + _EXAMPLE.format(name="TrustKrylov")
        + """
    References:
        Gould, Lucidi, Roma & Toint (1999), "Solving the trust-region subproblem using the Lanczos
        method", SIAM J. Optim. 9(2).
    """
    )

    gtol: float = 1e-6

    method: ClassVar[str] = "trust-krylov"
    derivatives: ClassVar[str] = "hessp"
    traits: ClassVar[Traits] = _NEWTON


@register
@dataclass(frozen=True, kw_only=True)
class TrustExact(_Newton):
    __doc__ = (
        r"""Trust-region Newton solving the subproblem nearly exactly from the full Hessian
    (Moré & Sorensen); for small problems (O(n^3) per iteration).

    Args:
        gtol: Gradient tolerance, > 0.

    Traits:
        requires_gradient, requires_hessian (full Hessians), supports_callback. Not
        commits_state_per_step (a rejected step ends where the last one did), no bounds, not
        stochastic-tolerant.
    """
        + _EXAMPLE.format(name="TrustExact")
        + """
    References:
        Moré & Sorensen (1983), "Computing a trust region step", SIAM J. Sci. Stat. Comput. 4(3).
    """
    )

    gtol: float = 1e-6

    method: ClassVar[str] = "trust-exact"
    derivatives: ClassVar[str] = "hess"
    traits: ClassVar[Traits] = _NEWTON


@register
@dataclass(frozen=True, kw_only=True)
class Dogleg(_Newton):
    __doc__ = (
        r"""Dogleg trust-region method: the step follows the path from the Cauchy point to the
    full Newton step, cut at the trust-region radius. The Hessian must be positive definite
    wherever the method goes (convex problems); elsewhere it ends with FAILURE.

    Args:
        gtol: Gradient tolerance, > 0.

    Traits:
        requires_gradient, requires_hessian (full Hessians), supports_callback. Not
        commits_state_per_step (a rejected step ends where the last one did), no bounds, not
        stochastic-tolerant.
    """
        + _EXAMPLE.format(name="Dogleg")
        + """
    References:
        Powell (1970), "A new algorithm for unconstrained optimization", in Nonlinear
        Programming; Nocedal & Wright (2006), section 4.1.
    """
    )

    gtol: float = 1e-6

    method: ClassVar[str] = "dogleg"
    derivatives: ClassVar[str] = "hess"
    traits: ClassVar[Traits] = _NEWTON
    trait_notes: ClassVar[Mapping[str, str]] = {"requires_hessian": "positive definite"}
