"""A `Checkpoint`'s file: `write` and `read` of the ``.npz`` archive that `Checkpoint.save` and
`Checkpoint.load` make and read, in the format the docstring of ``_checkpoint_io`` describes.

The parts go through the codec (`Encoder`, `Decoder` of ``_codec``); this module lays them out in
the archive, writes it through a temporary file, and turns whatever a damaged or foreign file
raises into a ValueError that says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import threading
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from ._codec import Decoder, Encoder, known_algorithm_types, known_state_types
from ._observe import History
from ._solution import ReturnCode

if TYPE_CHECKING:
    from ._checkpoint_io import Checkpoint, Counts, Skips

__all__ = ["FORMAT", "VERSION", "read", "write"]

FORMAT = "optimeta.checkpoint"
VERSION = 1
_META = "meta"


def write(cp: Checkpoint, path: str | os.PathLike[str], allow_pickle: bool) -> None:
    """Write `cp` to one ``.npz`` file at `path`, through a temporary file beside it (see
    `Checkpoint.save`)."""
    arrays = _archive(cp, allow_pickle)
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


def _archive(cp: Checkpoint, allow_pickle: bool) -> dict[str, np.ndarray]:
    """The archive's entries: ``meta`` (the JSON) and the arrays its nodes refer to."""
    enc = Encoder()
    algorithm_types = {cls: name for name, cls in known_algorithm_types().items()}
    state_types = {cls: name for name, cls in known_state_types().items()}
    h = cp.history
    history: dict[str, Any] | None = None
    if h is not None:
        history = {"iteration": h.iteration, "objective": h.objective, "fevals": h.fevals, "time": h.time, "u": h.u}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "counts": dataclasses.asdict(cp.counts),
        "skips": dataclasses.asdict(cp.skips),
        "ended": None if cp.ended is None else cp.ended.name,
        "observe": list(cp.observe),
        "layout": cp.layout,
        "stateful": cp.stateful,
        "data_length": cp.data_length,
        "fields": {
            name: enc.part(name, getattr(cp, name), {}, False)
            for name in ("x", "elapsed", "maxiters", "maxtime", "epochs", "consumed", "loss")
            + ("final", "best", "evaluated")
        },
        "parts": {
            "algorithm": enc.part("algorithm", cp.algorithm, algorithm_types, allow_pickle),
            "opt_state": enc.part("opt_state", cp.opt_state, state_types, allow_pickle),
            "state": enc.part("state", cp.state, {}, allow_pickle),
            "history": enc.part("history", history, {}, allow_pickle),
        },
    }
    text = json.dumps(meta, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return {_META: np.frombuffer(text, dtype=np.uint8), **enc.arrays}


class _Refused(ValueError):
    """A refusal of `read` that is not a corruption: passed on as it is."""


def read(
    path: str | os.PathLike[str],
    allow_pickle: bool,
    kinds: tuple[type[Checkpoint], type[Counts], type[Skips]],
) -> Checkpoint:
    """The checkpoint at `path`, built as ``kinds[0]`` with its counters as ``kinds[1]`` and
    ``kinds[2]`` (see `Checkpoint.load`, which gives its classes: this module does not import
    them). A field that its class refuses counts as a corruption too.

    Raises:
        ValueError: Not a checkpoint, a corrupted one, a newer format, or pickled parts and
            ``allow_pickle`` False.
        OSError: The file cannot be opened.
    """
    shown = os.fspath(path)
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise ValueError(f"{shown!r} is not an optimeta checkpoint: not an .npz archive")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as npz:
                return _build(npz, shown, allow_pickle, kinds)
        except _Refused as exc:
            raise ValueError(str(exc)) from None
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{shown!r} is a corrupted checkpoint (a truncated or damaged archive): {exc}") from exc
        except (KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise ValueError(f"{shown!r} is a corrupted checkpoint: {type(exc).__name__}: {exc}") from exc
        except (ValueError, TypeError, IndexError, AttributeError, RecursionError, struct.error) as exc:
            raise ValueError(f"{shown!r} is a corrupted checkpoint: {exc}") from exc


def _build(
    npz: Any, shown: str, allow_pickle: bool, kinds: tuple[type[Checkpoint], type[Counts], type[Skips]]
) -> Checkpoint:
    checkpoint, counts, skips = kinds
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
        counts=counts(**meta["counts"]),
        skips=skips(**meta["skips"]),
        ended=None if meta["ended"] is None else ReturnCode[meta["ended"]],
        observe=tuple(meta["observe"]),
        layout=meta["layout"],
        stateful=meta["stateful"],
        data_length=meta["data_length"],
    )
    return checkpoint(**fields)
