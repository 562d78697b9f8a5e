"""P(S > SLA) of a request.

By default the upper end of its 95% confidence interval, so a configuration is
only as good as the evidence for it (a study setting, ``sla_miss_statistic =
"mean"``, uses the point estimate instead).
"""

direction = "minimize"


def objective(result, scenario, settings=None):
    if getattr(settings, "sla_miss_statistic", "upper") == "mean":
        return float(result["p_miss"])
    return float(result["p_miss_upper"])
