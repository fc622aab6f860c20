"""The native jax and torch paths against the reference loops, step by step.

With ``grad="jax"``, every elementwise first-order algorithm runs as one compiled jax step
(`optimeta._native_jax`); with ``grad="torch"``, on a flat torch tensor (`optimeta._native_torch`). Each is run here beside its reference, fed the same gradients: optax
where optax's update is the same formula, torch.optim where optax's differs (torch's RMSprop,
Adagrad and AMSGrad put eps outside the root, as optimeta does; Adadelta is torch's). float64
iterates agree to 1e-12 (relative), float32 ones to float32 rounding (optax's loop takes jax's
gradient in the iterate's dtype, as the native step does). The catalogue is taken
from the registry: an elementwise algorithm without a reference here fails the completeness test.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import optimeta as om
from optimeta.backends._base import ElementwiseAlgorithm
from optimeta.traits import registered

A = np.array([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 2.0]])
C = np.array([1.0, -2.0, 0.5])
U0 = np.array([0.3, 0.8, -0.4])
STEPS = 30


def gradient(x: np.ndarray) -> np.ndarray:
    """The gradient of the test objective, 0.5 (x-c)^T A (x-c) + 0.1 sum(sin x), in NumPy."""
    return np.asarray(A @ (x - C) + 0.1 * np.cos(x))


def torch_objective(u: Any, p: Any) -> Any:
    torch = importlib.import_module("torch")
    x = u["x"]
    d = x - torch.tensor(C, dtype=x.dtype)
    return 0.5 * d @ (torch.tensor(A, dtype=x.dtype) @ d) + 0.1 * torch.sum(torch.sin(x))


def objective(u: Any, p: Any) -> Any:
    jnp = importlib.import_module("jax.numpy")
    d = u["x"] - jnp.asarray(C, dtype=u["x"].dtype)
    return 0.5 * d @ (jnp.asarray(A, dtype=u["x"].dtype) @ d) + 0.1 * jnp.sum(jnp.sin(u["x"]))


def optax_loop(transform: Any, dtype: Any) -> list[np.ndarray]:
    jax, optax = importlib.import_module("jax"), importlib.import_module("optax")
    jnp = jax.numpy
    x = jnp.asarray(U0, dtype=dtype)
    # The gradient as the native step takes it: jax's, in the iterate's dtype.
    grad = jax.jit(jax.grad(lambda z: objective({"x": z}, None)))
    state, out = transform.init(x), []
    for _ in range(STEPS):
        updates, state = transform.update(grad(x), state, x)
        x = optax.apply_updates(x, updates)
        out.append(np.asarray(x))
    return out


def torch_loop(make: Callable[[Any], Any]) -> list[np.ndarray]:
    torch = importlib.import_module("torch")
    x = torch.tensor(U0.copy(), dtype=torch.float64, requires_grad=True)
    opt, out = make([x]), []
    for _ in range(STEPS):
        x.grad = torch.from_numpy(gradient(x.detach().numpy().copy()))
        opt.step()
        out.append(x.detach().numpy().copy())
    return out


def _optax(name: str, **kw: Any) -> Callable[[Any], list[np.ndarray]]:
    def run(dtype: Any) -> list[np.ndarray]:
        return optax_loop(getattr(importlib.import_module("optax"), name)(**kw), dtype)

    run.library = "optax"  # type: ignore[attr-defined]
    return run


def _torch(name: str, **kw: Any) -> Callable[[Any], list[np.ndarray]]:
    def run(dtype: Any) -> list[np.ndarray]:
        return torch_loop(lambda params: getattr(importlib.import_module("torch").optim, name)(params, **kw))

    run.library = "torch"  # type: ignore[attr-defined]
    return run


#: (optimeta configuration, its reference): one or more per elementwise class of the registry.
CASES: list[tuple[str, om.Algorithm, Callable[[Any], list[np.ndarray]]]] = [
    ("Adam", om.Adam(lr=0.05), _optax("adam", learning_rate=0.05)),
    ("AdamW", om.AdamW(lr=0.05, weight_decay=0.1), _optax("adamw", learning_rate=0.05, weight_decay=0.1)),
    ("Adamax", om.Adamax(lr=0.05, eps=1e-3), _optax("adamax", learning_rate=0.05, eps=1e-3)),
    ("NAdam", om.NAdam(lr=0.05), _optax("nadam", learning_rate=0.05)),
    ("Lion", om.Lion(lr=0.01, weight_decay=0.1), _optax("lion", learning_rate=0.01, weight_decay=0.1)),
    ("SGD", om.SGD(lr=0.05), _optax("sgd", learning_rate=0.05)),
    ("SGD-momentum", om.SGD(lr=0.05, momentum=0.9), _optax("sgd", learning_rate=0.05, momentum=0.9)),
    (
        "SGD-nesterov",
        om.SGD(lr=0.05, momentum=0.9, nesterov=True),
        _optax("sgd", learning_rate=0.05, momentum=0.9, nesterov=True),
    ),
    ("AMSGrad", om.AMSGrad(lr=0.05), _torch("Adam", lr=0.05, amsgrad=True)),
    ("RMSProp", om.RMSProp(lr=0.01, momentum=0.5), _torch("RMSprop", lr=0.01, alpha=0.99, eps=1e-8, momentum=0.5)),
    ("Adagrad", om.Adagrad(lr=0.1, initial_accumulator=0.1), _torch("Adagrad", lr=0.1, initial_accumulator_value=0.1)),
    ("Adadelta", om.Adadelta(lr=1.0), _torch("Adadelta", lr=1.0, rho=0.9, eps=1e-6)),
]


def optimeta_run(alg: om.Algorithm, dtype: Any, backend: str = "jax") -> tuple[list[np.ndarray], om.Solution]:
    f = objective if backend == "jax" else torch_objective
    prob = om.OptimizationProblem(f, {"x": U0.astype(dtype)}, grad=backend, stochastic=True)
    seen: list[np.ndarray] = []
    if backend == "torch":
        sol = om.solve(prob, alg, maxiters=STEPS, callback=lambda info: seen.append(info.u["x"]))
        return seen, sol
    jax = importlib.import_module("jax")
    with jax.enable_x64(np.dtype(dtype) == np.float64):
        sol = om.solve(prob, alg, maxiters=STEPS, callback=lambda info: seen.append(info.u["x"]))
    return seen, sol


def test_every_elementwise_algorithm_has_a_reference() -> None:
    elementwise = {cls.__name__ for cls in registered() if issubclass(cls, ElementwiseAlgorithm)}
    covered = {type(alg).__name__ for _, alg, _ in CASES}
    assert elementwise == covered


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize(("name", "alg", "reference"), CASES, ids=[c[0] for c in CASES])
def test_float64_native_steps_equal_the_reference(name: str, alg: om.Algorithm, reference: Any, backend: str) -> None:
    pytest.importorskip(backend, reason=f"needs {backend} (not installed): pip install 'optimeta[{backend}]'")
    pytest.importorskip(reference.library, reason=f"needs {reference.library} (not installed)")
    jax = pytest.importorskip("jax", reason="the optax references need jax (not installed)")
    seen, sol = optimeta_run(alg, np.float64, backend)
    assert type(sol.opt_state).__name__ == "NativeState"  # the native path ran
    with jax.enable_x64(True):
        expected = reference(np.float64)
    assert len(seen) == STEPS
    for k, (got, want) in enumerate(zip(seen, expected)):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"{name} on {backend}, step {k + 1}")


FLOAT32 = [c for c in CASES if c[2].library == "optax"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "alg", "reference"), FLOAT32, ids=[c[0] for c in FLOAT32])
def test_float32_native_steps_equal_optax_to_float32_rounding(name: str, alg: om.Algorithm, reference: Any) -> None:
    pytest.importorskip("jax", reason="needs jax (not installed): pip install 'optimeta[jax]'")
    pytest.importorskip("optax", reason="needs optax (not installed)")
    jax = importlib.import_module("jax")
    seen, sol = optimeta_run(alg, np.float32)
    with jax.enable_x64(False):
        expected = reference(np.float32)
    with jax.enable_x64(True):
        exact = reference(np.float64)
    assert sol.u["x"].dtype == np.float32
    lr = float(alg.lr)  # type: ignore[attr-defined]
    for k, (got, want, truth) in enumerate(zip(seen, expected, exact)):
        assert got.dtype == np.float32
        # Two compiled programs round a gradient differently, and Adam's normalised step turns
        # that into up to ~1e-4 of the step size: within 1e-3 lr of optax's float32 iterate...
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * lr, err_msg=f"{name}, step {k + 1}")
        # ...and as close to the float64 trajectory as optax's own float32 run is.
        ours, theirs = np.max(np.abs(got - truth)), np.max(np.abs(want - truth))
        assert ours <= 2 * theirs + 8 * np.finfo(np.float32).eps, (name, k + 1, ours, theirs)
