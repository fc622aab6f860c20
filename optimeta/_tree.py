"""Minimal pytrees: nested dicts, lists, tuples and NamedTuples of leaves.

A *treedef* records the containers of a tree with every leaf replaced by a `LeafSpec` (for
parameters) or by `LEAF` (for arbitrary objects), so that a tree can be taken apart into a flat
list of leaves and put back together with the same container types, keys and order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple


class LeafSpec(NamedTuple):
    """Where one leaf of a parameter tree sits in the flat vector, and its shape."""

    path: str
    shape: tuple[int, ...]
    start: int
    stop: int
    scalar: bool  # the user gave a Python/NumPy scalar, not an array: hand back a float


class _Leaf:
    """Placeholder for a leaf in a treedef of arbitrary objects."""

    def __repr__(self) -> str:
        return "*"


LEAF = _Leaf()


def is_namedtuple(obj: object) -> bool:
    return isinstance(obj, tuple) and hasattr(type(obj), "_fields")


def is_container(obj: object) -> bool:
    return isinstance(obj, (dict, list, tuple))


def children(tree: Any) -> Iterator[tuple[str, Any]]:
    """Yield `(path suffix, child)` pairs of a container, in its own order."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield f"[{key!r}]", value
    elif is_namedtuple(tree):
        for name, value in zip(tree._fields, tree):
            yield f".{name}", value
    else:
        for i, value in enumerate(tree):
            yield f"[{i}]", value


def rebuild(template: Any, values: list[Any]) -> Any:
    """A container of the same type (and keys) as `template`, holding `values`."""
    if isinstance(template, dict):
        if type(template) is dict:
            return dict(zip(template.keys(), values))
        rebuilt = copy.copy(template)  # keeps what a subclass carries, e.g. a default_factory
        rebuilt.clear()
        rebuilt.update(zip(template.keys(), values))
        return rebuilt
    if is_namedtuple(template):
        return type(template)(*values)
    return type(template)(values)


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """Apply `fn` to every non-container leaf, keeping the containers."""
    if is_container(tree):
        return rebuild(tree, [tree_map(fn, child) for _, child in children(tree)])
    return fn(tree)


def tree_leaves_with_paths(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield `(path, leaf)` for every non-container leaf, depth first."""
    if is_container(tree):
        for suffix, child in children(tree):
            yield from tree_leaves_with_paths(child, prefix + suffix)
    else:
        yield prefix, tree


def tree_unflatten(treedef: Any, fill: Callable[[Any], Any]) -> Any:
    """Rebuild `treedef`, replacing every placeholder `leaf` by `fill(leaf)`."""
    if isinstance(treedef, (LeafSpec, _Leaf)):
        return fill(treedef)
    return rebuild(treedef, [tree_unflatten(child, fill) for _, child in children(treedef)])


def match_structure(treedef: Any, tree: Any, name: str, path: str = "") -> Iterator[tuple[LeafSpec, Any]]:
    """Walk `tree` along `treedef`, yielding `(spec, leaf)`; a structural mismatch is a ValueError.

    Dict keys are matched by name, so the order of keys in `tree` does not matter.
    """
    if isinstance(treedef, LeafSpec):
        if is_container(tree):
            raise ValueError(
                f"{name}{path} must be an array like u0{path} (shape {treedef.shape}), got a {type(tree).__name__}"
            )
        yield treedef, tree
        return
    if isinstance(treedef, dict):
        if not isinstance(tree, dict) or set(tree.keys()) != set(treedef.keys()):
            got = sorted(map(repr, tree.keys())) if isinstance(tree, dict) else type(tree).__name__
            raise ValueError(
                f"{name}{path} must have the structure of u0{path}: expected a dict with keys "
                f"{sorted(map(repr, treedef.keys()))}, got {got}"
            )
        for key, child in treedef.items():
            yield from match_structure(child, tree[key], name, f"{path}[{key!r}]")
        return
    if not isinstance(tree, (list, tuple)) or len(tree) != len(treedef):
        got = f"length {len(tree)}" if isinstance(tree, (list, tuple)) else type(tree).__name__
        raise ValueError(
            f"{name}{path} must have the structure of u0{path}: expected a "
            f"{type(treedef).__name__} of length {len(treedef)}, got {got}"
        )
    for (suffix, child), item in zip(children(treedef), tree):
        yield from match_structure(child, item, name, path + suffix)
