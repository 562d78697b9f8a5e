"""Steady state: how a run starts, how long it warms up, and whether its output looks stationary.

Both tiers estimate stationary quantities, so each run either starts from a draw of
the stationary workload (``fast.stationary``) or warms up for several relaxation
times of the queue (2λE[B²]/(1 − ρ)²: ``fast.stationary.relaxation_time``), and
each checks its output: the work in system at batch arrivals, averaged over the
replications in time bins (Welch's procedure), goes through MSER-5 truncation
(White, "An effective truncation heuristic for bias reduction in simulation
output", Simulation 69, 1997; White, Cobb & Spratt, WSC 2000). MSER picks the
truncation point that minimises the standard error of the mean of what is left;
when it wants to cut into the second half of the series, the series still trends
there and the run did not reach steady state. ``SteadyState`` carries what a result
reports and the note it prints when something is off. The request tier's stationary
start is planned from the fast tier's law, in ``fast.start``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "BINS",
    "EMPTY_WARMUP_RELAXATIONS",
    "SPAN_RELAXATIONS",
    "SteadyState",
    "binned_means",
    "load_margin",
    "mser_truncation",
]

#: Time bins of the replication-averaged work series MSER reads.
BINS = 200
#: MSER's own failure rule: a truncation point at the end of its search (half the series)
#: means no steady part was found; this share of the series counts as that end.
MSER_LIMIT = 0.45
#: Level of the two-halves test: a run is flagged when its halves differ at this level (a transient
#: from an empty start in heavy traffic gives p < 1e-5; 0.1% keeps false alarms rare across rows).
HALVES_LEVEL = 0.001


def mser_truncation(y: ArrayLike, batch: int = 5) -> int:
    """MSER-``batch`` truncation: the number of leading observations to drop (nan entries are skipped).

    The series is grouped in batches of ``batch`` (MSER-5), and d* = argmin_d
    Σ_{i>d}(Y_i − Ȳ_d)² / (n − d)² over the batch means, searched over the first half
    (past it the statistic rests on too few points: the rule's own limit); the answer
    is in observations (d*·batch). A d* at the end of that range means no truncation
    point was found: the series still trends.
    """
    ys = np.asarray(y, dtype=np.float64)
    ys = ys[np.isfinite(ys)]
    m = len(ys) // batch
    if m < 4:
        return 0
    z = ys[: m * batch].reshape(m, batch).mean(axis=1)
    # Suffix sums give every d's mean and sum of squares at once.
    s1 = np.cumsum(z[::-1])[::-1]
    s2 = np.cumsum((z * z)[::-1])[::-1]
    k = np.arange(m, 0, -1, dtype=np.float64)  # observations left after dropping d = 0..m-1
    ss = s2 - s1 * s1 / k
    stat = ss / (k * k)
    d = int(np.argmin(stat[: m // 2 + 1]))
    return d * batch


def binned_means(t: ArrayLike, v: ArrayLike, t_end: float, bins: int = BINS) -> NDArray[np.float64]:
    """Mean of v over each of ``bins`` equal time bins of [0, t_end) (nan where a bin is empty)."""
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    idx = np.clip((t / t_end * bins).astype(np.int64), 0, bins - 1)
    keep = (t >= 0) & (t < t_end)
    s = np.bincount(idx[keep], weights=v[keep], minlength=bins)
    n = np.bincount(idx[keep], minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


@dataclass
class SteadyState:
    """How a run reached steady state, and whether its output says it did.

    ``start``: ``stationary`` (the work in system at the start drawn from its
    stationary law), ``empty`` (an empty fleet, then warm-up). ``relaxation_hours``:
    the queue's relaxation time (inf when unstable). ``note``: empty when the run is
    trustworthy on these counts, else what is wrong and what to do.
    """

    start: str
    warmup_hours: float
    span_hours: float
    relaxation_hours: float
    #: MSER-5's truncation point of the replication-averaged work series, hours from the start.
    mser_hours: float = math.nan
    #: p-value of the paired test between the two halves of the measured span (nan: not run).
    halves_p: float = math.nan
    #: What the run changed to reach steady state (a longer warm-up or span), for the record.
    adjusted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def note(self) -> str:
        return "; ".join(self.notes)

    @property
    def ok(self) -> bool:
        return not self.notes

    @property
    def span_relaxations(self) -> float:
        r = self.relaxation_hours
        return self.span_hours / r if r > 0 and math.isfinite(r) else (math.inf if r == 0 else 0.0)

    def check(self, series: NDArray[np.float64], total_hours: float, first: ArrayLike = (),
              second: ArrayLike = ()) -> None:
        """Judge the output: MSER-5 on the replication-averaged work series, and the two halves' test.

        ``series``: the work in system in equal time bins over [0, total_hours),
        averaged over the replications; ``first``/``second``: each replication's mean
        work over the first and the second half of its measured span. A run that
        started empty is flagged when MSER-5 truncates past its warm-up (into the
        measured span) or past half the series; any run when the halves differ at the
        0.1% level across replications (a paired t-test: a trend, not noise).
        """
        finite = np.isfinite(series)
        if finite.sum() >= 20:
            d = mser_truncation(series[finite])
            frac = d / int(finite.sum())
            self.mser_hours = frac * total_hours
            if self.start == "empty" and (frac > MSER_LIMIT or self.mser_hours > self.warmup_hours * 1.05):
                self.notes.append(
                    f"the work in system still trends {self.mser_hours:.3g} h into the run (MSER-5), past the "
                    f"{self.warmup_hours:.3g} h warm-up: not in steady state; lengthen simulation.warmup_hours")
        a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        if len(a) >= 3:
            from scipy import stats

            diff = b - a
            sd = float(np.std(diff, ddof=1))
            if sd > 0:
                t = float(np.mean(diff)) / (sd / math.sqrt(len(diff)))
                p = 2.0 * float(stats.t.sf(abs(t), len(diff) - 1))
                self.halves_p = p
                if p < HALVES_LEVEL:
                    self.notes.append(
                        f"the work in system differs between the two halves of the measured span in every "
                        f"replication (paired t-test p = {p:.2g}): a trend, not in steady state; lengthen "
                        "simulation.warmup_hours and horizon_hours")

    def to_dict(self) -> dict[str, Any]:
        fin = lambda x: None if not math.isfinite(x) else float(x)  # noqa: E731
        return {
            "start": self.start,
            "warmup_hours": fin(self.warmup_hours),
            "span_hours": fin(self.span_hours),
            "relaxation_hours": fin(self.relaxation_hours),
            "span_relaxations": fin(self.span_relaxations),
            "mser_hours": fin(self.mser_hours),
            "halves_p": fin(self.halves_p),
            "adjusted": list(self.adjusted),
            "ok": bool(self.ok),
            "note": self.note,
        }


#: Relaxation times of warm-up a run that starts empty needs (its note says so below it).
EMPTY_WARMUP_RELAXATIONS = 3.0
#: Relaxation times a replication's measured span needs for its interval to hold (both tiers).
SPAN_RELAXATIONS = 10.0


#: The node-capacity model's error a load margin must cover: a node's measured throughput
#: is known to about 2% (benchmarks/RESULTS.md, perf_accuracy), so a fleet loaded above
#: 1/1.02 = 0.98 may be overloaded in truth, and its P(miss) could be anything.
CAPACITY_ERROR = 0.02


def load_margin(scenario: Any) -> tuple[float, str]:
    """The default ``max_load`` of a study: the highest offered load worth simulating, and why.

    The work offered in one SLA window τ varies with coefficient of variation CV
    (compound Poisson: CV² = (E[X²] + E[X]·cv_w²)/(λτ·E[X]²), X the batch size, cv_w that
    of a request's work, 1 for an engine), and in heavy traffic the work a batch finds
    is about exponential (the reflected Brownian motion of the queue, Kingman):
    P(miss) ≈ exp(−2(1 − ρ)/(ρ²·CV²)). The margin is the load where that reaches 1/2, past
    which the fleet misses about half its requests: nothing a planner buys. It is never
    above 1/(1 + CAPACITY_ERROR) = 0.98 either: within the capacity model's error of
    overload, no P(miss) is trustworthy. For batch-API workloads (hundreds of batches
    per SLA window, CV < 0.3) the 0.98 binds; the workload's variance binds for a few
    large batches per window. Points below the margin can still be fragile: the front
    marks them (``fast.simulate.FRAGILITY_LIMIT``).
    """
    top = 1.0 / (1.0 + CAPACITY_ERROR)
    why = f"1/(1 + {CAPACITY_ERROR:g}): within the node-capacity model's {CAPACITY_ERROR:.0%} of overload"
    wl = scenario.workload
    if wl.trace is not None:
        return top, why
    xd = wl.batch_size
    ex = float(xd.int_mean)
    ex2 = float(xd.var) + float(xd.mean) ** 2
    srv = scenario.fleet.server
    cv_w2 = 1.0
    if srv is not None:
        m, v = float(srv.service_time.mean), float(srv.service_time.var)
        cv_w2 = v / (m * m) if m > 0 and math.isfinite(v) else math.inf
    rate = wl.batch_rate_per_hour / 3600.0 * (1.0 if wl.rate_profile is None else sum(wl.rate_profile) / 24.0)
    tau = min(c.hours for c in wl.sla_classes) * 3600.0 if wl.sla_classes else scenario.sla_seconds
    if not (rate > 0 and tau > 0 and ex > 0 and math.isfinite(ex2) and math.isfinite(cv_w2)):
        return top, why
    cv2 = (ex2 + ex * cv_w2) / (rate * tau * ex * ex)
    # (1 − ρ)/ρ² = CV²·ln2/2: a·ρ² + ρ − 1 = 0.
    a = cv2 * math.log(2.0) / 2.0
    half = (math.sqrt(1.0 + 4.0 * a) - 1.0) / (2.0 * a) if a > 0 else 1.0
    if half < top:
        return half, (f"the load where about half the requests miss: heavy traffic, the work offered in one "
                      f"{tau / 3600:.3g} h SLA window varying with CV = {math.sqrt(cv2):.3g}")
    return top, why
