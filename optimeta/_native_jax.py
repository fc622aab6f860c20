"""The native jax path: a first-order step as one compiled jax function.

With ``grad="jax"`` and an `ElementwiseAlgorithm` (Adam, SGD, AdamW, RMSProp, Lion, ...), the
run's iterate is a flat jax array in the user's own precision (float32 parameters stay float32:
`Layout.native_dtype`), and each step is one call of a ``jax.jit``-compiled function that
evaluates ``f`` and its gradient, checks them for finiteness, applies the algorithm's
`ElementwiseAlgorithm.leaf_update` (the same definition the NumPy path runs, here on
``jax.numpy``), projects onto the bounds and returns the new state ``f`` returned: no NumPy
conversion on the way. The algorithm's arrays are donated to the call (``donate_argnums``),
so the moments of a large model are updated in place. The host reads back one scalar loss and
one flag per step, which the run's budgets, callback and non-finite policy need.

64-bit types are enabled only for a float64 iterate (`precision`): a float32 flax or equinox
model runs, and draws its dropout masks, as in the user's own loop. The run itself (the loop,
budgets, callback, observer, state commits, the Solution) is the one every step-wise algorithm
has (`optimeta._run.drive`); this module gives it a step (`NativeJaxStep`) and the state that
step carries (`NativeState`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._jax_tools import join_p, precision, split_p, traced_call
from ._values import check_loss, loss_error, pair_error
from .backends._base import ElementwiseAlgorithm, NonFiniteEvaluation

if TYPE_CHECKING:
    from ._objective import Objective
    from .backends._base import Algorithm

__all__ = ["NativeJaxStep", "NativeState", "native_jax_step"]


class NativeState(NamedTuple):
    """An `ElementwiseAlgorithm`'s state on a framework's arrays: the updates made so far and
    the algorithm's slots (its moments), each an array shaped like the flat iterate."""

    step: int
    slots: tuple[Any, ...]


def native_jax_step(objective: Objective, alg: Algorithm) -> NativeJaxStep | None:
    """The compiled step for `alg` on `objective`, or None when the run stays on NumPy: for an
    algorithm that is not elementwise, or a state declared constant (its check compares each
    returned state on the host)."""
    if not isinstance(alg, ElementwiseAlgorithm) or objective.per_step_commit:
        return None
    if objective.constant_state:
        return None
    return NativeJaxStep(objective, alg)


class NativeJaxStep:
    """One step of an `ElementwiseAlgorithm` on a flat jax iterate, compiled once per run (and
    again only if ``p`` changes structure, or a non-array leaf of it changes).

    Called as the driver calls `StepwiseAlgorithm.step`: ``step(evaluate, x, state, box)`` ->
    ``(x_new, state, loss)``, raising `NonFiniteEvaluation` (with the state to go on from) when
    the loss or the gradient is not finite; ``evaluate`` is not used: the evaluation is part of
    the compiled step, counted and committed through the objective as any evaluation is.
    """

    def __init__(self, objective: Objective, alg: ElementwiseAlgorithm[Any]) -> None:
        import jax

        self._jax = jax
        self.objective = objective
        self.alg = alg
        self.dtype = objective.layout.native_dtype()
        box = None if objective.lb is None or objective.ub is None else (objective.lb, objective.ub)
        with precision(self.dtype):
            self._box = None if box is None else tuple(jax.numpy.asarray(side, dtype=self.dtype) for side in box)
        self._compiled = _compiled(objective, alg)
        if objective.stateful:
            objective.present = _presenter(jax, objective.state)
            # Numbers in the initial state as the arrays f's new states will hold (of a strong
            # type): the second step is then traced as the first was, not again.
            with precision(self.dtype):
                objective.state = jax.tree_util.tree_map(_strong, objective.state)

    def adopt(self, x: np.ndarray, opt_state: Any) -> tuple[Any, NativeState]:
        """The iterate and the algorithm's NumPy state (`ElementwiseAlgorithm.init`'s, or a
        checkpoint's) as the native step carries them: jax arrays of the run's dtype."""
        jnp = self._jax.numpy
        step, slots = self.alg.to_slots(opt_state)
        with precision(self.dtype):
            native = tuple(jnp.asarray(slot, dtype=self.dtype) for slot in slots)
            return jnp.asarray(x, dtype=self.dtype), NativeState(step, native)

    def array(self, x: np.ndarray) -> Any:
        """A NumPy iterate as a jax array of the run's dtype."""
        with precision(self.dtype):
            return self._jax.numpy.asarray(x, dtype=self.dtype)

    def export(self, x: Any, opt_state: NativeState) -> tuple[np.ndarray, Any]:
        """The iterate and the state as NumPy float64 (a checkpoint's form): `adopt` undone,
        exactly (float64 holds every float32 and bfloat16 value)."""
        slots = tuple(np.array(slot, dtype=np.float64) for slot in opt_state.slots)
        return np.array(x, dtype=np.float64), self.alg.from_slots(opt_state.step, slots)

    def __call__(self, evaluate: Any, x: Any, state: NativeState, box: Any) -> tuple[Any, NativeState, float]:
        obj = self.objective
        coefficients = self.alg.coefficients(state.step)
        arrays, static = split_p(self._jax, obj.p)
        with precision(self.dtype):
            x_new, slots, loss, finite, new_state = self._compiled(
                x, state.slots, coefficients, static, arrays, obj.state_for_call(), self._box
            )
        obj.count_f()
        obj.gevals += 1
        if obj.stateful:
            obj.keep(x, new_state)
        value, ok = self._jax.device_get((loss, finite))
        value = float(value)
        if not ok:
            raise NonFiniteEvaluation(x, value, NativeState(state.step, slots))
        return x_new, NativeState(state.step + 1, slots), value


def _strong(leaf: Any) -> Any:
    """A number of the state as a jax array of its own (strong) type; arrays as they are."""
    import jax.numpy as jnp

    if isinstance(leaf, (bool, int, float, complex)):
        return jnp.asarray(leaf, dtype=jnp.result_type(type(leaf)))
    return leaf


def _presenter(jax: Any, initial: Any) -> Callable[[Any], Any]:
    """How a native run shows its committed state (jax arrays) to the user: each leaf of the
    kind the initial state's leaf had (a Python number, a NumPy array, a jax array), where the
    structure is the initial one; as it is otherwise."""
    leaves, structure = jax.tree_util.tree_flatten(initial)

    def convert(kind: Any, leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array):
            return leaf
        if isinstance(kind, (bool, int, float, complex)):
            return type(kind)(leaf.item())
        if isinstance(kind, (np.ndarray, np.generic)):
            return np.array(leaf)
        return leaf

    def present(state: Any) -> Any:
        new, new_structure = jax.tree_util.tree_flatten(state)
        if new_structure != structure:
            return state
        return structure.unflatten([convert(kind, leaf) for kind, leaf in zip(leaves, new)])

    return present


#: Compiled steps, by what they are traced from (see `_compiled`): a problem solved again with
#: the same algorithm reuses its compilation, as a jitted function does in the user's own loop.
_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_SIZE = 32


def _compiled(objective: Objective, alg: ElementwiseAlgorithm[Any]) -> Any:
    """The jitted fused step for this objective's ``f``, layout, sense and statefulness, and for
    `alg` (hyperparameters are constants of the trace; the step's coefficients are arguments)."""
    import jax

    key = (objective.f, id(objective.layout), objective.sign, objective.stateful, alg)
    try:
        hit = _CACHE.get(key)
    except TypeError:  # an algorithm with an unhashable hyperparameter (a schedule object)
        return jax.jit(_Traced(objective, alg).fused, static_argnums=3, donate_argnums=1)
    if hit is not None and hit[0] is objective.layout:
        return hit[1]
    if len(_CACHE) >= _CACHE_SIZE:
        del _CACHE[next(iter(_CACHE))]
    compiled = jax.jit(_Traced(objective, alg).fused, static_argnums=3, donate_argnums=1)
    _CACHE[key] = (objective.layout, compiled)  # the layout kept alive: its id stays its own
    return compiled


class _Traced:
    """What the compiled step is traced from: ``f``, the layout, the sense, the algorithm."""

    def __init__(self, objective: Objective, alg: ElementwiseAlgorithm[Any]) -> None:
        import jax

        self._jax = jax
        self.f, self.layout, self.sign, self.stateful = (
            objective.f,
            objective.layout,
            objective.sign,
            objective.stateful,
        )
        self.alg = alg

    def _loss(self, x: Any, p: Any, state: Any) -> tuple[Any, Any]:
        """f at flat `x` in the minimisation sense, traced: (scalar loss, new state)."""
        u = self.layout.unflatten(x)
        if self.stateful:
            out = traced_call(self._jax, lambda: self.f(u, p, state))
            if not (isinstance(out, tuple) and len(out) == 2):
                raise pair_error("f", out)
            loss, new_state = out
        else:
            loss, new_state = traced_call(self._jax, lambda: self.f(u, p)), None
        return self.sign * self._scalar(loss, x.dtype), new_state

    def _scalar(self, loss: Any, dtype: Any) -> Any:
        jax = self._jax
        if not isinstance(loss, jax.Array):
            return jax.numpy.asarray(check_loss(loss, self.stateful), dtype=dtype)
        if loss.ndim == 0 and loss.dtype.kind in "biuf":
            return loss
        shown = f"an array of shape {loss.shape}" if loss.ndim else type(loss).__name__
        raise loss_error(loss, shown, f"a traced jax array of {loss.dtype}", self.stateful)

    def fused(
        self,
        x: Any,
        slots: tuple[Any, ...],
        coefficients: tuple[Any, ...],
        p_static: Any,
        p_arrays: list[Any],
        state: Any,
        box: Any,
    ) -> tuple[Any, tuple[Any, ...], Any, Any, Any]:
        """Value, gradient, finiteness, update and projection: the compiled step."""
        jnp = self._jax.numpy
        p = join_p(p_arrays, p_static)
        (loss, new_state), grad = self._jax.value_and_grad(self._loss, has_aux=True)(x, p, state)
        finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grad))
        x_new, new_slots = self.alg.leaf_update(jnp, grad, x, slots, coefficients)
        if box is not None:
            x_new = jnp.clip(x_new, box[0], box[1])
        # The slots were donated: on a non-finite evaluation they come back as they were.
        kept = tuple(jnp.where(finite, new, old) for new, old in zip(new_slots, slots))
        return x_new.astype(x.dtype), kept, loss, finite, new_state
