"""Fused update kernels for large parameter vectors: numba when installed, NumPy in place otherwise.

NumPy needs about ten passes over memory for one Adam update; a fused loop reads x, g, m, v and
writes x', m, v once. Both paths do the same floating-point operations in the same order, so they
give the same iterates bit for bit (numba compiles without fast-math, which could reorder them).
The moment buffers are updated in place: they belong to the run's algorithm state.
"""

from __future__ import annotations

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


_fused: dict[str, Callable[..., Any]] = {}


def _adam_fused() -> Callable[..., Any]:
    if "adam" not in _fused:
        import numba

        # error_model="numpy" drops Python's zero-division checks, which keep the loop from being
        # vectorised; parallel=True spreads it over the cores. Each element is computed alone, in
        # the same order as the NumPy path, so the results stay bitwise equal.
        @numba.njit(cache=False, fastmath=False, error_model="numpy", parallel=True)
        def kernel(x, g, mu, nu, out, lr_c1, b1, b2, c2, eps):  # type: ignore[no-untyped-def]
            for i in numba.prange(x.size):
                m = b1 * mu[i] + (1.0 - b1) * g[i]
                v = b2 * nu[i] + (1.0 - b2) * (g[i] * g[i])
                mu[i] = m
                nu[i] = v
                out[i] = x[i] - (m / (np.sqrt(v / c2) + eps)) * lr_c1

        _fused["adam"] = kernel
    return _fused["adam"]


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
    ``v = b2 nu + (1 - b2) g^2``. ``fused=None`` picks the numba kernel for large vectors when
    numba is installed.
    """
    if fused is None:
        fused = x.size >= FUSED_MIN_SIZE and have_numba()
    if not fused:
        return _adam_numpy(x, g, mu, nu, lr_c1, b1, b2, c2, eps)
    out = np.empty_like(x)
    _adam_fused()(x, g, mu, nu, out, lr_c1, b1, b2, c2, eps)
    return out


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


def _momentum_fused() -> Callable[..., Any]:
    if "momentum" not in _fused:
        import numba

        @numba.njit(cache=False, fastmath=False, error_model="numpy", parallel=True)
        def kernel(x, g, velocity, out, lr, momentum, nesterov):  # type: ignore[no-untyped-def]
            for i in numba.prange(x.size):
                v = momentum * velocity[i] + g[i]
                velocity[i] = v
                d = momentum * v + g[i] if nesterov else v
                out[i] = x[i] - lr * d

        _fused["momentum"] = kernel
    return _fused["momentum"]


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
    if fused is None:
        fused = x.size >= FUSED_MIN_SIZE and have_numba()
    if not fused:
        return _momentum_numpy(x, g, velocity, lr, momentum, nesterov)
    out = np.empty_like(x)
    _momentum_fused()(x, g, velocity, out, lr, momentum, nesterov)
    return out
