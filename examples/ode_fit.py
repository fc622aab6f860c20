"""Fit the parameters of an ODE model with BFGS; the model's normalisation state is constant.

The model is logistic growth, dy/dt = r y (1 - y / K), written as a right-hand side that works in
normalised units: it divides by a scale held in the model's state, as a neural network inside an
ODE keeps its normalisation statistics in its state. While the equation is integrated that state
must not change: a right-hand side whose state moves from one evaluation to the next is not an
ODE, and an adaptive solver's result would mean nothing. So the problem declares
``state_mode="constant"``: every algorithm, BFGS included, accepts it, and ``solve`` checks after
every call that the state came back unchanged.

The second half shows the error a right-hand side that updates its scale (a running maximum, as
a "training mode" normalisation would) raises: `StateMutationError`, naming the call and the leaf.

Gradients flow through the integrator by ``autograd.scipy.integrate.odeint``'s adjoint method.

Run ``python examples/ode_fit.py``.
"""

from __future__ import annotations

from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd.builtins import tuple as traced_tuple
from autograd.scipy.integrate import odeint

import optimeta as om

TIMES = np.linspace(0.0, 10.0, 6)
Y0 = np.array([5.0])
TRUE = {"r": 0.9, "K": 80.0}


def rhs(y: Any, t: float, theta: Any, scale: float) -> Any:
    """Logistic growth in units of `scale`: theta = (r, K / scale)."""
    z = y / scale
    return scale * theta[0] * z * (1.0 - z / theta[1])


def simulate(log_theta: Any, scale: float) -> Any:
    """The trajectory at TIMES for parameters exp(log_theta) = (r, K / scale)."""
    args = traced_tuple((anp.exp(log_theta), scale))
    return odeint(rhs, Y0, TIMES, args, rtol=1e-7, atol=1e-9)[:, 0]


def loss(u: Any, data: np.ndarray, state: dict[str, float]) -> tuple[Any, dict[str, float]]:
    """Mean squared error of the trajectory; the state is returned as it came."""
    return anp.mean((simulate(u, state["scale"]) - data) ** 2), state


def loss_updating_scale(u: Any, data: np.ndarray, state: dict[str, float]) -> tuple[Any, dict[str, Any]]:
    """The loss with a scale that follows the trajectory's peak: the state moves every call."""
    trajectory = simulate(u, state["scale"])
    new_scale = 0.9 * state["scale"] + 0.1 * anp.max(trajectory)
    return anp.mean((trajectory - data) ** 2), {"scale": new_scale}


def main() -> dict[str, Any]:
    """Fit (r, K) from noiseless data, then collect the error of the state-updating variant."""
    state = {"scale": 100.0}
    true_log = np.log([TRUE["r"], TRUE["K"] / state["scale"]])
    data = simulate(true_log, state["scale"])
    start = np.log([0.5, 0.5])
    prob = om.OptimizationProblem(loss, start, p=data, state=state, state_mode="constant")
    sol = om.solve(prob, om.BFGS())
    r, k_scaled = np.exp(sol.u)

    bad = om.OptimizationProblem(loss_updating_scale, start, p=data, state=state, state_mode="constant")
    try:
        om.solve(bad, om.BFGS())
        mutation = ""
    except om.StateMutationError as exc:
        mutation = str(exc)
    return {"solution": sol, "r": float(r), "K": float(k_scaled * state["scale"]), "error": mutation}


if __name__ == "__main__":
    out = main()
    sol = out["solution"]
    print(f"BFGS: {sol.retcode.name}, {sol.stats.iterations} iterations, {sol.stats.fevals} evaluations")
    print(f"fitted r = {out['r']:.4f} (true {TRUE['r']}), K = {out['K']:.3f} (true {TRUE['K']})")
    print(f"state after the solve, unchanged: {sol.state}")
    print("\nA right-hand side that updates its scale raises:\n" + out["error"])
