"""The two shapes of algorithm, and the validation helpers their hyperparameters share.

* `StepwiseAlgorithm`: pure ``init`` / ``step`` on flat vectors, driven by the one loop in
  ``_solve.py``. `FirstOrderAlgorithm` narrows it to "one value-and-gradient evaluation, then an
  update", and projects every update onto the box when the problem has bounds.
* `WholeRunAlgorithm`: hands the wrapped objective to an external solver (scipy) for the whole
  run, reporting each of its iterations to a `Monitor` that applies budgets and the callback.

Algorithms are frozen dataclasses of hyperparameters; whatever changes during a run lives in an
explicit state object that ``init`` makes and ``step`` returns.
"""

from __future__ import annotations

import abc
import difflib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, Protocol, TypeVar

import numpy as np
from typing_extensions import Self

from .._solution import ReturnCode
from .._values import is_positive_int
from ..traits import Traits

if TYPE_CHECKING:
    from .._objective import Objective

__all__ = [
    "FIRST_ORDER_TRAITS",
    "Algorithm",
    "Box",
    "Evaluate",
    "Example",
    "FirstOrderAlgorithm",
    "Monitor",
    "NonFiniteEvaluation",
    "RunResult",
    "StepwiseAlgorithm",
    "WholeRunAlgorithm",
    "check_fraction",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_range",
    "check_rate",
    "evaluate_finite",
    "rate_at",
    "suggest_keywords",
    "unexpected_keyword",
]

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")

#: Names other libraries (torch.optim, optax, scipy, scikit-learn, Keras) give to an argument
#: that optimeta calls otherwise: consulted before the closest spelling, since
#: ``learning_rate`` is not spelt like ``lr``. An entry applies only where its target is valid.
KEYWORD_ALIASES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",),
    "step_size": ("lr",),
    "stepsize": ("lr",),
    "beta1": ("b1",),
    "beta_1": ("b1",),
    "beta2": ("b2",),
    "beta_2": ("b2",),
    "betas": ("b1", "b2"),
    "epsilon": ("eps",),
    "max_iter": ("maxiters", "maxiter"),
    "maxiter": ("maxiters",),
    "max_iters": ("maxiters", "maxiter"),
    "max_iterations": ("maxiters", "maxiter"),
    "n_iter": ("maxiters", "maxiter"),
    "num_iters": ("maxiters", "maxiter"),
    "iterations": ("maxiters", "maxiter"),
    "max_time": ("maxtime",),
    "time_limit": ("maxtime",),
    "timeout": ("maxtime",),
    "random_state": ("seed",),
    "rng": ("seed",),
    "callbacks": ("callback",),
    "disp": ("verbose",),
    "verbosity": ("verbose",),
    "progress_bar": ("progress",),
    "show_progress": ("progress",),
    "n_epochs": ("epochs",),
    "num_epochs": ("epochs",),
    "batches": ("data",),
    "minibatches": ("data",),
}


def unexpected_keyword(owner: str, name: str, valid: Iterable[str], what: str = "hyperparameters") -> TypeError:
    """The `TypeError` for an unknown keyword argument `name` of `owner`: the valid name it most
    likely means (a known alias from another library first, then the closest spelling), and
    every valid name.

    Args:
        owner: Who was called, e.g. ``"Adam"`` or ``"solve()"``.
        name: The unknown keyword.
        valid: The keywords `owner` takes.
        what: What the valid keywords are called in the message.

    Returns:
        The error, for the caller to raise.

    Example:
        >>> from optimeta.backends._base import unexpected_keyword
        >>> str(unexpected_keyword("Adam", "learning_rate", ["lr", "b1", "b2", "eps"]))
        "Adam got an unexpected keyword argument 'learning_rate'; did you mean 'lr'? Its hyperparameters: lr, b1, b2, eps"
    """
    valid = list(valid)
    guesses = [alias for alias in KEYWORD_ALIASES.get(name, ()) if alias in valid]
    if not guesses:
        guesses = difflib.get_close_matches(name, valid, n=1)
    if not guesses:
        guesses = difflib.get_close_matches(name.lower().replace("-", "_"), valid, n=1, cutoff=0.5)
    hint = f"; did you mean {' and '.join(repr(g) for g in guesses)}?" if guesses else "."
    listed = ", ".join(valid) if valid else "none"
    return TypeError(f"{owner} got an unexpected keyword argument {name!r}{hint} Its {what}: {listed}")


def _keywords(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The names `fn` takes as keywords (without ``self``), or None when it takes ``**kwargs``."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params if p.kind in kinds and p.name != "self")


def suggest_keywords(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: an unknown keyword argument of the decorated function is a `TypeError` that
    suggests the valid name meant (`unexpected_keyword`), instead of Python's bare one.

    Args:
        what: What its keywords are called in the message, e.g. ``"options"``.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        valid = _keywords(fn)
        known = frozenset(valid or ())
        # The message lists the keyword-only options (those after the problem and algorithm).
        params = inspect.signature(fn).parameters.values()
        options = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY] or list(known)

        @functools.wraps(fn)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            if valid is not None:
                for name in kwargs:
                    if name not in known:
                        raise unexpected_keyword(f"{fn.__name__}()", name, options, what)
            return fn(*args, **kwargs)

        return checked

    return decorate


#: The objective as an algorithm sees it: flat vector -> (loss to minimise, gradient).
Evaluate = Callable[[np.ndarray], tuple[float, np.ndarray]]
#: Lower and upper bounds of the flat vector.
Box = tuple[np.ndarray, np.ndarray]


#: The step budget of an example without a convergence test: enough for the test catalogue's
#: problems (a 3-variable quadratic, the 2-variable Rosenbrock function, a small pytree).
EXAMPLE_BUDGET = 1500


@dataclass(frozen=True)
class Example:
    """A configuration of an algorithm for the test catalogue and the benchmarks: a label, the
    configured instance, and the step budget it runs with there (None: to its own convergence
    test). A backend declares its own (`Algorithm.examples`), so that tests and benchmarks take
    every registered algorithm from the registry, nothing else edited."""

    label: str
    algorithm: Algorithm
    budget: int | None = None


class Algorithm(abc.ABC):
    """Base of every algorithm: a frozen dataclass of hyperparameters plus its `traits`.

    The methods a shape of algorithm must implement are abstract (``init`` and ``step`` of a
    step-wise one, ``run`` of a whole-run one): a class that misses one cannot be registered,
    nor instantiated.

    An unknown keyword argument is a `TypeError` that names the hyperparameter meant
    (`unexpected_keyword`): ``Adam(learning_rate=1e-3)`` suggests ``lr``.
    """

    traits: ClassVar[Traits]

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        """Configurations of the class for the test catalogue and the benchmarks (`Example`).

        The default: the class with its default hyperparameters, and `EXAMPLE_BUDGET` steps
        when it has no convergence test. A class whose defaults do not suit (a required step
        size, tolerances too loose for the catalogue's optima) declares its own.
        """
        budget = None if cls.traits.has_convergence_test else EXAMPLE_BUDGET
        return (Example(cls.__name__, cls(), budget),)

    #: Per class: the keywords its constructor takes (None: any, it takes ``**kwargs``).
    _keyword_names: ClassVar[dict[type, tuple[str, ...] | None]] = {}

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        if kwargs:
            known = Algorithm._keyword_names
            if cls not in known:
                known[cls] = _keywords(cls.__init__)
            valid = known[cls]
            if valid is not None:
                for name in kwargs:
                    if name not in valid:
                        raise unexpected_keyword(cls.__name__, name, valid)
        return super().__new__(cls)


class NonFiniteEvaluation(Exception):
    """The objective or its gradient was not finite at the point `x` a step had to use."""

    def __init__(self, x: np.ndarray, loss: float) -> None:
        super().__init__(loss)
        self.x = x
        self.loss = loss


def evaluate_finite(evaluate: Evaluate, x: np.ndarray) -> tuple[float, np.ndarray]:
    """`evaluate(x)`, or `NonFiniteEvaluation` at `x` when the loss or gradient is NaN or infinite."""
    loss, grad = evaluate(x)
    if not (math.isfinite(loss) and all_finite(grad)):
        raise NonFiniteEvaluation(x, loss)
    return loss, grad


_all_true = np.logical_and.reduce  # ndarray.all() without its Python-level wrapper


def all_finite(v: np.ndarray) -> bool:
    """Whether every element of `v` is finite."""
    return bool(_all_true(np.isfinite(v)))


class StepwiseAlgorithm(Algorithm, Generic[S]):
    """An algorithm advanced one step at a time by the driver loop in ``_solve.py``.

    Class data:
        loss_at_new_iterate: ``step`` reports the loss at the iterate it returns, so a
            deterministic problem needs no final evaluation.
    """

    loss_at_new_iterate: ClassVar[bool] = False

    @abc.abstractmethod
    def init(self, x0: np.ndarray) -> S:
        """The algorithm's state before the first step."""
        raise NotImplementedError

    @abc.abstractmethod
    def step(self, evaluate: Evaluate, x: np.ndarray, state: S, box: Box | None) -> tuple[np.ndarray, S, float]:
        """One step from ``x``: returns the new iterate, the new state and the loss evaluated.

        ``evaluate`` returns values as they are; a step that cannot use a non-finite one raises
        `NonFiniteEvaluation` (see `evaluate_finite`). A step that ends the run (see `terminate`)
        without moving returns the very ``x`` it was given: it then counts as no iteration.
        """
        raise NotImplementedError

    def terminate(self, state: S) -> ReturnCode | None:
        """After a step: a return code to end the run (convergence, failure), or None."""
        return None


#: The traits of the first-order family: one value-and-gradient call per step, no test that
#: trusts exact values, bounds by projection.
FIRST_ORDER_TRAITS = Traits(
    single_call_per_step=True,
    commits_state_per_step=False,
    tolerates_stochastic_loss=True,
    requires_gradient=True,
    supports_bounds=True,
    requires_bounds=False,
    supports_callback=True,
    requires_hessian=False,
    supports_constraints=False,
    supports_checkpoint=True,
    has_convergence_test=False,
    supports_minibatches=True,
)


class FirstOrderAlgorithm(StepwiseAlgorithm[S]):
    """One value-and-gradient evaluation per step followed by a pure `update`.

    With bounds, the updated iterate is projected onto the box ``[lb, ub]``.
    """

    @abc.abstractmethod
    def update(self, grad: np.ndarray, x: np.ndarray, state: S) -> tuple[np.ndarray, S]:
        """The iterate after one update with gradient ``grad`` at ``x``, and the new state."""
        raise NotImplementedError

    def step(self, evaluate: Evaluate, x: np.ndarray, state: S, box: Box | None) -> tuple[np.ndarray, S, float]:
        loss, grad = evaluate(x)  # evaluate_finite, inlined: the driver's hot path
        if not (math.isfinite(loss) and _all_true(np.isfinite(grad))):
            raise NonFiniteEvaluation(x, loss)
        x_new, state = self.update(grad, x, state)
        if box is not None:
            # A new iterate is the algorithm's own until returned: it is projected in place.
            x_new = np.clip(x_new, box[0], box[1], out=None if x_new is x else x_new)
        return x_new, state, loss


class Monitor(Protocol):
    """The driver's bookkeeping, as a whole-run algorithm reports to it."""

    maxiters: int | None
    iterations: int

    def after_step(self, x: np.ndarray, loss: float) -> ReturnCode | None:
        """Record one completed iteration; a return code means: stop now, for this reason."""
        ...

    def out_of_time(self) -> bool:
        """Whether the time budget (maxtime) is used up."""
        ...


@dataclass(frozen=True)
class RunResult:
    """What a whole-run algorithm hands back to ``solve``.

    Attributes:
        x: The final flat iterate.
        loss: The objective at ``x`` in the minimisation sense.
        retcode: Why the run ended.
        message: The backend's own explanation.
        original: The backend's raw result.
    """

    x: np.ndarray
    loss: float
    retcode: ReturnCode
    message: str
    original: Any


class WholeRunAlgorithm(Algorithm):
    """An algorithm that runs an external solver from start to end."""

    @abc.abstractmethod
    def run(self, objective: Objective, monitor: Monitor) -> RunResult:
        """Minimise ``objective`` from ``objective.x0``, calling ``monitor.after_step`` each iteration."""
        raise NotImplementedError


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def check_range(
    name: str, value: Any, lo: float, hi: float, *, closed_lo: bool = False, closed_hi: bool = True
) -> None:
    """Require a real ``value`` in the interval from `lo` to `hi` (ends closed as asked)."""
    v = _real(name, value)
    above = v >= lo if closed_lo else v > lo
    below = v <= hi if closed_hi else v < hi
    if not (above and below):
        interval = f"{'[' if closed_lo else '('}{lo:g}, {hi:g}{']' if closed_hi else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    """Require a finite real ``value > 0``; the error echoes the bad value."""
    if not (math.isfinite(_real(name, value)) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    """Require a finite real ``value >= 0``; the error echoes the bad value."""
    if not (math.isfinite(_real(name, value)) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    """Require an integer ``value >= 1``; the error echoes the bad value."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_fraction(name: str, value: Any) -> None:
    """Require a real ``0 <= value < 1``; the error echoes the bad value."""
    if not 0 <= _real(name, value) < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_rate(name: str, value: Any) -> None:
    """Require a step size: a finite real ``value > 0``, or a schedule ``value(step) -> float``."""
    if callable(value) and not isinstance(value, type):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number or a schedule lr(step) -> float, got {value!r}")
    check_positive(name, value)


def rate_at(name: str, value: Any, step: int) -> float:
    """The step size for update number `step` (0 for the first): `value` itself, or `value(step)`.

    A schedule's value must be a finite number >= 0; anything else is a ValueError naming it.
    """
    if not callable(value):
        return float(value)
    out = value(step)
    if isinstance(out, bool) or not isinstance(out, numbers.Real) or not (math.isfinite(out) and float(out) >= 0):
        raise ValueError(
            f"the schedule {name}={value!r} returned {out!r} at step {step}; it must return a finite number >= 0"
        )
    return float(out)
