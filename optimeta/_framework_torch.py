"""The torch engine of ``grad="torch"``: `TorchGradient`, gradients by autograd.

Until ``f`` has once returned a loss that reaches ``u`` in torch's graph, its calls run under a
torch function mode (`_watch_type`) that notes the first call that cuts a tensor out of the
graph, so that the error can name it. torch is imported when a problem names it, never when
optimeta is imported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._framework_base import FrameworkGradient, numeric_array
from ._tree import tree_map
from ._values import check_loss

if TYPE_CHECKING:
    from ._values import Layout

__all__ = ["TorchGradient"]


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

    name = "torch"

    def __init__(self, f: Callable[..., Any], layout: Layout, stateful: bool) -> None:
        super().__init__(f, layout, stateful)
        import torch

        self._torch = torch
        self._watching = True

    def _point(self, x: Any, requires_grad: bool) -> Any:
        if isinstance(x, tuple):  # a native run's iterate: its leaves, copied as they are
            return tuple(self._point(leaf, requires_grad) for leaf in x)
        torch = self._torch
        t = x.detach().clone() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x, dtype=np.float64))
        return t.requires_grad_() if requires_grad else t

    def _run(self, t: Any, p: Any, state: Any) -> tuple[Any, Any]:
        torch = self._torch
        if state is not None:
            state = tree_map(
                lambda a: torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) and numeric_array(a) else a, state
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
            # A 0-d tensor stays a (0-d) array, which the next call turns back into a tensor:
            # as a Python number it would reach f as one (BatchNorm's num_batches_tracked).
            return value.detach().cpu().numpy().copy()

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

    def tensor_value_and_grad(self, t: tuple[Any, ...], p: Any, state: Any) -> tuple[float, tuple[Any, ...], Any]:
        """f and its gradient at the leaves `t` (tensors that require grad), for the native torch
        step (`optimeta._native_torch`): the loss as a float, the gradient as tensors like `t`
        (zeros where the loss does not reach one), and the new state with its tensors detached,
        not NumPy. A loss cut from the graph is the TypeError `value_and_grad` raises."""
        torch = self._torch
        loss, new_state, cut = self._run_watched(t, p, state)
        value = self._loss(loss)
        if not isinstance(loss, torch.Tensor):
            raise _cut_error(loss, value, None)
        grads: tuple[Any, ...] = (None,) * len(t)
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, t, allow_unused=True)
        if any(g is not None for g in grads):
            self._watching = False  # f's graph reaches u: its later calls need no watching
        elif cut is not None:
            raise _cut_error(loss, value, cut)
        detached = tree_map(lambda a: a.detach() if isinstance(a, torch.Tensor) else a, new_state)
        return value, tuple(torch.zeros_like(ti) if g is None else g for g, ti in zip(grads, t)), detached

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
