"""Train an equinox MLP with dropout and BatchNorm, its state explicit, with optimeta's AdamW.

With ``grad="jax"``, ``u0`` may be any jax pytree: here the ``eqx.Module`` itself. Its
floating-point arrays are the parameters; its other leaves (the activation, the dropout rate,
the inference flags) stay as they are, and ``f`` receives the module rebuilt around the current
parameters. A first-order algorithm then runs as one compiled jax step per minibatch, in the
model's own float32 (jax's 64-bit mode is not switched on).

The model's state is explicit, in optimeta's ``state``, and threaded through every call:

* the dropout PRNG key (a ``jax.random.PRNGKey``, a uint32 array), split once per call;
* equinox's BatchNorm state (the ``eqx.nn.State`` that ``eqx.nn.make_with_state`` returns): a
  pytree of arrays (a step counter and the running statistics), kept as it is.

BatchNorm averages over a named batch axis, so the per-example model is mapped with
``jax.vmap(..., axis_name="batch")``. ``solve`` returns the trained module *and* the trained
state; the model is evaluated in inference mode (``eqx.nn.inference_mode``) with the running
statistics it learned. BFGS, whose line search calls the objective several times per step, is
refused before the objective is ever called.

Run ``python examples/equinox_mlp.py``.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import optimeta as om

HIDDEN = 32
DROPOUT = 0.1
BN_MOMENTUM = 0.9
LR = 1e-2
WEIGHT_DECAY = 1e-2
BATCH = 64

Batch = tuple[jax.Array, jax.Array]


class MLP(eqx.Module):
    """linear -> BatchNorm -> ReLU -> dropout -> linear, on one example of 4 features."""

    hidden: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    dropout: eqx.nn.Dropout
    out: eqx.nn.Linear

    def __init__(self, key: jax.Array, hidden: int = HIDDEN) -> None:
        k1, k2 = jax.random.split(key)
        # No bias before BatchNorm: it would be subtracted out again, its gradient zero.
        self.hidden = eqx.nn.Linear(4, hidden, use_bias=False, key=k1)
        self.norm = eqx.nn.BatchNorm(hidden, axis_name="batch", momentum=BN_MOMENTUM, mode="batch")
        self.dropout = eqx.nn.Dropout(DROPOUT)
        self.out = eqx.nn.Linear(hidden, 1, key=k2)

    def __call__(self, x: jax.Array, state: eqx.nn.State, key: jax.Array | None) -> tuple[jax.Array, eqx.nn.State]:
        h, state = self.norm(self.hidden(x), state)
        h = self.dropout(jax.nn.relu(h), key=key)
        return self.out(h), state


def make_model(seed: int) -> tuple[MLP, dict[str, Any]]:
    """The model and optimeta's initial state: the dropout key and the BatchNorm state."""
    model, bn_state = eqx.nn.make_with_state(MLP)(jax.random.PRNGKey(seed))
    return model, {"key": jax.random.PRNGKey(seed + 1000), "bn": bn_state}


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic regression set in float32: y = sin(x0) + 0.5 x1 x2 - 0.3 x3^2 + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 3] ** 2 + 0.05 * rng.normal(size=n)
    return x.astype(np.float32), y[:, None].astype(np.float32)


def minibatches(x: np.ndarray, y: np.ndarray, size: int = BATCH) -> list[Batch]:
    return [(jnp.asarray(x[i : i + size]), jnp.asarray(y[i : i + size])) for i in range(0, len(x), size)]


def loss(model: MLP, batch: Batch, state: dict[str, Any]) -> tuple[jax.Array, dict[str, Any]]:
    """Training loss (mean squared error under dropout) and the advanced state."""
    x, y = batch
    key, sub = jax.random.split(state["key"])
    keys = jax.random.split(sub, x.shape[0])  # one dropout key per example
    batched = jax.vmap(model, axis_name="batch", in_axes=(0, None, 0), out_axes=(0, None))
    predicted, bn_state = batched(x, state["bn"], keys)
    return jnp.mean((predicted - y) ** 2), {"key": key, "bn": bn_state}


def evaluate(model: MLP, bn_state: eqx.nn.State, x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error in inference mode: no dropout, BatchNorm's running statistics."""
    frozen = eqx.nn.inference_mode(model)
    batched = jax.vmap(frozen, axis_name="batch", in_axes=(0, None, None), out_axes=(0, None))
    predicted, _ = batched(jnp.asarray(x), bn_state, None)
    return float(jnp.mean((predicted - y) ** 2))


def main(epochs: int = 20, seed: int = 0) -> dict[str, Any]:
    """Train with AdamW, evaluate in inference mode, and collect BFGS's refusal."""
    model, state = make_model(seed)
    train, test = make_data(512, seed), make_data(256, seed + 1)
    batches = minibatches(*train)
    prob = om.OptimizationProblem(loss, model, state=state, grad="jax")
    sol = om.solve(prob, om.AdamW(lr=LR, weight_decay=WEIGHT_DECAY), data=batches, epochs=epochs)

    calls = 0

    def counted(u: MLP, batch: Batch, state: dict[str, Any]) -> tuple[jax.Array, dict[str, Any]]:
        nonlocal calls
        calls += 1
        return loss(u, batch, state)

    try:
        om.solve(om.OptimizationProblem(counted, model, state=state, grad="jax"), om.BFGS())
        refusal = ""
    except om.IncompatibleAlgorithmError as exc:
        refusal = str(exc)
    return {
        "solution": sol,
        "model": sol.u,
        "state": sol.state,
        "batches": batches,
        "train_loss": sol.objective,
        "test_mse_untrained": evaluate(model, state["bn"], *test),
        "test_mse": evaluate(sol.u, sol.state["bn"], *test),
        "test_variance": float(np.var(test[1])),
        "bfgs_error": refusal,
        "bfgs_calls": calls,
    }


if __name__ == "__main__":
    out = main()
    sol = out["solution"]
    print(f"AdamW: {sol.stats.iterations} steps, {sol.stats.fevals} objective calls, {sol.stats.time:.2f} s")
    steps = out["state"]["bn"].get(sol.u.norm.batch_counter)
    print(f"parameters stay {sol.u.hidden.weight.dtype}; BatchNorm state advanced {steps} times")
    print(f"last training loss (with dropout): {out['train_loss']:.4f}")
    print(
        f"test MSE in inference mode: {out['test_mse']:.4f} (untrained {out['test_mse_untrained']:.4f}, "
        f"variance of y {out['test_variance']:.4f})"
    )
    print(f"\nsolve(prob, BFGS()) made {out['bfgs_calls']} calls of f and says:\n" + out["bfgs_error"])
