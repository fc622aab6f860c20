"""Stochastic gradient descent with optional (Nesterov) momentum."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..schedules import Schedule
from ..traits import Traits, register
from ._base import EXAMPLE_BUDGET, FIRST_ORDER_TRAITS, ElementwiseAlgorithm, Example
from ._checks import check_fraction, check_rate, rate_at
from ._kernels import RECYCLE_MIN_SIZE, Recycler, momentum_step

__all__ = ["SGD", "SGDState"]


class SGDState(NamedTuple):
    """Updates made, the velocity (momentum buffer; None without momentum) and the memory the
    next state's arrays are written into (shared by the states of one run, see `Recycler`)."""

    step: int
    velocity: np.ndarray | None
    spare: Recycler


@register
@dataclass(frozen=True, kw_only=True)
class SGD(ElementwiseAlgorithm[SGDState]):
    r"""Gradient descent with optional heavy-ball or Nesterov momentum.

    With gradient :math:`g_k` at :math:`u_k`, momentum :math:`\mu` and step size :math:`\eta`:

    .. math::
        v_{k+1} = \mu v_k + g_k, \qquad
        u_{k+1} = u_k - \eta\,(g_k + \mu v_{k+1}) \text{ (Nesterov) or } u_k - \eta\, v_{k+1}

    (the convention of ``torch.optim.SGD`` without dampening; :math:`\mu = 0` is plain gradient
    descent). With bounds, each iterate is projected onto the box.

    Args:
        lr: Step size :math:`\eta > 0`, or a schedule ``lr(step)`` (see `optimeta.schedules`).
        momentum: :math:`\mu \in [0, 1)`.
        nesterov: Use Nesterov's look-ahead form; needs ``momentum > 0``.

    Traits:
        single_call_per_step, tolerates_stochastic_loss, requires_gradient, supports_bounds
        (projection) and supports_callback; it runs until ``maxiters`` or ``maxtime``.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum(u ** 2), np.ones(2))
        >>> sol = om.solve(prob, om.SGD(lr=0.1, momentum=0.9), maxiters=500)
        >>> bool(abs(sol.u).max() < 1e-6)
        True

    References:
        Polyak (1964), "Some methods of speeding up the convergence of iteration methods".
        Sutskever, Martens, Dahl & Hinton (2013), "On the importance of initialization and
        momentum in deep learning", ICML.
    """

    lr: float | Schedule
    momentum: float = 0.0
    nesterov: bool = False

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS
    state_type: ClassVar[Any] = SGDState
    fused: ClassVar[bool] = True  # `update`: a fused kernel for large vectors

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (
            Example("SGD", cls(lr=0.01), EXAMPLE_BUDGET),
            Example("SGD-momentum", cls(lr=0.005, momentum=0.9), EXAMPLE_BUDGET),
            Example("SGD-nesterov", cls(lr=0.005, momentum=0.9, nesterov=True), EXAMPLE_BUDGET),
        )

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> SGD:
        # Plain SGD at the step size tuned for the problem.
        return cls(lr=rates["SGD"])

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_fraction("momentum", self.momentum)
        if not isinstance(self.nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")

    def from_slots(self, step: int, slots: tuple[Any, ...]) -> SGDState:
        return SGDState(step, slots[0] if slots else None, Recycler())

    def to_slots(self, state: SGDState) -> tuple[int, tuple[Any, ...]]:
        return state.step, () if state.velocity is None else (state.velocity,)

    def slots(self, xp: Any, x: Any) -> tuple[Any, ...]:
        return (xp.zeros_like(x),) if self.momentum else ()

    def coefficients(self, step: int) -> tuple[float, ...]:
        return (self.lr if type(self.lr) is float else rate_at("lr", self.lr, step),)

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (lr,) = coefficients
        if not slots:
            return x - lr * grad, ()
        v = slots[0] * self.momentum + grad
        return x - ((v * self.momentum + grad) * lr if self.nesterov else v * lr), (v,)

    def update(self, grad: np.ndarray, x: np.ndarray, state: SGDState) -> tuple[np.ndarray, SGDState]:
        # Pure: the new iterate and velocity are new arrays (large ones from the run's recycled
        # memory, see _kernels); the state given is not written.
        return self._update(grad, x, state, donate=False)

    def update_donated(self, grad: np.ndarray, x: np.ndarray, state: SGDState) -> tuple[np.ndarray, SGDState]:
        # The driver's: a large velocity is updated in place, like torch.optim's.
        return self._update(grad, x, state, donate=True)

    def _update(self, grad: np.ndarray, x: np.ndarray, state: SGDState, donate: bool) -> tuple[np.ndarray, SGDState]:
        coefficients = self.coefficients(state.step)
        if state.velocity is None or x.size < RECYCLE_MIN_SIZE:  # `leaf_update`, on NumPy
            slots = () if state.velocity is None else (state.velocity,)
            x_new, slots = self.leaf_update(np, grad, x, slots, coefficients)
            return x_new, SGDState(state.step + 1, slots[0] if slots else None, state.spare)
        # A large vector: the same maths in one fused pass (`momentum_step`), bit for bit.
        x_new, velocity = momentum_step(
            x, grad, state.velocity, coefficients[0], self.momentum, self.nesterov, memory=state.spare, donate=donate
        )
        return x_new, SGDState(state.step + 1, velocity, state.spare)
