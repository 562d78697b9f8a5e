"""Estimation from independent replications: P(S > T) with honest intervals, and the rest.

Replication i runs from ``SeedSequence(seed).spawn(R)[i]``, so results are
bit-identical whatever the number of joblib workers. Requests of one batch (and
of one busy period) are correlated, so intervals are built from replications,
never from requests as if independent: a ratio estimator (pooled numerator over
pooled denominator) with a t-interval from the per-replication residuals.

Upper bound of P(S > T): the larger of the interval's upper end and a one-sided
95% Clopper–Pearson bound over batches, with Kish's effective number of batches
(Σx)²/Σx² — requests of a batch taken as perfectly correlated (the worst case),
batches as independent trials. With no miss observed it is the rule of three on
the effective batches, about 3/n_eff; it is approximate only in that
consecutive batches share a queue, which the replication interval does capture.

Misses come in congestion episodes (``fleet.FleetSim._episodes``), and a run that
holds few of them gives a skewed estimate: usually low, with a narrow interval.
The result counts the episodes and their effective number, and says so
(``p_miss_note``) when there are too few for the interval to keep its 95%.

The sojourn and wait means are over completed requests only; when a sizeable share
of the measured requests did not complete (still in system when the run stopped,
cancelled or rejected) they read low, and the result says so (``sojourn_note``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from sojourn._errors import ConfigError
from sojourn.sim.fleet import ReplicationStats, check_scenario, run_replication

__all__ = ["SimResult", "ratio_ci", "simulate"]

_LEVEL = 0.95
#: Effective congestion episodes below which the P(miss) interval is flagged: measured on
#: M^X/M/8 (benchmarks/ci_coverage.py), the 95% t-interval covered 81% of 100 runs with ~3
#: effective episodes each and 97% of 60 with ~50; 10 is a judgment between the two.
MIN_EPISODES = 10
#: Share of measured requests not completed at or above which the sojourn statistics are
#: flagged (``sojourn_note``): from 1% on, p99 is already beyond every served request
#: (reported as unserved), and the means, over completed requests only, read low.
SOJOURN_NOTE_SHARE = 0.01


def ratio_ci(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float]:
    """Ratio estimator Σnum/Σden over replications with a 95% t-interval (delta method)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    R, total = len(num), den.sum()
    if total <= 0:
        return math.nan, math.nan, math.nan
    est = float(num.sum() / total)
    if R < 2:
        return est, math.nan, math.nan
    resid = num - est * den
    se = math.sqrt(float(resid @ resid) / (R * (R - 1))) / float(total / R)
    h = float(stats.t.ppf(0.5 + _LEVEL / 2, R - 1)) * se
    return est, est - h, est + h


def _clopper_pearson_upper(k: float, n: float, level: float = _LEVEL) -> float:
    """One-sided upper confidence bound of a binomial proportion (k may be fractional)."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    if k <= 0:
        return 1.0 - (1.0 - level) ** (1.0 / n)
    return float(stats.beta.ppf(level, k + 1, n - k))


def _clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0) if math.isfinite(x) else x


@dataclass
class SimResult:
    """The request-level estimate of a scenario; ``to_dict()`` is the JSON the CLI prints.

    Counts are totals over the replications' measured requests (batch arrived in the
    horizon). A request misses when it is not completed within its batch's SLA:
    late, cancelled, rejected or still in system. Quantiles are of S over all
    measured requests, an unserved one counting as S = inf (None in JSON); means
    (sojourn, and wait = start of service minus batch arrival) are over completed
    requests. Throughput counts completions in the horizon; busy and KV fractions
    are time averages over it, per node.
    """

    p_miss: float
    p_miss_ci: tuple[float, float]
    p_miss_upper: float
    batch_miss: float
    batch_miss_ci: tuple[float, float]
    sojourn_mean_s: float
    sojourn_mean_ci: tuple[float, float]
    sojourn_p50_s: float
    sojourn_p90_s: float
    sojourn_p99_s: float
    wait_mean_s: float
    wait_mean_ci: tuple[float, float]
    throughput_rps: float
    requests_arrived: int
    requests_completed: int
    requests_rejected: int
    requests_cancelled: int
    requests_in_system: int
    rejected_by: dict[str, int]
    cancelled_by: dict[str, int]
    preemptions: int
    kv_utilization: float
    busy_fraction: float
    cost_per_hour: float
    sla_hours: float
    replications: int
    seed: int
    horizon_hours: float
    warmup_hours: float
    wall_s: float
    requests_simulated: int
    fidelity: str = "request"
    #: Congestion episodes the misses came in, and their effective number (Σm)²/Σm² (``fleet``).
    miss_episodes: int = 0
    miss_episodes_effective: float = 0.0
    #: Set when the interval cannot be trusted at its nominal 95% (too few episodes).
    p_miss_note: str = ""
    #: Share of measured requests not completed (in system at the end, cancelled or rejected).
    sojourn_unfinished_share: float = 0.0
    #: Set when that share reaches SOJOURN_NOTE_SHARE: the means are of completed requests only.
    sojourn_note: str = ""
    #: Per SLA class (mixed-SLA workloads): hours, requests, P(miss) and its 95% interval.
    by_sla_class: list[dict[str, Any]] = field(default_factory=list)
    reps: list[ReplicationStats] = field(default_factory=list, repr=False)
    keep_samples: bool = False

    def exceed(self, t: float) -> tuple[float, float, float]:
        """P(S > t) with its 95% interval; a request never served counts as S = inf.

        Needs the per-replication sojourn samples (``simulate(..., keep_samples=True)``).
        """
        if not self.keep_samples:
            raise ValueError("exceed(t) needs the sojourn samples: simulate(..., keep_samples=True)")
        num = np.array(
            [np.count_nonzero(r.sojourn > t) + (r.arrived - r.completed) for r in self.reps], dtype=np.float64
        )
        den = np.array([r.arrived for r in self.reps], dtype=np.float64)
        est, lo, hi = ratio_ci(num, den)
        return est, _clip01(lo), _clip01(hi)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (an infinite quantile, i.e. beyond any served request, is None)."""
        fin = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731
        return {
            "fidelity": self.fidelity,
            "p_miss": fin(self.p_miss),
            "p_miss_ci": [fin(self.p_miss_ci[0]), fin(self.p_miss_ci[1])],
            "p_miss_upper": fin(self.p_miss_upper),
            "miss_episodes": self.miss_episodes,
            "miss_episodes_effective": fin(self.miss_episodes_effective),
            "p_miss_note": self.p_miss_note,
            "batch_miss": fin(self.batch_miss),
            "batch_miss_ci": [fin(self.batch_miss_ci[0]), fin(self.batch_miss_ci[1])],
            "sojourn_mean_s": fin(self.sojourn_mean_s),
            "sojourn_mean_ci": [fin(self.sojourn_mean_ci[0]), fin(self.sojourn_mean_ci[1])],
            "sojourn_p50_s": fin(self.sojourn_p50_s),
            "sojourn_p90_s": fin(self.sojourn_p90_s),
            "sojourn_p99_s": fin(self.sojourn_p99_s),
            "sojourn_unfinished_share": fin(self.sojourn_unfinished_share),
            "sojourn_note": self.sojourn_note,
            "wait_mean_s": fin(self.wait_mean_s),
            "wait_mean_ci": [fin(self.wait_mean_ci[0]), fin(self.wait_mean_ci[1])],
            "throughput_rps": fin(self.throughput_rps),
            "requests_arrived": self.requests_arrived,
            "requests_completed": self.requests_completed,
            "requests_rejected": self.requests_rejected,
            "requests_cancelled": self.requests_cancelled,
            "requests_in_system": self.requests_in_system,
            "rejected_by": dict(self.rejected_by),
            "cancelled_by": dict(self.cancelled_by),
            "preemptions": self.preemptions,
            "kv_utilization": fin(self.kv_utilization),
            "busy_fraction": fin(self.busy_fraction),
            "cost_per_hour": fin(self.cost_per_hour),
            "sla_hours": self.sla_hours,
            "replications": self.replications,
            "seed": self.seed,
            "horizon_hours": self.horizon_hours,
            "warmup_hours": self.warmup_hours,
            "requests_simulated": self.requests_simulated,
            "wall_s": self.wall_s,
            "by_sla_class": [
                {**c, "p_miss": fin(c["p_miss"]), "p_miss_ci": [fin(x) for x in c["p_miss_ci"]]}
                for c in self.by_sla_class
            ],
        }


def _quantile(sorted_served: np.ndarray, n_total: int, q: float) -> float:
    """The q-quantile (inverted cdf) of S over all requests, unserved ones at +inf."""
    if n_total == 0:
        return math.nan
    k = max(math.ceil(q * n_total) - 1, 0)
    return float(sorted_served[k]) if k < len(sorted_served) else math.inf


def summarise(scenario: Any, reps: list[ReplicationStats], seed: int, wall_s: float, keep_samples: bool) -> SimResult:
    """Pool per-replication statistics into a SimResult."""
    arr = lambda f: np.array([f(r) for r in reps], dtype=np.float64)  # noqa: E731
    arrived = arr(lambda r: r.arrived)
    completed = arr(lambda r: r.completed)
    p, lo, hi = ratio_ci(arr(lambda r: r.misses), arrived)
    lo, hi = _clip01(lo), _clip01(hi)
    # Cluster (batch) bound, see the module docstring.
    s1, s2 = sum(r.batch_size_sum for r in reps), sum(r.batch_size_sq for r in reps)
    n_eff = s1 * s1 / s2 if s2 > 0 else 0.0
    k_eff = (p if math.isfinite(p) else 0.0) * n_eff
    upper = _clopper_pearson_upper(k_eff, n_eff)
    if math.isfinite(hi):
        upper = max(upper, hi)
    bm, bm_lo, bm_hi = ratio_ci(arr(lambda r: r.batches_missed), arr(lambda r: r.batches))
    episodes = np.array([m for r in reps for m in r.miss_episodes], dtype=np.float64)
    k_eff = float(episodes.sum() ** 2 / (episodes @ episodes)) if len(episodes) else 0.0
    note = ""
    if len(episodes) and k_eff < MIN_EPISODES:
        note = (f"the misses came in {len(episodes)} congestion episodes (effective {k_eff:.1f}): with fewer "
                f"than {MIN_EPISODES} the interval is too narrow (it covered 81% of runs at 3, "
                "benchmarks/RESULTS.md); lengthen simulation.horizon_hours or add replications")
    n_arrived, n_done = int(arrived.sum()), int(completed.sum())
    unfinished = (n_arrived - n_done) / n_arrived if n_arrived else 0.0
    soj_note = ""
    if n_arrived and unfinished >= SOJOURN_NOTE_SHARE:
        soj_note = (f"{unfinished:.1%} of measured requests did not complete ({sum(r.in_system for r in reps)} "
                    f"still in system when the run stopped, {sum(r.cancelled for r in reps)} cancelled, "
                    f"{sum(r.rejected for r in reps)} rejected): the sojourn and wait means are of completed "
                    "requests only and read low; the quantiles count unfinished requests as unserved")
    sm, sm_lo, sm_hi = ratio_ci(arr(lambda r: r.sojourn_sum), completed)
    wm, wm_lo, wm_hi = ratio_ci(arr(lambda r: r.wait_sum), completed)
    served = np.sort(np.concatenate([r.sojourn for r in reps])) if reps else np.empty(0)
    n_total = int(arrived.sum())
    rejected_by: dict[str, int] = {}
    cancelled_by: dict[str, int] = {}
    for r in reps:
        for k, v in r.rejected_by.items():
            rejected_by[k] = rejected_by.get(k, 0) + v
        for k, v in r.cancelled_by.items():
            cancelled_by[k] = cancelled_by.get(k, 0) + v
    horizon = sum(r.horizon_s for r in reps)
    sim = scenario.simulation
    by_class = []
    if scenario.workload.sla_classes:
        for sla in sorted({k for r in reps for k in r.by_sla}):
            a = arr(lambda r: r.by_sla.get(sla, (0, 0))[0])
            c_p, c_lo, c_hi = ratio_ci(arr(lambda r: r.by_sla.get(sla, (0, 0))[1]), a)
            by_class.append({"sla_hours": sla / 3600.0, "requests_arrived": int(a.sum()),
                             "p_miss": c_p, "p_miss_ci": [_clip01(c_lo), _clip01(c_hi)]})
    result = SimResult(
        miss_episodes=len(episodes),
        miss_episodes_effective=k_eff,
        p_miss_note=note,
        sojourn_unfinished_share=unfinished,
        sojourn_note=soj_note,
        p_miss=p,
        p_miss_ci=(lo, hi),
        p_miss_upper=upper,
        batch_miss=bm,
        batch_miss_ci=(_clip01(bm_lo), _clip01(bm_hi)),
        sojourn_mean_s=sm,
        sojourn_mean_ci=(max(sm_lo, 0.0), sm_hi),
        sojourn_p50_s=_quantile(served, n_total, 0.50),
        sojourn_p90_s=_quantile(served, n_total, 0.90),
        sojourn_p99_s=_quantile(served, n_total, 0.99),
        wait_mean_s=wm,
        wait_mean_ci=(max(wm_lo, 0.0), wm_hi),
        throughput_rps=sum(r.completions_in_horizon for r in reps) / horizon if horizon else math.nan,
        requests_arrived=n_total,
        requests_completed=int(completed.sum()),
        requests_rejected=sum(r.rejected for r in reps),
        requests_cancelled=sum(r.cancelled for r in reps),
        requests_in_system=sum(r.in_system for r in reps),
        rejected_by=rejected_by,
        cancelled_by=cancelled_by,
        preemptions=sum(r.preemptions for r in reps),
        kv_utilization=float(np.mean([r.kv_utilization for r in reps])),
        busy_fraction=float(np.mean([r.busy_fraction for r in reps])),
        cost_per_hour=scenario.cost_per_hour,
        sla_hours=scenario.sla_hours,
        replications=len(reps),
        seed=seed,
        horizon_hours=sim.horizon_hours,
        warmup_hours=sim.warmup_hours,
        wall_s=wall_s,
        requests_simulated=sum(r.requests_simulated for r in reps),
        keep_samples=keep_samples,
        by_sla_class=by_class,
    )
    if not keep_samples:
        for r in reps:
            r.sojourn = np.empty(0)
    result.reps = reps
    return result


def simulate(
    scenario: Any,
    replications: int | None = None,
    n_jobs: int = 1,
    seed: int | None = None,
    progress: bool = False,
    keep_samples: bool = False,
) -> SimResult:
    """Run ``replications`` independent replications of ``scenario`` (joblib, ``n_jobs`` workers).

    Defaults come from ``[simulation]``; the result is identical for any ``n_jobs``.
    """
    sim = scenario.simulation
    R = sim.replications if replications is None else int(replications)
    if R < 2:
        raise ConfigError("replications", f"must be >= 2 for a confidence interval, got {R}")
    if n_jobs == 0 or n_jobs < -1:
        raise ConfigError("n_jobs", f"must be >= 1 or -1 (all CPUs), got {n_jobs}")
    root = sim.seed if seed is None else int(seed)
    if root < 0:
        raise ConfigError("seed", f"must be >= 0, got {root}")
    check_scenario(scenario)  # here, not in a worker: errors reach the caller as they are
    seeds = np.random.SeedSequence(root).spawn(R)
    start = time.perf_counter()
    reps: list[ReplicationStats] = []
    if n_jobs == 1:
        results = (
            run_replication(scenario, s, f"replication {i}/{R}" if progress else None)
            for i, s in enumerate(seeds, start=1)
        )
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(run_replication)(scenario, s) for s in seeds)
    for i, r in enumerate(results, start=1):
        reps.append(r)
        if progress:
            print(
                f"replication {i}/{R}: {r.arrived} requests measured, {r.requests_simulated} simulated "
                f"in {r.wall_s:.1f} s ({time.perf_counter() - start:.1f} s elapsed)",
                file=sys.stderr,
                flush=True,
            )
    return summarise(scenario, reps, root, time.perf_counter() - start, keep_samples)
