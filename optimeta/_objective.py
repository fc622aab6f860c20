"""The one wrapper around the user's objective.

It owns everything between an algorithm, which sees a flat float64 vector, and the user's `f`,
which sees the parameter tree: the pytree <-> flat mapping, value and gradient in one evaluation
(reverse-mode autograd, the user's `grad`, finite differences, or jax / torch through
`_frameworks`), the explicit state (threaded,
committed per call or per step, checked when constant, stripped of autograd tracer boxes), the
sign flip for maximisation, and the call counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import autograd
import autograd.numpy as anp
import numpy as np
import scipy.optimize
from autograd.core import make_vjp
from autograd.tracer import isbox

from ._frameworks import FrameworkGradient, framework_gradient
from ._state import StateMutationError, copy_state, first_change, short_repr
from ._values import Layout, check_loss, pair_error, strip_tracers

if TYPE_CHECKING:
    from ._problem import OptimizationProblem

__all__ = ["Objective"]


def _gradient_of(loss: Any) -> Any:
    """autograd's gradient of `loss`, tied to its input: for a loss linear in u (or constant) the
    gradient does not depend on u, and differentiating it again is a zero second derivative, not
    autograd's warning that the output seems independent of the input."""
    gradient = autograd.grad(loss)

    def tied(y: Any) -> Any:
        return gradient(y) + 0.0 * y

    return tied


#: Relative step of finite differences: the square root of float64's machine epsilon.
_FD_STEP = float(np.sqrt(np.finfo(np.float64).eps))


class Objective:
    """The user's objective seen as a function of a flat vector, always to be minimised.

    ``state`` is the committed state. How calls see it is fixed once per solve:

    * per-call commit (``per_step_commit=False``, for single-call-per-step algorithms): every
      evaluation receives the committed state, and the state it returns is committed at once;
    * per-step commit: every evaluation receives a copy of the committed snapshot; the states
      returned wait, keyed by the point, until `commit_at` commits the one returned at the
      step's accepted point;
    * a constant state (``state_mode="constant"``): every call receives a copy, and a returned
      state that differs from it raises `StateMutationError`.

    One evaluation is one call of ``f`` under autograd, a call of ``f`` and one of ``grad``, or
    the n + 1 calls of a finite-difference gradient, which all see the same state and batch.
    ``fevals`` counts calls of ``f``, ``gevals`` gradients, ``probe_fevals`` the calls of the
    determinism probe (never committed). ``p`` is what calls receive; a minibatch driver sets it.
    """

    def __init__(self, prob: OptimizationProblem, *, per_step_commit: bool = False) -> None:
        self.layout: Layout = prob._layout
        self.x0: np.ndarray = prob._x0
        self.lb: np.ndarray | None = prob._lb
        self.ub: np.ndarray | None = prob._ub
        self.constraints: tuple[Any, ...] = prob.constraints
        self.sign = 1.0 if prob.sense == "min" else -1.0
        self.stateful = prob.state is not None
        self.state: Any = copy_state(prob.state)
        self.p: Any = prob.p
        self.fevals = 0
        self.gevals = 0
        self.probe_fevals = 0
        self.hevals = 0
        self._base: tuple[bytes, np.ndarray] | None = None
        self._f = prob.f
        self._grad = prob.grad if callable(prob.grad) else None
        self._finite_difference = prob.grad == "finite-difference"
        self._framework: FrameworkGradient | None = None
        if isinstance(prob.grad, str) and prob.grad in ("jax", "torch"):
            self._framework = framework_gradient(prob.grad, prob.f, self.layout, self.stateful)
            self.state = self._framework.plain(self.state)  # the committed state holds NumPy only
        self._constant = self.stateful and prob.state_mode == "constant"
        self.per_step_commit = self.stateful and per_step_commit and not self._constant
        self._pending: dict[bytes, Any] = {}
        self._previous: Any = self.state
        self._probing = False
        if self._grad is not None and not self.stateful and self.layout._single:
            self._gradient_method = self._user_grad_plain
        elif self._grad is not None:
            self._gradient_method = self._user_grad
        elif self._finite_difference:
            self._gradient_method = self._differences
        elif self._framework is not None:
            self._gradient_method = self._framework_grad
        else:
            self._gradient_method = self._autograd

    # -- the calls ---------------------------------------------------------------------------

    def _user_u(self, x: np.ndarray) -> Any:
        view = x.view()
        view.flags.writeable = False  # the algorithm owns x: the objective may read it only
        return self.layout.unflatten(view)

    def _call(self, fn: Any, what: str, u: Any, state: Any) -> tuple[Any, Any]:
        """One call of the user's `f` or `grad`: (value, new state), counted and checked."""
        if what == "f":
            if self._probing:
                self.probe_fevals += 1
            else:
                self.fevals += 1
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

    def _framework_call(self, method: Any, x: np.ndarray, state: Any, *args: Any) -> tuple[Any, Any]:
        """One evaluation by jax or torch (`FrameworkGradient`): one call of f, counted and checked
        as `_call` does; the new state comes back as NumPy."""
        if self._probing:
            self.probe_fevals += 1
        else:
            self.fevals += 1
        out, new_state = method(x, self.p, state, *args)
        if self.stateful:
            self._check_constant("f", new_state)
        return out, new_state

    def _state_for_call(self) -> Any:
        if not self.stateful:
            return None
        if self._constant or self.per_step_commit:
            return copy_state(self.state)
        return self.state

    def _keep(self, x: np.ndarray, new_state: Any) -> None:
        if self.per_step_commit:
            self._pending[x.tobytes()] = new_state
        elif self.stateful and not self._constant:
            self._previous = self.state
            self.state = new_state

    def revert(self) -> None:
        """Per-call commit: take back the state the last call committed (its value was not
        finite, and the run ends at the iterate before it). States are replaced, never written
        to, so the one before is intact."""
        if self.stateful and not self._constant and not self.per_step_commit:
            self.state = self._previous

    # -- evaluations ---------------------------------------------------------------------------

    def value(self, x: np.ndarray) -> float:
        """f at `x` (minimisation sense), without a gradient."""
        if self._framework is not None:
            loss, new_state = self._framework_call(self._framework.value, x, self._state_for_call())
        else:
            loss, new_state = self._call(self._f, "f", self._user_u(x), self._state_for_call())
        value = self.sign * check_loss(loss, self.stateful)
        self._keep(x, new_state)
        return value

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """f and its gradient at `x` (minimisation sense), from one evaluation."""
        loss, grad, new_state = self._gradient_method(x, self._state_for_call() if self.stateful else None)
        self.gevals += 1
        if self.stateful:
            self._keep(x, new_state)
        if self.sign < 0:
            return -loss, -grad
        return loss, grad

    def _autograd(self, x: np.ndarray, state: Any) -> tuple[float, np.ndarray, Any]:
        # autograd's own aux support refuses ints and Generators in the aux output, so the new
        # state leaves the traced function through this side channel instead.
        side: list[Any] = []

        def traced(flat: Any) -> Any:
            loss, new_state = self._call(self._f, "f", self.layout.unflatten(flat), state)
            side.append((check_loss(loss, self.stateful), new_state))
            # A loss that does not depend on u has a zero gradient: return a box all the same,
            # so that autograd does not warn.
            return loss if isbox(loss) else flat[0] * 0.0

        vjp, _ = make_vjp(traced, np.asarray(x, dtype=np.float64))
        value, new_state = side[0]
        grad = np.asarray(vjp(1.0), dtype=np.float64)
        return value, grad, strip_tracers(new_state) if self.stateful else None

    def _framework_grad(self, x: np.ndarray, state: Any) -> tuple[float, np.ndarray, Any]:
        (value, grad), new_state = self._framework_call(self._framework.value_and_grad, x, state)  # type: ignore[union-attr]  # set: this method is chosen with it
        return value, grad, new_state

    def _user_grad(self, x: np.ndarray, state: Any) -> tuple[float, np.ndarray, Any]:
        # Both calls see the same state (f gets a copy, so that an in-place change such as a
        # draw from a Generator cannot reach grad); the state grad returns is the one kept.
        u = self._user_u(x)
        loss, _ = self._call(self._f, "f", u, copy_state(state) if self.stateful else None)
        value = check_loss(loss, self.stateful)
        grad_tree, new_state = self._call(self._grad, "grad", u, state)
        grad = self.layout.flatten(grad_tree, "the gradient returned by grad", broadcast=False)
        return value, grad, strip_tracers(new_state) if self.stateful else None

    def _user_grad_plain(self, x: np.ndarray, state: Any) -> tuple[float, np.ndarray, Any]:
        # `_user_grad` for the common case of a stateless problem whose u0 is one array, with the
        # per-call dispatch taken out: the driver's hot path for cheap objectives.
        u = x.view()
        u.flags.writeable = False
        if u.shape != self.layout.treedef.shape:
            u = u.reshape(self.layout.treedef.shape)
        self.fevals += 1
        loss = self._f(u, self.p)
        value = loss if type(loss) is float else check_loss(loss, False)
        grad_tree = self._grad(u, self.p)  # type: ignore[misc]  # set: this method is chosen with it
        grad = self.layout.flatten(grad_tree, "the gradient returned by grad", broadcast=False)
        return value, grad, None

    def _differences(self, x: np.ndarray, state: Any) -> tuple[float, np.ndarray, Any]:
        # Every call of one gradient gets a copy of the same state; scipy's first call is at x
        # itself, and the state returned there is the one kept.
        at_x: list[tuple[float, Any]] = []

        def fun(xi: np.ndarray) -> float:
            loss, new_state = self._call(self._f, "f", self._user_u(xi), copy_state(state))
            value = check_loss(loss, self.stateful)
            if not at_x:
                at_x.append((value, new_state))
            return value

        step = _FD_STEP * np.maximum(1.0, np.abs(x))
        if self.ub is not None:
            step = np.where(x + step > self.ub, -step, step)  # step backwards at an upper bound
        grad = np.asarray(scipy.optimize.approx_fprime(x, fun, step), dtype=np.float64)
        value, new_state = at_x[0]
        return value, grad, new_state

    # -- second derivatives ----------------------------------------------------------------------

    def _plain_loss(self, state: Any) -> Any:
        """f of the flat vector, for autograd's second derivatives, on a copy of the committed state."""

        def loss(flat: Any) -> Any:
            # One counted call of f (a constant state is checked as after any call); the state
            # it returns is dropped: a Hessian is not a step.
            value, _ = self._call(self._f, "f", self.layout.unflatten(flat), copy_state(state))
            if isbox(value):
                return value
            # A loss that does not depend on u (a constant): its derivatives are zero; a box
            # all the same, so that autograd differentiates it rather than refusing a number.
            return flat[0] * 0.0 + check_loss(value, self.stateful)

        return loss

    def _grad_only(self, x: np.ndarray) -> np.ndarray:
        # The user's grad at x on a copy of the committed state: a point of a difference quotient.
        out, _ = self._call(self._grad, "grad", self._user_u(x), copy_state(self.state) if self.stateful else None)
        return self.layout.flatten(out, "the gradient returned by grad", broadcast=False)

    def _grad_at_base(self, x: np.ndarray) -> np.ndarray:
        # The base point of difference quotients: scipy asks many products at one x (its inner
        # conjugate-gradient loop), so the gradient there is computed once per x.
        key = x.tobytes() + id(self.state).to_bytes(8, "little")  # a committed state is a new object
        if self._base is None or self._base[0] != key:
            self._base = (key, self._grad_only(x))
        return self._base[1]

    def hessp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The Hessian of f at `x` times `v` (minimisation sense): reverse-over-reverse autograd,
        forward-over-reverse jax, double-backward torch, or a forward difference of the user's
        ``grad`` along `v`."""
        self.hevals += 1
        x, v = np.asarray(x, dtype=np.float64), np.asarray(v, dtype=np.float64)
        if self._framework is not None:
            product, _ = self._framework_call(self._framework.hessp, x, copy_state(self.state), v)
        elif self._grad is None:
            gradient = _gradient_of(self._plain_loss(self.state))
            product = autograd.grad(lambda y: anp.dot(gradient(y), v))(x)
        else:
            norm = float(np.linalg.norm(v))
            if norm == 0.0:
                return np.zeros_like(x)
            h = _FD_STEP * max(1.0, float(np.linalg.norm(x))) / norm
            product = (self._grad_only(x + h * v) - self._grad_at_base(x)) / h
        return self.sign * np.asarray(product, dtype=np.float64)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The Hessian of f at `x` (minimisation sense): autograd, jax or torch, or forward
        differences of the user's ``grad``, symmetrised."""
        self.hevals += 1
        x = np.asarray(x, dtype=np.float64)
        matrix: np.ndarray
        if self._framework is not None:
            matrix, _ = self._framework_call(self._framework.hessian, x, copy_state(self.state))
        elif self._grad is None:
            matrix = np.asarray(autograd.jacobian(_gradient_of(self._plain_loss(self.state)))(x), dtype=np.float64)
        else:
            g0 = self._grad_at_base(x)
            steps = _FD_STEP * np.maximum(1.0, np.abs(x))
            matrix = np.empty((x.size, x.size))
            for i in range(x.size):
                shifted = x.copy()
                shifted[i] += steps[i]
                matrix[i] = (self._grad_only(shifted) - g0) / steps[i]
            matrix = 0.5 * (matrix + matrix.T)
        return self.sign * matrix.reshape(x.size, x.size)

    # -- per-step commit and the probe ---------------------------------------------------------

    def commit_at(self, x: np.ndarray) -> None:
        """Per-step commit: commit the state returned at `x`, the accepted point of this step.

        If `x` was not evaluated during the step, it is evaluated now (one counted call, on the
        same snapshot). Without per-step commit this does nothing.
        """
        if not self.per_step_commit:
            return
        key = x.tobytes()
        if key not in self._pending:
            self.value(x)
        self.state = self._pending[key]
        self._pending.clear()

    def probe(self, x: np.ndarray, state: Any) -> tuple[float, Any]:
        """f at `x` on a copy of `state`: (loss in the user's sense, new state), never committed."""
        self._probing = True
        try:
            if self._framework is not None:
                return self._framework_call(self._framework.value, x, copy_state(state))
            loss, new_state = self._call(self._f, "f", self._user_u(x), copy_state(state))
            return check_loss(loss, self.stateful), strip_tracers(new_state)
        finally:
            self._probing = False
