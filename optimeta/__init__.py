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
from .backends import (
    BFGS,
    CG,
    LBFGS,
    OLBFGS,
    SGD,
    TNC,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    AMSGrad,
    Lion,
    NAdam,
    NelderMead,
    NewtonCG,
    Powell,
    RMSProp,
    TrustExact,
    TrustKrylov,
    TrustNCG,
)
from .traits import IncompatibleAlgorithmError, Traits, algorithms, traits

__version__ = "0.1.0"

__all__ = [
    "BFGS",
    "CG",
    "LBFGS",
    "OLBFGS",
    "SGD",
    "TNC",
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
    "NelderMead",
    "NewtonCG",
    "OptimizationProblem",
    "Powell",
    "RMSProp",
    "ReturnCode",
    "Solution",
    "StateMutationError",
    "Stats",
    "Traits",
    "TrustExact",
    "TrustKrylov",
    "TrustNCG",
    "__version__",
    "algorithms",
    "schedules",
    "solve",
    "traits",
]
