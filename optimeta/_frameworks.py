"""Objectives written for jax or torch: ``OptimizationProblem(..., grad="jax" / "torch")``.

The framework computes the value, the gradient and second derivatives of ``f``; `Objective`
still owns everything else (counting calls, threading and committing the state, the sign for
maximisation). On the NumPy path (every algorithm that is not elementwise) values cross the
boundary as NumPy both ways: each call converts the parameters and the committed state to the
framework's arrays, and the state ``f`` returns comes back as NumPy arrays (Python scalars for
0-d ones) before it is committed, so no jax array, tracer or torch tensor is kept. On the
native path (`optimeta._native`) the iterate, the moments and the state stay the framework's
arrays. jax and torch are imported when a problem names them, never when optimeta is imported.

This module is the front the problem and the gradient sources use: the names, the import with
its install hint, the check of an initial state, and the engine for a ``grad=`` name. The
engines, each a `FrameworkGradient` (`_framework_base`), are `JaxGradient` (`_framework_jax`)
and `TorchGradient` (`_framework_torch`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._framework_base import FrameworkGradient
from ._framework_jax import JaxGradient, check_jax_state
from ._framework_torch import TorchGradient

if TYPE_CHECKING:
    from ._values import Layout

__all__ = ["FRAMEWORKS", "FrameworkGradient", "check_state", "framework_gradient", "require"]

#: The ``grad=`` names whose gradients come from a framework's own automatic differentiation.
FRAMEWORKS = ("jax", "torch")


def require(name: str) -> ModuleType:
    """Import the framework `name`, or say which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ModuleNotFoundError(
            f'grad="{name}" takes gradients with {name}, which cannot be imported ({exc}): install it '
            f"with pip install 'optimeta[{name}]'",
            name=name,
        ) from exc


def check_state(name: str, state: Any) -> None:
    """Refuse, when the problem is built, an initial state the framework cannot carry."""
    if name == "jax" and state is not None:
        check_jax_state(state)


def framework_gradient(name: str, f: Callable[..., Any], layout: Layout, stateful: bool) -> FrameworkGradient:
    """The value-and-gradient engine of ``grad=name`` for one solve."""
    engine = JaxGradient if name == "jax" else TorchGradient
    return engine(f, layout, stateful)
