"""BFGS with scipy's Wolfe line search and an O(n^2) inverse-Hessian update."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
from scipy.linalg import blas

# scipy's BFGS line search: MINPACK's dcsrch, falling back to the More-Thuente search. Reused so
# that iterates match scipy.optimize.minimize(method="BFGS") step for step; it is private to
# scipy, and has kept this name and signature since scipy 1.0.
from scipy.optimize._optimize import _line_search_wolfe12, _LineSearchError

from .._solution import ReturnCode
from ..traits import Traits, register
from ._base import Box, Evaluate, StepwiseAlgorithm
from ._checks import check_positive

__all__ = ["BFGS", "BFGSState"]


class BFGSState(NamedTuple):
    """The current value and gradient, the inverse-Hessian estimate, and how the last step ended.

    ``inv_hessian`` is Fortran-ordered and only its upper triangle is kept up to date: the BLAS
    symmetric routines read it and write the update into a copy, in O(n^2), so a state is never
    written once made: a step taken twice from it gives the same result (only the driver,
    donating a state it alone holds, has it updated in place: `step_donated`).
    """

    loss: float
    grad: np.ndarray | None
    inv_hessian: np.ndarray | None
    previous_loss: float
    ended: ReturnCode | None


class _Memo:
    """One evaluation per point for a line search that asks for value and gradient apart."""

    def __init__(self, evaluate: Evaluate) -> None:
        self.evaluate = evaluate
        self.key = b""
        self.result: tuple[float, np.ndarray] = (np.nan, np.empty(0))

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        key = x.tobytes()
        if key != self.key:
            self.result = self.evaluate(x)
            self.key = key
        return self.result

    def value(self, x: np.ndarray) -> float:
        return self(x)[0]

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self(x)[1]


@register
@dataclass(frozen=True, kw_only=True)
class BFGS(StepwiseAlgorithm[BFGSState]):
    r"""Quasi-Newton BFGS with a Wolfe line search (Nocedal & Wright, algorithm 6.1).

    Keeps an estimate :math:`H_k` of the inverse Hessian, steps along
    :math:`p_k = -H_k \nabla f(u_k)` with a step length satisfying the strong Wolfe conditions
    (scipy's line search, so that iterates follow ``scipy.optimize.minimize(method="BFGS")``),
    and updates, with :math:`s_k = u_{k+1} - u_k`, :math:`y_k = \nabla f(u_{k+1}) - \nabla f(u_k)`,
    :math:`\rho_k = 1 / y_k^\top s_k`:

    .. math::
        H_{k+1} = (I - \rho_k s_k y_k^\top) H_k (I - \rho_k y_k s_k^\top) + \rho_k s_k s_k^\top
                = H_k + a b^\top + b a^\top,

    with :math:`a = s_k` and :math:`b = -\rho_k H_k y_k + \tfrac12 (\rho_k + \rho_k^2 y_k^\top H_k
    y_k) s_k`: one symmetric rank-two update (BLAS ``syr2``, into a copy), O(n^2) per iteration where
    scipy's two dense matrix products cost O(n^3). It stops with ``SUCCESS`` when
    :math:`\|\nabla f(u_k)\|_\infty \le` ``gtol``; a failed line search ends with ``FAILURE``, a
    non-finite value at an accepted point with ``NONFINITE``.

    Args:
        gtol: Gradient-norm tolerance for convergence, > 0.

    Traits:
        commits_state_per_step (the line search's trial calls share one state snapshot; the
        state returned at the accepted iterate is committed once per iteration),
        requires_gradient and supports_callback. Not ``single_call_per_step`` (the line search
        calls the objective 1 to 25 times per step) and not ``tolerates_stochastic_loss`` (the
        Wolfe conditions compare exact values). No bounds.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - p) ** 2), np.zeros(3),
        ...                               p=np.arange(3.0))
        >>> sol = om.solve(prob, om.BFGS())
        >>> sol.retcode.name, bool(np.allclose(sol.u, [0.0, 1.0, 2.0]))
        ('SUCCESS', True)

    References:
        Nocedal & Wright (2006), "Numerical Optimization", 2nd ed., Springer, algorithm 6.1.
    """

    gtol: float = 1e-5

    loss_at_new_iterate: ClassVar[bool] = True
    default_for: ClassVar[str] = "smooth"  # om.default_algorithm for a smooth, unconstrained problem
    traits: ClassVar[Traits] = Traits(
        single_call_per_step=False,
        commits_state_per_step=True,
        tolerates_stochastic_loss=False,
        requires_gradient=True,
        supports_bounds=False,
        requires_bounds=False,
        supports_callback=True,
        requires_hessian=False,
        supports_constraints=False,
        supports_checkpoint=True,
        has_convergence_test=True,
        supports_minibatches=True,
    )

    def __post_init__(self) -> None:
        check_positive("gtol", self.gtol)

    def init(self, x0: np.ndarray) -> BFGSState:
        return BFGSState(np.nan, None, None, np.nan, None)

    def step(
        self, evaluate: Evaluate, x: np.ndarray, state: BFGSState, box: Box | None
    ) -> tuple[np.ndarray, BFGSState, float]:
        return self._step(evaluate, x, state, donate=False)

    def step_donated(
        self, evaluate: Evaluate, x: np.ndarray, state: BFGSState, box: Box | None
    ) -> tuple[np.ndarray, BFGSState, float]:
        # The driver's: the inverse Hessian is updated in place, saving a copy of n^2 numbers.
        return self._step(evaluate, x, state, donate=True)

    def _step(
        self, evaluate: Evaluate, x: np.ndarray, state: BFGSState, donate: bool
    ) -> tuple[np.ndarray, BFGSState, float]:
        memo = _Memo(evaluate)
        loss, grad, inv_hessian, previous = state.loss, state.grad, state.inv_hessian, state.previous_loss
        if grad is None or inv_hessian is None:
            loss, grad = memo(x)
            inv_hessian = np.eye(x.size, order="F")
            previous = loss + float(np.linalg.norm(grad)) / 2  # scipy's first step of length ~1
            ended = self._check(loss, grad)
            if ended is not None:
                return x, BFGSState(loss, grad, inv_hessian, previous, ended), loss
        direction = -blas.dsymv(1.0, inv_hessian, grad)
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                alpha, _, _, new_loss, previous, new_grad = _line_search_wolfe12(
                    memo.value, memo.grad, x, direction, grad, loss, previous, amin=1e-100, amax=1e100
                )
        except _LineSearchError:  # no step satisfies the Wolfe conditions: precision is lost
            return x, BFGSState(loss, grad, inv_hessian, previous, ReturnCode.FAILURE), loss
        s = alpha * direction
        x_new = x + s
        if new_grad is None:
            new_grad = memo.grad(x_new)
        ended = self._check(new_loss, new_grad)
        if ended is None:
            inv_hessian = self._update(inv_hessian, s, new_grad - grad, donate)
        return x_new, BFGSState(new_loss, new_grad, inv_hessian, previous, ended), new_loss

    def _check(self, loss: float, grad: np.ndarray) -> ReturnCode | None:
        if not (np.isfinite(loss) and np.isfinite(grad).all()):
            return ReturnCode.NONFINITE
        if np.max(np.abs(grad)) <= self.gtol:
            return ReturnCode.SUCCESS
        return None

    @staticmethod
    def _update(inv_hessian: np.ndarray, s: np.ndarray, y: np.ndarray, donate: bool) -> np.ndarray:
        """The BFGS update of the inverse Hessian, as one rank-two update (O(n^2)): into a copy,
        or in place when the state is donated."""
        curvature = float(y @ s)
        rho = 1000.0 if curvature == 0.0 else 1.0 / curvature  # scipy's guard for y's = 0
        hy = blas.dsymv(1.0, inv_hessian, y)
        b = -rho * hy + 0.5 * (rho + rho * rho * float(y @ hy)) * s
        updated: np.ndarray = blas.dsyr2(1.0, s, b, a=inv_hessian, overwrite_a=donate)
        return updated

    def terminate(self, state: BFGSState) -> ReturnCode | None:
        return state.ended
