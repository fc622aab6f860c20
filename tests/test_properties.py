"""Property-based tests (hypothesis): pytree round trips, bounds respected, and garbage rejected cleanly."""

from __future__ import annotations

import dataclasses
import numbers
import os

import autograd.numpy as anp
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.optimize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optimeta as om

CLEAN = (ValueError, TypeError)  # om.IncompatibleAlgorithmError is a ValueError


def fast(n: int) -> settings:
    """Few examples, no deadline, no example database written into the repository."""
    return settings(
        max_examples=n * int(os.environ.get("OPTIMETA_HYPOTHESIS_SCALE", "1")),
        deadline=None,
        database=None,
        derandomize=True,  # the same examples every run: CI never meets a new one by chance
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def leaves(tree):
    """The leaves of a pytree (dict / list / tuple), in order."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from leaves(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from leaves(value)
    else:
        yield tree


def sumsq(u, target=None):
    """sum over leaves of sum((leaf - target_leaf) ** 2), written with autograd.numpy."""
    ts = [0.0] * len(list(leaves(u))) if target is None else list(leaves(target))
    total = 0.0
    for leaf, t in zip(leaves(u), ts):
        total = total + anp.sum((leaf - t) ** 2)
    return total


def same_structure(tree, ref, path="u"):
    """Assert that `tree` (a solution's u) has the containers of `ref` (the user's u0) and
    float64 leaves of the same shapes."""
    if isinstance(ref, dict):
        assert type(tree) is type(ref), path
        assert list(tree.keys()) == list(ref.keys()), path
        for key in ref:
            same_structure(tree[key], ref[key], f"{path}[{key!r}]")
    elif isinstance(ref, (list, tuple)):
        assert type(tree) is type(ref), path
        assert len(tree) == len(ref), path
        for i, (a, b) in enumerate(zip(tree, ref)):
            same_structure(a, b, f"{path}[{i}]")
    elif isinstance(ref, np.ndarray):
        assert isinstance(tree, np.ndarray), (path, type(tree))
        assert tree.dtype == np.float64, (path, tree.dtype)
        assert tree.shape == ref.shape, (path, tree.shape, ref.shape)
    else:  # a Python scalar comes back as a float
        assert np.ndim(tree) == 0, path
        assert np.asarray(tree).dtype == np.float64, (path, type(tree))


# ---------------------------------------------------------------------------------------------
# 1. random pytrees for u0
# ---------------------------------------------------------------------------------------------

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
float_arrays = hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3), elements=finite)
int_arrays = hnp.arrays(
    st.sampled_from([np.int64, np.int32]),
    hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3),
    elements=st.integers(-10, 10),
)
leaf_strategy = st.one_of(float_arrays, int_arrays, finite, st.integers(-10, 10))
keys = st.text("abcdefgh", min_size=1, max_size=3)


def containers(children):
    # A named function: hypothesis's check that `extend` uses its argument misreads some lambdas.
    return st.one_of(
        st.lists(children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3).map(tuple),
        st.dictionaries(keys, children, min_size=1, max_size=3),
    )


pytrees = st.recursive(leaf_strategy, containers, max_leaves=6)


def replace_leaves(tree, values):
    """A tree like `tree` whose leaves are taken in order from the iterator `values`."""
    if isinstance(tree, dict):
        return {k: replace_leaves(v, values) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(replace_leaves(v, values) for v in tree)
    return next(values)


@fast(25)
@given(pytrees)
def test_adam_keeps_pytree_structure(u0):
    prob = om.OptimizationProblem(lambda u, p: sumsq(u), u0)
    sol = om.solve(prob, om.Adam(lr=0.1), maxiters=3)
    same_structure(sol.u, u0)
    same_structure(prob.u0, u0)
    assert np.isfinite(sol.objective)


@fast(25)
@given(pytrees, st.randoms(use_true_random=False))
def test_lbfgs_reaches_quadratic_minimiser_leaf_by_leaf(u0, rnd):
    target = replace_leaves(u0, iter([np.full(np.shape(leaf), rnd.uniform(-5, 5)) for leaf in leaves(u0)]))
    prob = om.OptimizationProblem(lambda u, p: sumsq(u, p), u0, p=target)
    sol = om.solve(prob, om.LBFGS())
    same_structure(sol.u, u0)
    for got, want in zip(leaves(sol.u), leaves(target)):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_scalar_and_int_leaves_are_promoted():
    u0 = {"a": 1, "b": [np.int32(2), np.arange(3)], "c": (0.5, np.zeros(()))}
    prob = om.OptimizationProblem(lambda u, p: sumsq(u), u0)
    sol = om.solve(prob, om.Adam(lr=0.1), maxiters=3)
    same_structure(sol.u, u0)


# ---------------------------------------------------------------------------------------------
# 2. boxes are respected by every algorithm that supports bounds
# ---------------------------------------------------------------------------------------------

BOUNDED = om.algorithms(supports_bounds=True)


def make_alg(cls):
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    if "lr" in names:
        kwargs["lr"] = 0.1
    if "seed" in names:
        kwargs["seed"] = 0
    # keep the global methods cheap
    if cls is om.DifferentialEvolution:
        kwargs.update(popsize=4, polish=False)
    if cls is om.DualAnnealing:
        kwargs.update(maxiter=5)
    if cls is om.SHGO:
        kwargs.update(n=16)
    if cls is om.DIRECT:
        kwargs.update(maxfun=200)
    return cls(**kwargs)


@st.composite
def boxes(draw, finite_only=False):
    n = draw(st.integers(2, 3))
    lb, ub, u0 = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        u = draw(st.floats(-5, 5))
        kind = draw(st.sampled_from(["fixed", "both", "lower", "upper", "free"]))
        if finite_only and kind in ("lower", "upper", "free"):
            kind = "both"
        lo = u - draw(st.floats(0, 3))
        hi = u + draw(st.floats(0, 3))
        if kind == "fixed":
            lo = hi = u
        if kind in ("upper", "free"):
            lo = -np.inf
        if kind in ("lower", "free"):
            hi = np.inf
        lb[i], ub[i], u0[i] = lo, hi, u
    centre = np.array(draw(st.lists(st.floats(-8, 8), min_size=n, max_size=n)))
    return lb, ub, u0, centre


# Regressions: library bugs this file found, each fixed in the scipy adapter.


@pytest.mark.parametrize("cls", (om.DIRECT, om.DualAnnealing), ids=lambda c: c.__name__)
def test_one_fixed_coordinate(cls):
    """scipy refused a coordinate fixed by its bounds mid-run; it now sees the free ones alone."""
    lb, ub = np.array([0.0, -1.0]), np.array([0.0, 1.0])
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 3.0) ** 2), np.zeros(2), bounds=(lb, ub))
    sol = om.solve(prob, make_alg(cls), maxiters=5)
    assert np.all(lb <= sol.u) and np.all(sol.u <= ub)
    assert sol.u[0] == 0.0 and sol.u[1] > 0.5


def test_differential_evolution_start_on_the_upper_bound():
    """u0 == ub is valid, though scipy's rescaling of x0 onto [0, 1] rounds it outside."""
    lb, ub = np.array([-4.64]), np.array([-4.59])
    prob = om.OptimizationProblem(lambda u, p: anp.sum(u**2), ub.copy(), bounds=(lb, ub))
    sol = om.solve(prob, om.DifferentialEvolution(seed=0))
    assert lb <= sol.u <= ub
    np.testing.assert_allclose(sol.u, ub)


def test_cobyla_some_coordinates_fixed():
    """scipy's COBYLA hands its callback the free coordinates alone."""
    lb, ub = np.zeros(3), np.array([0.0, 1.0, 1.0])
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 0.5) ** 2), np.zeros(3), bounds=(lb, ub))
    sol = om.solve(prob, om.COBYLA())
    assert sol.u.shape == (3,) and sol.u[0] == 0.0
    np.testing.assert_allclose(sol.u[1:], 0.5, atol=1e-3)


def test_cobyla_every_coordinate_narrower_than_rounding():
    """scipy's COBYLA counts such a coordinate as fixed, and failed when it left none free."""
    lb, ub = np.zeros(2), np.array([0.0, 1.17549435e-38])
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2), bounds=(lb, ub))
    sol = om.solve(prob, om.COBYLA())
    assert sol.retcode is om.ReturnCode.SUCCESS
    assert np.all(lb <= sol.u) and np.all(sol.u <= ub)


@pytest.mark.parametrize("kind", ["linear", "nonlinear", "om"])
def test_cobyla_constraints_with_a_fixed_coordinate(kind):
    """The constraints see the whole u while COBYLA moves the free coordinates alone."""
    lb, ub = np.array([0.5, -5.0, -5.0]), np.array([0.5, 5.0, 5.0])
    if kind == "linear":
        con = scipy.optimize.LinearConstraint(np.ones((1, 3)), -np.inf, 1.0)
    elif kind == "nonlinear":
        con = scipy.optimize.NonlinearConstraint(lambda x: np.sum(x), -np.inf, 1.0)
    else:
        con = om.Constraint(lambda u, p: anp.sum(u), -np.inf, 1.0)
    prob = om.OptimizationProblem(
        lambda u, p: anp.sum((u - 1.0) ** 2), np.array([0.5, 0.0, 0.0]), bounds=(lb, ub), constraints=[con]
    )
    sol = om.solve(prob, om.COBYLA(tol=1e-8, catol=1e-10))
    assert sol.u[0] == 0.5
    # the optimum of the free pair on u1 + u2 <= 0.5
    np.testing.assert_allclose(sol.u[1:], 0.25, atol=1e-5)


def _calls_outside(prob, alg, lb, ub):
    calls = []
    f = prob.f

    def recording(u, p):
        calls.append(np.array(getattr(u, "_value", u), dtype=float))
        return f(u, p)

    om.solve(om.OptimizationProblem(recording, prob.u0, bounds=(lb, ub)), alg)
    assert calls
    return [x for x in calls if not (np.all(lb <= x) and np.all(x <= ub))]


def test_dual_annealing_never_calls_f_outside_a_narrow_box():
    """scipy moves a visit at the lower side up by 1e-10, past a narrower box's upper side."""
    lb, ub = np.array([-1.0, 0.0]), np.array([1.0, 1e-15])
    prob = om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.zeros(2))
    assert _calls_outside(prob, om.DualAnnealing(seed=0, maxiter=5), lb, ub) == []


def test_tnc_never_calls_f_a_rounding_error_outside_the_box():
    lb, ub = np.array([-1.0]), np.array([-1.71001288e-28])
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), ub.copy())
    assert _calls_outside(prob, om.TNC(), lb, ub) == []


def test_all_coordinates_fixed_is_the_one_point():
    """Regression (fixed in 78384d7): SLSQP raised AttributeError, SHGO IndexError, COBYLA ValueError."""
    lb = ub = np.zeros(2)
    for cls in BOUNDED:
        prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 3.0) ** 2), np.zeros(2), bounds=(lb, ub))
        sol = om.solve(prob, make_alg(cls), maxiters=5)
        np.testing.assert_array_equal(sol.u, 0.0)


@pytest.mark.parametrize("cls", BOUNDED, ids=lambda c: c.__name__)
@fast(5)
@given(data=st.data())
def test_every_call_and_result_inside_the_box(cls, data):
    finite_only = cls.traits.requires_bounds
    lb, ub, u0, centre = data.draw(boxes(finite_only=finite_only))
    calls = []

    def f(u, p):
        calls.append(np.array(getattr(u, "_value", u), dtype=float))
        return anp.sum((u - centre) ** 2) + 0.1 * anp.sum(u**4) / 100

    if not (np.isfinite(lb).any() or np.isfinite(ub).any()):
        lb[0] = u0[0] - 1.0  # a box that bounds nothing is no box
    prob = om.OptimizationProblem(f, u0, bounds=(lb, ub))
    sol = om.solve(prob, make_alg(cls), maxiters=5)
    assert calls
    for x in [*calls, np.asarray(sol.u)]:
        assert np.all(lb <= x) and np.all(x <= ub), (cls.__name__, lb, x, ub)


# ---------------------------------------------------------------------------------------------
# 3. malformed problems, hyperparameters and options: ValueError / TypeError or accepted
# ---------------------------------------------------------------------------------------------


def quad(u, p, *state):
    loss = sumsq(u)
    return (loss, state[0]) if state else loss


def quad_grad(u, p, *state):
    g = replace_leaves(u, iter([2 * np.asarray(leaf, dtype=float) for leaf in leaves(u)]))
    return (g, state[0]) if state else g


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.integers(-3, 20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(max_magnitude=10),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.just(object()),
    st.just(print),
)


def garbage_containers(c):
    return st.one_of(
        st.lists(c, max_size=3),
        st.lists(c, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=2), st.integers()), c, max_size=3),
        st.sets(st.integers(), max_size=3),
    )


garbage = st.recursive(
    st.one_of(
        scalars,
        hnp.arrays(
            st.sampled_from([np.float64, np.complex128, np.int64, np.bool_, np.float32]),
            hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
        ),
        hnp.arrays(np.dtype("U2"), hnp.array_shapes(max_dims=1, max_side=2)),
        st.just(np.array([np.nan, np.inf])),
        st.just(np.array([1.0, "a"], dtype=object)),
    ),
    garbage_containers,
    max_leaves=5,
)

good_u0 = st.one_of(st.just(np.ones(2)), st.just({"a": np.ones(2), "b": 1.0}), st.just([1.0, np.zeros(1)]))


def constraint_of(args):
    try:
        return om.Constraint(*args)
    except CLEAN:
        return None


def scipy_constraint(kind, a, b=None):
    """A scipy constraint built from garbage, or the garbage itself when scipy refuses it."""
    try:
        if kind == "linear":
            return scipy.optimize.LinearConstraint(a, -1.0, 1.0)
        return scipy.optimize.NonlinearConstraint(lambda x: np.sum(x**2), a, b)
    except Exception:  # noqa: BLE001 - scipy refusing garbage in its own way is not under test
        return a


bad_constraints = st.one_of(
    garbage,
    st.lists(garbage, max_size=2),
    st.tuples(st.just(lambda u, p: anp.sum(u**2)), garbage, garbage).map(constraint_of).map(lambda c: [c]),
    st.builds(lambda lb, ub: [scipy_constraint("nonlinear", lb, ub)], garbage, garbage),
    st.builds(lambda A: [scipy_constraint("linear", A)], garbage),
    st.just([om.Constraint(lambda u, p: anp.sum(u**2), ub=4.0)]),
)


def maybe(strategy, valid):
    """`valid` (most of the time, so that later checks are reached) or garbage."""
    return st.one_of(st.just(valid), st.just(valid), strategy)


@st.composite
def problem_kwargs(draw):
    u0 = draw(st.one_of(good_u0, good_u0, garbage))
    kw = {
        "f": draw(maybe(garbage, quad)),
        "u0": u0,
        "p": draw(st.one_of(st.none(), garbage)),
        "state": draw(st.one_of(st.none(), st.none(), garbage)),
        "grad": draw(
            st.one_of(
                st.none(), st.sampled_from(["autograd", "finite-difference", "nope"]), st.just(quad_grad), garbage
            )
        ),
        "bounds": draw(
            st.one_of(
                st.none(),
                garbage,
                st.tuples(garbage, garbage),
                st.tuples(st.just(-10.0), st.just(10.0)),
                st.tuples(st.just(10.0), st.just(-10.0)),
                st.tuples(st.none(), st.floats()),
                st.builds(scipy.optimize.Bounds, st.floats(), st.floats()),
                st.just(scipy.optimize.Bounds(np.zeros(5), np.ones(5))),
            )
        ),
        "constraints": draw(st.one_of(st.none(), bad_constraints)),
        "sense": draw(maybe(garbage, "min")),
        "stochastic": draw(st.one_of(st.none(), st.booleans(), garbage)),
        "state_mode": draw(st.one_of(st.sampled_from(["evolving", "constant"]), garbage)),
    }
    return kw


def solve_or_reject(prob, alg=None, **options):
    """Solve with a small budget; anything but ValueError / TypeError fails the test."""
    options.setdefault("maxiters", 3)
    try:
        om.solve(prob, alg, **options)
    except CLEAN:
        pass


@fast(300)
@given(problem_kwargs())
def test_malformed_problem_is_rejected_cleanly(kw):
    f, u0 = kw.pop("f"), kw.pop("u0")
    try:
        prob = om.OptimizationProblem(f, u0, **kw)
    except CLEAN:
        return
    algs = [om.Adam(lr=0.1), None]
    if prob.constraints:
        algs.append(om.SLSQP())
    for alg in algs:
        solve_or_reject(prob, alg)


def field_values(cls):
    fields = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = None if f.default is dataclasses.MISSING else f.default
        if f.name == "lr":
            default = 0.1
        fields[f.name] = st.one_of(st.just(default), garbage, st.floats(-2, 2), st.integers(-2, 5))
    return st.fixed_dictionaries({}, optional=fields)


ALGS = om.algorithms()


def problem_for(cls):
    box = (-2 * np.ones(2), 3 * np.ones(2))
    return om.OptimizationProblem(quad, np.ones(2), bounds=box if cls.traits.requires_bounds else None)


@pytest.mark.parametrize("cls", ALGS, ids=lambda c: c.__name__)
@fast(15)
@given(data=st.data())
def test_algorithm_hyperparameters_rejected_cleanly(cls, data):
    kwargs = data.draw(field_values(cls))
    # A huge but valid size (SHGO's n or iters, a population) is accepted and runs that long:
    # scipy's own loops between evaluations do not see maxtime. Not a clean-rejection case.
    if any(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 10**4 for v in kwargs.values()):
        return
    try:
        alg = cls(**kwargs)
    except CLEAN:
        return
    solve_or_reject(problem_for(cls), alg, maxiters=3, maxtime=2.0)


solve_options = st.fixed_dictionaries(
    {},
    optional={
        "maxiters": st.one_of(st.integers(-2, 5), garbage),
        "maxtime": st.one_of(st.floats(), garbage),
        "callback": st.one_of(
            garbage,
            st.just(lambda info: None),
            st.just(lambda info: True),
            st.sampled_from(["yes", 1, np.float64(1.0), np.bool_(True), [], 0.0]).map(lambda r: lambda info: r),
        ),
        "data": st.one_of(garbage, st.lists(st.floats(-1, 1), min_size=1, max_size=3), st.just(iter([1.0, 2.0]))),
        "epochs": st.one_of(st.integers(-1, 3), garbage),
        "nan_policy": st.one_of(st.sampled_from(["stop", "skip"]), garbage),
        "max_skips": st.one_of(st.integers(-1, 3), garbage),
        "check_determinism": st.one_of(st.booleans(), garbage),
    },
)


@fast(200)
@given(solve_options, st.sampled_from([om.Adam(lr=0.1), om.LBFGS(), om.NelderMead(), None]))
def test_malformed_solve_options_rejected_cleanly(options, alg):
    # Valid but enormous budgets (maxiters=10**30 for Adam) would just run that long: cap them.
    for name, cap in (("maxiters", 50), ("epochs", 3), ("maxtime", 0.5)):
        value = options.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            options[name] = type(value)(cap)
    prob = om.OptimizationProblem(quad, np.ones(2))
    try:
        om.solve(prob, alg, **options)
    except CLEAN:
        pass


def test_huge_budgets_are_accepted():
    prob = om.OptimizationProblem(quad, np.ones(2))
    for options in ({"maxiters": 10**30}, {"maxtime": 1e300}, {"maxiters": np.int64(2**62), "maxtime": 1e300}):
        sol = om.solve(prob, om.Adam(lr=0.1), callback=lambda info: info.iteration >= 3, **options)
        assert sol.retcode is om.ReturnCode.TERMINATED


@fast(30)
@given(garbage)
def test_garbage_algorithm_and_problem_in_solve(thing):
    prob = om.OptimizationProblem(quad, np.ones(2))
    for call in (lambda: om.solve(prob, thing, maxiters=2), lambda: om.solve(thing, om.Adam(lr=0.1), maxiters=2)):
        try:
            call()
        except CLEAN:
            pass
