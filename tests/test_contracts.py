"""Contracts of `solve`, measured: call counts, state threading, tracer stripping, inputs untouched.

Every test here measures a promise of DESIGN.md ("State threading" above all) instead of only
looking at a result: objective calls are counted, the state each call receives is compared with
the state the previous call returned (one call per step) or with the snapshot its step committed
from (per-step commit), inputs are compared byte for byte before and after a solve, and the
first-order arithmetic is compared with a hand-written NumPy reference, and the counts of an
algorithm with a convergence test with scipy's (its raw result, or scipy called directly on the same
problem). Which pairs run, and which contract each must meet, is computed from the catalogue, the
algorithms' traits, their shape (step-wise or whole-run) and class data (the trait ``has_convergence_test``,
``loss_at_new_iterate``), never from their names.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.tracer import Box, getval
from catalogue import (
    ALGORITHMS,
    PLAIN_NEEDS,
    PROBLEMS,
    SCIPY_GRADIENT_CALLS,
    STATE_COMMIT,
    STATEFUL_NEEDS,
    AlgorithmCase,
    ProblemCase,
    Recorder,
    accepts,
    as_params,
    assert_follows_scipy_twin,
    assert_scipy_counts,
    box_for,
    calls_per_step,
    final_evaluations,
    hessian_calls,
    returns_last_iterate,
    run,
    runs_to_budget,
    solved,
    stepwise,
    whole_run,
)

import optimeta as om

N = 7  # steps of the short step-wise runs
K = 2  # the step at which a callback halts a run
BOUNDED_STEPS = 300  # long enough for every first-order algorithm to reach the catalogue's box

# --------------------------------------------------------------------------------------------
# Helpers: trees, snapshots, a spying objective
# --------------------------------------------------------------------------------------------


def _is_namedtuple(tree: Any) -> bool:
    return isinstance(tree, tuple) and hasattr(type(tree), "_fields")


def _children(tree: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(tree, dict):
        yield from tree.items()
    elif isinstance(tree, (list, tuple)):
        yield from enumerate(tree)


def _rebuild(tree: Any, values: list[Any]) -> Any:
    if isinstance(tree, dict):
        return type(tree)(zip(tree.keys(), values))
    if _is_namedtuple(tree):
        return type(tree)(*values)
    return type(tree)(values)


def _map(fn: Callable[[Any], Any], tree: Any) -> Any:
    if isinstance(tree, (dict, list, tuple)):
        return _rebuild(tree, [_map(fn, child) for _, child in _children(tree)])
    return fn(tree)


def _skeleton(tree: Any) -> Any:
    """The containers of ``tree`` (types, keys, order) with every leaf dropped."""
    if isinstance(tree, (dict, list, tuple)):
        return (type(tree), tuple((key, _skeleton(child)) for key, child in _children(tree)))
    return None


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """``(path, leaf)`` for every leaf, depth first."""
    if isinstance(tree, (dict, list, tuple)):
        for key, child in _children(tree):
            yield from _paths(child, (*prefix, key))
    else:
        yield prefix, tree


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _flat(tree: Any) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(leaf, dtype=np.float64)) for _, leaf in _paths(tree)])


def _plain(tree: Any) -> Any:
    """The test's own tracer stripping, to record what a traced call returned."""
    while isinstance(tree, Box):
        tree = getval(tree)
    if isinstance(tree, (dict, list, tuple)):
        return _rebuild(tree, [_plain(child) for _, child in _children(tree)])
    return tree


def _boxes(tree: Any, prefix: str = "") -> list[str]:
    """Paths of every autograd tracer box in ``tree``, looking inside containers and object arrays."""
    if isinstance(tree, Box):
        return [prefix or "<root>"]
    if isinstance(tree, np.ndarray) and tree.dtype == object:
        return [p for i, item in enumerate(tree.flat) for p in _boxes(item, f"{prefix}.flat[{i}]")]
    found = []
    for key, child in _children(tree):
        found += _boxes(child, f"{prefix}[{key!r}]")
    return found


def _snap(tree: Any) -> Any:
    """A comparable, byte-exact picture of ``tree``: container types, keys, dtypes, shapes, bytes."""
    if isinstance(tree, Box):
        return ("autograd Box", repr(tree))
    if isinstance(tree, np.ndarray):
        return ("ndarray", tree.dtype.str, tree.shape, tree.tobytes())
    if isinstance(tree, np.generic):
        return ("numpy scalar", tree.dtype.str, tree.tobytes())
    if isinstance(tree, np.random.Generator):
        return ("Generator", _snap(tree.bit_generator.state))
    if isinstance(tree, dict):
        return (type(tree), tuple((key, _snap(value)) for key, value in tree.items()))
    if isinstance(tree, (list, tuple)):
        return (type(tree), tuple(_snap(child) for child in tree))
    if isinstance(tree, float):
        return (float, tree.hex())
    if tree is None or isinstance(tree, (bool, int, str)):
        return (type(tree), tree)
    raise TypeError(f"no snapshot rule for {type(tree).__name__}: {tree!r}")


def _thaw(tree: Any) -> Any:
    """A deep, writable copy: what a user holds before handing it to a problem."""
    return _map(lambda leaf: np.array(leaf) if isinstance(leaf, np.ndarray) else copy.deepcopy(leaf), tree)


def _mutable_ids(tree: Any) -> set[int]:
    """Identities of the mutable objects in ``tree`` (containers, arrays, generators)."""
    ids = {id(tree)} if isinstance(tree, (dict, list, np.ndarray, np.random.Generator)) else set()
    for _, child in _children(tree):
        ids |= _mutable_ids(child)
    return ids


def _assert_tree_close(actual: Any, expected: Any, rtol: float = 1e-12) -> None:
    """Same structure and exact ints/generators; floats to ``rtol``."""
    assert _skeleton(actual) == _skeleton(expected)
    for (path, a), (_, e) in zip(_paths(actual), _paths(expected)):
        if isinstance(e, np.random.Generator):
            assert isinstance(a, np.random.Generator), path
            assert a.bit_generator.state == e.bit_generator.state, path
        elif isinstance(e, (int, np.integer)) and not isinstance(e, bool):
            assert type(a) is type(e) and a == e, (path, a, e)
        else:
            np.testing.assert_allclose(a, e, rtol=rtol, atol=1e-15, err_msg=str(path))


class Spy:
    """Wraps an objective and records, per call, the point, the state received, the loss and the state returned."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.points: list[Any] = []
        self.received: list[Any] = []
        self.returned: list[Any] = []
        self.losses: list[float] = []

    def __call__(self, u: Any, p: Any, *state: Any) -> Any:
        self.points.append(copy.deepcopy(_plain(u)))
        if state:
            self.received.append(copy.deepcopy(state[0]))
        out = self.fn(u, p, *state)
        if state:
            self.returned.append(copy.deepcopy(_plain(out[1])))
        self.losses.append(float(getval(out[0] if state else out)))
        return out


def _spied(prob: om.OptimizationProblem) -> tuple[om.OptimizationProblem, Spy]:
    spy = Spy(prob.f)
    return dataclasses.replace(prob, f=spy), spy


# --------------------------------------------------------------------------------------------
# What runs: computed from the catalogue and the algorithms' traits
# --------------------------------------------------------------------------------------------


def _problem(case: ProblemCase) -> om.OptimizationProblem:
    return case.build()[0]


def _stateful(case: ProblemCase) -> bool:
    return _problem(case).state is not None


def _deterministic(case: ProblemCase) -> bool:
    """Stateless and not declared stochastic: repeated calls at one point agree."""
    prob = _problem(case)
    return prob.state is None and not prob.stochastic


def _single_call(alg_case: AlgorithmCase) -> bool:
    return om.traits(alg_case.alg).single_call_per_step


def _commits_per_step(alg_case: AlgorithmCase) -> bool:
    return om.traits(alg_case.alg).commits_state_per_step


def _reports(alg_case: AlgorithmCase) -> bool:
    """Reports every step to a callback (trait supports_callback)."""
    return om.traits(alg_case.alg).supports_callback


def _stepwise(alg_case: AlgorithmCase) -> bool:
    """Advanced step by step by solve's driver loop."""
    return stepwise(alg_case.alg)


def _whole_run(alg_case: AlgorithmCase) -> bool:
    """Runs an external solver (scipy) from start to end, with its own convergence test."""
    return whole_run(alg_case.alg)


def _budgeted(alg_case: AlgorithmCase) -> bool:
    """Has no convergence test of its own: the driver loop runs exactly the budget it is given."""
    return runs_to_budget(alg_case.alg)


def _calls_per_step(alg_case: AlgorithmCase) -> int | None:
    """The exact number of objective calls per step, or None when it varies (a line search)."""
    return calls_per_step(alg_case.alg)


def _final(alg_case: AlgorithmCase, prob: om.OptimizationProblem) -> int:
    """Calls after the last step: 1 when a step-wise run ends with an evaluation at the returned u."""
    return final_evaluations(alg_case.alg, prob)


def _budget(alg_case: AlgorithmCase, steps: int = N) -> int | None:
    """Short budgets for algorithms without a convergence test; the others run to their own test."""
    return min(steps, alg_case.maxiters) if _budgeted(alg_case) else None


def _check_scipy_counts(
    alg_case: AlgorithmCase, sol: om.Solution, prob: om.OptimizationProblem, maxiters: int | None
) -> None:
    """An algorithm run by a line search makes scipy's evaluations: a whole-run one reports scipy's
    own result; a step-wise one makes the calls scipy makes when called directly on the problem."""
    if _whole_run(alg_case):
        assert_scipy_counts(sol, prob)
    else:
        assert_follows_scipy_twin(sol, prob, maxiters)


def _sense_sign(prob: om.OptimizationProblem) -> float:
    """1 for a minimisation, -1 for a maximisation: ``sign * objective`` is minimised."""
    return 1.0 if prob.sense == "min" else -1.0


def _ids(cases: list[tuple[AlgorithmCase, ProblemCase]]) -> list[str]:
    return [f"{alg.name}-{prob.name}" for alg, prob in cases]


def _counting_rosenbrock(u: Any, p: Any, state: dict[str, Any]) -> Any:
    # The state changes (a call counter and the last point, like BatchNorm's running statistics)
    # but never the loss. Rosenbrock keeps BFGS iterating well beyond N steps.
    return (p[0] - u[0]) ** 2 + p[1] * (u[1] - u[0] ** 2) ** 2, {"calls": state["calls"] + 1, "last": u}


def _build_declared_counter() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_counting_rosenbrock)
    state = {"calls": 0, "last": np.zeros(2)}
    return om.OptimizationProblem(rec, np.array([-1.2, 1.0]), p=(1.0, 10.0), state=state, stochastic=False), rec


# An evolving state declared not to drive the loss: besides the single-call algorithms, the ones
# that commit the state once per step accept it, including those that trust exact values.
DECLARED_CASE = ProblemCase(
    "declared_counter", _build_declared_counter, np.ones(2), 0.0, {**PLAIN_NEEDS, STATE_COMMIT: True}
)
CONTRACT_PROBLEMS = [*PROBLEMS, DECLARED_CASE]

COMPATIBLE = [(a, p) for a in ALGORITHMS for p in CONTRACT_PROBLEMS if accepts(a, p)]
STEPWISE = [(a, p) for a, p in COMPATIBLE if _stepwise(a)]
BUDGETED = [(a, p) for a, p in COMPATIBLE if _budgeted(a)]
STATEFUL = [(a, p) for a, p in COMPATIBLE if _stateful(p)]
NOT_REPEATABLE = [(a, p) for a, p in COMPATIBLE if not _deterministic(p)]
DETERMINISTIC = [(a, p) for a, p in COMPATIBLE if _deterministic(p)]
# Problems whose calls are reproducible from (u, p, state): a user gradient can match autograd.
REPRODUCIBLE = [(a, p) for a, p in COMPATIBLE if not _problem(p).stochastic]
# With the user's grad, second derivatives come from differences of it, not from autograd: the
# same minimum, by other steps.
SAME_STEPS = [(a, p) for a, p in REPRODUCIBLE if not om.traits(a.alg).requires_hessian]
SECOND_DERIVATIVES = [(a, p) for a, p in REPRODUCIBLE if om.traits(a.alg).requires_hessian]
MAXIMISE = [(a, p) for a, p in COMPATIBLE if _problem(p).sense == "max"]
BOUNDED = [(a, p) for a, p in COMPATIBLE if _problem(p).bounds is not None]
CONSTRAINED = [(a, p) for a, p in COMPATIBLE if _problem(p).constraints]
# A callback is for the algorithms that report their steps (trait supports_callback); the others
# refuse one before any call (test_callback_is_refused_before_any_call).
REPORTING = [(a, p) for a, p in COMPATIBLE if _reports(a)]
SILENT = [(a, p) for a, p in COMPATIBLE if not _reports(a)]
# For tests about the algorithms themselves: each with the first deterministic problem it accepts
# (an unbounded one, or the box for the methods that search one).
EVERY_ALGORITHM = [(a, next(p for p in PROBLEMS if accepts(a, p) and _deterministic(p))) for a in ALGORITHMS]
EVERY_REPORTING = [(a, p) for a, p in EVERY_ALGORITHM if _reports(a)]


def test_selections_are_not_empty() -> None:
    # Guards the computed parametrisations: an empty list would make its tests vanish silently.
    for selection in (
        STEPWISE,
        BUDGETED,
        STATEFUL,
        NOT_REPEATABLE,
        DETERMINISTIC,
        REPRODUCIBLE,
        MAXIMISE,
        BOUNDED,
        CONSTRAINED,
        REPORTING,
        SILENT,
    ):
        assert selection
    # Every catalogue algorithm runs some problem; the box, general constraints, both together,
    # and the methods that search a box, with and without a callback.
    assert {a.name for a, _ in COMPATIBLE} == {a.name for a in ALGORITHMS}
    assert any(_problem(p).bounds is not None for _, p in CONSTRAINED)
    assert any(_problem(p).bounds is None for _, p in CONSTRAINED)
    assert any(om.traits(a.alg).requires_bounds and _reports(a) for a, _ in BOUNDED)
    assert any(om.traits(a.alg).requires_bounds for a, _ in CONSTRAINED)
    assert any(_whole_run(a) for a, _ in DETERMINISTIC)
    assert any(_stepwise(a) and not _single_call(a) for a, _ in DETERMINISTIC)
    # Step-wise algorithms with and without a convergence test, with a fixed and a varying number of
    # calls per step, and with and without a final evaluation on a deterministic problem.
    assert any(_stepwise(a) and not _budgeted(a) for a, _ in DETERMINISTIC)
    assert any(_stepwise(a) and _calls_per_step(a) is None for a, _ in DETERMINISTIC)
    assert any(_final(a, _problem(p)) for a, p in DETERMINISTIC)
    assert any(_stepwise(a) and not _final(a, _problem(p)) for a, p in DETERMINISTIC)
    # Both ways of handling an evolving state, and per-step commit in both algorithm shapes.
    assert any(_single_call(a) for a, _ in STATEFUL)
    assert any(_commits_per_step(a) and _stepwise(a) for a, _ in STATEFUL)
    assert any(_commits_per_step(a) and _whole_run(a) for a, _ in STATEFUL)
    for alg_case in ALGORITHMS:
        assert _stepwise(alg_case) != _whole_run(alg_case), f"{alg_case.name} has no single algorithm shape"
        per = _calls_per_step(alg_case)
        assert per is None or per >= 1
        if _budgeted(alg_case):
            assert per is not None


# --------------------------------------------------------------------------------------------
# Call counts and state threading
# --------------------------------------------------------------------------------------------


def _counters(state: Any) -> list[tuple[tuple[Any, ...], int]]:
    """``(path, value)`` of every int leaf: the catalogue's stateful problems count their calls in one."""
    return [(path, leaf) for path, leaf in _paths(state) if type(leaf) is int]


def _same_point(u: Any, v: Any) -> bool:
    """Bit-identical points (the objective sees NumPy scalars where the solution holds floats)."""
    return _flat(u).tobytes() == _flat(v).tobytes()


def _step_calls(alg_case: AlgorithmCase, spy: Spy, sol: om.Solution, infos: list[om.IterationInfo]) -> list[list[int]]:
    """For each step, the indices (into the spy's records) of the objective calls it made.

    Probe calls (first) and a final evaluation (last) belong to no step. A step-wise algorithm
    makes a fixed number of calls per step; a line search a varying one, told apart by the state
    each call receives (committed once per step) or, without a state, by the step's accepted
    point (its line search ends there).
    """
    first = sol.stats.probe_fevals
    steps = sol.stats.iterations
    per = _calls_per_step(alg_case)
    if per is not None:
        return [list(range(first + k * per, first + (k + 1) * per)) for k in range(steps)]
    if spy.received:
        path, start = _counters(spy.received[first])[0]
        done = [_at(state, path) - start for state in spy.received[first:]]
        return [[first + j for j, d in enumerate(done) if d == k] for k in range(steps)]
    groups: list[list[int]] = []
    begin = first
    for info in infos:
        end = next(j for j in range(begin, len(spy.points)) if _same_point(spy.points[j], info.u))
        groups.append(list(range(begin, end + 1)))
        begin = end + 1
    return groups


def _committing_calls(
    alg_case: AlgorithmCase, groups: list[list[int]], spy: Spy, infos: list[om.IterationInfo]
) -> list[int]:
    """For each step, the call whose loss the step reports and whose returned state it commits:
    the step's only call for a single-call algorithm, else its last call at the accepted point."""
    if _single_call(alg_case):
        assert all(len(group) == 1 for group in groups)
        return [group[0] for group in groups]
    out = []
    for group, info in zip(groups, infos):
        at = [j for j in group if _same_point(spy.points[j], info.u)]
        assert at, f"step {info.iteration} never evaluated the point it accepted"
        out.append(at[-1])
    return out


@pytest.mark.parametrize(("alg_case", "prob_case"), STATEFUL, ids=_ids(STATEFUL))
def test_state_is_threaded_through_exactly_n_steps(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    assert _single_call(alg_case) or _commits_per_step(alg_case), (
        "only algorithms that call f once per step or commit the state once per step may accept a stateful problem"
    )
    prob, rec = prob_case.build()
    prob, spy = _spied(prob)
    initial = _snap(prob.state)
    counters = _counters(prob.state)
    assert counters, "every stateful catalogue problem counts its calls in an int leaf of its state"

    infos: list[om.IterationInfo] = []
    sol = om.solve(prob, alg_case.alg, maxiters=N, callback=infos.append)

    # Probe calls (before the run, for algorithms that trust exact values) are counted apart.
    probes = sol.stats.probe_fevals
    if om.traits(alg_case.alg).tolerates_stochastic_loss:
        assert probes == 0
    else:
        # Two calls at u0 on copies of one snapshot, one with the state the first returned.
        assert prob.stochastic is False and probes == 3
        assert [_snap(s) for s in spy.received[:probes]] == [initial, initial, _snap(spy.returned[0])]
    assert rec.calls == len(spy.received) == probes + sol.stats.fevals
    received, returned, losses = spy.received[probes:], spy.returned[probes:], spy.losses[probes:]
    assert sol.stats.iterations == len(infos) == N
    assert sol.retcode is om.ReturnCode.MAXITERS
    assert sol.success is False
    for where, state in [("sol.state", sol.state)] + [(f"call {k + 1}", s) for k, s in enumerate(spy.received)]:
        assert _boxes(state) == [], f"autograd boxes leaked into the state of {where}"

    if _single_call(alg_case):
        # Per-call commit: call k + 1 receives the state call k returned.
        assert len(received) == N
        assert _snap(received[0]) == initial
        for k in range(1, N):
            assert _snap(received[k]) == _snap(returned[k - 1]), f"call {k + 1} did not get call {k}'s state"
        assert _snap(sol.state) == _snap(returned[-1])
        for path, start in counters:
            assert [_at(state, path) for state in rec.states[probes:]] == list(range(start, start + N))
            assert _at(sol.state, path) == start + N
        assert sol.stats.fevals == N
        assert sol.stats.gevals == N
        assert sol.objective == losses[-1]
        return

    # Per-step commit: every call of step k receives a copy of one snapshot, the state committed by
    # step k - 1 (the probe's calls commit nothing); step k commits the state returned by its call
    # at the accepted point, so the state advances exactly once per step.
    path, start = counters[0]
    done = [_at(state, path) - start for state in received]
    assert done[0] == 0 and done[-1] == N - 1, done
    assert all(b - a in (0, 1) for a, b in itertools.pairwise(done)), (
        f"the committed state went back or skipped: {done}"
    )
    per = _calls_per_step(alg_case)
    if per is None:
        _check_scipy_counts(alg_case, sol, prob_case.build()[0], N)
        assert sol.stats.gevals <= sol.stats.fevals
        assert sol.stats.fevals > N, "no step made a trial call: the per-step commit went untested"
    else:
        # The snapshots received, step by step: [s0] * per + [s1] * per + ...
        assert done == [k for k in range(N) for _ in range(per)]
        assert sol.stats.fevals == sol.stats.gevals == per * N
    groups = _step_calls(alg_case, spy, sol, infos)
    assert [j - probes for group in groups for j in group] == list(range(len(received)))
    committing = _committing_calls(alg_case, groups, spy, infos)
    snapshot = initial
    for k, (group, info) in enumerate(zip(groups, infos)):
        for j in group:
            assert _snap(spy.received[j]) == snapshot, f"call {j + 1} of step {k + 1} did not get the step's snapshot"
        snapshot = _snap(spy.returned[committing[k]])
        assert _snap(info.state) == snapshot, f"step {k + 1} did not commit the state returned at its accepted point"
    assert _snap(sol.state) == snapshot
    for path, start in counters:
        assert [_at(state, path) for state in rec.states[probes:]] == [start + d for d in done]
        assert _at(sol.state, path) == start + N
    assert sol.objective == spy.losses[committing[-1]]
    if _stepwise(alg_case):
        # No hidden extra call: the last call is the last step's evaluation at the accepted point.
        assert committing[-1] == len(spy.losses) - 1


@pytest.mark.parametrize(("alg_case", "prob_case"), NOT_REPEATABLE, ids=_ids(NOT_REPEATABLE))
def test_stateful_or_stochastic_run_makes_no_extra_call(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, rec = prob_case.build()
    prob, spy = _spied(prob)
    sol = om.solve(prob, alg_case.alg, maxiters=N)
    assert sol.stats.iterations == N
    # Every call of the run is a value-and-gradient evaluation of a step: no value-only extra call.
    assert rec.calls == sol.stats.probe_fevals + sol.stats.fevals
    assert sol.stats.fevals == sol.stats.gevals + hessian_calls(sol, prob)
    per = _calls_per_step(alg_case)
    if per is not None:
        assert sol.stats.fevals == per * N
    else:
        _check_scipy_counts(alg_case, sol, prob_case.build()[0], N)
    # The reported objective is the loss of the last call the algorithm made.
    assert sol.objective == spy.losses[-1]


@pytest.mark.parametrize(("alg_case", "prob_case"), DETERMINISTIC, ids=_ids(DETERMINISTIC))
def test_deterministic_objective_is_f_at_u_and_counted(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, rec, sol = solved(alg_case, prob_case, _budget(alg_case))
    calls = rec.calls
    assert sol.stats.fevals + sol.stats.probe_fevals == calls
    # The determinism probe runs for algorithms that trust exact values, and only for them.
    assert sol.stats.probe_fevals == (0 if om.traits(alg_case.alg).tolerates_stochastic_loss else 2)
    final = _final(alg_case, prob)
    # Every call is a step's value-and-gradient evaluation, but for the final evaluation (value
    # only) and the traced calls of second derivatives; a derivative-free method takes no gradient;
    # a global method samples values and takes the gradient only in its local searches, each time
    # scipy asks for it (which it counts apart), and once at u0 before the run (evaluates_start).
    if type(alg_case.alg) in SCIPY_GRADIENT_CALLS:
        start = int(type(alg_case.alg).evaluates_start)
        assert sol.stats.gevals == sol.original[SCIPY_GRADIENT_CALLS[type(alg_case.alg)]] + start > start
        assert sol.stats.fevals > sol.stats.gevals
    elif om.traits(alg_case.alg).requires_gradient:
        assert sol.stats.fevals == sol.stats.gevals + final + hessian_calls(sol, prob)
    else:
        assert sol.stats.gevals == 0
    if _budgeted(alg_case):
        per = _calls_per_step(alg_case)
        assert sol.stats.iterations == N
        assert sol.stats.gevals == per * N
        # A step-wise run ends with one (counted) evaluation at the returned u unless its steps
        # report the loss at the iterate they return.
        assert sol.stats.fevals == per * N + final
    else:
        _check_scipy_counts(alg_case, sol, prob_case.build()[0], None)
    assert type(sol.objective) is float
    # The loss at u, to the last bit but for autograd's traced evaluation, which may round the
    # same expression differently (seen: one ulp on the Rosenbrock function, with CG).
    assert sol.objective == pytest.approx(float(rec.fn(sol.u, prob.p)), rel=4 * np.finfo(float).eps, abs=0)


# --------------------------------------------------------------------------------------------
# No tracer leak
# --------------------------------------------------------------------------------------------


class Running(NamedTuple):
    mean: Any
    count: int


BN_SEED = 11


def _bn_state() -> dict[str, Any]:
    return {
        "mean": 0.0,
        "coords": Running(np.zeros(3), 0),
        "n": 0,
        "rng": np.random.default_rng(BN_SEED),
        "trace": [(0.0, np.zeros(3))],
        "chunks": [np.zeros(1)] * 3,
    }


def _bn_loss(u: Any, p: Any, state: dict[str, Any]) -> Any:
    # BatchNorm-like running statistics computed from u: boxes while autograd traces the call.
    mean = 0.9 * state["mean"] + 0.1 * anp.mean(u)
    coords = Running(0.9 * state["coords"].mean + 0.1 * u, state["coords"].count + 1)
    weights = state["rng"].uniform(0.5, 1.5, size=3)
    new_state = {
        "mean": mean,
        "coords": coords,
        "n": state["n"] + 1,
        "rng": state["rng"],
        "trace": [(mean, u * 1.0)],
        "chunks": anp.split(u, 3),  # while traced, a box wrapping a whole list
    }
    return anp.sum(weights * (u - p) ** 2), new_state


def _build_bn() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_bn_loss)
    return om.OptimizationProblem(rec, np.zeros(3), p=np.ones(3), state=_bn_state()), rec


# Which algorithms run it follows from the catalogue's needs of a stateful problem.
BN_CASE = ProblemCase("batchnorm_like", _build_bn, np.ones(3), 0.0, STATEFUL_NEEDS)
BN_ALGORITHMS = [a for a in ALGORITHMS if accepts(a, BN_CASE)]


@pytest.mark.parametrize("alg_case", BN_ALGORITHMS, ids=repr)
def test_state_computed_under_autograd_comes_back_plain(alg_case: AlgorithmCase) -> None:
    prob, rec = BN_CASE.build()
    user_state = prob.state
    received: list[Any] = []
    points: list[np.ndarray] = []

    def loss(u: Any, p: Any, state: Any) -> Any:
        received.append(state)  # the object itself: a leaked box must be seen, not copied away
        points.append(np.array(getval(u)))
        return rec(u, p, state)

    infos: list[om.IterationInfo] = []
    sol = om.solve(dataclasses.replace(prob, f=loss), alg_case.alg, maxiters=N, callback=infos.append)

    probes = sol.stats.probe_fevals  # calls before the run, never committed
    received, points = received[probes:], points[probes:]
    assert len(infos) == sol.stats.iterations == N
    for where, state in [("sol.state", sol.state)] + [(f"call {k + 1}", s) for k, s in enumerate(received)]:
        assert _boxes(state) == [], f"autograd boxes leaked into the state of {where}"
    for info in infos:
        assert _boxes(info.state) == [], f"autograd boxes leaked into IterationInfo.state at step {info.iteration}"

    # Each call's step, from the steps committed before it ("n"); a fixed number of calls per step.
    steps = [state["n"] for state in received]
    assert all(type(n) is int for n in steps)
    per = _calls_per_step(alg_case)
    if per is not None:
        assert steps == [k for k in range(N) for _ in range(per)]

    # The running statistics, recomputed by hand from the points the objective saw: every call of a
    # step receives the statistics committed so far, and the step commits those computed at one
    # point: its only call's (single call per step) or its accepted point's (per-step commit).
    mean, coords = 0.0, np.zeros(3)
    committed_point = None
    for k in range(N):
        calls = [j for j, n in enumerate(steps) if n == k]
        assert calls, f"step {k + 1} made no call"
        for j in calls:
            state = received[j]
            assert state["mean"] == mean
            np.testing.assert_array_equal(state["coords"].mean, coords)
            assert type(state["coords"].count) is int and state["coords"].count == k
        info = infos[k]
        if _single_call(alg_case):
            assert len(calls) == 1
            committed_point = points[calls[0]]
        else:
            accepted = [j for j in calls if np.array_equal(points[j], info.u)]
            assert accepted, f"step {k + 1} never evaluated the point it accepted"
            committed_point = points[accepted[-1]]
        mean = 0.9 * mean + 0.1 * np.mean(committed_point)
        coords = 0.9 * coords + 0.1 * committed_point
        assert info.state["mean"] == mean and info.state["n"] == k + 1
    final = sol.state
    assert isinstance(final["mean"], (float, np.floating)) and final["mean"] == mean
    assert type(final["coords"]) is Running
    assert type(final["coords"].mean) is np.ndarray and final["coords"].mean.dtype == np.float64
    np.testing.assert_array_equal(final["coords"].mean, coords)
    assert type(final["n"]) is int and final["n"] == N
    assert type(final["trace"]) is list and type(final["trace"][0]) is tuple
    assert final["trace"][0][0] == mean
    np.testing.assert_array_equal(final["trace"][0][1], committed_point)
    assert type(final["chunks"]) is list and all(type(chunk) is np.ndarray for chunk in final["chunks"])
    np.testing.assert_array_equal(np.concatenate(final["chunks"]), committed_point)
    # The generator was threaded through the committed states: it drew exactly once per step, N times
    # (per-step commit: the calls of a step drew from copies of one snapshot, one of them committed).
    reference = np.random.default_rng(BN_SEED)
    for _ in range(N):
        reference.uniform(0.5, 1.5, size=3)
    assert isinstance(final["rng"], np.random.Generator)
    assert final["rng"].bit_generator.state == reference.bit_generator.state
    assert user_state["rng"].bit_generator.state == np.random.default_rng(BN_SEED).bit_generator.state


# --------------------------------------------------------------------------------------------
# Inputs are never mutated; outputs are the caller's own
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg_case", "prob_case"), COMPATIBLE, ids=_ids(COMPATIBLE))
def test_solve_leaves_user_inputs_byte_identical(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, _ = prob_case.build()
    u0, p, state, bounds = _thaw(prob.u0), _thaw(prob.p), _thaw(prob.state), _thaw(prob.bounds)
    mine = om.OptimizationProblem(
        prob.f,
        u0,
        p=p,
        state=state,
        bounds=bounds,
        constraints=prob.constraints,
        sense=prob.sense,
        stochastic=prob.stochastic,
    )
    before = _snap((u0, p, state, bounds))
    problem_before = _snap((mine.u0, mine.p, mine.state, mine.bounds))

    sol = om.solve(mine, alg_case.alg, maxiters=_budget(alg_case))

    assert _snap((u0, p, state, bounds)) == before
    assert _snap((mine.u0, mine.p, mine.state, mine.bounds)) == problem_before
    if state is not None:
        assert sol.state is not state
        assert not _mutable_ids(sol.state) & _mutable_ids(state), "the solution shares objects with the user's state"
    for _, leaf in _paths(sol.u):
        if isinstance(leaf, np.ndarray):
            assert leaf.flags.writeable, "Solution.u holds fresh arrays the caller owns"
            for _, given in _paths((u0, mine.u0)):
                assert not (isinstance(given, np.ndarray) and np.shares_memory(leaf, given))


@pytest.mark.parametrize(("alg_case", "prob_case"), COMPATIBLE, ids=_ids(COMPATIBLE))
def test_solve_prints_nothing(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    # The shared plain run, with what it wrote to sys.stdout and sys.stderr (as capsys sees them).
    shared = run(alg_case, prob_case, _budget(alg_case))
    assert shared.rec.calls > 0
    assert shared.printed == ("", "")


def _quadratic(u: Any, p: Any) -> Any:
    return anp.sum((u - p) ** 2)


def _quadratic_grad(u: Any, p: Any) -> Any:
    return 2.0 * (u - p)


def _tree_quadratic(u: Any, p: Any) -> Any:
    return anp.sum((u["w"] - p) ** 2) + (u["s"] - 1.0) ** 2


def _tree_quadratic_grad(u: Any, p: Any) -> Any:
    return {"w": 2.0 * (u["w"] - p), "s": 2.0 * (u["s"] - 1.0)}


WRITE_SHAPES = {
    "array": (_quadratic, _quadratic_grad, lambda: np.zeros(3)),
    "tree": (_tree_quadratic, _tree_quadratic_grad, lambda: {"w": np.zeros(3), "s": 0.0}),
}
# The value-only path runs on every call with a user gradient, for the final evaluation of a
# step-wise run that has one, and for the determinism probe of an algorithm that trusts exact
# values; an algorithm with neither, with autograd, never takes it.
WRITE_CASES = [
    (a, shape, with_grad)
    for a in ALGORITHMS
    for shape in WRITE_SHAPES
    for with_grad in (False, True)
    if with_grad
    or final_evaluations(a.alg, om.OptimizationProblem(_quadratic, np.zeros(3)))
    or not om.traits(a.alg).tolerates_stochastic_loss
]


@pytest.mark.parametrize(
    ("alg_case", "shape", "with_grad"),
    WRITE_CASES,
    ids=[f"{a.name}-{shape}-{'user_grad' if g else 'autograd'}" for a, shape, g in WRITE_CASES],
)
def test_objective_cannot_write_the_iterate(alg_case: AlgorithmCase, shape: str, with_grad: bool) -> None:
    fn, grad_fn, make_u0 = WRITE_SHAPES[shape]
    outcomes: list[str] = []

    def try_to_write(u: Any) -> None:
        for _, leaf in _paths(u):
            if isinstance(leaf, np.ndarray):  # autograd boxes and scalar leaves cannot be written anyway
                try:
                    leaf[...] = 1e3
                except ValueError:
                    outcomes.append("refused")
                else:
                    outcomes.append("written")

    def vandal(u: Any, p: Any) -> Any:
        try_to_write(u)
        return fn(u, p)

    def vandal_grad(u: Any, p: Any) -> Any:
        try_to_write(u)
        return grad_fn(u, p)

    p = np.array([1.0, -2.0, 0.5])
    # A method that searches a box gets one around the optimum.
    bounds = box_for(alg_case.alg)
    honest = om.OptimizationProblem(fn, make_u0(), p=p, grad=grad_fn if with_grad else None, bounds=bounds)
    hostile = om.OptimizationProblem(vandal, make_u0(), p=p, grad=vandal_grad if with_grad else None, bounds=bounds)
    expected = om.solve(honest, alg_case.alg, maxiters=_budget(alg_case))
    sol = om.solve(hostile, alg_case.alg, maxiters=_budget(alg_case))

    assert outcomes, "the objective saw no plain array to write to"
    assert set(outcomes) == {"refused"}, "the objective could write into the algorithm's iterate"
    assert _snap(sol.u) == _snap(expected.u)
    assert sol.objective == expected.objective == float(fn(sol.u, p))


# --------------------------------------------------------------------------------------------
# Pytrees
# --------------------------------------------------------------------------------------------


class Pair(NamedTuple):
    a: Any
    b: Any


def _tree_u0() -> dict[str, Any]:
    # int array and int scalar leaves (promoted), a Python float, a 0-d array and a NumPy scalar.
    return {
        "w": np.zeros((2, 2)),
        "layers": [(np.array([1, 2]), 3), Pair(a=0.5, b=np.array(0.0))],
        "s": np.float64(-1.0),
    }


TREE_TARGET = {
    "w": np.array([[1.0, 2.0], [3.0, 4.0]]),
    "layers": [(np.array([-0.5, -0.5]), 2.0), Pair(a=-1.0, b=np.array(1.5))],
    "s": 0.25,
}
# What the solution must hold: float64 arrays where u0 has arrays, Python floats for scalars.
TREE_KINDS = {"w": np.zeros((2, 2)), "layers": [(np.zeros(2), 0.0), Pair(a=0.0, b=np.zeros(()))], "s": 0.0}


def _kinds(tree: Any) -> Any:
    if isinstance(tree, (dict, list, tuple)):
        return (type(tree), tuple((key, _kinds(child)) for key, child in _children(tree)))
    if isinstance(tree, np.ndarray):
        return ("ndarray", tree.dtype.str, tree.shape)
    return type(tree)


def _tree_loss(u: Any, p: Any) -> Any:
    (arr, scalar), pair = u["layers"]
    (t_arr, t_scalar), t_pair = p["layers"]
    return (
        anp.sum((u["w"] - p["w"]) ** 2)
        + anp.sum((arr - t_arr) ** 2)
        + (scalar - t_scalar) ** 2
        + (pair.a - t_pair.a) ** 2
        + anp.sum((pair.b - t_pair.b) ** 2)
        + (u["s"] - p["s"]) ** 2
    )


def _build_tree() -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_tree_loss)
    return om.OptimizationProblem(rec, _tree_u0(), p=TREE_TARGET), rec


TREE_CASE = ProblemCase("nested_pytree", _build_tree, TREE_TARGET, 0.0, PLAIN_NEEDS)
TREE_ALGORITHMS = [a for a in ALGORITHMS if accepts(a, TREE_CASE)]


@pytest.mark.parametrize("alg_case", TREE_ALGORITHMS, ids=repr)
def test_pytree_u0_round_trips(alg_case: AlgorithmCase) -> None:
    u0 = _tree_u0()  # held by the user: its int leaves must stay ints
    before = _snap(u0)
    prob, spy = _spied(dataclasses.replace(TREE_CASE.build()[0], u0=u0))
    sol = om.solve(prob, alg_case.alg, maxiters=_budget(alg_case, 30))

    assert _snap(u0) == before
    assert _kinds(sol.u) == _kinds(TREE_KINDS)
    assert spy.points and all(_skeleton(u) == _skeleton(u0) for u in spy.points), "f saw another structure"
    # Every coordinate moved towards its own target: the leaves were not shuffled on the way.
    start, target, end = _flat(u0), _flat(TREE_TARGET), _flat(sol.u)
    assert np.all(np.abs(end - target) < np.abs(start - target))
    if not _budgeted(alg_case):  # run to its own convergence test
        np.testing.assert_allclose(end, target, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Maximisation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg_case", "prob_case"), MAXIMISE, ids=_ids(MAXIMISE))
def test_maximisation_reports_the_users_sense(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, rec = prob_case.build()
    infos: list[om.IterationInfo] = []
    sol = om.solve(prob, alg_case.alg, maxiters=_budget(alg_case, 30), callback=infos.append)

    def f(u: Any) -> float:
        return float(rec.fn(u, prob.p))

    assert sol.objective == f(sol.u)
    assert sol.objective > f(prob.u0), "a maximisation must raise the objective"
    previous = prob.u0
    for info in infos:
        # Step-wise algorithms report the loss they evaluated, at the iterate before the update.
        assert info.objective == f(previous if _single_call(alg_case) else info.u)
        previous = info.u


# --------------------------------------------------------------------------------------------
# User-supplied gradients
# --------------------------------------------------------------------------------------------


def _user_grad(prob: om.OptimizationProblem, rec: Recorder, calls: list[int]) -> Callable[..., Any]:
    """A user gradient for a catalogue problem: autograd on the unrecorded objective."""
    if prob.state is None:

        def grad(u: Any, p: Any) -> Any:
            calls.append(1)
            return autograd.grad(lambda v: rec.fn(v, p))(u)

        return grad

    def stateful_grad(u: Any, p: Any, state: Any) -> Any:
        calls.append(1)
        new_state: list[Any] = []

        def loss(v: Any) -> Any:
            value, new = rec.fn(v, p, state)
            new_state.append(new)
            return value

        return autograd.grad(loss)(u), _plain(new_state[0])

    return stateful_grad


@pytest.mark.parametrize(("alg_case", "prob_case"), SAME_STEPS, ids=_ids(SAME_STEPS))
def test_user_gradient_matches_autograd(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    _, rec_a, reference = solved(alg_case, prob_case, _budget(alg_case))

    prob, rec = prob_case.build()
    grad_calls: list[int] = []
    prob = dataclasses.replace(prob, grad=_user_grad(prob, rec, grad_calls))
    sol = om.solve(prob, alg_case.alg, maxiters=_budget(alg_case))

    _assert_tree_close(sol.u, reference.u)
    assert sol.objective == pytest.approx(reference.objective, rel=1e-12, abs=1e-15)
    _assert_tree_close(rec.states, rec_a.states)
    if prob.state is not None:
        _assert_tree_close(sol.state, reference.state)
    assert sol.retcode is reference.retcode
    assert sol.stats.iterations == reference.stats.iterations
    assert sol.stats.fevals + sol.stats.probe_fevals == rec.calls
    assert sol.stats.fevals == reference.stats.fevals
    assert sol.stats.gevals == len(grad_calls) == reference.stats.gevals
    if _budgeted(alg_case):
        per = _calls_per_step(alg_case)
        assert len(grad_calls) == per * N
        assert rec.calls == sol.stats.probe_fevals + per * N + _final(alg_case, prob)
    else:
        fresh, fresh_rec = prob_case.build()
        _check_scipy_counts(alg_case, sol, dataclasses.replace(fresh, grad=_user_grad(fresh, fresh_rec, [])), None)


@pytest.mark.parametrize(("alg_case", "prob_case"), SECOND_DERIVATIVES, ids=_ids(SECOND_DERIVATIVES))
def test_second_derivatives_from_the_users_gradient(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    reference = solved(alg_case, prob_case, None)[2]
    prob, rec = prob_case.build()
    grad_calls: list[int] = []
    prob = dataclasses.replace(prob, grad=_user_grad(prob, rec, grad_calls))
    sol = om.solve(prob, alg_case.alg)

    assert sol.retcode is reference.retcode is om.ReturnCode.SUCCESS
    np.testing.assert_allclose(_flat(sol.u), _flat(reference.u), rtol=0, atol=1e-6)
    assert sol.stats.hevals > 0
    # Each gradient of the run, plus the differenced ones behind the second derivatives; f is
    # called for values only (no tracing).
    assert len(grad_calls) > sol.stats.gevals
    assert sol.stats.fevals + sol.stats.probe_fevals == rec.calls
    assert sol.stats.fevals == sol.stats.gevals
    fresh, fresh_rec = prob_case.build()
    _check_scipy_counts(alg_case, sol, dataclasses.replace(fresh, grad=_user_grad(fresh, fresh_rec, [])), None)


# --------------------------------------------------------------------------------------------
# Callback
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg_case", "prob_case"), REPORTING, ids=_ids(REPORTING))
def test_callback_sees_every_step(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, rec = prob_case.build()
    prob, spy = _spied(prob)
    infos: list[om.IterationInfo] = []
    sol = om.solve(prob, alg_case.alg, maxiters=_budget(alg_case), callback=infos.append)

    assert [info.iteration for info in infos] == list(range(1, sol.stats.iterations + 1))
    assert infos, "the callback was never called"
    if returns_last_iterate(alg_case.alg, prob):
        assert _snap(infos[-1].u) == _snap(sol.u)
    elif not prob.constraints:
        # Polished, or the best point of the run: no worse than the last iterate reported.
        assert _sense_sign(prob) * sol.objective <= _sense_sign(prob) * infos[-1].objective
    traits = om.traits(alg_case.alg)
    if not (traits.single_call_per_step or traits.commits_state_per_step) or traits.requires_hessian:
        # A step that may end at a point of an earlier step (a rejected trust-region step, a
        # simplex's old best vertex), or with traced calls for second derivatives: no call
        # belongs to one step alone; each step reports the loss at its point.
        for info in infos:
            assert type(info.objective) is float
            if prob.state is None and _deterministic(prob_case):
                value = float(rec.fn(info.u, prob.p))
                assert info.objective == pytest.approx(value, rel=4 * np.finfo(float).eps, abs=0)
        return
    groups = _step_calls(alg_case, spy, sol, infos)
    committing = _committing_calls(alg_case, groups, spy, infos)
    for k, info in enumerate(infos):
        assert type(info.objective) is float
        # The loss the step evaluated: its only call's, or (several calls) the one at the accepted point.
        assert info.objective == spy.losses[committing[k]]
        if not _single_call(alg_case) and _deterministic(prob_case):
            assert info.objective == pytest.approx(float(rec.fn(info.u, prob.p)), rel=4 * np.finfo(float).eps, abs=0)
        if prob.state is None:
            assert info.state is None
        elif k + 1 < len(infos):
            # IterationInfo.state is the committed state: what every call of the next step receives.
            for j in groups[k + 1]:
                assert _snap(info.state) == _snap(spy.received[j]), "IterationInfo.state is the committed state"
    if prob.state is not None:
        assert _snap(infos[-1].state) == _snap(sol.state)


def _vandalise(tree: Any) -> None:
    """Scribble over everything mutable in ``tree``."""
    if isinstance(tree, np.ndarray):
        if tree.flags.writeable:
            tree[...] = 1e3
    elif isinstance(tree, np.random.Generator):
        tree.random(5)
    elif isinstance(tree, (dict, list)):
        for key, child in list(_children(tree)):
            _vandalise(child)
            tree[key] = "vandalised"
    elif isinstance(tree, tuple):
        for child in tree:
            _vandalise(child)


@pytest.mark.parametrize(("alg_case", "prob_case"), REPORTING, ids=_ids(REPORTING))
def test_callback_cannot_change_the_run(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    def vandal(info: om.IterationInfo) -> None:
        _vandalise(info.u)
        _vandalise(info.state)

    expected = solved(alg_case, prob_case, _budget(alg_case), callback=True)[2]
    sol = om.solve(prob_case.build()[0], alg_case.alg, maxiters=_budget(alg_case), callback=vandal)

    assert _snap(sol.u) == _snap(expected.u)
    assert _snap(sol.state) == _snap(expected.state)
    assert sol.objective == expected.objective
    assert sol.stats.iterations == expected.stats.iterations
    assert sol.stats.fevals == expected.stats.fevals


@pytest.mark.parametrize(("alg_case", "prob_case"), REPORTING, ids=_ids(REPORTING))
def test_callback_returning_true_stops_at_that_step(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    # Halt at step K, or earlier where the run would end by itself at step K (a quasi-Newton method
    # converges in 2 steps on the concave problem): the callback must stop a run that goes on.
    unhalted = solved(alg_case, prob_case, _budget(alg_case))[2]
    if unhalted.stats.iterations < 2:
        pytest.skip("the run ends after its first step (a Newton-like step on a quadratic): no step to halt it at")
    k = min(K, unhalted.stats.iterations - 1)
    prob, rec = prob_case.build()
    sol = om.solve(prob, alg_case.alg, maxiters=_budget(alg_case), callback=lambda info: info.iteration == k)
    reference = om.solve(prob_case.build()[0], alg_case.alg, maxiters=k)

    assert sol.retcode is om.ReturnCode.TERMINATED
    assert sol.success is False
    assert sol.stats.iterations == k
    assert _snap(sol.u) == _snap(reference.u)
    assert _snap(sol.state) == _snap(reference.state)
    assert sol.stats.fevals + sol.stats.probe_fevals == rec.calls
    assert sol.stats.fevals == reference.stats.fevals
    per = _calls_per_step(alg_case)
    if per is not None:
        assert sol.stats.fevals == per * k + _final(alg_case, prob)
    else:
        _check_scipy_counts(alg_case, reference, prob_case.build()[0], k)


@pytest.mark.parametrize(("alg_case", "prob_case"), SILENT, ids=_ids(SILENT))
def test_callback_is_refused_before_any_call(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    # An algorithm that cannot report its steps (no supports_callback) refuses a callback rather
    # than ignore it, naming the trait; the problem alone it accepts.
    prob, rec = prob_case.build()
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, alg_case.alg, maxiters=_budget(alg_case), callback=lambda info: None)
    assert [v.trait for v in info.value.violations] == ["supports_callback"]
    assert "a callback was passed to solve" in str(info.value)
    assert type(alg_case.alg).__name__ not in info.value.alternatives
    assert rec.calls == 0


@pytest.mark.parametrize(("alg_case", "prob_case"), EVERY_REPORTING, ids=_ids(EVERY_REPORTING))
@pytest.mark.parametrize("answer", [1, "yes", 0, 1.0, [True]], ids=repr)
def test_callback_returning_a_non_bool_is_a_type_error(
    alg_case: AlgorithmCase, prob_case: ProblemCase, answer: Any
) -> None:
    prob, rec = prob_case.build()
    with pytest.raises(TypeError, match="callback"):
        om.solve(prob, alg_case.alg, maxiters=_budget(alg_case), callback=lambda info: answer)
    assert rec.calls >= 1


@pytest.mark.parametrize(("alg_case", "prob_case"), EVERY_REPORTING, ids=_ids(EVERY_REPORTING))
def test_callback_numpy_bool_is_a_bool(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    # A stopping rule written with NumPy (``np.linalg.norm(info.u) < tol``) returns np.bool_.
    prob, _ = prob_case.build()
    sol = om.solve(prob, alg_case.alg, maxiters=_budget(alg_case), callback=lambda info: np.bool_(info.iteration >= K))
    assert sol.retcode is om.ReturnCode.TERMINATED
    assert sol.stats.iterations == K


# --------------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg_case", "prob_case"), COMPATIBLE, ids=_ids(COMPATIBLE))
def test_tiny_maxtime_stops_after_one_step(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, rec = prob_case.build()
    sol = om.solve(prob, alg_case.alg, maxtime=1e-9)
    assert sol.retcode is om.ReturnCode.MAXTIME
    assert sol.success is False
    assert sol.stats.fevals + sol.stats.probe_fevals == rec.calls
    if not _reports(alg_case):
        # No step is reported without callbacks: the time budget stops the run at its first
        # evaluation (the docs of ScipyAdapter), before scipy completed an iteration, at u0 or the
        # first point it sampled.
        assert sol.stats.iterations == 0
        assert sol.stats.fevals == 1
        assert sol.objective == pytest.approx(float(rec.fn(sol.u, prob.p)), rel=4 * np.finfo(float).eps, abs=0)
        return
    assert sol.stats.iterations == 1
    per = _calls_per_step(alg_case)
    if per is not None:
        assert sol.stats.fevals == per + _final(alg_case, prob)
    else:
        _check_scipy_counts(alg_case, sol, prob_case.build()[0], 1)
    if prob.state is not None:
        # Only the first step's calls, all on the initial state: it advanced once.
        run_states = rec.states[sol.stats.probe_fevals :]
        assert len(run_states) == sol.stats.fevals
        if _single_call(alg_case):
            assert len(run_states) == 1
        assert all(_snap(state) == _snap(prob.state) for state in run_states)
        for path, start in _counters(prob.state):
            assert _at(sol.state, path) == start + 1


@pytest.mark.parametrize(("alg_case", "prob_case"), BUDGETED, ids=_ids(BUDGETED))
def test_stepwise_without_budget_is_refused_before_any_call(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, rec = prob_case.build()
    with pytest.raises(ValueError, match="maxiters"):
        om.solve(prob, alg_case.alg)
    assert rec.calls == 0


# --------------------------------------------------------------------------------------------
# First-order arithmetic against a hand-written NumPy reference (torch.optim conventions)
# --------------------------------------------------------------------------------------------


Bounds = tuple[np.ndarray, np.ndarray] | None


def _torch_sgd(alg: om.SGD, grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, box: Bounds) -> list[np.ndarray]:
    # torch.optim.SGD, dampening 0: the buffer starts as the first gradient.
    buf = None
    out = []
    for _ in range(STEPS):
        g = grad(x)
        d = g
        if alg.momentum != 0:
            buf = g.copy() if buf is None else alg.momentum * buf + g
            d = g + alg.momentum * buf if alg.nesterov else buf
        x = x - alg.lr * d
        if box is not None:  # the documented bounds handling: project every iterate
            x = np.clip(x, *box)
        out.append(x)
    return out


def _torch_adam(alg: om.Adam, grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, box: Bounds) -> list[np.ndarray]:
    # torch.optim.Adam (amsgrad off): bias corrections folded into the step size and denominator.
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    out = []
    for t in range(1, STEPS + 1):
        g = grad(x)
        m = alg.b1 * m + (1 - alg.b1) * g
        v = alg.b2 * v + (1 - alg.b2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - alg.b2**t) + alg.eps
        x = x - (alg.lr / (1 - alg.b1**t)) * (m / denom)
        if box is not None:
            x = np.clip(x, *box)
        out.append(x)
    return out


STEPS = 5
REFERENCES: dict[type, Callable[..., list[np.ndarray]]] = {om.SGD: _torch_sgd, om.Adam: _torch_adam}
ARITHMETIC_ALGORITHMS = [a for a in ALGORITHMS if type(a.alg) in REFERENCES] + [
    AlgorithmCase("Adam-hyper", om.Adam(lr=0.1, b1=0.5, b2=0.9, eps=1e-3), N),
    AlgorithmCase("SGD-heavy-ball", om.SGD(lr=0.05, momentum=0.5), N),
    AlgorithmCase("SGD-nesterov-0.5", om.SGD(lr=0.05, momentum=0.5, nesterov=True), N),
]
ARITHMETIC = [
    (a, p)
    for a in ARITHMETIC_ALGORITHMS
    for p in PROBLEMS
    if accepts(a, p) and _deterministic(p) and isinstance(_problem(p).u0, np.ndarray)
]


def _reference_iterates(alg_case: AlgorithmCase, prob_case: ProblemCase) -> tuple[list[np.ndarray], Bounds]:
    """The reference's first iterates, with gradients from autograd on the catalogue's objective."""
    prob, rec = prob_case.build()
    sign = 1.0 if prob.sense == "min" else -1.0
    box = None if prob.bounds is None else (np.asarray(prob.bounds[0]), np.asarray(prob.bounds[1]))

    def grad(x: np.ndarray) -> np.ndarray:
        return sign * autograd.grad(lambda v: rec.fn(v, prob.p))(x)

    return REFERENCES[type(alg_case.alg)](alg_case.alg, grad, np.array(prob.u0), box), box


@pytest.mark.parametrize(("alg_case", "prob_case"), ARITHMETIC, ids=_ids(ARITHMETIC))
def test_first_order_steps_match_numpy_reference(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    expected, _ = _reference_iterates(alg_case, prob_case)
    infos: list[om.IterationInfo] = []
    om.solve(prob_case.build()[0], alg_case.alg, maxiters=STEPS, callback=infos.append)

    assert len(infos) == STEPS
    for info, x in zip(infos, expected):
        np.testing.assert_allclose(info.u, x, rtol=1e-12, atol=1e-15, err_msg=f"step {info.iteration}")


def test_reference_comparison_exercises_the_projection() -> None:
    # Guards the test above: some bounded case must actually reach the box within its steps.
    hits = []
    for alg_case, prob_case in ARITHMETIC:
        expected, box = _reference_iterates(alg_case, prob_case)
        if box is not None:
            hits.append(any(np.any(x == box[0]) or np.any(x == box[1]) for x in expected))
    assert any(hits)


# --------------------------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg_case", "prob_case"), as_params(BOUNDED))
def test_iterates_stay_in_the_box(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, _ = prob_case.build()
    lb, ub = _flat(prob.bounds[0]), _flat(prob.bounds[1])
    infos: list[om.IterationInfo] = []
    # Without supports_callback, only the returned point can be seen.
    callback = infos.append if _reports(alg_case) else None
    sol = om.solve(prob, alg_case.alg, maxiters=_budget(alg_case, BOUNDED_STEPS), callback=callback)

    points = [_flat(info.u) for info in infos] + [_flat(sol.u)]
    for k, x in enumerate(points, start=1):
        assert np.all(lb <= x) and np.all(x <= ub), f"step {k} left the box: {x}"
    # Reached, or (a derivative-free search, which never lands exactly on it) within 1e-6 of it.
    near = [np.min(np.minimum(np.abs(x - ub), np.abs(x - lb))) for x in points]
    assert min(near) <= 1e-6, "the run never reached the box, test is vacuous"
