"""Request outcomes of the fluid model: runs of evenly spaced starts, each plus a random latency.

In the fluid model the requests of one batch (or of one served piece of it) start
evenly spaced: a run of ``count`` requests starting at

    s_j = max(start + (j − 1)·step, 0),   j = 1..count   (seconds after the batch arrived),

and request j completes at s_j + L_j, L_j an independent draw of the latency of a
request in service (``Latency``: the law a saturated node shows, or a generic
server's service time). Misses, completions, the sojourn sum and the probability
that a whole batch is on time are sums over j of F(T − s_j), E[L; L <= T − s_j] and
log F(T − s_j): summed term by term for short runs and, for long ones, by the
midpoint rule on the closed-form integrals of those functions, so nothing loops
per request in Python and the cost does not grow with the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Latency", "RunStats", "Runs", "Sampler", "run_stats", "sample_sojourns"]

#: Draws n values: (rng, n) -> array.
Sampler = Callable[[np.random.Generator, int], NDArray[np.float64]]

#: Runs up to this long are summed term by term.
_SHORT_RUN = 16
#: Quantile knots of a latency law built from a distribution.
_KNOTS = 4096


@dataclass
class Runs:
    """Runs of starts; ``batch`` indexes the replication's batches."""

    batch: NDArray[np.int64]
    start: NDArray[np.float64]  # s_1 before the clamp at 0
    step: NDArray[np.float64]
    count: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.batch)

    def take(self, sel: NDArray[np.integer[Any]] | NDArray[np.bool_]) -> Runs:
        return Runs(self.batch[sel], self.start[sel], self.step[sel], self.count[sel])

    @staticmethod
    def concat(parts: list[Runs]) -> Runs:
        return Runs(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("batch", "start", "step", "count")))

    @staticmethod
    def empty() -> Runs:
        return Runs(np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, np.int64))


class Latency:
    """The law of a request's time in service, as a piecewise-linear cdf on knots (x_k, F_k).

    Gives F, E[L; L <= x], log F and their integrals in x, all by interpolation.
    """

    def __init__(self, x: ArrayLike, f: ArrayLike, draw: Sampler | None = None) -> None:
        x = np.asarray(x, dtype=np.float64)
        f = np.asarray(f, dtype=np.float64)
        # Strictly increasing knots; where x repeats (an atom), keep the last, highest F.
        keep = np.concatenate((np.diff(x) > 0, [True]))
        x, f = x[keep], np.maximum.accumulate(f[keep])
        if len(x) < 2:  # a point mass: rise from 0 to 1 just at it
            v = float(x[0])
            x, f = np.array([v, v + max(abs(v), 1.0) * 1e-12]), np.array([0.0, 1.0])
        f[-1] = 1.0
        self.x, self.f = x, f
        self.mean = float(np.sum(np.diff(f) * (x[1:] + x[:-1]) / 2.0)) + float(x[0] * f[0])
        dx = np.diff(x)
        # Cumulative integrals at the knots (trapezoids: exact for the piecewise-linear cdf).
        self._if = np.concatenate(([0.0], np.cumsum(dx * (f[1:] + f[:-1]) / 2.0)))  # ∫_{x0}^x F
        self._pm = np.concatenate(([x[0] * f[0]], x[0] * f[0] + np.cumsum(np.diff(f) * (x[1:] + x[:-1]) / 2.0)))
        lf = np.log(np.maximum(f, 1e-300))
        if f[0] == 0.0 and len(f) > 1 and f[1] > 0:
            # log F → −inf at a cdf's first knot; this value makes the trapezoid over the first
            # segment the exact ∫ log of the linear F there, Δ(log F_1 − 1).
            lf[0] = lf[1] - 2.0
        self._lf = lf
        self._ilf = np.concatenate(([0.0], np.cumsum(dx * (lf[1:] + lf[:-1]) / 2.0)))  # ∫_{x0}^x log F
        xf = x * f
        self._ixf = np.concatenate(([0.0], np.cumsum(dx * (xf[1:] + xf[:-1]) / 2.0)))  # ∫_{x0}^x u F(u) du
        self._draw = draw
        self.min = float(x[0]) if f[0] == 0.0 else 0.0

    @staticmethod
    def from_sample(sample: ArrayLike) -> Latency:
        s = np.sort(np.asarray(sample, dtype=np.float64))
        m = len(s)
        # Knots at the order statistics, F rising linearly between them (a smoothed empirical cdf).
        x = np.concatenate(([s[0]], s))
        f = np.concatenate(([0.0], (np.arange(1, m + 1)) / m))
        pool = s.copy()
        if m > 2 * _KNOTS:
            # Thinned to quantile knots (evenly spaced in F, denser in the upper tail down to
            # the last order statistic): every lookup is a search over the knots, and 100k of
            # them cost ~5x more per call than ~4k, for a cdf within 1/_KNOTS of the same.
            u = np.unique(np.concatenate((np.linspace(0.0, 0.999, _KNOTS),
                                          1.0 - np.geomspace(1e-3, 1.0 / m, 200), [1.0])))
            x, f = np.interp(u, f, x), u
        return Latency(x, f, draw=lambda rng, n: pool[rng.integers(0, len(pool), size=n)])

    @staticmethod
    def from_distribution(d: object, scale: float = 1.0) -> Latency:
        """From a sojourn Distribution (service times), knots at quantiles with extra ones in the tail."""
        u = np.concatenate((np.linspace(0.0, 0.999, _KNOTS), 1.0 - np.logspace(-3, -13, 200)))
        x = np.asarray(d.ppf(u), dtype=np.float64) * scale  # type: ignore[attr-defined]
        ok = np.isfinite(x)
        return Latency(x[ok], u[ok], draw=lambda rng, n: d.sample(rng, n) * scale)  # type: ignore[attr-defined]

    @staticmethod
    def constant(value: float) -> Latency:
        v = max(float(value), 0.0)
        return Latency([v], [1.0], draw=lambda rng, n: np.full(n, v))

    # -- pointwise ---------------------------------------------------------------------

    def cdf(self, x: ArrayLike) -> NDArray[np.float64]:
        return np.interp(np.asarray(x, dtype=np.float64), self.x, self.f, left=0.0, right=1.0)

    def partial_mean(self, x: ArrayLike) -> NDArray[np.float64]:
        """E[L; L <= x]."""
        x = np.asarray(x, dtype=np.float64)
        xc = np.clip(x, self.x[0], self.x[-1])
        k = np.clip(np.searchsorted(self.x, xc, side="right") - 1, 0, len(self.x) - 2)
        x0, x1 = self.x[k], self.x[k + 1]
        dens = (self.f[k + 1] - self.f[k]) / np.maximum(x1 - x0, 1e-300)
        out = self._pm[k] + dens * (xc * xc - x0 * x0) / 2.0
        return np.where(x < self.x[0], 0.0, out)

    def log_cdf(self, x: ArrayLike) -> NDArray[np.float64]:
        with np.errstate(divide="ignore"):
            return np.log(self.cdf(x))

    # -- integrals from the first knot ------------------------------------------------------

    def _integral(self, table: NDArray[np.float64], values_right: float, x: ArrayLike,
                  fn_at: NDArray[np.float64]) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=np.float64)
        xc = np.clip(x, self.x[0], self.x[-1])
        k = np.clip(np.searchsorted(self.x, xc, side="right") - 1, 0, len(self.x) - 2)
        # Trapezoid from the knot to xc with the interpolated end value.
        v0 = fn_at[k]
        v1 = np.interp(xc, self.x, fn_at)
        inside = table[k] + (xc - self.x[k]) * (v0 + v1) / 2.0
        beyond = np.maximum(x - self.x[-1], 0.0) * values_right
        return np.where(x < self.x[0], 0.0, inside + beyond)

    def int_cdf(self, x: ArrayLike) -> NDArray[np.float64]:
        """∫ F from the first knot to x (F = 1 beyond the last)."""
        return self._integral(self._if, 1.0, x, self.f)

    def int_partial_mean(self, x: ArrayLike) -> NDArray[np.float64]:
        """∫ E[L; L <= u] du from the first knot to x."""
        pm_at = self._pm
        if not hasattr(self, "_ipm"):
            dx = np.diff(self.x)
            self._ipm = np.concatenate(([0.0], np.cumsum(dx * (pm_at[1:] + pm_at[:-1]) / 2.0)))
        return self._integral(self._ipm, self.mean, x, pm_at)

    def int_log_cdf(self, x: ArrayLike) -> NDArray[np.float64]:
        """∫ log F from the first knot to x (0 beyond the last)."""
        return self._integral(self._ilf, 0.0, x, self._lf)

    def int_x_cdf(self, x: ArrayLike) -> NDArray[np.float64]:
        """∫ u·F(u) du from the first knot to x."""
        x = np.asarray(x, dtype=np.float64)
        inside = self._integral(self._ixf, 0.0, x, self.x * self.f)
        top = self.x[-1]
        return inside + np.where(x > top, (x * x - top * top) / 2.0, 0.0)

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        if self._draw is not None:
            return self._draw(rng, n)
        drawn: NDArray[np.float64] = np.interp(rng.random(n), self.f, self.x)
        return drawn


@dataclass
class RunStats:
    """Per-run expected outcomes (floats: expectations over the latencies)."""

    on_time: NDArray[np.float64]  # requests completing by the deadline
    on_time_wait: NDArray[np.float64]  # sum of their starts (waits)
    on_time_sojourn: NDArray[np.float64]  # sum of their sojourns
    log_all_on_time: NDArray[np.float64]  # log P(every request of the run is on time)
    start_sum: NDArray[np.float64]  # sum of the starts (for waits and late completions)


def run_stats(runs: Runs, sla: NDArray[np.float64], lat: Latency) -> RunStats:
    """Expected on-time completions, their sojourn sum and log P(all on time) of each run."""
    n = len(runs)
    on = np.zeros(n)
    wait = np.zeros(n)
    soj = np.zeros(n)
    logok = np.zeros(n)
    ssum = np.zeros(n)
    if n == 0:
        return RunStats(on, wait, soj, logok, ssum)
    short = runs.count <= _SHORT_RUN
    # Short runs: term by term.
    si = np.flatnonzero(short & (runs.count > 0))
    if si.size:
        cnt = runs.count[si]
        rep = np.repeat(np.arange(si.size), cnt)
        j = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        s = np.maximum(runs.start[si][rep] + j * runs.step[si][rep], 0.0)
        slack = sla[si][rep] - s
        f = lat.cdf(slack)
        with np.errstate(divide="ignore"):
            lf = np.log(f)
        on[si] = np.bincount(rep, weights=f, minlength=si.size)
        wait[si] = np.bincount(rep, weights=s * f, minlength=si.size)
        soj[si] = wait[si] + np.bincount(rep, weights=lat.partial_mean(slack), minlength=si.size)
        logok[si] = np.bincount(rep, weights=lf, minlength=si.size)
        ssum[si] = np.bincount(rep, weights=s, minlength=si.size)
    li = np.flatnonzero(~short)
    if li.size:
        _long_runs(runs.take(li), sla[li], lat, li, on, wait, soj, logok, ssum)
        # The long runs' integrals carry float rounding of ~1e-14 of the run's size: expected
        # misses below 1e-9 of it are that noise, not misses (else P(miss) reads ~1e-14
        # where no request can miss).
        cnt = runs.count[li].astype(np.float64)
        noise = np.abs(cnt - on[li]) <= 1e-9 * np.maximum(cnt, 1.0)
        on[li] = np.where(noise, cnt, on[li])
    return RunStats(on, wait, soj, logok, ssum)


def _long_runs(r: Runs, sla: NDArray[np.float64], lat: Latency, idx: NDArray[np.int64], on: NDArray[np.float64],
               wait: NDArray[np.float64], soj: NDArray[np.float64], logok: NDArray[np.float64],
               ssum: NDArray[np.float64]) -> None:
    """Midpoint rule: Σ_j g(s_j) ≈ (1/h)∫ g over [s_1 − h/2, s_n + h/2], with the clamp at 0 split off."""
    cnt = r.count.astype(np.float64)
    h = r.step
    # Requests whose start is clamped to 0: j − 1 < −start/h.
    with np.errstate(divide="ignore", invalid="ignore"):
        j0 = np.where(h > 0, np.clip(np.ceil(-r.start / h), 0, cnt), np.where(r.start < 0, cnt, 0.0))
    # Clamped part: j0 requests starting at 0.
    f0 = lat.cdf(sla)
    with np.errstate(divide="ignore"):
        lf0 = np.log(f0)
    on[idx] += j0 * f0
    soj[idx] += j0 * lat.partial_mean(sla)
    logok[idx] += np.where(j0 > 0, j0 * lf0, 0.0)
    # Arithmetic part: starts a = start + j0·h .. b = start + (cnt − 1)·h, m = cnt − j0 terms.
    m = cnt - j0
    a = r.start + j0 * h
    b = r.start + (cnt - 1.0) * h
    lo = a - h / 2.0
    hi = b + h / 2.0
    ok = m > 0
    hh = np.where(h > 0, h, 1.0)
    # ∫ F(T − s) ds over [lo, hi] = IF(T − lo) − IF(T − hi), and likewise for the others.
    t_lo, t_hi = sla - lo, sla - hi
    on_i = (lat.int_cdf(t_lo) - lat.int_cdf(t_hi)) / hh
    pm_i = (lat.int_partial_mean(t_lo) - lat.int_partial_mean(t_hi)) / hh
    # ∫ s F(T − s) ds = ∫ (T − u) F(u) du over u in [T − hi, T − lo].
    sf_i = (sla * (lat.int_cdf(t_lo) - lat.int_cdf(t_hi)) - (lat.int_x_cdf(t_lo) - lat.int_x_cdf(t_hi))) / hh
    mid = (a + b) / 2.0
    lf_i = (lat.int_log_cdf(t_lo) - lat.int_log_cdf(t_hi)) / hh
    # A start after T − (least latency) cannot finish in time: the run is surely not all on time.
    lf_i = np.where(b > sla - lat.min, -np.inf, lf_i)
    zero_step = h <= 0
    f_a = lat.cdf(sla - a)
    on_i = np.where(zero_step, m * f_a, on_i)
    pm_i = np.where(zero_step, m * lat.partial_mean(sla - a), pm_i)
    sf_i = np.where(zero_step, m * a * f_a, sf_i)
    with np.errstate(divide="ignore"):
        lf_i = np.where(zero_step, m * np.log(f_a), lf_i)
    on[idx] += np.where(ok, np.clip(on_i, 0.0, m), 0.0)
    wait[idx] += np.where(ok, sf_i, 0.0)
    soj[idx] += np.where(ok, sf_i + pm_i, 0.0)
    logok[idx] += np.where(ok, lf_i, 0.0)
    ssum[idx] += np.where(ok, m * mid, 0.0)


def sample_sojourns(rng: np.random.Generator, runs: Runs, sla: NDArray[np.float64], lat: Latency, n: int,
                    cancel: bool) -> NDArray[np.float64]:
    """``n`` sojourns drawn uniformly over the requests of all runs; a request not done by its deadline
    under cancellation is +inf (never served)."""
    total = int(runs.count.sum())
    if total == 0:
        return np.empty(0)
    cum = np.cumsum(runs.count)
    u = rng.integers(0, total, size=n)
    r = np.searchsorted(cum, u, side="right")
    j = u - (cum[r] - runs.count[r])
    s = np.maximum(runs.start[r] + j * runs.step[r], 0.0) + lat.sample(rng, n)
    if cancel:
        s = np.where(s <= sla[r], s, np.inf)
    return s
