"""optimeta: one `OptimizationProblem`, one `solve(prob, alg)`, many backends, checked by traits.

Objectives may carry an explicit state, ``f(u, p, state) -> (loss, new_state)``, which `solve`
threads through every call and returns; algorithms declare their `Traits`, and `solve` refuses
a problem/algorithm pair that cannot work before the objective is ever called.
"""

from . import schedules
from ._problem import OptimizationProblem
from ._solution import IterationInfo, ReturnCode, Solution, Stats
from ._solve import solve
from ._state import StateMutationError
from .backends import BFGS, LBFGS, OLBFGS, SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, AMSGrad, Lion, NAdam, RMSProp
from .traits import IncompatibleAlgorithmError, Traits, algorithms, traits

__version__ = "0.1.0"

__all__ = [
    "BFGS",
    "LBFGS",
    "OLBFGS",
    "SGD",
    "AMSGrad",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "IncompatibleAlgorithmError",
    "IterationInfo",
    "Lion",
    "NAdam",
    "OptimizationProblem",
    "RMSProp",
    "ReturnCode",
    "Solution",
    "StateMutationError",
    "Stats",
    "Traits",
    "__version__",
    "algorithms",
    "schedules",
    "solve",
    "traits",
]
