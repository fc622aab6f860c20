"""`Chain`: a polyalgorithm that runs algorithms one after another, each from the last one's result."""

from __future__ import annotations

import dataclasses
import numbers

from .backends._base import Algorithm, StepwiseAlgorithm
from .traits import Traits

__all__ = ["Chain", "combined_traits"]

#: Traits a chain has only if every stage has them (what it supports); the others (what it
#: requires or uses) it has if any stage has them.
_ALL = (
    "single_call_per_step",
    "tolerates_stochastic_loss",
    "supports_bounds",
    "supports_callback",
    "supports_constraints",
)


def combined_traits(stages: list[Traits]) -> Traits:
    """The conservative combination of the stages' traits: a problem that one stage refuses, the
    chain refuses. A stage that calls f once per step threads a state as safely as one that
    commits per step, so the chain commits per step when every stage does one or the other."""
    values: dict[str, bool] = {}
    for field in dataclasses.fields(Traits):
        declared = [getattr(t, field.name) for t in stages]
        values[field.name] = all(declared) if field.name in _ALL else any(declared)
    values["commits_state_per_step"] = not values["single_call_per_step"] and all(
        t.single_call_per_step or t.commits_state_per_step for t in stages
    )
    values["supports_checkpoint"] = False  # a chain runs as solves of its stages, not under om.init
    return Traits(**values)


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

    The chain's traits are the conservative combination of its stages' (`combined_traits`): a
    problem is accepted only if every stage accepts it, and `solve` refuses it before any call
    otherwise. Stats add up over the stages; ``Solution.original`` holds every stage's
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
            if budget is not None and (
                isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 1
            ):
                raise ValueError(f"Chain stage {i}: maxiters must be a positive integer, got {budget!r}")
            last = i == len(stages) - 1
            if budget is None and not last and isinstance(alg, StepwiseAlgorithm) and alg.needs_budget:
                name = type(alg).__name__
                raise ValueError(
                    f"Chain stage {i} ({name}) has no convergence test and needs a budget: give it as "
                    f"({name}(...), maxiters)"
                )
            normalised.append((alg, None if budget is None else int(budget)))
        self.stages = tuple(normalised)
        self.traits = combined_traits([alg.traits for alg, _ in normalised])  # type: ignore[misc]

    def __repr__(self) -> str:
        parts = [repr(alg) if budget is None else f"({alg!r}, {budget})" for alg, budget in self.stages]
        return f"Chain({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chain) and self.stages == other.stages

    def __hash__(self) -> int:
        return hash(self.stages)
