"""The algorithms. Importing this package registers every one of them."""

from .adam import Adam
from .adaptive import Adadelta, Adagrad, Adamax, AdamW, AMSGrad, Lion, NAdam, RMSProp
from .bfgs import BFGS
from .olbfgs import OLBFGS
from .scipy_derivative_free import NelderMead, Powell
from .scipy_gradient import CG, TNC
from .scipy_minimize import LBFGS
from .scipy_newton import NewtonCG, TrustExact, TrustKrylov, TrustNCG
from .sgd import SGD

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
    "Lion",
    "NAdam",
    "NelderMead",
    "NewtonCG",
    "Powell",
    "RMSProp",
    "TrustExact",
    "TrustKrylov",
    "TrustNCG",
]
