"""What algorithms can handle, what problems need, and the one check between them.

Every algorithm declares its `Traits` in full as class data. A problem's needs are derived in one
place (`requirements`), and compatibility is one function of the two (`check_compatible`), driven
by the table `RULES`: a new trait is one field of `Traits` plus one `Rule`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ._problem import OptimizationProblem
from ._refusal import IncompatibleAlgorithmError, Violation
from ._requirements import Requirements, requirements

__all__ = [
    "RULES",
    "IncompatibleAlgorithmError",
    "Requirements",
    "Rule",
    "Traits",
    "Violation",
    "algorithms",
    "chain_traits",
    "check_compatible",
    "needs_probe",
    "register",
    "registered",
    "requirements",
    "traits",
]


@dataclass(frozen=True, kw_only=True)
class Traits:
    """What an algorithm can handle; every field must be declared.

    Attributes:
        single_call_per_step: Each step evaluates the objective (value and gradient together)
            exactly once, so a stateful objective advances its state once per step.
        commits_state_per_step: Every call within one step receives a copy of the same state
            snapshot, and once per step the state returned at the accepted point is committed.
        tolerates_stochastic_loss: Converges in expectation when repeated calls at one point
            return different values (no line search or other test that trusts exact values).
        requires_gradient: Evaluates the gradient (autograd, jax, torch, finite differences or
            the user's ``grad``); a derivative-free method does not: it calls only ``f``.
        supports_bounds: Honours box constraints ``lb <= u <= ub``.
        requires_bounds: Cannot run without finite box constraints.
        supports_callback: Reports every step to the callback and can be halted by it.
        requires_hessian: Needs second derivatives: Hessians or Hessian-vector products, from
            autograd, or from differences of the user's ``grad``.
        supports_constraints: Honours general constraints ``lb <= c(u) <= ub``
            (``OptimizationProblem(constraints=...)``).
        supports_checkpoint: Runs step by step under ``om.init``: a `Solver` can be stepped,
            checkpointed and resumed (in another process too) with bitwise-identical results.
        has_convergence_test: Ends a run by a test of its own (a gradient tolerance, a planned
            number of iterations); without one, a run needs ``maxiters=``, ``maxtime=`` or
            ``data=``.
        supports_minibatches: Takes one minibatch per step from ``data=`` (a step-wise
            algorithm; a whole-run one hands the objective to its backend once).
    """

    single_call_per_step: bool
    commits_state_per_step: bool
    tolerates_stochastic_loss: bool
    requires_gradient: bool
    supports_bounds: bool
    requires_bounds: bool
    supports_callback: bool
    requires_hessian: bool
    supports_constraints: bool
    supports_checkpoint: bool
    has_convergence_test: bool
    supports_minibatches: bool

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise TypeError(f"trait {f.name} must be a bool, got {getattr(self, f.name)!r}")


TRAIT_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Traits))


#: Traits a chain has only if every stage has them (what it supports); the others (what it
#: requires or uses) it has if any stage has them.
_EVERY_STAGE = (
    "single_call_per_step",
    "tolerates_stochastic_loss",
    "supports_bounds",
    "supports_callback",
    "supports_constraints",
)


def chain_traits(stages: list[tuple[Traits, int | None]]) -> Traits:
    """The traits of a chain of stages (each its traits and its own budget, or None): the
    conservative combination, so that a problem one stage refuses, the chain refuses.

    A stage that calls f once per step threads a state as safely as one that commits per step,
    so the chain commits per step when every stage does one or the other. It ends by itself when
    its last stage has a budget or a convergence test (the stages before have one or the other,
    `Chain` checks). It is not run under ``om.init`` and takes no minibatches: its stages are
    solves of their own.
    """
    declared = [t for t, _ in stages]
    values = {
        f.name: (all if f.name in _EVERY_STAGE else any)(getattr(t, f.name) for t in declared)
        for f in dataclasses.fields(Traits)
    }
    values["commits_state_per_step"] = not values["single_call_per_step"] and all(
        t.single_call_per_step or t.commits_state_per_step for t in declared
    )
    last, budget = stages[-1]
    values["has_convergence_test"] = budget is not None or last.has_convergence_test
    values["supports_checkpoint"] = False
    values["supports_minibatches"] = False
    return Traits(**values)


#: How to make a noisy loss deterministic, by what makes it noisy: the fixes that keep the model
#: honest first; the declaration ``stochastic=False`` last, and only where it can be true.
_DETERMINISTIC_FIXES: dict[str, str] = {
    "evolving": (
        "make the loss deterministic without changing the model: freeze what drives it (a fixed RNG key, "
        'and state_mode="constant" for a state that f returns unchanged) or evaluate it without noise '
        "(dropout off, the full batch). Only if the loss really is deterministic (the state changes but "
        "the loss does not read it: a call counter, running statistics) declare so with stochastic=False"
    ),
    "declared": (
        "evaluate the loss deterministically (a fixed seed, dropout off, the full batch) and build the "
        "problem without stochastic=True"
    ),
    "data": "pass the whole data set as p, without data=, for a deterministic (full-batch) loss",
}


@dataclass(frozen=True)
class Rule:
    """One compatibility rule: when it `applies` to a problem, one of `traits` must be `wanted`.

    `fix` says, where there is one, how to change the problem so that the refused algorithm
    accepts it (an error shows it after the algorithms that accept the problem as it is).
    """

    traits: tuple[str, ...]
    wanted: bool
    applies: Callable[[Requirements], bool]
    why: Callable[[Requirements], str]
    fix: Callable[[Requirements], str] = lambda r: ""

    def violated(self, req: Requirements, declared: Traits) -> bool:
        return self.applies(req) and all(getattr(declared, t) is not self.wanted for t in self.traits)


RULES: tuple[Rule, ...] = (
    Rule(
        ("single_call_per_step", "commits_state_per_step"),
        True,
        lambda r: r.evolving_state,
        lambda r: (
            "the problem's state evolves (state= was given): every call of f advances it, so an "
            "algorithm that calls f several times per step (line-search trial points) would advance "
            "it on points it then discards, unless it gives every call of a step the same snapshot "
            "and commits once per step"
        ),
    ),
    Rule(
        ("tolerates_stochastic_loss",),
        True,
        lambda r: r.stochastic,
        lambda r: (
            f"{r.stochastic_reason}; an algorithm that compares exact values (a Wolfe line "
            "search) breaks on noisy losses without a word"
        ),
        lambda r: _DETERMINISTIC_FIXES.get(r.stochastic_source, ""),
    ),
    Rule(
        ("supports_bounds",),
        True,
        lambda r: r.bounded,
        lambda r: "the problem has bounds, and an algorithm without them would leave the box",
    ),
    Rule(
        ("requires_bounds",),
        False,
        lambda r: not r.finite_bounds,
        lambda r: (
            "the algorithm searches a finite box, and the problem "
            + ("leaves some variables unbounded on a side" if r.bounded else "gives no bounds")
        ),
    ),
    Rule(
        ("supports_constraints",),
        True,
        lambda r: r.constrained,
        lambda r: "the problem has general constraints (constraints=), and the algorithm would ignore them",
    ),
    Rule(
        ("requires_hessian",),
        False,
        lambda r: not r.hessian_available,
        lambda r: r.hessian_missing,
    ),
    Rule(
        ("supports_callback",),
        True,
        lambda r: r.callback,
        lambda r: "a callback was passed to solve, and the algorithm cannot report its steps",
    ),
    Rule(
        ("has_convergence_test",),
        True,
        lambda r: not r.budget,
        lambda r: (
            "no maxiters=, maxtime= or data= bounds the run, and an algorithm without a convergence test "
            "runs until a budget is used up"
        ),
        lambda r: "pass maxiters= or maxtime= (or data=), e.g. maxiters=1000",
    ),
    Rule(
        ("supports_minibatches",),
        True,
        lambda r: r.minibatches,
        lambda r: "data= feeds one minibatch per step, and the algorithm runs as one whole solve of its backend",
        lambda r: _DETERMINISTIC_FIXES["data"],
    ),
    Rule(
        ("supports_checkpoint",),
        True,
        lambda r: bool(r.stepwise),
        lambda r: f"{r.stepwise}, and the algorithm runs as one call to its backend",
    ),
)


def violations(req: Requirements, declared: Traits) -> list[Violation]:
    """Every rule that `declared` breaks for a problem with requirements `req`."""
    return [Violation(r.traits, r.wanted, r.why(req), r.fix(req)) for r in RULES if r.violated(req, declared)]


def needs_probe(req: Requirements, declared: Traits) -> bool:
    """Whether the determinism probe must run: an algorithm that trusts exact values, on a
    problem that does not declare (or imply) noise."""
    return not declared.tolerates_stochastic_loss and not req.stochastic


def _stage_traits(alg: Any) -> list[tuple[Any, Traits]]:
    """Each stage of a polyalgorithm with the traits it brings to the run: a stage given its own
    budget ends by it, as one with a convergence test does."""
    out = []
    for stage, budget in getattr(alg, "stages", ()):
        declared = traits(stage)
        if budget is not None:
            declared = dataclasses.replace(declared, has_convergence_test=True)
        out.append((stage, declared))
    return out


def check_compatible(alg: Any, req: Requirements, *, probed: bool = False) -> None:
    """Raise `IncompatibleAlgorithmError` listing every rule `alg` breaks for `req`.

    Args:
        alg: An algorithm instance.
        req: The problem's requirements, from `requirements`.
        probed: The requirements come from the determinism probe, which called the objective.

    Raises:
        IncompatibleAlgorithmError: At least one rule fails; the message names each failing trait
            (and, for a `Chain`, the stage that fails it), why the problem needs it, and the
            registered algorithms that would accept the problem.
    """
    found = violations(req, traits(alg))
    if found:
        accepted = _accepted(req, exclude=[])
        budgeted = [] if req.budget else _accepted(dataclasses.replace(req, budget=True), exclude=accepted)
        refusing = [
            (i, stage, v)
            for i, (stage, declared) in enumerate(_stage_traits(alg), 1)
            if (v := violations(req, declared))
        ]
        raise IncompatibleAlgorithmError(alg, found, accepted, probed=probed, stages=refusing, budgeted=budgeted)


def _accepted(req: Requirements, exclude: list[str]) -> list[str]:
    return [name for name, cls in sorted(_REGISTRY.items()) if name not in exclude and not violations(req, cls.traits)]


_REGISTRY: dict[str, Any] = {}

#: The situations `default_algorithm` tells apart, each claimed by one registered class (its
#: ``default_for`` class data): a noisy loss (an evolving state, ``stochastic=True``,
#: minibatches), general constraints, bounds or many variables, and a smooth problem.
DEFAULT_SITUATIONS = ("noisy", "constrained", "bounded_or_large", "smooth")

A = TypeVar("A", bound=type)


def register(cls: A) -> A:
    """Class decorator: add an algorithm class to the registry behind `algorithms`."""
    if not isinstance(cls.__dict__.get("traits"), Traits):
        raise TypeError(f"{cls.__name__} must declare `traits = Traits(...)` as class data to be registered")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        where = [f"{name} (abstract in {next(b.__name__ for b in cls.__mro__ if name in vars(b))})" for name in missing]
        raise TypeError(f"{cls.__name__} cannot be registered: it does not implement {', '.join(where)}")
    taken = _REGISTRY.get(cls.__name__)
    if taken is not None and taken is not cls:
        raise ValueError(
            f"an algorithm named {cls.__name__} is already registered ({taken.__module__}.{taken.__qualname__}); "
            "give the new one another name"
        )
    examples = getattr(cls, "examples", None)
    if callable(examples):  # an Algorithm: its configurations for tests and benchmarks
        found = examples()
        if not found or not all(isinstance(getattr(e, "algorithm", None), cls) for e in found):
            raise TypeError(f"{cls.__name__}.examples() must give at least one Example, each of a {cls.__name__}")
    situation = cls.__dict__.get("default_for")
    if situation is not None:
        if situation not in DEFAULT_SITUATIONS:
            raise ValueError(
                f"{cls.__name__}.default_for must be one of {', '.join(DEFAULT_SITUATIONS)}, got {situation!r}"
            )
        claimed = [name for name, other in _REGISTRY.items() if other.__dict__.get("default_for") == situation]
        if claimed and claimed != [cls.__name__]:
            raise ValueError(
                f"{claimed[0]} is already the default for {situation!r} problems; {cls.__name__} cannot be"
            )
    _REGISTRY[cls.__name__] = cls
    return cls


def registered() -> list[Any]:
    """The registered algorithm classes, in the order they were registered (`algorithms` filters
    and sorts them)."""
    return list(_REGISTRY.values())


def traits(alg: Any) -> Traits:
    """The traits an algorithm (instance or class) declares.

    Args:
        alg: An algorithm instance such as ``om.BFGS()``, or its class.

    Returns:
        Its `Traits`.

    Raises:
        TypeError: ``alg`` is not an algorithm.

    Example:
        >>> import optimeta as om
        >>> om.traits(om.BFGS()).single_call_per_step
        False
    """
    if isinstance(alg, type) and getattr(alg, "combines_stages", False):
        raise TypeError(
            f"{alg.__name__}'s traits are those of its stages, combined (`chain_traits`): ask them of an "
            f"instance, om.traits(om.{alg.__name__}(...))"
        )
    declared = getattr(alg, "traits", None)
    if not isinstance(declared, Traits):
        raise TypeError(f"expected an optimeta algorithm or algorithm class, got {alg!r}")
    return declared


def algorithms(*, for_problem: OptimizationProblem | None = None, **wanted: bool) -> list[Any]:
    """The registered algorithm classes whose traits have the given values, sorted by name.

    Args:
        for_problem: Keep only the algorithms that accept this problem: every rule of
            `check_compatible` holds for its `requirements` (a solve without callback or
            minibatches; an objective that hides state is found only by ``solve``'s probe).
        **wanted: Trait names and the value each must have, e.g. ``single_call_per_step=True``.

    Returns:
        The matching classes (all registered ones when nothing is asked).

    Raises:
        ValueError: An unknown trait name.
        TypeError: A value that is not a bool.

    Example:
        >>> import optimeta as om
        >>> [cls.__name__ for cls in om.algorithms(single_call_per_step=False, tolerates_stochastic_loss=True)]
        ['OLBFGS']
        >>> import numpy as np
        >>> box = om.OptimizationProblem(lambda u, p: (u ** 2).sum(), np.ones(2), bounds=(-np.ones(2), np.ones(2)))
        >>> [cls.__name__ for cls in om.algorithms(for_problem=box, requires_bounds=True)]
        ['DIRECT', 'DifferentialEvolution', 'DualAnnealing', 'SHGO']
    """
    for name, value in wanted.items():
        if name not in TRAIT_NAMES:
            raise ValueError(f"unknown trait {name!r}; the traits are: {', '.join(TRAIT_NAMES)}")
        if not isinstance(value, bool):
            raise TypeError(f"trait {name} must be asked for with True or False, got {value!r}")
    if for_problem is not None and not isinstance(for_problem, OptimizationProblem):
        raise TypeError(f"for_problem must be an OptimizationProblem or None, got {for_problem!r}")
    req = None if for_problem is None else requirements(for_problem)
    return [
        cls
        for _, cls in sorted(_REGISTRY.items())
        if all(getattr(cls.traits, name) is value for name, value in wanted.items())
        and (req is None or not violations(req, cls.traits))
    ]
