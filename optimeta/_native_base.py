"""What the native steps of the frameworks share (`_native_jax`, `_native_torch`): the state a
native step carries (`NativeState`), and `NativeStep`, which turns the NumPy iterate and
algorithm state into the framework's arrays and back (a checkpoint's form)."""

from __future__ import annotations

import abc
import contextlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .backends._base import ElementwiseAlgorithm
from .backends._pairs import CurvaturePairAlgorithm

if TYPE_CHECKING:
    from ._objective import Objective
    from .backends._base import Algorithm

__all__ = ["NativeState", "NativeStep", "runs_natively"]


class NativeState(NamedTuple):
    """An `ElementwiseAlgorithm`'s state on a framework's arrays: the updates made so far and
    the algorithm's slots (its moments), each shaped like the iterate (a tuple of the
    framework's arrays, one per leaf of ``u0``)."""

    step: int
    slots: tuple[Any, ...]


def runs_natively(objective: Objective, alg: Algorithm) -> bool:
    """Whether a native step can run `alg` on `objective`: an elementwise first-order
    algorithm or a curvature-pair one (`OLBFGS`), and a state not declared constant (its check
    compares each returned state on the host, leaf by leaf)."""
    return isinstance(alg, (ElementwiseAlgorithm, CurvaturePairAlgorithm)) and not objective.constant_state


class NativeStep(abc.ABC):
    """One step of an `ElementwiseAlgorithm` on a framework's arrays, each in the user's dtype.

    Called as the driver calls `StepwiseAlgorithm.step`: ``step(evaluate, x, state, box)`` ->
    ``(x_new, state, loss)``, raising `NonFiniteEvaluation` (with the state to go on from) when
    the loss or the gradient is not finite; ``evaluate`` is not used: the evaluation is part of
    the step, counted and committed through the objective as any evaluation is.
    """

    def __init__(self, objective: Objective, alg: Any) -> None:
        self.objective = objective
        self.alg = alg
        self.dtype = objective.layout.native_dtype()

    @abc.abstractmethod
    def array(self, x: np.ndarray) -> Any:
        """A flat NumPy vector (an iterate, a slot, a bound) as the native iterate (a copy)."""

    @abc.abstractmethod
    def host(self, x: Any) -> np.ndarray:
        """A native iterate (or slot) as a flat float64 NumPy copy: `array` undone, exactly
        (float64 holds every float32, float16 and bfloat16 value)."""

    @abc.abstractmethod
    def __call__(self, evaluate: Any, x: Any, state: NativeState, box: Any) -> tuple[Any, NativeState, float]:
        """One step from `x`."""

    def scope(self) -> AbstractContextManager[Any]:
        """The context the whole run steps in (jax: its 64-bit types for a float64 run, entered
        once rather than at every step, which would cost jax its fast dispatch)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def start(self, x0: np.ndarray) -> tuple[Any, NativeState]:
        """The first iterate as the native iterate, and the algorithm's first state made with
        the framework's namespace (no NumPy copy of either)."""

    def adopt(self, x: np.ndarray, opt_state: Any) -> tuple[Any, NativeState]:
        """The iterate and the algorithm's NumPy state (`ElementwiseAlgorithm.init`'s, or a
        checkpoint's) as the native step carries them."""
        step, slots = self.alg.to_slots(opt_state)
        return self.array(x), NativeState(step, tuple(self.array(np.asarray(slot, dtype=np.float64)) for slot in slots))

    def export(self, x: Any, opt_state: NativeState) -> tuple[np.ndarray, Any]:
        """The iterate and the state as NumPy float64 (a checkpoint's form): `adopt` undone."""
        return self.host(x), self.alg.from_slots(opt_state.step, tuple(self.host(slot) for slot in opt_state.slots))
