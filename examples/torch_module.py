"""Train a torch ``nn.Module`` with Dropout and BatchNorm1d, its state explicit, with AdamW.

The pattern (``grad="torch"``): the module's parameters are ``u`` (a dict of arrays), its
buffers are the state, and ``f`` runs the module with ``torch.func.functional_call(model,
(u, buffers), inputs)``, so the module itself holds nothing that changes between calls.

* BatchNorm's buffers (``running_mean``, ``running_var``, ``num_batches_tracked``) reach ``f``
  as tensors (copies, which BatchNorm updates in place) and go back to optimeta detached.
* ``nn.Dropout`` draws its mask from torch's global RNG, a hidden state. Here the mask is drawn
  from a ``torch.Generator`` seeded with an integer of the state, which ``f`` advances once per
  call: every call's mask is determined by the state it receives.

``solve`` runs AdamW over the minibatches (``data=``), one call of ``f`` per step, and returns
the trained parameters *and* buffers, with which the model is evaluated in eval mode (running
statistics, no dropout). BFGS, whose line search compares exact values, is refused even on the
full batch (the state's seed drives the loss), before ``f`` is ever called.

Run ``python examples/torch_module.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

import optimeta as om

HIDDEN = 32
DROPOUT = 0.1
BATCH = 32
LR = 1e-2
WEIGHT_DECAY = 1e-2
SEED_KEY = "dropout_seed"  # the state's integer next to the module's buffers


class SeededDropout(torch.nn.Dropout):
    """``nn.Dropout`` whose training-mode mask comes from the generator it is given."""

    def forward(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return h
        keep = torch.rand(h.shape, generator=generator, dtype=h.dtype) >= self.p
        return h * keep / (1.0 - self.p)


class Net(torch.nn.Module):
    """linear -> BatchNorm1d -> ReLU -> dropout -> linear (no bias before the BatchNorm: it
    would cancel, with a gradient of rounding noise that Adam would blow up into steps)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, HIDDEN, bias=False)
        self.bn = torch.nn.BatchNorm1d(HIDDEN)
        self.dropout = SeededDropout(DROPOUT)
        self.out = torch.nn.Linear(HIDDEN, 1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h = torch.relu(self.bn(self.hidden(x)))
        return self.out(self.dropout(h, generator)).squeeze(-1)


def make_model(seed: int) -> Net:
    torch.manual_seed(seed)  # the initial weights only; no call of f reads the global RNG
    return Net().double()


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic regression set: y = sin(x0) + 0.5 x1 x2 - 0.3 x3^2 + noise, in float64."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 3] ** 2 + 0.05 * rng.normal(size=n)
    return torch.from_numpy(x), torch.from_numpy(y)


def initial_state(model: torch.nn.Module, seed: int) -> dict[str, Any]:
    """The module's buffers as arrays, and the seed of the first call's dropout mask."""
    state: dict[str, Any] = {name: b.detach().numpy().copy() for name, b in model.named_buffers()}
    state[SEED_KEY] = seed
    return state


def make_loss(model: torch.nn.Module) -> Callable[..., tuple[torch.Tensor, dict[str, Any]]]:
    """``f(u, batch, state) -> (loss, new_state)``: the mean squared error in train mode."""

    def loss(u: dict[str, torch.Tensor], batch: Any, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        x, y = batch
        buffers = {name: value for name, value in state.items() if name != SEED_KEY}
        generator = torch.Generator().manual_seed(state[SEED_KEY])
        model.train()
        out = functional_call(model, (u, buffers), (x,), {"generator": generator})
        new_state: dict[str, Any] = {name: value.detach() for name, value in buffers.items()}
        new_state[SEED_KEY] = state[SEED_KEY] + 1
        return torch.mean((out - y) ** 2), new_state

    return loss


def evaluate(model: torch.nn.Module, params: dict[str, Any], state: dict[str, Any], x: Any, y: Any) -> float:
    """Mean squared error in eval mode: the given running statistics, no dropout."""
    tensors = {name: torch.as_tensor(value) for name, value in {**params, **state}.items() if name != SEED_KEY}
    model.eval()
    with torch.no_grad():
        out = functional_call(model, tensors, (x,))
    return float(torch.mean((out - y) ** 2))


def main(epochs: int = 20, seed: int = 0, lr: float = LR, weight_decay: float = WEIGHT_DECAY) -> dict[str, Any]:
    """Train with AdamW, evaluate in eval mode, and collect the error BFGS raises."""
    model = make_model(seed)
    train, test = make_data(256, seed), make_data(256, seed + 1)
    batches = [(train[0][i : i + BATCH], train[1][i : i + BATCH]) for i in range(0, len(train[0]), BATCH)]
    u0 = {name: p.detach().numpy().copy() for name, p in model.named_parameters()}
    state0 = initial_state(model, seed)
    loss = make_loss(model)
    prob = om.OptimizationProblem(loss, u0, state=state0, grad="torch")
    sol = om.solve(prob, om.AdamW(lr=lr, weight_decay=weight_decay), data=batches, epochs=epochs)

    calls = 0  # BFGS on the full batch, f counted

    def counted(u: Any, batch: Any, state: Any) -> Any:
        nonlocal calls
        calls += 1
        return loss(u, batch, state)

    try:
        om.solve(om.OptimizationProblem(counted, u0, p=train, state=state0, grad="torch"), om.BFGS())
        refusal = ""
    except om.IncompatibleAlgorithmError as exc:
        refusal = str(exc)
    return {
        "solution": sol,
        "model": model,
        "batches": batches,
        "test": test,
        "u0": u0,
        "state0": state0,
        "test_mse_untrained": evaluate(model, u0, state0, *test),
        "test_mse": evaluate(model, sol.u, sol.state, *test),
        "test_variance": float(torch.var(test[1])),
        "bfgs_error": refusal,
        "bfgs_calls": calls,
    }


if __name__ == "__main__":
    out = main()
    sol = out["solution"]
    print(f"AdamW: {sol.stats.iterations} steps, {sol.stats.fevals} calls of f, {sol.stats.time:.2f} s")
    print(f"dropout seed: 0 -> {sol.state[SEED_KEY]}, batches tracked: {int(sol.state['bn.num_batches_tracked'])}")
    print(f"last training loss (train mode, dropout): {sol.objective:.4f}")
    print(
        f"test MSE in eval mode: {out['test_mse']:.4f} (untrained {out['test_mse_untrained']:.4f}, "
        f"variance of y {out['test_variance']:.4f})"
    )
    print(f"\nsolve(prob, BFGS()) made {out['bfgs_calls']} calls of f and says:\n" + out["bfgs_error"])
