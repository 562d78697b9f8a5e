"""99th percentile of the request sojourn time, in hours (arrival of the batch to completion).

A p99 beyond every served request (more than 1% unserved: JSON null) is +inf, which
Optuna accepts and ranks last; a result without one (a configuration settled without
simulating) reads as +inf too.
"""

from sojourn.evaluate import result_number

direction = "minimize"


def objective(result, scenario, settings=None):
    return result_number(result, "sojourn_p99_s", float("inf")) / 3600.0
