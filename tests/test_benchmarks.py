"""The minibatch benchmark runs end to end in a tiny configuration and reports every algorithm."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

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


def test_passes_to_tolerance_is_the_first_crossing() -> None:
    trace = bench.Trace(passes=[1.0, 2.0, 3.0, 4.0], gaps=[0.5, 0.009, 0.02, 0.001])
    assert bench.passes_to(trace, 0.01) == 2.0
    assert bench.passes_to(trace, 1e-4) == math.inf
