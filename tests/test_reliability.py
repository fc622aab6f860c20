"""Reliability under bad input: a constant loss, a state that cannot be copied, constraints whose
sizes do not fit the problem. Each is accepted, or refused with a clear error, by every algorithm
it could affect; never a crash deep inside autograd, copy or numpy."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.optimize
from autograd.tracer import getval
from catalogue import box_for
from test_faults import configured

import optimeta as om
from optimeta._quiet import silenced
from optimeta.backends._base import WholeRunAlgorithm
from optimeta.backends.scipy_minimize import c_int

ALL = om.algorithms()
U0 = np.array([0.5, 0.25])


def _budget(cls: type) -> int | None:
    return 30 if not cls.traits.has_convergence_test else None


def ids(cls: type) -> str:
    return cls.__name__


# -- a constant loss ------------------------------------------------------------------------------

#: Constant losses as users write them: a Python int, a float, a NumPy scalar, a 0-d array.
CONSTANTS = [3, 3.0, np.float64(3.0), np.array(3.0)]


@pytest.mark.parametrize("constant", CONSTANTS, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_a_constant_loss_is_accepted_by_every_algorithm(cls: type, constant: Any) -> None:
    calls = []

    def f(u: Any, p: Any) -> Any:
        calls.append(1)
        return constant

    prob = om.OptimizationProblem(f, U0, bounds=box_for(cls))
    sol = om.solve(prob, configured(cls), maxiters=_budget(cls))
    assert sol.objective == 3.0
    assert np.isfinite(sol.u).all()
    assert sol.retcode is not om.ReturnCode.NONFINITE
    assert sol.stats.fevals + sol.stats.probe_fevals == len(calls) >= 1


@pytest.mark.parametrize("cls", [c for c in ALL if c.traits.requires_hessian], ids=ids)
def test_second_derivatives_of_a_constant_loss_are_zero(cls: type) -> None:
    # The Hessian (or its products) of a loss that does not depend on u is zero, and so the
    # Newton-type methods stop at once: the gradient is zero at u0.
    prob = om.OptimizationProblem(lambda u, p: 3, U0)
    sol = om.solve(prob, configured(cls))
    assert sol.u.tobytes() == U0.tobytes()
    assert sol.retcode is om.ReturnCode.SUCCESS


# -- a state that cannot be copied ----------------------------------------------------------------


class _Holder:
    """A plain object holding a lock among plain data."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()


def _generator() -> Iterator[int]:
    yield 1


@pytest.fixture
def open_file() -> Iterator[Any]:
    with open(os.devnull) as handle:
        yield handle


def _uncopyable_states(handle: Any) -> list[tuple[Any, str, str]]:
    """(state, the path the error names, the type it names)."""
    return [
        ({"key": np.zeros(2), "lock": threading.Lock()}, "state['lock']", "lock"),
        ({"batches": _generator()}, "state['batches']", "generator"),
        ((np.zeros(1), [0, handle]), "state[1][1]", "TextIOWrapper"),
        ({"model": _Holder()}, "state['model'].lock", "lock"),
    ]


def _stateful(u: Any, p: Any, state: Any) -> Any:
    return anp.sum((u - 1.0) ** 2), state


def test_a_state_that_cannot_be_copied_is_refused_when_the_problem_is_built(open_file: Any) -> None:
    for state, path, kind in _uncopyable_states(open_file):
        with pytest.raises(TypeError) as info:
            om.OptimizationProblem(_stateful, U0, state=state)
        message = str(info.value)
        assert message.startswith(f"the state must be copyable with copy.deepcopy, but {path} ({kind}) is not: ")
        assert "Keep objects that cannot be copied (locks, open files, generators, connections) in p" in message
        assert isinstance(info.value.__cause__, Exception)


STATEFUL = [c for c in ALL if c.traits.single_call_per_step or c.traits.commits_state_per_step]


@pytest.mark.parametrize("cls", STATEFUL, ids=ids)
def test_a_state_f_makes_uncopyable_gets_the_same_clear_error(cls: type) -> None:
    # f returns a state holding a lock from its third call on. An algorithm that needs a copy of
    # the state afterwards (a trial call, a per-step snapshot, the callback) says which part
    # cannot be copied; one that never copies it again runs on. Never a bare pickling error.
    calls = []

    def f(u: Any, p: Any, state: dict[str, Any]) -> Any:
        calls.append(1)
        new = {"n": state["n"] + 1}
        if len(calls) >= 3:
            new["lock"] = threading.Lock()
        return anp.sum((u - 1.0) ** 2), new

    prob = om.OptimizationProblem(f, U0, state={"n": 0}, bounds=box_for(cls), stochastic=False)
    seen: list[int] = []
    with pytest.raises(TypeError) as info:
        om.solve(prob, configured(cls), maxiters=_budget(cls) or 30, callback=lambda i: seen.append(i.iteration))
    assert str(info.value).startswith(
        "the state must be copyable with copy.deepcopy, but state['lock'] (lock) is not: cannot pickle"
    )
    assert hasattr(info.value, "partial_solution")


# -- constraints whose sizes do not fit -----------------------------------------------------------


def _quadratic(u: Any, p: Any) -> Any:
    return anp.sum((u - 1.0) ** 2)


#: (constraint, the exact message) for two variables.
MISFITS: list[tuple[Any, str]] = [
    (
        om.Constraint(lambda u, p: u, ub=np.ones(3)),
        (
            "constraints[0] (Constraint): its sides lb and ub have 3 values but there are 2 values returned by its fun "
            "at u0; give one value per value of the constraint, or one for all"
        ),
    ),
    (
        om.Constraint(lambda u, p: u, lb=np.zeros(3), ub=np.inf),
        (
            "constraints[0] (Constraint): its sides lb and ub have 3 values but there are 2 values returned by its fun "
            "at u0; give one value per value of the constraint, or one for all"
        ),
    ),
    (
        om.Constraint(lambda u, p: anp.sum(u), ub=1.0, jac=lambda u, p: np.ones(3)),
        (
            "constraints[0] (Constraint): its jac must return a 1 x 2 matrix at u0 (a row per value of fun, a column "
            "per entry of the flattened u), got shape (3,)"
        ),
    ),
    (
        om.Constraint(lambda u, p: anp.outer(u, u), ub=1.0),
        "constraints[0] (Constraint): its fun must return a scalar or a 1-d array, got shape (2, 2) at u0",
    ),
    (
        scipy.optimize.LinearConstraint(np.ones((1, 3)), ub=1.0),
        (
            "constraints[0] (LinearConstraint) needs one column of A per entry of the flattened u (2), got A of shape "
            "(1, 3)"
        ),
    ),
    (
        scipy.optimize.NonlinearConstraint(lambda x: x, -1.0, [1.0, 1.0, 1.0]),
        (
            "constraints[0] (NonlinearConstraint): its ub has 3 values but there are 2 values returned by its fun at "
            "u0; give one value per value of the constraint, or one for all"
        ),
    ),
]


@pytest.mark.parametrize(("constraint", "message"), MISFITS, ids=lambda c: type(c).__name__)
def test_constraint_sizes_are_checked_when_the_problem_is_built(constraint: Any, message: str) -> None:
    fine = om.Constraint(lambda u, p: anp.sum(u), ub=1.0)
    with pytest.raises(ValueError) as info:
        om.OptimizationProblem(_quadratic, U0, constraints=[fine, constraint])
    assert str(info.value) == message.replace("constraints[0]", "constraints[1]")


CONSTRAINED = [c for c in ALL if c.traits.supports_constraints]


@pytest.mark.parametrize("cls", CONSTRAINED, ids=ids)
def test_constraints_that_fit_solve_with_every_constrained_algorithm(cls: type) -> None:
    # The sizes check accepts every form that fits: one side for all values, a side per value,
    # a 1-d A, a scalar fun with a user Jacobian given as a vector.
    constraints = [
        om.Constraint(lambda u, p: u, lb=-np.ones(2), ub=2.0),
        om.Constraint(lambda u, p: anp.sum(u), ub=1.0, jac=lambda u, p: np.ones(2)),
        scipy.optimize.LinearConstraint(np.array([1.0, -1.0]), lb=-5.0, ub=5.0),
    ]
    prob = om.OptimizationProblem(_quadratic, U0, bounds=box_for(cls), constraints=constraints)
    sol = om.solve(prob, configured(cls))
    assert sol.u.sum() <= 1.0 + 1e-3  # COBYLA meets it to its catol
    np.testing.assert_allclose(sol.u, [0.5, 0.5], atol=2e-3)


# -- a huge budget is a budget ------------------------------------------------------------------

WHOLE_RUN = [c for c in ALL if issubclass(c, WholeRunAlgorithm)]


def _quadratic(u: Any, p: Any) -> Any:
    return anp.sum((u - 1.0) ** 2)


def _box() -> tuple[np.ndarray, np.ndarray]:
    return -5.0 * np.ones(2), 5.0 * np.ones(2)


def _needs_box(cls: type) -> bool:
    return bool(cls.traits.requires_bounds)


@pytest.mark.parametrize("maxiters", [2**31, 2**63, 2**100], ids=["2^31", "2^63", "2^100"])
@pytest.mark.parametrize("cls", WHOLE_RUN, ids=ids)
def test_a_huge_iteration_budget_is_a_budget_no_run_reaches(cls: type, maxiters: int) -> None:
    # scipy's compiled methods take a C int: the budget is passed as at most 2**31 - 1, and the run
    # ends by its own criterion, as without a budget (not after 0 iterations, nor with an overflow).
    prob = om.OptimizationProblem(_quadratic, U0, bounds=_box() if _needs_box(cls) else None)
    sol = om.solve(prob, configured(cls), maxiters=maxiters)
    assert sol.retcode is om.ReturnCode.SUCCESS, sol.message
    assert sol.stats.iterations >= 1
    np.testing.assert_allclose(sol.u, 1.0, atol=1e-3)


def test_budgets_are_passed_to_scipy_as_c_ints() -> None:
    assert c_int(2**63) == c_int(2**31) == 2**31 - 1
    assert c_int(7) == 7


def test_a_direct_evaluation_limit_scipy_cannot_allocate_is_refused_before_any_call() -> None:
    with pytest.raises(ValueError, match=r"^maxfun must be at most 100000000, got 1000000000: scipy's DIRECT"):
        om.DIRECT(maxfun=10**9)
    calls: list[int] = []

    def f(u: Any, p: Any) -> Any:
        calls.append(1)
        return anp.sum(u**2)

    n = 10**5 + 1  # the default limit, 1000 per variable, is then past 10**8
    prob = om.OptimizationProblem(f, np.zeros(n), bounds=(-np.ones(n), np.ones(n)))
    with pytest.raises(ValueError, match=r"^DIRECT's evaluation limit \(1000 per variable, 100001000 for 100001 "):
        om.solve(prob, om.DIRECT(), check_determinism=False)
    assert calls == []


# -- not finite at u0 ends the run at u0 -----------------------------------------------------------


def _nan_at_u0_gradient(u: Any, p: Any) -> Any:
    return np.full(2, np.nan) if np.array_equal(u, U0) else 2.0 * (u - 1.0)


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_a_loss_not_finite_at_u0_ends_the_run_at_u0_off_the_box_centre(cls: type) -> None:
    # u0 away from the box's centre and off any grid a global method samples: every method
    # evaluates it first, and ends there after that one call.
    calls: list[bytes] = []

    def f(u: Any, p: Any) -> Any:
        calls.append(np.asarray(getval(u), dtype=float).tobytes())
        return anp.sum(u) * np.nan

    prob = om.OptimizationProblem(f, U0, bounds=_box() if cls.traits.supports_bounds else None)
    sol = om.solve(prob, configured(cls), maxiters=_budget(cls))
    assert sol.retcode is om.ReturnCode.NONFINITE
    assert sol.u.tobytes() == U0.tobytes()
    assert sol.stats.fevals == 1
    assert calls == [U0.tobytes()] * len(calls)


@pytest.mark.parametrize("cls", [c for c in ALL if c.traits.requires_gradient], ids=ids)
def test_a_gradient_not_finite_at_u0_ends_the_run_at_u0(cls: type) -> None:
    calls: list[bytes] = []

    def grad(u: Any, p: Any) -> Any:
        calls.append(np.asarray(u, dtype=float).tobytes())
        return _nan_at_u0_gradient(u, p)

    prob = om.OptimizationProblem(_quadratic, U0, grad=grad, bounds=_box() if cls.traits.supports_bounds else None)
    sol = om.solve(prob, configured(cls), maxiters=_budget(cls), check_determinism=False)
    assert sol.retcode is om.ReturnCode.NONFINITE
    assert sol.u.tobytes() == U0.tobytes()
    assert sol.stats.gevals == 1
    assert calls == [U0.tobytes()]


# -- maxtime holds through differential evolution's polish ------------------------------------------


class _Clock:
    """A clock that each call of f moves on by `tick` seconds: time budgets without timing."""

    def __init__(self, tick: float) -> None:
        self.now = 0.0
        self.tick = tick

    def __call__(self) -> float:
        return self.now


def _timed_run(monkeypatch: pytest.MonkeyPatch, polish: bool) -> tuple[om.Solution, int]:
    clock = _Clock(0.01)
    monkeypatch.setattr(time, "perf_counter", clock)
    calls: list[float] = []

    def f(u: Any, p: Any) -> Any:
        clock.now += clock.tick  # a 10 ms objective
        calls.append(clock.now)
        return anp.sum((u - 1.0) ** 2)

    prob = om.OptimizationProblem(f, U0, bounds=_box())
    sol = om.solve(prob, om.DifferentialEvolution(seed=0, polish=polish), maxtime=0.15, check_determinism=False)
    return sol, len(calls)


def test_maxtime_holds_through_differential_evolutions_polish(monkeypatch: pytest.MonkeyPatch) -> None:
    # The callback stops the run after the first generation past the budget; scipy then polishes,
    # and is stopped at the polish's first evaluation: one call more than without a polish.
    unpolished, calls_unpolished = _timed_run(monkeypatch, polish=False)
    polished, calls_polished = _timed_run(monkeypatch, polish=True)
    assert unpolished.retcode is polished.retcode is om.ReturnCode.MAXTIME
    assert calls_polished == calls_unpolished + 1
    assert polished.u.tobytes() == unpolished.u.tobytes()
    assert polished.objective == unpolished.objective


# -- maxfun means evaluations ---------------------------------------------------------------------


@pytest.mark.parametrize("maxfun", [1, 5, 30])
@pytest.mark.parametrize("make", [om.DIRECT, om.TNC], ids=lambda m: m.__name__)
def test_maxfun_limits_the_calls_of_f(make: type, maxfun: int) -> None:
    calls: list[int] = []

    def f(u: Any, p: Any) -> Any:
        calls.append(1)
        return anp.sum(anp.cos(3.0 * u) + (u - 1.0) ** 2)

    prob = om.OptimizationProblem(f, U0, bounds=_box())
    sol = om.solve(prob, make(maxfun=maxfun), check_determinism=False)
    assert len(calls) == sol.stats.fevals <= maxfun
    if len(calls) == maxfun and sol.retcode is not om.ReturnCode.SUCCESS:
        assert sol.retcode is om.ReturnCode.MAXITERS
    assert sol.objective == float(f(sol.u, None))


def test_direct_stops_at_its_evaluation_limit_mid_iteration() -> None:
    # scipy's DIRECT finishes the iteration past its limit (23 calls for maxfun=1 with scipy alone).
    calls: list[int] = []

    def f(u: Any, p: Any) -> Any:
        calls.append(1)
        return anp.sum((u - 1.0) ** 2)

    sol = om.solve(om.OptimizationProblem(f, U0, bounds=_box()), om.DIRECT(maxfun=30), check_determinism=False)
    assert len(calls) == 30
    assert sol.retcode is om.ReturnCode.MAXITERS
    assert sol.message == "the evaluation limit was reached (maxfun=30)"


# -- threaded solves leave the warning filters alone -------------------------------------------------


def _linear_with_constraint() -> om.OptimizationProblem:
    # trust-constr's quasi-Newton update meets no curvature on a linear loss ("delta_grad == 0.0").
    return om.OptimizationProblem(
        lambda u, p: anp.sum(u), np.zeros(2), constraints=om.Constraint(lambda u, p: anp.sum(u**2), ub=1.0)
    )


def _infeasible_de() -> om.OptimizationProblem:
    # No point of the box satisfies the constraint: scipy warns, then polishes the least infeasible.
    return om.OptimizationProblem(
        _quadratic, U0, bounds=_box(), constraints=om.Constraint(lambda u, p: anp.sum(u**2), ub=-1.0)
    )


THREADED = [
    (_linear_with_constraint, lambda: om.TrustConstr()),
    (_infeasible_de, lambda: om.DifferentialEvolution(seed=0, popsize=5)),
    (lambda: om.OptimizationProblem(lambda u, p: anp.sum(u), U0), lambda: om.TrustExact()),
    (lambda: om.OptimizationProblem(lambda u, p: anp.sum(u), U0), lambda: om.NewtonCG()),
]


def test_threaded_solves_leave_the_warning_filters_as_they_were() -> None:
    before = list(warnings.filters)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        build, make = THREADED[i % len(THREADED)]
        try:
            for _ in range(3):
                om.solve(build(), make(), maxiters=20)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    for _ in range(5):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert warnings.filters == before


def test_silenced_removes_its_own_filter_and_leaves_the_users() -> None:
    before = list(warnings.filters)
    note = ("a note of a library", UserWarning)
    with silenced(note):
        with silenced(note):
            warnings.warn("a note of a library, silenced", UserWarning, stacklevel=1)
        warnings.warn("a note of a library, still silenced", UserWarning, stacklevel=1)
        warnings.filterwarnings("ignore", "the user's own")
    assert warnings.filters[0][1].pattern == "the user's own"
    assert warnings.filters[1:] == before
    with pytest.raises(UserWarning, match="a note of a library"):
        warnings.warn("a note of a library, now shown", UserWarning, stacklevel=1)
