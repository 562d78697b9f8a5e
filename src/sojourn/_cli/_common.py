"""Helpers shared by the subcommands: atomic writes, list parsing, and the checks of command-line
numbers and outputs, each by the rule of the setting it overrides."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from sojourn._errors import ConfigError
from sojourn._io import write_atomic
from sojourn.result import Result

__all__ = [
    "add_what_if_options", "check_field", "check_n_jobs", "check_out", "emit_json", "int_list", "speed_word",
    "study_runner", "what_if_of", "write_atomic",
]  # fmt: skip


def study_runner(config: Any, **kwargs: Any) -> Any:
    """A StudyRunner for a command, with Optuna's per-trial INFO lines off in this process only.

    Setting Optuna's verbosity is the CLI's to do for its own process: the library leaves
    a notebook's logging as it was (docs/architecture.md, "No process-wide side effects").
    """
    import optuna

    from sojourn.study.runner import StudyRunner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return StudyRunner(config, **kwargs)


def check_field(model: type[BaseModel], name: str, value: Any, flag: str, setting: str | None = None) -> Any:
    """``value`` of the option ``flag`` validated by the rules of the field ``name`` of ``model``
    (the scenario or study setting it overrides: bounds, allowed values, finite numbers); a
    ConfigError naming the option (and the setting) when it breaks them. None (not given) passes."""
    if value is None:
        return None
    from sojourn.scenario import field_value

    try:
        return field_value(model, name, value)
    except ValidationError as err:
        e = err.errors(include_url=False)[0]
        msg = e["msg"]
        if e["type"] == "literal_error" and "ctx" in e:
            msg = f"allowed: {e['ctx'].get('expected')}"
        where = f" (the rule of {setting})" if setting else ""
        raise ConfigError(flag, f"{msg}; given {value!r}{where}") from None


def check_n_jobs(value: int, flag: str = "--n-jobs", all_cpus: bool = True) -> int:
    """Worker processes: >= 1, or -1 for all CPUs where ``all_cpus`` (joblib's meaning)."""
    if value >= 1 or (all_cpus and value == -1):
        return value
    allowed = ">= 1, or -1 for all CPUs" if all_cpus else ">= 1"
    raise ConfigError(flag, f"must be {allowed}, got {value}")


def check_out(path: str | None, flag: str = "--out", suffixes: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, an output path that is a folder or has a suffix not in ``suffixes``."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(flag, f"{p} is a folder; give a file name")
    if suffixes and p.suffix.lower() not in suffixes:
        raise ConfigError(flag, f"unsupported file type {p.suffix or '(none)'} of {p.name}; allowed: "
                                f"{', '.join(suffixes)}")


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
    if isinstance(o, Result):  # the result of a run, serialised by its own to_dict
        return o.to_dict()
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def speed_word(calibrated: bool | None, source: Any) -> str:
    """Where a GPU's step-time speed comes from, in a few words: "measured", "carried over from <gpu>",
    "not measured" (fitted on nothing) or "unknown" (``sojourn.perf.calibration_of``'s judgement)."""
    from sojourn.perf._profile import carried_origin

    if calibrated is None:
        return "unknown"
    if calibrated:
        return "measured"
    origin = carried_origin(source)
    return f"carried over from {origin}" if origin else "not measured"


def add_what_if_options(p: Any) -> None:
    """``--rate-scale`` and ``--sla-hours``: one what-if on the command's scenario (``sojourn.whatif``)."""
    p.add_argument("--rate-scale", type=float, default=None, metavar="X",
                   help="what-if: X times the arrival rate of batches (a replayed trace: its arrival times "
                        "compressed X times); > 0")
    p.add_argument("--sla-hours", type=float, default=None, metavar="H",
                   help="what-if: an SLA of H hours instead of the scenario's (mixed SLA classes become one "
                        "SLA of H hours); > 0")


def what_if_of(args: Any) -> Any:
    """The ``sojourn.whatif.WhatIf`` of ``--rate-scale``/``--sla-hours`` (checked, its errors naming them);
    None when neither is given."""
    from sojourn.whatif import WhatIf

    rate, sla = getattr(args, "rate_scale", None), getattr(args, "sla_hours", None)
    if rate is None and sla is None:
        return None
    return WhatIf(rate_scale=1.0 if rate is None else rate, sla_hours=sla)
