"""A backend defined outside the package, in one file, for the test that the whole contract
suite runs on a new algorithm with no table edited (`test_architecture.py`).

Importing this module registers `ToyGradientDescent`; the suite imports it only when the
environment variable ``OPTIMETA_TEST_BACKENDS`` names it (``conftest.py``), so that the
registry of an ordinary run is the package's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from optimeta.backends._base import FIRST_ORDER_TRAITS, Example, FirstOrderAlgorithm
from optimeta.backends._checks import check_positive
from optimeta.traits import Traits, register


class ToyState(NamedTuple):
    """Updates made."""

    step: int


@register
@dataclass(frozen=True, kw_only=True)
class ToyGradientDescent(FirstOrderAlgorithm[ToyState]):
    r"""Plain gradient descent, :math:`u_{k+1} = u_k - \eta\, g_k`, with a fixed step size.

    Args:
        lr: The step size :math:`\eta`, > 0.

    Traits:
        single_call_per_step, tolerates_stochastic_loss, requires_gradient, supports_bounds
        (projection), supports_callback, supports_checkpoint. Not commits_state_per_step, no
        convergence test.
    """

    lr: float = 0.01

    traits: ClassVar[Traits] = FIRST_ORDER_TRAITS

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        # The catalogue's Rosenbrock function needs many small steps from plain descent.
        return (Example("ToyGradientDescent", cls(lr=2e-3), 20_000),)

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)

    def init(self, x0: np.ndarray) -> ToyState:
        return ToyState(0)

    def update(self, grad: np.ndarray, x: np.ndarray, state: ToyState) -> tuple[np.ndarray, ToyState]:
        x_new: np.ndarray = x - self.lr * grad
        return x_new, ToyState(state.step + 1)
