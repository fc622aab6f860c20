"""The README's benchmark table: written from a run, and checked against a fresh one.

``python -m benchmarks --update-readme`` runs the quick suite twice, the second time from a
starting point moved by a relative 1e-12 (`suite.perturb`: what another machine's BLAS kernel,
rounding differently, does to a run after its first few steps), and writes the gap table between
the README's markers `START` and `END`. A cell shows the gap to 1 significant digit; a cell whose
*accuracy class* (`accuracy_class`) differs between the two runs is marked sensitive to rounding
(`SENSITIVE`, a ``~`` suffix). ``python -m benchmarks --check-readme`` compares a fresh quick run
with that table: every refused cell must be refused by the same traits, and every cell not marked
sensitive must agree (`agree`): be in the same class, or within a factor of `ROUNDING_FACTOR` of
the README's gap (a gap near a decade's edge crosses it on a CPU whose BLAS kernel rounds
otherwise), or, for a run that diverged (a gap of `DIVERGED` and more), have diverged too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .suite import Result

START = "<!-- benchmark-summary:start -->"
END = "<!-- benchmark-summary:end -->"
PERF_START = "<!-- benchmark-perf:start -->"
PERF_END = "<!-- benchmark-perf:end -->"
#: The suffix of a cell whose accuracy class moved when u0 moved by a rounding error.
SENSITIVE = "~"
#: A gap within SOLVED * max(1, |f*|) of the optimum is "solved".
SOLVED = 1e-6
NONFINITE = "NaN/Inf"
#: Two gaps within this factor of each other agree, whatever decades they fall in.
ROUNDING_FACTOR = 10.0
#: A gap of this (relative to the optimum where it exceeds 1) and more: the run diverged.
DIVERGED = 1e10
README = Path(__file__).resolve().parent.parent / "README.md"


def cell(result: Result | None) -> str:
    """A result as the README shows it: the gap (the objective where the optimum is unknown) to
    1 significant digit, ``NaN/Inf`` for a run that ended on a non-finite value, the refusing
    traits, ``error``, or an empty cell for a pair not run."""
    if result is None or result.status in ("not applicable", "not configured"):
        return ""
    if result.status == "refused":
        return "refused: " + ", ".join(result.refused_by)
    if result.status != "ok":
        return "error"
    value = result.gap if result.gap is not None else result.objective
    if result.message == "NONFINITE" or value is None or not math.isfinite(value):
        return NONFINITE
    return format(value, ".0e")


def accuracy_class(text: str, f_star: float | None) -> str:
    """The class of a cell (as `cell` writes it, without its sensitivity mark), which a run on
    another machine must reproduce: ``solved`` (a gap within 1e-6 of the optimum, relative to
    it where it exceeds 1), the decade of the gap (``1e-03`` for a displayed gap from 1e-03 to
    9e-03; a negative one, a point within the constraint tolerance, as ``-1e-03``), ``NaN/Inf``,
    ``error``, ``not run``, or the refusal with its traits. Where the optimum is unknown the
    cell is the objective, classed by its decade."""
    text = text.strip()
    if text in ("", "error") or text.startswith("refused"):
        return text or "not run"
    try:
        value = float(text)
    except ValueError:
        return NONFINITE if NONFINITE in text else f"unreadable: {text}"
    if not math.isfinite(value):
        return NONFINITE
    if f_star is not None and abs(value) <= SOLVED * max(1.0, abs(f_star)):
        return "solved"
    if value == 0.0:
        return "0"
    exponent = int(format(value, ".0e").split("e")[1])
    return f"{'-' if value < 0 else ''}1e{exponent:+03d}"


@dataclass(frozen=True)
class Table:
    """A solver-by-problem table of cells, with the cells marked sensitive."""

    problems: list[str]
    solvers: list[str]
    cells: dict[tuple[str, str], str]  # (solver, problem) -> cell, without its mark
    sensitive: frozenset[tuple[str, str]] = frozenset()

    def markdown(self) -> str:
        lines = ["| solver | " + " | ".join(self.problems) + " |", "|---" * (len(self.problems) + 1) + "|"]
        for solver in self.solvers:
            row = [
                self.cells.get((solver, p), "") + (SENSITIVE if (solver, p) in self.sensitive else "")
                for p in self.problems
            ]
            lines.append(f"| {solver} | " + " | ".join(row) + " |")
        return "\n".join(lines)


def table(
    results: list[Result], perturbed: list[Result] | None = None, f_stars: Mapping[str, float | None] = {}
) -> Table:
    """The table of `results`; with `perturbed` (the same runs from the moved u0), the cells whose
    class differs between the two are marked sensitive."""
    problems = list(dict.fromkeys(r.problem for r in results))
    solvers = list(dict.fromkeys(r.solver for r in results if cell(r)))
    cells = {(r.solver, r.problem): cell(r) for r in results if cell(r)}
    sensitive = set()
    if perturbed is not None:
        moved = {(r.solver, r.problem): cell(r) for r in perturbed}
        for key in {*cells, *(k for k, v in moved.items() if v)}:
            f_star = f_stars.get(key[1])
            if accuracy_class(cells.get(key, ""), f_star) != accuracy_class(moved.get(key, ""), f_star):
                sensitive.add(key)
    return Table(problems, solvers, cells, frozenset(sensitive))


def parse(text: str) -> Table:
    """The table between the markers `START` and `END` of a README's text."""
    if START not in text or END not in text:
        raise ValueError(f"the README has no benchmark table between {START} and {END}")
    block = text.split(START, 1)[1].split(END, 1)[0]
    rows = [line.strip() for line in block.splitlines() if line.strip().startswith("|")]
    if len(rows) < 2:
        raise ValueError("the README's benchmark block holds no table")
    split = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    problems = split[0][1:]
    cells, sensitive, solvers = {}, set(), []
    for row in split[2:]:
        solver = row[0]
        solvers.append(solver)
        for problem, value in zip(problems, row[1:]):
            if value.endswith(SENSITIVE):
                sensitive.add((solver, problem))
                value = value[: -len(SENSITIVE)].rstrip()
            if value:
                cells[solver, problem] = value
    return Table(problems, solvers, cells, frozenset(sensitive))


def compare(readme: Table, fresh: Table, f_stars: Mapping[str, float | None], skipped: Iterable[str] = ()) -> list[str]:
    """Every cell where a fresh run disagrees with the README: a refusal by other traits (marked
    or not), a pair run in one and not in the other, or, in a cell not marked sensitive, another
    accuracy class. The solvers in `skipped` (peers not installed here) are left out."""
    left_out = set(skipped)
    problems = list(dict.fromkeys([*readme.problems, *fresh.problems]))
    solvers = [s for s in dict.fromkeys([*readme.solvers, *fresh.solvers]) if s not in left_out]
    mismatches = []
    for solver in solvers:
        for problem in problems:
            key = (solver, problem)
            then, now = readme.cells.get(key, ""), fresh.cells.get(key, "")
            was, isnow = accuracy_class(then, f_stars.get(problem)), accuracy_class(now, f_stars.get(problem))
            refusal = then.startswith("refused") or now.startswith("refused")
            if agree(then, now, f_stars.get(problem)) or (
                key in readme.sensitive and not refusal and "not run" not in (was, isnow)
            ):
                continue
            mismatches.append(
                f"{solver} on {problem}: README {then or 'not run'!r} ({was}), now {now or 'not run'!r} ({isnow})"
            )
    return mismatches


def agree(then: str, now: str, f_star: float | None) -> bool:
    """Whether a fresh cell `now` reproduces the README's `then` (both as `cell` writes them):
    the same accuracy class; or two gaps within `ROUNDING_FACTOR` of each other (a gap within
    the solved tolerance counting as that tolerance), of one sign; or two runs that diverged."""
    if accuracy_class(then, f_star) == accuracy_class(now, f_star):
        return True
    try:
        a, b = float(then), float(now)
    except ValueError:
        return False
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    scale = 1.0 if f_star is None else max(1.0, abs(f_star))
    if min(abs(a), abs(b)) >= DIVERGED * scale:
        return True
    tolerance = 0.0 if f_star is None else SOLVED * scale
    if (a < -tolerance and b > tolerance) or (a > tolerance and b < -tolerance):
        return False
    low, high = sorted((max(abs(a), tolerance), max(abs(b), tolerance)))
    return high <= ROUNDING_FACTOR * low


def replace_block(text: str, block: str, start: str = START, end: str = END) -> str:
    """`text` with what lies between the markers `start` and `end` replaced by `block`."""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"the README has no {start} ... {end} markers")
    return pattern.sub(lambda _: f"{start}\n{block.strip()}\n{end}", text, count=1)
