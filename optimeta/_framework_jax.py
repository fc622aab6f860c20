"""The jax engine of ``grad="jax"``: `JaxGradient`, and the check of a state jax can carry.

``f`` is traced by ``jax.jit`` once per structure of ``p``; the non-array leaves of ``p`` are
constants of the trace (`_Static`). jax is imported when a problem names it, never when
optimeta is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._framework_base import FrameworkGradient, numeric_array
from ._values import check_loss, loss_error

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ._values import Layout

__all__ = ["JaxGradient", "check_jax_state"]

#: Leaves of ``p`` compared by value when they select a compiled function; others by identity.
_BY_VALUE = (bool, int, float, complex, str, bytes, type(None))


class _Static:
    """A leaf of ``p`` that jit holds fixed (not an array): equal by value for numbers and
    strings, by identity for other objects, so that a new object means a new trace."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def _key(self) -> tuple[type, Any]:
        v = self.value
        return (type(v), v) if type(v) in _BY_VALUE else (type(v), id(v))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Static) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


_TRACED = _Static(None)  # the place of an array leaf of p, which jit traces


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


def _escape_error(exc: Exception) -> TypeError:
    """The error for a value of f taken out of jax's trace (`exc`, jax's own error)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return TypeError(
        "f must return a jax array computed from u with jax.numpy; float(), .item(), np.asarray() take the value "
        "out of jax's trace: under jax.jit, u, the arrays of p and the state reach f as tracers, which have no "
        f"value to convert (jax raised {type(exc).__name__}: {first})"
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

    def __init__(self, f: Callable[..., Any], layout: Layout, stateful: bool) -> None:
        super().__init__(f, layout, stateful)
        import jax

        self._jax = jax
        self._value = jax.jit(self._traced, static_argnums=2)
        self._value_and_grad = jax.jit(jax.value_and_grad(self._traced, has_aux=True), static_argnums=2)
        self._hessp: Any = None
        self._hessian: Any = None

    def _x64(self) -> AbstractContextManager[Any]:
        enable = getattr(self._jax, "enable_x64", None)
        if enable is not None:
            context: AbstractContextManager[Any] = enable(True)
            return context
        # jax before 0.6 has the context manager in jax.experimental only.
        older: AbstractContextManager[Any] = importlib.import_module("jax.experimental").enable_x64()
        return older

    def _traced(self, x: Any, p_arrays: list[Any], p_static: Any, state: Any) -> tuple[Any, Any]:
        """f of the flat vector, as jax traces it: (scalar loss, new state)."""
        treedef, statics = p_static
        arrays = iter(p_arrays)
        p = treedef.unflatten([next(arrays) if s is _TRACED else s.value for s in statics])
        errors = self._jax.errors
        try:
            loss, new_state = self._apply(self._layout.unflatten(x), p, state)
        except errors.TracerBoolConversionError:
            raise  # Python control flow on a traced value: jax's own message says what to do
        except (
            errors.ConcretizationTypeError,
            errors.TracerArrayConversionError,
            errors.TracerIntegerConversionError,
        ) as exc:
            raise _escape_error(exc) from exc
        return self._scalar(loss), new_state

    def _scalar(self, loss: Any) -> Any:
        jnp = self._jax.numpy
        if not isinstance(loss, self._jax.Array):
            return jnp.asarray(check_loss(loss, self._stateful), dtype=jnp.float64)
        if loss.ndim == 0 and loss.dtype.kind in "biuf":
            return loss.astype(jnp.float64)
        shown = f"an array of shape {loss.shape}" if loss.ndim else type(loss).__name__
        # Under jit its values do not exist yet: shown by its type alone.
        raise loss_error(loss, shown, f"a traced jax array of {loss.dtype}", self._stateful)

    def _arguments(self, p: Any, state: Any) -> tuple[list[Any], Any, Any]:
        """``p`` split into traced arrays and the hashable rest, and the state as arrays."""
        leaves, treedef = self._jax.tree_util.tree_flatten(p)
        arrays = [leaf for leaf in leaves if numeric_array(leaf) or isinstance(leaf, self._jax.Array)]
        if len(arrays) == len(leaves):
            statics = (_TRACED,) * len(leaves)
        else:
            traced = {id(leaf) for leaf in arrays}
            statics = tuple(_TRACED if id(leaf) in traced else _Static(leaf) for leaf in leaves)
        if state is not None:
            state = self._jax.tree_util.tree_map(np.asarray, state)
        return arrays, (treedef, statics), state

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
        with self._x64():
            loss, new_state = self._value(x, *self._arguments(p, state))
            return float(loss), self.plain(new_state)

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[tuple[float, np.ndarray], Any]:
        with self._x64():
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
        with self._x64():
            out, new_state = self._hessp(x, v, *self._arguments(p, state))
            return np.array(out, dtype=np.float64), self.plain(new_state)

    def hessian(self, x: np.ndarray, p: Any, state: Any) -> tuple[np.ndarray, Any]:
        if self._hessian is None:
            self._hessian = self._jax.jit(self._jax.hessian(self._traced, has_aux=True), static_argnums=2)
        with self._x64():
            out, new_state = self._hessian(x, *self._arguments(p, state))
            return np.array(out, dtype=np.float64).reshape(x.size, x.size), self.plain(new_state)
