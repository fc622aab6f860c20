"""The native jax step dispatched ahead (`optimeta._native_jax.NativeJaxStep`): on a full batch of
jax arrays, a small model's next step is dispatched before the host reads the current one's
report. That may change nothing but the time: each run here is compared, Solution field by
field and byte for byte, with the same run with the prefetch switched off (`PREFETCH`), through
non-finite steps that end the run or are skipped, a callback that stops it, minibatches and a
`Solver` stepped and checkpointed in between; and the dispatches are counted, so that the
prefetch is seen to run where it may, and only there."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import optimeta as om
import optimeta._native_jax as native_jax

pytestmark = pytest.mark.needs("jax")

ALGORITHMS = [om.Adam(lr=0.05), om.SGD(lr=0.05, momentum=0.9), om.Lion(lr=0.01)]
IDS = ["Adam", "SGD-momentum", "Lion"]
X0 = np.array([0.1, 0.2, -0.3, 0.5])


def keyed(u: Any, p: Any, s: Any) -> Any:
    """A weighted quadratic whose weight follows the state's counter, NaN at the calls in ``bad``."""
    import jax.numpy as jnp

    x, k = u["x"], s["k"]
    loss = (1.0 + 0.5 * jnp.sin(k)) * jnp.sum(p["w"] * (x - p["t"]) ** 2)
    return jnp.where(jnp.any(k == p["bad"]), jnp.nan, loss), {"k": k + 1, "m": 0.9 * s["m"] + 0.1 * x}


def batch(bad: tuple[int, ...] = (), shift: float = 0.0, on_jax: bool = True) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    p = {"w": np.array([1.0, 2.0, 0.5, 3.0]), "t": np.array([0.7, -1.2, 0.4, 2.0]) + shift}
    p["bad"] = np.array(sorted(bad) or [-1])
    if not on_jax:
        return p
    with jax.enable_x64(True):
        return {key: jnp.asarray(value) for key, value in p.items()}


def problem(p: Any) -> om.OptimizationProblem:
    return om.OptimizationProblem(keyed, {"x": X0}, p=p, state={"k": 0, "m": np.zeros(4)}, grad="jax")


def dispatches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at each call of a native jax step's compiled function."""
    calls: list[int] = []
    original = native_jax.NativeJaxStep._dispatch

    def counted(self: Any, *args: Any) -> Any:
        calls.append(args[2])
        return original(self, *args)

    monkeypatch.setattr(native_jax.NativeJaxStep, "_dispatch", counted)
    return calls


def summary(sol: om.Solution) -> tuple[Any, ...]:
    """What a run gives back, as bytes and numbers."""
    state = {key: np.asarray(value).tobytes() for key, value in sol.state.items()}
    stats = (sol.stats.iterations, sol.stats.fevals, sol.stats.gevals)
    return np.asarray(sol.u["x"]).tobytes(), float(sol.objective), sol.retcode, stats, state


def both(monkeypatch: pytest.MonkeyPatch, run: Any) -> tuple[Any, Any]:
    """`run()` with the prefetch on, then off."""
    on = run()
    monkeypatch.setattr(native_jax, "PREFETCH", False)
    off = run()
    monkeypatch.setattr(native_jax, "PREFETCH", True)
    return on, off


@pytest.mark.parametrize("alg", ALGORITHMS, ids=IDS)
@pytest.mark.parametrize(
    ("bad", "options"),
    [((), {}), ((6,), {}), ((6, 9, 10), {"nan_policy": "skip", "max_skips": 2})],
    ids=["finite", "nan-ends", "nan-skipped"],
)
def test_the_prefetch_changes_nothing(monkeypatch: pytest.MonkeyPatch, alg: Any, bad: Any, options: Any) -> None:
    prob = problem(batch(bad))
    on, off = both(monkeypatch, lambda: summary(om.solve(prob, alg, maxiters=15, **options)))
    assert on == off
    assert on[2] is (om.ReturnCode.MAXITERS if not bad or options else om.ReturnCode.NONFINITE)


def test_a_callback_that_stops_the_run_sees_what_it_would_see(monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> Any:
        seen: list[Any] = []

        def callback(info: Any) -> bool:
            seen.append((np.asarray(info.u["x"]).tobytes(), info.state["k"], info.objective))
            return info.iteration == 7

        return summary(om.solve(problem(batch()), om.Adam(lr=0.05), maxiters=20, callback=callback)), seen

    on, off = both(monkeypatch, run)
    assert on == off
    assert on[0][2] is om.ReturnCode.TERMINATED and len(on[1]) == 7


def test_a_full_batch_of_jax_arrays_is_dispatched_one_step_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = dispatches(monkeypatch)
    om.solve(problem(batch()), om.Adam(lr=0.05), maxiters=10)
    # each step's dispatch comes one step early; the last one (step 10) is never read
    assert calls == list(range(11))


@pytest.mark.parametrize(
    "how", ["numpy-batch", "minibatches", "prefetch-off"], ids=["numpy-batch", "minibatches", "prefetch-off"]
)
def test_nothing_is_dispatched_ahead_where_the_next_step_is_not_known(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    # A NumPy batch may be written between steps; the next minibatch is not known yet.
    if how == "prefetch-off":
        monkeypatch.setattr(native_jax, "PREFETCH", False)
    calls = dispatches(monkeypatch)
    if how == "minibatches":
        data = [batch(shift=0.1 * i) for i in range(5)]
        om.solve(problem(data[0]), om.Adam(lr=0.05), data=data, epochs=2)
    else:
        om.solve(problem(batch(on_jax=how != "numpy-batch")), om.Adam(lr=0.05), maxiters=10)
    assert calls == list(range(10))


def test_a_solver_stepped_and_checkpointed_is_the_straight_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    prob = problem(batch((8,)))

    def run() -> Any:
        solver = om.init(prob, om.Adam(lr=0.05), maxiters=12)
        for _ in range(4):
            solver.step()
        resumed = om.resume(pickle.loads(pickle.dumps(solver.checkpoint())), prob)
        return summary(solver.solve()), summary(resumed.solve())

    (stepped, resumed), (stepped_off, resumed_off) = both(monkeypatch, run)
    straight = summary(om.solve(prob, om.Adam(lr=0.05), maxiters=12))
    assert stepped == resumed == stepped_off == resumed_off == straight
    assert straight[2] is om.ReturnCode.NONFINITE
