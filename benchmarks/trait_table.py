"""The README's trait table, generated from the registry: a row per registered algorithm, a
column per trait.

`markdown` writes it from `optimeta.algorithms()` and `optimeta.traits`, its columns in the order
of `optimeta.traits.TRAIT_NAMES`. A row's first cell is the class with its constructor's
hyperparameters and their defaults (`signature`), then the first sentence of its docstring
(`summary`); each trait's cell is ``yes`` or ``no``, followed by the class's note on how it meets
that trait where it has one (`Algorithm.trait_notes`: ``yes (projection)``). The rows are in the
order of their traits, column by column, ``yes`` first, then by name, so that algorithms alike
are adjacent.

``python -m benchmarks --traits --update-readme`` writes it between the README's markers `START`
and `END` (the suite's ``--update-readme`` does too), without running a benchmark;
``python -m benchmarks --traits --check-readme`` exits with 1 where the README's differs, and
so does ``tests/test_readme_traits.py``. Nothing here names an algorithm: a new backend appears
in the table when it is registered.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

import optimeta as om
from optimeta.traits import TRAIT_NAMES

from .readme import replace_block

START = "<!-- trait-table:start -->"
END = "<!-- trait-table:end -->"
#: The command that regenerates the README's table.
COMMAND = "python -m benchmarks --traits --update-readme"


def literal(value: Any) -> str:
    """A default value as the table writes it: Python's literal, with small and large floats in
    the shortest scientific form (``1e-3``, not ``0.001``) and strings in double quotes."""
    if isinstance(value, float):
        if value != 0 and math.isfinite(value) and not 0.1 <= abs(value) < 1e5:
            return np.format_float_scientific(value, trim="-", exp_digits=1)
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return repr(value)


def signature(cls: type) -> str:
    """``Name(a, b=1e-3, ...)``: the class with its constructor's parameters, a required one
    bare, the others with their defaults."""
    params = []
    for param in inspect.signature(cls).parameters.values():
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            params.append(f"*{param.name}")
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            params.append(f"**{param.name}")
        elif param.default is inspect.Parameter.empty:
            params.append(param.name)
        else:
            params.append(f"{param.name}={literal(param.default)}")
    return f"{cls.__name__}({', '.join(params)})"


def summary(cls: type) -> str:
    """The first sentence of the class's docstring, its reST markup (````code````, ``:math:`x```)
    as Markdown code; empty for a class without a docstring of its own."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    paragraph = " ".join(doc.split("\n\n", 1)[0].split())
    if not paragraph or paragraph.startswith(f"{cls.__name__}("):  # a dataclass's generated __doc__
        return ""
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", paragraph, maxsplit=1)[0]
    sentence = re.sub(r":\w+:`([^`]*)`", r"`\1`", sentence)
    return sentence.replace("``", "`")


def cell(cls: type, name: str) -> str:
    """A trait's cell of the class's row: ``yes`` or ``no``, with the class's note on it."""
    note = getattr(cls, "trait_notes", {}).get(name)
    value = "yes" if getattr(om.traits(cls), name) else "no"
    return f"{value} ({note})" if note else value


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def rows(classes: Iterable[type] | None = None) -> list[type]:
    """The classes (the registered ones by default) in the table's order: by their traits, column
    by column, ``yes`` first, then by name."""
    found = list(om.algorithms() if classes is None else classes)
    for cls in found:
        unknown = sorted(set(getattr(cls, "trait_notes", {})) - set(TRAIT_NAMES))
        if unknown:
            raise ValueError(f"{cls.__name__}.trait_notes names no trait: {', '.join(unknown)}")
    return sorted(
        found, key=lambda cls: ([not getattr(om.traits(cls), name) for name in TRAIT_NAMES], cls.__name__.casefold())
    )


def markdown(classes: Iterable[type] | None = None) -> str:
    """The trait table of the classes (the registered ones by default), as Markdown."""
    lines = [
        "| algorithm | " + " | ".join(f"`{name}`" for name in TRAIT_NAMES) + " |",
        "|---" * (len(TRAIT_NAMES) + 1) + "|",
    ]
    for cls in rows(classes):
        about = summary(cls)
        first = f"`{signature(cls)}`" + (f": {about}" if about else "")
        lines.append("| " + " | ".join(_escape(c) for c in [first, *(cell(cls, n) for n in TRAIT_NAMES)]) + " |")
    return "\n".join(lines)


def block(text: str) -> str:
    """What lies between the markers `START` and `END` of a README's text, stripped."""
    if START not in text or END not in text:
        raise ValueError(f"the README has no trait table between {START} and {END}")
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def update(text: str) -> str:
    """`text` (a README) with the generated table between its markers."""
    return replace_block(text, markdown(), START, END)


def differences(text: str) -> list[str]:
    """The lines by which a README's table differs from the generated one (a unified diff), or
    [] where it is up to date."""
    return list(
        difflib.unified_diff(
            block(text).splitlines(), markdown().splitlines(), "README.md", "generated", lineterm="", n=0
        )
    )
