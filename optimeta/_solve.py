"""`solve`: one run of an algorithm on a problem, its options checked once (see `optimeta._runner`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ._defaults import default_algorithm
from ._keywords import suggest_keywords
from ._observe import logging_to_stderr
from ._problem import OptimizationProblem
from ._run import Callback, observer_for
from ._runner import Run, arguments
from ._solution import Solution
from .backends._base import Algorithm

__all__ = ["default_algorithm", "solve"]


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
    alg, chosen, options, req = arguments(
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
            sol = Run(prob, req, options, observer, chosen).solve(alg)
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
