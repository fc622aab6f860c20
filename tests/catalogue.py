"""Shared catalogues: problems with known optima and their needs, and configured algorithms.

Each problem states its needs as trait values, written here independently of ``optimeta.traits``,
so the tests check the library's rules against this table instead of against themselves.
Objectives record every call (the point and the state received) for contract tests.

What a run of an algorithm must look like (a budget or a convergence test, calls per step, a
final evaluation) is derived here, once, from its shape (step-wise or whole-run), its traits and
its class data (``needs_budget``, ``loss_at_new_iterate``), never from its name.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import scipy.optimize

import optimeta as om
from optimeta.backends._base import StepwiseAlgorithm, WholeRunAlgorithm


@dataclass
class Recorder:
    """Wraps an objective and records each call's state, so tests can count and inspect calls."""

    fn: Callable[..., Any]
    states: list[Any] = field(default_factory=list)
    calls: int = 0

    def __call__(self, u: Any, p: Any, *state: Any) -> Any:
        self.calls += 1
        if state:
            self.states.append(copy.deepcopy(state[0]))
        return self.fn(u, p, *state)


@dataclass
class ProblemCase:
    """A problem with its known optimum.

    Attributes:
        name: Test id.
        build: Makes ``(problem, recorder)``: a fresh problem whose objective records its calls.
        u_star: The optimum, with the structure of ``u0``.
        f_star: The optimal objective value, in the user's sense.
        needs: Trait values an algorithm must have to accept the problem ("a or b": either).
        atol: Tolerance on ``u`` for first-order algorithms (quasi-Newton is held to 1e-5).
    """

    name: str
    build: Callable[[], tuple[om.OptimizationProblem, Recorder]]
    u_star: Any
    f_star: float
    needs: dict[str, bool]
    atol: float = 1e-3

    def __repr__(self) -> str:
        return self.name


@dataclass
class AlgorithmCase:
    """A configured algorithm and the budget it gets in the catalogue runs."""

    name: str
    alg: Any
    maxiters: int | None

    def __repr__(self) -> str:
        return self.name


C = np.array([1.0, -2.0, 0.5])
SCALES = np.array([1.0, 3.0, 0.5])


def _quadratic(u: Any, p: Any) -> Any:
    return anp.sum(SCALES * (u - p) ** 2)


def _build_quadratic() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_quadratic)
    return om.OptimizationProblem(rec, np.zeros(3), p=C), rec


def _rosenbrock(u: Any, p: Any) -> Any:
    return (p[0] - u[0]) ** 2 + p[1] * (u[1] - u[0] ** 2) ** 2


def _build_rosenbrock() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_rosenbrock)
    return om.OptimizationProblem(rec, np.array([-1.2, 1.0]), p=(1.0, 10.0)), rec


TREE_STAR = {"w": np.array([[1.0, 2.0], [3.0, 4.0]]), "b": [0.5, np.array([-1.0, 1.0])]}


def _tree_loss(u: Any, p: Any) -> Any:
    return anp.sum((u["w"] - p["w"]) ** 2) + 2.0 * (u["b"][0] - p["b"][0]) ** 2 + anp.sum((u["b"][1] - p["b"][1]) ** 2)


def _build_tree() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_tree_loss)
    u0 = {"w": np.zeros((2, 2)), "b": [0, np.zeros(2)]}  # an int leaf, promoted to float
    return om.OptimizationProblem(rec, u0, p=TREE_STAR), rec


def _concave(u: Any, p: Any) -> Any:
    return 3.0 - anp.sum((u - p) ** 2)


def _build_max() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_concave)
    return om.OptimizationProblem(rec, np.zeros(3), p=C, sense="max"), rec


BOX = (np.array([0.0, -1.0, 0.0]), np.array([2.0, 1.0, 0.25]))


def _build_bounded() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_quadratic)
    return om.OptimizationProblem(rec, np.full(3, 0.1), p=C, bounds=BOX), rec


def _counting(u: Any, p: Any, state: dict[str, Any]) -> Any:
    # The state changes (a counter, like BatchNorm's running statistics) but not the loss.
    return anp.sum(SCALES * (u - p) ** 2), {"calls": state["calls"] + 1, "last": u}


def _build_counter() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_counting)
    return om.OptimizationProblem(rec, np.zeros(3), p=C, state={"calls": 0, "last": np.zeros(3)}), rec


def _dropout_like(u: Any, p: Any, state: dict[str, Any]) -> Any:
    # Random positive weights from the explicit key: the loss is noisy, yet every draw is
    # minimised at p, so the known optimum is exact.
    rng = np.random.default_rng(state["key"])
    weights = rng.uniform(0.5, 1.5, size=3)
    return anp.sum(weights * (u - p) ** 2), {"key": state["key"] + 1}


def _build_keyed() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_dropout_like)
    return om.OptimizationProblem(rec, np.zeros(3), p=C, state={"key": 0}), rec


def _build_generator_state() -> tuple[om.OptimizationProblem, Recorder]:
    def loss(u: Any, p: Any, state: dict[str, Any]) -> Any:
        rng = state["rng"]
        weights = rng.uniform(0.5, 1.5, size=3)
        return anp.sum(weights * (u - p) ** 2), {"rng": rng, "n": state["n"] + 1}

    rec = Recorder(loss)
    state = {"rng": np.random.default_rng(7), "n": 0}
    return om.OptimizationProblem(rec, np.zeros(3), p=C, state=state), rec


def _build_noisy() -> tuple[om.OptimizationProblem, Recorder]:
    rng = np.random.default_rng(3)  # hidden state: the problem must declare itself stochastic

    def loss(u: Any, p: Any) -> Any:
        return anp.sum(rng.uniform(0.5, 1.5, size=3) * (u - p) ** 2)

    rec = Recorder(loss)
    return om.OptimizationProblem(rec, np.zeros(3), p=C, stochastic=True), rec


#: A need written "a or b" is met by an algorithm with either trait.
STATE_COMMIT = "single_call_per_step or commits_state_per_step"
STATEFUL_NEEDS = {STATE_COMMIT: True, "tolerates_stochastic_loss": True}

PROBLEMS: list[ProblemCase] = [
    ProblemCase("quadratic", _build_quadratic, C, 0.0, {}),
    ProblemCase("rosenbrock", _build_rosenbrock, np.ones(2), 0.0, {}, atol=2e-2),
    ProblemCase("pytree", _build_tree, TREE_STAR, 0.0, {}),
    ProblemCase("maximise", _build_max, C, 3.0, {}),
    ProblemCase(
        "bounded",
        _build_bounded,
        np.clip(C, *BOX),
        float(np.sum(SCALES * (np.clip(C, *BOX) - C) ** 2)),
        {"supports_bounds": True},
    ),
    ProblemCase("stateful_counter", _build_counter, C, 0.0, STATEFUL_NEEDS),
    ProblemCase("stateful_key", _build_keyed, C, 0.0, STATEFUL_NEEDS),
    ProblemCase("stateful_generator", _build_generator_state, C, 0.0, STATEFUL_NEEDS),
    ProblemCase("stochastic", _build_noisy, C, 0.0, {"tolerates_stochastic_loss": True}),
]

ALGORITHMS: list[AlgorithmCase] = [
    AlgorithmCase("SGD", om.SGD(lr=0.01), 1500),
    AlgorithmCase("SGD-momentum", om.SGD(lr=0.005, momentum=0.9), 1500),
    AlgorithmCase("SGD-nesterov", om.SGD(lr=0.005, momentum=0.9, nesterov=True), 1500),
    AlgorithmCase("Adam", om.Adam(lr=0.02), 1500),
    AlgorithmCase("AdamW", om.AdamW(lr=0.02, weight_decay=0.0), 1500),
    AlgorithmCase("AMSGrad", om.AMSGrad(lr=0.02), 1500),
    AlgorithmCase("Adamax", om.Adamax(lr=0.05), 1500),
    AlgorithmCase("NAdam", om.NAdam(lr=0.02), 1500),
    AlgorithmCase("RMSProp", om.RMSProp(lr=om.schedules.exponential_decay(0.02, 0.998)), 1500),
    AlgorithmCase("Adagrad", om.Adagrad(lr=0.5), 1500),
    AlgorithmCase("Adadelta", om.Adadelta(lr=om.schedules.cosine_decay(1.0, 1500), eps=1e-3), 1500),
    AlgorithmCase("Lion", om.Lion(lr=om.schedules.cosine_decay(0.01, 1500)), 1500),
    AlgorithmCase("OLBFGS", om.OLBFGS(lr=0.5), 300),
    AlgorithmCase("BFGS", om.BFGS(), None),
    AlgorithmCase("LBFGS", om.LBFGS(), None),
    AlgorithmCase("CG", om.CG(), None),
    AlgorithmCase("TNC", om.TNC(), None),
    AlgorithmCase("NewtonCG", om.NewtonCG(), None),
    AlgorithmCase("TrustNCG", om.TrustNCG(), None),
    AlgorithmCase("TrustKrylov", om.TrustKrylov(), None),
    AlgorithmCase("TrustExact", om.TrustExact(), None),
    AlgorithmCase("NelderMead", om.NelderMead(xatol=1e-10, fatol=1e-14, adaptive=True), None),
    AlgorithmCase("Powell", om.Powell(xtol=1e-8, ftol=1e-12), None),
]


def unmet(declared: om.Traits, prob_case: ProblemCase) -> set[str]:
    """The needs of the problem (per this catalogue) that traits `declared` do not meet."""
    return {
        need
        for need, value in prob_case.needs.items()
        if all(getattr(declared, trait) is not value for trait in need.split(" or "))
    }


def accepts(alg_case: AlgorithmCase, prob_case: ProblemCase) -> bool:
    """Whether the algorithm has every trait value the problem needs (per this catalogue)."""
    return not unmet(om.traits(alg_case.alg), prob_case)


def pairs(compatible: bool) -> list[tuple[AlgorithmCase, ProblemCase]]:
    return [(a, p) for a in ALGORITHMS for p in PROBLEMS if accepts(a, p) is compatible]


# --------------------------------------------------------------------------------------------
# What a run looks like, from the algorithm's shape, traits and class data
# --------------------------------------------------------------------------------------------


def stepwise(alg: Any) -> bool:
    """Advanced step by step by solve's driver loop."""
    return isinstance(alg, StepwiseAlgorithm)


def whole_run(alg: Any) -> bool:
    """Runs an external solver (scipy) from start to end."""
    return isinstance(alg, WholeRunAlgorithm)


def runs_to_budget(alg: Any) -> bool:
    """Has no convergence test of its own: runs exactly the budget it is given (and needs one)."""
    return stepwise(alg) and type(alg).needs_budget


def final_evaluations(alg: Any, prob: om.OptimizationProblem, *, data: bool = False) -> int:
    """Calls of f after the last step: one value-only evaluation at the returned u for a step-wise
    algorithm whose steps report the loss before their update, on a deterministic problem
    (stateless or with a constant state, not stochastic, no minibatches); none otherwise."""
    deterministic = not prob.stochastic and not data and (prob.state is None or prob.state_mode == "constant")
    return int(stepwise(alg) and not type(alg).loss_at_new_iterate and deterministic)


#: Objective calls per step of the step-wise algorithms that evaluate a fixed number of times
#: per step, more than once, as each one documents it (OLBFGS: the gradient at u_k and at u_{k+1}).
CALLS_PER_STEP: dict[type, int] = {om.OLBFGS: 2}

#: Step-wise algorithms whose steps follow a ``scipy.optimize.minimize`` method iterate for
#: iterate, as each one documents it; their line search makes a varying number of calls per step.
SCIPY_TWINS: dict[type, str] = {om.BFGS: "BFGS"}


#: scipy counts Nelder-Mead's initial simplex as its iteration 1, so its ``nit`` is one more than
#: the iterations it reports to its callback (which are optimeta's).
SCIPY_NIT_OFFSET: dict[type, int] = {om.NelderMead: 1}


def scipy_counts(sol: om.Solution, prob: om.OptimizationProblem) -> tuple[int, int]:
    """(iterations, calls of f) that a whole-run algorithm's scipy result implies, in optimeta's
    terms: scipy's ``nit`` and ``nfev``, plus one call of f for every Hessian or Hessian-vector
    product that autograd computes by tracing f (scipy counts those in ``nhev``, not ``nfev``)."""
    return sol.original.nit - SCIPY_NIT_OFFSET.get(type(sol.algorithm), 0), sol.original.nfev + hessian_calls(sol, prob)


def hessian_calls(sol: om.Solution, prob: om.OptimizationProblem) -> int:
    """Calls of f made for second derivatives: one per Hessian or Hessian-vector product that
    autograd computes by tracing f; none when they come from differences of the user's grad."""
    return sol.stats.hevals if om.traits(sol.algorithm).requires_hessian and not callable(prob.grad) else 0


def calls_per_step(alg: Any) -> int | None:
    """The exact number of objective calls each step makes, or None when a line search decides."""
    if om.traits(alg).single_call_per_step:
        return 1
    if whole_run(alg):
        return None
    assert type(alg) in CALLS_PER_STEP or type(alg) in SCIPY_TWINS, (
        f"add {type(alg).__name__} to CALLS_PER_STEP or SCIPY_TWINS in tests/catalogue.py"
    )
    return CALLS_PER_STEP.get(type(alg))


def _flat_leaves(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _flat_leaves(value)]
    if isinstance(tree, (list, tuple)):
        return [leaf for child in tree for leaf in _flat_leaves(child)]
    return [tree]


def _unflatten(template: Any, x: Any, start: int = 0) -> tuple[Any, int]:
    """The tree shaped like ``template`` holding ``x[start:]`` (works on autograd boxes)."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            out[key], start = _unflatten(value, x, start)
        return out, start
    if isinstance(template, (list, tuple)):
        children = []
        for child in template:
            value, start = _unflatten(child, x, start)
            children.append(value)
        if isinstance(template, tuple) and hasattr(type(template), "_fields"):
            return type(template)(*children), start
        return type(template)(children), start
    if isinstance(template, np.ndarray):
        size = template.size
        return x[start : start + size].reshape(template.shape), start + size
    return x[start], start + 1


def flat(tree: Any) -> np.ndarray:
    """The leaves of ``tree`` as one float64 vector, in optimeta's order (depth first, dicts in key order)."""
    return np.concatenate([np.ravel(np.asarray(leaf, dtype=np.float64)) for leaf in _flat_leaves(tree)])


def scipy_twin(alg: Any, prob: om.OptimizationProblem, maxiters: int | None = None) -> scipy.optimize.OptimizeResult:
    """``scipy.optimize.minimize`` with the method a step-wise algorithm follows (`SCIPY_TWINS`),
    called directly on the same problem: the flat vector in optimeta's leaf order, value and
    gradient from one evaluation (the user's ``grad`` if given, else autograd), the algorithm's
    ``gtol`` and the same iteration budget. A stateful problem is evaluated on its initial state,
    which must not drive the loss."""
    template = prob.u0
    x0 = flat(template)
    sign = 1.0 if prob.sense == "min" else -1.0
    extra = () if prob.state is None else (copy.deepcopy(prob.state),)

    def loss(x: Any) -> Any:
        out = prob.f(_unflatten(template, x)[0], prob.p, *extra)
        return out[0] if extra else out

    value_and_grad = autograd.value_and_grad(loss)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        if callable(prob.grad):
            u = _unflatten(template, x)[0]
            g = prob.grad(u, prob.p, *extra)
            g = g[0] if extra else g
            return sign * float(loss(x)), sign * flat(g)
        value, g = value_and_grad(x)
        return sign * float(value), sign * np.asarray(g, dtype=np.float64)

    options: dict[str, Any] = {"gtol": alg.gtol}
    if maxiters is not None:
        options["maxiter"] = maxiters
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return scipy.optimize.minimize(fun, x0, jac=True, method=SCIPY_TWINS[type(alg)], options=options)


def assert_follows_scipy_twin(
    sol: om.Solution, prob: om.OptimizationProblem, maxiters: int | None = None, atol: float = 1e-6
) -> scipy.optimize.OptimizeResult:
    """A step-wise twin of a scipy method made the iterations and evaluations scipy makes on the same
    problem, and ended at scipy's point; it hands back no raw result of its own."""
    ref = scipy_twin(sol.algorithm, prob, maxiters)
    assert sol.original is None
    assert (sol.stats.iterations, sol.stats.fevals) == (ref.nit, ref.nfev), (
        f"iterations, fevals: optimeta {sol.stats.iterations}, {sol.stats.fevals}; scipy {ref.nit}, {ref.nfev}"
    )
    np.testing.assert_allclose(flat(sol.u), ref.x, rtol=0, atol=atol)
    return ref
