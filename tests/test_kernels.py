"""The fused Adam kernel (numba) and the NumPy in-place path give the same iterates, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import optimeta as om
from optimeta.backends import _kernels


def _run(fused: bool, size: int, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x, mu, nu = rng.normal(size=size), np.zeros(size), np.zeros(size)
    b1, b2, lr, eps = 0.9, 0.999, 1e-2, 1e-8
    for t in range(1, steps + 1):
        g = rng.normal(size=size) * 10.0 ** rng.integers(-3, 4, size=size)
        x = _kernels.adam_step(x, g, mu, nu, lr / (1 - b1**t), b1, b2, 1 - b2**t, eps, fused=fused)
    return x, mu, nu


def test_numba_is_installed_for_the_fused_path() -> None:
    assert _kernels.have_numba(), "the bench extra installs numba; the fused path must be tested"


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_fused_and_numpy_paths_agree_bitwise(size: int) -> None:
    numpy_run, fused_run = _run(False, size, 25), _run(True, size, 25)
    for a, b in zip(numpy_run, fused_run):
        assert a.tobytes() == b.tobytes()


def test_adam_update_matches_the_textbook_formula() -> None:
    rng = np.random.default_rng(2)
    x, g = rng.normal(size=50), rng.normal(size=50)
    adam = om.Adam(lr=0.1, b1=0.8, b2=0.99, eps=1e-6)
    state = adam.init(x)
    m, v, y = np.zeros(50), np.zeros(50), x.copy()
    for t in range(1, 4):
        y_new, state = adam.update(g, y, state)
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        expected = y - 0.1 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-6)
        np.testing.assert_allclose(y_new, expected, rtol=1e-13, atol=1e-15)
        y = y_new
    assert state.step == 3


def test_large_problems_take_the_fused_path_and_keep_iterates(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lower the threshold so that a small solve goes through numba, then compare with NumPy.
    prob = om.OptimizationProblem(
        lambda u, p: float(np.sum((u - 1.0) ** 2)), np.zeros(64), grad=lambda u, p: 2 * (u - 1.0)
    )
    numpy_sol = om.solve(prob, om.Adam(lr=0.05), maxiters=40)
    monkeypatch.setattr(_kernels, "FUSED_MIN_SIZE", 1)
    fused_sol = om.solve(prob, om.Adam(lr=0.05), maxiters=40)
    assert fused_sol.u.tobytes() == numpy_sol.u.tobytes()


def _run_momentum(fused: bool, size: int, steps: int, nesterov: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x, velocity = rng.normal(size=size), np.zeros(size)
    for _ in range(steps):
        g = rng.normal(size=size) * 10.0 ** rng.integers(-3, 4, size=size)
        x = _kernels.momentum_step(x, g, velocity, 0.01, 0.9, nesterov, fused=fused)
    return x, velocity


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("size", [1, 1000])
def test_fused_and_numpy_momentum_agree_bitwise(size: int, nesterov: bool) -> None:
    for a, b in zip(_run_momentum(False, size, 25, nesterov), _run_momentum(True, size, 25, nesterov)):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_the_textbook_formula(nesterov: bool) -> None:
    rng = np.random.default_rng(4)
    x, g = rng.normal(size=20), rng.normal(size=20)
    sgd = om.SGD(lr=0.1, momentum=0.5, nesterov=nesterov)
    state, v, y = sgd.init(x), np.zeros(20), x.copy()
    for _ in range(3):
        y_new, state = sgd.update(g, y, state)
        v = 0.5 * v + g
        expected = y - 0.1 * ((g + 0.5 * v) if nesterov else v)
        np.testing.assert_allclose(y_new, expected, rtol=1e-14, atol=1e-15)
        y = y_new
