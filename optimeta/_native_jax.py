"""The native jax path: a first-order step as one compiled jax function.

With ``grad="jax"`` and an `ElementwiseAlgorithm` (Adam, SGD, AdamW, RMSProp, Lion, ...), the
run's iterate is the tuple of ``u0``'s arrays as jax arrays, each in its own dtype (float32
parameters stay float32), and each step is one call of a ``jax.jit``-compiled function that
evaluates ``f`` and its gradient, checks them for finiteness, applies the algorithm's
`ElementwiseAlgorithm.leaf_update` (the same definition the NumPy path runs, here on
``jax.numpy``), projects onto the bounds and returns the new state ``f`` returned: no NumPy
conversion on the way. The moments of a large model are donated to the call
(``donate_argnums``), so they are updated in place. The host reads back the loss and a
finiteness flag per step, in one transfer, which the run's budgets, callback and non-finite
policy need.

64-bit types are enabled only for a float64 iterate (`precision`): a float32 flax or equinox
model runs, and draws its dropout masks, as in the user's own loop. The run itself (the loop,
budgets, callback, observer, state commits, the Solution) is the one every step-wise algorithm
has (`optimeta._run.drive`); this module gives it a step (`NativeJaxStep`) and the state that
step carries (`NativeState`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from ._jax_tools import join_p, precision, split_p, traced_call
from ._native_base import NativeState, NativeStep
from ._values import check_loss, loss_error, narrow_float, pair_error
from .backends._base import NonFiniteEvaluation

if TYPE_CHECKING:
    from ._objective import Objective
    from .backends._base import Algorithm

__all__ = ["NativeJaxStep", "Traced", "compile_cached"]


class NativeJaxStep(NativeStep):
    """One step of an `ElementwiseAlgorithm` on the user's arrays as jax arrays (`NativeStep`), compiled
    once per problem and algorithm (again only if ``p`` changes structure, or a non-array leaf
    of it changes)."""

    def __init__(self, objective: Objective, alg: Any) -> None:
        super().__init__(objective, alg)
        import jax

        self._jax = jax
        box = None if objective.lb is None or objective.ub is None else (objective.lb, objective.ub)
        self._box = None if box is None else tuple(self.array(side) for side in box)
        # Large models donate their moments (updated in place: the memory of one copy saved),
        # and then a non-finite step must hand them back as they were, which costs a select
        # over every moment; small ones keep theirs, which stay valid, and skip the select.
        self._donate = objective.layout.size >= DONATE_MIN_SIZE
        self._compiled = self.build()
        # A full-batch run of a model that donates nothing dispatches each step before it reads
        # the one before (see `__call__`): the step dispatched ahead, the inputs it was
        # dispatched on (held, so that their identities stay theirs) and ``p`` split once.
        self._prefetch = PREFETCH and not self._donate
        self._ahead: tuple[Any, ...] | None = None
        self._split: tuple[Any, ...] = (_UNSET, [], None, False)
        self._previous_p: Any = _UNSET
        if objective.stateful:
            objective.present = _presenter(jax, objective.state)
            # Numbers in the initial state as the arrays f's new states will hold (of a strong
            # type): the second step is then traced as the first was, not again.
            with precision(self.dtype):
                objective.state = jax.tree_util.tree_map(_strong, objective.state)

    @property
    def namespace(self) -> Any:
        return self._jax.numpy

    def build(self) -> Any:
        """The compiled step (`Traced.fused`), its moments donated for a large model."""
        jax, objective, donate = self._jax, self.objective, self._donate

        def build() -> Any:
            fused = Traced(objective, self.alg, donate).fused
            return jax.jit(fused, static_argnums=5, donate_argnums=1 if donate else ())

        return compile_cached(("elementwise", donate), objective, self.alg, build)

    def scope(self) -> AbstractContextManager[Any]:
        return precision(self.dtype)

    def start(self, x0: np.ndarray) -> tuple[Any, NativeState]:
        x = self.array(x0)
        with precision(self.dtype):
            per_leaf = [self.alg.slots(self._jax.numpy, leaf) for leaf in x]
        return x, NativeState(0, tuple(tuple(slots) for slots in zip(*per_leaf)) if per_leaf else ())

    def array(self, x: np.ndarray) -> Any:
        """A flat NumPy vector (an iterate, a slot, a bound) as the native iterate: a tuple of
        jax arrays, one per leaf of ``u0``, each of its leaf's shape and dtype."""
        jnp, layout = self._jax.numpy, self.objective.layout
        with precision(self.dtype):
            return tuple(
                jnp.asarray(x[s.start : s.stop].reshape(s.shape), dtype=dtype)
                for s, dtype in zip(layout.leaves, layout.dtypes)
            )

    def host(self, x: Any) -> np.ndarray:
        return np.concatenate([np.asarray(leaf, dtype=np.float64).ravel() for leaf in x])

    def __call__(self, evaluate: Any, x: Any, state: NativeState, box: Any) -> tuple[Any, NativeState, float]:
        obj = self.objective
        given = obj.state_for_call()
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (id(x), id(state.slots), state.step, id(obj.p), id(given)):
            x_new, slots, new_state, report = ahead[1]  # dispatched by the step before, on these inputs
        else:
            x_new, slots, new_state, report = self._dispatch(x, state.slots, state.step, given)
        same_batch, self._previous_p = obj.p is self._previous_p, obj.p
        if self._prefetch and same_batch and self._split[3]:
            # The next step's inputs are known (the batch is the same, its arrays jax's and so
            # unchangeable): dispatch it now, to run while the host waits for this one's report.
            upcoming = new_state if obj.stateful else None
            key = (id(x_new), id(slots), state.step + 1, id(obj.p), id(upcoming))
            self._ahead = (key, self._dispatch(x_new, slots, state.step + 1, upcoming), x_new, slots, upcoming)
        obj.count_f()
        obj.gevals += 1
        if obj.stateful:
            obj.keep(x, new_state)
        value, ok = np.asarray(report).tolist()
        if not ok:
            raise NonFiniteEvaluation(x, value, NativeState(state.step, slots) if self._donate else None)
        return x_new, NativeState(state.step + 1, slots), value

    def _dispatch(self, x: Any, slots: Any, step: int, given: Any) -> Any:
        """The compiled step's call from `x`, `slots` after `step` updates, the state `given` and
        the run's current ``p`` (its arrays and constants found once per ``p`` object)."""
        p = self.objective.p
        if self._split[0] is not p:
            arrays, static = split_p(self._jax, p)
            self._split = (p, arrays, static, all(isinstance(a, self._jax.Array) for a in arrays))
        with precision(self.dtype):
            return self._compiled(
                x, slots, self.alg.coefficients(step), given, self._split[1], self._split[2], self._box
            )


def _strong(leaf: Any) -> Any:
    """A number of the state as a jax array of its own (strong) type; arrays as they are."""
    import jax.numpy as jnp

    if isinstance(leaf, (bool, int, float, complex)):
        return jnp.asarray(leaf, dtype=jnp.result_type(type(leaf)))
    return leaf


def _presenter(jax: Any, initial: Any) -> Callable[[Any], Any]:
    """How a native run shows its committed state (jax arrays) to the user: each leaf of the
    kind the committed initial state's leaf had (a Python number, or a NumPy array: the gradient
    source commits a jax array of the initial state as NumPy, a 0-d one as a number), where the
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


_UNSET = object()  # no p split yet

#: Whether a full-batch run of a small model dispatches each step ahead (see `NativeJaxStep`).
PREFETCH = True

#: From this many parameters on, the compiled step donates the moments (see `NativeJaxStep`).
DONATE_MIN_SIZE = 100_000

#: Compiled steps, by what they are traced from (see `_compiled`): a problem solved again with
#: the same algorithm reuses its compilation, as a jitted function does in the user's own loop.
_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_SIZE = 32


def compile_cached(kind: tuple[Any, ...], objective: Objective, alg: Algorithm, build: Callable[[], Any]) -> Any:
    """The compiled step `build` makes, for this objective's ``f``, layout, sense and
    statefulness, for `alg` (hyperparameters are constants of the trace; a step's
    coefficients are arguments) and for `kind` (the shape of step, its donations): made once,
    and again only when one of them changes."""
    key = (kind, objective.f, id(objective.layout), objective.sign, objective.stateful, alg)
    try:
        hit = _CACHE.get(key)
    except TypeError:  # an algorithm with an unhashable hyperparameter (a schedule object)
        return build()
    if hit is not None and hit[0] is objective.layout:
        return hit[1]
    if len(_CACHE) >= _CACHE_SIZE:
        del _CACHE[next(iter(_CACHE))]
    compiled = build()
    _CACHE[key] = (objective.layout, compiled)  # the layout kept alive: its id stays its own
    return compiled


class Traced:
    """What the compiled step is traced from: ``f``, the layout, the sense, the algorithm."""

    def __init__(self, objective: Objective, alg: Any, donate: bool) -> None:
        import jax

        self._jax = jax
        self.donate = donate
        self.f, self.layout, self.sign, self.stateful = (
            objective.f,
            objective.layout,
            objective.sign,
            objective.stateful,
        )
        self.alg = alg

    def loss(self, x: Any, p: Any, state: Any) -> tuple[Any, Any]:
        """f at the leaves `x` in the minimisation sense, traced: (scalar loss, new state)."""
        u = self.layout.assemble(list(x))
        if self.stateful:
            out = traced_call(self._jax, lambda: self.f(u, p, state))
            if not (isinstance(out, tuple) and len(out) == 2):
                raise pair_error("f", out)
            loss, new_state = out
        else:
            loss, new_state = traced_call(self._jax, lambda: self.f(u, p)), None
        return self.sign * self._scalar(loss), new_state

    def _scalar(self, loss: Any) -> Any:
        jax = self._jax
        if not isinstance(loss, jax.Array):
            return jax.numpy.asarray(check_loss(loss, self.stateful), dtype=self.layout.native_dtype())
        if loss.ndim == 0 and (loss.dtype.kind in "biuf" or narrow_float(loss.dtype)):
            return loss
        shown = f"an array of shape {loss.shape}" if loss.ndim else type(loss).__name__
        raise loss_error(loss, shown, f"a traced jax array of {loss.dtype}", self.stateful)

    def fused(
        self,
        x: tuple[Any, ...],
        slots: tuple[Any, ...],
        coefficients: tuple[Any, ...],
        state: Any,
        p_arrays: list[Any],
        p_static: Any,
        box: Any,
    ) -> tuple[Any, tuple[Any, ...], Any, Any]:
        """Value, gradient, finiteness, the update of each leaf and projection: the compiled step.

        The order of the arguments and of the results is the one a hand-written jitted step
        has (parameters, optimiser state, model state, data; the loss last): XLA on the CPU
        schedules this program about 20% faster so than with the state after the data and the
        loss before the state, measured on a 9k-parameter MLP."""
        jnp = self._jax.numpy
        p = join_p(p_arrays, p_static)
        (loss, new_state), grad = self._jax.value_and_grad(self.loss, has_aux=True)(x, p, state)
        finite = jnp.isfinite(loss)
        for g in grad:
            finite = finite & jnp.all(jnp.isfinite(g))
        new_x, new_slots = [], []
        for i, (g, leaf) in enumerate(zip(grad, x)):
            leaf_new, leaf_slots = self.alg.leaf_update(jnp, g, leaf, tuple(s[i] for s in slots), coefficients)
            if box is not None:
                leaf_new = jnp.clip(leaf_new, box[0][i], box[1][i])
            new_x.append(leaf_new.astype(leaf.dtype))
            new_slots.append(leaf_slots)
        kept = tuple(tuple(new[k] for new in new_slots) for k in range(len(slots)))
        if self.donate:  # the slots were donated: on a non-finite evaluation they come back as they were
            kept = tuple(tuple(jnp.where(finite, new, old) for new, old in zip(k, o)) for k, o in zip(kept, slots))
        wide = jnp.promote_types(loss.dtype, jnp.float32)
        report = jnp.stack([loss.astype(wide), finite.astype(wide)])  # read back in one transfer
        return tuple(new_x), kept, new_state, report
