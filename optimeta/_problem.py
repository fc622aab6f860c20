"""`OptimizationProblem`: an immutable, validated description of what to optimise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
import scipy.optimize

from ._constraints import check_constraint_sizes, check_constraints
from ._frameworks import FRAMEWORKS, check_state, require
from ._gradient_source import GradientSource
from ._interop import scipy_arguments
from ._layout_jax import layout_of
from ._state import copy_state
from ._tree import is_container, tree_map
from ._values import Layout, real_array

__all__ = ["Flat", "OptimizationProblem", "flat"]


#: The gradient methods that can be named instead of passing a callable.
GRAD_METHODS = ("autograd", "finite-difference", *FRAMEWORKS)


def _readonly(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x


@dataclass(frozen=True, eq=False)
class OptimizationProblem:
    r"""An optimisation problem: minimise (or maximise) ``f(u, p)`` over ``u`` from ``u0``.

    .. math:: \min_u f(u, p) \quad\text{or, with a state } s,\quad
              (\ell_k, s_{k+1}) = f(u_k, p, s_k)

    The problem is validated when it is built and never changes afterwards: ``u0`` and
    ``bounds`` are stored as read-only float64 copies, so later changes to the caller's arrays
    do not reach it, and a solve never writes to anything the caller passed.

    Args:
        f: The objective. ``f(u, p) -> loss`` for a stateless problem, or
            ``f(u, p, state) -> (loss, new_state)`` when ``state`` is given. ``u`` has the
            structure of ``u0``. Write it with ``autograd.numpy`` for automatic gradients.
        u0: The starting point: a float array, or a pytree (nested dict / list / tuple /
            NamedTuple) of float arrays and scalars. Integers are promoted to float64. The
            solution's ``u`` has the same structure.
        p: Constants, hyperparameters or data, passed unchanged to every call and never
            differentiated.
        state: The explicit state (any pytree: arrays, numbers, ``np.random.Generator``, ...).
            Given, it makes the problem stateful: ``solve`` deep-copies it once, threads it
            through every call and returns the final state in ``Solution.state``. Never
            differentiated.
        grad: How gradients are made. ``None`` or ``"autograd"`` (the default): reverse-mode
            autograd, in the same evaluation as the value. ``"finite-difference"``: forward
            differences by ``scipy.optimize.approx_fprime`` (n + 1 calls of ``f`` per gradient,
            all on one state snapshot and one batch; the state returned at ``u`` itself is the
            one kept). ``"jax"``: ``f`` written with ``jax.numpy``; value and gradient from one
            ``jax.value_and_grad`` (the new state as its auxiliary output), jit-compiled once per
            solve and run with 64-bit types enabled for the call only (``jax.enable_x64``); ``u``
            and the state's leaves (numbers and arrays only) reach ``f`` as jax arrays, and ``p`` is
            a traced argument: its arrays arrive as jax arrays, its other leaves (numbers,
            strings, objects) unchanged, as constants of the trace. ``"torch"``: ``f`` on torch
            tensors; ``u`` reaches it as float64 tensors, the state's NumPy arrays as tensors
            (copies), ``p`` as given; the gradient comes from torch's autograd. With either, the
            Hessians of the Newton methods come from the framework too, and the state ``f``
            returns is converted to NumPy (a 0-d array to a Python scalar) before it is
            committed, so ``Solution.state`` never holds a jax array or a tensor. Or a callable
            ``grad(u, p) -> g`` / ``grad(u, p, state) -> (g, new_state)`` with ``g`` shaped like
            ``u0``. Or an instance of a `GradientSource` subclass, which then makes every value,
            gradient and second derivative on the flat vector (``f`` is not called by optimeta).
        bounds: Box constraints ``lb <= u <= ub``: a pair ``(lb, ub)`` whose members have the
            structure of ``u0`` (a scalar or None also stands for a whole leaf or side), or a
            ``scipy.optimize.Bounds`` over the flattened ``u``. ``u0`` must lie in the box.
        constraints: General constraints ``lb <= c(u) <= ub``: a list of `Constraint`
            (Jacobians from autograd) and ``scipy.optimize.NonlinearConstraint`` /
            ``LinearConstraint`` objects (over the flattened ``u``). Stored as a tuple; only
            algorithms with ``supports_constraints`` accept a constrained problem. ``u0`` need not
            be feasible.
        sense: ``"min"`` or ``"max"``.
        stochastic: ``True`` declares that calls at the same point may return different
            values (minibatches, a global RNG); ``False`` that they never do; ``None`` (the
            default) declares nothing: a stateless problem is then taken as deterministic and a
            stateful one as possibly stochastic, since its state may drive the loss.
        state_mode: ``"evolving"`` (the default): calls of ``f`` advance the state.
            ``"constant"``: the state must come back unchanged from every call (BatchNorm in
            inference mode, a model inside an ODE right-hand side); every algorithm accepts such
            a problem, and ``solve`` raises `StateMutationError` at the first call that changes it.

    Raises:
        TypeError: ``f`` not callable; ``grad`` neither callable, a string, a `GradientSource`
            nor None (a `GradientSource` class rather than an instance too); ``u0`` or bounds
            holding strings, booleans, complex numbers or objects; ``stochastic`` not a bool or
            None; with ``grad="jax"``, a state leaf that is neither a number nor an array (a NumPy
            Generator would be read only while jax traces ``f``).
        ValueError: ``u0`` empty or not finite; bounds of the wrong structure or shape, NaN, with
            ``lb > ub``, or not containing ``u0``; ``sense`` not ``"min"``/``"max"``; ``grad`` a
            string that names no method.
        ModuleNotFoundError: ``grad="jax"`` or ``"torch"`` without that framework installed (the
            extras ``optimeta[jax]``, ``optimeta[torch]`` install them).

    Example:
        >>> import autograd.numpy as anp, numpy as np
        >>> import optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - p) ** 2), np.zeros(2),
        ...                               p=np.ones(2))
        >>> prob.u0
        array([0., 0.])

        The same objective written with ``jax.numpy``, its derivatives (here the Hessian-vector
        products of Newton-CG too) from jax:

        >>> import jax.numpy as jnp
        >>> prob = om.OptimizationProblem(lambda u, p: jnp.sum((u - p) ** 2), np.zeros(2),
        ...                               p=np.ones(2), grad="jax")
        >>> om.solve(prob, om.NewtonCG()).u
        array([1., 1.])
    """

    f: Callable[..., Any]
    u0: Any
    _: KW_ONLY
    p: Any = None
    state: Any = None
    grad: Callable[..., Any] | GradientSource | Literal["autograd", "finite-difference", "jax", "torch"] | None = None
    bounds: Any = None
    constraints: Any = None
    sense: Literal["min", "max"] = "min"
    stochastic: bool | None = None
    state_mode: Literal["evolving", "constant"] = "evolving"
    _layout: Layout = field(init=False, repr=False)
    _x0: np.ndarray = field(init=False, repr=False)
    _lb: np.ndarray | None = field(init=False, repr=False)
    _ub: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.f):
            raise TypeError(f"f must be callable as f(u, p) or f(u, p, state), got {self.f!r}")
        methods = ", ".join(map(repr, GRAD_METHODS))
        if isinstance(self.grad, str) and self.grad not in GRAD_METHODS:
            raise ValueError(
                f"grad must be one of {methods}, a callable grad(u, p[, state]) or None, got {self.grad!r}"
            )
        if isinstance(self.grad, type) and issubclass(self.grad, GradientSource):
            name = self.grad.__name__
            raise TypeError(f"grad must be a GradientSource instance, got the class {name}: pass grad={name}()")
        if self.grad is not None and not callable(self.grad) and not isinstance(self.grad, (str, GradientSource)):
            raise TypeError(
                f"grad must be a callable grad(u, p[, state]), a GradientSource, one of {methods}, or None, "
                f"got {self.grad!r}"
            )
        if isinstance(self.grad, str) and self.grad in FRAMEWORKS:
            require(self.grad)
            check_state(self.grad, self.state)
        if self.state_mode not in ("evolving", "constant"):
            raise ValueError(f"state_mode must be 'evolving' or 'constant', got {self.state_mode!r}")
        if self.state_mode == "constant" and self.state is None:
            raise ValueError("state_mode='constant' declares how a state behaves, but no state= was given")
        if self.sense not in ("min", "max"):
            raise ValueError(f"sense must be 'min' or 'max', got {self.sense!r}")
        if self.stochastic is not None and not isinstance(self.stochastic, bool):
            raise TypeError(f"stochastic must be True, False or None, got {self.stochastic!r}")

        layout, x0 = layout_of(self.u0, "u0", self.grad)
        if layout.size == 0:
            raise ValueError(f"u0 must hold at least one parameter, got {self.u0!r}")
        bad = ~np.isfinite(x0)
        if bad.any():
            where = _where(layout, bad)
            raise ValueError(f"u0 must be finite, got {x0[np.argmax(bad)]!r} at {where}")
        x0 = _readonly(x0)
        lb, ub = self._flat_bounds(layout, x0)
        set_ = object.__setattr__
        set_(self, "_layout", layout)
        set_(self, "_x0", x0)
        set_(self, "_lb", lb)
        set_(self, "_ub", ub)
        set_(self, "u0", _readonly_tree(layout, x0))
        # Normalised: None when no side bounds anything, else read-only copies shaped like u0.
        box = None if lb is None or ub is None else (_readonly_tree(layout, lb), _readonly_tree(layout, ub))
        set_(self, "bounds", box)
        constraints = check_constraints(self.constraints)
        check_constraint_sizes(constraints, layout, x0, self.p)
        set_(self, "constraints", constraints)
        if self.state is not None:
            copy_state(self.state)  # every call gets a copy: a state that cannot be copied is refused now

    @classmethod
    def from_scipy(
        cls,
        fun: Callable[..., Any],
        x0: Any,
        args: Any = (),
        jac: Any = None,
        bounds: Any = None,
        constraints: Any = (),
        **kwargs: Any,
    ) -> OptimizationProblem:
        """The problem ``scipy.optimize.minimize(fun, x0, args, jac=jac, bounds=bounds,
        constraints=constraints)`` solves, for a scipy user to switch in one line.

        Args:
            fun: ``fun(x, *args) -> float``, on a flat NumPy vector (plain NumPy is fine).
            x0: The start, a vector (copied).
            args: Extra arguments of ``fun`` (and ``jac``), a tuple or one value; they become
                ``p``.
            jac: A callable ``jac(x, *args)``; True when ``fun`` returns ``(value, gradient)``
                (called once per point for both); None, False or scipy's ``"2-point"``,
                ``"3-point"``, ``"cs"``: forward differences (``grad="finite-difference"``).
            bounds: A ``scipy.optimize.Bounds``, or one ``(min, max)`` pair per variable with
                None for no bound.
            constraints: scipy constraint objects, or scipy's dicts ``{"type": "eq"|"ineq",
                "fun", "jac", "args"}`` (``fun == 0`` or ``fun >= 0``); one dict alone too.
            **kwargs: Other `OptimizationProblem` fields (``sense``, ``state``, ...).

        Returns:
            The problem; solve it with any algorithm that accepts it, and read the result in
            scipy's form with `Solution.to_scipy`.

        Raises:
            TypeError: ``fun`` is not callable.
            ValueError: ``jac``, ``bounds`` or a dict constraint of the wrong form.

        Example:
            >>> import numpy as np, optimeta as om
            >>> prob = om.OptimizationProblem.from_scipy(lambda x, c: np.sum((x - c) ** 2), [0.0, 0.0],
            ...                                          args=(3.0,), bounds=[(None, 1.0), (None, None)])
            >>> np.round(om.solve(prob, om.LBFGS()).to_scipy().x, 6)
            array([1., 3.])
        """
        fields = scipy_arguments(fun, x0, args, jac, bounds, constraints)
        return cls(fields.pop("f"), fields.pop("u0"), **fields, **kwargs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled (a checkpoint read back): arrays come back writeable; the problem's are not.
        for name, value in state.items():
            object.__setattr__(self, name, value)
        for name in ("_x0", "_lb", "_ub"):
            arr = state.get(name)
            if arr is not None:
                arr.flags.writeable = False
        object.__setattr__(self, "u0", _readonly_tree(self._layout, self._x0))
        if self._lb is not None and self._ub is not None:
            box = (_readonly_tree(self._layout, self._lb), _readonly_tree(self._layout, self._ub))
            object.__setattr__(self, "bounds", box)

    def _flat_bounds(self, layout: Layout, x0: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        bounds = self.bounds
        if bounds is None:
            return None, None
        if isinstance(bounds, scipy.optimize.Bounds):
            sides = [(bounds.lb, "bounds.lb"), (bounds.ub, "bounds.ub")]
            flat = [_flat_side(side, name, layout.size) for side, name in sides]
        elif isinstance(bounds, (tuple, list)) and len(bounds) == 2:
            flat = []
            for side, name, fill in ((bounds[0], "lb", -np.inf), (bounds[1], "ub", np.inf)):
                if side is None:
                    flat.append(np.full(layout.size, fill))
                elif not is_container(side) and np.ndim(side) == 0:
                    flat.append(_flat_side(side, f"bounds {name}", layout.size))
                else:
                    # None stands for an unbounded leaf as it does for a whole side.
                    side = tree_map(partial(_unbounded_if_none, fill=fill), side)
                    flat.append(layout.flatten(side, f"bounds {name}"))
        else:
            raise TypeError(f"bounds must be a pair (lb, ub) shaped like u0 or a scipy.optimize.Bounds, got {bounds!r}")
        lb, ub = flat
        for arr, name in ((lb, "lb"), (ub, "ub")):
            if np.isnan(arr).any():
                raise ValueError(f"bounds {name} must not be NaN, got NaN for {_where(layout, np.isnan(arr))}")
        for mask, what in ((lb > ub, "lb > ub"), (x0 < lb, "u0 < lb"), (x0 > ub, "u0 > ub")):
            if mask.any():
                i = int(np.argmax(mask))
                raise ValueError(
                    f"bounds must satisfy lb <= u0 <= ub, got {what} at {_where(layout, mask)}: "
                    f"lb={lb[i]!r}, u0={x0[i]!r}, ub={ub[i]!r}"
                )
        if np.isneginf(lb).all() and np.isposinf(ub).all():
            return None, None
        return _readonly(lb), _readonly(ub)


@dataclass(frozen=True)
class Flat:
    """A problem as algorithms see it: the flat float64 vector's layout, ``u0`` and the bounds
    on it (read-only arrays; None for a side that bounds nothing)."""

    layout: Layout
    x0: np.ndarray
    lb: np.ndarray | None
    ub: np.ndarray | None


def flat(prob: OptimizationProblem) -> Flat:
    """`prob` on the flat vector, for the objective wrapper, the rules and the ensembles."""
    return Flat(prob._layout, prob._x0, prob._lb, prob._ub)


def _unbounded_if_none(leaf: Any, fill: float) -> Any:
    return fill if leaf is None else leaf


def _flat_side(side: Any, name: str, size: int) -> np.ndarray:
    arr = real_array(side, name)
    if arr.size == 1:  # scipy's Bounds stores a scalar side as an array of shape (1,)
        return np.full(size, float(arr.reshape(())))
    if arr.shape != (size,):
        raise ValueError(
            f"{name} must be a scalar or have shape ({size},) like the flattened u0, got shape {arr.shape}"
        )
    return arr


def _where(layout: Layout, mask: np.ndarray) -> str:
    """The path of the first flagged entry, e.g. ``u0['w'][1]``."""
    i = int(np.argmax(mask))
    spec = next(s for s in layout.leaves if s.start <= i < s.stop)
    offset = i - spec.start
    index = ""
    if spec.shape:
        index = "[" + ", ".join(str(int(k)) for k in np.unravel_index(offset, spec.shape)) + "]"
    return f"u0{spec.path}{index}"


def _readonly_tree(layout: Layout, x: np.ndarray) -> Any:
    """`x` (read-only) as the user's tree: views of it where the leaves are NumPy arrays (no
    copy of a large u0), Python floats for scalar leaves; other layouts' own leaves."""
    if type(layout) is Layout and all(kind in ("numpy", "scalar") for kind in layout.kinds):
        views = [float(x[s.start]) if s.scalar else x[s.start : s.stop].reshape(s.shape) for s in layout.leaves]
        return layout.assemble(views)
    tree = layout.to_user(x)
    if isinstance(tree, np.ndarray):
        return _readonly(tree)
    return tree_map(lambda a: _readonly(a) if isinstance(a, np.ndarray) else a, tree)
