"""Traits: declared in full and frozen, the registry behind `algorithms()`, and the rules of `traits.py`."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest

import optimeta as om
from optimeta.traits import TRAIT_NAMES, check_compatible, register, requirements

# `optimeta.traits` the attribute is the function `traits()`; the module lives in sys.modules.
traits_mod = importlib.import_module("optimeta.traits")

FIELDS = [f.name for f in dataclasses.fields(om.Traits)]
ALL_TRUE = dict.fromkeys(FIELDS, True)

INSTANCES = [
    om.SGD(lr=0.1),
    om.SGD(lr=0.1, momentum=0.5, nesterov=True),
    om.Adam(),
    om.BFGS(gtol=1e-3),
    om.LBFGS(memory=3),
    om.OLBFGS(lr=0.5),
]

# Transcribed from the "Traits:" sections of the docstrings.
FIRST_ORDER = om.Traits(
    single_call_per_step=True,
    commits_state_per_step=False,
    tolerates_stochastic_loss=True,
    requires_gradient=True,
    supports_bounds=True,
    requires_bounds=False,
    supports_callback=True,
    requires_hessian=False,
    supports_constraints=False,
    supports_checkpoint=True,
    has_convergence_test=False,
    supports_minibatches=True,
)
DECLARED = {
    "SGD": (om.SGD, FIRST_ORDER),
    "Adam": (om.Adam, FIRST_ORDER),
    "BFGS": (
        om.BFGS,
        om.Traits(
            single_call_per_step=False,
            commits_state_per_step=True,
            tolerates_stochastic_loss=False,
            requires_gradient=True,
            supports_bounds=False,
            requires_bounds=False,
            supports_callback=True,
            requires_hessian=False,
            supports_constraints=False,
            supports_checkpoint=True,
            has_convergence_test=True,
            supports_minibatches=True,
        ),
    ),
    "LBFGS": (
        om.LBFGS,
        om.Traits(
            single_call_per_step=False,
            commits_state_per_step=True,
            tolerates_stochastic_loss=False,
            requires_gradient=True,
            supports_bounds=True,
            requires_bounds=False,
            supports_callback=True,
            requires_hessian=False,
            supports_constraints=False,
            supports_checkpoint=False,
            has_convergence_test=True,
            supports_minibatches=False,
        ),
    ),
    "OLBFGS": (
        om.OLBFGS,
        om.Traits(
            single_call_per_step=False,
            commits_state_per_step=True,
            tolerates_stochastic_loss=True,
            requires_gradient=True,
            supports_bounds=False,
            requires_bounds=False,
            supports_callback=True,
            requires_hessian=False,
            supports_constraints=False,
            supports_checkpoint=True,
            has_convergence_test=False,
            supports_minibatches=True,
        ),
    ),
}


def _declared(*true: str) -> om.Traits:
    """Traits with the named fields True and every other one False."""
    unknown = set(true) - {f.name for f in dataclasses.fields(om.Traits)}
    assert not unknown, unknown
    return om.Traits(**{f.name: f.name in true for f in dataclasses.fields(om.Traits)})


# The scipy methods added with general constraints and global search, from their docstrings: none
# calls f once per step, commits its state per step or tolerates noise.
_GRADIENT = ("requires_gradient", "has_convergence_test")
_CONSTRAINED = ("supports_bounds", "supports_constraints", "supports_callback")
_GLOBAL = ("supports_bounds", "requires_bounds")
DECLARED.update(
    {
        "Dogleg": (om.Dogleg, _declared(*_GRADIENT, "requires_hessian", "supports_callback")),
        "SLSQP": (om.SLSQP, _declared(*_GRADIENT, *_CONSTRAINED)),
        "TrustConstr": (om.TrustConstr, _declared(*_GRADIENT, *_CONSTRAINED)),
        "COBYLA": (om.COBYLA, _declared(*_CONSTRAINED, "has_convergence_test")),
        "COBYQA": (om.COBYQA, _declared(*_CONSTRAINED, "has_convergence_test")),
        "DifferentialEvolution": (
            om.DifferentialEvolution,
            _declared(*_GLOBAL, "supports_constraints", "supports_callback", "has_convergence_test"),
        ),
        "DualAnnealing": (om.DualAnnealing, _declared(*_GLOBAL, *_GRADIENT)),
        "DIRECT": (om.DIRECT, _declared(*_GLOBAL, "supports_callback", "has_convergence_test")),
        "SHGO": (om.SHGO, _declared(*_GLOBAL, *_GRADIENT, "supports_constraints")),
    }
)


class Declared:
    """Stands for an algorithm with the given traits, for checks that need no run."""

    def __init__(self, **values: bool) -> None:
        self.traits = om.Traits(**{**dict.fromkeys(FIELDS, False), **values})


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private copy of the registry, so classes registered by a test do not outlive it."""
    monkeypatch.setattr(traits_mod, "_REGISTRY", dict(traits_mod._REGISTRY))


class Recorded:
    """A stateful objective that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, u: Any, p: Any, state: dict[str, int]) -> Any:
        self.calls += 1
        return anp.sum((u - p) ** 2), {"key": state["key"] + 1}


# traits() and Traits


@pytest.mark.parametrize("alg", INSTANCES, ids=repr)
def test_traits_of_instance_and_class_agree_and_are_frozen(alg: Any) -> None:
    declared = om.traits(alg)
    assert isinstance(declared, om.Traits)
    assert declared == om.traits(type(alg))
    before = dataclasses.asdict(declared)
    with pytest.raises(dataclasses.FrozenInstanceError):
        declared.single_call_per_step = not declared.single_call_per_step  # type: ignore[misc]
    assert dataclasses.asdict(om.traits(type(alg))) == before


@pytest.mark.parametrize("name", list(DECLARED))
def test_declared_traits_match_docstrings(name: str) -> None:
    cls, expected = DECLARED[name]
    assert om.traits(cls) == expected


@pytest.mark.parametrize("bad", [object(), 3, None, "BFGS", om.Traits], ids=["object", "int", "None", "str", "Traits"])
def test_traits_of_non_algorithm_is_type_error(bad: Any) -> None:
    with pytest.raises(TypeError):
        om.traits(bad)


@pytest.mark.parametrize("missing", FIELDS)
def test_traits_requires_every_field(missing: str) -> None:
    given = {name: True for name in FIELDS if name != missing}
    with pytest.raises(TypeError, match=missing):
        om.Traits(**given)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", [1, 0, None, "True", 1.0], ids=["1", "0", "None", "str", "float"])
def test_traits_rejects_non_bool(field: str, value: Any) -> None:
    with pytest.raises(TypeError, match=field):
        om.Traits(**{**ALL_TRUE, field: value})


# algorithms() and the registry


def test_algorithms_lists_registered_classes_sorted_by_name() -> None:
    found = om.algorithms()
    names = [cls.__name__ for cls in found]
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    assert {"SGD", "Adam", "BFGS"} <= set(names)
    assert {om.SGD, om.Adam, om.BFGS} <= set(found)
    for cls in found:
        assert isinstance(cls, type)
        assert isinstance(om.traits(cls), om.Traits)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("name", FIELDS)
def test_algorithms_filters_by_one_trait(name: str, value: bool) -> None:
    expected = [cls for cls in om.algorithms() if getattr(om.traits(cls), name) is value]
    assert om.algorithms(**{name: value}) == expected


def test_algorithms_single_call_per_step() -> None:
    assert om.algorithms(single_call_per_step=True) == [
        cls for cls in om.algorithms() if om.traits(cls).single_call_per_step
    ]
    assert {om.SGD, om.Adam} <= set(om.algorithms(single_call_per_step=True))
    assert om.BFGS not in om.algorithms(single_call_per_step=True)
    assert om.BFGS in om.algorithms(single_call_per_step=False)


@pytest.mark.parametrize(
    "wanted",
    [
        {"single_call_per_step": True, "supports_bounds": True},
        {"single_call_per_step": False, "supports_callback": True},
        {"single_call_per_step": True, "tolerates_stochastic_loss": False},
        {"requires_gradient": True, "supports_bounds": False, "requires_bounds": False},
        ALL_TRUE,
    ],
    ids=["stepwise-bounded", "multicall-callback", "contradictory", "three", "all-true"],
)
def test_algorithms_combined_filters(wanted: dict[str, bool]) -> None:
    expected = [cls for cls in om.algorithms() if all(getattr(om.traits(cls), k) is v for k, v in wanted.items())]
    assert om.algorithms(**wanted) == expected


def test_algorithms_combined_filters_known_members() -> None:
    both = om.algorithms(single_call_per_step=True, supports_bounds=True)
    assert {om.SGD, om.Adam} <= set(both)
    assert om.BFGS not in both
    assert om.BFGS in om.algorithms(single_call_per_step=False, supports_callback=True)
    assert om.BFGS not in om.algorithms(single_call_per_step=False, supports_bounds=True)


@pytest.mark.parametrize("name", ["no_such_trait", "single_call_per_stp", "stochastic"])
def test_algorithms_unknown_trait_is_value_error_naming_it(name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        om.algorithms(**{name: True})


@pytest.mark.parametrize("value", [1, 0, None, "True"], ids=["1", "0", "None", "str"])
def test_algorithms_non_bool_value_is_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="single_call_per_step"):
        om.algorithms(single_call_per_step=value)


def test_register_adds_a_class_in_name_order(registry: None) -> None:
    @register
    class AAAFake:
        traits = om.Traits(**{**dict.fromkeys(FIELDS, False), "single_call_per_step": True})

    found = om.algorithms()
    assert found[0] is AAAFake
    assert [cls.__name__ for cls in found] == sorted(cls.__name__ for cls in found)
    assert AAAFake in om.algorithms(single_call_per_step=True)
    assert AAAFake not in om.algorithms(requires_gradient=True)


@pytest.mark.parametrize(
    "declaration",
    [None, dict(ALL_TRUE), "Traits(...)", FIRST_ORDER.__dict__],
    ids=["absent", "dict", "str", "traits-dict"],
)
def test_register_refuses_class_without_traits(registry: None, declaration: Any) -> None:
    before = om.algorithms()
    body = {} if declaration is None else {"traits": declaration}
    cls = type("NoTraits", (), body)
    with pytest.raises(TypeError, match="NoTraits"):
        register(cls)
    assert om.algorithms() == before


def test_register_refuses_a_class_that_misses_an_abstract_method(registry: None) -> None:
    from optimeta.backends._base import FirstOrderAlgorithm, StepwiseAlgorithm, WholeRunAlgorithm

    before = om.algorithms()
    cases = [
        (StepwiseAlgorithm, {"init": lambda self, x0: None}, "step (abstract in StepwiseAlgorithm)"),
        (StepwiseAlgorithm, {}, "init (abstract in StepwiseAlgorithm), step (abstract in StepwiseAlgorithm)"),
        (FirstOrderAlgorithm, {"init": lambda self, x0: None}, "update (abstract in FirstOrderAlgorithm)"),
        (WholeRunAlgorithm, {}, "run (abstract in WholeRunAlgorithm)"),
    ]
    for base, methods, missing in cases:
        cls = type("Incomplete", (base,), {"traits": FIRST_ORDER, **methods})
        with pytest.raises(TypeError) as info:
            register(cls)
        assert str(info.value) == f"Incomplete cannot be registered: it does not implement {missing}"
        with pytest.raises(TypeError, match="abstract"):
            cls()
    assert om.algorithms() == before


# requirements and the rules


def _bounded_stateful(rec: Recorded, **kwargs: Any) -> om.OptimizationProblem:
    box = (np.full(3, -5.0), np.full(3, 5.0))
    return om.OptimizationProblem(rec, np.zeros(3), p=np.ones(3), state={"key": 0}, bounds=box, **kwargs)


def test_every_violation_is_collected_at_once() -> None:
    rec = Recorded()
    prob = _bounded_stateful(rec)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, om.BFGS(), callback=lambda info: None)
    assert rec.calls == 0
    # BFGS commits its state once per step, so only the noise and the bounds refuse it.
    expected = {"tolerates_stochastic_loss", "supports_bounds"}
    assert sorted(v.trait for v in info.value.violations) == sorted(expected)
    assert all(v.needed is True for v in info.value.violations)
    message = str(info.value)
    for trait in expected:
        assert re.search(rf"\b{trait}\b", message), message
    assert "BFGS" in message
    assert prob.state == {"key": 0}


def test_an_algorithm_without_any_state_commit_gets_every_violation() -> None:
    req = requirements(_bounded_stateful(Recorded()), callback=True)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        check_compatible(Declared(), req)
    assert [v.trait for v in info.value.violations] == [
        "single_call_per_step or commits_state_per_step",
        "tolerates_stochastic_loss",
        "supports_bounds",
        "supports_callback",
    ]
    assert "single_call_per_step=True or commits_state_per_step=True" in str(info.value)


def test_requirements_of_stateful_bounded_problem_with_callback() -> None:
    req = requirements(_bounded_stateful(Recorded()), callback=True)
    assert (req.evolving_state, req.stochastic, req.bounded, req.callback) == (True, True, True, True)
    assert req.stochastic_reason
    assert not requirements(_bounded_stateful(Recorded())).callback


def test_callback_needs_supports_callback() -> None:
    req = requirements(_bounded_stateful(Recorded(), stochastic=False), callback=True)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        check_compatible(Declared(single_call_per_step=True, supports_bounds=True), req)
    assert [v.trait for v in info.value.violations] == ["supports_callback"]
    check_compatible(Declared(single_call_per_step=True, supports_bounds=True, supports_callback=True), req)


def test_requires_bounds_refuses_unbounded_problem() -> None:
    prob = om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.zeros(2))
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        check_compatible(Declared(requires_bounds=True, supports_bounds=True), requirements(prob))
    assert [v.trait for v in info.value.violations] == ["requires_bounds"]
    assert info.value.violations[0].needed is False


@pytest.mark.parametrize(
    "bounds",
    [(0.0, None), (None, 1.0), (np.array([0.0, -np.inf]), 1.0), (np.zeros(2), np.array([1.0, np.inf]))],
    ids=["lower-only", "upper-only", "one-lower-infinite", "one-upper-infinite"],
)
def test_requires_bounds_refuses_a_box_open_on_one_side(bounds: Any) -> None:
    # Bounded (so supports_bounds is needed), but not on every variable on both sides by finite
    # numbers: a method that searches a finite box is refused, for that alone.
    prob = om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.full(2, 0.5), bounds=bounds)
    req = requirements(prob)
    assert req.bounded and not req.finite_bounds
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        check_compatible(Declared(requires_bounds=True, supports_bounds=True), req)
    assert [v.trait for v in info.value.violations] == ["requires_bounds"]
    assert "leaves some variables unbounded on a side" in str(info.value)
    check_compatible(Declared(supports_bounds=True), req)
    finite = om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.full(2, 0.5), bounds=(0.0, 1.0))
    check_compatible(Declared(requires_bounds=True, supports_bounds=True), requirements(finite))


def test_constraints_need_supports_constraints() -> None:
    disk = om.Constraint(lambda u, p: anp.sum(u**2), ub=1.0)
    constrained = requirements(om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.zeros(2), constraints=[disk]))
    plain = requirements(om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.zeros(2)))
    assert constrained.constrained and not plain.constrained
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        check_compatible(Declared(), constrained)
    assert [(v.trait, v.needed) for v in info.value.violations] == [("supports_constraints", True)]
    check_compatible(Declared(supports_constraints=True), constrained)
    check_compatible(Declared(supports_constraints=True), plain)


def _stateful_deterministic(rec: Recorded) -> om.OptimizationProblem:
    return om.OptimizationProblem(rec, np.zeros(3), p=np.ones(3), state={"key": 0}, stochastic=False)


def _stateless_stochastic(rec: Recorded) -> om.OptimizationProblem:
    def loss(u: Any, p: Any) -> Any:
        return rec(u, p, {"key": 0})[0]

    return om.OptimizationProblem(loss, np.zeros(3), p=np.ones(3), stochastic=True)


@pytest.mark.parametrize(
    ("build", "alternatives"),
    [
        (_stateful_deterministic, ("single_call_per_step", "commits_state_per_step")),
        (_stateless_stochastic, ("tolerates_stochastic_loss",)),
    ],
    ids=["stateful-stochastic-False", "stateless-stochastic-True"],
)
def test_problem_needs_only_its_one_rule(build: Any, alternatives: tuple[str, ...]) -> None:
    rec = Recorded()
    prob = build(rec)
    req = requirements(prob)
    for trait in alternatives:
        check_compatible(Declared(**{trait: True}), req)
    others = {name: True for name in FIELDS if name not in (*alternatives, "requires_bounds")}
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        check_compatible(Declared(**others), req)
    assert [v.trait for v in info.value.violations] == [" or ".join(alternatives)]
    assert rec.calls == 0


def test_bfgs_refuses_a_declared_stochastic_problem_before_any_call() -> None:
    rec = Recorded()
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(_stateless_stochastic(rec), om.BFGS())
    assert [v.trait for v in info.value.violations] == ["tolerates_stochastic_loss"]
    assert rec.calls == 0


# ---------------------------------------------------------------------------------------------
# Each algorithm's docstring says what its traits are: its "Traits:" section agrees with them.


def _traits_section(doc: str | None) -> str | None:
    """The text of a docstring's "Traits:" section, on one line, or None."""
    found = re.search(r"^Traits:\n((?:[ \t]+.*\n?)+)", inspect.cleandoc(doc or ""), re.MULTILINE)
    return None if found is None else " ".join(found.group(1).split())


def _claims(text: str) -> dict[str, bool]:
    """The trait values a Traits section states: a trait named plainly is True; one after "not",
    "no", "never" or "without" in its clause, or written ``name=False``, is False."""
    names = "|".join(TRAIT_NAMES)
    out: dict[str, bool] = {}
    for clause in re.split(r"[;.]\s|,\s(?![^()]*\))", text):
        negated = re.match(r"\s*(not|no|never|without)\b", clause, re.IGNORECASE) is not None
        for part in re.split(r"\band\b", clause):
            negative = negated or re.search(r"\b(not|no)\s+`*\w", part) is not None
            for name, written, value in re.findall(rf"\b({names})\b(=(True|False))?", part):
                out.setdefault(name, value == "True" if written else not negative)
    return out


def test_the_claims_of_a_traits_section_are_read_as_written() -> None:
    text = "requires_gradient, supports_bounds (projection). Not single_call_per_step and not tolerates_stochastic_loss"
    assert _claims(text) == {
        "requires_gradient": True,
        "supports_bounds": True,
        "single_call_per_step": False,
        "tolerates_stochastic_loss": False,
    }
    assert _claims("no gradient used (requires_gradient=False); supports_callback") == {
        "requires_gradient": False,
        "supports_callback": True,
    }


@pytest.mark.parametrize("cls", om.algorithms(), ids=lambda cls: cls.__name__)
def test_every_docstring_traits_section_agrees_with_the_declared_traits(cls: type) -> None:
    text = _traits_section(cls.__doc__)
    assert text is not None, f"{cls.__name__}'s docstring has no Traits: section"
    see = re.search(r"\(see `(\w+)`\)", text)
    if see is not None and not _claims(text):
        # "The first-order family's (see `AdamW`)": the traits of the algorithm referred to.
        other = getattr(om, see.group(1))
        assert other.traits == cls.traits, f"{cls.__name__} refers to {other.__name__}'s traits, which differ"
        text = _traits_section(other.__doc__)
        assert text is not None
    claimed = _claims(text)
    assert claimed, f"{cls.__name__}'s Traits: section names no trait"
    wrong = {name: value for name, value in claimed.items() if getattr(cls.traits, name) is not value}
    assert wrong == {}, f"{cls.__name__}'s docstring claims {wrong}, its traits declare the opposite"


# ---------------------------------------------------------------------------------------------
# The default algorithm is the registered class that claims the problem's situation.


def test_each_default_situation_is_claimed_by_one_registered_class() -> None:
    claims = {cls.__dict__["default_for"]: cls for cls in om.algorithms() if "default_for" in cls.__dict__}
    assert sorted(claims) == sorted(traits_mod.DEFAULT_SITUATIONS)
    assert {situation: cls.__name__ for situation, cls in claims.items()} == {
        "noisy": "Adam",
        "constrained": "SLSQP",
        "bounded_or_large": "LBFGS",
        "smooth": "BFGS",
    }


def test_register_refuses_an_unknown_or_a_second_default(registry: None) -> None:
    with pytest.raises(ValueError, match=r"^Odd.default_for must be one of noisy, constrained, .*got 'odd'$"):
        register(type("Odd", (), {"traits": FIRST_ORDER, "default_for": "odd"}))
    with pytest.raises(ValueError, match=r"^Adam is already the default for 'noisy' problems; Second cannot be$"):
        register(type("Second", (), {"traits": FIRST_ORDER, "default_for": "noisy"}))


def test_a_newly_registered_default_is_the_one_solve_picks(registry: None) -> None:
    # The front end names no backend: the default comes from the registry.
    smooth = om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.ones(2))
    assert om.default_algorithm(smooth) == om.BFGS()
    traits_mod._REGISTRY.pop("BFGS")

    @register
    @dataclasses.dataclass(frozen=True)
    class Smooth(om.BFGS):  # type: ignore[misc]
        traits = om.BFGS.traits
        default_for = "smooth"

    assert type(om.default_algorithm(smooth)) is Smooth


def test_every_registered_class_gives_examples_of_itself_with_unique_labels() -> None:
    labels = [example.label for cls in om.algorithms() for example in cls.examples()]
    assert len(labels) == len(set(labels))
    for cls in om.algorithms():
        assert all(type(example.algorithm) is cls for example in cls.examples()), cls.__name__


def test_register_refuses_examples_of_another_class(registry: None) -> None:
    from optimeta.backends._base import Example

    class Odd(om.Adam):  # type: ignore[misc]
        traits = om.Adam.traits

        @classmethod
        def examples(cls) -> tuple[Example, ...]:
            return (Example("Odd", om.Adam()),)

    with pytest.raises(TypeError, match=r"^Odd.examples\(\) must give at least one Example, each of a Odd$"):
        register(Odd)
