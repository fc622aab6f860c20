"""What the user's functions return, checked, and the flat layout of ``u``.

`Layout` maps the parameter tree ``u0`` to the flat float64 vector algorithms see and back;
`real_array`, `check_loss` and the error builders check what ``f``, ``grad`` and a constraint
return; `strip_tracers` takes autograd's boxes off a value. The objective wrapper
(`_objective`), the framework engines (`_frameworks`) and the problem build on them.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
from autograd.tracer import getval, isbox

from ._tree import LeafSpec, is_container, match_structure, tree_leaves_with_paths, tree_map, tree_unflatten

__all__ = [
    "Layout",
    "check_loss",
    "framework_array",
    "is_positive_int",
    "loss_error",
    "pair_error",
    "real_array",
    "strip_tracers",
]


def is_positive_int(value: Any) -> bool:
    """Whether `value` is an integer >= 1 (a bool is not one): the one test of counts and budgets."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and int(value) >= 1


def real_array(value: Any, name: str) -> np.ndarray:
    """`value` as a float64 array, or a TypeError naming `name` for non-real input."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real number or array, got {value!r}")
    if type(value).__module__.partition(".")[0] == "torch" and hasattr(value, "detach"):
        value = value.detach().cpu()  # a torch tensor (a Parameter too), wherever it lives: its values
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # e.g. ragged nested sequences
        raise TypeError(f"{name} must be a real number or array, got {value!r}") from exc
    if arr.dtype.kind not in "iuf" and not narrow_float(arr.dtype):
        what = {"b": "bool", "c": "complex"}.get(arr.dtype.kind, str(arr.dtype))
        hint = _container_hint(value) if arr.dtype.kind in "OUS" else ""
        raise TypeError(f"{name} must hold real numbers, got {what} values: {value!r}{hint}")
    return np.array(arr, dtype=np.float64)


def narrow_float(dtype: np.dtype[Any]) -> bool:
    """A floating dtype NumPy knows only through ml_dtypes (jax's bfloat16, float8 kinds)."""
    return dtype.kind == "V" and (dtype.name == "bfloat16" or dtype.name.startswith("float8"))


def _container_hint(value: Any) -> str:
    """What to pass instead of a container of another library's kind (a torch module, a jax
    pytree such as an equinox Module or a flax FrozenDict, a Mapping that is not a dict), which
    optimeta does not take apart: its trees are dicts, lists, tuples and NamedTuples. Modules
    are looked up among those already imported: nothing is imported here."""
    kind = type(value).__name__
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.nn.Module):
        return (
            f"; a torch {kind} is not taken apart: pass its parameters as a dict, "
            "dict(module.named_parameters()) (copied: the module is not changed), its buffers as the state, "
            "and call torch.func.functional_call(module, (u, state), inputs) in f, with grad='torch'"
        )
    jax = sys.modules.get("jax")
    if jax is not None:
        leaves = jax.tree_util.tree_leaves(value)
        if len(leaves) != 1 or leaves[0] is not value:
            return (
                f"; a jax pytree ({kind}) is taken apart with grad='jax' (f written with jax.numpy), which "
                "trains its floating-point arrays and keeps its other leaves; with another gradient, pass "
                "its arrays as a dict, list or tuple (e.g. jax.tree_util.tree_leaves of the arrays) and "
                "rebuild it in f (jax.tree_util.tree_unflatten)"
            )
    if isinstance(value, Mapping):
        return f"; a {kind} is a Mapping but not a dict: pass dict(...) of it"
    return ""


class Layout:
    """How a parameter tree maps onto one flat float64 vector and back."""

    def __init__(
        self,
        treedef: Any,
        leaves: tuple[LeafSpec, ...],
        dtypes: tuple[np.dtype[Any], ...] | None = None,
        kinds: tuple[str, ...] | None = None,
    ) -> None:
        self.treedef = treedef
        self.leaves = leaves
        self.size = leaves[-1].stop if leaves else 0
        # A plain array u0, the common case, maps by a reshape alone.
        self.single = isinstance(treedef, LeafSpec) and not treedef.scalar
        #: Each leaf's floating dtype as the user gave it (float64 for integers and numbers), and
        #: its kind: "numpy", "jax", "torch" (arrays of that library) or "scalar" (a number).
        self.dtypes = dtypes if dtypes is not None else (np.dtype(np.float64),) * len(leaves)
        self.kinds = kinds if kinds is not None else ("numpy",) * len(leaves)

    def native_dtype(self) -> np.dtype[Any]:
        """The dtype of a flat vector that holds every leaf in its own precision: the widest of
        the leaves' floating dtypes (float32 for float32 leaves, float64 for float64 or numbers)."""
        return np.result_type(*self.dtypes) if self.dtypes else np.dtype(np.float64)

    @classmethod
    def of(cls, tree: Any, name: str) -> tuple[Layout, np.ndarray]:
        """The layout of `tree` and its flat float64 copy; TypeError for non-real leaves."""
        specs: list[LeafSpec] = []
        arrays: list[np.ndarray] = []
        dtypes: list[np.dtype[Any]] = []
        kinds: list[str] = []
        start = 0
        for path, leaf in tree_leaves_with_paths(tree):
            arr = real_array(leaf, f"{name}{path}")
            scalar = arr.ndim == 0 and not isinstance(leaf, np.ndarray)
            specs.append(LeafSpec(path, arr.shape, start, start + arr.size, scalar))
            kind, dtype = leaf_kind(leaf, scalar)
            kinds.append(kind)
            dtypes.append(dtype)
            arrays.append(arr.ravel())
            start += arr.size
        spec_iter = iter(specs)
        treedef = tree_map(lambda _: next(spec_iter), tree)
        flat = np.concatenate(arrays) if arrays else np.zeros(0)
        return cls(treedef, tuple(specs), tuple(dtypes), tuple(kinds)), flat

    def unflatten(self, x: Any) -> Any:
        """The tree for flat vector `x` (views of it; works on autograd boxes too). A framework's
        array (a jax tracer, a torch tensor) gives each leaf in the user's own dtype."""
        if framework_array(x):
            return self.assemble(self.native_leaves(x))
        if isinstance(x, tuple):  # a native jax iterate: its leaves already
            return self.assemble(list(x))
        if self.single:
            return x.reshape(self.treedef.shape)

        def fill(spec: LeafSpec) -> Any:
            return x[spec.start] if spec.scalar else x[spec.start : spec.stop].reshape(spec.shape)

        return tree_unflatten(self.treedef, fill)

    def native_leaves(self, x: Any) -> list[Any]:
        """The leaves of flat framework array `x` (jax or torch), each in its leaf's dtype."""
        out = []
        for spec, dtype in zip(self.leaves, self.dtypes):
            leaf = x[spec.start] if spec.scalar else x[spec.start : spec.stop].reshape(spec.shape)
            if leaf.dtype != dtype:
                leaf = _cast(leaf, dtype)
            out.append(leaf)
        return out

    def assemble(self, leaves: list[Any]) -> Any:
        """The user's tree with these leaves, in the order of `leaves` specs."""
        if self.single:
            return leaves[0]
        it = iter(leaves)
        return tree_unflatten(self.treedef, lambda _: next(it))

    def to_user(self, x: Any) -> Any:
        """A tree of fresh arrays (Python floats for scalar leaves) for the user to keep. From a
        flat NumPy vector: float64 arrays. From a framework's flat array (the native path):
        each leaf of the user's kind and dtype (a jax or torch array stays one, on its device;
        a NumPy leaf comes back as NumPy)."""
        if framework_array(x) or isinstance(x, tuple):
            leaves = list(x) if isinstance(x, tuple) else self.native_leaves(x)
            return self.assemble([_to_kind(leaf, kind) for leaf, kind in zip(leaves, self.kinds)])
        if self.single:
            return x.reshape(self.treedef.shape).copy()

        def fill(spec: LeafSpec) -> Any:
            if spec.scalar:
                return float(x[spec.start])
            return x[spec.start : spec.stop].reshape(spec.shape).copy()

        return tree_unflatten(self.treedef, fill)

    def flatten(self, tree: Any, name: str, broadcast: bool = True) -> np.ndarray:
        """Flatten a tree with this layout's structure; with `broadcast`, a scalar fills a leaf."""
        # Containers are never read as arrays: bounds=[(lo, hi), ...] must not pass for (lb, ub).
        if self.single and not is_container(tree):
            return self._leaf(self.treedef, tree, name, broadcast)
        out = np.empty(self.size)
        for spec, leaf in match_structure(self.treedef, tree, name):
            out[spec.start : spec.stop] = self._leaf(spec, leaf, name + spec.path, broadcast)
        return out

    @staticmethod
    def _leaf(spec: LeafSpec, leaf: Any, name: str, broadcast: bool) -> np.ndarray:
        if type(leaf) is np.ndarray and leaf.dtype == np.float64 and leaf.shape == spec.shape:
            # The common case: the hot path of user gradients.
            flat: np.ndarray = leaf.copy() if leaf.ndim == 1 else leaf.reshape(-1).copy()
            return flat
        arr = real_array(leaf, name)
        if arr.shape != spec.shape and not (broadcast and arr.ndim == 0):
            raise ValueError(f"{name} must have shape {spec.shape} like u0{spec.path}, got shape {arr.shape}")
        return np.broadcast_to(arr, spec.shape).ravel()


def framework_array(x: Any) -> bool:
    """Whether `x` is a jax array (or tracer) or a torch tensor: by its type's module, so that
    nothing is imported."""
    return type(x).__module__.partition(".")[0] in ("jax", "jaxlib", "torch")


def leaf_kind(leaf: Any, scalar: bool) -> tuple[str, np.dtype[Any]]:
    """A leaf's kind ("numpy", "jax", "torch" or "scalar") and the floating dtype it keeps
    (its own when floating, float64 otherwise). Nothing is imported here."""
    module = type(leaf).__module__.partition(".")[0]
    kind = "scalar" if scalar else {"jaxlib": "jax", "jax": "jax", "torch": "torch"}.get(module, "numpy")
    dtype = getattr(leaf, "dtype", None)
    if kind == "torch":
        dtype = {"float32": np.float32, "float16": np.float16}.get(str(dtype).rpartition(".")[2], np.float64)
    try:
        dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.float64)
    except TypeError:
        dtype = np.dtype(np.float64)
    if not (dtype.kind == "f" or dtype.name in ("bfloat16", "float16")) or scalar:
        dtype = np.dtype(np.float64)
    return kind, dtype


def _cast(leaf: Any, dtype: np.dtype[Any]) -> Any:
    """A framework array as `dtype` (jax: ``astype``; torch: ``to``)."""
    if hasattr(leaf, "astype"):
        return leaf.astype(dtype)
    import torch

    return leaf.to({np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}.get(dtype, torch.float64))


def _to_kind(leaf: Any, kind: str) -> Any:
    """A framework leaf as the user gave it: a copy of the same kind, NumPy, or a float."""
    if kind == "scalar":
        return float(leaf)
    if kind == "numpy":
        host = leaf.detach().cpu().numpy() if hasattr(leaf, "detach") else leaf
        return np.array(host)
    return leaf.clone() if hasattr(leaf, "clone") else leaf.copy()


def strip_tracers(tree: Any) -> Any:
    """`tree` with every autograd box replaced by its plain value."""

    def plain(leaf: Any) -> Any:
        while isbox(leaf):
            leaf = getval(leaf)
            if is_container(leaf):
                return strip_tracers(leaf)
        return leaf

    return tree_map(plain, tree)


def check_loss(loss: Any, stateful: bool) -> float:
    """`loss` as a float, or the TypeError that says what f should have returned."""
    if type(loss) is float or type(loss) is np.float64:
        return float(loss)
    value = getval(loss)
    arr = None
    if not isinstance(value, (str, bytes)) and not is_container(value):
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):  # a ragged sequence or an object NumPy cannot read
            arr = None
    if arr is not None and arr.ndim == 0 and arr.dtype.kind in "iuf":
        return float(arr)
    shown = f"an array of shape {arr.shape}" if arr is not None and arr.ndim else type(value).__name__
    raise loss_error(value, shown, repr(strip_tracers(value)), stateful)


def loss_error(value: Any, shown: str, text: str, stateful: bool) -> TypeError:
    """The error for a loss that is not a real scalar: `shown` says what it is, `text` shows it."""
    hint = " as the first element of (loss, new_state)" if stateful else ""
    if not stateful and isinstance(value, tuple) and len(value) == 2:
        hint = "; to return (loss, new_state), give the problem its initial state with state="
    return TypeError(f"the objective must return a real scalar loss{hint}, got {shown}: {text}")


def pair_error(what: str, out: Any) -> TypeError:
    """The error for a stateful `f` or `grad` that did not return a pair (value, new_state)."""
    return TypeError(
        f"{what} must return a pair (value, new_state) when the problem has a state "
        f"(state= was given), got {type(getval(out)).__name__}: {strip_tracers(out)!r}"
    )
