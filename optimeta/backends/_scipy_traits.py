"""The traits every scipy method shares through the adapter, by what it uses."""

from __future__ import annotations

from .._solution import ReturnCode
from ..traits import Traits


def minimize_traits(
    *,
    bounds: bool,
    gradient: bool = True,
    hessian: bool = False,
    commits: bool = True,
    constraints: bool = False,
    requires_bounds: bool = False,
    callback: bool = True,
) -> Traits:
    """Traits of a scipy method run by `ScipyAdapter`: several calls per step, exact values
    trusted, every iteration reported (unless ``callback=False``).

    ``commits``: each iteration ends at a point evaluated during it (a line search's accepted
    point), where the state is committed once per step. A trust-region step that is rejected, or
    a simplex whose best vertex is an old one, ends at a point of an earlier step: such methods
    do not commit per step, and a problem with an evolving state is refused.
    """
    return Traits(
        single_call_per_step=False,
        commits_state_per_step=commits,
        tolerates_stochastic_loss=False,
        requires_gradient=gradient,
        supports_bounds=bounds or requires_bounds,
        requires_bounds=requires_bounds,
        supports_callback=callback,
        requires_hessian=hessian,
        supports_constraints=constraints,
        supports_checkpoint=False,
        has_convergence_test=True,
        supports_minibatches=False,
    )


#: scipy's status codes of the gradient and Newton methods: 1 is its iteration limit; 2 a line
#: search or trust region that can make no more progress; 3 a NaN or an indefinite Hessian.
GRADIENT_STATUSES = {0: ReturnCode.SUCCESS, 1: ReturnCode.MAXITERS, 2: ReturnCode.FAILURE, 3: ReturnCode.FAILURE}
