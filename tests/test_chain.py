"""`Chain` (stages run in turn), `default_algorithm` / `solve(prob)`, and `algorithms(for_problem=)`.

Every contract is measured: a recording objective counts and inspects the calls, stage results
are compared bit for bit with the solves they stand for, and the traits a chain combines are
checked against a table written out by hand from the stages' declared traits.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest

import optimeta as om

FIELDS = [f.name for f in dataclasses.fields(om.Traits)]


def rosen(u: Any, p: Any) -> Any:
    return (1 - u[0]) ** 2 + 100 * (u[1] - u[0] ** 2) ** 2


class Recorder:
    """An objective that records every call: the point and, when stateful, the state received."""

    def __init__(self, f: Callable[..., Any] = rosen, *, stateful: bool = False) -> None:
        self.f = f
        self.stateful = stateful
        self.us: list[np.ndarray] = []
        self.states: list[Any] = []

    @property
    def calls(self) -> int:
        return len(self.us)

    def __call__(self, u: Any, p: Any, *state: Any) -> Any:
        self.us.append(np.array(_plain(u), dtype=np.float64, copy=True))
        if not self.stateful:
            return self.f(u, p)
        self.states.append(copy.deepcopy(state[0]))
        return self.f(u, p, state[0])


def _plain(u: Any) -> Any:
    while hasattr(u, "_value"):  # an autograd box
        u = u._value
    return u


def counting(u: Any, p: Any, state: dict[str, int]) -> Any:
    """A stateful quadratic whose state counts the calls it has seen."""
    return anp.sum((u - 1.0) ** 2), {"calls": state["calls"] + 1}


def rosen_problem(rec: Recorder | None = None, **kwargs: Any) -> om.OptimizationProblem:
    return om.OptimizationProblem(rosen if rec is None else rec, np.array([-1.2, 1.0]), **kwargs)


# ---------------------------------------------------------------------------------------------
# Construction


def test_chain_without_stages_is_value_error() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        om.Chain()


@pytest.mark.parametrize(
    "stage",
    [
        om.BFGS,  # the class, not an instance
        "BFGS",
        None,
        3,
        om.Chain(om.BFGS()),  # nested
        (om.Chain((om.Adam(), 5), om.BFGS()), 5),  # nested, with a budget
        (5, om.BFGS()),  # pair the wrong way round
        [om.BFGS(), 5],  # a list is not a pair
        (om.BFGS(), 5, 1),
        (om.BFGS,),
    ],
    ids=repr,
)
def test_chain_stage_that_is_not_an_algorithm_is_type_error(stage: Any) -> None:
    with pytest.raises(TypeError, match="Chain stage 1"):
        om.Chain((om.Adam(), 5), stage)


@pytest.mark.parametrize("budget", [0, -1, True, False, 2.5, 3.0, "3", np.float64(4)], ids=repr)
def test_chain_bad_budget_is_value_error(budget: Any) -> None:
    with pytest.raises(ValueError, match="Chain stage 0: maxiters must be a positive integer"):
        om.Chain((om.Adam(), budget), om.BFGS())


def test_chain_normalises_stages_and_integer_budgets() -> None:
    adam, bfgs = om.Adam(lr=0.1), om.BFGS()
    chain = om.Chain((adam, np.int64(5)), bfgs, (om.LBFGS(), 3))
    assert chain.stages == ((adam, 5), (bfgs, None), (om.LBFGS(), 3))
    assert type(chain.stages[0][1]) is int
    assert chain.stages[0][0] is adam and chain.stages[1][0] is bfgs


@pytest.mark.parametrize("first", [om.Adam(), om.SGD(lr=0.1), om.OLBFGS(lr=0.1), om.RMSProp()], ids=repr)
def test_chain_non_last_stage_without_budget_that_needs_one_is_value_error(first: Any) -> None:
    name = type(first).__name__
    with pytest.raises(ValueError, match=rf"Chain stage 0 \({name}\).*\({name}\(\.\.\.\), maxiters\)"):
        om.Chain(first, om.BFGS())


@pytest.mark.parametrize("first", [om.BFGS(), om.LBFGS(), om.NelderMead(), om.SLSQP()], ids=repr)
def test_chain_non_last_stage_with_own_convergence_test_needs_no_budget(first: Any) -> None:
    assert om.Chain(first, (om.Adam(), 5)).stages[0] == (first, None)


def test_chain_last_stage_needing_a_budget_without_one_is_refused_at_solve_before_any_call() -> None:
    chain = om.Chain((om.Adam(lr=1e-2), 5), om.SGD(lr=1e-4))  # constructing is fine
    rec = Recorder()
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(rosen_problem(rec), chain)
    assert rec.calls == 0
    assert [(i, type(stage).__name__, [v.trait for v in found]) for i, stage, found in info.value.stages] == [
        (2, "SGD", ["has_convergence_test"])
    ]
    assert ": stage 2 of 2 (SGD) refuses it:" in str(info.value)
    assert "pass maxiters= or maxtime= (or data=)" in str(info.value)
    # solve's maxiters or maxtime is a budget for that stage.
    assert om.solve(rosen_problem(), chain, maxiters=8).stats.iterations == 8
    sol = om.solve(rosen_problem(), om.Chain(om.BFGS(), om.SGD(lr=1e-6)), maxtime=0.05)
    assert [s.retcode for s in sol.original] == [om.ReturnCode.SUCCESS, om.ReturnCode.MAXTIME]
    assert sol.retcode is om.ReturnCode.MAXTIME


def test_chain_repr_eq_hash() -> None:
    a = om.Chain((om.Adam(lr=0.1), 5), om.BFGS())
    b = om.Chain((om.Adam(lr=0.1), 5), om.BFGS())
    assert a == b and hash(a) == hash(b)
    assert a != om.Chain((om.Adam(lr=0.1), 6), om.BFGS())
    assert a != om.Chain(om.BFGS())
    assert repr(a) == f"Chain(({om.Adam(lr=0.1)!r}, 5), {om.BFGS()!r})"


# ---------------------------------------------------------------------------------------------
# Combined traits: a table written out from the stages' declared traits

SC, CO, TOL, RG = "single_call_per_step", "commits_state_per_step", "tolerates_stochastic_loss", "requires_gradient"
SB, RB, CB = "supports_bounds", "requires_bounds", "supports_callback"
RH, SCON, HC = "requires_hessian", "supports_constraints", "has_convergence_test"

# The traits each chain has (every other one is False). It has a convergence test when its last
# stage has one or a budget of its own; it never takes minibatches.
COMBINED: list[tuple[str, om.Chain, set[str]]] = [
    ("Adam+BFGS", om.Chain((om.Adam(), 5), om.BFGS()), {CO, RG, CB, HC}),
    ("Adam+SGD", om.Chain((om.Adam(), 5), (om.SGD(lr=0.1), 5)), {SC, TOL, RG, SB, CB, HC}),
    ("SGD+OLBFGS", om.Chain((om.SGD(lr=0.1), 5), (om.OLBFGS(lr=0.5), 5)), {CO, TOL, RG, CB, HC}),
    ("Adam+NelderMead", om.Chain((om.Adam(), 5), om.NelderMead()), {RG, SB, CB, HC}),
    ("DIRECT+LBFGS", om.Chain(om.DIRECT(), om.LBFGS()), {RG, SB, RB, CB, HC}),
    ("NelderMead+Powell", om.Chain(om.NelderMead(), om.Powell()), {SB, CB, HC}),
    ("Adam+NewtonCG", om.Chain((om.Adam(), 5), om.NewtonCG()), {RG, CB, RH, HC}),
    ("SLSQP+COBYLA", om.Chain(om.SLSQP(), om.COBYLA()), {RG, SB, CB, SCON, HC}),
    ("Adam+SLSQP", om.Chain((om.Adam(), 5), om.SLSQP()), {RG, SB, CB, HC}),
    ("DualAnnealing+LBFGS", om.Chain(om.DualAnnealing(seed=0), om.LBFGS()), {RG, SB, RB, HC}),
    ("BFGS", om.Chain(om.BFGS()), {CO, RG, CB, HC}),
    ("LBFGS+BFGS", om.Chain((om.LBFGS(), 3), om.BFGS()), {CO, RG, CB, HC}),
    ("Adam+LBFGS", om.Chain((om.Adam(), 5), om.LBFGS()), {CO, RG, SB, CB, HC}),
    ("Adam+SGD+BFGS", om.Chain((om.Adam(), 5), (om.SGD(lr=0.1), 5), om.BFGS()), {CO, RG, CB, HC}),
    ("Adam", om.Chain(om.Adam()), {SC, TOL, RG, SB, CB}),
]


@pytest.mark.parametrize(("chain", "true"), [c[1:] for c in COMBINED], ids=[c[0] for c in COMBINED])
def test_chain_traits_field_by_field(chain: om.Chain, true: set[str]) -> None:
    declared = om.traits(chain)
    assert declared is chain.traits
    for field in FIELDS:
        assert getattr(declared, field) is (field in true), field


def test_single_stage_chain_has_its_stage_traits_but_no_checkpoint() -> None:
    # A chain runs as solves of its stages: om.init cannot step it, nor data= feed it, whatever its
    # stages can do.
    for alg in [om.BFGS(), om.Adam(), om.LBFGS(), om.OLBFGS(lr=0.1), om.SLSQP(), om.DIRECT(), om.TrustExact()]:
        expected = dataclasses.replace(om.traits(alg), supports_checkpoint=False, supports_minibatches=False)
        assert om.traits(om.Chain(alg)) == expected


def _stateful(rec: Recorder, **kwargs: Any) -> om.OptimizationProblem:
    def f(u: Any, p: Any, state: dict[str, int]) -> Any:
        return anp.sum((u - 0.3) ** 2) + 0.1 * anp.sum(u**4), {"k": state["k"] + 1}

    rec.f, rec.stateful = f, True
    return om.OptimizationProblem(rec, np.array([0.5, 0.5]), state={"k": 0}, **kwargs)


def _stateless(rec: Recorder, **kwargs: Any) -> om.OptimizationProblem:
    rec.f = lambda u, p: anp.sum((u - 0.3) ** 2) + 0.1 * anp.sum(u**4)
    return om.OptimizationProblem(rec, np.array([0.5, 0.5]), **kwargs)


def _constant(rec: Recorder, **kwargs: Any) -> om.OptimizationProblem:
    rec.f, rec.stateful = (lambda u, p, s: (anp.sum((u - 0.3) ** 2), s)), True
    return om.OptimizationProblem(rec, np.array([0.5, 0.5]), state={"k": 0}, state_mode="constant", **kwargs)


def _sum_below(bound: float) -> om.Constraint:
    return om.Constraint(lambda u, p: anp.sum(u), ub=bound)


BOX = (np.zeros(2), np.ones(2))
# name -> builder(rec) of a tiny problem; every builder makes a fresh problem on the recorder.
PROBLEMS: dict[str, Callable[[Recorder], om.OptimizationProblem]] = {
    "plain": lambda r: _stateless(r),
    "box": lambda r: _stateless(r, bounds=BOX),
    "halfbox": lambda r: _stateless(r, bounds=(np.zeros(2), None)),
    "constrained": lambda r: _stateless(r, constraints=[_sum_below(0.8)]),
    "box+constrained": lambda r: _stateless(r, bounds=(-np.ones(2), np.ones(2)), constraints=[_sum_below(0.8)]),
    "stateful": lambda r: _stateful(r),
    "stateful-deterministic": lambda r: _stateful(r, stochastic=False),
    "stateful+box": lambda r: _stateful(r, bounds=BOX),
    "constant-state": lambda r: _constant(r),
    "stochastic": lambda r: _stateless(r, stochastic=True),
    "stochastic+box": lambda r: _stateless(r, stochastic=True, bounds=BOX),
    "finite-difference": lambda r: _stateless(r, grad="finite-difference"),
}


def _refused(build: Callable[[Recorder], om.OptimizationProblem], alg: Any, **options: Any) -> bool:
    """Whether solve refuses the problem; a refusal must come before any call of f."""
    rec = Recorder()
    prob = build(rec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            om.solve(prob, alg, maxiters=2, **options)
        except om.IncompatibleAlgorithmError as err:
            assert rec.calls == 0, (alg, err)
            assert err.algorithm is alg
            return True
    return False


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_chain_is_refused_exactly_when_some_stage_is_refused(problem: str) -> None:
    build = PROBLEMS[problem]
    for _, chain, _ in COMBINED:
        stage_refused = any(_refused(build, alg) for alg, _ in chain.stages)
        assert _refused(build, chain) is stage_refused, chain


def test_chain_refuses_stochastic_problem_with_bfgs_stage_before_any_call() -> None:
    rec = Recorder()
    chain = om.Chain((om.Adam(lr=1e-2), 50), om.BFGS())
    with pytest.raises(om.IncompatibleAlgorithmError, match="objective was not called") as err:
        om.solve(rosen_problem(rec, stochastic=True), chain)
    assert rec.calls == 0
    assert err.value.algorithm is chain
    assert [v.trait for v in err.value.violations] == [TOL]


def test_chain_refuses_bounded_problem_with_bfgs_stage_before_any_call() -> None:
    rec = Recorder()
    chain = om.Chain((om.Adam(lr=1e-2), 50), om.BFGS())
    with pytest.raises(om.IncompatibleAlgorithmError) as err:
        om.solve(rosen_problem(rec, bounds=(-2 * np.ones(2), 2 * np.ones(2))), chain)
    assert rec.calls == 0
    assert [v.trait for v in err.value.violations] == [SB]
    assert "LBFGS" in err.value.alternatives and "BFGS" not in err.value.alternatives


def test_chain_with_a_stage_without_callback_refuses_a_callback_before_any_call() -> None:
    rec = Recorder()
    prob = om.OptimizationProblem(rec, np.array([0.5, 0.5]), bounds=(-2 * np.ones(2), 2 * np.ones(2)))
    chain = om.Chain(om.DualAnnealing(seed=0), om.LBFGS())
    with pytest.raises(om.IncompatibleAlgorithmError) as err:
        om.solve(prob, chain, callback=lambda info: None)
    assert rec.calls == 0
    assert [v.trait for v in err.value.violations] == [CB]


def test_chain_refuses_a_stateful_problem_a_non_committing_stage_cannot_thread() -> None:
    rec = Recorder()
    prob = _stateful(rec, stochastic=False)
    with pytest.raises(om.IncompatibleAlgorithmError) as err:
        om.solve(prob, om.Chain((om.Adam(), 5), om.NelderMead()))
    assert rec.calls == 0
    assert [v.trait for v in err.value.violations] == [f"{SC} or {CO}"]


def test_chain_determinism_probe_refuses_hidden_state_after_probe_calls_only() -> None:
    hidden = {"n": 0}

    def leaky(u: Any, p: Any) -> Any:
        hidden["n"] += 1
        return anp.sum(u**2) + hidden["n"]

    rec = Recorder(leaky)
    prob = om.OptimizationProblem(rec, np.ones(2))
    with pytest.raises(om.IncompatibleAlgorithmError, match="determinism probe") as err:
        om.solve(prob, om.Chain((om.Adam(lr=0.1), 5), om.BFGS()))
    assert err.value.algorithm.stages[1][0] == om.BFGS()
    assert rec.calls == 2
    # A chain whose stages all tolerate noise is not probed: it runs, and no call is a probe.
    rec2 = Recorder(leaky)
    sol = om.solve(om.OptimizationProblem(rec2, np.ones(2)), om.Chain((om.Adam(lr=0.1), 5), (om.SGD(lr=0.1), 3)))
    assert sol.stats.probe_fevals == 0 and rec2.calls == sol.stats.fevals
    assert sol.stats.iterations == 8


def test_chain_with_data_is_value_error_before_any_call() -> None:
    rec = Recorder()
    prob = om.OptimizationProblem(rec, np.array([-1.2, 1.0]), p=0.0)
    chain = om.Chain((om.Adam(lr=1e-2), 5), (om.SGD(lr=1e-3), 5))
    with pytest.raises(om.IncompatibleAlgorithmError, match="supports_minibatches: the problem needs") as info:
        om.solve(prob, chain, data=[0.0, 1.0])
    assert [v.trait for v in info.value.violations] == ["supports_minibatches"]
    assert rec.calls == 0


# ---------------------------------------------------------------------------------------------
# Running: budgets, stats, calls, the hand-over between stages


def test_chain_reaches_the_rosenbrock_minimum_with_adam_then_bfgs() -> None:
    chain = om.Chain((om.Adam(lr=1e-2), 500), om.BFGS())
    sol = om.solve(rosen_problem(), chain)
    assert sol.retcode is om.ReturnCode.SUCCESS and sol.success
    np.testing.assert_allclose(sol.u, [1.0, 1.0], atol=1e-5)
    assert sol.objective < 1e-10
    assert sol.algorithm is chain
    assert isinstance(sol.original, tuple) and len(sol.original) == 2
    assert all(isinstance(s, om.Solution) for s in sol.original)
    assert sol.original[0].stats.iterations == 500
    assert sol.original[0].algorithm is chain.stages[0][0] and sol.original[1].algorithm is chain.stages[1][0]
    assert sol.original[0].retcode is om.ReturnCode.MAXITERS
    assert np.abs(sol.original[0].u - 1.0).max() > 1e-3  # Adam alone is not there: BFGS finished it
    assert sol.message == f"stage 2 of 2 (BFGS): {sol.original[1].message}"


def test_chain_stage_budgets_are_exact() -> None:
    chain = om.Chain((om.Adam(lr=1e-3), 7), (om.SGD(lr=1e-4), 5), (om.LBFGS(), 4), (om.NelderMead(), 6), om.BFGS())
    sol = om.solve(rosen_problem(), chain)
    assert [s.stats.iterations for s in sol.original][:4] == [7, 5, 4, 6]
    assert [s.retcode for s in sol.original][:4] == [om.ReturnCode.MAXITERS] * 4
    assert len(sol.original) == 5 and sol.retcode is om.ReturnCode.SUCCESS


STATS_CHAINS = [
    om.Chain((om.Adam(lr=1e-2), 30), om.BFGS()),
    om.Chain((om.SGD(lr=1e-4), 5), (om.LBFGS(), 4), om.TrustExact()),
    om.Chain((om.Adam(lr=1e-2), 20), om.NewtonCG()),
    om.Chain(om.NelderMead(), om.Powell()),
    om.Chain((om.Adam(lr=1e-2), 20), (om.SGD(lr=1e-4), 10)),
]


@pytest.mark.parametrize("chain", STATS_CHAINS, ids=repr)
def test_chain_stats_are_the_sum_of_the_stages_and_count_every_call(chain: om.Chain) -> None:
    rec = Recorder()
    sol = om.solve(rosen_problem(rec), chain, maxiters=400)
    stages = sol.original
    for name in ("iterations", "fevals", "gevals", "hevals"):
        assert getattr(sol.stats, name) == sum(getattr(s.stats, name) for s in stages), name
    assert all(s.stats.probe_fevals == 0 for s in stages)
    probed = not om.traits(chain).tolerates_stochastic_loss
    assert sol.stats.probe_fevals == (2 if probed else 0)
    assert rec.calls == sol.stats.fevals + sol.stats.probe_fevals
    assert sol.stats.time >= 0


def test_chain_hessian_evaluations_add_up() -> None:
    sol = om.solve(rosen_problem(), om.Chain((om.Adam(lr=1e-2), 20), om.TrustExact()))
    assert sol.original[1].stats.hevals > 0
    assert sol.stats.hevals == sol.original[1].stats.hevals


HANDOVER_CHAINS = [
    om.Chain((om.Adam(lr=1e-2), 30), om.BFGS()),
    om.Chain((om.Adam(lr=1e-2), 30), om.LBFGS()),
    om.Chain((om.SGD(lr=1e-4), 10), (om.LBFGS(), 3), om.NelderMead()),
    om.Chain(om.NelderMead(xatol=1e-2, fatol=1e-2), (om.Adam(lr=1e-3), 10), om.TrustNCG()),
]


@pytest.mark.parametrize("chain", HANDOVER_CHAINS, ids=repr)
def test_chain_equals_the_solves_it_stands_for_bitwise(chain: om.Chain) -> None:
    rec = Recorder()
    prob = rosen_problem(rec)
    sol = om.solve(prob, chain)
    probe = sol.stats.probe_fevals
    start = prob
    offset = probe
    assert len(sol.original) == len(chain.stages)
    for (alg, budget), staged in zip(chain.stages, sol.original):
        # The stage's first call is at the previous stage's u, exactly.
        assert rec.us[offset].tobytes() == np.asarray(start.u0).tobytes()
        offset += staged.stats.fevals
        alone = om.solve(replace(start, f=rosen), alg, maxiters=budget, check_determinism=False)
        assert staged.u.tobytes() == alone.u.tobytes()
        assert staged.objective == alone.objective
        assert staged.retcode is alone.retcode and staged.message == alone.message
        assert (staged.stats.iterations, staged.stats.fevals, staged.stats.gevals, staged.stats.hevals) == (
            alone.stats.iterations,
            alone.stats.fevals,
            alone.stats.gevals,
            alone.stats.hevals,
        )
        start = replace(start, u0=staged.u)
    assert offset == rec.calls
    assert sol.u.tobytes() == sol.original[-1].u.tobytes() and sol.objective == sol.original[-1].objective


def test_single_stage_chain_is_its_algorithm() -> None:
    rec_a, rec_b = Recorder(), Recorder()
    a = om.solve(rosen_problem(rec_a), om.Chain(om.BFGS()))
    b = om.solve(rosen_problem(rec_b), om.BFGS())
    assert a.u.tobytes() == b.u.tobytes() and a.objective == b.objective and a.retcode is b.retcode
    assert (a.stats.iterations, a.stats.fevals, a.stats.gevals, a.stats.probe_fevals) == (
        b.stats.iterations,
        b.stats.fevals,
        b.stats.gevals,
        b.stats.probe_fevals,
    )
    assert [u.tobytes() for u in rec_a.us] == [u.tobytes() for u in rec_b.us]
    assert a.message == f"stage 1 of 1 (BFGS): {b.message}"


def test_chain_threads_the_state_through_single_call_stages() -> None:
    rec = Recorder(counting, stateful=True)
    prob = om.OptimizationProblem(rec, np.zeros(2), state={"calls": 0})
    sol = om.solve(prob, om.Chain((om.Adam(lr=0.1), 50), (om.SGD(lr=0.1), 30)))
    assert sol.state == {"calls": 80}
    assert [s["calls"] for s in rec.states] == list(range(80))  # unbroken: every call gets the last state
    assert sol.original[0].state == {"calls": 50} and sol.original[1].state == {"calls": 80}
    assert sol.stats.iterations == sol.stats.fevals == rec.calls == 80
    assert sol.stats.probe_fevals == 0
    assert prob.state == {"calls": 0}


def test_chain_threads_the_state_into_a_committing_stage() -> None:
    rec = Recorder(counting, stateful=True)
    prob = om.OptimizationProblem(rec, np.zeros(2), state={"calls": 0})
    sol = om.solve(prob, om.Chain((om.Adam(lr=0.1), 5), (om.OLBFGS(lr=0.5), 6)))
    assert [s.stats.iterations for s in sol.original] == [5, 6]
    assert sol.original[0].state == {"calls": 5}
    # OLBFGS commits once per step: the state advances by one per step, never skips or rewinds.
    assert sol.state == {"calls": 11}
    seen = [s["calls"] for s in rec.states]
    assert seen[:5] == list(range(5)) and seen[5] == 5
    assert all(b - a in (0, 1) for a, b in itertools.pairwise(seen))
    assert rec.calls == sol.stats.fevals


def test_chain_threads_a_deterministic_state_through_bfgs_after_the_probe() -> None:
    rec = Recorder(counting, stateful=True)
    prob = om.OptimizationProblem(rec, np.zeros(2), state={"calls": 0}, stochastic=False)
    sol = om.solve(prob, om.Chain((om.Adam(lr=0.1), 5), om.BFGS()))
    probe = sol.stats.probe_fevals
    assert probe == 3  # two calls on copies of the initial state, one on the state the first returned
    assert [s["calls"] for s in rec.states[:probe]] == [0, 0, 1]
    adam_states = [s["calls"] for s in rec.states[probe : probe + 5]]
    assert adam_states == [0, 1, 2, 3, 4]  # the probe never advanced the committed state
    assert rec.states[probe + 5] == {"calls": 5}  # BFGS starts from the state Adam ended with
    assert sol.state == {"calls": 5 + sol.original[1].stats.iterations}
    assert rec.calls == sol.stats.fevals + probe


@pytest.mark.parametrize(
    ("maxiters", "expected"),
    [(25, [10, 10, 5]), (20, [10, 10]), (15, [10, 5]), (7, [7]), (10, [10]), (1, [1]), (100, [10, 10, 80])],
)
def test_solve_maxiters_is_split_across_stages(maxiters: int, expected: list[int]) -> None:
    chain = om.Chain((om.Adam(lr=1e-3), 10), (om.SGD(lr=1e-5), 10), om.Adam(lr=1e-4))
    sol = om.solve(rosen_problem(), chain, maxiters=maxiters)
    assert [s.stats.iterations for s in sol.original] == expected
    assert sol.stats.iterations == maxiters
    assert sol.retcode is om.ReturnCode.MAXITERS
    k = len(expected)
    name = type(chain.stages[k - 1][0]).__name__
    assert sol.message.startswith(f"stage {k} of 3 ({name}): ")


def test_solve_maxiters_bounds_a_whole_run_stage_and_what_is_left_after_convergence() -> None:
    sol = om.solve(rosen_problem(), om.Chain((om.Adam(lr=1e-2), 3), om.LBFGS()), maxiters=6)
    assert [s.stats.iterations for s in sol.original] == [3, 3]
    # A stage that converges early leaves the rest of the budget to the next one.
    free = om.solve(rosen_problem(), om.Chain(om.BFGS(), (om.SGD(lr=1e-6), 10)))
    k = free.original[0].stats.iterations
    assert free.original[0].retcode is om.ReturnCode.SUCCESS and free.original[1].stats.iterations == 10
    capped = om.solve(rosen_problem(), om.Chain(om.BFGS(), (om.SGD(lr=1e-6), 10)), maxiters=k + 4)
    assert [s.stats.iterations for s in capped.original] == [k, 4]
    assert capped.stats.iterations == k + 4 and capped.retcode is om.ReturnCode.MAXITERS


def test_chain_callback_numbering_continues_across_stages() -> None:
    infos: list[om.IterationInfo] = []
    chain = om.Chain((om.Adam(lr=1e-2), 10), om.BFGS(), (om.SGD(lr=1e-6), 5))
    sol = om.solve(rosen_problem(), chain, callback=infos.append)
    assert [i.iteration for i in infos] == list(range(1, sol.stats.iterations + 1))
    assert sol.stats.iterations == 10 + sol.original[1].stats.iterations + 5
    boundary = 10 + sol.original[1].stats.iterations
    np.testing.assert_array_equal(infos[9].u, sol.original[0].u)
    np.testing.assert_array_equal(infos[boundary - 1].u, sol.original[1].u)
    np.testing.assert_array_equal(infos[-1].u, sol.u)


@pytest.mark.parametrize("stop_at", [4, 10, 12, 3 + 10])
def test_chain_callback_returning_true_stops_the_whole_chain(stop_at: int) -> None:
    seen: list[int] = []

    def callback(info: om.IterationInfo) -> bool:
        seen.append(info.iteration)
        return info.iteration == stop_at

    chain = om.Chain((om.Adam(lr=1e-2), 10), (om.BFGS(), 20), (om.SGD(lr=1e-6), 5))
    sol = om.solve(rosen_problem(), chain, callback=callback)
    assert seen == list(range(1, stop_at + 1))
    assert sol.retcode is om.ReturnCode.TERMINATED
    assert sol.stats.iterations == stop_at
    k = 1 if stop_at <= 10 else 2
    assert len(sol.original) == k
    assert sol.message == f"stage {k} of 3 ({['Adam', 'BFGS'][k - 1]}): {om.ReturnCode.TERMINATED.message}"


def test_chain_callback_bad_answer_is_type_error() -> None:
    with pytest.raises(TypeError, match="callback must return"):
        om.solve(rosen_problem(), om.Chain((om.Adam(), 3), om.BFGS()), callback=lambda info: "stop")


def _wall(u: Any, p: Any) -> Any:
    """Slope -1 until u[0] reaches 2, then NaN."""
    return -anp.sum(u) + anp.where(u[0] < 2.0, 0.0, anp.nan)


@pytest.mark.parametrize("second", [(om.Adam(lr=0.1), 10), om.NelderMead()], ids=repr)
def test_chain_stops_at_a_nonfinite_stage(second: Any) -> None:
    rec = Recorder(_wall)
    prob = om.OptimizationProblem(rec, np.array([1.0]))
    chain = om.Chain((om.SGD(lr=0.5), 10), second)
    sol = om.solve(prob, chain)
    assert len(sol.original) == 1
    assert sol.original[0].retcode is om.ReturnCode.NONFINITE and sol.original[0].stats.iterations == 2
    assert sol.retcode is om.ReturnCode.NONFINITE
    assert sol.message == f"stage 1 of 2 (SGD): {om.ReturnCode.NONFINITE.message}"
    assert sol.u.tobytes() == sol.original[0].u.tobytes()
    assert rec.calls == sol.stats.fevals + sol.stats.probe_fevals


def test_chain_stops_at_a_stage_that_runs_out_of_time() -> None:
    rec = Recorder()
    chain = om.Chain((om.Adam(lr=1e-6), 10**8), (om.SGD(lr=1e-4), 5))
    sol = om.solve(rosen_problem(rec), chain, maxtime=0.05)
    assert len(sol.original) == 1 and sol.original[0].retcode is om.ReturnCode.MAXTIME
    assert sol.retcode is om.ReturnCode.MAXTIME
    assert sol.message.startswith("stage 1 of 2 (Adam): ")
    assert rec.calls == sol.stats.fevals + sol.stats.probe_fevals


def test_chain_inputs_are_byte_identical_after_solve() -> None:
    u0 = np.array([0.2, 0.4, 0.6])
    p = np.array([1.0, -1.0, 0.5])
    lb, ub = np.full(3, -0.5), np.full(3, 0.8)
    state = {"calls": 0, "buf": np.arange(3.0), "log": [1, 2]}
    user = [a.tobytes() for a in (u0, p, lb, ub, state["buf"])]
    user_state = copy.deepcopy(state)

    def f(u: Any, p: Any, state: dict[str, Any]) -> Any:
        return anp.sum((u - p) ** 2), {"calls": state["calls"] + 1, "buf": state["buf"] + 1, "log": [*state["log"], 0]}

    prob = om.OptimizationProblem(f, u0, p=p, state=state, bounds=(lb, ub))
    held = [a.tobytes() for a in (prob.u0, prob.p, prob.bounds[0], prob.bounds[1])]
    sol = om.solve(prob, om.Chain((om.Adam(lr=0.05), 10), (om.SGD(lr=0.05), 10)))
    assert sol.state["calls"] == 20 and sol.state["log"] == [1, 2] + [0] * 20
    np.testing.assert_array_equal(sol.state["buf"], np.arange(3.0) + 20)
    assert [a.tobytes() for a in (u0, p, lb, ub, state["buf"])] == user
    assert [a.tobytes() for a in (prob.u0, prob.p, prob.bounds[0], prob.bounds[1])] == held
    assert state["calls"] == user_state["calls"] and state["log"] == user_state["log"]
    assert prob.state is state
    assert np.all(sol.u >= lb) and np.all(sol.u <= ub)

    # Stateless, with a whole-run stage.
    prob2 = om.OptimizationProblem(lambda u, p: anp.sum((u - p) ** 2), u0, p=p, bounds=(lb, ub))
    sol2 = om.solve(prob2, om.Chain((om.Adam(lr=0.05), 5), om.LBFGS()))
    assert [a.tobytes() for a in (u0, p, lb, ub)] == user[:4]
    assert [a.tobytes() for a in (prob2.u0, prob2.p, prob2.bounds[0], prob2.bounds[1])] == held
    np.testing.assert_allclose(sol2.u, np.clip(p, lb, ub), atol=1e-5)


def test_chain_keeps_a_pytree_structure_and_the_sense() -> None:
    def f(u: Any, p: Any) -> Any:
        return -(anp.sum((u["w"] - 1.0) ** 2) + (u["b"] + 2.0) ** 2)

    prob = om.OptimizationProblem(f, {"w": np.zeros(2), "b": 0.0}, sense="max")
    sol = om.solve(prob, om.Chain((om.Adam(lr=0.1), 20), om.BFGS()))
    assert set(sol.u) == {"w", "b"} and isinstance(sol.u["b"], float)
    np.testing.assert_allclose(sol.u["w"], 1.0, atol=1e-6)
    assert abs(sol.u["b"] + 2.0) < 1e-6
    assert sol.objective == sol.original[-1].objective and -1e-10 < sol.objective <= 0
    assert sol.original[0].objective < -1e-6  # reported in the user's sense: a maximum, below 0


def test_chain_without_determinism_check_makes_no_probe_calls() -> None:
    rec = Recorder()
    sol = om.solve(rosen_problem(rec), om.Chain((om.Adam(lr=1e-2), 5), om.BFGS()), check_determinism=False)
    assert sol.stats.probe_fevals == 0 and rec.calls == sol.stats.fevals


# Regressions: a chain whose probe uses up maxtime; a stage ending on the box's edge.


def _slow_quadratic(u: Any, p: Any) -> Any:
    time.sleep(0.02)
    return anp.sum((u - 1.0) ** 2)


def test_chain_whose_maxtime_the_probe_uses_up_returns_a_solution() -> None:
    """The chain's clock starts after its determinism probe, and the first stage always runs, so a
    probe that alone takes longer than maxtime still gives a solution."""
    prob = om.OptimizationProblem(_slow_quadratic, np.zeros(2))
    sol = om.solve(prob, om.Chain(om.BFGS(), om.LBFGS()), maxtime=0.01)
    assert sol.retcode is om.ReturnCode.MAXTIME


def test_chain_of_stages_that_support_bounds_runs_on_a_bounded_problem() -> None:
    """COBYLA (supports_bounds) may end slightly outside the box (by its constraint tolerance);
    the adapter clips its answer, so the next stage starts inside the box."""
    prob = om.OptimizationProblem(
        lambda u, p: anp.sum((u - 2.0) ** 2) + u[0] * u[1], np.array([0.5, 0.5]), bounds=(np.zeros(2), np.ones(2))
    )
    sol = om.solve(prob, om.Chain(om.COBYLA(), om.LBFGS()))
    assert np.all(sol.u >= 0.0) and np.all(sol.u <= 1.0)


# ---------------------------------------------------------------------------------------------
# default_algorithm and solve(prob)

ADAM_DEFAULTS = {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
BFGS_DEFAULTS = {"gtol": 1e-5}
LBFGS_DEFAULTS = {"memory": 10, "gtol": 1e-5, "ftol": 2.220446049250313e-09}
SLSQP_DEFAULTS = {"ftol": 1e-6}


def _quad(n: int, **kwargs: Any) -> om.OptimizationProblem:
    return om.OptimizationProblem(lambda u, p: anp.sum((u - 0.3) ** 2), np.zeros(n), **kwargs)


def _quad_stateful(n: int, **kwargs: Any) -> om.OptimizationProblem:
    return om.OptimizationProblem(
        lambda u, p, s: (anp.sum((u - 0.3) ** 2), {"k": s["k"] + 1}), np.zeros(n), state={"k": 0}, **kwargs
    )


DEFAULTS: dict[str, tuple[Callable[[], om.OptimizationProblem], type, dict[str, Any], dict[str, Any]]] = {
    # name: (problem, expected class, its hyperparameters, options solve needs)
    "plain": (lambda: _quad(3), om.BFGS, BFGS_DEFAULTS, {}),
    "2000 variables": (lambda: _quad(2000), om.BFGS, BFGS_DEFAULTS, {}),
    "2001 variables": (lambda: _quad(2001), om.LBFGS, LBFGS_DEFAULTS, {}),
    "bounded": (lambda: _quad(3, bounds=(-np.ones(3), np.ones(3))), om.LBFGS, LBFGS_DEFAULTS, {}),
    "half-bounded": (lambda: _quad(3, bounds=(None, np.full(3, 0.1))), om.LBFGS, LBFGS_DEFAULTS, {}),
    "constrained": (lambda: _quad(3, constraints=[_sum_below(0.5)]), om.SLSQP, SLSQP_DEFAULTS, {}),
    "constrained+bounded": (
        lambda: _quad(3, constraints=[_sum_below(0.5)], bounds=(-np.ones(3), np.ones(3))),
        om.SLSQP,
        SLSQP_DEFAULTS,
        {},
    ),
    "stateful evolving": (lambda: _quad_stateful(3), om.Adam, ADAM_DEFAULTS, {"maxiters": 5}),
    "stateful deterministic": (lambda: _quad_stateful(3, stochastic=False), om.Adam, ADAM_DEFAULTS, {"maxiters": 5}),
    "stateful+bounded": (
        lambda: _quad_stateful(3, bounds=(-np.ones(3), np.ones(3))),
        om.Adam,
        ADAM_DEFAULTS,
        {"maxiters": 5},
    ),
    "stochastic": (lambda: _quad(3, stochastic=True), om.Adam, ADAM_DEFAULTS, {"maxiters": 5}),
    "stochastic+bounded": (
        lambda: _quad(3, stochastic=True, bounds=(-np.ones(3), np.ones(3))),
        om.Adam,
        ADAM_DEFAULTS,
        {"maxiters": 5},
    ),
    "data": (lambda: _quad(3, p=0.0), om.Adam, ADAM_DEFAULTS, {"data": [0.0, 0.1, 0.2]}),
    "constant state": (
        lambda: om.OptimizationProblem(
            lambda u, p, s: (anp.sum((u - 0.3) ** 2), s), np.zeros(3), state={"k": 0}, state_mode="constant"
        ),
        om.BFGS,
        BFGS_DEFAULTS,
        {},
    ),
    "finite-difference": (lambda: _quad(3, grad="finite-difference"), om.BFGS, BFGS_DEFAULTS, {}),
    "maximise": (lambda: _quad(3, sense="max"), om.BFGS, BFGS_DEFAULTS, {}),
}


@pytest.mark.parametrize("kind", list(DEFAULTS))
def test_default_algorithm_by_kind_of_problem(kind: str) -> None:
    make, cls, hyper, options = DEFAULTS[kind]
    prob = make()
    alg = om.default_algorithm(prob, data="data" in options)
    assert type(alg) is cls
    assert dataclasses.asdict(alg) == hyper
    assert alg == cls()


@pytest.mark.parametrize("kind", [k for k in DEFAULTS if k != "2000 variables"])
def test_solve_without_algorithm_uses_the_default(kind: str) -> None:
    make, cls, hyper, options = DEFAULTS[kind]
    if kind == "maximise":  # a quadratic has no maximum: only check the choice, on a concave one
        prob = om.OptimizationProblem(lambda u, p: -anp.sum((u - 0.3) ** 2), np.zeros(3), sense="max")
    else:
        prob = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sol = om.solve(prob, **options)
        explicit = om.solve(prob, cls(), **options)
    assert type(sol.algorithm) is cls and dataclasses.asdict(sol.algorithm) == hyper
    assert sol.u.tobytes() == explicit.u.tobytes()
    assert sol.stats.iterations == explicit.stats.iterations and sol.stats.fevals == explicit.stats.fevals
    if "data" in options:
        assert sol.stats.iterations == len(options["data"])
    elif "maxiters" in options:
        assert sol.stats.iterations == options["maxiters"]
    else:
        assert sol.retcode is om.ReturnCode.SUCCESS


@pytest.mark.parametrize("kind", ["plain", "bounded", "constrained", "constant state", "finite-difference"])
def test_default_algorithm_with_data_is_adam(kind: str) -> None:
    alg = om.default_algorithm(DEFAULTS[kind][0](), data=True)
    assert type(alg) is om.Adam and dataclasses.asdict(alg) == ADAM_DEFAULTS


def test_default_algorithm_for_many_constrained_variables_is_slsqp() -> None:
    assert type(om.default_algorithm(_quad(2001, constraints=[_sum_below(0.5)]))) is om.SLSQP


def test_default_algorithm_returns_a_fresh_equal_instance_each_time() -> None:
    prob = _quad(3)
    assert om.default_algorithm(prob) == om.default_algorithm(prob)


@pytest.mark.parametrize("bad", [None, "prob", np.zeros(2), om.BFGS()], ids=repr)
def test_default_algorithm_of_a_non_problem_is_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="OptimizationProblem"):
        om.default_algorithm(bad)


@pytest.mark.parametrize("kind", ["stateful evolving", "stateful deterministic", "stochastic"])
def test_default_adam_without_budget_tells_to_pass_maxiters_before_any_call(kind: str) -> None:
    base = DEFAULTS[kind][0]()
    rec = Recorder(base.f, stateful=base.state is not None)
    prob = replace(base, f=rec)
    with pytest.raises(ValueError, match="Adam.*pass maxiters=") as err:
        om.solve(prob)
    assert "maxiters=1000" in str(err.value)
    assert rec.calls == 0
    assert om.solve(prob, maxtime=0.01).retcode is om.ReturnCode.MAXTIME


def test_default_that_the_problem_refuses_is_explained_before_any_call() -> None:
    rec = Recorder(lambda u, p, s: (anp.sum(u**2), {"k": s["k"] + 1}), stateful=True)
    prob = om.OptimizationProblem(rec, np.zeros(2), state={"k": 0}, constraints=[_sum_below(1.0)])
    assert type(om.default_algorithm(prob)) is om.Adam
    with pytest.raises(om.IncompatibleAlgorithmError) as err:
        om.solve(prob, maxiters=5)
    assert rec.calls == 0
    assert [v.trait for v in err.value.violations] == [SCON]


# ---------------------------------------------------------------------------------------------
# algorithms(for_problem=): against a brute force over solve

_BRUTE: dict[str, list[str]] = {}


def _instance(cls: type) -> Any:
    try:
        return cls()
    except TypeError:  # a required step size
        return cls(lr=0.1)


def brute_force(problem: str) -> list[str]:
    """The names of the registered algorithms that solve accepts on the problem (maxiters=2)."""
    if problem not in _BRUTE:
        _BRUTE[problem] = [cls.__name__ for cls in om.algorithms() if not _refused(PROBLEMS[problem], _instance(cls))]
    return _BRUTE[problem]


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_algorithms_for_problem_matches_brute_force(problem: str) -> None:
    found = om.algorithms(for_problem=PROBLEMS[problem](Recorder()))
    assert [cls.__name__ for cls in found] == brute_force(problem)
    assert [cls.__name__ for cls in found] == sorted(cls.__name__ for cls in found)
    assert all(isinstance(cls, type) for cls in found)


FILTERS: list[dict[str, bool]] = [
    {RB: True},
    {RG: False},
    {SC: True},
    {TOL: True, SC: False},
    {SCON: True},
    {RH: True, CB: True},
    {CO: True, SB: True},
]


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_algorithms_for_problem_with_trait_filters(problem: str) -> None:
    prob = PROBLEMS[problem](Recorder())
    accepted = brute_force(problem)
    for wanted in FILTERS:
        expected = [
            name for name in accepted if all(getattr(getattr(om, name).traits, k) is v for k, v in wanted.items())
        ]
        assert [cls.__name__ for cls in om.algorithms(for_problem=prob, **wanted)] == expected, wanted


def test_algorithms_for_problem_known_answers() -> None:
    def names(**kw: Any) -> list[str]:
        return [cls.__name__ for cls in om.algorithms(**kw)]

    box = PROBLEMS["box"](Recorder())
    assert names(for_problem=box, requires_bounds=True) == ["DIRECT", "DifferentialEvolution", "DualAnnealing", "SHGO"]
    assert names(for_problem=PROBLEMS["stochastic"](Recorder()), single_call_per_step=False) == ["OLBFGS"]
    assert "BFGS" in names(for_problem=PROBLEMS["plain"](Recorder()))
    assert "BFGS" not in names(for_problem=box)
    assert names(for_problem=PROBLEMS["constrained"](Recorder())) == [
        "COBYLA",
        "COBYQA",
        "SLSQP",
        "TrustConstr",
    ]
    assert names(for_problem=None) == names()


@pytest.mark.parametrize("bad", [1, "prob", om.BFGS(), np.zeros(2), {"f": rosen}], ids=repr)
def test_algorithms_for_non_problem_is_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="for_problem must be an OptimizationProblem"):
        om.algorithms(for_problem=bad)


def test_algorithms_for_problem_still_validates_trait_filters() -> None:
    prob = PROBLEMS["plain"](Recorder())
    with pytest.raises(ValueError, match="unknown trait"):
        om.algorithms(for_problem=prob, fast=True)
    with pytest.raises(TypeError, match="True or False"):
        om.algorithms(for_problem=prob, supports_bounds=1)


def test_algorithms_for_problem_lists_the_stage_classes_a_chain_can_use() -> None:
    # Every pair of accepted classes makes a chain the problem accepts, on every kind of problem.
    for problem in ("plain", "box", "stateful", "stochastic", "constrained"):
        accepted = brute_force(problem)
        algs = [_instance(getattr(om, name)) for name in accepted[:2]] + [_instance(getattr(om, accepted[-1]))]
        stages = [(alg, 2) for alg in algs]
        assert not _refused(PROBLEMS[problem], om.Chain(*stages)), problem


def test_a_chain_is_frozen_and_its_class_has_no_traits_of_its_own() -> None:
    chain = om.Chain((om.Adam(lr=1e-2), 5), om.BFGS())
    with pytest.raises(dataclasses.FrozenInstanceError):
        chain.stages = ()  # type: ignore[misc]
    assert chain == om.Chain((om.Adam(lr=1e-2), 5), om.BFGS()) and hash(chain) == hash(om.Chain(*chain.stages))
    with pytest.raises(TypeError) as info:
        om.traits(om.Chain)
    assert str(info.value) == (
        "Chain's traits are those of its stages, combined (`chain_traits`): ask them of an instance, "
        "om.traits(om.Chain(...))"
    )
