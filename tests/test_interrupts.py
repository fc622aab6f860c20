"""An exception in the objective, the gradient or the callback, or a KeyboardInterrupt, ends a run
with its own type, a note naming the algorithm and the step, and the partial solution attached;
a callback's StopIteration ends it like returning True. Every registered algorithm."""

from __future__ import annotations

import copy
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from catalogue import box_for
from test_faults import configured

import optimeta as om

ALL = om.algorithms()
TARGET = np.array([1.0, -0.5])


class Boom(Exception):
    """The user's own error type."""


class Raising:
    """A quadratic that raises ``error`` at its ``at``-th call (counting every call of f)."""

    def __init__(self, at: int, error: BaseException) -> None:
        self.at = at
        self.error = error
        self.calls = 0
        self.points: list[np.ndarray] = []

    def __call__(self, u: Any, p: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return anp.sum((u - TARGET) ** 2) + 0.1 * anp.sum(u**4)


def _problem(cls: type, f: Any) -> om.OptimizationProblem:
    return om.OptimizationProblem(f, np.array([2.0, 2.0]), bounds=box_for(cls))


def _budget(cls: type) -> int | None:
    return 50 if not cls.traits.has_convergence_test else None


@pytest.mark.parametrize(
    "error",
    # scipy's differential evolution turns a TypeError of f into its own, and scipy's message on
    # "infs or NaNs" is the adapter's cue for overflowing second derivatives: neither may swallow f's.
    [Boom("in f"), KeyboardInterrupt(), TypeError("in f"), ValueError("array must not contain infs or NaNs")],
    ids=["Boom", "KeyboardInterrupt", "TypeError", "ValueError-infs-or-NaNs"],
)
@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_an_exception_in_f_propagates_with_a_note_and_the_partial_solution(cls: type, error: BaseException) -> None:
    f = Raising(at=6, error=copy.copy(error))
    prob = _problem(cls, f)
    u0_bytes = prob.u0.tobytes()
    with pytest.raises(type(error)) as info:
        om.solve(prob, configured(cls), maxiters=_budget(cls), check_determinism=False)
    exc = info.value
    assert type(exc) is type(error)
    notes = getattr(exc, "__notes__", [])
    assert len(notes) == 1 and notes[0].startswith("optimeta: raised during step ")
    assert f" of {cls.__name__} (" in notes[0]
    partial = exc.partial_solution  # type: ignore[attr-defined]
    assert isinstance(partial, om.Solution)
    assert partial.retcode is om.ReturnCode.FAILURE
    assert partial.message.startswith(f"interrupted by {type(error).__name__} during step ")
    assert partial.algorithm == configured(cls)
    assert partial.stats.fevals == f.calls == 6  # the call that raised is counted
    assert f"during step {partial.stats.iterations + 1} of" in notes[0]
    assert partial.u.shape == (2,) and np.isfinite(partial.u).all()
    if prob.bounds is not None:
        assert np.all(partial.u >= prob.bounds[0]) and np.all(partial.u <= prob.bounds[1])
    assert prob.u0.tobytes() == u0_bytes


@pytest.mark.parametrize("cls", [c for c in ALL if c.traits.supports_callback], ids=lambda cls: cls.__name__)
def test_the_partial_solution_is_the_last_reported_step(cls: type) -> None:
    # The exception comes from the callback at step 2: the partial solution is the last iterate
    # whose loss was computed, with that loss (the one step 2 reported): step 2's iterate, or for
    # an algorithm that reports the loss before its update (first-order), step 1's.
    seen: list[om.IterationInfo] = []

    def callback(info: om.IterationInfo) -> None:
        seen.append(info)
        if info.iteration == 2:
            raise Boom("in the callback")

    prob = _problem(cls, Raising(at=-1, error=Boom()))
    with pytest.raises(Boom) as info:
        om.solve(prob, configured(cls), maxiters=_budget(cls), callback=callback, check_determinism=False)
    partial = info.value.partial_solution  # type: ignore[attr-defined]
    assert partial.stats.iterations == 2
    evaluated = seen[-1] if getattr(cls, "loss_at_new_iterate", True) else seen[-2]
    assert partial.u.tobytes() == evaluated.u.tobytes()
    assert partial.objective == seen[-1].objective
    assert "during step 3 of" in info.value.__notes__[0]


@pytest.mark.parametrize("cls", [c for c in ALL if c.traits.supports_callback], ids=lambda cls: cls.__name__)
def test_stop_iteration_from_the_callback_is_returning_true(cls: type) -> None:
    def by_exception(info: om.IterationInfo) -> None:
        if info.iteration == 2:
            raise StopIteration

    runs = []
    for callback in (by_exception, lambda info: info.iteration == 2):
        prob = _problem(cls, Raising(at=-1, error=Boom()))
        runs.append(om.solve(prob, configured(cls), maxiters=_budget(cls), callback=callback))
    first, second = runs
    assert first.retcode is second.retcode is om.ReturnCode.TERMINATED
    assert first.stats.iterations == second.stats.iterations == 2
    assert first.u.tobytes() == second.u.tobytes()
    assert first.stats.fevals == second.stats.fevals


def test_an_exception_in_the_users_gradient_gets_the_note() -> None:
    def grad(u: Any, p: Any) -> Any:
        raise Boom("in grad")

    prob = om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.ones(2), grad=grad)
    with pytest.raises(Boom) as info:
        om.solve(prob, om.BFGS())
    note = "optimeta: raised during step 1 of BFGS (0 steps completed); the solution so far is attached as "
    assert info.value.__notes__ == [note + ".partial_solution"]
    partial = info.value.partial_solution  # type: ignore[attr-defined]
    assert partial.u.tobytes() == np.ones(2).tobytes() and np.isnan(partial.objective)


def test_a_stateful_partial_solution_holds_the_committed_state() -> None:
    def f(u: Any, p: Any, state: int) -> Any:
        if state == 7:
            raise Boom("at the eighth call")
        return anp.sum(u**2), state + 1

    state = 0
    prob = om.OptimizationProblem(f, np.ones(2), state=state)
    with pytest.raises(Boom) as info:
        om.solve(prob, om.Adam(lr=0.1), maxiters=20)
    partial = info.value.partial_solution  # type: ignore[attr-defined]
    assert partial.state == 7 and partial.stats.iterations == 7 and partial.stats.fevals == 8
    assert prob.state == 0


def test_a_chain_stage_keeps_its_own_note() -> None:
    f = Raising(at=30, error=Boom())
    prob = om.OptimizationProblem(f, np.array([2.0, 2.0]))
    with pytest.raises(Boom) as info:
        om.solve(prob, om.Chain((om.Adam(lr=0.1), 20), om.BFGS()), check_determinism=False)
    assert len(info.value.__notes__) == 1 and " of BFGS (" in info.value.__notes__[0]
    assert isinstance(info.value.partial_solution.algorithm, om.BFGS)  # type: ignore[attr-defined]
