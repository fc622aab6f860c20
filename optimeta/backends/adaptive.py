"""The adaptive first-order family: AdamW, AMSGrad, Adamax, NAdam, RMSProp, Adagrad, Adadelta, Lion.

Each is step-wise with one value-and-gradient evaluation per step (`FirstOrderAlgorithm`): the
traits of the family, bounds by projection onto the box after each step, and ``lr`` a number or
a schedule (`optimeta.schedules`). The updates follow the papers cited, in the conventions of
``torch.optim`` and optax where the papers leave a choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from .. import schedules
from ..schedules import Schedule
from ..traits import Traits, register
from ._base import (
    EXAMPLE_BUDGET,
    FIRST_ORDER_TRAITS,
    Example,
    FirstOrderAlgorithm,
    check_fraction,
    check_nonnegative,
    check_positive,
    check_rate,
    rate_at,
)

__all__ = ["AMSGrad", "Adadelta", "Adagrad", "AdamW", "Adamax", "Lion", "MomentState", "NAdam", "RMSProp"]


class MomentState(NamedTuple):
    """Updates made so far and the running statistics of the gradient (their meaning per algorithm)."""

    step: int
    first: np.ndarray
    second: np.ndarray
    third: np.ndarray | None = None


def _moments(x0: np.ndarray, third: bool = False) -> MomentState:
    return MomentState(0, np.zeros_like(x0), np.zeros_like(x0), np.zeros_like(x0) if third else None)


def _check_adam_family(alg: AdamW | AMSGrad | Adamax | NAdam) -> None:
    check_rate("lr", alg.lr)
    check_fraction("b1", alg.b1)
    check_fraction("b2", alg.b2)
    check_positive("eps", alg.eps)


@register
@dataclass(frozen=True, kw_only=True)
class AdamW(FirstOrderAlgorithm[MomentState]):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    .. math::
        m_k = \beta_1 m_{k-1} + (1 - \beta_1) g_k, \quad v_k = \beta_2 v_{k-1} + (1 - \beta_2) g_k^2,

        u_{k+1} = u_k - \eta \left(\frac{m_k / (1 - \beta_1^k)}{\sqrt{v_k / (1 - \beta_2^k)} + \epsilon}
        + \lambda u_k\right)

    Args:
        lr: Step size :math:`\eta > 0` or a schedule.
        b1, b2: Moment decays in [0, 1).
        eps: :math:`\epsilon > 0`.
        weight_decay: :math:`\lambda \ge 0`, applied to the iterate, not through the gradient.

    Traits:
        The first-order family's: single_call_per_step, tolerates_stochastic_loss,
        requires_gradient, supports_bounds (projection), supports_callback; runs to a budget.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> sol = om.solve(prob, om.AdamW(lr=0.05, weight_decay=0.0), maxiters=2000)
        >>> bool(np.allclose(sol.u, 1.0, atol=1e-3))
        True

    References:
        Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization", ICLR.
    """

    lr: float | Schedule = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-2

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("AdamW", cls(lr=0.02, weight_decay=0.0), EXAMPLE_BUDGET),)

    def __post_init__(self) -> None:
        _check_adam_family(self)
        check_nonnegative("weight_decay", self.weight_decay)

    def init(self, x0: np.ndarray) -> MomentState:
        return _moments(x0)

    def update(self, grad: np.ndarray, x: np.ndarray, state: MomentState) -> tuple[np.ndarray, MomentState]:
        lr, k = rate_at("lr", self.lr, state.step), state.step + 1
        m = self.b1 * state.first + (1 - self.b1) * grad
        v = self.b2 * state.second + (1 - self.b2) * grad * grad
        direction = (m / (1 - self.b1**k)) / (np.sqrt(v / (1 - self.b2**k)) + self.eps) + self.weight_decay * x
        return x - lr * direction, MomentState(k, m, v)


@register
@dataclass(frozen=True, kw_only=True)
class AMSGrad(FirstOrderAlgorithm[MomentState]):
    r"""Adam with the maximum of past second moments in the denominator (Reddi, Kale & Kumar, 2018).

    .. math::
        \hat v_k = \max(\hat v_{k-1}, v_k), \qquad
        u_{k+1} = u_k - \eta \frac{m_k / (1 - \beta_1^k)}{\sqrt{\hat v_k / (1 - \beta_2^k)} + \epsilon}

    with :math:`m_k, v_k` as in Adam (the bias-corrected form of ``torch.optim.Adam(amsgrad=True)``).

    Args:
        lr: Step size or a schedule. b1, b2: Moment decays in [0, 1). eps: > 0.

    Traits:
        The first-order family's (see `AdamW`).

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> bool(np.allclose(om.solve(prob, om.AMSGrad(lr=0.05), maxiters=2000).u, 1.0, atol=1e-3))
        True

    References:
        Reddi, Kale & Kumar (2018), "On the Convergence of Adam and Beyond", ICLR.
    """

    lr: float | Schedule = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("AMSGrad", cls(lr=0.02), EXAMPLE_BUDGET),)

    def __post_init__(self) -> None:
        _check_adam_family(self)

    def init(self, x0: np.ndarray) -> MomentState:
        return _moments(x0, third=True)

    def update(self, grad: np.ndarray, x: np.ndarray, state: MomentState) -> tuple[np.ndarray, MomentState]:
        lr, k = rate_at("lr", self.lr, state.step), state.step + 1
        m = self.b1 * state.first + (1 - self.b1) * grad
        v = self.b2 * state.second + (1 - self.b2) * grad * grad
        v_max = v if state.third is None else np.maximum(state.third, v)
        step = (m / (1 - self.b1**k)) / (np.sqrt(v_max / (1 - self.b2**k)) + self.eps)
        return x - lr * step, MomentState(k, m, v, v_max)


@register
@dataclass(frozen=True, kw_only=True)
class Adamax(FirstOrderAlgorithm[MomentState]):
    r"""Adam in the infinity norm (Kingma & Ba, 2015, section 7.1).

    .. math::
        m_k = \beta_1 m_{k-1} + (1 - \beta_1) g_k, \quad w_k = \max(\beta_2 w_{k-1}, |g_k| + \epsilon), \quad
        u_{k+1} = u_k - \frac{\eta}{1 - \beta_1^k} \frac{m_k}{w_k}

    with :math:`\epsilon` inside the maximum, as ``torch.optim.Adamax`` and ``optax.adamax`` put it
    (the paper has no :math:`\epsilon`): it keeps the denominator away from zero while the
    gradient vanishes, and a large past gradient dominates it rather than adds to it.

    Args:
        lr: Step size or a schedule. b1, b2: Decays in [0, 1). eps: > 0.

    Traits:
        The first-order family's (see `AdamW`).

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> bool(np.allclose(om.solve(prob, om.Adamax(lr=0.05), maxiters=2000).u, 1.0, atol=1e-3))
        True

    References:
        Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", ICLR.
    """

    lr: float | Schedule = 2e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("Adamax", cls(lr=0.05), EXAMPLE_BUDGET),)

    def __post_init__(self) -> None:
        _check_adam_family(self)

    def init(self, x0: np.ndarray) -> MomentState:
        return _moments(x0)

    def update(self, grad: np.ndarray, x: np.ndarray, state: MomentState) -> tuple[np.ndarray, MomentState]:
        lr, k = rate_at("lr", self.lr, state.step), state.step + 1
        m = self.b1 * state.first + (1 - self.b1) * grad
        w = np.maximum(self.b2 * state.second, np.abs(grad) + self.eps)
        return x - (lr / (1 - self.b1**k)) * m / w, MomentState(k, m, w)


@register
@dataclass(frozen=True, kw_only=True)
class NAdam(FirstOrderAlgorithm[MomentState]):
    r"""Adam with Nesterov momentum (Dozat, 2016), in the form optax uses.

    .. math::
        \hat m_k = \frac{\beta_1 m_k}{1 - \beta_1^{k+1}} + \frac{(1 - \beta_1) g_k}{1 - \beta_1^k}, \qquad
        u_{k+1} = u_k - \eta \frac{\hat m_k}{\sqrt{v_k / (1 - \beta_2^k)} + \epsilon}

    with :math:`m_k, v_k` as in Adam.

    Args:
        lr: Step size or a schedule. b1, b2: Moment decays in [0, 1). eps: > 0.

    Traits:
        The first-order family's (see `AdamW`).

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> bool(np.allclose(om.solve(prob, om.NAdam(lr=0.05), maxiters=2000).u, 1.0, atol=1e-3))
        True

    References:
        Dozat (2016), "Incorporating Nesterov Momentum into Adam", ICLR workshop.
    """

    lr: float | Schedule = 2e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("NAdam", cls(lr=0.02), EXAMPLE_BUDGET),)

    def __post_init__(self) -> None:
        _check_adam_family(self)

    def init(self, x0: np.ndarray) -> MomentState:
        return _moments(x0)

    def update(self, grad: np.ndarray, x: np.ndarray, state: MomentState) -> tuple[np.ndarray, MomentState]:
        lr, k = rate_at("lr", self.lr, state.step), state.step + 1
        m = self.b1 * state.first + (1 - self.b1) * grad
        v = self.b2 * state.second + (1 - self.b2) * grad * grad
        m_hat = self.b1 * m / (1 - self.b1 ** (k + 1)) + (1 - self.b1) * grad / (1 - self.b1**k)
        return x - lr * m_hat / (np.sqrt(v / (1 - self.b2**k)) + self.eps), MomentState(k, m, v)


@register
@dataclass(frozen=True, kw_only=True)
class RMSProp(FirstOrderAlgorithm[MomentState]):
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

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_fraction("rho", self.rho)
        check_positive("eps", self.eps)
        check_fraction("momentum", self.momentum)

    def init(self, x0: np.ndarray) -> MomentState:
        return _moments(x0)

    def update(self, grad: np.ndarray, x: np.ndarray, state: MomentState) -> tuple[np.ndarray, MomentState]:
        lr = rate_at("lr", self.lr, state.step)
        s = self.rho * state.second + (1 - self.rho) * grad * grad
        b = self.momentum * state.first + grad / (np.sqrt(s) + self.eps)
        return x - lr * b, MomentState(state.step + 1, b, s)


@register
@dataclass(frozen=True, kw_only=True)
class Adagrad(FirstOrderAlgorithm[MomentState]):
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

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_positive("eps", self.eps)
        check_nonnegative("initial_accumulator", self.initial_accumulator)

    def init(self, x0: np.ndarray) -> MomentState:
        return MomentState(0, np.full_like(x0, self.initial_accumulator), np.zeros_like(x0))

    def update(self, grad: np.ndarray, x: np.ndarray, state: MomentState) -> tuple[np.ndarray, MomentState]:
        lr = rate_at("lr", self.lr, state.step)
        total = state.first + grad * grad
        return x - lr * grad / (np.sqrt(total) + self.eps), MomentState(state.step + 1, total, state.second)


@register
@dataclass(frozen=True, kw_only=True)
class Adadelta(FirstOrderAlgorithm[MomentState]):
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

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_fraction("rho", self.rho)
        check_positive("eps", self.eps)

    def init(self, x0: np.ndarray) -> MomentState:
        return _moments(x0)

    def update(self, grad: np.ndarray, x: np.ndarray, state: MomentState) -> tuple[np.ndarray, MomentState]:
        lr = rate_at("lr", self.lr, state.step)
        a = self.rho * state.first + (1 - self.rho) * grad * grad
        delta = np.sqrt(state.second + self.eps) / np.sqrt(a + self.eps) * grad
        d = self.rho * state.second + (1 - self.rho) * delta * delta
        return x - lr * delta, MomentState(state.step + 1, a, d)


@register
@dataclass(frozen=True, kw_only=True)
class Lion(FirstOrderAlgorithm[MomentState]):
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

    def __post_init__(self) -> None:
        check_rate("lr", self.lr)
        check_fraction("b1", self.b1)
        check_fraction("b2", self.b2)
        check_nonnegative("weight_decay", self.weight_decay)

    def init(self, x0: np.ndarray) -> MomentState:
        return _moments(x0)

    def update(self, grad: np.ndarray, x: np.ndarray, state: MomentState) -> tuple[np.ndarray, MomentState]:
        lr = rate_at("lr", self.lr, state.step)
        c = self.b1 * state.first + (1 - self.b1) * grad
        m = self.b2 * state.first + (1 - self.b2) * grad
        return x - lr * (np.sign(c) + self.weight_decay * x), MomentState(state.step + 1, m, state.second)
