"""The algorithms. Importing this package registers every one of them."""

from .adam import Adam
from .adaptive import Adadelta, Adagrad, Adamax, AdamW, AMSGrad, Lion, NAdam, RMSProp
from .bfgs import BFGS
from .olbfgs import OLBFGS
from .scipy_minimize import LBFGS
from .sgd import SGD

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
    "Lion",
    "NAdam",
    "RMSProp",
]
