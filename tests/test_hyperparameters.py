"""Hyperparameters of every registered algorithm, and the behaviour of the global optimisers.

Part 1 is driven by `SPECS`, a table written from the code and the docstrings: for every field
of every class in ``om.algorithms()``, the values it must refuse (with the exact exception type)
and edge values it must accept. A meta-test fails when a registered class has a field the table
does not cover, so a new hyperparameter cannot go untested. The rule the table follows is
"ValueError for a bad value, TypeError for a wrong type", except where the library answers a
wrong type with ValueError (integer fields, choice strings, ``mutation``): those rows record what
the library does, and are marked ``# ValueError for a wrong type``.

Part 2 covers the global optimisers of ``backends/scipy_global.py`` on a 2-d Rastrigin function.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.tracer import getval

import optimeta as om

NAN, INF = float("nan"), float("inf")
V, T = ValueError, TypeError

# --------------------------------------------------------------------------------------------
# Part 1: the table of hyperparameters
# --------------------------------------------------------------------------------------------


def _fixed_schedule(step: int) -> float:
    """A schedule as a plain function: ``lr(step) -> float``."""
    return 0.1


@dataclass(frozen=True)
class Spec:
    """What one hyperparameter refuses and accepts.

    Attributes:
        bad: ``(value, exception type)`` pairs: the value must be refused with exactly that type.
        good: Values that must be accepted and stored as given.
        context: Other keyword arguments every row of this field is built with.
    """

    bad: tuple[tuple[Any, type[Exception]], ...]
    good: tuple[Any, ...]
    context: dict[str, Any] = dataclasses.field(default_factory=dict)

    def refusing(self, *bad: tuple[Any, type[Exception]]) -> Spec:
        return dataclasses.replace(self, bad=self.bad + bad)

    def dropping(self, value: Any) -> Spec:
        """Without the refusal of `value` (for a field that accepts it)."""
        return dataclasses.replace(self, bad=tuple(row for row in self.bad if row[0] is not value))

    def accepting(self, *good: Any) -> Spec:
        """The same refusals, these accepted values instead of the kind's own."""
        return dataclasses.replace(self, good=good)

    def within(self, **context: Any) -> Spec:
        return dataclasses.replace(self, context=context)


# The kinds of hyperparameter, after the helpers of backends/_checks.py.

#: ``lr`` of the first-order family (check_rate): a finite number > 0 or a schedule.
RATE = Spec(
    bad=(
        (0, V),
        (0.0, V),
        (-1, V),
        (-0.25, V),
        (NAN, V),
        (INF, V),
        (-INF, V),
        (np.float64(-1.0), V),
        ("0.1", T),
        (True, T),
        (False, T),
        (None, T),
        (float, T),  # a class is callable, but no schedule
        ([0.1], T),
        (1j, T),
    ),
    good=(
        1,
        5e-324,
        1e300,
        np.float32(0.5),
        om.schedules.constant(0.1),
        om.schedules.cosine_decay(0.1, decay_steps=10),
        om.schedules.warmup(0.1, steps=5),
        _fixed_schedule,
    ),
)
#: check_positive: a finite real > 0.
POSITIVE = Spec(
    bad=(
        (0, V),
        (0.0, V),
        (-1e-3, V),
        (-1, V),
        (NAN, V),
        (INF, V),
        (-INF, V),
        (np.float64(0.0), V),
        ("1e-3", T),
        (True, T),
        (False, T),
        (None, T),
        ([1.0], T),
        (1j, T),
        (np.True_, T),
    ),
    good=(5e-324, 1, 1e300, np.float64(1e-3), np.float32(2.0), np.int64(3)),
)
#: check_nonnegative: a finite real >= 0.
NONNEGATIVE = Spec(
    bad=(
        (-5e-324, V),
        (-1e-3, V),
        (-1, V),
        (NAN, V),
        (INF, V),
        (-INF, V),
        ("0", T),
        (True, T),
        (None, T),
        ([0.0], T),
    ),
    good=(0, 0.0, 5e-324, 1e300, np.float64(0.5)),
)
#: check_fraction: a real in [0, 1).
FRACTION = Spec(
    bad=(
        (-1e-3, V),
        (-1, V),
        (1, V),
        (1.0, V),
        (1.5, V),
        (NAN, V),
        (INF, V),
        (-INF, V),
        (np.float64(1.0), V),
        ("0.5", T),
        (True, T),
        (False, T),
        (None, T),
    ),
    good=(0, 0.0, 0.5, 1 - 2**-53, np.float64(0.9)),
)
#: check_positive_int: an integer >= 1. ValueError for a wrong type.
POSITIVE_INT = Spec(
    bad=(
        (0, V),
        (-1, V),
        (2.5, V),  # ValueError for a wrong type
        (3.0, V),  # ValueError for a wrong type
        (np.float64(3.0), V),  # ValueError for a wrong type
        (True, V),  # ValueError for a wrong type
        (False, V),  # ValueError for a wrong type
        ("3", V),  # ValueError for a wrong type
        (None, V),  # ValueError for a wrong type
    ),
    good=(1, 2, np.int64(7), 10**6),
)
#: A bool option: only True or False.
FLAG = Spec(bad=((1, T), (0, T), ("yes", T), ("False", T), (None, T), (np.True_, T)), good=(True, False))
#: A random seed: None or an integer >= 0.
SEED = Spec(
    bad=(
        (-1, V),
        (-(2**70), V),
        (1.5, T),
        (0.0, T),
        (np.float64(1.0), T),
        (True, T),
        (False, T),
        ("0", T),
        ([0], T),
    ),
    good=(None, 0, 1, np.int64(3), np.uint8(7), 2**63),
)


def choice(*options: str) -> Spec:
    """One of a fixed set of strings. ValueError for a wrong type too."""
    return Spec(
        bad=(
            ("", V),
            ("bogus", V),
            (options[0].upper(), V),
            (options[0] + " ", V),
            (None, V),  # ValueError for a wrong type
            (1, V),  # ValueError for a wrong type
        ),
        good=options,
    )


#: scipy's differential-evolution strategies, as the docstring names them.
STRATEGIES = (
    "best1bin",
    "best1exp",
    "rand1bin",
    "rand1exp",
    "rand2bin",
    "rand2exp",
    "randtobest1bin",
    "randtobest1exp",
    "currenttobest1bin",
    "currenttobest1exp",
    "best2exp",
    "best2bin",
)

#: The Adam family's fields: lr, two moment decays in [0, 1), eps > 0.
ADAM_LIKE = {"lr": RATE, "b1": FRACTION, "b2": FRACTION, "eps": POSITIVE}
GTOL_ONLY = {"gtol": POSITIVE}

SPECS: dict[type, dict[str, Spec]] = {
    om.SGD: {
        "lr": RATE,
        "momentum": FRACTION,
        # nesterov=True needs momentum > 0: the flag's rows are built with momentum=0.9.
        "nesterov": FLAG.within(momentum=0.9),
    },
    om.Adam: ADAM_LIKE,
    om.AdamW: {**ADAM_LIKE, "weight_decay": NONNEGATIVE},
    om.AMSGrad: ADAM_LIKE,
    om.Adamax: ADAM_LIKE,
    om.NAdam: ADAM_LIKE,
    om.RMSProp: {"lr": RATE, "rho": FRACTION, "eps": POSITIVE, "momentum": FRACTION},
    om.Adagrad: {"lr": RATE, "eps": POSITIVE, "initial_accumulator": NONNEGATIVE},
    om.Adadelta: {"lr": RATE, "rho": FRACTION, "eps": POSITIVE},
    om.Lion: {"lr": RATE, "b1": FRACTION, "b2": FRACTION, "weight_decay": NONNEGATIVE},
    om.BFGS: GTOL_ONLY,
    # OLBFGS's lr is a plain step size: a schedule is refused.
    om.OLBFGS: {
        "lr": POSITIVE.refusing((om.schedules.constant(0.1), T), (_fixed_schedule, T)),
        "memory": POSITIVE_INT,
        "reg": NONNEGATIVE,
        "decay": NONNEGATIVE,
    },
    om.LBFGS: {"memory": POSITIVE_INT, "gtol": POSITIVE, "ftol": POSITIVE},
    om.CG: GTOL_ONLY,
    om.TNC: {"gtol": POSITIVE, "ftol": NONNEGATIVE, "xtol": NONNEGATIVE, "maxfun": POSITIVE_INT},
    om.NewtonCG: GTOL_ONLY,
    om.TrustNCG: GTOL_ONLY,
    om.TrustKrylov: GTOL_ONLY,
    om.TrustExact: GTOL_ONLY,
    om.Dogleg: GTOL_ONLY,
    om.NelderMead: {"xatol": POSITIVE, "fatol": POSITIVE, "adaptive": FLAG},
    om.Powell: {"xtol": POSITIVE, "ftol": POSITIVE},
    om.SLSQP: {"ftol": POSITIVE},
    om.TrustConstr: {"gtol": POSITIVE, "xtol": POSITIVE, "barrier_tol": POSITIVE},
    # tol (default 1e-4) must not exceed rhobeg (default 1.0).
    om.COBYLA: {
        "rhobeg": POSITIVE.refusing((1e-5, V), (5e-324, V)).accepting(1e-4, 1, 1e300, np.float64(0.5)),
        "tol": POSITIVE.refusing((1.5, V), (1e300, V)).accepting(5e-324, 1e-8, 1.0, np.float32(0.5)),
        "catol": POSITIVE,
    },
    # final_tr_radius (default 1e-6) must not exceed initial_tr_radius (default 1.0).
    om.COBYQA: {
        "initial_tr_radius": POSITIVE.refusing((1e-7, V), (5e-324, V)).accepting(1e-6, 1, 1e300),
        "final_tr_radius": POSITIVE.refusing((1.5, V), (1e300, V)).accepting(5e-324, 1e-10, 1.0),
        "feasibility_tol": POSITIVE,
    },
    om.DifferentialEvolution: {
        "seed": SEED,
        "strategy": choice(*STRATEGIES),
        "popsize": POSITIVE_INT,
        "tol": NONNEGATIVE,
        "atol": NONNEGATIVE,
        # A number in [0, 2) or a pair (lo, hi) of them with lo <= hi.
        "mutation": Spec(
            bad=(
                (2, V),
                (2.0, V),
                (-0.1, V),
                (NAN, V),
                (INF, V),
                (-INF, V),
                ((1.0, 0.5), V),
                ((0.5, 2.0), V),
                ((2.0, 2.0), V),
                ((-0.1, 0.5), V),
                ((0.5, NAN), V),
                ((0.5, 1.0, 1.5), V),
                ((), V),
                ("0.5", V),  # ValueError for a wrong type
                (True, V),  # ValueError for a wrong type
                ((0.5, True), V),  # ValueError for a wrong type
                ([0.5, 1.0], V),  # ValueError for a wrong type
                (None, V),  # ValueError for a wrong type
            ),
            good=(0, 0.0, 1.999, np.float64(0.8), (0.0, 1.999), (1.0, 1.0), (0, 1), (0.5, 1.0)),
        ),
        "recombination": FRACTION,
        "polish": FLAG,
    },
    om.DualAnnealing: {
        "seed": SEED,
        "maxiter": POSITIVE_INT,
        # (0.01, 5e4]
        "initial_temp": POSITIVE.refusing((0.01, V), (0.005, V), (50000.5, V), (1e5, V)).accepting(
            5e4, 0.0100001, 5230, np.float64(100.0)
        ),
        # (0, 1)
        "restart_temp_ratio": POSITIVE.refusing((1, V), (1.0, V), (1.5, V)).accepting(5e-324, 0.5, 1 - 2**-53),
        # (1, 3]
        "visit": POSITIVE.refusing((1, V), (1.0, V), (0.5, V), (3.0000001, V), (4, V)).accepting(
            3, 3.0, 1.0000001, 2.62
        ),
        # (-1e4, -5]
        "accept": Spec(
            bad=(
                (-4.9999, V),
                (-4, V),
                (0, V),
                (1.0, V),
                (-1e4, V),
                (-2e4, V),
                (NAN, V),
                (-INF, V),
                ("-5", T),
                (None, T),
                ([-5.0], T),
                (True, T),
            ),
            good=(-5, -5.0, -9999.999, -100.0, np.float64(-10.0)),
        ),
        "no_local_search": FLAG,
    },
    om.DIRECT: {
        "eps": POSITIVE,
        "locally_biased": FLAG,
        "vol_tol": FRACTION,
        "len_tol": FRACTION,
        "maxfun": POSITIVE_INT.dropping(None).accepting(None, 1, 2, np.int64(7), 10**6),
    },
    om.SHGO: {"n": POSITIVE_INT, "iters": POSITIVE_INT, "sampling_method": choice("simplicial", "sobol", "halton")},
}

#: The arguments a class cannot be built without.
REQUIRED: dict[type, dict[str, Any]] = {om.SGD: {"lr": 0.1}, om.OLBFGS: {"lr": 0.1}}


def _show(value: Any) -> str:
    if isinstance(value, type) or callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return repr(value)


@dataclass(frozen=True)
class Case:
    """One construction ``cls(**kwargs)``: refused with exactly ``error`` naming ``field`` and
    echoing ``echo``, or (``error`` None) accepted."""

    cls: type
    field: str
    kwargs: dict[str, Any]
    error: type[Exception] | None = None
    echo: str = ""

    @property
    def id(self) -> str:
        shown = ",".join(f"{k}={_show(v)}" for k, v in self.kwargs.items() if k not in REQUIRED.get(self.cls, {}))
        return f"{self.cls.__name__}-{self.field}-{shown or 'default'}"


def _kwargs(cls: type, spec: Spec, name: str, value: Any) -> dict[str, Any]:
    return {**REQUIRED.get(cls, {}), **spec.context, name: value}


BAD: list[Case] = [
    Case(cls, name, _kwargs(cls, spec, name, value), error, repr(value))
    for cls, fields in SPECS.items()
    for name, spec in fields.items()
    for value, error in spec.bad
]
# Rules between two fields: the message names the field given last and echoes its value.
BAD += [
    Case(om.SGD, "nesterov", {"lr": 0.1, "nesterov": True}, V, "True"),
    Case(om.SGD, "nesterov", {"lr": 0.1, "momentum": 0, "nesterov": True}, V, "True"),
    Case(om.COBYLA, "tol", {"rhobeg": 0.5, "tol": 0.75}, V, "0.75"),
    Case(om.COBYQA, "final_tr_radius", {"initial_tr_radius": 0.5, "final_tr_radius": 0.75}, V, "0.75"),
]
GOOD: list[Case] = [
    Case(cls, name, _kwargs(cls, spec, name, value))
    for cls, fields in SPECS.items()
    for name, spec in fields.items()
    for value in spec.good
]
GOOD += [
    Case(om.SGD, "nesterov", {"lr": 0.1, "momentum": 1e-12, "nesterov": True}),
    Case(om.COBYLA, "tol", {"rhobeg": 0.5, "tol": 0.5}),  # tol may equal rhobeg
    Case(om.COBYQA, "final_tr_radius", {"initial_tr_radius": 0.5, "final_tr_radius": 0.5}),
    Case(om.DIRECT, "vol_tol", {"vol_tol": 0.0, "len_tol": 0.0}),
    Case(om.TNC, "ftol", {"ftol": 0, "xtol": 0}),
]


def _token(text: str) -> str:
    """A regex for `text` standing alone: not part of a longer number or name (``3`` is not in ``-3``)."""
    return r"(?<![\w.+-])" + re.escape(text) + r"(?!\w|\.\d)"


def test_the_table_covers_every_field_of_every_registered_class() -> None:
    registered = om.algorithms()
    assert len(registered) == 30
    assert set(SPECS) == set(registered), "a registered class has no rows, or a row names an unregistered one"
    for cls in registered:
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = sorted(set(fields) - set(SPECS[cls]))
        stale = sorted(set(SPECS[cls]) - set(fields))
        assert not missing, f"{cls.__name__}: no bad values for the hyperparameters {missing}"
        assert not stale, f"{cls.__name__}: the table names fields the class does not have: {stale}"
        for name, spec in SPECS[cls].items():
            assert spec.bad and spec.good, f"{cls.__name__}.{name} needs refused and accepted values"
    for case in BAD + GOOD:
        assert case.field in {f.name for f in dataclasses.fields(case.cls)}
        assert set(case.kwargs) <= {f.name for f in dataclasses.fields(case.cls)}


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_hyperparameter_is_refused(case: Case) -> None:
    assert case.error is not None
    for build in (
        lambda: case.cls(**case.kwargs),
        # dataclasses.replace builds through __init__ too, so it validates the same way.
        lambda: dataclasses.replace(case.cls(**REQUIRED.get(case.cls, {})), **case.kwargs),
    ):
        with pytest.raises(Exception) as excinfo:
            build()
        err = excinfo.value
        assert type(err) is case.error, f"expected {case.error.__name__}, got {type(err).__name__}: {err}"
        message = str(err)
        assert re.search(r"(?<!\w)" + re.escape(case.field) + r"(?!\w)", message), f"field not named: {message}"
        assert re.search(_token(case.echo), message), f"the bad value {case.echo} is not echoed: {message}"


@pytest.mark.parametrize("case", GOOD, ids=[c.id for c in GOOD])
def test_edge_hyperparameter_is_accepted(case: Case) -> None:
    alg = case.cls(**case.kwargs)
    for name, value in case.kwargs.items():
        assert getattr(alg, name) is value  # stored as given, not converted
    assert dataclasses.replace(alg) == alg


def _first_field(cls: type) -> dataclasses.Field[Any]:
    return dataclasses.fields(cls)[0]


@pytest.mark.parametrize("cls", om.algorithms(), ids=lambda c: c.__name__)
def test_unknown_keyword_is_a_type_error(cls: type) -> None:
    with pytest.raises(TypeError, match="learning_rate_typo") as excinfo:
        cls(**REQUIRED.get(cls, {}), learning_rate_typo=0.1)
    assert type(excinfo.value) is TypeError


@pytest.mark.parametrize("cls", om.algorithms(), ids=lambda c: c.__name__)
def test_positional_arguments_are_refused(cls: type) -> None:
    first = _first_field(cls)
    value = REQUIRED.get(cls, {}).get(first.name, first.default)
    with pytest.raises(TypeError, match="positional") as excinfo:
        cls(value)
    assert type(excinfo.value) is TypeError
    cls(**{first.name: value})  # the same value by keyword is fine


@pytest.mark.parametrize("cls", om.algorithms(), ids=lambda c: c.__name__)
def test_instances_are_frozen(cls: type) -> None:
    alg = cls(**REQUIRED.get(cls, {}))
    for f in dataclasses.fields(cls):
        before = getattr(alg, f.name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(alg, f.name, before)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(alg, f.name)
        assert getattr(alg, f.name) is before
    with pytest.raises(dataclasses.FrozenInstanceError):
        alg.brand_new_attribute = 1


def test_exactly_sgd_and_olbfgs_need_an_argument() -> None:
    required = {
        cls.__name__: [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        for cls in om.algorithms()
    }
    assert {name: fields for name, fields in required.items() if fields} == {"OLBFGS": ["lr"], "SGD": ["lr"]}


@pytest.mark.parametrize("cls", om.algorithms(), ids=lambda c: c.__name__)
def test_default_construction(cls: type) -> None:
    if cls in REQUIRED:
        with pytest.raises(TypeError, match=r"\blr\b") as excinfo:
            cls()
        assert type(excinfo.value) is TypeError
        alg = cls(**REQUIRED[cls])
    else:
        alg = cls()
        assert alg == cls() and hash(alg) == hash(cls())
    for f in dataclasses.fields(cls):
        if f.name not in REQUIRED.get(cls, {}):
            assert getattr(alg, f.name) == f.default
    # The defaults pass the class's own validation when given explicitly.
    assert cls(**{f.name: getattr(alg, f.name) for f in dataclasses.fields(cls)}) == alg


# --------------------------------------------------------------------------------------------
# Part 2: the global optimisers
# --------------------------------------------------------------------------------------------


def rastrigin(u: Any, p: Any) -> Any:
    """Many local minima, on an integer grid; the global one, 0, at u = 0."""
    return 10.0 * u.size + anp.sum(u**2 - 10.0 * anp.cos(2 * np.pi * u))


class Counted:
    """An objective that counts its calls and keeps every point it was called at."""

    def __init__(self, f: Callable[[Any, Any], Any], sleep: float = 0.0) -> None:
        self.f = f
        self.sleep = sleep
        self.points: list[np.ndarray] = []

    def __call__(self, u: Any, p: Any) -> Any:
        self.points.append(np.array(getval(u), dtype=np.float64))
        if self.sleep:
            time.sleep(self.sleep)
        return self.f(u, p)

    @property
    def calls(self) -> int:
        return len(self.points)


LB, UB = np.full(2, -5.12), np.full(2, 5.12)
U0 = np.full(2, 2.5)


class Setup:
    """A Rastrigin problem built from arrays the test keeps, to check them after the solve."""

    def __init__(self, f: Callable[[Any, Any], Any] = rastrigin, sleep: float = 0.0) -> None:
        self.u0, self.lb, self.ub = U0.copy(), LB.copy(), UB.copy()
        self.snapshot = [a.tobytes() for a in (self.u0, self.lb, self.ub)]
        self.f = Counted(f, sleep)
        self.prob = om.OptimizationProblem(self.f, self.u0, bounds=(self.lb, self.ub))

    def solve(self, alg: Any, *, finite_trials: bool = True, **options: Any) -> om.Solution:
        sol = om.solve(self.prob, alg, **options)
        self.check(sol, finite_trials=finite_trials)
        return sol

    def check(self, sol: om.Solution, *, finite_trials: bool = True) -> None:
        """What holds after every solve of a global optimiser on this problem."""
        assert [a.tobytes() for a in (self.u0, self.lb, self.ub)] == self.snapshot
        assert self.prob.u0.tobytes() == U0.tobytes()
        assert [b.tobytes() for b in self.prob.bounds] == [LB.tobytes(), UB.tobytes()]
        assert isinstance(sol.u, np.ndarray) and sol.u.shape == (2,) and sol.u.dtype == np.float64
        assert np.all(np.isfinite(sol.u)) and np.all(LB <= sol.u) and np.all(sol.u <= UB)
        # Every point the objective saw lies in the box (NaN trial points aside, when allowed).
        points = np.array(self.f.points)
        if not finite_trials:
            points = points[np.isfinite(points).all(axis=1)]
        assert np.all(np.isfinite(points)) and np.all(LB <= points) and np.all(points <= UB)
        assert sol.stats.fevals + sol.stats.probe_fevals == self.f.calls
        assert sol.objective == rastrigin(sol.u, None)  # exactly: the problem is deterministic


GLOBAL = [om.DifferentialEvolution(seed=0), om.DualAnnealing(seed=0), om.DIRECT(), om.SHGO()]
WITH_CALLBACK = [alg for alg in GLOBAL if om.traits(alg).supports_callback]
WITHOUT_CALLBACK = [alg for alg in GLOBAL if not om.traits(alg).supports_callback]


def _name(alg: Any) -> str:
    return type(alg).__name__


def test_the_global_optimisers_declare_their_traits() -> None:
    assert [cls.__name__ for cls in om.algorithms(requires_bounds=True)] == [
        "DIRECT",
        "DifferentialEvolution",
        "DualAnnealing",
        "SHGO",
    ]
    assert [_name(a) for a in WITH_CALLBACK] == ["DifferentialEvolution", "DIRECT"]
    assert [_name(a) for a in WITHOUT_CALLBACK] == ["DualAnnealing", "SHGO"]
    for alg in GLOBAL:
        declared = om.traits(alg)
        assert declared.requires_bounds and declared.supports_bounds
        assert not declared.tolerates_stochastic_loss
    assert om.traits(om.DualAnnealing).requires_gradient and om.traits(om.SHGO).requires_gradient
    assert not om.traits(om.DifferentialEvolution).requires_gradient and not om.traits(om.DIRECT).requires_gradient


@pytest.mark.parametrize(
    "bounds",
    [None, (LB, np.array([5.12, np.inf])), (np.array([-np.inf, -5.12]), UB), (LB, None), (None, UB)],
    ids=["no-bounds", "ub-inf", "lb-inf", "no-ub", "no-lb"],
)
@pytest.mark.parametrize("alg", GLOBAL, ids=_name)
def test_refused_without_finite_bounds_before_any_call(alg: Any, bounds: Any) -> None:
    f = Counted(rastrigin)
    prob = om.OptimizationProblem(f, U0, bounds=bounds)
    with pytest.raises(om.IncompatibleAlgorithmError, match="requires_bounds") as excinfo:
        om.solve(prob, alg)
    assert type(excinfo.value) is om.IncompatibleAlgorithmError
    assert [v.trait for v in excinfo.value.violations] == ["requires_bounds"]
    assert "the objective was not called" in str(excinfo.value)
    assert f.calls == 0


@pytest.mark.parametrize("alg", WITHOUT_CALLBACK, ids=_name)
def test_callback_is_refused_before_any_call(alg: Any) -> None:
    setup = Setup()
    seen: list[Any] = []
    with pytest.raises(om.IncompatibleAlgorithmError, match="supports_callback") as excinfo:
        om.solve(setup.prob, alg, callback=seen.append)
    assert [v.trait for v in excinfo.value.violations] == ["supports_callback"]
    assert setup.f.calls == 0 and seen == []


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("alg", GLOBAL, ids=_name)
def test_maxiters_gives_exactly_that_many_iterations(alg: Any, k: int) -> None:
    if isinstance(alg, om.SHGO):  # one refinement by default: plan more than the budget
        alg = dataclasses.replace(alg, iters=5)
    setup = Setup()
    sol = setup.solve(alg, maxiters=k)
    assert sol.retcode is om.ReturnCode.MAXITERS
    assert sol.stats.iterations == k
    if alg in WITHOUT_CALLBACK:  # scipy's own count, with maxiters as scipy's iteration limit
        assert sol.original.nit == k


@pytest.mark.parametrize(
    "alg, planned", [(om.DualAnnealing(seed=0, maxiter=7), 7), (om.SHGO(iters=2), 2)], ids=["DualAnnealing", "SHGO"]
)
def test_a_budget_beyond_the_planned_iterations_leaves_the_plan_alone(alg: Any, planned: int) -> None:
    sol = Setup().solve(alg, maxiters=planned + 5)
    assert sol.retcode is om.ReturnCode.SUCCESS
    assert sol.stats.iterations == sol.original.nit == planned


@pytest.mark.parametrize("alg", WITHOUT_CALLBACK, ids=_name)
def test_iterations_are_scipys_count(alg: Any) -> None:
    sol = Setup().solve(alg)
    assert sol.stats.iterations == sol.original.nit >= 1


@pytest.mark.parametrize("j", [1, 3])
@pytest.mark.parametrize(
    "alg", [*WITH_CALLBACK, om.DifferentialEvolution(seed=0, polish=False)], ids=["DE", "DIRECT", "DE-no-polish"]
)
def test_callback_stops_the_run(alg: Any, j: int) -> None:
    setup = Setup()
    infos: list[om.IterationInfo] = []
    calls_at_stop: list[int] = []

    def callback(info: om.IterationInfo) -> bool:
        infos.append(info)
        calls_at_stop[:] = [setup.f.calls]
        return info.iteration >= j

    sol = setup.solve(alg, callback=callback)
    assert sol.retcode is om.ReturnCode.TERMINATED
    assert sol.stats.iterations == j
    assert [info.iteration for info in infos] == list(range(1, j + 1))
    for info in infos:
        assert np.all(LB <= info.u) and np.all(info.u <= UB)
        assert info.objective == rastrigin(info.u, None)
    if getattr(alg, "polish", False):
        # scipy polishes the best point even after the callback asked to stop (see the report).
        assert sol.objective <= infos[-1].objective
    else:
        np.testing.assert_array_equal(sol.u, infos[-1].u)
        assert sol.objective == infos[-1].objective
        assert setup.f.calls == calls_at_stop[0]  # not one call after the stop


@pytest.mark.parametrize("alg", GLOBAL, ids=_name)
def test_maxtime_stops_the_run(alg: Any) -> None:
    setup = Setup(sleep=2e-3)
    start = time.perf_counter()
    sol = setup.solve(alg, maxtime=5e-3)
    assert sol.retcode is om.ReturnCode.MAXTIME
    assert time.perf_counter() - start < 2.0
    assert sol.message == om.ReturnCode.MAXTIME.message


@pytest.mark.parametrize("alg", GLOBAL, ids=_name)
def test_finds_the_global_minimum_of_rastrigin(alg: Any) -> None:
    setup = Setup()
    sol = setup.solve(alg)
    assert sol.retcode is om.ReturnCode.SUCCESS, sol.message
    np.testing.assert_allclose(sol.u, 0.0, atol=1e-4)
    assert sol.objective < 1e-6


def test_rastrigin_has_local_minima_that_trap_a_local_method() -> None:
    for u0, alg, local in [(U0, om.NelderMead(), 2.98), (np.array([1.9, 2.1]), om.LBFGS(), 1.99)]:
        sol = om.solve(om.OptimizationProblem(rastrigin, u0, bounds=(LB, UB)), alg)
        assert sol.retcode is om.ReturnCode.SUCCESS
        np.testing.assert_allclose(sol.u, local, atol=0.01)
        assert sol.objective > 7.9


def test_direct_finds_a_minimum_off_the_centre_of_the_box() -> None:
    """DIRECT samples the centre first, where Rastrigin's minimum lies: shifted, it must search."""
    centre = np.array([0.7, -1.3])
    setup = Setup(lambda u, p: rastrigin(u - centre, p))
    sol = om.solve(setup.prob, om.DIRECT())
    assert sol.retcode is om.ReturnCode.SUCCESS
    np.testing.assert_allclose(sol.u, centre, atol=1e-4)
    assert sol.objective < 1e-6
    assert sol.objective == rastrigin(sol.u - centre, None)


def test_without_the_probe_fevals_are_the_calls() -> None:
    for alg in GLOBAL:
        setup = Setup()
        sol = om.solve(setup.prob, alg, maxiters=2, check_determinism=False)
        assert sol.stats.probe_fevals == 0
        assert sol.stats.fevals == setup.f.calls > 0


@pytest.mark.parametrize(
    "make", [om.DifferentialEvolution, om.DualAnnealing], ids=["DifferentialEvolution", "DualAnnealing"]
)
def test_the_same_seed_gives_the_same_run(make: Callable[..., Any]) -> None:
    runs = []
    for seed in (0, 0, 1, 2, 3):
        setup = Setup()
        runs.append(setup.solve(make(seed=seed), maxiters=20))
    first, again = runs[0], runs[1]
    assert first.u.tobytes() == again.u.tobytes()
    assert first.objective == again.objective
    assert first.stats.fevals == again.stats.fevals
    assert first.stats.gevals == again.stats.gevals
    assert first.stats.iterations == again.stats.iterations
    # Other seeds give other runs: the fevals are not all equal.
    assert len({run.stats.fevals for run in runs[1:]}) > 1


@pytest.mark.parametrize("alg", [om.DIRECT(), om.SHGO()], ids=_name)
def test_deterministic_methods_repeat_exactly(alg: Any) -> None:
    first, again = (Setup().solve(alg) for _ in range(2))
    assert first.u.tobytes() == again.u.tobytes()
    assert first.objective == again.objective
    assert (first.stats.fevals, first.stats.gevals, first.stats.iterations) == (
        again.stats.fevals,
        again.stats.gevals,
        again.stats.iterations,
    )


@pytest.mark.parametrize(
    "alg",
    [
        om.DifferentialEvolution(seed=1, popsize=1, mutation=(1.0, 1.0), recombination=0.0, tol=0, atol=0),
        om.DifferentialEvolution(seed=1, mutation=0.0, strategy="currenttobest1exp", polish=False),
        om.DualAnnealing(seed=1, initial_temp=5e4, restart_temp_ratio=1 - 2**-53, visit=3.0, accept=-9999.999),
        om.DualAnnealing(seed=1, initial_temp=0.0100001, visit=1.0000001, accept=-5, no_local_search=True),
        om.DIRECT(eps=5e-324, locally_biased=False, vol_tol=0.0, len_tol=0.0, maxfun=1),
        om.SHGO(n=1, iters=1),
    ],
    ids=repr,
)
def test_scipy_runs_with_edge_hyperparameters(alg: Any) -> None:
    """What validation accepts, scipy accepts too. (scipy's dual annealing with visit close to 3
    draws some trial points that are NaN: f is called there, and the run goes on.)"""
    Setup().solve(alg, maxiters=2, finite_trials=getattr(alg, "visit", 0) != 3.0)


@pytest.mark.parametrize(
    ("u0", "alg"),
    [
        (np.full(2, 0.5), om.SHGO(n=2, sampling_method="sobol")),
        (np.full(1, 0.5), om.SHGO(n=1, sampling_method="sobol")),
    ],
    ids=["2d-sobol-n2", "1d-sobol-n1"],
)
def test_shgo_without_a_minimiser_fails_cleanly(u0: np.ndarray, alg: Any) -> None:
    """When scipy's shgo finds no minimiser (``res.x is None``, "Failed to find a feasible
    minimizer point"), the run ends with FAILURE at the best finite point evaluated."""
    f = Counted(lambda u, p: anp.sum(u**2))
    prob = om.OptimizationProblem(f, u0, bounds=(-np.ones_like(u0), np.ones_like(u0)))
    sol = om.solve(prob, alg)
    assert np.all(np.isfinite(np.array(f.points))), "f was called at a non-finite point"
    assert sol.retcode is om.ReturnCode.FAILURE
    assert np.all(np.isfinite(sol.u)) and np.all(np.abs(sol.u) <= 1)
    assert sol.objective == float(np.sum(sol.u**2))
