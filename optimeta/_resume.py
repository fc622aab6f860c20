"""`resume`: a `Solver` that goes on from a `Checkpoint`, after checking that the checkpoint
fits the problem (and the data) it is given."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checkpoint_io import Checkpoint, describe_layout
from ._keywords import suggest_keywords
from ._objective import Objective
from ._observe import check_observe_options
from ._problem import OptimizationProblem
from ._run import Callback, Monitor
from ._runner import Run, RunOptions
from ._solver import Solver
from ._state import copy_state, short_repr
from ._tree import children, is_container
from .backends._base import StepwiseAlgorithm
from .traits import check_compatible, requirements

__all__ = ["resume"]


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
    skips = checkpoint.skips
    options = RunOptions(
        checkpoint.maxiters, checkpoint.maxtime, callback, data, checkpoint.epochs, False, skips.max_skips
    )
    objective, monitor = Run(prob, req, options).open(alg)  # no probe again: check_determinism=False
    layout = describe_layout(objective.layout.treedef)
    if layout != checkpoint.layout or objective.x0.size != checkpoint.x.size:
        raise ValueError(
            f"the checkpoint does not fit prob: its iterate has the structure {checkpoint.layout} "
            f"({checkpoint.x.size} variables, Checkpoint.layout), prob.u0 has {layout} ({objective.x0.size} variables)"
        )
    _check_opt_state(alg, checkpoint.opt_state, checkpoint.x)
    _restore(checkpoint, objective, monitor)
    return Solver(
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
        checkpoint.history,
        checkpoint.final,
    )


def _restore(checkpoint: Checkpoint, objective: Objective, monitor: Monitor) -> None:
    """Put the checkpointed run's committed state, counters, clock, best iterate and last
    evaluated iterate back into a fresh objective wrapper and monitor."""
    objective.state = copy_state(checkpoint.state)
    counts, skips = checkpoint.counts, checkpoint.skips
    objective.fevals, objective.gevals = counts.fevals, counts.gevals
    objective.probe_fevals, objective.hevals = counts.probe_fevals, counts.hevals
    monitor.iterations = counts.iterations
    monitor.skipped, monitor.skips_in_a_row = skips.skipped, skips.in_a_row
    monitor.start = time.perf_counter() - checkpoint.elapsed
    if checkpoint.best is not None:
        monitor.best = (checkpoint.best[0], checkpoint.best[1].copy())
    if checkpoint.evaluated is not None:  # the run so far, should the next step raise
        monitor.last = (checkpoint.evaluated[0].copy(), checkpoint.evaluated[1])


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
