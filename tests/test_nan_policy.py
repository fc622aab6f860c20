"""``nan_policy="skip"``: a step-wise run skips the update of a step whose evaluation is not finite,
counts it, and stops with NONFINITE after more than ``max_skips`` such steps in a row."""

from __future__ import annotations

from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from test_faults import configured

import optimeta as om

TARGET = np.array([1.0, -0.5, 0.25])
STEPWISE = om.algorithms(supports_checkpoint=True)
# The ones that accept an evolving state driving the loss (the first-order family, OLBFGS).
STATEFUL = [cls for cls in STEPWISE if cls.traits.tolerates_stochastic_loss]


def _bad_at(bad: set[int]) -> Any:
    """A quadratic that is NaN at the calls whose number (from 0, the state's count) is in `bad`."""

    def f(u: Any, p: Any, state: dict[str, int]) -> Any:
        k = state["k"]
        loss = anp.sum((u - TARGET) ** 2) + 0.1 * anp.sum(u**4)
        return (loss + np.nan if k in bad else loss), {"k": k + 1}

    return f


def _clean(u: Any, p: Any, state: dict[str, int]) -> Any:
    return anp.sum((u - TARGET) ** 2) + 0.1 * anp.sum(u**4), {"k": state["k"] + 1}


def _problem(f: Any) -> om.OptimizationProblem:
    return om.OptimizationProblem(f, np.zeros(3), state={"k": 0}, stochastic=False)


@pytest.mark.parametrize("cls", STATEFUL, ids=lambda cls: cls.__name__)
def test_a_skipped_step_makes_no_update(cls: type) -> None:
    # Skipped steps leave the iterate and the algorithm's state alone, so the run equals a run of
    # the clean loss with that many fewer steps; the state still advances at every call.
    bad = {3, 4, 9, 20}
    alg = configured(cls, lr=0.05)
    sol = om.solve(_problem(_bad_at(bad)), alg, maxiters=40, nan_policy="skip", max_skips=2)
    if cls.traits.single_call_per_step:
        assert sol.stats.skipped == len(bad)
        ref = om.solve(_problem(_clean), alg, maxiters=40 - len(bad))
        assert sol.u.tobytes() == ref.u.tobytes()
        assert sol.state == {"k": 40}
    else:  # OLBFGS evaluates twice per step: a NaN at either call skips the step
        assert 1 <= sol.stats.skipped <= len(bad)
    assert sol.retcode is om.ReturnCode.MAXITERS and sol.stats.iterations == 40
    assert np.isfinite(sol.u).all() and np.isfinite(sol.objective)


@pytest.mark.parametrize("cls", STATEFUL, ids=lambda cls: cls.__name__)
def test_more_skips_in_a_row_than_allowed_end_the_run(cls: type) -> None:
    if not cls.traits.single_call_per_step:
        pytest.skip("the count of calls per step decides which steps fail: single-call algorithms only")
    alg = configured(cls, lr=0.05)
    allowed = om.solve(_problem(_bad_at({5, 6, 7})), alg, maxiters=20, nan_policy="skip", max_skips=3)
    assert allowed.retcode is om.ReturnCode.MAXITERS and allowed.stats.skipped == 3
    ended = om.solve(_problem(_bad_at({5, 6, 7, 8})), alg, maxiters=20, nan_policy="skip", max_skips=3)
    assert ended.retcode is om.ReturnCode.NONFINITE
    assert ended.stats.skipped == 3 and ended.stats.iterations == 8  # steps 6-8 skipped, the 9th ends it
    stopped = om.solve(_problem(_bad_at({5})), alg, maxiters=20)  # nan_policy="stop", the default
    assert stopped.retcode is om.ReturnCode.NONFINITE and stopped.stats.skipped == 0


def test_the_callback_sees_a_skipped_step_with_its_loss() -> None:
    infos: list[om.IterationInfo] = []
    om.solve(_problem(_bad_at({2})), om.Adam(lr=0.1), maxiters=5, nan_policy="skip", callback=infos.append)
    assert [info.iteration for info in infos] == [1, 2, 3, 4, 5]
    assert np.isnan(infos[2].objective) and np.isfinite(infos[1].objective)
    assert infos[2].u.tobytes() == infos[1].u.tobytes()  # no update at the skipped step
    assert [info.state["k"] for info in infos] == [1, 2, 3, 4, 5]


def test_skips_carry_across_a_checkpoint() -> None:
    prob = _problem(_bad_at({3, 4, 11}))
    straight = om.solve(prob, om.Adam(lr=0.1), maxiters=15, nan_policy="skip", max_skips=2)
    solver = om.init(prob, om.Adam(lr=0.1), maxiters=15, nan_policy="skip", max_skips=2)
    for _ in range(4):  # stop inside the row of two skips
        solver.step()
    resumed = om.resume(solver.checkpoint(), prob).solve()
    assert resumed.u.tobytes() == straight.u.tobytes()
    assert resumed.stats.skipped == straight.stats.skipped == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nan_policy": "skp"}, "nan_policy must be 'stop' or 'skip', got 'skp'"),
        ({"nan_policy": None}, "nan_policy must be 'stop' or 'skip', got None"),
        ({"nan_policy": "skip", "max_skips": 0}, "max_skips must be a positive integer, got 0"),
        ({"nan_policy": "skip", "max_skips": 2.5}, "max_skips must be a positive integer, got 2.5"),
        ({"nan_policy": "skip", "max_skips": True}, "max_skips must be a positive integer, got True"),
    ],
)
def test_bad_policy_arguments_are_value_errors(kwargs: dict[str, Any], message: str) -> None:
    calls = []
    prob = om.OptimizationProblem(lambda u, p: calls.append(1) or anp.sum(u**2), np.ones(2))
    with pytest.raises(ValueError) as info:
        om.solve(prob, om.Adam(), maxiters=3, **kwargs)
    assert str(info.value) == message
    assert calls == []


@pytest.mark.parametrize("cls", [c for c in om.algorithms() if c not in STEPWISE], ids=lambda cls: cls.__name__)
def test_skip_is_refused_by_whole_run_algorithms(cls: type) -> None:
    calls = []
    bounds = (-np.ones(2), np.ones(2))
    prob = om.OptimizationProblem(lambda u, p: calls.append(1) or anp.sum(u**2), np.full(2, 0.5), bounds=bounds)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, configured(cls), nan_policy="skip")
    assert calls == []
    assert "supports_checkpoint" in [v.trait for v in info.value.violations]  # with supports_bounds, for some
    assert "Why: nan_policy='skip' skips the update of a step, so optimeta must take the run step by step" in str(
        info.value
    )


@pytest.mark.parametrize("cls", STATEFUL, ids=lambda cls: cls.__name__)
def test_a_stateful_run_stopped_by_a_non_finite_value_keeps_the_state_of_its_last_step(cls: type) -> None:
    # nan_policy="stop": the run ends at the last iterate with the state that went with it, not
    # with the state the non-finite call returned.
    infos: list[om.IterationInfo] = []
    sol = om.solve(_problem(_bad_at({6})), configured(cls, lr=0.05), maxiters=20, callback=infos.append)
    assert sol.retcode is om.ReturnCode.NONFINITE
    assert infos, "no step completed"
    last = infos[-1]
    assert sol.stats.iterations == last.iteration
    assert sol.state == last.state
    assert sol.u.tobytes() == last.u.tobytes()
    assert sol.objective == last.objective and np.isfinite(sol.objective)
