"""`Checkpoint`: a step-wise run's progress as plain data, validated when built, and its file format.

A checkpoint holds the iterate, the algorithm and its state, the counters, the committed user
state and the budgets used, never the problem, the objective or the data: `resume` is given
those again and checks that the checkpoint fits them.

`Checkpoint.save` writes one ``.npz`` archive (``numpy.savez``) that `Checkpoint.load` reads with
``numpy.load(allow_pickle=False)``, so loading runs no code from the file:

* entry ``meta``: UTF-8 JSON (as a ``uint8`` array) with ``"format": "optimeta.checkpoint"``,
  ``"version": 1``, the counters and flags in the open, and every other field as a *node*;
* entries ``a0``, ``a1``, ...: the arrays (and NumPy scalars, as 0-d arrays) the nodes refer to;
* entries ``pickle.<part>``: with ``save(path, allow_pickle=True)`` only, a part that is not
  plain data (an arbitrary object in the user's state), pickled; `load` refuses to unpickle it
  unless given ``allow_pickle=True``.

A node is JSON: ``null``, booleans, integers, strings and finite floats stand for themselves
(JSON floats round-trip exactly); ``{"float": bits}`` is a non-finite float by its 8 bytes;
``{"array": key}`` / ``{"scalar": key}`` an archive entry; ``{"dict": [[key, node], ...]}``
(str keys), ``{"list": [...]}``, ``{"tuple": [...]}`` containers; ``{"generator": ...}`` a
``np.random.Generator`` by its bit generator's name and state; ``{"type": name, ...}`` an
instance of a known class: a registered step-wise algorithm by its name and hyperparameters, a
schedule of `optimeta.schedules`, or a type of a step-wise algorithm's module (its state
NamedTuple, `ReturnCode`), rebuilt from its fields. Classes are looked up among those known,
never imported by a name read from the file.

This module holds the checkpoint's records (`Checkpoint`, `Counts`, `Skips`) and
`describe_layout`; the checks of `Checkpoint.validate` are in ``_checkpoint_check``, and the
archive's writing and reading in ``_checkpoint_file``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checkpoint_check import (
    check_algorithm,
    check_count,
    check_ending,
    check_iterate,
    check_progress,
    check_scalars,
)
from ._checkpoint_file import read, write
from ._observe import History
from ._solution import ReturnCode
from ._state import short_repr
from ._tree import LeafSpec, children, is_namedtuple
from .backends._base import StepwiseAlgorithm

__all__ = ["Checkpoint", "Counts", "Skips", "describe_layout"]


@dataclass(frozen=True)
class Counts:
    """A run's counters so far, as in `Stats` (all non-negative integers).

    Attributes:
        iterations: Steps completed.
        fevals: Calls of ``f``.
        gevals: Gradients.
        probe_fevals: Calls of ``f`` by the determinism probe.
        hevals: Second derivatives.
    """

    iterations: int
    fevals: int
    gevals: int
    probe_fevals: int
    hevals: int

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_count("Counts", field.name, getattr(self, field.name))


@dataclass(frozen=True)
class Skips:
    """``nan_policy="skip"`` so far: ``max_skips`` (0 for ``"stop"``), the steps skipped in all,
    and those skipped in a row up to now (at most ``max_skips``, at most ``skipped``)."""

    max_skips: int
    skipped: int
    in_a_row: int

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_count("Skips", field.name, getattr(self, field.name))
        if self.in_a_row > min(self.max_skips, self.skipped):
            raise ValueError(
                f"Skips.in_a_row must be at most max_skips ({self.max_skips}) and skipped ({self.skipped}), "
                f"got {self.in_a_row}"
            )


def describe_layout(treedef: Any) -> str:
    """The structure of a problem's ``u0`` as text (containers, keys, leaf dtypes and shapes),
    from its layout's treedef: what a checkpoint's iterate must fit, e.g.
    ``"{'w': float64(2,), 'b': float64 scalar}"``."""
    if isinstance(treedef, LeafSpec):
        return "float64 scalar" if treedef.scalar else f"float64{treedef.shape}"
    parts = [(suffix, describe_layout(child)) for suffix, child in children(treedef)]
    if isinstance(treedef, dict):
        inner = ", ".join(f"{suffix[1:-1]}: {text}" for suffix, text in parts)
        return ("" if type(treedef) is dict else type(treedef).__qualname__) + "{" + inner + "}"
    if is_namedtuple(treedef):
        return f"{type(treedef).__qualname__}(" + ", ".join(f"{s[1:]}={text}" for s, text in parts) + ")"
    inner = ", ".join(text for _, text in parts)
    return f"[{inner}]" if type(treedef) is list else f"({inner}{',' if len(parts) == 1 else ''})"


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A step-wise run's progress as plain data: what `resume` needs, with the problem given again.

    Made by `Solver.checkpoint` and validated when built (a ValueError or TypeError names the
    field and its bad value). It holds neither the problem, nor the objective, nor the data, so
    it pickles whatever the objective is (a lambda too) when its parts do; `save` writes it to a
    file that `load` reads without running code (see the module's docstring for the format).

    Attributes:
        algorithm: The step-wise algorithm instance (of a registered class).
        x: The current iterate, flattened (1-d float64).
        opt_state: The algorithm's own state (step counts, moments, curvature pairs).
        state: The committed state of a stateful problem (None otherwise).
        counts: The run's `Counts` so far.
        skips: The run's `Skips` so far.
        elapsed: Seconds the run has taken so far (``maxtime`` counts them).
        maxiters: The run's iteration budget, or None.
        maxtime: The run's time budget in seconds, or None.
        epochs: Passes over the data.
        consumed: Steps taken from the schedule of batches so far (at least ``counts.iterations``).
        loss: The loss the last step reported (NaN before the first).
        ended: Why the run ended, or None while it may go on.
        layout: The structure of the problem's ``u0`` (`describe_layout`), which `resume` checks.
        stateful: Whether the problem has a state.
        data_length: The number of minibatches of a run over ``data``, or None without data.
        final: Once `Solver.solve` has made the `Solution`: its loss (minimisation sense) and
            message, so that a resumed ``solve()`` rebuilds it without calling ``f``.
        best: A deterministic problem's best finite loss so far and its iterate, or None.
        evaluated: The partial solution's iterate and loss so far, or None before the first step.
        observe: The run's ``record``, ``progress`` and ``verbose``.
        history: What ``record`` kept of the steps so far (None without ``record``).

    Example:
        >>> import os, tempfile, autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> solver = om.init(prob, om.Adam(lr=0.1), maxiters=50)
        >>> for _ in range(20):
        ...     _ = solver.step()
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = os.path.join(tmp, "run.npz")
        ...     solver.checkpoint().save(path)
        ...     saved = om.Checkpoint.load(path)
        >>> saved.counts
        Counts(iterations=20, fevals=20, gevals=20, probe_fevals=0, hevals=0)
        >>> om.resume(saved, prob).solve().u.tobytes() == om.solve(prob, om.Adam(lr=0.1), maxiters=50).u.tobytes()
        True
    """

    algorithm: StepwiseAlgorithm[Any]
    x: np.ndarray
    opt_state: Any
    state: Any
    counts: Counts
    skips: Skips
    elapsed: float
    maxiters: int | None
    maxtime: float | None
    epochs: int
    consumed: int
    loss: float
    ended: ReturnCode | None
    layout: str
    stateful: bool
    data_length: int | None = None
    final: tuple[float, str] | None = None
    best: tuple[float, np.ndarray] | None = None
    evaluated: tuple[np.ndarray, float] | None = None
    observe: tuple[bool | str, bool, bool] = (False, False, False)
    history: History | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field (done when built; `resume` does it again, for an unpickled one).

        Raises:
            TypeError: A field of the wrong type (an algorithm that is not a registered
                step-wise one, counts that are not `Counts`, ...).
            ValueError: A bad value (a negative count, ``maxiters=0``, a 2-d iterate, ...) or
                fields that contradict each other (more iterations than steps taken).
        """
        check_algorithm(self.algorithm)
        check_iterate("x", self.x)
        for name, kind in (("counts", Counts), ("skips", Skips)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(
                    f"Checkpoint.{name} must be an om.{kind.__name__}, got {short_repr(getattr(self, name))}"
                )
        check_scalars(self)
        check_progress(self)
        check_ending(self)

    # -- files -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, allow_pickle: bool = False) -> None:
        """Write the checkpoint to one ``.npz`` file at `path` (exactly there: no suffix is added),
        through a temporary file beside it, so that an interrupted save leaves any older file intact.

        Args:
            path: The file to write.
            allow_pickle: Store a part that is not plain data (an arbitrary object in the state,
                a callable schedule that is not one of `optimeta.schedules`) with pickle. Such a
                file needs ``Checkpoint.load(path, allow_pickle=True)``, which can run code.

        Raises:
            TypeError: A part is not plain data and ``allow_pickle`` is False (the message names it).
        """
        if not isinstance(allow_pickle, bool):
            raise TypeError(f"allow_pickle must be True or False, got {allow_pickle!r}")
        self.validate()  # an unpickled checkpoint was not validated when built
        write(self, path, allow_pickle)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, allow_pickle: bool = False) -> Checkpoint:
        """Read a checkpoint that `save` wrote, without running code from the file.

        Args:
            path: The file.
            allow_pickle: Unpickle the parts that `save` stored with pickle. Pickle can run
                arbitrary code from the file: pass True only for a file from a source you trust.

        Returns:
            The `Checkpoint`, validated.

        Raises:
            ValueError: The file is not an optimeta checkpoint, is truncated or corrupted (a bad
                archive, bad JSON, a field out of range, an unknown class), was written by a newer
                format, or holds pickled parts and ``allow_pickle`` is False.
            OSError: The file cannot be opened (``FileNotFoundError``, ...).
        """
        if not isinstance(allow_pickle, bool):
            raise TypeError(f"allow_pickle must be True or False, got {allow_pickle!r}")
        return read(path, allow_pickle, (cls, Counts, Skips))
