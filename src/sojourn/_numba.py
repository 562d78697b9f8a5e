"""numba, loaded on first use, for the project's compiled kernels (``fast._priority_kernel``,
``sim._engine_kernel``, ``sim._fleet_kernel``).

A kernel module keeps its loop and helpers as plain Python (the tested reference) and asks
``compile_kernel`` for the compiled version the first time it is needed. numba caches the
machine code (``cache=True``), so only the first process on a machine pays the compile.
``SOJOURN_NO_NUMBA=1`` (or a platform without numba's wheels) gives None, and the caller runs
the Python reference.

The cache is keyed by content. numba invalidates a cached function when its own source file
changes, but not when a function it calls, defined in another file, does (numba's docs, "Cache
Notes"; numba issue #1833): a compiled kernel would keep running the old helpers it inlined.
So each kernel's cache lives in a directory named by a digest of its module's source and of
every module it takes compiled helpers from (``depends``): any change to any of them is a new
directory and a fresh compile. The directories sit under ``SOJOURN_NUMBA_CACHE_DIR``, else
numba's own ``NUMBA_CACHE_DIR``, else ``__pycache__/numba`` beside the kernels (where numba puts
its caches by default), else, where that is not writable, ``~/.cache/sojourn/numba``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "compile_kernel"]


def cache_dir(sources: Sequence[str | os.PathLike[str]]) -> Path:
    """The directory numba caches a kernel compiled from these source files in: named by their digest."""
    digest = hashlib.sha256()
    for src in sources:
        digest.update(Path(src).read_bytes())
        digest.update(b"\0")
    base_env = os.environ.get("SOJOURN_NUMBA_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if base_env:
        base = Path(base_env).expanduser()
    else:
        pycache = Path(sources[0]).parent / "__pycache__"
        writable = os.access(pycache if pycache.is_dir() else pycache.parent, os.W_OK)
        base = pycache / "numba" if writable else Path.home() / ".cache" / "sojourn" / "numba"
    return base / digest.hexdigest()[:20]


def compile_kernel(namespace: MutableMapping[str, Any], helpers: Sequence[str],
                   kernel: str = "_kernel", counted_helpers: bool = True,
                   depends: Sequence[str | os.PathLike[str]] = ()) -> Callable[..., Any] | None:
    """The compiled ``namespace[kernel]``, or None without numba or with ``SOJOURN_NO_NUMBA`` set.

    The ``helpers`` are compiled in place first (``namespace`` is the kernel module's ``globals()``),
    since a compiled kernel calls the compiled versions of the functions it names.
    ``counted_helpers=False``: the helpers are compiled without numba's reference counting
    (``_nrt=False``), for helpers that allocate nothing and are called on every event with many
    arrays, whose counting would cost more than their work (the engine's and the fleet's).
    ``depends``: the source files of other modules whose compiled functions the kernel calls; their
    content is part of the cache's key (module docstring).
    """
    if os.environ.get("SOJOURN_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; a platform may lack its wheels
        return None
    # numba picks a function's cache locator when it is decorated, from numba.config.CACHE_DIR
    # (NUMBA_CACHE_DIR's setting): set for these decorations only.
    config: Any = numba.config
    saved = config.CACHE_DIR
    config.CACHE_DIR = str(cache_dir([namespace["__file__"], *depends]))
    try:
        jit = numba.njit(cache=True, nogil=True)
        uncounted: dict[str, Any] = {"_nrt": False}  # numba's private flag: no reference counting
        helper_jit = jit if counted_helpers else numba.njit(cache=True, nogil=True, **uncounted)
        for name in helpers:
            namespace[name] = helper_jit(namespace[name])
        compiled: Callable[..., Any] = jit(namespace[kernel])
    finally:
        config.CACHE_DIR = saved
    return compiled
