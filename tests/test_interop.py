"""scipy interop: `OptimizationProblem.from_scipy` takes `scipy.optimize.minimize`'s arguments as
they are, and `Solution.to_scipy` gives back an `OptimizeResult`."""

from __future__ import annotations

import pickle
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.optimize

import optimeta as om

CALLS: list[str] = []


def rosen(x: np.ndarray, a: float, b: float) -> float:
    CALLS.append("fun")
    return float((a - x[0]) ** 2 + b * (x[1] - x[0] ** 2) ** 2)


def rosen_grad(x: np.ndarray, a: float, b: float) -> np.ndarray:
    CALLS.append("jac")
    return np.array([-2 * (a - x[0]) - 4 * b * x[0] * (x[1] - x[0] ** 2), 2 * b * (x[1] - x[0] ** 2)])


def rosen_both(x: np.ndarray, a: float, b: float) -> tuple[float, np.ndarray]:
    CALLS.append("both")
    return float((a - x[0]) ** 2 + b * (x[1] - x[0] ** 2) ** 2), rosen_grad(x, a, b)[:]


def plain(x: np.ndarray) -> float:
    return float(np.sum((x - 3.0) ** 2))


X0 = [-1.2, 1.0]
ARGS = (1.0, 100.0)


@pytest.mark.parametrize("jac", ["callable", "both", "none"])
def test_from_scipy_matches_scipy(jac: str) -> None:
    fun, scipy_jac, our_jac = {
        "callable": (rosen, rosen_grad, rosen_grad),
        "both": (rosen_both, True, True),
        "none": (rosen, None, None),
    }[jac]
    prob = om.OptimizationProblem.from_scipy(fun, X0, args=ARGS, jac=our_jac)
    sol = om.solve(prob, om.LBFGS())
    ref = scipy.optimize.minimize(fun, X0, args=ARGS, jac=scipy_jac, method="L-BFGS-B")
    np.testing.assert_allclose(sol.u, ref.x, atol=1e-3)
    assert sol.success and ref.success
    np.testing.assert_allclose(sol.u, [1.0, 1.0], atol=2e-3)


def test_jac_true_calls_fun_once_per_point() -> None:
    prob = om.OptimizationProblem.from_scipy(rosen_both, X0, args=ARGS, jac=True)
    CALLS.clear()
    sol = om.solve(prob, om.BFGS(), check_determinism=False)
    assert CALLS.count("both") == sol.stats.fevals
    assert sol.stats.gevals <= sol.stats.fevals


def test_jac_none_is_finite_differences() -> None:
    prob = om.OptimizationProblem.from_scipy(rosen, X0, args=ARGS)
    assert prob.grad == "finite-difference"
    assert prob.p == ARGS


def test_args_may_be_one_value() -> None:
    prob = om.OptimizationProblem.from_scipy(lambda x, c: float(np.sum((x - c) ** 2)), np.zeros(2), args=2.0)
    sol = om.solve(prob, om.LBFGS())
    np.testing.assert_allclose(sol.u, 2.0, atol=1e-5)


def test_bounds_as_pairs_with_none() -> None:
    prob = om.OptimizationProblem.from_scipy(plain, np.zeros(3), bounds=[(None, 1.0), (-1.0, None), (None, None)])
    lb, ub = prob.bounds
    np.testing.assert_array_equal(lb, [-np.inf, -1.0, -np.inf])
    np.testing.assert_array_equal(ub, [1.0, np.inf, np.inf])
    sol = om.solve(prob, om.LBFGS())
    np.testing.assert_allclose(sol.u, [1.0, 3.0, 3.0], atol=1e-5)


def test_bounds_as_scipy_bounds() -> None:
    prob = om.OptimizationProblem.from_scipy(plain, np.zeros(2), bounds=scipy.optimize.Bounds([0, 0], [1, 2]))
    sol = om.solve(prob, om.LBFGS())
    np.testing.assert_allclose(sol.u, [1.0, 2.0], atol=1e-6)


@pytest.mark.parametrize("bounds", [[(0, 1)], [(0, 1, 2), (0, 1)], "box"])
def test_bad_bounds_are_value_errors(bounds: Any) -> None:
    with pytest.raises(ValueError, match="bounds"):
        om.OptimizationProblem.from_scipy(plain, np.zeros(2), bounds=bounds)


def test_dict_constraints_match_scipy_slsqp() -> None:
    cons = [
        {"type": "ineq", "fun": lambda x, c: c - x[0] - x[1], "args": (1.0,)},
        {"type": "eq", "fun": lambda x: x[0] - 2 * x[1], "jac": lambda x: np.array([1.0, -2.0])},
    ]
    prob = om.OptimizationProblem.from_scipy(plain, np.zeros(2), constraints=cons)
    sol = om.solve(prob, om.SLSQP())
    ref = scipy.optimize.minimize(plain, np.zeros(2), constraints=cons, method="SLSQP")
    np.testing.assert_allclose(sol.u, ref.x, atol=1e-6)
    np.testing.assert_allclose(sol.u, [2 / 3, 1 / 3], atol=1e-6)


def test_a_single_dict_constraint_and_scipy_objects() -> None:
    one = om.OptimizationProblem.from_scipy(plain, np.zeros(2), constraints={"type": "eq", "fun": lambda x: x[0]})
    assert len(one.constraints) == 1
    linear = scipy.optimize.LinearConstraint(np.ones((1, 2)), -np.inf, 1.0)
    sol = om.solve(om.OptimizationProblem.from_scipy(plain, np.zeros(2), constraints=[linear]), om.SLSQP())
    np.testing.assert_allclose(sol.u, [0.5, 0.5], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fun": 3}, TypeError, "fun must be callable"),
        ({"jac": "exact"}, ValueError, "jac must be None, True, a callable"),
        ({"constraints": [{"type": "less", "fun": plain}]}, ValueError, r"constraints\[0\] as a dict"),
        ({"constraints": [{"type": "eq"}]}, ValueError, r"constraints\[0\] as a dict"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    args = {"fun": plain, "x0": np.zeros(2), **kwargs}
    with pytest.raises(error, match=match):
        om.OptimizationProblem.from_scipy(**args)


def test_x0_is_copied_and_never_written() -> None:
    x0 = np.array([0.5, -0.5])
    before = x0.tobytes()
    prob = om.OptimizationProblem.from_scipy(plain, x0)
    x0[0] = 9.0
    assert prob.u0[0] == 0.5
    x0[0] = 0.5
    om.solve(prob, om.LBFGS())
    assert x0.tobytes() == before


def test_problem_from_top_level_functions_pickles() -> None:
    prob = om.OptimizationProblem.from_scipy(rosen_both, X0, args=ARGS, jac=True)
    again = pickle.loads(pickle.dumps(prob))
    a, b = om.solve(prob, om.BFGS()), om.solve(again, om.BFGS())
    assert a.u.tobytes() == b.u.tobytes()


def test_keyword_arguments_pass_to_the_problem() -> None:
    prob = om.OptimizationProblem.from_scipy(lambda x: -float(np.sum((x - 1.0) ** 2)), np.zeros(2), sense="max")
    sol = om.solve(prob, om.LBFGS())
    np.testing.assert_allclose(sol.u, 1.0, atol=1e-5)
    assert sol.objective == pytest.approx(0.0, abs=1e-9)


def test_x0_outside_the_bounds_is_clipped_with_scipys_warning() -> None:
    x0 = np.array([5.0, -0.5, 0.25])
    before = x0.tobytes()
    bounds = [(0.0, 1.0), (0.0, None), (None, None)]
    with pytest.warns(scipy.optimize.OptimizeWarning, match=r"^Initial guess is not within the specified bounds") as w:
        prob = om.OptimizationProblem.from_scipy(plain, x0, bounds=bounds)
    assert len(w) == 1 and "x0[0] = 5.0 to [0.0, 1.0]" in str(w[0].message) and "2 coordinate(s)" in str(w[0].message)
    assert w[0].filename == __file__  # the warning points at the caller's line
    np.testing.assert_array_equal(prob.u0, [1.0, 0.0, 0.25])
    assert x0.tobytes() == before  # the caller's x0 is not written
    sol = om.solve(prob, om.LBFGS())
    ref = scipy.optimize.minimize(plain, x0, bounds=bounds, method="L-BFGS-B")  # scipy clips too
    np.testing.assert_allclose(sol.u, ref.x, atol=1e-6)
    np.testing.assert_allclose(sol.u, [1.0, 3.0, 3.0], atol=1e-6)


def test_the_clipping_warning_is_scipys_own() -> None:
    """scipy's Nelder-Mead warns so: a filter written for scipy's warning catches optimeta's."""
    with pytest.warns(scipy.optimize.OptimizeWarning, match=r"^Initial guess is not within the specified bounds"):
        scipy.optimize.minimize(plain, np.array([5.0, 0.0]), bounds=[(0, 1), (0, 1)], method="Nelder-Mead")


def test_x0_outside_scipy_bounds_objects_is_clipped() -> None:
    with pytest.warns(scipy.optimize.OptimizeWarning, match="x0 is clipped"):
        prob = om.OptimizationProblem.from_scipy(plain, [-3.0, 0.5], bounds=scipy.optimize.Bounds(0.0, 1.0))
    np.testing.assert_array_equal(prob.u0, [0.0, 0.5])


def test_x0_on_or_inside_the_bounds_is_kept_without_warning() -> None:
    prob = om.OptimizationProblem.from_scipy(plain, [0.0, 0.5], bounds=[(0.0, 1.0), (0.0, 1.0)])
    np.testing.assert_array_equal(prob.u0, [0.0, 0.5])


def test_malformed_bounds_are_refused_not_clipped_to() -> None:
    with pytest.raises(ValueError, match="lb > ub"):
        om.OptimizationProblem.from_scipy(plain, [5.0, 0.5], bounds=[(1.0, 0.0), (0.0, 1.0)])


# -- to_scipy ------------------------------------------------------------------------------------


def test_to_scipy_fields() -> None:
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(3))
    sol = om.solve(prob, om.BFGS())
    res = sol.to_scipy()
    assert isinstance(res, scipy.optimize.OptimizeResult)
    np.testing.assert_array_equal(res.x, sol.u)
    assert res.fun == sol.objective and res.success is True and res.status == 0
    assert (res.nit, res.nfev, res.njev, res.nhev) == (
        sol.stats.iterations,
        sol.stats.fevals,
        sol.stats.gevals,
        sol.stats.hevals,
    )
    assert res.message == sol.message and res.retcode == "SUCCESS" and res.state is None


@pytest.mark.parametrize(
    ("make", "code", "status"),
    [
        (lambda prob: om.solve(prob, om.Adam(lr=0.1), maxiters=3), "MAXITERS", 1),
        (lambda prob: om.solve(prob, om.BFGS(), callback=lambda info: True), "TERMINATED", 5),
    ],
)
def test_to_scipy_status_of_each_return_code(make: Any, code: str, status: int) -> None:
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(3))
    res = make(prob).to_scipy()
    assert (res.retcode, res.status, res.success) == (code, status, False)


def test_to_scipy_flattens_a_pytree_and_keeps_u_and_state() -> None:
    def f(u: Any, p: Any, state: Any) -> Any:
        return anp.sum((u["w"] - 1.0) ** 2) + (u["b"] - 2.0) ** 2, state + 1

    prob = om.OptimizationProblem(f, {"b": 0.0, "w": np.zeros((2, 2))}, state=0)
    sol = om.solve(prob, om.Adam(lr=0.1), maxiters=5)
    res = sol.to_scipy()
    assert res.x.shape == (5,) and res.x.dtype == np.float64
    assert res.x[0] == sol.u["b"]
    np.testing.assert_array_equal(res.x[1:], sol.u["w"].ravel())
    assert res.u is sol.u and res.state == 5


def test_scipy_round_trip_of_a_scipy_user() -> None:
    """A scipy user's code switches in one line and keeps reading scipy's result."""
    res_scipy = scipy.optimize.minimize(rosen, X0, args=ARGS, jac=rosen_grad, method="BFGS")
    res_om = om.solve(om.OptimizationProblem.from_scipy(rosen, X0, args=ARGS, jac=rosen_grad), om.BFGS()).to_scipy()
    np.testing.assert_allclose(res_om.x, res_scipy.x, atol=1e-5)
    assert res_om.success == res_scipy.success
    assert res_om.nit == res_scipy.nit


# -- to_scipy: the derivatives a method has -------------------------------------------------------

H = np.array([[3.0, 0.5], [0.5, 1.0]])


def _quadratic(u: Any, p: Any) -> Any:
    return 0.5 * anp.dot(u, anp.dot(H, u)) - anp.sum(u)


def _quadratic_grad(x: np.ndarray) -> np.ndarray:
    return np.asarray(H @ x - 1.0)


def test_to_scipy_of_bfgs_has_scipys_jac_and_hess_inv() -> None:
    res = om.solve(om.OptimizationProblem(_quadratic, np.zeros(2)), om.BFGS()).to_scipy()
    ref = scipy.optimize.minimize(lambda x: _quadratic(x, None), np.zeros(2), jac=_quadratic_grad, method="BFGS")
    assert res.jac.shape == (2,) and res.jac.dtype == np.float64
    np.testing.assert_allclose(res.jac, _quadratic_grad(res.x), rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.jac, ref.jac, rtol=0, atol=1e-12)
    assert isinstance(res.hess_inv, np.ndarray) and res.hess_inv.shape == (2, 2)
    np.testing.assert_array_equal(res.hess_inv, res.hess_inv.T)  # the whole matrix, not one triangle
    np.testing.assert_allclose(res.hess_inv, ref.hess_inv, rtol=1e-10, atol=0)


def test_to_scipy_of_lbfgs_has_the_lbfgs_b_inverse_hessian_product() -> None:
    sol = om.solve(om.OptimizationProblem(_quadratic, np.zeros(2)), om.LBFGS())
    res = sol.to_scipy()
    assert isinstance(res.hess_inv, scipy.optimize.LbfgsInvHessProduct)
    assert res.hess_inv is sol.original.hess_inv
    np.testing.assert_allclose(res.jac, _quadratic_grad(res.x), rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.hess_inv.todense(), np.linalg.inv(H), atol=5e-3)


@pytest.mark.parametrize(
    ("alg", "hess"),
    [(om.SLSQP(), False), (om.CG(), False), (om.TNC(), False), (om.NewtonCG(), False), (om.TrustConstr(), False)]
    + [(om.Dogleg(), True), (om.TrustExact(), True)],
    ids=lambda a: type(a).__name__ if not isinstance(a, bool) else str(a),
)
def test_to_scipy_of_scipy_methods_has_their_jac(alg: Any, hess: bool) -> None:
    res = om.solve(om.OptimizationProblem(_quadratic, np.array([0.3, -0.2])), alg).to_scipy()
    # trust-constr's own jac is its constraints' Jacobians: the gradient is its grad.
    assert res.jac.shape == (2,) and res.jac.dtype == np.float64
    np.testing.assert_allclose(res.jac, _quadratic_grad(res.x), rtol=0, atol=1e-14)
    assert "hess_inv" not in res
    assert ("hess" in res) is hess
    if hess:
        np.testing.assert_allclose(res.hess, H, atol=1e-14)


@pytest.mark.parametrize("alg", [om.NelderMead(), om.Powell(), om.Adam(lr=0.1)], ids=lambda a: type(a).__name__)
def test_to_scipy_has_no_derivatives_a_method_does_not_have(alg: Any) -> None:
    res = om.solve(om.OptimizationProblem(_quadratic, np.zeros(2)), alg, maxiters=50).to_scipy()
    assert not {"jac", "hess_inv", "hess"} & set(res)


@pytest.mark.parametrize("alg", [om.BFGS(), om.LBFGS()], ids=lambda a: type(a).__name__)
def test_to_scipy_derivatives_of_a_maximisation_are_fs_own(alg: Any) -> None:
    prob = om.OptimizationProblem(lambda u, p: -_quadratic(u, p), np.zeros(2), sense="max")
    res = om.solve(prob, alg).to_scipy()
    np.testing.assert_allclose(res.jac, -_quadratic_grad(res.x), rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.hess_inv @ np.eye(2), -np.linalg.inv(H), atol=5e-3)


def test_to_scipy_of_a_multistart_has_the_chosen_runs_derivatives() -> None:
    prob = om.OptimizationProblem(_quadratic, np.zeros(2), bounds=(np.full(2, -1.0), np.full(2, 1.0)))
    sol = om.multistart(prob, om.LBFGS(), n=3, seed=0)
    res = sol.to_scipy()
    np.testing.assert_allclose(res.jac, _quadratic_grad(res.x), rtol=0, atol=1e-15)
    assert isinstance(res.hess_inv, scipy.optimize.LbfgsInvHessProduct)
