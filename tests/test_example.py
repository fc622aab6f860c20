"""The stateful MLP example runs, learns, and returns its trained state."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from autograd.tracer import Box
from examples_loader import load_example

import optimeta as om


@pytest.fixture(scope="module")
def mlp() -> ModuleType:
    return load_example("stateful_mlp")


@pytest.fixture(scope="module")
def result(mlp: ModuleType) -> dict:
    return mlp.main(maxiters=300, seed=0)


def test_state_advanced_once_per_step(result: dict) -> None:
    sol = result["solution"]
    assert sol.stats.iterations == sol.stats.fevals == 300
    assert result["state"]["key"] == 300
    assert sol.retcode is om.ReturnCode.MAXITERS


def test_running_statistics_are_plain_and_learned(result: dict, mlp: ModuleType) -> None:
    state = result["state"]
    for name in ("mean", "var"):
        assert type(state[name]) is np.ndarray and not isinstance(state[name], Box)
        assert state[name].shape == (mlp.HIDDEN,) and np.isfinite(state[name]).all()
    # BatchNorm started at mean 0 / var 1: the trained statistics moved away from them.
    assert not np.allclose(state["var"], 1.0)


def test_model_learns_in_inference_mode(result: dict) -> None:
    assert result["test_mse"] < 0.25 * result["test_variance"]
    assert result["test_mse"] < 0.25 * result["test_mse_untrained"]


def test_inference_uses_the_trained_state(result: dict, mlp: ModuleType) -> None:
    x, y = mlp.make_data(256, 1)
    with_initial, _ = mlp.forward(result["params"], x, mlp.init_state(0), training=False)
    assert np.mean((with_initial - y) ** 2) > result["test_mse"]


def test_bfgs_refusal_is_shown(result: dict) -> None:
    text = result["bfgs_error"]
    # The dropout key makes the loss noisy: BFGS's line search cannot take it.
    assert "tolerates_stochastic_loss" in text and "state evolves" in text
    accepted = next(line for line in text.splitlines() if line.startswith("Algorithms that accept"))
    names = accepted.split(":", 1)[1].strip(" .").split(", ")
    assert "Adam" in names and "SGD" in names and "OLBFGS" in names and "BFGS" not in names


def test_batchnorm_bfgs_advances_statistics_once_per_iteration() -> None:
    out = load_example("batchnorm_bfgs").main(seed=0)
    sol = out["solution"]
    assert sol.retcode is om.ReturnCode.SUCCESS
    assert out["updates"] == sol.stats.iterations > 0
    assert sol.stats.fevals > sol.stats.iterations, "the line search made trial calls"
    assert out["test_mse"] < 0.05 * out["test_variance"]
    for name in ("mean", "var"):
        assert type(sol.state[name]) is np.ndarray and np.isfinite(sol.state[name]).all()


def test_ode_fit_recovers_parameters_and_shows_the_mutation_error() -> None:
    module = load_example("ode_fit")
    out = module.main()
    sol = out["solution"]
    assert sol.retcode is om.ReturnCode.SUCCESS
    assert out["r"] == pytest.approx(module.TRUE["r"], rel=1e-4)
    assert out["K"] == pytest.approx(module.TRUE["K"], rel=1e-4)
    assert sol.state == {"scale": 100.0}
    assert out["error"].startswith("call 1 of f changed state['scale']")
