"""Adam: adaptive moment estimation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..schedules import Schedule
from ..traits import Traits, register
from ._base import EXAMPLE_BUDGET, FIRST_ORDER_TRAITS, ElementwiseAlgorithm, Example
from ._checks import check_fraction, check_positive, check_rate, rate_at
from ._kernels import RECYCLE_MIN_SIZE, Recycler, adam_step

__all__ = ["Adam", "AdamState"]


class AdamState(NamedTuple):
    """Step count, the first and second moment estimates, and the memory the next state's arrays
    are written into (shared by the states of one run; see `optimeta.backends._kernels.Recycler`)."""

    step: int
    mu: np.ndarray
    nu: np.ndarray
    spare: Recycler


@register
@dataclass(frozen=True, kw_only=True)
class Adam(ElementwiseAlgorithm[AdamState]):
    r"""Adam (Kingma & Ba, 2015).

    With gradient :math:`g_k` at step :math:`k = 1, 2, \dots`:

    .. math::
        m_k = \beta_1 m_{k-1} + (1 - \beta_1) g_k, \qquad
        v_k = \beta_2 v_{k-1} + (1 - \beta_2) g_k^2,

        u_{k+1} = u_k - \eta\, \frac{m_k / (1 - \beta_1^k)}{\sqrt{v_k / (1 - \beta_2^k)} + \epsilon}

    With bounds, each iterate is projected onto the box.

    Args:
        lr: Step size :math:`\eta > 0`, or a schedule ``lr(step)`` (see `optimeta.schedules`).
        b1: Decay of the first moment, :math:`\beta_1 \in [0, 1)`.
        b2: Decay of the second moment, :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon > 0`, added to the denominator for numerical stability.

    Traits:
        single_call_per_step, tolerates_stochastic_loss, requires_gradient, supports_bounds
        (projection) and supports_callback; it runs until ``maxiters`` or ``maxtime``.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(3))
        >>> sol = om.solve(prob, om.Adam(lr=0.05), maxiters=2000)
        >>> bool(np.allclose(sol.u, 1.0, atol=1e-3)), sol.retcode.name
        (True, 'MAXITERS')

    References:
        Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", ICLR.
    """

    lr: float | Schedule = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS
    state_type: ClassVar[Any] = AdamState
    fused: ClassVar[bool] = True  # `update`: a fused kernel for large vectors
    default_for: ClassVar[str] = "noisy"  # om.default_algorithm for a stateful or stochastic problem

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("Adam", cls(lr=0.02), EXAMPLE_BUDGET),)

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> Adam:
        # At the step size tuned for the problem.
        return cls(lr=rates["Adam"])

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_fraction("b1", self.b1)
        check_fraction("b2", self.b2)
        check_positive("eps", self.eps)

    def from_slots(self, step: int, slots: tuple[Any, ...]) -> AdamState:
        mu, nu = slots
        return AdamState(step, mu, nu, Recycler())

    def to_slots(self, state: AdamState) -> tuple[int, tuple[Any, ...]]:
        return state.step, (state.mu, state.nu)

    def slots(self, xp: Any, x: Any) -> tuple[Any, ...]:
        return xp.zeros_like(x), xp.zeros_like(x)

    def coefficients(self, step: int) -> tuple[float, ...]:
        # The step size over the first moment's bias correction, and the second's.
        count = step + 1
        lr = self.lr if type(self.lr) is float else rate_at("lr", self.lr, step)
        return lr / (1.0 - self.b1**count), 1.0 - self.b2**count

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (mu, nu), (lr_c1, c2) = slots, coefficients
        m = self.b1 * mu + (1.0 - self.b1) * grad
        v = self.b2 * nu + (1.0 - self.b2) * (grad * grad)
        return x - (m / (xp.sqrt(v / c2) + self.eps)) * lr_c1, (m, v)

    def update(self, grad: np.ndarray, x: np.ndarray, state: AdamState) -> tuple[np.ndarray, AdamState]:
        # Pure: the new iterate and moments are new arrays (large ones from the run's recycled
        # memory, see _kernels); the state given is not written.
        return self._update(grad, x, state, donate=False)

    def update_donated(self, grad: np.ndarray, x: np.ndarray, state: AdamState) -> tuple[np.ndarray, AdamState]:
        # The driver's: the moments of a large vector are updated in place, like torch.optim's.
        return self._update(grad, x, state, donate=True)

    def _update(self, grad: np.ndarray, x: np.ndarray, state: AdamState, donate: bool) -> tuple[np.ndarray, AdamState]:
        lr_c1, c2 = self.coefficients(state.step)
        if x.size < RECYCLE_MIN_SIZE:  # `leaf_update`, on NumPy
            x_new, (mu, nu) = self.leaf_update(np, grad, x, (state.mu, state.nu), (lr_c1, c2))
        else:  # a large vector: the same maths in one fused pass (`adam_step`), bit for bit
            x_new, mu, nu = adam_step(
                x, grad, state.mu, state.nu, lr_c1, self.b1, self.b2, c2, self.eps, memory=state.spare, donate=donate
            )
        return x_new, AdamState(state.step + 1, mu, nu, state.spare)
