"""Guarantees that the other test files check for a few algorithms, checked for every registered one.

* What ``f`` and ``grad`` return is validated at the first call that returns it, by every algorithm
  that makes the call: a gradient of the wrong shape is a ValueError naming both shapes; complex,
  boolean or object values are a TypeError; integer and float32 gradients are promoted; a loss that
  is not a real scalar is a TypeError saying so; a stateful ``f`` returning a bare loss is a
  TypeError asking for ``(value, new_state)`` (tests/test_validation.py runs these with Adam, SGD and
  BFGS only). With and without the determinism probe, but for DifferentialEvolution without it,
  whose scipy turns a TypeError into a RuntimeError.
* Bad budgets (``maxiters`` not a positive integer, ``maxtime`` not a positive finite number) are a
  ValueError before any call, for every algorithm (tests/test_validation.py: Adam, SGD, BFGS).
* ``maxtime`` is honoured within about one step's duration, for a realistic budget (tests/
  test_contracts.py checks only ``maxtime=1e-9``); not by SHGO, nor by DifferentialEvolution with
  ``polish=True``, which are left out.
* Nothing the caller passed is written to, with a constant state for every algorithm and an
  evolving one for those that commit it, and with every kind of constraint (tests/test_contracts.py
  runs no constant state and snapshots no constraint).
* The same inputs give bitwise the same solution: every algorithm, deterministic and stateful
  problems, random methods with a seed (tests/test_hyperparameters.py: the four global methods).
"""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from collections.abc import Callable
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.optimize
from catalogue import box_for
from test_faults import configured

import optimeta as om

ALL = om.algorithms()
X = np.array([0.3, -0.2])


def ids(cls: Any) -> str:
    return cls.__name__


def _budget(cls: Any, steps: int = 5) -> int | None:
    """A step budget for algorithms without a convergence test; None lets the others converge."""
    return steps if not cls.traits.has_convergence_test else None


def _commits_state(cls: Any) -> bool:
    return cls.traits.single_call_per_step or cls.traits.commits_state_per_step


# --------------------------------------------------------------------------------------------
# 1. What f and grad return, validated at the first call, by every algorithm
# --------------------------------------------------------------------------------------------


def _sum_sq(u: Any, p: Any) -> Any:
    return anp.sum(u**2)


def _pair(u: Any, p: Any, state: Any) -> Any:
    return anp.sum(u**2), state


#: (id, f, grad, stateful, error, regexes that must all match the message); error None: accepted.
RETURNS: list[tuple[str, Callable[..., Any], Callable[..., Any] | None, bool, type | None, list[str]]] = [
    ("grad-too-long", _sum_sq, lambda u, p: np.ones(3), False, ValueError, ["grad", r"\(2,\)", r"\(3,\)"]),
    ("grad-column", _sum_sq, lambda u, p: np.ones((2, 1)), False, ValueError, ["grad", r"\(2,\)", r"\(2, 1\)"]),
    ("grad-scalar", _sum_sq, lambda u, p: 1.0, False, ValueError, ["grad", r"\(2,\)", r"\(\)"]),
    ("grad-complex", _sum_sq, lambda u, p: (2.0 * u).astype(complex), False, TypeError, ["grad", "complex"]),
    ("grad-bool", _sum_sq, lambda u, p: np.array([True, False]), False, TypeError, ["grad", "bool"]),
    ("grad-object", _sum_sq, lambda u, p: np.array([1.0, None], dtype=object), False, TypeError, ["grad"]),
    ("grad-none", _sum_sq, lambda u, p: None, False, TypeError, ["grad"]),
    ("grad-int-promoted", _sum_sq, lambda u, p: np.zeros(2, dtype=int), False, None, []),
    ("grad-float32-promoted", _sum_sq, lambda u, p: (2.0 * u).astype(np.float32), False, None, []),
    ("f-vector", lambda u, p: u * 2.0, None, False, TypeError, ["scalar", r"\(2,\)"]),
    ("f-one-element-array", lambda u, p: anp.sum(u**2, keepdims=True), None, False, TypeError, ["scalar", r"\(1,\)"]),
    ("f-complex", lambda u, p: 1.0 + 1.0j, None, False, TypeError, ["real scalar"]),
    ("f-bool", lambda u, p: True, None, False, TypeError, ["real scalar"]),
    ("f-none", lambda u, p: None, None, False, TypeError, ["real scalar"]),
    ("f-pair-without-state", lambda u, p: (anp.sum(u**2), 0), None, False, TypeError, ["scalar", "state="]),
    ("stateful-f-bare-loss", lambda u, p, s: anp.sum(u**2), None, True, TypeError, [r"\bf\b", "new_state"]),
    ("stateful-f-triple", lambda u, p, s: (anp.sum(u**2), s, 0), None, True, TypeError, [r"\bf\b", "new_state"]),
    ("stateful-grad-bare", _pair, lambda u, p, s: 2.0 * u, True, TypeError, ["grad", "new_state"]),
    ("stateful-grad-shape", _pair, lambda u, p, s: (np.ones(3), s), True, ValueError, ["grad", r"\(2,\)", r"\(3,\)"]),
]


def _return_cases() -> list[Any]:
    out = []
    for case in RETURNS:
        for cls in ALL:
            if case[2] is not None and not cls.traits.requires_gradient:
                continue  # a derivative-free method never calls grad
            for probe in (True, False):
                if not probe and case[2] is None and cls is om.DifferentialEvolution:
                    # Without the determinism probe at u0, scipy's differential evolution turns a
                    # TypeError or ValueError raised during its initial population into its own
                    # RuntimeError ("The map-like callable must be ..."): not the guarantee.
                    continue
                name = f"{case[0]}-{cls.__name__}{'' if probe else '-unprobed'}"
                out.append(pytest.param(cls, probe, *case, id=name))
    return out


def _light(cls: Any) -> Any:
    """`configured`, with a sample of 16 points for SHGO (its local searches take the gradient)."""
    alg = configured(cls)
    return dataclasses.replace(alg, n=16) if cls is om.SHGO else alg


class Counted:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.fn(*args)


@pytest.mark.parametrize(("cls", "probe", "case_id", "f", "grad", "stateful", "error", "regexes"), _return_cases())
def test_what_f_and_grad_return_is_validated_by_every_algorithm(
    cls: Any,
    probe: bool,
    case_id: str,
    f: Callable[..., Any],
    grad: Callable[..., Any] | None,
    stateful: bool,
    error: type | None,
    regexes: list[str],
) -> None:
    counted = Counted(f)
    # A state that evolves for the algorithms that commit one (declared not to drive the loss, so
    # that those trusting exact values accept it), a constant one for the others: every algorithm
    # accepts one of them.
    state_kwargs: dict[str, Any] = {}
    if stateful:
        state_kwargs = {"state": {"k": 0}}
        state_kwargs.update({"stochastic": False} if _commits_state(cls) else {"state_mode": "constant"})
    prob = om.OptimizationProblem(counted, X, grad=grad, bounds=box_for(cls), **state_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if error is None:
            sol = om.solve(prob, _light(cls), maxiters=_budget(cls), check_determinism=probe)
            assert np.isfinite(sol.u).all()
            return
        with pytest.raises(error) as info:
            om.solve(prob, _light(cls), maxiters=_budget(cls), check_determinism=probe)
    message = str(info.value)
    for regex in regexes:
        assert re.search(regex, message), (regex, message)
    assert not re.search("ArrayBox|autograd", message), message
    # Before the first step: in the determinism probe (its partial solution is u0, no step, the
    # failing call counted among the probe's), or at the run's first evaluation.
    partial = info.value.partial_solution
    assert partial.stats.iterations == 0
    in_probe = any("determinism probe" in note for note in getattr(info.value, "__notes__", []))
    probe_calls = partial.stats.probe_fevals
    # Refused at the first call that returns the bad value: f's first call, or the first gradient.
    # A global method that takes the gradient only in its local searches samples values first.
    if grad is None or not cls.traits.requires_bounds:
        assert counted.calls == probe_calls + (0 if in_probe else 1)


# --------------------------------------------------------------------------------------------
# 2. Budgets: bad values refused before any call; maxtime honoured within about one step
# --------------------------------------------------------------------------------------------

BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"maxiters": 0}, r"maxiters.*\b0\b"),
    ({"maxiters": -3}, r"maxiters.*-3\b"),
    ({"maxiters": 2.5}, r"maxiters.*2\.5"),
    ({"maxiters": 2.0}, r"maxiters.*2\.0"),
    ({"maxiters": np.float64(2.0)}, r"maxiters"),
    ({"maxiters": True}, r"maxiters.*True"),
    ({"maxiters": "3"}, r"maxiters.*'3'"),
    ({"maxtime": 0}, r"maxtime.*\b0\b"),
    ({"maxtime": -0.5}, r"maxtime.*-0\.5"),
    ({"maxtime": float("nan")}, r"maxtime.*nan"),
    ({"maxtime": float("inf")}, r"maxtime.*inf"),
    ({"maxtime": True}, r"maxtime.*True"),
    # More seconds than a float holds: refused as too large, never an OverflowError.
    ({"maxtime": 10**400}, r"^maxtime must be a positive, finite number of seconds or None, got 1000"),
]


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_bad_budgets_are_refused_before_any_call_by_every_algorithm(cls: Any) -> None:
    counted = Counted(_sum_sq)
    prob = om.OptimizationProblem(counted, X, bounds=box_for(cls))
    for options, regex in BAD_OPTIONS:
        with pytest.raises(ValueError, match=regex):
            om.solve(prob, configured(cls), **options)
    assert counted.calls == 0


#: The time every call of f takes in the maxtime test, and the budget: tens of calls.
CALL_TIME = 0.002
MAXTIME = 0.06
#: Slack for the scheduler and the bookkeeping after the last step.
SLACK = 0.05
#: Methods that do not honour maxtime within a step, left out of the test: SHGO makes its first
#: evaluation only after scipy's sampling and triangulation (0.49 s in 6 variables with its
#: defaults), and maxtime is checked at evaluations.
MAXTIME_EXEMPT = (om.SHGO,)


def _slow_rosenbrock(u: Any, p: Any) -> Any:
    time.sleep(CALL_TIME)
    return anp.sum(100.0 * (u[1:] - u[:-1] ** 2) ** 2 + (1.0 - u[:-1]) ** 2)


@pytest.mark.parametrize("cls", [cls for cls in ALL if cls not in MAXTIME_EXEMPT], ids=ids)
def test_maxtime_is_honoured_within_about_one_step(cls: Any) -> None:
    alg = configured(cls, lr=1e-3)
    # DifferentialEvolution keeps its polish: scipy runs it after the callback stopped the run,
    # and the adapter stops it at its first evaluation past the budget.
    if cls is om.DualAnnealing:
        alg = dataclasses.replace(alg, maxiter=1000)
    stamps: list[float] = []
    calls: list[float] = []

    def f(u: Any, p: Any) -> Any:
        calls.append(time.perf_counter())
        return _slow_rosenbrock(u, p)

    prob = om.OptimizationProblem(f, np.full(6, -1.5), bounds=box_for(cls))
    kwargs: dict[str, Any] = {}
    if cls.traits.supports_callback:
        kwargs["callback"] = lambda info: stamps.append(time.perf_counter())
    start = time.perf_counter()
    sol = om.solve(prob, alg, maxtime=MAXTIME, check_determinism=False, **kwargs)
    assert sol.retcode is om.ReturnCode.MAXTIME
    # One step: between two reports to the callback, or between two evaluations for a method that
    # reports none (it is stopped at the first evaluation past the budget).
    marks = stamps if cls.traits.supports_callback else calls
    longest = float(np.max(np.diff([start, *marks])))
    assert sol.stats.time <= MAXTIME + longest + SLACK, (sol.stats.time, longest)


# --------------------------------------------------------------------------------------------
# 3. Nothing the caller passed is written to
# --------------------------------------------------------------------------------------------


def _snap(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return ("array", x.tobytes(), x.dtype.str, x.shape, x.flags.writeable)
    if isinstance(x, dict):
        return {k: _snap(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_snap(v) for v in x])
    if isinstance(x, np.random.Generator):
        return ("generator", repr(x.bit_generator.state))
    if isinstance(x, scipy.optimize.LinearConstraint):
        return ("linear", _snap(x.A), _snap(np.asarray(x.lb)), _snap(np.asarray(x.ub)))
    if isinstance(x, scipy.optimize.NonlinearConstraint):
        return ("nonlinear", _snap(np.asarray(x.lb)), _snap(np.asarray(x.ub)))
    if isinstance(x, om.Constraint):
        return ("constraint", _snap(np.asarray(x.lb)), _snap(np.asarray(x.ub)))
    return repr(x)


def _tree_loss(u: Any, p: Any) -> Any:
    return anp.sum((u["w"] - p["c"][:2]) ** 2) + anp.sum((u["b"] - p["more"][0]) ** 2)


def _constant(u: Any, p: Any, s: Any) -> Any:
    return _tree_loss(u, p) + 0.0 * s["a"][0], s


def _evolving(u: Any, p: Any, s: Any) -> Any:
    return _tree_loss(u, p), {"a": s["a"] + 1.0, "n": s["n"] + 1, "rng": s["rng"]}


def _mutation_cases() -> list[Any]:
    out = []
    for cls in ALL:
        modes = ["stateless", "constant"] + (["evolving"] if _commits_state(cls) else [])
        out += [pytest.param(cls, mode, id=f"{cls.__name__}-{mode}") for mode in modes]
    return out


@pytest.mark.parametrize(("cls", "mode"), _mutation_cases())
def test_no_input_is_written_to_by_any_algorithm(cls: Any, mode: str) -> None:
    u0 = {"w": np.array([0.4, -0.3]), "b": np.array([0.1])}
    p = {"c": np.array([1.0, -2.0, 0.5]), "more": [np.array([2.0])]}
    lb = {"w": np.array([-2.0, -2.0]), "b": np.array([-2.0])}
    ub = {"w": np.array([2.0, 2.0]), "b": np.array([2.0])}
    state = None if mode == "stateless" else {"a": np.array([1.0, 2.0]), "n": 0, "rng": np.random.default_rng(1)}
    constraints = None
    if cls.traits.supports_constraints:
        constraints = [
            scipy.optimize.LinearConstraint(np.array([[1.0, 1.0, 1.0]]), np.array([-5.0]), np.array([5.0])),
            scipy.optimize.NonlinearConstraint(lambda x: x @ x, np.array([-np.inf]), np.array([10.0])),
            om.Constraint(lambda u, p: anp.sum(u["w"] ** 2), lb=np.array([-1.0]), ub=np.array([4.0])),
        ]
    losses: dict[str, Callable[..., Any]] = {"stateless": _tree_loss, "constant": _constant, "evolving": _evolving}
    f = losses[mode]

    callers = (u0, p, state, lb, ub, constraints)
    before = _snap(callers)
    prob = om.OptimizationProblem(
        f,
        u0,
        p=p,
        state=state,
        bounds=(lb, ub) if cls.traits.supports_bounds else None,
        constraints=constraints,
        state_mode="constant" if mode == "constant" else "evolving",
        stochastic=False if mode == "evolving" else None,
    )
    problems = (prob.u0, prob.p, prob.state, prob.bounds, list(prob.constraints))
    problem_before = _snap(problems)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        first = om.solve(prob, configured(cls, lr=0.05), maxiters=_budget(cls, 10))
        again = om.solve(prob, configured(cls, lr=0.05), maxiters=_budget(cls, 10))
    assert _snap(callers) == before
    assert _snap(problems) == problem_before
    # The problem is reusable: a second solve of it is the same run.
    assert _snap(first.u) == _snap(again.u)
    assert first.objective == again.objective


# --------------------------------------------------------------------------------------------
# 4. The same inputs, bitwise the same solution
# --------------------------------------------------------------------------------------------


def _quartic(u: Any, p: Any) -> Any:
    return anp.sum(np.array([1.0, 3.0, 0.5]) * (u - np.array([1.0, -2.0, 0.5])) ** 2) + 0.1 * anp.sum(u**4)


def _keyed(u: Any, p: Any, state: Any) -> Any:
    weights = np.random.default_rng(state["key"]).uniform(0.5, 1.5, size=u.shape)
    return anp.sum(weights * (u - 1.0) ** 2), {"key": state["key"] + 1}


def _drawing(u: Any, p: Any, state: Any) -> Any:
    weights = state["rng"].uniform(0.5, 1.5, size=u.shape)  # draws from the Generator in place
    return anp.sum(weights * (u - 1.0) ** 2), {"rng": state["rng"], "n": state["n"] + 1}


def _problem(kind: str, cls: Any) -> om.OptimizationProblem:
    if kind == "deterministic":
        return om.OptimizationProblem(_quartic, np.array([-1.2, 1.0, 0.5]), bounds=box_for(cls))
    if kind == "keyed":
        return om.OptimizationProblem(_keyed, np.zeros(3), state={"key": 0})
    return om.OptimizationProblem(_drawing, np.zeros(3), state={"rng": np.random.default_rng(5), "n": 0})


def _determinism_cases() -> list[Any]:
    out = []
    for cls in ALL:
        kinds = ["deterministic"]
        if cls.traits.tolerates_stochastic_loss and _commits_state(cls):
            kinds += ["keyed", "generator"]
        out += [pytest.param(cls, kind, id=f"{cls.__name__}-{kind}") for kind in kinds]
    return out


#: Fewer members and iterations for the global searches: the runs are compared, not judged.
LIGHT_GLOBAL: dict[type, dict[str, Any]] = {om.DifferentialEvolution: {"tol": 0.1}, om.DualAnnealing: {"maxiter": 30}}


@pytest.mark.parametrize(("cls", "kind"), _determinism_cases())
def test_the_same_inputs_give_bitwise_the_same_solution(cls: Any, kind: str) -> None:
    alg = dataclasses.replace(configured(cls, lr=0.01), **LIGHT_GLOBAL.get(cls, {}))

    def solve() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sol = om.solve(_problem(kind, cls), alg, maxiters=_budget(cls, 40))
        stats = dataclasses.replace(sol.stats, time=0.0)
        return (_snap(sol.u), repr(sol.objective), sol.retcode, sol.message, stats, _snap(sol.state))

    assert solve() == solve()
