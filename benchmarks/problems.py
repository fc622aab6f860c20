"""The benchmark problems: each with its known optimum, its budget and the step sizes it suits.

The Moré-Garbow-Hillstrom problems follow Moré, Garbow & Hillstrom (1981), "Testing
Unconstrained Optimization Software", ACM TOMS 7(1), with their standard starting points.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as np

import optimeta as om


@dataclass(frozen=True)
class BenchProblem:
    """One benchmark problem.

    Attributes:
        name: Its name on the command line and in the tables.
        f: The objective, ``f(u, p)`` or ``f(u, p, state)``, written with autograd.numpy.
        u0: The standard starting point.
        f_star: The optimal value, or None where it is not known.
        maxiters: The budget every algorithm and peer gets (steps or iterations).
        rates: Step sizes for the first-order algorithms, by algorithm name.
        p: Constants passed to ``f``.
        options: Extra problem options (state, stochastic, ...).
        solve_options: Extra ``solve`` options (data, epochs).
        quick: Part of the quick suite.
        exact: The noise-free objective of a stochastic problem, to score its final iterate.
        fresh: For an objective with hidden noise, makes a new copy with its noise reseeded, so
            that every solver sees the same noise whatever ran before it.
    """

    name: str
    f: Callable[..., Any]
    u0: np.ndarray
    f_star: float | None
    maxiters: int
    rates: dict[str, float]
    p: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    solve_options: dict[str, Any] = field(default_factory=dict)
    quick: bool = True
    exact: Callable[[Any], float] | None = None
    fresh: Callable[[], Callable[..., Any]] | None = None

    def objective(self) -> Callable[..., Any]:
        """The objective for one run (a freshly seeded copy where the noise is hidden)."""
        return self.fresh() if self.fresh is not None else self.f

    def problem(self, f: Callable[..., Any] | None = None) -> om.OptimizationProblem:
        """A fresh `OptimizationProblem`, optionally with `f` standing in for the objective."""
        return om.OptimizationProblem(f or self.f, self.u0, p=self.p, **self.options)

    @property
    def plain(self) -> bool:
        """Stateless and deterministic, with no minibatches: every peer can run it."""
        return "state" not in self.options and not self.options.get("stochastic") and not self.solve_options

    @property
    def constrained(self) -> bool:
        """Has bounds or general constraints, which only some peers honour."""
        return "bounds" in self.options or "constraints" in self.options


def rosenbrock(u: Any, p: Any) -> Any:
    return anp.sum(100.0 * (u[1:] - u[:-1] ** 2) ** 2 + (1.0 - u[:-1]) ** 2)


def extended_rosenbrock(u: Any, p: Any) -> Any:
    odd, even = u[0::2], u[1::2]
    return anp.sum(100.0 * (even - odd**2) ** 2 + (1.0 - odd) ** 2)


def beale(u: Any, p: Any) -> Any:
    x, y = u[0], u[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def powell_singular(u: Any, p: Any) -> Any:
    return (u[0] + 10.0 * u[1]) ** 2 + 5.0 * (u[2] - u[3]) ** 2 + (u[1] - 2.0 * u[2]) ** 4 + 10.0 * (u[0] - u[3]) ** 4


def wood(u: Any, p: Any) -> Any:
    return (
        100.0 * (u[1] - u[0] ** 2) ** 2
        + (1.0 - u[0]) ** 2
        + 90.0 * (u[3] - u[2] ** 2) ** 2
        + (1.0 - u[2]) ** 2
        + 10.0 * (u[1] + u[3] - 2.0) ** 2
        + 0.1 * (u[1] - u[3]) ** 2
    )


def brown_badly_scaled(u: Any, p: Any) -> Any:
    return (u[0] - 1e6) ** 2 + (u[1] - 2e-6) ** 2 + (u[0] * u[1] - 2.0) ** 2


def rastrigin(u: Any, p: Any) -> Any:
    """Rastrigin's function: a lattice of local minima around the global one at u = 0."""
    return 10.0 * u.size + anp.sum(u**2 - 10.0 * anp.cos(2.0 * np.pi * u))


def hs71(u: Any, p: Any) -> Any:
    """Hock & Schittkowski's problem 71: with 1 <= u <= 5, u0 u1 u2 u3 >= 25 and |u|^2 = 40."""
    return u[0] * u[3] * (u[0] + u[1] + u[2]) + u[2]


#: HS71's optimum (Hock & Schittkowski, 1981).
HS71_STAR = 17.0140172891563


def hs71_constraints() -> list[Any]:
    """HS71's constraints, as scipy constraint objects with autograd Jacobians."""
    import autograd
    import scipy.optimize

    def product(u: Any) -> Any:
        return u[0] * u[1] * u[2] * u[3]

    def squares(u: Any) -> Any:
        return anp.sum(u**2)

    return [
        scipy.optimize.NonlinearConstraint(product, 25.0, np.inf, jac=autograd.grad(product)),
        scipy.optimize.NonlinearConstraint(squares, 40.0, 40.0, jac=autograd.grad(squares)),
    ]


def quadratic(u: Any, p: Any) -> Any:
    return 0.5 * anp.sum(p * u**2)


def logistic(w: Any, batch: Any) -> Any:
    x, y = batch
    z = anp.dot(x, w)
    return anp.mean(anp.logaddexp(0.0, z) - y * z) + 0.5e-3 * anp.sum(w**2)


def _logistic_data(n: int = 2000, dim: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)) * rng.uniform(0.5, 2.0, size=dim)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-x @ rng.normal(size=dim)))).astype(float)
    return x, y


def _noisy_quadratic() -> Callable[[Any, Any], Any]:
    rng = np.random.default_rng(0)  # hidden noise: the problem declares stochastic=True

    def f(u: Any, p: Any) -> Any:
        return anp.sum(p * (u - 1.0) ** 2 * rng.uniform(0.5, 1.5, size=u.shape))

    return f


def _mlp_example() -> Any:
    path = Path(__file__).resolve().parent.parent / "examples" / "stateful_mlp.py"
    spec = importlib.util.spec_from_file_location("stateful_mlp", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_optimum(f: Callable[..., Any], u0: np.ndarray, p: Any) -> float:
    return om.solve(om.OptimizationProblem(f, u0, p=p), om.BFGS(gtol=1e-10)).objective


def rosen_start(n: int) -> np.ndarray:
    """The standard start of the n-dim Rosenbrock functions: (-1.2, 1, -1.2, 1, ...)."""
    return np.array([-1.2, 1.0] * (n // 2))


def make_problems() -> list[BenchProblem]:
    """Every benchmark problem (the logistic optimum is computed here, once)."""
    data = _logistic_data()
    x, y = data
    batches = [(x[i : i + 100], y[i : i + 100]) for i in range(0, len(x), 100)]
    logistic_star = _reference_optimum(logistic, np.zeros(x.shape[1]), data)
    scales = np.logspace(0, 4, 20)
    mlp = _mlp_example()
    train = mlp.make_data(512, 0)
    first_order = {"SGD": 1e-3, "Adam": 1e-2, "OLBFGS": 0.1}
    return [
        BenchProblem("rosenbrock-2", rosenbrock, rosen_start(2), 0.0, 2000, first_order),
        BenchProblem("rosenbrock-10", rosenbrock, rosen_start(10), 0.0, 2000, first_order),
        BenchProblem("rosenbrock-100", rosenbrock, rosen_start(100), 0.0, 5000, first_order, quick=False),
        BenchProblem("extended-rosenbrock-10", extended_rosenbrock, rosen_start(10), 0.0, 2000, first_order),
        BenchProblem("beale", beale, np.array([1.0, 1.0]), 0.0, 2000, {"SGD": 1e-2, "Adam": 1e-2, "OLBFGS": 0.1}),
        BenchProblem("powell-singular", powell_singular, np.array([3.0, -1.0, 0.0, 1.0]), 0.0, 2000, first_order),
        BenchProblem("wood", wood, np.array([-3.0, -1.0, -3.0, -1.0]), 0.0, 2000, {**first_order, "SGD": 1e-4}),
        BenchProblem(
            "brown-badly-scaled", brown_badly_scaled, np.array([1.0, 1.0]), 0.0, 2000, {**first_order, "Adam": 1e3}
        ),
        BenchProblem(
            "ill-conditioned-quadratic",
            quadratic,
            np.ones(20),
            0.0,
            2000,
            {"SGD": 1.0 / scales[-1], "Adam": 1e-2, "OLBFGS": 0.5},
            p=scales,
        ),
        BenchProblem(
            "logistic-full", logistic, np.zeros(x.shape[1]), logistic_star, 500, {**first_order, "SGD": 1.0}, p=data
        ),
        BenchProblem(
            "logistic-minibatch",
            logistic,
            np.zeros(x.shape[1]),
            logistic_star,
            400,
            {"SGD": 0.5, "Adam": 0.02, "OLBFGS": 0.1},
            p=data,
            solve_options={"data": batches, "epochs": 20},
            exact=lambda w: float(logistic(w, data)),
        ),
        BenchProblem(
            "noisy-quadratic",
            _noisy_quadratic(),
            np.zeros(10),
            0.0,
            2000,
            {"SGD": 1e-2, "Adam": 1e-2, "OLBFGS": 0.1},
            p=np.linspace(1.0, 10.0, 10),
            options={"stochastic": True},
            exact=lambda u: float(np.sum(np.linspace(1.0, 10.0, 10) * (u - 1.0) ** 2)),
            fresh=_noisy_quadratic,
        ),
        BenchProblem(
            "rastrigin-box-4",
            rastrigin,
            np.array([3.2, -2.1, 1.9, -3.9]),  # near the local minimum (3, -2, 2, -4)
            0.0,
            1000,
            {"SGD": 1e-3, "Adam": 1e-2, "OLBFGS": 0.1},
            options={"bounds": (np.full(4, -5.12), np.full(4, 5.12))},
        ),
        BenchProblem(
            "hs71",
            hs71,
            np.array([1.0, 5.0, 5.0, 1.0]),
            HS71_STAR,
            200,
            first_order,
            options={"bounds": (np.ones(4), np.full(4, 5.0)), "constraints": hs71_constraints()},
        ),
        BenchProblem(
            "stateful-mlp",
            mlp.loss,
            mlp.init_params(0),
            None,
            300,
            {"SGD": 0.05, "Adam": 1e-2, "OLBFGS": 0.05},
            p=train,
            options={"state": mlp.init_state(0)},
        ),
    ]
