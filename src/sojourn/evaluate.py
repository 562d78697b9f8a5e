"""One entry point for both tiers: run a scenario at the fidelity it (or the caller) asks for.

``request`` is the request-level simulator (ground truth); ``fast`` the batch-level
fluid model with tail analytics; ``auto`` takes the fast tier where it models the
scenario (its disciplines, pull routing) and the request tier otherwise. The result
always says which tier produced it (``fidelity``, and ``tiers`` per number).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from sojourn._errors import ConfigError
from sojourn.result import Result
from sojourn.scenario import FIDELITIES, Scenario

__all__ = ["FIDELITIES", "fast_applies", "result_number", "run_scenario", "sla_miss_value", "workers"]



def fast_applies(scenario: Scenario) -> str | None:
    """None when the fast tier models this scenario, else the reason it does not."""
    from sojourn.fast import FAST_DISCIPLINES

    if scenario.serving.discipline not in FAST_DISCIPLINES:
        return f"discipline {scenario.serving.discipline!r} (fast tier: {', '.join(FAST_DISCIPLINES)})"
    if scenario.fleet.routing != "pull":
        return f"routing {scenario.fleet.routing!r} (fast tier: pull)"
    return None


def run_scenario(
    scenario: Scenario,
    fidelity: str | None = None,
    replications: int | None = None,
    n_jobs: int = 1,
    seed: int | None = None,
    progress: Any = False,
    capacity: Any = None,
    resume: Any = None,
    on_replication: Any = None,
) -> Result:
    """Simulate at ``fidelity`` (default: the scenario's) and return the tier's ``Result``.

    The result also reads as the dict the CLI prints (``result["p_miss"]``; ``to_dict()``),
    with ``fidelity_requested`` added, and ``fidelity_note`` where ``auto`` fell back to
    the request tier.

    ``resume`` and ``on_replication``: ``request.simulate``'s, for a request-tier run resumed
    replication by replication (the fast tier, minutes at most, ignores them).

    ``capacity`` (a ``sojourn.fast.NodeCapacity``) lets a caller that already measured
    the node's capacity — a study's cheap load check — hand it to the fast tier.
    """
    fid = fidelity or scenario.simulation.fidelity
    if fid not in FIDELITIES:
        raise ConfigError("fidelity", f"got {fid!r}; allowed: {', '.join(FIDELITIES)}")
    if fid in ("fast", "auto"):
        why_not = fast_applies(scenario)
        if why_not is None:
            from sojourn.fast import fast_simulate

            fast = fast_simulate(scenario, replications=replications, seed=seed, capacity=capacity)
            return fast.to_result().with_values(fidelity_requested=fid)
        if fid == "fast":
            raise ConfigError("simulation.fidelity", f"the fast tier does not model {why_not}; use 'request' or 'auto'")
    from sojourn.request import simulate

    out = simulate(scenario, replications=replications, n_jobs=n_jobs, seed=seed, progress=progress,
                   capacity=capacity, resume=resume, on_replication=on_replication,
                   executor=workers(n_jobs)).to_result()
    if fid == "auto":
        return out.with_values(fidelity_requested=fid,
                               fidelity_note=f"request tier: the fast tier does not model {fast_applies(scenario)}")
    return out.with_values(fidelity_requested=fid)


def workers(n_jobs: int) -> Any:
    """The worker processes a request-tier run with ``n_jobs`` uses (None: in this process).

    joblib's reusable loky pool: its workers outlive one run, so a study's trials and
    confirmations do not start fresh interpreters each time.
    """
    if n_jobs == 1:
        return None
    from joblib.externals.loky import get_reusable_executor

    return get_reusable_executor(max_workers=(os.cpu_count() or 1) if n_jobs == -1 else n_jobs)


def _num(v: Any) -> float:
    """A result value as a float: None (JSON null) and the storage's "inf"/"nan" strings included."""
    if v is None:
        return math.nan
    if isinstance(v, str):
        return float(v) if v in ("inf", "-inf", "nan") else math.nan
    return float(v)


def result_number(result: Mapping[str, Any], key: str, missing: float) -> float:
    """``result[key]`` as a float for an objective: ``missing`` when absent or NaN.

    A result that went through JSON (the CLI, a study's storage) holds a non-finite
    number as None (a quantile beyond every served request: +inf) or as the storage's
    strings "inf"/"-inf"/"nan"; None reads as +inf here, which Optuna accepts.
    """
    if key not in result:
        return missing
    v = result[key]
    x = math.inf if v is None else _num(v)
    return missing if math.isnan(x) else x


def sla_miss_value(result: Mapping[str, Any], statistic: str = "upper", cancel: bool = False) -> tuple[float, str]:
    """The P(miss) the ``sla_miss`` objective optimises, and where it comes from (one rule, both tiers).

    * A configuration settled without simulating (``fidelity = "check"``): its P(miss), 1.
    * An unstable fleet (offered load >= 1) that does not cancel at the deadline
      (``cancel`` False): 1, as its queue and so its misses grow without bound; a finite
      run's count means nothing. (Cancellation keeps an overloaded fleet bounded: its
      sampled value stands.)
    * Otherwise ``sojourn.stats.best_p_miss``: the sample's estimate (``statistic``
      ``mean``) or one-sided bound (``upper``), or, where the fast tier has an analytic
      value (FIFO), that value unless the sample shows it too low (then the larger).
    """
    from sojourn.stats import best_p_miss

    if result.get("fidelity") == "check":
        return _num(result.get("p_miss_upper", 1.0)), "check"
    if result.get("stable") is False and not cancel:
        return 1.0, "unstable"
    ci = result.get("p_miss_ci") or [math.nan, math.nan]
    agrees = result.get("analytic_agrees")
    lo = _num(ci[0]) if agrees is not None else math.nan
    p = _num(result.get("p_miss"))
    up = _num(result.get("p_miss_upper"))
    return best_p_miss(p if math.isfinite(p) else 1.0, up if math.isfinite(up) else 1.0, lo,
                       _num(result.get("analytic_p_miss")), _num(result.get("analytic_p_miss_upper")), statistic)
