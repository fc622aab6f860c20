"""The adaptive first-order family against NumPy references written from the docstring formulas.

Each reference is a generator of iterates ``u_1, u_2, ...`` from ``u_0``, with ``g_k`` the
gradient at ``u_k`` and ``k`` counted from 1 in the bias corrections, as the docstrings write it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import pytest

import optimeta as om
from optimeta.backends._base import FIRST_ORDER_TRAITS

A = np.array([[4.0, 1.0, 0.0], [1.0, 2.0, -0.5], [0.0, -0.5, 0.5]])
C = np.array([1.5, -2.0, 0.75])
X0 = np.array([-0.5, 0.5, 2.0])
LB, UB = np.array([-1.0, 0.3, 1.5]), np.array([-0.3, 1.0, 3.0])  # the optimum C lies outside
STEPS = 6

#: A reference run: started with u0 and the hyperparameters, it yields each new iterate and is
#: sent the point to continue from (the iterate itself, or its projection onto the box).
Run = Generator[np.ndarray, np.ndarray, None]
Reference = Callable[..., Run]


def grad(u: np.ndarray) -> np.ndarray:
    return A @ (u - C)


def adamw(u: np.ndarray, lr: float, b1: float, b2: float, eps: float, wd: float) -> Run:
    m, v = np.zeros(3), np.zeros(3)
    for k in itertools.count(1):
        gk = grad(u)
        m, v = b1 * m + (1 - b1) * gk, b2 * v + (1 - b2) * gk**2
        u = yield u - lr * ((m / (1 - b1**k)) / (np.sqrt(v / (1 - b2**k)) + eps) + wd * u)


def amsgrad(u: np.ndarray, lr: float, b1: float, b2: float, eps: float) -> Run:
    m, v, v_hat = np.zeros(3), np.zeros(3), np.zeros(3)
    for k in itertools.count(1):
        gk = grad(u)
        m, v = b1 * m + (1 - b1) * gk, b2 * v + (1 - b2) * gk**2
        v_hat = np.maximum(v_hat, v)
        u = yield u - lr * (m / (1 - b1**k)) / (np.sqrt(v_hat / (1 - b2**k)) + eps)


def adamax(u: np.ndarray, lr: float, b1: float, b2: float, eps: float) -> Run:
    m, w = np.zeros(3), np.zeros(3)
    for k in itertools.count(1):
        gk = grad(u)
        m, w = b1 * m + (1 - b1) * gk, np.maximum(b2 * w, np.abs(gk) + eps)
        u = yield u - lr / (1 - b1**k) * m / w


def nadam(u: np.ndarray, lr: float, b1: float, b2: float, eps: float) -> Run:
    m, v = np.zeros(3), np.zeros(3)
    for k in itertools.count(1):
        gk = grad(u)
        m, v = b1 * m + (1 - b1) * gk, b2 * v + (1 - b2) * gk**2
        m_hat = b1 * m / (1 - b1 ** (k + 1)) + (1 - b1) * gk / (1 - b1**k)
        u = yield u - lr * m_hat / (np.sqrt(v / (1 - b2**k)) + eps)


def rmsprop(u: np.ndarray, lr: float, rho: float, eps: float, mu: float) -> Run:
    s, b = np.zeros(3), np.zeros(3)
    while True:
        gk = grad(u)
        s = rho * s + (1 - rho) * gk**2
        b = mu * b + gk / (np.sqrt(s) + eps)
        u = yield u - lr * b


def adagrad(u: np.ndarray, lr: float, eps: float, g0: float) -> Run:
    total = np.full(3, g0)
    while True:
        gk = grad(u)
        total = total + gk**2
        u = yield u - lr * gk / (np.sqrt(total) + eps)


def adadelta(u: np.ndarray, lr: float, rho: float, eps: float) -> Run:
    a, d = np.zeros(3), np.zeros(3)
    while True:
        gk = grad(u)
        a = rho * a + (1 - rho) * gk**2
        delta = np.sqrt(d + eps) / np.sqrt(a + eps) * gk
        d = rho * d + (1 - rho) * delta**2
        u = yield u - lr * delta


def lion(u: np.ndarray, lr: float, b1: float, b2: float, wd: float) -> Run:
    m = np.zeros(3)
    while True:
        gk = grad(u)
        c = b1 * m + (1 - b1) * gk
        m = b2 * m + (1 - b2) * gk
        u = yield u - lr * (np.sign(c) + wd * u)


# (id, algorithm, reference, the reference's hyperparameters after u0)
CASES: list[tuple[str, Any, Reference, tuple[float, ...]]] = [
    ("AdamW", om.AdamW(lr=0.3, b1=0.8, b2=0.9, eps=1e-3, weight_decay=0.2), adamw, (0.3, 0.8, 0.9, 1e-3, 0.2)),
    ("AdamW-no-decay", om.AdamW(lr=0.3, b1=0.7, b2=0.95, eps=1e-2, weight_decay=0.0), adamw, (0.3, 0.7, 0.95, 1e-2, 0)),
    ("AMSGrad", om.AMSGrad(lr=0.4, b1=0.6, b2=0.5, eps=1e-3), amsgrad, (0.4, 0.6, 0.5, 1e-3)),
    ("Adamax", om.Adamax(lr=0.3, b1=0.8, b2=0.7, eps=1e-3), adamax, (0.3, 0.8, 0.7, 1e-3)),
    ("NAdam", om.NAdam(lr=0.25, b1=0.85, b2=0.97, eps=1e-4), nadam, (0.25, 0.85, 0.97, 1e-4)),
    ("RMSProp", om.RMSProp(lr=0.1, rho=0.7, eps=1e-4), rmsprop, (0.1, 0.7, 1e-4, 0.0)),
    ("RMSProp-momentum", om.RMSProp(lr=0.05, rho=0.8, eps=1e-4, momentum=0.9), rmsprop, (0.05, 0.8, 1e-4, 0.9)),
    ("Adagrad", om.Adagrad(lr=0.4, eps=1e-3, initial_accumulator=0.3), adagrad, (0.4, 1e-3, 0.3)),
    ("Adadelta", om.Adadelta(lr=0.7, rho=0.8, eps=1e-2), adadelta, (0.7, 0.8, 1e-2)),
    ("Lion", om.Lion(lr=0.4, b1=0.8, b2=0.95), lion, (0.4, 0.8, 0.95, 0.0)),
    ("Lion-decay", om.Lion(lr=0.4, b1=0.8, b2=0.95, weight_decay=0.3), lion, (0.4, 0.8, 0.95, 0.3)),
]
IDS = [c[0] for c in CASES]
PARAMS = [c[1:] for c in CASES]


def _iterates(alg: Any, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> list[np.ndarray]:
    prob = om.OptimizationProblem(
        lambda u, p: float(0.5 * (u - C) @ A @ (u - C)), X0.copy(), grad=lambda u, p: grad(u), bounds=bounds
    )
    seen: list[np.ndarray] = []
    sol = om.solve(prob, alg, maxiters=STEPS, callback=lambda info: seen.append(info.u))
    assert sol.stats.iterations == STEPS == len(seen)
    return seen


def _reference(ref: Reference, hyper: tuple[float, ...], box: bool) -> list[np.ndarray]:
    """The first iterates of `ref`, each clipped to the box (with `box`) before the next step."""
    run, out = ref(X0.copy(), *hyper), []
    u = next(run)
    while True:
        u = np.clip(u, LB, UB) if box else u
        out.append(u)
        if len(out) == STEPS:
            return out
        u = run.send(u)


@pytest.mark.parametrize(("alg", "ref", "hyper"), PARAMS, ids=IDS)
def test_iterates_match_the_docstring_formula(alg: Any, ref: Reference, hyper: tuple[float, ...]) -> None:
    expected = _reference(ref, hyper, box=False)
    for k, (got, want) in enumerate(zip(_iterates(alg), expected), start=1):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"iterate {k}")
    assert not np.allclose(expected[-1], expected[-2])  # the run moved


@pytest.mark.parametrize(("alg", "ref", "hyper"), PARAMS, ids=IDS)
def test_bounded_iterates_are_projected_onto_the_box(alg: Any, ref: Reference, hyper: tuple[float, ...]) -> None:
    got = _iterates(alg, bounds=(LB, UB))
    for k, u in enumerate(got, start=1):
        assert np.all(LB <= u) and np.all(u <= UB), f"iterate {k} = {u} left the box"
    assert any(np.any(u == LB) or np.any(u == UB) for u in got)  # the box was active
    for k, (u, want) in enumerate(zip(got, _reference(ref, hyper, box=True)), start=1):
        np.testing.assert_allclose(u, want, rtol=1e-12, atol=1e-14, err_msg=f"iterate {k}")


# -- validation, traits, purity -----------------------------------------------------------------

FAMILY = [om.AdamW, om.AMSGrad, om.Adamax, om.NAdam, om.RMSProp, om.Adagrad, om.Adadelta, om.Lion]
FRACTIONS = {
    om.AdamW: ("b1", "b2"),
    om.AMSGrad: ("b1", "b2"),
    om.Adamax: ("b1", "b2"),
    om.NAdam: ("b1", "b2"),
    om.RMSProp: ("rho", "momentum"),
    om.Adagrad: (),
    om.Adadelta: ("rho",),
    om.Lion: ("b1", "b2"),
}
NONNEGATIVE = {om.AdamW: ("weight_decay",), om.Adagrad: ("initial_accumulator",), om.Lion: ("weight_decay",)}


def _invalid(cls: type) -> list[tuple[str, Any, type[Exception]]]:
    fields = {f.name for f in dataclasses.fields(cls)}
    cases = [("lr", 0.0, ValueError), ("lr", -1, ValueError), ("lr", math.nan, ValueError), ("lr", "x", TypeError)]
    cases += [(name, bad, ValueError) for name in FRACTIONS[cls] for bad in (1.0, -0.1)]
    cases += [("eps", 0.0, ValueError)] if "eps" in fields else []
    cases += [(name, -1.0, ValueError) for name in NONNEGATIVE.get(cls, ())]
    return cases


INVALID = [(cls, *case) for cls in FAMILY for case in _invalid(cls)]


@pytest.mark.parametrize(
    ("cls", "name", "bad", "error"), INVALID, ids=[f"{c.__name__}-{n}={b!r}" for c, n, b, _ in INVALID]
)
def test_invalid_hyperparameters_are_refused(cls: type, name: str, bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=rf"\b{name}\b.*{re.escape(repr(bad))}") as info:
        cls(**{name: bad})
    assert type(info.value) is error


@pytest.mark.parametrize("cls", FAMILY, ids=[c.__name__ for c in FAMILY])
def test_every_hyperparameter_is_validated(cls: type) -> None:
    checked = {name for name, _, _ in _invalid(cls)}
    assert checked == {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", FAMILY, ids=[c.__name__ for c in FAMILY])
def test_unknown_or_positional_arguments_are_refused(cls: type) -> None:
    with pytest.raises(TypeError, match=r"'learning_rate'"):
        cls(learning_rate=0.1)
    with pytest.raises(TypeError, match=r"positional"):
        cls(0.1)


@pytest.mark.parametrize("cls", FAMILY, ids=[c.__name__ for c in FAMILY])
def test_traits_are_the_first_order_familys(cls: type) -> None:
    assert cls.traits == FIRST_ORDER_TRAITS
    assert om.traits(cls()) == FIRST_ORDER_TRAITS
    assert cls in om.algorithms()


@pytest.mark.parametrize("alg", [c[1] for c in CASES], ids=IDS)
def test_update_leaves_its_arguments_unchanged(alg: Any) -> None:
    x = X0.copy()
    state = alg.init(x)
    for _ in range(3):
        g = grad(x)
        before = (x.tobytes(), g.tobytes())
        x_new, state = alg.update(g, x, state)
        assert (x.tobytes(), g.tobytes()) == before
        assert not np.shares_memory(x_new, x) and not np.shares_memory(x_new, g)
        x = x_new
