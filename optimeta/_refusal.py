"""The refusal of an algorithm for a problem: `IncompatibleAlgorithmError` and the `Violation`s
it lists, with the message that names every failed rule, the algorithms that accept the problem
and the changes that would let the refused one in. The rules themselves are in `optimeta.traits`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["IncompatibleAlgorithmError", "Violation"]


@dataclass(frozen=True)
class Violation:
    """One failed rule: the traits (any one would do), the value the problem needs, why, and how
    to change the problem so that the algorithm accepts it (empty when there is no such fix)."""

    traits: tuple[str, ...]
    needed: bool
    why: str
    fix: str = ""

    @property
    def trait(self) -> str:
        """The failing trait's name, or the alternatives joined by "or"."""
        return " or ".join(self.traits)


class IncompatibleAlgorithmError(ValueError):
    """An algorithm cannot solve a problem; raised by `solve` before the objective is called.

    The message lists every failed rule (for a polyalgorithm such as `Chain`, under the stage
    that fails it: "stage 2 of 3 (BFGS)"), then the registered algorithms that accept the
    problem, then the changes to the problem that would let the refused algorithm accept it.

    Attributes:
        algorithm: The refused algorithm.
        violations: Every failed rule, each naming its trait.
        alternatives: Names of the registered algorithms that accept the problem, sorted (for a
            solve without a budget, with those that need only one).
        stages: For a polyalgorithm, each refusing stage as (its number from 1, the stage's
            algorithm, the rules it fails); empty otherwise.
    """

    def __init__(
        self,
        algorithm: Any,
        violations: list[Violation],
        alternatives: list[str],
        *,
        probed: bool = False,
        stages: list[tuple[int, Any, list[Violation]]] | None = None,
        budgeted: list[str] | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.violations = violations
        self.alternatives = sorted([*alternatives, *(budgeted or [])])
        self.stages = stages or []
        when = "(found by the determinism probe at u0)" if probed else "(the objective was not called)"
        count = len(_stages(algorithm))
        header = f"{algorithm!r} cannot solve this problem {when}:"
        if self.stages:
            header = f"{header[:-1]}: {_stage_names(self.stages, count)} {'refuses' if len(self.stages) == 1 else 'refuse'} it:"
            refusals = [(alg, found, f"stage {i} of {count} ({_name(alg)}), ") for i, alg, found in self.stages]
        else:
            refusals = [(algorithm, violations, "")]
        lines = [header]
        fixes: dict[str, list[str]] = {}  # each fix, with the algorithms it would let in
        for alg, found, where in refusals:
            declared, name = alg.traits, _name(alg)
            for v in found:
                need = " or ".join(f"{t}={v.needed}" for t in v.traits)
                has = ", ".join(f"{t}={getattr(declared, t)}" for t in v.traits)
                lines.append(f"  - {where}{v.trait}: the problem needs {need}, {name} has {has}. Why: {v.why}.")
                if v.fix and name not in fixes.setdefault(v.fix, []):
                    fixes[v.fix].append(name)
        given = ", ".join(budgeted or [])
        if alternatives and budgeted:
            lines.append(
                f"Algorithms that accept this problem: {', '.join(alternatives)}; given maxiters= or maxtime=, "
                f"also: {given}."
            )
        elif alternatives:
            lines.append(f"Algorithms that accept this problem: {', '.join(alternatives)}.")
        elif budgeted:
            lines.append(f"Algorithms that accept this problem, given maxiters= or maxtime=: {given}.")
        else:
            lines.append("No registered algorithm accepts this problem.")
        lines.extend(f"To use {' and '.join(names)} all the same: {fix}." for fix, names in fixes.items())
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its message, with its attributes (the notes and partial solution added on
        # the way included) as state, so that it crosses to another process whole.
        return (_rebuilt_error, (type(self), self.args), self.__dict__)


# Raised to users as `optimeta.traits.IncompatibleAlgorithmError` (re-exported there and as
# `om.IncompatibleAlgorithmError`): tracebacks and pickles name it there.
IncompatibleAlgorithmError.__module__ = "optimeta.traits"


def _name(alg: Any) -> str:
    return alg.__name__ if isinstance(alg, type) else type(alg).__name__


def _stages(alg: Any) -> list[Any]:
    """The stages of a polyalgorithm (a `Chain`'s ``stages``, pairs of algorithm and budget),
    or [] for a single algorithm."""
    return [stage for stage, _ in getattr(alg, "stages", ())]


def _stage_names(refusing: list[tuple[int, Any, list[Violation]]], count: int) -> str:
    """ "stage 2 of 3 (BFGS)", or "stages 1 (LBFGS) and 3 (BFGS) of 3"."""
    if len(refusing) == 1:
        i, alg, _ = refusing[0]
        return f"stage {i} of {count} ({_name(alg)})"
    named = [f"{i} ({_name(alg)})" for i, alg, _ in refusing]
    return f"stages {', '.join(named[:-1])} and {named[-1]} of {count}"


def _rebuilt_error(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    exc = cls.__new__(cls)
    exc.args = args
    return exc
