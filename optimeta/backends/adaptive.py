"""The Adam variants of the adaptive first-order family: AdamW, AMSGrad, Adamax, NAdam.

Each is step-wise with one value-and-gradient evaluation per step (`FirstOrderAlgorithm`): the
traits of the family, bounds by projection onto the box after each step, and ``lr`` a number or
a schedule (`optimeta.schedules`). The updates follow the papers cited, in the conventions of
``torch.optim`` and optax where the papers leave a choice. All four keep Adam's bias-corrected
first moment, and all but Adamax (an infinity norm instead) its second, through the moment
machinery the family shares (``_moments``); the rest of the family (RMSProp, Adagrad, Adadelta,
Lion) is in ``adaptive_scaling``.

Each has its own state, a NamedTuple whose fields are named for what they hold, from the step
count on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..schedules import Schedule
from ..traits import Traits, register
from ._base import EXAMPLE_BUDGET, FIRST_ORDER_TRAITS, ElementwiseAlgorithm, Example
from ._checks import check_fraction, check_nonnegative, check_positive, check_rate, rate_at
from ._moments import adam_direction, bias_correction, ema, ema_of_square, rms_denominator

__all__ = [
    "AMSGrad",
    "AMSGradState",
    "AdamW",
    "AdamWState",
    "Adamax",
    "AdamaxState",
    "NAdam",
    "NAdamState",
]


class AdamWState(NamedTuple):
    """`AdamW`'s state: the updates made so far, and Adam's moments (moving averages of the
    gradient, `m`, and of its square, `v`), not bias-corrected."""

    step: int
    m: np.ndarray
    v: np.ndarray


class AMSGradState(NamedTuple):
    """`AMSGrad`'s state: the updates made so far, Adam's moments `m` and `v`, and the running
    maximum of the second moments, `v_max`, which the step is divided by."""

    step: int
    m: np.ndarray
    v: np.ndarray
    v_max: np.ndarray


class AdamaxState(NamedTuple):
    """`Adamax`'s state: the updates made so far, the first moment `m`, and the exponentially
    weighted infinity norm of the gradients, `inf_norm` (:math:`w_k`, with eps inside)."""

    step: int
    m: np.ndarray
    inf_norm: np.ndarray


class NAdamState(NamedTuple):
    """`NAdam`'s state: the updates made so far, and Adam's moments `m` and `v` (the Nesterov
    look-ahead is taken from them at each step, not kept)."""

    step: int
    m: np.ndarray
    v: np.ndarray


def _check_adam_family(alg: AdamW | AMSGrad | Adamax | NAdam) -> None:
    check_rate("lr", alg.lr)
    check_fraction("b1", alg.b1)
    check_fraction("b2", alg.b2)
    check_positive("eps", alg.eps)


@register
@dataclass(frozen=True, kw_only=True)
class AdamW(ElementwiseAlgorithm[AdamWState]):
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

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> AdamW:
        # The rest of the first-order family runs at Adam's step size where it shares its scale
        # of step (Lion moves every coordinate by lr: a tenth; Adagrad's steps shrink: ten times;
        # Adadelta sets its own scale: 1.0, the paper's). Without weight decay, as in its example:
        # the decay would move the minimum away from the problem's.
        return cls(lr=rates["Adam"], weight_decay=0.0)

    def __post_init__(self) -> None:
        _check_adam_family(self)
        check_nonnegative("weight_decay", self.weight_decay)

    state_type: ClassVar[Any] = AdamWState

    def coefficients(self, step: int) -> tuple[float, ...]:
        k = step + 1
        return rate_at("lr", self.lr, step), bias_correction(self.b1, k), bias_correction(self.b2, k)

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (m, v), (lr, c1, c2) = slots, coefficients
        m = ema(m, grad, self.b1)
        v = ema_of_square(v, grad, self.b2)
        direction = adam_direction(xp, m, v, c1, c2, self.eps) + self.weight_decay * x
        return x - lr * direction, (m, v)


@register
@dataclass(frozen=True, kw_only=True)
class AMSGrad(ElementwiseAlgorithm[AMSGradState]):
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

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> AMSGrad:
        return cls(lr=rates["Adam"])  # Adam's scale of step (see `AdamW.benchmark_config`)

    def __post_init__(self) -> None:
        _check_adam_family(self)

    state_type: ClassVar[Any] = AMSGradState

    def coefficients(self, step: int) -> tuple[float, ...]:
        k = step + 1
        return rate_at("lr", self.lr, step), bias_correction(self.b1, k), bias_correction(self.b2, k)

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (m, v, v_max), (lr, c1, c2) = slots, coefficients
        m = ema(m, grad, self.b1)
        v = ema_of_square(v, grad, self.b2)
        v_max = xp.maximum(v_max, v)
        return x - lr * adam_direction(xp, m, v_max, c1, c2, self.eps), (m, v, v_max)


@register
@dataclass(frozen=True, kw_only=True)
class Adamax(ElementwiseAlgorithm[AdamaxState]):
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

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> Adamax:
        return cls(lr=rates["Adam"])  # Adam's scale of step (see `AdamW.benchmark_config`)

    def __post_init__(self) -> None:
        _check_adam_family(self)

    state_type: ClassVar[Any] = AdamaxState

    def coefficients(self, step: int) -> tuple[float, ...]:
        return (rate_at("lr", self.lr, step) / bias_correction(self.b1, step + 1),)

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (m, inf_norm), (lr_c1,) = slots, coefficients
        m = ema(m, grad, self.b1)
        w = xp.maximum(self.b2 * inf_norm, xp.abs(grad) + self.eps)
        return x - lr_c1 * m / w, (m, w)


@register
@dataclass(frozen=True, kw_only=True)
class NAdam(ElementwiseAlgorithm[NAdamState]):
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

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> NAdam:
        return cls(lr=rates["Adam"])  # Adam's scale of step (see `AdamW.benchmark_config`)

    def __post_init__(self) -> None:
        _check_adam_family(self)

    state_type: ClassVar[Any] = NAdamState

    def coefficients(self, step: int) -> tuple[float, ...]:
        k, b1 = step + 1, self.b1
        return (
            rate_at("lr", self.lr, step),
            bias_correction(b1, k),
            bias_correction(b1, k + 1),
            bias_correction(self.b2, k),
        )

    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        (m, v), (lr, c1, c1_next, c2) = slots, coefficients
        m = ema(m, grad, self.b1)
        v = ema_of_square(v, grad, self.b2)
        # The Nesterov look-ahead: the next step's momentum, and this gradient, each bias-corrected.
        m_hat = self.b1 * m / c1_next + (1 - self.b1) * grad / c1
        return x - lr * m_hat / rms_denominator(xp, v, c2, self.eps), (m, v)
