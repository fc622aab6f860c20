"""The algorithms. Importing this package registers every one of them."""

from .adam import Adam
from .adaptive import Adamax, AdamW, AMSGrad, NAdam
from .adaptive_scaling import Adadelta, Adagrad, Lion, RMSProp
from .bfgs import BFGS
from .olbfgs import OLBFGS
from .scipy_constrained import COBYLA, COBYQA, SLSQP, TrustConstr
from .scipy_derivative_free import NelderMead, Powell
from .scipy_global import DIRECT, SHGO, DifferentialEvolution, DualAnnealing
from .scipy_gradient import CG, TNC
from .scipy_minimize import LBFGS
from .scipy_newton import Dogleg, NewtonCG, TrustExact, TrustKrylov, TrustNCG
from .sgd import SGD

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
    "DifferentialEvolution",
    "Dogleg",
    "DualAnnealing",
    "Lion",
    "NAdam",
    "NelderMead",
    "NewtonCG",
    "Powell",
    "RMSProp",
    "TrustConstr",
    "TrustExact",
    "TrustKrylov",
    "TrustNCG",
]
