"""`om.init`, `Solver`, `Checkpoint` and `om.resume`: a step-wise run held open, checkpointed and
resumed, in this process or in a fresh one, is the run `om.solve` makes, bit for bit.

Every algorithm with ``supports_checkpoint`` runs every problem case below that it accepts (an
algorithm that `om.solve` refuses is refused by `om.init` the same way). For each run:

* ``om.init(...).solve()``, with or without `step` and `checkpoint` calls in between, equals
  ``om.solve(...)``: u, objective, state, return code, message and stats (time aside);
* checkpoints at k = 0, 1, 3, the middle, the last step but one and after the end, pickled and
  saved to files (`Checkpoint.save`, without pickle), are resumed here and in one fresh process
  (all of them in one subprocess), with the problem (and the data) given again, and give that
  same `Solution`; the calls the objective receives after the resume (points, batches and
  states) continue the uninterrupted run's calls exactly.

A checkpoint holds no problem, objective or data: the fresh process imports this file by path
under its module name and builds each case's problem again. Every call of the objectives is
logged in `LOG`. The save/load format itself (a round trip for every algorithm, refusals,
corrupted files, pickled parts) is tested at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import math
import pickle
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.tracer import getval

import optimeta as om
from optimeta._state import short_repr
from optimeta.backends._base import StepwiseAlgorithm
from optimeta.backends._kernels import RECYCLE_MIN_SIZE

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTABLE = om.algorithms(supports_checkpoint=True)
NOT_CHECKPOINTABLE = om.algorithms(supports_checkpoint=False)

#: Step sizes that make every first-order method move but not diverge on the problems below.
LR = {"SGD": 0.02, "OLBFGS": 0.5, "Adadelta": 1.0}


def configured(cls: type) -> Any:
    """A registered algorithm class with a sensible step size when it has one, defaults otherwise."""
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(lr=LR.get(cls.__name__, 0.05)) if "lr" in fields else cls()


#: Every checkpointable algorithm, plus variants whose state has more in it (a momentum buffer,
#: a schedule object, curvature pairs beyond the memory).
ALGORITHMS: list[tuple[str, Any]] = [(cls.__name__, configured(cls)) for cls in CHECKPOINTABLE] + [
    ("SGD-nesterov", om.SGD(lr=0.02, momentum=0.9, nesterov=True)),
    ("Adam-schedule", om.Adam(lr=om.schedules.warmup(om.schedules.cosine_decay(0.1, 10), 3))),
    ("OLBFGS-memory2", om.OLBFGS(lr=0.5, memory=2, decay=0.1)),
]


# -- the objectives (module level: the fresh process builds the same problems) ----------------------

TARGET = np.array([1.0, -0.5, 2.0])
WEIGHTS = np.array([1.0, 4.0, 0.5])
U0 = np.array([2.0, 2.0, -1.0])
BATCHES = [TARGET + 0.3 * np.sin(i + np.arange(3.0)) for i in range(4)]
#: The minibatches with a NaN batch in the middle: its step is not finite (nan_policy="skip").
POISONED = [*BATCHES[:2], np.full(3, math.nan), *BATCHES[2:]]

#: Every call of the objectives below: (name, the point, the batch, the state's call count).
LOG: list[tuple[str, bytes, bytes | None, int | None]] = []


def _log(name: str, u: Any, p: Any, calls: int | None) -> None:
    batch = None if p is None else np.asarray(p).tobytes()
    LOG.append((name, np.asarray(getval(u)).tobytes(), batch, calls))


def _value(u: Any, target: Any) -> Any:
    """Smooth, not quadratic, bounded below: a few quasi-Newton steps, many first-order ones."""
    return anp.sum(WEIGHTS * (u - target) ** 2) + 0.05 * anp.sum(u**4) + 0.3 * anp.sin(u[0] * u[1])


def smooth(u: Any, p: Any) -> Any:
    """Deterministic and stateless."""
    _log("smooth", u, p, None)
    return _value(u, TARGET)


def smooth_tree(u: Any, p: Any) -> Any:
    """Deterministic and stateless, on a pytree ``{"w": array(2), "b": float}``."""
    _log("smooth_tree", anp.concatenate([u["w"], anp.reshape(u["b"], (1,))]), p, None)
    return _value(anp.concatenate([u["w"], anp.reshape(u["b"], (1,))]), TARGET)


def batched(u: Any, p: Any) -> Any:
    """Stateless; ``p`` is the minibatch (the target of this step)."""
    _log("batched", u, p, None)
    return _value(u, p)


def counting(u: Any, p: Any, state: Any) -> Any:
    """A state that counts calls and does not drive the loss (declared stochastic=False)."""
    _log("counting", u, p, state["calls"])
    return _value(u, TARGET), {"calls": state["calls"] + 1}


def constant(u: Any, p: Any, state: Any) -> Any:
    """A constant state (state_mode="constant") that scales the loss."""
    _log("constant", u, p, None)
    return state["scale"] * _value(u, TARGET), state


def noisy(u: Any, p: Any, state: Any) -> Any:
    """A state that counts calls and carries an RNG key and a Generator, both driving the loss;
    with minibatches, ``p`` is the target."""
    _log("noisy", u, p, state["calls"])
    rng = np.random.default_rng(state["key"])
    shift = 0.1 * rng.standard_normal(3)
    jitter = 0.01 * state["gen"].standard_normal()  # drawn in place from the state's Generator
    target = TARGET if p is None else p
    loss = _value(u, target + shift) + jitter * anp.sum(u)
    return loss, {"calls": state["calls"] + 1, "key": int(rng.integers(2**62)), "gen": state["gen"]}


def cliff(u: Any, p: Any) -> Any:
    """Downhill towards larger u, and NaN (value and gradient) beyond u[0] = 2.3: a run that ends
    with NONFINITE after a few steps."""
    _log("cliff", u, p, None)
    return _value(u, TARGET) - 10.0 * anp.sum(u) * (math.nan if float(getval(u)[0]) > 2.3 else 1.0)


def _refuse(u: Any, p: Any, *state: Any) -> Any:
    raise _Called


class _Called(Exception):
    """The objective was called: the algorithm accepted the problem."""


@dataclass(frozen=True)
class Case:
    """A problem (built fresh each time) and the options of its solve."""

    name: str
    f: Callable[..., Any]
    problem_kwargs: dict[str, Any] = field(default_factory=dict)
    solve_kwargs: dict[str, Any] = field(default_factory=dict)
    u0: Any = None

    def problem(self, f: Callable[..., Any] | None = None) -> om.OptimizationProblem:
        u0 = U0 if self.u0 is None else self.u0
        return om.OptimizationProblem(f or self.f, u0, **copy.deepcopy(self.problem_kwargs))

    def __repr__(self) -> str:
        return self.name


def _noisy_state() -> dict[str, Any]:
    return {"calls": 0, "key": 7, "gen": np.random.default_rng(3)}


CASES = [
    Case("deterministic", smooth, solve_kwargs={"maxiters": 16}),
    Case("pytree", smooth_tree, solve_kwargs={"maxiters": 12}, u0={"w": np.array([2.0, 2.0]), "b": -1.0}),
    Case("counting-state", counting, {"state": {"calls": 0}, "stochastic": False}, {"maxiters": 16}),
    Case("constant-state", constant, {"state": {"scale": 2.0}, "state_mode": "constant"}, {"maxiters": 12}),
    Case("nonfinite", cliff, solve_kwargs={"maxiters": 16}),
    Case("nonfinite-skip", cliff, solve_kwargs={"maxiters": 16, "nan_policy": "skip", "max_skips": 3}),
    Case("rng-state", noisy, {"state": _noisy_state()}, {"maxiters": 16}),
    Case("minibatches", batched, solve_kwargs={"data": BATCHES, "epochs": 2}),
    Case("minibatches-budget", batched, solve_kwargs={"data": BATCHES, "epochs": 2, "maxiters": 6}),
    Case("poisoned-minibatches-skip", batched, solve_kwargs={"data": POISONED, "epochs": 2, "nan_policy": "skip"}),
    Case("rng-state-minibatches", noisy, {"state": _noisy_state()}, {"data": BATCHES, "epochs": 2}),
]
CASE = {case.name: case for case in CASES}


def accepts(case: Case, alg: Any) -> bool:
    """Whether `om.solve` takes `alg` for `case`: it refuses with IncompatibleAlgorithmError before
    any call, or calls the objective (here one that raises at once)."""
    try:
        om.solve(case.problem(_refuse), alg, **case.solve_kwargs)
    except om.IncompatibleAlgorithmError:
        return False
    except _Called:
        return True
    raise AssertionError(f"{alg!r} neither refused nor called the objective for {case.name}")


COMBOS = [(case, name, alg) for case in CASES for name, alg in ALGORITHMS]
#: The case of each combination, by its test id.
CASE_OF = {f"{case.name}-{name}": case.name for case, name, _ in COMBOS}
ACCEPTED = [pytest.param(case, name, alg, id=f"{case.name}-{name}") for case, name, alg in COMBOS if accepts(case, alg)]
REFUSED = [
    pytest.param(case, name, alg, id=f"{case.name}-{name}") for case, name, alg in COMBOS if not accepts(case, alg)
]


# -- comparing runs ---------------------------------------------------------------------------------


def canon(obj: Any) -> Any:
    """A plain, exactly comparable (and picklable) form of a value: arrays and floats by their
    bytes, Generators by their bit generator's state, containers element by element."""
    if isinstance(obj, np.random.Generator):
        return ("Generator", canon(obj.bit_generator.state))
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, (float, np.floating)):
        return ("float", np.float64(obj).tobytes())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, bytes)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return ("int", int(obj))
    if isinstance(obj, enum.Enum):
        return ("enum", type(obj).__name__, obj.name)
    if isinstance(obj, dict):
        return ("dict", tuple((canon(k), canon(v)) for k, v in obj.items()))
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, tuple(canon(x) for x in obj))
    return ("object", type(obj).__qualname__)  # e.g. the recycler of an iterate's memory


def fingerprint(sol: om.Solution) -> dict[str, Any]:
    """Everything of a `Solution` that a resumed run must reproduce bit for bit (time aside)."""
    stats = dataclasses.asdict(sol.stats)
    stats.pop("time")
    return {
        "u": canon(sol.u),
        "objective": canon(sol.objective),
        "state": canon(sol.state),
        "retcode": sol.retcode.name,
        "message": sol.message,
        "stats": stats,
        "algorithm": repr(sol.algorithm),
    }


def resume_to_end(source: bytes | str, case_name: str) -> tuple[dict[str, Any], list[Any]]:
    """Unpickle a checkpoint (bytes) or load it from its file (a path, without pickle), resume it
    on the case's problem and data built anew, solve: the fingerprint and the calls made
    meanwhile. Run in the fresh process too."""
    checkpoint = pickle.loads(source) if isinstance(source, bytes) else om.Checkpoint.load(source)
    assert isinstance(checkpoint, om.Checkpoint)
    case = CASE[case_name]
    prob = case.problem()
    LOG.clear()
    sol = om.resume(checkpoint, prob, data=case.solve_kwargs.get("data")).solve()
    return fingerprint(sol), list(LOG)


# -- the campaign: every accepted (case, algorithm), checkpoints at several k --------------------


@dataclass
class Run:
    full: dict[str, Any]  # om.solve
    full_log: list[Any]
    plain: dict[str, Any]  # om.init(...).solve()
    interleaved: dict[str, Any]  # om.init, step by step with checkpoints, then .solve()
    interleaved_log: list[Any]
    # (label, iterations at the checkpoint, the pickled checkpoint, its file, len(LOG) when it was taken)
    checkpoints: list[tuple[str, int, bytes, str, int]]


def record_run(case: Case, alg: Any, directory: Path) -> Run:
    LOG.clear()
    full = om.solve(case.problem(), alg, **case.solve_kwargs)
    full_log = list(LOG)
    plain = om.init(case.problem(), alg, **case.solve_kwargs).solve()

    n = full.stats.iterations
    wanted: dict[int, str] = {}
    # k=3: after the first NaN batch of POISONED, a checkpoint in the middle of skipped steps.
    for k, label in ((0, "k=0"), (1, "k=1"), (3, "k=3"), (n // 2, "k=middle"), (n - 1, "k=last-1")):
        if 0 <= k <= n:
            wanted.setdefault(k, label)
    LOG.clear()
    solver = om.init(case.problem(), alg, **case.solve_kwargs)
    checkpoints = []

    def keep(label: str, k: int) -> None:
        checkpoint = solver.checkpoint()
        path = directory / f"{label}.npz"
        checkpoint.save(path)
        checkpoints.append((label, k, pickle.dumps(checkpoint), str(path), len(LOG)))

    while True:
        k = solver.iterations
        label = wanted.pop(k, None)
        if label is not None:
            keep(label, k)
        if not solver.step():
            break
    keep("after-the-end", solver.iterations)
    interleaved = solver.solve()
    return Run(fingerprint(full), full_log, fingerprint(plain), fingerprint(interleaved), list(LOG), checkpoints)


FRESH_PROCESS = """
import importlib, importlib.util, os, pickle, sys
root, path, name, jobs_file, out_file = sys.argv[1:]
sys.path.insert(0, root)
# The test suite's own backends, registered as conftest.py registers them in this process.
sys.path.insert(0, os.path.dirname(path))
for backend in filter(None, os.environ.get("OPTIMETA_TEST_BACKENDS", "").split(",")):
    importlib.import_module(backend)
spec = importlib.util.spec_from_file_location(name, path)
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
with open(jobs_file, "rb") as fh:
    jobs = pickle.load(fh)
results = {key: module.resume_to_end(source, case_name) for key, case_name, source in jobs}
results["optimeta"] = module.om.__file__
with open(out_file, "wb") as fh:
    pickle.dump(results, fh)
"""


class Campaign(dict):  # type: ignore[type-arg]
    """The recorded runs and the fresh process's results, shown briefly in a failure report."""

    def __repr__(self) -> str:
        return f"<campaign of {len(self['runs'])} runs>"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every accepted run recorded here, and all their checkpoints resumed in ONE fresh process."""
    runs: dict[str, Run | BaseException] = {}
    tmp = tmp_path_factory.mktemp("checkpoints")
    for i, param in enumerate(ACCEPTED):
        case, _, alg = param.values
        directory = tmp / f"run{i}"
        directory.mkdir()
        try:
            runs[param.id] = record_run(case, alg, directory)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001  # reported by this run's tests, not by all of them
            runs[param.id] = exc
    jobs = [
        ((key, label, how), CASE_OF[key], source)
        for key, run in runs.items()
        if isinstance(run, Run)
        for label, _, blob, path, _ in run.checkpoints
        for how, source in (("pickle", blob), ("file", path))
    ]
    jobs_file, out_file = tmp / "jobs.pkl", tmp / "results.pkl"
    jobs_file.write_bytes(pickle.dumps(jobs))
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(ROOT), str(Path(__file__).resolve()), __name__]
        + [str(jobs_file), str(out_file)],
        cwd=ROOT,
        check=False,  # a failure is reported by the tests, with the fresh process's stderr
        capture_output=True,
        text=True,
        timeout=300,
    )
    fresh = pickle.loads(out_file.read_bytes()) if proc.returncode == 0 else proc.stderr
    return Campaign(runs=runs, fresh=fresh)


def _run(campaign: dict[str, Any], request: pytest.FixtureRequest) -> Run:
    run = campaign["runs"][request.node.callspec.id]
    if isinstance(run, BaseException):
        raise run
    return run


def test_every_checkpointable_algorithm_is_covered() -> None:
    assert set(CHECKPOINTABLE) == {cls for cls in om.algorithms() if issubclass(cls, StepwiseAlgorithm)}
    names = {cls.__name__ for cls in CHECKPOINTABLE}
    assert names == {
        "SGD",
        "Adam",
        "AdamW",
        "AMSGrad",
        "Adamax",
        "NAdam",
        "RMSProp",
        "Adagrad",
        "Adadelta",
        "Lion",
        "BFGS",
        "OLBFGS",
    }
    for cls in CHECKPOINTABLE:
        ran = [p for p in ACCEPTED if type(p.values[2]) is cls]
        assert {p.values[0].name for p in ran} >= {"deterministic", "counting-state", "constant-state"}
        if cls.traits.tolerates_stochastic_loss:
            assert {p.values[0].name for p in ran} == set(CASE)


@pytest.mark.parametrize(("case", "name", "alg"), REFUSED)
def test_init_refuses_what_solve_refuses_with_the_same_error_and_no_call(case: Case, name: str, alg: Any) -> None:
    with pytest.raises(om.IncompatibleAlgorithmError) as by_solve:
        om.solve(case.problem(_refuse), alg, **case.solve_kwargs)
    with pytest.raises(om.IncompatibleAlgorithmError) as by_init:
        om.init(case.problem(_refuse), alg, **case.solve_kwargs)
    assert str(by_init.value) == str(by_solve.value)
    assert not alg.traits.tolerates_stochastic_loss  # only the stochastic cases refuse anything


@pytest.mark.parametrize(("case", "name", "alg"), ACCEPTED)
def test_init_solve_equals_solve_however_many_steps_and_checkpoints(
    case: Case, name: str, alg: Any, campaign: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    run = _run(campaign, request)
    assert run.plain == run.full
    assert run.interleaved == run.full
    assert run.interleaved_log == run.full_log  # the same calls, in the same order, probe included
    labels = [label for label, *_ in run.checkpoints]
    assert labels[0] == "k=0" and labels[-1] == "after-the-end"
    assert len(run.checkpoints) == len(set(labels)) >= min(3, run.full["stats"]["iterations"] + 1)


@pytest.mark.parametrize(("case", "name", "alg"), ACCEPTED)
def test_resume_in_process_is_bitwise_identical(
    case: Case, name: str, alg: Any, campaign: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    run = _run(campaign, request)
    for label, k, blob, path, logged in run.checkpoints:
        checkpoint = pickle.loads(blob)
        assert isinstance(checkpoint, om.Checkpoint)
        assert checkpoint.counts.iterations == k, label
        assert om.Checkpoint.load(path).counts == checkpoint.counts, label
        for source in (blob, path):
            result, log = resume_to_end(source, CASE_OF[request.node.callspec.id])
            assert result == run.full, label
            assert log == run.full_log[logged:], label  # the calls go on where the checkpoint left them


@pytest.mark.parametrize(("case", "name", "alg"), ACCEPTED)
def test_resume_in_a_fresh_process_is_bitwise_identical(
    case: Case, name: str, alg: Any, campaign: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    run = _run(campaign, request)
    fresh = campaign["fresh"]
    assert isinstance(fresh, dict), f"the fresh process failed:\n{fresh}"
    assert Path(fresh["optimeta"]).resolve().is_relative_to(ROOT)  # this tree's optimeta, not another
    for label, _, _, _, logged in run.checkpoints:
        for how in ("pickle", "file"):
            result, log = fresh[(request.node.callspec.id, label, how)]
            assert result == run.full, (label, how)
            assert log == run.full_log[logged:], (label, how)


# -- step, solve, the snapshot, the state sequence -----------------------------------------------


@pytest.mark.parametrize(("name", "alg"), ALGORITHMS, ids=[name for name, _ in ALGORITHMS])
def test_step_semantics(name: str, alg: Any) -> None:
    case = CASE["counting-state"]
    solver = om.init(case.problem(), alg, maxiters=6)
    assert isinstance(solver, om.Solver)
    assert (solver.iterations, solver.done, solver.retcode) == (0, False, None)
    assert solver.algorithm is alg
    assert canon(solver.u) == canon(U0)
    assert solver.state == {"calls": 0}
    went_on = True
    while went_on:
        before = solver.iterations
        went_on = solver.step()
        if went_on:
            assert (solver.iterations, solver.done, solver.retcode) == (before + 1, False, None)
        else:
            assert solver.done and isinstance(solver.retcode, om.ReturnCode)
            assert solver.iterations in (before, before + 1)
    ended = (solver.iterations, solver.retcode, canon(solver.u), canon(solver.state))
    for _ in range(2):  # nothing happens once the run has ended
        assert solver.step() is False
        assert (solver.iterations, solver.retcode, canon(solver.u), canon(solver.state)) == ended
    sol = solver.solve()
    assert solver.solve() is sol  # the same Solution on later calls
    assert solver.step() is False and solver.solve() is sol
    assert sol.retcode is solver.retcode and sol.stats.iterations == solver.iterations
    assert fingerprint(sol) == fingerprint(om.solve(case.problem(), alg, maxiters=6))
    if alg.traits.single_call_per_step:  # first-order: no convergence test, the budget ends it
        assert (solver.iterations, solver.retcode) == (6, om.ReturnCode.MAXITERS)


@pytest.mark.parametrize("alg", [om.Adam(lr=0.1), om.OLBFGS(lr=0.5)], ids=lambda a: type(a).__name__)
def test_step_takes_one_step_when_nan_policy_skips_it(alg: Any) -> None:
    """A skipped step (nan_policy="skip") counts as an iteration: step() takes it and returns
    (`_drive` checks its step limit after a skip too, not only after an update)."""
    full = om.solve(CASE["minibatches"].problem(), alg, data=POISONED, nan_policy="skip")
    assert (full.stats.iterations, full.stats.skipped) == (len(POISONED), 1)
    solver = om.init(CASE["minibatches"].problem(), alg, data=POISONED, nan_policy="skip")
    iterations = []
    while solver.step():
        iterations.append(solver.iterations)
    assert iterations == list(range(1, len(POISONED) + 1))


def test_u_and_state_are_copies() -> None:
    solver = om.init(CASE["rng-state"].problem(), om.Adam(lr=0.1), maxiters=5)
    solver.step()
    u, state = solver.u, solver.state
    u[:] = 99.0
    state["calls"] = -1
    state["gen"].standard_normal(10)
    assert solver.u[0] != 99.0 and solver.state["calls"] == 1
    assert canon(solver.state["gen"]) != canon(state["gen"])
    reference = om.solve(CASE["rng-state"].problem(), om.Adam(lr=0.1), maxiters=5)
    assert fingerprint(solver.solve()) == fingerprint(reference)


@pytest.mark.parametrize(("name", "alg"), ALGORITHMS, ids=[name for name, _ in ALGORITHMS])
def test_a_checkpoint_is_a_snapshot_and_resumes_the_same_run_every_time(name: str, alg: Any) -> None:
    case = CASE["counting-state"]
    solver = om.init(case.problem(), alg, maxiters=12)
    for _ in range(3):
        solver.step()
    checkpoint = solver.checkpoint()
    frozen = pickle.dumps(checkpoint)
    fields = ("x", "opt_state", "state", "counts", "skips", "elapsed", "consumed", "loss", "ended")
    seen = {name: canon(getattr(checkpoint, name)) for name in fields}
    assert canon(checkpoint.x) == canon(solver.u) and checkpoint.state == solver.state
    assert checkpoint.counts.iterations == 3 and checkpoint.consumed == 3 and checkpoint.ended is None
    assert (checkpoint.maxiters, checkpoint.maxtime, checkpoint.data_length, checkpoint.epochs) == (12, None, None, 1)
    assert (checkpoint.layout, checkpoint.stateful, checkpoint.final) == ("float64(3,)", True, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        checkpoint.x = np.zeros(3)  # type: ignore[misc]
    rest = solver.solve()  # stepping on does not reach the checkpoint
    first = om.resume(checkpoint, case.problem())
    assert (first.iterations, first.done, first.retcode) == (3, False, None)
    assert canon(first.u) == canon(checkpoint.x) and first.state == checkpoint.state
    first.step()  # nor does stepping a resumed solver
    assert {name: canon(getattr(checkpoint, name)) for name in fields} == seen
    again = [fingerprint(om.resume(checkpoint, case.problem()).solve()) for _ in range(2)]
    assert again == [fingerprint(first.solve())] * 2 == [fingerprint(rest)] * 2
    assert fingerprint(om.resume(pickle.loads(frozen), case.problem()).solve()) == fingerprint(rest)


@pytest.mark.parametrize("alg", [om.Adam(lr=0.1), om.Lion(lr=0.05), om.OLBFGS(lr=0.5)], ids=repr)
def test_the_state_sequence_the_objective_receives_is_unbroken_across_a_resume(alg: Any) -> None:
    case = CASE["rng-state"]
    solver = om.init(case.problem(), alg, maxiters=10)
    LOG.clear()
    for _ in range(4):
        solver.step()
    checkpoint = pickle.loads(pickle.dumps(solver.checkpoint()))
    sol = om.resume(checkpoint, case.problem()).solve()
    calls = [entry[3] for entry in LOG]
    per_step = 1 if alg.traits.single_call_per_step else 2  # OLBFGS: two calls on one snapshot
    assert calls == [step for step in range(10) for _ in range(per_step)]
    assert sol.state["calls"] == 10  # the state returned at each step's accepted point, committed
    assert canon(sol.state) == canon(om.solve(case.problem(), alg, maxiters=10).state)


def test_init_runs_the_probe_before_any_step_and_resume_does_not_run_it_again() -> None:
    case = CASE["deterministic"]
    LOG.clear()
    solver = om.init(case.problem(), om.BFGS(), maxiters=10)
    assert len(LOG) == 2 and LOG[0] == LOG[1]  # the two probe calls at u0, and no step
    assert LOG[0][1] == U0.tobytes()
    solver.step()
    checkpoint = solver.checkpoint()
    assert checkpoint.counts.probe_fevals == 2
    LOG.clear()
    sol = om.resume(checkpoint, case.problem()).solve()
    assert sol.stats.probe_fevals == 2
    assert all(entry[1] != U0.tobytes() for entry in LOG)
    LOG.clear()
    om.init(case.problem(), om.Adam(lr=0.1), maxiters=10)  # tolerates noise: no probe
    om.init(case.problem(), om.BFGS(), maxiters=10, check_determinism=False)
    assert LOG == []


def test_evaluation_counts_continue_across_a_resume() -> None:
    case = CASE["deterministic"]
    for alg, per_step in ((om.Adam(lr=0.1), (1, 1)), (om.OLBFGS(lr=0.5), (2, 2))):
        solver = om.init(case.problem(), alg, maxiters=9)
        for _ in range(4):
            solver.step()
        checkpoint = solver.checkpoint()
        assert checkpoint.counts == om.Counts(4, 4 * per_step[0], 4 * per_step[1], 0, 0)
        resumed = om.resume(pickle.loads(pickle.dumps(checkpoint)), case.problem())
        for _ in range(2):
            resumed.step()
        assert resumed.checkpoint().counts == om.Counts(6, 6 * per_step[0], 6 * per_step[1], 0, 0)
        sol = resumed.solve()
        final = 1 if not alg.loss_at_new_iterate else 0  # the evaluation at the returned iterate
        assert (sol.stats.iterations, sol.stats.fevals, sol.stats.gevals) == (
            9,
            9 * per_step[0] + final,
            9 * per_step[1],
        )
        assert fingerprint(sol) == fingerprint(om.solve(case.problem(), alg, maxiters=9))


def test_a_large_iterate_whose_memory_is_recycled_checkpoints_and_resumes_exactly() -> None:
    n = RECYCLE_MIN_SIZE

    prob = om.OptimizationProblem(
        lambda u, p: 0.5 * float(u @ u), np.linspace(-1.0, 1.0, n), grad=lambda u, p: u.copy()
    )
    for alg in (om.SGD(lr=0.1), om.SGD(lr=0.1, momentum=0.9), om.Adam(lr=0.01)):
        full = om.solve(prob, alg, maxiters=8)
        solver = om.init(prob, alg, maxiters=8)
        for _ in range(3):
            solver.step()
        checkpoint = solver.checkpoint()
        x = checkpoint.x.copy()
        assert fingerprint(solver.solve()) == fingerprint(full)
        assert np.array_equal(checkpoint.x, x)  # the run's recycled memory is not the checkpoint's
        resumed = [om.resume(checkpoint, prob).solve() for _ in range(2)]
        assert [fingerprint(sol) for sol in resumed] == [fingerprint(full)] * 2


# -- time, callbacks -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_maxtime_counts_the_time_before_the_checkpoint_and_not_the_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)

    def slow(u: Any, p: Any) -> Any:
        clock.now += 1.0  # every call takes one second
        return _value(u, TARGET)

    prob = om.OptimizationProblem(slow, U0)
    full = om.solve(prob, om.Adam(lr=0.1), maxtime=10.5)
    # The first step that ends 10.5 s after the start is the 11th; one more call at the end.
    assert (full.retcode, full.stats.iterations, full.stats.time) == (om.ReturnCode.MAXTIME, 11, 12.0)

    solver = om.init(prob, om.Adam(lr=0.1), maxtime=10.5)
    for _ in range(4):
        solver.step()
    checkpoint = solver.checkpoint()
    assert (checkpoint.elapsed, checkpoint.maxtime) == (4.0, 10.5)
    clock.now += 1e6  # the checkpoint sits on disk for a while
    resumed = om.resume(checkpoint, prob)
    clock.now += 2.0  # time between resume and the first step is the run's
    sol = resumed.solve()
    assert (sol.retcode, sol.stats.iterations, sol.stats.time) == (om.ReturnCode.MAXTIME, 9, 12.0)
    solver.step()  # the original run is live: the gap is its time, and it ends at once
    assert (solver.retcode, solver.iterations) == (om.ReturnCode.MAXTIME, 5)


def _info(info: om.IterationInfo) -> tuple[Any, ...]:
    return (info.iteration, canon(info.u), canon(info.objective), canon(info.state), info.epoch)


@pytest.mark.parametrize(
    ("case_name", "alg"),
    [
        ("rng-state-minibatches", om.Adam(lr=0.1)),
        ("rng-state", om.OLBFGS(lr=0.5)),
        ("deterministic", om.BFGS()),
        ("counting-state", om.BFGS()),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_a_callback_given_at_resume_sees_the_iterations_go_on_from_the_checkpoint(case_name: str, alg: Any) -> None:
    case = CASE[case_name]
    infos: list[tuple[Any, ...]] = []
    full = om.solve(case.problem(), alg, callback=lambda info: infos.append(_info(info)), **case.solve_kwargs)
    n = full.stats.iterations
    assert [i[0] for i in infos] == list(range(1, n + 1))
    k = n // 2
    early: list[tuple[Any, ...]] = []
    solver = om.init(case.problem(), alg, callback=lambda info: early.append(_info(info)), **case.solve_kwargs)
    for j in range(1, k + 1):
        solver.step()
        assert canon(solver.u) == infos[j - 1][1]  # the iterates of the uninterrupted run
    assert early == infos[:k]
    late: list[tuple[Any, ...]] = []
    resumed = om.resume(
        pickle.loads(pickle.dumps(solver.checkpoint())),
        case.problem(),
        data=case.solve_kwargs.get("data"),
        callback=lambda info: late.append(_info(info)),
    )
    assert fingerprint(resumed.solve()) == fingerprint(full)
    assert late == infos[k:]
    if case.solve_kwargs.get("data") is not None:
        assert [i[4] for i in late] == [(j // len(BATCHES)) + 1 for j in range(k, n)]


def test_a_callback_given_at_resume_can_stop_the_run() -> None:
    case = CASE["deterministic"]
    solver = om.init(case.problem(), om.Adam(lr=0.1), maxiters=20)
    for _ in range(5):
        solver.step()
    checkpoint = solver.checkpoint()
    resumed = om.resume(checkpoint, case.problem(), callback=lambda info: info.iteration >= 8)
    sol = resumed.solve()
    assert (sol.retcode, sol.stats.iterations) == (om.ReturnCode.TERMINATED, 8)
    sol = om.resume(checkpoint, case.problem()).solve()  # a checkpoint holds no callback
    assert (sol.retcode, sol.stats.iterations) == (om.ReturnCode.MAXITERS, 20)


# -- minibatches: the position in the data --------------------------------------------------------


def test_the_position_in_the_data_is_checkpointed() -> None:
    case = CASE["minibatches"]
    solver = om.init(case.problem(), om.Adam(lr=0.1), **case.solve_kwargs)
    positions = []
    while not solver.done:
        checkpoint = solver.checkpoint()
        positions.append((checkpoint.consumed, checkpoint.counts.iterations))
        assert checkpoint.data_length == len(BATCHES) and checkpoint.epochs == 2
        solver.step()
    # The last batch's step cannot tell that no batch follows: one more step() finds the end.
    assert positions == [(k, k) for k in range(2 * len(BATCHES) + 1)]
    sol = solver.solve()
    assert sol.message == f"all 2 epoch(s) of data were used ({2 * len(BATCHES)} steps)"


def test_data_as_a_tuple_is_checkpointed_like_a_list() -> None:
    case = CASE["minibatches"]
    full = om.solve(case.problem(), om.Adam(lr=0.1), **case.solve_kwargs)
    solver = om.init(case.problem(), om.Adam(lr=0.1), data=tuple(BATCHES), epochs=2)
    for _ in range(5):
        solver.step()
    sol = om.resume(pickle.loads(pickle.dumps(solver.checkpoint())), case.problem(), data=tuple(BATCHES)).solve()
    assert fingerprint(sol) == fingerprint(full)


@pytest.mark.parametrize(
    "make_data", [lambda: iter(BATCHES), lambda: (b for b in BATCHES)], ids=["iterator", "generator"]
)
def test_a_run_over_a_one_shot_iterator_cannot_be_checkpointed(make_data: Callable[[], Any]) -> None:
    case = CASE["minibatches"]
    full = om.solve(case.problem(), om.Adam(lr=0.1), data=BATCHES)
    solver = om.init(case.problem(), om.Adam(lr=0.1), data=make_data())
    with pytest.raises(ValueError, match="cannot be checkpointed"):
        solver.checkpoint()
    solver.step()
    solver.step()
    with pytest.raises(ValueError, match="cannot be checkpointed"):
        solver.checkpoint()
    assert fingerprint(solver.solve()) == fingerprint(full)  # the refusal changes nothing


# -- refusals and bad arguments --------------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, u: Any, p: Any, *state: Any) -> Any:
        self.calls += 1
        value = anp.sum(u**2)
        return (value, state[0]) if state else value


@pytest.mark.parametrize("cls", NOT_CHECKPOINTABLE, ids=lambda cls: cls.__name__)
def test_an_algorithm_without_supports_checkpoint_is_refused_before_any_call(cls: type) -> None:
    f = Counter()
    bounds = (-5.0, 5.0) if cls.traits.requires_bounds else None
    prob = om.OptimizationProblem(f, np.array([1.0, 2.0]), bounds=bounds)
    alg = configured(cls)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.init(prob, alg, maxiters=10)
    assert [v.trait for v in info.value.violations] == ["supports_checkpoint"]  # a rule of traits.py
    assert cls.__name__ in str(info.value)
    assert "Why: om.init takes the run step by step, to checkpoint and resume it" in str(info.value)
    assert set(info.value.alternatives) == {
        c.__name__ for c in om.algorithms(for_problem=prob, supports_checkpoint=True)
    }
    with pytest.raises(om.IncompatibleAlgorithmError, match="supports_checkpoint"):
        om.init(prob, alg)
    assert f.calls == 0


@pytest.mark.parametrize(
    "chain",
    [om.Chain((om.Adam(lr=0.1), 5), om.BFGS()), om.Chain((om.Adam(lr=0.1), 5), (om.SGD(lr=0.01), 5))],
    ids=["Adam-BFGS", "Adam-SGD"],
)
def test_a_chain_is_refused_before_any_call(chain: om.Chain) -> None:
    f = Counter()
    with pytest.raises(ValueError, match="supports_checkpoint"):
        om.init(om.OptimizationProblem(f, np.array([1.0, 2.0])), chain, maxiters=10)
    assert f.calls == 0


def test_the_default_algorithm_is_used_when_it_can_be_checkpointed() -> None:
    case = CASE["deterministic"]
    solver = om.init(case.problem())
    assert solver.algorithm == om.BFGS()
    assert fingerprint(solver.solve()) == fingerprint(om.solve(case.problem()))
    stateful = CASE["rng-state"]
    solver = om.init(stateful.problem(), maxiters=5)
    assert isinstance(solver.algorithm, om.Adam)
    assert fingerprint(solver.solve()) == fingerprint(om.solve(stateful.problem(), maxiters=5))
    f = Counter()
    boxed = om.OptimizationProblem(f, np.array([1.0, 2.0]), bounds=(-5.0, 5.0))  # default: LBFGS
    with pytest.raises(ValueError, match="supports_checkpoint"):
        om.init(boxed)
    assert f.calls == 0


class HiddenState:
    """Hides a counter: the probe sees two different values at u0."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, u: Any, p: Any) -> Any:
        self.calls += 1
        return anp.sum(u**2) + 1e-3 * self.calls


BAD: list[tuple[str, Callable[[Callable[..., Any]], tuple[Any, Any, dict[str, Any]]]]] = [
    ("maxiters=0", lambda f: (_quad(f), om.Adam(), {"maxiters": 0})),
    ("maxiters=-3", lambda f: (_quad(f), om.Adam(), {"maxiters": -3})),
    ("maxiters=2.5", lambda f: (_quad(f), om.Adam(), {"maxiters": 2.5})),
    ("maxiters=True", lambda f: (_quad(f), om.Adam(), {"maxiters": True})),
    ("maxiters='10'", lambda f: (_quad(f), om.Adam(), {"maxiters": "10"})),
    ("maxtime=0", lambda f: (_quad(f), om.Adam(), {"maxtime": 0})),
    ("maxtime=inf", lambda f: (_quad(f), om.Adam(), {"maxtime": math.inf})),
    ("maxtime=nan", lambda f: (_quad(f), om.Adam(), {"maxtime": math.nan})),
    ("maxtime=True", lambda f: (_quad(f), om.Adam(), {"maxtime": True})),
    ("callback=42", lambda f: (_quad(f), om.Adam(), {"maxiters": 5, "callback": 42})),
    ("epochs=0", lambda f: (_quad(f), om.Adam(), {"data": BATCHES, "epochs": 0})),
    ("epochs=1.5", lambda f: (_quad(f), om.Adam(), {"data": BATCHES, "epochs": 1.5})),
    ("epochs=2 without data", lambda f: (_quad(f), om.Adam(), {"maxiters": 5, "epochs": 2})),
    ("data='abc'", lambda f: (_quad(f), om.Adam(), {"data": "abc"})),
    ("data=5", lambda f: (_quad(f), om.Adam(), {"data": 5})),
    ("data=[]", lambda f: (_quad(f), om.Adam(), {"data": []})),
    ("data=iterator epochs=2", lambda f: (_quad(f), om.Adam(), {"data": iter(BATCHES), "epochs": 2})),
    ("alg=class", lambda f: (_quad(f), om.Adam, {"maxiters": 5})),
    ("alg=string", lambda f: (_quad(f), "Adam", {"maxiters": 5})),
    ("prob=string", lambda f: ("prob", om.Adam(), {"maxiters": 5})),
    ("nan_policy='ignore'", lambda f: (_quad(f), om.Adam(), {"maxiters": 5, "nan_policy": "ignore"})),
    ("max_skips=0", lambda f: (_quad(f), om.Adam(), {"maxiters": 5, "nan_policy": "skip", "max_skips": 0})),
    ("check_determinism='yes'", lambda f: (_quad(f), om.BFGS(), {"check_determinism": "yes"})),
    ("no budget", lambda f: (_quad(f), om.Adam(), {})),
    ("default without budget", lambda f: (_quad(f, state={"calls": 0}), None, {})),
    ("BFGS with data", lambda f: (_quad(f), om.BFGS(), {"data": BATCHES})),
    ("BFGS with an evolving state", lambda f: (_quad(f, state={"calls": 0}), om.BFGS(), {})),
    ("OLBFGS with bounds", lambda f: (_quad(f, bounds=(-5.0, 5.0)), om.OLBFGS(lr=0.1), {"maxiters": 5})),
    ("stochastic problem with BFGS", lambda f: (_quad(f, stochastic=True), om.BFGS(), {})),
]


def _quad(f: Callable[..., Any], **kwargs: Any) -> om.OptimizationProblem:
    return om.OptimizationProblem(f, np.array([1.0, 2.0]), **kwargs)


@pytest.mark.parametrize("make", [make for _, make in BAD], ids=[name for name, _ in BAD])
def test_bad_arguments_give_the_errors_solve_gives_before_any_call(
    make: Callable[[Callable[..., Any]], tuple[Any, Any, dict[str, Any]]],
) -> None:
    errors = []
    for entry in (om.solve, om.init):
        f = Counter()
        prob, alg, kwargs = make(f)
        with pytest.raises((TypeError, ValueError)) as info:
            entry(prob, alg, **kwargs)
        errors.append((type(info.value), _refusal(info.value)))
        assert f.calls == 0
    assert errors[1] == errors[0]


def _refusal(exc: BaseException) -> str:
    """An error's message; for a refused pair, its failed rules (the alternatives it lists
    differ: `init` accepts the step-wise algorithms alone)."""
    if isinstance(exc, om.IncompatibleAlgorithmError):
        return "\n".join(line for line in str(exc).splitlines() if line.startswith("  - "))
    return str(exc)


def test_the_determinism_probe_refuses_at_init_as_at_solve() -> None:
    errors = []
    for entry in (om.solve, om.init):
        f = HiddenState()
        with pytest.raises(om.IncompatibleAlgorithmError) as info:
            entry(om.OptimizationProblem(f, np.array([1.0, 2.0])), om.BFGS())
        errors.append(str(info.value))
        assert f.calls == 2  # the probe's two calls, and no step
    assert errors[1] == errors[0]
    assert "determinism probe" in errors[0]


@pytest.mark.parametrize(
    "value", [None, {"x": np.zeros(2)}, b"not unpickled", "checkpoint"], ids=["None", "dict", "bytes", "str"]
)
def test_resume_refuses_what_is_not_a_checkpoint(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^checkpoint must be an om\.Checkpoint \(from Solver\.checkpoint\(\)\), got "):
        om.resume(value, CASE["deterministic"].problem())


def test_resume_refuses_a_solver_a_solution_and_a_bad_callback() -> None:
    prob = CASE["deterministic"].problem()
    solver = om.init(prob, om.Adam(lr=0.1), maxiters=3)
    with pytest.raises(TypeError, match="Checkpoint"):
        om.resume(solver, prob)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Checkpoint"):
        om.resume(solver.solve(), prob)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^callback must be callable as callback\(info\) or None, got 42$"):
        om.resume(solver.checkpoint(), prob, callback=42)  # type: ignore[arg-type]


# -- exceptions --------------------------------------------------------------------------------------


class Boom(Exception):
    """The user's own error."""


class Raising:
    """`smooth` that raises `error` at call number `at` (None: never)."""

    def __init__(self, at: int | None, error: BaseException) -> None:
        self.at = at
        self.error = error
        self.calls = 0

    def __call__(self, u: Any, p: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise copy.copy(self.error)
        return _value(u, TARGET)


def _prob(f: Callable[..., Any]) -> om.OptimizationProblem:
    return om.OptimizationProblem(f, U0)


def _raised(run: Callable[[], Any], error: BaseException) -> BaseException:
    with pytest.raises(type(error)) as info:
        run()
    return info.value


def _solve_or_step(solver: om.Solver) -> None:
    while solver.step():
        pass


@pytest.mark.parametrize("error", [Boom("in f"), KeyboardInterrupt()], ids=["Boom", "KeyboardInterrupt"])
@pytest.mark.parametrize(("name", "alg"), ALGORITHMS, ids=[name for name, _ in ALGORITHMS])
def test_an_exception_in_step_carries_the_partial_solution_and_note_that_solve_attaches(
    name: str, alg: Any, error: BaseException
) -> None:
    at = 7
    by_solve = _raised(lambda: om.solve(_prob(Raising(at, error)), alg, maxiters=20), error)
    by_step = _raised(lambda: _solve_or_step(om.init(_prob(Raising(at, error)), alg, maxiters=20)), error)
    by_solver_solve = _raised(lambda: om.init(_prob(Raising(at, error)), alg, maxiters=20).solve(), error)
    for exc in (by_step, by_solver_solve):
        assert type(exc) is type(error)
        assert exc.__notes__ == by_solve.__notes__  # type: ignore[attr-defined]
        assert "partial_solution" in exc.__notes__[-1]  # type: ignore[attr-defined]
        partial = exc.partial_solution  # type: ignore[attr-defined]
        assert partial.retcode is om.ReturnCode.FAILURE
        assert fingerprint(partial) == fingerprint(by_solve.partial_solution)  # type: ignore[attr-defined]


@pytest.mark.parametrize("alg", [om.Adam(lr=0.1), om.OLBFGS(lr=0.5), om.BFGS()], ids=lambda a: type(a).__name__)
def test_a_run_interrupted_mid_step_can_be_checkpointed_and_resumed(alg: Any) -> None:
    """Ctrl-C during step k + 1, then a checkpoint: it holds the run after k steps, and the resumed
    run ends where the uninterrupted one does (the aborted call is counted)."""
    full = om.solve(_prob(Raising(None, Boom())), alg, maxiters=12)
    f = Raising(None, KeyboardInterrupt())
    solver = om.init(_prob(f), alg, maxiters=12)
    for _ in range(4):
        solver.step()
    x = solver.u
    f.at = f.calls + 1
    with pytest.raises(KeyboardInterrupt):
        solver.step()
    checkpoint = solver.checkpoint()
    assert canon(checkpoint.x) == canon(x) and checkpoint.counts.iterations == 4
    sol = om.resume(checkpoint, _prob(f)).solve()
    mine, theirs = fingerprint(sol), fingerprint(full)
    for key in ("u", "objective", "state", "retcode", "message", "algorithm"):
        assert mine[key] == theirs[key], key
    assert sol.stats.iterations == full.stats.iterations
    assert sol.stats.fevals == full.stats.fevals + 1


@pytest.mark.parametrize("alg", [om.Adam(lr=0.1), om.OLBFGS(lr=0.5), om.BFGS()], ids=lambda a: type(a).__name__)
def test_an_exception_in_the_first_step_after_resume_carries_the_run_so_far(alg: Any) -> None:
    """As `solve` would report it: the iterate and loss of the last completed step, not u0 and
    NaN (the checkpoint carries the monitor's last step, which `resume` restores)."""
    k = 4
    probe = Raising(None, Boom())
    counter = om.init(_prob(probe), alg, maxiters=12)
    for _ in range(k):
        counter.step()
    at = probe.calls + 1  # the first call of step k + 1
    by_solve = _raised(lambda: om.solve(_prob(Raising(at, Boom("in f"))), alg, maxiters=12), Boom())

    f = Raising(None, Boom("in f"))
    solver = om.init(_prob(f), alg, maxiters=12)
    for _ in range(k):
        solver.step()
    checkpoint = solver.checkpoint()
    f.at = f.calls + 1
    by_resumed = _raised(lambda: om.resume(checkpoint, _prob(f)).step(), Boom())
    assert by_resumed.__notes__ == by_solve.__notes__  # type: ignore[attr-defined]
    partial = by_resumed.partial_solution  # type: ignore[attr-defined]
    assert partial.stats.iterations == k
    # The iterate at which the last completed step computed its loss (for Adam, which evaluates
    # before it updates, the one before the checkpoint's).
    assert checkpoint.evaluated is not None
    assert canon(partial.u) == canon(checkpoint.evaluated[0])
    assert partial.objective == checkpoint.evaluated[1]
    assert fingerprint(partial) == fingerprint(by_solve.partial_solution)  # type: ignore[attr-defined]


@pytest.mark.parametrize("alg", [om.SGD(lr=0.02), om.OLBFGS(lr=0.5), om.BFGS()], ids=lambda a: type(a).__name__)
def test_a_checkpoint_taken_after_solve_resumes_to_the_same_solution(alg: Any, tmp_path: Path) -> None:
    """For algorithms that evaluate f once more at the end (the first-order family on a
    deterministic problem), the checkpoint's counts include that evaluation, and it holds the
    Solution's loss and message (`Checkpoint.final`): the resumed solve() rebuilds the Solution
    without calling f again, so the counts are those of the uninterrupted run."""
    case = CASE["deterministic"]
    full = om.solve(case.problem(), alg, maxiters=8)
    solver = om.init(case.problem(), alg, maxiters=8)
    assert fingerprint(solver.solve()) == fingerprint(full)
    checkpoint = solver.checkpoint()
    assert checkpoint.ended is solver.retcode
    assert checkpoint.final is not None and checkpoint.final[1] == full.message
    assert checkpoint.counts.fevals == full.stats.fevals  # the final evaluation, if any, is counted once
    LOG.clear()
    for kept in (pickle.loads(pickle.dumps(checkpoint)), _saved_and_loaded(checkpoint, tmp_path)):
        resumed = om.resume(kept, case.problem())
        assert resumed.done and resumed.step() is False
        assert fingerprint(resumed.solve()) == fingerprint(full)
    assert LOG == []  # the Solution is rebuilt from the checkpoint, without calling f


@pytest.mark.parametrize("alg", [om.Adam(lr=0.1), om.OLBFGS(lr=0.5)], ids=lambda a: type(a).__name__)
def test_a_run_over_data_stepped_to_its_end_reports_the_last_loss(alg: Any) -> None:
    """The step after the last batch finds the data used up and takes no step; the Solution must
    still report the loss of the last step, as `solve` does (`_drive` returns the loss it was
    given when the schedule is already exhausted, not NaN)."""
    case = CASE["minibatches"]
    full = om.solve(case.problem(), alg, data=BATCHES)
    assert math.isfinite(full.objective)
    solver = om.init(case.problem(), alg, data=BATCHES)
    for _ in range(len(BATCHES)):
        assert solver.step() is True  # the last batch's step cannot tell that none follows
    at_the_end = solver.checkpoint()
    assert solver.step() is False and solver.iterations == len(BATCHES)
    assert solver.solve().objective == full.objective
    assert om.resume(at_the_end, case.problem(), data=BATCHES).solve().objective == full.objective


# -- the checkpoint file: save and load -------------------------------------------------------------


def _saved_and_loaded(checkpoint: om.Checkpoint, directory: Path, **save: Any) -> om.Checkpoint:
    path = directory / "checkpoint.npz"
    checkpoint.save(path, **save)
    return om.Checkpoint.load(path, allow_pickle=bool(save.get("allow_pickle")))


def typed(obj: Any) -> Any:
    """`canon`, with the exact type of every value and the memory order of every array: what a
    loaded checkpoint must give back (np.float64 is not float, a Fortran-ordered matrix stays so)."""
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.flags.f_contiguous, obj.flags.c_contiguous, obj.tobytes())
    if isinstance(obj, np.random.Generator):
        return ("Generator", type(obj.bit_generator).__name__, typed(obj.bit_generator.state))
    if isinstance(obj, dict):
        return ("dict", tuple((k, typed(v)) for k, v in obj.items()))
    if isinstance(obj, (tuple, list)):
        return (type(obj).__qualname__, tuple(typed(x) for x in obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return (type(obj).__qualname__, typed(dataclasses.asdict(obj)))
    return (type(obj).__qualname__, canon(obj))


CHECKPOINT_FIELDS = [f.name for f in dataclasses.fields(om.Checkpoint)]


def _stateful_case(alg: Any) -> Case:
    return CASE["rng-state"] if alg.traits.tolerates_stochastic_loss else CASE["counting-state"]


@pytest.mark.parametrize(("name", "alg"), ALGORITHMS, ids=[name for name, _ in ALGORITHMS])
def test_save_and_load_round_trip_every_field_bitwise_and_resume_the_same_run(
    name: str, alg: Any, tmp_path: Path
) -> None:
    """For every algorithm of ``om.algorithms(supports_checkpoint=True)`` (and variants whose state
    holds more), on a stateful problem (an RNG key and a Generator where the algorithm takes noise):
    every field comes back with its exact types and bytes, and the resumed run is the uninterrupted one."""
    case = _stateful_case(alg)
    full = om.solve(case.problem(), alg, maxiters=12)
    solver = om.init(case.problem(), alg, maxiters=12)
    for _ in range(5):
        solver.step()
    checkpoint = solver.checkpoint()
    loaded = _saved_and_loaded(checkpoint, tmp_path)
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file is gone
    for part in CHECKPOINT_FIELDS:
        if part != "algorithm":
            assert typed(getattr(loaded, part)) == typed(getattr(checkpoint, part)), part
    assert loaded.algorithm == alg and type(loaded.algorithm) is type(alg) and repr(loaded.algorithm) == repr(alg)
    assert fingerprint(om.resume(loaded, case.problem()).solve()) == fingerprint(full)
    # After the end too, and once more from a checkpoint of the resumed run.
    assert fingerprint(solver.solve()) == fingerprint(full)
    again = om.resume(_saved_and_loaded(solver.checkpoint(), tmp_path), case.problem())
    assert fingerprint(again.solve()) == fingerprint(full)
    resumed = om.resume(_saved_and_loaded(checkpoint, tmp_path), case.problem())
    resumed.step()
    assert fingerprint(om.resume(_saved_and_loaded(resumed.checkpoint(), tmp_path), case.problem()).solve()) == (
        fingerprint(full)
    )


def test_the_algorithms_covered_are_every_one_with_supports_checkpoint() -> None:
    assert {type(alg) for _, alg in ALGORITHMS} == set(om.algorithms(supports_checkpoint=True))


def test_load_never_lets_numpy_unpickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    load = np.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("allow_pickle"))
        return load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    solver = om.init(CASE["rng-state"].problem(), om.Adam(lr=0.1), maxiters=5)
    solver.step()
    _saved_and_loaded(solver.checkpoint(), tmp_path)
    assert seen == [False]


@pytest.mark.parametrize("record", [True, "u"])
def test_the_history_is_saved_and_loaded(record: bool | str, tmp_path: Path) -> None:
    case = CASE["pytree"]
    full = om.solve(case.problem(), om.Adam(lr=0.1), maxiters=12, record=record)
    solver = om.init(case.problem(), om.Adam(lr=0.1), maxiters=12, record=record)
    for _ in range(5):
        solver.step()
    loaded = _saved_and_loaded(solver.checkpoint(), tmp_path)
    assert loaded.history is not None and len(loaded.history) == 5
    assert loaded.observe == (record, False, False)
    sol = om.resume(loaded, case.problem()).solve()
    assert sol.history is not None and full.history is not None
    for name in ("iteration", "objective", "fevals"):
        assert typed(getattr(sol.history, name)) == typed(getattr(full.history, name)), name
    assert typed(sol.history.u) == typed(full.history.u)
    assert fingerprint(sol) == fingerprint(full)


def test_a_run_over_minibatches_is_saved_and_resumed_with_the_data_given_again(tmp_path: Path) -> None:
    case = CASE["rng-state-minibatches"]
    full = om.solve(case.problem(), om.Adam(lr=0.1), **case.solve_kwargs)
    solver = om.init(case.problem(), om.Adam(lr=0.1), **case.solve_kwargs)
    for _ in range(6):
        solver.step()
    loaded = _saved_and_loaded(solver.checkpoint(), tmp_path)
    assert (loaded.data_length, loaded.epochs, loaded.consumed) == (len(BATCHES), 2, 6)
    assert fingerprint(om.resume(loaded, case.problem(), data=list(BATCHES)).solve()) == fingerprint(full)


def test_save_writes_exactly_the_path_given(tmp_path: Path) -> None:
    solver = om.init(CASE["deterministic"].problem(), om.Adam(lr=0.1), maxiters=5)
    path = tmp_path / "run.ckpt"
    solver.checkpoint().save(str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]
    assert om.Checkpoint.load(str(path)).counts.iterations == 0
    with pytest.raises(FileNotFoundError):
        om.Checkpoint.load(tmp_path / "missing.npz")


def test_a_checkpoint_of_a_lambda_objective_pickles_and_saves(tmp_path: Path) -> None:
    """A checkpoint holds no objective: a lambda (which pickle refuses) does not reach it."""
    prob = om.OptimizationProblem(
        lambda u, p, s: (anp.sum((u - p) ** 2), {"calls": s["calls"] + 1}), U0, p=TARGET, state={"calls": 0}
    )
    full = om.solve(prob, om.Adam(lr=0.1), maxiters=10)
    solver = om.init(prob, om.Adam(lr=0.1), maxiters=10)
    for _ in range(4):
        solver.step()
    checkpoint = solver.checkpoint()
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(prob)
    for kept in (pickle.loads(pickle.dumps(checkpoint)), _saved_and_loaded(checkpoint, tmp_path)):
        sol = om.resume(kept, prob).solve()
        assert fingerprint(sol) == fingerprint(full) and sol.state == {"calls": 10}


# -- what `save` needs pickle for -----------------------------------------------------------------


@dataclass
class Opaque:
    """An object of the user's own in the state: not plain data."""

    scale: float


def opaque(u: Any, p: Any, state: Any) -> Any:
    return state["model"].scale * _value(u, TARGET), {
        "model": Opaque(state["model"].scale),
        "calls": state["calls"] + 1,
    }


def test_a_state_that_is_not_plain_data_needs_allow_pickle_to_save_and_to_load(tmp_path: Path) -> None:
    prob = om.OptimizationProblem(opaque, U0, state={"model": Opaque(2.0), "calls": 0})
    full = om.solve(prob, om.Adam(lr=0.1), maxiters=10)
    solver = om.init(prob, om.Adam(lr=0.1), maxiters=10)
    for _ in range(4):
        solver.step()
    checkpoint = solver.checkpoint()
    path = tmp_path / "checkpoint.npz"
    message = (
        "Checkpoint.save: state['model'] (a Opaque) is not plain data (arrays, NumPy and Python numbers, strings, "
        "None, np.random.Generator, and dicts with str keys, lists and tuples of them), so it can be stored only "
        "with pickle, which can run code when the file is loaded: pass allow_pickle=True to save it so (and to "
        "Checkpoint.load), or keep it plain"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        checkpoint.save(path)
    assert not path.exists() and not list(tmp_path.iterdir())
    checkpoint.save(path, allow_pickle=True)
    refusal = (
        f"{str(path)!r} holds state stored with pickle, and unpickling can run arbitrary code from the file: load it "
        "with Checkpoint.load(path, allow_pickle=True) only if you trust its source"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(refusal)}$"):
        om.Checkpoint.load(path)
    loaded = om.Checkpoint.load(path, allow_pickle=True)
    assert loaded.state == {"model": Opaque(2.0), "calls": 4}
    assert fingerprint(om.resume(loaded, prob).solve()) == fingerprint(full)


def test_a_schedule_that_is_not_one_of_optimetas_needs_allow_pickle(tmp_path: Path) -> None:
    solver = om.init(CASE["deterministic"].problem(), om.Adam(lr=lambda step: 0.1), maxiters=5)
    with pytest.raises(TypeError, match=r"^Checkpoint\.save: algorithm\.lr \(a function\) is not plain data"):
        solver.checkpoint().save(tmp_path / "checkpoint.npz")


def test_save_and_load_refuse_a_bad_allow_pickle(tmp_path: Path) -> None:
    checkpoint = om.init(CASE["deterministic"].problem(), om.Adam(lr=0.1), maxiters=5).checkpoint()
    with pytest.raises(TypeError, match=r"^allow_pickle must be True or False, got 'yes'$"):
        checkpoint.save(tmp_path / "c.npz", allow_pickle="yes")  # type: ignore[arg-type]
    checkpoint.save(tmp_path / "c.npz")
    with pytest.raises(TypeError, match=r"^allow_pickle must be True or False, got 1$"):
        om.Checkpoint.load(tmp_path / "c.npz", allow_pickle=1)  # type: ignore[arg-type]


# -- files that are not checkpoints, truncated or tampered ------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A checkpoint file of a stateful Adam run after 3 of 12 steps."""
    solver = om.init(CASE["rng-state"].problem(), om.Adam(lr=0.1), maxiters=12)
    for _ in range(3):
        solver.step()
    path = tmp_path / "checkpoint.npz"
    solver.checkpoint().save(path)
    return path


def _rewrite(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit the JSON metadata inside a checkpoint file, keeping its arrays."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(arrays["meta"].tobytes())
    edit(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_a_truncated_file_is_a_corrupted_checkpoint(saved: Path) -> None:
    blob = saved.read_bytes()
    saved.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=rf"^{re.escape(repr(str(saved)))} is a corrupted checkpoint \(a truncated"):
        om.Checkpoint.load(saved)


@pytest.mark.parametrize("content", [b"", b"hello", pickle.dumps({"x": 1})], ids=["empty", "text", "pickle"])
def test_a_file_that_is_not_an_archive_is_not_a_checkpoint(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{re.escape(repr(str(path)))} is not an optimeta checkpoint: not an \.npz"):
        om.Checkpoint.load(path)


def test_an_npz_archive_of_something_else_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.zeros(3))
    message = f"{str(path)!r} is not an optimeta checkpoint: the archive has no 'meta' entry"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        om.Checkpoint.load(path)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda meta: meta["counts"].update(iterations=-5),
            "is a corrupted checkpoint: Counts.iterations must be a non-negative integer, got -5",
        ),
        (
            lambda meta: meta["counts"].update(iterations=7),
            (
                "is a corrupted checkpoint: Checkpoint.consumed (3) must be at least counts.iterations (7): every "
                "step takes one item of the schedule"
            ),
        ),
        (
            lambda meta: meta["fields"].update(maxiters=0),
            "is a corrupted checkpoint: Checkpoint.maxiters must be a positive integer or None, got 0",
        ),
        (
            lambda meta: meta["parts"]["opt_state"].update(type="os.system"),
            (
                "is a corrupted checkpoint: an unknown class 'os.system' (only optimeta's own are rebuilt; a checkpoint "
                "saved by another version of optimeta may name a class this one does not have)"
            ),
        ),
        (
            lambda meta: meta["parts"]["algorithm"].update(type="LBFGS"),
            (
                "is a corrupted checkpoint: an unknown class 'LBFGS' (only optimeta's own are rebuilt; a checkpoint "
                "saved by another version of optimeta may name a class this one does not have)"
            ),
        ),
        (
            lambda meta: meta["parts"]["algorithm"]["fields"][0].__setitem__(1, -1.0),
            "is a corrupted checkpoint: lr must be ",
        ),
        (
            lambda meta: meta.update(ended="DONE"),
            "is a corrupted checkpoint: KeyError: 'DONE'",
        ),
        (
            lambda meta: meta["fields"].update(x={"array": "a99"}),
            "is a corrupted checkpoint: the archive has no entry 'a99'",
        ),
        (lambda meta: meta.pop("parts"), "is a corrupted checkpoint: KeyError: 'parts'"),
        (lambda meta: meta.update(format="something"), "is not an optimeta checkpoint: its format is not "),
        (lambda meta: meta.update(version=2), "is a checkpoint of format version 2; this optimeta reads version 1"),
    ],
    ids=[
        "negative-count",
        "iterations-beyond-steps",
        "maxiters=0",
        "unknown-class",
        "swapped-algorithm",
        "bad-hyperparameter",
        "bad-ended",
        "missing-array",
        "missing-parts",
        "format",
        "version",
    ],
)
def test_a_tampered_checkpoint_is_refused_by_load(
    edit: Callable[[dict[str, Any]], None], expected: str, saved: Path
) -> None:
    _rewrite(saved, edit)
    with pytest.raises(ValueError, match=f"^{re.escape(repr(str(saved)) + ' ' + expected)}") as info:
        om.Checkpoint.load(saved)
    assert type(info.value) is ValueError


def test_a_tampered_archive_entry_is_refused_without_unpickling(saved: Path) -> None:
    with np.load(saved, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["a0"] = np.array([Opaque(1.0)], dtype=object)  # an object array needs pickle to load
    with open(saved, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"is a corrupted checkpoint: Object arrays cannot be loaded"):
        om.Checkpoint.load(saved)


# -- the fields of a checkpoint, validated ----------------------------------------------------------


@pytest.fixture
def checkpoint() -> om.Checkpoint:
    """A checkpoint of a stateful Adam run after 3 of 12 steps (3 variables)."""
    solver = om.init(CASE["counting-state"].problem(), om.Adam(lr=0.1), maxiters=12)
    for _ in range(3):
        solver.step()
    return solver.checkpoint()


STEPWISE_NAMES = ", ".join(sorted(cls.__name__ for cls in CHECKPOINTABLE))

BAD_FIELDS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    (
        "counts-tuple",
        {"counts": (3, 3, 3, 0, 0)},
        TypeError,
        "Checkpoint.counts must be an om.Counts, got (3, 3, 3, 0, ...)",
    ),
    (
        "counts-beyond-steps",
        {"counts": om.Counts(5, 5, 5, 0, 0)},
        ValueError,
        "Checkpoint.consumed (3) must be at least counts.iterations (5): every step takes one item of the schedule",
    ),
    ("skips-tuple", {"skips": (0, 0, 0)}, TypeError, "Checkpoint.skips must be an om.Skips, got (0, 0, 0)"),
    (
        "skipped-beyond-iterations",
        {"skips": om.Skips(5, 4, 0)},
        ValueError,
        "Checkpoint.skips.skipped (4) must be at most counts.iterations (3)",
    ),
    ("maxiters=0", {"maxiters": 0}, ValueError, "Checkpoint.maxiters must be a positive integer or None, got 0"),
    ("maxiters=-1", {"maxiters": -1}, ValueError, "Checkpoint.maxiters must be a positive integer or None, got -1"),
    ("maxiters=2.5", {"maxiters": 2.5}, ValueError, "Checkpoint.maxiters must be a positive integer or None, got 2.5"),
    (
        "maxiters=True",
        {"maxiters": True},
        ValueError,
        "Checkpoint.maxiters must be a positive integer or None, got True",
    ),
    (
        "maxiters-below-iterations",
        {"maxiters": 2},
        ValueError,
        "Checkpoint.counts.iterations (3) must be at most maxiters (2)",
    ),
    ("maxtime=0", {"maxtime": 0}, ValueError, "Checkpoint.maxtime must be a positive, finite number or None, got 0"),
    (
        "maxtime=inf",
        {"maxtime": math.inf},
        ValueError,
        "Checkpoint.maxtime must be a positive, finite number or None, got inf",
    ),
    (
        "maxtime=nan",
        {"maxtime": math.nan},
        ValueError,
        "Checkpoint.maxtime must be a positive, finite number or None, got nan",
    ),
    (
        "maxtime='5'",
        {"maxtime": "5"},
        ValueError,
        "Checkpoint.maxtime must be a positive, finite number or None, got '5'",
    ),
    (
        "elapsed=-1",
        {"elapsed": -1.0},
        ValueError,
        "Checkpoint.elapsed must be a finite number of seconds >= 0, got -1.0",
    ),
    (
        "elapsed=nan",
        {"elapsed": math.nan},
        ValueError,
        "Checkpoint.elapsed must be a finite number of seconds >= 0, got nan",
    ),
    ("epochs=0", {"epochs": 0}, ValueError, "Checkpoint.epochs must be a positive integer, got 0"),
    ("epochs=2-without-data", {"epochs": 2}, ValueError, "Checkpoint.epochs must be 1 for a run without data, got 2"),
    ("consumed=-1", {"consumed": -1}, ValueError, "Checkpoint.consumed must be a non-negative integer, got -1"),
    (
        "consumed-beyond-data",
        {"data_length": 1, "consumed": 3},
        ValueError,
        "Checkpoint.consumed (3) must be at most epochs * data_length (1 * 1)",
    ),
    (
        "data_length=0",
        {"data_length": 0},
        ValueError,
        "Checkpoint.data_length must be a positive integer or None, got 0",
    ),
    ("x-list", {"x": [1.0, 2.0, 3.0]}, TypeError, "Checkpoint.x must be a NumPy array, got list"),
    (
        "x-2d",
        {"x": np.zeros((3, 1))},
        ValueError,
        "Checkpoint.x must be a non-empty 1-d float64 array, got float64 (3, 1)",
    ),
    (
        "x-float32",
        {"x": np.zeros(3, np.float32)},
        ValueError,
        "Checkpoint.x must be a non-empty 1-d float64 array, got float32 (3,)",
    ),
    ("x-empty", {"x": np.zeros(0)}, ValueError, "Checkpoint.x must be a non-empty 1-d float64 array, got float64 (0,)"),
    (
        "algorithm-whole-run",
        {"algorithm": om.LBFGS()},
        TypeError,
        (
            f"Checkpoint.algorithm must be an instance of a registered step-wise algorithm ({STEPWISE_NAMES}), got "
            f"{short_repr(om.LBFGS())}"
        ),
    ),
    (
        "algorithm-name",
        {"algorithm": "Adam"},
        TypeError,
        f"Checkpoint.algorithm must be an instance of a registered step-wise algorithm ({STEPWISE_NAMES}), got 'Adam'",
    ),
    (
        "ended-str",
        {"ended": "MAXITERS"},
        TypeError,
        "Checkpoint.ended must be an om.ReturnCode or None, got 'MAXITERS'",
    ),
    ("loss-str", {"loss": "0.5"}, TypeError, "Checkpoint.loss must be a real number, got '0.5'"),
    ("layout-empty", {"layout": ""}, TypeError, "Checkpoint.layout must be a non-empty str (describe_layout), got ''"),
    ("stateful-1", {"stateful": 1}, TypeError, "Checkpoint.stateful must be True or False, got 1"),
    (
        "state-of-a-stateless-run",
        {"stateful": False},
        ValueError,
        "Checkpoint.state must be None for a stateless run (stateful=False), got {'calls': 3}",
    ),
    (
        "final-while-running",
        {"final": (1.0, "done")},
        ValueError,
        "Checkpoint.final must be None while the run may go on (ended is None)",
    ),
    ("final-bad", {"final": 1.0}, TypeError, "Checkpoint.final must be (loss, message) or None, got 1.0"),
    ("best-size", {"best": (1.0, np.zeros(4))}, ValueError, "Checkpoint.best[1] must have the 3 elements of x, got 4"),
    (
        "best-bad",
        {"best": np.zeros(3)},
        TypeError,
        "Checkpoint.best must be (loss, iterate) or None, got array([0., 0., 0.])",
    ),
    (
        "evaluated-size",
        {"evaluated": (np.zeros(2), 1.0)},
        ValueError,
        "Checkpoint.evaluated[0] must have the 3 elements of x, got 2",
    ),
    (
        "observe-short",
        {"observe": (False, False)},
        TypeError,
        "Checkpoint.observe must be (record, progress, verbose), got (False, False)",
    ),
    (
        "record-without-history",
        {"observe": (True, False, False)},
        TypeError,
        "Checkpoint.history must be an om.History for a run with record, got None",
    ),
]


@pytest.mark.parametrize(
    ("change", "error", "message"), [row[1:] for row in BAD_FIELDS], ids=[row[0] for row in BAD_FIELDS]
)
def test_every_field_of_a_checkpoint_is_validated(
    change: dict[str, Any], error: type[Exception], message: str, checkpoint: om.Checkpoint
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$") as built:
        dataclasses.replace(checkpoint, **change)
    assert type(built.value) is error
    # A checkpoint that escaped validation (unpickled from an edited file) is refused by resume.
    edited = pickle.loads(pickle.dumps(checkpoint))
    for name, value in change.items():
        object.__setattr__(edited, name, value)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        om.resume(edited, CASE["counting-state"].problem())


COUNTS_OK = {"iterations": 5, "fevals": 5, "gevals": 5, "probe_fevals": 0, "hevals": 0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"iterations": -5}, "Counts.iterations must be a non-negative integer, got -5"),
        ({"probe_fevals": 1.5}, "Counts.probe_fevals must be a non-negative integer, got 1.5"),
        ({"iterations": True}, "Counts.iterations must be a non-negative integer, got True"),
        ({"hevals": "0"}, "Counts.hevals must be a non-negative integer, got '0'"),
    ],
    ids=["negative", "float", "bool", "str"],
)
def test_counts_are_non_negative_integers(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        om.Counts(**{**COUNTS_OK, **change})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 0, 0), "Skips.max_skips must be a non-negative integer, got -1"),
        ((2, 1, 2), "Skips.in_a_row must be at most max_skips (2) and skipped (1), got 2"),
        ((1, 5, 2), "Skips.in_a_row must be at most max_skips (1) and skipped (5), got 2"),
    ],
)
def test_skips_are_consistent(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        om.Skips(*args)


# -- resume: the checkpoint must fit the problem and the data ---------------------------------------


def _fit_error(checkpoint: om.Checkpoint, prob: Any, error: type[Exception], message: str, **kwargs: Any) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$") as info:
        om.resume(checkpoint, prob, **kwargs)
    assert type(info.value) is error


def test_resume_refuses_a_problem_whose_u_has_another_size(checkpoint: om.Checkpoint) -> None:
    prob = om.OptimizationProblem(counting, np.zeros(4), state={"calls": 0}, stochastic=False)
    _fit_error(
        checkpoint,
        prob,
        ValueError,
        "the checkpoint does not fit prob: its iterate has the structure float64(3,) (3 variables, "
        "Checkpoint.layout), prob.u0 has float64(4,) (4 variables)",
    )


def test_resume_refuses_a_problem_whose_u_has_another_structure(tmp_path: Path) -> None:
    case = CASE["pytree"]
    solver = om.init(case.problem(), om.Adam(lr=0.1), maxiters=5)
    solver.step()
    checkpoint = _saved_and_loaded(solver.checkpoint(), tmp_path)
    assert checkpoint.layout == "{'w': float64(2,), 'b': float64 scalar}"
    for u0, shown in (
        (np.zeros(3), "float64(3,)"),
        ({"w": np.zeros(2), "c": 0.0}, "{'w': float64(2,), 'c': float64 scalar}"),
        ({"w": np.zeros(2), "b": np.zeros(1)}, "{'w': float64(2,), 'b': float64(1,)}"),
        ([np.zeros(2), 0.0], "[float64(2,), float64 scalar]"),
    ):
        _fit_error(
            checkpoint,
            om.OptimizationProblem(smooth_tree, u0),
            ValueError,
            "the checkpoint does not fit prob: its iterate has the structure {'w': float64(2,), 'b': float64 scalar} "
            f"(3 variables, Checkpoint.layout), prob.u0 has {shown} (3 variables)",
        )
    assert fingerprint(om.resume(checkpoint, case.problem()).solve()) == fingerprint(
        om.solve(case.problem(), om.Adam(lr=0.1), maxiters=5)
    )


def test_resume_refuses_a_stateful_checkpoint_for_a_stateless_problem_and_back(checkpoint: om.Checkpoint) -> None:
    _fit_error(
        checkpoint,
        CASE["deterministic"].problem(),
        ValueError,
        "the checkpoint does not fit prob: Checkpoint.stateful is True (a run of a stateful problem (with state=)), "
        "but prob has no state: pass the problem of the checkpointed run",
    )
    stateless = om.init(CASE["deterministic"].problem(), om.Adam(lr=0.1), maxiters=5).checkpoint()
    _fit_error(
        stateless,
        CASE["counting-state"].problem(),
        ValueError,
        "the checkpoint does not fit prob: Checkpoint.stateful is False (a run of a stateless problem (without "
        "state=)), but prob has a state: pass the problem of the checkpointed run",
    )


def test_resume_refuses_data_that_is_not_the_runs() -> None:
    case = CASE["minibatches"]
    over_data = om.init(case.problem(), om.Adam(lr=0.1), data=BATCHES).checkpoint()
    _fit_error(
        over_data,
        case.problem(),
        ValueError,
        "the checkpointed run went over data (4 minibatches, Checkpoint.data_length): pass the same minibatches "
        "again, resume(checkpoint, prob, data=...)",
    )
    _fit_error(
        over_data,
        case.problem(),
        ValueError,
        "data has 3 minibatches, but the checkpointed run went over 4 (Checkpoint.data_length): pass the same "
        "minibatches, in the same order",
        data=BATCHES[:3],
    )
    with pytest.raises(TypeError, match=r"^data must be the sequence \(a list, a tuple\) of minibatches the "):
        om.resume(over_data, case.problem(), data=iter(BATCHES))  # type: ignore[arg-type]
    without = om.init(case.problem(), om.Adam(lr=0.1), maxiters=5).checkpoint()
    with pytest.raises(
        ValueError,
        match=r"^data= was given \(.*\), but the checkpointed run had no data \(Checkpoint\.data_length is None\)$",
    ):
        om.resume(without, case.problem(), data=BATCHES)


def test_resume_refuses_an_algorithm_that_does_not_accept_the_problem() -> None:
    checkpoint = om.init(CASE["deterministic"].problem(), om.BFGS(), maxiters=5).checkpoint()
    noisy_prob = om.OptimizationProblem(smooth, U0, stochastic=True)
    with pytest.raises(om.IncompatibleAlgorithmError) as by_resume:
        om.resume(checkpoint, noisy_prob)
    with pytest.raises(om.IncompatibleAlgorithmError) as by_solve:
        om.solve(noisy_prob, om.BFGS(), maxiters=5)
    assert str(by_resume.value) == str(by_solve.value)


def test_resume_refuses_an_algorithm_swapped_for_one_whose_state_differs() -> None:
    prob = CASE["deterministic"].problem()
    solver = om.init(prob, om.Adam(lr=0.1), maxiters=5)
    solver.step()
    checkpoint = solver.checkpoint()
    _fit_error(
        dataclasses.replace(checkpoint, algorithm=om.BFGS()),
        prob,
        TypeError,
        "Checkpoint.opt_state must be the state of BFGS (a BFGSState), got a AdamState: the algorithm and its state "
        "come from different runs",
    )
    plain_sgd = om.init(prob, om.SGD(lr=0.1), maxiters=5).checkpoint()
    _fit_error(
        dataclasses.replace(plain_sgd, algorithm=om.SGD(lr=0.1, momentum=0.9)),
        prob,
        ValueError,
        "Checkpoint.opt_state.velocity must be a float64 array of shape (3,) for SGD on 3 variables, got NoneType",
    )
    # Another step size for the same algorithm is the user's choice: it resumes.
    assert om.resume(dataclasses.replace(checkpoint, algorithm=om.Adam(lr=0.05)), prob).solve().stats.iterations == 5


def test_resume_refuses_what_is_not_a_problem(checkpoint: om.Checkpoint) -> None:
    _fit_error(
        checkpoint, "prob", TypeError, "prob must be the OptimizationProblem of the checkpointed run, got 'prob'"
    )
