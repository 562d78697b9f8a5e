"""The stationary law of the fluid fleet's workload, computed: P(miss) in heavy traffic, stationary starts.

The fluid fleet (``fluid``) is an M/G/1 queue of batches: batches arrive at rate λ,
a batch brings B = (w_1 + ... + w_X)/C seconds of fleet work, and under FIFO the
work V a batch finds (PASTA: the time-stationary workload) has the
Pollaczek–Khinchine law, a geometric sum of ladder heights:

    V = Y_1 + ... + Y_N,   P(N = n) = (1 − ρ)ρ^n,   P(Y > x) = P(B_e > x) = E[(B − x)+]/E[B].

``WorkloadLaw`` computes ψ(x) = P(V > x) on a lattice of step h by the fast Fourier
transform of that compound geometric sum (Embrechts, Grübel & Pitts, "Some
applications of the fast Fourier transform algorithm in insurance mathematics",
Statistica Neerlandica 47, 1993), exponentially tilted against wrap-around. It
uses no asymptotic, so it holds at any ρ < 1, heavy traffic included, where the
tail asymptotics of ``tails`` do not: the subexponential one needs x far beyond the
heavy-traffic scale E[V] = λE[B²]/2(1 − ρ) (Olvera-Cravioto, Blanchet & Glynn, "On
the transition from heavy traffic to heavy tails for the M/G/1 queue", Ann. Appl.
Probab. 21, 2011). Each ladder height is put at the lattice point below and above
it, which brackets ψ: ``sf(x, "lower") <= ψ(x) <= sf(x, "upper")`` for the lattice
batch work.

The batch work on the lattice: batches of at most ``SMALL_BATCH`` requests are the
exact sums of the request-work law (FFT powers of its lattice pmf, each work split
between its two lattice points so that its mean is kept); larger batches are
X·w̄/C rounded to the lattice and widened by one gaussian carrying their mean
within-batch variance (so E[B²] is exact). Batch sizes follow the fast tier's
accepted-request rule X' = ceil(q·Y) (``tails.position_mean``).

The law also gives the workload's relaxation time and draws stationary starts
(``sample``), so a sampled run can begin in steady state instead of empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sojourn.stats import excess_mean, survival

__all__ = ["WorkloadLaw", "batch_work_moments", "relaxation_time", "workload_law"]

#: Batches of at most this many requests get the exact sum of their works on the lattice.
SMALL_BATCH = 64
#: Lattice points at most (the transform runs on 4x this, rounded up to a power of 2).
MAX_POINTS = 1 << 19
#: ψ below this is not resolved: the transform's rounding, amplified by the tilt, is ~1e-12.
RESOLUTION = 1e-10
#: e^(tilt) is the largest factor the untilting multiplies a value by (e^9.2 = 1e4).
_TILT = math.log(1e4)


@dataclass(frozen=True)
class BatchWork:
    """Moments of the batch work B (fleet-seconds) and the offered load."""

    lam: float  # batches per second
    mean: float  # E[B]
    second: float  # E[B²]
    rho: float

    @property
    def mean_wait(self) -> float:
        """E[V] = λE[B²]/2(1 − ρ): the stationary mean of the work a batch finds (inf when unstable)."""
        return self.lam * self.second / (2.0 * (1.0 - self.rho)) if self.rho < 1.0 else math.inf


def batch_work_moments(xdist: Any, q: float, work_mean: float, work_var: float, capacity: float,
                       lam: float) -> BatchWork:
    """E[B] and E[B²] of B = (w_1 + ... + w_X')/C with X' the batch's accepted requests.

    X' is Y thinned by q: E[X'] = q·E[ceil Y], E[X'²] ≈ q²E[Y²] + q(1 − q)E[Y] (the
    rounding up of Y aside); E[B²] = (E[X']·Var w + E[X'²]·w̄²)/C².
    """
    ex = q * float(xdist.int_mean)
    ey = float(xdist.mean)
    ey2 = float(xdist.var) + ey * ey
    ex2 = max(q * q * ey2 + q * (1.0 - q) * ey, ex * ex)
    mean = ex * work_mean / capacity
    second = (ex * work_var + ex2 * work_mean**2) / capacity**2
    return BatchWork(lam=lam, mean=mean, second=second, rho=lam * mean)


def relaxation_time(bw: BatchWork, cap: float = math.inf) -> float:
    """Seconds over which the workload forgets its start (inf when it never does).

    The relaxation time of the reflected Brownian motion with the queue's drift
    −(1 − ρ) and variance σ² = λE[B²] per second: 2σ²/(1 − ρ)² (Abate & Whitt,
    "Transient behavior of regulated Brownian motion", Adv. Appl. Probab. 19, 1987;
    for M/M/1 the exact 1/μ(1 − √ρ)² as ρ → 1, Morse 1955). Where the work is held
    within ``cap`` seconds (cancellation at the deadline, a queue limit) the motion is
    reflected at both ends, and the spectral gap adds π²σ²/2K²: 1/((1 − ρ)²/2σ² +
    π²σ²/2K²), finite even at ρ >= 1. A run started empty needs several of them before
    its workload is stationary; a stationary start needs none, but the run still needs
    several for its interval to hold.
    """
    var = bw.lam * bw.second
    if not math.isfinite(var) or var <= 0:
        return math.inf
    gap = (1.0 - bw.rho) ** 2 / (2.0 * var) if bw.rho < 1.0 or math.isfinite(cap) else 0.0
    if math.isfinite(cap) and cap > 0:
        gap += math.pi**2 * var / (2.0 * cap * cap)
    return 1.0 / gap if gap > 0 else math.inf


@dataclass(frozen=True)
class WorkloadLaw:
    """ψ(x) = P(V > x) on the lattice x = j·h, j < n, bracketed below and above (module docstring)."""

    h: float
    psi_lower: NDArray[np.float64]
    psi_upper: NDArray[np.float64]
    work: BatchWork
    #: Share of the batch-work law's equilibrium mass beyond the lattice (lumped at its end).
    beyond: float

    regime = "numeric"
    reason = ""

    @property
    def rho(self) -> float:
        return self.work.rho

    @property
    def lam(self) -> float:
        return self.work.lam

    @property
    def upto(self) -> float:
        """The lattice's end (seconds): ψ is known below it."""
        return self.h * len(self.psi_upper)

    @property
    def mean(self) -> float:
        """E[V] on the lattice (midpoint of the bracket), against the exact ``work.mean_wait``."""
        return 0.5 * self.h * float(np.sum(self.psi_lower) + np.sum(self.psi_upper))

    def sf_array(self, x: ArrayLike, which: str = "upper") -> NDArray[np.float64]:
        """ψ(x): ``lower``/``upper`` the bracket's step functions, ``mid`` their linear midpoint."""
        x = np.asarray(x, dtype=np.float64)
        j = np.floor(np.maximum(x, 0.0) / self.h)
        inside = j < len(self.psi_upper)
        jj = np.minimum(j, len(self.psi_upper) - 1).astype(np.int64)
        if which == "mid":
            grid = np.arange(len(self.psi_upper)) * self.h
            mid = 0.5 * (self.psi_lower + self.psi_upper)
            out = np.interp(np.maximum(x, 0.0), grid, mid)
        elif which in ("lower", "upper"):
            out = (self.psi_lower if which == "lower" else self.psi_upper)[jj]
        else:
            raise ValueError(f"which = {which!r}; allowed: 'lower', 'upper', 'mid'")
        out = np.where(inside, out, np.nan)
        return np.where(x < 0, 1.0, out)

    def sf(self, x: float, which: str = "upper") -> float:
        return float(self.sf_array(np.asarray(x), which))

    def at(self, which: str) -> _LawView:
        """This law seen through one side of its bracket, with ``tails.FifoTail``'s ``sf`` interface."""
        return _LawView(self, which)

    def sample(self, rng: np.random.Generator, n: int, cap: float = math.inf) -> NDArray[np.float64]:
        """``n`` stationary draws of V (the midpoint law), restricted to [0, cap] (cancellation, queue limit).

        The capped workload's law is the uncapped one restricted to [0, cap] and
        renormalised (M/G/1 dam with partial rejection, ``tails``). Draws beyond the
        lattice's end are put at its end.
        """
        grid = np.arange(len(self.psi_upper) + 1) * self.h
        psi = 0.5 * (self.psi_lower + self.psi_upper)
        cdf = np.concatenate((1.0 - psi, [1.0]))
        cdf = np.maximum.accumulate(cdf)
        top = 1.0
        if math.isfinite(cap) and cap < grid[-1]:
            top = float(np.interp(cap, grid, cdf))
        u = rng.random(n) * top
        # Inverse of the piecewise-linear cdf; the atom at 0 (P(V = 0) = 1 − ρ) maps to 0.
        out = np.interp(u, cdf, grid)
        capped: NDArray[np.float64] = np.minimum(out, cap) if math.isfinite(cap) else out
        return capped


class _LawView:
    """One side of a ``WorkloadLaw``'s bracket, as ``tails.tail_p_miss`` reads a tail."""

    regime = "numeric"

    def __init__(self, law: WorkloadLaw, which: str) -> None:
        self.law, self.which = law, which
        self.rho = law.rho

    def sf(self, x: float) -> float:
        return self.law.sf(x, self.which)

    def sf_array(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.law.sf_array(x, self.which)


def _split_to_lattice(z: NDArray[np.float64], size: int) -> NDArray[np.float64]:
    """pmf on 0..size−1 of values z (lattice units, equal weights), each split between floor and ceil keeping its mean."""
    z = np.clip(z, 0.0, size - 1.0)
    lo = np.floor(z).astype(np.int64)
    fr = z - lo
    hi = np.minimum(lo + 1, size - 1)
    pmf = np.bincount(lo, weights=1.0 - fr, minlength=size) + np.bincount(hi, weights=fr, minlength=size)
    return pmf[:size] / len(z)


def _batch_work_pmf(xdist: Any, q: float, works: NDArray[np.float64], work_var: float, capacity: float,
                    h: float, n: int) -> tuple[NDArray[np.float64], float]:
    """pmf of the lattice batch work at j·h, j < n, and the probability that it lies beyond n·h."""
    u = np.asarray(works, dtype=np.float64) / capacity  # request work, fleet-seconds
    ubar = float(u.mean())
    # Accepted sizes X' = ceil(qY): P(X' >= k) = P(Y > (k − 1)/q).
    k = np.arange(0, SMALL_BATCH + 2, dtype=np.float64)
    ge = survival(xdist, (k - 1.0) / q)
    ge[0] = 1.0
    p_k = np.maximum(ge[:-1] - ge[1:], 0.0)  # P(X' = k), k = 0..SMALL_BATCH
    big_mass = float(ge[SMALL_BATCH + 1])
    pmf = np.zeros(n)
    pmf[0] += p_k[0]
    beyond = 0.0
    live = np.flatnonzero(p_k[1:] > 0)
    if live.size:
        # Exact sums of k <= SMALL_BATCH works: Σ p_k φ^k by Horner, tilted against wrap-around,
        # on a transform just long enough for the largest such sum (beyond it is rounding noise).
        kmax = int(live[-1]) + 1
        # Each work sits on its two nearest lattice points, so k of them reach k·ceil(max/h).
        full = kmax * int(math.ceil(float(u.max()) / h)) + 2
        top = min(n, full)
        size = 1 << int(math.ceil(math.log2(max(4 * top, 64))))
        theta = 4.0 * _TILT / size
        phi = np.fft.rfft(_split_to_lattice(u / h, size) * np.exp(-theta * np.arange(size)))
        acc = np.full(phi.shape, p_k[kmax], dtype=np.complex128)
        for kk in range(kmax - 1, 0, -1):
            acc = p_k[kk] + phi * acc
        pmf[:top] += np.fft.irfft(phi * acc, size)[:top] * np.exp(theta * np.arange(top))
        if full > n:  # small batches reaching past the lattice (a lattice too short for the SLA)
            beyond += max(float(p_k[1:].sum()) - float(pmf[:top].sum()) + float(p_k[0]), 0.0)
    if big_mass > 0:
        # X'·w̄/C rounded to the nearest lattice point, for X' > SMALL_BATCH.
        edges = (np.arange(n + 1) - 0.5) * h
        m = np.maximum(np.ceil(edges / ubar), SMALL_BATCH + 1.0)
        ge_m = survival(xdist, (m - 1.0) / q)
        big = np.maximum(ge_m[:-1] - ge_m[1:], 0.0)
        beyond += float(ge_m[-1])
        # The within-batch spread (k·Var u for k requests): one gaussian with its mean variance.
        ex_big = q * float(xdist.int_mean) - float(np.sum(np.arange(SMALL_BATCH + 1) * p_k))
        var = max(ex_big, 0.0) * work_var / capacity**2 / big_mass if math.isfinite(work_var) else 0.0
        sd = math.sqrt(var) / h
        if sd > 0.25:
            size = 1 << int(math.ceil(math.log2(2 * n + 16 * sd + 64)))
            f = np.fft.rfftfreq(size)
            big = np.fft.irfft(np.fft.rfft(big, size) * np.exp(-2.0 * (math.pi * sd * f) ** 2), size)[:n]
            big = np.maximum(big, 0.0)
        pmf += big
    # Rounding aside, the lattice holds all but ``beyond``: renormalise to exactly that.
    total = float(pmf.sum())
    if total > 0:
        pmf *= (1.0 - beyond) / total
    return pmf, beyond


def _geometric_sum_sf(f: NDArray[np.float64], tail: float, rho: float, n: int) -> NDArray[np.float64]:
    """P(V > j), j < n, for V a geometric(ρ) sum of ladder heights with pmf f on 0..n−1 and ``tail`` at n."""
    size = 1 << int(math.ceil(math.log2(4 * (n + 2))))
    theta = _TILT / (n + 1)
    g = np.zeros(size)
    g[: len(f)] = f
    g[n] += tail
    j = np.arange(size)
    ft = np.fft.rfft(g * np.exp(-theta * j))
    v = np.fft.irfft((1.0 - rho) / (1.0 - rho * ft), size)[: n] * np.exp(theta * np.arange(n))
    # ψ(j) = P(V > j) = 1 − Σ_{i <= j} P(V = i).
    return np.clip(1.0 - np.cumsum(v), 0.0, 1.0)


def workload_law(xdist: Any, q: float, works: NDArray[np.float64], work_mean: float, work_var: float,
                 capacity: float, lam: float, upto: float, *, max_points: int = MAX_POINTS) -> WorkloadLaw | str:
    """The stationary workload law of the fluid fleet on [0, upto), or the reason it cannot be had.

    ``works``: a sample (or evenly spaced quantiles) of the accepted requests' works
    in node-seconds, bounded (an engine's works are), rescaled to the exact
    ``work_mean`` (near ρ = 1 a 0.3% error in the mean moves E[V] by 15%);
    ``capacity``: the fleet's node-seconds per second; ``lam``: batches per second.
    """
    works = np.asarray(works, dtype=np.float64)
    works = works * (work_mean / float(works.mean()))
    bw = batch_work_moments(xdist, q, work_mean, work_var, capacity, lam)
    if not bw.rho < 1.0:
        return f"unstable: rho = {bw.rho:.4g} >= 1"
    if not (math.isfinite(bw.second) and bw.mean > 0):
        return "the batch work has no finite second moment"
    # The lattice: fine against a batch's work and against the scale over which ψ falls
    # (each of the ~ρ/(1 − ρ) ladder heights moves by at most h in the bracket).
    h = min(bw.mean / 16.0, bw.second / bw.mean / 40.0)
    n = int(math.ceil(upto / h)) + 1
    if n > max_points:
        h = upto / (max_points - 1)
        n = max_points
        if h > bw.second / bw.mean / 4.0:
            return f"the lattice would need {int(math.ceil(upto / (bw.second / bw.mean / 40.0)))} points (at most {max_points})"
    pmf, beyond_b = _batch_work_pmf(xdist, q, works, work_var, capacity, h, n)
    # P(B > j·h), j < n, from the far end (precision where it is small).
    rev = np.cumsum(pmf[::-1])[::-1]
    sf_b = np.maximum(np.concatenate((rev[1:], [0.0])) + beyond_b, 0.0)
    # Ladder heights: mass ∝ P(B > j·h) on [j·h, (j + 1)·h), and beyond the lattice the exact
    # E[(B − L)+]/E[B] of batches X'·w̄/C > L (a small batch's work never reaches L).
    ubar = work_mean / capacity
    tail = 0.0
    if beyond_b > 0:
        tail = ubar * q * float(excess_mean(xdist, n * h / (ubar * q), integer=True)) / bw.mean
        tail = min(max(tail, 0.0), 1.0)
    f_e = sf_b * ((1.0 - tail) / float(sf_b.sum()))
    lower = _geometric_sum_sf(f_e, tail, bw.rho, n)
    upper_f = np.concatenate(([0.0], f_e[:-1]))
    upper = _geometric_sum_sf(upper_f, tail + f_e[-1], bw.rho, n)
    return WorkloadLaw(h=h, psi_lower=lower, psi_upper=np.maximum(upper, lower), work=bw, beyond=tail)
