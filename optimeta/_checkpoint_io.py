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
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import struct
import threading
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._codec import Decoder, Encoder, known_algorithm_types, known_state_types, stepwise_classes
from ._observe import History
from ._solution import ReturnCode
from ._state import short_repr
from ._tree import LeafSpec, children, is_namedtuple
from ._values import is_positive_int
from .backends._base import StepwiseAlgorithm

__all__ = ["Checkpoint", "Counts", "Skips", "describe_layout"]

FORMAT = "optimeta.checkpoint"
VERSION = 1
_META = "meta"


def _count(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}.{name} must be a non-negative integer, got {value!r}")


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
            _count("Counts", field.name, getattr(self, field.name))


@dataclass(frozen=True)
class Skips:
    """``nan_policy="skip"`` so far: ``max_skips`` (0 for ``"stop"``), the steps skipped in all,
    and those skipped in a row up to now (at most ``max_skips``, at most ``skipped``)."""

    max_skips: int
    skipped: int
    in_a_row: int

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _count("Skips", field.name, getattr(self, field.name))
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


def _real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def _iterate(name: str, value: Any, size: int | None = None) -> None:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"Checkpoint.{name} must be a NumPy array, got {type(value).__name__}")
    if value.ndim != 1 or value.dtype != np.float64 or value.size == 0:
        raise ValueError(f"Checkpoint.{name} must be a non-empty 1-d float64 array, got {value.dtype} {value.shape}")
    if size is not None and value.size != size:
        raise ValueError(f"Checkpoint.{name} must have the {size} elements of x, got {value.size}")


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
        stepwise = stepwise_classes()
        if type(self.algorithm) not in stepwise.values():
            raise TypeError(
                "Checkpoint.algorithm must be an instance of a registered step-wise algorithm ("
                + ", ".join(sorted(stepwise))
                + f"), got {short_repr(self.algorithm)}"
            )
        _iterate("x", self.x)
        for name, kind in (("counts", Counts), ("skips", Skips)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(
                    f"Checkpoint.{name} must be an om.{kind.__name__}, got {short_repr(getattr(self, name))}"
                )
        iterations = self.counts.iterations
        if not (_real(self.elapsed) and 0 <= self.elapsed < math.inf):
            raise ValueError(f"Checkpoint.elapsed must be a finite number of seconds >= 0, got {self.elapsed!r}")
        if self.maxiters is not None and (not is_positive_int(self.maxiters)):
            raise ValueError(f"Checkpoint.maxiters must be a positive integer or None, got {self.maxiters!r}")
        if self.maxtime is not None and not (_real(self.maxtime) and 0 < self.maxtime < math.inf):
            raise ValueError(f"Checkpoint.maxtime must be a positive, finite number or None, got {self.maxtime!r}")
        if not is_positive_int(self.epochs):
            raise ValueError(f"Checkpoint.epochs must be a positive integer, got {self.epochs!r}")
        _count("Checkpoint", "consumed", self.consumed)
        length = self.data_length
        if length is not None and not is_positive_int(length):
            raise ValueError(f"Checkpoint.data_length must be a positive integer or None, got {self.data_length!r}")
        if not _real(self.loss):
            raise TypeError(f"Checkpoint.loss must be a real number, got {short_repr(self.loss)}")
        if self.ended is not None and not isinstance(self.ended, ReturnCode):
            raise TypeError(f"Checkpoint.ended must be an om.ReturnCode or None, got {short_repr(self.ended)}")
        if not isinstance(self.layout, str) or not self.layout:
            raise TypeError(
                f"Checkpoint.layout must be a non-empty str (describe_layout), got {short_repr(self.layout)}"
            )
        if not isinstance(self.stateful, bool):
            raise TypeError(f"Checkpoint.stateful must be True or False, got {self.stateful!r}")
        if not self.stateful and self.state is not None:
            raise ValueError(
                f"Checkpoint.state must be None for a stateless run (stateful=False), got {short_repr(self.state)}"
            )
        self._check_consistent(iterations)
        self._check_ending()

    def _check_consistent(self, iterations: int) -> None:
        if self.consumed < iterations:
            raise ValueError(
                f"Checkpoint.consumed ({self.consumed}) must be at least counts.iterations ({iterations}): "
                "every step takes one item of the schedule"
            )
        if self.maxiters is not None and iterations > self.maxiters:
            raise ValueError(f"Checkpoint.counts.iterations ({iterations}) must be at most maxiters ({self.maxiters})")
        if self.skips.skipped > iterations:
            raise ValueError(
                f"Checkpoint.skips.skipped ({self.skips.skipped}) must be at most counts.iterations ({iterations})"
            )
        if self.data_length is None:
            if self.epochs != 1:
                raise ValueError(f"Checkpoint.epochs must be 1 for a run without data, got {self.epochs!r}")
        elif self.consumed > self.epochs * self.data_length:
            raise ValueError(
                f"Checkpoint.consumed ({self.consumed}) must be at most epochs * data_length "
                f"({self.epochs} * {self.data_length})"
            )
        observe = self.observe
        if not (
            isinstance(observe, tuple)
            and len(observe) == 3
            and (isinstance(observe[0], bool) or observe[0] == "u")
            and isinstance(observe[1], bool)
            and isinstance(observe[2], bool)
        ):
            raise TypeError(f"Checkpoint.observe must be (record, progress, verbose), got {short_repr(observe)}")
        history = self.history
        if not observe[0]:
            if history is not None:
                raise ValueError("Checkpoint.history must be None for a run without record")
            return
        if not isinstance(history, History):
            raise TypeError(
                f"Checkpoint.history must be an om.History for a run with record, got {short_repr(history)}"
            )
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

    def _check_ending(self) -> None:
        final = self.final
        if final is not None:
            if not (isinstance(final, tuple) and len(final) == 2 and _real(final[0]) and isinstance(final[1], str)):
                raise TypeError(f"Checkpoint.final must be (loss, message) or None, got {short_repr(final)}")
            if self.ended is None:
                raise ValueError("Checkpoint.final must be None while the run may go on (ended is None)")
        if self.best is not None:
            if not (isinstance(self.best, tuple) and len(self.best) == 2 and _real(self.best[0])):
                raise TypeError(f"Checkpoint.best must be (loss, iterate) or None, got {short_repr(self.best)}")
            _iterate("best[1]", self.best[1], self.x.size)
        if self.evaluated is not None:
            if not (isinstance(self.evaluated, tuple) and len(self.evaluated) == 2 and _real(self.evaluated[1])):
                raise TypeError(
                    f"Checkpoint.evaluated must be (iterate, loss) or None, got {short_repr(self.evaluated)}"
                )
            _iterate("evaluated[0]", self.evaluated[0], self.x.size)

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
        enc = Encoder()
        algorithm_types = {cls: name for name, cls in known_algorithm_types().items()}
        state_types = {cls: name for name, cls in known_state_types().items()}
        h = self.history
        history: dict[str, Any] | None = None
        if h is not None:
            history = {"iteration": h.iteration, "objective": h.objective, "fevals": h.fevals, "time": h.time, "u": h.u}
        meta: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "counts": dataclasses.asdict(self.counts),
            "skips": dataclasses.asdict(self.skips),
            "ended": None if self.ended is None else self.ended.name,
            "observe": list(self.observe),
            "layout": self.layout,
            "stateful": self.stateful,
            "data_length": self.data_length,
            "fields": {
                name: enc.part(name, getattr(self, name), {}, False)
                for name in ("x", "elapsed", "maxiters", "maxtime", "epochs", "consumed", "loss")
                + ("final", "best", "evaluated")
            },
            "parts": {
                "algorithm": enc.part("algorithm", self.algorithm, algorithm_types, allow_pickle),
                "opt_state": enc.part("opt_state", self.opt_state, state_types, allow_pickle),
                "state": enc.part("state", self.state, {}, allow_pickle),
                "history": enc.part("history", history, {}, allow_pickle),
            },
        }
        text = json.dumps(meta, allow_nan=False, separators=(",", ":")).encode("utf-8")
        arrays = {_META: np.frombuffer(text, dtype=np.uint8), **enc.arrays}
        target = os.fspath(path)
        temporary = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(temporary, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]
            os.replace(temporary, target)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise

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
        shown = os.fspath(path)
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise ValueError(f"{shown!r} is not an optimeta checkpoint: not an .npz archive")
            fh.seek(0)
            try:
                with np.load(fh, allow_pickle=False) as npz:
                    return _read(cls, npz, shown, allow_pickle)
            except _Refused as exc:
                raise ValueError(str(exc)) from None
            except (zipfile.BadZipFile, EOFError) as exc:
                raise ValueError(
                    f"{shown!r} is a corrupted checkpoint (a truncated or damaged archive): {exc}"
                ) from exc
            except (KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
                raise ValueError(f"{shown!r} is a corrupted checkpoint: {type(exc).__name__}: {exc}") from exc
            except (ValueError, TypeError, IndexError, AttributeError, RecursionError, struct.error) as exc:
                raise ValueError(f"{shown!r} is a corrupted checkpoint: {exc}") from exc


class _Refused(ValueError):
    """A refusal of `Checkpoint.load` that is not a corruption: passed on as it is."""


def _read(cls: type[Checkpoint], npz: Any, shown: str, allow_pickle: bool) -> Checkpoint:
    if _META not in npz.files:
        raise _Refused(f"{shown!r} is not an optimeta checkpoint: the archive has no {_META!r} entry")
    meta = json.loads(npz[_META].tobytes().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _Refused(f"{shown!r} is not an optimeta checkpoint: its format is not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise _Refused(
            f"{shown!r} is a checkpoint of format version {meta.get('version')!r}; this optimeta reads version {VERSION}"
        )
    parts = meta["parts"]
    pickled = sorted(name for name, node in parts.items() if isinstance(node, dict) and "pickled" in node)
    if pickled and not allow_pickle:
        raise _Refused(
            f"{shown!r} holds {', '.join(pickled)} stored with pickle, and unpickling can run arbitrary code from "
            "the file: load it with Checkpoint.load(path, allow_pickle=True) only if you trust its source"
        )
    dec = Decoder(npz)
    fields = {name: dec(node, {}) for name, node in meta["fields"].items()}
    history = dec(parts["history"], {})
    fields.update(
        algorithm=dec(parts["algorithm"], known_algorithm_types()),
        opt_state=dec(parts["opt_state"], known_state_types()),
        state=dec(parts["state"], {}),
        history=None if history is None else History(**history),
        counts=Counts(**meta["counts"]),
        skips=Skips(**meta["skips"]),
        ended=None if meta["ended"] is None else ReturnCode[meta["ended"]],
        observe=tuple(meta["observe"]),
        layout=meta["layout"],
        stateful=meta["stateful"],
        data_length=meta["data_length"],
    )
    return cls(**fields)
