"""Notes of a library that a run reports otherwise, silenced safely in threads.

`warnings.catch_warnings` saves and restores the process's whole filter list: two threads that
overlap restore each other's lists, and a filter one of them installed stays for good. Here a
filter is installed when the first run that needs it starts and removed, by identity, when the
last one ends, under a lock; filters the user installed meanwhile are left alone.

Floating-point warnings are not filtered at all: ``np.errstate``, which is local to the thread
(and context), keeps numpy from raising them.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["silenced"]

_LOCK = threading.Lock()
#: (message, category) -> [runs holding it, the entry installed in ``warnings.filters``].
_HELD: dict[tuple[str, type[Warning]], list[Any]] = {}


@contextlib.contextmanager
def silenced(*notes: tuple[str, type[Warning]]) -> Iterator[None]:
    """Ignore warnings whose message starts with one of `notes` (a regular expression, with its
    category) while the block runs, in any thread; the process's filters are as they were once
    the last block that holds a note has ended."""
    with _LOCK:
        for note in notes:
            held = _HELD.get(note)
            if held is None:
                warnings.filterwarnings("ignore", note[0], note[1])
                _HELD[note] = [1, warnings.filters[0]]
            else:
                held[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            for note in notes:
                held = _HELD[note]
                held[0] -= 1
                if held[0] == 0:
                    del _HELD[note]
                    _remove(held[1])


def _remove(entry: Any) -> None:
    filters: list[Any] = warnings.filters  # type: ignore[assignment]  # a list, typed as a sequence
    for i, installed in enumerate(filters):
        if installed is entry:
            del filters[i]
            break
    else:
        return  # the filters were reset meanwhile (warnings.resetwarnings, a catch_warnings block)
    mutated = getattr(warnings, "_filters_mutated", None)  # the registries' cache, as filterwarnings does
    if callable(mutated):
        mutated()
