"""Train a BatchNorm network full-batch with BFGS: running statistics advance once per iteration.

BatchNorm normalises with the statistics of the current batch while training and keeps running
averages of them, in its state, for inference. On the full data set the training loss does not
depend on those running averages, so the problem is deterministic and declares
``stochastic=False``; but the state still evolves with every forward pass.

BFGS's line search evaluates the loss at several trial points per iteration. A front end that
updates the statistics on every call (a mutable holder the objective writes to) advances them
once per *trial*, including trials the line search rejects. optimeta's BFGS commits its state per
step (trait ``commits_state_per_step``): every trial of an iteration sees the same snapshot, and
the statistics returned at the accepted point are committed once per iteration.

Run ``python examples/batchnorm_bfgs.py``.
"""

from __future__ import annotations

from typing import Any

import autograd.numpy as anp
import numpy as np

import optimeta as om

HIDDEN = 8
MOMENTUM = 0.9
EPS = 1e-5


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs on very different scales, a smooth target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * np.array([1.0, 10.0, 0.1]) + np.array([0.0, 5.0, -1.0])
    y = np.tanh(x[:, 0]) + 0.05 * x[:, 1] - 2.0 * x[:, 2]
    return x, y[:, None]


def init_params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.normal(scale=0.5, size=(3, HIDDEN)),
        "gamma": np.ones(HIDDEN),
        "beta": np.zeros(HIDDEN),
        "W2": rng.normal(scale=0.3, size=(HIDDEN, 1)),
        "b2": np.zeros(1),
    }


def forward(params: dict[str, Any], x: np.ndarray, state: dict[str, Any], training: bool) -> tuple[Any, Any]:
    """linear -> BatchNorm -> tanh -> linear; returns (output, new state)."""
    h = anp.dot(x, params["W1"])
    if training:
        mean, var = anp.mean(h, axis=0), anp.var(h, axis=0)
        new_state = {
            "mean": MOMENTUM * state["mean"] + (1 - MOMENTUM) * mean,
            "var": MOMENTUM * state["var"] + (1 - MOMENTUM) * var,
            "updates": state["updates"] + 1,
        }
    else:
        mean, var, new_state = state["mean"], state["var"], state
    h = anp.tanh(params["gamma"] * (h - mean) / anp.sqrt(var + EPS) + params["beta"])
    return anp.dot(h, params["W2"]) + params["b2"], new_state


def loss(params: dict[str, Any], data: tuple[np.ndarray, np.ndarray], state: dict[str, Any]) -> tuple[Any, Any]:
    x, y = data
    out, new_state = forward(params, x, state, training=True)
    return anp.mean((out - y) ** 2), new_state


def init_state() -> dict[str, Any]:
    return {"mean": np.zeros(HIDDEN), "var": np.ones(HIDDEN), "updates": 0}


def main(seed: int = 0) -> dict[str, Any]:
    """Train with BFGS; count state updates against objective calls; evaluate in inference mode."""
    train, test = make_data(400, seed), make_data(200, seed + 1)
    prob = om.OptimizationProblem(loss, init_params(seed), p=train, state=init_state(), stochastic=False)
    sol = om.solve(prob, om.BFGS())
    predicted, _ = forward(sol.u, test[0], sol.state, training=False)
    return {
        "solution": sol,
        "updates": sol.state["updates"],
        "test_mse": float(np.mean((predicted - test[1]) ** 2)),
        "test_variance": float(np.var(test[1])),
    }


if __name__ == "__main__":
    out = main()
    sol = out["solution"]
    print(f"BFGS: {sol.retcode.name} after {sol.stats.iterations} iterations and {sol.stats.fevals} objective calls")
    print(f"BatchNorm running statistics updated {out['updates']} times: once per iteration")
    print(f"(a holder written on every call would have updated them {sol.stats.fevals} times)")
    print(f"test MSE in inference mode: {out['test_mse']:.4f} (variance of y {out['test_variance']:.4f})")
