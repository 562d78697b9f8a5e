"""Fraction of batches not fully done within the SLA (a batch API's user sees the whole batch).

Values below the study's ``p_miss_floor`` (default 1e-6) read as the floor; a result
without the fraction reads as 1 (every batch missed), never as a number it did not measure.
"""

from sojourn.evaluate import result_number

direction = "minimize"


def objective(result, scenario, settings=None):
    value = result_number(result, "batch_miss", 1.0)
    return max(min(value, 1.0), float(getattr(settings, "p_miss_floor", 0.0) or 0.0))
