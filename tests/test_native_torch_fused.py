"""The native torch path's fused pass: a large CPU tensor of `Adam` or `SGD` (momentum) is updated
by the NumPy path's fused kernel on the tensor's own memory (`optimeta.backends._fused`).

With numba installed, a leaf of `FUSED_MIN_SIZE` parameters or more takes the pass, a small leaf
and an algorithm without one (`RMSProp`) do not; float64 runs equal the runs on torch's operators
to 1e-12 (a rounding apart), float32 ones stay float32 and agree to their rounding; the memory the pass recycles
is never one a tensor still in use views (the user's ``u0``, the iterates a callback keeps, a
checkpoint's arrays); a pickled checkpoint resumes bitwise.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from leaves import fingerprint, host

import optimeta as om
import optimeta._native_torch as native_torch
from optimeta._native_base import NativeState
from optimeta.backends._kernels import FUSED_MIN_SIZE, have_numba

torch = pytest.importorskip("torch", reason="the native torch path needs torch (pip install 'optimeta[torch]')")
pytestmark = pytest.mark.skipif(not have_numba(), reason="the fused pass needs numba (pip install 'optimeta[fast]')")

SHAPE = (400, 300)  # 120,000 parameters: a leaf that takes the pass
assert SHAPE[0] * SHAPE[1] >= FUSED_MIN_SIZE
RNG = np.random.default_rng(3)
T = {"w": RNG.normal(size=SHAPE), "b": RNG.normal(size=7)}
U0 = {"w": RNG.normal(size=SHAPE) * 0.1, "b": np.zeros(7)}
N = 12

FUSED = [
    pytest.param(om.Adam(lr=0.01), id="Adam"),
    pytest.param(om.SGD(lr=0.01, momentum=0.9), id="SGD-momentum"),
    pytest.param(om.SGD(lr=0.01, momentum=0.9, nesterov=True), id="SGD-nesterov"),
]


def loss(u: Any, p: Any) -> Any:
    """sum (w - t)^2 + 0.1 sum sin w + sum (b - t_b)^2, t as tensors of u's dtype."""
    w, b = u["w"], u["b"]
    tw, tb = (torch.as_tensor(p[k], dtype=w.dtype) for k in ("w", "b"))
    return torch.sum((w - tw) ** 2) + 0.1 * torch.sum(torch.sin(w)) + torch.sum((b - tb) ** 2)


def problem(dtype: Any = np.float64, tensors: bool = False) -> om.OptimizationProblem:
    u0: dict[str, Any] = {k: v.astype(dtype) for k, v in U0.items()}
    if tensors:
        u0 = {k: torch.tensor(v) for k, v in u0.items()}
    return om.OptimizationProblem(loss, u0, p=T, grad="torch")


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shapes of the flat iterates the fused pass is given, one entry per pass."""
    seen: list[tuple[int, ...]] = []
    real = native_torch.fused_update

    def spy(alg: Any, memory: Any, grad: Any, x: Any, slots: Any, step: int) -> Any:
        seen.append(x.shape)
        return real(alg, memory, grad, x, slots, step)

    monkeypatch.setattr(native_torch, "fused_update", spy)
    return seen


def without_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_torch, "fused_memory", lambda alg, size, dtype: None)


@pytest.mark.parametrize("alg", FUSED)
def test_a_large_leaf_takes_the_pass_and_a_small_one_does_not(alg: Any, passes: list[Any]) -> None:
    sol = om.solve(problem(), alg, maxiters=N)
    assert type(sol.opt_state) is NativeState
    assert passes == [(SHAPE[0] * SHAPE[1],)] * N


def test_an_algorithm_without_a_pass_uses_torchs_operators(passes: list[Any]) -> None:
    om.solve(problem(), om.RMSProp(lr=0.01), maxiters=N)
    assert passes == []


def close(got: Any, want: Any, rtol: float = 1e-12, atol: float = 1e-14) -> None:
    for k in ("w", "b"):
        np.testing.assert_allclose(host(got[k]), host(want[k]), rtol=rtol, atol=atol)


@pytest.mark.parametrize("alg", FUSED)
def test_float64_agrees_with_the_run_on_torchs_operators(alg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not bitwise: torch divides by a scalar as a product with its reciprocal, NumPy and the
    # fused pass divide (the pass is bitwise the NumPy path's, see test_kernels).
    fused = om.solve(problem(), alg, maxiters=N)
    without_pass(monkeypatch)
    plain = om.solve(problem(), alg, maxiters=N)
    close(fused.u, plain.u)
    assert fused.u["w"].dtype == np.float64
    counts = [(sol.stats.iterations, sol.stats.fevals, sol.stats.gevals) for sol in (fused, plain)]
    assert counts == [(N, N + 1, N)] * 2  # N steps, and the final loss evaluated once more


@pytest.mark.parametrize("alg", FUSED)
def test_float32_stays_float32_and_agrees_to_its_rounding(alg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    dtypes: list[Any] = []
    fused = om.solve(
        problem(np.float32, tensors=True), alg, maxiters=N, callback=lambda i: dtypes.append(i.u["w"].dtype)
    )
    assert dtypes == [torch.float32] * N and fused.u["w"].dtype == torch.float32
    assert all(host(a).dtype == np.float32 for slot in fused.opt_state.slots for a in slot)
    without_pass(monkeypatch)
    plain = om.solve(problem(np.float32, tensors=True), alg, maxiters=N)
    close(fused.u, plain.u, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alg", FUSED)
def test_no_tensor_in_use_is_written_over(alg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    prob = problem(tensors=True)
    before = fingerprint(prob.u0)
    kept: list[tuple[Any, bytes]] = []  # each iterate the callback was shown, and its bytes then
    sol = om.solve(prob, alg, maxiters=N, callback=lambda info: kept.append((info.u["w"], host(info.u["w"]).tobytes())))
    assert fingerprint(prob.u0) == before
    assert [host(u).tobytes() for u, _ in kept] == [b for _, b in kept]
    without_pass(monkeypatch)
    plain = om.solve(prob, alg, maxiters=N)
    close(sol.u, plain.u)


@pytest.mark.parametrize("alg", FUSED)
def test_a_pickled_checkpoint_resumes_bitwise(alg: Any, passes: list[Any]) -> None:
    straight = om.solve(problem(), alg, maxiters=N)
    solver = om.init(problem(), alg, maxiters=N)
    for _ in range(N // 2):
        solver.step()
    checkpoint = solver.checkpoint()
    arrays = [a for a in checkpoint.opt_state if isinstance(a, np.ndarray)]
    saved = fingerprint(arrays)
    solver.solve()  # the checkpoint's arrays are its own: the run going on writes none of them
    assert arrays and fingerprint(arrays) == saved
    resumed = om.resume(pickle.loads(pickle.dumps(checkpoint)), problem()).solve()
    assert fingerprint(resumed.u, resumed.objective) == fingerprint(straight.u, straight.objective)
    assert len(passes) == N + N + N // 2  # the straight run, the stepped one, the resumed half
