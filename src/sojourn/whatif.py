"""What-ifs: the same scenario with its traffic scaled or its SLA replaced.

One transformation, used by ``sojourn simulate --rate-scale/--sla-hours`` and by a study's
sweep (``sojourn study sweep --what-if``):

* ``rate`` = k multiplies the arrival rate of batches by k, batch sizes and token counts
  unchanged. A synthetic workload's ``workload.batch_rate_per_hour`` becomes k times
  itself (a ``rate_profile`` keeps its shape: it multiplies that rate). A replayed trace
  has no rate to set: its arrival times are compressed by k (``workload.rate_scale``
  multiplied by k), so the same requests, in the same order and with the same lengths,
  arrive k times as densely; ``batch_window_s`` stays a span of wall-clock time, so a
  batching window collects k times as many requests.
* ``sla`` = H replaces the SLA by H hours. A workload with mixed SLA classes
  (``workload.sla_classes``) gets one SLA of H hours for every batch: the classes are
  dropped (a note says so), because "the SLA is H" has no other honest meaning for them.

Nothing else changes: seeds, fleet and engine settings stay, so a what-if and its
baseline run on common random numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sojourn._errors import ConfigError
from sojourn.scenario import Scenario

__all__ = ["WhatIf", "apply_what_if", "check_factor", "parse_what_if"]

#: The keys a ``--what-if`` takes, and the scenario quantity each changes.
KEYS = {"rate": "arrival rate of batches, times this factor", "sla": "the SLA, in hours"}
#: What a what-if that changes nothing is called.
BASELINE = "baseline"


def check_factor(value: Any, flag: str, what: str = "a finite number > 0") -> float:
    """``value`` as a positive finite float, or one ConfigError naming ``flag`` and the allowed range."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(flag, f"allowed: {what}; given {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise ConfigError(flag, f"allowed: {what}; given {value!r}")
    return x


@dataclass(frozen=True)
class WhatIf:
    """A change to a scenario's traffic or SLA (``rate_scale`` 1 and ``sla_hours`` None: the baseline)."""

    rate_scale: float = 1.0
    sla_hours: float | None = None
    #: The options that set it, named by its errors.
    rate_flag: str = field(default="--rate-scale", compare=False)
    sla_flag: str = field(default="--sla-hours", compare=False)

    def __post_init__(self) -> None:
        check_factor(self.rate_scale, self.rate_flag, "a finite number > 0 (1 = the scenario's rate)")
        if self.sla_hours is not None:
            check_factor(self.sla_hours, self.sla_flag, "a finite number of hours > 0")

    @property
    def is_baseline(self) -> bool:
        return self.rate_scale == 1.0 and self.sla_hours is None

    @property
    def label(self) -> str:
        """``rate=1.5,sla=12``, or ``baseline``: the form ``parse_what_if`` reads back."""
        parts = []
        if self.rate_scale != 1.0:
            parts.append(f"rate={self.rate_scale:g}")
        if self.sla_hours is not None:
            parts.append(f"sla={self.sla_hours:g}")
        return ",".join(parts) or BASELINE

    def describe(self) -> str:
        """In words, for a report: "arrival rate x1.5, SLA 12 h"."""
        parts = []
        if self.rate_scale != 1.0:
            parts.append(f"arrival rate x{self.rate_scale:g}")
        if self.sla_hours is not None:
            parts.append(f"SLA {self.sla_hours:g} h")
        return ", ".join(parts) or "as the study's scenario"

    def apply(self, scenario: Scenario) -> tuple[Scenario, list[str]]:
        """``apply_what_if`` with this what-if."""
        return apply_what_if(scenario, self.rate_scale, self.sla_hours, self.rate_flag, self.sla_flag)


def parse_what_if(text: str, flag: str = "--what-if") -> WhatIf:
    """``rate=1.5``, ``sla=12``, ``rate=2,sla=12`` or ``baseline`` as a WhatIf (one ConfigError naming
    ``flag`` where it is not one)."""
    body = text.strip()
    if body.lower() == BASELINE:
        return WhatIf(rate_flag=f"{flag} rate", sla_flag=f"{flag} sla")
    allowed = f"allowed: {BASELINE}, or comma-separated key=value with keys {', '.join(KEYS)} (e.g. rate=1.5,sla=12)"
    values: dict[str, float] = {}
    for part in body.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in KEYS:
            raise ConfigError(flag, f"cannot read {part.strip()!r} of {text!r}; {allowed}")
        if key in values:
            raise ConfigError(flag, f"{key} is given twice in {text!r}")
        what = "a finite number > 0 (1 = the scenario's rate)" if key == "rate" else "a finite number of hours > 0"
        values[key] = check_factor(value.strip(), f"{flag} {key}", what)
    return WhatIf(rate_scale=values.get("rate", 1.0), sla_hours=values.get("sla"), rate_flag=f"{flag} rate",
                  sla_flag=f"{flag} sla")


def apply_what_if(scenario: Scenario, rate_scale: float = 1.0, sla_hours: float | None = None,
                  rate_flag: str = "--rate-scale", sla_flag: str = "--sla-hours") -> tuple[Scenario, list[str]]:
    """The scenario under the what-if (module docstring), and notes on what it changed beyond the
    obvious (mixed SLA classes dropped). A value the scenario refuses (a rate past its bound) is one
    ConfigError naming the option and the scenario field."""
    rate_scale = check_factor(rate_scale, rate_flag, "a finite number > 0 (1 = the scenario's rate)")
    if sla_hours is not None:
        sla_hours = check_factor(sla_hours, sla_flag, "a finite number of hours > 0")
    updates: dict[str, Any] = {}
    notes: list[str] = []
    wl = scenario.workload
    # A trace has no rate to set: its arrival times are compressed (rate_scale divides them).
    rate_key = "workload.rate_scale" if wl.trace is not None else "workload.batch_rate_per_hour"
    if rate_scale != 1.0:
        now = wl.rate_scale if wl.trace is not None else wl.batch_rate_per_hour
        assert now is not None  # a synthetic workload has its rate (Workload._source)
        updates[rate_key] = now * rate_scale
    if sla_hours is not None:
        updates["sla_hours"] = sla_hours
        if wl.sla_classes:
            hours = ", ".join(f"{c.hours:g} h" for c in wl.sla_classes)
            notes.append(f"the workload's {len(wl.sla_classes)} SLA classes ({hours}) are replaced by one SLA of "
                         f"{sla_hours:g} h for every batch")
            updates["workload.sla_classes"] = None
    if not updates:
        return scenario, notes
    try:
        return scenario.with_updates(updates), notes
    except ConfigError as err:
        if err.field == rate_key:
            raise ConfigError(rate_flag, f"x{rate_scale:g} makes {rate_key} {updates[rate_key]:.6g}, which the "
                                         f"scenario refuses ({err.message})") from None
        raise ConfigError(sla_flag if sla_hours is not None else rate_flag,
                          f"the scenario refuses the what-if: {err}") from None
