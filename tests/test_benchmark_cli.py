"""``python -m benchmarks`` behaves like a tool: its help, its run folders and manifests, its exit
codes, its notice of skipped extras, and the README table's write and check (on synthetic
results: nothing here depends on timings, on the CPU's BLAS kernel or on an optional extra)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import perf, readme, runinfo
from benchmarks.__main__ import main
from benchmarks.peers import OPTIONAL_PEERS
from benchmarks.problems import make_problems
from benchmarks.suite import FULL_ONLY, Result, perturb

F_STARS = {"quad": 0.0, "big": 100.0, "mlp": None}


def ok(problem: str, solver: str, gap: float | None, objective: float = 1.0, message: str = "SUCCESS") -> Result:
    return Result(problem, solver, "optimeta", "ok", objective=objective, gap=gap, message=message)


def refused(problem: str, solver: str, *traits: str) -> Result:
    return Result(problem, solver, "optimeta", "refused", refused_by=list(traits))


def test_accuracy_classes() -> None:
    assert readme.cell(ok("quad", "A", 3.4e-15)) == "3e-15"
    assert readme.accuracy_class("3e-15", 0.0) == "solved"
    assert readme.accuracy_class("-4e-08", 17.0) == "solved"
    # Relative to the optimum where it exceeds 1: 2e-05 off 100 is solved.
    assert readme.accuracy_class("2e-05", 100.0) == "solved"
    assert readme.accuracy_class("2e-05", 0.0) == "1e-05"
    assert readme.accuracy_class("9e-03", 0.0) == readme.accuracy_class("1e-03", 0.0) == "1e-03"
    assert readme.accuracy_class("-5e-03", 0.0) == "-1e-03"
    assert readme.accuracy_class("5e-02", None) == "1e-02"  # the objective, where f* is unknown
    assert readme.cell(ok("quad", "A", 1e12, message="NONFINITE")) == "NaN/Inf"
    assert readme.cell(ok("quad", "A", float("nan"), message="")) == "NaN/Inf"
    assert readme.accuracy_class("nan", 0.0) == readme.accuracy_class("inf (NaN/Inf)", 0.0) == "NaN/Inf"
    assert readme.cell(refused("quad", "A", "supports_bounds", "x")) == "refused: supports_bounds, x"
    assert readme.cell(Result("quad", "p", "peer", "not applicable")) == ""
    assert readme.accuracy_class("", 0.0) == "not run"


def test_a_fresh_cell_agrees_within_a_factor_of_ten_or_when_both_runs_diverged() -> None:
    # A gap near a decade's edge crosses it on a CPU that rounds otherwise: one decade's
    # neighbour within a factor of 10 agrees, two decades apart do not.
    assert readme.agree("9e-05", "1e-04", 0.0)
    assert readme.agree("1e-05", "9e-05", 0.0)
    assert not readme.agree("1e-05", "2e-04", 0.0)
    assert not readme.agree("1e-06", "1e-04", 0.0)
    # The solved tolerance counts as the smallest gap: 3e-07 (solved) and 5e-06 agree.
    assert readme.agree("3e-07", "5e-06", 0.0)
    assert not readme.agree("3e-07", "5e-05", 0.0)
    # Two runs that diverged agree, whatever their sizes; one that did not does not.
    assert readme.agree("1e+87", "3e+72", 0.0)
    assert not readme.agree("1e+87", "3e+02", 0.0)
    # Signs: a point within the constraint tolerance (a gap below 0) is not a gap above it.
    assert not readme.agree("-5e-03", "5e-03", 0.0)
    assert readme.agree("-5e-03", "-1e-02", 0.0)
    # Refusals, errors, NaN/Inf and empty cells agree only with themselves.
    assert not readme.agree("NaN/Inf", "1e+87", 0.0)
    assert not readme.agree("refused: supports_bounds", "1e-05", 0.0)
    assert not readme.agree("", "1e-05", 0.0)
    assert readme.agree("error", "error", 0.0)
    # Where the optimum is unknown the cells are objectives: the factor applies to them.
    assert readme.agree("5e-02", "2e-01", None)
    assert not readme.agree("0e+00", "1e-03", None)


def _results() -> list[Result]:
    return [
        ok("quad", "A", 1e-12),
        ok("big", "A", 5e-3),
        refused("mlp", "A", "tolerates_stochastic_loss"),
        ok("quad", "B", 0.3),
        ok("big", "B", 1e-9),
        ok("mlp", "B", None, objective=0.07),
        Result("mlp", "peer", "peer", "not applicable"),
        ok("quad", "peer", 2e-10),
    ]


def test_table_marks_the_cells_whose_class_a_rounding_error_moves_and_round_trips() -> None:
    results = _results()
    perturbed = [asdict(r) for r in results]
    perturbed[1]["gap"] = 4.9e-3  # same decade: not sensitive
    perturbed[3]["gap"] = 2.0  # another decade: sensitive
    perturbed[4]["message"] = "NONFINITE"  # solved -> NaN/Inf: sensitive
    table = readme.table(results, [Result(**r) for r in perturbed], F_STARS)
    assert table.sensitive == {("B", "quad"), ("B", "big")}
    assert table.solvers == ["A", "B", "peer"] and table.problems == ["quad", "big", "mlp"]
    text = "intro\n" + readme.START + "\nwritten by ...\n\n" + table.markdown() + "\n" + readme.END + "\nrest\n"
    assert "| B | 3e-01~ | 1e-09~ | 7e-02 |" in text
    assert readme.parse(text) == table
    assert readme.compare(readme.parse(text), readme.table(results), F_STARS) == []
    replaced = readme.replace_block(text, "new")
    assert replaced == f"intro\n{readme.START}\nnew\n{readme.END}\nrest\n"
    with pytest.raises(ValueError, match="markers"):
        readme.replace_block("no markers here", "new")


def test_compare_names_every_mismatch_and_ignores_sensitive_cells_but_not_refusals() -> None:
    published = readme.table(_results(), None, F_STARS)
    published = readme.Table(
        published.problems, published.solvers, published.cells, frozenset({("B", "quad"), ("A", "mlp")})
    )
    fresh = [asdict(r) for r in _results()]
    fresh[1]["gap"] = 3e-6  # A on big: 5e-03 -> 3e-06 (solved, relative to f* = 100)
    fresh[3]["gap"] = 40.0  # B on quad: marked sensitive, ignored
    fresh[2]["refused_by"] = ["single_call_per_step"]  # A on mlp: refusals must match, marked or not
    fresh[7]["gap"] = 1.0  # peer on quad: unmarked, another class
    fresh.append(asdict(ok("big", "peer", 0.0)))  # a pair run now and not then
    mismatches = readme.compare(published, readme.table([Result(**r) for r in fresh]), F_STARS)
    assert len(mismatches) == 4, mismatches
    assert mismatches[0].startswith("A on big: README '5e-03' (1e-03), now '3e-06' (solved)")
    assert mismatches[1].startswith("A on mlp: README 'refused: tolerates_stochastic_loss'")
    assert any(m.startswith("peer on quad:") for m in mismatches)
    assert any(m.startswith("peer on big: README 'not run'") for m in mismatches)
    # A peer not installed here is left out of the check.
    assert len(readme.compare(published, readme.table([Result(**r) for r in fresh]), F_STARS, ["peer"])) == 2


def test_perturb_moves_every_leaf_by_a_rounding_error_and_stays_in_bounds() -> None:
    problems = {p.name: p for p in make_problems()}
    hs71 = perturb(problems["hs71"])
    lb, ub = problems["hs71"].options["bounds"]
    assert np.all((lb <= hs71.u0) & (hs71.u0 <= ub)) and not np.array_equal(hs71.u0, problems["hs71"].u0)
    mlp = perturb(problems["stateful-mlp"])
    for key, value in problems["stateful-mlp"].u0.items():
        assert mlp.u0[key].shape == value.shape
        np.testing.assert_allclose(mlp.u0[key], value, rtol=1e-11, atol=1e-299)
        assert not np.array_equal(mlp.u0[key], value)


def test_help_lists_the_problems_the_algorithms_the_peers_and_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    import optimeta as om

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for problem in make_problems():
        assert problem.name in text
    for cls in om.algorithms():
        assert cls.__name__ in text
    assert set(FULL_ONLY) <= {cls.__name__ for cls in om.algorithms()}
    for name in ["scipy:BFGS", *(n for names in OPTIONAL_PEERS.values() for n in names)]:
        assert name in text
    for option in ("--quick", "--full", "--problems", "--algorithms", "--out", "--perf", "--update-readme"):
        assert option in text
    assert "--check-readme" in text and runinfo.INSTALL in text
    assert "--traits --update-readme" in text  # the trait table's cheap rewrite, among the examples


def test_each_run_owns_its_folder_and_writes_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    out.mkdir()
    # What an earlier, larger run left: results and plots of another problem; and a user's file.
    (out / "results.md").write_text("stale\n")
    (out / "wood.png").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine\n")
    args = ["--problems", "beale", "--algorithms", "BFGS", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert not (out / "wood.png").exists() and (out / "notes.txt").read_text() == "mine\n"
    assert "stale" not in (out / "results.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "python -m benchmarks " + " ".join(args)
    assert {"date", "versions", "machine", "files", "wall_time_s"} <= set(manifest)
    assert {"python", "optimeta", "numpy", "scipy"} <= set(manifest["versions"])
    assert manifest["machine"]["cores"] and manifest["machine"]["cpu"]
    assert manifest["quick_suite"] is False and manifest["problems"] == ["beale"]
    assert set(manifest["files"]) >= {"results.md", "summary.md", "results.json"}
    for name in manifest["files"]:
        assert (out / name).is_file()


def test_a_run_without_the_bench_extra_says_what_it_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from benchmarks import peers

    find_spec = importlib.util.find_spec
    absent = {"torch", "jax", "optax", "matplotlib", "tqdm", "numba"}
    monkeypatch.setattr(peers, "_installed", lambda *modules: not set(modules) & absent)
    monkeypatch.setattr(
        runinfo.importlib.util, "find_spec", lambda name, *a: None if name in absent else find_spec(name, *a)
    )
    out = tmp_path / "bench"
    assert main(["--problems", "beale", "--algorithms", "BFGS", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert runinfo.INSTALL in err
    for name in ("torch:SGD", "optax:lbfgs", "convergence plots", "progress bar"):
        assert name in err
    assert "torch" in json.loads((out / "manifest.json").read_text())["skipped"]


def _rows(ratio: float) -> list[dict[str, Any]]:
    return [
        {"name": "front end", "peer": "scipy", "optimeta_s": ratio, "peer_s": 1.0, "ratio": ratio, "target": 1.1},
        {"name": "backend", "peer": "autograd", "optimeta_s": 5.0, "peer_s": 1.0, "ratio": 5.0, "target": None},
    ]


@pytest.mark.parametrize("ratio", [0.7, 1.6])
def test_perf_exits_non_zero_naming_a_missed_target(
    ratio: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The measurements are stubbed: the exit code, not the machine, is under test.
    rows = [{**row, "detail": "stub"} for row in _rows(ratio)]
    monkeypatch.setattr(perf, "front_end", lambda: rows[0])
    monkeypatch.setattr(perf, "driver", lambda: rows[1])
    monkeypatch.setattr(perf, "large_update", lambda size: [])
    monkeypatch.setattr(perf, "bfgs_scaling", lambda: rows[1])
    monkeypatch.setattr(perf, "gradient_backends", list)
    monkeypatch.setattr(perf.perf_native, "rows", lambda quick=False: [])
    out = tmp_path / "perf"
    missed = ratio > 1.1
    assert main(["--perf", "--out", str(out)]) == int(missed)
    err = capsys.readouterr().err
    assert ("front end: 1.6x, target <= 1.1x" in err) == missed
    assert "backend: " not in err  # no target, never missed
    assert ("MISSED" in (out / "perf.md").read_text()) == missed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "perf" and len(manifest["missed"]) == int(missed)
    assert json.loads((out / "perf.json").read_text())[0]["ratio"] == ratio


def test_check_readme_on_a_finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = [ok("beale", "BFGS", 2e-16), refused("hs71", "BFGS", "supports_bounds", "supports_constraints")]
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps([asdict(r) for r in results]))
    (run / "manifest.json").write_text(json.dumps({"command": "python -m benchmarks", "quick_suite": True}))
    table = readme.table(results).markdown()
    page = tmp_path / "README.md"
    page.write_text(f"# x\n{readme.START}\n{table}\n{readme.END}\n")
    assert main(["--check-readme", "--results", str(run), "--readme", str(page)]) == 0
    page.write_text(page.read_text().replace("supports_bounds, supports_constraints", "supports_bounds"))
    assert main(["--check-readme", "--results", str(run), "--readme", str(page)]) == 1
    assert "BFGS on hs71: README 'refused: supports_bounds'" in capsys.readouterr().err
    # Results of a partial run cannot check the whole table.
    (run / "manifest.json").write_text(json.dumps({"command": "python -m benchmarks --problems x"}))
    with pytest.raises(SystemExit, match="not of the whole quick suite"):
        main(["--check-readme", "--results", str(run), "--readme", str(page)])


def test_traits_writes_and_checks_the_trait_table_without_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import trait_table

    page = tmp_path / "README.md"
    benchmark = f"{readme.START}\nthe benchmark table\n{readme.END}"
    page.write_text(f"# x\n{trait_table.START}\n| stale |\n{trait_table.END}\n{benchmark}\n")
    assert main(["--traits", "--check-readme", "--readme", str(page)]) == 1
    err = capsys.readouterr().err
    assert trait_table.COMMAND in err and "-| stale |" in err
    assert main(["--traits", "--update-readme", "--readme", str(page)]) == 0
    text = page.read_text()
    assert trait_table.block(text) == trait_table.markdown() and benchmark in text  # the benchmark table untouched
    assert main(["--traits", "--check-readme", "--readme", str(page)]) == 0
    capsys.readouterr()
    assert main(["--traits"]) == 0
    assert capsys.readouterr().out == trait_table.markdown() + "\n"
    with pytest.raises(SystemExit) as exit_:
        main(["--traits", "--update-readme", "--problems", "beale"])
    assert exit_.value.code == 2 and "--traits runs no benchmark: no --problems" in capsys.readouterr().err
    page.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="no trait table between"):
        main(["--traits", "--check-readme", "--readme", str(page)])


def test_update_readme_needs_both_tables_markers_before_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import benchmarks.__main__ as cli

    monkeypatch.setattr(cli, "missing_peers", dict)
    page = tmp_path / "README.md"
    page.write_text(f"# x\n{readme.START}\n{readme.END}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--update-readme", "--readme", str(page)])
    assert exit_.value.code == 2 and "<!-- trait-table:start -->" in capsys.readouterr().err


def test_update_readme_refuses_to_drop_the_peers_it_cannot_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import benchmarks.__main__ as cli

    monkeypatch.setattr(cli, "missing_peers", lambda: {"torch": ("torch:SGD",)})
    with pytest.raises(SystemExit) as exit_:
        main(["--update-readme"])
    assert exit_.value.code == 2
    assert "torch:SGD" in capsys.readouterr().err
