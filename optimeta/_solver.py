"""`init`, `Solver` and `resume`: a step-wise run taken one step at a time, checkpointed and resumed.

Optimization.jl's ``init`` / ``solve!`` interface, for long ML runs: the run is the one that
`solve` makes (the same driver loop, the same checks), held open between steps. A `Checkpoint`
is data only (the algorithm and its state, the iterate, the committed state, the counters, the
budgets used and the position in the data), never the problem, the objective or the data:
`resume` is given the problem (and the data) again and checks that the checkpoint fits them.
`Checkpoint.save` writes it to an ``.npz`` file that `Checkpoint.load` reads without running
code, so a run checkpointed at step k and resumed in a fresh process is bitwise identical to the
uninterrupted run.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ._checkpoint_io import Checkpoint, Counts, Skips, describe_layout
from ._objective import Objective
from ._observe import check_observe_options, logging_to_stderr
from ._problem import OptimizationProblem
from ._run import (
    Callback,
    Monitor,
    attach_partial,
    batches,
    drive,
    observer_for,
    planned_steps,
    solution,
    stepwise_solution,
)
from ._solution import ReturnCode, Solution
from ._solve import arguments, prepared
from ._state import copy_state, short_repr
from ._tree import children, is_container
from .backends._base import Algorithm, StepwiseAlgorithm, suggest_keywords
from .traits import Requirements, check_compatible, requirements, traits

__all__ = ["Checkpoint", "Counts", "Skips", "Solver", "init", "resume"]


class Solver:
    """A step-wise run held open: `step` it, `solve` it to the end, `checkpoint` it.

    Made by `init` or `resume`, never directly. The run is the one `solve` would make with the
    same arguments: ``init(prob, alg, maxiters=N).solve()`` gives the same `Solution`, bit for bit,
    however many `step` and `checkpoint` calls come in between. With ``record``, its
    ``history`` holds every step of the run (those before a checkpoint included); with
    ``progress``, the bar advances with every step and closes with `solve`; with ``verbose``,
    the run logs its start (at the first step), its progress and, in `solve`, its end.

    Attributes:
        algorithm: The algorithm instance.
        iterations: Steps completed so far.
        done: Whether the run has ended (a budget, convergence, the data, a non-finite value or
            the callback).
        retcode: Why it ended, or None while it may go on.
    """

    def __init__(
        self,
        prob: OptimizationProblem,
        alg: StepwiseAlgorithm[Any],
        req: Requirements,
        objective: Objective,
        monitor: Monitor,
        x: np.ndarray,
        opt_state: Any,
        data: Sequence[Any] | None,
        epochs: int,
        consumed: int,
        loss: float,
        ended: ReturnCode | None,
        observe: tuple[bool | str, bool, bool] = (False, False, False),
    ) -> None:
        self._prob = prob
        self.algorithm = alg
        self._req = req
        self._objective = objective
        self._monitor = monitor
        self._x = x
        self._opt_state = opt_state
        self._data = data
        self._epochs = epochs
        self._schedule = _Counted(itertools.islice(batches(data, epochs, prob.p), consumed, None), consumed)
        self._loss = loss
        self.retcode = ended
        self.solution: Solution | None = None
        # Once the Solution is made: its loss (minimisation sense) and message, which a
        # checkpoint keeps so that a resumed solve() rebuilds it without calling f again.
        self._final: tuple[float, str] | None = None
        self._observe = observe
        self._observer = observer_for(prob, *observe)
        self._started = False  # whether the observer was told that the run (re)started
        if self._observer is not None:
            self._observer.layout = objective.layout
            monitor.observer = self._observer

    @property
    def iterations(self) -> int:
        return self._monitor.iterations

    @property
    def done(self) -> bool:
        return self.retcode is not None

    @property
    def u(self) -> Any:
        """A copy of the current iterate, with the structure of ``u0``."""
        return self._objective.layout.to_user(self._x)

    @property
    def state(self) -> Any:
        """A copy of the committed state (None for a stateless problem)."""
        return copy_state(self._objective.state)

    def step(self) -> bool:
        """Take one step (nothing once the run has ended); True while the run may go on.

        Raises:
            Exception: Whatever the objective, the gradient or the callback raised, with the
                note and ``partial_solution`` that `solve` attaches.
        """
        if self.retcode is not None:
            return False
        self._advance(1)
        return self.retcode is None

    def solve(self) -> Solution:
        """Run to the end and return the `Solution` (the same one on every later call)."""
        if self.retcode is None:
            self._advance(None)
        if self.solution is None:
            assert self.retcode is not None
            alg, objective, monitor = self.algorithm, self._objective, self._monitor
            if self._final is None:
                end = (self._x, self._loss, self.retcode)
                sol = stepwise_solution(
                    alg, self._req, objective, monitor, end, self._data, self._epochs, self._opt_state
                )
                self._final = (objective.sign * sol.objective, sol.message)
            else:  # resumed after the Solution was made: the same one, without calling f again
                loss, message = self._final
                sol = solution(alg, objective, monitor, self._x, loss, self.retcode, message, None, self._opt_state)
            observer = self._observer
            if observer is not None:
                sol = replace(sol, history=observer.history())
                with logging_to_stderr(observer.verbose, observer.progress):
                    observer.end(sol)
            self.solution = sol
        return self.solution

    def _advance(self, limit: int | None) -> None:
        monitor, observer = self._monitor, self._observer
        with logging_to_stderr(self._observe[2], self._observe[1]):
            if observer is not None and not self._started:
                total = planned_steps(monitor.maxiters, self._data, self._epochs)
                observer.start(type(self.algorithm).__name__, self._x.size, total, monitor.iterations)
                self._started = True
            try:
                x, opt_state, loss, code = drive(
                    self.algorithm,
                    self._objective,
                    monitor,
                    self._schedule,
                    self._x,
                    self._opt_state,
                    limit,
                    self._loss,
                )
            except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
                attach_partial(exc, self.algorithm, self._objective, monitor)
                if observer is not None:
                    partial = getattr(exc, "partial_solution", None)
                    if isinstance(partial, Solution):
                        exc.partial_solution = replace(partial, history=observer.history())  # type: ignore[attr-defined]
                    observer.end(None, exc)
                    self._started = False
                raise
        self._x, self._opt_state, self._loss, self.retcode = x, opt_state, loss, code

    def checkpoint(self) -> Checkpoint:
        """The run so far as a `Checkpoint`: data only (copies: stepping on does not change it).

        It holds no problem, objective or data: resume it with ``om.resume(checkpoint, prob)``
        (``data=`` the same minibatches for a run over data). After `solve`, it holds the
        Solution's loss and message, and a resumed ``solve()`` gives that Solution again.

        Raises:
            ValueError: The run goes over ``data`` that is not a sequence (a one-shot iterator),
                whose position cannot be found again.
        """
        if self._data is not None and not isinstance(self._data, Sequence):
            raise ValueError(
                f"a run over data={type(self._data).__name__} cannot be checkpointed: its position cannot be "
                "found again; pass the minibatches as a list or another sequence"
            )
        obj, monitor = self._objective, self._monitor
        return Checkpoint(
            algorithm=self.algorithm,
            x=self._x.copy(),
            opt_state=copy.deepcopy(self._opt_state),
            state=copy_state(obj.state),
            counts=Counts(monitor.iterations, obj.fevals, obj.gevals, obj.probe_fevals, obj.hevals),
            skips=Skips(monitor.max_skips, monitor.skipped, monitor.skips_in_a_row),
            elapsed=time.perf_counter() - monitor.start,
            maxiters=monitor.maxiters,
            maxtime=monitor.maxtime,
            epochs=self._epochs,
            consumed=self._schedule.count,
            loss=self._loss,
            ended=self.retcode,
            layout=describe_layout(obj.layout.treedef),
            stateful=obj.stateful,
            data_length=None if self._data is None else len(self._data),
            final=self._final,
            best=None if monitor.best is None else (monitor.best[0], monitor.best[1].copy()),
            evaluated=None if monitor.last is None else (monitor.last[0].copy(), monitor.last[1]),
            observe=self._observe,
            history=None if self._observer is None else self._observer.history(),
        )


@suggest_keywords("options")
def init(
    prob: OptimizationProblem,
    alg: Algorithm | None = None,
    *,
    maxiters: int | None = None,
    maxtime: float | None = None,
    callback: Callback | None = None,
    data: Sequence[Any] | None = None,
    epochs: int = 1,
    check_determinism: bool = True,
    nan_policy: str = "stop",
    max_skips: int = 10,
    record: bool | str = False,
    progress: bool = False,
    verbose: bool = False,
) -> Solver:
    """Start a step-wise run without taking a step: a `Solver` to step, checkpoint and solve.

    Takes every option of `solve`, with the same meaning, and makes its checks (the options,
    traits, budget, determinism probe) now, before the first step, with the same errors. Only algorithms with the trait ``supports_checkpoint`` (the
    step-wise ones: the first-order family, BFGS, OLBFGS) can be run so; the scipy methods run
    as one call and cannot be stopped and resumed.

    Args:
        prob: The problem.
        alg: A step-wise algorithm instance (None: `default_algorithm`, if it is one).
        maxiters, maxtime, callback, data, epochs, check_determinism, nan_policy, max_skips, record,
            progress, verbose: As for `solve`, over the whole run (`Solver.step`, `Solver.solve`,
            and the runs resumed from its checkpoints): ``record`` gives the final `Solution` the
            history of every step.

    Returns:
        The `Solver`.

    Raises:
        IncompatibleAlgorithmError: An algorithm without ``supports_checkpoint`` (a rule of
            ``traits.py``, which lists the step-wise algorithms), among the refusals `solve`
            makes; any other error `solve` raises for the same arguments.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om, pickle
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> solver = om.init(prob, om.Adam(lr=0.1), maxiters=100)
        >>> for _ in range(40):
        ...     _ = solver.step()
        >>> saved = pickle.loads(pickle.dumps(solver.checkpoint()))  # data only: a lambda objective is fine
        >>> resumed = om.resume(saved, prob).solve()
        >>> full = om.solve(prob, om.Adam(lr=0.1), maxiters=100)
        >>> resumed.u.tobytes() == full.u.tobytes(), resumed.stats.iterations
        (True, 100)
    """
    alg, chosen, skips, req = arguments(
        prob,
        alg,
        maxiters,
        maxtime,
        callback,
        data,
        epochs,
        check_determinism,
        nan_policy,
        max_skips,
        record,
        progress,
        verbose,
        stepwise_reason="om.init takes the run step by step, to checkpoint and resume it",
    )
    if not isinstance(alg, StepwiseAlgorithm):  # declared supports_checkpoint, yet not step-wise
        raise TypeError(f"{type(alg).__name__} declares supports_checkpoint=True but is not a StepwiseAlgorithm")
    objective = prepared(prob, alg, req, maxiters, maxtime, data, check_determinism, chosen)
    monitor = Monitor(objective, maxiters, maxtime, callback)
    monitor.max_skips = skips
    monitor.keep_best = not req.stochastic and not req.evolving_state
    x0 = objective.x0.copy()
    observe = (record, progress, verbose)
    return Solver(prob, alg, req, objective, monitor, x0, alg.init(x0), data, epochs, 0, math.nan, None, observe)


@suggest_keywords("options")
def resume(
    checkpoint: Checkpoint,
    prob: OptimizationProblem,
    *,
    data: Sequence[Any] | None = None,
    callback: Callback | None = None,
    progress: bool | None = None,
    verbose: bool | None = None,
) -> Solver:
    """A `Solver` that goes on from a `Checkpoint`, in this process or another one.

    A checkpoint holds no problem, objective or data: ``prob`` (and ``data``, for a run over
    minibatches) are given again, and must be those of the checkpointed run for the resumed run
    to be the uninterrupted one. What can be checked is: the checkpoint's fields, that its
    iterate fits ``prob.u0`` (the same structure, shapes and dtypes), that both are stateful or
    both stateless, that ``data`` is given exactly when the run had data and has as many
    minibatches, and that the algorithm accepts ``prob`` (its traits, as `solve` checks them).
    The algorithm, the budgets, the position in the data and ``record`` (with the history so
    far) come from the checkpoint; a callback may be given anew, and ``progress`` and
    ``verbose`` changed. No determinism probe runs again.

    Args:
        checkpoint: From `Solver.checkpoint`, `Checkpoint.load`, or unpickled.
        prob: The problem of the checkpointed run.
        data: The minibatches of the checkpointed run (a sequence, in the same order), or None
            for a run without data.
        callback: As for `solve`.
        progress: As for `solve`; None: as the checkpointed run.
        verbose: As for `solve`; None: as the checkpointed run.

    Returns:
        The `Solver`, at the checkpoint's step.

    Raises:
        TypeError: ``checkpoint`` is not a `Checkpoint`, ``prob`` not an `OptimizationProblem`,
            ``data`` not a sequence, ``callback`` not callable, ``progress`` or ``verbose`` not
            a bool or None, or a field of the checkpoint of the wrong type (its algorithm's
            state not the algorithm's).
        ValueError: A field of the checkpoint out of range, a checkpoint that does not fit
            ``prob`` or ``data`` (the message names the field and both values).
        IncompatibleAlgorithmError: The algorithm's traits do not fit ``prob``.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> prob = om.OptimizationProblem(lambda u, p: anp.sum((u - 1.0) ** 2), np.zeros(2))
        >>> saved = om.init(prob, om.Adam(lr=0.1), maxiters=10).checkpoint()
        >>> om.resume(saved, om.OptimizationProblem(lambda u, p: anp.sum(u ** 2), np.zeros(3)))
        Traceback (most recent call last):
        ...
        ValueError: the checkpoint does not fit prob: its iterate has the structure float64(2,) (2 variables, \
Checkpoint.layout), prob.u0 has float64(3,) (3 variables)
    """
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"checkpoint must be an om.Checkpoint (from Solver.checkpoint()), got {checkpoint!r}")
    if not isinstance(prob, OptimizationProblem):
        raise TypeError(f"prob must be the OptimizationProblem of the checkpointed run, got {prob!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(info) or None, got {callback!r}")
    checkpoint.validate()
    record, kept_progress, kept_verbose = checkpoint.observe
    progress = kept_progress if progress is None else progress
    verbose = kept_verbose if verbose is None else verbose
    check_observe_options(record, progress, verbose)
    _check_data(checkpoint, data)
    stateful = prob.state is not None
    if checkpoint.stateful != stateful:
        ran = "a stateful problem (with state=)" if checkpoint.stateful else "a stateless problem (without state=)"
        raise ValueError(
            f"the checkpoint does not fit prob: Checkpoint.stateful is {checkpoint.stateful} (a run of {ran}), "
            f"but prob {'has a state' if stateful else 'has no state'}: pass the problem of the checkpointed run"
        )
    alg = checkpoint.algorithm
    req = requirements(prob, callback=callback is not None, data=data is not None)
    check_compatible(alg, req)
    declared = traits(alg)
    objective = Objective(prob, per_step_commit=declared.commits_state_per_step and not declared.single_call_per_step)
    layout = describe_layout(objective.layout.treedef)
    if layout != checkpoint.layout or objective.x0.size != checkpoint.x.size:
        raise ValueError(
            f"the checkpoint does not fit prob: its iterate has the structure {checkpoint.layout} "
            f"({checkpoint.x.size} variables, Checkpoint.layout), prob.u0 has {layout} ({objective.x0.size} variables)"
        )
    _check_opt_state(alg, checkpoint.opt_state, checkpoint.x)
    objective.state = copy_state(checkpoint.state)
    counts = checkpoint.counts
    objective.fevals, objective.gevals = counts.fevals, counts.gevals
    objective.probe_fevals, objective.hevals = counts.probe_fevals, counts.hevals
    monitor = Monitor(objective, checkpoint.maxiters, checkpoint.maxtime, callback)
    monitor.iterations = counts.iterations
    skips = checkpoint.skips
    monitor.max_skips, monitor.skipped, monitor.skips_in_a_row = skips.max_skips, skips.skipped, skips.in_a_row
    monitor.start = time.perf_counter() - checkpoint.elapsed
    monitor.keep_best = not req.stochastic and not req.evolving_state
    if checkpoint.best is not None:
        monitor.best = (checkpoint.best[0], checkpoint.best[1].copy())
    if checkpoint.evaluated is not None:  # the run so far, should the next step raise
        monitor.last = (checkpoint.evaluated[0].copy(), checkpoint.evaluated[1])
    solver = Solver(
        prob,
        alg,
        req,
        objective,
        monitor,
        checkpoint.x.copy(),
        copy.deepcopy(checkpoint.opt_state),
        data,
        checkpoint.epochs,
        checkpoint.consumed,
        checkpoint.loss,
        checkpoint.ended,
        (record, progress, verbose),
    )
    if solver._observer is not None:
        solver._observer.restore(checkpoint.history)
    solver._final = checkpoint.final
    return solver


def _check_data(checkpoint: Checkpoint, data: Any) -> None:
    """Refuse ``data`` that is not the checkpointed run's (as far as its length tells)."""
    length = checkpoint.data_length
    if data is None:
        if length is not None:
            raise ValueError(
                f"the checkpointed run went over data ({length} minibatches, Checkpoint.data_length): pass the same "
                "minibatches again, resume(checkpoint, prob, data=...)"
            )
        return
    if length is None:
        raise ValueError(
            f"data= was given ({short_repr(data)}), but the checkpointed run had no data (Checkpoint.data_length is None)"
        )
    if not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
        raise TypeError(
            f"data must be the sequence (a list, a tuple) of minibatches the checkpointed run went over, got {short_repr(data)}"
        )
    if len(data) != length:
        raise ValueError(
            f"data has {len(data)} minibatches, but the checkpointed run went over {length} (Checkpoint.data_length): "
            "pass the same minibatches, in the same order"
        )


def _check_opt_state(alg: StepwiseAlgorithm[Any], opt_state: Any, x: np.ndarray) -> None:
    """Refuse an algorithm state that is not of the kind ``alg.init`` makes: another type, or an
    array where the algorithm keeps one of another shape or dtype."""
    given = x.view()
    given.flags.writeable = False  # init only reads the iterate
    template = alg.init(given)
    name = type(alg).__name__
    if type(opt_state) is not type(template):
        raise TypeError(
            f"Checkpoint.opt_state must be the state of {name} (a {type(template).__name__}), got a "
            f"{type(opt_state).__name__}: the algorithm and its state come from different runs"
        )

    def walk(mine: Any, theirs: Any, path: str) -> None:
        if isinstance(theirs, np.ndarray):
            if not (isinstance(mine, np.ndarray) and mine.shape == theirs.shape and mine.dtype == theirs.dtype):
                got = f"{mine.dtype} {mine.shape}" if isinstance(mine, np.ndarray) else type(mine).__name__
                raise ValueError(
                    f"Checkpoint.opt_state{path} must be a {theirs.dtype} array of shape {theirs.shape} for {name} on "
                    f"{x.size} variables, got {got}"
                )
        elif is_container(theirs) and is_container(mine) and len(mine) == len(theirs):
            for (suffix, a), (_, b) in zip(children(mine), children(theirs)):
                walk(a, b, path + suffix)

    walk(opt_state, template, "")


class _Counted:
    """The schedule of batches, counting those taken (a checkpoint's position in the data)."""

    __slots__ = ("_items", "count")

    def __init__(self, items: Iterator[tuple[int | None, Any]], count: int) -> None:
        self._items = items
        self.count = count

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> tuple[int | None, Any]:
        item = next(self._items)
        self.count += 1
        return item
