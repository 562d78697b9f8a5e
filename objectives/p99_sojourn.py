"""99th percentile of the request sojourn time, in hours (arrival of the batch to completion).

A p99 beyond every served request (more than 1% unserved: JSON null), a result without
one (a configuration settled without simulating) and an unstable fleet (offered load
>= 1) that does not cancel at the deadline, whose sojourns grow without bound, are +inf:
Optuna takes it as a value (storage and samplers included) and ranks it last.
"""

import math
from typing import Any

from sojourn.evaluate import result_number
from sojourn.result import Result

direction = "minimize"


def objective(result: Result, scenario: Any, settings: Any = None) -> float:
    cancel = getattr(getattr(scenario, "serving", None), "on_deadline", None) == "cancel"
    if result.get("stable") is False and not cancel:
        return math.inf
    return result_number(result, "sojourn_p99_s", math.inf) / 3600.0
