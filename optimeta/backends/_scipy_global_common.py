"""What the global optimisers of ``scipy_global`` and ``scipy_global_deterministic`` share: the
example of their docstrings, and the return code of a method that runs a planned number of
iterations.
"""

from __future__ import annotations

from typing import Any

from .._solution import ReturnCode
from ._base import Monitor

__all__ = ["EXAMPLE", "budget_retcode"]

#: The Example section of a global optimiser's docstring, for ``EXAMPLE.format(name=...)``: a
#: 2-d Rastrigin function, whose global minimum (at u = 0) the optimiser must find.
EXAMPLE = """
    Example:
        >>> import autograd.numpy as anp, numpy as np, optimeta as om
        >>> def rastrigin(u, p):  # many local minima; the global one at u = 0
        ...     return 10.0 * u.size + anp.sum(u ** 2 - 10.0 * anp.cos(2 * np.pi * u))
        >>> prob = om.OptimizationProblem(rastrigin, np.full(2, 2.5),
        ...                               bounds=(np.full(2, -5.12), np.full(2, 5.12)))
        >>> sol = om.solve(prob, om.{name})
        >>> bool(np.allclose(sol.u, 0.0, atol=1e-4)), bool(sol.objective < 1e-6)
        (True, True)
"""


def budget_retcode(res: Any, monitor: Monitor, planned: int) -> ReturnCode:
    """A method that runs a planned number of iterations by design: MAXITERS when ``solve``'s
    budget cut the plan short, SUCCESS when it ran its course, FAILURE when scipy says so."""
    if not res.success:
        return ReturnCode.FAILURE
    if monitor.maxiters is not None and monitor.maxiters < planned and res.get("nit", 0) >= monitor.maxiters:
        return ReturnCode.MAXITERS
    return ReturnCode.SUCCESS
