"""The minibatch benchmark runs end to end in a tiny configuration and reports every algorithm."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize

import optimeta as om
from benchmarks import olbfgs_minibatch as bench


def test_minibatch_benchmark_reports_each_algorithm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rows.json"
    rows = bench.main(["--epochs", "2", "--tolerance", "0.5", "--out", str(out)])
    assert [row["algorithm"] for row in rows] == list(bench.GRIDS)
    for row in rows:
        assert row["lr"] in bench.GRIDS[row["algorithm"]][1]
        assert row["steps"] == 2 * bench.N // bench.BATCH
        assert math.isfinite(row["final_gap"]) and row["final_gap"] > -1e-9
        # A generous tolerance: after two epochs every algorithm is within 50% of the optimum.
        assert row["passes_to_tolerance"] <= 4.0
    assert json.loads(out.read_text()) == rows
    table = capsys.readouterr().out
    for name in bench.GRIDS:
        assert f"| {name} |" in table


def test_passes_to_tolerance_is_where_the_gap_stays_within_it() -> None:
    # A noisy run that dips below the tolerance once and leaves it again has not reached it.
    trace = bench.Trace(passes=[1.0, 2.0, 3.0, 4.0], gaps=[0.5, 0.009, 0.02, 0.001])
    assert bench.passes_to(trace, 0.01) == 4.0
    assert bench.passes_to(trace, 0.05) == 2.0
    assert bench.passes_to(trace, 1e-4) == math.inf
    assert bench.passes_to(bench.Trace(passes=[1.0, 2.0], gaps=[0.001, 0.02]), 0.01) == math.inf


def test_suite_runs_a_tiny_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from catalogue import twin_margin

    from benchmarks.__main__ import main

    out = tmp_path / "bench"
    problems = "rosenbrock-2,noisy-quadratic"
    assert (
        main(["--problems", problems, "--algorithms", "BFGS,Adam,scipy:BFGS", "--out", str(out), "--no-progress"]) == 0
    )
    rows = json.loads((out / "results.json").read_text())
    ran = {(r["problem"], r["solver"]): r for r in rows}
    assert set(ran) == {(p, s) for p in problems.split(",") for s in ("Adam", "BFGS", "scipy:BFGS")}
    bfgs = ran[("rosenbrock-2", "BFGS")]
    peer = ran[("rosenbrock-2", "scipy:BFGS")]
    assert bfgs["status"] == peer["status"] == "ok" and bfgs["success"] and bfgs["gap"] < 1e-10
    # optimeta's BFGS follows scipy's: counts within a few of the peer called directly (to rounding).
    for count in ("iterations", "fevals"):
        assert abs(bfgs[count] - peer[count]) <= twin_margin(peer[count]), (count, bfgs[count], peer[count])
    adam = ran[("rosenbrock-2", "Adam")]
    assert adam["iterations"] == adam["gevals"] == 2000 and adam["history"]["evaluations"][-1] <= adam["fevals"]
    refused = ran[("noisy-quadratic", "BFGS")]
    assert refused["status"] == "refused" and refused["refused_by"] == ["tolerates_stochastic_loss"]
    assert ran[("noisy-quadratic", "scipy:BFGS")]["status"] == "not applicable"
    table = (out / "results.md").read_text()
    assert "| noisy-quadratic | BFGS | refused: tolerates_stochastic_loss |" in table
    assert table in capsys.readouterr().out
    if importlib.util.find_spec("matplotlib") is None:
        # Without the bench extra the run says which plots it skips, and draws none.
        assert not list(out.glob("*.png"))
        return
    for problem in problems.split(","):
        assert (out / f"{problem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_problem_is_an_error() -> None:
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit):
        main(["--problems", "no-such-problem", "--no-progress"])


def test_perf_measurements_run(tmp_path: Path) -> None:
    from catalogue import assert_follows_scipy_twin, twin_margin

    from benchmarks import perf

    front = perf.front_end(repeats=1)
    counts = front["detail"].split(" (")[0].split()
    assert counts[0] == "evaluations" and counts[2] == "vs", front["detail"]
    # The front end compares like with like: optimeta's BFGS follows scipy's iterations on the
    # problem it measures (to rounding: its own O(n^2) update, whose rounding, like scipy's,
    # depends on the CPU's BLAS kernel), so the evaluations it times are within a few of scipy's.
    assert abs(int(counts[1]) - int(counts[3])) <= twin_margin(int(counts[3])), front["detail"]
    assert "max |u - x| " in front["detail"]
    x0 = np.array([-1.2, 1.0] * 15)
    prob = om.OptimizationProblem(
        lambda u, p: scipy.optimize.rosen(u), x0, grad=lambda u, p: scipy.optimize.rosen_der(u)
    )
    sol = om.solve(prob, om.BFGS())
    res = assert_follows_scipy_twin(sol, prob)
    assert sol.success and res.success
    assert str(sol.stats.fevals) == counts[1]
    loop = perf.driver(steps=300, repeats=1)
    assert loop["detail"].endswith("same iterate: True")
    for row in (front, loop):
        assert row["optimeta_s"] > 0 and row["peer_s"] > 0 and math.isfinite(row["ratio"])


@pytest.mark.needs("torch")
def test_torch_peers_match_optimetas_first_order_iterates() -> None:
    # CI installs torch (the CPU wheel) so that the peers run; Adam and SGD follow torch's
    # conventions, so on one problem, start and budget the iterates agree.
    from dataclasses import replace

    import optimeta as om
    from benchmarks.peers import available_peers
    from benchmarks.problems import make_problems
    from benchmarks.suite import run_algorithm, run_peer

    problem = replace(next(p for p in make_problems() if p.name == "beale"), maxiters=200)
    peers = {peer.name: peer for peer in available_peers()}
    for name, cls in (("SGD", om.SGD), ("Adam", om.Adam)):
        ours = run_algorithm(problem, name, cls)
        theirs = run_peer(problem, peers[f"torch:{name}"])
        assert theirs.status == "ok", theirs.message
        assert theirs.objective == pytest.approx(ours.objective, rel=1e-9, abs=1e-15)
    lbfgs = run_peer(problem, peers["torch:LBFGS"])
    assert lbfgs.status == "ok" and lbfgs.gap is not None and lbfgs.gap < 1e-8


@pytest.mark.needs("jax", "optax")
def test_optax_peers_match_optimetas_first_order_iterates_and_count_every_call() -> None:
    # CI installs jax and optax (extra bench). optax's sgd and adam follow the same conventions;
    # optax.lbfgs reaches the objective through a callback, so its line search's calls count.
    from dataclasses import replace

    import optimeta as om
    from benchmarks.peers import available_peers
    from benchmarks.problems import make_problems
    from benchmarks.suite import run_algorithm, run_peer

    problem = replace(next(p for p in make_problems() if p.name == "beale"), maxiters=200)
    peers = {peer.name: peer for peer in available_peers()}
    for name, cls in (("SGD", om.SGD), ("Adam", om.Adam)):
        ours = run_algorithm(problem, name, cls)
        theirs = run_peer(problem, peers[f"optax:{name.lower()}"])
        assert theirs.status == "ok", theirs.message
        assert theirs.objective == pytest.approx(ours.objective, rel=1e-9, abs=1e-15)
        assert theirs.fevals == 200
    lbfgs = run_peer(problem, peers["optax:lbfgs"])
    assert lbfgs.status == "ok", lbfgs.message
    assert lbfgs.gap is not None and lbfgs.gap < 1e-8 and lbfgs.success
    assert lbfgs.iterations is not None and lbfgs.fevals is not None and lbfgs.fevals >= lbfgs.iterations


def test_every_registered_algorithm_is_configured_for_the_suite() -> None:
    # Each class gives its own configuration (`Algorithm.benchmark_config`), from a problem's
    # step sizes: the suite names no algorithm.
    import optimeta as om
    from benchmarks.problems import make_problems

    for problem in make_problems():
        for cls in om.algorithms():
            config = cls.benchmark_config(problem.rates)
            assert type(config) is cls, (problem.name, cls.__name__, config)
    rates = {"SGD": 1e-3, "Adam": 1e-2, "OLBFGS": 0.1}
    assert om.SGD.benchmark_config(rates) == om.SGD(lr=1e-3)
    assert om.Adam.benchmark_config(rates) == om.Adam(lr=1e-2)
    assert om.OLBFGS.benchmark_config(rates) == om.OLBFGS(lr=0.1)
    # Lion moves every coordinate by lr: a tenth of Adam's; Adagrad's steps shrink: ten times.
    assert om.Lion.benchmark_config(rates) == om.Lion(lr=1e-3)
    assert om.Adagrad.benchmark_config(rates) == om.Adagrad(lr=0.1)
    # The default: the class with its defaults.
    assert om.BFGS.benchmark_config(rates) == om.BFGS() and om.Adadelta.benchmark_config(rates) == om.Adadelta()


def test_a_class_without_defaults_for_every_hyperparameter_is_not_configured() -> None:
    from dataclasses import dataclass
    from typing import ClassVar

    from benchmarks.problems import make_problems
    from benchmarks.suite import run_algorithm
    from optimeta.backends._base import FIRST_ORDER_TRAITS, FirstOrderAlgorithm

    @dataclass(frozen=True, kw_only=True)
    class Descent(FirstOrderAlgorithm[int]):
        lr: float
        traits: ClassVar[om.Traits] = FIRST_ORDER_TRAITS

        def init(self, x0: np.ndarray) -> int:
            return 0

        def update(self, grad: np.ndarray, x: np.ndarray, state: int) -> tuple[np.ndarray, int]:
            return x - self.lr * grad, state + 1

    @dataclass(frozen=True, kw_only=True)
    class Defaulted(Descent):
        lr: float = 0.01

    assert Descent.benchmark_config({"Adam": 0.1}) is None
    assert Defaulted.benchmark_config({}) == Defaulted()
    beale = next(p for p in make_problems() if p.name == "beale")
    assert run_algorithm(beale, "Descent", Descent).status == "not configured"


def test_every_registered_algorithm_runs_on_a_suite_problem_without_error() -> None:
    # The suite's counter sees the objective under every kind of tracing (second derivatives
    # trace it twice): no algorithm may end in an "error" row.
    from dataclasses import replace

    import optimeta as om
    from benchmarks.problems import make_problems
    from benchmarks.suite import run_algorithm

    problems = {p.name: replace(p, maxiters=50) for p in make_problems() if p.name in ("beale", "hs71")}
    for cls in om.algorithms():
        # An algorithm that searches a box, or takes constraints, on the box- and constraint-bound HS71.
        traits = om.traits(cls)
        problem = problems["hs71" if traits.requires_bounds or traits.supports_constraints else "beale"]
        result = run_algorithm(problem, cls.__name__, cls)
        if problem.name == "hs71" and not traits.supports_constraints:
            assert result.status == "refused" and result.refused_by == ["supports_constraints"], cls.__name__
            continue
        assert result.status == "ok", (cls.__name__, result.message)
        assert result.gap is not None and np.isfinite(result.gap)


def test_peers_that_ignore_bounds_or_constraints_do_not_run_on_such_problems() -> None:
    from benchmarks.peers import available_peers
    from benchmarks.problems import make_problems

    problems = {p.name: p for p in make_problems()}
    applies = {
        name: sorted(peer.name for peer in available_peers() if peer.applies(problems[name]))
        for name in ("hs71", "rastrigin-box-4", "beale")
    }
    assert applies["hs71"] == ["scipy:SLSQP", "scipy:differential_evolution"]
    assert applies["rastrigin-box-4"] == ["scipy:L-BFGS-B", "scipy:SLSQP", "scipy:differential_evolution"]
    assert "scipy:differential_evolution" not in applies["beale"] and "scipy:BFGS" in applies["beale"]


def test_gradient_backend_timings_run() -> None:
    from benchmarks import perf

    rows = perf.gradient_backends(sizes=((8, 64, 2),), repeats=1)
    # The frameworks are extras: each one installed is measured, finite differences always.
    frameworks = [name for name in ("jax", "torch") if importlib.util.find_spec(name) is not None]
    assert [row["name"].split(":")[0] for row in rows] == [
        f"gradient backend {name}" for name in (*frameworks, "finite-difference")
    ]
    for row in rows:
        assert row["optimeta_s"] > 0 and row["peer_s"] > 0 and math.isfinite(row["ratio"]) and row["target"] is None
        assert "65 parameters" in row["name"] and "ms/evaluation" in row["detail"]
