"""Every cache sojourn keeps, in one place: what each holds, its key, its bound, and one way to clear them all.

A study evaluates thousands of configurations in one process, so the costly parts are
remembered between trials. Each cache is keyed by content (values, or a file's path with
its modification time and size, never a file name alone or an object's identity that can
be reused), is bounded, and registers here so ``clear_caches()`` empties them all (a
notebook that edited a trace or a catalogue file in place, a test that wants a cold start).

========================  =====================================  ===============================
cache                     key                                    bound
========================  =====================================  ===============================
``catalogue``             catalogue file stamp + inline tables   16 catalogues
``node capacity``         every setting it depends on + trace    512 MB (SOJOURN_CAPACITY_CACHE_MB)
                          file stamp
``trace``                 trace file stamp + format              8 traces
``fluid classes``         a cached capacity's request pool       4 pools (held, so never reused)
``distribution laws``     the (frozen) distribution's values     1024 + 256 laws
``M/D/c numbers``         (load, servers, tail)                  32 solves
========================  =====================================  ===============================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["cache_names", "clear_caches", "file_stamp", "register"]

_CLEARERS: dict[str, Callable[[], None]] = {}


def register(name: str, clear: Callable[[], None]) -> None:
    """Make ``clear`` part of ``clear_caches()`` under ``name`` (a module's cache, at its import)."""
    _CLEARERS[name] = clear


def clear_caches() -> None:
    """Empty every cache sojourn keeps (those of the modules imported so far)."""
    for clear in list(_CLEARERS.values()):
        clear()


def cache_names() -> list[str]:
    """The caches registered so far."""
    return sorted(_CLEARERS)


def file_stamp(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    """A file's content key: resolved path, modification time (ns) and size; (path, -1, -1) if absent."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        return (str(p), -1, -1)
    return (str(p.resolve()), st.st_mtime_ns, st.st_size)
