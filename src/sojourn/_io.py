"""Atomic output files: a temporary file in the target folder, renamed over the target when complete;
and input files read in one place (``read_text``), so a bad one is one clear error.

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

__all__ = ["atomic_path", "check_input_file", "not_utf8", "read_text", "write_atomic"]


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


def check_input_file(path: str | Path, role: str, missing: str = "file not found") -> Path:
    """``path`` as an input file that can be opened: missing (a dangling link included), a folder
    or not a regular file is a ConfigError naming the file's ``role``; ``missing`` words the first."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(role, f"{p} is a folder; give a file")
    if p.is_symlink() and not p.exists():
        raise ConfigError(role, f"{missing}: {p} is a link to {os.readlink(p)}, which does not exist")
    if not p.exists():
        raise ConfigError(role, f"{missing}: {p}")
    if not p.is_file():
        raise ConfigError(role, f"{p} is not a regular file")
    return p


def not_utf8(path: Path, role: str, err: UnicodeDecodeError, data: bytes | None = None) -> ConfigError:
    """The ConfigError of a file that is not UTF-8 (the line of the first bad byte where ``data`` is known)."""
    where = ""
    if data is not None:
        line = data[: err.start].count(b"\n") + 1
        where = f" (byte 0x{data[err.start]:02x} on line {line})"
    return ConfigError(role, f"{path} is not UTF-8 text{where}; save it as UTF-8")


def read_text(path: str | Path, role: str, missing: str = "file not found") -> str:
    """The text of an input file (UTF-8, a leading byte-order mark dropped).

    A path that is missing (a dangling link included), a folder, not a regular file,
    unreadable, or not UTF-8 is one ConfigError naming the file's ``role`` (``scenario``,
    ``study``, ``--steps``) and what is wrong; ``missing`` words the first case.
    """
    p = check_input_file(path, role, missing)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(role, f"{missing}: {p}") from None
    except OSError as err:
        raise ConfigError(role, f"cannot read {p}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise not_utf8(p, role, err, data) from None
