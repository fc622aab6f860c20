"""Online L-BFGS: limited-memory quasi-Newton steps for stochastic objectives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from ..traits import Traits, register
from ._base import Box, Evaluate, Example, NonFiniteEvaluation, evaluate_finite
from ._checks import check_nonnegative, check_positive, check_positive_int
from ._pairs import CurvaturePairAlgorithm, curvature_pair, first_direction, two_loop

__all__ = ["OLBFGS", "OLBFGSState"]


class OLBFGSState(NamedTuple):
    """Steps taken so far and the curvature pairs in memory, oldest first."""

    step: int
    s: tuple[np.ndarray, ...]
    y: tuple[np.ndarray, ...]


@register
@dataclass(frozen=True, kw_only=True)
class OLBFGS(CurvaturePairAlgorithm):
    r"""Online L-BFGS (Schraudolph, Yu & Günter, 2007).

    Step :math:`t` draws no new noise between its two gradients: on one minibatch and one state
    snapshot it evaluates :math:`g_t = \nabla f(u_t)`, steps

    .. math::
        u_{t+1} = u_t - \eta_t H_t g_t, \qquad \eta_t = \frac{\eta}{1 + \delta t},

    and evaluates :math:`\nabla f(u_{t+1})` on the *same* batch and snapshot, so that the
    curvature pair :math:`s_t = u_{t+1} - u_t`, :math:`y_t = \nabla f(u_{t+1}) - g_t + \lambda s_t`
    measures the objective rather than the noise between two samples (Berahas, Nocedal & Takáč,
    2016). :math:`H_t` is the L-BFGS two-loop product over the last ``memory`` pairs, scaled by
    the mean of :math:`s^\top y / y^\top y` over them; a pair with :math:`s^\top y \le 0` is
    dropped. The first step, with no pairs, is a gradient step of length at most ``lr``. It
    takes no bounds: projecting a quasi-Newton step onto a box stalls at points that are not
    constrained optima.

    Args:
        lr: Step size :math:`\eta > 0`.
        memory: Curvature pairs kept, >= 1.
        reg: :math:`\lambda \ge 0`, added to :math:`y_t` for robustness on non-convex problems.
        decay: :math:`\delta \ge 0`, the step-size decay (0 keeps it constant).

    Traits:
        commits_state_per_step (both evaluations of a step see one state snapshot and batch,
        and the state returned at :math:`u_{t+1}` is committed), tolerates_stochastic_loss,
        requires_gradient, supports_callback. Not
        ``single_call_per_step``: it evaluates twice per step. It runs until ``maxiters``,
        ``maxtime`` or the end of ``data``.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum(p * (u - 1.0) ** 2), np.zeros(3),
        ...                               p=np.array([1.0, 10.0, 100.0]))
        >>> sol = om.solve(prob, om.OLBFGS(lr=1.0), maxiters=30)
        >>> bool(np.allclose(sol.u, 1.0))
        True

    References:
        Schraudolph, Yu & Günter (2007), "A Stochastic Quasi-Newton Method for Online Convex
        Optimization", AISTATS. Berahas, Nocedal & Takáč (2016), "A Multi-Batch L-BFGS Method
        for Machine Learning", NeurIPS.
    """

    lr: float
    memory: int = 10
    reg: float = 0.0
    decay: float = 0.0

    loss_at_new_iterate: ClassVar[bool] = True
    state_type: ClassVar[type] = OLBFGSState
    traits: ClassVar[Traits] = Traits(
        single_call_per_step=False,
        commits_state_per_step=True,
        tolerates_stochastic_loss=True,
        requires_gradient=True,
        supports_bounds=False,
        requires_bounds=False,
        supports_callback=True,
        requires_hessian=False,
        supports_constraints=False,
        supports_checkpoint=True,
        has_convergence_test=False,
        supports_minibatches=True,
    )

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("OLBFGS", cls(lr=0.5), 300),)

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> OLBFGS:
        # At the step size tuned for the problem.
        return cls(lr=rates["OLBFGS"])

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        check_positive_int("memory", self.memory)
        check_nonnegative("reg", self.reg)
        check_nonnegative("decay", self.decay)

    def rate(self, step: int) -> float:
        return self.lr / (1.0 + self.decay * step)

    def step(
        self, evaluate: Evaluate, x: np.ndarray, state: OLBFGSState, box: Box | None
    ) -> tuple[np.ndarray, OLBFGSState, float]:
        loss, grad = evaluate_finite(evaluate, x)
        if state.s:
            pairs = tuple((s,) for s in state.s), tuple((y,) for y in state.y)
            (direction,) = two_loop(np, (grad,), *pairs)
        else:
            (direction,) = first_direction(np, (grad,))
        x_new = x + self.rate(state.step) * direction
        try:
            loss_new, grad_new = evaluate_finite(evaluate, x_new)
        except NonFiniteEvaluation as exc:
            exc.start = loss  # the loss at x, finite with its gradient: where the run may end
            raise
        (s,), (y,), accept = curvature_pair(np, (x,), (x_new,), (grad,), (grad_new,), self.reg)
        if accept:
            return x_new, self.kept(state, s, y), loss_new
        return x_new, OLBFGSState(state.step + 1, state.s, state.y), loss_new
