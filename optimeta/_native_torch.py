"""The native torch path: a first-order step on a flat torch tensor.

With ``grad="torch"`` and an `ElementwiseAlgorithm`, the run's iterate is a flat tensor of the
user's dtype (float32 parameters stay float32), and each step evaluates ``f`` and its gradient
with torch's autograd (`TorchGradient.tensor_value_and_grad`), applies the algorithm's
`ElementwiseAlgorithm.leaf_update` with ``torch`` as the array namespace (the definition the
NumPy and jax paths run) under ``torch.no_grad()``, and projects onto the bounds: no NumPy
conversion per step. The state ``f`` returns is kept as its tensors (detached) and shown to the
user in the kinds the initial state had.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._native_base import NativeState, NativeStep, runs_natively
from ._tree import tree_leaves_with_paths, tree_map
from .backends._base import ElementwiseAlgorithm, NonFiniteEvaluation

if TYPE_CHECKING:
    from ._objective import Objective
    from .backends._base import Algorithm

__all__ = ["NativeTorchStep", "native_torch_step"]


def native_torch_step(objective: Objective, alg: Algorithm) -> NativeTorchStep | None:
    """The torch step for `alg` on `objective`, or None when the run stays on NumPy (see
    `runs_natively`)."""
    if not runs_natively(objective, alg):
        return None
    assert isinstance(alg, ElementwiseAlgorithm)
    return NativeTorchStep(objective, alg)


def torch_dtype(torch: Any, dtype: np.dtype[Any]) -> Any:
    """torch's dtype for a NumPy floating dtype (float64 for any other)."""
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(
        np.dtype(dtype).name, torch.float64
    )


class NativeTorchStep(NativeStep):
    """One step of an `ElementwiseAlgorithm` on a flat torch tensor (`NativeStep`)."""

    def __init__(self, objective: Objective, alg: ElementwiseAlgorithm[Any]) -> None:
        super().__init__(objective, alg)
        import torch

        self._torch = torch
        self._tdtype = torch_dtype(torch, self.dtype)
        self._engine = objective.source.engine  # type: ignore[attr-defined]
        box = None if objective.lb is None or objective.ub is None else (objective.lb, objective.ub)
        self._box = None if box is None else tuple(self.array(side) for side in box)
        if objective.stateful:
            objective.present = _presenter(torch, objective.state)

    def start(self, x0: np.ndarray) -> tuple[Any, NativeState]:
        x = self.array(x0)
        return x, NativeState(0, tuple(self.alg.slots(self._torch, x)))

    def array(self, x: np.ndarray) -> Any:
        """A flat NumPy vector as a flat tensor of the run's dtype (a copy)."""
        return self._torch.tensor(np.asarray(x), dtype=self._tdtype)

    def host(self, x: Any) -> np.ndarray:
        return np.array(x.detach().cpu().double().numpy(), dtype=np.float64)

    def __call__(self, evaluate: Any, x: Any, state: NativeState, box: Any) -> tuple[Any, NativeState, float]:
        torch, obj = self._torch, self.objective
        t = x.detach().requires_grad_()
        given = obj.state_for_call()
        if given is not None:  # f may write its state's tensors in place (BatchNorm does): copies
            given = tree_map(lambda a: a.clone() if isinstance(a, torch.Tensor) else a, given)
        value, grad, new_state = self._engine.tensor_value_and_grad(t, obj.p, given)
        obj.count_f()
        obj.gevals += 1
        if obj.stateful:
            obj.keep(x, new_state)
        if obj.sign < 0:
            value, grad = -value, -grad
        if not (math.isfinite(value) and _all_finite(torch, grad)):
            raise NonFiniteEvaluation(x, value)
        with torch.no_grad():
            x_new, slots = self.alg.leaf_update(torch, grad, x, state.slots, self.alg.coefficients(state.step))
            if self._box is not None:
                x_new = torch.clamp(x_new, self._box[0], self._box[1])
        return x_new, NativeState(state.step + 1, slots), value


def _all_finite(torch: Any, grad: Any) -> bool:
    """Whether every element of `grad` is finite: one sum, which a NaN or an infinity makes
    non-finite; only then (or when the sum overflows) the elementwise test."""
    return math.isfinite(float(grad.sum())) or bool(torch.isfinite(grad).all())


def _presenter(torch: Any, initial: Any) -> Callable[[Any], Any]:
    """How a native torch run shows its committed state (tensors) to the user: where the initial
    state had a NumPy array, a NumPy array (0-d ones too); a Python number stays a number;
    tensors stay tensors."""
    kinds = {path: leaf for path, leaf in tree_leaves_with_paths(initial)}

    def present(state: Any) -> Any:
        out = []
        for path, leaf in tree_leaves_with_paths(state):
            kind = kinds.get(path)
            if isinstance(leaf, torch.Tensor) and isinstance(kind, (np.ndarray, np.generic)):
                leaf = leaf.detach().cpu().numpy().copy()
            out.append(leaf)
        it = iter(out)
        return tree_map(lambda _: next(it), state)

    return present
