"""The validation of hyperparameters, shared by the backends' ``__post_init__``.

Each check takes the hyperparameter's name and value and raises, with a message that names the
hyperparameter and echoes the bad value: a `TypeError` for a value of the wrong kind (a string
for a number), a `ValueError` for one out of range.

* `check_positive`, `check_nonnegative`, `check_fraction`, `check_range`: real numbers;
* `check_positive_int`: counts and sizes;
* `check_rate`: a step size, a number or a schedule ``lr(step) -> float``, and `rate_at`, its
  value at one step.

Example:
    >>> from optimeta.backends._checks import check_positive
    >>> check_positive("lr", -1.0)
    Traceback (most recent call last):
        ...
    ValueError: lr must be positive and finite, got -1.0
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .._values import is_positive_int

__all__ = [
    "check_fraction",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_range",
    "check_rate",
    "rate_at",
]


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def check_range(
    name: str, value: Any, lo: float, hi: float, *, closed_lo: bool = False, closed_hi: bool = True
) -> None:
    """Require a real ``value`` in the interval from `lo` to `hi` (ends closed as asked)."""
    v = _real(name, value)
    above = v >= lo if closed_lo else v > lo
    below = v <= hi if closed_hi else v < hi
    if not (above and below):
        interval = f"{'[' if closed_lo else '('}{lo:g}, {hi:g}{']' if closed_hi else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    """Require a finite real ``value > 0``; the error echoes the bad value."""
    if not (math.isfinite(_real(name, value)) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    """Require a finite real ``value >= 0``; the error echoes the bad value."""
    if not (math.isfinite(_real(name, value)) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    """Require an integer ``value >= 1``; the error echoes the bad value."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_fraction(name: str, value: Any) -> None:
    """Require a real ``0 <= value < 1``; the error echoes the bad value."""
    if not 0 <= _real(name, value) < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_rate(name: str, value: Any) -> None:
    """Require a step size: a finite real ``value > 0``, or a schedule ``value(step) -> float``."""
    if callable(value) and not isinstance(value, type):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number or a schedule lr(step) -> float, got {value!r}")
    check_positive(name, value)


def rate_at(name: str, value: Any, step: int) -> float:
    """The step size for update number `step` (0 for the first): `value` itself, or `value(step)`.

    A schedule's value must be a finite number >= 0; anything else is a ValueError naming it.
    """
    if not callable(value):
        return float(value)
    out = value(step)
    if isinstance(out, bool) or not isinstance(out, numbers.Real) or not (math.isfinite(out) and float(out) >= 0):
        raise ValueError(
            f"the schedule {name}={value!r} returned {out!r} at step {step}; it must return a finite number >= 0"
        )
    return float(out)
