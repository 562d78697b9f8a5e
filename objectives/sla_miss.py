"""P(S > SLA) of a request.

By default the upper end of its 95% confidence interval, so a configuration is
only as good as the evidence for it (a study setting, ``sla_miss_statistic =
"mean"``, uses the point estimate instead). A fast-tier result whose sampling saw
too few misses to resolve P(miss) (fewer than 30) carries the tail analytics'
value in ``p_miss_best`` (FIFO: Cramér–Lundberg or the subexponential asymptotic);
that is used instead of the sampling floor, which only reflects the sample size.
Values below the study's ``p_miss_floor`` (default 1e-6) read as the floor.
"""

direction = "minimize"


def objective(result, scenario, settings=None):
    floor = float(getattr(settings, "p_miss_floor", 0.0) or 0.0)
    if result.get("fidelity") == "fast" and result.get("tiers", {}).get("p_miss_best") == "analytic":
        return max(float(result["p_miss_best"]), floor)
    if getattr(settings, "sla_miss_statistic", "upper") == "mean":
        return max(float(result["p_miss"]), floor)
    return max(float(result["p_miss_upper"]), floor)
