"""General constraints ``lb <= c(u) <= ub``: `Constraint`, and their form for scipy's methods."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import autograd
import autograd.numpy as anp
import numpy as np
import scipy.optimize

from ._values import real_array, strip_tracers

if TYPE_CHECKING:
    from ._values import Layout

__all__ = [
    "Constraint",
    "ScipyConstraint",
    "check_constraint_sizes",
    "check_constraints",
    "on_free_coordinates",
    "to_scipy",
]

#: What ``OptimizationProblem(constraints=...)`` accepts besides `Constraint`: scipy's own
#: constraint objects, over the flattened ``u``.
ScipyConstraint: TypeAlias = scipy.optimize.NonlinearConstraint | scipy.optimize.LinearConstraint


@dataclass(frozen=True, eq=False)
class Constraint:
    r"""A general constraint ``lb <= fun(u, p) <= ub`` on the parameters.

    .. math:: \text{lb} \le c(u, p) \le \text{ub}, \qquad c : u \mapsto \mathbb{R}^m

    Equal sides make an equality constraint; an infinite side is no constraint. The Jacobian
    comes from autograd (write ``fun`` with ``autograd.numpy``) unless ``jac`` is given. ``u``
    has the structure of the problem's ``u0``; ``p`` is the problem's ``p``.

    Args:
        fun: ``fun(u, p) -> c``, a real scalar or 1-d array of m values.
        lb: Lower sides: a scalar for every component, or m values; ``-inf`` for none.
        ub: Upper sides, likewise; ``inf`` for none.
        jac: Optional ``jac(u, p) -> J``, the m x n Jacobian with respect to the flattened
            ``u`` (in the order of `OptimizationProblem`'s flattening).

    Raises:
        TypeError: ``fun`` or ``jac`` not callable; sides that are not real.
        ValueError: NaN sides, ``lb > ub``, or no finite side at all.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> disk = om.Constraint(lambda u, p: anp.sum(u ** 2), ub=1.0)   # |u|^2 <= 1
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 2.0) ** 2), np.zeros(2),
        ...                               constraints=[disk])
        >>> sol = om.solve(prob, om.SLSQP())
        >>> sol.retcode.name, np.round(sol.u, 4)
        ('SUCCESS', array([0.7071, 0.7071]))
    """

    fun: Callable[..., Any]
    lb: Any = -math.inf
    ub: Any = math.inf
    jac: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if not callable(self.fun):
            raise TypeError(f"Constraint fun must be callable as fun(u, p), got {self.fun!r}")
        if self.jac is not None and not callable(self.jac):
            raise TypeError(f"Constraint jac must be callable as jac(u, p) or None, got {self.jac!r}")
        lb, ub = real_array(self.lb, "Constraint lb"), real_array(self.ub, "Constraint ub")
        for side, name in ((lb, "lb"), (ub, "ub")):
            if side.ndim > 1:
                raise ValueError(f"Constraint {name} must be a scalar or a 1-d array, got shape {side.shape}")
            if np.isnan(side).any():
                raise ValueError(f"Constraint {name} must not be NaN, got {self.lb if name == 'lb' else self.ub!r}")
        try:
            lo, hi = np.broadcast_arrays(lb, ub)
        except ValueError as exc:
            raise ValueError(f"Constraint lb and ub must have the same length, got {lb.shape} and {ub.shape}") from exc
        if (lo > hi).any():
            i = int(np.argmax(np.ravel(lo > hi)))
            raise ValueError(
                f"Constraint needs lb <= ub, got lb={float(np.ravel(lo)[i])!r} > ub={float(np.ravel(hi)[i])!r}"
            )
        if np.isneginf(lo).all() and np.isposinf(hi).all():
            raise ValueError("Constraint needs a finite lb or ub: -inf <= c(u) <= inf constrains nothing")
        same = np.isinf(lo) & (lo == hi)
        if same.any():
            inf = float(np.ravel(lo)[int(np.argmax(np.ravel(same)))])
            raise ValueError(f"Constraint lb == ub == {inf!r} cannot be met by a finite c(u)")
        for name, side in (("lb", lo), ("ub", hi)):
            if side.ndim:
                side = side.copy()
                side.flags.writeable = False
            object.__setattr__(self, name, side if side.ndim else float(side))


def check_constraints(constraints: Any) -> tuple[Constraint | ScipyConstraint, ...]:
    """The problem's constraints as a tuple, each checked to be a `Constraint` or one of scipy's.

    Raises:
        TypeError: Anything else (a scipy dict-style constraint included), naming its index.
    """
    if constraints is None:
        return ()
    single = (Constraint, scipy.optimize.NonlinearConstraint, scipy.optimize.LinearConstraint)
    items = (constraints,) if isinstance(constraints, single) else constraints
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise TypeError(f"constraints must be a list of om.Constraint or scipy constraint objects, got {constraints!r}")
    for i, c in enumerate(items):
        if not isinstance(c, single):
            hint = (
                "; a dict-style constraint is written scipy.optimize.NonlinearConstraint(fun, lb, ub) "
                "or om.Constraint(fun, lb, ub)"
                if isinstance(c, dict)
                else ""
            )
            raise TypeError(
                f"constraints[{i}] must be an om.Constraint, scipy.optimize.NonlinearConstraint or "
                f"LinearConstraint, got {c!r}{hint}"
            )
    # scipy's constraint objects hold the caller's arrays: a copy keeps the problem unchanged.
    return tuple(c if isinstance(c, Constraint) else copy.deepcopy(c) for c in items)


def check_constraint_sizes(
    constraints: Sequence[Constraint | ScipyConstraint], layout: Layout, x0: np.ndarray, p: Any
) -> None:
    """Refuse constraints whose sizes do not fit the problem, when the problem is built.

    A `LinearConstraint` needs one column per entry of the flattened ``u`` and sides of one
    value or one per row. A `Constraint` or `NonlinearConstraint` is evaluated once at ``u0``
    (`x0`, flat; a call of its ``fun``, and of its ``jac`` when given, not counted in
    ``Stats``) and must return a scalar or a 1-d array with as many values as its sides have
    (sides of one value fit any).

    Raises:
        ValueError: Naming the constraint (its index), what it returned, and the sizes.
    """
    n = layout.size
    for i, c in enumerate(constraints):
        name = f"constraints[{i}] ({type(c).__name__})"
        sides = (int(np.size(c.lb)), int(np.size(c.ub)))
        if isinstance(c, scipy.optimize.LinearConstraint):
            shape = tuple(c.A.shape) if hasattr(c.A, "toarray") else np.atleast_2d(np.asarray(c.A)).shape
            if len(shape) != 2 or shape[1] != n:
                raise ValueError(
                    f"{name} needs one column of A per entry of the flattened u ({n}), got A of shape {shape}"
                )
            _check_sides(name, sides, shape[0], "rows of A")
            continue
        with np.errstate(all="ignore"):  # the values' sizes are checked here, not their values
            if isinstance(c, Constraint):
                u = layout.unflatten(x0)
                values = real_array(strip_tracers(c.fun(u, p)), f"the value of {name}'s fun at u0")
                matrix = None if c.jac is None else np.asarray(strip_tracers(c.jac(u, p)))
            else:
                values = real_array(c.fun(x0.copy()), f"the value of {name}'s fun at u0")
                matrix = np.asarray(c.jac(x0.copy())) if callable(c.jac) else None
        if values.ndim > 1:
            raise ValueError(f"{name}: its fun must return a scalar or a 1-d array, got shape {values.shape} at u0")
        m = values.size
        _check_sides(name, sides, m, "values returned by its fun at u0")
        if matrix is not None and not hasattr(matrix, "toarray"):
            fits = matrix.shape == (m, n) or (m == 1 and matrix.shape == (n,))
            if not fits:
                raise ValueError(
                    f"{name}: its jac must return a {m} x {n} matrix at u0 (a row per value of fun, a column per "
                    f"entry of the flattened u), got shape {matrix.shape}"
                )


def _check_sides(name: str, sides: tuple[int, int], m: int, what: str) -> None:
    bad = [side for side, size in zip(("lb", "ub"), sides) if size not in (1, m)]
    if bad:
        size = sides[0] if bad[0] == "lb" else sides[1]
        which = "its sides lb and ub have" if len(bad) == 2 else f"its {bad[0]} has"
        raise ValueError(
            f"{name}: {which} {size} values but there are {m} {what}; give one value per value of the "
            "constraint, or one for all"
        )


def to_scipy(constraints: Sequence[Constraint | ScipyConstraint], layout: Layout, p: Any) -> list[ScipyConstraint]:
    """The constraints over the flat vector, as scipy's methods take them; scipy's own pass as given."""
    return [c if not isinstance(c, Constraint) else _nonlinear(c, layout, p) for c in constraints]


def on_free_coordinates(
    c: ScipyConstraint, full: Callable[[np.ndarray], np.ndarray], free: np.ndarray, fixed_values: np.ndarray
) -> ScipyConstraint:
    """A scipy constraint over the free coordinates of x alone, the others held at
    ``fixed_values``; ``full`` rebuilds the whole x from the free coordinates."""
    if isinstance(c, scipy.optimize.LinearConstraint):
        a = c.A.toarray() if hasattr(c.A, "toarray") else np.atleast_2d(np.asarray(c.A, dtype=np.float64))
        shift = a[:, ~free] @ fixed_values
        return scipy.optimize.LinearConstraint(a[:, free], c.lb - shift, c.ub - shift, keep_feasible=c.keep_feasible)
    fun, jac, hess = c.fun, c.jac, c.hess

    def jac_free(x: np.ndarray) -> Any:
        return jac(full(x))[:, free]

    def hess_free(x: np.ndarray, v: np.ndarray) -> Any:
        return hess(full(x), v)[free][:, free]

    return scipy.optimize.NonlinearConstraint(
        lambda x: fun(full(x)),
        c.lb,
        c.ub,
        jac=jac_free if callable(jac) else jac,
        hess=hess_free if callable(hess) else hess,
        keep_feasible=c.keep_feasible,
        finite_diff_rel_step=c.finite_diff_rel_step,
    )


def _nonlinear(c: Constraint, layout: Layout, p: Any) -> scipy.optimize.NonlinearConstraint:
    def traced(x: Any) -> Any:
        out = c.fun(layout.unflatten(x), p)
        if np.ndim(out) > 1:
            raise ValueError(
                f"a Constraint's fun must return a scalar or a 1-d array, got shape {np.shape(strip_tracers(out))}"
            )
        return out if np.ndim(out) == 1 else anp.reshape(out, (1,))

    def fun(x: np.ndarray) -> np.ndarray:
        return _values(traced(np.asarray(x, dtype=np.float64)))

    if c.jac is None:
        jacobian = autograd.jacobian(traced)

        def jac(x: np.ndarray) -> np.ndarray:
            return np.atleast_2d(np.asarray(jacobian(np.asarray(x, dtype=np.float64)), dtype=np.float64))
    else:
        user_jac = c.jac

        def jac(x: np.ndarray) -> np.ndarray:
            matrix = np.atleast_2d(
                real_array(user_jac(layout.unflatten(np.asarray(x, dtype=np.float64)), p), "Constraint jac")
            )
            if matrix.ndim != 2 or matrix.shape[1] != layout.size:
                raise ValueError(
                    f"a Constraint's jac must return an m x {layout.size} matrix (one column per entry of the "
                    f"flattened u), got shape {matrix.shape}"
                )
            return matrix

    return scipy.optimize.NonlinearConstraint(fun, c.lb, c.ub, jac=jac)


def _values(out: Any) -> np.ndarray:
    values = real_array(strip_tracers(out), "the value of a Constraint's fun")
    if values.ndim > 1:
        raise ValueError(f"a Constraint's fun must return a scalar or a 1-d array, got shape {values.shape}")
    return values.reshape(-1)
