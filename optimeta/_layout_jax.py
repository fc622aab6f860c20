"""The layout of a jax pytree that optimeta's own trees do not take apart: `JaxLayout`.

optimeta's trees are dicts, lists, tuples and NamedTuples (`optimeta._tree`). With
``grad="jax"``, ``u0`` may be any pytree jax knows: an ``equinox.Module``, a flax ``FrozenDict``
or ``nnx.State``, a dataclass registered with ``jax.tree_util``. Its parameters are the leaves
that are floating-point arrays (jax's or NumPy's), as ``equinox.is_inexact_array`` takes them;
every other leaf (an activation function, a flag, an integer array, a Python number such as a
dropout rate) is part of the structure and stays as it was. The flat vector holds the
parameters; the user's ``f`` receives the pytree itself, rebuilt around them, each array in its
own dtype.

`layout_of` chooses between `Layout` and `JaxLayout` for a problem's ``u0``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._tree import LeafSpec, tree_leaves_with_paths
from ._values import Layout, framework_array, leaf_kind, real_array

__all__ = ["JaxLayout", "layout_of"]


def _jax_parameter(jax: Any, leaf: Any) -> bool:
    """A floating-point array, jax's or NumPy's: a parameter (as ``eqx.is_inexact_array``)."""
    if isinstance(leaf, np.ndarray):
        return bool(leaf.dtype.kind == "f" or leaf.dtype.name == "bfloat16")
    return bool(isinstance(leaf, jax.Array) and jax.numpy.issubdtype(leaf.dtype, jax.numpy.inexact))


def needs_jax_layout(tree: Any) -> bool:
    """Whether `tree` holds a jax pytree that optimeta's own trees take for one leaf (an
    ``equinox.Module``, a ``FrozenDict``, ...): then `JaxLayout` is its layout."""
    jax = sys.modules.get("jax")
    if jax is None:
        return False
    for _, leaf in tree_leaves_with_paths(tree):
        leaves = jax.tree_util.tree_leaves(leaf)
        if len(leaves) != 1 or leaves[0] is not leaf:
            return True
    return False


def layout_of(tree: Any, name: str, grad: Any) -> tuple[Layout, np.ndarray]:
    """The layout of a problem's `tree` (``u0``) and its flat float64 copy: `JaxLayout` for a
    jax pytree of a kind optimeta does not take apart, when ``grad="jax"``; `Layout` otherwise."""
    if isinstance(grad, str) and grad == "jax" and needs_jax_layout(tree):
        return JaxLayout.of(tree, name)
    return Layout.of(tree, name)


class JaxLayout(Layout):
    """How a jax pytree's floating-point arrays map onto one flat float64 vector and back.

    `treedef` is the tuple of the parameters' `LeafSpec` (what a checkpoint describes); the
    pytree's own structure and its other leaves are kept beside it.
    """

    def __init__(
        self,
        structure: Any,
        positions: tuple[int, ...],
        fixed: tuple[Any, ...],
        specs: tuple[LeafSpec, ...],
        dtypes: tuple[np.dtype[Any], ...],
        kinds: tuple[str, ...],
    ) -> None:
        super().__init__(specs, specs, dtypes, kinds)
        self.single = False
        self.structure = structure  # jax's treedef of the whole pytree
        self.positions = positions  # where the parameters sit among its leaves
        self.fixed = fixed  # every leaf as in u0 (the parameters' places are overwritten)

    @classmethod
    def of(cls, tree: Any, name: str) -> tuple[JaxLayout, np.ndarray]:
        """The layout of jax pytree `tree` and the flat float64 copy of its parameters."""
        import jax

        pairs, structure = jax.tree_util.tree_flatten_with_path(tree)
        specs: list[LeafSpec] = []
        arrays: list[np.ndarray] = []
        dtypes: list[np.dtype[Any]] = []
        kinds: list[str] = []
        positions: list[int] = []
        start = 0
        for i, (path, leaf) in enumerate(pairs):
            if not _jax_parameter(jax, leaf):
                continue
            where = jax.tree_util.keystr(path)
            arr = real_array(np.asarray(leaf, dtype=np.float64), f"{name}{where}")
            specs.append(LeafSpec(where, arr.shape, start, start + arr.size, False))
            kind, dtype = leaf_kind(leaf, False)
            kinds.append(kind)
            dtypes.append(dtype)
            positions.append(i)
            arrays.append(arr.ravel())
            start += arr.size
        flat = np.concatenate(arrays) if arrays else np.zeros(0)
        fixed = tuple(leaf for _, leaf in pairs)
        layout = cls(structure, tuple(positions), fixed, tuple(specs), tuple(dtypes), tuple(kinds))
        return layout, flat

    def assemble(self, leaves: list[Any]) -> Any:
        every = list(self.fixed)
        for position, leaf in zip(self.positions, leaves):
            every[position] = leaf
        return self.structure.unflatten(every)

    def unflatten(self, x: Any) -> Any:
        """The pytree for flat vector `x`: views of a NumPy `x`; from a jax tracer or array,
        each parameter in its own dtype."""
        if framework_array(x):
            return self.assemble(self.native_leaves(x))
        if isinstance(x, tuple):  # a native iterate: its leaves already
            return self.assemble(list(x))
        return self.assemble([x[s.start : s.stop].reshape(s.shape) for s in self.leaves])

    def to_user(self, x: Any) -> Any:
        """A pytree of fresh arrays, each parameter of its kind and dtype as in ``u0``."""
        if framework_array(x) or isinstance(x, tuple):
            return super().to_user(x)
        import jax.numpy as jnp

        leaves = []
        for spec, dtype, kind in zip(self.leaves, self.dtypes, self.kinds):
            value = x[spec.start : spec.stop].reshape(spec.shape).astype(dtype)
            leaves.append(jnp.asarray(value) if kind == "jax" else value)
        return self.assemble(leaves)

    def flatten(self, tree: Any, name: str, broadcast: bool = True) -> np.ndarray:
        """A scalar for every parameter, or a pytree of u0's structure (its parameters' places
        read, scalars filling a place when `broadcast`)."""
        if not framework_array(tree) and np.ndim(tree) == 0 and not hasattr(tree, "__dict__"):
            side = real_array(tree, name)
            return np.full(self.size, float(side))
        try:
            every = self.structure.flatten_up_to(tree)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a number or a pytree shaped like u0: {exc}") from exc
        out = np.empty(self.size)
        for spec, position in zip(self.leaves, self.positions):
            arr = real_array(np.asarray(every[position], dtype=np.float64), name + spec.path)
            if arr.shape != spec.shape and not (broadcast and arr.ndim == 0):
                raise ValueError(f"{name}{spec.path} must have shape {spec.shape} like u0{spec.path}, got {arr.shape}")
            out[spec.start : spec.stop] = np.broadcast_to(arr, spec.shape).ravel()
        return out
