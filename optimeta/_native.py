"""Native runs: the step a run takes on a framework's own arrays, when there is one.

A run asks `native_step` once, when it opens: the objective's gradient source names its
framework (`BuiltinSource.framework`), and the framework's step (`NativeJaxStep` for jax)
decides whether it can run the algorithm. None means the run steps on the flat NumPy vector,
as every algorithm can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._native_base import NativeStep, runs_natively
from ._native_jax import NativeJaxStep
from ._native_jax_pairs import NativeJaxPairs
from ._native_torch import NativeTorchPairs, NativeTorchStep
from .backends._pairs import CurvaturePairAlgorithm

if TYPE_CHECKING:
    from ._objective import Objective
    from .backends._base import Algorithm

__all__ = ["native_step"]


def _builder(elementwise: type[NativeStep], pairs: type[NativeStep]) -> Callable[[Objective, Algorithm], Any]:
    """A framework's native step for an algorithm: `elementwise`'s for an `ElementwiseAlgorithm`,
    `pairs`' for a `CurvaturePairAlgorithm`, None for one that cannot run natively."""

    def build(objective: Objective, alg: Algorithm) -> NativeStep | None:
        if not runs_natively(objective, alg):
            return None
        return (pairs if isinstance(alg, CurvaturePairAlgorithm) else elementwise)(objective, alg)

    return build


#: The native step of each framework, by name.
STEPS: dict[str, Callable[[Objective, Algorithm], Any]] = {
    "jax": _builder(NativeJaxStep, NativeJaxPairs),
    "torch": _builder(NativeTorchStep, NativeTorchPairs),
}


def native_step(objective: Objective, alg: Algorithm) -> Any:
    """The step function of a native run of `alg` on `objective`, or None (NumPy)."""
    name = objective.source.framework()
    build = STEPS.get(name) if name is not None else None
    return None if build is None else build(objective, alg)
