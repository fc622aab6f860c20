"""A torch ``nn.Module`` trained with ``grad="torch"``, its buffers in the state (the
``torch.func.functional_call`` pattern): every tensor of the state, the 0-d ones included
(BatchNorm's ``num_batches_tracked``), reaches ``f`` as a tensor on every call, and the run is
the module's own training loop with ``torch.optim.Adam``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import optimeta as om


def _model_and_data() -> tuple[Any, Any, Any]:
    import torch

    torch.manual_seed(0)
    # No bias before the BatchNorm (as usual: it would cancel): in train mode its gradient is 0
    # but for rounding, which Adam would normalise into steps of size lr, the same in no two codes.
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4, bias=False), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1)
    ).double()
    x = torch.randn(32, 3, dtype=torch.float64)
    y = torch.sin(x.sum(dim=1))
    return model, x, y


@pytest.mark.needs("torch")
def test_a_batchnorm_module_trains_with_its_buffers_in_the_state() -> None:
    import torch
    from torch.func import functional_call

    model, x, y = _model_and_data()
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    assert buffers["1.num_batches_tracked"].ndim == 0  # the 0-d tensor of the bug
    seen: list[dict[str, str]] = []

    def loss(u: dict[str, Any], p: Any, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        seen.append({name: type(value).__name__ for name, value in state.items()})
        state = {name: value.clone() for name, value in state.items()}  # BatchNorm updates them in place
        out = functional_call(model, (u, state), (x,))
        return torch.mean((out.squeeze(-1) - y) ** 2), {name: value.detach() for name, value in state.items()}

    prob = om.OptimizationProblem(
        loss,
        {name: t.numpy() for name, t in params.items()},
        state={name: t.numpy() for name, t in buffers.items()},
        grad="torch",
    )
    steps = 5
    sol = om.solve(prob, om.Adam(lr=0.01), maxiters=steps)
    assert len(seen) == steps
    assert all(set(types.values()) == {"Tensor"} for types in seen)

    # The module's own loop: train mode, torch.optim.Adam on the same parameters.
    reference = model
    opt = torch.optim.Adam(reference.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        torch.mean((reference(x).squeeze(-1) - y) ** 2).backward()
        opt.step()
    for name, p in reference.named_parameters():
        np.testing.assert_allclose(sol.u[name], p.detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=name)
    for name, b in reference.named_buffers():
        np.testing.assert_allclose(np.asarray(sol.state[name]), b.numpy(), rtol=1e-12, atol=1e-14)
    assert int(sol.state["1.num_batches_tracked"]) == steps
