"""The two shapes of algorithm, and what a backend declares and reports besides.

* `StepwiseAlgorithm`: pure ``init`` / ``step`` on flat vectors, driven by the one loop in
  ``_solve.py``. `FirstOrderAlgorithm` narrows it to "one value-and-gradient evaluation, then an
  update", and projects every update onto the box when the problem has bounds.
* `WholeRunAlgorithm`: hands the wrapped objective to an external solver (scipy) for the whole
  run, reporting each of its iterations to a `Monitor` that applies budgets and the callback.
* `Runner`: the run each shape asks for its own kind of run (`Algorithm.execute`).
* `Example`: a configuration for the test catalogue; `FIRST_ORDER_TRAITS`: the first-order
  family's traits; `NonFiniteEvaluation`: a value a step cannot use; `RunResult`: what a
  whole-run algorithm hands back.

Algorithms are frozen dataclasses of hyperparameters; whatever changes during a run lives in an
explicit state object that ``init`` makes and ``step`` returns. Their hyperparameters are checked
with ``backends/_checks.py``; an unknown keyword is answered by ``_keywords.py``.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
from typing_extensions import Self

from .._keywords import keyword_names, unexpected_keyword
from .._solution import ReturnCode
from ..traits import Traits
from ._checks import rate_at

if TYPE_CHECKING:
    from .._objective import Objective
    from .._solution import Solution

__all__ = [
    "EXAMPLE_BUDGET",
    "FIRST_ORDER_TRAITS",
    "Algorithm",
    "Box",
    "ElementwiseAlgorithm",
    "Evaluate",
    "Example",
    "FirstOrderAlgorithm",
    "Monitor",
    "NonFiniteEvaluation",
    "RunResult",
    "Runner",
    "StepwiseAlgorithm",
    "WholeRunAlgorithm",
    "all_finite",
    "evaluate_finite",
]

S = TypeVar("S")


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


class Runner(Protocol):
    """The run an algorithm is given (``optimeta._runner.Run``): each shape of algorithm asks it
    for its own kind of run in `Algorithm.execute`, so the front end never asks which it is."""

    def run_stepwise(self, alg: StepwiseAlgorithm[Any]) -> Solution:
        """The one driver loop, from u0 to the end."""
        ...

    def run_whole(self, alg: WholeRunAlgorithm) -> Solution:
        """One call of `WholeRunAlgorithm.run`, reporting each iteration to the run's monitor."""
        ...

    def run_stages(self, alg: Algorithm, stages: Sequence[tuple[Algorithm, int | None]]) -> Solution:
        """One sub-run per stage (a budget each, or None), each from the previous one's result."""
        ...


class Algorithm(abc.ABC):
    """Base of every algorithm: a frozen dataclass of hyperparameters plus its `traits`.

    The methods a shape of algorithm must implement are abstract (``init`` and ``step`` of a
    step-wise one, ``run`` of a whole-run one, and `execute`, which those shapes implement):
    a class that misses one cannot be registered, nor instantiated.

    An unknown keyword argument is a `TypeError` that names the hyperparameter meant
    (`unexpected_keyword`): ``Adam(learning_rate=1e-3)`` suggests ``lr``.
    """

    traits: ClassVar[Traits]

    @abc.abstractmethod
    def execute(self, run: Runner) -> Solution:
        """Run this algorithm in `run`, by asking it for the kind of run this shape needs."""
        raise NotImplementedError

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        """Configurations of the class for the test catalogue (`Example`); the benchmark suite's
        is `benchmark_config`.

        The default: the class with its default hyperparameters, and `EXAMPLE_BUDGET` steps
        when it has no convergence test. A class whose defaults do not suit (a required step
        size, tolerances too loose for the catalogue's optima) declares its own.
        """
        budget = None if cls.traits.has_convergence_test else EXAMPLE_BUDGET
        return (Example(cls.__name__, cls(), budget),)

    @classmethod
    def benchmark_config(cls, rates: Mapping[str, float]) -> Self | None:
        """The instance the benchmark suite (``python -m benchmarks``) runs on a problem, or None
        to leave the class out of it (its rows then read "not configured").

        The default: the class with its default hyperparameters, or None when its constructor
        requires an argument (a step size without a default). A class whose benchmark run needs
        a problem's step size, or hyperparameters other than its defaults, declares its own.

        Args:
            rates: The problem's tuned step sizes, by algorithm name (``BenchProblem.rates`` in
                ``benchmarks/problems.py``: ``"SGD"``, ``"Adam"`` and ``"OLBFGS"``), for a
                first-order class to take its own or to scale a kindred one's.
        """
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        required = [
            p
            for p in inspect.signature(cls).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind not in variadic
        ]
        return None if required else cls()

    #: How the class meets some of its traits, by trait name, for the README's trait table
    #: (``python -m benchmarks --traits``), e.g. ``{"supports_bounds": "projection"}``.
    trait_notes: ClassVar[Mapping[str, str]] = {}

    #: Per class: the keywords its constructor takes (None: any, it takes ``**kwargs``).
    _keyword_names: ClassVar[dict[type, tuple[str, ...] | None]] = {}

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        if kwargs:
            known = Algorithm._keyword_names
            if cls not in known:
                known[cls] = keyword_names(cls.__init__)
            valid = known[cls]
            if valid is not None:
                for name in kwargs:
                    if name not in valid:
                        raise unexpected_keyword(cls.__name__, name, valid)
        return super().__new__(cls)


class NonFiniteEvaluation(Exception):
    """The objective or its gradient was not finite at the point `x` a step had to use.

    `state`, when not None, is the algorithm's state to go on from, equal to the one the step
    was given: a step that was donated its state (a compiled native step writes over it) hands
    it back this way. `start`, when not None, is the loss at the iterate the step was given,
    which the step evaluated (finite, with its gradient) before it met `x`: a run that ends
    there needs no evaluation more."""

    def __init__(self, x: Any, loss: float, state: Any = None, start: float | None = None) -> None:
        super().__init__(loss)
        self.x = x
        self.loss = loss
        self.state = state
        self.start = start


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
    """An algorithm advanced one step at a time by the driver loop in ``_run.py``.

    Class data:
        loss_at_new_iterate: ``step`` reports the loss at the iterate it returns, so a
            deterministic problem needs no final evaluation.
    """

    loss_at_new_iterate: ClassVar[bool] = False

    def execute(self, run: Runner) -> Solution:
        return run.run_stepwise(self)

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

    def step_donated(self, evaluate: Evaluate, x: np.ndarray, state: S, box: Box | None) -> tuple[np.ndarray, S, float]:
        """`step`, with ``x`` and ``state`` donated: the caller never reads them again, so the
        step may write over their arrays (as ``jax.jit``'s ``donate_argnums``). The driver loop
        calls it, with iterates and states it made and alone holds; the result must be `step`'s,
        bit for bit. The default is `step`: an algorithm overrides it only to save memory traffic
        on large vectors (`Adam`'s and `SGD`'s moments, `BFGS`'s inverse Hessian)."""
        return self.step(evaluate, x, state, box)

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

    trait_notes: ClassVar[Mapping[str, str]] = {"supports_bounds": "projection"}

    @abc.abstractmethod
    def update(self, grad: np.ndarray, x: np.ndarray, state: S) -> tuple[np.ndarray, S]:
        """The iterate after one update with gradient ``grad`` at ``x``, and the new state."""
        raise NotImplementedError

    def update_donated(self, grad: np.ndarray, x: np.ndarray, state: S) -> tuple[np.ndarray, S]:
        """`update`, with ``x`` and ``state`` donated (see `StepwiseAlgorithm.step_donated`);
        the default is `update`."""
        return self.update(grad, x, state)

    def step(self, evaluate: Evaluate, x: np.ndarray, state: S, box: Box | None) -> tuple[np.ndarray, S, float]:
        loss, grad = evaluate(x)  # evaluate_finite, inlined: the driver's hot path
        if not (math.isfinite(loss) and all_finite(grad)):
            raise NonFiniteEvaluation(x, loss)
        x_new, state = self.update(grad, x, state)
        if box is not None:
            # A new iterate is the algorithm's own until returned: it is projected in place.
            x_new = np.clip(x_new, box[0], box[1], out=None if x_new is x else x_new)
        return x_new, state, loss

    def step_donated(self, evaluate: Evaluate, x: np.ndarray, state: S, box: Box | None) -> tuple[np.ndarray, S, float]:
        loss, grad = evaluate(x)
        if not (math.isfinite(loss) and all_finite(grad)):
            raise NonFiniteEvaluation(x, loss)  # before any array given is written
        x_new, state = self.update_donated(grad, x, state)
        if box is not None:
            x_new = np.clip(x_new, box[0], box[1], out=None if x_new is x else x_new)
        return x_new, state, loss


class ElementwiseAlgorithm(FirstOrderAlgorithm[S]):
    """A first-order algorithm whose update acts on each coordinate alone, written once for
    every array library.

    Its maths is three methods: `slots`, the arrays its state keeps beside an iterate (made
    with the array namespace ``xp``: NumPy, ``jax.numpy`` or ``torch``); `coefficients`, the
    scalars of update number ``step`` (the step size of a schedule, bias corrections), which
    the host computes; and `leaf_update`, the new iterate and slots from a gradient, written
    with operators and ``xp``'s functions alone. The NumPy `update` is that definition applied
    to the flat vector; a run on jax or torch arrays applies the same definition to each of the
    user's arrays, in the framework (see `optimeta._native_jax`). The state is a NamedTuple of
    the step count followed by the slots (`state_type`).
    """

    #: The NamedTuple of the state: ``(step, *slots)``.
    state_type: ClassVar[Any]
    #: The step size, a number or a schedule (a hyperparameter of every elementwise algorithm).
    lr: Any
    #: Whether `update` takes a large vector in one fused pass (`optimeta.backends._kernels`,
    #: numba when installed), the memory of its new arrays from the ``spare`` `Recycler` of its
    #: state: the native torch path then runs that pass on a large CPU tensor's own memory.
    fused: ClassVar[bool] = False

    def slots(self, xp: Any, x: Any) -> tuple[Any, ...]:
        """The state's arrays for iterate `x` (or one array of it) before the first update; the
        default: zeros shaped as `x`, one per field of `state_type` after the step count."""
        return tuple(xp.zeros_like(x) for _ in self.state_type._fields[1:])

    def coefficients(self, step: int) -> tuple[float, ...]:
        """The scalars of update number `step` (0 for the first): Python floats; the default:
        the step size ``lr`` (a number or a schedule) at that step."""
        return (rate_at("lr", self.lr, step),)

    @abc.abstractmethod
    def leaf_update(
        self, xp: Any, grad: Any, x: Any, slots: tuple[Any, ...], coefficients: tuple[float, ...]
    ) -> tuple[Any, tuple[Any, ...]]:
        """The new iterate and slots after one update with gradient `grad` at `x`: new arrays,
        the ones given are not written."""
        raise NotImplementedError

    def init(self, x0: np.ndarray) -> S:
        return self.from_slots(0, self.slots(np, x0))

    def from_slots(self, step: int, slots: tuple[Any, ...]) -> S:
        """The state after `step` updates with these slots (NumPy arrays)."""
        state: S = self.state_type(step, *slots)
        return state

    def to_slots(self, state: S) -> tuple[int, tuple[Any, ...]]:
        """The updates made and the slots of `state` (`from_slots` undone)."""
        return state[0], tuple(state[1:])  # type: ignore[index]

    def update(self, grad: np.ndarray, x: np.ndarray, state: S) -> tuple[np.ndarray, S]:
        step = state[0]  # type: ignore[index]
        x_new, slots = self.leaf_update(np, grad, x, tuple(state[1:]), self.coefficients(step))  # type: ignore[index]
        new_state: S = self.state_type(step + 1, *slots)
        return x_new, new_state


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

    def execute(self, run: Runner) -> Solution:
        return run.run_whole(self)

    @abc.abstractmethod
    def run(self, objective: Objective, monitor: Monitor) -> RunResult:
        """Minimise ``objective`` from ``objective.x0``, calling ``monitor.after_step`` each iteration."""
        raise NotImplementedError
