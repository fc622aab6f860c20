"""Watching a run (project issue 7): `Solution.history` (``record=``), the tqdm progress bar
(``progress=``), log records (``verbose=``) and `om.plot`, measured.

Every registered algorithm (its catalogue configuration, on a catalogue problem it accepts) is run
recorded and unrecorded: the history has one entry per reported step, holds the values the callback
receives in the same run, the calls of ``f`` counted by the objective itself at each step, and is
the same bit for bit in a second run; recording changes nothing else. Progress output and log
records are captured and read; plots are checked line by line (labels, x and y data, scale) and
saved as PNG. Bad option values are refused, with their exact exception and message, before ``f``
is called.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from catalogue import ALGORITHMS, PROBLEMS, AlgorithmCase, ProblemCase, Recorder, accepts, box_for, flat, tree_leaves

import optimeta as om

#: Steps of the short runs (every algorithm is given this budget).
N = 7
REGISTERED: list[type] = om.algorithms()
#: Each registered class with its first configuration in the catalogue.
CONFIGURED: dict[type, AlgorithmCase] = {}
for _case in ALGORITHMS:
    CONFIGURED.setdefault(type(_case.alg), _case)
PROBLEM: dict[str, ProblemCase] = {case.name: case for case in PROBLEMS}
LOGGER = logging.getLogger("optimeta")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _ids(cls: type) -> str:
    return cls.__name__


def _alg(cls: type) -> Any:
    return CONFIGURED[cls].alg


def _reports(cls: type) -> bool:
    return om.traits(cls).supports_callback


def _build(name: str, alg: Any) -> tuple[om.OptimizationProblem, Recorder]:
    """A fresh catalogue problem with its recorder, given the catalogue's search box when ``alg``
    searches one (``requires_bounds``) and the problem has no bounds."""
    prob, rec = PROBLEM[name].build()
    box = box_for(alg)
    if box is not None and prob.bounds is None:
        prob = dataclasses.replace(prob, bounds=box)
    return prob, rec


class Steps:
    """A callback keeping every `IterationInfo` and the calls of ``f`` made when it came."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.infos: list[om.IterationInfo] = []
        self.calls: list[int] = []

    def __call__(self, info: om.IterationInfo) -> None:
        self.infos.append(info)
        self.calls.append(self.rec.calls)

    @property
    def objectives(self) -> np.ndarray:
        return np.array([info.objective for info in self.infos], dtype=np.float64)


def _skeleton(tree: Any) -> Any:
    """The containers of ``tree`` (types, keys, order) and each leaf's type, shape and dtype."""
    if isinstance(tree, dict):
        return (dict, tuple((k, _skeleton(v)) for k, v in tree.items()))
    if isinstance(tree, (list, tuple)):
        return (type(tree), tuple(_skeleton(v) for v in tree))
    if isinstance(tree, np.ndarray):
        return (np.ndarray, tree.shape, tree.dtype.str)
    return type(tree)


def _arrays(tree: Any) -> list[np.ndarray]:
    return [leaf for leaf in tree_leaves(tree) if isinstance(leaf, np.ndarray)]


def _same_tree(a: Any, b: Any) -> bool:
    """Same structure and leaf types, and the same bytes."""
    return _skeleton(a) == _skeleton(b) and flat(a).tobytes() == flat(b).tobytes()


def _bits(x: Any) -> bytes:
    return np.asarray(x, dtype=np.float64).tobytes()


def _assert_same_history(a: om.History, b: om.History) -> None:
    """Bit for bit the same steps, objectives and calls (not the time)."""
    assert a.iteration.tobytes() == b.iteration.tobytes()
    assert a.objective.tobytes() == b.objective.tobytes()
    assert a.fevals.tobytes() == b.fevals.tobytes()


def _assert_same_run(recorded: om.Solution, plain: om.Solution) -> None:
    """The same result bit for bit, the time apart."""
    assert _same_tree(recorded.u, plain.u)
    assert _bits(recorded.objective) == _bits(plain.objective)
    assert repr(recorded.state) == repr(plain.state)
    assert recorded.retcode is plain.retcode
    assert recorded.message == plain.message
    assert dataclasses.replace(recorded.stats, time=0.0) == dataclasses.replace(plain.stats, time=0.0)


def _assert_well_formed(history: om.History, sol: om.Solution) -> None:
    """Dtypes, steps numbered 1..n, counts and times non-decreasing and within the run's."""
    n = len(history)
    assert history.iteration.dtype == np.int64 and history.fevals.dtype == np.int64
    assert history.objective.dtype == np.float64 and history.time.dtype == np.float64
    assert history.objective.shape == history.fevals.shape == history.time.shape == (n,)
    assert history.iteration.tolist() == list(range(1, n + 1))
    assert np.all(np.diff(history.fevals) >= 0), history.fevals
    assert np.all(np.diff(history.time) >= 0), history.time
    if n:
        assert history.fevals[0] >= 0 and history.time[0] >= 0.0
        assert history.fevals[-1] <= sol.stats.fevals
        assert history.time[-1] <= sol.stats.time


# --------------------------------------------------------------------------------------------
# Every registered algorithm: the history of a run
# --------------------------------------------------------------------------------------------


def test_every_registered_algorithm_is_configured_in_the_catalogue() -> None:
    assert [cls.__name__ for cls in REGISTERED if cls not in CONFIGURED] == []
    # The two algorithms that report no steps are the ones the History documents.
    assert sorted(cls.__name__ for cls in REGISTERED if not _reports(cls)) == ["DualAnnealing", "SHGO"]
    assert len(STATEFUL) >= 2, "the stateful check needs algorithms that accept an evolving state"


@pytest.mark.parametrize("cls", REGISTERED, ids=_ids)
def test_history_has_every_step_and_the_callbacks_values(cls: type, capsys: pytest.CaptureFixture[str]) -> None:
    alg = _alg(cls)
    plain = om.solve(_build("rosenbrock", alg)[0], alg, maxiters=N, record=False)
    assert plain.history is None

    # Recorded, without a callback: the run is the unrecorded one, bit for bit.
    prob, rec = _build("rosenbrock", alg)
    sol = om.solve(prob, alg, maxiters=N, record=True)
    history = sol.history
    assert isinstance(history, om.History)
    _assert_same_run(sol, plain)
    _assert_well_formed(history, sol)
    assert history.u is None
    if not _reports(cls):
        assert len(history) == 0
        return
    assert len(history) == sol.stats.iterations >= 1

    # A second recorded run: the same history, bit for bit.
    again = om.solve(_build("rosenbrock", alg)[0], alg, maxiters=N, record=True)
    assert again.history is not None
    _assert_same_history(again.history, history)

    # Recorded with the iterates, and a callback in the same run: the same values, entry by entry.
    prob, rec = _build("rosenbrock", alg)
    steps = Steps(rec)
    with_u = om.solve(prob, alg, maxiters=N, record="u", callback=steps)
    h = with_u.history
    assert h is not None
    _assert_well_formed(h, with_u)
    assert len(h) == with_u.stats.iterations == len(steps.infos)
    assert h.iteration.tolist() == [info.iteration for info in steps.infos]
    assert h.objective.tobytes() == steps.objectives.tobytes()
    # The calls of f made so far at each step, counted by the recorder (the probe's excluded).
    assert h.fevals.tolist() == [c - with_u.stats.probe_fevals for c in steps.calls]
    assert h.u is not None and len(h.u) == len(h)
    for entry, info in zip(h.u, steps.infos):
        assert _same_tree(entry, info.u)
    # The callback changes nothing in the run: the history without it is the same.
    _assert_same_history(h, history)
    assert capsys.readouterr() == ("", ""), "recording prints nothing"


@pytest.mark.parametrize("cls", [cls for cls in REGISTERED if _reports(cls)], ids=_ids)
def test_the_step_a_callback_stops_at_is_recorded(cls: type) -> None:
    alg = _alg(cls)
    prob, _ = _build("rosenbrock", alg)
    sol = om.solve(prob, alg, maxiters=N, record=True, callback=lambda info: info.iteration == 3)
    assert sol.retcode is om.ReturnCode.TERMINATED
    assert sol.history is not None
    assert sol.history.iteration.tolist() == [1, 2, 3] and sol.stats.iterations == 3
    assert sol.history.fevals[-1] <= sol.stats.fevals


def _tree_rosenbrock(u: Any, p: Any) -> Any:
    # The catalogue's Rosenbrock function on "w" (a few steps for every method, a positive definite
    # Hessian at u0), a quadratic on "b".
    x, y = u["w"][0, 0], u["w"][0, 1]
    return (1.0 - x) ** 2 + p * (y - x**2) ** 2 + 2.0 * (u["b"][0] - 0.5) ** 2 + anp.sum((u["b"][1] + 1.0) ** 2)


def _build_tree(alg: Any) -> tuple[om.OptimizationProblem, Recorder]:
    rec = Recorder(_tree_rosenbrock)
    u0 = {"w": np.array([[-1.2, 1.0]]), "b": [0, np.array([0.5])]}  # an int leaf, promoted to float
    return om.OptimizationProblem(rec, u0, p=10.0, bounds=box_for(alg)), rec


@pytest.mark.parametrize("cls", REGISTERED, ids=_ids)
def test_recorded_iterates_keep_the_structure_of_u0_and_are_copies(cls: type) -> None:
    alg = _alg(cls)
    prob, rec = _build_tree(alg)
    steps = Steps(rec)
    sol = om.solve(prob, alg, maxiters=N, record="u", callback=steps if _reports(cls) else None)
    history = sol.history
    assert history is not None and history.u is not None
    assert len(history.u) == len(history) == (sol.stats.iterations if _reports(cls) else 0)
    if not _reports(cls):
        return
    assert len(history) >= 2, "two steps at least, to check the entries are apart"
    u0_skeleton = _skeleton(sol.u)
    assert u0_skeleton[0] is dict and isinstance(history.u[0]["b"][0], float)
    for entry, info in zip(history.u, steps.infos):
        assert _skeleton(entry) == u0_skeleton
        assert _same_tree(entry, info.u)
    # Arrays the caller owns: none shares memory with another entry or with the solution.
    owned = [a for entry in history.u for a in _arrays(entry)]
    others = owned + _arrays(sol.u) + [a for info in steps.infos for a in _arrays(info.u)]
    for i, a in enumerate(owned):
        for j, b in enumerate(others):
            if i != j:
                assert not np.shares_memory(a, b), f"array {i} of the history shares memory with {j}"
    before = [flat(entry) for entry in history.u]
    u_before = flat(sol.u)
    first, last = history.u[0], history.u[-1]
    first["w"] += 100.0
    first["b"][1] *= -3.0
    last["w"][...] = np.nan
    assert flat(sol.u).tobytes() == u_before.tobytes()
    for k in range(1, len(history.u) - 1):
        assert flat(history.u[k]).tobytes() == before[k].tobytes()
    for info, entry_bytes in zip(steps.infos, before):
        assert flat(info.u).tobytes() == entry_bytes.tobytes()
    # A second look at the history gives the same (mutated) list: the Solution holds it.
    assert sol.history is history


#: The registered algorithms (first configuration) that accept an evolving state.
STATEFUL = [case for cls, case in CONFIGURED.items() if accepts(case, PROBLEM["stateful_counter"])]


@pytest.mark.parametrize("case", STATEFUL, ids=repr)
def test_recording_leaves_a_stateful_run_unchanged(case: AlgorithmCase) -> None:
    plain = om.solve(PROBLEM["stateful_counter"].build()[0], case.alg, maxiters=N)
    recorded = om.solve(PROBLEM["stateful_counter"].build()[0], case.alg, maxiters=N, record="u")
    _assert_same_run(recorded, plain)
    assert recorded.state["calls"] == plain.state["calls"] and plain.state["calls"] >= 1
    assert recorded.history is not None
    assert len(recorded.history) == recorded.stats.iterations
    _assert_well_formed(recorded.history, recorded)


@pytest.mark.parametrize("cls", [om.Adam, om.BFGS, om.LBFGS, om.NelderMead, om.TrustConstr], ids=_ids)
def test_history_of_a_maximisation_is_in_the_users_sense(cls: type, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="optimeta")
    alg = _alg(cls)
    prob, rec = _build("maximise", alg)
    steps = Steps(rec)
    sol = om.solve(prob, alg, maxiters=CONFIGURED[cls].maxiters, record=True, callback=steps, verbose=True)
    history = sol.history
    assert history is not None and len(history) == sol.stats.iterations >= 2
    assert history.objective.tobytes() == steps.objectives.tobytes()
    # The concave objective is 3 - |u - C|^2: -2.25 at u0, 3 at the maximum; the run climbs.
    assert np.all(history.objective <= 3.0)
    assert history.objective.max() > 0.0
    assert history.objective[-1] > history.objective[0]
    assert abs(sol.objective - 3.0) < 1e-2
    # The log records are in the user's sense too.
    messages = [r.getMessage() for r in _optimeta_records(caplog)]
    assert messages[1].startswith(f"step 1: objective {history.objective[0]:.6g} (")
    assert f"objective {sol.objective:.6g}, " in messages[-1]


# --------------------------------------------------------------------------------------------
# Chains and exceptions
# --------------------------------------------------------------------------------------------


def test_a_chain_records_one_history_across_its_stages() -> None:
    chain = om.Chain((om.Adam(lr=0.02), 5), (om.NelderMead(), 12), om.BFGS())
    prob, rec = PROBLEM["rosenbrock"].build()
    steps = Steps(rec)
    sol = om.solve(prob, chain, record=True, callback=steps)
    history = sol.history
    assert history is not None
    stages = sol.original
    assert [s.stats.iterations for s in stages][:2] == [5, 12] and stages[2].stats.iterations >= 1
    total = sol.stats.iterations
    assert total == sum(s.stats.iterations for s in stages)
    assert len(history) == total
    _assert_well_formed(history, sol)
    assert history.iteration.tolist() == [info.iteration for info in steps.infos] == list(range(1, total + 1))
    assert history.objective.tobytes() == steps.objectives.tobytes()
    # Calls of f so far, over the whole chain, as counted by the recorder.
    assert history.fevals.tolist() == [c - sol.stats.probe_fevals for c in steps.calls]
    # Each stage's calls follow the previous stages' (the first stage's final evaluation included).
    assert history.fevals[4] <= stages[0].stats.fevals < history.fevals[5]
    assert history.fevals[16] <= stages[0].stats.fevals + stages[1].stats.fevals < history.fevals[17]
    assert history.time[5] >= history.time[4]
    # The stages' own solutions carry no history of their own.
    assert all(s.history is None for s in stages)
    plain = om.solve(PROBLEM["rosenbrock"].build()[0], chain)
    _assert_same_run(om.solve(PROBLEM["rosenbrock"].build()[0], chain, record=True), plain)


class Boom(Exception):
    """The user's own error."""


class Raising:
    """Rosenbrock's function, raising `Boom` at its ``at``-th call."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.calls = 0

    def __call__(self, u: Any, p: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise Boom(f"call {self.calls}")
        return (1.0 - u[0]) ** 2 + 10.0 * (u[1] - u[0] ** 2) ** 2


@pytest.mark.parametrize("cls", REGISTERED, ids=_ids)
def test_an_exception_carries_the_history_so_far(cls: type) -> None:
    alg = _alg(cls)
    budget = 50 if CONFIGURED[cls].maxiters else None
    # f raises two thirds of the way through the calls an uninterrupted run makes.
    whole = Raising(at=-1)
    om.solve(om.OptimizationProblem(whole, np.array([-1.2, 1.0]), bounds=box_for(alg)), alg, maxiters=budget)
    f = Raising(at=max(2, 2 * whole.calls // 3))
    prob = om.OptimizationProblem(f, np.array([-1.2, 1.0]), bounds=box_for(alg))
    seen: list[om.IterationInfo] = []
    callback = seen.append if _reports(cls) else None
    with pytest.raises(Boom) as info:
        om.solve(prob, alg, maxiters=budget, record="u", callback=callback, check_determinism=False)
    partial = info.value.partial_solution  # type: ignore[attr-defined]
    assert isinstance(partial, om.Solution)
    history = partial.history
    assert isinstance(history, om.History)
    assert len(history) == partial.stats.iterations == len(seen)
    assert history.iteration.tolist() == list(range(1, len(seen) + 1))
    assert history.objective.tobytes() == np.array([i.objective for i in seen], dtype=np.float64).tobytes()
    assert history.u is not None and len(history.u) == len(seen)
    assert np.all(np.diff(history.fevals) >= 0) and np.all(history.fevals < f.at)
    if seen:  # the partial solution is the last completed step's loss, at the iterate it was computed at
        assert _bits(history.objective[-1]) == _bits(partial.objective)
        if getattr(cls, "loss_at_new_iterate", True):
            assert history.u[-1].tobytes() == partial.u.tobytes()
        else:  # a first-order step reports the loss before its update
            before = history.u[-2] if len(seen) > 1 else prob.u0
            assert before.tobytes() == partial.u.tobytes()


def test_an_exception_in_a_chains_later_stage_carries_the_whole_history() -> None:
    f = Raising(at=30)
    prob = om.OptimizationProblem(f, np.array([-1.2, 1.0]))
    seen: list[om.IterationInfo] = []
    with pytest.raises(Boom) as info:
        om.solve(prob, om.Chain((om.Adam(lr=0.02), 20), om.BFGS()), record=True, callback=seen.append)
    history = info.value.partial_solution.history  # type: ignore[attr-defined]
    assert history is not None
    assert len(seen) > 20, "the exception must come in the second stage"
    assert history.iteration.tolist() == list(range(1, len(seen) + 1))
    assert history.objective.tobytes() == np.array([i.objective for i in seen], dtype=np.float64).tobytes()
    assert np.all(np.diff(history.fevals) >= 0) and np.all(np.diff(history.time) >= 0)


@pytest.mark.needs("matplotlib")
def test_history_of_minibatches_and_skipped_steps() -> None:
    # One entry per step, a skipped (non-finite) step included, with its value as reported.
    data = [np.full(3, float(k)) for k in range(4)]
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - p) ** 2), np.zeros(3), p=np.zeros(3))
    seen: list[om.IterationInfo] = []
    sol = om.solve(prob, om.Adam(lr=0.1), data=data, epochs=3, record=True, callback=seen.append)
    assert sol.history is not None and len(sol.history) == sol.stats.iterations == 12
    assert sol.history.objective.tobytes() == np.array([i.objective for i in seen]).tobytes()
    assert sol.history.fevals.tolist() == list(range(1, 13))

    calls = [0]

    def every_third_is_nan(u: Any, p: Any) -> Any:
        calls[0] += 1
        value = anp.sum((u - 1.0) ** 2)
        return value * np.nan if calls[0] % 3 == 0 else value

    prob = om.OptimizationProblem(every_third_is_nan, np.zeros(3), stochastic=True)
    sol = om.solve(prob, om.Adam(lr=0.1), maxiters=10, nan_policy="skip", record=True)
    history = sol.history
    assert history is not None and len(history) == sol.stats.iterations == 10 and sol.stats.skipped == 3
    assert np.isnan(history.objective).tolist() == [k % 3 == 0 for k in range(1, 11)]
    # Plotted: the non-finite values are left out of the choice of scale.
    ax = om.plot(sol)
    assert ax.get_yscale() == "log"
    assert np.isnan(ax.get_lines()[0].get_ydata()).sum() == 3


# --------------------------------------------------------------------------------------------
# The progress bar
# --------------------------------------------------------------------------------------------


class Counting:
    """A quadratic counting its calls."""

    def __init__(self, shift: float = 0.0) -> None:
        self.calls = 0
        self.shift = shift

    def __call__(self, u: Any, p: Any) -> Any:
        self.calls += 1
        return anp.sum((u - 1.0) ** 2) + self.shift


def _quadratic(shift: float = 0.0, **options: Any) -> tuple[om.OptimizationProblem, Counting]:
    f = Counting(shift)
    return om.OptimizationProblem(f, np.zeros(3), **options), f


def _last_frame(err: str) -> str:
    """The bar as last drawn: the text after the last carriage return."""
    return err.rstrip("\n").split("\r")[-1]


@pytest.mark.needs("tqdm")
def test_progress_bar_of_a_budgeted_stepwise_run(capsys: pytest.CaptureFixture[str]) -> None:
    prob, f = _quadratic()
    sol = om.solve(prob, om.Adam(lr=0.1), maxiters=25, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert sol.history is None  # a bar records nothing
    frame = _last_frame(err)
    assert frame.startswith("Adam: 100%"), frame
    assert "25/25" in frame
    assert re.search(r"\[\d\d:\d\d<", frame), "the elapsed time"
    assert f"objective={sol.objective:.6g}" in frame
    assert f.calls == sol.stats.fevals + sol.stats.probe_fevals


@pytest.mark.needs("tqdm")
@pytest.mark.parametrize(("epochs", "maxiters", "total"), [(3, None, 12), (3, 5, 5), (2, 100, 8)])
def test_progress_bar_of_minibatches_counts_the_planned_steps(
    epochs: int, maxiters: int | None, total: int, capsys: pytest.CaptureFixture[str]
) -> None:
    data = [np.full(3, float(k)) for k in range(4)]
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - p) ** 2), np.zeros(3), p=np.zeros(3))
    sol = om.solve(prob, om.Adam(lr=0.1), data=data, epochs=epochs, maxiters=maxiters, progress=True)
    assert sol.stats.iterations == total
    out, err = capsys.readouterr()
    assert out == ""
    frame = _last_frame(err)
    assert frame.startswith("Adam: 100%") and f" {total}/{total} " in frame, frame


@pytest.mark.needs("tqdm")
@pytest.mark.parametrize("cls", [om.LBFGS, om.NelderMead], ids=_ids)
def test_progress_bar_of_a_whole_run(cls: type, capsys: pytest.CaptureFixture[str]) -> None:
    prob, _ = _quadratic()
    sol = om.solve(prob, _alg(cls), progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    frame = _last_frame(err)
    # No budget: the bar counts the steps without a total.
    assert re.match(rf"{cls.__name__}: {sol.stats.iterations}step \[", frame), frame
    assert f"objective={sol.objective:.6g}" in frame


@pytest.mark.needs("tqdm")
def test_progress_bar_of_a_whole_run_with_a_budget(capsys: pytest.CaptureFixture[str]) -> None:
    prob, _ = _quadratic()
    sol = om.solve(prob, om.NelderMead(), maxiters=10, progress=True)
    frame = _last_frame(capsys.readouterr().err)
    assert sol.retcode is om.ReturnCode.MAXITERS
    assert frame.startswith("NelderMead: 100%") and "10/10" in frame, frame


@pytest.mark.needs("tqdm")
def test_progress_bar_of_a_chain_counts_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    prob, _ = _quadratic()
    sol = om.solve(prob, om.Chain((om.Adam(lr=0.1), 8), (om.NelderMead(), 6)), progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert sol.stats.iterations == 14
    assert "Adam" in err
    frame = _last_frame(err)
    assert frame.startswith("NelderMead: 100%") and "14/14" in frame, frame
    assert f"objective={sol.objective:.6g}" in frame


def test_progress_without_tqdm_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "tqdm" or m.startswith("tqdm.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    prob, f = _quadratic()
    with pytest.raises(ImportError) as info:
        om.solve(prob, om.Adam(lr=0.1), maxiters=5, progress=True)
    assert type(info.value) is ImportError
    assert "optimeta[progress]" in str(info.value)
    assert f.calls == 0
    # Without progress=True, tqdm is not needed.
    assert om.solve(prob, om.Adam(lr=0.1), maxiters=5, record=True).stats.iterations == 5


# --------------------------------------------------------------------------------------------
# Log records
# --------------------------------------------------------------------------------------------


def _optimeta_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "optimeta"]


@pytest.mark.parametrize(("cls", "maxiters"), [(om.Adam, 30), (om.BFGS, None), (om.LBFGS, None)], ids=str)
def test_verbose_logs_start_steps_and_end(
    cls: type, maxiters: int | None, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="optimeta")
    prob, _ = _quadratic(shift=0.5)
    alg = cls(lr=0.1) if maxiters else cls()
    sol = om.solve(prob, alg, maxiters=maxiters, verbose=True, record=True)
    records = _optimeta_records(caplog)
    messages = [r.getMessage() for r in records]
    assert all(r.levelno == logging.INFO for r in records), messages
    budget = "" if maxiters is None else f", at most {maxiters} steps"
    assert messages[0] == f"{cls.__name__}: started on 3 variables{budget}"
    step_messages = [m for m in messages[1:-1] if m.startswith("step ")]
    assert len(step_messages) == len(messages) - 2 >= 1
    assert sol.history is not None
    first = re.fullmatch(r"step 1: objective (\S+) \(\d+\.\d\d s\)", step_messages[0])
    assert first is not None, step_messages[0]
    assert first.group(1) == f"{sol.history.objective[0]:.6g}"
    end = messages[-1]
    assert end.startswith(f"{cls.__name__}: {sol.retcode.name} after {sol.stats.iterations} steps: ")
    assert f"objective {sol.objective:.6g}" in end
    assert f"{sol.stats.fevals} evaluations of f" in end
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ""  # records go to the application's handlers (here pytest's), not to stderr


def test_verbose_false_logs_nothing(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG, logger="optimeta")
    prob, _ = _quadratic()
    om.solve(prob, om.Adam(lr=0.1), maxiters=10, record=True)
    om.solve(prob, om.BFGS(), verbose=False)
    assert _optimeta_records(caplog) == []
    assert capsys.readouterr() == ("", "")


def _no_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """No logging configured anywhere: the root logger without handlers (pytest's taken off; it
    adds them for the test's call phase, so this is called in the test itself)."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


@pytest.mark.parametrize("level", [logging.NOTSET, logging.WARNING], ids=logging.getLevelName)
def test_verbose_without_logging_configured_writes_to_stderr(
    level: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_logging(monkeypatch)
    handlers_before, original = list(LOGGER.handlers), LOGGER.level
    LOGGER.setLevel(level)
    try:
        prob, _ = _quadratic()
        sol = om.solve(prob, om.Adam(lr=0.1), maxiters=12, verbose=True)
        assert sol.history is None  # verbose records nothing
        assert LOGGER.handlers == handlers_before
        assert LOGGER.level == level
    finally:
        LOGGER.setLevel(original)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) >= 3
    assert all(line.startswith("optimeta: ") for line in lines), lines
    assert lines[0] == "optimeta: Adam: started on 3 variables, at most 12 steps"
    assert lines[1].startswith("optimeta: step 1: objective ")
    assert lines[-1].startswith(f"optimeta: Adam: MAXITERS after 12 steps: objective {sol.objective:.6g}, ")
    # Afterwards, nothing of optimeta's is shown any more.
    om.solve(prob, om.Adam(lr=0.1), maxiters=3)
    LOGGER.info("not shown")
    assert capsys.readouterr() == ("", "")


def test_verbose_lowers_a_higher_level_for_the_run_only(caplog: pytest.LogCaptureFixture) -> None:
    # The application's handlers (here pytest's) get the records even when the logger's level was
    # set higher; the level is put back afterwards, and no handler is added.
    handlers_before, original = list(LOGGER.handlers), LOGGER.level
    LOGGER.setLevel(logging.ERROR)
    try:
        prob, _ = _quadratic()
        sol = om.solve(prob, om.BFGS(), verbose=True)
        assert LOGGER.level == logging.ERROR and LOGGER.handlers == handlers_before
        LOGGER.info("not shown")
    finally:
        LOGGER.setLevel(original)
    messages = [r.getMessage() for r in _optimeta_records(caplog)]
    assert messages[0] == "BFGS: started on 3 variables"
    assert messages[-1].startswith(f"BFGS: {sol.retcode.name} after {sol.stats.iterations} steps: ")
    assert "not shown" not in messages


@pytest.mark.needs("tqdm")
def test_verbose_and_progress_are_undone_after_an_exception(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_logging(monkeypatch)
    handlers_before, level_before = list(LOGGER.handlers), LOGGER.level
    f = Raising(at=9)
    prob = om.OptimizationProblem(f, np.array([-1.2, 1.0]))
    with pytest.raises(Boom) as info:
        om.solve(prob, om.Adam(lr=0.01), maxiters=50, verbose=True, progress=True, record=True)
    assert LOGGER.handlers == handlers_before and LOGGER.level == level_before
    history = info.value.partial_solution.history  # type: ignore[attr-defined]
    assert history is not None and len(history) == info.value.partial_solution.stats.iterations >= 1  # type: ignore[attr-defined]
    out, err = capsys.readouterr()
    assert out == ""
    assert "optimeta: interrupted by Boom" in err
    assert "Adam" in err


# --------------------------------------------------------------------------------------------
# Bad option values
# --------------------------------------------------------------------------------------------

RECORD_MESSAGE = 'record must be True, False or "u" (the iterates too), got {!r}'


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"record": "x"}, ValueError, RECORD_MESSAGE.format("x")),
        ({"record": "U"}, ValueError, RECORD_MESSAGE.format("U")),
        ({"record": 1}, ValueError, RECORD_MESSAGE.format(1)),
        ({"record": 0}, ValueError, RECORD_MESSAGE.format(0)),
        ({"record": None}, ValueError, RECORD_MESSAGE.format(None)),
        ({"progress": "yes"}, TypeError, "progress must be True or False, got 'yes'"),
        ({"progress": 1}, TypeError, "progress must be True or False, got 1"),
        ({"progress": None}, TypeError, "progress must be True or False, got None"),
        ({"verbose": 1}, TypeError, "verbose must be True or False, got 1"),
        ({"verbose": "true"}, TypeError, "verbose must be True or False, got 'true'"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else "",
)
def test_bad_option_values_are_refused_before_any_call(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    for alg, maxiters in [(om.Adam(lr=0.1), 5), (om.BFGS(), None), (om.Chain((om.Adam(lr=0.1), 3), om.BFGS()), None)]:
        prob, f = _quadratic()
        with pytest.raises(error) as info:
            om.solve(prob, alg, maxiters=maxiters, **options)
        assert type(info.value) is error
        assert str(info.value) == message
        assert f.calls == 0


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

PLOTTED: dict[float, dict[str, om.Solution]] = {}


def _recorded(shift: float) -> dict[str, om.Solution]:
    """Three recorded solves of a quadratic whose minimum is ``shift`` (shared, they are only read)."""
    if shift not in PLOTTED:
        runs = {}
        for label, alg, maxiters in [
            ("first order", om.Adam(lr=0.1), 40),
            ("quasi-Newton", om.BFGS(), None),
            ("simplex", om.NelderMead(), None),
        ]:
            runs[label] = om.solve(_quadratic(shift)[0], alg, maxiters=maxiters, record=True)
        PLOTTED[shift] = runs
    return PLOTTED[shift]


def _line_data(ax: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [(line.get_label(), np.asarray(line.get_xdata()), np.asarray(line.get_ydata())) for line in ax.get_lines()]


@pytest.mark.needs("matplotlib")
@pytest.mark.parametrize(("x", "field"), [("evaluations", "fevals"), ("time", "time"), ("iterations", "iteration")])
def test_plot_draws_one_curve_per_solution(x: str, field: str) -> None:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    runs = _recorded(1.0)
    ax = om.plot(runs, x=x)
    assert isinstance(ax, Axes) and isinstance(ax.figure, Figure)
    assert ax.figure.axes == [ax]
    lines = _line_data(ax)
    assert [label for label, _, _ in lines] == list(runs)
    for (_, xs, ys), sol in zip(lines, runs.values()):
        assert sol.history is not None and len(sol.history) >= 2
        assert xs.tobytes() == getattr(sol.history, field).tobytes()
        assert ys.tobytes() == sol.history.objective.tobytes()
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == list(runs)
    assert ax.get_xlabel() == {"evaluations": "calls of f", "time": "seconds", "iterations": "steps"}[x]
    assert ax.get_ylabel() == "objective"


@pytest.mark.needs("matplotlib")
def test_plot_scale_is_log_on_positive_objectives_only() -> None:
    positive, crossing = _recorded(1.0), _recorded(-0.5)
    assert all(np.all(s.history.objective > 0) for s in positive.values())  # type: ignore[union-attr]
    assert any(np.any(s.history.objective <= 0) for s in crossing.values())  # type: ignore[union-attr]
    assert om.plot(positive).get_yscale() == "log"
    assert om.plot(crossing).get_yscale() == "linear"
    assert om.plot(positive, log=False).get_yscale() == "linear"
    assert om.plot(positive, log=True).get_yscale() == "log"
    # One solution with a zero objective among positive ones is enough for a linear scale.
    mixed = {"positive": positive["first order"], "crossing": crossing["quasi-Newton"]}
    assert om.plot(mixed).get_yscale() == "linear"


@pytest.mark.needs("matplotlib")
def test_plot_labels_a_repeated_algorithm_apart_and_a_single_solution_by_name() -> None:
    runs = _recorded(1.0)
    again = om.solve(_quadratic(1.0)[0], om.Adam(lr=0.05), maxiters=20, record=True)
    ax = om.plot([runs["first order"], runs["quasi-Newton"], again])
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["Adam", "BFGS", "Adam #2"]
    assert len(set(labels)) == 3
    single = om.plot(runs["simplex"], title="Nelder-Mead")
    assert [line.get_label() for line in single.get_lines()] == ["NelderMead"]
    assert single.get_title() == "Nelder-Mead"


@pytest.mark.needs("matplotlib")
def test_plot_draws_on_a_given_axes_and_saves_a_png(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    left, right = fig.subplots(1, 2)
    runs = _recorded(1.0)
    assert om.plot(runs, ax=right, x="iterations") is right
    assert len(right.get_lines()) == 3 and left.get_lines() == []
    ax = om.plot(runs)
    path = tmp_path / "c.png"
    ax.figure.savefig(path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000
    fig.savefig(tmp_path / "both.png")
    assert (tmp_path / "both.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.needs("matplotlib")
@pytest.mark.parametrize("cls", [om.DualAnnealing, om.SHGO], ids=_ids)
@pytest.mark.parametrize(("x", "stat"), [("evaluations", "fevals"), ("time", "time"), ("iterations", "iterations")])
def test_plot_draws_a_run_without_steps_as_one_point(cls: type, x: str, stat: str) -> None:
    alg = _alg(cls)
    sol = om.solve(_quadratic(1.0, bounds=box_for(alg))[0], alg, maxiters=N, record=True)
    assert sol.history is not None and len(sol.history) == 0
    ax = om.plot({"global": sol, "local": _recorded(1.0)["quasi-Newton"]}, x=x)
    point, curve = ax.get_lines()
    assert point.get_label() == "global" and curve.get_label() == "local"
    assert np.asarray(point.get_xdata()).tolist() == [getattr(sol.stats, stat)]
    assert np.asarray(point.get_ydata()).tolist() == [sol.objective]
    assert point.get_marker() == "o" and point.get_linestyle() == "None"
    assert len(curve.get_xdata()) >= 2


def test_plot_refuses_bad_input() -> None:
    runs = _recorded(1.0)
    unrecorded = om.solve(_quadratic(1.0)[0], om.BFGS())
    with pytest.raises(ValueError, match=r"record=True") as info:
        om.plot({"a": runs["simplex"], "b": unrecorded})
    assert type(info.value) is ValueError and "'b'" in str(info.value)
    with pytest.raises(ValueError, match=r"record=True"):
        om.plot(unrecorded)
    with pytest.raises(ValueError, match=r'x must be "evaluations", "time" or "iterations", got \'calls\''):
        om.plot(runs, x="calls")
    for bad in ([runs["simplex"], "BFGS"], {"a": 1.0}, "Adam", 3, None, (s for s in runs.values())):
        with pytest.raises(TypeError) as type_error:
            om.plot(bad)  # type: ignore[arg-type]
        assert type(type_error.value) is TypeError
    for empty in ([], (), {}):
        with pytest.raises(ValueError, match="empty") as value_error:
            om.plot(empty)
        assert type(value_error.value) is ValueError


def test_plot_without_matplotlib_asks_for_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _recorded(1.0)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError) as info:
        om.plot(runs)
    assert type(info.value) is ImportError
    assert "optimeta[plot]" in str(info.value)
