"""Fraction of batches not fully done within the SLA (a batch API's user sees the whole batch)."""

direction = "minimize"


def objective(result, scenario, settings=None):
    return float(result["batch_miss"])
