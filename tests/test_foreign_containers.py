"""A container of another library's kind as ``u0`` (a torch module, a jax pytree such as an
equinox Module without ``grad="jax"``, a Mapping that is not a dict) is refused when the problem
is built, with a TypeError that says what to pass instead: optimeta's own trees are dicts,
lists, tuples and NamedTuples of arrays; ``grad="jax"`` takes any jax pytree apart
(tests/test_jax_pytrees.py)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

import optimeta as om


class ReadOnlyMapping(Mapping[str, Any]):
    """A Mapping that is not a dict, as flax's FrozenDict is."""

    def __init__(self, items: dict[str, Any]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def test_a_mapping_that_is_not_a_dict_is_refused_naming_dict() -> None:
    u0 = ReadOnlyMapping({"w": np.zeros(2)})
    with pytest.raises(
        TypeError, match=re.escape("; a ReadOnlyMapping is a Mapping but not a dict: pass dict(...) of it")
    ):
        om.OptimizationProblem(lambda u, p: 0.0, u0)
    # The advice works: the same arrays in a dict make a problem.
    assert om.OptimizationProblem(lambda u, p: 0.0, dict(u0)).u0["w"].shape == (2,)


@pytest.mark.needs("torch")
def test_a_torch_module_is_refused_naming_functional_call() -> None:
    import torch

    with pytest.raises(TypeError) as caught:
        om.OptimizationProblem(lambda u, p: 0.0, torch.nn.Linear(2, 1), grad="torch")
    message = str(caught.value)
    assert message.startswith("u0 must hold real numbers, got object values: Linear(")
    assert "a torch Linear is not taken apart" in message
    assert "named_parameters()" in message and "torch.func.functional_call(module, (u, state), inputs)" in message


@pytest.mark.needs("jax")
def test_a_jax_pytree_is_refused_without_grad_jax_naming_it() -> None:
    import jax

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class Params:
        w: Any
        b: Any

    with pytest.raises(TypeError) as caught:
        om.OptimizationProblem(lambda u, p: 0.0, Params(np.zeros(2), np.zeros(1)))
    message = str(caught.value)
    assert "a jax pytree (Params) is taken apart with grad='jax'" in message
    assert "jax.tree_util.tree_leaves" in message
    # The advice works: with grad="jax" the same pytree is u0, its arrays the parameters.
    prob = om.OptimizationProblem(lambda u, p: 0.0, Params(np.zeros(2), np.zeros(1)), grad="jax")
    assert isinstance(prob.u0, Params) and prob.u0.w.shape == (2,)


def test_an_object_of_no_known_kind_gets_the_plain_message() -> None:
    with pytest.raises(
        TypeError, match=r"^u0 must hold real numbers, got object values: <object object at 0x[0-9a-f]+>$"
    ):
        om.OptimizationProblem(lambda u, p: 0.0, object())
