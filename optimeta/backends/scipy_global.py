"""Global optimisers of ``scipy.optimize``: differential evolution, dual annealing, DIRECT and
SHGO, through the same whole-run adapter as the local methods.

Each searches the whole box, so each needs finite bounds on every variable (trait
``requires_bounds``). The random ones, here, take a ``seed``: the same seed gives the same run.
The deterministic ones, DIRECT and SHGO, are in ``scipy_global_deterministic`` (re-exported
here); what they all share, in ``_scipy_global_common``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.optimize

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Example, Monitor
from ._checks import check_fraction, check_nonnegative, check_positive_int, check_range
from ._scipy_adapter import ScipyAdapter
from ._scipy_calls import NonFiniteRun, ScipyCalls
from ._scipy_global_common import EXAMPLE, budget_retcode
from ._scipy_traits import minimize_traits
from .scipy_global_deterministic import DIRECT, SHGO

__all__ = ["DIRECT", "SHGO", "DifferentialEvolution", "DualAnnealing"]


def _check_seed(seed: Any) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be a non-negative integer or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")


def _rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed)


def _start_inside(x0: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """x0 moved, by the few ulps that rounding needs, to where differential evolution's
    rescaling onto [0, 1] keeps it inside (scipy refuses a start on a bound otherwise)."""
    x0 = x0.copy()
    middle, width = 0.5 * (lb + ub), np.fabs(ub - lb)
    with np.errstate(divide="ignore"):
        recip = np.where(width > 0, 1.0 / width, 0.0)
    for _ in range(64):
        scaled = (x0 - middle) * recip + 0.5
        outside = (scaled < 0.0) | (scaled > 1.0)
        if not outside.any():
            break
        x0[outside] = np.nextafter(x0[outside], middle[outside])
    return x0


_STRATEGIES = (
    "best1bin",
    "best1exp",
    "rand1bin",
    "rand1exp",
    "rand2bin",
    "rand2exp",
    "randtobest1bin",
    "randtobest1exp",
    "currenttobest1bin",
    "currenttobest1exp",
    "best2exp",
    "best2bin",
)


@register
@dataclass(frozen=True, kw_only=True)
class DifferentialEvolution(ScipyAdapter):
    __doc__ = (
        r"""Differential evolution (``scipy.optimize.differential_evolution``): a population of
    ``popsize * n`` points in the box, each generation mutated and recombined; a generation is an
    iteration. ``u0`` joins the initial population. With ``polish``, the best point is refined by
    a local method from differences (L-BFGS-B, or trust-constr with constraints).

    Args:
        seed: Seed of the random generator (None: a fresh one each run).
        strategy: scipy's mutation strategy, e.g. ``"best1bin"``.
        popsize: Population size per variable, >= 1.
        tol: Relative spread of the population's values at which to stop, >= 0.
        atol: Absolute spread at which to stop, >= 0.
        mutation: Differential weight in [0, 2), or a pair (lo, hi) for dithering.
        recombination: Crossover probability in [0, 1).
        polish: Refine the best point with a local method at the end.

    Traits:
        requires_bounds (finite), supports_constraints, supports_callback; no gradient used
        (requires_gradient=False). Not commits_state_per_step, not
        stochastic-tolerant (the polishing trusts exact values).
    """
        + EXAMPLE.format(name="DifferentialEvolution(seed=0, tol=1e-8)")
        + """
    References:
        Storn & Price (1997), "Differential Evolution - A Simple and Efficient Heuristic for
        Global Optimization over Continuous Spaces", J. Global Optim. 11.
    """
    )

    seed: int | None = None
    strategy: str = "best1bin"
    popsize: int = 15
    tol: float = 0.01
    atol: float = 0.0
    mutation: float | tuple[float, float] = (0.5, 1.0)
    recombination: float = 0.7
    polish: bool = True

    traits: ClassVar[Traits] = minimize_traits(
        bounds=True, requires_bounds=True, gradient=False, constraints=True, commits=False
    )
    evaluates_start: ClassVar[bool] = True  # its rescaling of u0 onto [0, 1] changes its last bits

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (
            # Seeded: the same run every time. 5 members per variable keep the runs short; at tol 1e-7
            # the polish (trust-constr with constraints) ends within 1e-7 of a constrained optimum.
            Example("DifferentialEvolution", cls(seed=0, tol=1e-7, popsize=5)),
        )

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> DifferentialEvolution:
        # scipy's defaults, seeded like the suite's differential-evolution peer.
        return cls(seed=0)

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        if self.strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(_STRATEGIES)}, got {self.strategy!r}")
        check_positive_int("popsize", self.popsize)
        check_nonnegative("tol", self.tol)
        check_nonnegative("atol", self.atol)
        sides = self.mutation if isinstance(self.mutation, tuple) else (self.mutation,)
        if len(sides) not in (1, 2) or not all(
            isinstance(m, numbers.Real) and not isinstance(m, bool) and 0 <= m < 2 for m in sides
        ):
            raise ValueError(f"mutation must be a number in [0, 2) or a pair (lo, hi) of them, got {self.mutation!r}")
        if len(sides) == 2 and sides[0] > sides[1]:
            raise ValueError(f"mutation as a pair must have lo <= hi, got {self.mutation!r}")
        check_fraction("recombination", self.recombination)
        if not isinstance(self.polish, bool):
            raise TypeError(f"polish must be a bool, got {self.polish!r}")

    def call(self, calls: ScipyCalls, monitor: Monitor) -> Any:
        box = calls.bounds
        assert box is not None  # requires_bounds
        return scipy.optimize.differential_evolution(
            calls.value,
            calls.bounds,
            strategy=self.strategy,
            maxiter=1000 if monitor.maxiters is None else monitor.maxiters,
            popsize=self.popsize,
            tol=self.tol,
            atol=self.atol,
            mutation=self.mutation,
            recombination=self.recombination,
            rng=_rng(self.seed),
            callback=calls.callback,
            polish=self.polish,
            constraints=calls.constraints or (),
            x0=_start_inside(calls.x0, box.lb, box.ub),
        )

    def retcode(self, res: Any, monitor: Monitor) -> ReturnCode:
        if res.success:
            return ReturnCode.SUCCESS
        return ReturnCode.MAXITERS if "Maximum number" in str(res.message) else ReturnCode.FAILURE


@register
@dataclass(frozen=True, kw_only=True)
class DualAnnealing(ScipyAdapter):
    __doc__ = (
        r"""Dual annealing (``scipy.optimize.dual_annealing``): generalised simulated annealing
    (Tsallis visiting distribution) with a local search (L-BFGS-B with the problem's gradient)
    from the points it accepts. It runs ``maxiter`` iterations by design (SUCCESS), fewer when
    ``solve``'s ``maxiters`` is smaller (MAXITERS); scipy gives no per-iteration callback, so
    ``Stats.iterations`` is scipy's count and a callback is refused.

    Args:
        seed: Seed of the random generator (None: a fresh one each run).
        maxiter: Iterations of the annealing run, >= 1.
        initial_temp: Initial temperature, in (0.01, 5e4].
        restart_temp_ratio: Temperature ratio at which annealing restarts, in (0, 1).
        visit: Visiting distribution parameter, in (1, 3].
        accept: Acceptance distribution parameter, in (-1e4, -5].
        no_local_search: Plain generalised simulated annealing, without local searches.

    Traits:
        requires_bounds (finite), requires_gradient (the local search). Not supports_callback,
        not commits_state_per_step, not stochastic-tolerant.
    """
        + EXAMPLE.format(name="DualAnnealing(seed=0)")
        + """
    References:
        Xiang, Sun, Fan & Gong (1997), "Generalized Simulated Annealing Algorithm and Its
        Application to the Thomson Model", Physics Letters A 233.
    """
    )

    seed: int | None = None
    maxiter: int = 1000
    initial_temp: float = 5230.0
    restart_temp_ratio: float = 2e-5
    visit: float = 2.62
    accept: float = -5.0
    no_local_search: bool = False

    traits: ClassVar[Traits] = minimize_traits(bounds=True, requires_bounds=True, commits=False, callback=False)
    drops_fixed: ClassVar[bool] = True  # scipy refuses a fixed coordinate mid-run
    evaluates_start: ClassVar[bool] = True  # its first local search may start elsewhere

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (
            # 200 annealing iterations (not 1000): the local searches make the accuracy.
            Example("DualAnnealing", cls(seed=0, maxiter=200)),
        )

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> DualAnnealing:
        # scipy's defaults, seeded like the suite's differential-evolution peer.
        return cls(seed=0)

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        check_positive_int("maxiter", self.maxiter)
        check_range("initial_temp", self.initial_temp, 0.01, 5e4)
        check_range("restart_temp_ratio", self.restart_temp_ratio, 0.0, 1.0, closed_hi=False)
        check_range("visit", self.visit, 1.0, 3.0)
        check_range("accept", self.accept, -1e4, -5.0)
        if not isinstance(self.no_local_search, bool):
            raise TypeError(f"no_local_search must be a bool, got {self.no_local_search!r}")

    def call(self, calls: ScipyCalls, monitor: Monitor) -> Any:
        try:
            return self._anneal(calls, monitor)
        except ValueError as exc:
            # scipy gives up when it draws no finite value: the run ends as non-finite.
            if "NaN" not in str(exc):
                raise
            raise NonFiniteRun from exc

    def _anneal(self, calls: ScipyCalls, monitor: Monitor) -> Any:
        # Given minimizer_kwargs (here, for the gradient), scipy drops its default local search:
        # L-BFGS-B in the bounds, at most 6 iterations per variable (100 to 1000). Both restored.
        local_maxiter = min(max(6 * calls.x0.size, 100), 1000)
        return scipy.optimize.dual_annealing(
            calls.value,
            calls.bounds,
            maxiter=self.maxiter if monitor.maxiters is None else min(self.maxiter, monitor.maxiters),
            minimizer_kwargs={
                "method": "L-BFGS-B",
                "jac": calls.grad,
                "bounds": calls.bounds,
                "options": {"maxiter": local_maxiter},
            },
            initial_temp=self.initial_temp,
            restart_temp_ratio=self.restart_temp_ratio,
            visit=self.visit,
            accept=self.accept,
            rng=_rng(self.seed),
            no_local_search=self.no_local_search,
            x0=calls.x0,
        )

    def retcode(self, res: Any, monitor: Monitor) -> ReturnCode:
        return budget_retcode(res, monitor, self.maxiter)
