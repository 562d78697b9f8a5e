"""``fast_simulate``: the fast tier's answer for a scenario, with the same keys as the request-level result.

Three tiers feed it, and ``tiers`` in the result names the one behind each number:

* ``engine``: one node's saturation throughput for the workload mix (``capacity``);
* ``fluid``: replications of the batch-level fluid model (``fluid``), sampled like
  the request-level simulator (same warm-up, a measured span of arrivals, each
  followed to the end) but over a far longer span, as it costs little;
* ``analytic``: the FIFO tail asymptotics (``tails``), which reach probabilities no
  sample sees, with their regime named, and checked against the sample where both apply.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from sojourn._errors import ConfigError
from sojourn.fast.batches import Batches, generate_batches, trace_batches, trace_rate
from sojourn.fast.capacity import LoadReport, NodeCapacity, load_report, node_capacity
from sojourn.fast.fluid import FluidFleet, Segments, fifo_runs, priority_runs, split_by_key
from sojourn.fast.outcomes import Latency, Runs, run_stats, sample_sojourns
from sojourn.fast.tails import fifo_tail, tail_p_miss

__all__ = ["FAST_DISCIPLINES", "FastResult", "analytic_p_miss", "fast_simulate", "fluid_fleet", "offered_load"]

#: Disciplines the fluid model implements.
FAST_DISCIPLINES = ("fifo", "lifo", "sjf", "sjf_work", "edf")
#: Sojourns sampled (over all replications) for the quantiles.
_QUANTILE_SAMPLE = 50_000


@dataclass
class FastResult:
    """What ``fast_simulate`` found; ``to_dict`` has the request-level result's keys plus the fast tier's own."""

    p_miss: float
    p_miss_ci: tuple[float, float]
    p_miss_upper: float
    batch_miss: float
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
    batches_measured: int
    replications: int
    horizon_hours: float
    cost_per_hour: float
    load: LoadReport
    capacity: NodeCapacity
    analytic_p_miss: float
    analytic_regime: str
    agreement: str
    tiers: dict[str, str]
    wall_s: float
    per_replication: list[float] = field(default_factory=list, repr=False)

    # A read-only mapping over ``to_dict()``: ``dict(result)`` and ``result["p_miss"]`` work
    # as they do on the request-level result's dict.
    def keys(self):  # noqa: ANN201
        return self.to_dict().keys()

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self):  # noqa: ANN204
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    @property
    def p_miss_best(self) -> float:
        """The analytic value where sampling saw too few misses to resolve it, else the sampled one."""
        misses = self.p_miss * self.requests_arrived
        return self.analytic_p_miss if _analytic_is_best(self.analytic_p_miss, misses) else self.p_miss

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values; a non-finite number (a quantile beyond every served request) is None."""
        fin = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731
        return {
            "p_miss": fin(self.p_miss),
            "p_miss_ci": [fin(self.p_miss_ci[0]), fin(self.p_miss_ci[1])],
            "p_miss_upper": fin(self.p_miss_upper),
            "p_miss_best": fin(self.p_miss_best),
            "batch_miss": fin(self.batch_miss),
            "sojourn_mean_s": fin(self.sojourn_mean_s),
            "sojourn_mean_ci": [fin(self.sojourn_mean_ci[0]), fin(self.sojourn_mean_ci[1])],
            "sojourn_p50_s": fin(self.sojourn_p50_s),
            "sojourn_p90_s": fin(self.sojourn_p90_s),
            "sojourn_p99_s": fin(self.sojourn_p99_s),
            "wait_mean_s": fin(self.wait_mean_s),
            "wait_mean_ci": [fin(self.wait_mean_ci[0]), fin(self.wait_mean_ci[1])],
            "throughput_rps": fin(self.throughput_rps),
            "requests_arrived": self.requests_arrived,
            "requests_completed": self.requests_completed,
            "requests_rejected": self.requests_rejected,
            "requests_cancelled": self.requests_cancelled,
            "requests_in_system": 0,
            "batches_measured": self.batches_measured,
            "replications": self.replications,
            "horizon_hours": self.horizon_hours,
            "cost_per_hour": self.cost_per_hour,
            "fidelity": "fast",
            "load": self.load.rho,
            "load_peak": self.load.rho_peak,
            "stable": self.load.stable,
            "capacity_rps": self.load.capacity_rps,
            "node_capacity": self.capacity.to_dict(),
            "analytic_p_miss": fin(self.analytic_p_miss),
            "analytic_regime": self.analytic_regime,
            "agreement": self.agreement,
            "tiers": dict(self.tiers),
            "wall_s": self.wall_s,
        }


def offered_load(scenario: Any, capacity: NodeCapacity | None = None) -> float:
    """rho: offered work over the fleet's capacity (engine-measured, cached). ConfigError if it cannot be had."""
    cap = capacity if capacity is not None else node_capacity(scenario)
    if scenario.workload.trace is not None:
        rps, _ = trace_rate(scenario)
        return load_report(scenario, cap, offered_rps=rps, peak_factor=1.0).rho
    return load_report(scenario, cap).rho


def _analytic_is_best(analytic: float, sampled_misses: float) -> bool:
    """The analytic P(miss) is the best estimate where sampling saw too few misses to resolve it."""
    return math.isfinite(analytic) and sampled_misses < 30


def fluid_fleet(scenario: Any, cap: NodeCapacity) -> FluidFleet:
    n = scenario.fleet.nodes
    return FluidFleet(
        capacity=float(n),
        slots=n * cap.concurrency,
        work_mean=cap.work_mean,
        in_service_work=cap.fleet_in_service(n),
        work_excess=cap.work_excess_mean,
        cancel=scenario.serving.on_deadline == "cancel",
        max_queue=scenario.serving.max_queue,
    )


def fast_simulate(
    scenario: Any,
    replications: int | None = None,
    seed: int | None = None,
    *,
    horizon_hours: float | None = None,
    min_batches: int = 100_000,
    capacity: NodeCapacity | None = None,
    analytic: bool = True,
    n_jobs: int = 1,
) -> FastResult:
    """Estimate P(miss) and the sojourn distribution with the batch-level fluid model.

    The measured span is the scenario's ``horizon_hours`` after ``warmup_hours``,
    stretched (to whole days under a rate profile) until the replications hold
    ``min_batches`` batches in all (not for trace replays, which go through the
    request-level tier's per-request stream). ``capacity`` overrides the cached
    node capacity. ``n_jobs`` is accepted for symmetry with ``sim.simulate`` (so a
    caller can pass the same arguments to either tier); the fast tier runs in one
    process, in milliseconds.
    """
    del n_jobs
    t0 = time.perf_counter()
    sim = scenario.simulation
    wl = scenario.workload
    disc = scenario.serving.discipline
    if disc not in FAST_DISCIPLINES:
        raise ConfigError("serving.discipline", f"{disc!r} is not in the fast tier; allowed: {', '.join(FAST_DISCIPLINES)}")
    reps = int(replications or sim.replications)
    if reps < 1:
        raise ConfigError("replications", f"{reps}: must be >= 1")
    root = sim.seed if seed is None else seed
    cap = capacity if capacity is not None else node_capacity(scenario)
    if wl.trace is not None:
        rps, bps = trace_rate(scenario)
        load = load_report(scenario, cap, offered_rps=rps, peak_factor=1.0)
        rate_h = bps * 3600.0
    else:
        load = load_report(scenario, cap)
        rate_h = wl.batch_rate_per_hour * (1.0 if wl.rate_profile is None else sum(wl.rate_profile) / 24.0)
    fleet = fluid_fleet(scenario, cap)
    # The measured span: long enough for min_batches batches over all replications.
    hours = float(horizon_hours if horizon_hours is not None else sim.horizon_hours)
    # A trace replays through the request-level stream (Python per request): keep its span.
    need = min_batches / (reps * rate_h) if wl.trace is None else 0.0
    if hours < need:
        hours = need
        if wl.rate_profile is not None:
            hours = 24.0 * math.ceil(hours / 24.0)
    warm_s = sim.warmup_hours * 3600.0
    span_s = hours * 3600.0
    max_sla = scenario.sla_seconds if not wl.sla_classes else max(c.hours for c in wl.sla_classes) * 3600.0
    one_deadline = not wl.sla_classes or len({c.hours for c in wl.sla_classes}) == 1
    # EDF with one deadline for all is FIFO. A queue limit refuses whole requests, which
    # the capped recursion (it drops work, not requests) only approximates: event loop.
    fifo_vector = (
        ((disc == "fifo" and (not fleet.cancel or one_deadline)) or (disc == "edf" and one_deadline))
        and fleet.max_queue is None
    )
    # Later arrivals do not touch earlier FIFO batches; other orders need them until the deadlines.
    t_end = warm_s + span_s + (0.0 if fifo_vector else 2.0 * max_sla)
    seqs = np.random.SeedSequence(root).spawn(reps)
    lat = cap.latency if cap.latency is not None else Latency.constant(cap.latency_s)
    per = []
    for r in range(reps):
        rng = np.random.default_rng(seqs[r])
        if wl.trace is not None:
            b = trace_batches(scenario, cap, seqs[r], t_end)
        else:
            b = generate_batches(scenario, cap, rng, t_end)
        if fifo_vector:
            runs, refused, _ = fifo_runs(b, fleet)
        else:
            runs, refused = _priority(b, fleet, disc, cap, rng, scenario.serving.forecast_sigma)
        per.append(_summarise(b, runs, refused, fleet, lat, warm_s, span_s))
    _sample_quantiles(per, lat, fleet.cancel, seqs)
    res = _combine(per, span_s)
    # Analytic tier.
    a_p, regime = (math.nan, "none: not requested")
    if analytic:
        a_p, regime = analytic_p_miss(scenario, cap, load)
    agreement = _agreement(res, a_p, regime)
    tiers = {
        "capacity_rps": cap.source,
        "load": "engine capacity x offered load",
        "p_miss": "fluid (sampled)",
        "p_miss_ci": "fluid (replications)",
        "p_miss_upper": "fluid (replications)",
        "batch_miss": "fluid (sampled)",
        "sojourn": "fluid (sampled)",
        "throughput_rps": "fluid (sampled)",
        "analytic_p_miss": f"analytic ({regime})",
        "p_miss_best": "analytic" if _analytic_is_best(a_p, res["misses"]) else "fluid (sampled)",
    }
    return FastResult(
        p_miss=res["p_miss"],
        p_miss_ci=res["ci"],
        p_miss_upper=res["upper"],
        batch_miss=res["batch_miss"],
        sojourn_mean_s=res["soj_mean"],
        sojourn_mean_ci=res["soj_ci"],
        sojourn_p50_s=res["q"][0],
        sojourn_p90_s=res["q"][1],
        sojourn_p99_s=res["q"][2],
        wait_mean_s=res["wait_mean"],
        wait_mean_ci=res["wait_ci"],
        throughput_rps=res["throughput"],
        requests_arrived=res["arrived"],
        requests_completed=res["completed"],
        requests_rejected=res["rejected"],
        requests_cancelled=res["cancelled"],
        batches_measured=res["batches"],
        replications=reps,
        horizon_hours=hours,
        cost_per_hour=scenario.cost_per_hour,
        load=load,
        capacity=cap,
        analytic_p_miss=a_p,
        analytic_regime=regime,
        agreement=agreement,
        tiers=tiers,
        wall_s=time.perf_counter() - t0,
        per_replication=res["per_rep"],
    )


def _priority(b: Batches, fleet: FluidFleet, disc: str, cap: NodeCapacity, rng: np.random.Generator,
              forecast_sigma: float | None = None) -> tuple[Runs, np.ndarray]:
    if disc == "sjf_work" and forecast_sigma is not None:
        # Least predicted work first, the prediction a forecast (serving.forecast_sigma).
        seg = split_by_key(b, cap.forecast_key(forecast_sigma), cap.works, rng)
        return priority_runs(b, seg, fleet, "key")
    if disc == "sjf_work" and cap.work_coef is None:
        # The request-level tier predicts a generic request's service by the mean: all tie, FIFO.
        return priority_runs(b, Segments.whole(b), fleet, "fifo")
    if disc in ("sjf", "sjf_work"):
        # Shortest prompt first (on an engine the predicted work orders as the prompt does).
        # A generic server's prompts are drawn independently of its service times.
        seg = split_by_key(b, cap.inputs, cap.works, rng)
        return priority_runs(b, seg, fleet, "key")
    order = {"fifo": "fifo", "lifo": "lifo", "edf": "edf"}[disc]
    return priority_runs(b, Segments.whole(b), fleet, order)


def _measured(b: Batches, warm_s: float, span_s: float) -> np.ndarray:
    return (b.arrival >= warm_s) & (b.arrival < warm_s + span_s)


def _summarise(b: Batches, runs: Runs, refused: np.ndarray, fleet: FluidFleet, lat: Latency, warm_s: float,
               span_s: float) -> dict[str, Any]:
    """One replication's sums over its measured batches (expectations over the latencies)."""
    meas = _measured(b, warm_s, span_s)
    runs = runs.take(meas[runs.batch])
    sla = b.sla[runs.batch]
    rs = run_stats(runs, sla, lat)
    n = len(b)
    on_b = np.bincount(runs.batch, weights=rs.on_time, minlength=n)[meas]
    log_b = np.bincount(runs.batch, weights=rs.log_all_on_time, minlength=n)[meas]
    inrun_b = np.bincount(runs.batch, weights=runs.count, minlength=n)[meas]
    size = b.size[meas]
    # A batch is on time when every request is in a run and each run's requests all finish in time.
    with np.errstate(over="ignore"):
        p_ok = np.where(inrun_b >= size, np.exp(log_b), 0.0)
    in_runs = float(runs.count.sum())
    if fleet.cancel:
        completed = float(rs.on_time.sum())
        soj = float(rs.on_time_sojourn.sum())
        wait = float(rs.on_time_wait.sum())
        cancelled = float((b.accepted[meas] - refused[meas]).sum()) - completed
    else:
        completed = in_runs
        wait = float(rs.start_sum.sum())
        soj = wait + in_runs * lat.mean
        cancelled = 0.0
    arrived = float(size.sum())
    return {
        "arrived": arrived,
        "misses": arrived - float(on_b.sum()),
        "batches": float(meas.sum()),
        "batch_misses": float(np.sum(1.0 - p_ok[size > 0])),
        "completed": completed,
        "rejected": float((b.size[meas] - b.accepted[meas]).sum() + refused[meas].sum()),
        "cancelled": cancelled,
        "soj_sum": soj,
        "wait_sum": wait,
        "in_runs": in_runs,
        "runs": runs,
        "sla": sla,
    }


def _sample_quantiles(per: list[dict[str, Any]], lat: Latency, cancel: bool,
                      seqs: list[np.random.SeedSequence]) -> None:
    """Draw the replications' sojourn samples in proportion to their requests (equal weights)."""
    total = sum(p["in_runs"] for p in per)
    for p, ss in zip(per, seqs):
        n = int(round(_QUANTILE_SAMPLE * p["in_runs"] / total)) if total else 0
        rng = np.random.default_rng(ss.spawn(1)[0])
        p["sample"] = sample_sojourns(rng, p.pop("runs"), p.pop("sla"), lat, n, cancel) if n else np.empty(0)


def _quantiles(per: list[dict[str, Any]], qs: list[float]) -> list[float]:
    """Quantiles of S over all measured requests (samples drawn in proportion to each replication).

    Requests outside every run (refused, or never started before their deadline) and
    those cancelled are +inf, as in the request-level result.
    """
    smp = np.concatenate([p["sample"] for p in per])
    in_runs = sum(p["in_runs"] for p in per)
    arrived = sum(p["arrived"] for p in per)
    if smp.size == 0:
        return [math.inf if arrived > 0 else math.nan] * len(qs)
    share = in_runs / arrived if arrived else 1.0  # the sample stands for this share of all requests
    levels = [q / share for q in qs]
    inside = [qq for qq in levels if qq <= 1.0]
    vals = iter(np.quantile(smp, inside, method="inverted_cdf").tolist() if inside else [])
    return [next(vals) if qq <= 1.0 else math.inf for qq in levels]


def _combine(per: list[dict[str, Any]], span_s: float) -> dict[str, Any]:
    keys = [k for k in per[0] if k not in ("sample", "runs", "sla")]
    tot = {k: sum(p[k] for p in per) for k in keys}
    r = len(per)
    arrived = np.array([p["arrived"] for p in per])
    misses = np.array([p["misses"] for p in per])
    p, lo, hi = ratio_ci(misses, arrived)
    ci = (max(lo, 0.0), min(hi, 1.0)) if math.isfinite(lo) else (math.nan, math.nan)
    # The request-level rule (see sim.estimate): a one-sided bound over effectively independent batches.
    upper = ci[1] if tot["misses"] >= 0.5 and math.isfinite(ci[1]) else min(1.0, -math.log(0.05) / max(tot["batches"], 1.0))
    bm, _, _ = ratio_ci(np.array([q["batch_misses"] for q in per]), np.array([q["batches"] for q in per]))
    comp = tot["completed"]
    comp_r = np.array([q["completed"] for q in per])
    _, s_lo, s_hi = ratio_ci(np.array([q["soj_sum"] for q in per]), comp_r)
    _, w_lo, w_hi = ratio_ci(np.array([q["wait_sum"] for q in per]), comp_r)
    return {
        "p_miss": p,
        "ci": ci,
        "upper": upper,
        "misses": tot["misses"],
        "batch_miss": bm,
        "soj_mean": tot["soj_sum"] / comp if comp else math.nan,
        "wait_mean": tot["wait_sum"] / comp if comp else math.nan,
        "soj_ci": (s_lo, s_hi),
        "wait_ci": (w_lo, w_hi),
        "q": _quantiles(per, [0.5, 0.9, 0.99]),
        "throughput": comp / (span_s * r),
        "arrived": int(round(tot["arrived"])),
        "completed": int(round(comp)),
        "rejected": int(round(tot["rejected"])),
        "cancelled": int(round(tot["cancelled"])),
        "batches": int(tot["batches"]),
        "per_rep": (misses / np.maximum(arrived, 1)).tolist(),
    }


def ratio_ci(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float]:
    """Σnum/Σden over replications with a 95% t-interval (delta method), as the request-level tier."""
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
    h = float(stats.t.ppf(0.975, R - 1)) * se
    return est, est - h, est + h


def analytic_p_miss(scenario: Any, cap: NodeCapacity | None = None, load: LoadReport | None = None
                    ) -> tuple[float, str]:
    """P(miss) from the FIFO tail asymptotics, and the regime that produced it (or why there is none)."""
    cap = cap if cap is not None else node_capacity(scenario)
    load = load if load is not None else load_report(scenario, cap)
    wl = scenario.workload
    sv = scenario.serving
    if sv.discipline not in ("fifo", "edf") or (sv.discipline == "edf" and wl.sla_classes):
        return math.nan, f"none: discipline {sv.discipline} (the asymptotics are for FIFO)"
    if wl.trace is not None:
        return math.nan, "none: trace workload"
    fleet = fluid_fleet(scenario, cap)
    prefix = ""
    rate = wl.batch_rate_per_hour / 3600.0
    if wl.rate_profile is not None:
        # Thinning a peak-rate stream gives the profiled one, and FIFO waits only shrink: a bound.
        rate *= max(wl.rate_profile)
        prefix = "upper bound at the peak-hour rate: "
    tail = fifo_tail(scenario, cap, rate)
    if tail.regime == "none":
        return math.nan, f"none: {tail.reason}"
    C = fleet.capacity
    lat = cap.latency if cap.latency is not None else Latency.constant(cap.latency_s)
    classes = [(c.hours * 3600.0, c.weight) for c in wl.sla_classes] if wl.sla_classes else [(scenario.sla_seconds, 1.0)]
    wsum = sum(w for _, w in classes)
    qcap = fleet.queue_cap / C
    p = 0.0
    for sla, w in classes:
        cap_s = min(sla, qcap) if fleet.cancel else qcap
        pm = tail_p_miss(scenario, cap, tail, sla, fleet.in_service / C, cap_s, qcap, lat)
        p += w / wsum * pm
    p = cap.reject_fraction + (1.0 - cap.reject_fraction) * p
    name = tail.regime + (f" ({tail.reason})" if tail.reason else "")
    if len(classes) > 1 and fleet.cancel:
        name += "; mixed deadlines: each class's cap applied to the whole stream (approximate)"
    return p, prefix + name


def _agreement(res: dict[str, Any], a_p: float, regime: str) -> str:
    """Where sampling and the asymptotics both speak, say whether they agree."""
    if not math.isfinite(a_p):
        return "analytic not applicable"
    lo, hi = res["ci"]
    p = res["p_miss"]
    bound = regime.startswith("upper bound")
    if res["misses"] == 0:
        if a_p <= res["upper"]:
            return f"sampling saw no miss (upper bound {res['upper']:.3g}); analytic {a_p:.3g} is below it"
        return f"DISAGREE: sampling saw no miss (upper bound {res['upper']:.3g}) but analytic gives {a_p:.3g}"
    if bound:
        return "analytic is an upper bound: " + ("consistent" if a_p >= lo else f"VIOLATED ({a_p:.3g} < CI low {lo:.3g})")
    if lo <= a_p <= hi:
        return "analytic inside the sampled CI"
    ratio = a_p / p if p > 0 else math.inf
    if res["misses"] < 30 and 0.5 <= ratio <= 2.0:
        return f"analytic within a factor {max(ratio, 1 / ratio):.2f} of a sample of {int(res['misses'])} misses"
    return f"DISAGREE: analytic {a_p:.3g} outside the sampled CI [{lo:.3g}, {hi:.3g}] (ratio {ratio:.3g})"
