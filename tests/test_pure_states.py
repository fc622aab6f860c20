"""Algorithm states are pure: a step never writes the state or the iterate it is given.

For every step-wise algorithm the registry holds (in each configuration its class declares), one
step taken twice from the same iterate and state gives the same result byte for byte, the iterate
and the state given are unchanged, and the result of the first step survives the second. The
first-order family is also checked at a size where the run's memory is recycled, on the NumPy
path and on the fused numba kernels. Only the driver donates an iterate and a state it alone
holds (`step_donated`), and a donated step gives the pure step's result, bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from typing import Any

import numpy as np
import pytest
from catalogue import ALGORITHMS, AlgorithmCase, stepwise

from optimeta.backends import _kernels
from optimeta.backends._base import FirstOrderAlgorithm
from optimeta.backends._kernels import RECYCLE_MIN_SIZE, Recycler

STEPWISE = [case for case in ALGORITHMS if stepwise(case.alg)]
FIRST_ORDER = [case for case in STEPWISE if isinstance(case.alg, FirstOrderAlgorithm)]


class Quartic:
    """A smooth objective with an analytic gradient: sum(w (x - c)^2) + sum(x^4) / 4, counted."""

    def __init__(self, n: int) -> None:
        self.w = np.linspace(0.5, 2.0, n)
        self.c = np.linspace(1.0, -1.0, n)
        self.calls = 0

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.calls += 1
        d = x - self.c
        return float(self.w @ (d * d) + 0.25 * np.sum(x**4)), 2.0 * self.w * d + x**3


def fingerprint(value: Any) -> Any:
    """Every array's dtype, shape and bytes and every number's repr in `value`, recursively; a
    `Recycler` (the run's spare memory, shared by its states) is left out."""
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, Recycler):
        return "recycler"
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(fingerprint(v) for v in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, tuple(fingerprint(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, dict):
        return tuple(sorted((repr(k), fingerprint(v)) for k, v in value.items()))
    if value is None or isinstance(value, (bool, int, float, str, enum.Enum, np.generic)):
        return repr(value)
    raise TypeError(f"the test cannot fingerprint a {type(value).__name__} in a state: {value!r}")


def _advanced(case: AlgorithmCase, objective: Quartic, n: int, box: Any) -> tuple[np.ndarray, Any]:
    """An iterate and a state three steps into a run (fewer if the algorithm ends sooner)."""
    x = np.linspace(-1.0, 1.0, n)
    state = case.alg.init(x)
    for _ in range(3):
        x_new, new_state, _ = case.alg.step(objective, x, state, box)
        if case.alg.terminate(new_state) is not None:
            break
        x, state = x_new, new_state
    return x, state


def _check_a_step_twice(case: AlgorithmCase, n: int, box: Any = None) -> None:
    objective = Quartic(n)
    x, state = _advanced(case, objective, n, box)
    given = fingerprint((x, state))
    start = objective.calls
    first = case.alg.step(objective, x, state, box)
    after_first, calls = fingerprint(first), objective.calls - start
    second = case.alg.step(objective, x, state, box)
    assert fingerprint((x, state)) == given, "a step wrote the iterate or the state it was given"
    assert fingerprint(second) == after_first, "the same step from the same state gave another result"
    assert objective.calls - start == 2 * calls >= 2, "the same step made another number of evaluations"
    assert fingerprint(first) == after_first, "the second step wrote over the first one's result"
    third = case.alg.step(objective, first[0], first[1], box)  # the run goes on from the first result
    assert fingerprint(first) == after_first, "stepping on from a result wrote it"
    assert fingerprint(third) != after_first


def _kernel_path(fused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the fused numba kernels at every size (skipped without numba), or the NumPy path."""
    if fused:
        if not _kernels.have_numba():
            pytest.skip("numba is not installed (pip install numba): the fused kernels are not used")
        monkeypatch.setattr(_kernels, "FUSED_MIN_SIZE", 1)


@pytest.mark.parametrize("case", STEPWISE, ids=repr)
def test_a_step_taken_twice_from_one_state_gives_the_same_result(case: AlgorithmCase) -> None:
    _check_a_step_twice(case, 6)


@pytest.mark.parametrize("case", FIRST_ORDER, ids=repr)
def test_a_projected_step_writes_nothing_it_was_given(case: AlgorithmCase) -> None:
    _check_a_step_twice(case, 6, box=(np.full(6, -0.5), np.full(6, 0.5)))


@pytest.mark.parametrize("fused", [False, True], ids=["numpy", "fused"])
@pytest.mark.parametrize("case", FIRST_ORDER, ids=repr)
def test_a_step_with_recycled_memory_writes_nothing_it_was_given(
    case: AlgorithmCase, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kernel_path(fused, monkeypatch)
    _check_a_step_twice(case, RECYCLE_MIN_SIZE)


def _check_donated_equals_pure(case: AlgorithmCase, n: int, box: Any = None) -> None:
    objective = Quartic(n)
    x, state = _advanced(case, objective, n, box)
    pure = fingerprint(case.alg.step(objective, x, state, box))
    # The driver donates what it alone holds: copies here, so that the pure step's inputs stay.
    x_donated, state_donated = copy.deepcopy(x), copy.deepcopy(state)
    donated = case.alg.step_donated(objective, x_donated, state_donated, box)
    assert fingerprint(donated) == pure, "a donated step gave another result than the pure one"


@pytest.mark.parametrize("case", STEPWISE, ids=repr)
def test_a_donated_step_gives_the_pure_steps_result(case: AlgorithmCase) -> None:
    _check_donated_equals_pure(case, 6)


@pytest.mark.parametrize("fused", [False, True], ids=["numpy", "fused"])
@pytest.mark.parametrize("case", FIRST_ORDER, ids=repr)
def test_a_large_donated_step_gives_the_pure_steps_result(
    case: AlgorithmCase, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kernel_path(fused, monkeypatch)
    _check_donated_equals_pure(case, RECYCLE_MIN_SIZE)
    _check_donated_equals_pure(
        case, RECYCLE_MIN_SIZE, box=(np.full(RECYCLE_MIN_SIZE, -0.5), np.full(RECYCLE_MIN_SIZE, 0.5))
    )
