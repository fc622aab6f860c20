"""The one wrapper around the user's objective.

It owns everything between an algorithm, which sees a flat float64 vector, and the user's `f`,
which sees the parameter tree: the pytree <-> flat mapping, value and gradient in one evaluation
(reverse-mode autograd, the user's `grad`, finite differences, jax / torch through
`_frameworks`, or a `GradientSource` of the user's), the explicit state (threaded,
committed per call or per step, checked when constant, stripped of autograd tracer boxes), the
sign flip for maximisation, and the call counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._gradient_source import BuiltinSource
from ._problem import OptimizationProblem, flat
from ._sources import source_for
from ._state import StateMutationError, copy_state, first_change, short_repr
from ._values import Layout, pair_error, strip_tracers

__all__ = ["Objective"]


class Objective:
    """The user's objective seen as a function of a flat vector, always to be minimised.

    ``state`` is the committed state. How calls see it is fixed once per solve:

    * per-call commit (``per_step_commit=False``, for single-call-per-step algorithms): every
      evaluation receives the committed state, and the state it returns is committed at once;
    * per-step commit: every evaluation receives a copy of the committed snapshot; the states
      returned wait, keyed by the point (a NumPy vector by its bytes, a native iterate, a tuple
      of the framework's arrays, by identity), until `commit_at` commits the one returned at
      the step's accepted point;
    * a constant state (``state_mode="constant"``): every call receives a copy, and a returned
      state that differs from it raises `StateMutationError`.

    One evaluation is one call of ``f`` under autograd, a call of ``f`` and one of ``grad``, or
    the n + 1 calls of a finite-difference gradient, which all see the same state and batch.
    ``fevals`` counts calls of ``f``, ``gevals`` gradients, ``probe_fevals`` the calls of the
    determinism probe (never committed). ``p`` is what calls receive; a minibatch driver sets it.
    """

    def __init__(self, prob: OptimizationProblem, *, per_step_commit: bool = False) -> None:
        on_flat = flat(prob)
        self.layout: Layout = on_flat.layout
        self.x0: np.ndarray = on_flat.x0
        self.lb: np.ndarray | None = on_flat.lb
        self.ub: np.ndarray | None = on_flat.ub
        self.constraints: tuple[Any, ...] = prob.constraints
        self.sign = 1.0 if prob.sense == "min" else -1.0
        self.stateful = prob.state is not None
        self.state: Any = copy_state(prob.state)
        self.p: Any = prob.p
        self.fevals = 0
        self.gevals = 0
        self.probe_fevals = 0
        self.hevals = 0
        self.f = prob.f
        self._constant = self.stateful and prob.state_mode == "constant"
        #: Whether the state is declared constant (each returned state is checked against it).
        self.constant_state = self._constant
        self.per_step_commit = self.stateful and per_step_commit and not self._constant
        self._pending: dict[bytes, Any] = {}
        self._probing = False
        #: Where values and derivatives come from (`GradientSource`): autograd, the user's
        #: ``grad``, finite differences, jax, torch or the user's own source.
        self.source: BuiltinSource = source_for(self, prob.grad)
        self._previous: Any = self.state
        #: How `user_state` shows the committed state (None: as it is); see `user_state`.
        self.present: Callable[[Any], Any] | None = None
        self._value_and_grad = self.source.value_and_grad

    # -- the calls ---------------------------------------------------------------------------

    def user_u(self, x: np.ndarray) -> Any:
        """`x` as the user's tree, read-only: the algorithm owns `x`."""
        view = x.view()
        view.flags.writeable = False  # the algorithm owns x: the objective may read it only
        return self.layout.unflatten(view)

    def count_f(self) -> None:
        """Count one call of f: the probe's or the run's."""
        if self._probing:
            self.probe_fevals += 1
        else:
            self.fevals += 1

    def call(self, fn: Any, what: str, u: Any, state: Any) -> tuple[Any, Any]:
        """One call of the user's `f` or `grad`: (value, new state), counted and checked."""
        if what == "f":
            self.count_f()
        if not self.stateful:
            return fn(u, self.p), None
        out = fn(u, self.p, state)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise pair_error(what, out)
        if self._constant:
            self._check_constant(what, strip_tracers(out[1]))
        return out

    def _check_constant(self, what: str, new_state: Any) -> None:
        if self._constant:
            changed = first_change(self.state, new_state)
            if changed is not None:
                path, old, new = changed
                call = self.fevals + self.probe_fevals
                raise StateMutationError(call, path, what, short_repr(old), short_repr(new))

    def source_call(self, method: Any, x: np.ndarray, state: Any, *args: Any) -> tuple[Any, Any]:
        """One evaluation by a source that takes the flat vector (jax or torch through a
        `FrameworkGradient`, a user's `GradientSource`): ``method(x, p, state, *args) -> (out,
        new_state)``, counted as one call of f and checked as `call` does."""
        self.count_f()
        out, new_state = method(x, self.p, state, *args)
        if self.stateful:
            self._check_constant("f", new_state)
        return out, new_state

    def state_for_call(self) -> Any:
        """The state the next call of ``f`` receives (a copy where the call may not commit it)."""
        if not self.stateful:
            return None
        if self._constant or self.per_step_commit:
            return copy_state(self.state)
        return self.state

    def keep(self, x: Any, new_state: Any) -> None:
        """Keep the state a call at `x` returned: committed at once, or pending until its step's
        point is known (per-step commit)."""
        if self.per_step_commit:
            self._pending[_point_key(x)] = new_state
        elif self.stateful and not self._constant:
            self._previous = self.state
            self.state = new_state

    def user_state(self) -> Any:
        """The committed state as the user receives it (a callback, the Solution): as it is, or
        as `present` shows it (a native run keeps the framework's arrays, and shows each leaf
        of the kind the initial state had)."""
        return self.state if self.present is None else self.present(self.state)

    def revert(self) -> None:
        """Per-call commit: take back the state the last call committed (its value was not
        finite, and the run ends at the iterate before it). States are replaced, never written
        to, so the one before is intact."""
        if self.stateful and not self._constant and not self.per_step_commit:
            self.state = self._previous

    # -- evaluations ---------------------------------------------------------------------------

    def value(self, x: np.ndarray) -> float:
        """f at `x` (minimisation sense), without a gradient."""
        loss, new_state = self.source.value(x, self.p, self.state_for_call())
        self.keep(x, new_state)
        return self.sign * loss

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """f and its gradient at `x` (minimisation sense), from one evaluation."""
        loss, grad, new_state = self._value_and_grad(x, self.p, self.state_for_call() if self.stateful else None)
        self.gevals += 1
        if self.stateful:
            self.keep(x, new_state)
        if self.sign < 0:
            return -loss, -grad
        return loss, grad

    # -- second derivatives ----------------------------------------------------------------------

    def hessp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The Hessian of f at `x` times `v` (minimisation sense), from the gradient source:
        reverse-over-reverse autograd, forward-over-reverse jax, double-backward torch, or a
        forward difference of the user's ``grad`` along `v`; on the committed state."""
        self.hevals += 1
        x, v = np.asarray(x, dtype=np.float64), np.asarray(v, dtype=np.float64)
        return self.sign * np.asarray(self.source.hessp(x, self.p, self.state, v), dtype=np.float64)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The Hessian of f at `x` (minimisation sense), from the gradient source (forward
        differences of the user's ``grad`` symmetrised); on the committed state."""
        self.hevals += 1
        x = np.asarray(x, dtype=np.float64)
        return self.sign * self.source.hessian(x, self.p, self.state).reshape(x.size, x.size)

    # -- per-step commit and the probe ---------------------------------------------------------

    def commit_at(self, x: np.ndarray) -> None:
        """Per-step commit: commit the state returned at `x`, the accepted point of this step.

        If `x` was not evaluated during the step, it is evaluated now (one counted call, on the
        same snapshot). Without per-step commit this does nothing.
        """
        if not self.per_step_commit:
            return
        key = _point_key(x)
        if key not in self._pending:
            self.value(x)
        self.state = self._pending[key]
        self._pending.clear()

    def probe(self, x: np.ndarray, state: Any) -> tuple[float, Any]:
        """f at `x` on a copy of `state`: (loss in the user's sense, new state), never committed."""
        self._probing = True
        try:
            loss, new_state = self.source.value(x, self.p, copy_state(state))
        finally:
            self._probing = False
        return loss, strip_tracers(new_state)  # a state f holds (a box kept from an earlier call)


def _point_key(x: Any) -> Any:
    """What a pending state is kept under: a NumPy iterate's bytes, a native iterate itself (a
    tuple of a framework's arrays, compared by identity: the step hands the driver the very
    tuple it evaluated)."""
    return x.tobytes() if isinstance(x, np.ndarray) else id(x)
