"""Watching a run: its `History` (``record=``), a progress bar (``progress=``) and log records
(``verbose=``), fed by the monitor after every step."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._solution import Solution
    from ._values import Layout

__all__ = ["History", "Observer", "check_observe_options"]

logger = logging.getLogger("optimeta")

#: Seconds between two refreshes of the bar's objective, and between two progress log records.
_BAR_INTERVAL = 0.2
_LOG_INTERVAL = 1.0


@dataclass(frozen=True, eq=False)
class History:
    """What ``solve(..., record=True)`` kept of every step, one entry per step.

    Attributes:
        iteration: Steps completed (1, 2, ...), as ``int64``.
        objective: The loss each step reported, in the user's sense, as ``float64`` (for
            first-order algorithms, at the iterate before the step's update, as the callback
            sees it).
        fevals: Calls of ``f`` made so far, after each step (the determinism probe's excluded).
        time: Seconds since the run started, after each step.
        u: With ``record="u"``, the iterate after each step (structure of ``u0``, arrays the
            caller owns); None otherwise.

    Algorithms that report no steps (``supports_callback=False``: `DualAnnealing`, `SHGO`) have
    an empty history.
    """

    iteration: np.ndarray
    objective: np.ndarray
    fevals: np.ndarray
    time: np.ndarray
    u: list[Any] | None = None

    def __len__(self) -> int:
        return int(self.iteration.size)


def check_observe_options(record: Any, progress: Any, verbose: Any) -> None:
    """Refuse bad values of ``record``, ``progress`` and ``verbose`` (and a progress bar
    without tqdm) before any call of the objective."""
    if not (isinstance(record, bool) or record == "u"):
        raise ValueError(f'record must be True, False or "u" (the iterates too), got {record!r}')
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if not isinstance(verbose, bool):
        raise TypeError(f"verbose must be True or False, got {verbose!r}")
    if progress:
        try:
            import tqdm  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "progress=True draws its bar with tqdm, which is not installed: pip install 'optimeta[progress]'"
            ) from exc


class Observer:
    """Everything that watches one solve (a `Chain`'s stages share one): called by the monitor
    after every step with the step's number, iterate, loss and counts.

    Args:
        record: False, True, or "u" (keep the iterates too).
        progress: Draw a tqdm bar.
        verbose: Log through the ``"optimeta"`` logger.
        sense: The problem's ``sense``: losses are reported in the user's sense.

    Attributes:
        layout: The problem's layout, which gives iterates the structure of ``u0`` (set when
            the run starts).
    """

    def __init__(self, record: bool | str, progress: bool, verbose: bool, sense: str) -> None:
        self.record = bool(record)
        self.keep_u = record == "u"
        self.verbose = verbose
        self.layout: Layout | None = None
        self.sign = -1.0 if sense == "max" else 1.0
        self.iterations: list[int] = []
        self.objectives: list[float] = []
        self.fevals: list[int] = []
        self.times: list[float] = []
        self.us: list[Any] = []
        # Offsets of a chain's later stages: their steps, calls and time follow the earlier ones'.
        self.offset = (0, 0, 0.0)
        self.bar: Any = None
        self.progress = progress
        self._shown = -math.inf
        self._logged = -math.inf

    def start(self, name: str, n: int, total: int | None, resumed: int = 0) -> None:
        """A run (or a chain's stage) starts: `name` of its algorithm, `n` variables, `total`
        planned steps if known; a run resumed (from a checkpoint, or after `Solver.step`)
        after `resumed` steps, which `total` counts."""
        if self.verbose:
            budget = "" if total is None else f", at most {total} steps"
            at = f" at step {resumed + 1}" if resumed else ""
            logger.info("%s: started%s on %d variables%s", name, at, n, budget)
        if self.progress:
            from tqdm.auto import tqdm

            done = self.offset[0]
            if self.bar is None:
                self.bar = tqdm(
                    total=None if total is None else done + total,
                    initial=resumed,
                    desc=name,
                    unit="step",
                    leave=True,
                )
            else:  # a chain's next stage: the same bar, renamed
                self.bar.set_description(name)
                self.bar.total = None if total is None else done + total
                self.bar.refresh()

    def step(self, iteration: int, x: np.ndarray, loss: float, fevals: int, elapsed: float) -> None:
        """One step ended."""
        steps, calls, seconds = self.offset
        objective = self.sign * float(loss)
        if self.record:
            self.iterations.append(steps + iteration)
            self.objectives.append(objective)
            self.fevals.append(calls + fevals)
            self.times.append(seconds + elapsed)
            if self.keep_u and self.layout is not None:
                self.us.append(self.layout.to_user(x))
        if self.bar is not None:
            self.bar.update(1)
            now = time.perf_counter()
            if now - self._shown >= _BAR_INTERVAL:
                self._shown = now
                self.bar.set_postfix(objective=f"{objective:.6g}", refresh=False)
        if self.verbose:
            now = time.perf_counter()
            if now - self._logged >= _LOG_INTERVAL:
                self._logged = now
                logger.info("step %d: objective %.6g (%.2f s)", steps + iteration, objective, seconds + elapsed)

    def stage_done(self, iterations: int, fevals: int, elapsed: float) -> None:
        """A chain's stage ended after these counts: the next one's follow them."""
        steps, calls, seconds = self.offset
        self.offset = (steps + iterations, calls + fevals, seconds + elapsed)

    def restore(self, history: History | None) -> None:
        """Go on recording after `history`, what a checkpointed run recorded so far."""
        if history is not None:
            self.iterations = [int(i) for i in history.iteration]
            self.objectives = [float(v) for v in history.objective]
            self.fevals = [int(c) for c in history.fevals]
            self.times = [float(t) for t in history.time]
            self.us = list(history.u or [])

    def history(self) -> History | None:
        """The recorded `History` (None without ``record``)."""
        if not self.record:
            return None
        return History(
            iteration=np.array(self.iterations, dtype=np.int64),
            objective=np.array(self.objectives, dtype=np.float64),
            fevals=np.array(self.fevals, dtype=np.int64),
            time=np.array(self.times, dtype=np.float64),
            u=list(self.us) if self.keep_u else None,
        )

    def end(self, solution: Solution | None, error: BaseException | None = None) -> None:
        """The run ended with `solution`, or with `error` raised."""
        if self.bar is not None:
            if solution is not None:
                self.bar.set_postfix(objective=f"{solution.objective:.6g}", refresh=False)
            self.bar.close()
            self.bar = None
        if self.verbose:
            if solution is not None:
                s = solution.stats
                logger.info(
                    "%s: %s after %d steps: objective %.6g, %d evaluations of f, %d gradients, %.3g s",
                    type(solution.algorithm).__name__,
                    solution.retcode.name,
                    s.iterations,
                    solution.objective,
                    s.fevals,
                    s.gevals,
                    s.time,
                )
            elif error is not None:
                logger.info("interrupted by %s", type(error).__name__)


class _BarSafeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records above a tqdm bar instead of into its line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's contract: a failing handler reports, never raises
            self.handleError(record)


@contextmanager
def logging_to_stderr(verbose: bool, progress: bool = False) -> Iterator[None]:
    """With `verbose`, the ``"optimeta"`` logger's INFO records are shown: when no handler is
    configured for them anywhere (the application set up no logging), one to stderr is added
    for the run (writing above the progress bar, with `progress`); the logger's level is
    lowered to INFO for the run if it was higher."""
    if not verbose:
        yield
        return
    handler = None
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    if not _has_handler(logger):
        handler = _BarSafeHandler(sys.stderr) if progress else logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("optimeta: %(message)s"))
        logger.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(level)


def _has_handler(log: logging.Logger) -> bool:
    """Whether a record of `log` reaches a handler that shows it (a NullHandler does not)."""
    current: logging.Logger | None = log
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False
