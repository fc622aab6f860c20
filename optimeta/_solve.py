"""`solve`: the trait check, the one driver loop for step-wise algorithms, and the `Solution`."""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._objective import Objective
from ._problem import OptimizationProblem
from ._solution import IterationInfo, ReturnCode, Solution, Stats
from .backends._base import Algorithm, StepwiseAlgorithm, WholeRunAlgorithm
from .traits import check_compatible, requirements

__all__ = ["solve"]

Callback = Callable[[IterationInfo], "bool | None"]


class _NonFinite(Exception):
    """The objective or its gradient was not finite at the point just evaluated."""

    def __init__(self, loss: float) -> None:
        super().__init__(loss)
        self.loss = loss


class _Monitor:
    """Budgets, elapsed time and the callback: the per-step bookkeeping of both algorithm shapes."""

    def __init__(
        self, objective: Objective, maxiters: int | None, maxtime: float | None, callback: Callback | None
    ) -> None:
        self.objective = objective
        self.maxiters = maxiters
        self.maxtime = maxtime
        self.callback = callback
        self.iterations = 0
        self.start = time.perf_counter()

    def after_step(self, x: np.ndarray, loss: float) -> ReturnCode | None:
        self.iterations += 1
        if self.callback is not None:
            obj = self.objective
            info = IterationInfo(
                self.iterations, obj.layout.to_user(x), obj.sign * float(loss), copy.deepcopy(obj.state)
            )
            answer = self.callback(info)
            if answer is not None and not isinstance(answer, (bool, np.bool_)):
                raise TypeError(f"callback must return True (stop), False or None, got {answer!r}")
            if answer:
                return ReturnCode.TERMINATED
        if self.maxiters is not None and self.iterations >= self.maxiters:
            return ReturnCode.MAXITERS
        if self.maxtime is not None and time.perf_counter() - self.start >= self.maxtime:
            return ReturnCode.MAXTIME
        return None


def _drive(
    alg: StepwiseAlgorithm[Any], objective: Objective, monitor: _Monitor
) -> tuple[np.ndarray, float, ReturnCode]:
    """The driver loop: step until the monitor stops the run or an evaluation is not finite."""

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = objective.value_and_grad(x)
        if not (math.isfinite(loss) and np.isfinite(grad).all()):
            raise _NonFinite(loss)
        return loss, grad

    x = objective.x0.copy()
    box = None if objective.lb is None or objective.ub is None else (objective.lb, objective.ub)
    opt_state = alg.init(x)
    while True:
        try:
            x, opt_state, loss = alg.step(evaluate, x, opt_state, box)
        except _NonFinite as exc:
            return x, exc.loss, ReturnCode.NONFINITE
        retcode = monitor.after_step(x, loss)
        if retcode is not None:
            return x, loss, retcode


def _check_options(alg: Any, maxiters: Any, maxtime: Any, callback: Any) -> None:
    if isinstance(alg, type) and issubclass(alg, Algorithm):
        raise TypeError(f"alg must be an algorithm instance, e.g. {alg.__name__}(), got the class {alg.__name__}")
    if not isinstance(alg, Algorithm):
        raise TypeError(f"alg must be an optimeta algorithm such as om.Adam() or om.BFGS(), got {alg!r}")
    if maxiters is not None and (
        isinstance(maxiters, bool) or not isinstance(maxiters, numbers.Integral) or int(maxiters) < 1
    ):
        raise ValueError(f"maxiters must be a positive integer or None, got {maxiters!r}")
    if maxtime is not None and (
        isinstance(maxtime, bool) or not isinstance(maxtime, numbers.Real) or not 0 < float(maxtime) < math.inf
    ):
        raise ValueError(f"maxtime must be a positive, finite number of seconds or None, got {maxtime!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(info) or None, got {callback!r}")


def solve(
    prob: OptimizationProblem,
    alg: Algorithm,
    *,
    maxiters: int | None = None,
    maxtime: float | None = None,
    callback: Callback | None = None,
) -> Solution:
    """Solve ``prob`` with ``alg``, threading the problem's state through every call.

    First the problem is checked against ``traits(alg)``: every violated rule is collected and
    reported in one `IncompatibleAlgorithmError` before the objective is ever called. Then the
    algorithm runs. For a stateful problem, the state is deep-copied once; every call receives
    the state the previous call returned, and ``Solution.state`` is the state the last call
    returned. An algorithm with ``single_call_per_step`` makes exactly one call per step, so with
    ``maxiters=N`` the state advances exactly N times. For a deterministic stateless problem, a
    first-order run ends with one counted evaluation at the final iterate, so that
    ``Solution.objective == f(Solution.u, p)``.

    Args:
        prob: The problem.
        alg: A configured algorithm instance, e.g. ``Adam(lr=1e-3)`` or ``BFGS()``.
        maxiters: Stop after this many steps (``ReturnCode.MAXITERS``); a positive integer.
        maxtime: Stop after the first step that ends this many seconds after the start
            (``ReturnCode.MAXTIME``).
        callback: ``callback(info: IterationInfo) -> bool | None``, called after every step with
            copies of the iterate and state; returning True stops with ``ReturnCode.TERMINATED``.

    Returns:
        The `Solution`.

    Raises:
        IncompatibleAlgorithmError: The algorithm's traits do not fit the problem.
        ValueError: A bad budget, or a first-order algorithm without ``maxiters`` or ``maxtime``.
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
    if not isinstance(prob, OptimizationProblem):
        raise TypeError(f"prob must be an OptimizationProblem, got {prob!r}")
    _check_options(alg, maxiters, maxtime, callback)
    check_compatible(alg, requirements(prob, callback=callback is not None))
    if isinstance(alg, StepwiseAlgorithm) and maxiters is None and maxtime is None:
        name = type(alg).__name__
        raise ValueError(
            f"{name} has no convergence test and runs until a budget is used up: pass maxiters= or "
            f"maxtime= to solve, e.g. solve(prob, {name}(...), maxiters=1000)"
        )

    objective = Objective(prob)
    monitor = _Monitor(objective, maxiters, maxtime, callback)
    original = None
    if isinstance(alg, StepwiseAlgorithm):
        x, loss, retcode = _drive(alg, objective, monitor)
        message = retcode.message
        deterministic = prob.state is None and not prob.stochastic
        if deterministic and retcode is not ReturnCode.NONFINITE:
            loss = objective.value(x)
    elif isinstance(alg, WholeRunAlgorithm):
        result = alg.run(objective, monitor)
        x, loss, retcode, message, original = result.x, result.loss, result.retcode, result.message, result.original
    else:
        raise TypeError(f"{type(alg).__name__} is neither a step-wise nor a whole-run algorithm")
    elapsed = time.perf_counter() - monitor.start
    return Solution(
        u=objective.layout.to_user(x),
        objective=objective.sign * float(loss),
        state=objective.state,
        retcode=retcode,
        message=message,
        stats=Stats(monitor.iterations, objective.fevals, objective.gevals, elapsed),
        algorithm=alg,
        original=original,
    )
