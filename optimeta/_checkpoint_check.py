"""The validation of a `Checkpoint` (``_checkpoint_io``): every field's type and range, and the
fields against each other.

`Checkpoint.validate` runs these checks in order, when a checkpoint is built, saved or resumed
(an unpickled one was never built). Each raises a TypeError (a field of the wrong type) or a
ValueError (a bad value, or fields that contradict each other) that names the field.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from ._codec import stepwise_classes
from ._observe import History
from ._solution import ReturnCode
from ._state import short_repr
from ._values import is_positive_int

if TYPE_CHECKING:
    from ._checkpoint_io import Checkpoint

__all__ = [
    "check_algorithm",
    "check_count",
    "check_ending",
    "check_iterate",
    "check_progress",
    "check_scalars",
]


def check_count(owner: str, name: str, value: Any) -> None:
    """Refuse a count (``owner.name``) that is not a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}.{name} must be a non-negative integer, got {value!r}")


def _real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def check_iterate(name: str, value: Any, size: int | None = None) -> None:
    """Refuse an iterate (``Checkpoint.name``) that is not a non-empty 1-d float64 array (of
    `size` elements, when given)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"Checkpoint.{name} must be a NumPy array, got {type(value).__name__}")
    if value.ndim != 1 or value.dtype != np.float64 or value.size == 0:
        raise ValueError(f"Checkpoint.{name} must be a non-empty 1-d float64 array, got {value.dtype} {value.shape}")
    if size is not None and value.size != size:
        raise ValueError(f"Checkpoint.{name} must have the {size} elements of x, got {value.size}")


def check_algorithm(algorithm: Any) -> None:
    """Refuse an algorithm that is not an instance of a registered step-wise algorithm."""
    stepwise = stepwise_classes()
    if type(algorithm) not in stepwise.values():
        raise TypeError(
            "Checkpoint.algorithm must be an instance of a registered step-wise algorithm ("
            + ", ".join(sorted(stepwise))
            + f"), got {short_repr(algorithm)}"
        )


def check_scalars(cp: Checkpoint) -> None:
    """The budgets, the counters of the schedule, the loss, the ending, the layout and the
    state, each on its own."""
    if not (_real(cp.elapsed) and 0 <= cp.elapsed < math.inf):
        raise ValueError(f"Checkpoint.elapsed must be a finite number of seconds >= 0, got {cp.elapsed!r}")
    if cp.maxiters is not None and (not is_positive_int(cp.maxiters)):
        raise ValueError(f"Checkpoint.maxiters must be a positive integer or None, got {cp.maxiters!r}")
    if cp.maxtime is not None and not (_real(cp.maxtime) and 0 < cp.maxtime < math.inf):
        raise ValueError(f"Checkpoint.maxtime must be a positive, finite number or None, got {cp.maxtime!r}")
    if not is_positive_int(cp.epochs):
        raise ValueError(f"Checkpoint.epochs must be a positive integer, got {cp.epochs!r}")
    check_count("Checkpoint", "consumed", cp.consumed)
    length = cp.data_length
    if length is not None and not is_positive_int(length):
        raise ValueError(f"Checkpoint.data_length must be a positive integer or None, got {cp.data_length!r}")
    if not _real(cp.loss):
        raise TypeError(f"Checkpoint.loss must be a real number, got {short_repr(cp.loss)}")
    if cp.ended is not None and not isinstance(cp.ended, ReturnCode):
        raise TypeError(f"Checkpoint.ended must be an om.ReturnCode or None, got {short_repr(cp.ended)}")
    if not isinstance(cp.layout, str) or not cp.layout:
        raise TypeError(f"Checkpoint.layout must be a non-empty str (describe_layout), got {short_repr(cp.layout)}")
    if not isinstance(cp.stateful, bool):
        raise TypeError(f"Checkpoint.stateful must be True or False, got {cp.stateful!r}")
    if not cp.stateful and cp.state is not None:
        raise ValueError(
            f"Checkpoint.state must be None for a stateless run (stateful=False), got {short_repr(cp.state)}"
        )


def check_progress(cp: Checkpoint) -> None:
    """The counters against each other (steps taken, budget, skips, passes over the data), and
    what the run observes against what it recorded."""
    iterations = cp.counts.iterations
    if cp.consumed < iterations:
        raise ValueError(
            f"Checkpoint.consumed ({cp.consumed}) must be at least counts.iterations ({iterations}): "
            "every step takes one item of the schedule"
        )
    if cp.maxiters is not None and iterations > cp.maxiters:
        raise ValueError(f"Checkpoint.counts.iterations ({iterations}) must be at most maxiters ({cp.maxiters})")
    if cp.skips.skipped > iterations:
        raise ValueError(
            f"Checkpoint.skips.skipped ({cp.skips.skipped}) must be at most counts.iterations ({iterations})"
        )
    if cp.data_length is None:
        if cp.epochs != 1:
            raise ValueError(f"Checkpoint.epochs must be 1 for a run without data, got {cp.epochs!r}")
    elif cp.consumed > cp.epochs * cp.data_length:
        raise ValueError(
            f"Checkpoint.consumed ({cp.consumed}) must be at most epochs * data_length ({cp.epochs} * {cp.data_length})"
        )
    _check_observed(cp, iterations)


def _check_observed(cp: Checkpoint, iterations: int) -> None:
    observe = cp.observe
    if not (
        isinstance(observe, tuple)
        and len(observe) == 3
        and (isinstance(observe[0], bool) or observe[0] == "u")
        and isinstance(observe[1], bool)
        and isinstance(observe[2], bool)
    ):
        raise TypeError(f"Checkpoint.observe must be (record, progress, verbose), got {short_repr(observe)}")
    history = cp.history
    if not observe[0]:
        if history is not None:
            raise ValueError("Checkpoint.history must be None for a run without record")
        return
    if not isinstance(history, History):
        raise TypeError(f"Checkpoint.history must be an om.History for a run with record, got {short_repr(history)}")
    n = history.iteration.size if isinstance(history.iteration, np.ndarray) else 0
    for name in ("iteration", "objective", "fevals", "time"):
        value = getattr(history, name)
        if not isinstance(value, np.ndarray) or value.shape != (n,):
            got = f"shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise ValueError(f"Checkpoint.history.{name} must be a 1-d array of the {n} steps recorded, got {got}")
    if n > iterations:
        raise ValueError(f"Checkpoint.history has {n} steps, more than counts.iterations ({iterations})")
    if (history.u is None) != (observe[0] != "u") or (history.u is not None and len(history.u) != n):
        raise ValueError(f"Checkpoint.history.u must be a list of the {n} iterates with record='u', else None")


def check_ending(cp: Checkpoint) -> None:
    """The final solution's loss and message, the best point and the partial solution's point."""
    final = cp.final
    if final is not None:
        if not (isinstance(final, tuple) and len(final) == 2 and _real(final[0]) and isinstance(final[1], str)):
            raise TypeError(f"Checkpoint.final must be (loss, message) or None, got {short_repr(final)}")
        if cp.ended is None:
            raise ValueError("Checkpoint.final must be None while the run may go on (ended is None)")
    if cp.best is not None:
        if not (isinstance(cp.best, tuple) and len(cp.best) == 2 and _real(cp.best[0])):
            raise TypeError(f"Checkpoint.best must be (loss, iterate) or None, got {short_repr(cp.best)}")
        check_iterate("best[1]", cp.best[1], cp.x.size)
    if cp.evaluated is not None:
        if not (isinstance(cp.evaluated, tuple) and len(cp.evaluated) == 2 and _real(cp.evaluated[1])):
            raise TypeError(f"Checkpoint.evaluated must be (iterate, loss) or None, got {short_repr(cp.evaluated)}")
        check_iterate("evaluated[0]", cp.evaluated[0], cp.x.size)
