"""Gradient sources: how one evaluation's value, gradient and second derivatives are made.

Each source is a strategy with one interface (`GradientSource` in ``_gradient_source.py``,
public so that a user can write one): the value, the value and gradient from one evaluation, a
Hessian-vector product and a Hessian, all on the flat vector and in the user's sense. The
objective wrapper (`Objective`) holds one and never branches on where gradients come from; it
does the state threading, the sign and the counts of gradients and Hessians.

This module has optimeta's strategies, one per kind of ``grad=``, and the choice of one for a
problem (`source_for`, `source_type`, `second_derivatives_missing`):

* `AutogradSource`: reverse-mode autograd (the default);
* `UserGradSource`: the user's ``grad`` (second derivatives by differences of it);
* `FiniteDifferenceSource`: forward differences of ``f`` (no second derivatives);
* `FrameworkSource`: jax or torch, through a `FrameworkGradient`;
* `CustomSource` (in ``_custom_source.py``): a `GradientSource` of the user's (``grad=`` an
  instance), counted and checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import autograd
import autograd.numpy as anp
import numpy as np
import scipy.optimize
from autograd.core import make_vjp
from autograd.tracer import isbox

from ._custom_source import CustomSource
from ._frameworks import FrameworkGradient, framework_gradient
from ._gradient_source import BuiltinSource, GradientSource
from ._state import copy_state
from ._values import check_loss, strip_tracers

if TYPE_CHECKING:
    from ._objective import Objective

__all__ = [
    "AutogradSource",
    "FiniteDifferenceSource",
    "FrameworkSource",
    # Defined in _gradient_source.py; optimeta/__init__.py imports the public name from here.
    "GradientSource",
    "UserGradSource",
    "second_derivatives_missing",
    "source_for",
    "source_type",
]

#: Relative step of finite differences: the square root of float64's machine epsilon.
FD_STEP = float(np.sqrt(np.finfo(np.float64).eps))


def _gradient_of(loss: Any) -> Any:
    """autograd's gradient of `loss`, tied to its input: for a loss linear in u (or constant) the
    gradient does not depend on u, and differentiating it again is a zero second derivative, not
    autograd's warning that the output seems independent of the input."""
    gradient = autograd.grad(loss)

    def tied(y: Any) -> Any:
        return gradient(y) + 0.0 * y

    return tied


class AutogradSource(BuiltinSource):
    """Reverse-mode autograd through ``f``: one traced call gives value and gradient;
    reverse-over-reverse gives second derivatives."""

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
        obj = self.objective
        # autograd's own aux support refuses ints and Generators in the aux output, so the new
        # state leaves the traced function through this side channel instead.
        side: list[Any] = []

        def traced(flat: Any) -> Any:
            loss, new_state = obj.call(obj.f, "f", obj.layout.unflatten(flat), state)
            side.append((check_loss(loss, obj.stateful), new_state))
            # A loss that does not depend on u has a zero gradient: return a box all the same,
            # so that autograd does not warn.
            return loss if isbox(loss) else flat[0] * 0.0

        vjp, _ = make_vjp(traced, np.asarray(x, dtype=np.float64))
        value, new_state = side[0]
        grad = np.asarray(vjp(1.0), dtype=np.float64)
        return value, grad, strip_tracers(new_state) if obj.stateful else None

    def _plain_loss(self, state: Any) -> Any:
        """f of the flat vector, for autograd's second derivatives, on a copy of `state`."""
        obj = self.objective

        def loss(flat: Any) -> Any:
            # One counted call of f (a constant state is checked as after any call); the state
            # it returns is dropped: a Hessian is not a step.
            value, _ = obj.call(obj.f, "f", obj.layout.unflatten(flat), copy_state(state))
            if isbox(value):
                return value
            # A loss that does not depend on u (a constant): its derivatives are zero; a box
            # all the same, so that autograd differentiates it rather than refusing a number.
            return flat[0] * 0.0 + check_loss(value, obj.stateful)

        return loss

    def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> np.ndarray:
        gradient = _gradient_of(self._plain_loss(state))
        return np.asarray(autograd.grad(lambda y: anp.dot(gradient(y), v))(x), dtype=np.float64)

    def hessian(self, x: np.ndarray, p: Any, state: Any) -> np.ndarray:
        return np.asarray(autograd.jacobian(_gradient_of(self._plain_loss(state)))(x), dtype=np.float64)


class UserGradSource(BuiltinSource):
    """The user's ``grad``: one evaluation calls ``f`` and ``grad`` on the same state (``f`` on a
    copy, so that an in-place change such as a draw from a Generator cannot reach ``grad``), and
    keeps the state ``grad`` returns; second derivatives are forward differences of ``grad``."""

    def __init__(self, objective: Objective, grad: Any) -> None:
        super().__init__(objective)
        self.grad = grad
        self._base: tuple[bytes, np.ndarray] | None = None
        if not objective.stateful and objective.layout.single:
            self.value_and_grad = self._plain  # type: ignore[method-assign]  # the hot path, chosen once

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
        obj = self.objective
        u = obj.user_u(x)
        loss, _ = obj.call(obj.f, "f", u, copy_state(state) if obj.stateful else None)
        value = check_loss(loss, obj.stateful)
        grad_tree, new_state = obj.call(self.grad, "grad", u, state)
        grad = obj.layout.flatten(grad_tree, "the gradient returned by grad", broadcast=False)
        return value, grad, strip_tracers(new_state) if obj.stateful else None

    def _plain(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
        # `value_and_grad` for a stateless problem whose u0 is one array, with the per-call
        # dispatch taken out: the driver's hot path for cheap objectives.
        obj = self.objective
        u = x.view()
        u.setflags(write=False)
        shape = obj.layout.treedef.shape
        if u.shape != shape:
            u = u.reshape(shape)
        obj.fevals += 1  # value_and_grad is never the probe's
        loss = obj.f(u, p)
        value = loss if type(loss) is float else check_loss(loss, False)
        g = self.grad(u, p)
        if type(g) is np.ndarray and g.ndim == 1 and g.shape == shape and g.dtype == np.float64:
            return value, g.copy(), None  # the common case of `Layout.flatten`, inlined
        return value, obj.layout.flatten(g, "the gradient returned by grad", broadcast=False), None

    def _grad_only(self, x: np.ndarray, state: Any) -> np.ndarray:
        # The user's grad at x on a copy of the state: a point of a difference quotient.
        obj = self.objective
        out, _ = obj.call(self.grad, "grad", obj.user_u(x), copy_state(state) if obj.stateful else None)
        return obj.layout.flatten(out, "the gradient returned by grad", broadcast=False)

    def _grad_at_base(self, x: np.ndarray, state: Any) -> np.ndarray:
        # The base point of difference quotients: scipy asks many products at one x (its inner
        # conjugate-gradient loop), so the gradient there is computed once per x and state.
        key = x.tobytes() + id(state).to_bytes(8, "little")  # a committed state is a new object
        if self._base is None or self._base[0] != key:
            self._base = (key, self._grad_only(x, state))
        return self._base[1]

    def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> np.ndarray:
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            return np.zeros_like(x)
        h = FD_STEP * max(1.0, float(np.linalg.norm(x))) / norm
        product: np.ndarray = (self._grad_only(x + h * v, state) - self._grad_at_base(x, state)) / h
        return product

    def hessian(self, x: np.ndarray, p: Any, state: Any) -> np.ndarray:
        g0 = self._grad_at_base(x, state)
        steps = FD_STEP * np.maximum(1.0, np.abs(x))
        matrix = np.empty((x.size, x.size))
        for i in range(x.size):
            shifted = x.copy()
            shifted[i] += steps[i]
            matrix[i] = (self._grad_only(shifted, state) - g0) / steps[i]
        symmetric: np.ndarray = 0.5 * (matrix + matrix.T)
        return symmetric


class FiniteDifferenceSource(BuiltinSource):
    """Forward differences of ``f`` by ``scipy.optimize.approx_fprime``: n + 1 calls per gradient,
    each on a copy of the same state; the state returned at `x` itself is the one kept. No
    second derivatives: differences of differences are too inaccurate to steer a Newton method."""

    second_derivatives: ClassVar[bool] = False

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
        obj = self.objective
        at_x: list[tuple[float, Any]] = []

        def fun(xi: np.ndarray) -> float:
            loss, new_state = obj.call(obj.f, "f", obj.user_u(xi), copy_state(state))
            value = check_loss(loss, obj.stateful)
            if not at_x:
                at_x.append((value, new_state))
            return value

        step = FD_STEP * np.maximum(1.0, np.abs(x))
        if obj.ub is not None:
            step = np.where(x + step > obj.ub, -step, step)  # step backwards at an upper bound
        grad = np.asarray(scipy.optimize.approx_fprime(x, fun, step), dtype=np.float64)
        value, new_state = at_x[0]
        return value, grad, new_state


class FrameworkSource(BuiltinSource):
    """jax or torch (`FrameworkGradient`): one call of ``f`` per evaluation, its new state as NumPy."""

    def __init__(self, objective: Objective, framework: FrameworkGradient) -> None:
        super().__init__(objective)
        self.engine = framework
        objective.state = framework.plain(objective.state)  # the committed state holds NumPy only

    def value(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, Any]:
        loss, new_state = self.objective.source_call(self.engine.value, x, state)
        return check_loss(loss, self.objective.stateful), new_state

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
        (value, grad), new_state = self.objective.source_call(self.engine.value_and_grad, x, state)
        return value, grad, new_state

    def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> np.ndarray:
        product, _ = self.objective.source_call(self.engine.hessp, x, copy_state(state), v)
        return np.asarray(product, dtype=np.float64)

    def hessian(self, x: np.ndarray, p: Any, state: Any) -> np.ndarray:
        matrix, _ = self.objective.source_call(self.engine.hessian, x, copy_state(state))
        return np.asarray(matrix, dtype=np.float64)

    def framework(self) -> str | None:
        return self.engine.name


def source_type(grad: Any) -> type[GradientSource]:
    """The kind of source a problem's ``grad=`` names: None or "autograd", a callable,
    "finite-difference", "jax", "torch", or a `GradientSource` (its own class)."""
    if isinstance(grad, GradientSource):
        return type(grad)
    if callable(grad):
        return UserGradSource
    if grad == "finite-difference":
        return FiniteDifferenceSource
    if grad in ("jax", "torch"):
        return FrameworkSource
    return AutogradSource


def second_derivatives_missing(grad: Any) -> str:
    """Why a problem with ``grad=grad`` has no second derivatives ("" when it has them)."""
    kind = source_type(grad)
    if kind.second_derivatives:
        return ""
    if kind is FiniteDifferenceSource:
        return (
            'the problem\'s gradient is grad="finite-difference", and second derivatives from '
            "differences of differences are too inaccurate to steer a Newton method"
        )
    return (
        f"the problem's gradient source {kind.__name__} declares second_derivatives = False, so it "
        "makes no Hessians or Hessian-vector products for a Newton method"
    )


def source_for(objective: Objective, grad: Any) -> BuiltinSource:
    """The source of an objective whose problem has ``grad=grad``."""
    if isinstance(grad, GradientSource):
        return CustomSource(objective, grad)
    kind = source_type(grad)
    if kind is UserGradSource:
        return UserGradSource(objective, grad)
    if kind is FrameworkSource:
        return FrameworkSource(objective, framework_gradient(grad, objective.f, objective.layout, objective.stateful))
    if kind is FiniteDifferenceSource:
        return FiniteDifferenceSource(objective)
    return AutogradSource(objective)
