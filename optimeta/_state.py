"""Comparing states, and the error raised when a state declared constant changes."""

from __future__ import annotations

import copy
import pickle
import re
import reprlib
from typing import Any

import numpy as np

from ._tree import children, is_container

__all__ = ["StateMutationError", "add_note", "copy_state", "first_change", "first_difference", "short_repr"]


class StateMutationError(RuntimeError):
    """A state declared constant (``state_mode="constant"``) came back changed from a call of f.

    Attributes:
        call: The number of the objective call (1 for the first) that changed the state.
        path: The path of the first changed leaf, e.g. ``state['mean']``.
        function: The function whose call changed it (``"f"``, or ``"grad"`` for the user's
            gradient).
        old: A short repr of the value at `path` that the call was given (`short_repr`).
        new: A short repr of the value at `path` that it returned.
    """

    def __init__(self, call: int, path: str, function: str = "f", old: str = "", new: str = "") -> None:
        self.call = call
        self.path = path
        self.function = function
        self.old = old
        self.new = new
        change = f"; it was given {old} and returned {new}" if old or new else ""
        super().__init__(
            f"call {call} of {function} changed {path}, but the problem declares its state constant "
            f"(state_mode='constant'){change}: {function} must return the state it was given unchanged. If the "
            f"state is meant to change during the solve (running statistics, an RNG key), build the "
            f"problem with state_mode='evolving' and pick an algorithm that accepts an evolving state."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The attributes (the notes and partial solution added on the way) as state, so that the
        # error crosses to another process whole.
        return (type(self), (self.call, self.path, self.function, self.old, self.new), self.__dict__)


StateMutationError.__module__ = "optimeta"  # shown as optimeta.StateMutationError, where users import it


def add_note(exc: BaseException, note: str) -> None:
    """Add a PEP 678 note to `exc` (on Python 3.10, the ``__notes__`` attribute it defines)."""
    adder = getattr(exc, "add_note", None)
    if adder is not None:
        adder(note)
    else:  # Python 3.10: PEP 678's attribute, which 3.11's traceback shows
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


def copy_state(state: Any, what: str = "the state") -> Any:
    """A deep copy of `state`, or a TypeError that names the part that cannot be copied.

    Every call of f gets its own copy of the committed state, so that a trial call (a line
    search's, the determinism probe's) cannot change the state a later step starts from, and
    checkpoints and callbacks hold the state as it was. `what` names the state in the message
    (``"the state"``, ``"the state f returned"``).
    """
    try:
        return copy.deepcopy(state)
    except Exception as exc:
        path, leaf, error = _uncopyable(state, "state", exc)
        raise TypeError(
            f"{what} must be copyable with copy.deepcopy, but {path} ({type(leaf).__name__}) is not: {error}. "
            "optimeta gives every call of f its own copy of the state, so that trial calls cannot change the "
            "state a step starts from. Keep objects that cannot be copied (locks, open files, generators, "
            "connections) in p or in a closure, and the state to plain data: arrays, numbers, RNG keys or "
            "Generators, containers of them"
        ) from exc


def _uncopyable(tree: Any, path: str, error: Exception) -> tuple[str, Any, Exception]:
    """The path, object and error of the first part of `tree` that copy.deepcopy refuses."""
    if is_container(tree):
        parts = [(path + suffix, child) for suffix, child in children(tree)]
    elif hasattr(tree, "__dict__") and not isinstance(tree, type):
        parts = [(f"{path}.{name}", child) for name, child in vars(tree).items()]
    else:
        parts = []
    for where, child in parts:
        refused = _copy_error(child)
        if refused is not None:
            return _uncopyable(child, where, refused)
    return path, tree, error


def _copy_error(value: Any) -> Exception | None:
    try:
        copy.deepcopy(value)
    except Exception as exc:  # noqa: BLE001 - any refusal of deepcopy is reported, with the part's path
        return exc
    return None


#: Repr limits of `short_repr`: a few items of each container, strings cut to 40 characters.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple = 3, 4, 4, 4
_SHORT.maxset = _SHORT.maxfrozenset = _SHORT.maxdeque = 4
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 40, 60, 40
_SHORT_LIMIT = 100


def short_repr(value: Any) -> str:
    """A one-line repr of `value` of at most about 100 characters, for error messages: arrays
    summarised by numpy's print options (a few elements from each end), containers and long
    reprs shortened by `reprlib`, a ``np.random.Generator`` shown by its bit generator's state.

    Example:
        >>> import numpy as np
        >>> from optimeta._state import short_repr
        >>> short_repr(np.arange(1000.0)).startswith("array([  0.,   1.,   2., ..., 997., 998., 999.]")
        True
        >>> short_repr({"mean": np.zeros(2), "count": 3})
        "{'count': 3, 'mean': array([0., 0.])}"
    """
    with np.printoptions(threshold=8, edgeitems=3, precision=6):
        if isinstance(value, np.random.Generator):
            bits = value.bit_generator
            text = f"Generator({type(bits).__name__}) with state {_SHORT.repr(bits.state.get('state'))}"
        elif isinstance(value, np.ndarray):
            text = repr(value)
        else:
            text = _SHORT.repr(value)
    text = re.sub(r"\n\s*", " ", text)  # a 2-d array's rows on one line
    if len(text) > _SHORT_LIMIT:
        half = (_SHORT_LIMIT - 3) // 2
        text = f"{text[:half]}...{text[-half:]}"
    return text


def first_difference(old: Any, new: Any, path: str = "state") -> str | None:
    """The path of the first leaf where `new` differs from `old`, or None when they are equal
    (`first_change` says how)."""
    found = first_change(old, new, path)
    return None if found is None else found[0]


def first_change(old: Any, new: Any, path: str = "state") -> tuple[str, Any, Any] | None:
    """The first leaf where `new` differs from `old`: its path, its old and its new value (a
    container whose type, keys or length changed is the leaf); None when they are equal.

    Containers must match in type, keys and length; arrays in shape, dtype and values (NaN
    equals NaN); a ``np.random.Generator`` by its bit generator's state; an object whose type
    defines ``==`` by it; any other object (a ``RandomState``, a plain class) by its pickled
    content, since each call receives a copy and identity says nothing.
    """
    changed = (path, old, new)
    if is_container(old) or is_container(new):
        if type(old) is not type(new):
            return changed
        if isinstance(old, dict):
            if old.keys() != new.keys():
                return changed
            pairs = ((f"[{k!r}]", old[k], new[k]) for k in old)
        else:
            if len(old) != len(new):
                return changed
            pairs = ((suffix, a, b) for (suffix, a), b in zip(children(old), new))
        for suffix, a, b in pairs:
            found = first_change(a, b, path + suffix)
            if found is not None:
                return found
        return None
    if isinstance(old, np.random.Generator) or isinstance(new, np.random.Generator):
        same = (
            isinstance(old, np.random.Generator)
            and isinstance(new, np.random.Generator)
            and first_change(old.bit_generator.state, new.bit_generator.state) is None
        )
        return None if same else changed
    if isinstance(old, np.ndarray) or isinstance(new, np.ndarray):
        a, b = np.asarray(old), np.asarray(new)
        same = a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        return None if same else changed
    if _is_nan(old) and _is_nan(new):
        return None
    if type(old) is type(new) and _has_own_eq(old):
        try:
            return None if bool(old == new) else changed
        except (TypeError, ValueError):
            pass  # an ambiguous ==: compare the content instead
    return None if _content(old) == _content(new) else changed


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
