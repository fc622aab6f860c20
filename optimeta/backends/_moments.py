r"""The moment machinery of the adaptive first-order family: running statistics of the gradient.

The family (`AdamW`, `AMSGrad`, `Adamax`, `NAdam` in ``adaptive``; `RMSProp`, `Adagrad`,
`Adadelta`, `Lion` in ``adaptive_scaling``) keeps per-coordinate averages of the gradient and of
its square, and the Adam variants correct them for their start at zero. These are those pieces,
as pure functions: each returns new arrays and never writes its arguments, so an ``update``
built from them is pure, as `FirstOrderAlgorithm` requires.

Each computes its formula with the operations in the order written in its docstring: the
iterates of the algorithms built from them are reproducible to the bit (``decay * avg +
(1 - decay) * value * value`` is not ``decay * avg + (1 - decay) * (value * value)`` in floating
point).

Example:
    One Adam step's direction from zero moments, at step :math:`k = 1`:

    >>> import numpy as np
    >>> from optimeta.backends._moments import adam_direction, bias_correction, ema, ema_of_square
    >>> g = np.array([0.5, -2.0])
    >>> m, v = ema(np.zeros(2), g, 0.9), ema_of_square(np.zeros(2), g, 0.999)
    >>> adam_direction(np, m, v, bias_correction(0.9, 1), bias_correction(0.999, 1), 1e-8).round(6)  # the sign of g: bias-corrected, m/sqrt(v) = g/|g|
    array([ 1., -1.])
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "accumulate_square",
    "adam_direction",
    "bias_correction",
    "debiased",
    "ema",
    "ema_of_square",
    "rms_denominator",
]


def ema(avg: np.ndarray, value: np.ndarray, decay: float) -> np.ndarray:
    r"""The exponential moving average `avg` updated with `value`: ``decay * avg + (1 - decay) * value``.

    .. math:: a_k = \beta a_{k-1} + (1 - \beta) x_k

    Args:
        avg: The average so far, :math:`a_{k-1}` (zeros before the first value).
        value: The new value, :math:`x_k` (the gradient, for a first moment).
        decay: :math:`\beta \in [0, 1)`, the weight kept on the average so far.
    """
    return decay * avg + (1 - decay) * value


def ema_of_square(avg: np.ndarray, value: np.ndarray, decay: float) -> np.ndarray:
    r"""The exponential moving average `avg` of squares updated with `value` squared:
    ``decay * avg + (1 - decay) * value * value``, the last product taken left to right.

    .. math:: a_k = \beta a_{k-1} + (1 - \beta) x_k^2

    Args:
        avg: The average of squares so far, :math:`a_{k-1}`.
        value: The new value, :math:`x_k`, not squared (the gradient, for a second moment).
        decay: :math:`\beta \in [0, 1)`.
    """
    out: np.ndarray = decay * avg + (1 - decay) * value * value
    return out


def accumulate_square(total: np.ndarray, value: np.ndarray) -> np.ndarray:
    r"""The running sum of squares `total` with `value` squared added: ``total + value * value``.

    .. math:: G_k = G_{k-1} + x_k^2
    """
    out: np.ndarray = total + value * value
    return out


def bias_correction(decay: float, k: int) -> float:
    r"""``1 - decay**k``: the total weight a moving average started at zero puts on its `k` values.

    .. math:: c_k = 1 - \beta^k

    Dividing the average by it (`debiased`) undoes the pull towards the zero it started from.

    Args:
        decay: :math:`\beta \in [0, 1)`, the average's decay.
        k: The number of values averaged, from 1.
    """
    return 1 - decay**k


def debiased(avg: np.ndarray, decay: float, k: int) -> np.ndarray:
    r"""The bias-corrected moving average: ``avg / (1 - decay**k)`` (see `bias_correction`).

    .. math:: \hat a_k = \frac{a_k}{1 - \beta^k}
    """
    return avg / bias_correction(decay, k)


def rms_denominator(xp: Any, v: Any, c2: float, eps: float) -> Any:
    r"""Adam's denominator: the root of the bias-corrected second moment `v`, plus `eps`:
    ``xp.sqrt(v / c2) + eps``, with ``c2 = bias_correction(b2, k)``.

    .. math:: \sqrt{v_k / (1 - \beta_2^k)} + \epsilon

    Args:
        xp: The array namespace of `v` (``numpy``, ``jax.numpy``, ``torch``).
        v: The second moment.
        c2: Its bias correction, :math:`1 - \beta_2^k` (a Python float).
        eps: :math:`\epsilon > 0`.
    """
    return xp.sqrt(v / c2) + eps


def adam_direction(xp: Any, m: Any, v: Any, c1: float, c2: float, eps: float) -> Any:
    r"""Adam's step direction from its moments `m` and `v` and their bias corrections:
    ``(m / c1) / (xp.sqrt(v / c2) + eps)``.

    .. math:: \frac{m_k / (1 - \beta_1^k)}{\sqrt{v_k / (1 - \beta_2^k)} + \epsilon}

    Args:
        xp: The array namespace of `m` and `v`.
        m: The first moment (moving average of the gradient), :math:`m_k`.
        v: The second moment (moving average of its square), :math:`v_k`; AMSGrad passes the
            running maximum of the second moments.
        c1, c2: ``bias_correction(b1, k)`` and ``bias_correction(b2, k)`` at step `k`.
        eps: :math:`\epsilon > 0`.
    """
    return (m / c1) / rms_denominator(xp, v, c2, eps)
