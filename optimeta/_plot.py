"""`plot`: convergence curves of recorded solves, drawn with matplotlib (extra ``plot``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._observe import History
from ._solution import Solution

__all__ = ["plot"]

_AXES = {"evaluations": "calls of f", "time": "seconds", "iterations": "steps"}


def plot(
    solutions: Solution | Sequence[Solution] | Mapping[str, Solution | History],
    *,
    x: str = "evaluations",
    ax: Any = None,
    log: bool | None = None,
    title: str | None = None,
) -> Any:
    r"""Convergence curves: the objective after every step of each solve, against the calls of
    ``f`` made so far, the time, or the steps.

    Each solve must have been run with ``record=True`` (its `Solution.history`). One curve per
    solution, labelled with the mapping's key or the algorithm's name. A solve whose algorithm
    reports no steps (`DualAnnealing`, `SHGO`) is drawn as one point, its end.

    Args:
        solutions: A `Solution`, a sequence of them, or a mapping ``label -> Solution``; a
            mapping's values may also be `History` objects (e.g. built from another library's
            run, as the benchmarks do for their peers).
        x: ``"evaluations"`` (calls of ``f``), ``"time"`` (seconds since the run started) or
            ``"iterations"``.
        ax: A matplotlib ``Axes`` to draw on; None draws on a new ``Figure`` (not registered
            with ``pyplot``: save it with ``ax.figure.savefig(path)``, or show it in a notebook
            with ``ax.figure``).
        log: A logarithmic objective axis; None: when every value drawn is positive.
        title: The axes' title.

    Returns:
        The matplotlib ``Axes``, one line per solution.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'optimeta[plot]'``).
        ValueError: ``x`` is not one of the three, no solution is given, or one has no history
            (solve it with ``record=True``).
        TypeError: ``solutions`` holds something other than `Solution` objects.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(3))
        >>> runs = {"Adam": om.solve(prob, om.Adam(lr=0.1), maxiters=100, record=True),
        ...         "BFGS": om.solve(prob, om.BFGS(), record=True)}
        >>> ax = om.plot(runs, x="evaluations")
        >>> [line.get_label() for line in ax.get_lines()]
        ['Adam', 'BFGS']
    """
    if x not in _AXES:
        raise ValueError(f'x must be "evaluations", "time" or "iterations", got {x!r}')
    runs = _labelled(solutions)
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "om.plot draws with matplotlib, which is not installed: pip install 'optimeta[plot]'"
        ) from exc
    if ax is None:
        ax = Figure(figsize=(6.4, 4.2), layout="constrained").subplots()
    drawn: list[np.ndarray] = []
    for label, sol in runs:
        history = sol if isinstance(sol, History) else sol.history
        assert history is not None
        if len(history) == 0 and isinstance(sol, Solution):  # no steps reported: the run's end
            xs = np.array(
                [{"evaluations": sol.stats.fevals, "time": sol.stats.time, "iterations": sol.stats.iterations}[x]]
            )
            ys = np.array([sol.objective])
            ax.plot(xs, ys, marker="o", linestyle="none", label=label)
        else:
            xs = {"evaluations": history.fevals, "time": history.time, "iterations": history.iteration}[x]
            ys = history.objective
            ax.plot(xs, ys, label=label)
        drawn.append(ys[np.isfinite(ys)])
    values = np.concatenate(drawn)
    if log is None:
        log = values.size > 0 and bool(np.all(values > 0))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(_AXES[x])
    ax.set_ylabel("objective")
    if title is not None:
        ax.set_title(title)
    ax.legend()
    return ax


def _labelled(solutions: Any) -> list[tuple[str, Solution | History]]:
    """(label, solution) pairs, each solution checked to have a history."""
    if isinstance(solutions, Solution):
        pairs = [(type(solutions.algorithm).__name__, solutions)]
    elif isinstance(solutions, Mapping):
        pairs = [(str(k), v) for k, v in solutions.items()]
    elif isinstance(solutions, Sequence) and not isinstance(solutions, (str, bytes)):
        pairs = [(type(getattr(s, "algorithm", None)).__name__, s) for s in solutions]
    else:
        raise TypeError(
            f"solutions must be a Solution, a sequence of them or a mapping label -> Solution, got {solutions!r}"
        )
    if not pairs:
        raise ValueError("solutions is empty: give at least one Solution")
    seen: dict[str, int] = {}
    out: list[tuple[str, Solution | History]] = []
    for label, sol in pairs:
        if isinstance(sol, History) and isinstance(solutions, Mapping):
            pass
        elif not isinstance(sol, Solution):
            raise TypeError(f"solutions must hold Solution objects, got {sol!r}")
        elif sol.history is None:
            raise ValueError(
                f"the solution labelled {label!r} has no history: solve it with record=True to plot its convergence"
            )
        seen[label] = seen.get(label, 0) + 1
        out.append((label if seen[label] == 1 else f"{label} #{seen[label]}", sol))
    return out
