"""Train a small MLP with dropout and BatchNorm, whose state is explicit, with optimeta's Adam.

The model is the case that front ends without explicit state get wrong:

* dropout masks are drawn from an RNG key that lives in the state and advances once per call;
* BatchNorm keeps running statistics of its inputs in the state, updated on every training
  call and used, frozen, in inference mode.

The objective is ``loss(params, data, state) -> (loss, new_state)``. ``solve`` threads the state
through every call and returns the trained parameters *and* the trained state, so the model can
be evaluated in inference mode with the running statistics it learned. BFGS, whose line search
calls the objective several times per step, is refused before the objective is ever called.

Run ``python examples/stateful_mlp.py``.
"""

from __future__ import annotations

from typing import Any

import autograd.numpy as anp
import numpy as np

import optimeta as om

HIDDEN = 32
DROPOUT = 0.1
BN_MOMENTUM = 0.9
BN_EPS = 1e-5


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic regression set: y = sin(x0) + 0.5 x1 x2 - 0.3 x3^2 + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 3] ** 2 + 0.05 * rng.normal(size=n)
    return x, y[:, None]


def init_params(seed: int, hidden: int = HIDDEN) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.normal(scale=0.5, size=(4, hidden)),
        "b1": np.zeros(hidden),
        "gamma": np.ones(hidden),
        "beta": np.zeros(hidden),
        "W2": rng.normal(scale=1.0 / np.sqrt(hidden), size=(hidden, 1)),
        "b2": np.zeros(1),
    }


def init_state(seed: int) -> dict[str, Any]:
    return {"key": seed, "mean": np.zeros(HIDDEN), "var": np.ones(HIDDEN)}


def forward(params: dict[str, Any], x: np.ndarray, state: dict[str, Any], training: bool) -> tuple[Any, dict[str, Any]]:
    """The model: linear -> BatchNorm -> ReLU -> dropout -> linear. Returns (output, new state)."""
    h = anp.dot(x, params["W1"]) + params["b1"]
    if training:
        mean, var = anp.mean(h, axis=0), anp.var(h, axis=0)
        new_state = {
            "key": state["key"] + 1,
            "mean": BN_MOMENTUM * state["mean"] + (1 - BN_MOMENTUM) * mean,
            "var": BN_MOMENTUM * state["var"] + (1 - BN_MOMENTUM) * var,
        }
    else:
        mean, var, new_state = state["mean"], state["var"], state
    h = params["gamma"] * (h - mean) / anp.sqrt(var + BN_EPS) + params["beta"]
    h = anp.maximum(h, 0.0)
    if training:
        keep = np.random.default_rng(state["key"]).random(h.shape) >= DROPOUT
        h = h * keep / (1 - DROPOUT)
    return anp.dot(h, params["W2"]) + params["b2"], new_state


def loss(params: dict[str, Any], data: tuple[np.ndarray, np.ndarray], state: dict[str, Any]) -> tuple[Any, Any]:
    """Training loss: mean squared error under dropout, and the advanced state."""
    x, y = data
    out, new_state = forward(params, x, state, training=True)
    return anp.mean((out - y) ** 2), new_state


def main(maxiters: int = 1500, seed: int = 0) -> dict[str, Any]:
    """Train, evaluate in inference mode, and collect the error BFGS raises."""
    train, test = make_data(512, seed), make_data(256, seed + 1)
    prob = om.OptimizationProblem(loss, init_params(seed), p=train, state=init_state(seed))
    sol = om.solve(prob, om.Adam(lr=1e-2), maxiters=maxiters)

    untrained, _ = forward(prob.u0, test[0], init_state(seed), training=False)
    predicted, _ = forward(sol.u, test[0], sol.state, training=False)
    try:
        om.solve(prob, om.BFGS())
        refusal = ""
    except om.IncompatibleAlgorithmError as exc:
        refusal = str(exc)
    return {
        "solution": sol,
        "params": sol.u,
        "state": sol.state,
        "train_loss": sol.objective,
        "test_mse_untrained": float(np.mean((untrained - test[1]) ** 2)),
        "test_mse": float(np.mean((predicted - test[1]) ** 2)),
        "test_variance": float(np.var(test[1])),
        "bfgs_error": refusal,
    }


if __name__ == "__main__":
    out = main()
    sol = out["solution"]
    print(f"Adam: {sol.stats.iterations} steps, {sol.stats.fevals} objective calls, {sol.stats.time:.2f} s")
    print(f"state key advanced from 0 to {out['state']['key']} (once per call)")
    print(f"last training loss (with dropout): {out['train_loss']:.4f}")
    print(
        f"test MSE in inference mode: {out['test_mse']:.4f} (untrained {out['test_mse_untrained']:.4f}, "
        f"variance of y {out['test_variance']:.4f})"
    )
    print(f"BatchNorm running mean, first 4 units: {np.round(out['state']['mean'][:4], 3)}")
    print("\nsolve(prob, BFGS()) says:\n" + out["bfgs_error"])
