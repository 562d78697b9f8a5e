"""Atomic output files: a temporary file in the target folder, renamed over the target when complete.

One writer for every output (front.csv, plots, profiles, JSON): a reader never sees a
half-written file, an error leaves the old file as it was, and the file gets the mode
an ordinary ``open()`` would give it under the user's umask (a temporary file is
created 0600, and renaming it kept that: front.csv and plots were private, issue 12).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sojourn._errors import ConfigError

__all__ = ["atomic_path", "write_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, field: str = "--out") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` with the umask's mode.

    ``field`` names the option or setting in the error when ``path`` cannot be a file
    (an existing folder, a folder that cannot be created or written).
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(field, f"{p} is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as err:
        raise ConfigError(field, f"cannot write {p}: {err.strerror or err}") from None
    os.close(fd)
    t = Path(tmp)
    try:
        yield t
        os.chmod(t, 0o666 & ~_umask())
        os.replace(t, p)
    except BaseException:
        t.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, text: str, field: str = "--out") -> Path:
    """Write ``text`` to ``path`` atomically (``atomic_path``)."""
    with atomic_path(path, field) as tmp:
        tmp.write_text(text)
    return Path(path)
