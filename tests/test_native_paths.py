"""The native jax and torch paths' contracts, beyond their arithmetic (`test_native_references`).

With ``grad="jax"`` or ``grad="torch"`` and an elementwise first-order algorithm, a run steps on a
flat framework array in the user's dtype (`optimeta._native_jax`, `optimeta._native_torch`). Here:
inputs are never mutated (framework arrays, a torch module's parameters, the state, p, the
bounds, byte for byte); the native path runs for every elementwise algorithm of the registry and
for neither BFGS nor L-BFGS (OLBFGS's native path is `test_native_olbfgs`'s); ``init(...).solve()``
and a pickled checkpoint resumed are bitwise the straight solve; a non-finite step ends the run before it with the state and slots of the last
finite step (jax's donated slots handed back intact), or is skipped under ``nan_policy="skip"``;
bounds project every step; maximisation is minimisation of ``-f``; the callback and the Solution
give the user's kinds (jax arrays, tensors, NumPy, numbers) and dtypes; jax pytrees (equinox,
flax, registered dataclasses, NamedTuples) come back as themselves; the traits still refuse what
they refused, before any call of ``f``; minibatches feed the compiled step without a new trace.
Every configuration of every `ElementwiseAlgorithm` of the registry (its ``examples()``) runs
through each contract that takes an algorithm. Runs that several tests compare against are made
once per module (`shared_problem`, `straight_run`, `bounded_run`), so that jax compiles each step
once: the file runs in about 20 s.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pickle
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
from leaves import fingerprint, host, leaves

import optimeta as om
from optimeta._native_base import NativeState, NativeStep
from optimeta.backends._base import ElementwiseAlgorithm
from optimeta.traits import registered

BACKENDS = ["jax", "torch"]

#: Every configuration of every elementwise algorithm of the registry: (label, algorithm).
EXAMPLES: list[tuple[str, Any]] = [
    (example.label, example.algorithm)
    for cls in registered()
    if issubclass(cls, ElementwiseAlgorithm)
    for example in cls.examples()
]
LABELS = [label for label, _ in EXAMPLES]

W = np.array([1.0, 2.0, 0.5, 3.0])
T = np.array([0.7, -1.2, 0.4, 2.0])
X0 = np.array([0.1, 0.2, -0.3, 0.5])
P = {"w": W, "t": T}
# A box that pins coordinates 0, 1 and 3 within a few steps of every example (their optima lie
# outside it) and leaves coordinate 2 free; float32 holds every bound exactly.
LB = np.array([-0.5, 0.125, -0.5, -0.5])
UB = np.array([0.125, 0.5, 1.0, 0.625])
#: The calls (from 0) at which the stateful problems' loss is NaN: none in the first 13.
BAD = (13, 17, 18, 21, 22, 23)


# -- objectives, written once for both frameworks -------------------------------------------------


def _torch_array(x: Any) -> bool:
    return hasattr(x, "detach")


def _ns(x: Any) -> Any:
    """The array namespace of framework array `x`: torch or jax.numpy."""
    return importlib.import_module("torch" if _torch_array(x) else "jax.numpy")


def _like(x: Any, a: Any) -> Any:
    """`a` (NumPy, a number, a framework array) as an array of `x`'s framework and dtype."""
    if _torch_array(x):
        return _ns(x).as_tensor(a, dtype=x.dtype)
    return _ns(x).asarray(a, dtype=x.dtype)


def quad(u: Any, p: Any) -> Any:
    """sum w (x - t)^2 + 0.1 sum sin x."""
    x = u["x"]
    ns = _ns(x)
    return ns.sum(_like(x, p["w"]) * (x - _like(x, p["t"])) ** 2) + 0.1 * ns.sum(ns.sin(x))


def neg_quad(u: Any, p: Any) -> Any:
    return -quad(u, p)


def quad_grad(x: np.ndarray, p: Any) -> np.ndarray:
    """The gradient of `quad` in NumPy."""
    return 2.0 * np.asarray(p["w"]) * (x - np.asarray(p["t"])) + 0.1 * np.cos(x)


def scale(k: int) -> float:
    """How much the state's counter weighs the loss of call number `k`."""
    return 1.0 + 0.5 * math.sin(k)


def keyed(u: Any, p: Any, s: Any) -> Any:
    """`quad` weighted by the state's counter, NaN at the calls listed in ``p["bad"]``; the state
    counts the calls and keeps a running mean of x."""
    x = u["x"]
    ns = _ns(x)
    k = s["k"]
    loss = (1.0 + 0.5 * ns.sin(_like(x, k))) * quad(u, p)
    if _torch_array(x):
        factor = math.nan if int(k) in set(np.asarray(p["bad"]).tolist()) else 1.0
    else:
        factor = ns.where(ns.any(k == p["bad"]), ns.nan, 1.0)
    return loss * factor, {"k": k + 1, "m": 0.9 * s["m"] + 0.1 * x}


def problem(
    backend: str, dtype: Any = np.float64, *, stateful: bool = False, bad: Any = (), **kwargs: Any
) -> om.OptimizationProblem:
    u0 = {"x": X0.astype(dtype)}
    if stateful:
        p = {**P, "bad": np.array(sorted(bad) or [-1])}
        state = {"k": 0, "m": np.zeros(4, dtype=dtype)}
        return om.OptimizationProblem(keyed, u0, p=p, state=state, grad=backend, **kwargs)
    return om.OptimizationProblem(quad, u0, p=P, grad=backend, **kwargs)


def hand_loop(
    alg: Any, calls: int, grad_at: Callable[[int, np.ndarray], np.ndarray], *, skip: Any = (), box: Any = None
) -> list[np.ndarray]:
    """The algorithm's own NumPy update, call by call, from X0: the iterate after each call
    (none of the calls in `skip` updates, nor advances the step count); clipped onto `box`."""
    x = X0.copy()
    slots, step, out = alg.slots(np, x), 0, []
    for i in range(calls):
        if i not in skip:
            x, slots = alg.leaf_update(np, grad_at(i, x), x, slots, alg.coefficients(step))
            step += 1
            if box is not None:
                x = np.clip(x, box[0], box[1])
        out.append(np.array(x))
    return out


# -- helpers --------------------------------------------------------------------------------------


def framework_type(backend: str) -> type:
    if backend == "jax":
        return importlib.import_module("jax").Array  # type: ignore[no-any-return]
    return importlib.import_module("torch").Tensor  # type: ignore[no-any-return]


def same_bytes(a: Any, b: Any) -> bool:
    return fingerprint(a) == fingerprint(b)


def assert_plain(tree: Any) -> None:
    for leaf in leaves(tree):
        assert type(leaf) in (np.ndarray, int, float, bool), f"not plain: {type(leaf)} {leaf!r}"


def assert_slots(sol: om.Solution, backend: str, dtype: Any, step: int, size: int = 4) -> None:
    """The Solution's algorithm state is the native one: each slot framework arrays of the run's
    dtype (one flat array, or one per leaf of u0) holding a value per parameter, none deleted."""
    state = sol.opt_state
    assert type(state) is NativeState and state.step == step
    for slot in state.slots:
        arrays = leaves(slot)
        assert arrays and all(isinstance(a, framework_type(backend)) for a in arrays)
        assert all(host(a).dtype == np.dtype(dtype) for a in arrays)
        assert sum(host(a).size for a in arrays) == size
        if backend == "jax":
            assert not any(a.is_deleted() for a in arrays)


# -- 1. inputs are never mutated ------------------------------------------------------------------


@pytest.mark.parametrize(("label", "alg"), EXAMPLES, ids=LABELS)
@pytest.mark.needs("jax")
def test_jax_inputs_are_not_mutated(label: str, alg: Any) -> None:
    import jax.numpy as jnp

    u0 = {"x": jnp.asarray(X0, dtype=jnp.float32)}
    p = {"w": jnp.asarray(W, dtype=jnp.float32), "t": jnp.asarray(T, dtype=jnp.float32), "bad": jnp.asarray(BAD)}
    state = {"k": jnp.asarray(0), "m": jnp.zeros(4, dtype=jnp.float32)}
    bounds = ({"x": jnp.full(4, -5.0, dtype=jnp.float32)}, {"x": jnp.full(4, 5.0, dtype=jnp.float32)})
    inputs = (u0, p, state, bounds)
    before = fingerprint(*inputs)
    prob = om.OptimizationProblem(keyed, u0, p=p, state=state, bounds=bounds, grad="jax")
    held = fingerprint(prob.u0, prob.p, prob.state, prob.bounds)  # the problem's own copies
    sol = om.solve(prob, alg, maxiters=5)
    assert sol.stats.iterations == 5 and type(sol.opt_state) is NativeState
    for leaf in leaves(inputs):
        assert not leaf.is_deleted()  # nothing of the user's was donated
    assert fingerprint(*inputs) == before
    assert fingerprint(prob.u0, prob.p, prob.state, prob.bounds) == held
    assert not np.array_equal(host(sol.u["x"]), X0.astype(np.float32))  # the run did move


@pytest.mark.parametrize(("label", "alg"), EXAMPLES, ids=LABELS)
@pytest.mark.needs("torch")
def test_torch_inputs_and_the_module_are_not_mutated(label: str, alg: Any) -> None:
    import torch
    from torch.func import functional_call

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    u0 = dict(model.named_parameters())
    params = dict(u0)
    p = {"X": torch.randn(8, 3), "Y": torch.randn(8, 2)}
    state = {"k": torch.tensor(0), "m": torch.zeros(2)}
    lower = {name: torch.full_like(t, -5.0).detach() for name, t in u0.items()}
    upper = {name: torch.full_like(t, 5.0).detach() for name, t in u0.items()}
    inputs = (u0, p, state, (lower, upper))
    before, module_before = fingerprint(*inputs), fingerprint(model.state_dict())

    def f(u: Any, p: Any, s: Any) -> Any:
        out = functional_call(model, u, (p["X"],))
        loss = torch.mean((out - p["Y"]) ** 2) * (1.0 + 0.1 * torch.sin(s["k"].to(out.dtype)))
        return loss, {"k": s["k"] + 1, "m": 0.9 * s["m"] + 0.1 * out.mean(0).detach()}

    prob = om.OptimizationProblem(f, u0, p=p, state=state, bounds=(lower, upper), grad="torch")
    held = fingerprint(prob.u0, prob.p, prob.state, prob.bounds)  # the problem's own copies
    sol = om.solve(prob, alg, maxiters=5)
    assert sol.stats.iterations == 5 and type(sol.opt_state) is NativeState
    assert fingerprint(*inputs) == before
    assert fingerprint(prob.u0, prob.p, prob.state, prob.bounds) == held
    assert fingerprint(model.state_dict()) == module_before
    assert all(u0[name] is params[name] for name in params)
    for param in model.parameters():
        assert param.requires_grad and param.grad is None  # no gradient left on the module
    assert sol.u.keys() == u0.keys()
    assert all(type(sol.u[name]) is torch.Tensor and sol.u[name] is not u0[name] for name in u0)
    assert not torch.equal(sol.u["weight"], u0["weight"])  # the run did move


# -- 2. which path runs; Solver and checkpoints are bitwise the straight solve ----------------------


_SHARED: dict[Any, Any] = {}


def shared_problem(backend: str) -> om.OptimizationProblem:
    """One float32 stateful problem per backend, NaN at the calls in `BAD`: the tests of this
    section share it, and with it the compiled step of each (hashable) algorithm."""
    if backend not in _SHARED:  # bounds that no run reaches (the hand loops do not clip)
        _SHARED[backend] = problem(backend, np.float32, stateful=True, bad=BAD, bounds=(-5.0, 5.0))
    return _SHARED[backend]  # type: ignore[no-any-return]


def straight_run(backend: str, label: str, alg: Any, n: int = 12) -> om.Solution:
    """The solve of the shared problem for `n` steps (once per backend and algorithm)."""
    key = (backend, label, n)
    if key not in _SHARED:
        _SHARED[key] = om.solve(shared_problem(backend), alg, maxiters=n)
    return _SHARED[key]  # type: ignore[no-any-return]


def assert_same_run(sol: om.Solution, straight: om.Solution, backend: str, n: int) -> None:
    assert_slots(sol, backend, np.float32, n)
    assert same_bytes(sol.u, straight.u)
    assert same_bytes(sol.state, straight.state) and sol.state["k"] == n
    assert same_bytes(list(sol.opt_state.slots), list(straight.opt_state.slots))
    assert sol.objective == straight.objective and sol.retcode is straight.retcode
    assert sol.stats.iterations == n and sol.stats.fevals == straight.stats.fevals


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("label", "alg"), EXAMPLES, ids=LABELS)
def test_every_elementwise_algorithm_runs_natively_and_a_solver_is_bitwise_the_solve(
    backend: str, label: str, alg: Any, steps_built: list[Any]
) -> None:
    n = 12
    straight = straight_run(backend, label, alg)
    steps_built.clear()  # the straight run's, if it ran here
    assert_slots(straight, backend, np.float32, n)
    assert straight.u["x"].dtype == np.float32 and straight.state["k"] == n
    stepped = om.init(shared_problem(backend), alg, maxiters=n).solve()
    solver = om.init(shared_problem(backend), alg, maxiters=n)
    while not solver.done:
        solver.step()
    assert len(steps_built) == 2 and all(isinstance(step, NativeStep) for step in steps_built)
    assert_same_run(stepped, straight, backend, n)
    assert_same_run(solver.solve(), straight, backend, n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("label", "alg"), EXAMPLES, ids=LABELS)
def test_a_pickled_checkpoint_resumes_bitwise(backend: str, label: str, alg: Any, steps_built: list[Any]) -> None:
    n, k = 12, 5
    straight = straight_run(backend, label, alg)
    steps_built.clear()  # the straight run's, if it ran here
    solver = om.init(shared_problem(backend), alg, maxiters=n)
    for _ in range(k):
        solver.step()
    blob = pickle.dumps(solver.checkpoint())
    resumed = om.resume(pickle.loads(blob), shared_problem(backend)).solve()
    assert len(steps_built) == 2 and all(isinstance(step, NativeStep) for step in steps_built)
    assert_same_run(resumed, straight, backend, n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [om.BFGS, om.LBFGS], ids=["BFGS", "LBFGS"])
def test_quasi_newton_methods_run_on_numpy(backend: str, make: Any, steps_built: list[Any]) -> None:
    sol = om.solve(problem(backend), make())
    assert steps_built in ([], [None])  # asked or not, no native step is built
    assert not isinstance(sol.opt_state, NativeState)
    assert sol.success and type(sol.u["x"]) is np.ndarray
    assert np.max(np.abs(quad_grad(sol.u["x"], P))) < 1e-4


# -- 3. non-finite values -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("label", "alg"), EXAMPLES, ids=LABELS)
def test_a_nonfinite_step_ends_the_run_before_it_with_its_state_and_slots(backend: str, label: str, alg: Any) -> None:
    k = BAD[0]  # call k (from 0) is NaN: k steps complete, step k + 1 fails
    prob = shared_problem(backend)
    sol = om.solve(prob, alg, maxiters=40)
    before = straight_run(backend, label, alg, k)  # the same run, stopped before the bad call
    assert sol.retcode is om.ReturnCode.NONFINITE and not sol.success
    assert (sol.stats.iterations, sol.stats.fevals, sol.stats.skipped) == (k, k + 1, 0)
    assert sol.u["x"].tobytes() == before.u["x"].tobytes()
    # The state of the last finite call: the bad call's state is taken back.
    assert sol.state["k"] == k and type(sol.state["k"]) is int
    assert sol.state["m"].tobytes() == before.state["m"].tobytes()
    assert sol.objective == before.objective and math.isfinite(sol.objective)
    # The slots before the bad step, intact (jax donated them to the failing call).
    assert_slots(sol, backend, np.float32, k)
    assert same_bytes(list(sol.opt_state.slots), list(before.opt_state.slots))
    assert prob.state["k"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("label", "alg"), EXAMPLES, ids=LABELS)
def test_skipped_nonfinite_steps_make_no_update(backend: str, label: str, alg: Any) -> None:
    prob, bad = shared_problem(backend), set(BAD)
    # Up to 2 bad steps in a row are skipped (13; 17, 18; 21, 22); the third in a row ends the run.
    seen: list[om.IterationInfo] = []
    sol = om.solve(prob, alg, maxiters=40, nan_policy="skip", max_skips=2, callback=seen.append)
    end = BAD[-1]
    skipped = bad - {end}
    assert sol.retcode is om.ReturnCode.NONFINITE
    assert (sol.stats.iterations, sol.stats.fevals, sol.stats.skipped) == (end, end + 1, len(skipped))
    assert sol.state["k"] == end  # every call's state is kept, the skipped ones' too, but the last
    assert_slots(sol, backend, np.float32, end - len(skipped))
    assert [info.iteration for info in seen] == list(range(1, end + 1))
    for i, info in enumerate(seen):
        assert math.isnan(info.objective) == (i in skipped)
        assert info.state["k"] == i + 1
        if i in skipped:  # no update at a skipped step
            assert info.u["x"].tobytes() == seen[i - 1].u["x"].tobytes()
    assert sol.u["x"].tobytes() == seen[-1].u["x"].tobytes()
    expected = hand_loop(alg, end, lambda i, x: scale(i) * quad_grad(x, P), skip=skipped)
    for i, (info, want) in enumerate(zip(seen, expected)):
        np.testing.assert_allclose(info.u["x"], want, rtol=2e-5, atol=2e-5, err_msg=f"{label}, step {i + 1}")

    # Within max_skips, the run goes on to its budget.
    budget = om.solve(prob, alg, maxiters=20, nan_policy="skip", max_skips=2)
    assert budget.retcode is om.ReturnCode.MAXITERS
    assert (budget.stats.iterations, budget.stats.skipped, budget.state["k"]) == (20, 3, 20)
    assert budget.u["x"].tobytes() == seen[19].u["x"].tobytes()
    assert_slots(budget, backend, np.float32, 17)


# -- 4. bounds --------------------------------------------------------------------------------------


BOUNDED = 30  # steps of the bounded runs


def bounded_run(backend: str, label: str, alg: Any, f: Any = quad, sense: str = "min") -> tuple[Any, list[Any]]:
    """A float32 run of `f` in the box (LB, UB) for `BOUNDED` steps: (Solution, IterationInfos);
    the minimisation of `quad` once per backend and algorithm (the bounds and the sense tests
    share it)."""
    key = ("bounded", backend, label, sense)
    if key not in _SHARED:
        infos: list[om.IterationInfo] = []
        box = ({"x": LB}, {"x": UB})
        prob = om.OptimizationProblem(
            f, {"x": X0.astype(np.float32)}, p=P, grad=backend, bounds=box, sense=sense, stochastic=True
        )
        sol = om.solve(prob, alg, maxiters=BOUNDED, callback=infos.append)
        if sense == "max":
            return sol, infos
        _SHARED[key] = (sol, infos)
    return _SHARED[key]  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("label", "alg"), EXAMPLES, ids=LABELS)
def test_bounds_project_every_step(backend: str, label: str, alg: Any) -> None:
    sol, infos = bounded_run(backend, label, alg)
    seen = [info.u["x"] for info in infos]
    assert type(sol.opt_state) is NativeState and len(seen) == BOUNDED
    assert sol.u["x"].dtype == np.float32 and all(x.dtype == np.float32 for x in seen)
    assert all(np.all(LB.astype(np.float32) <= x) and np.all(x <= UB.astype(np.float32)) for x in seen)
    # The coordinates whose optimum lies outside the box end on its side, exactly.
    assert sol.u["x"][[0, 1, 3]].tolist() == [UB[0], LB[1], UB[3]]
    assert LB[2] < sol.u["x"][2] < UB[2]
    expected = hand_loop(alg, BOUNDED, lambda i, x: quad_grad(x, P), box=(LB, UB))
    for i, (got, want) in enumerate(zip(seen, expected)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=f"{label}, step {i + 1}")


# -- 5. maximisation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("label", "alg"), EXAMPLES, ids=LABELS)
def test_maximising_is_minimising_the_negative(backend: str, label: str, alg: Any) -> None:
    low, low_infos = bounded_run(backend, label, alg)
    high, high_infos = bounded_run(backend, label, alg, neg_quad, "max")
    assert type(high.opt_state) is NativeState and (low.sense, high.sense) == ("min", "max")
    assert [info.u["x"].tobytes() for info in high_infos] == [info.u["x"].tobytes() for info in low_infos]
    assert [info.objective for info in high_infos] == [-info.objective for info in low_infos]
    assert high.u["x"].tobytes() == low.u["x"].tobytes() and high.objective == -low.objective
    assert same_bytes(list(high.opt_state.slots), list(low.opt_state.slots))


# -- 6. what the callback receives ----------------------------------------------------------------------


def kinds_loss(u: Any, p: Any, s: Any) -> Any:
    a, b = u["fw"], u["np"]
    ns = _ns(a)
    loss = ns.sum((a - 1.0) ** 2) + ns.sum((b + 0.5) ** 2)
    if "s" in u:
        loss = loss + (u["s"] - 2.0) ** 2
    return loss, {"k": s["k"] + 1, "m": 0.5 * s["m"] + b, "f": s["f"] * 0.5}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mixed", [False, True], ids=["float32", "with-a-number"])
def test_the_callback_receives_the_users_kinds(backend: str, mixed: bool) -> None:
    fw_type = framework_type(backend)
    if backend == "jax":
        fw = importlib.import_module("jax.numpy").asarray(X0[:2], dtype=np.float32)
    else:
        fw = importlib.import_module("torch").tensor(X0[:2], dtype=importlib.import_module("torch").float32)
    u0: dict[str, Any] = {"fw": fw, "np": X0[2:].astype(np.float32)}
    if mixed:
        u0["s"] = 0.25
    state = {"k": 0, "m": np.zeros(2, dtype=np.float32), "f": 1.0}
    infos: list[om.IterationInfo] = []

    def callback(info: om.IterationInfo) -> None:
        infos.append(info)
        info.u["np"][:] = 99.0  # the callback's copies are its own

    prob = om.OptimizationProblem(kinds_loss, u0, p=None, state=state, grad=backend)
    sol = om.solve(prob, om.Adam(lr=0.1), maxiters=4, callback=callback)
    quiet = om.solve(prob, om.Adam(lr=0.1), maxiters=4)
    assert type(sol.opt_state) is NativeState
    assert same_bytes(sol.u, quiet.u) and same_bytes(sol.state, quiet.state)
    assert [info.iteration for info in infos] == [1, 2, 3, 4]
    for info, u in [(info, info.u) for info in infos] + [(None, sol.u)]:
        assert u.keys() == u0.keys()
        assert isinstance(u["fw"], fw_type) and host(u["fw"]).dtype == np.float32
        if backend == "torch":
            assert not u["fw"].requires_grad
        assert type(u["np"]) is np.ndarray and u["np"].dtype == np.float32
        if mixed:
            assert type(u["s"]) is float
    for i, state_seen in enumerate([info.state for info in infos] + [sol.state]):
        assert_plain(state_seen)
        assert type(state_seen["k"]) is int and state_seen["k"] == min(i + 1, 4)
        assert type(state_seen["m"]) is np.ndarray and state_seen["m"].dtype == np.float32
        assert type(state_seen["f"]) is float and state_seen["f"] == 0.5 ** min(i + 1, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_numpy_u0_comes_back_as_numpy_of_its_dtype(backend: str) -> None:
    seen: list[Any] = []
    prob = om.OptimizationProblem(lambda u, p: quad({"x": u}, P), X0.astype(np.float32), grad=backend)
    sol = om.solve(prob, om.SGD(lr=0.05), maxiters=3, callback=lambda info: seen.append(info.u))
    assert type(sol.opt_state) is NativeState and len(seen) == 3
    assert all(type(u) is np.ndarray and u.dtype == np.float32 and u.shape == (4,) for u in [*seen, sol.u])
    assert seen[-1].tobytes() == sol.u.tobytes()


# -- 7. jax pytrees -------------------------------------------------------------------------------------


class Pair(NamedTuple):
    w: Any
    b: Any


def _pytree(kind: str) -> tuple[Any, Callable[[Any], dict[str, Any]]]:
    """A u0 of `kind` and how to read its leaves: float parameters w (a jax float32 array) and b
    (NumPy float32), and, but for the NamedTuple, an activation function, an int array of
    indices and a Python int, which are not parameters."""
    import jax
    import jax.numpy as jnp

    w, b = jnp.asarray([[0.5, -0.25], [0.1, 0.3]], dtype=jnp.float32), np.array([0.2, -0.1, 0.4], dtype=np.float32)
    idx = jnp.asarray([1, 0], dtype=jnp.int32)
    if kind == "equinox":
        eqx = importlib.import_module("equinox")

        class Model(eqx.Module):  # type: ignore[misc, name-defined]
            w: Any
            b: Any
            idx: Any
            act: Callable[[Any], Any]
            n: int

        return Model(w, b, idx, jnp.tanh, 2), lambda u: vars(u)
    if kind == "frozendict":
        frozen = importlib.import_module("flax.core").FrozenDict
        return frozen({"w": w, "b": b, "idx": idx, "act": jnp.tanh, "n": 2}), lambda u: dict(u)
    if kind == "dataclass":
        if not _REGISTERED:
            jax.tree_util.register_dataclass(Registered, data_fields=["w", "b", "idx"], meta_fields=["act", "n"])
            _REGISTERED.append(True)
        return Registered(w, b, idx, jnp.tanh, 2), lambda u: vars(u)
    assert kind == "namedtuple"
    return Pair(w, b), lambda u: {"w": u.w, "b": u.b, "idx": idx, "act": jnp.tanh, "n": 2}


@dataclasses.dataclass(frozen=True)
class Registered:
    """A dataclass that `_pytree` registers with jax.tree_util: w, b and idx data, act and n meta."""

    w: Any
    b: Any
    idx: Any
    act: Any
    n: int


_REGISTERED: list[bool] = []


PYTREES = [
    pytest.param("equinox", marks=pytest.mark.needs("jax", "equinox")),
    pytest.param("frozendict", marks=pytest.mark.needs("jax", "flax")),
    pytest.param("dataclass", marks=pytest.mark.needs("jax")),
    pytest.param("namedtuple", marks=pytest.mark.needs("jax")),
]


def pytree_loss(parts: Callable[[Any], dict[str, Any]]) -> Callable[[Any, Any], Any]:
    import jax.numpy as jnp

    def f(u: Any, p: Any) -> Any:
        leaf = parts(u)
        assert type(leaf["n"]) is int and callable(leaf["act"])  # as given, not traced
        hidden = leaf["act"](leaf["w"][leaf["idx"]] @ jnp.ones(2, dtype=leaf["w"].dtype))
        return jnp.sum((hidden - 0.5) ** 2) * leaf["n"] + jnp.sum((leaf["b"] - 1.0) ** 2)

    return f


@pytest.mark.parametrize("make", [lambda: om.Adam(lr=0.05), om.LBFGS], ids=["Adam", "LBFGS"])
@pytest.mark.parametrize("kind", PYTREES)
def test_a_jax_pytree_comes_back_as_itself(kind: str, make: Any) -> None:
    import jax

    u0, parts = _pytree(kind)
    before = fingerprint(jax.tree_util.tree_leaves(u0))
    f = pytree_loss(parts)
    alg = make()
    sol = om.solve(om.OptimizationProblem(f, u0, grad="jax"), alg, maxiters=40)
    assert type(sol.u) is type(u0)
    assert jax.tree_util.tree_structure(sol.u) == jax.tree_util.tree_structure(u0)
    assert (type(sol.opt_state) is NativeState) == isinstance(alg, ElementwiseAlgorithm)
    given, got = parts(u0), parts(sol.u)
    assert got["act"] is given["act"] and got["n"] == 2 and type(got["n"]) is int
    assert isinstance(got["idx"], jax.Array) and got["idx"].dtype == np.int32
    assert np.array_equal(host(got["idx"]), host(given["idx"]))
    # The float arrays are trained; on the native path each of its own kind and dtype (on the
    # NumPy path, optimeta's own trees come back as float64 NumPy: `Layout.to_user`).
    assert got["w"].shape == (2, 2) and got["b"].shape == (3,)
    if type(sol.opt_state) is NativeState or kind != "namedtuple":
        assert isinstance(got["w"], jax.Array) and got["w"].dtype == np.float32
        assert type(got["b"]) is np.ndarray and got["b"].dtype == np.float32
    assert not np.array_equal(host(got["w"]), host(given["w"])) and not np.array_equal(got["b"], given["b"])
    assert sol.objective < float(f(u0, None))
    assert fingerprint(jax.tree_util.tree_leaves(u0)) == before


# -- 8. the traits --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [om.BFGS, om.LBFGS], ids=["BFGS", "LBFGS"])
def test_an_evolving_state_is_refused_by_a_quasi_newton_method_before_any_call(backend: str, make: Any) -> None:
    calls: list[Any] = []

    def f(u: Any, p: Any, s: Any) -> Any:
        calls.append(s)  # under jax: at trace time, which a call would need first
        return keyed(u, p, s)

    p = {**P, "bad": np.array([-1])}
    prob = om.OptimizationProblem(f, {"x": X0}, p=p, state={"k": 0, "m": np.zeros(4)}, grad=backend)
    alg = make()
    for run in (lambda: om.solve(prob, alg), lambda: om.init(prob, alg)):
        with pytest.raises(om.IncompatibleAlgorithmError) as err:
            run()
        assert type(err.value) is om.IncompatibleAlgorithmError
        assert str(err.value).startswith(f"{alg!r} cannot solve this problem (the objective was not called):\n")
        assert "tolerates_stochastic_loss" in str(err.value)
    assert calls == []
    # Adam takes it, natively.
    sol = om.solve(prob, om.Adam(lr=0.05), maxiters=3)
    assert type(sol.opt_state) is NativeState and sol.state["k"] == 3 and len(calls) >= 1


# -- 9. minibatches -------------------------------------------------------------------------------------

TRACED: list[str] = []
SEEN: list[int] = []


def _seen(batch: Any) -> None:
    SEEN.append(int(batch))


def batch_loss(u: Any, p: Any) -> Any:
    x = u["x"]
    if _torch_array(x):
        SEEN.append(int(p["id"]))
    else:
        TRACED.append("f")  # at trace time only
        importlib.import_module("jax").debug.callback(_seen, p["id"])  # at every call
    return quad(u, p)


BATCHES = [{"w": W, "t": T + 0.5 * k, "id": np.array(k)} for k in (2, 0, 3, 1)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("label", "alg"), EXAMPLES, ids=LABELS)
def test_minibatches_feed_the_native_step_in_order(backend: str, label: str, alg: Any) -> None:
    epochs = 3
    TRACED.clear()
    SEEN.clear()
    infos: list[om.IterationInfo] = []
    prob = om.OptimizationProblem(batch_loss, {"x": X0}, p=BATCHES[0], grad=backend)
    sol = om.solve(prob, alg, data=BATCHES, epochs=epochs, callback=infos.append)
    steps = epochs * len(BATCHES)
    assert type(sol.opt_state) is NativeState and sol.opt_state.step == steps
    assert TRACED == (["f"] if backend == "jax" else [])  # one trace for every batch
    assert SEEN == [int(batch["id"]) for _ in range(epochs) for batch in BATCHES]
    assert [info.epoch for info in infos] == [e for e in range(1, epochs + 1) for _ in BATCHES]
    assert sol.retcode is om.ReturnCode.MAXITERS and sol.stats.iterations == steps
    assert sol.message == f"all {epochs} epoch(s) of data were used ({steps} steps)"
    expected = hand_loop(alg, steps, lambda i, x: quad_grad(x, BATCHES[i % len(BATCHES)]))
    for i, (info, want) in enumerate(zip(infos, expected)):
        np.testing.assert_allclose(info.u["x"], want, rtol=1e-11, atol=1e-13, err_msg=f"{label}, step {i + 1}")
    TRACED.clear()
    SEEN.clear()


@pytest.mark.needs("jax")
def test_bfloat16_stays_bfloat16_on_the_native_jax_path() -> None:
    import jax.numpy as jnp

    u0 = {"w": jnp.zeros(4, dtype=jnp.bfloat16)}
    prob = om.OptimizationProblem(lambda u, p: jnp.sum((u["w"] - 1.0) ** 2), u0, grad="jax", stochastic=True)
    seen: list[Any] = []
    sol = om.solve(prob, om.Adam(lr=0.05), maxiters=50, callback=lambda info: seen.append(info.u["w"].dtype))
    assert type(sol.opt_state).__name__ == "NativeState"
    assert sol.u["w"].dtype == jnp.bfloat16 and set(seen) == {jnp.dtype(jnp.bfloat16)}
    assert all(leaf.dtype == jnp.bfloat16 for slot in sol.opt_state.slots for leaf in slot)
    assert np.all(np.asarray(sol.u["w"], dtype=np.float32) > 0.9)  # Adam's steps of ~lr reached 1
    assert np.asarray(u0["w"], dtype=np.float32).tolist() == [0.0] * 4
