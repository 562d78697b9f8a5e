"""P(S > SLA) of a request.

By default the upper end of its 95% confidence interval, so a configuration is
only as good as the evidence for it (a study setting, ``sla_miss_statistic =
"mean"``, uses the point estimate instead). A fast-tier result whose sampling saw
too few misses to resolve P(miss) (fewer than 30) carries the tail analytics'
value in ``p_miss_best`` (FIFO: Cramér–Lundberg or the subexponential asymptotic);
that is used instead of the sampling floor, which only reflects the sample size.
"""

direction = "minimize"


def objective(result, scenario, settings=None):
    if result.get("fidelity") == "fast" and result.get("tiers", {}).get("p_miss_best") == "analytic":
        return float(result["p_miss_best"])
    if getattr(settings, "sla_miss_statistic", "upper") == "mean":
        return float(result["p_miss"])
    return float(result["p_miss_upper"])
