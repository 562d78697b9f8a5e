"""Progress of the long phases (search, confirmation, hardware comparison, simulation): tqdm bars.

A bar shows on a terminal only: off a terminal (a log file, CI, a pipe) or with
``--quiet`` it is silent, and the phase's one-line summaries are what the user reads.
tqdm gives the rate and the ETA; it comes with Optuna already.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["bar", "wanted"]


def wanted(quiet: bool = False) -> bool:
    """A bar is wanted: not asked to be quiet, and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


def bar(total: float | None, desc: str, unit: str = "it", enabled: bool = True, **kw: Any) -> Any:
    """A tqdm bar on stderr (a silent one when not ``enabled``); use it as a context manager.

    ``total`` may grow (``bar.total = ...; bar.refresh()``) where the work is found as it
    goes (a hardware comparison that must try the next candidate).
    """
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                smoothing=0.1, **kw)
