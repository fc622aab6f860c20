"""The codec of checkpoint files: a checkpoint's parts as JSON nodes and archive entries, and back.

See `Checkpoint` (``_checkpoint_io``) for the format. Classes are rebuilt only from those known
(`known_algorithm_types`, `known_state_types`), never imported by a name read from the file.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import pickle
import struct
import sys
from collections.abc import Mapping
from types import GenericAlias
from typing import Any

import numpy as np

from . import schedules
from ._tree import is_namedtuple
from .backends._base import StepwiseAlgorithm
from .traits import algorithms

__all__ = ["Decoder", "Encoder", "NeedsPickle", "known_algorithm_types", "known_state_types", "stepwise_classes"]

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_PLAIN = (
    "plain data (arrays, NumPy and Python numbers, strings, None, np.random.Generator, and dicts with str keys, "
    "lists and tuples of them)"
)


# -- the known classes -------------------------------------------------------------------------


def stepwise_classes() -> dict[str, type]:
    return {c.__name__: c for c in algorithms(supports_checkpoint=True) if issubclass(c, StepwiseAlgorithm)}


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def known_algorithm_types() -> dict[str, type]:
    """The registered step-wise algorithms by name, and the schedules of `optimeta.schedules`."""
    found = {_qualified(c): c for c in vars(schedules).values() if isinstance(c, type) and dataclasses.is_dataclass(c)}
    return {**found, **stepwise_classes()}


def known_state_types() -> dict[str, type]:
    """The classes an algorithm's state may hold: those of the step-wise algorithms' modules
    (their state NamedTuples and dataclasses, `ReturnCode`, helpers rebuilt without arguments)."""
    found: dict[str, type] = {}
    for alg in stepwise_classes().values():
        module = sys.modules[alg.__module__]
        for obj in vars(module).values():
            if not isinstance(obj, type) or isinstance(obj, GenericAlias):
                continue
            if not (obj.__module__ == module.__name__ or obj.__module__.startswith("optimeta.")):
                continue
            namedtuple = issubclass(obj, tuple) and hasattr(obj, "_fields")
            if namedtuple or dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum) or "__reduce__" in vars(obj):
                found[_qualified(obj)] = obj
    return found


# -- the codec ---------------------------------------------------------------------------------


class NeedsPickle(Exception):
    def __init__(self, path: str, obj: Any) -> None:
        super().__init__(path)
        self.path = path
        self.obj = obj


class Encoder:
    """Values to JSON nodes, with the arrays they refer to in `arrays`."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._memo: dict[int, tuple[Any, Any]] = {}  # id -> (the object, kept alive; its node)
        self._keys = 0  # archive entries and generators numbered across all parts

    def part(self, name: str, value: Any, known: Mapping[type, str], allow_pickle: bool) -> Any:
        """The node of one field; a part that is not plain data pickled (with `allow_pickle`)."""
        self._memo = {}
        before = set(self.arrays)
        try:
            return self.node(value, name, known)
        except NeedsPickle as need:
            for key in set(self.arrays) - before:  # the arrays of the part so far: it is pickled whole
                del self.arrays[key]
            if not allow_pickle:
                raise TypeError(
                    f"Checkpoint.save: {need.path} (a {type(need.obj).__name__}) is not {_PLAIN}, so it can be stored "
                    "only with pickle, which can run code when the file is loaded: pass allow_pickle=True to save it "
                    "so (and to Checkpoint.load), or keep it plain"
                ) from None
            key = f"pickle.{name}"
            self.arrays[key] = np.frombuffer(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
            return {"pickled": key}

    def _entry(self, value: np.ndarray | np.generic, kind: str) -> Any:
        seen = self._memo.get(id(value))
        if seen is not None:
            return seen[1]
        key = f"a{self._keys}"
        self._keys += 1
        self.arrays[key] = np.asarray(value)
        node = {kind: key}
        self._memo[id(value)] = (value, node)
        return node

    def node(self, value: Any, path: str, known: Mapping[type, str]) -> Any:
        if value is None or type(value) in (bool, int, str):
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"float": struct.pack(">d", value).hex()}
        if isinstance(value, (np.ndarray, np.generic)):
            if type(value) is not np.ndarray and not isinstance(value, np.generic) or value.dtype.hasobject:
                raise NeedsPickle(path, value)
            return self._entry(value, "array" if isinstance(value, np.ndarray) else "scalar")
        if type(value) is dict:
            if not all(isinstance(k, str) for k in value):
                raise NeedsPickle(path, value)
            return {"dict": [[k, self.node(v, f"{path}[{k!r}]", known)] for k, v in value.items()]}
        if type(value) in (list, tuple):
            items = [self.node(v, f"{path}[{i}]", known) for i, v in enumerate(value)]
            return {type(value).__name__: items}
        if type(value) is np.random.Generator and type(value.bit_generator).__name__ in _BIT_GENERATORS:
            seen = self._memo.get(id(value))
            if seen is not None:
                return seen[1]
            node = {"generator": f"g{self._keys}"}
            self._keys += 1
            self._memo[id(value)] = (value, node)
            bits = value.bit_generator
            state = self.node(bits.state, f"{path}.bit_generator.state", {})
            return {**node, "bit_generator": type(bits).__name__, "state": state}
        return self._typed(value, path, known)

    def _typed(self, value: Any, path: str, known: Mapping[type, str]) -> Any:
        cls = type(value)
        name = known.get(cls)
        if name is None:
            raise NeedsPickle(path, value)
        if isinstance(value, enum.Enum):
            return {"type": name, "name": value.name}
        if is_namedtuple(value):
            return {"type": name, "items": [self.node(v, f"{path}.{f}", known) for f, v in zip(cls._fields, value)]}
        if dataclasses.is_dataclass(value):
            fields = dataclasses.fields(value)
            if not all(f.init for f in fields):
                raise NeedsPickle(path, value)
            return {"type": name, "fields": [[f.name, self.node(getattr(value, f.name), f"{path}.{f.name}", known)]
                                             for f in fields]}  # fmt: skip
        if value.__reduce__() == (cls, ()):
            return {"type": name}
        raise NeedsPickle(path, value)


class Decoder:
    """JSON nodes back to values, reading arrays from the archive (never with pickle)."""

    def __init__(self, npz: Any) -> None:
        self._npz = npz
        self._memo: dict[str, Any] = {}

    def _entry(self, key: Any) -> np.ndarray:
        if not isinstance(key, str) or not key.startswith("a"):
            raise ValueError(f"a bad array reference {key!r}")
        if key not in self._memo:
            if key not in self._npz.files:
                raise ValueError(f"the archive has no entry {key!r}")
            self._memo[key] = self._npz[key]
        found: np.ndarray = self._memo[key]
        return found

    def __call__(self, node: Any, known: Mapping[str, type]) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict):
            return _bad(node)
        if "pickled" in node:
            key = node["pickled"]
            if not isinstance(key, str) or not key.startswith("pickle."):
                raise ValueError(f"a bad pickle reference {key!r}")
            try:
                return pickle.loads(self._npz[key].tobytes())  # asked for with allow_pickle=True
            except Exception as exc:
                raise ValueError(f"{key} cannot be unpickled: {exc}") from exc
        if "float" in node:
            value: float = struct.unpack(">d", bytes.fromhex(node["float"]))[0]
            return value
        if "array" in node:
            return self._entry(node["array"])
        if "scalar" in node:
            entry = self._entry(node["scalar"])
            if entry.ndim != 0:
                raise ValueError(f"scalar {node['scalar']} has shape {entry.shape}")
            return entry[()]
        if "dict" in node:
            pairs = [(k, v) for k, v in node["dict"]]
            if not all(isinstance(k, str) for k, _ in pairs):
                return _bad(node)
            return {k: self(v, known) for k, v in pairs}
        if "list" in node:
            return [self(v, known) for v in node["list"]]
        if "tuple" in node:
            return tuple(self(v, known) for v in node["tuple"])
        if "generator" in node:
            return self._generator(node)
        if "type" in node:
            return self._typed(node, known)
        return _bad(node)

    def _generator(self, node: dict[str, Any]) -> np.random.Generator:
        key = node["generator"]
        if "bit_generator" not in node:
            found: np.random.Generator = self._memo[f"generator {key}"]
            return found
        name = node["bit_generator"]
        if name not in _BIT_GENERATORS:
            raise ValueError(f"an unknown bit generator {name!r}")
        bits = getattr(np.random, name)(0)
        bits.state = self(node["state"], {})
        gen = np.random.Generator(bits)
        self._memo[f"generator {key}"] = gen
        return gen

    def _typed(self, node: dict[str, Any], known: Mapping[str, type]) -> Any:
        name = node["type"]
        cls = known.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(
                f"an unknown class {name!r} (only optimeta's own are rebuilt; a checkpoint saved by another "
                "version of optimeta may name a class this one does not have)"
            )
        if "name" in node and issubclass(cls, enum.Enum):
            return cls[node["name"]]
        if "items" in node and issubclass(cls, tuple):
            return cls(*(self(v, known) for v in node["items"]))
        if "fields" in node and dataclasses.is_dataclass(cls):
            return cls(**{str(k): self(v, known) for k, v in node["fields"]})
        if len(node) == 1 and "__reduce__" in vars(cls):
            return cls()
        return _bad(node)


def _bad(node: Any) -> Any:
    raise ValueError(f"a bad node {str(node)[:80]}")
