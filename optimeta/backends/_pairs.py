"""The maths of curvature-pair quasi-Newton steps, written once for every array library.

A *vector* here is a tuple of arrays (NumPy, ``jax.numpy`` or ``torch``): the flat NumPy
iterate as a 1-tuple, or the user's arrays leaf by leaf on a native run. `two_loop` is the
L-BFGS two-loop recursion over a memory of curvature pairs :math:`(s_i, y_i)`, oldest first;
`curvature_pair` makes and judges a new pair. A memory of fixed length whose first entries are
not filled yet (a compiled jax step cannot change its arrays' number) passes ``valid``, one
flag per pair; the flags select, so that the unfilled pairs (zeros) add nothing.

`CurvaturePairAlgorithm` is the base of the algorithms built on them (`OLBFGS`): what a native
step needs of them is their step size, their memory and these functions.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

from ._base import StepwiseAlgorithm

__all__ = ["CurvaturePairAlgorithm", "curvature_pair", "first_direction", "inner", "two_loop"]

#: A vector: one array per leaf.
Vector = tuple[Any, ...]


def inner(a: Vector, b: Vector) -> Any:
    """The inner product of two vectors, leaf by leaf: a 0-d array of their namespace."""
    total = a[0].reshape(-1) @ b[0].reshape(-1)
    for ai, bi in zip(a[1:], b[1:]):
        total = total + ai.reshape(-1) @ bi.reshape(-1)
    return total


def first_direction(xp: Any, grad: Vector) -> Vector:
    r"""The step before any pair is known: :math:`-g / \max(1, \|g\|_\infty)`, of length at most 1."""
    largest = functools.reduce(xp.maximum, [xp.max(xp.abs(g)) for g in grad])
    scale = largest.clip(min=1.0)
    return tuple(-g / scale for g in grad)


def two_loop(
    xp: Any, grad: Vector, s: Sequence[Vector], y: Sequence[Vector], valid: Sequence[Any] | None = None
) -> Vector:
    r"""Minus the L-BFGS inverse-Hessian estimate times `grad` (Nocedal & Wright, Algorithm 7.4).

    The initial matrix is :math:`\gamma I` with :math:`\gamma` the mean of
    :math:`s_i^\top y_i / y_i^\top y_i` over the pairs. `valid` (None: every pair) flags the
    pairs in use; at least one must be.
    """
    q = tuple(grad)
    alphas = []
    for j in reversed(range(len(s))):
        ys = inner(y[j], s[j])
        if valid is None:
            alpha = inner(s[j], q) / ys
        else:
            alpha = xp.where(valid[j], inner(s[j], q) / xp.where(valid[j], ys, 1.0), 0.0)
        q = tuple(qi - alpha * yi for qi, yi in zip(q, y[j]))
        alphas.append((alpha, ys))
    ratios = [inner(sj, yj) / inner(yj, yj) for sj, yj in zip(s, y)]
    if valid is None:
        gamma = sum(ratios[1:], ratios[0]) / len(ratios)
    else:
        used = [xp.where(v, ratio, 0.0) for v, ratio in zip(valid, ratios)]
        count = sum(valid[1:], valid[0] * 1)
        gamma = sum(used[1:], used[0]) / count
    r = tuple(qi * gamma for qi in q)
    for j, (alpha, ys) in zip(range(len(s)), reversed(alphas)):
        if valid is None:
            coefficient = alpha - inner(y[j], r) / ys
        else:
            coefficient = xp.where(valid[j], alpha - inner(y[j], r) / xp.where(valid[j], ys, 1.0), 0.0)
        r = tuple(ri + sj * coefficient for ri, sj in zip(r, s[j]))
    return tuple(-ri for ri in r)


def curvature_pair(
    xp: Any, x: Vector, x_new: Vector, grad: Vector, grad_new: Vector, reg: float
) -> tuple[Vector, Vector, Any]:
    r"""The pair :math:`s = x_{new} - x`, :math:`y = g_{new} - g + \lambda s` of one step, and
    whether it is kept: :math:`s^\top y > 10^{-10} \|s\| \|y\|` (curvature along the step)."""
    s = tuple(b - a for a, b in zip(x, x_new))
    y = tuple(gn - g + reg * si for g, gn, si in zip(grad, grad_new, s))
    accept = inner(s, y) > 1e-10 * xp.sqrt(inner(s, s)) * xp.sqrt(inner(y, y))
    return s, y, accept


class CurvaturePairAlgorithm(StepwiseAlgorithm[Any]):
    """A quasi-Newton algorithm that keeps curvature pairs and steps by `two_loop`: two
    evaluations per step (at the iterate and at the new one, on one batch and state snapshot),
    the state returned at the new iterate committed.

    Its hyperparameters include ``memory`` (pairs kept) and ``reg``; `rate` is its step size.
    Its state is a `state_type` of the steps taken and the pairs in memory, oldest first, as
    flat NumPy vectors: ``(step, s, y)``.
    """

    memory: int
    reg: float

    #: The NamedTuple of the state: ``(step, s, y)``.
    state_type: ClassVar[Any]

    @abc.abstractmethod
    def rate(self, step: int) -> float:
        """The step size of step number `step` (0 for the first)."""
        raise NotImplementedError

    def init(self, x0: Any) -> Any:
        return self.state_type(0, (), ())

    def kept(self, state: Any, s: Any, y: Any) -> Any:
        """The state after one more step, with the pair (s, y) added (the oldest dropped beyond
        ``memory``)."""
        return self.state_type(state.step + 1, (*state.s, s)[-self.memory :], (*state.y, y)[-self.memory :])
