"""The interface of the framework engines behind ``grad="jax"`` / ``"torch"``: `FrameworkGradient`.

An engine computes the value, the gradient and second derivatives of ``f`` with a framework's
own automatic differentiation, and hands every result back as NumPy (the state ``f`` returns
too), so no jax array, tracer or torch tensor is kept on the NumPy path (the native steps of
`optimeta._native` keep the framework's arrays). The engines are in
`_framework_jax` and `_framework_torch`; `_frameworks` picks one for a problem.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ._values import pair_error

if TYPE_CHECKING:
    from ._values import Layout

__all__ = ["FrameworkGradient", "numeric_array"]


def numeric_array(leaf: Any) -> bool:
    """Whether `leaf` is a NumPy array or scalar of numbers (bool, integer, float or complex)."""
    return isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype.kind in "biufc"


class FrameworkGradient(abc.ABC):
    """Value, gradient and second derivatives of ``f`` by a framework's autodiff.

    Every method takes the flat float64 point `x`, ``p`` and the committed state (None for a
    stateless problem) and returns ``(result, new_state)``: the result as Python floats and
    NumPy arrays, the new state converted to NumPy (None for a stateless problem). Each method
    call is one call of ``f``.
    """

    #: The framework's name, as ``grad=`` names it.
    name: ClassVar[str]

    def __init__(self, f: Callable[..., Any], layout: Layout, stateful: bool) -> None:
        self._f = f
        self._layout = layout
        self._stateful = stateful

    def _apply(self, u: Any, p: Any, state: Any) -> tuple[Any, Any]:
        """One call of ``f``: (loss, new state as the framework returned it)."""
        if not self._stateful:
            return self._f(u, p), None
        out = self._f(u, p, state)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise pair_error("f", out)
        return out

    @abc.abstractmethod
    def plain(self, tree: Any) -> Any:
        """`tree` with the framework's arrays replaced by NumPy arrays (for jax, 0-d ones by
        Python scalars; torch keeps them 0-d arrays, turned back into tensors at each call)."""

    @abc.abstractmethod
    def value(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, Any]:
        """f at `x`."""

    @abc.abstractmethod
    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[tuple[float, np.ndarray], Any]:
        """f and its gradient at `x`, from one evaluation."""

    @abc.abstractmethod
    def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> tuple[np.ndarray, Any]:
        """The Hessian of f at `x` times `v`."""

    @abc.abstractmethod
    def hessian(self, x: np.ndarray, p: Any, state: Any) -> tuple[np.ndarray, Any]:
        """The Hessian of f at `x`."""
