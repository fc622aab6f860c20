"""Step-size schedules: their values, their validation, and ``lr=schedule`` in every first-order algorithm."""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import optimeta as om
from optimeta.schedules import constant, cosine_decay, exponential_decay, warmup

# -- values, computed by hand ------------------------------------------------------------------

R2 = math.sqrt(2.0)

VALUES = [
    ("constant", constant(0.3), [(0, 0.3), (1, 0.3), (1000, 0.3)]),
    ("constant-int", constant(2), [(0, 2.0), (7, 2.0)]),
    # 0.1 * 0.5 ** (k / 10): 0.5 ** 0.5 = 1/sqrt(2), 0.5 ** 2.5 = 1/(4 sqrt(2))
    ("exp", exponential_decay(0.1, 0.5, decay_steps=10), [(0, 0.1), (5, 0.1 / R2), (10, 0.05), (25, 0.025 / R2)]),
    # floored to whole periods: 0, 0, 1, 2
    ("exp-stair", exponential_decay(0.1, 0.5, decay_steps=10, staircase=True), [(0, 0.1), (5, 0.1), (10, 0.05)]),
    ("exp-stair-25", exponential_decay(0.1, 0.5, decay_steps=10, staircase=True), [(9, 0.1), (25, 0.025)]),
    ("exp-per-step", exponential_decay(2.0, 0.5), [(0, 2.0), (1, 1.0), (3, 0.25)]),
    ("exp-rate-1", exponential_decay(0.2, 1.0, decay_steps=3), [(0, 0.2), (100, 0.2)]),
    # 0.2 * (1 + cos(pi k / 100)) / 2
    ("cosine", cosine_decay(0.2, 100), [(0, 0.2), (25, 0.1 * (1 + R2 / 2)), (50, 0.1), (100, 0.0), (150, 0.0)]),
    # 0.2 * (0.1 + 0.9 * (1 + cos(pi k / 100)) / 2)
    ("cosine-alpha", cosine_decay(0.2, 100, alpha=0.1), [(0, 0.2), (50, 0.11), (100, 0.02), (400, 0.02)]),
    ("cosine-alpha-1", cosine_decay(0.2, 10, alpha=1.0), [(0, 0.2), (5, 0.2), (50, 0.2)]),
    # linear from 0 to 0.1 over 10 steps, then 0.1
    ("warmup-number", warmup(0.1, steps=10), [(0, 0.0), (5, 0.05), (9, 0.09), (10, 0.1), (11, 0.1), (99, 0.1)]),
    ("warmup-start", warmup(0.1, steps=10, start=0.02), [(0, 0.02), (5, 0.06), (10, 0.1)]),
    ("warmup-down", warmup(constant(0.3), steps=3, start=0.6), [(0, 0.6), (1, 0.5), (2, 0.4), (3, 0.3), (9, 0.3)]),
    # warm-up to exp(0) = 0.1 over 4 steps, then exp(k - 4)
    ("warmup-exp", warmup(exponential_decay(0.1, 0.5, 10), steps=4), [(2, 0.05), (3, 0.075), (4, 0.1), (14, 0.05)]),
    ("warmup-cos", warmup(cosine_decay(0.2, 100), steps=10), [(5, 0.1), (10, 0.2), (60, 0.1), (110, 0.0), (500, 0.0)]),
    # warm-up of a warm-up: the inner one starts from 0.04 once the outer 2 steps are over
    ("warmup-warmup", warmup(warmup(0.1, steps=3, start=0.04), steps=2), [(0, 0.0), (1, 0.02), (2, 0.04), (4, 0.08)]),
    ("warmup-warmup-end", warmup(warmup(0.1, steps=3, start=0.04), steps=2), [(5, 0.1), (50, 0.1)]),
]


@pytest.mark.parametrize(("schedule", "expected"), [v[1:] for v in VALUES], ids=[v[0] for v in VALUES])
def test_schedule_values(schedule: Callable[[int], float], expected: list[tuple[int, float]]) -> None:
    for step, value in expected:
        got = schedule(step)
        assert type(got) is float
        assert got == pytest.approx(value, rel=1e-12, abs=1e-15), f"step {step}"


def test_module_docstring_example() -> None:
    lr = warmup(cosine_decay(0.1, decay_steps=100), steps=10)
    assert [round(lr(k), 4) for k in (0, 5, 10, 60, 110, 500)] == [0.0, 0.05, 0.1, 0.05, 0.0, 0.0]


# -- validation --------------------------------------------------------------------------------

NAN = float("nan")
INVALID: list[tuple[str, Callable[..., Any], dict[str, Any], str, Any, type[Exception]]] = [
    # (id, factory, valid keywords, parameter, bad value, error)
    ("constant-0", constant, {}, "value", 0.0, ValueError),
    ("constant-neg", constant, {}, "value", -1.0, ValueError),
    ("constant-nan", constant, {}, "value", NAN, TypeError),
    ("constant-inf", constant, {}, "value", math.inf, TypeError),
    ("constant-str", constant, {}, "value", "x", TypeError),
    ("constant-bool", constant, {}, "value", True, TypeError),
    ("exp-init-0", exponential_decay, {"rate": 0.5}, "init", 0.0, ValueError),
    ("exp-init-str", exponential_decay, {"rate": 0.5}, "init", "x", TypeError),
    ("exp-rate-0", exponential_decay, {"init": 0.1}, "rate", 0.0, ValueError),
    ("exp-rate-big", exponential_decay, {"init": 0.1}, "rate", 1.5, ValueError),
    ("exp-rate-nan", exponential_decay, {"init": 0.1}, "rate", NAN, TypeError),
    ("exp-steps-0", exponential_decay, {"init": 0.1, "rate": 0.5}, "decay_steps", 0, ValueError),
    ("exp-steps-float", exponential_decay, {"init": 0.1, "rate": 0.5}, "decay_steps", 2.5, ValueError),
    ("exp-steps-bool", exponential_decay, {"init": 0.1, "rate": 0.5}, "decay_steps", True, ValueError),
    ("exp-staircase", exponential_decay, {"init": 0.1, "rate": 0.5}, "staircase", 1, TypeError),
    ("cos-init-neg", cosine_decay, {"decay_steps": 10}, "init", -0.1, ValueError),
    ("cos-init-inf", cosine_decay, {"decay_steps": 10}, "init", math.inf, TypeError),
    ("cos-steps-0", cosine_decay, {"init": 0.1}, "decay_steps", 0, ValueError),
    ("cos-steps-neg", cosine_decay, {"init": 0.1}, "decay_steps", -3, ValueError),
    ("cos-alpha-neg", cosine_decay, {"init": 0.1, "decay_steps": 10}, "alpha", -0.1, ValueError),
    ("cos-alpha-big", cosine_decay, {"init": 0.1, "decay_steps": 10}, "alpha", 1.5, ValueError),
    ("cos-alpha-nan", cosine_decay, {"init": 0.1, "decay_steps": 10}, "alpha", NAN, TypeError),
    ("warmup-schedule-0", warmup, {"steps": 5}, "schedule", 0.0, ValueError),
    ("warmup-schedule-str", warmup, {"steps": 5}, "schedule", "x", TypeError),
    ("warmup-steps-0", warmup, {"schedule": 0.1}, "steps", 0, ValueError),
    ("warmup-steps-float", warmup, {"schedule": 0.1}, "steps", 1.5, ValueError),
    ("warmup-start-neg", warmup, {"schedule": 0.1, "steps": 5}, "start", -1.0, ValueError),
    ("warmup-start-nan", warmup, {"schedule": 0.1, "steps": 5}, "start", NAN, TypeError),
]


@pytest.mark.parametrize(
    ("factory", "kwargs", "name", "bad", "error"), [v[1:] for v in INVALID], ids=[v[0] for v in INVALID]
)
def test_invalid_parameters_are_refused(
    factory: Callable[..., Any], kwargs: dict[str, Any], name: str, bad: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"\b{name}\b.*{re.escape(repr(bad))}") as info:
        factory(**kwargs, **{name: bad})
    assert type(info.value) is error


# -- frozen, compared by value, picklable --------------------------------------------------------

SCHEDULES = [
    constant(0.3),
    exponential_decay(0.1, 0.5, decay_steps=10, staircase=True),
    cosine_decay(0.2, 100, alpha=0.1),
    warmup(cosine_decay(0.2, 100), steps=10, start=0.01),
    warmup(0.1, steps=3),
]
SCHEDULE_IDS = ["constant", "exponential_decay", "cosine_decay", "warmup-cosine", "warmup-number"]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=SCHEDULE_IDS)
def test_schedules_are_frozen_values_that_pickle(schedule: Any) -> None:
    field = dataclasses.fields(schedule)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(schedule, field, 1.0)
    twin = dataclasses.replace(schedule)
    assert twin == schedule and twin is not schedule and hash(twin) == hash(schedule)
    clone = pickle.loads(pickle.dumps(schedule))
    assert clone == schedule and type(clone) is type(schedule)
    assert [clone(k) for k in range(0, 120, 7)] == [schedule(k) for k in range(0, 120, 7)]


def test_schedules_with_other_parameters_differ() -> None:
    assert exponential_decay(0.1, 0.5) != exponential_decay(0.1, 0.5, staircase=True)
    assert cosine_decay(0.1, 10) != cosine_decay(0.1, 11)
    assert warmup(constant(0.1), 3) != warmup(constant(0.2), 3)
    assert constant(0.1) != 0.1
    assert "decay_steps=10" in repr(cosine_decay(0.1, 10))


# -- lr=schedule in the algorithms ---------------------------------------------------------------

A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
C = np.array([1.0, -2.0, 0.5])
X0 = np.array([0.2, 0.4, -0.3])
STEPS = 5


def _quadratic() -> om.OptimizationProblem:
    return om.OptimizationProblem(
        lambda u, p: float(0.5 * (u - C) @ A @ (u - C)), X0.copy(), grad=lambda u, p: A @ (u - C)
    )


ALGORITHMS = [
    om.Adam(b1=0.8, b2=0.95),
    om.SGD(lr=0.1),
    om.SGD(lr=0.1, momentum=0.9),
    om.SGD(lr=0.1, momentum=0.5, nesterov=True),
    om.AdamW(weight_decay=0.1),
    om.AMSGrad(b2=0.9),
    om.Adamax(),
    om.NAdam(),
    om.RMSProp(momentum=0.9),
    om.Adagrad(initial_accumulator=0.1),
    om.Adadelta(eps=1e-3),
    om.Lion(weight_decay=0.1),
]
ALGORITHM_IDS = ["Adam", "SGD", "SGD-momentum", "SGD-Nesterov", *(type(a).__name__ for a in ALGORITHMS[4:])]

LR_SCHEDULES = [
    exponential_decay(0.1, 0.5, decay_steps=2),  # strictly decreasing: an off-by-one shows
    warmup(cosine_decay(0.08, decay_steps=4, alpha=0.2), steps=2, start=0.01),
]


@pytest.mark.parametrize("schedule", LR_SCHEDULES, ids=["exponential", "warmup-cosine"])
@pytest.mark.parametrize("alg", ALGORITHMS, ids=ALGORITHM_IDS)
def test_a_schedule_gives_the_iterates_of_its_float_values_step_by_step(alg: Any, schedule: Any) -> None:
    seen: list[np.ndarray] = []
    om.solve(_quadratic(), dataclasses.replace(alg, lr=schedule), maxiters=STEPS, callback=lambda i: seen.append(i.u))
    # Reference: the same algorithm with lr = schedule(k) as a float for update k = 0, 1, ...
    x, state, expected = X0.copy(), alg.init(X0.copy()), []
    for k in range(STEPS):
        x, state = dataclasses.replace(alg, lr=float(schedule(k))).update(A @ (x - C), x, state)
        expected.append(x.copy())
    assert len(seen) == STEPS
    for k, (got, want) in enumerate(zip(seen, expected)):
        np.testing.assert_array_equal(got, want, err_msg=f"step {k}")


@pytest.mark.parametrize("alg", ALGORITHMS, ids=ALGORITHM_IDS)
def test_the_schedule_is_called_with_the_updates_made_before(alg: Any) -> None:
    calls: list[int] = []

    def lr(step: int) -> float:
        calls.append(step)
        return 0.01

    om.solve(_quadratic(), dataclasses.replace(alg, lr=lr), maxiters=STEPS)
    assert calls == list(range(STEPS))


@pytest.mark.parametrize("bad", [NAN, -1.0, "0.1"], ids=["nan", "negative", "string"])
@pytest.mark.parametrize("alg", ALGORITHMS, ids=ALGORITHM_IDS)
def test_a_schedule_returning_a_bad_value_stops_solve(alg: Any, bad: Any) -> None:
    def lr(step: int) -> Any:
        return bad if step == 2 else 0.01

    with pytest.raises(ValueError, match=rf"\blr\b.*{re.escape(repr(bad))} at step 2\b"):
        om.solve(_quadratic(), dataclasses.replace(alg, lr=lr), maxiters=STEPS)
