"""Every catalogue pair: compatible ones reach the known optimum, incompatible ones are refused.

Which pairs run and which are refused is computed from the catalogue's ``needs`` (written
independently of ``optimeta.traits``), and a third test checks the library's own rules against
that table for every registered algorithm class.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import scipy.optimize
from catalogue import (
    ALGORITHMS,
    PROBLEMS,
    STATE_COMMIT,
    AlgorithmCase,
    ProblemCase,
    accepts,
    as_params,
    assert_follows_scipy_twin,
    assert_scipy_counts,
    calls_per_step,
    constraint_violation,
    feasibility_tol,
    pairs,
    runs_to_budget,
    solved,
    stepwise,
    tree_leaves,
    unmet,
    whole_run,
)

import optimeta as om
from optimeta.traits import check_compatible, requirements

CONVERGED_ATOL = 1e-5  # algorithms with a convergence test run to it (gtol 1e-5)
# The exact-objective contract holds at any iterate; a short run ends away from the optimum, where
# f is not flat, and keeps the test fast.
SHORT_RUN = 25


def _ids(cases: list[tuple[AlgorithmCase, ProblemCase]]) -> list[str]:
    return [f"{alg.name}-{prob.name}" for alg, prob in cases]


COMPATIBLE = pairs(True)
INCOMPATIBLE = pairs(False)
DETERMINISTIC = [
    (alg, prob)
    for alg, prob in COMPATIBLE
    if "tolerates_stochastic_loss" not in prob.needs and STATE_COMMIT not in prob.needs
]


def _structure(tree: Any) -> Any:
    """Containers with their types, keys (in order) and lengths; leaves as array shapes or scalars."""
    if isinstance(tree, dict):
        return (type(tree), tuple((key, _structure(value)) for key, value in tree.items()))
    if isinstance(tree, (list, tuple)):
        return (type(tree), tuple(_structure(child) for child in tree))
    if isinstance(tree, np.ndarray):
        return ("array", tree.shape)
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return "scalar"
    return ("unexpected leaf", type(tree))


def _flat(tree: Any) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(leaf, dtype=np.float64)) for leaf in tree_leaves(tree)])


def _budgeted(alg_case: AlgorithmCase) -> bool:
    """Driven step by step by solve's loop until its budget is used up (no convergence test)."""
    return runs_to_budget(alg_case.alg)


def _calls_per_step(alg_case: AlgorithmCase) -> int | None:
    """The exact number of objective calls each step makes, or None when a line search decides."""
    return calls_per_step(alg_case.alg)


def _counters(state: Any, path: str = "") -> list[tuple[str, int]]:
    """``(path, value)`` of every int leaf of a state: the catalogue's stateful problems count calls in one."""
    if isinstance(state, dict):
        return [found for key, child in state.items() for found in _counters(child, f"{path}[{key!r}]")]
    if isinstance(state, (list, tuple)):
        return [found for i, child in enumerate(state) for found in _counters(child, f"{path}[{i}]")]
    return [(path, state)] if type(state) is int else []


def test_every_algorithm_has_one_shape() -> None:
    for alg_case in ALGORITHMS:
        assert stepwise(alg_case.alg) != whole_run(alg_case.alg)
        # An algorithm without a convergence test runs until its budget is used up, so the catalogue
        # must give it one; the others run to their own test.
        assert (alg_case.maxiters is not None) == _budgeted(alg_case), alg_case.name
        per = _calls_per_step(alg_case)
        assert per is None or per >= 1
        if _budgeted(alg_case):
            assert per is not None, "a budget of N steps must be a known number of calls"
    # The catalogue runs both kinds of step-wise algorithm, and both shapes.
    assert any(_budgeted(a) for a in ALGORITHMS)
    assert any(stepwise(a.alg) and not _budgeted(a) for a in ALGORITHMS)
    assert any(whole_run(a.alg) for a in ALGORITHMS)


def _missing(declared: om.Traits, prob_case: ProblemCase) -> set[str]:
    """The traits the catalogue says the problem needs and ``declared`` lacks."""
    return unmet(declared, prob_case)


@pytest.mark.parametrize(("alg_case", "prob_case"), as_params(COMPATIBLE))
def test_compatible_pair_reaches_known_optimum(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, rec, sol = solved(alg_case, prob_case, alg_case.maxiters)

    # Exactly the structure of u0 (and of the catalogue's u_star): containers, keys, lengths, shapes.
    assert _structure(sol.u) == _structure(prob_case.u_star)
    assert _structure(sol.u) == _structure(prob.u0)
    for leaf in tree_leaves(sol.u):
        if isinstance(leaf, np.ndarray):
            assert leaf.dtype == np.float64
        else:
            assert type(leaf) is float, f"scalar leaf {leaf!r} should be a Python float"

    atol = prob_case.atol if _budgeted(alg_case) else CONVERGED_ATOL
    np.testing.assert_allclose(_flat(sol.u), _flat(prob_case.u_star), rtol=0, atol=atol)
    assert type(sol.objective) is float
    assert sol.objective == pytest.approx(prob_case.f_star, rel=0, abs=atol)
    if prob.bounds is not None:
        x, lb, ub = _flat(sol.u), _flat(prob.bounds[0]), _flat(prob.bounds[1])
        assert np.all(lb <= x) and np.all(x <= ub), f"{x} left the box"
    if prob.constraints:
        # Feasible, within the method's own tolerance.
        assert constraint_violation(prob, sol.u) <= feasibility_tol(alg_case.alg)

    assert sol.stats.fevals + sol.stats.probe_fevals == rec.calls
    if _budgeted(alg_case):
        assert sol.retcode is om.ReturnCode.MAXITERS
        assert not sol.success
        assert sol.stats.iterations == alg_case.maxiters
        if prob_case.needs.get("tolerates_stochastic_loss"):
            # Stateful or stochastic: no hidden extra call after the last step.
            assert rec.calls == sol.stats.fevals == _calls_per_step(alg_case) * alg_case.maxiters
    else:
        assert sol.retcode is om.ReturnCode.SUCCESS, sol.message
        assert sol.success
        if whole_run(alg_case.alg):
            # scipy's own result, and optimeta's counts are scipy's.
            assert isinstance(sol.original, scipy.optimize.OptimizeResult)
            assert sol.original.success
            assert_scipy_counts(sol, prob)
        else:
            assert_follows_scipy_twin(sol, prob_case.build()[0])
    if prob.state is not None:
        # The state advanced exactly once per step, whether committed per call or per step; with a
        # fixed number of calls per step, step k's calls all received the state of k committed steps.
        probes = sol.stats.probe_fevals
        counters = _counters(prob.state)
        assert counters, "every stateful catalogue problem counts its calls in an int leaf of its state"
        assert _counters(sol.state) == [(path, start + sol.stats.iterations) for path, start in counters]
        per = _calls_per_step(alg_case)
        for path, start in counters:
            seen = [dict(_counters(state))[path] for state in rec.states[probes:]]
            if per is not None:
                assert seen == [start + k for k in range(sol.stats.iterations) for _ in range(per)]
            else:
                # A line search: every step makes at least one call, on the state of the steps before.
                assert sorted(set(seen)) == [start + k for k in range(sol.stats.iterations)]
                assert seen == sorted(seen)


@pytest.mark.parametrize(("alg_case", "prob_case"), INCOMPATIBLE, ids=_ids(INCOMPATIBLE))
def test_incompatible_pair_is_refused_before_any_call(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    prob, rec = prob_case.build()
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, alg_case.alg, maxiters=alg_case.maxiters)
    exc = info.value
    assert isinstance(exc, ValueError)
    assert rec.calls == 0

    message = str(exc)
    alg_name = type(alg_case.alg).__name__
    assert re.search(rf"\b{alg_name}\b", message), message
    missing = _missing(om.traits(alg_case.alg), prob_case)
    assert missing, "the catalogue marks this pair incompatible, so some need must be unmet"
    for trait in missing:
        assert re.search(rf"\b{trait}\b", message), f"{trait} not named in:\n{message}"
    assert sorted(v.trait for v in exc.violations) == sorted(missing)

    accepting = {type(a.alg).__name__ for a in ALGORITHMS if accepts(a, prob_case)}
    assert accepting, "every catalogue problem is accepted by some catalogue algorithm"
    assert alg_name not in accepting
    for name in accepting:
        assert re.search(rf"\b{name}\b", message), f"alternative {name} not listed in:\n{message}"
    assert accepting <= set(exc.alternatives)
    assert alg_name not in exc.alternatives


RULE_CASES = [(cls, prob_case) for cls in om.algorithms() for prob_case in PROBLEMS]


@pytest.mark.parametrize(
    ("cls", "prob_case"), RULE_CASES, ids=[f"{cls.__name__}-{prob.name}" for cls, prob in RULE_CASES]
)
def test_library_rules_agree_with_catalogue_needs(cls: type, prob_case: ProblemCase) -> None:
    prob, rec = prob_case.build()
    missing = _missing(om.traits(cls), prob_case)
    req = requirements(prob)
    if missing:
        with pytest.raises(om.IncompatibleAlgorithmError) as info:
            check_compatible(cls, req)
        assert {v.trait for v in info.value.violations} == missing
    else:
        check_compatible(cls, req)
    assert rec.calls == 0


@pytest.mark.parametrize(("alg_case", "prob_case"), DETERMINISTIC, ids=_ids(DETERMINISTIC))
def test_deterministic_objective_is_f_at_returned_u(alg_case: AlgorithmCase, prob_case: ProblemCase) -> None:
    maxiters = min(alg_case.maxiters, SHORT_RUN) if _budgeted(alg_case) else None
    prob, rec, sol = solved(alg_case, prob_case, maxiters)
    assert prob.state is None and not prob.stochastic
    assert sol.objective == pytest.approx(float(rec.fn(sol.u, prob.p)), rel=4 * np.finfo(float).eps, abs=0)
