"""The request tier's estimate: independent replications of the fleet simulator (``sojourn.sim``),
P(S > T) with honest intervals, and the rest.

It sits above the fast tier, whose stationary law starts its replications (``fast.start``).

Replication i runs from ``SeedSequence(seed).spawn(R)[i]``, so results are
bit-identical whatever the number of worker processes. Requests of one batch (and
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

import contextlib
import dataclasses
import functools
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sojourn._errors import ConfigError
from sojourn.fast.start import StartPlan, plan_start
from sojourn.result import REQUEST_ORDER, Estimate, Result, finite
from sojourn.sim._sojourns import POOL_CAP, LogHistogram, pooled_quantiles
from sojourn.sim.availability import realism_report
from sojourn.sim.fleet import ReplicationStats, check_scenario, run_replication
from sojourn.stats import (
    MIN_EPISODES,
    clopper_pearson_upper,
    effective_episodes,
    episodes_note,
    kish,
    ratio_ci,
    unseen_share,
)
from sojourn.steady import EMPTY_WARMUP_RELAXATIONS, SPAN_RELAXATIONS, SteadyState

__all__ = ["MIN_EPISODES", "SimResult", "ratio_ci", "simulate", "simulate_part"]

#: Share of measured requests not completed at or above which the sojourn statistics are
#: flagged (``sojourn_note``): from 1% on, p99 is already beyond every served request
#: (reported as unserved), and the means, over completed requests only, read low.
SOJOURN_NOTE_SHARE = 0.01


def _clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0) if math.isfinite(x) else x


@dataclass(kw_only=True)
class SimResult(Estimate):
    """The request-level estimate of a scenario; ``to_dict()`` is the JSON the CLI prints.

    Counts are totals over the replications' measured requests (batch arrived in the
    horizon). A request misses when it is not completed within its batch's SLA:
    late, cancelled, rejected or still in system. Quantiles are of S over all
    measured requests, an unserved one counting as S = inf (None in JSON); means
    (sojourn, and wait = start of service minus batch arrival) are over completed
    requests. Throughput counts completions in the horizon; busy and KV fractions
    are time averages over it, per node. The fields both tiers share are ``Estimate``'s.
    """

    batch_miss_ci: tuple[float, float]
    requests_in_system: int
    rejected_by: dict[str, int]
    cancelled_by: dict[str, int]
    preemptions: int
    kv_utilization: float
    busy_fraction: float
    sla_hours: float
    seed: int
    warmup_hours: float
    requests_simulated: int
    fidelity: str = "request"
    #: Share of measured requests not completed (in system at the end, cancelled or rejected).
    sojourn_unfinished_share: float = 0.0
    #: Set when that share reaches SOJOURN_NOTE_SHARE: the means are of completed requests only.
    sojourn_note: str = ""
    #: Per SLA class (mixed-SLA workloads): hours, requests, P(miss) and its 95% interval.
    by_sla_class: list[dict[str, Any]] = field(default_factory=list)
    #: Offered load over the fleet's capacity where the run measured it (nan otherwise).
    load: float = math.nan
    #: Prefix caching where it acts (``_prefix_summary``), else None (and absent from the result).
    prefix_cache: dict[str, Any] | None = None
    #: Node failures, spot nodes, a capacity schedule where the scenario has them (``_realism_summary``).
    fleet_realism: dict[str, Any] | None = None
    #: TTFT and TPOT of the measured requests engines served (``_latency_summary``), else None (and absent).
    token_latency: dict[str, Any] | None = None
    reps: list[ReplicationStats] = field(default_factory=list, repr=False)
    keep_samples: bool = False

    def exceed(self, t: float) -> tuple[float, float, float]:
        """P(S > t) with its 95% interval; a request never served counts as S = inf.

        Needs the per-replication sojourn samples (``simulate(..., keep_samples=True)``).
        """
        if not self.keep_samples or any(r.sojourn_hist is not None for r in self.reps):
            raise ValueError("exceed(t) needs the sojourn samples: simulate(..., keep_samples=True)")
        num = np.array(
            [np.count_nonzero(r.sojourn > t) + (r.arrived - r.completed) for r in self.reps], dtype=np.float64
        )
        den = np.array([r.arrived for r in self.reps], dtype=np.float64)
        est, lo, hi = ratio_ci(num, den)
        return est, _clip01(lo), _clip01(hi)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (an infinite quantile, i.e. beyond any served request, is None)."""
        return self.to_result().to_dict()

    def to_result(self) -> Result:
        """The tier-independent ``Result`` (``fidelity`` "request"): JSON-ready values, non-finite as None."""
        fin = finite
        res = self.result(
            REQUEST_ORDER,
            fin=("sojourn_unfinished_share", "kv_utilization", "busy_fraction", "load"),
            copy=("fidelity", "sojourn_note", "requests_in_system", "preemptions", "sla_hours", "seed",
                  "warmup_hours", "requests_simulated"),
            batch_miss_ci=(fin(self.batch_miss_ci[0]), fin(self.batch_miss_ci[1])),
            rejected_by=dict(self.rejected_by),
            cancelled_by=dict(self.cancelled_by),
            stable=None if math.isnan(self.load) else bool(self.load < 1.0),
            by_sla_class=[
                {**c, "p_miss": fin(c["p_miss"]), "p_miss_ci": [fin(x) for x in c["p_miss_ci"]]}
                for c in self.by_sla_class
            ],
        )
        for extra in ("prefix_cache", "fleet_realism", "token_latency"):  # only where they act
            if getattr(self, extra) is not None:
                res = res.with_values(**{extra: getattr(self, extra)})
        return res


def _prefix_summary(reps: list[ReplicationStats]) -> dict[str, Any] | None:
    """Prefix caching over the measured spans: admissions looked up and their prompt tokens, the
    share of those tokens found cached (with its 95% interval over the replications, a ratio
    estimator) and of the admissions with a hit, and the cached blocks evicted. None without it."""
    ps = [r.prefix for r in reps if r.prefix is not None]
    if not ps:
        return None
    tot = {k: sum(p[k] for p in ps) for k in ps[0]}
    est, lo, hi = ratio_ci(np.array([p["hit_tokens"] for p in ps], dtype=np.float64),
                           np.array([p["lookup_tokens"] for p in ps], dtype=np.float64))
    return {
        "lookups": tot["lookups"],
        "lookup_tokens": tot["lookup_tokens"],
        "hit_rate": finite(est),
        "hit_rate_ci": [finite(_clip01(lo)), finite(_clip01(hi))],
        "request_hit_rate": tot["hit_requests"] / tot["lookups"] if tot["lookups"] else None,
        "evictions": tot["evictions"],
    }


def _latency_summary(reps: list[ReplicationStats]) -> dict[str, Any] | None:
    """Time to first token (from the request's arrival) and time per output token of the measured
    requests engines completed, pooled over the replications: mean, p50 and p99 (quantiles from the
    replications' log histograms, within 0.005%), and how many requests each is over. None on generic
    servers, which serve no tokens."""
    out: dict[str, Any] = {}
    for name in ("ttft", "tpot"):
        hists = [h for r in reps if (h := getattr(r, f"{name}_hist")) is not None]
        n = sum(h.n for h in hists)
        if not n:
            continue
        p50, p99 = pooled_quantiles([], hists, n, (0.50, 0.99))
        out.update({f"{name}_mean_s": sum(getattr(r, f"{name}_sum") for r in reps) / n, f"{name}_p50_s": p50,
                    f"{name}_p99_s": p99, f"{name}_requests": n})
    return out or None


def _realism_summary(scenario: Any, reps: list[ReplicationStats]) -> dict[str, Any] | None:
    """What node failures, spot reclaims and a capacity schedule did over the measured spans
    (``sim.availability``), next to what the settings say to expect; None without them."""
    rs = [r.realism for r in reps if r.realism is not None]
    realism = scenario.fleet_realism()
    if not rs or realism is None:
        return None
    tot = {k: sum(x[k] for x in rs) for k in rs[0]}
    node_s = realism.nodes * sum(r.horizon_s for r in reps)
    hours = sum(r.horizon_s for r in reps) / 3600.0
    return realism_report(realism, serving=tot["serving_node_s"] / node_s, failed=tot["failed_node_s"] / node_s,
                          node_hours=tot["held_node_s"] / 3600.0 / len(rs), cost=tot["cost_usd"] / hours,
                          failures=tot["failures"], reclaims=tot["reclaims"],
                          recomputed=int(tot["requeued"]), lost=int(tot["lost"]))


def _per_rep(reps: list[ReplicationStats], f: Callable[[ReplicationStats], float]) -> np.ndarray:
    return np.array([f(r) for r in reps], dtype=np.float64)


def _miss(scenario: Any, reps: list[ReplicationStats]) -> tuple[float, float, float, float, float, float]:
    """P(miss), its interval, its upper bound, Kish's effective batches and the unseen batches' share."""
    arrived = _per_rep(reps, lambda r: r.arrived)
    p, lo, hi = ratio_ci(_per_rep(reps, lambda r: r.misses), arrived)
    lo, hi = _clip01(lo), _clip01(hi)
    # Cluster (batch) bound, see the module docstring, plus the batches larger than any seen.
    n_eff = kish(sum(r.batch_size_sum for r in reps), sum(r.batch_size_sq for r in reps))
    upper = clopper_pearson_upper((p if math.isfinite(p) else 0.0) * n_eff, n_eff)
    if math.isfinite(hi):
        upper = max(upper, hi)
    wl = scenario.workload
    unseen = unseen_share(wl.batch_size, max(r.size_max for r in reps)) if wl.trace is None and reps else 0.0
    upper = min(1.0, upper + unseen)
    if not (math.isfinite(lo) and hi > lo):  # no miss, or all replications alike: one-sided
        lo, hi = 0.0, upper
    return p, lo, hi, upper, n_eff, unseen


def _by_class(reps: list[ReplicationStats], n_eff: float, unseen: float) -> list[dict[str, Any]]:
    """Per SLA class: requests, P(miss) and its interval (one-sided where the class saw no miss)."""
    arrived = _per_rep(reps, lambda r: r.arrived)
    out = []
    for sla in sorted({k for r in reps for k in r.by_sla}):
        a = _per_rep(reps, lambda r: r.by_sla.get(sla, (0, 0))[0])  # noqa: B023 - called at once
        c_p, c_lo, c_hi = ratio_ci(_per_rep(reps, lambda r: r.by_sla.get(sla, (0, 0))[1]), a)  # noqa: B023
        c_lo, c_hi = _clip01(c_lo), _clip01(c_hi)
        if not (math.isfinite(c_lo) and c_hi > c_lo):
            # No miss in the class (or replications alike): one-sided, as the overall interval,
            # over the class's share of the effective batches, plus the unseen batches' share.
            share = a.sum() / arrived.sum() if arrived.sum() > 0 else 0.0
            n_c = n_eff * share
            c_up = clopper_pearson_upper((c_p if math.isfinite(c_p) else 0.0) * n_c, n_c) if n_c > 0 else 1.0
            c_lo, c_hi = 0.0, min(1.0, max(c_up, c_hi if math.isfinite(c_hi) else 0.0) + unseen)
        out.append({"sla_hours": sla / 3600.0, "requests_arrived": int(a.sum()),
                    "p_miss": c_p, "p_miss_ci": [c_lo, c_hi]})
    return out


def _unfinished(reps: list[ReplicationStats]) -> tuple[float, str]:
    """The share of measured requests not completed, and the note when it makes the means read low."""
    n_arrived, n_done = sum(r.arrived for r in reps), sum(r.completed for r in reps)
    unfinished = (n_arrived - n_done) / n_arrived if n_arrived else 0.0
    if not (n_arrived and unfinished >= SOJOURN_NOTE_SHARE):
        return unfinished, ""
    return unfinished, (
        f"{unfinished:.1%} of measured requests did not complete ({sum(r.in_system for r in reps)} "
        f"still in system when the run stopped, {sum(r.cancelled for r in reps)} cancelled, "
        f"{sum(r.rejected for r in reps)} rejected): the sojourn and wait means are of completed "
        "requests only and read low; the quantiles count unfinished requests as unserved")


def _summed(reps: list[ReplicationStats], attr: str) -> dict[str, int]:
    """The replications' per-reason counts (``rejected_by``, ``cancelled_by``) added up."""
    out: dict[str, int] = {}
    for r in reps:
        for k, v in getattr(r, attr).items():
            out[k] = out.get(k, 0) + v
    return out


def summarise(scenario: Any, reps: list[ReplicationStats], seed: int, wall_s: float, keep_samples: bool,
              plan: StartPlan | None = None) -> SimResult:
    """Pool per-replication statistics into a SimResult."""
    completed = _per_rep(reps, lambda r: r.completed)
    p, lo, hi, upper, n_eff, unseen = _miss(scenario, reps)
    bm, bm_lo, bm_hi = ratio_ci(_per_rep(reps, lambda r: r.batches_missed), _per_rep(reps, lambda r: r.batches))
    episodes = [m for r in reps for m in r.miss_episodes]
    k_eff = effective_episodes(episodes)
    unfinished, soj_note = _unfinished(reps)
    sm, sm_lo, sm_hi = ratio_ci(_per_rep(reps, lambda r: r.sojourn_sum), completed)
    wm, wm_lo, wm_hi = ratio_ci(_per_rep(reps, lambda r: r.wait_sum), completed)
    n_total = int(_per_rep(reps, lambda r: r.arrived).sum())
    p50, p90, p99 = pooled_quantiles([r.sojourn for r in reps], [r.sojourn_hist for r in reps if r.sojourn_hist],
                                     n_total, (0.50, 0.90, 0.99))
    horizon = sum(r.horizon_s for r in reps)
    sim = scenario.simulation
    result = SimResult(
        miss_episodes=len(episodes), miss_episodes_effective=k_eff, p_miss_note=episodes_note(len(episodes), k_eff),
        sojourn_unfinished_share=unfinished, sojourn_note=soj_note,
        p_miss=p, p_miss_ci=(lo, hi), p_miss_upper=upper,
        batch_miss=bm, batch_miss_ci=(_clip01(bm_lo), _clip01(bm_hi)),
        sojourn_mean_s=sm, sojourn_mean_ci=(max(sm_lo, 0.0), sm_hi),
        sojourn_p50_s=p50, sojourn_p90_s=p90, sojourn_p99_s=p99,
        wait_mean_s=wm, wait_mean_ci=(max(wm_lo, 0.0), wm_hi),
        throughput_rps=sum(r.completions_in_horizon for r in reps) / horizon if horizon else math.nan,
        requests_arrived=n_total, requests_completed=int(completed.sum()),
        requests_rejected=sum(r.rejected for r in reps), requests_cancelled=sum(r.cancelled for r in reps),
        requests_in_system=sum(r.in_system for r in reps),
        rejected_by=_summed(reps, "rejected_by"), cancelled_by=_summed(reps, "cancelled_by"),
        preemptions=sum(r.preemptions for r in reps),
        kv_utilization=float(np.mean([r.kv_utilization for r in reps])),
        busy_fraction=float(np.mean([r.busy_fraction for r in reps])),
        cost_per_hour=scenario.cost_per_hour, sla_hours=scenario.sla_hours,
        replications=len(reps), seed=seed, horizon_hours=sim.horizon_hours, warmup_hours=sim.warmup_hours,
        wall_s=wall_s, requests_simulated=sum(r.requests_simulated for r in reps), keep_samples=keep_samples,
        by_sla_class=_by_class(reps, n_eff, unseen) if scenario.workload.sla_classes else [],
        prefix_cache=_prefix_summary(reps),
        fleet_realism=_realism_summary(scenario, reps),
        token_latency=_latency_summary(reps),
        steady_state=_steady_state(scenario, reps, plan),
        load=plan.rho if plan is not None else math.nan,
        p_miss_unseen=unseen,
        p_miss_oversize=(sum(r.oversize_misses for r in reps) / n_total
                         if plan is not None and math.isfinite(plan.oversize) and n_total else math.nan),
    )
    if not keep_samples:
        for r in reps:
            r.sojourn, r.sojourn_hist = np.empty(0), None
    result.reps = reps
    return result


def fold_sojourns(r: ReplicationStats) -> None:
    """Fold a replication's exact sojourns into its histogram (``_sojourns``)."""
    if len(r.sojourn):
        h = LogHistogram.of(r.sojourn)
        r.sojourn_hist = h if r.sojourn_hist is None else r.sojourn_hist.merge(h)
        r.sojourn = np.empty(0)


def _steady_state(scenario: Any, reps: list[ReplicationStats], plan: StartPlan | None) -> SteadyState:
    """How the replications started, and what their queue series says (``sojourn.steady``)."""
    sim = scenario.simulation
    plan = plan or StartPlan("empty")
    st = SteadyState(start=plan.start, warmup_hours=sim.warmup_hours, span_hours=sim.horizon_hours,
                     relaxation_hours=plan.relax_s / 3600.0)
    if plan.start == "empty" and math.isfinite(plan.relax_s) and not (plan.rho >= 1.0):
        need = EMPTY_WARMUP_RELAXATIONS * plan.relax_s / 3600.0
        if sim.warmup_hours < need:
            st.notes.append(f"started empty ({plan.reason}) with {sim.warmup_hours:.3g} h of warm-up against a "
                            f"relaxation time of {plan.relax_s / 3600:.3g} h: the estimate reads low; set "
                            f"simulation.warmup_hours to at least {need:.3g}")
    if plan.start == "stationary" and math.isfinite(plan.relax_s) and plan.relax_s > 0:
        # Unbiased from the start, but replications that together span few relaxation times
        # hold few independent looks at the queue: the interval is too narrow, a typical run low.
        k = len(reps) * sim.horizon_hours * 3600.0 / plan.relax_s
        if k < SPAN_RELAXATIONS:
            st.notes.append(f"the replications' measured spans cover {k:.2g} relaxation times in all "
                            f"({plan.relax_s / 3600:.3g} h each; at least {SPAN_RELAXATIONS:g} are needed for the "
                            "interval to hold): lengthen simulation.horizon_hours, add replications, or use the "
                            "fast tier")
    if plan.rho >= 1.0 and scenario.serving.on_deadline != "cancel":
        st.notes.append(f"unstable (rho = {plan.rho:.4g}): the queue grows without bound, no steady state")
    if reps and len(reps[0].queue_bins):
        s = np.sum([r.queue_bins for r in reps], axis=0)
        n = np.sum([r.queue_bins_n for r in reps], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            series = np.where(n > 0, s / np.maximum(n, 1), np.nan)
        st.check(series, sim.warmup_hours + sim.horizon_hours, [r.queue_halves[0] for r in reps],
                 [r.queue_halves[1] for r in reps])
    return st


def _within(report: Callable[[float, int], None], done: int, total: int, share: float) -> None:
    report(done + share, total)


def _checked(scenario: Any, replications: int | None, n_jobs: int, seed: int | None,
             start: str | None) -> tuple[int, int, str]:
    """(replications, root seed, start) after the checks every run makes before any work."""
    sim = scenario.simulation
    R = sim.replications if replications is None else int(replications)
    if R < 2:
        raise ConfigError("replications", f"must be >= 2 for a confidence interval, got {R}")
    if n_jobs == 0 or n_jobs < -1:
        raise ConfigError("n_jobs", f"must be >= 1 or -1 (all CPUs), got {n_jobs}")
    root = sim.seed if seed is None else int(seed)
    if root < 0:
        raise ConfigError("seed", f"must be >= 0, got {root}")
    if hasattr(scenario, "check_size"):
        scenario.check_size(R)  # a run too large to simulate is refused here, before any memory is used
    check_scenario(scenario)  # here, not in a worker: errors reach the caller as they are
    start = start or sim.start
    if start not in ("stationary", "empty"):
        raise ConfigError("simulation.start", f"got {start!r}; allowed: stationary, empty")
    return R, root, start


def _workers(n_jobs: int) -> int:
    return (os.cpu_count() or 1) if n_jobs == -1 else n_jobs


@contextlib.contextmanager
def _pool(n_jobs: int, executor: Executor | None) -> Iterator[Executor | None]:
    """The executor replications run on: none in this process, the caller's, or a pool of our own."""
    if n_jobs == 1:
        yield None
    elif executor is not None:
        yield executor
    else:  # fresh interpreters (spawn): safe beside the threads of a caller (Optuna's heartbeat, tqdm)
        with ProcessPoolExecutor(_workers(n_jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool


def _runs(scenario: Any, seeds: list[np.random.SeedSequence], busy: list[float], oversize: float, todo: list[int],
          pool: Executor | None, progress: bool | Callable[[float, int], None], done: int,
          keep_samples: bool, total: int) -> Iterator[ReplicationStats]:
    """The replications of ``todo``, in order: here (with progress within each, counted out of ``total``), or on
    ``pool``."""
    R = len(seeds)
    if pool is None:
        report = progress if callable(progress) else None
        for k, i in enumerate(todo):
            yield run_replication(scenario, seeds[i], f"replication {i + 1}/{R}" if progress is True else None,
                                  busy[i], oversize,
                                  None if report is None else functools.partial(_within, report, done + k, total),
                                  keep_samples)
        return
    n = len(todo)
    yield from pool.map(run_replication, [scenario] * n, [seeds[i] for i in todo], [None] * n,
                        [busy[i] for i in todo], [oversize] * n, [None] * n, [keep_samples] * n)


def simulate(
    scenario: Any,
    replications: int | None = None,
    n_jobs: int = 1,
    seed: int | None = None,
    progress: bool | Callable[[float, int], None] = False,
    keep_samples: bool = False,
    capacity: Any = None,
    start: str | None = None,
    resume: Mapping[int, ReplicationStats] | None = None,
    on_replication: Callable[[int, ReplicationStats], None] | None = None,
    executor: Executor | None = None,
) -> SimResult:
    """Run ``replications`` independent replications of ``scenario`` (``n_jobs`` worker processes).

    Defaults come from ``[simulation]``; the result is identical for any ``n_jobs``.
    ``start`` (default ``simulation.start``): ``stationary`` begins each replication
    with a backlog drawn from the fleet's stationary workload law where there is one
    (``fast.start.plan_start``; a node capacity ``capacity`` already measured is used),
    ``empty`` with an empty fleet. ``progress``: True prints a line a replication on stderr; a
    callable is called with (replications done, replications), fractions included where the
    replications run in this process (a progress bar).

    Worker processes: ``executor`` (any ``concurrent.futures.Executor``; ``sojourn.evaluate``
    hands joblib's reusable loky pool, so a study reuses its workers) or, without one, a
    process pool for this call. The simulator itself depends on no parallel library.

    Resumable runs: ``on_replication(i, stats)`` is called as replication ``i`` (0-based)
    finishes, and ``resume`` maps replication indices to the stats an earlier run stored
    (``sim._stored``), which are taken instead of simulated. Either one folds every
    replication's sojourns into its histogram (``_sojourns``), so that a resumed run and an
    uninterrupted one report the same quantiles.
    """
    R, root, start = _checked(scenario, replications, n_jobs, seed, start)
    t0 = time.perf_counter()
    by_index, plan = _replicate(scenario, R, root, start, range(R), n_jobs, progress, keep_samples, capacity, resume,
                                on_replication, executor)
    return summarise(scenario, [by_index[i] for i in range(R)], root, time.perf_counter() - t0, keep_samples, plan)


def simulate_part(
    scenario: Any,
    indices: Sequence[int],
    replications: int | None = None,
    n_jobs: int = 1,
    seed: int | None = None,
    progress: bool | Callable[[float, int], None] = False,
    capacity: Any = None,
    start: str | None = None,
    resume: Mapping[int, ReplicationStats] | None = None,
    on_replication: Callable[[int, ReplicationStats], None] | None = None,
    executor: Executor | None = None,
) -> dict[int, ReplicationStats]:
    """Replications ``indices`` of ``simulate``'s ``replications``, and nothing pooled: one machine's share.

    Replication ``i`` is the same whoever runs it and whatever else is run with it (its seed is the
    ``i``-th child of the root, its stationary start drawn from that seed), so ``simulate`` given every
    part's replications as ``resume`` returns the same result for any split of the indices over
    machines or processes (``study.confirm`` splits a confirmation so). Each replication is folded
    and handed to ``on_replication`` as it finishes; ``progress`` counts within the part.
    """
    R, root, start = _checked(scenario, replications, n_jobs, seed, start)
    bad = [i for i in indices if not 0 <= i < R]
    if bad:
        raise ConfigError("indices", f"replication indices run from 0 to {R - 1}, got {bad[0]}")
    by_index, _ = _replicate(scenario, R, root, start, indices, n_jobs, progress, False, capacity, resume or {},
                             on_replication, executor)
    return {i: by_index[i] for i in indices}


def _replicate(scenario: Any, R: int, root: int, start: str, indices: Sequence[int], n_jobs: int,
               progress: bool | Callable[[float, int], None], keep_samples: bool, capacity: Any,
               resume: Mapping[int, ReplicationStats] | None,
               on_replication: Callable[[int, ReplicationStats], None] | None,
               executor: Executor | None) -> tuple[dict[int, ReplicationStats], StartPlan]:
    """Replications ``indices`` of ``R`` (those in ``resume`` taken as stored), by index, and the start plan."""
    fold_each = resume is not None or on_replication is not None
    if fold_each and keep_samples:
        raise ValueError("keep_samples cannot go with resume or on_replication: stored replications are folded")
    seeds = np.random.SeedSequence(root).spawn(R)
    plan = plan_start(scenario, capacity)
    if start == "empty" and plan.law is not None:
        plan = dataclasses.replace(plan, start="empty", law=None, reason="simulation.start = empty")
    busy = [plan.draw(s) for s in seeds]
    t0 = time.perf_counter()
    wanted = set(indices)
    by_index: dict[int, ReplicationStats] = {i: r for i, r in (resume or {}).items() if i in wanted}
    todo = [i for i in indices if i not in by_index]
    exact, done, total = 0, len(by_index), len(wanted)
    with _pool(n_jobs, executor) as pool:
        runs = _runs(scenario, seeds, busy, plan.oversize, todo, pool, progress, done, keep_samples, total)
        for k, (i, r) in enumerate(zip(todo, runs, strict=True), start=done + 1):
            by_index[i] = r
            if fold_each:
                fold_sojourns(r)
                if on_replication is not None:
                    on_replication(i, r)
            exact += len(r.sojourn)
            if exact > POOL_CAP and not keep_samples:  # bounded memory: fold every replication's samples
                for x in by_index.values():
                    fold_sojourns(x)
                exact = 0
            _report(progress, k, total, i, R, r, t0)
    return by_index, plan


def _report(progress: bool | Callable[[float, int], None], k: int, total: int, i: int, R: int, r: ReplicationStats,
            t0: float) -> None:
    """Replication ``i`` of ``R`` finished, the ``k``-th of the ``total`` run here: move the bar, or print a line."""
    if callable(progress):
        progress(float(k), total)
    elif progress:
        print(f"replication {i + 1}/{R}: {r.arrived} requests measured, {r.requests_simulated} simulated "
              f"in {r.wall_s:.1f} s ({time.perf_counter() - t0:.1f} s elapsed)", file=sys.stderr, flush=True)
