"""``python -m benchmarks --perf``: optimeta's cost against a peer run in the same process.

Each measurement alternates optimeta and its peer several times and keeps the fastest run of each,
so that load from elsewhere on a shared machine inflates neither side; the ratio is what counts.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize

import optimeta as om
from optimeta.backends import _kernels


def _fastest(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, Any]]:
    """Alternate the runs `repeats` times; the fastest time of each, with its last output."""
    best: dict[str, tuple[float, Any]] = {name: (float("inf"), None) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            out = run()
            elapsed = time.perf_counter() - start
            best[name] = (min(best[name][0], elapsed), out)
    return best


def _bfgs_against_scipy(n: int, repeats: int) -> tuple[tuple[float, Any], tuple[float, Any]]:
    """Fastest (time, result) of optimeta's and scipy's BFGS on the n-dim Rosenbrock, user gradient."""
    x0 = np.array([-1.2, 1.0] * (n // 2))

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        return scipy.optimize.rosen(x), scipy.optimize.rosen_der(x)

    prob = om.OptimizationProblem(
        lambda u, p: scipy.optimize.rosen(u), x0, grad=lambda u, p: scipy.optimize.rosen_der(u)
    )
    best = _fastest(
        {
            "optimeta": lambda: om.solve(prob, om.BFGS()),
            "scipy": lambda: scipy.optimize.minimize(value_and_grad, x0, jac=True, method="BFGS"),
        },
        repeats,
    )
    return best["optimeta"], best["scipy"]


def front_end(repeats: int = 15) -> dict[str, Any]:
    """BFGS on the 30-dim Rosenbrock with a user gradient, against scipy.optimize.minimize."""
    (t_om, sol), (t_sp, res) = _bfgs_against_scipy(30, repeats)
    return {
        "name": "front end: BFGS, 30-dim Rosenbrock, user gradient",
        "peer": "scipy.optimize.minimize(method='BFGS')",
        "optimeta_s": t_om,
        "peer_s": t_sp,
        "ratio": t_om / t_sp,
        "target": 1.10,
        "detail": f"evaluations {sol.stats.fevals} vs {res.nfev} (+{sol.stats.probe_fevals} probe calls), "
        f"iterations {sol.stats.iterations} vs {res.nit}, max |u - x| {np.max(np.abs(sol.u - res.x)):.1e}",
    }


def driver(steps: int = 20000, repeats: int = 5) -> dict[str, Any]:
    """Adam on a 10-dim quadratic with an analytic gradient, against a hand-written NumPy loop."""
    scales, target = np.linspace(1.0, 10.0, 10), np.ones(10)
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8

    def loss(u: np.ndarray, p: Any) -> float:
        return float(np.sum(scales * (u - target) ** 2))

    def grad(u: np.ndarray, p: Any) -> np.ndarray:
        return 2.0 * scales * (u - target)

    def hand() -> np.ndarray:
        x, m, v = np.zeros(10), np.zeros(10), np.zeros(10)
        for t in range(1, steps + 1):
            loss(x, None)
            g = grad(x, None)
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * (g * g)
            denom = v / (1.0 - b2**t)
            np.sqrt(denom, out=denom)
            denom += eps
            step = m / denom
            step *= lr / (1.0 - b1**t)
            x = x - step
        return x

    prob = om.OptimizationProblem(loss, np.zeros(10), grad=grad)
    best = _fastest({"optimeta": lambda: om.solve(prob, om.Adam(lr=lr), maxiters=steps), "hand": hand}, repeats)
    (t_om, sol), (t_hand, x) = best["optimeta"], best["hand"]
    return {
        "name": f"driver: Adam, {steps} steps, 10-dim quadratic, analytic gradient",
        "peer": "hand-written NumPy Adam loop",
        "optimeta_s": t_om,
        "peer_s": t_hand,
        "ratio": t_om / t_hand,
        "target": 1.5,
        "detail": f"{1e6 * t_om / steps:.1f} vs {1e6 * t_hand / steps:.1f} us/step, same iterate: "
        f"{bool(np.array_equal(sol.u, x))}",
    }


def large_update(size: int = 10_000_000, steps: int = 5, repeats: int = 3) -> list[dict[str, Any]]:
    """One Adam step, and one SGD-momentum step, on `size` float64 parameters, against torch's
    fused optimizers doing the same steps in the same process (nothing without torch)."""
    if importlib.util.find_spec("torch") is None:
        return []
    import torch

    rng = np.random.default_rng(0)
    x, g = rng.normal(size=size), rng.normal(size=size)
    kernel = "numba fused kernel" if _kernels.have_numba() else "NumPy in-place path"
    rows = []
    cases = (
        ("Adam", om.Adam(lr=1e-3), lambda p: torch.optim.Adam([p], lr=1e-3, fused=True)),
        (
            "SGD-momentum",
            om.SGD(lr=1e-3, momentum=0.9),
            lambda p: torch.optim.SGD([p], lr=1e-3, momentum=0.9, fused=True),
        ),
    )
    for name, ours_alg, make_theirs in cases:
        param = torch.tensor(x)
        param.grad = torch.tensor(g)
        theirs_opt = make_theirs(param)

        # Like torch's optimizer, the run's state lives on from one timed run to the next; the
        # iterate is handed from step to step, so that its memory can be updated in place.
        carried: list[Any] = [x, ours_alg.init(x)]

        def ours(alg: Any = ours_alg, carried: list[Any] = carried) -> None:
            y, state = carried
            carried.clear()
            for _ in range(steps):
                y, state = alg.update(g, y, state)
            carried[:] = [y, state]

        def theirs(opt: Any = theirs_opt) -> None:
            for _ in range(steps):
                opt.step()

        best = _fastest({"optimeta": ours, "torch": theirs}, repeats)
        t_om, t_torch = best["optimeta"][0] / steps, best["torch"][0] / steps
        rows.append(
            {
                "name": f"large update: one {name} step on {size:,} float64 parameters",
                "peer": f"torch.optim.{type(theirs_opt).__name__}(fused=True)",
                "optimeta_s": t_om,
                "peer_s": t_torch,
                "ratio": t_om / t_torch,
                "target": 1.0,
                "detail": f"{1e3 * t_om:.1f} vs {1e3 * t_torch:.1f} ms/step ({kernel}); after "
                f"{steps * repeats} steps, max |u - torch| {np.max(np.abs(carried[0] - param.detach().numpy())):.1e}",
            }
        )
    return rows


def bfgs_scaling(n: int = 400) -> dict[str, Any]:
    """BFGS on the n-dim Rosenbrock against scipy's BFGS: the O(n^2) update against O(n^3)."""
    (t_om, sol), (t_sp, res) = _bfgs_against_scipy(n, 1)
    return {
        "name": f"BFGS at scale: {n}-dim Rosenbrock",
        "peer": "scipy.optimize.minimize(method='BFGS')",
        "optimeta_s": t_om,
        "peer_s": t_sp,
        "ratio": t_om / t_sp,
        "target": 1 / 20,
        "detail": f"iterations {sol.stats.iterations} vs {res.nit}, objective {sol.objective:.3g} vs {res.fun:.3g}, "
        f"max |u - x| {np.max(np.abs(sol.u - res.x)):.1e}",
    }


def main(out: Path, quick: bool = False) -> list[dict[str, Any]]:
    """Run every measurement, print each ratio with its peer, and write perf.json into `out`."""
    rows = [front_end(), driver()]
    rows += large_update(size=1_000_000 if quick else 10_000_000)
    if not quick:
        rows.append(bfgs_scaling())
    print("| measurement | peer | optimeta (s) | peer (s) | ratio | target | detail |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['peer']} | {r['optimeta_s']:.4g} | {r['peer_s']:.4g} | {r['ratio']:.2f}x | "
            f"<= {r['target']:.2f}x | {r['detail']} |"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(rows, indent=1))
    return rows
