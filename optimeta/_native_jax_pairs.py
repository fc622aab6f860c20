"""The native jax path of a curvature-pair algorithm (`OLBFGS`): its step as one compiled jax
function.

The step evaluates ``f`` and its gradient at the iterate, steps along the two-loop direction
(`optimeta.backends._pairs.two_loop`, the definition the NumPy path runs, here on
``jax.numpy``), evaluates ``f`` and its gradient at the new iterate on the same batch and state
snapshot, and keeps the new curvature pair when it shows curvature: one call of the compiled
function, the user's arrays leaf by leaf in their own dtype. A compiled function cannot change
the number of its arrays, so the memory is ``memory`` pairs from the first step on, zeros where
none is kept yet, with the count of those in use; a kept pair shifts the memory by one. The
host reads back the two losses and their finiteness in one transfer per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._jax_tools import join_p, precision, split_p
from ._native_base import NativeState
from ._native_jax import NativeJaxStep, Traced, compile_cached
from .backends._base import NonFiniteEvaluation
from .backends._pairs import curvature_pair, first_direction, two_loop

__all__ = ["NativeJaxPairs"]


class NativeJaxPairs(NativeJaxStep):
    """One step of a `CurvaturePairAlgorithm` on the user's arrays as jax arrays, compiled once
    per problem and algorithm. Its state's slots are the memory ``(s, y, count)``: ``s`` and
    ``y`` tuples of ``memory`` vectors (each a tuple of the iterate's arrays), oldest first,
    whose last ``count`` are in use."""

    def build(self) -> Any:
        jax, objective = self._jax, self.objective

        def build() -> Any:
            return jax.jit(TracedPairs(objective, self.alg, False).fused_pairs, static_argnums=5)

        return compile_cached(("pairs",), objective, self.alg, build)

    def _memory(self, x: Any, s: tuple[np.ndarray, ...], y: tuple[np.ndarray, ...]) -> tuple[Any, ...]:
        """The memory of pairs `s`, `y` (flat NumPy, oldest first) as the compiled step takes it."""
        jnp, m = self._jax.numpy, self.alg.memory
        zeros = tuple(jnp.zeros_like(leaf) for leaf in x)
        pad = (zeros,) * (m - len(s))
        with precision(self.dtype):
            count = jnp.asarray(len(s), dtype=jnp.int32)
        return (
            pad + tuple(self.array(v) for v in s),
            pad + tuple(self.array(v) for v in y),
            count,
        )

    def start(self, x0: np.ndarray) -> tuple[Any, NativeState]:
        x = self.array(x0)
        return x, NativeState(0, self._memory(x, (), ()))

    def adopt(self, x: np.ndarray, opt_state: Any) -> tuple[Any, NativeState]:
        native = self.array(x)
        return native, NativeState(opt_state.step, self._memory(native, opt_state.s, opt_state.y))

    def export(self, x: Any, opt_state: NativeState) -> tuple[np.ndarray, Any]:
        s, y, count = opt_state.slots
        used = int(count)
        kept = slice(len(s) - used, len(s))
        return self.host(x), self.alg.state_type(
            opt_state.step, tuple(self.host(v) for v in s[kept]), tuple(self.host(v) for v in y[kept])
        )

    def __call__(self, evaluate: Any, x: Any, state: NativeState, box: Any) -> tuple[Any, NativeState, float]:
        obj = self.objective
        arrays, static = split_p(self._jax, obj.p)
        given = obj.state if obj.stateful else None  # jax arrays are never written: no copy
        with precision(self.dtype):
            x_new, memory, at_x, at_new, report = self._compiled(
                x, state.slots, self.alg.rate(state.step), given, arrays, static
            )
        loss, ok, loss_new, ok_new = np.asarray(report).tolist()
        obj.count_f()
        obj.gevals += 1
        if obj.stateful:
            obj.keep(x, at_x)
        if not ok:
            raise NonFiniteEvaluation(x, loss)
        obj.count_f()
        obj.gevals += 1
        if obj.stateful:
            obj.keep(x_new, at_new)
        if not ok_new:
            raise NonFiniteEvaluation(x_new, loss_new, start=loss)
        return x_new, NativeState(state.step + 1, memory), loss_new


class TracedPairs(Traced):
    """The compiled step of a curvature-pair algorithm (see the module)."""

    def fused_pairs(
        self,
        x: tuple[Any, ...],
        memory: tuple[Any, ...],
        rate: Any,
        state: Any,
        p_arrays: list[Any],
        p_static: Any,
    ) -> tuple[Any, ...]:
        """Two evaluations, the two-loop step between them and the new memory; the states f
        returned at both points, and the report (loss, finite, new loss, finite)."""
        jax, alg = self._jax, self.alg
        jnp = jax.numpy
        s_mem, y_mem, count = memory
        p = join_p(p_arrays, p_static)
        value_and_grad = jax.value_and_grad(self.loss, has_aux=True)
        (loss, at_x), grad = value_and_grad(x, p, state)
        m = len(s_mem)
        valid = tuple(count >= m - j for j in range(m))
        pairs = two_loop(jnp, grad, s_mem, y_mem, valid)
        first = first_direction(jnp, grad)
        direction = tuple(jnp.where(count > 0, a, b) for a, b in zip(pairs, first))
        x_new = tuple((leaf + rate * d).astype(leaf.dtype) for leaf, d in zip(x, direction))
        (loss_new, at_new), grad_new = value_and_grad(x_new, p, state)
        s, y, accept = curvature_pair(jnp, x, x_new, grad, grad_new, alg.reg)

        def shifted(old: tuple[Any, ...], new: Any) -> tuple[Any, ...]:
            moved = (*old[1:], new)
            return tuple(tuple(jnp.where(accept, a, b) for a, b in zip(va, vb)) for va, vb in zip(moved, old))

        count_new = jnp.where(accept, jnp.minimum(count + 1, m), count)
        wide = jnp.promote_types(loss.dtype, jnp.float32)
        report = jnp.stack(
            [loss.astype(wide), _finite(jnp, loss, grad), loss_new.astype(wide), _finite(jnp, loss_new, grad_new)]
        )
        return x_new, (shifted(s_mem, s), shifted(y_mem, y), count_new), at_x, at_new, report


def _finite(jnp: Any, loss: Any, grad: tuple[Any, ...]) -> Any:
    """1.0 where the loss and every gradient element are finite, 0.0 otherwise."""
    finite = jnp.isfinite(loss)
    for g in grad:
        finite = finite & jnp.all(jnp.isfinite(g))
    return finite.astype(jnp.promote_types(loss.dtype, jnp.float32))
