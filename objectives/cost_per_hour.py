"""Rent cost of the fleet in $/hour: GPUs per replica x replicas x $/GPU-hour (catalogue or override).

The result is not read: a configuration costs the same whether it was simulated or not.
"""

from typing import Any

from sojourn.result import Result

direction = "minimize"


def objective(result: Result, scenario: Any, settings: Any = None) -> float:
    return float(scenario.cost_per_hour)
