"""99th percentile of the request sojourn time, in hours (arrival of the batch to completion)."""

direction = "minimize"


def objective(result, scenario, settings=None):
    return float(result["sojourn_p99_s"]) / 3600.0
