"""The step-wise finiteness check: every NaN or infinity is caught, and no finite value is refused."""

from __future__ import annotations

import numpy as np
import pytest

from optimeta.backends._base import all_finite


@pytest.mark.parametrize("size", [1, 2, 10, 1024, 1025, 4096, 4097, 5000])
def test_finite_vectors_pass_even_at_the_edge_of_the_range(size: int) -> None:
    rng = np.random.default_rng(size)
    v = rng.normal(size=size) * 10.0 ** rng.integers(-300, 300, size=size)
    v[0] = np.finfo(np.float64).max
    v[-1] = -np.finfo(np.float64).max
    assert all_finite(v)
    assert all_finite(np.zeros(size))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("size", [1, 3, 1024, 1025, 4096, 4097, 5000])
def test_a_single_non_finite_element_anywhere_is_caught(size: int, bad: float) -> None:
    for where in {0, size // 2, size - 1}:
        v = np.ones(size)
        v[where] = bad
        assert not all_finite(v)
