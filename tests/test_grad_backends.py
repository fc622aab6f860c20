"""Gradient backends (issue 7): ``grad="jax"`` and ``grad="torch"`` against autograd, measured.

Each objective is written once per backend (``autograd.numpy``, ``jax.numpy``, torch) and the
backends are compared on the same problem: values, gradients, Hessian-vector products and
Hessians at random points; whole runs of a sample of algorithms (first-order, quasi-Newton,
Newton with second derivatives, derivative-free, a chain); the state-threading contract (the
exact state each call receives, one commit per evaluation or per step, a constant state checked,
``Solution.state`` of plain NumPy arrays and Python scalars with no jax array, tracer or tensor,
inputs unchanged byte for byte, checkpoints that pickle); one trace per jitted function per solve;
exact errors. jax and torch are extras (``optimeta[jax]``, ``optimeta[torch]``): a test of either
is skipped, with the install command, where it is not installed (``conftest.py``).
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from catalogue import SCALES, C, flat, tree_leaves

import optimeta as om
from optimeta._objective import Objective

try:
    import jax
    import jax.numpy as jnp
except ImportError:  # the tests that need it skip (conftest.py)
    jax = jnp = None
try:
    import torch
except ImportError:
    torch = None

BACKENDS = ["autograd", "jax", "torch"]

# -- the objectives, once per backend ---------------------------------------------------------
#
# A tree problem: u = {"w": 2x2 array, "b": scalar}, minimum 0 at w = TARGET, b = 1. Quartic
# terms and a coupling make its Hessian vary with u, so that Newton methods have work to do.

TARGET = np.array([[1.0, -2.0], [0.5, 3.0]])
WEIGHTS = np.array([[1.0, 3.0], [0.5, 2.0]])
P_TREE = {"target": TARGET, "weights": WEIGHTS}
U0_TREE = {"w": np.zeros((2, 2)), "b": 0.0}


def tree_autograd(u: Any, p: Any) -> Any:
    d, e = u["w"] - p["target"], u["b"] - 1.0
    return anp.sum(p["weights"] * d**2) + e**2 + 0.5 * e**4 + anp.sum(d**2) * e**2


def tree_jax(u: Any, p: Any) -> Any:
    d, e = u["w"] - p["target"], u["b"] - 1.0
    return jnp.sum(p["weights"] * d**2) + e**2 + 0.5 * e**4 + jnp.sum(d**2) * e**2


def tree_torch(u: Any, p: Any) -> Any:
    d, e = u["w"] - torch.as_tensor(p["target"]), u["b"] - 1.0
    return torch.sum(torch.as_tensor(p["weights"]) * d**2) + e**2 + 0.5 * e**4 + torch.sum(d**2) * e**2


TREE = {"autograd": tree_autograd, "jax": tree_jax, "torch": tree_torch, "finite-difference": tree_autograd}

# A stateful objective whose state drives the loss (weights from an integer key, as dropout from
# an RNG key) and carries running statistics of u (as BatchNorm does), so that the state returned
# is computed under differentiation. Every call records the key it received.

KEYS: list[int] = []


def _record(key: Any) -> None:
    KEYS.append(int(key))


def keyed_autograd(u: Any, p: Any, s: Any) -> Any:
    _record(s["key"])
    w = 1.0 + 0.5 * np.sin(s["key"] + np.arange(3.0))
    return anp.sum(w * (u - p) ** 2), {"key": s["key"] + 1, "mean": 0.9 * s["mean"] + 0.1 * u}


def keyed_jax(u: Any, p: Any, s: Any) -> Any:
    jax.debug.callback(_record, s["key"])  # runs on every call of the compiled function
    w = 1.0 + 0.5 * jnp.sin(s["key"] + jnp.arange(3.0))
    return jnp.sum(w * (u - p) ** 2), {"key": s["key"] + 1, "mean": 0.9 * s["mean"] + 0.1 * u}


def keyed_torch(u: Any, p: Any, s: Any) -> Any:
    _record(s["key"])
    w = 1.0 + 0.5 * torch.sin(s["key"] + torch.arange(3.0, dtype=torch.float64))
    return torch.sum(w * (u - torch.as_tensor(p)) ** 2), {"key": s["key"] + 1, "mean": 0.9 * s["mean"] + 0.1 * u}


KEYED = {"autograd": keyed_autograd, "jax": keyed_jax, "torch": keyed_torch, "finite-difference": keyed_autograd}

# A state that changes but never drives the loss (a counter and the last point seen), for the
# algorithms that commit once per step.


def counter_autograd(u: Any, p: Any, s: Any) -> Any:
    return anp.sum(SCALES * (u - p) ** 2), {"updates": s["updates"] + 1, "last": u}


def counter_jax(u: Any, p: Any, s: Any) -> Any:
    return jnp.sum(SCALES * (u - p) ** 2), {"updates": s["updates"] + 1, "last": u}


def counter_torch(u: Any, p: Any, s: Any) -> Any:
    return torch.sum(torch.as_tensor(SCALES) * (u - torch.as_tensor(p)) ** 2), {"updates": s["updates"] + 1, "last": u}


COUNTER = {"autograd": counter_autograd, "jax": counter_jax, "torch": counter_torch}


def _keyed_problem(backend: str, **kwargs: Any) -> om.OptimizationProblem:
    grad = None if backend == "autograd" else backend
    state = {"key": 0, "mean": np.zeros(3)}
    return om.OptimizationProblem(KEYED[backend], np.zeros(3), p=C, state=state, grad=grad, **kwargs)


def _tree_problem(backend: str, **kwargs: Any) -> om.OptimizationProblem:
    grad = None if backend == "autograd" else backend
    return om.OptimizationProblem(TREE[backend], U0_TREE, p=P_TREE, grad=grad, **kwargs)


# -- helpers ------------------------------------------------------------------------------------


def assert_plain(tree: Any) -> None:
    """Every leaf is a NumPy array or a Python scalar: no jax array, tracer or torch tensor."""
    framework_types = tuple(t for t in (jax and jax.Array, torch and torch.Tensor) if t is not None)
    for leaf in tree_leaves(tree):
        assert not isinstance(leaf, framework_types), f"a framework value leaked: {leaf!r}"
        assert type(leaf) in (np.ndarray, int, float, bool), f"not plain: {type(leaf)} {leaf!r}"


def fingerprint(*objs: Any) -> bytes:
    """The exact bytes of the given inputs, to check that a solve changed none of them."""
    return pickle.dumps(objs, protocol=pickle.HIGHEST_PROTOCOL)


# -- values, gradients and second derivatives against autograd ---------------------------------


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("sense", ["min", "max"])
def test_value_gradient_and_hessians_match_autograd(backend: str, sense: str) -> None:
    ours, ref = Objective(_tree_problem(backend, sense=sense)), Objective(_tree_problem("autograd", sense=sense))
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, v = rng.normal(size=5), rng.normal(size=5)
        value, grad = ours.value_and_grad(x)
        ref_value, ref_grad = ref.value_and_grad(x)
        assert type(value) is float and type(grad) is np.ndarray and grad.dtype == np.float64 and grad.flags.writeable
        np.testing.assert_allclose(value, ref_value, rtol=1e-13)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.value(x), ref.value(x), rtol=1e-13)
        np.testing.assert_allclose(ours.hessp(x, v), ref.hessp(x, v), rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(ours.hessian(x), ref.hessian(x), rtol=1e-11, atol=1e-11)
    # One call of f per evaluation, as autograd: value and gradient, value, product, Hessian.
    counts = (ours.fevals, ours.gevals, ours.hevals)
    assert counts == (ref.fevals, ref.gevals, ref.hevals) == (12, 3, 6)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_stateful_evaluations_match_autograd(backend: str) -> None:
    ours, ref = Objective(_keyed_problem(backend)), Objective(_keyed_problem("autograd"))
    for x in np.random.default_rng(1).normal(size=(4, 3)):
        (value, grad), (ref_value, ref_grad) = ours.value_and_grad(x), ref.value_and_grad(x)
        np.testing.assert_allclose(value, ref_value, rtol=1e-13)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12)
        assert ours.state["key"] == ref.state["key"] and type(ours.state["key"]) is int
        np.testing.assert_allclose(ours.state["mean"], ref.state["mean"], rtol=1e-14)
        assert_plain(ours.state)


@pytest.mark.needs("jax", "torch")
def test_a_loss_without_u_has_a_zero_gradient() -> None:
    for backend, f in (("jax", lambda u, p: jnp.asarray(2.0)), ("torch", lambda u, p: torch.tensor(2.0))):
        obj = Objective(om.OptimizationProblem(f, np.ones(2), grad=backend))
        value, grad = obj.value_and_grad(np.ones(2))
        assert value == 2.0 and np.array_equal(grad, np.zeros(2))
        assert np.array_equal(obj.hessp(np.ones(2), np.ones(2)), np.zeros(2))
        assert np.array_equal(obj.hessian(np.ones(2)), np.zeros((2, 2)))


# -- whole runs of a sample of algorithms ---------------------------------------------------------

SAMPLE: list[tuple[str, Callable[[], Any], int | None]] = [
    ("SGD", lambda: om.SGD(lr=0.05, momentum=0.5), 400),
    ("Adam", lambda: om.Adam(lr=0.05), 400),
    ("BFGS", lambda: om.BFGS(), None),
    ("LBFGS", lambda: om.LBFGS(), None),
    ("NewtonCG", lambda: om.NewtonCG(), None),
    ("TrustExact", lambda: om.TrustExact(), None),
    ("NelderMead", lambda: om.NelderMead(xatol=1e-10, fatol=1e-14, adaptive=True), None),
    ("Chain", lambda: om.Chain((om.Adam(lr=0.05), 50), om.BFGS()), None),
]
_REFERENCE: dict[str, om.Solution] = {}


def _reference(name: str, make: Callable[[], Any], maxiters: int | None) -> om.Solution:
    if name not in _REFERENCE:
        _REFERENCE[name] = om.solve(_tree_problem("autograd"), make(), maxiters=maxiters)
    return _REFERENCE[name]


@pytest.mark.parametrize("backend", ["jax", "torch", "finite-difference"])
@pytest.mark.parametrize(("name", "make", "maxiters"), SAMPLE, ids=[s[0] for s in SAMPLE])
def test_runs_match_autograd(backend: str, name: str, make: Callable[[], Any], maxiters: int | None) -> None:
    alg = make()
    prob = _tree_problem(backend)
    if backend == "finite-difference" and om.traits(alg).requires_hessian:
        with pytest.raises(om.IncompatibleAlgorithmError, match="requires_hessian"):
            om.solve(prob, alg, maxiters=maxiters)
        return
    before = fingerprint(prob.u0, P_TREE, U0_TREE)
    sol = om.solve(prob, alg, maxiters=maxiters)
    ref = _reference(name, make, maxiters)
    assert fingerprint(prob.u0, P_TREE, U0_TREE) == before
    # The user's structure comes back: a dict with a 2x2 array and a scalar, as from autograd.
    assert sol.u.keys() == ref.u.keys() and sol.u["w"].shape == (2, 2)
    assert type(sol.u["b"]) is type(ref.u["b"]) and type(sol.u["w"]) is np.ndarray
    assert sol.retcode == ref.retcode and sol.state is None
    if backend == "finite-difference":
        np.testing.assert_allclose(flat(sol.u), flat(ref.u), atol=1e-5)
        return
    # The same derivatives to rounding: the same run, call for call.
    counts = ("iterations", "fevals", "gevals", "hevals", "probe_fevals")
    assert [getattr(sol.stats, c) for c in counts] == [getattr(ref.stats, c) for c in counts]
    np.testing.assert_allclose(flat(sol.u), flat(ref.u), rtol=1e-9, atol=1e-9)
    if maxiters is None:
        np.testing.assert_allclose(flat(sol.u), flat({"w": TARGET, "b": 1.0}), atol=1e-4)


# -- the state-threading contract -------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS + ["finite-difference"])
@pytest.mark.parametrize("alg", [om.Adam(lr=0.05), om.SGD(lr=0.02)], ids=["Adam", "SGD"])
def test_each_call_receives_the_state_the_last_one_returned(backend: str, alg: Any) -> None:
    n = 25
    prob = _keyed_problem(backend)
    before = fingerprint(prob.u0, prob.p, prob.state, C)
    infos: list[Any] = []
    KEYS.clear()
    sol = om.solve(prob, alg, maxiters=n, callback=lambda info: infos.append(info.state) and None)
    # Finite differences make n + 1 calls per gradient, all on the key of that evaluation.
    per_eval = 1 + prob._layout.size if backend == "finite-difference" else 1
    assert KEYS == [k for k in range(n) for _ in range(per_eval)]
    assert sol.stats.fevals == n * per_eval and sol.stats.gevals == n
    assert sol.state["key"] == n and type(sol.state["key"]) is int
    assert [s["key"] for s in infos] == list(range(1, n + 1))
    for state in (sol.state, *infos):
        assert_plain(state)
    assert fingerprint(prob.u0, prob.p, prob.state, C) == before and prob.state["key"] == 0
    ref = om.solve(_keyed_problem("autograd"), alg, maxiters=n)
    rtol = 1e-6 if backend == "finite-difference" else 1e-10
    np.testing.assert_allclose(sol.state["mean"], ref.state["mean"], rtol=rtol)
    np.testing.assert_allclose(sol.u, ref.u, rtol=rtol)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_state_given_as_framework_arrays_comes_back_as_numpy(backend: str) -> None:
    if backend == "jax":
        state = {"key": jnp.asarray(0), "mean": jnp.zeros(3)}
    else:
        state = {"key": 0, "mean": torch.zeros(3, dtype=torch.float64)}
    prob = om.OptimizationProblem(KEYED[backend], np.zeros(3), p=C, state=state, grad=backend)
    sol = om.solve(prob, om.Adam(lr=0.05), maxiters=3)
    assert sol.state["key"] == 3 and sol.state["mean"].shape == (3,)
    assert_plain(sol.state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfgs_commits_the_state_once_per_step(backend: str) -> None:
    grad = None if backend == "autograd" else backend
    state = {"updates": 0, "last": np.zeros(3)}
    prob = om.OptimizationProblem(COUNTER[backend], np.zeros(3), p=C, state=state, stochastic=False, grad=grad)
    sol = om.solve(prob, om.BFGS())
    assert sol.success and sol.state["updates"] == sol.stats.iterations < sol.stats.fevals
    np.testing.assert_allclose(sol.state["last"], sol.u)  # returned at the accepted point
    assert_plain(sol.state)
    assert prob.state["updates"] == 0 and not prob.state["last"].any()


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_constant_state_is_checked_on_every_call(backend: str) -> None:
    xp: Any = jnp if backend == "jax" else torch

    def steady(u: Any, p: Any, s: Any) -> Any:
        return xp.sum(xp.exp(u) - 2.0 * u) * s["scale"], s

    def drifting(u: Any, p: Any, s: Any) -> Any:
        return xp.sum(xp.exp(u) - 2.0 * u), {"scale": s["scale"] + 1.0}

    state = {"scale": np.array(2.0)}
    prob = om.OptimizationProblem(steady, np.ones(2), state=state, state_mode="constant", grad=backend)
    sol = om.solve(prob, om.TrustExact())  # Hessians on the state too
    np.testing.assert_allclose(sol.u, np.log(2.0) * np.ones(2), atol=1e-8)
    assert sol.stats.hevals > 0 and sol.state == {"scale": 2.0}
    drift = om.OptimizationProblem(drifting, np.ones(2), state=state, state_mode="constant", grad=backend)
    with pytest.raises(om.StateMutationError, match=r"^call 1 of f changed state\['scale'\]"):
        om.solve(drift, om.BFGS())  # the determinism probe's first call, as with autograd
    assert state["scale"] == 2.0


@pytest.mark.needs("jax")
def test_a_checkpoint_of_a_jax_run_pickles_and_resumes_bitwise() -> None:
    prob = _keyed_problem("jax")
    solver = om.init(prob, om.Adam(lr=0.05), maxiters=20)
    for _ in range(8):
        solver.step()
    blob = pickle.dumps(solver.checkpoint())
    later = om.resume(pickle.loads(blob), prob).solve()
    straight = om.solve(prob, om.Adam(lr=0.05), maxiters=20)
    assert later.u.tobytes() == straight.u.tobytes() and later.state["key"] == 20
    assert later.state["mean"].tobytes() == straight.state["mean"].tobytes()
    assert_plain(later.state)


# -- compiled once per solve ----------------------------------------------------------------------

TRACES: list[str] = []


def traced_quadratic(u: Any, p: Any, s: Any) -> Any:
    TRACES.append("f")  # a Python side effect: runs when jax traces f, not when it runs the trace
    return jnp.sum(p * (u - 1.0) ** 2), {"step": s["step"] + 1, "seen": s["seen"] + jnp.sum(u)}


@pytest.mark.needs("jax")
@pytest.mark.parametrize(
    ("make", "options", "traces", "again"),
    [
        # the native compiled step (value, gradient and update); the int and the array of the
        # state change at every call; a second solve of the problem reuses the compilation
        (lambda: om.Adam(lr=0.1), {"maxiters": 60}, 1, 0),
        # a new minibatch as p at every step: arrays of one shape, no new trace
        (lambda: om.SGD(lr=0.05), {"data": [np.full(3, k + 1.0) for k in range(4)], "epochs": 5}, 1, 0),
        # the determinism probe's values, then values and gradients (state declared stochastic=False);
        # on the NumPy path a new solve compiles anew, once
        (lambda: om.BFGS(), {}, 2, 2),
    ],
    ids=["Adam", "SGD-minibatches", "BFGS"],
)
def test_jax_traces_each_function_once_per_solve(
    make: Callable[[], Any], options: dict[str, Any], traces: int, again: int
) -> None:
    state = {"step": 0, "seen": 0.0}
    prob = om.OptimizationProblem(
        traced_quadratic, np.zeros(3), p=np.arange(1.0, 4.0), state=state, grad="jax", stochastic=False
    )
    TRACES.clear()
    for expected in (traces, traces + again):
        sol = om.solve(prob, make(), **options)
        assert len(TRACES) == expected
        assert sol.state["step"] == sol.stats.iterations > 4  # one commit per step
        assert_plain(sol.state)
    TRACES.clear()


@pytest.mark.needs("jax")
def test_newton_methods_trace_second_derivatives_once() -> None:
    TRACES.clear()

    def f(u: Any, p: Any) -> Any:
        TRACES.append("f")
        return jnp.sum(jnp.exp(u) - 2.0 * u)

    sol = om.solve(om.OptimizationProblem(f, np.ones(4), grad="jax"), om.NewtonCG())
    # the probe's values, values and gradients, and Hessian-vector products, each traced once
    assert sol.success and sol.stats.hevals > 3 and len(TRACES) == 3
    TRACES.clear()


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_a_missing_framework_is_named_with_its_extra_when_the_problem_is_built(
    framework: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs whether or not the framework is installed: the parameter is no ``backend`` (conftest.py).
    monkeypatch.setitem(sys.modules, framework, None)  # what an environment without it sees
    calls: list[Any] = []
    with pytest.raises(ModuleNotFoundError, match=rf'^grad="{framework}" .* pip install \'optimeta\[{framework}\]\'$'):
        om.OptimizationProblem(lambda u, p: calls.append(u), np.zeros(2), grad=framework)
    assert calls == []


def test_an_unknown_gradient_name_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError) as err:
        om.OptimizationProblem(lambda u, p: 0.0, np.zeros(2), grad="tensorflow")
    assert str(err.value) == (
        "grad must be one of 'autograd', 'finite-difference', 'jax', 'torch', a callable grad(u, p[, state]) "
        "or None, got 'tensorflow'"
    )
    assert om.OptimizationProblem(lambda u, p: 0.0, np.zeros(2), grad="autograd").grad == "autograd"


def _error(backend: str, f: Any, **kwargs: Any) -> str:
    grad = None if backend == "autograd" else backend
    with pytest.raises(TypeError) as err:
        om.solve(om.OptimizationProblem(f, np.zeros(3), grad=grad, **kwargs), om.Adam(lr=0.1), maxiters=2)
    return str(err.value)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_loss_that_is_not_a_scalar_is_the_same_type_error_as_with_autograd(backend: str) -> None:
    xp: Any = {"jax": jnp, "torch": torch}[backend]
    autograd_text = _error("autograd", lambda u, p: u * 2.0)
    text = _error(backend, lambda u, p: u * 2.0)
    assert autograd_text.startswith("the objective must return a real scalar loss, got an array of shape (3,): ")
    if backend == "torch":
        assert text == autograd_text  # the value shown too: array([0., 0., 0.])
    else:  # under jit only the shape and dtype exist when f is traced
        assert text == autograd_text.split(": ")[0] + ": a traced jax array of float64"
    hint = "the objective must return a real scalar loss; to return (loss, new_state), give the problem its "
    assert _error("autograd", lambda u, p: (anp.sum(u), {"key": 0})).startswith(hint)
    assert _error(backend, lambda u, p: (xp.sum(u), {"key": 0})).startswith(
        hint + "initial state with state=, got tuple: ("
    )
    pair = r"^f must return a pair \(value, new_state\) when the problem has a state \(state= was given\), got "
    assert re.match(pair, _error("autograd", lambda u, p, s: anp.sum(u), state={"key": 0}))
    assert re.match(pair, _error(backend, lambda u, p, s: xp.sum(u), state={"key": 0}))


@pytest.mark.needs("jax", "torch")
def test_a_jax_state_must_be_numbers_and_arrays() -> None:
    calls: list[Any] = []
    with pytest.raises(TypeError) as err:
        om.OptimizationProblem(
            lambda u, p, s: calls.append(u), np.zeros(2), state={"rng": np.random.default_rng(0), "n": 0}, grad="jax"
        )
    assert str(err.value).startswith(
        'grad="jax" passes the state through jax.jit, so its leaves must be numbers or arrays; '
        "state['rng'] is a Generator: Generator(PCG64)"
    )
    with pytest.raises(TypeError, match=r"^state\['key'\] is a typed jax PRNG key \(jax.random.key\)"):
        om.OptimizationProblem(lambda u, p, s: 0.0, np.zeros(2), state={"key": jax.random.key(0)}, grad="jax")
    assert calls == []
    # torch runs f eagerly: a Generator in the state is drawn from at every call, as with autograd.
    prob = om.OptimizationProblem(
        lambda u, p, s: (torch.sum(u**2) * s.uniform(0.5, 1.5), s),
        np.ones(2),
        state=np.random.default_rng(0),
        grad="torch",
    )
    assert isinstance(om.solve(prob, om.Adam(lr=0.1), maxiters=3).state, np.random.Generator)


@pytest.mark.needs("jax", "torch")
def test_newton_methods_accept_jax_and_torch_but_not_finite_differences() -> None:
    accepted = {name: om.algorithms(for_problem=_tree_problem(name), requires_hessian=True) for name in TREE}
    assert accepted["jax"] == accepted["torch"] == accepted["autograd"] != [] and accepted["finite-difference"] == []


def test_importing_optimeta_imports_neither_framework() -> None:
    code = "import sys, optimeta; print(sorted({'jax', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
