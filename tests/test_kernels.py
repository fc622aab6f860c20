"""The fused kernels (numba) and the NumPy path give the same iterates, bit for bit; the run's
memory is recycled only once nothing views it."""

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
        x, mu, nu = _kernels.adam_step(x, g, mu, nu, lr / (1 - b1**t), b1, b2, 1 - b2**t, eps, fused=fused)
    return x, mu, nu


@pytest.mark.needs("numba")
def test_numba_is_installed_for_the_fused_path() -> None:
    assert _kernels.have_numba(), "the bench extra installs numba; the fused path must be tested"


@pytest.mark.needs("numba")
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


@pytest.mark.needs("numba")
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
        x, velocity = _kernels.momentum_step(x, g, velocity, 0.01, 0.9, nesterov, fused=fused)
    return x, velocity


@pytest.mark.needs("numba")
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


# -- the run's memory (Recycler) ---------------------------------------------------------------

N = _kernels.RECYCLE_MIN_SIZE


def test_reference_counts_are_calibrated_on_this_interpreter() -> None:
    assert _kernels._NO_VIEW is not None


def _chain(keep_every: int, steps: int = 6) -> tuple[list[float], set[int], np.ndarray]:
    """Iterates y_{k+1} = y_k + 1 through one recycler; views of every `keep_every`-th are kept."""
    recycler, y, kept, buffers = _kernels.Recycler(), np.zeros(N), [], set()
    for k in range(steps):
        if keep_every and k % keep_every == 0:
            kept.append(y[5:9])  # a slice of the iterate, kept as a user's state might keep u
        new = recycler.take(y)
        np.add(y, 1.0, out=new)
        y = new
        buffers.add(y.__array_interface__["data"][0])
    return [float(v[0]) for v in kept], buffers, y


def test_an_array_that_is_still_viewed_is_never_handed_out() -> None:
    for keep_every in (1, 2, 3):
        kept, _, y = _chain(keep_every)
        assert kept == [float(k) for k in range(0, 6, keep_every)]
        assert y[0] == 6.0


def test_two_buffers_alternate_when_nothing_else_is_kept() -> None:
    _, buffers, _ = _chain(keep_every=0)
    assert len(buffers) == 2


def test_the_callers_array_is_never_handed_out() -> None:
    x0 = np.arange(float(N))
    before = x0.tobytes()
    recycler = _kernels.Recycler()
    out = recycler.take(x0)
    out[:] = -1.0
    assert not np.shares_memory(out, x0)
    assert x0.tobytes() == before
    assert not np.shares_memory(recycler.take(x0), out)  # out is still viewed


def test_small_vectors_get_fresh_memory() -> None:
    recycler, y = _kernels.Recycler(), np.zeros(N - 1)
    first = recycler.take(y)
    assert first.base is None
    assert recycler._buffers == []


def test_the_pool_is_bounded_and_lets_go_of_the_oldest() -> None:
    recycler, y = _kernels.Recycler(), np.zeros(N)
    held = [recycler.take(y) for _ in range(_kernels._POOL_SIZE + 3)]
    assert len(recycler._buffers) == _kernels._POOL_SIZE
    for i, a in enumerate(held):
        a[:] = i
    assert [float(a[0]) for a in held] == [float(i) for i in range(len(held))]


def test_a_copied_or_pickled_state_holds_no_claim_on_the_runs_memory() -> None:
    import copy
    import pickle

    adam = om.Adam(lr=0.1)
    state = adam.init(np.zeros(N))
    _, state = adam.update(np.ones(N), np.zeros(N), state)
    for clone in (copy.deepcopy(state), pickle.loads(pickle.dumps(state))):
        assert clone.spare._buffers == []
        np.testing.assert_array_equal(clone.mu, state.mu)


@pytest.mark.parametrize(
    "alg",
    [om.Adam(lr=0.05), om.SGD(lr=0.01), om.SGD(lr=0.01, momentum=0.9), om.SGD(lr=0.01, momentum=0.9, nesterov=True)],
    ids=["Adam", "SGD", "SGD-momentum", "SGD-Nesterov"],
)
@pytest.mark.parametrize("fused", [False, True])
def test_iterates_kept_in_the_users_state_survive_recycling(
    alg: om.Adam | om.SGD, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The state keeps every u it is called with (the driver's iterates): recycling must leave
    # each one as it was, and give the same run as fresh memory every step.
    if fused and not _kernels.have_numba():
        pytest.skip("numba is not installed (pip install numba): the fused kernels are not used")

    def loss(u: np.ndarray, p: None, history: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
        return float(np.sum((u - 1.0) ** 2)), [*history, u]

    def grad(u: np.ndarray, p: None, history: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        return 2.0 * (u - 1.0), [*history, u]

    prob = om.OptimizationProblem(loss, np.zeros(N), grad=grad, state=[])
    if fused:
        monkeypatch.setattr(_kernels, "FUSED_MIN_SIZE", 1)
    recycled = om.solve(prob, alg, maxiters=8)
    monkeypatch.setattr(_kernels, "_NO_VIEW", None)
    fresh = om.solve(prob, alg, maxiters=8)
    assert len(recycled.state) == 8
    assert [u.tobytes() for u in recycled.state] == [u.tobytes() for u in fresh.state]
    assert recycled.u.tobytes() == fresh.u.tobytes()
    assert len({float(u[0]) for u in recycled.state}) == 8  # eight different iterates were kept


@pytest.mark.needs("numba")
@pytest.mark.parametrize("stochastic", [True, False], ids=["stochastic", "deterministic"])
def test_a_long_fused_run_allocates_nothing_after_its_first_steps(
    stochastic: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The driver donates its iterate and state: the moments are updated in place. A stochastic
    # run keeps no earlier iterate, so the iterate is updated in place too, in one buffer. A
    # deterministic one keeps its best iterate and the one its last loss was computed at (the
    # partial solution, should f raise), by views, and cycles through four buffers. None is
    # allocated after the first steps.
    monkeypatch.setattr(_kernels, "FUSED_MIN_SIZE", 1)
    seen: set[int] = set()
    allocations: list[int] = []
    real_take, real_empty_like = _kernels.Recycler.take, np.empty_like

    def take(self: _kernels.Recycler, like: np.ndarray) -> np.ndarray:
        monkeypatch.setattr(_kernels.np, "empty_like", lambda a: allocations.append(1) or real_empty_like(a))
        try:
            result = real_take(self, like)
        finally:
            monkeypatch.setattr(_kernels.np, "empty_like", real_empty_like)
        seen.add(result.__array_interface__["data"][0])
        return result

    monkeypatch.setattr(_kernels.Recycler, "take", take)
    prob = om.OptimizationProblem(
        lambda u, p: float(np.sum((u - 1.0) ** 2)),
        np.zeros(N),
        grad=lambda u, p: 2 * (u - 1.0),
        stochastic=stochastic,
    )
    sol = om.solve(prob, om.Adam(lr=0.05), maxiters=30)
    assert sol.stats.iterations == 30
    expected = 1 if stochastic else 4
    assert (len(allocations), len(seen)) == (expected, expected)
