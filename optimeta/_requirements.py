"""What a problem, with the options of one solve, needs from an algorithm: `Requirements`,
derived in one place (`requirements`) for the rules of `optimeta.traits`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._problem import OptimizationProblem, flat
from ._sources import second_derivatives_missing

__all__ = ["Requirements", "requirements"]


@dataclass(frozen=True)
class Requirements:
    """What a problem (with the options of one solve) needs from an algorithm.

    Attributes:
        evolving_state: The objective has an explicit state that its calls advance
            (``state=`` given, ``state_mode="evolving"``).
        stochastic: Repeated calls at one point may return different values: declared with
            ``stochastic=True``, implied by minibatches (``data=``), or assumed for an evolving
            state unless the problem declares ``stochastic=False`` (the state may drive the loss).
        stochastic_reason: Why ``stochastic`` holds, for error messages.
        stochastic_source: What makes it hold, which decides the fix an error suggests:
            ``"declared"`` (``stochastic=True``), ``"data"`` (minibatches), ``"evolving"`` (an
            evolving state not declared deterministic), ``"probe"`` (the determinism probe saw
            it), or ``""``.
        bounded: The problem has box constraints.
        callback: A callback was given to ``solve``.
        hessian_available: Second derivatives can be had: the gradient source makes them (not
            finite differences, nor a `GradientSource` declaring ``second_derivatives = False``).
        hessian_missing: Why they cannot be had (the source's reason), or "".
        constrained: The problem has general constraints (``constraints=``).
        finite_bounds: The problem bounds every variable on both sides by finite numbers.
        budget: The solve bounds the run: ``maxiters=``, ``maxtime=`` or ``data=`` was given.
        minibatches: The solve feeds one minibatch per step (``data=``).
        stepwise: Why the run must be taken step by step by optimeta (``om.init``, or
            ``nan_policy="skip"``), or "" when it need not.
    """

    evolving_state: bool
    stochastic: bool
    stochastic_reason: str
    bounded: bool
    callback: bool
    hessian_available: bool = True
    hessian_missing: str = ""
    constrained: bool = False
    finite_bounds: bool = False
    stochastic_source: str = ""
    budget: bool = True
    minibatches: bool = False
    stepwise: str = ""


def requirements(
    prob: OptimizationProblem,
    *,
    callback: bool = False,
    data: bool = False,
    budget: bool = True,
    stepwise: str = "",
) -> Requirements:
    """Derive what `prob` needs from an algorithm: the only place problem needs are decided.

    Args:
        prob: The problem.
        callback: Whether the solve passes a callback.
        data: Whether the solve feeds minibatches (``data=``).
        budget: Whether the solve bounds the run (``maxiters=``, ``maxtime=`` or ``data=``);
            True where no solve is at hand (`algorithms`), which then assumes one.
        stepwise: Why the run must go step by step under optimeta (``om.init``, or
            ``nan_policy="skip"``), for the rule on ``supports_checkpoint``; "" if it need not.

    Returns:
        The problem's `Requirements`.
    """
    evolving = prob.state is not None and prob.state_mode == "evolving"
    source = ""
    if prob.stochastic:
        reason, source = "the problem declares stochastic=True", "declared"
    elif data:
        reason = "data= gives each step another minibatch, so the loss changes from step to step"
        source = "data"
    elif evolving and prob.stochastic is None:
        reason = (
            "the problem's state evolves and the problem is not declared deterministic, so the state may "
            "drive the loss (an RNG key, a hidden state) and repeated calls at one point may differ"
        )
        source = "evolving"
    else:
        reason = ""
    on_flat = flat(prob)
    return Requirements(
        evolving_state=evolving,
        stochastic=bool(reason),
        stochastic_reason=reason,
        bounded=prob.bounds is not None,
        callback=callback,
        hessian_available=not (missing := second_derivatives_missing(prob.grad)),
        hessian_missing=missing,
        constrained=bool(prob.constraints),
        finite_bounds=_finite(on_flat.lb) and _finite(on_flat.ub),
        stochastic_source=source,
        budget=budget or data,
        minibatches=data,
        stepwise=stepwise,
    )


def _finite(side: np.ndarray | None) -> bool:
    return side is not None and bool(np.isfinite(side).all())
