"""The algorithms. Importing this package registers every one of them."""

from .adam import Adam
from .olbfgs import OLBFGS
from .scipy_bfgs import BFGS
from .sgd import SGD

__all__ = ["BFGS", "OLBFGS", "SGD", "Adam"]
