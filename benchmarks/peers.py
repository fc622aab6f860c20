"""Peers: the same problems solved by scipy.optimize and torch.optim called directly.

Each peer gets the same objective (value and gradient of the problem's autograd function on the
flat vector, counted the same way), the same starting point and the same budget. torch peers
run only where torch is installed (extra ``bench``); scipy is always there.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize

from .problems import BenchProblem

ValueAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class PeerResult:
    x: np.ndarray
    iterations: int
    success: bool | None  # None: the peer has no convergence verdict
    message: str


@dataclass(frozen=True)
class Peer:
    """A solver outside optimeta.

    Attributes:
        name: Its name in the tables, e.g. ``scipy:BFGS``.
        needs_deterministic: Runs only on deterministic problems (it trusts exact values).
        run: ``run(problem, value_and_grad) -> PeerResult``.
    """

    name: str
    needs_deterministic: bool
    run: Callable[[BenchProblem, ValueAndGrad], PeerResult]

    def applies(self, problem: BenchProblem) -> bool:
        stateless = "state" not in problem.options and not problem.solve_options
        return stateless and (problem.plain or not self.needs_deterministic)


def _scipy(method: str) -> Callable[[BenchProblem, ValueAndGrad], PeerResult]:
    def run(problem: BenchProblem, fg: ValueAndGrad) -> PeerResult:
        res = scipy.optimize.minimize(fg, problem.u0, jac=True, method=method, options={"maxiter": problem.maxiters})
        return PeerResult(res.x, int(res.nit), bool(res.success), str(res.message))

    return run


def _torch(kind: str) -> Callable[[BenchProblem, ValueAndGrad], PeerResult]:
    def run(problem: BenchProblem, fg: ValueAndGrad) -> PeerResult:
        import torch

        param = torch.tensor(np.array(problem.u0, dtype=np.float64))

        def closure() -> Any:
            loss, grad = fg(param.detach().numpy().copy())
            param.grad = torch.from_numpy(grad)
            return torch.tensor(loss, dtype=torch.float64)

        if kind == "LBFGS":
            opt = torch.optim.LBFGS(
                [param],
                lr=1.0,
                max_iter=problem.maxiters,
                max_eval=problem.maxiters * 5,
                tolerance_grad=1e-5,
                tolerance_change=1e-12,
                history_size=10,
                line_search_fn="strong_wolfe",
            )
            opt.step(closure)
            iterations = int(opt.state[param].get("n_iter", 0))
        else:
            rate = problem.rates[kind]
            opt = torch.optim.SGD([param], lr=rate) if kind == "SGD" else torch.optim.Adam([param], lr=rate)
            for _ in range(problem.maxiters):
                opt.step(closure)
            iterations = problem.maxiters
        return PeerResult(param.detach().numpy().copy(), iterations, None, f"torch.optim.{kind}")

    return run


def available_peers() -> list[Peer]:
    """scipy's BFGS and L-BFGS-B, and torch's SGD, Adam and LBFGS where torch is installed."""
    peers = [Peer("scipy:BFGS", True, _scipy("BFGS")), Peer("scipy:L-BFGS-B", True, _scipy("L-BFGS-B"))]
    if importlib.util.find_spec("torch") is not None:
        peers += [
            Peer("torch:SGD", False, _torch("SGD")),
            Peer("torch:Adam", False, _torch("Adam")),
            Peer("torch:LBFGS", True, _torch("LBFGS")),
        ]
    return peers
