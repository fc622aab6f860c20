"""The adaptive first-order family beyond Adam's moments: RMSProp, Adagrad, Adadelta, Lion.

Each is step-wise with one value-and-gradient evaluation per step (`FirstOrderAlgorithm`): the
traits of the family, bounds by projection onto the box after each step, and ``lr`` a number or
a schedule (`optimeta.schedules`). The updates follow the papers cited, in the conventions of
``torch.optim`` and optax where the papers leave a choice. RMSProp, Adagrad and Adadelta scale
each coordinate's step by a running statistic of its squared gradients, without Adam's bias
correction; Lion steps by the sign of a momentum. Their averages come from the machinery they
share with the Adam variants (``_moments``; those are in ``adaptive``).

Each has its own state, a NamedTuple whose fields are named for what they hold, from the step
count on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .. import schedules
from ..schedules import Schedule
from ..traits import Traits, register
from ._base import EXAMPLE_BUDGET, FIRST_ORDER_TRAITS, ElementwiseAlgorithm, Example
from ._checks import check_fraction, check_nonnegative, check_positive, check_rate
from ._moments import accumulate_square, ema, ema_of_square

__all__ = [
    "Adadelta",
    "AdadeltaState",
    "Adagrad",
    "AdagradState",
    "Lion",
    "LionState",
    "RMSProp",
    "RMSPropState",
]


class RMSPropState(NamedTuple):
    """`RMSProp`'s state: the updates made so far, the moving average of the squared gradient,
    `sq_avg` (:math:`s_k`), and the momentum buffer, `momentum_buffer` (:math:`b_k`, the last
    step's direction: with ``momentum=0`` the last scaled gradient, which the next step weighs
    by 0)."""

    step: int
    sq_avg: np.ndarray
    momentum_buffer: np.ndarray


class AdagradState(NamedTuple):
    """`Adagrad`'s state: the updates made so far, and the sum of the squared gradients,
    `sum_sq` (:math:`G_k`, from ``initial_accumulator``)."""

    step: int
    sum_sq: np.ndarray


class AdadeltaState(NamedTuple):
    """`Adadelta`'s state: the updates made so far, the moving average of the squared gradient,
    `sq_avg` (:math:`a_k`), and that of the squared updates, `delta_avg` (:math:`d_k`)."""

    step: int
    sq_avg: np.ndarray
    delta_avg: np.ndarray


class LionState(NamedTuple):
    """`Lion`'s state: the updates made so far, and the momentum, `m` (a moving average of the
    gradient with decay ``b2``)."""

    step: int
    m: np.ndarray


@register
@dataclass(frozen=True, kw_only=True)
class RMSProp(ElementwiseAlgorithm[RMSPropState]):
    r"""RMSProp (Tieleman & Hinton, 2012), optionally with momentum.

    .. math::
        s_k = \rho s_{k-1} + (1 - \rho) g_k^2, \quad
        b_k = \mu b_{k-1} + \frac{g_k}{\sqrt{s_k} + \epsilon}, \quad u_{k+1} = u_k - \eta b_k

    (``torch.optim.RMSprop``'s convention; :math:`\mu = 0` is plain RMSProp).

    Args:
        lr: Step size or a schedule. rho: Decay of the squared-gradient average in [0, 1).
        eps: > 0. momentum: :math:`\mu \in [0, 1)`.

    Traits:
        The first-order family's (see `AdamW`).

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> sol = om.solve(prob, om.RMSProp(lr=om.schedules.exponential_decay(0.01, 0.999)), maxiters=3000)
        >>> bool(np.allclose(sol.u, 1.0, atol=1e-3))
        True

    References:
        Tieleman & Hinton (2012), Lecture 6.5, "rmsprop", COURSERA: Neural Networks for Machine Learning.
    """

    lr: float | Schedule = 1e-2
    rho: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("RMSProp", cls(lr=schedules.exponential_decay(0.02, 0.998)), EXAMPLE_BUDGET),)

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> RMSProp:
        return cls(lr=rates["Adam"])  # Adam's scale of step (see `AdamW.benchmark_config`)

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_fraction("rho", self.rho)
        check_positive("eps", self.eps)
        check_fraction("momentum", self.momentum)

    state_type: ClassVar[Any] = RMSPropState

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (sq_avg, buffer), (lr,) = slots, coefficients
        s = ema_of_square(sq_avg, grad, self.rho)
        # The buffer is kept and weighed by 0 without momentum: the same operations either way.
        b = self.momentum * buffer + grad / (xp.sqrt(s) + self.eps)
        return x - lr * b, (s, b)


@register
@dataclass(frozen=True, kw_only=True)
class Adagrad(ElementwiseAlgorithm[AdagradState]):
    r"""Adagrad (Duchi, Hazan & Singer, 2011): per-coordinate steps shrinking with the sum of
    squared gradients.

    .. math::
        G_k = G_{k-1} + g_k^2, \qquad u_{k+1} = u_k - \eta \frac{g_k}{\sqrt{G_k} + \epsilon}

    Args:
        lr: Step size or a schedule. eps: > 0. initial_accumulator: :math:`G_0 \ge 0`.

    Traits:
        The first-order family's (see `AdamW`).

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> bool(np.allclose(om.solve(prob, om.Adagrad(lr=0.5), maxiters=2000).u, 1.0, atol=1e-3))
        True

    References:
        Duchi, Hazan & Singer (2011), "Adaptive Subgradient Methods for Online Learning and
        Stochastic Optimization", JMLR 12.
    """

    lr: float | Schedule = 1e-2
    eps: float = 1e-10
    initial_accumulator: float = 0.0

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("Adagrad", cls(lr=0.5), EXAMPLE_BUDGET),)

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> Adagrad:
        # Ten times Adam's step size: Adagrad's steps shrink with the sum of squared gradients.
        return cls(lr=10 * rates["Adam"])

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_positive("eps", self.eps)
        check_nonnegative("initial_accumulator", self.initial_accumulator)

    state_type: ClassVar[Any] = AdagradState

    def slots(self, xp: Any, x: Any) -> tuple[Any, ...]:
        return (xp.full_like(x, self.initial_accumulator),)

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (sum_sq,), (lr,) = slots, coefficients
        total = accumulate_square(sum_sq, grad)
        return x - lr * grad / (xp.sqrt(total) + self.eps), (total,)


@register
@dataclass(frozen=True, kw_only=True)
class Adadelta(ElementwiseAlgorithm[AdadeltaState]):
    r"""Adadelta (Zeiler, 2012): steps scaled by the ratio of running RMS of updates and gradients.

    .. math::
        a_k = \rho a_{k-1} + (1 - \rho) g_k^2, \quad
        \Delta_k = \frac{\sqrt{d_{k-1} + \epsilon}}{\sqrt{a_k + \epsilon}} g_k, \quad
        d_k = \rho d_{k-1} + (1 - \rho) \Delta_k^2, \quad u_{k+1} = u_k - \eta \Delta_k

    Args:
        lr: Scale of the step (1.0 in the paper) or a schedule. rho: Decay in [0, 1). eps: > 0.

    Traits:
        The first-order family's (see `AdamW`).

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> sol = om.solve(prob, om.Adadelta(lr=1.0, eps=1e-4), maxiters=3000)
        >>> bool(np.allclose(sol.u, 1.0, atol=1e-3))
        True

    References:
        Zeiler (2012), "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701.
    """

    lr: float | Schedule = 1.0
    rho: float = 0.9
    eps: float = 1e-6

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("Adadelta", cls(lr=schedules.cosine_decay(1.0, EXAMPLE_BUDGET), eps=1e-3), EXAMPLE_BUDGET),)

    # The benchmark suite runs it with its defaults (`Algorithm.benchmark_config`): Adadelta sets
    # its own scale of step, and its default lr=1.0 is the paper's.

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_fraction("rho", self.rho)
        check_positive("eps", self.eps)

    state_type: ClassVar[Any] = AdadeltaState

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (sq_avg, delta_avg), (lr,) = slots, coefficients
        a = ema_of_square(sq_avg, grad, self.rho)
        delta = xp.sqrt(delta_avg + self.eps) / xp.sqrt(a + self.eps) * grad
        d = ema_of_square(delta_avg, delta, self.rho)
        return x - lr * delta, (a, d)


@register
@dataclass(frozen=True, kw_only=True)
class Lion(ElementwiseAlgorithm[LionState]):
    r"""Lion, evolved sign momentum (Chen et al., 2023).

    .. math::
        c_k = \beta_1 m_{k-1} + (1 - \beta_1) g_k, \quad
        u_{k+1} = u_k - \eta (\operatorname{sign}(c_k) + \lambda u_k), \quad
        m_k = \beta_2 m_{k-1} + (1 - \beta_2) g_k

    Every coordinate moves by :math:`\eta` per step, so its step size is usually 3 to 10 times
    smaller than Adam's.

    Args:
        lr: Step size or a schedule. b1, b2: Decays in [0, 1). weight_decay: :math:`\lambda \ge 0`.

    Traits:
        The first-order family's (see `AdamW`).

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> lr = om.schedules.cosine_decay(0.01, decay_steps=2000)
        >>> bool(np.allclose(om.solve(prob, om.Lion(lr=lr), maxiters=2000).u, 1.0, atol=1e-3))
        True

    References:
        Chen et al. (2023), "Symbolic Discovery of Optimization Algorithms", NeurIPS.
    """

    lr: float | Schedule = 1e-4
    b1: float = 0.9
    b2: float = 0.99
    weight_decay: float = 0.0

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("Lion", cls(lr=schedules.cosine_decay(0.01, EXAMPLE_BUDGET)), EXAMPLE_BUDGET),)

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> Lion:
        # A tenth of Adam's step size: Lion moves every coordinate by lr.
        return cls(lr=rates["Adam"] / 10)

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_fraction("b1", self.b1)
        check_fraction("b2", self.b2)
        check_nonnegative("weight_decay", self.weight_decay)

    state_type: ClassVar[Any] = LionState

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (m,), (lr,) = slots, coefficients
        c = ema(m, grad, self.b1)  # the direction: the momentum interpolated with b1
        m = ema(m, grad, self.b2)  # the momentum kept: with b2
        return x - lr * (xp.sign(c) + self.weight_decay * x), (m,)
