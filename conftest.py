"""Test-suite wiring: optional extras and the quick subset.

Optional integrations (jax, torch, numba, tqdm, matplotlib, Dask, optax) are extras, so a test
that needs one says so with ``@pytest.mark.needs("module", ...)``, and a test parametrised over a
``backend`` of ``"jax"`` or ``"torch"`` needs that framework: either is skipped, with the install
command in the reason, where the module is missing. No test module imports an extra at module
level. Doctests need what they import: a docstring's example that imports a missing module is
skipped, and so is each fenced code block of README.md that does (the rest of the README runs).

``python -m pytest --quick`` runs the quick subset (`QUICK`): one file for each part of the
contract, under a minute on 2 cores.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

#: Backends of the test suite's own (``tests/toy_backend.py``), registered when the environment
#: variable names them (comma-separated modules of ``tests/``): the contract suite then runs on
#: them too, with no table edited (``test_architecture.py``).
TEST_BACKENDS = [name for name in os.environ.get("OPTIMETA_TEST_BACKENDS", "").split(",") if name]
if TEST_BACKENDS:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
    for _name in TEST_BACKENDS:
        importlib.import_module(_name)
#: Not collected (``--doctest-modules`` imports every module under ``tests/``): importing the toy
#: backend registers it, and an ordinary run's registry is the package's own.
collect_ignore = ["tests/toy_backend.py"]

#: The extra that brings each optional module (pyproject.toml's optional-dependencies).
EXTRA_OF = {
    "jax": "jax",
    "torch": "torch",
    "numba": "fast",
    "tqdm": "progress",
    "matplotlib": "plot",
    "distributed": "dask",
    "dask": "dask",
    "optax": "bench",
    "equinox": "bench",
    "flax": "bench",
}

#: Test files of the quick subset (``--quick``): the traits and their refusals, the guarantees
#: table over the whole registry, validation of problems, hyperparameters and options,
#: interruptions, the nan policy, chains, the first-order family against its references, scipy
#: interop and the README's trait table, with the doctests of the package and of README.md. The
#: traits' behaviour, the catalogue's contracts, faults, checkpoints, state modes, constraints,
#: properties, ensembles, benchmarks and frameworks are left to the full suite.
QUICK = frozenset(
    {
        "test_traits.py",
        "test_guarantees.py",
        "test_validation.py",
        "test_hyperparameters.py",
        "test_interrupts.py",
        "test_nan_policy.py",
        "test_chain.py",
        "test_first_order_family.py",
        "test_schedules.py",
        "test_interop.py",
        "test_finite.py",
        "test_readme_traits.py",
        "test_frictions.py",
        "test_references.py",
    }
)


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_reason(modules: list[str]) -> str | None:
    """The skip reason for a test that needs ``modules``, or None when all are installed."""
    missing = [m for m in dict.fromkeys(modules) if not installed(m)]
    if not missing:
        return None
    extras = ",".join(dict.fromkeys(EXTRA_OF.get(m, m) for m in missing))
    return f"needs {', '.join(missing)} (not installed): pip install 'optimeta[{extras}]'"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true", help="run the quick subset of the suite (under a minute)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(*modules): skip, with the install command, unless the modules import")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``--quick``, the test files outside `QUICK` are not even collected."""
    if not config.getoption("--quick") or collection_path.is_dir():
        return None
    if collection_path.parent.name == "tests" and collection_path.name.startswith("test_"):
        return collection_path.name not in QUICK
    return None


_IMPORT = re.compile(r"^\s*(?:>>>|\.\.\.)?\s*(?:import|from)\s+([A-Za-z_]\w*)", re.MULTILINE)


#: optimeta calls that import an extra themselves.
_USES = {"om.plot(": "matplotlib", "progress=True": "tqdm", 'grad="jax"': "jax", 'grad="torch"': "torch"}


def imported_extras(source: str) -> list[str]:
    """The optional modules (`EXTRA_OF`) that a piece of example code imports or uses."""
    used = [module for call, module in _USES.items() if call in source]
    return [name for name in _IMPORT.findall(source) if name in EXTRA_OF] + used


def _readme_blocks_needing(text: str) -> list[tuple[int, int, list[str]]]:
    """Each fenced code block of a Markdown text that imports an extra: (first line, last line,
    the extras), lines counted from 0."""
    blocks, start = [], None
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("```"):
            if start is None:
                start = number
            else:
                needed = imported_extras("\n".join(lines[start:number]))
                if needed:
                    blocks.append((start, number, needed))
                start = None
    return blocks


def _skip_doctest_examples(item: pytest.Item) -> None:
    """A doctest that needs a missing extra: README.md loses the fenced blocks that do; a
    docstring loses its examples from the first that does (skipped whole when that is the first)."""
    from _pytest.doctest import DoctestItem

    if not isinstance(item, DoctestItem) or item.dtest is None:
        return
    test = item.dtest
    if Path(str(test.filename)).suffix == ".md":
        text = Path(str(test.filename)).read_text(encoding="utf-8")
        gone = [(a, b, m) for a, b, m in _readme_blocks_needing(text) if missing_reason(m) is not None]
        if gone:
            test.examples = [ex for ex in test.examples if not any(a <= ex.lineno <= b for a, b, _ in gone)]
        return
    for number, example in enumerate(test.examples):
        reason = missing_reason(imported_extras(example.source))
        if reason is not None:
            if number == 0:
                pytest.skip(reason)
            test.examples = test.examples[:number]  # what follows may build on it
            return


def pytest_runtest_setup(item: pytest.Item) -> None:
    _skip_doctest_examples(item)
    needed = [str(module) for mark in item.iter_markers("needs") for module in mark.args]
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("backend") in ("jax", "torch"):
        needed.append(callspec.params["backend"])
    reason = missing_reason(needed)
    if reason is not None:
        pytest.skip(reason)
