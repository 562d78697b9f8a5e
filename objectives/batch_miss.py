"""Fraction of batches not fully done within the SLA (a batch API's user sees the whole batch).

Values below the study's ``p_miss_floor`` (default 1e-6) read as the floor. A result
without the fraction (None, NaN or absent) reads as 1, never as a number it did not
measure, and so does an unstable fleet (offered load >= 1) that does not cancel at the
deadline: its misses grow without bound, whatever a finite run counted (as ``sla_miss``).
"""

from typing import Any

from sojourn.evaluate import result_number
from sojourn.result import Result

direction = "minimize"


def objective(result: Result, scenario: Any, settings: Any = None) -> float:
    cancel = getattr(getattr(scenario, "serving", None), "on_deadline", None) == "cancel"
    if result.get("stable") is False and not cancel:
        return 1.0
    value = result_number(result, "batch_miss", 1.0)
    return max(min(value, 1.0), float(getattr(settings, "p_miss_floor", 0.0) or 0.0))
