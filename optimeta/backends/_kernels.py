"""Fused update kernels for large parameter vectors: numba when installed, NumPy otherwise.

NumPy needs about ten passes over memory for one Adam update; a fused loop reads x, g, m, v and
writes x', m', v' once. Both paths do the same floating-point operations in the same order, so
they give the same iterates bit for bit (numba compiles without fast-math, which could reorder
them).

The updates are pure: they write the new iterate and the new moments into memory of their own
and never into the arrays they are given, so a step taken twice from one state gives the same
result, and a state kept by anyone (a rollback, a checkpoint, a comparison) stays as it was.
Only an update whose caller donates the arrays (``donate=True``: the driver loop, for the
states and iterates it made and alone holds, as ``jax.jit``'s ``donate_argnums``) writes over
them, in place, as ``torch.optim`` does: the moments always, the iterate when nothing else
views it (`Recycler.reuse`). Both ways give the same results, bit for bit.
For large vectors that memory comes from a `Recycler`, which hands out a buffer again only once
nothing views it any more: a long run allocates nothing after its first steps, and nobody's
array is ever written over.

The numba kernels are ``parallel=True``. numba's ``workqueue`` threading layer (its fallback
when neither TBB nor OpenMP is installed, or the one ``NUMBA_THREADING_LAYER=workqueue`` asks
for) is not thread-safe: two threads in a parallel kernel at once abort the process. So while
that layer is in use, and before the first parallel call has chosen a layer, the kernels run
one at a time, under a module-level lock (`_run_parallel`). Each kernel already spreads its
loop over all cores, so waiting costs little throughput, and the results are unchanged. With
TBB or OpenMP, which are thread-safe, no lock is taken. The lock only covers this module's
kernels: other ``parallel=True`` code run concurrently under ``workqueue`` can still abort.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "FUSED_MIN_SIZE",
    "RECYCLE_MIN_SIZE",
    "Recycler",
    "adam_step",
    "gradient_step",
    "have_numba",
    "momentum_step",
]

#: Below this many parameters the NumPy path is used: a JIT compilation would not pay off.
FUSED_MIN_SIZE = 100_000


def have_numba() -> bool:
    """Whether the optional numba kernels are available."""
    return importlib.util.find_spec("numba") is not None


#: From this many parameters on, `Recycler` keeps memory for reuse: below, allocating is cheaper.
RECYCLE_MIN_SIZE = 16_384

#: How many buffers a `Recycler` keeps: the arrays of the current state and of the new one (an
#: iterate and up to two moments each), and two that somebody may still read (the best iterate
#: a deterministic run keeps, the iterate its last loss was computed at).
_POOL_SIZE = 8


class Recycler:
    """Memory for the arrays of a run's next state, reused once nothing views it.

    `take` returns an array like the given one to write a new iterate or moment into. The
    recycler owns the buffers it hands out (each array it returns is a view of one), so it can
    tell who still reads a buffer: every view of it, wherever it is kept (the state the update
    was given, the caller's iterate, a ``u`` kept in the user's state, a slice of it), holds a
    reference to the buffer. A buffer is handed out again only when no view of it is left, so
    an array anyone can still read is never written over, and the arrays an update is given
    never are. At most `_POOL_SIZE` buffers are kept; beyond that, the one given out longest ago
    is let go (its views keep it alive for whoever holds them).

    The reference counts are compared with the count of a buffer without views, measured the
    same way when the module loads; where the interpreter keeps no reference counts (or runs
    without the GIL), every call allocates.
    """

    __slots__ = ("_buffers",)

    def __init__(self) -> None:
        self._buffers: list[np.ndarray] = []

    def _references(self, i: int) -> int:
        return sys.getrefcount(self._buffers[i])

    def take(self, like: np.ndarray) -> np.ndarray:
        """A 1-d array of `like`'s shape and dtype that nobody else views, for an update to fill."""
        if _NO_VIEW is None or like.size < RECYCLE_MIN_SIZE:
            return np.empty_like(like)
        buffers = self._buffers
        for i in range(len(buffers)):
            # The count is read before any local name refers to the buffer (it would count).
            if self._references(i) == _NO_VIEW and buffers[i].shape == like.shape and buffers[i].dtype == like.dtype:
                buffers.append(buffers.pop(i))  # the most recently given out last
                view: np.ndarray = buffers[-1].view()
                return view
        if len(buffers) >= _POOL_SIZE:
            del buffers[0]
        buffers.append(np.empty_like(like))
        fresh: np.ndarray = buffers[-1].view()
        return fresh

    def reuse(self, x: np.ndarray) -> np.ndarray:
        """For a donated iterate `x` (see `adam_step`): a new view of `x`'s own memory when `x`
        is a whole buffer of this recycler and the only view left of it, so that the update
        writes in place, as ``torch.optim`` does; otherwise `take`'s array."""
        if _NO_VIEW is None or x.size < RECYCLE_MIN_SIZE:
            return np.empty_like(x)
        buffers = self._buffers
        # The counts are read before any local name refers to a buffer (it would count).
        counts = [self._references(i) for i in range(len(buffers))]
        for i in range(len(buffers)):
            if x.base is buffers[i]:
                whole = (x.shape, x.strides) == (buffers[i].shape, buffers[i].strides)
                if whole and counts[i] == _NO_VIEW + 1:
                    view: np.ndarray = buffers[i].view()
                    return view
                break
        return self.take(x)

    def __deepcopy__(self, memo: dict[int, Any]) -> Recycler:
        return Recycler()  # a copy holds no claim on the run's memory

    def __reduce__(self) -> tuple[type[Recycler], tuple[()]]:
        return Recycler, ()


def _reference_count() -> int | None:
    """What `Recycler` reads for a buffer without views (None where counts cannot be trusted)."""
    gil = getattr(sys, "_is_gil_enabled", lambda: True)
    if not hasattr(sys, "getrefcount") or not gil():
        return None
    probe = Recycler()
    probe._buffers.append(np.empty(1))
    no_view = probe._references(0)
    view = probe._buffers[0].view()
    one_view = probe._references(0)
    del view
    return no_view if one_view == no_view + 1 else None


_NO_VIEW = _reference_count()


def _outputs(memory: Recycler | None, x: np.ndarray, count: int) -> list[np.ndarray] | None:
    """Memory for `count` new arrays like `x` from `memory`, or None for the small-vector path."""
    if memory is None or x.size < RECYCLE_MIN_SIZE:
        return None
    return [memory.take(x) for _ in range(count)]


#: Held while a parallel kernel runs under numba's workqueue threading layer (see the module docstring).
_PARALLEL_LOCK = threading.Lock()

#: numba's threading layer, once a parallel call has chosen it (it is fixed for the process).
_layer: str | None = None


def _threading_layer() -> str | None:
    """The threading layer numba uses for parallel kernels, or None before any has run."""
    global _layer
    if _layer is None:
        import numba

        try:
            # Documented public API, but missing from numba's __all__ (hence the ignore).
            _layer = str(numba.threading_layer())  # type: ignore[attr-defined]
        except ValueError:  # no parallel call yet: the layer is chosen by the first one
            return None
    return _layer


def _run_parallel(kernel: Callable[..., Any], *args: Any) -> None:
    """Call a ``parallel=True`` kernel, one thread at a time unless the layer is known to be thread-safe.

    numba's ``workqueue`` layer aborts the process when two threads run parallel code at once;
    TBB and OpenMP do not. Until the first parallel call has chosen the layer (which
    ``NUMBA_THREADING_LAYER`` / ``numba.config.THREADING_LAYER`` and the installed libraries
    decide), it may be ``workqueue``, so those first calls take the lock too.
    """
    if _threading_layer() in (None, "workqueue"):
        with _PARALLEL_LOCK:
            kernel(*args)
    else:
        kernel(*args)


def _use_fused(fused: bool | None, x: np.ndarray) -> bool:
    return x.size >= FUSED_MIN_SIZE and have_numba() if fused is None else fused


def _adam_numpy(
    out: list[np.ndarray] | None,
    x: np.ndarray,
    g: np.ndarray,
    mu: np.ndarray,
    nu: np.ndarray,
    lr_c1: float,
    b1: float,
    b2: float,
    c2: float,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if out is None:  # small vectors: the cost is per call, temporaries are cheaper than out=
        m = mu * b1
        m += (1.0 - b1) * g
        v = nu * b2
        g2 = g * g
        g2 *= 1.0 - b2
        v += g2
        step = v / c2
        np.sqrt(step, out=step)
        x_new = None
    else:
        x_new, m, v = out  # m, v may be mu, nu themselves (donated), x_new x's memory
        np.multiply(mu, b1, out=m)
        m += (1.0 - b1) * g
        step = np.empty_like(x) if np.may_share_memory(x_new, x) else x_new
        np.multiply(g, g, out=step)
        step *= 1.0 - b2
        np.multiply(nu, b2, out=v)
        v += step
        np.divide(v, c2, out=step)
        np.sqrt(step, out=step)
    step += eps
    np.divide(m, step, out=step)
    step *= lr_c1
    return np.subtract(x, step, out=step if x_new is None else x_new), m, v


# error_model="numpy" drops Python's zero-division checks, which keep a loop from being
# vectorised; parallel=True spreads it over the cores. Each element is computed alone, in the
# same order as the NumPy path, so the results stay bitwise equal. Compiled once, on first use;
# called through `_run_parallel`, which serialises the calls under numba's workqueue layer.
@functools.cache
def _adam_fused() -> Callable[..., Any]:
    import numba

    @numba.njit(cache=False, fastmath=False, error_model="numpy", parallel=True)
    def kernel(x_new, m_new, v_new, x, g, mu, nu, lr_c1, b1, b2, c2, eps):  # type: ignore[no-untyped-def]
        for i in numba.prange(x.size):
            m = b1 * mu[i] + (1.0 - b1) * g[i]
            v = b2 * nu[i] + (1.0 - b2) * (g[i] * g[i])
            m_new[i] = m
            v_new[i] = v
            x_new[i] = x[i] - (m / (np.sqrt(v / c2) + eps)) * lr_c1

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
    memory: Recycler | None = None,
    donate: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Adam update: the new iterate and moments ``(x', m, v)``, in new memory (from `memory`
    for large vectors, see `Recycler`); the arrays given are not written, unless `donate`
    (the caller gives up `x`, `mu` and `nu`: the moments are updated in place, and the iterate
    too when nothing else views it).

    ``x' = x - lr_c1 * m / (sqrt(v / c2) + eps)`` with ``m = b1 mu + (1 - b1) g`` and
    ``v = b2 nu + (1 - b2) g^2``. ``fused=None`` takes the numba kernel for vectors of
    FUSED_MIN_SIZE and more when numba is installed.
    """
    if fused is None and x.size < RECYCLE_MIN_SIZE:  # the common small case: new arrays are cheap
        return _adam_numpy(None, x, g, mu, nu, lr_c1, b1, b2, c2, eps)
    if donate:
        out = [np.empty_like(x) if memory is None else memory.reuse(x), mu, nu]
    else:
        out = _outputs(memory, x, 3) or [np.empty_like(x) for _ in range(3)]
    if not _use_fused(fused, x):
        return _adam_numpy(out, x, g, mu, nu, lr_c1, b1, b2, c2, eps)
    x_new, m, v = out
    _run_parallel(_adam_fused(), x_new, m, v, x, g, mu, nu, lr_c1, b1, b2, c2, eps)
    return x_new, m, v


def _momentum_numpy(
    out: list[np.ndarray] | None,
    x: np.ndarray,
    g: np.ndarray,
    velocity: np.ndarray,
    lr: float,
    momentum: float,
    nesterov: bool,
) -> tuple[np.ndarray, np.ndarray]:
    if out is None:
        x_new = None
        v = velocity * momentum
        v += g
        direction = v * momentum if nesterov else v * lr
    else:
        x_new, v = out  # v may be velocity itself (donated), x_new x's memory
        np.multiply(velocity, momentum, out=v)
        v += g
        direction = np.empty_like(x) if np.may_share_memory(x_new, x) else x_new
        np.multiply(v, momentum if nesterov else lr, out=direction)
    if nesterov:
        direction += g
        direction *= lr
    return np.subtract(x, direction, out=direction if x_new is None else x_new), v


# As `_adam_fused`: bitwise equal to the NumPy path, called through `_run_parallel`.
@functools.cache
def _momentum_fused() -> Callable[..., Any]:
    import numba

    @numba.njit(cache=False, fastmath=False, error_model="numpy", parallel=True)
    def kernel(x_new, v_new, x, g, velocity, lr, momentum, nesterov):  # type: ignore[no-untyped-def]
        for i in numba.prange(x.size):
            v = momentum * velocity[i] + g[i]
            v_new[i] = v
            d = momentum * v + g[i] if nesterov else v
            x_new[i] = x[i] - lr * d

    return kernel


def momentum_step(
    x: np.ndarray,
    g: np.ndarray,
    velocity: np.ndarray,
    lr: float,
    momentum: float,
    nesterov: bool,
    fused: bool | None = None,
    memory: Recycler | None = None,
    donate: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One heavy-ball or Nesterov step: the new iterate and velocity ``(x', v)``, in new memory
    (from `memory` for large vectors); the arrays given are not written, unless `donate` (as
    for `adam_step`).

    ``v = momentum velocity + g``, ``x' = x - lr (momentum v + g)`` (Nesterov) or ``x - lr v``.
    """
    fused = _use_fused(fused, x)
    if not fused and x.size < RECYCLE_MIN_SIZE:  # small vectors: new arrays are cheap
        return _momentum_numpy(None, x, g, velocity, lr, momentum, nesterov)
    if donate:
        out = [np.empty_like(x) if memory is None else memory.reuse(x), velocity]
    else:
        out = _outputs(memory, x, 2) or [np.empty_like(x) for _ in range(2)]
    if not fused:
        return _momentum_numpy(out, x, g, velocity, lr, momentum, nesterov)
    x_new, v = out
    _run_parallel(_momentum_fused(), x_new, v, x, g, velocity, lr, momentum, nesterov)
    return x_new, v


def gradient_step(x: np.ndarray, g: np.ndarray, lr: float, memory: Recycler | None = None) -> np.ndarray:
    """``x - lr g``, in new memory (from `memory` for large vectors)."""
    out = _outputs(memory, x, 1)
    x_new: np.ndarray
    if out is None:
        x_new = x - lr * g
        return x_new
    x_new = np.multiply(g, lr, out=out[0])
    np.subtract(x, x_new, out=x_new)
    return x_new
