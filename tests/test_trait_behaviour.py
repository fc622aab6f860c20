"""Every declared trait of every registered algorithm, checked against what the algorithm does.

One test per trait, each parametrised over ``om.algorithms()`` (ids: ``<algorithm>-<declared
value>``): calls of ``f`` counted per step, state commits counted, every evaluated point compared
with the box, convergence on noisy quadratics, the gradient and second derivatives counted,
constraints checked at the solution, a checkpointed run compared bit for bit with an
uninterrupted one. A trait that is declared but not kept fails here. A trait whose value the
problem makes necessary and the algorithm lacks must be refused by `solve` (or `init`) before the
objective is called: every refusal asserts the exact exception, the trait it names, and zero calls.

The configured algorithms and the problems come from ``catalogue.py``; what is measured comes from
the declared traits alone, never from an algorithm's name.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.tracer import getval, isbox
from catalogue import (
    ALGORITHMS,
    PROBLEMS,
    SCALES,
    AlgorithmCase,
    C,
    ProblemCase,
    Recorder,
    accepts,
    box_for,
    calls_per_step,
    constraint_violation,
    feasibility_tol,
    final_evaluations,
    flat,
    runs_to_budget,
    solved,
)

import optimeta as om
from optimeta._objective import Objective
from optimeta.traits import TRAIT_NAMES

#: Steps of the short runs that count calls, commits, callbacks and derivatives.
N = 7
#: The step after which a run is checkpointed, and the budget of the checkpointed first-order runs.
K, CHECKPOINT_BUDGET = 3, 20
#: A solution on the catalogue's constrained problems must lie this close to the known optimum
#: (where the constraint is active), so that feasibility is not met by staying at a feasible u0.
CONSTRAINED_ATOL = 1e-4
#: The catalogue's bounded problem: the solution must press against the box to this accuracy (its
#: unconstrained optimum is outside), so that "never left the box" is not met by staying inside.
BOUNDED_ATOL = 1e-3

REGISTERED: list[type] = om.algorithms()
#: Each registered class with its first configuration in the catalogue.
CONFIGURED: dict[type, AlgorithmCase] = {}
for _case in ALGORITHMS:
    CONFIGURED.setdefault(type(_case.alg), _case)
PROBLEM: dict[str, ProblemCase] = {case.name: case for case in PROBLEMS}
#: The variants a trait's test runs for every algorithm, besides the algorithm itself.
VARIANTS: dict[str, tuple[str, ...]] = {"supports_bounds": ("box", "fixed_coordinate")}

#: Traits found to lie, as (trait, algorithm class name, variant or None) -> (reason, the exception
#: the lie raises or None): each such case is marked ``xfail(strict=True)``, so that the suite fails
#: again (XPASS) once the library is fixed and the entry must go.
KNOWN_LIES: dict[tuple[str, str, str | None], tuple[str, type[BaseException] | None]] = {}


def _params(trait: str, variants: tuple[str, ...] = ()) -> list[Any]:
    """Every registered algorithm class (with each variant, if any), with the id
    ``<name>-<declared value of trait>[-<variant>]``."""
    out = []
    for cls in REGISTERED:
        value = getattr(om.traits(cls), trait)
        for variant in variants or (None,):
            lie = KNOWN_LIES.get((trait, cls.__name__, variant))
            marks = []
            if lie is not None:
                reason, raises = lie
                marks.append(pytest.mark.xfail(strict=True, raises=raises, reason=f"library bug: {reason}"))
            values = (cls,) if variant is None else (cls, variant)
            name = f"{cls.__name__}-{value}" + ("" if variant is None else f"-{variant}")
            out.append(pytest.param(*values, id=name, marks=marks))
    return out


def _alg(cls: type) -> Any:
    """The catalogue's configured instance of ``cls``."""
    return CONFIGURED[cls].alg


def _build(name: str, alg: Any, **changes: Any) -> tuple[om.OptimizationProblem, Recorder]:
    """A fresh catalogue problem (with its recorder), changed as asked, and given the catalogue's
    search box when ``alg`` searches one (``requires_bounds``) and the problem has no bounds."""
    prob, rec = PROBLEM[name].build()
    box = box_for(alg)
    if box is not None and prob.bounds is None and "bounds" not in changes:
        changes["bounds"] = box
    return (dataclasses.replace(prob, **changes) if changes else prob), rec


def _assert_refused(
    rec: Recorder,
    trait: str,
    run: Callable[..., Any],
    *args: Any,
    error: type[Exception] = om.IncompatibleAlgorithmError,
    **options: Any,
) -> Exception:
    """``run(*args, **options)`` (`solve` or `init`) raises exactly ``error``, naming ``trait``
    (the only failed rule, for a trait check), and ``f`` was never called."""
    with pytest.raises(error) as info:
        run(*args, **options)
    exc = info.value
    assert type(exc) is error, f"expected exactly {error.__name__}, got {type(exc).__name__}: {exc}"
    assert re.search(rf"\b{re.escape(trait)}\b", str(exc)), f"{trait} not named in:\n{exc}"
    if isinstance(exc, om.IncompatibleAlgorithmError):
        assert [v.trait for v in exc.violations] == [trait]
        assert "(the objective was not called)" in str(exc)
    assert rec.calls == 0, f"f was called {rec.calls} times before the refusal"
    return exc


def _plain(u: Any) -> np.ndarray:
    """The point ``f`` received as a flat float64 vector, autograd tracer boxes (nested for second
    derivatives) taken off."""
    while isbox(u):
        u = getval(u)
    return flat(u)


class Points:
    """Wraps a stateless objective and records, for each call, the point it was called at."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.points: list[np.ndarray] = []

    def __call__(self, u: Any, p: Any) -> Any:
        self.points.append(_plain(u))
        return self.fn(u, p)


class Steps:
    """A callback recording each step's `IterationInfo` and the recorder's calls since the last step."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.infos: list[om.IterationInfo] = []
        self.calls: list[int] = []
        self.states: list[list[Any]] = []
        self._calls = 0
        self._states = 0

    def __call__(self, info: om.IterationInfo) -> None:
        self.infos.append(info)
        self.calls.append(self.rec.calls - self._calls)
        self.states.append(self.rec.states[self._states :])
        self._calls, self._states = self.rec.calls, len(self.rec.states)


def _counting_rosenbrock(u: Any, p: Any, state: dict[str, Any]) -> Any:
    # The state counts the calls that fed it and keeps the point of the last one; the loss does not
    # depend on it. Rosenbrock keeps every method stepping past N steps.
    loss = (p[0] - u[0]) ** 2 + p[1] * (u[1] - u[0] ** 2) ** 2
    return loss, {"commits": state["commits"] + 1, "at": u * 1.0}


def _stateful(alg: Any) -> tuple[om.OptimizationProblem, Recorder]:
    """An evolving state that does not drive the loss, declared so (``stochastic=False``): the
    problem needs only a per-step state commit (or one call per step)."""
    rec = Recorder(_counting_rosenbrock)
    state = {"commits": 0, "at": np.zeros(2)}
    u0 = np.array([-1.2, 1.0])
    prob = om.OptimizationProblem(rec, u0, p=(1.0, 10.0), state=state, stochastic=False, bounds=box_for(alg))
    return prob, rec


# --------------------------------------------------------------------------------------------
# The file covers every trait of every registered algorithm
# --------------------------------------------------------------------------------------------


def test_every_registered_algorithm_is_configured_in_the_catalogue() -> None:
    missing = [cls.__name__ for cls in REGISTERED if cls not in CONFIGURED]
    assert not missing, f"add a configuration of {missing} to ALGORITHMS in tests/catalogue.py"
    assert len(REGISTERED) == len({cls.__name__ for cls in REGISTERED})


def test_every_trait_has_a_behaviour_test() -> None:
    assert [name for name in TRAIT_NAMES if f"test_{name}" not in globals()] == []


def test_known_lies_name_registered_algorithms_and_traits() -> None:
    names = {cls.__name__ for cls in REGISTERED}
    for trait, name, variant in KNOWN_LIES:
        assert trait in TRAIT_NAMES and name in names, (trait, name)
        assert variant is None or variant in VARIANTS.get(trait, ()), (trait, variant)


# --------------------------------------------------------------------------------------------
# Calls per step and the state
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", _params("single_call_per_step"))
def test_single_call_per_step(cls: type) -> None:
    # On a deterministic problem: one call of f between consecutive steps, and in all one per step
    # (plus the determinism probe before the run and a final value at the returned point).
    alg, declared = _alg(cls), om.traits(cls)
    prob, rec = _build("quadratic", alg)
    steps = Steps(rec)
    sol = om.solve(prob, alg, maxiters=N, callback=steps if declared.supports_callback else None)
    assert sol.stats.iterations >= 1
    assert rec.calls == sol.stats.probe_fevals + sol.stats.fevals
    if not declared.single_call_per_step:
        # Several calls in a step are allowed, not required: the run works. Where the catalogue
        # knows a fixed number of calls per step (it documents each), they are made in every step.
        per = calls_per_step(alg)
        if per is not None and declared.supports_callback:
            assert per > 1
            steps.calls[0] -= sol.stats.probe_fevals
            assert steps.calls == [per] * sol.stats.iterations, f"calls of f per step: {steps.calls}"
        return
    if declared.supports_callback:
        steps.calls[0] -= sol.stats.probe_fevals  # the probe's calls come before the first step
        assert steps.calls == [1] * sol.stats.iterations, f"calls of f per step: {steps.calls}"
    assert sol.stats.fevals == sol.stats.iterations + final_evaluations(alg, prob)


@pytest.mark.parametrize("cls", _params("commits_state_per_step"))
def test_commits_state_per_step(cls: type) -> None:
    # The rule of traits.py: an evolving state needs one call per step (each call commits) or a
    # per-step commit (every call of a step gets the step's snapshot, the accepted point's state is
    # committed once). Either way the state advances exactly once per step; without either, the
    # problem is refused.
    alg, declared = _alg(cls), om.traits(cls)
    prob, rec = _stateful(alg)
    if not (declared.single_call_per_step or declared.commits_state_per_step):
        _assert_refused(rec, "single_call_per_step or commits_state_per_step", om.solve, prob, alg, maxiters=N)
        return
    steps = Steps(rec)
    sol = om.solve(prob, alg, maxiters=N, callback=steps if declared.supports_callback else None)
    n = sol.stats.iterations
    assert n >= 1
    assert sol.state["commits"] == n, f"{n} steps committed the state {sol.state['commits']} times"
    probes = sol.stats.probe_fevals
    received = [state["commits"] for state in rec.states[probes:]]
    assert received == sorted(received) and set(received) <= set(range(n + 1)), received
    if not declared.supports_callback:
        return
    assert len(steps.infos) == n
    steps.states[0] = steps.states[0][probes:]  # the probe's calls, before the first step, commit nothing
    previous = prob.u0
    for k, (info, states) in enumerate(zip(steps.infos, steps.states), start=1):
        assert states, f"step {k} made no call"
        # Every call of step k received the state of k - 1 commits; step k committed the k-th.
        assert [s["commits"] for s in states] == [k - 1] * len(states), f"step {k} received {states}"
        assert info.state["commits"] == k
        if declared.single_call_per_step:
            # One call, at the iterate the step started from: its state is the one committed.
            assert len(states) == 1
            assert flat(info.state["at"]).tobytes() == flat(previous).tobytes()
        else:
            # Committed once, the state returned at the step's accepted point.
            assert flat(info.state["at"]).tobytes() == flat(info.u).tobytes()
        previous = info.u
    # Any call after the last step (none, or a whole-run method's last evaluations) gets its commit.
    after = rec.states[probes + sum(len(states) for states in steps.states) :]
    assert [s["commits"] for s in after] == [n] * len(after)
    assert sol.state["commits"] == steps.infos[-1].state["commits"]
    assert flat(sol.state["at"]).tobytes() == flat(steps.infos[-1].state["at"]).tobytes()


#: Noise of standard deviation 1 on every value of the catalogue's quadratic, none on its gradient:
#: unlike the catalogue's noisy quadratic (random weights, whose noise vanishes at the optimum), it
#: breaks a line search, or any other test that compares values, near the optimum.
VALUE_NOISE = 1.0


def _value_noise(u: Any, p: Any, rng: np.random.Generator) -> Any:
    return anp.sum(SCALES * (u - p) ** 2) + VALUE_NOISE * rng.standard_normal()


def _build_value_noise() -> tuple[om.OptimizationProblem, Recorder]:
    rng = np.random.default_rng(5)  # hidden state: the problem declares itself stochastic
    rec = Recorder(lambda u, p: _value_noise(u, p, rng))
    return om.OptimizationProblem(rec, np.zeros(3), p=C, stochastic=True), rec


NOISY = PROBLEM["stochastic"]
VALUE_NOISE_CASE = ProblemCase("value_noise", _build_value_noise, C, 0.0, dict(NOISY.needs), atol=NOISY.atol)


@pytest.mark.parametrize("cls", _params("tolerates_stochastic_loss"))
def test_tolerates_stochastic_loss(cls: type) -> None:
    # Problems declared stochastic=True: the catalogue's noisy quadratic, and the quadratic with
    # noise on its values that does not vanish at the optimum. Each is reached to the catalogue's
    # tolerance within the catalogue's budget, without a probe or any call beyond the steps'. An
    # algorithm that trusts exact values refuses them before any call.
    case, declared = CONFIGURED[cls], om.traits(cls)
    if not declared.tolerates_stochastic_loss:
        prob, rec = _build("stochastic", case.alg)
        _assert_refused(rec, "tolerates_stochastic_loss", om.solve, prob, case.alg, maxiters=N)
        return
    per = calls_per_step(case.alg)
    for noisy in (NOISY, VALUE_NOISE_CASE):
        prob, rec, sol = solved(case, noisy, case.maxiters)
        assert prob.stochastic is True
        assert sol.stats.probe_fevals == 0
        assert rec.calls == sol.stats.fevals
        if per is not None:
            assert sol.stats.fevals == per * sol.stats.iterations
        np.testing.assert_allclose(flat(sol.u), flat(noisy.u_star), rtol=0, atol=noisy.atol, err_msg=noisy.name)


# --------------------------------------------------------------------------------------------
# Derivatives
# --------------------------------------------------------------------------------------------


def _quadratic_grad(calls: list[np.ndarray]) -> Callable[[Any, Any], Any]:
    """The user gradient of the catalogue's quadratic, recording the points it is called at."""

    def grad(u: Any, p: Any) -> Any:
        calls.append(np.array(u, dtype=np.float64))
        return 2.0 * SCALES * (u - p)

    return grad


class GradientNeeded(Exception):
    """Raised by a user gradient: a run that needs the gradient cannot complete."""


def _failing_grad(u: Any, p: Any) -> Any:
    raise GradientNeeded


@pytest.mark.parametrize("cls", _params("requires_gradient"))
def test_requires_gradient(cls: type) -> None:
    # Required: the gradient is called (and counted), and a run whose gradient fails cannot
    # complete. Not required: the gradient is never asked for, and the same run completes.
    alg, declared = _alg(cls), om.traits(cls)
    calls: list[np.ndarray] = []
    prob, rec = _build("quadratic", alg, grad=_quadratic_grad(calls))
    sol = om.solve(prob, alg, maxiters=N)
    assert rec.calls >= 1
    if declared.requires_gradient:
        assert calls, "the gradient was never called"
        assert sol.stats.gevals >= 1
    else:
        assert calls == [], f"the gradient was called {len(calls)} times"
        assert sol.stats.gevals == 0
    prob, rec = _build("quadratic", alg, grad=_failing_grad)
    if declared.requires_gradient:
        with pytest.raises(GradientNeeded):
            om.solve(prob, alg, maxiters=N)
    else:
        sol = om.solve(prob, alg, maxiters=N)
        assert sol.stats.gevals == 0 and rec.calls >= 1


@pytest.mark.parametrize("cls", _params("requires_hessian"))
def test_requires_hessian(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    # Second derivatives are asked of the objective wrapper alone (Objective.hessian / .hessp):
    # counted there, they are asked for by the methods that declare requires_hessian and by no
    # other. Those refuse grad="finite-difference" (differences of differences) before any call.
    alg, declared = _alg(cls), om.traits(cls)
    asked: list[str] = []
    hessian, hessp = Objective.hessian, Objective.hessp

    def counted_hessian(self: Objective, x: np.ndarray) -> np.ndarray:
        asked.append("hessian")
        return hessian(self, x)

    def counted_hessp(self: Objective, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        asked.append("hessp")
        return hessp(self, x, v)

    monkeypatch.setattr(Objective, "hessian", counted_hessian)
    monkeypatch.setattr(Objective, "hessp", counted_hessp)
    prob, rec = _build("rosenbrock", alg)
    sol = om.solve(prob, alg, maxiters=N)
    assert rec.calls >= 1
    assert sol.stats.hevals == len(asked)
    if not declared.requires_hessian:
        assert asked == [], f"second derivatives asked for: {asked}"
        return
    assert asked, "no Hessian or Hessian-vector product was asked for"
    differences, diff_rec = _build("rosenbrock", alg, grad="finite-difference")
    _assert_refused(diff_rec, "requires_hessian", om.solve, differences, alg, maxiters=N)


# --------------------------------------------------------------------------------------------
# Bounds and constraints
# --------------------------------------------------------------------------------------------


def _bounded(box: str) -> tuple[om.OptimizationProblem, Recorder]:
    """The catalogue's bounded problem (``box``), or the same with its second coordinate fixed
    (lb == ub) at the bound the optimum presses against (``fixed_coordinate``): both boxes exclude
    the unconstrained optimum and share the constrained one."""
    prob, rec = PROBLEM["bounded"].build()
    if box == "fixed_coordinate":
        lb, ub = flat(prob.bounds[0]), flat(prob.bounds[1]).copy()
        ub[1] = lb[1]
        u0 = np.clip(flat(prob.u0), lb, ub)
        prob = dataclasses.replace(prob, u0=u0, bounds=(lb, ub))
    return prob, rec


@pytest.mark.parametrize(("cls", "box"), _params("supports_bounds", VARIANTS["supports_bounds"]))
def test_supports_bounds(cls: type, box: str) -> None:
    # The box excludes the unconstrained optimum: every point f is called at (the probe's, the line
    # searches', the traced ones of second derivatives) and the solution lie in it, with no
    # tolerance, and the solution presses against it.
    case, declared = CONFIGURED[cls], om.traits(cls)
    prob, rec = _bounded(box)
    if not declared.supports_bounds:
        _assert_refused(rec, "supports_bounds", om.solve, prob, case.alg, maxiters=N)
        return
    spy = Points(prob.f)
    sol = om.solve(dataclasses.replace(prob, f=spy), case.alg, maxiters=case.maxiters)
    lb, ub = flat(prob.bounds[0]), flat(prob.bounds[1])
    assert spy.points and len(spy.points) == rec.calls
    for k, x in enumerate([*spy.points, flat(sol.u)], start=1):
        assert np.all(lb <= x) and np.all(x <= ub), f"{'solution' if k > rec.calls else f'call {k}'} at {x!r}"
    np.testing.assert_allclose(flat(sol.u), flat(PROBLEM["bounded"].u_star), rtol=0, atol=BOUNDED_ATOL)


@pytest.mark.parametrize("cls", _params("requires_bounds"))
def test_requires_bounds(cls: type) -> None:
    # Needed: an unbounded problem, and a box open on one side, are refused before any call.
    # Not needed: an unbounded problem runs.
    alg, declared = _alg(cls), om.traits(cls)
    if not declared.requires_bounds:
        prob, rec = _build("quadratic", alg)
        assert prob.bounds is None
        sol = om.solve(prob, alg, maxiters=N)
        assert sol.stats.iterations >= 1 and rec.calls >= 1
        return
    for bounds in (None, (np.full(3, -3.0), None)):
        prob, rec = _build("quadratic", alg, bounds=bounds)
        _assert_refused(rec, "requires_bounds", om.solve, prob, alg, maxiters=N)


def _constrained_case(alg_case: AlgorithmCase) -> ProblemCase:
    """The first constrained catalogue problem the algorithm accepts (one with a box, for the
    methods that search one)."""
    return next(p for p in PROBLEMS if p.needs.get("supports_constraints") and accepts(alg_case, p))


@pytest.mark.parametrize("cls", _params("supports_constraints"))
def test_supports_constraints(cls: type) -> None:
    # A constraint active at the known optimum: the solution is feasible within the method's own
    # tolerance, and there. Without the trait, a constrained problem is refused before any call.
    case, declared = CONFIGURED[cls], om.traits(cls)
    if not declared.supports_constraints:
        prob, rec = _build("disk", case.alg)
        _assert_refused(rec, "supports_constraints", om.solve, prob, case.alg, maxiters=N)
        return
    constrained = _constrained_case(case)
    prob, _, sol = solved(case, constrained, case.maxiters)
    assert prob.constraints
    assert constraint_violation(prob, sol.u) <= feasibility_tol(case.alg)
    np.testing.assert_allclose(flat(sol.u), flat(constrained.u_star), rtol=0, atol=CONSTRAINED_ATOL)


# --------------------------------------------------------------------------------------------
# Callback and checkpoints
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", _params("supports_callback"))
def test_supports_callback(cls: type) -> None:
    # Every step is reported, numbered 1, 2, ...; a callback returning True halts the run there.
    # Without the trait, a callback is refused before any call.
    alg, declared = _alg(cls), om.traits(cls)
    prob, rec = _build("rosenbrock", alg)
    infos: list[om.IterationInfo] = []
    if not declared.supports_callback:
        _assert_refused(rec, "supports_callback", om.solve, prob, alg, maxiters=N, callback=infos.append)
        assert infos == []
        return
    sol = om.solve(prob, alg, maxiters=N, callback=infos.append)
    assert sol.stats.iterations >= 1
    assert [info.iteration for info in infos] == list(range(1, sol.stats.iterations + 1))
    halted = om.solve(_build("rosenbrock", alg)[0], alg, maxiters=N, callback=lambda info: True)
    assert halted.retcode is om.ReturnCode.TERMINATED
    assert halted.stats.iterations == 1


@pytest.mark.parametrize("cls", _params("supports_checkpoint"))
def test_supports_checkpoint(cls: type) -> None:
    # init, K steps, a checkpoint through pickle, resume and finish: bit for bit the uninterrupted
    # run. Without the trait, init refuses (a ValueError naming it) before any call.
    case, declared = CONFIGURED[cls], om.traits(cls)
    if not declared.supports_checkpoint:
        prob, rec = _build("quadratic", case.alg)
        exc = _assert_refused(rec, "supports_checkpoint", om.init, prob, case.alg, maxiters=N)
        assert "om.init takes the run step by step" in str(exc)
        return
    budget = CHECKPOINT_BUDGET if runs_to_budget(case.alg) else None
    rosenbrock = PROBLEM["rosenbrock"]
    full = om.solve(rosenbrock.build()[0], case.alg, maxiters=budget)
    assert full.stats.iterations > K, "the run must go on after the checkpoint"
    solver = om.init(rosenbrock.build()[0], case.alg, maxiters=budget)
    for _ in range(K):
        assert solver.step()
    assert solver.iterations == K
    saved = pickle.loads(pickle.dumps(solver.checkpoint()))
    resumed = om.resume(saved, rosenbrock.build()[0]).solve()
    assert flat(resumed.u).tobytes() == flat(full.u).tobytes()
    assert resumed.objective == full.objective
    assert resumed.retcode is full.retcode
    assert (resumed.stats.iterations, resumed.stats.fevals) == (full.stats.iterations, full.stats.fevals)


# --------------------------------------------------------------------------------------------
# Budgets and minibatches
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", _params("has_convergence_test"))
def test_has_convergence_test(cls: type) -> None:
    # With one, a run without a budget ends by the algorithm's own test; without one, such a run is
    # refused before any call, and a budget of N steps runs exactly N.
    alg, declared = _alg(cls), om.traits(cls)
    prob, rec = _build("quadratic", alg)
    if declared.has_convergence_test:
        sol = om.solve(prob, alg)
        assert sol.retcode in (om.ReturnCode.SUCCESS, om.ReturnCode.FAILURE), sol.message
        assert rec.calls >= 1
        return
    _assert_refused(rec, "has_convergence_test", om.solve, prob, alg)
    sol = om.solve(prob, alg, maxiters=N)
    assert (sol.retcode, sol.stats.iterations) == (om.ReturnCode.MAXITERS, N)


def _batch_loss(u: Any, batch: Any) -> Any:
    return anp.sum((u - batch) ** 2)


@pytest.mark.parametrize("cls", _params("supports_minibatches"))
def test_supports_minibatches(cls: type) -> None:
    # With it, data= feeds one batch per step (if the algorithm takes the noise minibatches bring);
    # without it, data= is refused before any call, naming the trait.
    alg, declared = _alg(cls), om.traits(cls)
    batches = [np.full(3, float(i)) for i in range(4)]
    rec = Recorder(_batch_loss)
    prob = om.OptimizationProblem(rec, np.zeros(3), p=batches[0], bounds=box_for(alg))
    if not declared.supports_minibatches:
        with pytest.raises(om.IncompatibleAlgorithmError) as info:
            om.solve(prob, alg, data=batches)
        assert "supports_minibatches" in [v.trait for v in info.value.violations]
        assert rec.calls == 0
        return
    if not declared.tolerates_stochastic_loss:  # minibatches make the loss noisy: refused for that
        with pytest.raises(om.IncompatibleAlgorithmError) as info:
            om.solve(prob, alg, data=batches)
        assert [v.trait for v in info.value.violations] == ["tolerates_stochastic_loss"]
        return
    sol = om.solve(prob, alg, data=batches)
    assert sol.stats.iterations == len(batches)
    assert sol.retcode is om.ReturnCode.MAXITERS
