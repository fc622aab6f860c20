"""The deterministic global optimisers of ``scipy.optimize``: DIRECT, which divides the box into
rectangles, and SHGO, which samples it and searches from the minimisers of a simplicial complex.

Like the random ones (``scipy_global``, which re-exports these), each searches the whole box, so
each needs finite bounds on every variable (trait ``requires_bounds``), and each runs through
`ScipyAdapter`. Neither takes a seed: the same problem gives the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import scipy.optimize

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Example, Monitor
from ._checks import check_fraction, check_positive, check_positive_int
from ._scipy_adapter import ScipyAdapter
from ._scipy_calls import ScipyCalls
from ._scipy_global_common import EXAMPLE, budget_retcode
from ._scipy_traits import minimize_traits

__all__ = ["DIRECT", "SHGO"]


#: The largest evaluation limit DIRECT takes: scipy allocates about 30 bytes per evaluation
#: of the limit when the run starts (3 GB here).
_DIRECT_MAXFUN = 10**8


@register
@dataclass(frozen=True, kw_only=True)
class DIRECT(ScipyAdapter):
    __doc__ = (
        r"""DIRECT, DIviding RECTangles (``scipy.optimize.direct``): splits the box into
    hyperrectangles and divides the potentially optimal ones, deterministically. It ends when a
    rectangle is smaller than ``vol_tol`` or ``len_tol`` (SUCCESS), or at its evaluation limit
    (MAXITERS).

    Args:
        eps: Minimal improvement for a rectangle to count as potentially optimal, > 0.
        locally_biased: The locally biased variant (DIRECT-L), better for few local minima.
        vol_tol: Relative volume of the smallest rectangle at which to stop, in [0, 1).
        len_tol: Relative side (locally biased) or diagonal of the smallest rectangle at which
            to stop, in [0, 1).
        maxfun: Evaluation limit, from 1 to 10**8 (None: 1000 per variable): no more calls of
            f are made (scipy's own limit lets it finish an iteration past it); MAXITERS when
            it is reached.

    Traits:
        requires_bounds (finite), supports_callback; no gradient used. Not
        commits_state_per_step, not stochastic-tolerant.
    """
        + EXAMPLE.format(name="DIRECT(len_tol=1e-7, maxfun=20000)").replace("atol=1e-4", "atol=1e-3")
        + """
    References:
        Jones, Perttunen & Stuckman (1993), "Lipschitzian optimization without the Lipschitz
        constant", J. Optim. Theory Appl. 79; Gablonsky & Kelley (2001), DIRECT-L.
    """
    )

    eps: float = 1e-4
    locally_biased: bool = True
    vol_tol: float = 1e-16
    len_tol: float = 1e-6
    maxfun: int | None = None

    # 1 and 2: the evaluation and iteration limits; 3-5: a target value or the rectangles'
    # volume or size reached.
    statuses: ClassVar[dict[int, ReturnCode]] = {
        1: ReturnCode.MAXITERS,
        2: ReturnCode.MAXITERS,
        3: ReturnCode.SUCCESS,
        4: ReturnCode.SUCCESS,
        5: ReturnCode.SUCCESS,
    }
    legacy_callback: ClassVar[bool] = True
    drops_fixed: ClassVar[bool] = True  # scipy refuses a fixed coordinate once it divides the box
    evaluates_start: ClassVar[bool] = True  # it samples the box's centre, never u0
    traits: ClassVar[Traits] = minimize_traits(bounds=True, requires_bounds=True, gradient=False, commits=False)

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("DIRECT", cls(eps=1e-8, vol_tol=0.0, len_tol=1e-8)),)

    def __post_init__(self) -> None:
        check_positive("eps", self.eps)
        if not isinstance(self.locally_biased, bool):
            raise TypeError(f"locally_biased must be a bool, got {self.locally_biased!r}")
        check_fraction("vol_tol", self.vol_tol)
        check_fraction("len_tol", self.len_tol)
        if self.maxfun is not None:
            check_positive_int("maxfun", self.maxfun)
            if self.maxfun > _DIRECT_MAXFUN:
                raise ValueError(
                    f"maxfun must be at most {_DIRECT_MAXFUN}, got {self.maxfun}: scipy's DIRECT allocates its "
                    "arrays for the whole evaluation limit before it starts (about 30 bytes per evaluation)"
                )

    def evaluation_limit(self, n: int) -> int:
        limit = 1000 * n if self.maxfun is None else int(self.maxfun)
        if limit > _DIRECT_MAXFUN:  # maxfun=None with more than 10**5 variables
            raise ValueError(
                f"DIRECT's evaluation limit (1000 per variable, {limit} for {n} variables) must be at most "
                f"{_DIRECT_MAXFUN}: scipy's DIRECT allocates its arrays for the whole limit before it starts "
                f"(about 30 bytes per evaluation, {30 * limit / 2**30:.3g} GiB here); give DIRECT(maxfun=...)"
            )
        return limit

    def call(self, calls: ScipyCalls, monitor: Monitor) -> Any:
        limit = self.evaluation_limit(calls.objective.x0.size)
        # scipy counts two iterations before the first callback: two more let the monitor stop
        # the run after exactly maxiters reported ones. scipy sizes arrays by maxiter as well: a
        # budget past the evaluation limit is never reached (an iteration evaluates a point).
        maxiter = 1000 if monitor.maxiters is None else min(int(monitor.maxiters), limit) + 2
        return scipy.optimize.direct(
            calls.value,
            calls.bounds,
            eps=self.eps,
            maxfun=limit,
            maxiter=maxiter,
            locally_biased=self.locally_biased,
            vol_tol=self.vol_tol,
            len_tol=self.len_tol,
            callback=calls.legacy,
        )


@register
@dataclass(frozen=True, kw_only=True)
class SHGO(ScipyAdapter):
    __doc__ = (
        r"""Simplicial homology global optimisation (``scipy.optimize.shgo``): samples the box,
    builds a simplicial complex on the samples, and runs a local search (SLSQP with the
    problem's gradient, honouring constraints) from each minimiser of the complex.
    Deterministic. It runs ``iters`` refinements of the complex (SUCCESS), fewer when
    ``solve``'s ``maxiters`` is smaller (MAXITERS); scipy gives no per-iteration callback, so
    ``Stats.iterations`` is scipy's count and a callback is refused. When scipy finds no
    minimiser (too few samples, or infeasible constraints), the run ends with FAILURE at the
    best point evaluated.

    Args:
        n: Sampling points per iteration, >= 1.
        iters: Refinements of the complex, >= 1.
        sampling_method: ``"simplicial"``, ``"sobol"`` or ``"halton"``.

    Traits:
        requires_bounds (finite), requires_gradient (the local search), supports_constraints.
        Not supports_callback, not commits_state_per_step, not stochastic-tolerant.
    """
        + EXAMPLE.format(name="SHGO()")
        + """
    References:
        Endres, Sandrock & Focke (2018), "A simplicial homology algorithm for Lipschitz
        optimisation", J. Global Optim. 72.
    """
    )

    n: int = 100
    iters: int = 1
    sampling_method: str = "simplicial"

    drops_fixed: ClassVar[bool] = True  # its Qhull triangulation fails on a box flat in one coordinate
    evaluates_start: ClassVar[bool] = True  # it samples the box, never u0
    traits: ClassVar[Traits] = minimize_traits(
        bounds=True, requires_bounds=True, constraints=True, commits=False, callback=False
    )

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("SHGO", cls(n=32, sampling_method="halton")),)

    def __post_init__(self) -> None:
        check_positive_int("n", self.n)
        check_positive_int("iters", self.iters)
        if self.sampling_method not in ("simplicial", "sobol", "halton"):
            raise ValueError(f"sampling_method must be 'simplicial', 'sobol' or 'halton', got {self.sampling_method!r}")

    def call(self, calls: ScipyCalls, monitor: Monitor) -> Any:
        return scipy.optimize.shgo(
            calls.value,
            calls.bounds,
            constraints=calls.constraints or None,
            n=self.n,
            iters=self.iters if monitor.maxiters is None else min(self.iters, monitor.maxiters),
            # The gradient as an option, not in minimizer_kwargs: given those, scipy drops its
            # default local options (SLSQP with ftol=1e-12) for SLSQP's own (ftol=1e-6).
            options={"jac": calls.grad},
            sampling_method=self.sampling_method,
        )

    def retcode(self, res: Any, monitor: Monitor) -> ReturnCode:
        return budget_retcode(res, monitor, self.iters)
