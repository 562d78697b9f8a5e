"""Rent cost of the fleet in $/hour: GPUs per replica x replicas x $/GPU-hour (catalogue or override)."""

direction = "minimize"


def objective(result, scenario, settings=None):
    return float(scenario.cost_per_hour)
