"""The equinox MLP example against equinox's own training loop (optax.adamw, the same batches,
the same key threading): the same losses and parameters, in float32, the state advanced once
per step, BFGS refused before any call, and a model that learned."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest
from examples_loader import load_example

import optimeta as om

pytestmark = pytest.mark.needs("jax", "equinox", "optax")

EPOCHS = 5
SEED = 0


@pytest.fixture(scope="module")
def ex() -> ModuleType:
    return load_example("equinox_mlp")


@pytest.fixture(scope="module")
def result(ex: ModuleType) -> dict[str, Any]:
    return ex.main(epochs=EPOCHS, seed=SEED)


@pytest.fixture(scope="module")
def reference(ex: ModuleType) -> dict[str, Any]:
    """equinox's own loop: the example's model, loss and batches, optax.adamw, one jitted step."""
    import equinox as eqx
    import optax

    model, state = ex.make_model(SEED)
    batches = ex.minibatches(*ex.make_data(512, SEED))
    opt = optax.adamw(ex.LR, weight_decay=ex.WEIGHT_DECAY)
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model: Any, opt_state: Any, batch: Any, state: Any) -> tuple[Any, Any, Any, Any]:
        (loss, new_state), grads = eqx.filter_value_and_grad(ex.loss, has_aux=True)(model, batch, state)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), opt_state, new_state, loss

    losses, keys = [], []
    for _ in range(EPOCHS):
        for batch in batches:
            model, opt_state, state, loss = step(model, opt_state, batch, state)
            losses.append(float(loss))
            keys.append(np.asarray(state["key"]))
    return {"model": model, "state": state, "losses": losses, "keys": keys, "steps": EPOCHS * len(batches)}


def _parameters(tree: Any) -> list[np.ndarray]:
    import equinox as eqx
    import jax

    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))]


def _split_keys(seed: int, steps: int) -> list[np.ndarray]:
    """The dropout key after each step: split once per call, the first half kept."""
    import jax

    key, out = jax.random.PRNGKey(seed + 1000), []
    for _ in range(steps):
        key, _ = jax.random.split(key)
        out.append(np.asarray(key))
    return out


def test_final_loss_matches_equinox_loop(result: dict[str, Any], reference: dict[str, Any]) -> None:
    sol = result["solution"]
    assert sol.retcode is om.ReturnCode.MAXITERS
    assert sol.stats.iterations == sol.stats.fevals == reference["steps"]
    # The last step's loss (at the iterate before its update), float32 to rounding.
    assert sol.objective == pytest.approx(reference["losses"][-1], rel=1e-5)


def test_parameters_match_equinox_loop_in_float32(result: dict[str, Any], reference: dict[str, Any]) -> None:
    import equinox as eqx
    import jax

    ours, theirs = _parameters(result["model"]), _parameters(reference["model"])
    assert len(ours) == len(theirs) == 5  # hidden weight (no bias), BatchNorm weight and bias, out weight and bias
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
        # float32 rounding accumulated over the run (the bias corrections differ in the last
        # bits: optimeta computes 1 - b**k in float64, optax in float32): measured 5e-6 of the
        # leaf's scale. One step moves a parameter by up to lr = 1e-2; the weight decay's
        # lr * weight_decay * steps is 4e-3 of it.
        assert np.max(np.abs(a - b)) <= 2e-5 * np.max(np.abs(b))
    model = result["model"]
    assert type(model) is type(reference["model"])
    # The same structure and fixed leaves (activation, dropout rate, inference flags, state indices).
    fixed = [eqx.filter(tree, eqx.is_inexact_array, inverse=True) for tree in (model, reference["model"])]
    assert eqx.tree_equal(*fixed) is True
    params = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    assert all(isinstance(leaf, jax.Array) and leaf.dtype == np.float32 for leaf in params)  # as in u0
    assert model.dropout.p == 0.1 and model.norm.inference is False  # fixed leaves kept as given
    assert not jax.config.read("jax_enable_x64")


def test_state_advanced_once_per_step(ex: ModuleType, result: dict[str, Any], reference: dict[str, Any]) -> None:
    steps = reference["steps"]
    state = result["state"]
    expected = _split_keys(SEED, steps)
    np.testing.assert_array_equal(state["key"], expected[-1])
    np.testing.assert_array_equal(reference["keys"][-1], expected[-1])
    assert state["bn"].get(result["model"].norm.batch_counter) == steps
    ours = [np.asarray(v) for v in state["bn"].get(result["model"].norm.batch_state_index)]
    theirs = [np.asarray(v) for v in reference["state"]["bn"].get(reference["model"].norm.batch_state_index)]
    for a, b in zip(ours, theirs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_every_step_matches_equinox_loop(ex: ModuleType, reference: dict[str, Any]) -> None:
    """One epoch, watched by a callback: step i's key and loss are the reference's step i's; f
    sees the equinox module in float32, traced without jax's 64-bit mode."""
    import jax
    import jax.numpy as jnp

    seen: list[Any] = []

    def f(model: Any, batch: Any, state: Any) -> tuple[Any, Any]:
        seen.append((type(model), model.hidden.weight.dtype, jnp.asarray(1.0).dtype, batch[0].dtype))
        out: tuple[Any, Any] = ex.loss(model, batch, state)
        return out

    model, state = ex.make_model(SEED)
    batches = ex.minibatches(*ex.make_data(512, SEED))
    infos: list[om.IterationInfo] = []
    prob = om.OptimizationProblem(f, model, state=state, grad="jax")
    sol = om.solve(prob, om.AdamW(lr=ex.LR, weight_decay=ex.WEIGHT_DECAY), data=batches, callback=infos.append)
    n = len(batches)
    assert [info.iteration for info in infos] == list(range(1, n + 1)) and sol.stats.fevals == n
    for info, key in zip(infos, reference["keys"][:n]):
        np.testing.assert_array_equal(info.state["key"], key)
    losses = [info.objective for info in infos]
    np.testing.assert_allclose(losses, reference["losses"][:n], rtol=1e-5)
    assert losses[0] == pytest.approx(reference["losses"][0], rel=1e-6)  # the first step: one evaluation apart
    assert seen and all(s == (type(model), jnp.float32, jnp.float32, jnp.float32) for s in seen)
    assert len(seen) == 1, "f is traced once: one compiled step for the run"
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(sol.u) if hasattr(leaf, "dtype"))


def test_bfgs_refused_before_any_call(result: dict[str, Any]) -> None:
    assert result["bfgs_calls"] == 0
    text = result["bfgs_error"]
    assert text.startswith("BFGS") and "the objective was not called" in text
    assert "tolerates_stochastic_loss" in text
    accepted = next(line for line in text.splitlines() if line.startswith("Algorithms that accept"))
    names = accepted.split(":", 1)[1].strip(" .").split(", ")
    assert "AdamW" in names and "BFGS" not in names


def test_trained_model_is_better_in_inference_mode(ex: ModuleType, result: dict[str, Any]) -> None:
    assert result["test_mse"] < 0.5 * result["test_mse_untrained"]
    assert result["test_mse"] < 0.5 * result["test_variance"]
    # The trained running statistics matter: the trained weights with the initial BatchNorm
    # state do worse.
    x, y = ex.make_data(256, SEED + 1)
    _, initial = ex.make_model(SEED)
    assert ex.evaluate(result["model"], initial["bn"], x, y) > result["test_mse"]
