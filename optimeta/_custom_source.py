"""`CustomSource`: a `GradientSource` of the user's (``grad=`` an instance), run in a solve.

It stands between the objective wrapper and the user's source: every call of the source's
`value` or `value_and_grad` is counted as one call of ``f`` (the constant-state check included),
what the source returns is checked (a real scalar loss, arrays of the right shape, the right
tuples), the source sees read-only points, and its second derivatives get copies of the
committed state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._gradient_source import BuiltinSource, GradientSource
from ._state import copy_state, short_repr
from ._values import check_loss

if TYPE_CHECKING:
    from ._objective import Objective

__all__ = ["CustomSource", "readonly"]


class CustomSource(BuiltinSource):
    """A `GradientSource` of the user's in a solve: each call of its `value` or `value_and_grad`
    counted as one call of ``f`` (the constant-state check included), what it returns checked;
    it sees read-only points, and copies of the committed state for second derivatives."""

    def __init__(self, objective: Objective, source: GradientSource) -> None:
        super().__init__(objective)
        self.source = source

    def _where(self, method: str) -> str:
        return f"{type(self.source).__name__}.{method}"

    def _loss(self, loss: Any, method: str) -> float:
        try:
            return check_loss(loss, False)
        except TypeError:
            raise TypeError(
                f"{self._where(method)} must return a real scalar loss first, got {short_repr(loss)}"
            ) from None

    def _array(self, out: Any, shape: tuple[int, ...], method: str, what: str) -> np.ndarray:
        try:
            arr = np.array(out, dtype=np.float64)  # a copy: the source may reuse its buffers
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != shape:
            shown = f"shape {arr.shape}" if arr is not None else short_repr(out)
            raise ValueError(f"{self._where(method)} must return {what} of shape {shape}, got {shown}")
        return arr

    def _unpack(self, out: Any, size: int, method: str) -> tuple[Any, ...]:
        if not (isinstance(out, tuple) and len(out) == size):
            form = "(loss, gradient, new_state)" if size == 3 else "(loss, new_state)"
            raise TypeError(f"{self._where(method)} must return a tuple {form}, got {short_repr(out)}")
        return out

    def value(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, Any]:
        def evaluate(x: np.ndarray, p: Any, state: Any) -> tuple[float, Any]:
            loss, new_state = self._unpack(self.source.value(x, p, state), 2, "value")
            return self._loss(loss, "value"), new_state

        loss, new_state = self.objective.source_call(evaluate, readonly(x), state)
        return loss, new_state if self.objective.stateful else None

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
        def evaluate(x: np.ndarray, p: Any, state: Any) -> tuple[tuple[float, np.ndarray], Any]:
            loss, grad, new_state = self._unpack(self.source.value_and_grad(x, p, state), 3, "value_and_grad")
            loss = self._loss(loss, "value_and_grad")
            return (loss, self._array(grad, x.shape, "value_and_grad", "a gradient")), new_state

        (loss, grad), new_state = self.objective.source_call(evaluate, readonly(x), state)
        return loss, grad, new_state if self.objective.stateful else None

    def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> np.ndarray:
        out = self.source.hessp(readonly(x), p, copy_state(state), readonly(v))
        return self._array(out, x.shape, "hessp", "a Hessian-vector product")

    def hessian(self, x: np.ndarray, p: Any, state: Any) -> np.ndarray:
        out = self.source.hessian(readonly(x), p, copy_state(state))
        return self._array(out, (x.size, x.size), "hessian", "a Hessian")


def readonly(x: np.ndarray) -> np.ndarray:
    """A read-only view of `x`, for a user's source to read."""
    view: np.ndarray = x.view()
    view.flags.writeable = False  # the algorithm owns x: a source may read it only
    return view
