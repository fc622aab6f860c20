"""Peers: the same problems solved by scipy.optimize, torch.optim and optax called directly.

Each peer gets the same objective (value and gradient of the problem's autograd function on the
flat vector, counted the same way), the same starting point and the same budget. torch and optax
peers run only where they are installed (extra ``bench``); scipy is always there. optax runs in
float64 (``jax_enable_x64``, switched back after its run), its steps compiled with ``jax.jit``; its L-BFGS line search
reaches the objective through ``jax.pure_callback``, with the gradient supplied by a custom VJP,
so every trial point is one counted call, as for the other peers.
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
        constraints: Honours the problem's bounds and constraints; only such a peer runs on a
            problem that has them. "bounds" for bounds alone, "all" for both, "" for neither.
        needs_bounds: Searches a box: runs only on problems with bounds.
    """

    name: str
    needs_deterministic: bool
    run: Callable[[BenchProblem, ValueAndGrad], PeerResult]
    constraints: str = ""
    needs_bounds: bool = False

    def applies(self, problem: BenchProblem) -> bool:
        stateless = "state" not in problem.options and not problem.solve_options
        if self.needs_bounds and "bounds" not in problem.options:
            return False
        if problem.constrained:
            handled = self.constraints == "all" or (
                self.constraints == "bounds" and "constraints" not in problem.options
            )
            if not handled:
                return False
        return stateless and (problem.plain or not self.needs_deterministic)


def _scipy(method: str) -> Callable[[BenchProblem, ValueAndGrad], PeerResult]:
    def run(problem: BenchProblem, fg: ValueAndGrad) -> PeerResult:
        res = scipy.optimize.minimize(fg, problem.u0, jac=True, method=method, options={"maxiter": problem.maxiters})
        return PeerResult(res.x, int(res.nit), bool(res.success), str(res.message))

    return run


def _scipy_constrained(method: str) -> Callable[[BenchProblem, ValueAndGrad], PeerResult]:
    """``scipy.optimize.minimize`` with the problem's bounds and constraints."""

    def run(problem: BenchProblem, fg: ValueAndGrad) -> PeerResult:
        bounds = problem.options.get("bounds")
        res = scipy.optimize.minimize(
            fg,
            problem.u0,
            jac=True,
            method=method,
            bounds=None if bounds is None else scipy.optimize.Bounds(*bounds),
            constraints=problem.options.get("constraints", ()),
            options={"maxiter": problem.maxiters},
        )
        return PeerResult(res.x, int(res.nit), bool(res.success), str(res.message))

    return run


def _differential_evolution(problem: BenchProblem, fg: ValueAndGrad) -> PeerResult:
    """scipy's differential evolution from its defaults, seeded as the suite's optimeta run is."""
    res = scipy.optimize.differential_evolution(
        lambda x: fg(x)[0],
        scipy.optimize.Bounds(*problem.options["bounds"]),
        maxiter=problem.maxiters,
        rng=np.random.default_rng(0),
        constraints=problem.options.get("constraints", ()),
        x0=problem.u0,
    )
    return PeerResult(res.x, int(res.nit), bool(res.success), str(res.message))


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


def _traced(fg: ValueAndGrad) -> Callable[[Any], Any]:
    """`fg` as a JAX function of the flat vector: its value, with `fg`'s gradient as the VJP."""
    import jax
    import jax.numpy as jnp

    def host(x: Any) -> tuple[np.ndarray, np.ndarray]:
        loss, grad = fg(np.array(x, dtype=np.float64))
        return np.asarray(loss, dtype=np.float64), np.asarray(grad, dtype=np.float64)

    def both(x: Any) -> Any:
        shapes = (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct(x.shape, jnp.float64))
        return jax.pure_callback(host, shapes, x)

    @jax.custom_vjp
    def value(x: Any) -> Any:
        return both(x)[0]

    def forward(x: Any) -> Any:
        loss, grad = both(x)
        return loss, grad

    def backward(grad: Any, cotangent: Any) -> Any:
        return (cotangent * grad,)

    value.defvjp(forward, backward)
    return value


def _optax(kind: str) -> Callable[[BenchProblem, ValueAndGrad], PeerResult]:
    def run(problem: BenchProblem, fg: ValueAndGrad) -> PeerResult:
        import jax

        # float64 for this run, and the process's setting back afterwards. A global switch, not
        # jax.enable_x64's thread-local one: L-BFGS's pure_callback runs in jax's own thread.
        previous = jax.config.read("jax_enable_x64")  # type: ignore[no-untyped-call]
        jax.config.update("jax_enable_x64", True)
        try:
            return run_x64(problem, fg)
        finally:
            jax.config.update("jax_enable_x64", previous)

    def run_x64(problem: BenchProblem, fg: ValueAndGrad) -> PeerResult:
        import jax
        import jax.numpy as jnp
        import optax

        params = jnp.asarray(np.array(problem.u0, dtype=np.float64))
        if kind == "lbfgs":
            value = _traced(fg)
            opt = optax.lbfgs()
            value_and_grad = optax.value_and_grad_from_state(value)

            @jax.jit
            def lbfgs_step(params: Any, state: Any) -> Any:
                loss, grad = value_and_grad(params, state=state)
                updates, state = opt.update(grad, state, params, value=loss, grad=grad, value_fn=value)
                return optax.apply_updates(params, updates), state, grad

            state = opt.init(params)
            success, iterations = False, 0
            while iterations < problem.maxiters:
                params, state, grad = lbfgs_step(params, state)
                iterations += 1
                if float(jnp.max(jnp.abs(grad))) < 1e-5:  # the gradient at the previous iterate
                    success = True
                    break
            return PeerResult(np.array(params), iterations, success, "optax.lbfgs")

        opt = optax.sgd(problem.rates["SGD"]) if kind == "sgd" else optax.adam(problem.rates["Adam"])

        @jax.jit
        def first_order_step(grad: Any, state: Any, params: Any) -> Any:
            updates, state = opt.update(grad, state, params)
            return optax.apply_updates(params, updates), state

        state = opt.init(params)
        for _ in range(problem.maxiters):
            _, grad = fg(np.array(params))
            params, state = first_order_step(jnp.asarray(grad), state, params)
        return PeerResult(np.array(params), problem.maxiters, None, f"optax.{kind}")

    return run


#: The peers that need an optional module, by the modules they need (all from the extra ``bench``).
OPTIONAL_PEERS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("torch",): ("torch:SGD", "torch:Adam", "torch:LBFGS"),
    ("jax", "optax"): ("optax:sgd", "optax:adam", "optax:lbfgs"),
}


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def missing_peers() -> dict[str, tuple[str, ...]]:
    """The peers that do not run here, by the missing modules that they need (e.g. ``"torch"``)."""
    return {
        ", ".join(m for m in modules if not _installed(m)): names
        for modules, names in OPTIONAL_PEERS.items()
        if not _installed(*modules)
    }


def available_peers() -> list[Peer]:
    """scipy's BFGS, L-BFGS-B, SLSQP and differential evolution; torch's SGD, Adam and LBFGS and optax's sgd, adam and lbfgs
    where they are installed (`missing_peers` names the others)."""
    peers = [
        Peer("scipy:BFGS", True, _scipy("BFGS")),
        Peer("scipy:L-BFGS-B", True, _scipy_constrained("L-BFGS-B"), "bounds"),
        Peer("scipy:SLSQP", True, _scipy_constrained("SLSQP"), "all"),
        Peer("scipy:differential_evolution", True, _differential_evolution, "all", needs_bounds=True),
    ]
    if _installed("torch"):
        peers += [
            Peer("torch:SGD", False, _torch("SGD")),
            Peer("torch:Adam", False, _torch("Adam")),
            Peer("torch:LBFGS", True, _torch("LBFGS")),
        ]
    if _installed("optax", "jax"):
        peers += [
            Peer("optax:sgd", False, _optax("sgd")),
            Peer("optax:adam", False, _optax("adam")),
            Peer("optax:lbfgs", True, _optax("lbfgs")),
        ]
    return peers
