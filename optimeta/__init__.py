"""optimeta: one `OptimizationProblem`, one `solve(prob, alg)`, many backends, checked by traits.

Objectives may carry an explicit state, ``f(u, p, state) -> (loss, new_state)``, which `solve`
threads through every call and returns; algorithms declare their `Traits`, and `solve` refuses
a problem/algorithm pair that cannot work before the objective is ever called.
"""

import logging

from . import schedules
from ._chain import Chain
from ._constraints import Constraint
from ._ensemble import multistart, solve_many
from ._observe import History
from ._plot import plot
from ._problem import OptimizationProblem
from ._resume import resume
from ._solution import IterationInfo, ReturnCode, Solution, Stats
from ._solve import default_algorithm, solve
from ._solver import Checkpoint, Counts, Skips, Solver, init
from ._sources import GradientSource
from ._state import StateMutationError
from .backends import (
    BFGS,
    CG,
    COBYLA,
    COBYQA,
    DIRECT,
    LBFGS,
    OLBFGS,
    SGD,
    SHGO,
    SLSQP,
    TNC,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    AMSGrad,
    DifferentialEvolution,
    Dogleg,
    DualAnnealing,
    Lion,
    NAdam,
    NelderMead,
    NewtonCG,
    Powell,
    RMSProp,
    TrustConstr,
    TrustExact,
    TrustKrylov,
    TrustNCG,
)
from .traits import IncompatibleAlgorithmError, Traits, algorithms, traits

__version__ = "0.1.0"

# The library logs through the "optimeta" logger (solve(..., verbose=True)); the application
# decides where records go.
logging.getLogger("optimeta").addHandler(logging.NullHandler())

__all__ = [
    "BFGS",
    "CG",
    "COBYLA",
    "COBYQA",
    "DIRECT",
    "LBFGS",
    "OLBFGS",
    "SGD",
    "SHGO",
    "SLSQP",
    "TNC",
    "AMSGrad",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Chain",
    "Checkpoint",
    "Constraint",
    "Counts",
    "DifferentialEvolution",
    "Dogleg",
    "DualAnnealing",
    "GradientSource",
    "History",
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
    "Skips",
    "Solution",
    "Solver",
    "StateMutationError",
    "Stats",
    "Traits",
    "TrustConstr",
    "TrustExact",
    "TrustKrylov",
    "TrustNCG",
    "__version__",
    "algorithms",
    "default_algorithm",
    "init",
    "multistart",
    "plot",
    "resume",
    "schedules",
    "solve",
    "solve_many",
    "traits",
]
