"""Comparing states, and the error raised when a state declared constant changes."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from ._tree import children, is_container

__all__ = ["StateMutationError", "first_difference"]


class StateMutationError(RuntimeError):
    """A state declared constant (``state_mode="constant"``) came back changed from a call of f.

    Attributes:
        call: The number of the objective call (1 for the first) that changed the state.
        path: The path of the first changed leaf, e.g. ``state['mean']``.
    """

    def __init__(self, call: int, path: str, function: str = "f") -> None:
        self.call = call
        self.path = path
        self.function = function
        super().__init__(
            f"call {call} of {function} changed {path}, but the problem declares its state constant "
            f"(state_mode='constant'): {function} must return the state it was given unchanged. If the "
            f"state is meant to change during the solve (running statistics, an RNG key), build the "
            f"problem with state_mode='evolving' and pick an algorithm that accepts an evolving state."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The attributes (the notes and partial solution added on the way) as state, so that the
        # error crosses to another process whole.
        return (type(self), (self.call, self.path, self.function), self.__dict__)


StateMutationError.__module__ = "optimeta"  # shown as optimeta.StateMutationError, where users import it


def first_difference(old: Any, new: Any, path: str = "state") -> str | None:
    """The path of the first leaf where `new` differs from `old`, or None when they are equal.

    Containers must match in type, keys and length; arrays in shape, dtype and values (NaN
    equals NaN); a ``np.random.Generator`` by its bit generator's state; an object whose type
    defines ``==`` by it; any other object (a ``RandomState``, a plain class) by its pickled
    content, since each call receives a copy and identity says nothing.
    """
    if is_container(old) or is_container(new):
        if type(old) is not type(new):
            return path
        if isinstance(old, dict):
            if old.keys() != new.keys():
                return path
            pairs = ((f"[{k!r}]", old[k], new[k]) for k in old)
        else:
            if len(old) != len(new):
                return path
            pairs = ((suffix, a, b) for (suffix, a), b in zip(children(old), new))
        for suffix, a, b in pairs:
            found = first_difference(a, b, path + suffix)
            if found is not None:
                return found
        return None
    if isinstance(old, np.random.Generator) or isinstance(new, np.random.Generator):
        same = (
            isinstance(old, np.random.Generator)
            and isinstance(new, np.random.Generator)
            and first_difference(old.bit_generator.state, new.bit_generator.state) is None
        )
        return None if same else path
    if isinstance(old, np.ndarray) or isinstance(new, np.ndarray):
        a, b = np.asarray(old), np.asarray(new)
        same = a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        return None if same else path
    if _is_nan(old) and _is_nan(new):
        return None
    if type(old) is type(new) and _has_own_eq(old):
        try:
            return None if bool(old == new) else path
        except (TypeError, ValueError):
            pass  # an ambiguous ==: compare the content instead
    return None if _content(old) == _content(new) else path


def _has_own_eq(obj: Any) -> bool:
    """Whether the type defines value equality (object's own == is identity)."""
    return any("__eq__" in vars(klass) for klass in type(obj).__mro__[:-1])


def _content(obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # any pickling failure means the same to the user
        raise TypeError(
            f"a constant state must hold values optimeta can compare; {type(obj).__name__} has no == "
            f"and cannot be pickled ({exc})"
        ) from exc


def _is_nan(x: Any) -> bool:
    return isinstance(x, (float, np.floating)) and bool(np.isnan(x))
