"""What a solve returns: `Solution`, its `Stats` and `ReturnCode`, and the per-step `IterationInfo`;
a `Solution` as scipy's ``OptimizeResult`` (`Solution.to_scipy`)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.optimize
import scipy.sparse.linalg

from ._values import Layout

if TYPE_CHECKING:
    from ._observe import History

__all__ = ["IterationInfo", "ReturnCode", "Solution", "Stats"]


class ReturnCode(enum.Enum):
    """Why a run ended. Each member's value is its human message; only `SUCCESS` is a success."""

    SUCCESS = "the algorithm's convergence criterion was met"
    MAXITERS = "the iteration budget (maxiters) was used up before convergence was shown"
    MAXTIME = "the time budget (maxtime) was used up before convergence was shown"
    TERMINATED = "the callback asked to stop"
    FAILURE = "the algorithm could not make further progress"
    NONFINITE = "the objective or its gradient was not finite (NaN or Inf)"

    @property
    def message(self) -> str:
        """The human explanation of this return code."""
        return self.value

    @property
    def success(self) -> bool:
        """True only when the algorithm's own convergence test passed."""
        return self is ReturnCode.SUCCESS


@dataclass(frozen=True)
class Stats:
    """Counts of one solve.

    Attributes:
        iterations: Steps the algorithm completed.
        fevals: Calls of the objective ``f`` made by the run (a value, a value and gradient
            together, or one point of a finite-difference gradient).
        gevals: Gradients computed (autograd passes, calls of the user's ``grad``, or
            finite-difference gradients).
        time: Wall-clock seconds spent in the run, trait check and probe excluded.
        probe_fevals: Calls of ``f`` made by the determinism probe before the run; they never
            advance the committed state.
        hevals: Hessians or Hessian-vector products computed (Newton-type methods).
        skipped: Steps whose update was skipped because their evaluation was not finite
            (``nan_policy="skip"``); they count among the iterations.
    """

    iterations: int
    fevals: int
    gevals: int
    time: float
    probe_fevals: int = 0
    hevals: int = 0
    skipped: int = 0

    @classmethod
    def total(cls, parts: Sequence[Stats], *, time: float, probe_fevals: int = 0) -> Stats:
        """The counts of several solves that make one (a chain's stages, a multistart's runs),
        added, with the `time` they took together and `probe_fevals` of a probe made for them
        all (on top of the parts' own)."""
        return cls(
            iterations=sum(s.iterations for s in parts),
            fevals=sum(s.fevals for s in parts),
            gevals=sum(s.gevals for s in parts),
            time=time,
            probe_fevals=probe_fevals + sum(s.probe_fevals for s in parts),
            hevals=sum(s.hevals for s in parts),
            skipped=sum(s.skipped for s in parts),
        )


@dataclass(frozen=True)
class IterationInfo:
    """What the callback receives after every step.

    Attributes:
        iteration: Steps completed so far (1 after the first step).
        u: A copy of the iterate after this step, with the structure of ``u0``.
        objective: The loss the step evaluated, in the user's sense. For first-order algorithms
            it is the loss at the iterate *before* this step's update, as in every training loop.
        state: A copy of the committed state after this step, or None for a stateless problem.
        epoch: With minibatches (``data=``), the pass over the data this step belongs to,
            counted from 1; otherwise None.
    """

    iteration: int
    u: Any
    objective: float
    state: Any
    epoch: int | None = None


@dataclass(frozen=True, eq=False)
class Solution:
    """The result of `solve`.

    Attributes:
        u: The final iterate, with the structure of ``u0`` (fresh arrays the caller owns).
        objective: The objective in the user's sense (``sense="max"`` reports the maximum). For a
            deterministic problem it is ``f(u, p)`` at the returned ``u``; for a stateful or
            stochastic problem, where an extra call would advance the state or draw new noise, it
            is the loss the last step evaluated.
        state: The committed state at the end: the state returned by the last call for a
            single-call-per-step algorithm, the state returned at the last accepted point for one
            that commits per step (a rejected line-search trial is never committed), the initial
            state for a constant one; None for a stateless problem.
        retcode: Why the run ended.
        message: A human explanation (the backend's own message where it has one).
        stats: Iterations, objective and gradient evaluations, and time.
        algorithm: The algorithm instance that was run.
        original: The backend's raw result (e.g. scipy's ``OptimizeResult``), or None.
        history: With ``solve(..., record=True)``, the objective (and with ``record="u"`` the
            iterate) after every step, as a `History`; None otherwise.
        opt_state: A step-wise algorithm's own state at the end (as `Checkpoint.opt_state`: step
            counts, moments, BFGS's gradient and inverse-Hessian estimate), in the minimisation
            sense; None for a whole-run algorithm (its raw result is ``original``).
        sense: The problem's sense, ``"min"`` or ``"max"``: the sign of ``objective`` relative to
            what the algorithm minimised.
    """

    u: Any
    objective: float
    state: Any
    retcode: ReturnCode
    message: str
    stats: Stats
    algorithm: Any
    original: Any = None
    history: History | None = None
    opt_state: Any = None
    sense: str = "min"

    @property
    def success(self) -> bool:
        """True when ``retcode`` is ``ReturnCode.SUCCESS``."""
        return self.retcode.success

    def to_scipy(self) -> Any:
        """This solution as scipy's ``OptimizeResult``, for code written against
        ``scipy.optimize.minimize``.

        Returns:
            A ``scipy.optimize.OptimizeResult`` with ``x`` (``u`` flattened to one float64
            vector, leaves in order), ``fun`` (the objective, in the user's sense), ``success``,
            ``status`` (0 SUCCESS, 1 MAXITERS, 2 FAILURE, 3 NONFINITE, 4 MAXTIME, 5 TERMINATED),
            ``message``, ``nit``, ``nfev``, ``njev``, ``nhev``, and optimeta's own ``retcode``
            (its name), ``u`` and ``state``. Where the method has them at ``x``, as scipy's
            does, also ``jac`` (the gradient, a flat float64 vector), ``hess_inv`` (the
            inverse-Hessian estimate: a matrix, or L-BFGS-B's ``LbfgsInvHessProduct``) and
            ``hess``: BFGS, and the scipy methods whose result has them (L-BFGS-B, SLSQP, CG,
            TNC, Newton-CG, the trust-region methods, a polished differential evolution). They
            are the derivatives of ``f`` itself, also for ``sense="max"``; a method without them
            gives no such key, as in scipy.

        Example:
            >>> import autograd.numpy as anp, numpy as np, optimeta as om
            >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
            >>> res = om.solve(prob, om.BFGS()).to_scipy()
            >>> res.success, res.status, res.x
            (True, 0, array([1., 1.]))
            >>> res = om.solve(prob, om.LBFGS()).to_scipy()  # L-BFGS-B's own derivatives
            >>> bool(np.allclose(res.jac, 0.0, atol=1e-6)), type(res.hess_inv).__name__
            (True, 'LbfgsInvHessProduct')
        """
        return solution_to_scipy(self)


#: Each return code's ``status`` in the `OptimizeResult` (0 is success, as in scipy).
STATUS = {"SUCCESS": 0, "MAXITERS": 1, "FAILURE": 2, "NONFINITE": 3, "MAXTIME": 4, "TERMINATED": 5}


def solution_to_scipy(sol: Solution) -> scipy.optimize.OptimizeResult:
    """`Solution.to_scipy`'s work."""
    _, x = Layout.of(sol.u, "u")
    return scipy.optimize.OptimizeResult(
        x=x,
        fun=sol.objective,
        success=sol.success,
        status=STATUS[sol.retcode.name],
        message=sol.message,
        nit=sol.stats.iterations,
        nfev=sol.stats.fevals,
        njev=sol.stats.gevals,
        nhev=sol.stats.hevals,
        **_derivatives(sol, x),
        retcode=sol.retcode.name,
        u=sol.u,
        state=sol.state,
    )


def _derivatives(sol: Solution, x: np.ndarray) -> dict[str, Any]:
    """``jac`` (the gradient at `x`), ``hess_inv`` and ``hess`` where the run has them, in the
    user's sense (a maximisation's are those of the user's ``f``, not of the ``-f`` minimised);
    none of them otherwise, as scipy gives only those its method has."""
    found = _minimised(sol, x)
    if sol.sense == "min":
        return found
    return {name: -value for name, value in found.items()}


def _minimised(sol: Solution, x: np.ndarray) -> dict[str, Any]:
    """`_derivatives` of the function the run minimised."""
    return _from_state(sol) if sol.opt_state is not None else _from_original(sol.original, sol.u, x)


def _from_state(sol: Solution) -> dict[str, Any]:
    """What a quasi-Newton state holds, when it is the state at the returned iterate: a state
    with the ``loss``, ``grad`` and ``inv_hessian`` (upper triangle) there, as `BFGSState`."""
    state = sol.opt_state
    grad, inv_hessian = getattr(state, "grad", None), getattr(state, "inv_hessian", None)
    if not isinstance(grad, np.ndarray) or not isinstance(inv_hessian, np.ndarray):
        return {}
    sign = 1.0 if sol.sense == "min" else -1.0
    # A non-finite step leaves the run at the iterate before it, which the state is not about.
    if sol.retcode.name == "NONFINITE" or sign * float(state.loss) != sol.objective:
        return {}
    upper = np.triu(inv_hessian)
    return {"jac": np.array(grad, dtype=np.float64), "hess_inv": upper + np.triu(upper, 1).T}


def _from_original(original: Any, u: Any, x: np.ndarray) -> dict[str, Any]:
    """What scipy's own result holds at `x`: its ``jac`` (trust-constr's ``grad``: its ``jac``
    is the constraints'), ``hess_inv`` (a matrix, or L-BFGS-B's `LbfgsInvHessProduct`) and
    ``hess``; nothing when scipy's point is not `x` (a run that ended at its best point). A
    chain's or a multistart's solution has them from the stage or run it returns."""
    if isinstance(original, tuple):
        for run in original:
            if isinstance(run, Solution) and run.u is u:
                return _minimised(run, x)
        return {}
    if not isinstance(original, scipy.optimize.OptimizeResult):
        return {}
    at = original.get("x")
    if at is None or np.shape(at) != x.shape or not np.array_equal(at, x):
        return {}
    n, found = x.size, {}
    jac = original.get("grad", original.get("jac"))
    if isinstance(jac, np.ndarray) and jac.shape == (n,):
        found["jac"] = np.array(jac, dtype=np.float64)
    for name in ("hess_inv", "hess"):
        value = original.get(name)
        if isinstance(value, np.ndarray) and value.shape == (n, n):
            found[name] = np.array(value, dtype=np.float64)
        elif isinstance(value, scipy.sparse.linalg.LinearOperator) and value.shape == (n, n):
            found[name] = value
    return found
