"""The leaves of nested dicts, lists and tuples of arrays, and their bytes, for the native-path tests."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np


def host(a: Any) -> np.ndarray:
    """A value as NumPy: a tensor's or jax array's own bytes, an autograd box's value."""
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()  # type: ignore[no-any-return]
    return np.asarray(importlib.import_module("autograd.tracer").getval(a))


def leaves(tree: Any) -> list[Any]:
    """The leaves of `tree` (dicts, lists and tuples of arrays), in order."""
    if isinstance(tree, dict):
        return [leaf for key in tree for leaf in leaves(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [leaf for child in tree for leaf in leaves(child)]
    return [tree]


def fingerprint(*trees: Any) -> list[tuple[str, str, tuple[int, ...], bytes]]:
    """Each leaf's type, dtype, shape and bytes."""
    return [(type(a).__name__, str(host(a).dtype), host(a).shape, host(a).tobytes()) for a in leaves(trees)]
