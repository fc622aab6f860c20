"""`default_algorithm`: the algorithm `solve` uses when none is given, from the registry."""

from __future__ import annotations

from typing import Any

from ._problem import OptimizationProblem, flat
from ._requirements import requirements
from .traits import registered

__all__ = ["LARGE", "default_algorithm"]

#: Above this many variables, the default for a smooth problem is the "bounded_or_large" one:
#: a dense n x n inverse Hessian costs O(n^2) memory and time per step.
LARGE = 2000


def default_algorithm(prob: OptimizationProblem, *, data: bool = False) -> Any:
    """The algorithm ``solve(prob)`` uses when none is given, from the problem's requirements.

    The registered class that claims the problem's situation (``default_for`` class data),
    with its default hyperparameters; as shipped:

    * an evolving state, a stochastic loss or minibatches (``data``): ``Adam()`` (needs a budget);
    * general constraints: ``SLSQP()``;
    * bounds, or more than 2000 variables: ``LBFGS()``;
    * otherwise (smooth, unconstrained, deterministic): ``BFGS()``.

    Args:
        prob: The problem.
        data: Whether the solve feeds minibatches.

    Returns:
        A configured algorithm instance (its traits may still refuse an unusual problem, e.g.
        a stateful one with constraints: ``solve`` then says why).

    Raises:
        TypeError: ``prob`` is not an `OptimizationProblem`.
        LookupError: No registered class claims the problem's situation.

    Example:
        >>> import numpy as np, optimeta as om
        >>> om.default_algorithm(om.OptimizationProblem(lambda u, p: (u ** 2).sum(), np.ones(3)))
        BFGS(gtol=1e-05)
    """
    if not isinstance(prob, OptimizationProblem):
        raise TypeError(f"prob must be an OptimizationProblem, got {prob!r}")
    req = requirements(prob, data=data)
    if req.evolving_state or req.stochastic:
        situation = "noisy"
    elif req.constrained:
        situation = "constrained"
    elif req.bounded or flat(prob).x0.size > LARGE:
        situation = "bounded_or_large"
    else:
        situation = "smooth"
    for cls in registered():
        if cls.__dict__.get("default_for") == situation:
            return cls()
    raise LookupError(f"no registered algorithm is the default for {situation!r} problems (default_for)")
