"""The native torch path: a first-order step on the user's tensors.

With ``grad="torch"`` and an `ElementwiseAlgorithm`, the run's iterate is the tuple of the
user's tensors, one per leaf of ``u0``, each in its own dtype (float32 parameters stay float32),
and each step evaluates ``f`` and its gradient
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

from ._native_base import NativeState, NativeStep
from ._tree import tree_leaves_with_paths, tree_map
from .backends._base import NonFiniteEvaluation
from .backends._fused import fused_memory, fused_update
from .backends._pairs import curvature_pair, first_direction, two_loop

if TYPE_CHECKING:
    from ._objective import Objective

__all__ = ["NativeTorchPairs", "NativeTorchStep"]


def torch_dtype(torch: Any, dtype: np.dtype[Any]) -> Any:
    """torch's dtype for a NumPy floating dtype (float64 for any other)."""
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(
        np.dtype(dtype).name, torch.float64
    )


class NativeTorchStep(NativeStep):
    """One step of an `ElementwiseAlgorithm` on the user's torch tensors (`NativeStep`)."""

    def __init__(self, objective: Objective, alg: Any) -> None:
        super().__init__(objective, alg)
        import torch

        self._torch = torch
        self._engine = objective.source.engine  # type: ignore[attr-defined]
        box = None if objective.lb is None or objective.ub is None else (objective.lb, objective.ub)
        self._box = None if box is None else tuple(self.array(side) for side in box)
        if objective.stateful:
            objective.present = _presenter(torch, objective.state)
        # Per leaf, the memory of the NumPy path's fused pass where it runs (see `_fused`).
        layout = objective.layout
        self._memory = [fused_memory(alg, s.stop - s.start, t) for s, t in zip(layout.leaves, layout.dtypes)]

    def _fused(self, memory: Any, grad: Any, x: Any, slots: tuple[Any, ...], step: int) -> tuple[Any, tuple[Any, ...]]:
        """`leaf_update` of a large CPU tensor as the NumPy path's fused pass (`fused_update`:
        one pass over memory, where torch's operators make one each), on NumPy views of the
        tensors' memory (no copy), returned as tensors on the memory it wrote."""
        flat = [a.detach().numpy().reshape(-1) for a in (grad, x, *slots)]
        x_new, new_slots = fused_update(self.alg, memory, flat[0], flat[1], tuple(flat[2:]), step)
        back = self._torch.from_numpy
        return back(x_new.reshape(x.shape)), tuple(back(a.reshape(x.shape)) for a in new_slots)

    def start(self, x0: np.ndarray) -> tuple[Any, NativeState]:
        x = self.array(x0)
        per_leaf = [self.alg.slots(self._torch, leaf) for leaf in x]
        return x, NativeState(0, tuple(tuple(slots) for slots in zip(*per_leaf)) if per_leaf else ())

    def array(self, x: np.ndarray) -> Any:
        """A flat NumPy vector (an iterate, a slot, a bound) as the native iterate: a tuple of
        tensors, one per leaf of ``u0``, each of its leaf's shape and dtype (copies)."""
        torch, layout = self._torch, self.objective.layout
        return tuple(
            torch.tensor(np.asarray(x[s.start : s.stop]).reshape(s.shape), dtype=torch_dtype(torch, dtype))
            for s, dtype in zip(layout.leaves, layout.dtypes)
        )

    def host(self, x: Any) -> np.ndarray:
        return np.concatenate([leaf.detach().cpu().double().numpy().ravel() for leaf in x])

    def evaluate(self, x: Any) -> tuple[float, tuple[Any, ...]]:
        """The loss and gradient at `x` (minimisation sense), counted, the state f returned
        kept; `NonFiniteEvaluation` at `x` when either is not finite."""
        torch, obj = self._torch, self.objective
        t = tuple(leaf.detach().requires_grad_() for leaf in x)
        given = obj.state_for_call()
        if given is not None:  # f may write its state's tensors in place (BatchNorm does): copies
            given = tree_map(lambda a: a.clone() if isinstance(a, torch.Tensor) else a, given)
        value, grad, new_state = self._engine.tensor_value_and_grad(t, obj.p, given)
        obj.count_f()
        obj.gevals += 1
        if obj.stateful:
            obj.keep(x, new_state)
        if obj.sign < 0:
            value, grad = -value, tuple(-g for g in grad)
        if not (math.isfinite(value) and _all_finite(torch, grad)):
            raise NonFiniteEvaluation(x, value)
        return value, grad

    def __call__(self, evaluate: Any, x: Any, state: NativeState, box: Any) -> tuple[Any, NativeState, float]:
        torch = self._torch
        value, grad = self.evaluate(x)
        coefficients = None  # the fused pass computes its own (`update`): made for the others only
        new_x, new_slots = [], []
        with torch.no_grad():
            for i, (g, leaf) in enumerate(zip(grad, x)):
                leaf_slots = tuple(s[i] for s in state.slots)
                if self._memory[i] is not None and leaf.device.type == "cpu":
                    leaf_new, leaf_slots = self._fused(self._memory[i], g, leaf, leaf_slots, state.step)
                else:
                    coefficients = coefficients or self.alg.coefficients(state.step)
                    leaf_new, leaf_slots = self.alg.leaf_update(torch, g, leaf, leaf_slots, coefficients)
                if self._box is not None:
                    leaf_new = torch.clamp(leaf_new, self._box[0][i], self._box[1][i])
                new_x.append(leaf_new)
                new_slots.append(leaf_slots)
        slots = tuple(tuple(leaf[k] for leaf in new_slots) for k in range(len(state.slots)))
        return tuple(new_x), NativeState(state.step + 1, slots), value


class NativeTorchPairs(NativeTorchStep):
    """One step of a `CurvaturePairAlgorithm` (`OLBFGS`) on the user's tensors: two evaluations
    on one batch and state snapshot, the two-loop step between them
    (`optimeta.backends._pairs.two_loop` with ``torch`` as the namespace), the new pair kept
    when it shows curvature. Its state's slots are the memory ``(s, y)``: tuples of the pairs
    in use, oldest first, each a tuple of tensors shaped as the iterate."""

    def start(self, x0: np.ndarray) -> tuple[Any, NativeState]:
        return self.array(x0), NativeState(0, ((), ()))

    def adopt(self, x: np.ndarray, opt_state: Any) -> tuple[Any, NativeState]:
        memory = tuple(self.array(v) for v in opt_state.s), tuple(self.array(v) for v in opt_state.y)
        return self.array(x), NativeState(opt_state.step, memory)

    def export(self, x: Any, opt_state: NativeState) -> tuple[np.ndarray, Any]:
        s, y = opt_state.slots
        return self.host(x), self.alg.state_type(
            opt_state.step, tuple(self.host(v) for v in s), tuple(self.host(v) for v in y)
        )

    def __call__(self, evaluate: Any, x: Any, state: NativeState, box: Any) -> tuple[Any, NativeState, float]:
        torch, alg = self._torch, self.alg
        value, grad = self.evaluate(x)
        s_mem, y_mem = state.slots
        with torch.no_grad():
            direction = two_loop(torch, grad, s_mem, y_mem) if s_mem else first_direction(torch, grad)
            rate = alg.rate(state.step)
            x_new = tuple(leaf + rate * d for leaf, d in zip(x, direction))
        try:
            value_new, grad_new = self.evaluate(x_new)
        except NonFiniteEvaluation as exc:
            exc.start = value  # finite, with its gradient, at x
            raise
        with torch.no_grad():
            s, y, accept = curvature_pair(torch, x, x_new, grad, grad_new, alg.reg)
        if bool(accept):
            s_mem, y_mem = (*s_mem, s)[-alg.memory :], (*y_mem, y)[-alg.memory :]
        return x_new, NativeState(state.step + 1, (s_mem, y_mem)), value_new


def _all_finite(torch: Any, grad: tuple[Any, ...]) -> bool:
    """Whether every element of the gradient's tensors is finite: one sum of sums (one
    synchronisation), which a NaN or an infinity makes non-finite; only then (or when the sum
    overflows) the elementwise test."""
    if not grad:
        return True
    total = sum((g.sum() for g in grad[1:]), grad[0].sum())
    return math.isfinite(float(total)) or all(bool(torch.isfinite(g).all()) for g in grad)


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
