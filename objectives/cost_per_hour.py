"""Rent cost of the fleet in $/hour: GPUs per replica x replicas x $/GPU-hour (catalogue or override).

The result is not read: a configuration costs the same whether it was simulated or not.
"""

direction = "minimize"


def objective(result, scenario, settings=None):
    return float(scenario.cost_per_hour)
