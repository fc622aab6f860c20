"""Objectives written for jax or torch: ``OptimizationProblem(..., grad="jax" / "torch")``.

The framework computes the value, the gradient and second derivatives of ``f``; `Objective`
still owns everything else (counting calls, threading and committing the state, the sign for
maximisation). Values cross the boundary as NumPy both ways: each call converts the parameters
and the committed state to the framework's arrays, and the state ``f`` returns comes back as
NumPy arrays (Python scalars for 0-d ones) before it is committed, so no jax array, tracer or
torch tensor is ever kept. jax and torch are imported when a problem names them, never when
optimeta is imported.
"""

from __future__ import annotations

import abc
import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._tree import tree_map
from ._values import check_loss, loss_error, pair_error

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ._values import Layout

__all__ = ["FRAMEWORKS", "FrameworkGradient", "check_state", "framework_gradient", "require"]

#: The ``grad=`` names whose gradients come from a framework's own automatic differentiation.
FRAMEWORKS = ("jax", "torch")


def require(name: str) -> ModuleType:
    """Import the framework `name`, or say which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ModuleNotFoundError(
            f'grad="{name}" takes gradients with {name}, which cannot be imported ({exc}): install it '
            f"with pip install 'optimeta[{name}]'",
            name=name,
        ) from exc


def check_state(name: str, state: Any) -> None:
    """Refuse, when the problem is built, an initial state the framework cannot carry."""
    if name == "jax" and state is not None:
        _check_jax_state(state)


def framework_gradient(name: str, f: Callable[..., Any], layout: Layout, stateful: bool) -> FrameworkGradient:
    """The value-and-gradient engine of ``grad=name`` for one solve."""
    engine = JaxGradient if name == "jax" else TorchGradient
    return engine(f, layout, stateful)


class FrameworkGradient(abc.ABC):
    """Value, gradient and second derivatives of ``f`` by a framework's autodiff.

    Every method takes the flat float64 point `x`, ``p`` and the committed state (None for a
    stateless problem) and returns ``(result, new_state)``: the result as Python floats and
    NumPy arrays, the new state converted to NumPy (None for a stateless problem). Each method
    call is one call of ``f``.
    """

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
        """`tree` with the framework's arrays replaced by NumPy arrays (0-d ones by Python scalars)."""

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


# -- jax ----------------------------------------------------------------------------------------

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


def _numeric_array(leaf: Any) -> bool:
    return isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype.kind in "biufc"


def _is_key(jax: ModuleType, leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and bool(jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key))


def _key_error(where: str) -> TypeError:
    return TypeError(
        f"{where} is a typed jax PRNG key (jax.random.key), which has no NumPy form to keep in the "
        "committed state: carry jax.random.PRNGKey(seed) (a uint32 array) or an integer seed instead"
    )


def _check_jax_state(state: Any) -> None:
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(state)
    for path, leaf in leaves:
        where = "state" + jax.tree_util.keystr(path)
        if _is_key(jax, leaf):
            raise _key_error(where)
        numeric = isinstance(leaf, (bool, int, float, complex)) or _numeric_array(leaf)
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
        arrays = [leaf for leaf in leaves if _numeric_array(leaf) or isinstance(leaf, self._jax.Array)]
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


# -- torch --------------------------------------------------------------------------------------


def _cut_names(torch: ModuleType) -> dict[Any, str]:
    """The torch calls that take a tensor out of autograd's graph, by what the user wrote."""
    tensor = torch.Tensor
    return {
        tensor.detach: ".detach()",
        tensor.detach_: ".detach_()",
        tensor.item: ".item()",
        tensor.tolist: ".tolist()",
        tensor.numpy: ".numpy()",
        tensor.__float__: "float()",
        tensor.__complex__: "complex()",
        tensor.__array__: "np.asarray()",
        tensor.data.__get__: ".data",
        tensor.requires_grad_: ".requires_grad_(False)",
        torch.tensor: "torch.tensor()",
    }


def _needs_grad(torch: ModuleType, args: tuple[Any, ...]) -> bool:
    """Whether a tensor among `args` (or in a list or tuple among them) requires grad."""
    for arg in args:
        items = arg if isinstance(arg, (list, tuple)) else (arg,)
        if any(isinstance(item, torch.Tensor) and item.requires_grad for item in items):
            return True
    return False


@functools.cache
def _watch_type(torch: ModuleType) -> Any:
    """A torch function mode that notes, as ``cut``, the first call of f that takes a tensor that
    requires grad out of the graph (`_cut_names`, or any call under ``torch.no_grad()``)."""
    names = _cut_names(torch)

    class Watch(torch.overrides.TorchFunctionMode):  # type: ignore[misc,name-defined]
        cut: str | None = None

        def __torch_function__(
            self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
        ) -> Any:
            kwargs = kwargs or {}
            if self.cut is None:
                try:
                    name = names.get(func)
                except TypeError:  # an unhashable callable: none of the cuts
                    name = None
                if name is None:
                    if not torch.is_grad_enabled() and _needs_grad(torch, args):
                        self.cut = "torch.no_grad()"
                elif _needs_grad(torch, args[:1]):
                    keeps = name == ".requires_grad_(False)" and (
                        args[1] if len(args) > 1 else kwargs.get("requires_grad", True)
                    )
                    if not keeps:
                        self.cut = name
            return func(*args, **kwargs)

    return Watch


def _cut_error(loss: Any, value: float, cut: str | None) -> TypeError:
    """The error for a loss that does not reach u in torch's graph."""
    if cut is None:  # not a tensor
        kind = "NumPy" if type(loss).__module__ == "numpy" else "Python"
        what = f"a {kind} {type(loss).__name__}, {value!r}"
        constant = "return torch.tensor(c)"
    else:
        if cut == "torch.no_grad()":
            how = "computed from a tensor that requires grad under torch.no_grad()"
        else:
            how = f"{'called' if cut.endswith(')') else 'read'} {cut} on a tensor that requires grad"
        tensor = "a tensor whose graph does not reach u" if loss.requires_grad else "a tensor with no grad_fn"
        what = f"{tensor}; f {how}"
        constant = "return 0 * u.sum() + c"
    return TypeError(
        f"the loss f returned does not depend on u in torch's graph ({what}): f must return a tensor computed "
        f"from u; .item(), .detach() and .numpy() cut it from the graph (for a constant loss, {constant})"
    )


class TorchGradient(FrameworkGradient):
    """``f`` on torch tensors: the gradient by torch's autograd, second derivatives by double
    backward. ``u`` reaches ``f`` as float64 tensors, the state's NumPy arrays as tensors (copies:
    ``f`` may write to them), and ``p`` as given; the state's tensors come back detached.

    Where a derivative is asked, the loss must be a tensor: a number (``.item()``, ``float()``, a
    NumPy value) is a TypeError. A tensor that does not reach ``u`` in the graph is a constant
    with a zero gradient (``torch.tensor(c)``), unless ``f`` cut a tensor that requires grad out
    of the graph in that call (``.detach()``, ``.data``, ``torch.no_grad()``, ...), which is a
    TypeError too. Until ``f`` has once returned a loss that reaches ``u``, its calls run under a
    torch function mode that watches for such cuts; afterwards they run unwatched, at full speed.
    """

    def __init__(self, f: Callable[..., Any], layout: Layout, stateful: bool) -> None:
        super().__init__(f, layout, stateful)
        import torch

        self._torch = torch
        self._watching = True

    def _point(self, x: np.ndarray, requires_grad: bool) -> Any:
        t = self._torch.from_numpy(np.array(x, dtype=np.float64))
        return t.requires_grad_() if requires_grad else t

    def _run(self, t: Any, p: Any, state: Any) -> tuple[Any, Any]:
        torch = self._torch
        if state is not None:
            state = tree_map(
                lambda a: torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) and _numeric_array(a) else a, state
            )
        with torch.enable_grad():
            return self._apply(self._layout.unflatten(t), p, state)

    def _run_watched(self, t: Any, p: Any, state: Any) -> tuple[Any, Any, str | None]:
        """`_run` for a derivative: (loss, new state, the first cut f made, while watching)."""
        if not self._watching:
            loss, new_state = self._run(t, p, state)
            return loss, new_state, None
        watch = _watch_type(self._torch)()
        with watch:
            loss, new_state = self._run(t, p, state)
        return loss, new_state, watch.cut

    def _loss(self, loss: Any) -> float:
        torch = self._torch
        if isinstance(loss, torch.Tensor):
            if loss.ndim == 0 and loss.is_floating_point():
                return float(loss.item())
            loss = loss.detach().cpu().numpy()
        return check_loss(loss, self._stateful)

    def plain(self, tree: Any) -> Any:
        torch = self._torch

        def leaf(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            arr = value.detach().cpu().numpy().copy()
            return arr.item() if arr.ndim == 0 else arr

        return tree_map(leaf, tree)

    def _first(self, loss: Any, value: float, cut: str | None, t: Any, create_graph: bool = False) -> Any:
        """d loss / d t, or None where the loss is a constant tensor; TypeError for a loss cut
        from the graph (a number, or a tensor that does not reach t after f made a `cut`)."""
        torch = self._torch
        if not isinstance(loss, torch.Tensor):
            raise _cut_error(loss, value, None)
        grad = None
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss, t, create_graph=create_graph, allow_unused=True)
        if grad is not None:
            self._watching = False  # f's graph reaches u: its later calls need no watching
        elif cut is not None:
            raise _cut_error(loss, value, cut)
        return grad

    def value(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, Any]:
        loss, new_state = self._run(self._point(x, False), p, state)
        return self._loss(loss), self.plain(new_state)

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[tuple[float, np.ndarray], Any]:
        t = self._point(x, True)
        loss, new_state, cut = self._run_watched(t, p, state)
        value = self._loss(loss)
        grad = self._first(loss, value, cut, t)
        flat = np.zeros(x.size) if grad is None else grad.detach().numpy()
        return (value, flat), self.plain(new_state)

    def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> tuple[np.ndarray, Any]:
        t = self._point(x, True)
        loss, new_state, cut = self._run_watched(t, p, state)
        product = np.zeros(x.size)
        grad = self._first(loss, self._loss(loss), cut, t, create_graph=True)
        if grad is not None and grad.requires_grad:
            direction = self._torch.from_numpy(np.array(v, dtype=np.float64))
            (hv,) = self._torch.autograd.grad(grad, t, grad_outputs=direction, allow_unused=True)
            if hv is not None:
                product = hv.detach().numpy()
        return product, self.plain(new_state)

    def hessian(self, x: np.ndarray, p: Any, state: Any) -> tuple[np.ndarray, Any]:
        t = self._point(x, True)
        loss, new_state, cut = self._run_watched(t, p, state)
        matrix = np.zeros((x.size, x.size))
        grad = self._first(loss, self._loss(loss), cut, t, create_graph=True)
        if grad is not None and grad.requires_grad:
            for i in range(x.size):
                (row,) = self._torch.autograd.grad(grad[i], t, retain_graph=True, allow_unused=True)
                if row is not None:
                    matrix[i] = row.detach().numpy()
        return matrix, self.plain(new_state)
