"""numba, loaded on first use, for the project's compiled kernels (``fast._priority_kernel``,
``sim._engine_kernel``).

A kernel module keeps its loop and helpers as plain Python (the tested reference) and asks
``compile_kernel`` for the compiled version the first time it is needed. numba caches the
machine code beside the module (``cache=True``), so only the first process on a machine pays
the compile. ``SOJOURN_NO_NUMBA=1`` (or a platform without numba's wheels) gives None, and the
caller runs the Python reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

__all__ = ["compile_kernel"]


def compile_kernel(namespace: MutableMapping[str, Any], helpers: Sequence[str],
                   kernel: str = "_kernel", counted_helpers: bool = True) -> Callable[..., Any] | None:
    """The compiled ``namespace[kernel]``, or None without numba or with ``SOJOURN_NO_NUMBA`` set.

    The ``helpers`` are compiled in place first (``namespace`` is the kernel module's ``globals()``),
    since a compiled kernel calls the compiled versions of the functions it names.
    ``counted_helpers=False``: the helpers are compiled without numba's reference counting
    (``_nrt=False``), for helpers that allocate nothing and are called on every event with many
    arrays, whose counting would cost more than their work (the engine's and the fleet's).
    """
    if os.environ.get("SOJOURN_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; a platform may lack its wheels
        return None
    jit = numba.njit(cache=True, nogil=True)
    uncounted: dict[str, Any] = {"_nrt": False}  # numba's private flag: no reference counting
    helper_jit = jit if counted_helpers else numba.njit(cache=True, nogil=True, **uncounted)
    for name in helpers:
        namespace[name] = helper_jit(namespace[name])
    compiled: Callable[..., Any] = jit(namespace[kernel])
    return compiled
