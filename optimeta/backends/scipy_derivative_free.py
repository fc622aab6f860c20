"""Derivative-free methods of ``scipy.optimize.minimize``: Nelder-Mead and Powell, both with bounds.

They call only ``f`` (trait ``requires_gradient=False``): no gradient
is computed, so objectives that autograd cannot trace (or non-smooth ones) are fine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Example, Monitor
from ._checks import check_positive
from ._scipy_traits import minimize_traits
from .scipy_minimize import ScipyMinimize

__all__ = ["NelderMead", "Powell"]


@register
@dataclass(frozen=True, kw_only=True)
class NelderMead(ScipyMinimize):
    r"""The Nelder-Mead simplex method, run by ``scipy.optimize.minimize``.

    Reflects, expands and contracts a simplex of n + 1 points; with bounds, points are clipped
    to the box. Stops with SUCCESS when the simplex is smaller than ``xatol`` and its values
    differ by at most ``fatol``.

    Args:
        xatol: Absolute size of the simplex at which to stop, > 0.
        fatol: Absolute spread of its values at which to stop, > 0.
        adaptive: Adapt the coefficients to the dimension (Gao & Han, 2012).

    Traits:
        supports_bounds, supports_callback; no gradient used (requires_gradient=False). Not
        commits_state_per_step (an iteration may end at a point of an earlier one), not
        stochastic-tolerant.

    Example:
        >>> import numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: float(np.sum(np.abs(u - 1.0))), np.zeros(2))
        >>> sol = om.solve(prob, om.NelderMead(xatol=1e-8, fatol=1e-10))
        >>> sol.retcode.name, bool(np.allclose(sol.u, 1.0, atol=1e-6)), sol.stats.gevals
        ('SUCCESS', True, 0)

    References:
        Nelder & Mead (1965), "A simplex method for function minimization", Computer Journal 7(4).
    """

    xatol: float = 1e-4
    fatol: float = 1e-4
    adaptive: bool = False

    method: ClassVar[str] = "Nelder-Mead"
    # 1 and 2: scipy's limits on evaluations and iterations.
    statuses: ClassVar[dict[int, ReturnCode]] = {0: ReturnCode.SUCCESS, 1: ReturnCode.MAXITERS, 2: ReturnCode.MAXITERS}
    derivatives: ClassVar[str] = "none"
    traits: ClassVar[Traits] = minimize_traits(bounds=True, gradient=False, commits=False)

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("NelderMead", cls(xatol=1e-10, fatol=1e-14, adaptive=True)),)

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> NelderMead:
        # Tight tolerances, so that it runs to the minimum rather than to scipy's loose defaults.
        return cls(xatol=1e-10, fatol=1e-14, adaptive=True)

    def __post_init__(self) -> None:
        check_positive("xatol", self.xatol)
        check_positive("fatol", self.fatol)
        if not isinstance(self.adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {self.adaptive!r}")

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        options: dict[str, Any] = {"xatol": self.xatol, "fatol": self.fatol, "adaptive": self.adaptive}
        # scipy counts the initial simplex as iteration 1: one more lets the monitor stop the run
        # after exactly maxiters reported steps. Without maxiters, scipy's own caps (200 n
        # iterations and evaluations) often end runs before their tolerances are met: 2000 n.
        options["maxiter"] = 2000 * n if monitor.maxiters is None else monitor.maxiters + 1
        options["maxfev"] = np.inf
        return options


@register
@dataclass(frozen=True, kw_only=True)
class Powell(ScipyMinimize):
    r"""Powell's conjugate-direction method, run by ``scipy.optimize.minimize``.

    Minimises along each of a set of directions in turn (Brent line minimisations), replacing
    directions to build conjugate ones; honours bounds.

    Args:
        xtol: Line-search tolerance on u, > 0.
        ftol: Relative change in f at which to stop, > 0.

    Traits:
        supports_bounds, supports_callback; no gradient used (requires_gradient=False). Not
        commits_state_per_step (an iteration may end at a point of an earlier one), not
        stochastic-tolerant.

    Example:
        >>> import numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: float(np.sum((u - 1.0) ** 2)), np.zeros(3))
        >>> sol = om.solve(prob, om.Powell())
        >>> sol.retcode.name, bool(np.allclose(sol.u, 1.0, atol=1e-6)), sol.stats.gevals
        ('SUCCESS', True, 0)

    References:
        Powell (1964), "An efficient method for finding the minimum of a function of several
        variables without calculating derivatives", Computer Journal 7(2).
    """

    xtol: float = 1e-4
    ftol: float = 1e-4

    method: ClassVar[str] = "Powell"
    # 1 and 2: limits on evaluations and iterations; 3: a NaN; 4: a point outside the bounds.
    statuses: ClassVar[dict[int, ReturnCode]] = {
        0: ReturnCode.SUCCESS,
        1: ReturnCode.MAXITERS,
        2: ReturnCode.MAXITERS,
        3: ReturnCode.FAILURE,
        4: ReturnCode.FAILURE,
    }
    derivatives: ClassVar[str] = "none"
    traits: ClassVar[Traits] = minimize_traits(bounds=True, gradient=False, commits=False)

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("Powell", cls(xtol=1e-8, ftol=1e-12)),)

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> Powell:
        # Tight tolerances, so that it runs to the minimum rather than to scipy's loose defaults.
        return cls(xtol=1e-10, ftol=1e-14)

    def __post_init__(self) -> None:
        check_positive("xtol", self.xtol)
        check_positive("ftol", self.ftol)

    def options(self, monitor: Monitor, n: int) -> dict[str, Any]:
        return {"xtol": self.xtol, "ftol": self.ftol, **self.maxiter(monitor)}
