"""``--perf`` rows of the framework paths: optimeta's Adam on jax and torch objectives against
the loop a jax or torch user writes, in the same process.

* ``grad="jax"``: the native path (one compiled step per iteration, `optimeta._native_jax`)
  against a jitted ``optax.adam`` step, on a 2-layer MLP with dropout whose key is the state
  (32 -> 256 -> 1, batch 256, float64) and on a 1e6-parameter one (1000 -> 1000 -> 1, float32).
* ``grad="torch"``: the native torch step (`optimeta._native_torch`) on the same models against
  ``torch.optim.Adam(foreach=True)``.
* Peak memory of a float32 Adam run on 1e7 parameters, each side in a fresh process.

Both sides of a row start from the same parameters, see the same data and dropout keys, and
take the same number of steps; the detail says how far apart their results end.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import optimeta as om
from optimeta.backends._fused import fused_memory

#: (inputs, hidden units, batch, dtype, steps): the issue's MLP, and a 1e6-parameter model.
MODELS = ((32, 256, 256, "float64", 300), (1000, 1000, 256, "float32", 40))
DROPOUT = 0.1


def _model(d_in: int, hidden: int, batch: int, dtype: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.normal(size=(d_in, hidden)) / np.sqrt(d_in),
        "b1": np.zeros(hidden),
        "W2": rng.normal(size=(hidden, 1)) / np.sqrt(hidden),
        "b2": np.zeros(1),
    }
    x = rng.normal(size=(batch, d_in))
    y = np.sin(x[:, :1]) + 0.1 * rng.normal(size=(batch, 1))
    return {k: v.astype(dtype) for k, v in params.items()}, x.astype(dtype), y.astype(dtype)


def _alternated(ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int) -> tuple[float, Any, float, Any]:
    """The fastest of `repeats` runs of each, alternating them (so that load from elsewhere
    inflates neither side), with each one's last output: (t_ours, ours, t_theirs, theirs)."""
    best = {"ours": (float("inf"), None), "theirs": (float("inf"), None)}
    for _ in range(repeats):
        for name, run in (("theirs", theirs), ("ours", ours)):
            start = time.perf_counter()
            out = run()
            best[name] = (min(best[name][0], time.perf_counter() - start), out)
    return best["ours"][0], best["ours"][1], best["theirs"][0], best["theirs"][1]


def jax_adam(d_in: int, hidden: int, batch: int, dtype: str, steps: int, repeats: int = 5) -> dict[str, Any]:
    """optimeta's native jax Adam against a jitted optax.adam loop threading the same key."""
    import jax
    import jax.numpy as jnp
    import optax

    def loss(u: Any, p: Any, state: Any) -> Any:
        x, y = p
        h = jnp.tanh(x @ u["W1"] + u["b1"])
        key = jax.random.fold_in(jax.random.PRNGKey(0), state["key"])
        h = h * (jax.random.uniform(key, h.shape, dtype=h.dtype) >= DROPOUT) / (1 - DROPOUT)
        return jnp.mean((h @ u["W2"] + u["b2"] - y) ** 2), {"key": state["key"] + 1}

    params, x, y = _model(d_in, hidden, batch, dtype)
    with jax.enable_x64(dtype == "float64"):
        data = (jnp.asarray(x), jnp.asarray(y))
        prob = om.OptimizationProblem(loss, params, p=data, state={"key": 0}, grad="jax")
        opt = optax.adam(1e-3)

        @jax.jit
        def step(u: Any, opt_state: Any, state: Any) -> Any:
            (value, new_state), g = jax.value_and_grad(loss, has_aux=True)(u, data, state)
            updates, opt_state = opt.update(g, opt_state, u)
            return optax.apply_updates(u, updates), opt_state, new_state, value

        def theirs() -> Any:
            u = {k: jnp.asarray(v) for k, v in params.items()}
            opt_state, state = opt.init(u), {"key": jnp.asarray(0)}
            for _ in range(steps):
                u, opt_state, state, _ = step(u, opt_state, state)
            return jax.block_until_ready(u)

        def ours() -> Any:
            return om.solve(prob, om.Adam(lr=1e-3), maxiters=steps).u

        theirs(), ours()  # compiled once each, outside the timing
        t_om, u_om, t_peer, u_peer = _alternated(ours, theirs, repeats)
    how = "native compiled step"
    return _row(
        "jax",
        "jitted optax.adam step, the key threaded",
        (d_in, hidden, batch, dtype, steps),
        1.15,
        how,
        params,
        (t_om, u_om),
        (t_peer, u_peer),
    )


def torch_adam(d_in: int, hidden: int, batch: int, dtype: str, steps: int, repeats: int = 5) -> dict[str, Any]:
    """optimeta's Adam on a torch objective against a torch.optim.Adam(foreach=True) loop."""
    import torch

    params, x, y = _model(d_in, hidden, batch, dtype)
    tdtype = getattr(torch, dtype)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def forward(u: Any, key: int) -> Any:
        h = torch.tanh(xt @ u["W1"] + u["b1"])
        g = torch.Generator().manual_seed(int(key))
        h = h * (torch.rand(h.shape, generator=g, dtype=tdtype) >= DROPOUT) / (1 - DROPOUT)
        return torch.mean((h @ u["W2"] + u["b2"] - yt) ** 2)

    def loss(u: Any, p: Any, state: Any) -> Any:
        return forward(u, state["key"]), {"key": state["key"] + 1}

    prob = om.OptimizationProblem(loss, params, state={"key": 0}, grad="torch")

    def theirs() -> Any:
        u = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        opt = torch.optim.Adam(list(u.values()), lr=1e-3, foreach=True)
        for key in range(steps):
            opt.zero_grad()
            forward(u, key).backward()
            opt.step()
        return {k: v.detach().numpy() for k, v in u.items()}

    def ours() -> Any:
        return om.solve(prob, om.Adam(lr=1e-3), maxiters=steps).u

    theirs(), ours()  # warmed up, outside the timing
    t_om, u_om, t_peer, u_peer = _alternated(ours, theirs, repeats)
    fused = any(fused_memory(om.Adam(), v.size, v.dtype) is not None for v in params.values())
    how = (
        "native step: tensors of 100,000 parameters and more updated by the fused numba pass on their own memory, smaller ones by torch's operators"
        if fused
        else "native step: the update as torch's operators on each tensor, new tensors each, where torch's foreach kernels update in place"
    )
    return _row(
        "torch",
        "torch.optim.Adam(foreach=True) loop",
        (d_in, hidden, batch, dtype, steps),
        1.1,
        how,
        params,
        (t_om, u_om),
        (t_peer, u_peer),
    )


def _row(
    framework: str,
    peer: str,
    model: tuple[int, int, int, str, int],
    target: float,
    how: str,
    params: dict[str, np.ndarray],
    ours: tuple[float, Any],
    theirs: tuple[float, Any],
) -> dict[str, Any]:
    """A row of the table: per-step times, their ratio, and how far apart the results end."""
    d_in, hidden, batch, dtype, steps = model
    (t_om, u_om), (t_peer, u_peer) = ours, theirs
    gap = max(float(np.max(np.abs(np.asarray(u_om[k]) - np.asarray(u_peer[k])))) for k in params)
    size = sum(v.size for v in params.values())
    return {
        "name": f'grad="{framework}" Adam: {d_in}->{hidden}->1 MLP with dropout ({size:,} {dtype} parameters, batch {batch})',
        "peer": peer,
        "optimeta_s": t_om / steps,
        "peer_s": t_peer / steps,
        "ratio": t_om / t_peer,
        "target": target,
        "detail": f"{1e6 * t_om / steps:.0f} vs {1e6 * t_peer / steps:.0f} us/step over {steps} steps ({how}); "
        f"max |u - {framework}'s| {gap:.1e}, dtype {np.asarray(u_om['W1']).dtype}",
    }


_MEMORY_RUN = """
import json, sys
import numpy as np
side, n, steps = sys.argv[1], int(sys.argv[2]), 3
import torch
if side == "jax":
    import jax, jax.numpy as jnp, optimeta as om

def rss(field):  # kB, from /proc/self/status: VmRSS now, VmHWM the peak since the last reset
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field))

with open("/proc/self/clear_refs", "w") as fh:  # the peak so far (the imports') forgotten
    fh.write("5")
base = rss("VmRSS")
u0 = np.random.default_rng(0).normal(size=n).astype(np.float32)
if side == "torch":
    x = torch.from_numpy(u0.copy()).requires_grad_()
    opt = torch.optim.Adam([x], lr=1e-3, foreach=True)
    for _ in range(steps):
        opt.zero_grad()
        torch.sum((x - 1.0) ** 2).backward()
        opt.step()
else:
    prob = om.OptimizationProblem(lambda u, p: jnp.sum((u - 1.0) ** 2), u0, grad="jax", stochastic=True)
    om.solve(prob, om.Adam(lr=1e-3), maxiters=steps)
print(json.dumps({"peak_mb": (rss("VmHWM") - base) / 1024}))
"""


def adam_memory(n: int = 10_000_000) -> dict[str, Any] | None:
    """Peak memory above the imports of a float32 Adam run on `n` parameters: optimeta's native
    jax path and a torch.optim.Adam loop, each in a fresh process (Linux's peak resident set,
    VmHWM, reset after the imports). Nothing where /proc cannot tell."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    peaks = {}
    for side in ("jax", "torch"):
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_RUN, side, str(n)], capture_output=True, text=True, check=True
        )
        peaks[side] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"] * 2**20
    return {
        "name": f'peak memory: float32 Adam on {n:,} parameters, grad="jax" (native)',
        "peer": "torch.optim.Adam(foreach=True) loop",
        "optimeta_s": peaks["jax"],
        "peer_s": peaks["torch"],
        "ratio": peaks["jax"] / peaks["torch"],
        "target": 1.3,
        "detail": f"{peaks['jax'] / 2**20:.0f} vs {peaks['torch'] / 2**20:.0f} MB above the imports, u0 included (the "
        "problem keeps one float64 copy of u0, 8 bytes per parameter; the run holds the float32 iterate, gradient "
        "and moments, the moments donated)",
        "unit": "bytes",
    }


def rows(quick: bool = False) -> list[dict[str, Any]]:
    """The framework rows this machine can run (jax with optax; torch)."""
    out: list[dict[str, Any]] = []
    have = {name: importlib.util.find_spec(name) is not None for name in ("jax", "optax", "torch")}
    models = MODELS[:1] if quick else MODELS
    for model in models:
        if have["jax"] and have["optax"]:
            out.append(jax_adam(*model))
        if have["torch"]:
            out.append(torch_adam(*model))
    memory = adam_memory() if have["jax"] and have["torch"] and not quick else None
    if memory is not None:
        out.append(memory)
    return out
