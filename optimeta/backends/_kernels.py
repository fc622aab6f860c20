"""Fused update kernels for large parameter vectors: numba when installed, NumPy in place otherwise.

NumPy needs about ten passes over memory for one Adam update; a fused loop reads x, g, m, v and
writes x', m, v once. Both paths do the same floating-point operations in the same order, so they
give the same iterates bit for bit (numba compiles without fast-math, which could reorder them).
The moment buffers are updated in place: they belong to the run's algorithm state.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["FUSED_MIN_SIZE", "adam_step", "have_numba", "momentum_step"]

#: Below this many parameters the NumPy path is used: a JIT compilation would not pay off.
FUSED_MIN_SIZE = 100_000


def have_numba() -> bool:
    """Whether the optional numba kernels are available."""
    return importlib.util.find_spec("numba") is not None


def _step(
    numpy_path: Callable[..., np.ndarray],
    fused_kernel: Callable[[], Callable[..., Any]],
    fused: bool | None,
    x: np.ndarray,
    *args: Any,
) -> np.ndarray:
    """Run one update by the fused kernel (into a fresh output vector) or by the NumPy path.

    ``fused=None`` picks the numba kernel for vectors of FUSED_MIN_SIZE and more, when installed.
    """
    if fused is None:
        fused = x.size >= FUSED_MIN_SIZE and have_numba()
    if not fused:
        return numpy_path(x, *args)
    out = np.empty_like(x)
    fused_kernel()(out, x, *args)
    return out


def _adam_numpy(
    x: np.ndarray,
    g: np.ndarray,
    mu: np.ndarray,
    nu: np.ndarray,
    lr_c1: float,
    b1: float,
    b2: float,
    c2: float,
    eps: float,
) -> np.ndarray:
    mu *= b1
    mu += (1.0 - b1) * g
    nu *= b2
    g2 = g * g
    g2 *= 1.0 - b2
    nu += g2
    denom = nu / c2
    np.sqrt(denom, out=denom)
    denom += eps
    np.divide(mu, denom, out=denom)
    denom *= lr_c1
    x_new: np.ndarray = x - denom
    return x_new


# error_model="numpy" drops Python's zero-division checks, which keep a loop from being
# vectorised; parallel=True spreads it over the cores. Each element is computed alone, in the
# same order as the NumPy path, so the results stay bitwise equal. Compiled once, on first use.
@functools.cache
def _adam_fused() -> Callable[..., Any]:
    import numba

    @numba.njit(cache=False, fastmath=False, error_model="numpy", parallel=True)
    def kernel(out, x, g, mu, nu, lr_c1, b1, b2, c2, eps):  # type: ignore[no-untyped-def]
        for i in numba.prange(x.size):
            m = b1 * mu[i] + (1.0 - b1) * g[i]
            v = b2 * nu[i] + (1.0 - b2) * (g[i] * g[i])
            mu[i] = m
            nu[i] = v
            out[i] = x[i] - (m / (np.sqrt(v / c2) + eps)) * lr_c1

    return kernel


def adam_step(
    x: np.ndarray,
    g: np.ndarray,
    mu: np.ndarray,
    nu: np.ndarray,
    lr_c1: float,
    b1: float,
    b2: float,
    c2: float,
    eps: float,
    fused: bool | None = None,
) -> np.ndarray:
    """One Adam update: the new iterate; `mu` and `nu` are updated in place.

    ``x' = x - lr_c1 * m / (sqrt(v / c2) + eps)`` with ``m = b1 mu + (1 - b1) g`` and
    ``v = b2 nu + (1 - b2) g^2``.
    """
    return _step(_adam_numpy, _adam_fused, fused, x, g, mu, nu, lr_c1, b1, b2, c2, eps)


def _momentum_numpy(
    x: np.ndarray, g: np.ndarray, velocity: np.ndarray, lr: float, momentum: float, nesterov: bool
) -> np.ndarray:
    velocity *= momentum
    velocity += g
    if nesterov:
        direction = momentum * velocity
        direction += g
    else:
        direction = velocity.copy()
    direction *= lr
    x_new: np.ndarray = x - direction
    return x_new


@functools.cache
def _momentum_fused() -> Callable[..., Any]:
    import numba

    @numba.njit(cache=False, fastmath=False, error_model="numpy", parallel=True)
    def kernel(out, x, g, velocity, lr, momentum, nesterov):  # type: ignore[no-untyped-def]
        for i in numba.prange(x.size):
            v = momentum * velocity[i] + g[i]
            velocity[i] = v
            d = momentum * v + g[i] if nesterov else v
            out[i] = x[i] - lr * d

    return kernel


def momentum_step(
    x: np.ndarray,
    g: np.ndarray,
    velocity: np.ndarray,
    lr: float,
    momentum: float,
    nesterov: bool,
    fused: bool | None = None,
) -> np.ndarray:
    """One heavy-ball or Nesterov step: the new iterate; `velocity` is updated in place.

    ``v = momentum v + g``, ``x' = x - lr (momentum v + g)`` (Nesterov) or ``x - lr v``.
    """
    return _step(_momentum_numpy, _momentum_fused, fused, x, g, velocity, lr, momentum, nesterov)
