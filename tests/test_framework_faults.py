"""A loss cut from the framework's graph: ``grad="torch"`` and ``grad="jax"`` objectives whose loss
no longer depends on ``u`` are a TypeError at the first gradient call, before any step, for every
gradient-based algorithm of the registry, never a zero gradient reported as a success.

torch: a Python number or NumPy value (``.item()``, ``float()``, ``.numpy()``) is refused wherever
a derivative is asked; a tensor with no graph to ``u`` is refused when ``f`` cut a tensor that
requires grad out of the graph (``.detach()``, ``.data``, ``torch.no_grad()``), and accepted as a
constant (a zero gradient) otherwise. jax: a value taken out of the trace (``float()``,
``.item()``, ``np.asarray()`` of a tracer) is refused, chained from jax's own error.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import optimeta as om
from optimeta._objective import Objective

U0 = np.zeros(2)
BOUNDS = (np.full(2, -3.0), np.full(2, 3.0))


def _gradient_algorithms() -> list[type]:
    """Every registered algorithm that requires a gradient and accepts a problem without constraints."""
    free = om.OptimizationProblem(lambda u, p: 0.0, U0)
    boxed = om.OptimizationProblem(lambda u, p: 0.0, U0, bounds=BOUNDS)
    return sorted(
        set(om.algorithms(for_problem=free, requires_gradient=True))
        | set(om.algorithms(for_problem=boxed, requires_gradient=True)),
        key=lambda cls: cls.__name__,
    )


GRADIENT_ALGORITHMS = _gradient_algorithms()


def _make(cls: type) -> Any:
    """`cls` with its defaults, and a learning rate where it has none."""
    required = [
        name
        for name, par in inspect.signature(cls).parameters.items()
        if par.default is inspect.Parameter.empty and par.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    return cls(**{name: 0.1 for name in required})


def _solve(cls: type, f: Callable[..., Any], grad: str) -> None:
    """Solve with `cls`; a problem with bounds for the algorithms that require them."""
    bounds = BOUNDS if cls.traits.requires_bounds else None
    om.solve(om.OptimizationProblem(f, U0, grad=grad, bounds=bounds), _make(cls), maxiters=5)


def test_the_registry_has_gradient_algorithms_of_every_kind() -> None:
    names = {cls.__name__ for cls in GRADIENT_ALGORITHMS}
    assert {"Adam", "SGD", "BFGS", "LBFGS", "NewtonCG", "TrustExact", "SLSQP", "DualAnnealing"} <= names
    assert all(cls.traits.requires_gradient for cls in GRADIENT_ALGORITHMS)


# -- torch ------------------------------------------------------------------------------------------

TORCH_START = "the loss f returned does not depend on u in torch's graph ("
TORCH_END = (
    "): f must return a tensor computed from u; .item(), .detach() and .numpy() cut it from the graph "
    "(for a constant loss, return "
)
# The value shown is the loss at u0 (2.0), or at a sample of the bounded global searches.
NUMBER = re.escape(TORCH_START + "a Python float, ") + "[0-9.e+-]+" + re.escape(TORCH_END + "torch.tensor(c))")
NUMPY = re.escape(TORCH_START + "a NumPy float64, ") + "[0-9.e+-]+" + re.escape(TORCH_END + "torch.tensor(c))")
DETACHED = re.escape(TORCH_START + "a tensor with no grad_fn; f called .detach() on a tensor that requires grad")
DATA = re.escape(TORCH_START + "a tensor with no grad_fn; f read .data on a tensor that requires grad")
NO_GRAD = re.escape(
    TORCH_START + "a tensor with no grad_fn; f computed from a tensor that requires grad under torch.no_grad()"
)


def _torch_cut(how: str, calls: list[np.ndarray]) -> Callable[..., Any]:
    """sum((u - 1)**2), minimum 0 at [1, 1], cut from the graph as `how` says; each call records u
    (after the loss, so that the first cut f makes is the one under test)."""
    import torch

    def f(u: Any, p: Any) -> Any:
        loss: Any
        if how == ".item()":
            loss = torch.sum((u - 1) ** 2).item()
        elif how == "float()":
            loss = float(torch.sum((u - 1) ** 2))
        elif how == ".numpy()":
            loss = np.sum((u.detach().numpy() - 1) ** 2)
        elif how == ".detach()":
            loss = torch.sum((u.detach() - 1) ** 2)
        elif how == "detached copy":
            v = u.detach().clone()
            loss = torch.sum((v - 1) ** 2)
        elif how == ".data":
            loss = torch.sum((u.data - 1) ** 2)
        else:
            with torch.no_grad():
                loss = torch.sum((u - 1) ** 2)
        calls.append(u.detach().numpy().copy())
        return loss

    return f


# float() of a tensor that requires grad makes torch warn, as it should; the error is what is tested.
_FLOAT_WARNS = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar:UserWarning")

TORCH_CUTS = [
    pytest.param(".item()", NUMBER, id="item"),
    pytest.param("float()", NUMBER, id="float", marks=_FLOAT_WARNS),
    pytest.param(".numpy()", NUMPY, id="numpy"),
    pytest.param(".detach()", DETACHED, id="detach"),
    pytest.param("detached copy", DETACHED, id="detached-copy"),
    pytest.param(".data", DATA, id="data"),
    pytest.param("torch.no_grad()", NO_GRAD, id="no_grad"),
]


@pytest.mark.parametrize(("how", "message"), TORCH_CUTS)
@pytest.mark.parametrize("cls", GRADIENT_ALGORITHMS, ids=lambda cls: cls.__name__)
def test_a_torch_loss_cut_from_the_graph_is_a_type_error_before_any_step(cls: type, how: str, message: str) -> None:
    pytest.importorskip("torch")
    calls: list[np.ndarray] = []
    with pytest.raises(TypeError, match="^" + message):
        _solve(cls, _torch_cut(how, calls), "torch")
    assert calls  # f was called: the error is about its loss
    if not cls.traits.requires_bounds:
        # The first gradient call is at u0 (after the determinism probe's calls, also at u0): no step.
        assert len(calls) <= 3 and all(np.array_equal(u, U0) for u in calls), calls
    # The bounded global searches (DualAnnealing, SHGO) sample by values first: their first gradient
    # call, where the error is raised, comes after those samples and before any result.


@pytest.mark.parametrize("how", [".detach()", ".item()"])
def test_second_derivatives_of_a_torch_loss_cut_from_the_graph_are_refused_too(how: str) -> None:
    pytest.importorskip("torch")
    message = DETACHED if how == ".detach()" else NUMBER
    obj = Objective(om.OptimizationProblem(_torch_cut(how, []), U0, grad="torch"))
    with pytest.raises(TypeError, match="^" + message):
        obj.hessp(U0, np.ones(2))
    with pytest.raises(TypeError, match="^" + message):
        obj.hessian(U0)


SOLVERS = ["BFGS", "Adam", "NewtonCG", "TrustExact", "SLSQP"]


def _solver(name: str) -> tuple[Any, int | None]:
    return (om.Adam(lr=0.05), 2000) if name == "Adam" else (getattr(om, name)(), None)


@pytest.mark.parametrize("name", SOLVERS)
def test_a_torch_loss_computed_from_u_still_solves(name: str) -> None:
    torch = pytest.importorskip("torch")
    logged: list[float] = []

    def f(u: Any, p: Any) -> Any:
        loss = torch.sum((u - 1) ** 2)
        logged.append(loss.item())  # a cut for logging leaves the loss itself in the graph
        return loss

    alg, maxiters = _solver(name)
    sol = om.solve(om.OptimizationProblem(f, U0, grad="torch"), alg, maxiters=maxiters)
    np.testing.assert_allclose(sol.u, np.ones(2), atol=1e-3)
    assert sol.stats.gevals > 1 and logged[0] == 2.0


@pytest.mark.parametrize("name", ["BFGS", "Adam"])
def test_a_torch_state_computed_from_a_detached_u_leaves_the_loss_in_the_graph(name: str) -> None:
    torch = pytest.importorskip("torch")
    # Running statistics, as BatchNorm keeps them: detached, in the state only.
    prob = om.OptimizationProblem(
        lambda u, p, s: (torch.sum((u - 1) ** 2), {"mean": 0.9 * s["mean"] + 0.1 * u.detach()}),
        U0,
        state={"mean": np.zeros(2)},
        stochastic=False,
        grad="torch",
    )
    alg, maxiters = _solver(name)
    sol = om.solve(prob, alg, maxiters=maxiters)
    np.testing.assert_allclose(sol.u, np.ones(2), atol=1e-3)
    assert sol.state["mean"].shape == (2,) and sol.state["mean"].any()


def test_a_constant_torch_loss_written_as_a_tensor_is_accepted_with_a_zero_gradient() -> None:
    torch = pytest.importorskip("torch")
    prob = om.OptimizationProblem(lambda u, p: torch.tensor(3.0) + torch.as_tensor(p), U0, p=1.0, grad="torch")
    value, grad = Objective(prob).value_and_grad(U0)
    assert value == 4.0 and np.array_equal(grad, np.zeros(2))
    sol = om.solve(prob, om.BFGS())
    assert sol.success and np.array_equal(sol.u, U0) and sol.objective == 4.0
    # The documented form of a constant that f computes after cutting a tensor: in the graph, zero.
    cut = om.OptimizationProblem(lambda u, p: 0 * u.sum() + u.detach().sum() + 3.0, U0, grad="torch")
    assert Objective(cut).value_and_grad(U0) == (3.0, pytest.approx(np.zeros(2)))


def test_a_torch_loss_without_a_graph_is_accepted_where_no_derivative_is_asked() -> None:
    pytest.importorskip("torch")
    calls: list[np.ndarray] = []
    sol = om.solve(om.OptimizationProblem(_torch_cut(".item()", calls), U0, grad="torch"), om.NelderMead())
    assert sol.success and sol.stats.gevals == 0
    np.testing.assert_allclose(sol.u, np.ones(2), atol=1e-4)


# -- jax --------------------------------------------------------------------------------------------

JAX_MESSAGE = re.escape(
    "f must return a jax array computed from u with jax.numpy; float(), .item(), np.asarray() take the value "
    "out of jax's trace: "
)


def _jax_cut(how: str, calls: list[Any]) -> Callable[..., Any]:
    import jax.numpy as jnp

    def f(u: Any, p: Any) -> Any:
        calls.append(type(u))  # under jit, f runs when it is traced: one call per trace
        if how == "float()":
            return float(jnp.sum((u - 1) ** 2))
        if how == ".item()":
            return jnp.sum((u - 1) ** 2).item()
        return np.sum((np.asarray(u) - 1) ** 2)

    return f


@pytest.mark.parametrize(
    ("how", "cause"),
    [
        ("float()", "ConcretizationTypeError"),
        (".item()", "ConcretizationTypeError"),
        ("np.asarray()", "TracerArrayConversionError"),
    ],
    ids=["float", "item", "asarray"],
)
@pytest.mark.parametrize("cls", GRADIENT_ALGORITHMS, ids=lambda cls: cls.__name__)
def test_a_jax_value_taken_out_of_the_trace_is_a_type_error_before_any_step(cls: type, how: str, cause: str) -> None:
    jax = pytest.importorskip("jax")
    calls: list[Any] = []
    with pytest.raises(TypeError, match="^" + JAX_MESSAGE) as err:
        _solve(cls, _jax_cut(how, calls), "jax")
    assert isinstance(err.value.__cause__, getattr(jax.errors, cause))
    assert f"(jax raised {cause}: " in str(err.value)
    assert len(calls) == 1  # the first call's trace: nothing ran, no step was taken


def test_python_control_flow_on_a_tracer_keeps_jaxs_own_error() -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    prob = om.OptimizationProblem(lambda u, p: jnp.sum(u**2) if jnp.sum(u) > 0 else jnp.sum(u), U0, grad="jax")
    with pytest.raises(jax.errors.TracerBoolConversionError):
        om.solve(prob, om.BFGS())


@pytest.mark.parametrize("name", SOLVERS)
def test_a_jax_loss_computed_from_u_still_solves(name: str) -> None:
    pytest.importorskip("jax")
    import jax.numpy as jnp

    prob = om.OptimizationProblem(lambda u, p: jnp.sum((u - 1) ** 2), U0, grad="jax")
    alg, maxiters = _solver(name)
    sol = om.solve(prob, alg, maxiters=maxiters)
    np.testing.assert_allclose(sol.u, np.ones(2), atol=1e-3)


def test_a_constant_jax_loss_is_accepted_with_a_zero_gradient() -> None:
    pytest.importorskip("jax")
    # Under jit nothing computed from u can leave the trace, so a number or NumPy loss is a constant.
    for f in (lambda u, p: np.float64(3.0), lambda u, p: 3.0):
        prob = om.OptimizationProblem(f, U0, grad="jax")
        assert Objective(prob).value_and_grad(U0) == (3.0, pytest.approx(np.zeros(2)))
        sol = om.solve(prob, om.BFGS())
        assert sol.success and np.array_equal(sol.u, U0)
