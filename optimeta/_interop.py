"""scipy interop: a problem from the arguments of ``scipy.optimize.minimize``
(`OptimizationProblem.from_scipy`); a `Solution` as scipy's ``OptimizeResult`` is in
``_solution``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse.linalg

__all__ = ["scipy_arguments"]


class _Fun:
    """``fun(x, *args)`` as an objective ``f(u, p)`` with ``p = args`` (a class, so that it
    pickles wherever ``fun`` does)."""

    def __init__(self, fun: Callable[..., Any]) -> None:
        self.fun = fun

    def __call__(self, u: Any, p: tuple[Any, ...]) -> Any:
        return self.fun(u, *p)


class _Both:
    """``fun(x, *args) -> (value, gradient)`` (scipy's ``jac=True``), called once per point
    for both parts."""

    def __init__(self, fun: Callable[..., Any]) -> None:
        self.fun = fun
        self._last: tuple[bytes, Any, Any] | None = None

    def at(self, u: Any, p: tuple[Any, ...]) -> Any:
        key = np.asarray(u, dtype=np.float64).tobytes()
        if self._last is None or self._last[0] != key or self._last[1] is not p:
            self._last = (key, p, self.fun(u, *p))
        return self._last[2]

    def __getstate__(self) -> dict[str, Any]:
        return {"fun": self.fun, "_last": None}


class _Part:
    """The value (0) or the gradient (1) of a `_Both`."""

    def __init__(self, both: _Both, index: int) -> None:
        self.both = both
        self.index = index

    def __call__(self, u: Any, p: tuple[Any, ...]) -> Any:
        return self.both.at(u, p)[self.index]


def _bounds(bounds: Any, n: int) -> Any:
    """scipy's bounds (a `Bounds`, or one ``(min, max)`` pair per variable with None for no
    bound) as optimeta's ``(lb, ub)``."""
    if bounds is None or isinstance(bounds, scipy.optimize.Bounds):
        return bounds
    if not isinstance(bounds, Sequence) or len(bounds) != n:
        raise ValueError(
            f"bounds must be a scipy.optimize.Bounds or a sequence of {n} (min, max) pairs, one per variable, "
            f"got {bounds!r}"
        )
    lb, ub = np.empty(n), np.empty(n)
    for i, pair in enumerate(bounds):
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"bounds[{i}] must be a (min, max) pair, got {pair!r}")
        lo, hi = pair
        lb[i] = -math.inf if lo is None else lo
        ub[i] = math.inf if hi is None else hi
    return (lb, ub)


def _constraint(c: Any, i: int) -> Any:
    """A scipy constraint: objects pass as they are; a dict ``{"type": "eq"|"ineq", "fun",
    "jac", "args"}`` becomes a `NonlinearConstraint` (``fun == 0`` or ``fun >= 0``)."""
    if not isinstance(c, dict):
        return c
    kind, fun = c.get("type"), c.get("fun")
    if kind not in ("eq", "ineq") or not callable(fun):
        raise ValueError(f'constraints[{i}] as a dict needs "type" ("eq" or "ineq") and a callable "fun", got {c!r}')
    args = tuple(c.get("args", ()))
    jac = c.get("jac")
    return scipy.optimize.NonlinearConstraint(
        _Bound(fun, args),
        0.0,
        0.0 if kind == "eq" else math.inf,
        jac=_Bound(jac, args) if callable(jac) else "2-point",
    )


class _Bound:
    """``fn(x, *args)`` as ``fn(x)``."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args

    def __call__(self, x: np.ndarray) -> Any:
        return self.fn(x, *self.args)


def scipy_arguments(fun: Any, x0: Any, args: Any, jac: Any, bounds: Any, constraints: Any) -> dict[str, Any]:
    """`OptimizationProblem.from_scipy`'s arguments as the problem's own fields (``f``, ``u0``,
    ``p``, ``grad``, ``bounds``, ``constraints``)."""
    if not callable(fun):
        raise TypeError(f"fun must be callable as fun(x, *args), got {fun!r}")
    p = args if isinstance(args, tuple) else (args,)
    u0 = np.array(x0, dtype=np.float64).reshape(-1) if np.ndim(x0) <= 1 else np.array(x0, dtype=np.float64)
    grad: Any
    if jac is True:
        both = _Both(fun)
        f: Any = _Part(both, 0)
        grad = _Part(both, 1)
    elif callable(jac):
        f, grad = _Fun(fun), _Fun(jac)
    elif jac is None or jac is False or jac in ("2-point", "3-point", "cs"):
        # scipy's default for a fun written with numpy: differences of values
        f, grad = _Fun(fun), "finite-difference"
    else:
        raise ValueError(f'jac must be None, True, a callable or "2-point"/"3-point"/"cs", got {jac!r}')
    if isinstance(constraints, dict):
        constraints = [constraints]
    cons = [_constraint(c, i) for i, c in enumerate(constraints or ())]
    box = _bounds(bounds, u0.size)
    return {"f": f, "u0": _clipped(u0, box), "p": p, "grad": grad, "bounds": box, "constraints": cons or None}


def _clipped(u0: np.ndarray, box: Any) -> np.ndarray:
    """`u0` (a copy already) clipped into the box, as ``scipy.optimize.minimize`` starts its
    bounded methods, with the warning scipy's Nelder-Mead and Powell give. Bounds that are
    malformed (a wrong shape, NaN, lb > ub) are left for the problem to refuse."""
    if box is None:
        return u0
    sides = (box.lb, box.ub) if isinstance(box, scipy.optimize.Bounds) else box
    try:
        lb, ub = (np.broadcast_to(np.asarray(side, dtype=np.float64), u0.shape) for side in sides)
    except (TypeError, ValueError):
        return u0
    if np.isnan(lb).any() or np.isnan(ub).any() or (lb > ub).any():
        return u0
    outside = (u0 < lb) | (u0 > ub)
    if not outside.any():
        return u0
    i = np.flatnonzero(outside)
    first = np.unravel_index(int(i[0]), u0.shape)
    where = first[0] if u0.ndim == 1 else first
    warnings.warn(
        # scipy's words first, so that a filter written for scipy's warning catches this one too.
        f"Initial guess is not within the specified bounds: x0 is clipped into them at {i.size} "
        f"coordinate(s), the first x0[{where}] = {float(u0[first])!r} to [{float(lb[first])!r}, "
        f"{float(ub[first])!r}], as "
        "scipy.optimize.minimize does",
        scipy.optimize.OptimizeWarning,
        stacklevel=4,
    )
    clipped: np.ndarray = np.clip(u0, lb, ub)
    return clipped
