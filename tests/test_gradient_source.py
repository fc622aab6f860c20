"""A gradient source of the user's (``grad=`` a `GradientSource` instance), measured.

A source that makes the analytic value and gradient of a quadratic, counting its calls, against
the same problem given with ``grad=`` the equivalent callable: equal iterates, objectives and
counts for a step-wise algorithm (Adam, BFGS) and a whole-run one (scipy's L-BFGS-B), with
every call of the source accounted for in ``Stats``; second derivatives from the source for a
Newton method, and a source without them refused before any call; a stateful objective, its
state threaded through the source exactly as through ``f`` and ``grad``; ``sense="max"``; a
tree ``u0`` seen as the flat vector; and the exact errors for bad sources and bad ``grad=``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import optimeta as om

WEIGHTS = np.array([1.0, 4.0, 0.5])
CURVATURE: np.ndarray = 2.0 * WEIGHTS
TARGET = np.array([1.0, -2.0, 3.0])


def quadratic(u: Any, p: Any) -> float:
    d = u - p
    return float(d @ (WEIGHTS * d))


def quadratic_grad(u: Any, p: Any) -> np.ndarray:
    g: np.ndarray = CURVATURE * (u - p)
    return g


class Quadratic(om.GradientSource):
    """``f(x) = sum(w (x - p)^2)`` and its gradient, each kind of call counted."""

    def __init__(self) -> None:
        self.calls = {"value": 0, "value_and_grad": 0}

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
        self.calls["value_and_grad"] += 1
        return quadratic(x, p), quadratic_grad(x, p), None

    def value(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, Any]:
        self.calls["value"] += 1
        return quadratic(x, p), None


class NewtonQuadratic(Quadratic):
    """`Quadratic` with its exact Hessian and Hessian-vector products, counted."""

    second_derivatives = True

    def __init__(self) -> None:
        super().__init__()
        self.calls.update(hessp=0, hessian=0)

    def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> np.ndarray:
        self.calls["hessp"] += 1
        product: np.ndarray = CURVATURE * v
        return product

    def hessian(self, x: np.ndarray, p: Any, state: Any) -> np.ndarray:
        self.calls["hessian"] += 1
        return np.diag(CURVATURE)


def _problem(grad: Any, **kwargs: Any) -> om.OptimizationProblem:
    return om.OptimizationProblem(quadratic, np.zeros(3), p=TARGET, grad=grad, **kwargs)


def _counts(sol: om.Solution) -> tuple[int, ...]:
    s = sol.stats
    return (s.iterations, s.fevals, s.gevals, s.probe_fevals, s.hevals)


# -- the source against the equivalent callable -------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "maxiters"),
    [(om.Adam(lr=0.1), 200), (om.BFGS(), None), (om.LBFGS(), None)],
    ids=["Adam-stepwise", "BFGS-stepwise", "LBFGS-scipy"],
)
def test_a_source_gives_the_run_of_the_equivalent_callable(alg: Any, maxiters: int | None) -> None:
    source = Quadratic()
    ours = om.solve(_problem(source), alg, maxiters=maxiters)
    theirs = om.solve(_problem(quadratic_grad), alg, maxiters=maxiters)
    assert np.array_equal(ours.u, theirs.u)
    assert ours.objective == theirs.objective
    assert ours.retcode == theirs.retcode
    assert _counts(ours) == _counts(theirs)
    # Every call of the source is in the counts: one gradient per value_and_grad, one call of f
    # per value or value_and_grad (the determinism probe's calls of value on their own).
    stats = ours.stats
    assert source.calls == {"value": stats.fevals + stats.probe_fevals - stats.gevals, "value_and_grad": stats.gevals}
    if maxiters is not None:
        assert stats.gevals == maxiters  # Adam: one evaluation per step and no other
    else:
        assert stats.probe_fevals == 2 and ours.success
    np.testing.assert_allclose(ours.u, TARGET, atol=1e-4)


def test_a_source_with_second_derivatives_steers_newton_cg() -> None:
    source = NewtonQuadratic()
    sol = om.solve(_problem(source), om.NewtonCG())
    assert sol.success
    np.testing.assert_allclose(sol.u, TARGET, atol=1e-10)
    assert source.calls["hessp"] + source.calls["hessian"] == sol.stats.hevals > 0
    assert source.calls["value_and_grad"] == sol.stats.gevals


def test_a_source_without_second_derivatives_is_refused_for_newton_cg_before_any_call() -> None:
    source = Quadratic()
    assert om.GradientSource.second_derivatives is False and Quadratic.second_derivatives is False
    with pytest.raises(om.IncompatibleAlgorithmError) as err:
        om.solve(_problem(source), om.NewtonCG())
    assert source.calls == {"value": 0, "value_and_grad": 0}
    [violation] = err.value.violations
    assert violation.traits == ("requires_hessian",)
    assert violation.why == (
        "the problem's gradient source Quadratic declares second_derivatives = False, so it makes no "
        "Hessians or Hessian-vector products for a Newton method"
    )
    assert "BFGS" in err.value.alternatives and "NewtonCG" not in err.value.alternatives


def test_the_source_sees_the_flat_read_only_vector_and_values_in_the_users_sense() -> None:
    seen: list[tuple[tuple[int, ...], bool]] = []

    class TreeSource(om.GradientSource):
        # -f of the tree {"w": w, "b": b} on x = [w0, w1, b], for sense="max".
        def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
            seen.append((x.shape, x.flags.writeable))
            return -quadratic(x, p), -quadratic_grad(x, p), None

    prob = om.OptimizationProblem(
        lambda u, p: 0.0, {"w": np.zeros(2), "b": 0.0}, p=TARGET, grad=TreeSource(), sense="max"
    )
    sol = om.solve(prob, om.BFGS())
    assert set(seen) == {((3,), False)}
    np.testing.assert_allclose(sol.u["w"], TARGET[:2], atol=1e-5)
    assert sol.u["b"] == pytest.approx(TARGET[2], abs=1e-5)
    assert sol.objective == pytest.approx(0.0, abs=1e-9)


# -- a stateful objective -------------------------------------------------------------------------


def stateful_f(u: Any, p: Any, state: Any) -> tuple[float, Any]:
    w = 1.0 + 0.5 * np.sin(state["key"] + np.arange(3.0))  # the state drives the loss
    d = u - p
    return float(d @ (w * d)), {"key": state["key"] + 1}


def stateful_grad(u: Any, p: Any, state: Any) -> tuple[np.ndarray, Any]:
    w = 1.0 + 0.5 * np.sin(state["key"] + np.arange(3.0))
    return 2.0 * w * (u - p), {"key": state["key"] + 1}


class Keyed(om.GradientSource):
    """`stateful_f` and its gradient in one evaluation, recording the key each call receives."""

    def __init__(self) -> None:
        self.keys: list[int] = []

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
        self.keys.append(state["key"])
        loss, new_state = stateful_f(x, p, state)
        grad, _ = stateful_grad(x, p, state)
        return loss, grad, new_state


def test_a_stateful_source_threads_the_state_as_f_and_grad_do() -> None:
    source = Keyed()
    state = {"key": 0}
    ours = om.solve(
        om.OptimizationProblem(stateful_f, np.zeros(3), p=TARGET, state=state, grad=source),
        om.Adam(lr=0.1),
        maxiters=25,
    )
    theirs = om.solve(
        om.OptimizationProblem(stateful_f, np.zeros(3), p=TARGET, state=state, grad=stateful_grad),
        om.Adam(lr=0.1),
        maxiters=25,
    )
    assert source.keys == list(range(25))  # each call receives the state the one before returned
    assert ours.state == theirs.state == {"key": 25}
    assert state == {"key": 0}
    assert np.array_equal(ours.u, theirs.u) and ours.objective == theirs.objective
    assert _counts(ours) == _counts(theirs) == (25, 25, 25, 0, 0)


def test_a_stateful_source_is_committed_once_per_step_by_bfgs() -> None:
    counter = {"updates": 0}

    class Counting(om.GradientSource):
        # A state the loss does not read (declared stochastic=False): a count of evaluations.
        def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
            return quadratic(x, p), quadratic_grad(x, p), {"updates": state["updates"] + 1}

    def f(u: Any, p: Any, state: Any) -> tuple[float, Any]:
        return quadratic(u, p), {"updates": state["updates"] + 1}

    def grad(u: Any, p: Any, state: Any) -> tuple[np.ndarray, Any]:
        return quadratic_grad(u, p), {"updates": state["updates"] + 1}

    kwargs: dict[str, Any] = {"p": TARGET, "state": counter, "stochastic": False}
    ours = om.solve(om.OptimizationProblem(f, np.zeros(3), grad=Counting(), **kwargs), om.BFGS())
    theirs = om.solve(om.OptimizationProblem(f, np.zeros(3), grad=grad, **kwargs), om.BFGS())
    assert ours.success and np.array_equal(ours.u, theirs.u)
    assert ours.state == theirs.state == {"updates": ours.stats.iterations}  # one commit per step
    assert _counts(ours) == _counts(theirs)


def test_a_constant_state_changed_by_the_source_is_refused() -> None:
    class Changing(om.GradientSource):
        def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> tuple[float, np.ndarray, Any]:
            return quadratic(x, p), quadratic_grad(x, p), {"scale": state["scale"] + 1.0}

    prob = om.OptimizationProblem(
        lambda u, p, s: (0.0, s), np.zeros(3), p=TARGET, state={"scale": 1.0}, state_mode="constant", grad=Changing()
    )
    with pytest.raises(om.StateMutationError, match=r"\['scale'\]"):
        om.solve(prob, om.Adam(lr=0.1), maxiters=3)


# -- errors -----------------------------------------------------------------------------------


def test_grad_must_be_a_source_instance_not_its_class() -> None:
    with pytest.raises(TypeError) as err:
        _problem(Quadratic)
    assert str(err.value) == "grad must be a GradientSource instance, got the class Quadratic: pass grad=Quadratic()"


@pytest.mark.parametrize("bad", [42, np.ones(3), object()], ids=["int", "array", "object"])
def test_grad_that_is_neither_a_name_a_callable_nor_a_source_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError) as err:
        _problem(bad)
    assert str(err.value) == (
        "grad must be a callable grad(u, p[, state]), a GradientSource, one of 'autograd', 'finite-difference', "
        f"'jax', 'torch', or None, got {bad!r}"
    )


def test_a_source_without_value_and_grad_cannot_be_made() -> None:
    class Empty(om.GradientSource):
        pass

    with pytest.raises(TypeError, match=r"^Can't instantiate abstract class Empty .*value_and_grad"):
        Empty()  # type: ignore[abstract]


def test_a_source_declaring_second_derivatives_must_define_them() -> None:
    with pytest.raises(TypeError) as err:

        class Half(Quadratic):
            second_derivatives = True

            def hessp(self, x: np.ndarray, p: Any, state: Any, v: np.ndarray) -> np.ndarray:
                return v

    assert str(err.value) == (
        "Half declares second_derivatives = True but does not define hessian: define "
        "hessp(self, x, p, state, v) and hessian(self, x, p, state), or leave second_derivatives False"
    )
    with pytest.raises(TypeError) as err:

        class Vague(Quadratic):
            second_derivatives = "yes"  # type: ignore[assignment]

    assert str(err.value) == "Vague.second_derivatives must be True or False, got 'yes'"


class Returning(om.GradientSource):
    """A source returning `out` from `value_and_grad` (and `value`), whatever it is."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def value_and_grad(self, x: np.ndarray, p: Any, state: Any) -> Any:
        return self.out


@pytest.mark.parametrize(
    ("out", "error", "message"),
    [
        (
            (1.0, np.zeros(3)),
            TypeError,
            "must return a tuple (loss, gradient, new_state), got (1.0, array([0., 0., 0.]))",
        ),
        ((np.ones(2), np.zeros(3), None), TypeError, "must return a real scalar loss first, got array([1., 1.])"),
        ((1.0, np.zeros(2), None), ValueError, "must return a gradient of shape (3,), got shape (2,)"),
        ((1.0, "steep", None), ValueError, "must return a gradient of shape (3,), got 'steep'"),
    ],
    ids=["pair", "loss-array", "grad-shape", "grad-string"],
)
def test_what_a_source_returns_is_checked(out: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as err:
        om.solve(_problem(Returning(out)), om.Adam(lr=0.1), maxiters=2)
    assert str(err.value) == f"Returning.value_and_grad {message}"
