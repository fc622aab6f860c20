"""The README's table of traits is the one generated from the registry (`benchmarks.trait_table`),
and says what the algorithms declare, for every registered algorithm."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import optimeta as om
from benchmarks import trait_table
from optimeta.backends._base import FIRST_ORDER_TRAITS, FirstOrderAlgorithm
from optimeta.traits import TRAIT_NAMES

README = Path(__file__).resolve().parent.parent / "README.md"


def _lines() -> list[str]:
    """The lines of the README's trait table, between its markers."""
    return trait_table.block(README.read_text()).splitlines()


def _table() -> dict[str, dict[str, str]]:
    """Each algorithm named in the README's trait table, with the cell its row gives each trait."""
    lines = _lines()
    header = [cell.strip().strip("`") for cell in lines[0].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        assert line.startswith("|"), f"not a row of the trait table: {line!r}"
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        values = dict(zip(header[1:], cells[1:], strict=True))
        for name in re.findall(r"^`(\w+)\(", cells[0]):
            assert name not in rows, f"{name} has two rows in the README's trait table"
            rows[name] = values
    return rows


def test_the_readme_table_is_the_generated_one() -> None:
    diff = trait_table.differences(README.read_text())
    assert diff == [], (
        f"README.md's trait table differs from the one generated from the registry: "
        f"regenerate it with `{trait_table.COMMAND}`\n" + "\n".join(diff)
    )


def test_the_table_has_a_column_for_every_trait() -> None:
    header = _lines()[0]
    assert header.startswith("| algorithm | `single_call_per_step`")
    assert [cell.strip().strip("`") for cell in header.strip("|").split("|")][1:] == list(TRAIT_NAMES)


def test_the_table_names_exactly_the_registered_algorithms() -> None:
    assert sorted(_table()) == sorted(cls.__name__ for cls in om.algorithms())


@pytest.mark.parametrize("cls", om.algorithms(), ids=lambda cls: cls.__name__)
def test_the_row_gives_the_declared_traits_and_the_class_notes(cls: type) -> None:
    declared, row = om.traits(cls), _table()[cls.__name__]
    assert {name: cell.split()[0] == "yes" for name, cell in row.items()} == {
        name: getattr(declared, name) for name in TRAIT_NAMES
    }
    notes = {name: cell.split(" ", 1)[1] for name, cell in row.items() if " " in cell}
    assert notes == {name: f"({note})" for name, note in cls.trait_notes.items()}


def test_the_first_order_family_notes_its_bounds_by_projection() -> None:
    # The note is the base class's (its step projects), so a new first-order backend has it too.
    for cls in om.algorithms():
        if issubclass(cls, FirstOrderAlgorithm):
            assert _table()[cls.__name__]["supports_bounds"] == "yes (projection)", cls.__name__


@dataclass(frozen=True, kw_only=True)
class _Descent(FirstOrderAlgorithm[int]):
    """Gradient descent, ``u - lr * g``. A second sentence, left out of the table.

    Traits:
        The first-order family's.
    """

    lr: float
    decay: float = 1e-3
    label: str = "plain"
    pair: tuple[float, float] = (0.5, 1.0)

    traits: ClassVar[om.Traits] = FIRST_ORDER_TRAITS

    def init(self, x0: np.ndarray) -> int:
        return 0

    def update(self, grad: np.ndarray, x: np.ndarray, state: int) -> tuple[np.ndarray, int]:
        return x - self.lr * grad, state + 1


def test_a_row_is_generated_from_the_class_alone() -> None:
    # An unregistered class: its row comes from its constructor, its docstring, its traits and notes.
    assert trait_table.signature(_Descent) == '_Descent(lr, decay=1e-3, label="plain", pair=(0.5, 1.0))'
    assert trait_table.summary(_Descent) == "Gradient descent, `u - lr * g`."
    row = trait_table.markdown([_Descent]).splitlines()[2]
    first = '`_Descent(lr, decay=1e-3, label="plain", pair=(0.5, 1.0))`: Gradient descent, `u - lr * g`.'
    assert row.startswith(f"| {first} | yes | no |")
    assert "| yes (projection) |" in row
    noted = type("Noted", (_Descent,), {"trait_notes": {"supports_minibatches": "a | b"}})
    assert trait_table.markdown([noted]).splitlines()[2].endswith("| yes (a \\| b) |")  # a pipe is escaped
    wrong = type("Wrong", (_Descent,), {"trait_notes": {"supports_everything": "x"}})
    with pytest.raises(ValueError, match="Wrong.trait_notes names no trait: supports_everything"):
        trait_table.markdown([wrong])


def test_the_rows_put_algorithms_alike_together() -> None:
    keys = [[getattr(om.traits(cls), name) for name in TRAIT_NAMES] for cls in trait_table.rows()]
    assert keys == sorted(keys, reverse=True)
    assert trait_table.literal(2.2e-9) == "2.2e-9" and trait_table.literal(0.5) == "0.5"


def test_the_guarantees_table_names_tests_that_exist() -> None:
    text = README.read_text()
    table = text[text.index("## What optimeta guarantees") : text.index("## Layout")]
    cited = re.findall(r"`(test_\w+\.py)(?:::(\w+))?`", table)
    assert len(cited) >= 15
    tests = README.parent / "tests"
    for module, name in cited:
        source = (tests / module).read_text()
        assert not name or f"def {name}(" in source, f"{module}::{name} is not a test"
