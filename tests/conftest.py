"""Fixtures shared by the test modules."""

from __future__ import annotations

from typing import Any

import pytest

import optimeta._native as native_module


@pytest.fixture
def steps_built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The native steps the runs build (one entry per run: the step, or None for NumPy)."""
    built: list[Any] = []
    for name, build in list(native_module.STEPS.items()):

        def spy(objective: Any, alg: Any, build: Any = build) -> Any:
            step = build(objective, alg)
            built.append(step)
            return step

        monkeypatch.setitem(native_module.STEPS, name, spy)
    return built
