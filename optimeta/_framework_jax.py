"""The jax engine of ``grad="jax"``: `JaxGradient`, and the check of a state jax can carry.

``f`` is traced by ``jax.jit`` once per structure of ``p``; the non-array leaves of ``p`` are
constants of the trace (`_Static`). jax is imported when a problem names it, never when
optimeta is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._framework_base import FrameworkGradient, numeric_array
from ._jax_tools import join_p, precision, split_p, traced_call, widest
from ._values import check_loss, loss_error, narrow_float

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ._values import Layout

__all__ = ["JaxGradient", "check_jax_state"]


def _is_key(jax: ModuleType, leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and bool(jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key))


def _key_error(where: str) -> TypeError:
    return TypeError(
        f"{where} is a typed jax PRNG key (jax.random.key), which has no NumPy form to keep in the "
        "committed state: carry jax.random.PRNGKey(seed) (a uint32 array) or an integer seed instead"
    )


def check_jax_state(state: Any) -> None:
    """Refuse a state whose leaves jax cannot pass through ``jax.jit`` (or keep as NumPy)."""
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(state)
    for path, leaf in leaves:
        where = "state" + jax.tree_util.keystr(path)
        if _is_key(jax, leaf):
            raise _key_error(where)
        numeric = isinstance(leaf, (bool, int, float, complex)) or numeric_array(leaf)
        if not numeric and not (isinstance(leaf, jax.Array) and leaf.dtype.kind in "biufc"):
            raise TypeError(
                f'grad="jax" passes the state through jax.jit, so its leaves must be numbers or arrays; '
                f"{where} is a {type(leaf).__name__}: {leaf!r}. Under jit, f runs once to be traced, so an "
                "object it draws from or updates (a NumPy Generator) would be read once and every call would "
                "see the same values: carry a jax.random.PRNGKey or an integer seed in the state instead"
            )


class JaxGradient(FrameworkGradient):
    """``f`` written with ``jax.numpy``: value and gradient from one `jax.value_and_grad`.

    Each jitted function (value; value and gradient; Hessian-vector product; Hessian) is built
    once per solve, on first use, and traced once, unless ``p`` changes structure or a non-array
    leaf of ``p``. Calls run with 64-bit types enabled (``jax.enable_x64``), for this thread and
    the duration of the call only. ``p`` is a traced argument: its array leaves reach ``f`` as
    jax arrays, its other leaves (numbers, strings, objects) unchanged, as constants of the
    trace. The state's leaves reach ``f`` as jax arrays. A value of ``f`` taken out of the trace
    (``float()``, ``.item()``, ``np.asarray()`` of a tracer) is a TypeError that says so, chained
    from jax's own; a loss that is not a jax array (a number, a NumPy value) cannot depend on a
    tracer, so it is a constant, with a zero gradient.
    """

    name = "jax"

    def __init__(self, f: Callable[..., Any], layout: Layout, stateful: bool) -> None:
        super().__init__(f, layout, stateful)
        import jax

        self._jax = jax
        self._value = jax.jit(self._traced, static_argnums=2)
        self._value_and_grad = jax.jit(jax.value_and_grad(self._traced, has_aux=True), static_argnums=2)
        self._hessp: Any = None
        self._hessian: Any = None

    def _x64(self, x: Any = None) -> AbstractContextManager[Any]:
        # The flat NumPy vector is float64: 64-bit types on. A native iterate (a jax array of the
        # user's dtype, see `optimeta._native_jax`) decides for itself.
        if isinstance(x, tuple):  # a native iterate: its leaves
            return precision(np.result_type(*(leaf.dtype for leaf in x)))
        return precision(x.dtype if x is not None and not isinstance(x, np.ndarray) else np.dtype(np.float64))

    def _traced(self, x: Any, p_arrays: list[Any], p_static: Any, state: Any) -> tuple[Any, Any]:
        """f of the flat vector, as jax traces it: (scalar loss, new state)."""
        p = join_p(p_arrays, p_static)
        loss, new_state = traced_call(self._jax, lambda: self._apply(self._layout.unflatten(x), p, state))
        return self._scalar(loss), new_state

    def _scalar(self, loss: Any) -> Any:
        jnp = self._jax.numpy
        if not isinstance(loss, self._jax.Array):
            return jnp.asarray(check_loss(loss, self._stateful), dtype=widest(self._jax))
        if loss.ndim == 0 and (loss.dtype.kind in "biuf" or narrow_float(loss.dtype)):
            return loss.astype(widest(self._jax))
        shown = f"an array of shape {loss.shape}" if loss.ndim else type(loss).__name__
        # Under jit its values do not exist yet: shown by its type alone.
        raise loss_error(loss, shown, f"a traced jax array of {loss.dtype}", self._stateful)

    def _arguments(self, p: Any, state: Any) -> tuple[list[Any], Any, Any]:
        """``p`` split into traced arrays and the hashable rest, and the state as arrays."""
        arrays, static = split_p(self._jax, p)
        if state is not None:
            state = self._jax.tree_util.tree_map(np.asarray, state)
        return arrays, static, state

    def plain(self, tree: Any) -> Any:
        jax = self._jax

        def leaf(value: Any) -> Any:
            if not isinstance(value, jax.Array):
                return value
            if _is_key(jax, value):
                raise _key_error("the state")
            arr = np.array(value)
            return arr.item() if arr.ndim == 0 else arr

        return jax.tree_util.tree_map(leaf, tree)

    def value(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, Any]:
        with self._x64(x):
            loss, new_state = self._value(x, *self._arguments(p, state))
            return float(loss), self.plain(new_state)

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[tuple[float, np.ndarray], Any]:
        with self._x64(x):
            (loss, new_state), grad = self._value_and_grad(x, *self._arguments(p, state))
            return (float(loss), np.array(grad, dtype=np.float64)), self.plain(new_state)

    def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> tuple[np.ndarray, Any]:
        jax = self._jax
        if self._hessp is None:
            grad = jax.grad(self._traced, has_aux=True)

            def product(y: Any, w: Any, p_arrays: list[Any], p_static: Any, s: Any) -> tuple[Any, Any]:
                _, out, new_state = jax.jvp(lambda z: grad(z, p_arrays, p_static, s), (y,), (w,), has_aux=True)
                return out, new_state

            self._hessp = jax.jit(product, static_argnums=3)
        with self._x64(x):
            out, new_state = self._hessp(x, v, *self._arguments(p, state))
            return np.array(out, dtype=np.float64), self.plain(new_state)

    def hessian(self, x: np.ndarray, p: Any, state: Any) -> tuple[np.ndarray, Any]:
        if self._hessian is None:
            self._hessian = self._jax.jit(self._jax.hessian(self._traced, has_aux=True), static_argnums=2)
        with self._x64(x):
            out, new_state = self._hessian(x, *self._arguments(p, state))
            return np.array(out, dtype=np.float64).reshape(x.size, x.size), self.plain(new_state)
