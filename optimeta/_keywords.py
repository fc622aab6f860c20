"""Unknown keyword arguments, answered with the name meant.

An unknown keyword of an algorithm's constructor (``Adam(learning_rate=1e-3)``) or of an entry
point (``solve(prob, alg, max_iter=10)``) is a `TypeError` that suggests the valid name the
caller most likely means: a known alias from another library first (`KEYWORD_ALIASES`), then the
closest spelling, and lists every valid name.

* `unexpected_keyword`: the error, for one unknown name;
* `keyword_names`: the keywords a function takes, read from its signature;
* `suggest_keywords`: the decorator that gives a function these errors.

``Algorithm.__new__`` (``backends/_base.py``) and the entry points of ``_solve.py`` and
``_solver.py`` use them.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

__all__ = ["KEYWORD_ALIASES", "keyword_names", "suggest_keywords", "unexpected_keyword"]

P = ParamSpec("P")
R = TypeVar("R")

#: Names other libraries (torch.optim, optax, scipy, scikit-learn, Keras) give to an argument
#: that optimeta calls otherwise: consulted before the closest spelling, since
#: ``learning_rate`` is not spelt like ``lr``. An entry applies only where its target is valid.
KEYWORD_ALIASES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",),
    "step_size": ("lr",),
    "stepsize": ("lr",),
    "beta1": ("b1",),
    "beta_1": ("b1",),
    "beta2": ("b2",),
    "beta_2": ("b2",),
    "betas": ("b1", "b2"),
    "epsilon": ("eps",),
    "max_iter": ("maxiters", "maxiter"),
    "maxiter": ("maxiters",),
    "max_iters": ("maxiters", "maxiter"),
    "max_iterations": ("maxiters", "maxiter"),
    "n_iter": ("maxiters", "maxiter"),
    "num_iters": ("maxiters", "maxiter"),
    "iterations": ("maxiters", "maxiter"),
    "max_time": ("maxtime",),
    "time_limit": ("maxtime",),
    "timeout": ("maxtime",),
    "random_state": ("seed",),
    "rng": ("seed",),
    "callbacks": ("callback",),
    "disp": ("verbose",),
    "verbosity": ("verbose",),
    "progress_bar": ("progress",),
    "show_progress": ("progress",),
    "n_epochs": ("epochs",),
    "num_epochs": ("epochs",),
    "batches": ("data",),
    "minibatches": ("data",),
}


def unexpected_keyword(owner: str, name: str, valid: Iterable[str], what: str = "hyperparameters") -> TypeError:
    """The `TypeError` for an unknown keyword argument `name` of `owner`: the valid name it most
    likely means (a known alias from another library first, then the closest spelling), and
    every valid name.

    Args:
        owner: Who was called, e.g. ``"Adam"`` or ``"solve()"``.
        name: The unknown keyword.
        valid: The keywords `owner` takes.
        what: What the valid keywords are called in the message.

    Returns:
        The error, for the caller to raise.

    Example:
        >>> from optimeta._keywords import unexpected_keyword
        >>> str(unexpected_keyword("Adam", "learning_rate", ["lr", "b1", "b2", "eps"]))
        "Adam got an unexpected keyword argument 'learning_rate'; did you mean 'lr'? Its hyperparameters: lr, b1, b2, eps"
    """
    valid = list(valid)
    guesses = [alias for alias in KEYWORD_ALIASES.get(name, ()) if alias in valid]
    if not guesses:
        guesses = difflib.get_close_matches(name, valid, n=1)
    if not guesses:
        guesses = difflib.get_close_matches(name.lower().replace("-", "_"), valid, n=1, cutoff=0.5)
    hint = f"; did you mean {' and '.join(repr(g) for g in guesses)}?" if guesses else "."
    listed = ", ".join(valid) if valid else "none"
    return TypeError(f"{owner} got an unexpected keyword argument {name!r}{hint} Its {what}: {listed}")


def keyword_names(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The names `fn` takes as keywords (without ``self``), or None when it takes ``**kwargs``."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params if p.kind in kinds and p.name != "self")


def suggest_keywords(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: an unknown keyword argument of the decorated function is a `TypeError` that
    suggests the valid name meant (`unexpected_keyword`), instead of Python's bare one.

    Args:
        what: What its keywords are called in the message, e.g. ``"options"``.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        valid = keyword_names(fn)
        known = frozenset(valid or ())
        # The message lists the keyword-only options (those after the problem and algorithm).
        params = inspect.signature(fn).parameters.values()
        options = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY] or list(known)

        @functools.wraps(fn)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            if valid is not None:
                for name in kwargs:
                    if name not in known:
                        raise unexpected_keyword(f"{fn.__name__}()", name, options, what)
            return fn(*args, **kwargs)

        return checked

    return decorate
