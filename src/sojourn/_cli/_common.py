"""Helpers shared by the subcommands: atomic writes and list parsing."""

from __future__ import annotations

import json
import sys
from typing import Any

from sojourn._errors import ConfigError
from sojourn._io import write_atomic

__all__ = ["emit_json", "int_list", "write_atomic"]


def int_list(text: str, field: str) -> list[int]:
    """Parse '1,8,64' into ints, naming the option on error."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(field, f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(field, f"expected positive integers, got {text!r}")
    return values


def emit_json(obj: Any, out: str | None = None) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    if out:
        write_atomic(out, text)
    else:
        sys.stdout.write(text)


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
