"""The torch module example (examples/torch_module.py) is torch's own training loop: the module in
train mode, ``torch.optim.AdamW`` on its parameters, the same minibatches and the same dropout
masks from the same seeds give the same losses, parameters and BatchNorm buffers, in float64."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from examples_loader import load_example

import optimeta as om

pytestmark = pytest.mark.needs("torch")

EPOCHS, SEED = 20, 3


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """torch's intra-op threads spin on a busy machine (tens of times slower for these tiny
    tensors); one thread keeps the file fast, and both loops below run under it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ex() -> ModuleType:
    return load_example("torch_module")


@pytest.fixture(scope="module")
def result(ex: ModuleType, _one_thread: None) -> dict[str, Any]:
    return ex.main(epochs=EPOCHS, seed=SEED)


@pytest.fixture(scope="module")
def reference(ex: ModuleType, result: dict[str, Any]) -> tuple[Any, list[float]]:
    """torch's loop: a fresh module in train mode, torch.optim.AdamW, step i's mask drawn from a
    generator seeded with SEED + i."""
    import torch

    model = ex.make_model(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=ex.LR, weight_decay=ex.WEIGHT_DECAY)
    model.train()
    losses = []
    for step in range(EPOCHS * len(result["batches"])):
        x, y = result["batches"][step % len(result["batches"])]
        opt.zero_grad()
        loss = torch.mean((model(x, torch.Generator().manual_seed(SEED + step)) - y) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


def test_the_run_is_torchs_adamw_loop(result: dict[str, Any], reference: tuple[Any, list[float]]) -> None:
    model, losses = reference
    sol = result["solution"]
    assert sol.objective == pytest.approx(losses[-1], rel=1e-10, abs=0)
    assert abs(losses[-1] - losses[0]) > 0.1 * losses[0], "the loss moved: the comparison is not vacuous"
    for name, p in model.named_parameters():
        assert not np.allclose(p.detach().numpy(), result["u0"][name]), f"{name} did not train"
        np.testing.assert_allclose(sol.u[name], p.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    for name, b in model.named_buffers():
        if b.is_floating_point():
            np.testing.assert_allclose(sol.state[name], b.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
        else:
            assert int(sol.state[name]) == int(b) == len(losses), name


def test_the_state_advanced_once_per_step(ex: ModuleType, result: dict[str, Any]) -> None:
    sol, steps = result["solution"], EPOCHS * len(result["batches"])
    assert sol.retcode is om.ReturnCode.MAXITERS
    assert sol.stats.iterations == sol.stats.fevals == steps
    assert sol.state[ex.SEED_KEY] == SEED + steps and type(sol.state[ex.SEED_KEY]) is int
    assert int(sol.state["bn.num_batches_tracked"]) == steps
    for name in ("bn.running_mean", "bn.running_var"):
        assert type(sol.state[name]) is np.ndarray and np.isfinite(sol.state[name]).all()
        assert not np.allclose(sol.state[name], result["state0"][name]), f"{name} did not move"


def test_the_mask_is_the_states(ex: ModuleType, result: dict[str, Any]) -> None:
    """f reads no hidden randomness: one state, one loss; the next seed, another mask."""
    import torch

    model, batch = ex.make_model(SEED), result["batches"][0]
    f = ex.make_loss(model)
    u = {name: torch.from_numpy(a.copy()) for name, a in result["u0"].items()}

    def call(seed: int) -> tuple[float, dict[str, Any]]:
        state = {
            name: torch.from_numpy(np.array(a)) if name != ex.SEED_KEY else seed for name, a in result["state0"].items()
        }
        loss, new_state = f(u, batch, state)
        return loss.item(), new_state

    rng = torch.get_rng_state()
    (first, new_state), (again, _) = call(SEED), call(SEED)
    assert torch.equal(torch.get_rng_state(), rng), "f drew from torch's global RNG"
    assert first == again and new_state[ex.SEED_KEY] == SEED + 1
    assert call(SEED + 1)[0] != first


def test_bfgs_is_refused_before_any_call(result: dict[str, Any]) -> None:
    assert result["bfgs_calls"] == 0
    text = result["bfgs_error"]
    assert "the objective was not called" in text
    assert "tolerates_stochastic_loss" in text and "state evolves" in text
    accepted = next(line for line in text.splitlines() if line.startswith("Algorithms that accept"))
    assert "AdamW" in accepted and "BFGS" not in accepted.split(":", 1)[1].split(", ")


def test_the_trained_model_does_better_in_eval_mode(ex: ModuleType, result: dict[str, Any]) -> None:
    sol, test = result["solution"], result["test"]
    assert result["test_mse"] < 0.5 * result["test_mse_untrained"]
    assert result["test_mse"] < 0.5 * result["test_variance"]
    # Eval mode uses the trained running statistics: the initial ones do worse.
    assert ex.evaluate(result["model"], sol.u, result["state0"], *test) > 1.5 * result["test_mse"]
