"""Fraction of batches not fully done within the SLA (a batch API's user sees the whole batch).

Values below the study's ``p_miss_floor`` (default 1e-6) read as the floor.
"""

direction = "minimize"


def objective(result, scenario, settings=None):
    return max(float(result["batch_miss"]), float(getattr(settings, "p_miss_floor", 0.0) or 0.0))
