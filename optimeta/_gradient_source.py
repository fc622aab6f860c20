"""The interface of gradient sources: `GradientSource`, and `BuiltinSource`, the base of optimeta's own.

A gradient source makes one evaluation's value, gradient and second derivatives, all on the
flat vector and in the user's sense. `GradientSource` is public (``om.GradientSource``), so
that a user can write one and pass an instance as ``grad=``; `BuiltinSource` is the base of the
sources optimeta makes itself (``_sources.py``, ``_custom_source.py``), bound to the objective
they serve.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ._values import check_loss

if TYPE_CHECKING:
    from ._objective import Objective

__all__ = ["BuiltinSource", "GradientSource"]

#: The methods a source with ``second_derivatives = True`` defines.
_SECOND = ("hessp", "hessian")


class GradientSource(abc.ABC):
    """Where an objective's values and derivatives come from; subclass it to supply your own.

    ``OptimizationProblem(f, u0, grad=source)`` takes an instance: every value, gradient and
    second derivative of the solve then comes from it, and optimeta never calls ``f`` itself
    (the source may; its values must be those of ``f``). Each method receives:

    * ``x``: the point, the flat float64 vector of ``u`` (read-only; the leaves of ``u0`` in
      their order, each raveled), of the size of the flattened ``u0``;
    * ``p``: what a call of ``f`` would receive (with ``solve(..., data=...)``, this step's
      minibatch);
    * ``state``: None for a stateless problem; else the state this call receives (for second
      derivatives a copy of the committed state, not to be advanced).

    Values are in the user's sense (``sense="max"`` is applied by optimeta). A stateless
    problem ignores the new state a method returns (return None). Each call of `value` or
    `value_and_grad` counts as one call of ``f`` (``Stats.fevals``, or ``probe_fevals`` for the
    determinism probe, which calls `value`); each of `value_and_grad` as one gradient
    (``gevals``); each of `hessp` or `hessian` as one in ``hevals``.

    Subclasses define `value_and_grad`; `value` if the value alone is cheaper; and, declaring
    ``second_derivatives = True``, both `hessp` and `hessian` (a class that declares it without
    them is refused when it is defined). ``solve`` refuses an algorithm with
    ``requires_hessian`` (`NewtonCG`, the trust-region methods) for a source without second
    derivatives, before any call.

    Class data:
        second_derivatives: Whether `hessp` and `hessian` are defined (False by default); the
            rule on ``requires_hessian`` in ``traits.py`` reads it.

    Example:
        >>> import numpy as np
        >>> import optimeta as om
        >>> class Quadratic(om.GradientSource):
        ...     second_derivatives = True
        ...     def value_and_grad(self, x, p, state):  # f(x) = |x - p|^2
        ...         return float((x - p) @ (x - p)), 2.0 * (x - p), None
        ...     def hessp(self, x, p, state, v):
        ...         return 2.0 * v
        ...     def hessian(self, x, p, state):
        ...         return 2.0 * np.eye(x.size)
        >>> prob = om.OptimizationProblem(lambda u, p: np.sum((u - p) ** 2), np.zeros(2),
        ...                               p=np.array([1.0, 2.0]), grad=Quadratic())
        >>> om.solve(prob, om.NewtonCG()).u
        array([1., 2.])
    """

    second_derivatives: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.second_derivatives
        if not isinstance(declared, bool):
            raise TypeError(f"{cls.__name__}.second_derivatives must be True or False, got {declared!r}")
        missing = [name for name in _SECOND if getattr(cls, name) is getattr(GradientSource, name)]
        # An abstract class (optimeta's `BuiltinSource`) leaves them to its subclasses.
        if declared and missing and not getattr(cls.value_and_grad, "__isabstractmethod__", False):
            raise TypeError(
                f"{cls.__name__} declares second_derivatives = True but does not define "
                f"{' or '.join(missing)}: define hessp(self, x, p, state, v) and hessian(self, x, p, state), "
                "or leave second_derivatives False"
            )

    @abc.abstractmethod
    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
        """f and its gradient at `x` from one evaluation.

        Returns:
            ``(loss, gradient, new_state)``: a real scalar, a float vector shaped like `x`, and
            the state after the call (None for a stateless problem).
        """

    def value(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, Any]:
        """f at `x`, without a gradient: ``(loss, new_state)``. By default `value_and_grad`'s."""
        loss, _, new_state = self.value_and_grad(x, p, state)
        return loss, new_state

    def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> np.ndarray:
        """The Hessian of f at `x` times the vector `v`, shaped like `x`."""
        raise NotImplementedError(f"{type(self).__name__} makes no second derivatives (second_derivatives is False)")

    def hessian(self, x: np.ndarray, p: Any, state: Any) -> np.ndarray:
        """The Hessian of f at `x`, an n x n matrix for `x` of size n."""
        raise NotImplementedError(f"{type(self).__name__} makes no second derivatives (second_derivatives is False)")


class BuiltinSource(GradientSource):
    """A source of optimeta's own, bound to the objective it serves: it calls ``f`` (and
    ``grad``) through the objective (`Objective.call`, which counts and checks) and returns plain
    new states (no tracers). Second derivatives get a copy of the committed state and drop the
    state they return: they are not steps. ``p`` is the objective's own, which its calls pass."""

    second_derivatives: ClassVar[bool] = True

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def framework(self) -> str | None:
        """The framework whose arrays a native run of this source steps on ("jax"; see
        `optimeta._native`), or None: the run steps on the flat NumPy vector."""
        return None

    def value(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, Any]:
        """f at `x`, called on plain values (nothing traced): (loss, new state)."""
        obj = self.objective
        loss, new_state = obj.call(obj.f, "f", obj.user_u(x), state)
        return check_loss(loss, obj.stateful), new_state
