"""State modes beyond one call per step (issue 3), measured.

Every row of the README table "Which algorithm for my objective?" is checked both ways, for
every registered algorithm and for stand-in trait combinations; a constant state that changes
raises `StateMutationError` naming the call and the leaf; the determinism probe catches hidden
state without advancing the explicit one; the algorithms whose line search trusts exact values
(step-wise or whole-run) commit their state once per iteration; minibatches
arrive in order, one per step, for the promised number of epochs; finite-difference gradients
keep the state on one snapshot per evaluation; online L-BFGS converges on a stochastic problem.
Contracts are measured: call counts, the exact state and batch every call receives, exact
error types and messages. Which algorithms each test runs is computed from their traits.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.tracer import Box, getval
from catalogue import (
    ALGORITHMS,
    SCALES,
    SCIPY_GRADIENT_CALLS,
    C,
    Recorder,
    box_for,
    converged_atol,
)

import optimeta as om
from optimeta.traits import check_compatible, requirements

STATE_COMMIT = "single_call_per_step or commits_state_per_step"
STOCHASTIC = "tolerates_stochastic_loss"

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

#: One configured instance (and the catalogue's budget) per registered algorithm class.
CONFIGURED: dict[type, tuple[Any, int | None]] = {}
for _case in ALGORITHMS:
    CONFIGURED.setdefault(type(_case.alg), (_case.alg, _case.maxiters))


def _alg(cls: type) -> Any:
    return CONFIGURED[cls][0]


def _short_budget(cls: type, steps: int = 5) -> int | None:
    """A step budget for algorithms without a convergence test; None lets the others converge."""
    return steps if CONFIGURED[cls][1] is not None else None


def _plain(tree: Any) -> Any:
    """A copy of ``tree`` with autograd boxes replaced by their values."""
    while isinstance(tree, Box):
        tree = getval(tree)
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_plain(v) for v in tree)
    if isinstance(tree, np.ndarray):
        return tree.copy()
    return copy.deepcopy(tree)


class Call(NamedTuple):
    u: Any
    p: Any
    state_in: Any
    state_out: Any


@dataclass
class CallLog:
    """Wraps an objective and records every call: point, ``p``, state received and returned."""

    fn: Callable[..., Any]
    calls: list[Call] = field(default_factory=list)

    def __call__(self, u: Any, p: Any, *state: Any) -> Any:
        state_in = copy.deepcopy(state[0]) if state else None
        out = self.fn(u, p, *state)
        self.calls.append(Call(_plain(u), p, state_in, _plain(out[1]) if state else None))
        return out


def _boundaries(log: CallLog | Recorder) -> tuple[list[int], Callable[[om.IterationInfo], None]]:
    """A callback recording how many calls had been made when each step ended."""
    ends: list[int] = []

    def callback(info: om.IterationInfo) -> None:
        ends.append(len(log.calls) if isinstance(log, CallLog) else log.calls)

    return ends, callback


def _steps(items: list[Any], ends: list[int], start: int = 0) -> list[list[Any]]:
    """``items`` cut into the steps that ended at call counts ``ends``."""
    out, begin = [], start
    for end in ends:
        out.append(items[begin:end])
        begin = end
    return out


def _quadratic(u: Any, p: Any) -> Any:
    return anp.sum(SCALES * (u - p) ** 2)


def _keyed(u: Any, p: Any, state: dict[str, Any]) -> Any:
    # Random positive weights from the explicit key: noisy, yet every draw is minimised at p.
    weights = np.random.default_rng(state["key"]).uniform(0.5, 1.5, size=3)
    return anp.sum(weights * (u - p) ** 2), {"key": state["key"] + 1}


def _counter(u: Any, p: Any, state: dict[str, Any]) -> Any:
    # The state changes (a counter and a running mean, like BatchNorm) but not the loss.
    return anp.sum(SCALES * (u - p) ** 2), {"n": state["n"] + 1, "mean": 0.9 * state["mean"] + 0.1 * u}


def _counter_state() -> dict[str, Any]:
    return {"n": 0, "mean": np.zeros(3)}


def _hidden_counter() -> Callable[..., Any]:
    """A stateless-looking objective whose value grows with every call: a mutable closure."""
    count = itertools.count(1)

    def loss(u: Any, p: Any) -> Any:
        return anp.sum(u**2) + float(next(count))

    return loss


# --------------------------------------------------------------------------------------------
# 1. Every row of the README table, both ways
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """A README row: how to build its problem, and what the table says the problem needs."""

    name: str
    build: Callable[[], tuple[om.OptimizationProblem, Recorder, dict[str, Any]]]
    evolving: bool
    stochastic: bool
    minibatches: bool = False

    def __repr__(self) -> str:
        return self.name

    def unmet(self, declared: om.Traits) -> set[str]:
        """The needs, per the README table, that traits ``declared`` leave unmet. Every row's
        problem is unbounded: a method that needs a finite box is refused whatever the row."""
        found = {"requires_bounds"} if declared.requires_bounds else set()
        if self.evolving and not (declared.single_call_per_step or declared.commits_state_per_step):
            found.add(STATE_COMMIT)
        if self.stochastic and not declared.tolerates_stochastic_loss:
            found.add(STOCHASTIC)
        if self.minibatches and not declared.supports_minibatches:
            found.add("supports_minibatches")
        return found


def _row_deterministic() -> tuple[om.OptimizationProblem, Recorder, dict[str, Any]]:
    rec = Recorder(_quadratic)
    return om.OptimizationProblem(rec, np.zeros(3), p=C), rec, {}


def _row_noisy() -> tuple[om.OptimizationProblem, Recorder, dict[str, Any]]:
    rng = np.random.default_rng(3)

    def loss(u: Any, p: Any) -> Any:
        return anp.sum(rng.uniform(0.5, 1.5, size=3) * (u - p) ** 2)

    rec = Recorder(loss)
    return om.OptimizationProblem(rec, np.zeros(3), p=C, stochastic=True), rec, {}


def _row_data() -> tuple[om.OptimizationProblem, Recorder, dict[str, Any]]:
    rec = Recorder(_quadratic)
    return om.OptimizationProblem(rec, np.zeros(3), p=C), rec, {"data": [C, C + 1.0, C - 1.0]}


def _row_constant() -> tuple[om.OptimizationProblem, Recorder, dict[str, Any]]:
    def loss(u: Any, p: Any, state: dict[str, Any]) -> Any:
        return anp.sum(state["scales"] * (u - p) ** 2), state

    rec = Recorder(loss)
    prob = om.OptimizationProblem(rec, np.zeros(3), p=C, state={"scales": SCALES.copy()}, state_mode="constant")
    return prob, rec, {}


def _row_counter() -> tuple[om.OptimizationProblem, Recorder, dict[str, Any]]:
    rec = Recorder(_counter)
    return om.OptimizationProblem(rec, np.zeros(3), p=C, state=_counter_state(), stochastic=False), rec, {}


def _row_key() -> tuple[om.OptimizationProblem, Recorder, dict[str, Any]]:
    rec = Recorder(_keyed)
    return om.OptimizationProblem(rec, np.zeros(3), p=C, state={"key": 0}), rec, {}


ROWS = [
    Row("stateless_deterministic", _row_deterministic, evolving=False, stochastic=False),
    Row("stateless_noisy_declared", _row_noisy, evolving=False, stochastic=True),
    Row("stateless_noisy_data", _row_data, evolving=False, stochastic=True, minibatches=True),
    Row("constant_state", _row_constant, evolving=False, stochastic=False),
    Row("evolving_state_not_in_loss", _row_counter, evolving=True, stochastic=False),
    Row("evolving_state_drives_loss", _row_key, evolving=True, stochastic=True),
]

ACCEPTED = [(row, cls) for row in ROWS for cls in om.algorithms() if not row.unmet(cls.traits)]
REFUSED = [(row, cls) for row in ROWS for cls in om.algorithms() if row.unmet(cls.traits)]


def _pair_ids(pairs: list[tuple[Row, type]]) -> list[str]:
    return [f"{row.name}-{cls.__name__}" for row, cls in pairs]


def test_every_registered_algorithm_is_configured_and_both_ways_are_exercised() -> None:
    assert set(om.algorithms()) <= set(CONFIGURED)
    assert {cls for _, cls in REFUSED}, "no row refuses any registered algorithm"
    for row in ROWS:
        assert any(r is row for r, _ in ACCEPTED), f"no registered algorithm accepts {row}"
    # The rows whose table entry is "all" accept every registered algorithm that needs no box; the
    # others refuse every row, for that alone.
    searching = {cls for cls in om.algorithms() if cls.traits.requires_bounds}
    assert searching, "no registered algorithm needs a box: the rows' unbounded problems refuse none for it"
    for row in ROWS:
        if not row.evolving and not row.stochastic:
            assert {cls for r, cls in ACCEPTED if r is row} == set(om.algorithms()) - searching
    for cls in searching:
        assert not any(c is cls for _, c in ACCEPTED)


@pytest.mark.parametrize(("row", "cls"), ACCEPTED, ids=_pair_ids(ACCEPTED))
def test_table_row_accepted(row: Row, cls: type) -> None:
    prob, rec, kwargs = row.build()
    sol = om.solve(prob, _alg(cls), maxiters=_short_budget(cls), **kwargs)
    assert sol.stats.iterations >= 1
    assert sol.stats.fevals + sol.stats.probe_fevals == rec.calls
    if prob.state is not None and prob.state_mode == "constant":
        assert all(np.array_equal(s["scales"], SCALES) for s in rec.states)
        np.testing.assert_array_equal(sol.state["scales"], SCALES)


@pytest.mark.parametrize(("row", "cls"), REFUSED, ids=_pair_ids(REFUSED))
def test_table_row_refused_before_any_call(row: Row, cls: type) -> None:
    prob, rec, kwargs = row.build()
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, _alg(cls), maxiters=_short_budget(cls), **kwargs)
    err = info.value
    assert isinstance(err, ValueError)
    assert rec.calls == 0
    assert {v.trait for v in err.violations} == row.unmet(cls.traits)
    message = str(err)
    assert "(the objective was not called)" in message
    for trait in row.unmet(cls.traits):
        assert f"  - {trait}: the problem needs" in message
    accepting = [c.__name__ for c in om.algorithms() if not row.unmet(c.traits)]
    assert err.alternatives == accepting
    assert (
        _accepting_line(accepting, budget=_short_budget(cls) is not None or kwargs.get("data") is not None) in message
    )


def _accepting_line(accepting: list[str], *, budget: bool) -> str:
    """The line of a refusal that lists the algorithms accepting the problem: without a budget,
    those without a convergence test come apart, as accepting it given one."""
    later = [] if budget else [name for name in accepting if not getattr(om, name).traits.has_convergence_test]
    now = [name for name in accepting if name not in later]
    if now and later:
        return f"Algorithms that accept this problem: {', '.join(now)}; given maxiters= or maxtime=, also: {', '.join(later)}."
    if later:
        return f"Algorithms that accept this problem, given maxiters= or maxtime=: {', '.join(later)}."
    return f"Algorithms that accept this problem: {', '.join(now)}."


@dataclass(frozen=True)
class StandIn:
    """Not an algorithm: only a `traits` attribute, for trait combinations nothing registers."""

    traits: om.Traits


def _stand_in(single: bool, commits: bool, tolerant: bool) -> StandIn:
    base = om.traits(om.Adam)
    return StandIn(
        dataclasses.replace(
            base, single_call_per_step=single, commits_state_per_step=commits, tolerates_stochastic_loss=tolerant
        )
    )


STAND_INS = [_stand_in(*flags) for flags in itertools.product((False, True), repeat=3)]


@pytest.mark.parametrize("row", ROWS, ids=repr)
@pytest.mark.parametrize(
    "alg",
    STAND_INS,
    ids=lambda a: (
        f"single={a.traits.single_call_per_step}-commits={a.traits.commits_state_per_step}"
        f"-tolerant={a.traits.tolerates_stochastic_loss}"
    ),
)
def test_table_row_rules_for_every_trait_combination(row: Row, alg: StandIn) -> None:
    prob, rec, kwargs = row.build()
    req = requirements(prob, data="data" in kwargs)
    unmet = row.unmet(alg.traits)
    if not unmet:
        check_compatible(alg, req)
    else:
        with pytest.raises(om.IncompatibleAlgorithmError) as info:
            check_compatible(alg, req)
        assert {v.trait for v in info.value.violations} == unmet
        for trait in unmet:
            assert f"  - {trait}: the problem needs" in str(info.value)
            assert f"StandIn has {trait.split(' or ')[0]}=False" in str(info.value)
    assert rec.calls == 0


def test_evolving_state_refused_by_an_algorithm_with_neither_commit_trait() -> None:
    prob, rec, _ = _row_counter()
    alg = _stand_in(single=False, commits=False, tolerant=True)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        check_compatible(alg, requirements(prob))
    message = str(info.value)
    assert (
        "single_call_per_step or commits_state_per_step: the problem needs single_call_per_step=True or "
        "commits_state_per_step=True, StandIn has single_call_per_step=False, commits_state_per_step=False"
    ) in message
    accepting = [
        c.__name__ for c in om.algorithms() if c.traits.single_call_per_step or c.traits.commits_state_per_step
    ]
    assert info.value.alternatives == accepting
    assert rec.calls == 0


def test_state_driving_the_loss_refuses_bfgs_for_noise_only() -> None:
    prob, rec, _ = _row_key()
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, om.BFGS())
    assert [v.trait for v in info.value.violations] == [STOCHASTIC]
    assert "is not declared deterministic, so the state may drive the loss" in str(info.value)
    assert rec.calls == 0


# --------------------------------------------------------------------------------------------
# Constant state
# --------------------------------------------------------------------------------------------


def _constant_state() -> dict[str, Any]:
    return {
        "scales": SCALES.copy(),
        "nested": [(1, np.array([np.nan, 2.0])), ("name", float("nan"))],
        "rng": np.random.default_rng(5),
        "seed": 9,
    }


@pytest.mark.parametrize("alg_case", ALGORITHMS, ids=repr)
def test_constant_state_every_algorithm_solves(alg_case: Any) -> None:
    def loss(u: Any, p: Any, state: dict[str, Any]) -> Any:
        # Reads the state (even a Generator rebuilt from a seed) and returns it as it came.
        np.random.default_rng(state["seed"]).random()
        return anp.sum(state["scales"] * (u - p) ** 2), state

    rec = Recorder(loss)
    initial = _constant_state()
    # A method that searches a box gets one around the optimum.
    prob = om.OptimizationProblem(
        rec, np.zeros(3), p=C, state=initial, state_mode="constant", bounds=box_for(alg_case.alg)
    )
    sol = om.solve(prob, alg_case.alg, maxiters=alg_case.maxiters)
    atol = converged_atol(alg_case.alg, 1e-5) if alg_case.maxiters is None else 1e-3
    np.testing.assert_allclose(sol.u, C, atol=atol)
    probed = not om.traits(alg_case.alg).tolerates_stochastic_loss
    assert sol.stats.probe_fevals == (2 if probed else 0)
    assert sol.stats.fevals + sol.stats.probe_fevals == rec.calls
    expected_rng = initial["rng"].bit_generator.state
    for state in [*rec.states, sol.state]:
        np.testing.assert_array_equal(state["scales"], SCALES)
        assert state["rng"].bit_generator.state == expected_rng
        assert state["seed"] == 9


class BatchNorm(NamedTuple):
    mean: np.ndarray
    var: np.ndarray


def _set(state: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**state, key: value}


def _add_in_place(state: dict[str, Any]) -> dict[str, Any]:
    state["mean"] += 1.0
    return state


def _draw_in_place(state: dict[str, Any]) -> dict[str, Any]:
    state["rng"].random()
    return state


def _nested_array_in_place(state: dict[str, Any]) -> dict[str, Any]:
    state["layers"][0][0][1] = 9.0
    return state


def _base_state() -> dict[str, Any]:
    return {
        "mean": np.zeros(2),
        "n": 3,
        "x": float("nan"),
        "layers": [(np.zeros(2), 1), (np.ones(2), 5)],
        "bn": BatchNorm(np.zeros(2), np.ones(2)),
        "rng": np.random.default_rng(0),
    }


#: (id, the state's change, the path the error must name); a tuple state is checked separately.
MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("number", lambda s: _set(s, "n", 4), "state['n']"),
    ("number_type_kept_value_changed", lambda s: _set(s, "n", 3.5), "state['n']"),
    ("nan_to_number", lambda s: _set(s, "x", 0.0), "state['x']"),
    ("array_in_place", _add_in_place, "state['mean']"),
    ("array_dtype", lambda s: _set(s, "mean", s["mean"].astype(np.float32)), "state['mean']"),
    ("array_shape", lambda s: _set(s, "mean", np.zeros(3)), "state['mean']"),
    ("nested_tuple_number", lambda s: _set(s, "layers", [s["layers"][0], (np.ones(2), 6)]), "state['layers'][1][1]"),
    ("nested_array_in_place", _nested_array_in_place, "state['layers'][0][0]"),
    ("list_became_tuple", lambda s: _set(s, "layers", tuple(s["layers"])), "state['layers']"),
    ("list_grew", lambda s: _set(s, "layers", [*s["layers"], (np.ones(2), 7)]), "state['layers']"),
    ("namedtuple_field", lambda s: _set(s, "bn", s["bn"]._replace(var=s["bn"].var * 2)), "state['bn'].var"),
    ("generator_advanced_in_place", _draw_in_place, "state['rng']"),
    ("generator_replaced", lambda s: _set(s, "rng", np.random.default_rng(1)), "state['rng']"),
    ("key_added", lambda s: _set(s, "extra", 0), "state"),
]

UNCHANGED: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("same_object", lambda s: s),
    ("fresh_equal_copy", lambda s: copy.deepcopy(s)),
    ("generator_rebuilt_from_same_seed", lambda s: _set(s, "rng", np.random.default_rng(0))),
    ("nan_stays_nan", lambda s: _set(s, "x", float("nan"))),
]

K = 4  # the call that changes the state


def _mutating_problem(
    change: Callable[[Any], Any], state: Any, at: int = K, bounds: Any = None
) -> tuple[om.OptimizationProblem, Recorder]:
    count = itertools.count(1)

    def loss(u: Any, p: Any, state: Any) -> Any:
        new = change(state) if next(count) == at else state
        return anp.sum(SCALES * (u - p) ** 2), new

    rec = Recorder(loss)
    return om.OptimizationProblem(rec, np.zeros(3), p=C, state=state, state_mode="constant", bounds=bounds), rec


def _assert_mutation(err: om.StateMutationError, call: int, path: str) -> None:
    assert isinstance(err, RuntimeError)
    assert err.call == call
    assert err.path == path
    assert str(err).startswith(f"call {call} of f changed {path}, but the problem declares its state constant")
    assert "state_mode='constant'" in str(err)
    assert "state_mode='evolving'" in str(err)


@pytest.mark.parametrize(("change", "path"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_constant_state_change_names_call_and_leaf(change: Callable[[Any], Any], path: str) -> None:
    initial = _base_state()
    expected_rng = initial["rng"].bit_generator.state
    prob, rec = _mutating_problem(change, initial)
    with pytest.raises(om.StateMutationError) as info:
        om.solve(prob, om.Adam(lr=0.01), maxiters=10)
    _assert_mutation(info.value, K, path)
    assert rec.calls == K
    # The user's state is untouched, even by changes made in place.
    np.testing.assert_array_equal(initial["mean"], np.zeros(2))
    np.testing.assert_array_equal(initial["layers"][0][0], np.zeros(2))
    assert initial["rng"].bit_generator.state == expected_rng


@pytest.mark.parametrize("change", [m[1] for m in UNCHANGED], ids=[m[0] for m in UNCHANGED])
def test_constant_state_returned_equal_is_accepted(change: Callable[[Any], Any]) -> None:
    prob, rec = _mutating_problem(change, _base_state(), at=1)
    sol = om.solve(prob, om.Adam(lr=0.01), maxiters=10)
    # A constant state leaves the problem deterministic: one final, counted evaluation at u.
    assert rec.calls == sol.stats.fevals == 11
    assert sol.state["n"] == 3


def test_constant_tuple_state_path() -> None:
    prob, rec = _mutating_problem(lambda s: (2.0, s[1]), (1.0, np.zeros(2)))
    with pytest.raises(om.StateMutationError) as info:
        om.solve(prob, om.SGD(lr=0.01), maxiters=10)
    _assert_mutation(info.value, K, "state[0]")
    assert rec.calls == K


@pytest.mark.parametrize("cls", om.algorithms(), ids=lambda c: c.__name__)
@pytest.mark.parametrize("at", [1, K])
def test_constant_state_call_number_counts_every_call(cls: type, at: int) -> None:
    # The number counts every call of f, the probe's included: call 1 of an algorithm that trusts
    # exact values is a probe call.
    prob, rec = _mutating_problem(lambda s: _set(s, "n", 4), _base_state(), at=at, bounds=box_for(cls))
    with pytest.raises(om.StateMutationError) as info:
        om.solve(prob, _alg(cls), maxiters=_short_budget(cls, 10))
    _assert_mutation(info.value, at, "state['n']")
    assert rec.calls == at


# --------------------------------------------------------------------------------------------
# 2. The determinism probe
# --------------------------------------------------------------------------------------------


@pytest.fixture
def global_seed() -> Iterator[int]:
    saved = np.random.get_state()
    np.random.seed(11)
    yield 11
    np.random.set_state(saved)


def test_probe_catches_a_global_rng(global_seed: int) -> None:
    def loss(u: Any, p: Any) -> Any:
        return anp.sum((u - p) ** 2) * np.random.uniform(0.5, 1.5)

    replay = np.random.RandomState(global_seed)
    first, second = (float(np.sum((np.zeros(3) - C) ** 2) * replay.uniform(0.5, 1.5)) for _ in range(2))
    rec = Recorder(loss)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(om.OptimizationProblem(rec, np.zeros(3), p=C), om.BFGS())
    message = str(info.value)
    assert "(found by the determinism probe at u0)" in message
    assert f"f returned {first!r} and then {second!r} at u0 with copies of the same state" in message
    assert "make that state explicit with state=, or declare stochastic=True" in message
    assert [v.trait for v in info.value.violations] == [STOCHASTIC]
    assert rec.calls == 2


def test_probe_catches_a_closure_counter() -> None:
    rec = Recorder(_hidden_counter())
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(om.OptimizationProblem(rec, np.zeros(3)), om.BFGS())
    assert "f returned 1.0 and then 2.0 at u0" in str(info.value)
    assert [v.trait for v in info.value.violations] == [STOCHASTIC]
    assert info.value.alternatives == [c.__name__ for c in om.algorithms(tolerates_stochastic_loss=True)]
    assert rec.calls == 2


def test_probe_does_not_advance_the_explicit_state() -> None:
    hidden = _hidden_counter()

    def loss(u: Any, p: Any, state: dict[str, Any]) -> Any:
        return hidden(u, p), {"n": state["n"] + 1}

    rec = Recorder(loss)
    initial = {"n": 0}
    prob = om.OptimizationProblem(rec, np.zeros(3), state=initial, stochastic=False)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, om.BFGS())
    assert "f returned 1.0 and then 2.0 at u0 with copies of the same state" in str(info.value)
    assert rec.states == [{"n": 0}, {"n": 0}]
    assert initial == {"n": 0}


def test_check_determinism_false_skips_the_probe() -> None:
    count = itertools.count()

    def loss(u: Any, p: Any) -> Any:
        return anp.sum(SCALES * (u - p) ** 2) + 1e-9 * (next(count) % 2)

    rec = Recorder(loss)
    sol = om.solve(om.OptimizationProblem(rec, np.zeros(3), p=C), om.BFGS(), maxiters=3, check_determinism=False)
    assert sol.stats.probe_fevals == 0
    assert sol.stats.fevals == rec.calls


#: The registered algorithms that trust exact values (a line search): the probe runs for them.
EXACT = om.algorithms(tolerates_stochastic_loss=False)
#: Those of them that accept an evolving state declared not to drive the loss.
EXACT_COMMITTING = [cls for cls in EXACT if cls.traits.single_call_per_step or cls.traits.commits_state_per_step]


@pytest.mark.parametrize("cls", EXACT, ids=lambda c: c.__name__)
def test_deterministic_problem_is_probed_twice_outside_the_run_counts(cls: type) -> None:
    log = CallLog(_quadratic)
    sol = om.solve(om.OptimizationProblem(log, np.zeros(3), p=C, bounds=box_for(cls)), _alg(cls))
    unprobed_log = CallLog(_quadratic)
    unprobed = om.solve(
        om.OptimizationProblem(unprobed_log, np.zeros(3), p=C, bounds=box_for(cls)), _alg(cls), check_determinism=False
    )
    assert sol.stats.probe_fevals == 2
    assert unprobed.stats.probe_fevals == 0
    assert len(log.calls) == sol.stats.fevals + 2
    for call in log.calls[:2]:
        np.testing.assert_array_equal(call.u, np.zeros(3))
    # The run itself is the same with or without the probe.
    assert (sol.stats.fevals, sol.stats.gevals, sol.stats.iterations) == (
        unprobed.stats.fevals,
        unprobed.stats.gevals,
        unprobed.stats.iterations,
    )
    np.testing.assert_array_equal(sol.u, unprobed.u)
    for a, b in zip(log.calls[2:], unprobed_log.calls):
        np.testing.assert_array_equal(a.u, b.u)


def test_probe_refuses_an_evolving_state_that_drives_a_loss_declared_deterministic() -> None:
    def loss(u: Any, p: Any, state: dict[str, Any]) -> Any:
        return anp.sum((u - p) ** 2) + state["n"], {"n": state["n"] + 1}

    rec = Recorder(loss)
    prob = om.OptimizationProblem(rec, np.zeros(3), p=C, state={"n": 0}, stochastic=False)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, om.BFGS())
    base = float(np.sum(C**2))
    message = str(info.value)
    assert "(found by the determinism probe at u0)" in message
    assert (
        f"the problem declares stochastic=False, yet f returned {base!r} at u0 with the initial state and "
        f"{base + 1.0!r} with the state the first call returned, so the state drives the loss"
    ) in message
    assert [v.trait for v in info.value.violations] == [STOCHASTIC]
    assert rec.calls == 3
    assert rec.states == [{"n": 0}, {"n": 0}, {"n": 1}]


@pytest.mark.parametrize("cls", EXACT_COMMITTING, ids=lambda c: c.__name__)
def test_probe_accepts_an_evolving_state_outside_the_loss_and_starts_from_the_initial_state(cls: type) -> None:
    rec = Recorder(_counter)
    prob = om.OptimizationProblem(rec, np.zeros(3), p=C, state=_counter_state(), stochastic=False)
    sol = om.solve(prob, _alg(cls))
    assert sol.success
    assert sol.stats.probe_fevals == 3
    assert [s["n"] for s in rec.states[:4]] == [0, 0, 1, 0]
    np.testing.assert_array_equal(rec.states[3]["mean"], np.zeros(3))
    assert rec.calls == sol.stats.fevals + 3


TOLERANT = om.algorithms(tolerates_stochastic_loss=True)


@pytest.mark.parametrize("cls", TOLERANT, ids=lambda c: c.__name__)
def test_algorithms_that_tolerate_noise_are_never_probed(cls: type) -> None:
    rec = Recorder(_hidden_counter())
    sol = om.solve(om.OptimizationProblem(rec, np.zeros(3)), _alg(cls), maxiters=4)
    assert sol.stats.probe_fevals == 0
    assert rec.calls == sol.stats.fevals
    counter = Recorder(_counter)
    prob = om.OptimizationProblem(counter, np.zeros(3), p=C, state=_counter_state(), stochastic=False)
    sol = om.solve(prob, _alg(cls), maxiters=4)
    assert sol.stats.probe_fevals == 0
    assert counter.states[0]["n"] == 0
    assert counter.calls == sol.stats.fevals


def _nan_everywhere(u: Any, p: Any) -> Any:
    return anp.sum(u**2) + np.nan


@pytest.mark.parametrize("cls", EXACT, ids=lambda cls: cls.__name__)
def test_probe_does_not_mistake_a_deterministic_nan_for_hidden_state(cls: type) -> None:
    # NaN != NaN: two identical non-finite values are not evidence of hidden state. Without the
    # probe the run reports NONFINITE; the probe must not turn that into a claim of hidden state.
    sol = om.solve(om.OptimizationProblem(_nan_everywhere, np.zeros(2), bounds=box_for(cls)), _alg(cls))
    assert sol.retcode is om.ReturnCode.NONFINITE
    assert sol.stats.probe_fevals == 2


# --------------------------------------------------------------------------------------------
# 3. Per-step commit by the algorithms whose line search trusts exact values
# --------------------------------------------------------------------------------------------


def _batchnorm_rosenbrock(u: Any, p: Any, state: dict[str, Any]) -> Any:
    loss = (1.0 - u[0]) ** 2 + 10.0 * (u[1] - u[0] ** 2) ** 2
    return loss, {"n": state["n"] + 1, "mean": 0.9 * state["mean"] + 0.1 * u}


def _bn_problem(log: CallLog) -> om.OptimizationProblem:
    return om.OptimizationProblem(log, np.array([-1.2, 1.0]), state={"n": 0, "mean": np.zeros(2)}, stochastic=False)


#: Algorithms that call f several times per step (a line search) and commit once per step.
PER_STEP = [cls for cls in EXACT if cls.traits.commits_state_per_step and not cls.traits.single_call_per_step]


@pytest.mark.parametrize("cls", PER_STEP, ids=lambda c: c.__name__)
@pytest.mark.parametrize("maxiters", [None, 5])
def test_line_search_commits_the_state_once_per_iteration(cls: type, maxiters: int | None) -> None:
    log = CallLog(_batchnorm_rosenbrock)
    ends, callback = _boundaries(log)
    infos: list[om.IterationInfo] = []

    def both(info: om.IterationInfo) -> None:
        callback(info)
        infos.append(info)

    sol = om.solve(_bn_problem(log), _alg(cls), maxiters=maxiters, callback=both)
    stats = sol.stats
    if maxiters is None:
        assert sol.success
        np.testing.assert_allclose(sol.u, np.ones(2), atol=1e-4)
    else:
        assert sol.retcode is om.ReturnCode.MAXITERS
        assert stats.iterations == maxiters
    assert sol.state["n"] == stats.iterations
    assert stats.fevals > stats.iterations
    assert stats.probe_fevals == 3
    assert len(log.calls) == stats.fevals + 3
    received = [c.state_in["n"] for c in log.calls]
    assert received[:3] == [0, 0, 1]
    run = received[3:]
    assert run == sorted(run)
    # Cut the run's calls at the callback: every call of iteration k got the snapshot k - 1.
    for k, step in enumerate(_steps(received, ends, start=3), start=1):
        assert step, f"iteration {k} made no call"
        assert step == [k - 1] * len(step)
    assert ends[-1] == len(log.calls), "calls after the last commit"
    assert [info.state["n"] for info in infos] == list(range(1, stats.iterations + 1))
    # The state committed is the one returned at the accepted point, and the running mean
    # follows the accepted iterates only.
    at_u = [c for c in log.calls[3:] if np.array_equal(c.u, sol.u)]
    assert at_u
    assert at_u[-1].state_out["n"] == sol.state["n"]
    np.testing.assert_array_equal(at_u[-1].state_out["mean"], sol.state["mean"])
    mean = np.zeros(2)
    for info in infos:
        mean = 0.9 * mean + 0.1 * info.u
    np.testing.assert_allclose(sol.state["mean"], mean, rtol=1e-14)


# --------------------------------------------------------------------------------------------
# 4. Minibatches: data= and epochs=
# --------------------------------------------------------------------------------------------

BATCHES = [C + float(i) for i in range(4)]


def _batch_log() -> CallLog:
    return CallLog(lambda u, p: anp.sum((u - p) ** 2))


def _solve_batches(log: CallLog, alg: Any, **kwargs: Any) -> tuple[om.Solution, list[om.IterationInfo], list[int]]:
    ends, boundary = _boundaries(log)
    infos: list[om.IterationInfo] = []

    def callback(info: om.IterationInfo) -> None:
        boundary(info)
        infos.append(info)

    sol = om.solve(om.OptimizationProblem(log, np.zeros(3), p=C), alg, callback=callback, **kwargs)
    return sol, infos, ends


@pytest.mark.parametrize("cls", TOLERANT, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("epochs", "maxiters", "steps"), [(3, None, 12), (3, 6, 6), (3, 100, 12), (1, None, 4)])
def test_data_batches_in_order_per_step(cls: type, epochs: int, maxiters: int | None, steps: int) -> None:
    log = _batch_log()
    sol, infos, ends = _solve_batches(log, _alg(cls), data=BATCHES, epochs=epochs, maxiters=maxiters)
    assert sol.stats.iterations == steps
    assert sol.retcode is om.ReturnCode.MAXITERS
    assert sol.stats.fevals == len(log.calls)
    assert sol.stats.probe_fevals == 0
    expected = (BATCHES * epochs)[:steps]
    per_step = _steps([c.p for c in log.calls], ends)
    assert len(per_step) == steps
    for i, (batch, ps) in enumerate(zip(expected, per_step)):
        assert ps, f"step {i} made no call"
        assert all(p is batch for p in ps), f"step {i} did not receive batch {i % len(BATCHES)}"
    assert ends[-1] == len(log.calls)
    assert [info.epoch for info in infos] == [1 + i // len(BATCHES) for i in range(steps)]
    assert [info.iteration for info in infos] == list(range(1, steps + 1))
    if maxiters == steps:
        assert sol.message == om.ReturnCode.MAXITERS.message
    else:
        assert sol.message == f"all {epochs} epoch(s) of data were used ({steps} steps)"


def test_single_call_algorithms_make_one_call_per_batch() -> None:
    for cls in om.algorithms(tolerates_stochastic_loss=True, single_call_per_step=True):
        log = _batch_log()
        sol, _, _ = _solve_batches(log, _alg(cls), data=BATCHES, epochs=2)
        assert [c.p for c in log.calls] == BATCHES * 2
        assert all(a is b for a, b in zip([c.p for c in log.calls], BATCHES * 2))
        assert sol.stats.fevals == 8


def test_epoch_is_none_without_data() -> None:
    log = _batch_log()
    _, infos, _ = _solve_batches(log, om.SGD(lr=0.1), maxiters=3)
    assert [info.epoch for info in infos] == [None, None, None]
    assert all(c.p is C for c in log.calls)


def test_generator_data_with_one_epoch() -> None:
    log = _batch_log()
    sol, infos, _ = _solve_batches(log, om.SGD(lr=0.1), data=(b for b in BATCHES))
    assert sol.stats.iterations == len(BATCHES)
    assert [c.p for c in log.calls] == BATCHES
    assert [info.epoch for info in infos] == [1] * len(BATCHES)


@pytest.mark.parametrize("make", [lambda: iter(BATCHES), lambda: (b for b in BATCHES)], ids=["iterator", "generator"])
def test_one_shot_data_with_several_epochs_is_refused(make: Callable[[], Any]) -> None:
    log = _batch_log()
    with pytest.raises(ValueError, match=r"data is a one-shot iterator .*epochs=2"):
        om.solve(om.OptimizationProblem(log, np.zeros(3)), om.SGD(lr=0.1), data=make(), epochs=2)
    assert log.calls == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 2}, "epochs=2 needs data= (an iterable of minibatches)"),
        ({"epochs": 0, "data": BATCHES}, "epochs must be a positive integer, got 0"),
        ({"epochs": 1.5, "data": BATCHES}, "epochs must be a positive integer, got 1.5"),
        ({"epochs": True, "data": BATCHES}, "epochs must be a positive integer, got True"),
    ],
    ids=["epochs_without_data", "zero", "float", "bool"],
)
def test_bad_epochs(kwargs: dict[str, Any], message: str) -> None:
    log = _batch_log()
    with pytest.raises(ValueError, match=re.escape(message)):
        om.solve(om.OptimizationProblem(log, np.zeros(3)), om.SGD(lr=0.1), maxiters=3, **kwargs)
    assert log.calls == []


@pytest.mark.parametrize("cls", om.algorithms(tolerates_stochastic_loss=False), ids=lambda c: c.__name__)
def test_data_refuses_algorithms_that_trust_exact_values(cls: type) -> None:
    log = _batch_log()
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(om.OptimizationProblem(log, np.zeros(3), bounds=box_for(cls)), _alg(cls), data=BATCHES)
    # A whole-run method takes no minibatches at all: refused for that too.
    expected = [STOCHASTIC] + ([] if cls.traits.supports_minibatches else ["supports_minibatches"])
    assert [v.trait for v in info.value.violations] == expected
    assert "data= gives each step another minibatch" in str(info.value)
    assert "(the objective was not called)" in str(info.value)
    assert log.calls == []


def test_olbfgs_uses_one_batch_and_one_snapshot_for_both_evaluations() -> None:
    def loss(u: Any, p: Any, state: dict[str, Any]) -> Any:
        return anp.sum((u - p) ** 2), {"n": state["n"] + 1}

    log = CallLog(loss)
    prob = om.OptimizationProblem(log, np.zeros(3), state={"n": 0})
    sol = om.solve(prob, om.OLBFGS(lr=0.5), data=BATCHES, epochs=2)
    steps = 2 * len(BATCHES)
    assert sol.stats.iterations == steps
    assert sol.stats.fevals == 2 * steps == len(log.calls)
    assert all(c.p is b for c, b in zip(log.calls, [b for b in BATCHES * 2 for _ in range(2)]))
    assert [c.state_in["n"] for c in log.calls] == [k for k in range(steps) for _ in range(2)]
    assert sol.state == {"n": steps}
    assert sol.state == log.calls[-1].state_out


# --------------------------------------------------------------------------------------------
# 5. Finite differences
# --------------------------------------------------------------------------------------------


def _smooth(u: Any, p: Any) -> Any:
    return anp.sum(anp.sin(u) * anp.exp(0.3 * u)) + (u[0] * u[1]) ** 2 + anp.sum(p * u**4)


U0 = np.array([0.3, -1.2, 2.0, 0.7])
P4 = np.array([0.1, 0.2, 0.05, 0.3])


@pytest.mark.parametrize("sense", ["min", "max"])
def test_finite_difference_gradient_matches_autograd(sense: str) -> None:
    # One plain gradient step of length 1 exposes the gradient: u1 = u0 -/+ g.
    rec = Recorder(_smooth)
    prob = om.OptimizationProblem(rec, U0, p=P4, grad="finite-difference", sense=sense)
    sol = om.solve(prob, om.SGD(lr=1.0), maxiters=1)
    sign = 1.0 if sense == "min" else -1.0
    g_fd = sign * (U0 - sol.u)
    g_ad = autograd.grad(_smooth)(U0, P4)
    np.testing.assert_allclose(g_fd, g_ad, rtol=1e-6, atol=1e-6)
    assert sol.stats.gevals == 1
    # n + 1 calls for the gradient, then the final value at the returned point.
    assert sol.stats.fevals == U0.size + 2 == rec.calls


def test_finite_differences_keep_one_state_per_step_with_adam() -> None:
    n_steps = 6
    log = CallLog(_counter)
    ends, callback = _boundaries(log)
    prob = om.OptimizationProblem(log, np.zeros(3), p=C, state=_counter_state(), grad="finite-difference")
    sol = om.solve(prob, om.Adam(lr=0.1), maxiters=n_steps, callback=callback)
    n = 3
    assert sol.state["n"] == n_steps
    assert sol.stats.fevals == n_steps * (n + 1) == len(log.calls)
    assert sol.stats.gevals == n_steps
    assert ends == [(k + 1) * (n + 1) for k in range(n_steps)]
    for k, step in enumerate(_steps(log.calls, ends)):
        assert [c.state_in["n"] for c in step] == [k] * (n + 1)
        for c in step[1:]:
            np.testing.assert_array_equal(c.state_in["mean"], step[0].state_in["mean"])
    # The state kept is the one returned at the step's point itself (scipy's first call).
    last = _steps(log.calls, ends)[-1]
    assert last[0].state_out["n"] == sol.state["n"]
    np.testing.assert_array_equal(last[0].state_out["mean"], sol.state["mean"])


#: Exact-value algorithms that take a finite-difference gradient: those that use a gradient and
#: need no second derivatives (refused with grad="finite-difference", see test_traits.py).
EXACT_FD = [cls for cls in EXACT if cls.traits.requires_gradient and not cls.traits.requires_hessian]


@pytest.mark.parametrize("cls", EXACT_FD, ids=lambda c: c.__name__)
def test_line_search_with_finite_differences_converges(cls: type) -> None:
    rec = Recorder(_quadratic)
    prob = om.OptimizationProblem(rec, np.zeros(3), p=C, grad="finite-difference", bounds=box_for(cls))
    sol = om.solve(prob, _alg(cls))
    assert sol.success
    np.testing.assert_allclose(sol.u, C, atol=converged_atol(cls, 1e-5))
    if cls in SCIPY_GRADIENT_CALLS:
        # A global method samples values and asks for gradients in its local searches only, each
        # one n + 1 calls; scipy counts the two apart. One more, at u0, before the run
        # (``evaluates_start``).
        start = int(cls.evaluates_start)
        assert sol.stats.gevals == sol.original[SCIPY_GRADIENT_CALLS[cls]] + start > start
        assert sol.stats.fevals == sol.original.nfev + (C.size + 1) * sol.stats.gevals
    else:
        assert sol.stats.fevals == (C.size + 1) * sol.stats.gevals
    assert rec.calls == sol.stats.fevals + sol.stats.probe_fevals
    assert sol.stats.probe_fevals == 2


@pytest.mark.parametrize("cls", PER_STEP, ids=lambda c: c.__name__)
def test_line_search_with_finite_differences_commits_once_per_iteration(cls: type) -> None:
    log = CallLog(_batchnorm_rosenbrock)
    ends, callback = _boundaries(log)
    prob = dataclasses.replace(_bn_problem(log), grad="finite-difference")
    sol = om.solve(prob, _alg(cls), maxiters=5, callback=callback)
    assert sol.state["n"] == sol.stats.iterations == 5
    assert sol.stats.fevals == 3 * sol.stats.gevals
    for k, step in enumerate(_steps([c.state_in["n"] for c in log.calls], ends, start=3), start=1):
        assert step == [k - 1] * len(step)


# --------------------------------------------------------------------------------------------
# 6. Online L-BFGS
# --------------------------------------------------------------------------------------------


def test_olbfgs_converges_on_a_stochastic_problem_advancing_the_state_once_per_step() -> None:
    n_steps = 60
    rec = Recorder(_keyed)
    prob = om.OptimizationProblem(rec, np.zeros(3), p=C, state={"key": 0})
    sol = om.solve(prob, om.OLBFGS(lr=0.5), maxiters=n_steps)
    np.testing.assert_allclose(sol.u, C, atol=1e-8)
    assert sol.state == {"key": n_steps}
    assert sol.stats.probe_fevals == 0
    assert sol.stats.fevals == sol.stats.gevals == 2 * n_steps == rec.calls
    assert rec.states == [{"key": k} for k in range(n_steps) for _ in range(2)]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr": 0}, ValueError, "lr must be positive and finite, got 0"),
        ({"lr": -1}, ValueError, "lr must be positive and finite, got -1"),
        ({"lr": float("nan")}, ValueError, "lr must be positive and finite, got nan"),
        ({"lr": float("inf")}, ValueError, "lr must be positive and finite, got inf"),
        ({"lr": "fast"}, TypeError, "lr must be a real number, got 'fast'"),
        ({"lr": True}, TypeError, "lr must be a real number, got True"),
        ({"lr": 1.0, "memory": 0}, ValueError, "memory must be a positive integer, got 0"),
        ({"lr": 1.0, "memory": -3}, ValueError, "memory must be a positive integer, got -3"),
        ({"lr": 1.0, "memory": 2.5}, ValueError, "memory must be a positive integer, got 2.5"),
        ({"lr": 1.0, "memory": True}, ValueError, "memory must be a positive integer, got True"),
        ({"lr": 1.0, "memory": "10"}, ValueError, "memory must be a positive integer, got '10'"),
        ({"lr": 1.0, "reg": -0.1}, ValueError, "reg must be a finite number >= 0, got -0.1"),
        ({"lr": 1.0, "reg": float("nan")}, ValueError, "reg must be a finite number >= 0, got nan"),
        ({"lr": 1.0, "reg": float("inf")}, ValueError, "reg must be a finite number >= 0, got inf"),
        ({"lr": 1.0, "reg": "x"}, TypeError, "reg must be a real number, got 'x'"),
        ({"lr": 1.0, "decay": -0.5}, ValueError, "decay must be a finite number >= 0, got -0.5"),
        ({"lr": 1.0, "decay": float("inf")}, ValueError, "decay must be a finite number >= 0, got inf"),
        ({"lr": 1.0, "decay": True}, TypeError, "decay must be a real number, got True"),
    ],
    ids=lambda v: ",".join(f"{k}={w!r}" for k, w in v.items()) if isinstance(v, dict) else None,
)
def test_olbfgs_hyperparameters_are_validated(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        om.OLBFGS(**kwargs)


def test_olbfgs_needs_a_step_size_and_accepts_edge_values() -> None:
    with pytest.raises(TypeError, match="lr"):
        om.OLBFGS()  # type: ignore[call-arg]
    alg = om.OLBFGS(lr=1e-12, memory=1, reg=0, decay=0.0)
    assert (alg.lr, alg.memory, alg.reg, alg.decay) == (1e-12, 1, 0, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        alg.lr = 1.0  # type: ignore[misc]
    traits = om.traits(om.OLBFGS)
    assert (traits.single_call_per_step, traits.commits_state_per_step, traits.tolerates_stochastic_loss) == (
        False,
        True,
        True,
    )
