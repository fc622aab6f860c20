"""What the jax engine (`_framework_jax`) and the native jax step (`_native_jax`) share: the
split of ``p`` into traced arrays and constants of the trace, the precision a computation runs
in, and the call of ``f`` inside a trace with its errors made plain. jax is imported by the
callers, which pass the module in."""

from __future__ import annotations

import contextlib
import importlib
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

import numpy as np

from ._framework_base import numeric_array

__all__ = ["escape_error", "join_p", "precision", "split_p", "traced_call", "widest"]

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


def precision(dtype: Any) -> AbstractContextManager[Any]:
    """The context a jax computation on arrays of `dtype` runs in: 64-bit types enabled (for
    this thread, for its duration) when `dtype` is 64-bit, jax's own configuration otherwise
    (a float32 computation is not promoted, and draws the random numbers it would draw in the
    user's own loop)."""
    if np.dtype(dtype).itemsize < 8:
        return contextlib.nullcontext()
    import jax

    if jax.config.read("jax_enable_x64"):  # type: ignore[no-untyped-call]  # on already (globally, or by an enclosing context): nothing to do
        return contextlib.nullcontext()

    enable = getattr(jax, "enable_x64", None)
    if enable is not None:
        context: AbstractContextManager[Any] = enable(True)
        return context
    # jax before 0.6 has the context manager in jax.experimental only.
    older: AbstractContextManager[Any] = importlib.import_module("jax.experimental").enable_x64()
    return older


def widest(jax: ModuleType) -> Any:
    """float64 where 64-bit types are enabled, float32 otherwise (no warning either way)."""
    return jax.dtypes.canonicalize_dtype(np.float64)


def split_p(jax: ModuleType, p: Any) -> tuple[list[Any], Any]:
    """``p`` split into the arrays jit traces and the hashable rest (its structure, and its
    other leaves as constants of the trace, `_Static`)."""
    leaves, treedef = jax.tree_util.tree_flatten(p)
    arrays = [leaf for leaf in leaves if numeric_array(leaf) or isinstance(leaf, jax.Array)]
    if len(arrays) == len(leaves):
        statics = (_TRACED,) * len(leaves)
    else:
        traced = {id(leaf) for leaf in arrays}
        statics = tuple(_TRACED if id(leaf) in traced else _Static(leaf) for leaf in leaves)
    return arrays, (treedef, statics)


def join_p(p_arrays: list[Any], p_static: Any) -> Any:
    """``p`` again from `split_p`'s parts (inside the trace: its arrays are tracers)."""
    treedef, statics = p_static
    arrays = iter(p_arrays)
    return treedef.unflatten([next(arrays) if s is _TRACED else s.value for s in statics])


def traced_call(jax: ModuleType, call: Any) -> Any:
    """``call()`` inside a trace, with a value taken out of the trace turned into the TypeError
    that says so (`escape_error`)."""
    errors = jax.errors
    try:
        return call()
    except errors.TracerBoolConversionError:
        raise  # Python control flow on a traced value: jax's own message says what to do
    except (
        errors.ConcretizationTypeError,
        errors.TracerArrayConversionError,
        errors.TracerIntegerConversionError,
    ) as exc:
        raise escape_error(exc) from exc


def escape_error(exc: Exception) -> TypeError:
    """The error for a value of f taken out of jax's trace (`exc`, jax's own error)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return TypeError(
        "f must return a jax array computed from u with jax.numpy; float(), .item(), np.asarray() take the value "
        "out of jax's trace: under jax.jit, u, the arrays of p and the state reach f as tracers, which have no "
        f"value to convert (jax raised {type(exc).__name__}: {first})"
    )
