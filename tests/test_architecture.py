"""The package's shape: no import cycle among its modules, imports at the top of a module only,
and a core that never imports a concrete backend (it finds algorithms through the registry)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import optimeta as om
from optimeta.traits import registered

PACKAGE = Path(__file__).resolve().parent.parent / "optimeta"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The optimeta modules an ``import from`` statement of `module` names."""
    if node.level == 0:
        base = node.module or ""
        if not base.startswith("optimeta"):
            return []
    else:
        parts = module.split(".")
        anchor = parts if is_package else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    names = {f"{base}.{alias.name}" for alias in node.names}
    known = {_name(p) for p in MODULES}
    submodules = sorted(names & known)
    return submodules or [base]


def _type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(the optimeta modules `path` imports when it is imported, optimeta imports made inside
    functions or classes: (line, statement))."""
    module, tree = _name(path), ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    top: set[str] = set()
    nested: list[tuple[int, str]] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            top.update(_target(module, is_package, node))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and _target(module, is_package, inner):
                    nested.append((inner.lineno, ast.unparse(inner)))
    return top - {module}, nested


GRAPH = {_name(path): _imports(path)[0] for path in MODULES}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_graph_is_read_from_the_sources() -> None:
    assert "optimeta._values" in GRAPH["optimeta._objective"]
    assert "optimeta.traits" in GRAPH["optimeta.backends._base"]


def test_no_import_cycle_among_the_modules() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_optimeta_modules_are_imported_at_the_top_of_a_module(path: Path) -> None:
    # A function-level import hides a cycle (or a dependency the layering forbids). Optional
    # extras (jax, torch, numba, ...) are imported where they are used: they are not optimeta's.
    assert _imports(path)[1] == []


CORE = [name for name in GRAPH if not name.startswith("optimeta.backends") and name != "optimeta"]


#: The backends' interface, which the core may import: the shapes of algorithm (`_base`) and the
#: curvature-pair base with its maths (`_pairs`, which a native step runs on its arrays) and the
#: fused passes of elementwise updates (`_fused`, which the native torch step runs on large tensors).
INTERFACE = {"optimeta.backends._base", "optimeta.backends._fused", "optimeta.backends._pairs"}


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_concrete_backend(module: str) -> None:
    # The interface is the core's; the algorithms are found through the registry.
    concrete = {name for name in GRAPH[module] if name.startswith("optimeta.backends") and name not in INTERFACE}
    assert concrete == set()


def test_the_interface_defines_no_algorithm() -> None:
    # What the core may import of the backends registers nothing: every algorithm lives elsewhere.
    assert {cls.__module__ for cls in registered()} & INTERFACE == set()


#: The public names of namedtuples, which start with an underscore.
NAMEDTUPLE_API = {"_fields", "_replace", "_asdict", "_make", "_field_defaults"}


def _defined(tree: ast.Module) -> set[str]:
    """The private names a module defines: functions, classes, attributes it assigns or declares."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_field_of_another_module_is_read(path: Path) -> None:
    # ``obj._name`` (obj not self or cls) is read only where ``_name`` is defined: in its own module.
    tree = ast.parse(path.read_text())
    defined = _defined(tree) | NAMEDTUPLE_API
    foreign = sorted(
        f"{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        and node.attr not in defined
    )
    assert foreign == []


#: The most lines a module of the package may have.
MAX_MODULE_LINES = 420
#: The most lines of code a function of the package may have, its docstring not counted.
MAX_FUNCTION_LINES = 60


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_no_module_is_longer_than_the_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split the module (at most {MAX_MODULE_LINES})"


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines of a function from its first statement after the docstring to its end."""
    body = node.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        if len(body) == 1:
            return 0
        first = body[1]
    return (node.end_lineno or node.lineno) - first.lineno + 1


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_no_function_is_longer_than_the_limit(path: Path) -> None:
    tree = ast.parse(path.read_text())
    long = {
        node.name: lines
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (lines := _code_lines(node)) > MAX_FUNCTION_LINES
    }
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines of code: {long}"


#: The contract suites a new backend must pass: over the registry and the catalogue built from it.
CONTRACT_SUITES = [
    "tests/test_contracts.py",
    "tests/test_catalogue.py",
    "tests/test_trait_behaviour.py",
    "tests/test_guarantees.py",
    "tests/test_reliability.py",
    "tests/test_checkpoint.py",
    "tests/test_faults.py",
    "tests/test_frictions.py",
    "tests/test_interrupts.py",
    "tests/test_nan_policy.py",
    "tests/test_state_modes.py",
    "tests/test_traits.py",
]


def test_a_backend_in_one_file_runs_the_whole_contract_suite() -> None:
    # tests/toy_backend.py defines and registers an algorithm, with its traits and its examples,
    # and nothing else is edited: registered (conftest.py), it is in the catalogue, and every
    # contract test over the registry runs on it and passes (a fresh pytest process, its tests
    # selected by name). Without it registered, none is collected.
    root = PACKAGE.parent
    selected = ["-k", "ToyGradientDescent", "-q", "-p", "no:cacheprovider", *CONTRACT_SUITES]
    env = {**os.environ, "OPTIMETA_TEST_BACKENDS": "toy_backend"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *selected],
        check=False,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", run.stdout).group(1))  # type: ignore[union-attr]
    assert passed >= 250, run.stdout[-2000:]
    if not os.environ.get("OPTIMETA_TEST_BACKENDS"):  # an ordinary run: the registry is the package's own
        assert "ToyGradientDescent" not in [cls.__name__ for cls in om.algorithms()]
