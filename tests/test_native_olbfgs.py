"""The native jax and torch paths of `OLBFGS` (`NativeJaxPairs`, `NativeTorchPairs`) against its NumPy path.

For a few configurations: the native step is built; its iterates equal the NumPy path's (autograd, the
same maths) step by step, float64 to 1e-12, float32 staying float32 to its rounding, pairs without
curvature dropped alike; a step calls ``f`` twice (counted twice), both with the committed state, and
commits the state returned at the new iterate; inputs are not mutated; a non-finite first or second
evaluation ends the run, or is skipped, as on NumPy; a pickled checkpoint resumes bitwise; a jax pytree
comes back as itself; maximising is minimising ``-f``. Shared runs are made once (`run`): jax compiles
each problem once.
"""

from __future__ import annotations

import importlib
import math
import pickle
from typing import Any, NamedTuple

import numpy as np
import pytest
from leaves import fingerprint, host, leaves

import optimeta as om
from optimeta._native_base import NativeState
from optimeta.backends.olbfgs import OLBFGSState

BACKENDS = ["jax", "torch"]
CONFIGS = [
    pytest.param(om.OLBFGS(lr=0.3, memory=3, reg=0.01, decay=0.01), id="lr0.3-memory3-reg-decay"),
    pytest.param(om.OLBFGS(lr=0.5), id="lr0.5"),
    pytest.param(om.OLBFGS(lr=0.4, memory=1), id="memory1"),
]
FIRST = om.OLBFGS(lr=0.3, memory=3, reg=0.01, decay=0.01)
N = 20  # steps of the shared runs

W = np.array([1.0, 2.0, 0.5, 3.0])
T = np.array([0.7, -1.2, 0.4, 2.0])
X0 = np.array([0.1, 0.2, -0.3, 0.5])
P = {"w": W, "t": T}
#: The counter k of the state each call of `keyed` received (jax: from the compiled step, by a debug callback).
RECEIVED: list[int] = []


# -- one objective for autograd, jax and torch ---------------------------------------------------------


def _ns(x: Any) -> Any:
    """The array namespace of `x`: torch, jax.numpy (arrays and tracers), or autograd.numpy."""
    if hasattr(x, "detach"):
        return importlib.import_module("torch")
    jax = type(x).__module__.startswith(("jax", "jaxlib"))
    return importlib.import_module("jax.numpy" if jax else "autograd.numpy")


def _like(x: Any, a: Any) -> Any:
    ns = _ns(x)
    if ns.__name__ == "torch":
        return ns.as_tensor(a, dtype=x.dtype)
    return ns.asarray(a, dtype=np.float64 if ns.__name__ == "autograd.numpy" else x.dtype)


def base(x: Any, p: Any) -> Any:
    """sum w (x - t)^2 + x^4 / 4 + 0.1 sin x: convex, not quadratic, so every pair is new curvature."""
    ns = _ns(x)
    return ns.sum(_like(x, p["w"]) * (x - _like(x, p["t"])) ** 2 + 0.25 * x**4) + 0.1 * ns.sum(ns.sin(x))


def keyed(u: Any, p: Any, s: Any) -> Any:
    """`base` weighted by the state's counter k; NaN when k == p["bad"]: at both evaluations of that
    step, or (p["second"] == 1) only at its second, whose point is not the state's m (the point the
    committed state was returned at). The state counts the steps and keeps the point."""
    x, k = u["x"], s["k"]
    ns = _ns(x)
    if ns.__name__ == "jax.numpy":
        importlib.import_module("jax").debug.callback(lambda k: RECEIVED.append(int(k)), k)
        hit = (k == p["bad"]) & ((p["second"] == 0) | ns.any(x != s["m"]))
        factor = ns.where(hit, ns.nan, 1.0)
    else:
        RECEIVED.append(int(host(k)))
        moved = not np.array_equal(host(x), host(s["m"]))
        hit = int(host(k)) == int(host(p["bad"])) and (int(host(p["second"])) == 0 or moved)
        factor = math.nan if hit else 1.0
    return (1.0 + 0.5 * ns.sin(_like(x, k))) * base(x, p) * factor, {"k": k + 1, "m": x}


def neg_keyed(u: Any, p: Any, s: Any) -> Any:
    loss, state = keyed(u, p, s)
    return -loss, state


def capped(u: Any, p: Any) -> Any:
    """A deterministic `base`, NaN where x[3] > p["cap"]."""
    x = u["x"]
    if _ns(x).__name__ == "jax.numpy":
        return base(x, p) * _ns(x).where(x[3] > p["cap"], np.nan, 1.0)
    return base(x, p) * (math.nan if host(x)[3] > float(p["cap"]) else 1.0)


# -- problems and runs, made once ----------------------------------------------------------------------


def framework_array(backend: str | None, a: np.ndarray, dtype: Any) -> Any:
    """`a` as `backend`'s array of `dtype` (NumPy for None)."""
    if backend == "torch":
        torch = importlib.import_module("torch")
        return torch.tensor(a, dtype=getattr(torch, np.dtype(dtype).name))
    if backend == "jax":
        from optimeta._jax_tools import precision

        with precision(dtype):
            return importlib.import_module("jax.numpy").asarray(a, dtype=dtype)
    return np.asarray(a, dtype=dtype)


def framework_type(backend: str) -> type:
    return importlib.import_module("jax").Array if backend == "jax" else importlib.import_module("torch").Tensor


_SHARED: dict[Any, Any] = {}


def problem(backend: str | None, dtype: Any = np.float64, bad: int = -1, second: int = 0, sense: str = "min") -> Any:
    """The stateful problem (backend None: the NumPy path, float64, autograd), u0 a framework array."""
    key = ("problem", backend, np.dtype(dtype).name, bad, second, sense)
    if key not in _SHARED:
        u0 = {"x": framework_array(backend, X0, dtype)}
        p = {**P, "bad": np.array(bad), "second": np.array(second)}
        state = {"k": 0, "m": X0.astype(dtype)}
        f = keyed if sense == "min" else neg_keyed
        _SHARED[key] = om.OptimizationProblem(f, u0, p=p, state=state, sense=sense, grad=backend)
    return _SHARED[key]


def run(backend: str | None, alg: Any, dtype: Any = np.float64, n: int = N, **kw: Any) -> Any:
    """(Solution, IterationInfos, states received) of a solve of `problem`; kw: its own and solve's."""
    policy = kw.pop("nan_policy", "stop")
    key = ("run", backend, alg, np.dtype(dtype).name, n, policy, tuple(sorted(kw.items())))
    if key not in _SHARED:
        RECEIVED.clear()
        infos: list[om.IterationInfo] = []
        sol = om.solve(problem(backend, dtype, **kw), alg, maxiters=n, callback=infos.append, nan_policy=policy)
        if backend == "jax":
            importlib.import_module("jax").effects_barrier()
        _SHARED[key] = (sol, infos, list(RECEIVED))
    return _SHARED[key]


def checkpoint_after(prob: om.OptimizationProblem, alg: Any, k: int, n: int = N) -> Any:
    """The checkpoint of a run of `n` steps after `k`."""
    solver = om.init(prob, alg, maxiters=n)
    for _ in range(k):
        solver.step()
    return solver.checkpoint()


def close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(host(got), host(want), rtol=1e-12, atol=1e-14)


# -- 1. the native step; 2. its iterates; 3. its counts; 4. its states ---------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alg", CONFIGS)
def test_the_native_pairs_step_is_built(backend: str, alg: Any, steps_built: list[Any]) -> None:
    sol = om.solve(problem(backend), alg, maxiters=4)
    om.solve(problem(None), alg, maxiters=4)  # the NumPy path builds none
    name = {"jax": "NativeJaxPairs", "torch": "NativeTorchPairs"}[backend]
    assert [type(step).__name__ for step in steps_built] == [name]
    assert type(sol.opt_state) is NativeState and sol.opt_state.step == 4
    slots = sol.opt_state.slots  # jax: `memory` pairs, the last `count` (slots[2]) in use; torch: those in use
    used = int(slots[2]) if backend == "jax" else len(slots[0])
    assert used == min(4, alg.memory) and len(slots[0]) == (alg.memory if backend == "jax" else used)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alg", CONFIGS)
def test_float64_iterates_equal_the_numpy_path(backend: str, alg: Any) -> None:
    (sol, infos, _), (ref, ref_infos, _) = run(backend, alg), run(None, alg)
    assert len(infos) == len(ref_infos) == N and [i.iteration for i in infos] == list(range(1, N + 1))
    for info, want in zip(infos, ref_infos):
        assert isinstance(info.u["x"], framework_type(backend)) and host(info.u["x"]).dtype == np.float64
        close(info.u["x"], want.u["x"])
        assert info.objective == pytest.approx(want.objective, rel=1e-12)
    assert isinstance(sol.u["x"], framework_type(backend)) and host(sol.u["x"]).dtype == np.float64
    close(sol.u["x"], ref.u["x"])
    assert sol.retcode is ref.retcode is om.ReturnCode.MAXITERS
    assert sol.objective == pytest.approx(ref.objective, rel=1e-12)
    assert np.max(np.abs(host(sol.u["x"]) - X0)) > 0.5  # the run did move


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alg", CONFIGS)
def test_float32_stays_float32_and_agrees_to_its_rounding(backend: str, alg: Any) -> None:
    (sol, infos, _), (_, ref_infos, _) = run(backend, alg, np.float32), run(None, alg)
    for info, want in zip([*infos, sol], [*ref_infos, ref_infos[-1]]):
        x = info.u["x"]
        assert isinstance(x, framework_type(backend)) and host(x).dtype == np.float32
        assert type(info.state["m"]) is np.ndarray and info.state["m"].dtype == np.float32
        # Relative to the iterate's size: float32 rounding, grown over 20 quasi-Newton steps (<= 1.6e-5 seen).
        error = np.max(np.abs(host(x) - want.u["x"]))
        assert error <= 3e-5 * max(1.0, np.max(np.abs(want.u["x"])))
    assert len(infos) == N and sol.opt_state.step == N


def wavy(u: Any, p: Any) -> Any:
    """Not convex (cos 3x): some steps show no curvature."""
    x = u["x"]
    return _ns(x).sum(_ns(x).cos(3.0 * x)) + 0.05 * _ns(x).sum(x**2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pairs_without_curvature_are_dropped_as_on_numpy(backend: str, steps_built: list[Any]) -> None:
    alg = om.OLBFGS(lr=0.2, memory=30)  # a memory that holds every pair kept
    native, ref = (
        checkpoint_after(om.OptimizationProblem(wavy, {"x": X0}, stochastic=True, grad=grad), alg, 12).opt_state
        for grad in (backend, None)
    )
    assert [type(step).__name__.endswith("Pairs") for step in steps_built] == [True]
    assert native.step == ref.step == 12 and len(native.s) == len(ref.s) == 6  # 6 of the 12 dropped
    for got, want in zip(native.s + native.y, ref.s + ref.y):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alg", CONFIGS)
def test_a_step_evaluates_twice_and_is_counted_twice(backend: str, alg: Any) -> None:
    (sol, _, received), (ref, _, ref_received) = run(backend, alg), run(None, alg)
    assert (sol.stats.iterations, sol.stats.fevals, sol.stats.gevals) == (N, 2 * N, 2 * N)
    fields = ("iterations", "fevals", "gevals", "probe_fevals", "hevals", "skipped")
    assert [getattr(sol.stats, name) for name in fields] == [getattr(ref.stats, name) for name in fields]
    assert len(received) == len(ref_received) == 2 * N  # f really ran twice a step, no more


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alg", CONFIGS)
def test_both_evaluations_see_one_state_and_the_new_points_state_is_committed(backend: str, alg: Any) -> None:
    (sol, infos, received), (ref, ref_infos, ref_received) = run(backend, alg), run(None, alg)
    assert ref_received == [k for k in range(N) for _ in range(2)]
    # jax's debug callbacks may come out of a step in either order: both calls of step k got k.
    assert (sorted(received) if backend == "jax" else received) == ref_received
    for i, (info, want) in enumerate(zip(infos, ref_infos)):
        assert type(info.state["k"]) is int and info.state["k"] == want.state["k"] == i + 1
        # The state returned at u_{t+1} (its m is that point), not the one at u_t.
        assert info.state["m"].tobytes() == host(info.u["x"]).tobytes()
        close(info.state["m"], want.state["m"])
    assert sol.state["k"] == ref.state["k"] == N and sol.state["m"].tobytes() == host(sol.u["x"]).tobytes()
    assert problem(backend).state["k"] == 0


# -- 5. inputs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_are_not_mutated(backend: str) -> None:
    def fw(a: Any, dtype: Any = np.float32) -> Any:
        return framework_array(backend, np.asarray(a), dtype)

    u0 = {"x": fw(X0)}
    p = {"w": fw(W), "t": fw(T), "bad": fw(-1, np.int32), "second": fw(0, np.int32)}
    state = {"k": fw(0, np.int32), "m": fw(X0)}
    before = fingerprint(u0, p, state)
    prob = om.OptimizationProblem(keyed, u0, p=p, state=state, grad=backend)
    held = fingerprint(prob.u0, prob.p, prob.state)
    sol = om.solve(prob, FIRST, maxiters=6)
    assert sol.stats.iterations == 6 and type(sol.opt_state) is NativeState
    assert fingerprint(u0, p, state) == before and fingerprint(prob.u0, prob.p, prob.state) == held
    if backend == "jax":
        assert not any(leaf.is_deleted() for leaf in leaves((u0, p, state)))
    assert int(host(sol.state["k"])) == 6 and sol.u["x"] is not u0["x"]
    assert not np.array_equal(host(sol.u["x"]), host(u0["x"]))  # the run did move


# -- 6. non-finite values ------------------------------------------------------------------------------

#: (bad, second): NaN at both evaluations of step bad + 1 (its first ends it), or at its second only.
NANS = [
    pytest.param(0, 0, id="step1-first"),
    pytest.param(0, 1, id="step1-second"),
    pytest.param(5, 0, id="step6-first"),
    pytest.param(5, 1, id="step6-second"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("bad", "second"), NANS)
def test_a_nonfinite_evaluation_ends_the_run_as_on_numpy(backend: str, bad: int, second: int) -> None:
    (sol, infos, _), (ref, _, _) = run(backend, FIRST, bad=bad, second=second), run(None, FIRST, bad=bad, second=second)
    assert sol.retcode is ref.retcode is om.ReturnCode.NONFINITE and not sol.success
    counts = (bad, 2 * bad + 1 + second, 2 * bad + 1 + second, 0)
    assert (sol.stats.iterations, sol.stats.fevals, sol.stats.gevals, sol.stats.skipped) == counts
    assert (ref.stats.iterations, ref.stats.fevals, ref.stats.gevals, ref.stats.skipped) == counts
    assert len(infos) == bad
    # At the last finite iterate, bitwise the clean run's, with the state committed there.
    last = X0 if bad == 0 else host(run(backend, FIRST)[1][bad - 1].u["x"])
    assert host(sol.u["x"]).tobytes() == last.tobytes()
    close(sol.u["x"], ref.u["x"])
    assert sol.state["k"] == ref.state["k"] == bad and sol.state["m"].tobytes() == last.tobytes()
    if bad == 0:  # no step completed: no loss (as on NumPy)
        assert math.isnan(sol.objective) and math.isnan(ref.objective)
    else:
        assert sol.objective == pytest.approx(ref.objective, rel=1e-12) and math.isfinite(sol.objective)
        assert sol.objective == run(backend, FIRST)[1][bad - 1].objective


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("bad", "second"), NANS)
def test_a_skipped_nonfinite_step_is_skipped_as_on_numpy(backend: str, bad: int, second: int) -> None:
    n = 12
    sol, infos, _ = run(backend, FIRST, n=n, nan_policy="skip", bad=bad, second=second)
    ref, ref_infos, _ = run(None, FIRST, n=n, nan_policy="skip", bad=bad, second=second)
    assert sol.retcode is ref.retcode is om.ReturnCode.MAXITERS
    counts = (n, 2 * n - 1 + second, 1)
    assert (sol.stats.iterations, sol.stats.fevals, sol.stats.skipped) == counts
    assert (ref.stats.iterations, ref.stats.fevals, ref.stats.skipped) == counts
    assert [math.isnan(info.objective) for info in infos] == [i == bad for i in range(n)]
    skipped_from = X0 if bad == 0 else host(infos[bad - 1].u["x"])
    assert host(infos[bad].u["x"]).tobytes() == skipped_from.tobytes()  # no update at the skipped step
    for info, want in zip(infos, ref_infos):
        close(info.u["x"], want.u["x"])
        assert info.state["k"] == want.state["k"]  # the skipped step's state (at its iterate) is kept too
    assert sol.state["k"] == ref.state["k"] == n
    close(sol.u["x"], ref.u["x"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("cap", "steps"), [(0.6, 0), (0.9, 1)], ids=["step1-second", "step2-second"])
def test_a_deterministic_run_ends_at_its_last_finite_iterate_as_on_numpy(backend: str, cap: float, steps: int) -> None:
    """x[3] is 0.8 after step 1 and 1.09 after step 2: a cap below makes step 1 or 2's second evaluation NaN."""
    p = {**P, "cap": np.array(cap)}
    sol = om.solve(om.OptimizationProblem(capped, {"x": X0}, p=p, grad=backend), FIRST, maxiters=10)
    ref = om.solve(om.OptimizationProblem(capped, {"x": X0}, p=p), FIRST, maxiters=10)
    assert sol.retcode is ref.retcode is om.ReturnCode.NONFINITE
    fields = ("iterations", "fevals", "gevals", "probe_fevals")
    assert [getattr(sol.stats, name) for name in fields] == [getattr(ref.stats, name) for name in fields]
    assert sol.stats.iterations == steps and sol.stats.fevals == 2 * steps + 2
    close(sol.u["x"], ref.u["x"])
    # The loss the step found at its (finite) iterate, evaluated no more.
    assert math.isfinite(sol.objective) and sol.objective == pytest.approx(ref.objective, rel=1e-12)
    if steps == 0:
        assert sol.u["x"].tobytes() == X0.tobytes() and sol.objective == pytest.approx(float(base(X0, p)), rel=1e-14)


# -- 7. checkpoints ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("alg", CONFIGS)
def test_a_pickled_checkpoint_resumes_bitwise(backend: str, dtype: Any, alg: Any, steps_built: list[Any]) -> None:
    # Bitwise holds: the checkpoint keeps the pairs as float64 NumPy (exact for float32 too), the
    # resumed step rebuilds the same memory (jax: the same zero padding and count) and runs the same step.
    k = 7  # beyond memory=3 and 1 (a full memory, shifted), within memory=10
    straight, _, _ = run(backend, alg, dtype)
    steps_built.clear()  # the straight run's, if it ran here
    checkpoint = checkpoint_after(problem(backend, dtype), alg, k)
    assert type(checkpoint.opt_state) is OLBFGSState and checkpoint.opt_state.step == k
    assert len(checkpoint.opt_state.s) == len(checkpoint.opt_state.y) == min(k, alg.memory)
    if dtype == np.float64:  # the pairs are the NumPy path's
        want = checkpoint_after(problem(None), alg, k).opt_state
        for got_v, want_v in zip(checkpoint.opt_state.s + checkpoint.opt_state.y, want.s + want.y):
            np.testing.assert_allclose(got_v, want_v, rtol=1e-10, atol=1e-14)
    resumed = om.resume(pickle.loads(pickle.dumps(checkpoint)), problem(backend, dtype)).solve()
    assert len(steps_built) == 2 and all(type(step).__name__.endswith("Pairs") for step in steps_built)
    assert fingerprint(resumed.u) == fingerprint(straight.u)
    assert fingerprint(resumed.state) == fingerprint(straight.state) and resumed.state["k"] == N
    assert resumed.objective == straight.objective and resumed.retcode is straight.retcode
    assert (resumed.stats.iterations, resumed.stats.fevals, resumed.stats.gevals) == (N, 2 * N, 2 * N)


# -- 8. jax pytrees; 9. maximisation -------------------------------------------------------------------


class Pair(NamedTuple):
    w: Any
    b: Any


def pair_loss(u: Any, p: Any) -> Any:
    ns, w, b = _ns(u.w), u.w, u.b
    return ns.sum((w - 0.5) ** 2 + 0.25 * w**4) + ns.sum((b + 0.25) ** 2) + 0.1 * ns.sum(w @ b)


@pytest.mark.needs("jax")
def test_a_jax_pytree_comes_back_as_itself(steps_built: list[Any]) -> None:
    import jax
    import jax.numpy as jnp

    w0, b0 = np.array([[0.5, -0.25, 1.0], [0.1, 0.3, -0.7]]), np.array([0.2, -0.1, 0.4])
    u0 = Pair(jnp.asarray(w0, dtype=jnp.float32), b0.astype(np.float32))
    before = fingerprint(list(u0))
    seen: list[Any] = []
    sol = om.solve(om.OptimizationProblem(pair_loss, u0, grad="jax"), FIRST, maxiters=15, callback=seen.append)
    ref = om.solve(om.OptimizationProblem(pair_loss, Pair(w0, b0)), FIRST, maxiters=15)
    assert [type(step).__name__ for step in steps_built] == ["NativeJaxPairs"]
    for u in [*(info.u for info in seen), sol.u]:
        assert type(u) is Pair and jax.tree_util.tree_structure(u) == jax.tree_util.tree_structure(u0)
        assert isinstance(u.w, jax.Array) and u.w.dtype == np.float32 and u.w.shape == (2, 3)
        assert type(u.b) is np.ndarray and u.b.dtype == np.float32 and u.b.shape == (3,)
    assert len(seen) == 15 and fingerprint(list(u0)) == before
    for got, want in zip(sol.u, ref.u):
        np.testing.assert_allclose(host(got), want, rtol=0, atol=3e-5)
    assert not np.allclose(host(sol.u.w), w0, atol=0.1)  # the run did move


@pytest.mark.parametrize("backend", BACKENDS)
def test_maximising_is_minimising_the_negative(backend: str) -> None:
    low, low_infos, _ = run(backend, FIRST)
    high, high_infos, _ = run(backend, FIRST, sense="max")
    assert type(high.opt_state) is NativeState and (low.sense, high.sense) == ("min", "max")
    assert [host(i.u["x"]).tobytes() for i in high_infos] == [host(i.u["x"]).tobytes() for i in low_infos]
    assert [i.objective for i in high_infos] == [-i.objective for i in low_infos]
    assert high.objective == -low.objective < 0
    assert fingerprint(high.u, high.state) == fingerprint(low.u, low.state)
