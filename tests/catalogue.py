"""Shared catalogues: problems with known optima and their needs, and configured algorithms.

Each problem states its needs as trait values, written here independently of ``optimeta.traits``,
so the tests check the library's rules against this table instead of against themselves.
Objectives record every call (the point and the state received) for contract tests.

What a run of an algorithm must look like (a budget or a convergence test, calls per step, a
final evaluation, the counts its scipy result implies) is derived here, once, from its shape
(step-wise or whole-run), its traits (``has_convergence_test``) and its class data (``loss_at_new_iterate``,
the tables below, each entry with the documented reason), never from its name.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
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


# Constrained problems, each with its optimum from the KKT conditions.

DISK_TARGET = np.array([2.0, 1.0])


def _distance(u: Any, p: Any) -> Any:
    return anp.sum((u - p) ** 2)


def _disk(u: Any, p: Any) -> Any:
    return anp.sum(u**2)


def _build_disk() -> tuple[om.OptimizationProblem, Recorder]:
    # |u|^2 <= 1, active: the point of the unit disk nearest the target outside it.
    rec = Recorder(_distance)
    disk = om.Constraint(_disk, ub=1.0)
    return om.OptimizationProblem(rec, np.zeros(2), p=DISK_TARGET, constraints=[disk]), rec


DISK_STAR = DISK_TARGET / np.linalg.norm(DISK_TARGET)


def _build_plane() -> tuple[om.OptimizationProblem, Recorder]:
    # sum(u) == 1, as scipy's LinearConstraint; u0 = 0 is off the plane.
    rec = Recorder(_quadratic)
    plane = scipy.optimize.LinearConstraint(np.ones((1, 3)), 1.0, 1.0)
    return om.OptimizationProblem(rec, np.zeros(3), p=C, constraints=[plane]), rec


# Stationarity 2 SCALES (u - C) = lam 1 with sum(u) = 1.
PLANE_MULTIPLIER = 2.0 * (1.0 - C.sum()) / np.sum(1.0 / SCALES)
PLANE_STAR = C + PLANE_MULTIPLIER / (2.0 * SCALES)

CORNER_TARGET = np.array([2.0, -2.0])
UNIT_BOX = (np.zeros(2), np.ones(2))


def _build_boxed_parabola() -> tuple[om.OptimizationProblem, Recorder]:
    # In the unit box, above the parabola u1 >= u0^2 - 1/4 (scipy's NonlinearConstraint, over the
    # flat u): the optimum (1/2, 0) has the bound u1 >= 0 and the constraint active, with
    # multipliers 1 and 3 (the gradient there is (-3, 4) = -3 (1, -1) - 1 (0, -1)).
    rec = Recorder(_distance)
    parabola = scipy.optimize.NonlinearConstraint(
        lambda x: x[0] ** 2 - x[1], -np.inf, 0.25, jac=lambda x: np.array([[2.0 * x[0], -1.0]])
    )
    prob = om.OptimizationProblem(rec, np.full(2, 0.1), p=CORNER_TARGET, bounds=UNIT_BOX, constraints=[parabola])
    return prob, rec


#: A need written "a or b" is met by an algorithm with either trait.
STATE_COMMIT = "single_call_per_step or commits_state_per_step"
#: Problems without a finite box refuse the methods that search one.
UNBOUNDED = {"requires_bounds": False}
PLAIN_NEEDS = {**UNBOUNDED}
STATEFUL_NEEDS = {**PLAIN_NEEDS, STATE_COMMIT: True, "tolerates_stochastic_loss": True}
CONSTRAINED_NEEDS = {**UNBOUNDED, "supports_constraints": True}

PROBLEMS: list[ProblemCase] = [
    ProblemCase("quadratic", _build_quadratic, C, 0.0, PLAIN_NEEDS),
    ProblemCase("rosenbrock", _build_rosenbrock, np.ones(2), 0.0, PLAIN_NEEDS, atol=2e-2),
    ProblemCase("pytree", _build_tree, TREE_STAR, 0.0, PLAIN_NEEDS),
    ProblemCase("maximise", _build_max, C, 3.0, PLAIN_NEEDS),
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
    ProblemCase("stochastic", _build_noisy, C, 0.0, {**PLAIN_NEEDS, "tolerates_stochastic_loss": True}),
    ProblemCase("disk", _build_disk, DISK_STAR, float((np.linalg.norm(DISK_TARGET) - 1.0) ** 2), CONSTRAINED_NEEDS),
    ProblemCase(
        "plane",
        _build_plane,
        PLANE_STAR,
        float(np.sum(SCALES * (PLANE_STAR - C) ** 2)),
        CONSTRAINED_NEEDS,
    ),
    ProblemCase(
        "boxed_parabola",
        _build_boxed_parabola,
        np.array([0.5, 0.0]),
        float(np.sum((np.array([0.5, 0.0]) - CORNER_TARGET) ** 2)),
        {"supports_bounds": True, "supports_constraints": True},
    ),
]

#: Every registered algorithm, in each configuration its class declares for tests and benchmarks
#: (`Algorithm.examples`: a label, the instance, its budget here): a new backend is tested by
#: registering it, with no table here to edit.
ALGORITHMS: list[AlgorithmCase] = [
    AlgorithmCase(example.label, example.algorithm, example.budget)
    for cls in om.algorithms()
    for example in cls.examples()
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
    return not om.traits(alg).has_convergence_test


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


#: scipy counts Nelder-Mead's initial simplex as its iteration 1, and DIRECT two iterations before
#: its first callback (as DIRECT documents), so their ``nit`` is more than the iterations they
#: report to their callback (which are optimeta's).
SCIPY_NIT_OFFSET: dict[type, int] = {om.NelderMead: 1, om.DIRECT: 2}

#: The field of scipy's result that counts the iterations a method reports, where it is not
#: ``nit``, as each method documents it: COBYQA's callback comes once per evaluation (those are
#: its iterations), so they are its ``nfev``; COBYLA's result keeps no count of iterations
#: (its ``nit`` is None), so its iterations cannot be checked against scipy (its calls can).
SCIPY_ITERATIONS: dict[type, str | None] = {om.COBYQA: "nfev", om.COBYLA: None}

#: Global methods whose local search is given the gradient as a function of its own (their
#: docstrings: L-BFGS-B or SLSQP "with the problem's gradient"): scipy counts those calls in this
#: field, not in ``nfev``; each one evaluates f with its gradient, a call of f for optimeta.
SCIPY_GRADIENT_CALLS: dict[type, str] = {om.DualAnnealing: "njev", om.SHGO: "nljev"}

#: Methods whose scipy ``nfev`` is exact after their first iteration only: scipy's shgo adds the
#: sampling evaluations to it when an iteration's local searches find a minimiser, so after later
#: refinements (``nit > 1``) that find none it falls behind the calls made (seen with the
#: simplicial and Sobol samplings). It is then a lower bound.
SCIPY_NFEV_LAGS: tuple[type, ...] = (om.SHGO,)

#: Methods whose scipy ``nit`` may exceed the iterations they report: scipy's SLSQP calls back
#: once per return from its solver in which its iteration count grew, and one return may complete
#: several iterations (seen: 8 callbacks for ``nit`` 12 on the boxed parabola, where its QP meets a
#: bound and the constraint together). Its ``nit`` is then an upper bound.
SCIPY_NIT_BOUNDS_ITERATIONS: tuple[type, ...] = (om.SLSQP,)


def scipy_counts(sol: om.Solution, prob: om.OptimizationProblem) -> tuple[int | None, int]:
    """(iterations, calls of f) that a whole-run algorithm's scipy result implies, in optimeta's
    terms: scipy's ``nit`` (`SCIPY_NIT_OFFSET`; another field or None, `SCIPY_ITERATIONS`) and
    ``nfev``, plus one call of f for every Hessian or Hessian-vector product that autograd computes
    by tracing f (scipy counts those in ``nhev``, not ``nfev``), for every gradient a global
    method's local search asks for apart from the value (`SCIPY_GRADIENT_CALLS`), for the call at u0
    that scipy's COBYLA makes and does not count (`uncounted_calls`), for the one the adapter
    makes at a returned point that is not scipy's (`moved_point_calls`), and for the one it makes
    at u0 before a method that may never evaluate it (``evaluates_start``)."""
    res, cls = sol.original, type(sol.algorithm)
    if adapter_result(res):
        return int(res.nit), int(res.nfev)
    field = SCIPY_ITERATIONS.get(cls, "nit")
    iterations = None if field is None else int(res[field]) - SCIPY_NIT_OFFSET.get(cls, 0)
    calls = int(res.nfev) + hessian_calls(sol, prob) + uncounted_calls(sol, prob) + moved_point_calls(sol, prob)
    calls += int(getattr(cls, "evaluates_start", False))
    if cls in SCIPY_GRADIENT_CALLS:
        calls += int(res[SCIPY_GRADIENT_CALLS[cls]])
    return iterations, calls


def uncounted_calls(sol: om.Solution, prob: om.OptimizationProblem) -> int:
    """Calls of f that scipy makes and leaves out of ``nfev``: scipy's COBYLA evaluates f at u0
    before PRIMA, without a nonlinear constraint, projects u0 onto the bounds and linear
    constraints and starts from there; PRIMA's count (scipy's ``nfev``) misses that first call when
    the projection moved u0, that is when u0 is off a linear constraint (it is always in the box)."""
    if type(sol.algorithm) is not om.COBYLA:
        return 0
    if any(not isinstance(c, scipy.optimize.LinearConstraint) for c in prob.constraints):
        return 0
    x0 = flat(prob.u0)
    for c in prob.constraints:
        values = np.atleast_2d(c.A) @ x0
        if np.any(values < c.lb) or np.any(values > c.ub):
            return 1
    return 0


#: The fields of the result the adapter builds itself when scipy returned none (a callback, the
#: budget or maxtime stopped the run by an exception, as with DIRECT's legacy callback, or a
#: method without callbacks stopped by maxtime): its counts are optimeta's own.
ADAPTER_RESULT_FIELDS = {"x", "fun", "success", "status", "message", "nit", "nfev"}


def adapter_result(res: scipy.optimize.OptimizeResult) -> bool:
    """Whether ``res`` was built by the adapter, not returned by scipy (status -1, its fields)."""
    return res.get("status") == -1 and set(res) == ADAPTER_RESULT_FIELDS


def moved_point_calls(sol: om.Solution, prob: om.OptimizationProblem) -> int:
    """The adapter's call of f at the point it returns, when scipy never evaluated that point: one
    that scipy maps back from its own scaling and that differs in the last bits from the point it
    evaluated (DIRECT, from its unit cube); the value there then differs from scipy's ``fun``. A
    point scipy returns outside the box (COBYLA, TrustConstr) is clipped into it, as every point
    scipy tries is before f is called there: that point was evaluated when scipy evaluated it."""
    x, fun = sol.original.get("x"), sol.original.get("fun")
    if x is None or np.size(x) != flat(sol.u).size:
        return 0  # scipy returned no point: the run ends at the best point evaluated
    if prob.bounds is not None and type(sol.algorithm).traits.supports_bounds:
        x = np.asarray(x, dtype=np.float64)
        if np.clip(x, flat(prob.bounds[0]), flat(prob.bounds[1])).tobytes() != x.tobytes():
            return 0
    moved = flat(sol.u).tobytes() != np.asarray(x, dtype=np.float64).tobytes()
    loss = sol.objective if prob.sense == "min" else -sol.objective
    return int(moved or (fun is not None and np.isfinite(fun) and float(fun) != loss))


def returns_last_iterate(alg: Any, prob: om.OptimizationProblem) -> bool:
    """Whether a run's returned point is the last iterate it reports to the callback. Not so, as
    each method documents it or scipy does it, for: differential evolution with ``polish``, which
    refines the best point after its last generation; DIRECT, whose last iteration (scipy's
    ``nit`` counts two it does not report) ends without a callback; and COBYLA with bounds or
    general constraints, for which PRIMA returns the best point of its history by a merit function
    of value and constraint violation, not its last iterate, clipped into the box."""
    if isinstance(alg, om.DifferentialEvolution):
        return not alg.polish
    if isinstance(alg, om.DIRECT):
        return False
    if isinstance(alg, om.COBYLA):
        return prob.bounds is None and not prob.constraints
    return True


def assert_scipy_counts(sol: om.Solution, prob: om.OptimizationProblem) -> None:
    """A whole-run algorithm hands back scipy's own result, and its iterations and calls of f are
    the ones that result implies (`scipy_counts`)."""
    assert isinstance(sol.original, scipy.optimize.OptimizeResult)
    iterations, calls = scipy_counts(sol, prob)
    if iterations is not None and type(sol.algorithm) in SCIPY_NIT_BOUNDS_ITERATIONS:
        assert sol.stats.iterations <= iterations, f"iterations: optimeta {sol.stats.iterations}, scipy {iterations}"
    elif iterations is not None:
        assert sol.stats.iterations == iterations, f"iterations: optimeta {sol.stats.iterations}, scipy {iterations}"
    if type(sol.algorithm) in SCIPY_NFEV_LAGS and sol.original.nit > 1:
        assert sol.stats.fevals >= calls, f"fevals: optimeta {sol.stats.fevals}, scipy at least {calls}"
    else:
        assert sol.stats.fevals == calls, f"fevals: optimeta {sol.stats.fevals}, scipy {calls}"


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


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of a tree of dicts, lists and tuples, depth first (dicts in insertion order)."""
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in tree_leaves(value)]
    if isinstance(tree, (list, tuple)):
        return [leaf for child in tree for leaf in tree_leaves(child)]
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
    return np.concatenate([np.ravel(np.asarray(leaf, dtype=np.float64)) for leaf in tree_leaves(tree)])


def scipy_twin(
    alg: Any, prob: om.OptimizationProblem, maxiters: int | None = None, iterates: list[np.ndarray] | None = None
) -> scipy.optimize.OptimizeResult:
    """``scipy.optimize.minimize`` with the method a step-wise algorithm follows (`SCIPY_TWINS`),
    called directly on the same problem: the flat vector in optimeta's leaf order, value and
    gradient from one evaluation (the user's ``grad`` if given, else autograd), the algorithm's
    ``gtol`` and the same iteration budget. A stateful problem is evaluated on its initial state,
    which must not drive the loss. ``iterates``, when given, receives scipy's iterate after each
    iteration."""
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

    def keep(xk: np.ndarray) -> None:
        if iterates is not None:
            iterates.append(np.array(xk, dtype=np.float64))

    options: dict[str, Any] = {"gtol": alg.gtol}
    if maxiters is not None:
        options["maxiter"] = maxiters
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return scipy.optimize.minimize(fun, x0, jac=True, method=SCIPY_TWINS[type(alg)], options=options, callback=keep)


#: What "follows scipy" promises on any machine. A step-wise twin does scipy's arithmetic up to
#: rounding, not operation for operation (BFGS updates its inverse Hessian with BLAS ``syr2``
#: where scipy multiplies matrices), and the rounding of either depends on the BLAS kernel the CPU
#: picks. So the first `TWIN_STEPS` iterates agree with scipy's to `TWIN_RTOL` (relative to the
#: iterate's norm), and over a whole run, where rounding may tip a line search after a hundred
#: steps, the iterations and the evaluations are within `twin_margin` of scipy's and the run ends
#: at scipy's verdict and minimum.
TWIN_STEPS = 10
TWIN_RTOL = 1e-8


def twin_margin(count: int) -> int:
    """How far a whole run's count (iterations or evaluations) may be from scipy's: 5%, at least 3."""
    return max(3, -(-5 * count // 100))


def assert_follows_scipy_twin(
    sol: om.Solution, prob: om.OptimizationProblem, maxiters: int | None = None, atol: float = 1e-4
) -> scipy.optimize.OptimizeResult:
    """A step-wise twin of a scipy method follows scipy on the same problem (`TWIN_STEPS`): its first
    iterates are scipy's to `TWIN_RTOL`, its counts within `twin_margin`, its verdict scipy's and
    its end point scipy's to ``atol``; it hands back no raw result of its own."""
    theirs: list[np.ndarray] = []
    ref = scipy_twin(sol.algorithm, prob, maxiters, iterates=theirs)
    assert sol.original is None
    for name, ours, scipys in (("iterations", sol.stats.iterations, ref.nit), ("fevals", sol.stats.fevals, ref.nfev)):
        assert abs(ours - scipys) <= twin_margin(scipys), f"{name}: optimeta {ours}, scipy {scipys}"
    assert sol.success == bool(ref.success), (sol.message, ref.message)
    np.testing.assert_allclose(flat(sol.u), ref.x, rtol=0, atol=atol)
    steps = min(TWIN_STEPS, len(theirs))
    if steps:
        rerun = om.solve(prob, sol.algorithm, maxiters=steps, record="u", check_determinism=False)
        assert rerun.history is not None and rerun.history.u is not None
        ours_k = [flat(u) for u in rerun.history.u]
        assert len(ours_k) == steps
        for k, (a, b) in enumerate(zip(ours_k, theirs[:steps]), start=1):
            scale = max(1.0, float(np.linalg.norm(b)))
            assert float(np.linalg.norm(a - b)) <= TWIN_RTOL * scale, f"iterate {k}: {a} vs scipy's {b}"
    return ref


def constraint_violation(prob: om.OptimizationProblem, u: Any) -> float:
    """The largest violation of the problem's general constraints at ``u`` (0 when all hold),
    computed here: `om.Constraint` on ``u`` as given, scipy's constraints on the flat vector."""
    x = flat(u)
    worst = 0.0
    for c in prob.constraints:
        if isinstance(c, om.Constraint):
            values = np.ravel(np.asarray(c.fun(u, prob.p), dtype=np.float64))
        elif isinstance(c, scipy.optimize.LinearConstraint):
            values = np.atleast_2d(c.A) @ x
        else:
            values = np.ravel(np.asarray(c.fun(x), dtype=np.float64))
        below, above = np.asarray(c.lb) - values, values - np.asarray(c.ub)
        worst = max(worst, float(np.max(np.maximum(np.maximum(below, above), 0.0))))
    return worst


#: The constraint violation a method tolerates at its solution, where it has an option for it:
#: the attribute holding it. The others (SLSQP's and SHGO's SQP steps, trust-constr, differential
#: evolution's trust-constr polish) are held to `FEASIBILITY_ATOL`.
FEASIBILITY_OPTION: dict[type, str] = {om.COBYLA: "catol", om.COBYQA: "feasibility_tol"}
FEASIBILITY_ATOL = 1e-8


def feasibility_tol(alg: Any) -> float:
    """The largest constraint violation `alg` may leave at its solution (`FEASIBILITY_OPTION`)."""
    option = FEASIBILITY_OPTION.get(type(alg))
    return FEASIBILITY_ATOL if option is None else float(getattr(alg, option))


#: Methods whose accuracy at an interior minimum is set by a local search they give no option to
#: tighten: SHGO's local searches are SLSQP at scipy's default ftol (1e-6 on f), which ends some
#: 2e-4 short in u on the tests' quadratics and Rosenbrock function.
LOCAL_SEARCH_ATOL: dict[type, float] = {om.SHGO: 1e-3}


def converged_atol(alg: Any, atol: float) -> float:
    """The accuracy ``atol`` required of a converged run of ``alg`` (an instance or a class), or the
    coarser one its method's local search allows (`LOCAL_SEARCH_ATOL`)."""
    cls = alg if isinstance(alg, type) else type(alg)
    return max(atol, LOCAL_SEARCH_ATOL.get(cls, 0.0))


def as_params(cases: list[tuple[AlgorithmCase, ProblemCase]]) -> list[Any]:
    """The pairs as pytest params, with readable ids."""
    return [pytest.param(alg, prob, id=f"{alg.name}-{prob.name}") for alg, prob in cases]


#: A box around the optimum of every unbounded problem the tests build, for the methods that
#: search one (trait requires_bounds) in tests about something else than bounds.
SEARCH_BOX = (-3.0, 3.0)


def box_for(alg: Any, box: tuple[float, float] = SEARCH_BOX) -> tuple[float, float] | None:
    """``box`` for an algorithm (instance or class) that searches a box, else None."""
    return box if om.traits(alg).requires_bounds else None


@dataclass(frozen=True)
class Run:
    """One solve of a fresh catalogue problem, and what it printed."""

    prob: om.OptimizationProblem
    rec: Recorder
    sol: om.Solution
    printed: tuple[str, str]


_RUNS: dict[tuple[int, int, int | None, bool], Run] = {}


def _ignore(info: om.IterationInfo) -> None:
    return None


def run(alg_case: AlgorithmCase, prob_case: ProblemCase, maxiters: int | None, *, callback: bool = False) -> Run:
    """``solve(problem, alg, maxiters=maxiters)`` on a fresh problem (with a callback that does
    nothing, if ``callback``), with what it printed to stdout and stderr, run once per test
    session: the plain run that several tests inspect (and none may change, nor call the recorder
    again). Runs are deterministic, so sharing one loses nothing."""
    key = (id(alg_case), id(prob_case), maxiters, callback)
    if key not in _RUNS:
        prob, rec = prob_case.build()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            sol = om.solve(prob, alg_case.alg, maxiters=maxiters, callback=_ignore if callback else None)
        _RUNS[key] = Run(prob, rec, sol, (out.getvalue(), err.getvalue()))
    return _RUNS[key]


def solved(
    alg_case: AlgorithmCase, prob_case: ProblemCase, maxiters: int | None, *, callback: bool = False
) -> tuple[om.OptimizationProblem, Recorder, om.Solution]:
    """``(problem, recorder, solution)`` of the shared `run`."""
    shared = run(alg_case, prob_case, maxiters, callback=callback)
    return shared.prob, shared.rec, shared.sol
