"""The algorithms. Importing this package registers every one of them."""

from .adam import Adam
from .bfgs import BFGS
from .olbfgs import OLBFGS
from .scipy_minimize import LBFGS
from .sgd import SGD

__all__ = ["BFGS", "LBFGS", "OLBFGS", "SGD", "Adam"]
