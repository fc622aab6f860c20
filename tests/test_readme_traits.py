"""The README's table of traits says what the algorithms declare, for every registered algorithm."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import optimeta as om
from optimeta.traits import TRAIT_NAMES

README = Path(__file__).resolve().parent.parent / "README.md"


def _table() -> dict[str, dict[str, bool]]:
    """Each algorithm named in the README's trait table, with the values its row gives."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| algorithm | `single_call_per_step`"))
    header = [cell.strip().strip("`") for cell in lines[start].strip("|").split("|")]
    rows: dict[str, dict[str, bool]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        values = {name: cell.split()[0] == "yes" for name, cell in zip(header[1:], cells[1:], strict=True)}
        for name in re.findall(r"`(\w+)\(", cells[0]):
            assert name not in rows, f"{name} has two rows in the README's trait table"
            rows[name] = values
    return rows


def test_the_table_has_a_column_for_every_trait() -> None:
    lines = README.read_text().splitlines()
    header = next(line for line in lines if line.startswith("| algorithm | `single_call_per_step`"))
    assert [cell.strip().strip("`") for cell in header.strip("|").split("|")][1:] == list(TRAIT_NAMES)


def test_the_table_names_exactly_the_registered_algorithms() -> None:
    assert sorted(_table()) == sorted(cls.__name__ for cls in om.algorithms())


@pytest.mark.parametrize("cls", om.algorithms(), ids=lambda cls: cls.__name__)
def test_the_row_gives_the_declared_traits(cls: type) -> None:
    declared = om.traits(cls)
    assert _table()[cls.__name__] == {name: getattr(declared, name) for name in TRAIT_NAMES}


def test_the_guarantees_table_names_tests_that_exist() -> None:
    text = README.read_text()
    table = text[text.index("## What optimeta guarantees") : text.index("## Layout")]
    cited = re.findall(r"`(test_\w+\.py)(?:::(\w+))?`", table)
    assert len(cited) >= 15
    tests = README.parent / "tests"
    for module, name in cited:
        source = (tests / module).read_text()
        assert not name or f"def {name}(" in source, f"{module}::{name} is not a test"
