"""P(S > SLA) of a request: the best estimate, or a bound, by one documented rule.

``sojourn.evaluate.sla_miss_value`` decides which number this is, the same for both
tiers (docs/model.md, "Which P(miss) a study optimises"):

* the sample's one-sided 95% upper bound (the study setting ``sla_miss_statistic =
  "upper"``, the default: a configuration is only as good as the evidence for it),
  or its point estimate (``"mean"``);
* where the fast tier has an analytic value (FIFO: the fluid fleet's exact stationary
  law, or a tail asymptotic in its regime), that value (its upper bracket under
  "upper") instead, unless the sample shows it is too low (the analytic value below
  the sampled interval): then the larger of the two;
* 1 for an unstable fleet (offered load >= 1) that does not cancel at the deadline.

Values below the study's ``p_miss_floor`` (default 1e-6) read as the floor.
"""

from typing import Any

from sojourn.evaluate import sla_miss_value
from sojourn.result import Result

direction = "minimize"


def objective(result: Result, scenario: Any, settings: Any = None) -> float:
    floor = float(getattr(settings, "p_miss_floor", 0.0) or 0.0)
    statistic = getattr(settings, "sla_miss_statistic", "upper")
    cancel = getattr(getattr(scenario, "serving", None), "on_deadline", None) == "cancel"
    value, _source = sla_miss_value(result, statistic, cancel)
    return max(value, floor)
