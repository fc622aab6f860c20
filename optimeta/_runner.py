"""One run: its options checked once, its objective and monitor built in one place, and the
algorithm driving its own run through it.

`arguments` is the one check of a run's options, for `solve`, `init` and `solve_many`: it
returns them as one frozen `RunOptions`. A `Run` holds a checked problem, its requirements and
those options; ``Run.solve(alg)`` hands the run to the algorithm (``alg.execute(run)``), which
asks for its own kind of run: a step-wise algorithm for the one driver loop (`run_stepwise`), a
whole-run wrapper to report through the run's monitor (`run_whole`), a `Chain` for one sub-run
per stage (`run_stages`). So the front end never asks what kind of algorithm it was given, and
`init` builds its objective and monitor with the same `Run.open` as `solve`.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, replace
from typing import Any

from ._defaults import default_algorithm
from ._native import native_step
from ._objective import Objective
from ._observe import Observer, check_observe_options
from ._problem import OptimizationProblem
from ._run import Callback, Monitor, attach_partial, batches, planned_steps, solution
from ._session import Session
from ._solution import IterationInfo, ReturnCode, Solution, Stats
from ._state import add_note, short_repr
from ._values import is_positive_int
from .backends._base import Algorithm, StepwiseAlgorithm, WholeRunAlgorithm
from .traits import (
    IncompatibleAlgorithmError,
    Requirements,
    check_compatible,
    needs_probe,
    requirements,
    traits,
)

__all__ = ["Run", "RunOptions", "arguments"]


@dataclass(frozen=True)
class RunOptions:
    """The options of one run, as `arguments` checked them.

    Attributes:
        maxiters, maxtime, callback, data, epochs, check_determinism: As given to `solve`.
        skips: The non-finite steps in a row the run may skip (0 for ``nan_policy="stop"``).
    """

    maxiters: int | None
    maxtime: float | None
    callback: Callback | None
    data: Iterable[Any] | None
    epochs: int
    check_determinism: bool
    skips: int


def arguments(
    prob: Any,
    alg: Algorithm | None,
    maxiters: Any,
    maxtime: Any,
    callback: Any,
    data: Any,
    epochs: Any,
    check_determinism: Any,
    nan_policy: Any,
    max_skips: Any,
    record: Any = False,
    progress: Any = False,
    verbose: Any = False,
    stepwise_reason: str = "",
) -> tuple[Algorithm, bool, RunOptions, Requirements]:
    """The one check of a run's options, for `solve`, `init` and `solve_many` alike: the
    arguments checked, the algorithm chosen when none is given, and the pair checked against
    the traits: (algorithm, whether it was chosen, the options, the requirements).
    `stepwise_reason` says why the caller takes the run step by step (`init`), if it does."""
    check_observe_options(record, progress, verbose)
    if not isinstance(prob, OptimizationProblem):
        raise TypeError(f"prob must be an OptimizationProblem, got {prob!r}")
    chosen = alg is None
    if alg is None:
        alg = default_algorithm(prob, data=data is not None)
    _check_options(alg, maxiters, maxtime, callback, data, epochs)
    if not isinstance(check_determinism, bool):
        raise TypeError(f"check_determinism must be True or False, got {check_determinism!r}")
    skips = _skips(nan_policy, max_skips)
    budget = maxiters is not None or maxtime is not None or data is not None
    stepwise = (
        "nan_policy='skip' skips the update of a step, so optimeta must take the run step by step" if skips else ""
    )
    req = requirements(
        prob, callback=callback is not None, data=data is not None, budget=budget, stepwise=stepwise_reason or stepwise
    )
    try:
        check_compatible(alg, req)
    except IncompatibleAlgorithmError as exc:
        if chosen:
            add_note(exc, f"{alg!r} is the default algorithm for this problem (default_algorithm): no alg was given")
        raise
    options = RunOptions(maxiters, maxtime, callback, data, epochs, check_determinism, skips)
    return alg, chosen, options, req


def _check_options(alg: Any, maxiters: Any, maxtime: Any, callback: Any, data: Any, epochs: Any) -> None:
    if isinstance(alg, type) and issubclass(alg, Algorithm):
        raise TypeError(f"alg must be an algorithm instance, e.g. {alg.__name__}(), got the class {alg.__name__}")
    if not isinstance(alg, Algorithm):
        raise TypeError(f"alg must be an optimeta algorithm such as om.Adam() or om.BFGS(), got {alg!r}")
    if maxiters is not None and not is_positive_int(maxiters):
        raise ValueError(f"maxiters must be a positive integer or None, got {maxiters!r}")
    if maxtime is not None and (
        isinstance(maxtime, bool) or not isinstance(maxtime, numbers.Real) or not 0 < _seconds(maxtime) < math.inf
    ):
        raise ValueError(f"maxtime must be a positive, finite number of seconds or None, got {short_repr(maxtime)}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(info) or None, got {callback!r}")
    if not is_positive_int(epochs):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if data is None:
        if epochs != 1:
            raise ValueError(f"epochs={epochs!r} needs data= (an iterable of minibatches)")
        return
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes)):
        raise TypeError(f"data must be an iterable of minibatches, got {data!r}")
    if isinstance(data, Sized) and len(data) == 0:
        raise ValueError("data must hold at least one minibatch, got an empty one")
    if epochs > 1 and isinstance(data, Iterator):
        raise ValueError(
            f"data is a one-shot iterator ({type(data).__name__}), which epochs={epochs} would exhaust after "
            "the first epoch: pass a list, or any iterable that can be iterated again"
        )


def _seconds(value: numbers.Real) -> float:
    """`value` as a float; NaN for a number too large for one (``10**400``), which is refused."""
    try:
        return float(value)
    except OverflowError:
        return math.nan


def _skips(nan_policy: Any, max_skips: Any) -> int:
    """The non-finite steps in a row a run may skip (0 for ``nan_policy="stop"``)."""
    if nan_policy not in ("stop", "skip"):
        raise ValueError(f"nan_policy must be 'stop' or 'skip', got {nan_policy!r}")
    if not is_positive_int(max_skips):
        raise ValueError(f"max_skips must be a positive integer, got {max_skips!r}")
    return 0 if nan_policy == "stop" else int(max_skips)


def _probe(alg: Algorithm, req: Requirements, objective: Objective) -> None:
    """Refuse an objective that hides state from an algorithm that trusts exact values.

    Two calls at u0 on copies of one state snapshot must agree; for an evolving state declared
    ``stochastic=False``, a call with the state the first call returned must agree too.
    """
    x0 = objective.x0
    first, after = objective.probe(x0, objective.state)
    second, _ = objective.probe(x0, objective.state)
    if not _same_value(first, second):
        reason = (
            f"f returned {first!r} and then {second!r} at u0 with copies of the same state, so it "
            "hides state of its own (a global RNG, a mutable closure, a Ref-style holder); make that "
            "state explicit with state=, or declare stochastic=True"
        )
    elif req.evolving_state:
        third, _ = objective.probe(x0, after)
        if _same_value(third, first):
            return
        reason = (
            f"the problem declares stochastic=False, yet f returned {first!r} at u0 with the initial "
            f"state and {third!r} with the state the first call returned, so the state drives the loss; "
            "do not declare stochastic=False for it"
        )
    else:
        return
    check_compatible(
        alg, replace(req, stochastic=True, stochastic_reason=reason, stochastic_source="probe"), probed=True
    )


def _probed(alg: Algorithm, req: Requirements, objective: Objective) -> None:
    """`_probe`, with the note and the partial solution (u0) on whatever ``f`` raises in it."""
    try:
        _probe(alg, req, objective)
    except IncompatibleAlgorithmError:
        raise
    except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
        attach_partial(exc, alg, objective, Monitor(objective, None, None, None), probe=True)
        raise


def _same_value(a: float, b: float) -> bool:
    """Equal, counting NaN as equal to NaN: a loss that is NaN every time hides no state."""
    return a == b or (math.isnan(a) and math.isnan(b))


class Run:
    """One run of a checked problem with checked options; ``solve(alg)`` runs `alg` in it.

    It implements the `optimeta.backends._base.Runner` interface that ``Algorithm.execute``
    is given. A deterministic run (neither stochastic nor with an evolving state) keeps its
    best iterate and ends at it: `keep_best`, decided here once.
    """

    def __init__(
        self,
        prob: OptimizationProblem,
        req: Requirements,
        options: RunOptions,
        observer: Observer | None = None,
        chosen: bool = False,
    ) -> None:
        self.prob, self.req, self.options, self.observer, self.chosen = prob, req, options, observer, chosen
        self.keep_best = not req.stochastic and not req.evolving_state

    def solve(self, alg: Algorithm) -> Solution:
        """`alg`'s run: the algorithm asks for its kind of run (``alg.execute(self)``)."""
        return alg.execute(self)

    def open(self, alg: Algorithm) -> tuple[Objective, Monitor]:
        """The objective wrapper, after the determinism probe where it applies, and the monitor
        of the run's budgets, callback and observer: the one place they are made."""
        declared, options = traits(alg), self.options
        objective = Objective(
            self.prob, per_step_commit=declared.commits_state_per_step and not declared.single_call_per_step
        )
        if options.check_determinism and needs_probe(self.req, declared):
            _probed(alg, self.req, objective)
        monitor = Monitor(objective, options.maxiters, options.maxtime, options.callback)
        monitor.max_skips = options.skips
        monitor.keep_best = self.keep_best
        if self.observer is not None:
            self.observer.layout = objective.layout
            monitor.observer = self.observer
        return objective, monitor

    def _started(self, alg: Algorithm, objective: Objective) -> None:
        if self.observer is not None:
            options = self.options
            total = planned_steps(options.maxiters, options.data, options.epochs)
            self.observer.start(type(alg).__name__, objective.x0.size, total)

    def run_stepwise(self, alg: StepwiseAlgorithm[Any]) -> Solution:
        """A step-wise algorithm's run: a `Session` from u0, advanced to its end by the one
        driver loop (as ``init(...).solve()`` advances its own)."""
        objective, monitor = self.open(alg)
        self._started(alg, objective)
        options = self.options
        try:
            # The gradient source may run the whole step natively (jax: `NativeJaxStep`).
            native = native_step(objective, alg)
            if native is None:
                x0 = objective.x0.copy()
                opt_state = alg.init(x0)
            else:
                x0, opt_state = native.start(objective.x0)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
            attach_partial(exc, alg, objective, monitor)
            raise
        schedule = batches(options.data, options.epochs, self.prob.p)
        session = Session(alg, objective, monitor, schedule, x0, opt_state, options.data, options.epochs, step=native)
        session.advance(None)
        return session.finish()

    def run_whole(self, alg: WholeRunAlgorithm) -> Solution:
        """A whole-run algorithm's run: it calls the objective and reports each step to the monitor."""
        objective, monitor = self.open(alg)
        self._started(alg, objective)
        try:
            result = alg.run(objective, monitor)
            return solution(
                alg, objective, monitor, result.x, result.loss, result.retcode, result.message, result.original
            )
        except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
            attach_partial(exc, alg, objective, monitor)
            raise

    def run_stages(self, alg: Algorithm, stages: Sequence[tuple[Algorithm, int | None]]) -> Solution:
        """A polyalgorithm's run (`Chain`): one sub-run per stage, each from the previous one's
        u and state, within this run's iteration and time budgets."""
        options = self.options
        probe_fevals = 0
        if options.check_determinism and needs_probe(self.req, traits(alg)):
            probe = Objective(self.prob)
            _probed(alg, self.req, probe)
            probe_fevals = probe.probe_fevals
        start = time.perf_counter()  # the probe's time is not the run's, as in a single solve
        solutions: list[Solution] = []
        out_of_time = False
        current, done = self.prob, 0
        for i, (stage, budget) in enumerate(stages):
            if options.maxtime is not None and time.perf_counter() - start >= options.maxtime and solutions:
                out_of_time = True
                break
            sol = self._stage(current, stage, budget, done, start)
            solutions.append(sol)
            done += sol.stats.iterations
            stopped = sol.retcode in (ReturnCode.NONFINITE, ReturnCode.TERMINATED, ReturnCode.MAXTIME)
            if stopped or (options.maxiters is not None and done >= options.maxiters) or i == len(stages) - 1:
                break
            current = replace(current, u0=sol.u, state=sol.state)
        final = solutions[-1]
        stats = Stats.total([s.stats for s in solutions], time=time.perf_counter() - start, probe_fevals=probe_fevals)
        retcode, message = final.retcode, final.message
        if out_of_time:
            retcode, message = ReturnCode.MAXTIME, ReturnCode.MAXTIME.message
        message = f"stage {len(solutions)} of {len(stages)} ({type(final.algorithm).__name__}): {message}"
        return Solution(
            u=final.u,
            objective=final.objective,
            state=final.state,
            retcode=retcode,
            message=message,
            stats=stats,
            algorithm=alg,
            original=tuple(solutions),
            sense=final.sense,
        )

    def _stage(
        self, prob: OptimizationProblem, stage: Algorithm, budget: int | None, done: int, start: float
    ) -> Solution:
        """One stage's sub-run: what is left of the budgets (the first stage always runs, with a
        sliver of time at least, as any solve makes one step), the callback numbered on."""
        options = self.options
        left = None if options.maxiters is None else options.maxiters - done
        maxiters = left if budget is None else budget if left is None else min(budget, left)
        maxtime = None if options.maxtime is None else max(options.maxtime - (time.perf_counter() - start), 1e-9)
        callback = None if options.callback is None else _offset(options.callback, done)
        stage, chosen, stage_options, req = arguments(
            prob, stage, maxiters, maxtime, callback, None, 1, False, "stop", 10
        )
        sol = Run(prob, req, stage_options, self.observer, chosen).solve(stage)
        if self.observer is not None:
            self.observer.stage_done(sol.stats.iterations, sol.stats.fevals, sol.stats.time)
        return sol


def _offset(callback: Callback, offset: int) -> Callback:
    """The callback of a chain's stage: iterations numbered on from the earlier stages'."""

    def stage_callback(info: IterationInfo) -> bool | None:
        return callback(replace(info, iteration=info.iteration + offset))

    return stage_callback
