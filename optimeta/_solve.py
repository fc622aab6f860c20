"""`solve`: the trait check, the one driver loop for step-wise algorithms, and the `Solution`."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterable, Iterator, Sized
from dataclasses import replace
from typing import Any, NamedTuple

from ._chain import Chain
from ._objective import Objective
from ._observe import Observer, check_observe_options, logging_to_stderr
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
from ._solution import IterationInfo, ReturnCode, Solution, Stats
from ._state import add_note, short_repr
from ._values import is_positive_int
from .backends._base import Algorithm, StepwiseAlgorithm, WholeRunAlgorithm, suggest_keywords
from .traits import (
    IncompatibleAlgorithmError,
    Requirements,
    check_compatible,
    default_algorithm,
    needs_probe,
    requirements,
    traits,
)

__all__ = ["arguments", "default_algorithm", "prepared", "solve"]


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


@suggest_keywords("options")
def solve(
    prob: OptimizationProblem,
    alg: Algorithm | None = None,
    *,
    maxiters: int | None = None,
    maxtime: float | None = None,
    callback: Callback | None = None,
    data: Iterable[Any] | None = None,
    epochs: int = 1,
    check_determinism: bool = True,
    nan_policy: str = "stop",
    max_skips: int = 10,
    record: bool | str = False,
    progress: bool = False,
    verbose: bool = False,
) -> Solution:
    """Solve ``prob`` with ``alg``, threading the problem's state through every call.

    First the problem is checked against ``traits(alg)``: every violated rule is collected and
    reported in one `IncompatibleAlgorithmError` before the objective is ever called. For an
    algorithm that trusts exact values (no ``tolerates_stochastic_loss``) on a problem not
    declared stochastic, a determinism probe then calls ``f`` at ``u0`` on copies of one state
    snapshot and refuses an objective whose values differ (it hides state); the probe never
    advances the state and is counted in ``Stats.probe_fevals``.

    The state is deep-copied once. With a ``single_call_per_step`` algorithm every call receives
    the state the previous call returned, so ``maxiters=N`` advances it exactly N times; with a
    ``commits_state_per_step`` algorithm every call of a step receives a copy of one snapshot and
    the state returned at the step's accepted point is committed once per step. A constant state
    (``state_mode="constant"``) is checked after every call. ``Solution.state`` is the committed
    state at the end. For a deterministic stateless problem, a first-order run ends with one
    counted evaluation at the final iterate, so that ``Solution.objective == f(Solution.u, p)``.

    Args:
        prob: The problem.
        alg: A configured algorithm instance, e.g. ``Adam(lr=1e-3)``, ``BFGS()`` or a `Chain`;
            None picks one from the problem's requirements (`default_algorithm`), named in
            ``Solution.algorithm``.
        maxiters: Stop after this many steps (``ReturnCode.MAXITERS``); a positive integer.
        maxtime: Stop after the first step that ends this many seconds after the start
            (``ReturnCode.MAXTIME``).
        callback: ``callback(info: IterationInfo) -> bool | None``, called after every step with
            copies of the iterate and state; returning True, or raising ``StopIteration``, stops
            with ``ReturnCode.TERMINATED``.
        data: Minibatches: step i receives the i-th batch as ``p``. Makes the problem stochastic,
            so only ``tolerates_stochastic_loss`` algorithms accept it; all calls of one step see
            the same batch. The run lasts ``epochs * len(data)`` steps (``MAXITERS``), or fewer
            with ``maxiters``/``maxtime``.
        epochs: Passes over ``data``; more than 1 needs ``data`` that can be iterated again.
        check_determinism: Run the determinism probe described above (default True).
        nan_policy: ``"stop"`` (the default): a non-finite loss or gradient ends the run with
            ``ReturnCode.NONFINITE``. ``"skip"`` (step-wise algorithms): a step whose evaluation
            is not finite makes no update and counts as an iteration (``Stats.skipped``); more
            than ``max_skips`` such steps in a row end the run with ``NONFINITE``.
        max_skips: With ``nan_policy="skip"``, the non-finite steps in a row that are skipped.
        record: True: ``Solution.history`` holds the objective, the calls of ``f`` and the time
            after every step (a `History`); ``"u"``: the iterates too.
        progress: Show a tqdm progress bar (steps, the current objective, elapsed time) on
            stderr; needs ``tqdm`` (extra ``progress``).
        verbose: Log the run's start, its progress (at most once a second) and its end at INFO
            level through the ``logging`` logger ``"optimeta"``; when the application has set up
            no logging, the records go to stderr for this run.

    Returns:
        The `Solution`.

    Raises:
        Exception: Whatever the objective, the gradient or the callback raised (and
            ``KeyboardInterrupt``), with a note naming the algorithm and the step, and the run
            so far as ``exc.partial_solution`` (a `Solution` with ``ReturnCode.FAILURE``).
        IncompatibleAlgorithmError: The algorithm's traits do not fit the problem, or the probe
            found the objective not deterministic.
        StateMutationError: A state declared constant came back changed.
        ValueError: A bad budget, ``epochs`` or ``data``, or a first-order algorithm without
            ``maxiters``, ``maxtime`` or ``data``.
        TypeError: ``prob`` or ``alg`` of the wrong type, or a callback that is not callable or
            returns something other than a bool or None.

    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> def loss(u, p, state):
        ...     return anp.sum((u - p) ** 2), {"calls": state["calls"] + 1}
        >>> prob = om.OptimizationProblem(loss, np.zeros(2), p=np.ones(2), state={"calls": 0})
        >>> om.solve(prob, om.Adam(lr=0.1), maxiters=50).state
        {'calls': 50}
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
    )
    observer = observer_for(prob, record, progress, verbose)
    with logging_to_stderr(verbose, progress):
        try:
            if isinstance(alg, Chain):
                sol = _solve_chain(prob, alg, req, maxiters, maxtime, callback, data, check_determinism, observer)
            else:
                run = _Run(maxiters, maxtime, callback, data, epochs, check_determinism, skips)
                sol = _solve_one(prob, alg, chosen, req, run, observer)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
            if observer is not None:
                partial = getattr(exc, "partial_solution", None)
                if isinstance(partial, Solution):
                    exc.partial_solution = replace(partial, history=observer.history())  # type: ignore[attr-defined]
                observer.end(None, exc)
            raise
        if observer is not None:
            sol = replace(sol, history=observer.history())
            observer.end(sol)
        return sol


class _Run(NamedTuple):
    """The options of one solve, as `solve` checked them."""

    maxiters: int | None
    maxtime: float | None
    callback: Callback | None
    data: Iterable[Any] | None
    epochs: int
    check_determinism: bool
    skips: int


def _solve_one(
    prob: OptimizationProblem,
    alg: Algorithm,
    chosen: bool,
    req: Requirements,
    run: _Run,
    observer: Observer | None,
) -> Solution:
    """One algorithm's run on a checked problem."""
    maxiters, maxtime, callback, data, epochs = run.maxiters, run.maxtime, run.callback, run.data, run.epochs
    objective = prepared(prob, alg, req, maxiters, maxtime, data, run.check_determinism, chosen)
    monitor = Monitor(objective, maxiters, maxtime, callback)
    monitor.max_skips = run.skips
    monitor.keep_best = not req.stochastic and not req.evolving_state
    if observer is not None:
        observer.layout = objective.layout
        monitor.observer = observer
        observer.start(type(alg).__name__, objective.x0.size, planned_steps(maxiters, data, epochs))
    try:
        if isinstance(alg, StepwiseAlgorithm):
            x0 = objective.x0.copy()
            x, opt_state, loss, retcode = drive(
                alg, objective, monitor, batches(data, epochs, prob.p), x0, alg.init(x0)
            )
            assert retcode is not None  # no step limit
            return stepwise_solution(alg, req, objective, monitor, (x, loss, retcode), data, epochs, opt_state)
        if isinstance(alg, WholeRunAlgorithm):
            result = alg.run(objective, monitor)
            return solution(
                alg, objective, monitor, result.x, result.loss, result.retcode, result.message, result.original
            )
        raise TypeError(f"{type(alg).__name__} is neither a step-wise nor a whole-run algorithm")
    except BaseException as exc:  # KeyboardInterrupt, SystemExit and GeneratorExit too
        attach_partial(exc, alg, objective, monitor)
        raise


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
) -> tuple[Algorithm, bool, int, Requirements]:
    """The one check of a run's options, for `solve`, `init` and `solve_many` alike: the
    arguments checked, the algorithm chosen when none is given, and the pair checked against
    the traits: (algorithm, whether it was chosen, skips allowed, requirements).
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
    if stepwise_reason:
        stepwise = stepwise_reason
    req = requirements(prob, callback=callback is not None, data=data is not None, budget=budget, stepwise=stepwise)
    try:
        check_compatible(alg, req)
    except IncompatibleAlgorithmError as exc:
        if chosen:
            add_note(exc, f"{alg!r} is the default algorithm for this problem (default_algorithm): no alg was given")
        raise
    return alg, chosen, skips, req


def _skips(nan_policy: Any, max_skips: Any) -> int:
    """The non-finite steps in a row a run may skip (0 for ``nan_policy="stop"``)."""
    if nan_policy not in ("stop", "skip"):
        raise ValueError(f"nan_policy must be 'stop' or 'skip', got {nan_policy!r}")
    if not is_positive_int(max_skips):
        raise ValueError(f"max_skips must be a positive integer, got {max_skips!r}")
    return 0 if nan_policy == "stop" else int(max_skips)


def prepared(
    prob: OptimizationProblem,
    alg: Algorithm,
    req: Requirements,
    maxiters: int | None,
    maxtime: float | None,
    data: Any,
    check_determinism: bool,
    chosen: bool = False,
) -> Objective:
    """The objective wrapper for the run, after the determinism probe where it applies."""
    declared = traits(alg)
    objective = Objective(prob, per_step_commit=declared.commits_state_per_step and not declared.single_call_per_step)
    if check_determinism and needs_probe(req, declared):
        _probed(alg, req, objective)
    return objective


def _solve_chain(
    prob: OptimizationProblem,
    chain: Chain,
    req: Requirements,
    maxiters: int | None,
    maxtime: float | None,
    callback: Callback | None,
    data: Iterable[Any] | None,
    check_determinism: bool,
    observer: Observer | None = None,
) -> Solution:
    """Run a `Chain`'s stages in turn, each a solve from the previous one's u and state."""
    last = len(chain.stages) - 1
    if check_determinism and needs_probe(req, chain.traits):
        probe = Objective(prob)
        _probed(chain, req, probe)
        probe_fevals = probe.probe_fevals
    else:
        probe_fevals = 0
    start = time.perf_counter()  # the probe's time is not the run's, as in a single solve
    solutions: list[Solution] = []
    current = prob
    done = 0
    out_of_time = False
    for i, (stage, budget) in enumerate(chain.stages):
        left = None if maxiters is None else maxiters - done
        stage_iters = left if budget is None else budget if left is None else min(budget, left)
        # The first stage always runs (with a sliver of time at least), as any solve makes one step.
        stage_time = None if maxtime is None else max(maxtime - (time.perf_counter() - start), 1e-9)
        if maxtime is not None and time.perf_counter() - start >= maxtime and solutions:
            out_of_time = True
            break
        stage_callback = None if callback is None else _offset(callback, done)
        stage, chosen, skips, stage_req = arguments(
            current, stage, stage_iters, stage_time, stage_callback, None, 1, False, "stop", 10
        )
        run = _Run(stage_iters, stage_time, stage_callback, None, 1, False, skips)
        sol = _solve_one(current, stage, chosen, stage_req, run, observer)
        if observer is not None:
            observer.stage_done(sol.stats.iterations, sol.stats.fevals, sol.stats.time)
        solutions.append(sol)
        done += sol.stats.iterations
        stopped = sol.retcode in (ReturnCode.NONFINITE, ReturnCode.TERMINATED, ReturnCode.MAXTIME)
        if stopped or (maxiters is not None and done >= maxiters) or i == last:
            break
        current = replace(current, u0=sol.u, state=sol.state)
    final = solutions[-1]
    stats = Stats.total([s.stats for s in solutions], time=time.perf_counter() - start, probe_fevals=probe_fevals)
    retcode, message = final.retcode, final.message
    if out_of_time:
        retcode, message = ReturnCode.MAXTIME, ReturnCode.MAXTIME.message
    message = f"stage {len(solutions)} of {len(chain.stages)} ({type(final.algorithm).__name__}): {message}"
    return Solution(
        u=final.u,
        objective=final.objective,
        state=final.state,
        retcode=retcode,
        message=message,
        stats=stats,
        algorithm=chain,
        original=tuple(solutions),
        sense=final.sense,
    )


def _offset(callback: Callback, offset: int) -> Callback:
    """The callback of a chain's stage: iterations numbered on from the earlier stages'."""

    def stage_callback(info: IterationInfo) -> bool | None:
        return callback(replace(info, iteration=info.iteration + offset))

    return stage_callback
