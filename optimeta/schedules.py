"""Step-size schedules: ``lr(step) -> float`` for every first-order algorithm's ``lr``.

A schedule is called with the number of updates made before the current one (0 for the first
update), as in optax. Each is a frozen dataclass, so it compares by value, pickles, and shows
its parameters; `warmup` composes a linear warm-up with any schedule.

Example:
    >>> import optimeta as om
    >>> lr = om.schedules.warmup(om.schedules.cosine_decay(0.1, decay_steps=100), steps=10)
    >>> [round(lr(k), 4) for k in (0, 5, 10, 60, 110, 500)]
    [0.0, 0.05, 0.1, 0.05, 0.0, 0.0]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._values import is_positive_int

__all__ = ["Schedule", "constant", "cosine_decay", "exponential_decay", "warmup"]

#: What ``lr=`` accepts besides a number: any callable ``lr(step) -> float``.
Schedule = Callable[[int], float]


def _number(name: str, value: Any, *, positive: bool = False, allow_zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if value < 0 or (positive and value == 0) or (not allow_zero and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else '>= 0'}, got {value!r}")


def _steps(name: str, value: Any) -> None:
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class constant:
    """``lr(step) = value``."""

    value: float

    def __post_init__(self) -> None:
        _number("value", self.value, positive=True)

    def __call__(self, step: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class exponential_decay:
    r"""``lr(step) = init * rate ** (step / decay_steps)``, floored to whole periods with
    ``staircase=True``: :math:`\eta_k = \eta_0 \gamma^{k / K}`."""

    init: float
    rate: float
    decay_steps: int = 1
    staircase: bool = False

    def __post_init__(self) -> None:
        _number("init", self.init, positive=True)
        _number("rate", self.rate, positive=True)
        if self.rate > 1:
            raise ValueError(f"rate must be in (0, 1] for a decay, got {self.rate!r}")
        _steps("decay_steps", self.decay_steps)
        if not isinstance(self.staircase, bool):
            raise TypeError(f"staircase must be a bool, got {self.staircase!r}")

    def __call__(self, step: int) -> float:
        periods = step // self.decay_steps if self.staircase else step / self.decay_steps
        return float(self.init * self.rate**periods)


@dataclass(frozen=True)
class cosine_decay:
    r"""Cosine decay from ``init`` to ``alpha * init`` over ``decay_steps``, then constant:
    :math:`\eta_k = \eta_0 \left(\alpha + (1 - \alpha) \tfrac{1}{2}(1 + \cos(\pi \min(k, K) / K))\right)`
    (Loshchilov & Hutter, 2017, "SGDR", without restarts)."""

    init: float
    decay_steps: int
    alpha: float = 0.0

    def __post_init__(self) -> None:
        _number("init", self.init, positive=True)
        _steps("decay_steps", self.decay_steps)
        _number("alpha", self.alpha)
        if self.alpha > 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")

    def __call__(self, step: int) -> float:
        done = min(step, self.decay_steps) / self.decay_steps
        return float(self.init * (self.alpha + (1.0 - self.alpha) * 0.5 * (1.0 + math.cos(math.pi * done))))


@dataclass(frozen=True)
class warmup:
    """A linear warm-up from ``start`` to ``schedule(0)`` over ``steps``, then ``schedule(step - steps)``.

    ``schedule`` is a number or any schedule; it starts once the warm-up ends.
    """

    schedule: float | Schedule
    steps: int
    start: float = 0.0

    def __post_init__(self) -> None:
        if not callable(self.schedule):
            _number("schedule", self.schedule, positive=True)
        _steps("steps", self.steps)
        _number("start", self.start)

    def _after(self, step: int) -> float:
        return float(self.schedule(step)) if callable(self.schedule) else float(self.schedule)

    def __call__(self, step: int) -> float:
        if step < self.steps:
            return float(self.start + (self._after(0) - self.start) * step / self.steps)
        return self._after(step - self.steps)
