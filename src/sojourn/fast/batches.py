"""Batch arrivals for the fast path, vectorised: times, sizes, work and deadlines of a million batches at once.

A batch's work is the sum of its accepted requests' works (node-seconds, see
``capacity``). Batches of at most ``exact_below`` requests get the exact sum of
independent draws; larger ones a gamma variable with the exact mean X·m and
variance X·v of that sum (a sum of many iid works is close to normal, and the
gamma keeps it positive), so the cost does not grow with the batch size. With an
infinite-variance request work every batch is summed exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from sojourn._errors import ConfigError
from sojourn.fast.capacity import NodeCapacity

__all__ = ["Batches", "arrival_times", "generate_batches", "sla_seconds", "trace_batches", "trace_rate"]

#: Batches up to this many requests get the exact sum of their requests' works.
EXACT_BELOW = 8


@dataclass
class Batches:
    """One replication's batches, in arrival order."""

    arrival: NDArray[np.float64]  # seconds
    size: NDArray[np.int64]  # requests that arrived
    accepted: NDArray[np.int64]  # requests the engine takes (the rest are refused: too long)
    work: NDArray[np.float64]  # node-seconds of the accepted requests
    sla: NDArray[np.float64]  # deadline of each batch, seconds after its arrival

    def __len__(self) -> int:
        return len(self.arrival)

    def take(self, sel: Any) -> Batches:
        return Batches(self.arrival[sel], self.size[sel], self.accepted[sel], self.work[sel], self.sla[sel])


def arrival_times(rng: np.random.Generator, rate_per_s: float, t_end: float,
                  profile: list[float] | None = None) -> NDArray[np.float64]:
    """Poisson batch arrivals on [0, t_end): homogeneous, or with 24 hourly multipliers (hour 0 at t = 0).

    The non-homogeneous process is the unit-rate one through the inverse of the
    cumulative intensity (a time change), which is exact and vectorised.
    """
    if profile is None:
        return _unit_poisson(rng, rate_per_s * t_end) / rate_per_s
    mult = np.asarray(profile, dtype=np.float64)
    hours = int(math.ceil(t_end / 3600.0))
    knots_t = np.arange(hours + 1, dtype=np.float64) * 3600.0
    per_hour = rate_per_s * 3600.0 * mult[np.arange(hours) % 24]
    knots_l = np.concatenate(([0.0], np.cumsum(per_hour)))
    total = float(np.interp(t_end, knots_t, knots_l))
    u = _unit_poisson(rng, total)
    # Where the profile is 0 the cumulative intensity is flat; interp of the inverse
    # maps a point to the end of the flat stretch, which has probability zero anyway.
    return np.interp(u, knots_l, knots_t)


def _unit_poisson(rng: np.random.Generator, horizon: float) -> NDArray[np.float64]:
    """Points of a unit-rate Poisson process on [0, horizon)."""
    if horizon <= 0:
        return np.empty(0)
    n = int(horizon + 6.0 * math.sqrt(horizon) + 16)
    t = np.cumsum(rng.exponential(1.0, n))
    while t[-1] < horizon:  # rare: draw more
        more = np.cumsum(rng.exponential(1.0, n)) + t[-1]
        t = np.concatenate((t, more))
    return t[: np.searchsorted(t, horizon)]


def sla_seconds(scenario: Any, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
    """Each batch's deadline (seconds): ``sla_hours``, or a class drawn by weight from ``sla_classes``."""
    classes = scenario.workload.sla_classes
    if not classes:
        return np.full(n, scenario.sla_seconds)
    hours = np.array([c.hours for c in classes], dtype=np.float64)
    w = np.array([c.weight for c in classes], dtype=np.float64)
    return hours[rng.choice(len(classes), size=n, p=w / w.sum())] * 3600.0


def batch_work(rng: np.random.Generator, accepted: NDArray[np.int64], cap: NodeCapacity,
               exact_below: int = EXACT_BELOW) -> NDArray[np.float64]:
    """Work of each batch: exact sums for small batches, moment-matched gamma for the rest."""
    m, v = cap.work_mean, cap.work_var
    work = np.zeros(len(accepted))
    exact = accepted <= exact_below if math.isfinite(v) else np.ones(len(accepted), dtype=bool)
    if v == 0.0:
        return cast(NDArray[np.float64], accepted * m)  # int64 * float: float64 (numpy's stubs say floating[Any])
    idx = np.flatnonzero(exact & (accepted > 0))
    if idx.size:
        counts = accepted[idx]
        total = int(counts.sum())
        if total > 50_000_000:
            raise ConfigError("workload.batch_size", f"{total} requests to sum exactly; the work law needs a finite variance")
        draws = cap.sample_work(rng, total)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        work[idx] = np.add.reduceat(draws, starts)
    big = np.flatnonzero(~exact)
    if big.size:
        x = accepted[big].astype(np.float64)
        work[big] = rng.gamma(x * (m * m / v), v / m)
    return work


def generate_batches(scenario: Any, cap: NodeCapacity, rng: np.random.Generator, t_end: float,
                     exact_below: int = EXACT_BELOW) -> Batches:
    """The batches of one replication on [0, t_end), from the scenario's M^X workload."""
    wl = scenario.workload
    if wl.trace is not None:
        raise ConfigError("workload.trace", "trace workloads go through sojourn.fast.trace_batches")
    t = arrival_times(rng, wl.batch_rate_per_hour / 3600.0, t_end, wl.rate_profile)
    n = len(t)
    size = wl.batch_size.sample_int(rng, n)
    q = 1.0 - cap.reject_fraction
    accepted = size if q >= 1.0 else rng.binomial(size, q)
    work = batch_work(rng, accepted, cap, exact_below)
    return Batches(t, size, accepted.astype(np.int64), work, sla_seconds(scenario, rng, n))


def trace_batches(scenario: Any, cap: NodeCapacity, seed: np.random.SeedSequence, t_end: float) -> Batches:
    """A replayed trace's batches on [0, t_end), through the request-level tier's own stream.

    ``sojourn.sim.workload.batch_stream`` does the replay (random phase, rate
    scale, windows into batches, SLA classes); each request's work comes from its
    own token counts, and requests beyond ``max_model_len`` are refused as there.
    """
    from sojourn.sim.workload import batch_stream

    limit = scenario.serving.max_model_len
    times: list[float] = []
    size: list[int] = []
    acc: list[int] = []
    sla: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    for t, prompts, outputs, s in batch_stream(scenario, seed):
        if t >= t_end:
            break
        p = np.asarray(prompts)
        o = np.asarray(outputs)
        ok = (p >= 1) & (o >= 1) & (p + o <= limit)
        times.append(t)
        size.append(len(p))
        acc.append(int(ok.sum()))
        sla.append(s)
        ins.extend(p[ok].tolist())
        outs.extend(o[ok].tolist())
    accepted = np.asarray(acc, dtype=np.int64)
    w = cap.work_of(np.asarray(ins, dtype=np.int64), np.asarray(outs, dtype=np.int64),
                    np.random.default_rng(seed.generate_state(1)[0]))
    work = np.zeros(len(times))
    nz = np.flatnonzero(accepted > 0)
    if nz.size:
        starts = np.concatenate(([0], np.cumsum(accepted[nz])[:-1]))
        work[nz] = np.add.reduceat(w, starts)
    return Batches(np.asarray(times), np.asarray(size, dtype=np.int64), accepted, work, np.asarray(sla))


def trace_rate(scenario: Any) -> tuple[float, float]:
    """(requests per second, batches per second) the trace replay offers (its cycle's average)."""
    from sojourn.sim.workload import load_trace

    wl = scenario.workload
    t, _, _ = load_trace(scenario.path(wl.trace), wl.format)
    n = len(t)
    period = float(t[-1] - t[0]) * n / (n - 1) / wl.rate_scale
    rps = n / period
    if wl.batch_window_s <= 0:
        return rps, rps
    # Windows holding at least one request: count them over one cycle.
    tt = (t - t[0]) / wl.rate_scale
    windows = len(np.unique(np.floor(tt / wl.batch_window_s)))
    return rps, windows / period
