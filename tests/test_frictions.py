"""Frictions a new user hit (project issue 14, item 5), each measured: `init` takes every option
of `solve`, with one check of them; a refused `Chain` names the stage; `StateMutationError`
shows what changed; every exception from f carries the run so far, whose objective is f at its
u; an unknown keyword suggests the name meant; a noisy loss's refusal leads with the algorithms
that accept it; the missing-extra hint can be pasted into zsh."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import autograd.numpy as anp
import numpy as np
import pytest
from catalogue import box_for
from test_faults import configured

import optimeta as om

ALL = om.algorithms()
TARGET = np.array([1.0, -0.5])
U0 = np.array([2.0, 2.0])


def _quartic(u: Any) -> Any:
    return anp.sum((u - TARGET) ** 2) + 0.1 * anp.sum(u**4)


def _quadratic(u: Any, p: Any) -> Any:
    return anp.sum((u - 1.0) ** 2)


def _keyed(u: Any, p: Any, state: dict[str, Any]) -> Any:
    # A dropout-like mask drawn from the explicit key: the loss is noisy.
    mask = np.random.default_rng(state["key"]).random(u.shape) > 0.1
    return anp.sum((u * mask - 1.0) ** 2), {"key": state["key"] + 1}


def _keyed_problem() -> om.OptimizationProblem:
    return om.OptimizationProblem(_keyed, np.zeros(3), state={"key": 0})


def _budget(cls: type) -> int | None:
    return 50 if not cls.traits.has_convergence_test else None


class Boom(Exception):
    """The user's own error type."""


# -- init takes solve's options ----------------------------------------------------------------


def _options(fn: Any) -> set[str]:
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_init_takes_every_option_solve_takes() -> None:
    assert _options(om.solve) == _options(om.init)


@pytest.mark.parametrize("record", [True, "u"])
def test_init_record_is_the_history_of_the_whole_run_through_steps_and_checkpoints(record: bool | str) -> None:
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    full = om.solve(prob, om.Adam(lr=0.1), maxiters=30, record=record)
    solver = om.init(prob, om.Adam(lr=0.1), maxiters=30, record=record)
    for _ in range(7):
        solver.step()
    resumed = om.resume(pickle.loads(pickle.dumps(solver.checkpoint(), protocol=pickle.HIGHEST_PROTOCOL)), prob)
    for _ in range(5):
        resumed.step()
    sol = resumed.solve()
    assert full.history is not None and sol.history is not None
    assert len(sol.history) == len(full.history) == 30
    for name in ("iteration", "objective", "fevals"):
        assert getattr(sol.history, name).tobytes() == getattr(full.history, name).tobytes(), name
    assert np.all(np.diff(sol.history.time) >= 0)
    if record == "u":
        assert [u.tobytes() for u in sol.history.u] == [u.tobytes() for u in full.history.u]  # type: ignore[union-attr]
    else:
        assert sol.history.u is None
    assert sol.u.tobytes() == full.u.tobytes()
    # The checkpoint's history is a snapshot: the solver went on without changing it.
    assert len(solver.checkpoint().history) == 7  # type: ignore[arg-type]


def test_init_solve_records_the_same_history_as_solve() -> None:
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    full = om.solve(prob, om.BFGS(), record=True)
    sol = om.init(prob, om.BFGS(), record=True).solve()
    assert sol.history is not None and full.history is not None
    assert sol.history.objective.tobytes() == full.history.objective.tobytes()
    assert sol.history.fevals.tobytes() == full.history.fevals.tobytes()


def test_init_without_record_keeps_no_history() -> None:
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    assert om.init(prob, om.Adam(lr=0.1), maxiters=5).solve().history is None


def test_init_verbose_logs_the_start_and_the_end(caplog: pytest.LogCaptureFixture) -> None:
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    with caplog.at_level(logging.INFO, logger="optimeta"):
        solver = om.init(prob, om.Adam(lr=0.1), maxiters=20, verbose=True)
        assert caplog.records == []  # init takes no step
        solver.step()
        sol = solver.solve()
    messages = [r.getMessage() for r in caplog.records if r.name == "optimeta"]
    assert messages[0] == "Adam: started on 2 variables, at most 20 steps"
    assert messages[-1].startswith(f"Adam: MAXITERS after 20 steps: objective {sol.objective:.6g}")


def test_a_resumed_run_logs_where_it_resumed(caplog: pytest.LogCaptureFixture) -> None:
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    solver = om.init(prob, om.Adam(lr=0.1), maxiters=20, verbose=True)
    with caplog.at_level(logging.INFO, logger="optimeta"):
        for _ in range(4):
            solver.step()
        caplog.clear()
        om.resume(solver.checkpoint(), prob).solve()
    messages = [r.getMessage() for r in caplog.records if r.name == "optimeta"]
    assert messages[0] == "Adam: started at step 5 on 2 variables, at most 20 steps"
    assert messages[-1].startswith("Adam: MAXITERS after 20 steps")


def test_init_progress_draws_a_bar_over_the_whole_run(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm", reason="progress=True needs tqdm (extra progress)")
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    solver = om.init(prob, om.Adam(lr=0.1), maxiters=25, progress=True)
    for _ in range(10):
        solver.step()
    sol = om.resume(solver.checkpoint(), prob).solve()
    out, err = capsys.readouterr()
    assert out == ""
    frames = [frame for frame in re.split(r"[\r\n]", err) if frame.strip()]
    assert frames[-1].startswith("Adam: 100%") and "25/25" in frames[-1], frames[-1]
    assert f"objective={sol.objective:.6g}" in frames[-1]
    assert any("10/25" in frame for frame in frames)  # the resumed bar starts where the run was


BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"record": "iterates"}, ValueError),
    ({"progress": 1}, TypeError),
    ({"verbose": "yes"}, TypeError),
    ({"maxiters": 0}, ValueError),
    ({"maxtime": -1.0}, ValueError),
    ({"epochs": 2}, ValueError),
    ({"nan_policy": "ignore"}, ValueError),
    ({"check_determinism": 1}, TypeError),
    ({"max_iters": 10}, TypeError),
]


@pytest.mark.parametrize(("options", "error"), BAD_OPTIONS, ids=[next(iter(o)) for o, _ in BAD_OPTIONS])
def test_a_bad_option_gets_the_same_error_from_init_and_solve(options: dict[str, Any], error: type) -> None:
    calls: list[Any] = []
    prob = om.OptimizationProblem(lambda u, p: calls.append(u) or anp.sum(u**2), np.zeros(2))
    messages = []
    for run in (om.solve, om.init):
        with pytest.raises(error) as info:
            run(prob, om.Adam(lr=0.1), **{"maxiters": 5, **options})
        assert type(info.value) is error
        messages.append(str(info.value).replace(f"{run.__name__}()", "<run>()"))
    assert messages[0] == messages[1]
    assert calls == []


def test_a_bad_progress_needs_no_tqdm_to_be_refused_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # not installed
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    messages = []
    for run in (om.solve, om.init):
        with pytest.raises(ImportError) as info:
            run(prob, om.Adam(lr=0.1), maxiters=5, progress=True)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


# -- a refused Chain names the stage -----------------------------------------------------------


def test_a_refused_chain_names_the_stage_exactly() -> None:
    chain = om.Chain((om.Adam(lr=0.1), 10), om.BFGS(), (om.SGD(lr=0.1), 10))
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(_keyed_problem(), chain, maxiters=40)
    lines = str(info.value).splitlines()
    assert lines[0] == (
        "Chain((Adam(lr=0.1, b1=0.9, b2=0.999, eps=1e-08), 10), BFGS(gtol=1e-05), "
        "(SGD(lr=0.1, momentum=0.0, nesterov=False), 10)) cannot solve this problem (the objective was not "
        "called): stage 2 of 3 (BFGS) refuses it:"
    )
    assert lines[1].startswith(
        "  - stage 2 of 3 (BFGS), tolerates_stochastic_loss: the problem needs tolerates_stochastic_loss=True, "
        "BFGS has tolerates_stochastic_loss=False. Why: the problem's state evolves"
    )
    assert lines[2].startswith("Algorithms that accept this problem: ")
    assert lines[3].startswith("To use BFGS all the same: ")
    assert len(lines) == 4
    err = info.value
    assert [(i, type(alg).__name__, [v.trait for v in found]) for i, alg, found in err.stages] == [
        (2, "BFGS", ["tolerates_stochastic_loss"])
    ]
    assert [v.trait for v in err.violations] == ["tolerates_stochastic_loss"]


def test_a_chain_refused_by_several_stages_names_each() -> None:
    chain = om.Chain(om.LBFGS(), (om.Adam(lr=0.1), 10), om.BFGS())
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(_keyed_problem(), chain, maxiters=40)
    lines = str(info.value).splitlines()
    assert lines[0].endswith(
        "cannot solve this problem (the objective was not called): stages 1 (LBFGS) and 3 (BFGS) of 3 refuse it:"
    )
    assert lines[1].startswith("  - stage 1 of 3 (LBFGS), tolerates_stochastic_loss: ")
    assert lines[2].startswith("  - stage 3 of 3 (BFGS), tolerates_stochastic_loss: ")
    assert lines[4].startswith("To use LBFGS and BFGS all the same: ")


def test_a_chain_refused_by_the_probe_names_the_stage() -> None:
    rng = np.random.default_rng(0)
    prob = om.OptimizationProblem(lambda u, p: anp.sum(u**2) * rng.uniform(0.9, 1.1), np.ones(2))
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, om.Chain((om.Adam(lr=0.1), 5), om.BFGS()), maxiters=10)
    first = str(info.value).splitlines()[0]
    assert first.endswith(
        "cannot solve this problem (found by the determinism probe at u0): stage 2 of 2 (BFGS) refuses it:"
    )


def test_a_single_algorithm_is_refused_without_stages() -> None:
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(_keyed_problem(), om.BFGS())
    assert (
        str(info.value).splitlines()[0] == "BFGS(gtol=1e-05) cannot solve this problem (the objective was not called):"
    )
    assert info.value.stages == []


# -- StateMutationError shows what changed ----------------------------------------------------


def _mutating(change: Any, state: dict[str, Any]) -> om.OptimizationProblem:
    def f(u: Any, p: Any, s: dict[str, Any]) -> Any:
        return anp.sum(u**2), change(copy.deepcopy(s))

    return om.OptimizationProblem(f, np.ones(2), state=state, state_mode="constant")


def _bump_mean(s: dict[str, Any]) -> dict[str, Any]:
    s["stats"]["mean"] = s["stats"]["mean"] + 1.0
    return s


def _bump_count(s: dict[str, Any]) -> dict[str, Any]:
    s["count"] += 1
    return s


def _add_key(s: dict[str, Any]) -> dict[str, Any]:
    s["extra"] = 1
    return s


def test_state_mutation_error_shows_the_path_and_both_values() -> None:
    prob = _mutating(_bump_count, {"count": 3, "stats": {"mean": np.zeros(2)}})
    with pytest.raises(om.StateMutationError) as info:
        om.solve(prob, om.Adam(lr=0.1), maxiters=3)
    err = info.value
    assert (err.call, err.path, err.old, err.new) == (1, "state['count']", "3", "4")
    assert str(err).startswith(
        "call 1 of f changed state['count'], but the problem declares its state constant (state_mode='constant'); "
        "it was given 3 and returned 4: f must return the state it was given unchanged."
    )


def test_state_mutation_error_shortens_a_long_array() -> None:
    prob = _mutating(_bump_mean, {"count": 0, "stats": {"mean": np.zeros(100_000)}})
    with pytest.raises(om.StateMutationError) as info:
        om.solve(prob, om.Adam(lr=0.1), maxiters=3)
    err = info.value
    assert err.path == "state['stats']['mean']"
    assert err.old.startswith("array([0., 0., 0., ..., 0., 0., 0.]") and len(err.old) <= 100
    assert err.new.startswith("array([1., 1., 1., ..., 1., 1., 1.]") and len(err.new) <= 100
    assert f"it was given {err.old} and returned {err.new}:" in str(err)
    assert len(str(err)) < 700


def test_state_mutation_error_shows_a_changed_container() -> None:
    prob = _mutating(_add_key, {"count": 0})
    with pytest.raises(om.StateMutationError) as info:
        om.solve(prob, om.Adam(lr=0.1), maxiters=3)
    assert (info.value.path, info.value.old, info.value.new) == ("state", "{'count': 0}", "{'count': 0, 'extra': 1}")


def test_state_mutation_error_pickles_with_the_values() -> None:
    prob = _mutating(_bump_count, {"count": 3})
    with pytest.raises(om.StateMutationError) as info:
        om.solve(prob, om.BFGS())
    back = pickle.loads(pickle.dumps(info.value))
    assert (back.path, back.old, back.new, str(back)) == (info.value.path, "3", "4", str(info.value))


# -- every exception carries the run so far ----------------------------------------------------


class Raising:
    """The quartic, raising ``error`` at its ``at``-th call (every call of f counted, the
    determinism probe's included)."""

    def __init__(self, at: int, error: BaseException) -> None:
        self.at = at
        self.error = error
        self.calls = 0

    def __call__(self, u: Any, p: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return _quartic(u)


def _assert_partial(exc: BaseException, prob: om.OptimizationProblem) -> om.Solution:
    partial = getattr(exc, "partial_solution", None)
    assert isinstance(partial, om.Solution), f"no partial solution on {exc!r}"
    assert partial.retcode is om.ReturnCode.FAILURE
    assert len(getattr(exc, "__notes__", [])) == 1
    if np.isnan(partial.objective):
        # Nothing computed yet: the partial solution is u0.
        assert partial.stats.iterations == 0 and partial.u.tobytes() == prob.u0.tobytes()
    else:
        # f at u, with the value computed there (a deterministic problem).
        assert partial.objective == float(_quartic(partial.u)), (partial.u, partial.objective)
    return partial


@pytest.mark.parametrize("at", [1, 2, 3, 6, 11])
@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_every_algorithm_attaches_the_run_so_far_with_f_at_its_u(cls: type, at: int) -> None:
    # The determinism probe runs (it calls f first for the algorithms that trust exact values).
    # A run that ends in fewer calls raises at its last one.
    clean = Raising(-1, Boom())
    om.solve(om.OptimizationProblem(clean, U0, bounds=box_for(cls)), configured(cls), maxiters=_budget(cls))
    at = min(at, clean.calls)
    f = Raising(at, Boom("in f"))
    prob = om.OptimizationProblem(f, U0, bounds=box_for(cls))
    with pytest.raises(Boom) as info:
        om.solve(prob, configured(cls), maxiters=_budget(cls))
    partial = _assert_partial(info.value, prob)
    assert partial.stats.fevals + partial.stats.probe_fevals == f.calls == at


#: What is not an Exception but may end a run from inside f: each keeps its type and gets the note
#: and the partial solution, as any exception does.
BASE_EXCEPTIONS = [KeyboardInterrupt, SystemExit, GeneratorExit]


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS, ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_a_keyboard_interrupt_in_the_probe_carries_u0(cls: type, kind: type[BaseException]) -> None:
    f = Raising(1, kind())
    prob = om.OptimizationProblem(f, U0, bounds=box_for(cls))
    with pytest.raises(kind) as info:
        om.solve(prob, configured(cls), maxiters=_budget(cls))
    assert type(info.value) is kind
    partial = _assert_partial(info.value, prob)
    if om.traits(cls).tolerates_stochastic_loss:
        assert info.value.__notes__[0].startswith(f"optimeta: raised during step 1 of {cls.__name__} (")
    else:  # the determinism probe made the first call
        assert partial.stats.probe_fevals == 1 and partial.stats.fevals == 0
        assert info.value.__notes__[0].startswith(
            f"optimeta: raised during the determinism probe at u0, before step 1 of {cls.__name__} (0 steps"
        )
        assert (
            partial.message
            == f"interrupted by {kind.__name__} during the determinism probe at u0, before step 1 of {cls.__name__}"
        )


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS, ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_every_base_exception_mid_run_keeps_its_type_with_the_run_so_far(cls: type, kind: type[BaseException]) -> None:
    clean = Raising(-1, Boom())
    om.solve(om.OptimizationProblem(clean, U0, bounds=box_for(cls)), configured(cls), maxiters=_budget(cls))
    at = min(6, clean.calls)
    f = Raising(at, kind("from f"))
    prob = om.OptimizationProblem(f, U0, bounds=box_for(cls))
    with pytest.raises(kind) as info:
        om.solve(prob, configured(cls), maxiters=_budget(cls))
    assert type(info.value) is kind and info.value.args == ("from f",)
    partial = _assert_partial(info.value, prob)
    assert partial.stats.fevals + partial.stats.probe_fevals == f.calls == at
    assert partial.message.startswith(f"interrupted by {kind.__name__} during ")


@pytest.mark.parametrize("cls", [c for c in ALL if c.traits.supports_checkpoint], ids=lambda cls: cls.__name__)
def test_a_stepped_run_attaches_the_run_so_far_with_f_at_its_u(cls: type) -> None:
    f = Raising(7, Boom("in f"))
    prob = om.OptimizationProblem(f, U0)
    solver = om.init(prob, configured(cls), maxiters=_budget(cls), record=True)
    with pytest.raises(Boom) as info:
        while solver.step():
            pass
    partial = _assert_partial(info.value, prob)
    assert partial.history is not None and len(partial.history) == partial.stats.iterations


@pytest.mark.parametrize("cls", [c for c in ALL if c.traits.supports_checkpoint], ids=lambda cls: cls.__name__)
def test_a_resumed_run_attaches_the_run_so_far_with_f_at_its_u(cls: type) -> None:
    f = Raising(-1, Boom("in f"))
    prob = om.OptimizationProblem(f, U0)
    solver = om.init(prob, configured(cls), maxiters=_budget(cls))
    solver.step()
    solver.step()
    saved = solver.checkpoint()
    f.at = f.calls + 1  # the resumed run's first call raises
    with pytest.raises(Boom) as info:
        om.resume(saved, prob).step()
    partial = _assert_partial(info.value, prob)
    assert partial.stats.iterations == 2 and not np.isnan(partial.objective)


def test_an_exception_in_a_chains_probe_carries_u0() -> None:
    f = Raising(1, Boom("in f"))
    prob = om.OptimizationProblem(f, U0)
    chain = om.Chain((om.Adam(lr=0.1), 5), om.BFGS())
    with pytest.raises(Boom) as info:
        om.solve(prob, chain)
    partial = _assert_partial(info.value, prob)
    assert partial.algorithm == chain


def test_an_exception_in_the_users_gradient_in_the_probe_carries_u0() -> None:
    def grad(u: Any, p: Any) -> Any:
        raise Boom("in grad")

    prob = om.OptimizationProblem(lambda u, p: anp.sum(u**2), np.ones(2), grad=grad)
    with pytest.raises(Boom) as info:
        om.solve(prob, om.LBFGS())
    _assert_partial(info.value, prob)


# -- an unknown keyword suggests the name meant ------------------------------------------------


def _hyperparameters(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


WITH_HYPERPARAMETERS = [cls for cls in ALL if _hyperparameters(cls)]


@pytest.mark.parametrize("cls", WITH_HYPERPARAMETERS, ids=lambda cls: cls.__name__)
def test_a_misspelt_hyperparameter_suggests_the_right_one(cls: type) -> None:
    names = _hyperparameters(cls)
    for name in names:
        typo = name + "x"
        with pytest.raises(TypeError) as info:
            cls(**{typo: 1})
        assert str(info.value) == (
            f"{cls.__name__} got an unexpected keyword argument {typo!r}; did you mean {name!r}? "
            f"Its hyperparameters: {', '.join(names)}"
        )


@pytest.mark.parametrize("cls", [c for c in ALL if "lr" in _hyperparameters(c)], ids=lambda cls: cls.__name__)
def test_other_libraries_names_suggest_optimetas(cls: type) -> None:
    names = _hyperparameters(cls)
    aliases = {"learning_rate": "lr", "step_size": "lr", "beta1": "b1", "beta2": "b2", "epsilon": "eps"}
    for alias, meant in aliases.items():
        if meant not in names:
            continue
        with pytest.raises(TypeError, match=rf"^{cls.__name__} got an unexpected keyword argument '{alias}'; "):
            cls(**{alias: 0.1})
        with pytest.raises(TypeError) as info:
            cls(**{alias: 0.1})
        assert f"did you mean {meant!r}? Its hyperparameters: {', '.join(names)}" in str(info.value)


def test_adam_learning_rate_suggests_lr_exactly() -> None:
    with pytest.raises(TypeError) as info:
        om.Adam(learning_rate=1e-3)
    assert str(info.value) == (
        "Adam got an unexpected keyword argument 'learning_rate'; did you mean 'lr'? Its hyperparameters: lr, b1, b2, eps"
    )


def test_an_unknown_keyword_without_a_close_name_lists_the_hyperparameters() -> None:
    with pytest.raises(TypeError) as info:
        om.BFGS(momentum=0.9)
    assert str(info.value) == "BFGS got an unexpected keyword argument 'momentum'. Its hyperparameters: gtol"


def test_an_alias_suggests_only_a_valid_name() -> None:
    # maxiter is DualAnnealing's own hyperparameter: max_iter means it, not solve's maxiters.
    with pytest.raises(TypeError, match=r"did you mean 'maxiter'\? "):
        om.DualAnnealing(max_iter=10)


@pytest.mark.parametrize("run", [om.solve, om.init], ids=["solve", "init"])
@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("max_iters", "maxiters"),
        ("max_iter", "maxiters"),
        ("maxiter", "maxiters"),
        ("max_time", "maxtime"),
        ("callbacks", "callback"),
        ("nan_polcy", "nan_policy"),
        ("num_epochs", "epochs"),
    ],
)
def test_a_misnamed_run_option_suggests_the_right_one(run: Any, typo: str, meant: str) -> None:
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    with pytest.raises(TypeError) as info:
        run(prob, om.Adam(lr=0.1), **{typo: 10})
    message = str(info.value)
    assert message.startswith(f"{run.__name__}() got an unexpected keyword argument {typo!r}; did you mean {meant!r}? ")
    assert message.endswith(
        f"Its options: {', '.join(sorted(_options(run), key=list(inspect.signature(run).parameters).index))}"
    )


def test_resume_suggests_too() -> None:
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    saved = om.init(prob, om.Adam(lr=0.1), maxiters=3).checkpoint()
    with pytest.raises(
        TypeError, match=r"^resume\(\) got an unexpected keyword argument 'callbacks'; did you mean 'callback'\?"
    ):
        om.resume(saved, prob, callbacks=None)


def test_an_algorithm_still_pickles_copies_and_replaces() -> None:
    alg = om.Adam(lr=0.1)
    assert pickle.loads(pickle.dumps(alg)) == alg == copy.deepcopy(alg)
    assert dataclasses.replace(alg, lr=0.2) == om.Adam(lr=0.2)
    with pytest.raises(TypeError, match="did you mean 'lr'"):
        dataclasses.replace(alg, learning_rate=0.2)


# -- a noisy loss's refusal leads with the honest fixes ----------------------------------------


def _positions(message: str, *parts: str) -> list[int]:
    found = [message.find(part) for part in parts]
    assert all(i >= 0 for i in found), [p for p, i in zip(parts, found) if i < 0]
    return found


def test_a_stochastic_refusal_leads_with_the_accepting_algorithms_and_ends_with_the_declaration() -> None:
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(_keyed_problem(), om.BFGS())
    message = str(info.value)
    accepting, freeze, evaluate, declare = _positions(
        message,
        # No budget is given: the algorithms that accept the problem need one.
        "Algorithms that accept this problem, given maxiters= or maxtime=: AMSGrad, ",
        "freeze what drives it (a fixed RNG key",
        "evaluate it without noise",
        "declare so with stochastic=False",
    )
    assert accepting < freeze < evaluate < declare
    assert message.count("stochastic=False") == 1
    assert message.rstrip().endswith("declare so with stochastic=False.")
    assert "Only if the loss really is deterministic" in message


def test_a_declared_stochastic_refusal_does_not_suggest_the_opposite_declaration() -> None:
    prob = om.OptimizationProblem(_quadratic, np.zeros(2), stochastic=True)
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, om.BFGS())
    message = str(info.value)
    accepting, fix = _positions(message, "Algorithms that accept this problem", "To use BFGS all the same: evaluate")
    assert accepting < fix
    assert "stochastic=False" not in message


def test_a_minibatch_refusal_suggests_the_full_batch() -> None:
    prob = om.OptimizationProblem(lambda u, p: anp.sum((u - p) ** 2), np.zeros(2), p=np.zeros(2))
    with pytest.raises(om.IncompatibleAlgorithmError) as info:
        om.solve(prob, om.BFGS(), data=[np.zeros(2), np.ones(2)])
    message = str(info.value)
    accepting, fix = _positions(message, "Algorithms that accept this problem: ", "pass the whole data set as p")
    assert accepting < fix
    assert "stochastic=False" not in message


# -- the missing-extra hint can be pasted into zsh ----------------------------------------------


def test_a_missing_framework_names_the_quoted_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jax", None)  # an import of jax now fails, installed or not
    with pytest.raises(ModuleNotFoundError) as info:
        om.OptimizationProblem(lambda u, p: (u**2).sum(), np.zeros(2), grad="jax")
    assert "pip install 'optimeta[jax]'" in str(info.value)


def test_a_missing_tqdm_names_the_quoted_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    prob = om.OptimizationProblem(_quadratic, np.zeros(2))
    with pytest.raises(ImportError) as info:
        om.init(prob, om.Adam(lr=0.1), maxiters=3, progress=True)
    assert "pip install 'optimeta[progress]'" in str(info.value)


def test_a_missing_matplotlib_names_the_quoted_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    sol = om.solve(om.OptimizationProblem(_quadratic, np.zeros(2)), om.BFGS(), record=True)
    with pytest.raises(ImportError) as info:
        om.plot(sol)
    assert "pip install 'optimeta[plot]'" in str(info.value)


def test_every_install_hint_in_the_package_is_quoted() -> None:
    package = Path(om.__file__).parent
    unquoted = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"pip install (?!['\"])\S*\[", line)
    ]
    assert unquoted == []
