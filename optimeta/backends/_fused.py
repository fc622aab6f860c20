"""The fused passes of the elementwise algorithms, for a run that holds its iterate elsewhere.

An `ElementwiseAlgorithm` whose ``fused`` is true (`Adam`, `SGD`) takes a large vector in one
fused pass (`optimeta.backends._kernels`: numba when installed), its new arrays written into
memory from a `Recycler`, the same maths as its `leaf_update`. The native torch path runs that
pass on the NumPy views of a large CPU tensor's memory (no copy), where torch's operators would
make one pass and one new tensor per operation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import ElementwiseAlgorithm
from ._kernels import FUSED_MIN_SIZE, Recycler, have_numba

__all__ = ["fused_memory", "fused_update"]


def fused_memory(alg: Any, size: int, dtype: Any) -> Recycler | None:
    """The memory for `alg`'s fused pass over a vector of `size` elements of `dtype`, where that
    pass runs: an `ElementwiseAlgorithm` with ``fused``, numba installed, `FUSED_MIN_SIZE`
    elements or more, float32 or float64; None elsewhere (`leaf_update` is as fast)."""
    fused = isinstance(alg, ElementwiseAlgorithm) and alg.fused and have_numba()
    if fused and size >= FUSED_MIN_SIZE and np.dtype(dtype).name in ("float32", "float64"):
        return Recycler()
    return None


def fused_update(
    alg: ElementwiseAlgorithm[Any], memory: Recycler, grad: np.ndarray, x: np.ndarray, slots: tuple[Any, ...], step: int
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Update number `step` of `alg` at the 1-d arrays `x`, `grad` and `slots` (`leaf_update`'s
    arguments) as its fused pass: the new iterate and slots, in memory from `memory` (none
    that anything still views is written; the arrays given are not)."""
    state = alg.from_slots(step, slots)._replace(spare=memory)
    x_new, new_state = alg.update(grad, x, state)
    return x_new, tuple(alg.to_slots(new_state)[1])
