"""Solves in several Python threads at once, on vectors large enough for the fused numba kernels.

numba's ``workqueue`` threading layer aborts the process when two threads run parallel code at
once; `_kernels` serialises its parallel kernels under that layer. The child process is forced
onto ``workqueue`` (built into every numba) with ``NUMBA_THREADING_LAYER``, whatever else is
installed, so an abort shows up as its return code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optimeta
from optimeta.backends import _kernels

# Four threads, each solving three problems of 2e5 parameters (the fused Adam kernel's size) for a
# few steps, first before any parallel kernel has run (the threading layer is not chosen yet),
# then again once it is. Each iterate is compared with the same solve run alone afterwards.
CHILD = """
import hashlib, json, threading
import numpy as np
import numba
import optimeta as om
from optimeta.backends import _kernels

N, THREADS, SOLVES, STEPS = 200_000, 4, 3, 5
assert N >= _kernels.FUSED_MIN_SIZE


def solve(k):
    target = np.linspace(-1.0, 1.0, N) + 0.1 * k
    prob = om.OptimizationProblem(
        lambda u, p: float(np.sum((u - target) ** 2)), np.zeros(N), grad=lambda u, p: 2.0 * (u - target)
    )
    u = om.solve(prob, om.Adam(lr=1e-3), maxiters=STEPS).u
    return hashlib.sha256(u.tobytes()).hexdigest()


def concurrently():
    results, errors = [[] for _ in range(THREADS)], []
    barrier = threading.Barrier(THREADS)

    def work(k):
        try:
            barrier.wait()
            for _ in range(SOLVES):
                results[k].append(solve(k))
        except BaseException as error:
            errors.append(repr(error))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


cold, cold_errors = concurrently()
warm, warm_errors = concurrently()
alone = [solve(k) for k in range(THREADS)]
layer = numba.threading_layer()
print(json.dumps({"layer": layer, "cold": cold, "warm": warm, "alone": alone, "errors": cold_errors + warm_errors}))
"""


@pytest.mark.needs("numba")
def test_threads_running_fused_adam_under_workqueue_neither_abort_nor_differ() -> None:
    # The child imports the optimeta this process tests, wherever pytest runs from.
    root = str(Path(optimeta.__file__).resolve().parents[1])
    path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        env={**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert child.returncode == 0, f"the child exited with {child.returncode}:\n{child.stderr[-3000:]}"
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["layer"] == "workqueue"
    assert report["errors"] == []
    for k, alone in enumerate(report["alone"]):
        assert report["cold"][k] == [alone] * 3, f"thread {k}, before the layer was chosen"
        assert report["warm"][k] == [alone] * 3, f"thread {k}, once the layer was chosen"


def _kernel_sees_lock(seen: list[bool]) -> Any:
    def kernel(out: np.ndarray) -> None:
        seen.append(_kernels._PARALLEL_LOCK.locked())
        out[:] = 1.0

    return kernel


@pytest.mark.parametrize(("layer", "locked"), [(None, True), ("workqueue", True), ("omp", False), ("tbb", False)])
def test_parallel_kernels_take_the_lock_unless_the_layer_is_thread_safe(
    layer: str | None, locked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None stands for "no parallel call has chosen the layer yet": it may turn out to be workqueue.
    monkeypatch.setattr(_kernels, "_threading_layer", lambda: layer)
    seen: list[bool] = []
    out = np.zeros(3)
    _kernels._run_parallel(_kernel_sees_lock(seen), out)
    assert seen == [locked]
    assert out.tolist() == [1.0, 1.0, 1.0]
    assert not _kernels._PARALLEL_LOCK.locked()


def test_a_kernel_that_raises_releases_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kernels, "_threading_layer", lambda: "workqueue")

    def kernel() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _kernels._run_parallel(kernel)
    assert not _kernels._PARALLEL_LOCK.locked()


def test_threads_calling_a_kernel_under_workqueue_take_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for a parallel kernel that records how many threads are inside it at once.
    monkeypatch.setattr(_kernels, "_threading_layer", lambda: "workqueue")
    inside, most, guard = [0], [0], threading.Lock()
    barrier = threading.Barrier(4)

    def kernel() -> None:
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        threading.Event().wait(0.01)  # stay inside long enough for the others to try to enter
        with guard:
            inside[0] -= 1

    def work() -> None:
        barrier.wait()
        for _ in range(5):
            _kernels._run_parallel(kernel)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
