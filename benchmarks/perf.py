"""``python -m benchmarks --perf``: optimeta's cost against a peer run in the same process.

The rows: the front end and the driver loop against scipy and a hand-written loop, large updates
against torch's fused optimizers, BFGS at scale, and the time per value-and-gradient evaluation
of each gradient backend (``grad="jax"``, ``"torch"``, ``"finite-difference"``) against autograd
on the stateful MLP at two sizes.

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

from . import perf_native


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
        # iterate and state are handed from step to step and donated, as the driver loop
        # donates them (`step_donated`), so that their memory can be updated in place.
        carried: list[Any] = [x, ours_alg.init(x)]

        def ours(alg: Any = ours_alg, carried: list[Any] = carried) -> None:
            y, state = carried
            carried.clear()
            for _ in range(steps):
                y, state = alg.update_donated(g, y, state)
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


def _mlp_objectives(mlp: Any) -> dict[str, Callable[..., Any]]:
    """The benchmark's stateful MLP loss (linear, BatchNorm with its running statistics in the
    state, ReLU, dropout from an integer key in the state, linear; mean squared error) written
    for each gradient backend. Each draws its dropout masks with its own generator."""
    objectives: dict[str, Callable[..., Any]] = {"autograd": mlp.loss}
    momentum, eps, dropout = mlp.BN_MOMENTUM, mlp.BN_EPS, mlp.DROPOUT
    if importlib.util.find_spec("jax") is not None:
        import jax
        import jax.numpy as jnp

        def loss_jax(params: Any, data: Any, state: Any) -> Any:
            x, y = data
            h = x @ params["W1"] + params["b1"]
            mean, var = jnp.mean(h, axis=0), jnp.var(h, axis=0)
            new_state = {
                "key": state["key"] + 1,
                "mean": momentum * state["mean"] + (1 - momentum) * mean,
                "var": momentum * state["var"] + (1 - momentum) * var,
            }
            h = jnp.maximum(params["gamma"] * (h - mean) / jnp.sqrt(var + eps) + params["beta"], 0.0)
            key = jax.random.fold_in(jax.random.PRNGKey(0), state["key"])
            h = h * (jax.random.uniform(key, h.shape) >= dropout) / (1 - dropout)
            return jnp.mean((h @ params["W2"] + params["b2"] - y) ** 2), new_state

        objectives["jax"] = loss_jax
    if importlib.util.find_spec("torch") is not None:
        import torch

        def loss_torch(params: Any, data: Any, state: Any) -> Any:
            x, y = data
            h = x @ params["W1"] + params["b1"]
            mean, var = h.mean(0), h.var(0, unbiased=False)
            new_state = {
                "key": state["key"] + 1,
                "mean": momentum * state["mean"] + (1 - momentum) * mean,
                "var": momentum * state["var"] + (1 - momentum) * var,
            }
            h = torch.relu(params["gamma"] * (h - mean) / torch.sqrt(var + eps) + params["beta"])
            generator = torch.Generator().manual_seed(state["key"])
            h = h * (torch.rand(h.shape, generator=generator, dtype=torch.float64) >= dropout) / (1 - dropout)
            return torch.mean((h @ params["W2"] + params["b2"] - y) ** 2), new_state

        objectives["torch"] = loss_torch
    return objectives


#: The MLP sizes measured: (hidden units, training samples, evaluations per timed run). The first
#: is the benchmark suite's ``stateful-mlp`` problem.
MLP_SIZES = ((32, 512, 40), (256, 4096, 4))
#: Finite differences cost n + 1 calls of f per gradient: measured up to this many parameters.
FD_MAX_SIZE = 500


def _one_torch_thread(run: Callable[[], None], repeats: int) -> tuple[float, int]:
    """The fastest of `repeats` runs of `run` with torch on one intra-op thread, and torch's own
    number of threads, restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fastest({"run": run}, repeats)["run"][0], threads
    finally:
        torch.set_num_threads(threads)


def gradient_backends(sizes: tuple[tuple[int, int, int], ...] = MLP_SIZES, repeats: int = 3) -> list[dict[str, Any]]:
    """Time per value-and-gradient evaluation of each gradient backend on the stateful MLP, against
    autograd in the same process: `Objective.value_and_grad` at u0 with the state threaded and
    committed per call (as under Adam); the first call, which compiles under jax, is timed apart.

    torch's intra-op thread pool suffers most from other load on a small machine (a thread the
    machine does not schedule stalls every parallel operation), so torch on one thread is timed
    too, after the others (NumPy's elementwise work, and so autograd's, is single-threaded)."""
    from optimeta._objective import Objective

    from .problems import _mlp_example

    mlp = _mlp_example()
    objectives = _mlp_objectives(mlp)
    rows = []
    for hidden, samples, evals in sizes:
        data = mlp.make_data(samples, 0)
        state = {"key": 0, "mean": np.zeros(hidden), "var": np.ones(hidden)}
        params = mlp.init_params(0, hidden)
        size = sum(a.size for a in params.values())
        backends = [*objectives, *(["finite-difference"] if size <= FD_MAX_SIZE else [])]
        wrapped: dict[str, Objective] = {}
        first: dict[str, float] = {}
        for name in backends:
            p: Any = data
            if name == "torch":  # a torch user's data is held as tensors
                import torch

                p = tuple(torch.from_numpy(a) for a in data)
            f = objectives.get(name, mlp.loss)
            grad = None if name == "autograd" else name
            wrapped[name] = Objective(om.OptimizationProblem(f, params, p=p, state=state, grad=grad))
            start = time.perf_counter()
            wrapped[name].value_and_grad(wrapped[name].x0)
            first[name] = time.perf_counter() - start

        def timed(obj: Objective, n: int) -> Callable[[], None]:
            def run() -> None:
                for _ in range(n):
                    obj.value_and_grad(obj.x0)

            return run

        # Finite differences: one evaluation per run is already n + 1 calls of f.
        runs = {name: timed(obj, 1 if name == "finite-difference" else evals) for name, obj in wrapped.items()}
        best = _fastest(runs, repeats)
        per_eval = {name: best[name][0] / (1 if name == "finite-difference" else evals) for name in runs}
        one_thread, threads = _one_torch_thread(runs["torch"], repeats) if "torch" in wrapped else (0.0, 0)
        for name in backends[1:]:
            detail = f"first call {first[name]:.2f} s" + (" (jit compile)" if name == "jax" else "")
            if name == "torch":
                detail += f"; on {threads} threads, on 1 thread {1e3 * one_thread / evals:.3g} ms/evaluation"
            rows.append(
                {
                    "name": f"gradient backend {name}: value and gradient of the stateful MLP, {hidden} hidden "
                    f"units ({size} parameters), {samples} samples",
                    "peer": "grad='autograd', same problem and process",
                    "optimeta_s": per_eval[name],
                    "peer_s": per_eval["autograd"],
                    "ratio": per_eval[name] / per_eval["autograd"],
                    "target": None,
                    "detail": f"{1e3 * per_eval[name]:.3g} vs {1e3 * per_eval['autograd']:.3g} ms/evaluation; {detail}",
                }
            )
    return rows


def _human(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{1e6 * seconds:.3g} us"
    if seconds < 1.0:
        return f"{1e3 * seconds:.3g} ms"
    return f"{seconds:.3g} s"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The measurements as a table: each with its peer, both times, the ratio, the target and
    whether it is met, and the detail."""
    lines = [
        "| measurement | peer | optimeta | peer | ratio | target | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = (
            "-" if r["target"] is None else f"<= {r['target']:.3g}x" + ("" if r["ratio"] <= r["target"] else " MISSED")
        )
        show = (lambda b: f"{b / 2**20:.0f} MB") if r.get("unit") == "bytes" else _human
        cells = [r["name"], r["peer"], show(r["optimeta_s"]), show(r["peer_s"]), f"{r['ratio']:.3g}x", target]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in [*cells, r["detail"]]) + " |")
    return "\n".join(lines)


def missed(rows: list[dict[str, Any]]) -> list[str]:
    """The measurements whose ratio exceeds their target, each with both."""
    return [
        f"{r['name']}: {r['ratio']:.3g}x, target <= {r['target']:.3g}x"
        for r in rows
        if r["target"] is not None and not r["ratio"] <= r["target"]
    ]


def main(out: Path, quick: bool = False) -> list[dict[str, Any]]:
    """Run every measurement, print the table, and write it to perf.md and the rows to
    perf.json in `out`; return the rows."""
    rows = [front_end(), driver()]
    rows += large_update(size=1_000_000 if quick else 10_000_000)
    if not quick:
        rows.append(bfgs_scaling())
    rows += gradient_backends()
    rows += perf_native.rows(quick)
    table = markdown(rows)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.md").write_text(table + "\n")
    (out / "perf.json").write_text(json.dumps(rows, indent=1))
    return rows
