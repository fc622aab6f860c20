"""`Chain`: a polyalgorithm that runs algorithms one after another, each from the last one's result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._solution import Solution
from ._values import is_positive_int
from .backends._base import Algorithm, Runner
from .traits import chain_traits

__all__ = ["Chain"]


@dataclass(frozen=True, init=False, repr=False, eq=True)
class Chain(Algorithm):
    r"""Run algorithms in turn, each stage starting from the previous stage's ``u`` and state.

    The usual use is a robust first-order start followed by a fast local finish, e.g. Adam to
    get near a minimum, then BFGS to converge:

    .. math:: u^{(k)} = \text{solve}(f, u^{(k-1)}, \text{alg}_k, \text{maxiters}_k)

    Each stage is an algorithm instance, or a pair ``(alg, maxiters)`` giving that stage its
    own iteration budget; a stage without one runs to its own convergence (a step-wise
    algorithm without a convergence test needs a budget, except in the last stage, which may
    take ``solve``'s). ``solve``'s ``maxiters`` and ``maxtime`` bound the whole chain: a stage
    gets at most what is left of them.

    The chain's traits are the conservative combination of its stages' (`chain_traits`, in
    ``traits.py``): a problem is accepted only if every stage accepts it, and `solve` refuses it
    before any call otherwise. A chain is a frozen dataclass, like every algorithm. Stats add up over the stages; ``Solution.original`` holds every stage's
    `Solution`; the run stops early when a stage ends with ``NONFINITE``, ``TERMINATED`` or
    ``MAXTIME``, or uses up ``solve``'s ``maxiters``.

    Args:
        *stages: Algorithm instances or ``(alg, maxiters)`` pairs, at least one.

    Raises:
        TypeError: A stage that is not an algorithm instance (a nested Chain included).
        ValueError: A budget that is not a positive integer, or a stage other than the last
            that needs a budget and has none.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> rosen = lambda u, p: (1 - u[0]) ** 2 + 100 * (u[1] - u[0] ** 2) ** 2
        >>> prob = om.OptimizationProblem(rosen, np.array([-1.2, 1.0]))
        >>> sol = om.solve(prob, om.Chain((om.Adam(lr=1e-2), 200), om.BFGS()))
        >>> sol.retcode.name, [s.stats.iterations for s in sol.original][0], np.round(sol.u, 6)
        ('SUCCESS', 200, array([1., 1.]))
    """

    stages: tuple[tuple[Algorithm, int | None], ...]
    #: `om.traits` of the class itself refuses: a chain's traits are its stages', combined.
    combines_stages: ClassVar[bool] = True

    def __init__(self, *stages: Algorithm | tuple[Algorithm, int]) -> None:
        if not stages:
            raise ValueError("Chain needs at least one stage, e.g. Chain((om.Adam(lr=1e-2), 500), om.BFGS())")
        normalised: list[tuple[Algorithm, int | None]] = []
        for i, stage in enumerate(stages):
            alg, budget = stage if isinstance(stage, tuple) and len(stage) == 2 else (stage, None)
            if isinstance(alg, Chain) or not isinstance(alg, Algorithm):
                raise TypeError(
                    f"Chain stage {i} must be an algorithm instance or a pair (algorithm, maxiters), got {stage!r}"
                )
            if budget is not None and not is_positive_int(budget):
                raise ValueError(f"Chain stage {i}: maxiters must be a positive integer, got {budget!r}")
            last = i == len(stages) - 1
            if budget is None and not last and not alg.traits.has_convergence_test:
                name = type(alg).__name__
                raise ValueError(
                    f"Chain stage {i} ({name}) has no convergence test and needs a budget: give it as "
                    f"({name}(...), maxiters)"
                )
            normalised.append((alg, None if budget is None else int(budget)))
        object.__setattr__(self, "stages", tuple(normalised))
        object.__setattr__(self, "traits", chain_traits([(alg.traits, budget) for alg, budget in normalised]))

    def execute(self, run: Runner) -> Solution:
        return run.run_stages(self, self.stages)

    def __repr__(self) -> str:
        parts = [repr(alg) if budget is None else f"({alg!r}, {budget})" for alg, budget in self.stages]
        return f"Chain({', '.join(parts)})"
