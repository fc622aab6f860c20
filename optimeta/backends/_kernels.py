"""Fused update kernels for large parameter vectors: numba when installed, NumPy in place otherwise.

NumPy needs about ten passes over memory for one Adam update; a fused loop reads x, g, m, v and
writes x', m, v once. Both paths do the same floating-point operations in the same order, so they
give the same iterates bit for bit (numba compiles without fast-math, which could reorder them).
The moment buffers are updated in place: they belong to the run's algorithm state. The iterate's
memory is shared with whoever views it (the caller, the user's state): `Recycler` writes a new
iterate over an old one only when nothing else views it.

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

__all__ = ["FUSED_MIN_SIZE", "RECYCLE_MIN_SIZE", "Recycler", "adam_step", "have_numba", "momentum_step"]

#: Below this many parameters the NumPy path is used: a JIT compilation would not pay off.
FUSED_MIN_SIZE = 100_000


def have_numba() -> bool:
    """Whether the optional numba kernels are available."""
    return importlib.util.find_spec("numba") is not None


#: From this many parameters on, `Recycler` keeps the iterates' memory: below, allocating is cheaper.
RECYCLE_MIN_SIZE = 16_384


class Recycler:
    """The memory of a run's iterates, written over once nothing but the new iterate's input views it.

    `out` returns the array an update writes the next iterate into. The recycler owns the memory
    of the iterates it returns (each is a view of a buffer it holds), so it can tell who still
    reads a buffer: every view of it, wherever it is kept (the caller's iterate, a ``u`` kept in
    the user's state, a slice of it), holds a reference to the buffer. The answer, in order:

    * the very memory of `x`, when `x` is the only view left of it and the update may alias
      (a fused loop that reads each element before writing it): an update in place, as
      ``torch.optim`` does, with no memory traffic beyond the update's own;
    * an earlier buffer that no view refers to any more;
    * a new buffer (at most three are kept: the current iterate's, the new one's, and one that
      somebody still reads, such as the best iterate a deterministic run keeps).

    So an array anyone else can still read is never written over, and a long run allocates
    nothing after its first steps. The reference counts are compared with the counts of a buffer
    without views and with one, measured the same way when the module loads; where the
    interpreter keeps no reference counts (or runs without the GIL), every call allocates.
    An update that receives an iterate of this recycler's hands it over: it may be overwritten.
    """

    __slots__ = ("_buffers",)

    def __init__(self) -> None:
        self._buffers: list[np.ndarray] = []

    def _references(self, i: int) -> int:
        return sys.getrefcount(self._buffers[i])

    def out(self, x: np.ndarray, alias: bool) -> np.ndarray:
        """An array like the 1-d `x` for the next iterate; with `alias`, possibly `x`'s own memory."""
        if _COUNTS is None or x.size < RECYCLE_MIN_SIZE:
            return np.empty_like(x)
        no_view, one_view = _COUNTS
        buffers = self._buffers
        # The counts are read before any local name refers to a buffer (it would count).
        counts = [self._references(i) for i in range(len(buffers))]
        current = next((i for i in range(len(buffers)) if x.base is buffers[i]), -1)
        # In place when x is the whole buffer (same shape and strides) and its only view left.
        whole = current >= 0 and (x.shape, x.strides) == (buffers[current].shape, buffers[current].strides)
        if alias and whole and counts[current] == one_view:
            self._buffers = [buffers[current]]
            view: np.ndarray = self._buffers[0].view()
            return view
        spare = next(
            (
                i
                for i in range(len(buffers))
                if i != current and counts[i] == no_view and buffers[i].shape == x.shape and buffers[i].dtype == x.dtype
            ),
            None,
        )
        target = np.empty_like(x) if spare is None else buffers[spare]
        # One more buffer somebody still reads (the driver's best iterate of a deterministic
        # run) is kept, to be the spare of a later step once they let it go.
        read = [buffers[i] for i in range(len(buffers)) if i not in (current, spare) and counts[i] != no_view]
        self._buffers = ([] if current < 0 else [buffers[current]]) + [target] + read[:1]
        view = target.view()
        return view

    def __deepcopy__(self, memo: dict[int, Any]) -> Recycler:
        return Recycler()  # a copy holds no claim on the run's memory

    def __reduce__(self) -> tuple[type[Recycler], tuple[()]]:
        return Recycler, ()


def _reference_counts() -> tuple[int, int] | None:
    """What `Recycler` reads for a buffer without views and for one with a single view."""
    gil = getattr(sys, "_is_gil_enabled", lambda: True)
    if not hasattr(sys, "getrefcount") or not gil():
        return None
    probe = Recycler()
    probe._buffers.append(np.empty(1))
    no_view = probe._references(0)
    view = probe._buffers[0].view()
    one_view = probe._references(0)
    del view
    return (no_view, one_view) if one_view == no_view + 1 else None


_COUNTS = _reference_counts()


def _step(
    numpy_path: Callable[..., np.ndarray],
    fused_kernel: Callable[[], Callable[..., Any]],
    fused: bool | None,
    memory: Recycler | None,
    x: np.ndarray,
    *args: Any,
) -> np.ndarray:
    """Run one update by the fused kernel or by the NumPy path; the new iterate.

    ``fused=None`` picks the numba kernel for vectors of FUSED_MIN_SIZE and more, when installed.
    The output comes from `memory` for vectors of RECYCLE_MIN_SIZE and more (the fused kernel
    may then update `x` in place); smaller ones get a new array. The fused kernel runs through
    `_run_parallel`, so threads calling it at once under numba's workqueue layer take turns.
    """
    if fused is None:
        fused = x.size >= FUSED_MIN_SIZE and have_numba()
    out = None if memory is None or x.size < RECYCLE_MIN_SIZE else memory.out(x, fused)
    if fused:
        out = np.empty_like(x) if out is None else out
        _run_parallel(fused_kernel(), out, x, *args)
        return out
    return numpy_path(out, x, *args)


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


def _adam_numpy(
    out: np.ndarray | None,
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
    # For small vectors the cost is per call: temporaries are cheaper than out= arguments.
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
    if out is None:
        x_new: np.ndarray = x - denom
        return x_new
    np.subtract(x, denom, out=out)
    return out


# error_model="numpy" drops Python's zero-division checks, which keep a loop from being
# vectorised; parallel=True spreads it over the cores. Each element is computed alone, in the
# same order as the NumPy path, so the results stay bitwise equal. Compiled once, on first use;
# called through `_run_parallel`, which serialises the calls under numba's workqueue layer.
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
    memory: Recycler | None = None,
) -> np.ndarray:
    """One Adam update: the new iterate (from `memory`, see `Recycler`, or a new array);
    `mu` and `nu` are updated in place.

    ``x' = x - lr_c1 * m / (sqrt(v / c2) + eps)`` with ``m = b1 mu + (1 - b1) g`` and
    ``v = b2 nu + (1 - b2) g^2``.
    """
    if fused is None and x.size < RECYCLE_MIN_SIZE:  # the common small case, without dispatch
        return _adam_numpy(None, x, g, mu, nu, lr_c1, b1, b2, c2, eps)
    return _step(_adam_numpy, _adam_fused, fused, memory, x, g, mu, nu, lr_c1, b1, b2, c2, eps)


def _momentum_numpy(
    out: np.ndarray | None,
    x: np.ndarray,
    g: np.ndarray,
    velocity: np.ndarray,
    lr: float,
    momentum: float,
    nesterov: bool,
) -> np.ndarray:
    velocity *= momentum
    velocity += g
    if nesterov:
        direction = momentum * velocity
        direction += g
        direction *= lr
    else:
        direction = velocity * lr
    if out is None:
        x_new: np.ndarray = x - direction
        return x_new
    np.subtract(x, direction, out=out)
    return out


# As `_adam_fused`: bitwise equal to the NumPy path, called through `_run_parallel`.
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
    memory: Recycler | None = None,
) -> np.ndarray:
    """One heavy-ball or Nesterov step: the new iterate (from `memory`, see `Recycler`, or a new
    array); `velocity` is updated in place.

    ``v = momentum v + g``, ``x' = x - lr (momentum v + g)`` (Nesterov) or ``x - lr v``.
    """
    return _step(_momentum_numpy, _momentum_fused, fused, memory, x, g, velocity, lr, momentum, nesterov)
