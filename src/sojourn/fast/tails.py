"""Tail asymptotics of FIFO batch waiting times: P(miss) far below what sampling reaches.

The fluid fleet is an M/G/1 queue whose customers are batches (``fluid``): batches
arrive at rate λ, a batch brings B = (w_1 + ... + w_X)/C seconds of work, and by
PASTA the work a batch finds, V, has the law of the stationary workload, whose
tail ψ(x) = P(V > x) is the ruin probability of the compound Poisson risk model.

* Light-tailed batch work (Cramér–Lundberg): ψ(x) ~ c·e^{−γx}, γ > 0 the root of
  λ(M_B(γ) − 1) = γ, c = (1 − ρ) / (λ·M_B'(γ) − 1), with M_B(s) = G_X(M_w(s/C))
  the batch work's m.g.f. from the batch size's p.g.f. G_X and the request work's
  m.g.f. M_w. Exact for M/M/1 (c = ρ, γ = μ − λ).
* Heavy-tailed (subexponential) batch work, from lognormal or Pareto batch sizes
  (or service times): ψ(x) ~ ρ/(1 − ρ)·P(B_e > x), with the integrated tail
  P(B_e > x) = E[(B − x)+] / E[B] (Pakes 1975; Embrechts & Veraverbeke 1982).

A request in position j of its batch misses when V exceeds the deadline less the
work of its own batch up to it, so P(miss) averages ψ over request positions
(position j has weight P(X >= j)/E[X]). With cancellation (or a queue limit) the
workload is capped at K; for this M/G/1 dam with partial rejection the capped
workload's law is the uncapped one restricted to [0, K] and renormalised, which
the formula applies exactly.

References: S. Asmussen, *Applied Probability and Queues* (2003), XIII.5 (Cramér–
Lundberg) and X.4 (subexponential), XIV.3 (finite dams); A. G. Pakes, "On the
tails of waiting-time distributions", J. Appl. Prob. 12 (1975).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import integrate, optimize

from sojourn.stats import excess_mean, survival

__all__ = [
    "FifoTail",
    "adjustment_coefficient",
    "batch_size_pgf",
    "distribution_mgf",
    "fifo_tail",
    "position_mean",
]

#: Positions summed one by one before switching to a trapezoid on a log grid.
_EXACT_POSITIONS = 20_000
#: Below this, a Cramér–Lundberg amplitude c·e^{−γτ} is handled in log space.
_TINY_AMPLITUDE = 1e-300


# --- generating functions ----------------------------------------------------------


def distribution_mgf(d: Any, s: float) -> float:
    """E[e^{sY}] of a non-negative Distribution (Y clipped at max when set); inf where it diverges."""
    if s == 0.0:
        return 1.0
    fam = d.dist
    if d.max is None:
        if fam == "fixed":
            return math.exp(s * d.value)
        if fam == "exponential":
            m = d.unclipped_mean
            return 1.0 / (1.0 - s * m) if s * m < 1.0 else math.inf
        if fam == "gamma":
            k, th = 1.0 / d.cv**2, d.unclipped_mean * d.cv**2
            return (1.0 - s * th) ** (-k) if s * th < 1.0 else math.inf
        if fam == "geometric":
            p = 1.0 / d.unclipped_mean
            es = math.exp(s)
            return p * es / (1.0 - (1.0 - p) * es) if (1.0 - p) * es < 1.0 else math.inf
        if fam == "uniform":
            a, b = d.low, d.high
            mgf: float = (math.exp(s * b) - math.exp(s * a)) / (s * (b - a))
            return mgf
        if fam in ("lognormal", "pareto"):
            if fam == "lognormal" and d.sigma == 0.0:
                return math.exp(s * d.median)
            return math.inf if s > 0 else _numeric_mgf(d, s)
    if fam == "empirical":
        v = d._clipped()  # noqa: SLF001 - the values sampled
        return float(np.mean(np.exp(s * v)))
    return _numeric_mgf(d, s)


def _numeric_mgf(d: Any, s: float) -> float:
    """E[e^{sY}] = ∫_0^1 e^{s·ppf(u)} du (Y bounded by its clip, or s <= 0)."""
    top = 1.0 if d.max is None else float(d.cdf(d.max - 1e-12 * d.max))
    f = lambda u: math.exp(s * float(d.ppf(u)))  # noqa: E731
    val: float
    val, _ = integrate.quad(f, 0.0, top, limit=200)
    if d.max is not None:
        val += (1.0 - top) * math.exp(s * d.max)
    return val


def batch_size_pgf(d: Any, z: float) -> float:
    """E[z^X] of the batch size X = ceil(Y) (the sampling rule); inf where it diverges."""
    if z == 1.0:
        return 1.0
    fam = d.dist
    if d.max is None:
        if fam == "fixed":
            pgf: float = z ** math.ceil(d.value)
            return pgf
        if fam == "geometric":
            p = 1.0 / d.unclipped_mean
            return p * z / (1.0 - (1.0 - p) * z) if (1.0 - p) * z < 1.0 else math.inf
        if fam == "exponential":
            # ceil of an exponential with mean m is geometric with p = 1 − e^{−1/m}.
            q = math.exp(-1.0 / d.unclipped_mean)
            return (1.0 - q) * z / (1.0 - q * z) if q * z < 1.0 else math.inf
        if fam in ("lognormal", "pareto") and z > 1.0 and not (fam == "lognormal" and d.sigma == 0.0):
            return math.inf
        if fam == "gamma" and z > 1.0:
            th = d.unclipped_mean * d.cv**2
            if math.log(z) >= 1.0 / th:
                return math.inf
    if fam == "empirical":
        return float(np.mean(z ** np.ceil(d._clipped())))  # noqa: SLF001
    return _numeric_pgf(d, z)


def _numeric_pgf(d: Any, z: float) -> float:
    """Σ_k P(X = k) z^k, P(X = k) = P(k − 1 < Y <= k), in log space, until the terms are negligible."""
    lz = math.log(z) if z > 0 else -math.inf
    total = 0.0
    k0 = 0
    chunk = 4096
    top = math.inf if d.max is None else math.ceil(d.max)
    while k0 <= top:
        k = np.arange(k0, int(min(k0 + chunk, top + 1)), dtype=np.float64)
        pmf = np.asarray(d.cdf(k), dtype=np.float64) - np.asarray(d.cdf(k - 1.0), dtype=np.float64)
        with np.errstate(divide="ignore"):
            terms = np.where(pmf > 0, np.exp(np.log(np.maximum(pmf, 1e-320)) + k * lz), 0.0)
        part = float(terms.sum())
        total += part
        k0 += chunk
        sf = float(d.sf(k0 - 1.0))
        if sf == 0.0 or (part <= 1e-16 * total and k0 > 64 and terms[-1] <= terms[0]):
            break
        chunk = min(chunk * 2, 1 << 20)
    return total


# --- the adjustment coefficient ------------------------------------------------------


def adjustment_coefficient(lam: float, mgf: Callable[[float], float], mean_work: float,
                           s_max: float = math.inf) -> float:
    """γ > 0 with λ(M_B(γ) − 1) = γ for batch work B (seconds) arriving at rate λ; nan if none exists.

    κ(s) = λ(M_B(s) − 1) − s is convex with κ(0) = 0 and κ'(0) = ρ − 1 < 0, so the
    root is the unique positive zero; it exists iff κ turns positive before M_B diverges.
    """
    rho = lam * mean_work
    if not rho < 1.0:
        return math.nan

    def kappa(s: float) -> float:
        m = mgf(s)
        return lam * (m - 1.0) - s if math.isfinite(m) else math.inf

    # Bracket: double from the scale 1/E[B] until κ > 0 (or M_B diverges: then bisect on the edge).
    lo, hi = 0.0, (1.0 - rho) / mean_work
    if math.isfinite(s_max):
        hi = min(hi, 0.5 * s_max)
    for _ in range(400):
        k = kappa(hi)
        if k > 0:
            break
        if not math.isfinite(k):  # past the m.g.f.'s abscissa: no root below it unless κ > 0 first
            a, b = lo, hi
            for _ in range(200):
                mid = 0.5 * (a + b)
                if math.isfinite(kappa(mid)):
                    a = mid
                    if kappa(mid) > 0:
                        hi = mid
                        break
                else:
                    b = mid
            else:
                return math.nan
            if kappa(hi) > 0:
                break
            return math.nan
        lo = hi
        hi *= 2.0
    else:
        return math.nan
    # κ < 0 at lo (> 0) or lo = 0 where κ = 0 with negative slope: start just above 0.
    a = lo if lo > 0 else hi * 1e-9
    if kappa(a) >= 0:
        # Rounding in M_B(s) - 1 near 0 (a heavy-tailed batch near full load) can hide κ's
        # shallow dip there: look for it on a grid, where κ is convex with its minimum inside.
        grid = np.geomspace(hi * 1e-12, hi, 400)
        vals = np.array([kappa(float(x)) for x in grid])
        if not np.nanmin(vals) < 0:
            return math.nan  # no negative κ resolvable in floating point: no root to report
        a = float(grid[int(np.nanargmin(vals))])
    return float(optimize.brentq(kappa, a, hi, xtol=1e-15 * hi, rtol=1e-13, maxiter=500))


# --- positions within a batch ------------------------------------------------------------


def position_mean(xdist: Any, q: float, f: Callable[[NDArray[np.float64]], NDArray[np.float64]], j_one: float,
                  n_exact: int = _EXACT_POSITIONS, n_grid: int = 4000) -> float:
    """Mean of f(j) over a random request's position j in its batch, f = 1 from j_one on.

    Position j has weight P(X' >= j)/E[X'], X' the accepted requests of a batch
    (X thinned by q, approximated as X/q's tail: P(X' >= j) ≈ P(Y > (j − 1)/q)).
    """
    ex = q * xdist.int_mean
    j1 = max(1.0, math.ceil(j_one))
    total = 0.0
    # Positions 1..j1-1, one by one up to n_exact, then a trapezoid on a log grid.
    n_exact = int(min(j1 - 1, n_exact))
    if n_exact > 0:
        j = np.arange(1, n_exact + 1, dtype=np.float64)
        total += float(np.sum(survival(xdist, (j - 1.0) / q) * f(j)))
    if j1 - 1 > n_exact:
        g = np.unique(np.geomspace(n_exact + 1, j1 - 1, n_grid))
        y = survival(xdist, (g - 1.0) / q) * f(g)
        total += float(np.trapezoid(y, g)) + 0.5 * (y[0] + y[-1])
    # Positions j1, j1 + 1, ...: Σ_{j >= j1} P(X' >= j) = E[(X' − j1 + 1)+].
    total += q * float(excess_mean(xdist, (j1 - 1.0) / q, integer=True))
    mean: float = total / ex
    return min(mean, 1.0)


def _sorted_unique(g: NDArray[np.float64]) -> NDArray[np.float64]:
    """``np.unique(g)`` without its sort where g (a geomspace) is already strictly increasing."""
    return g if bool(np.all(g[1:] > g[:-1])) else np.unique(g)


def _cl_position_means(xdist: Any, q: float, amps: list[tuple[float, float]], lz: float, psi_k: float, norm: float,
                       n_exact: int = _EXACT_POSITIONS, n_grid: int = 4000) -> list[float]:
    """``position_mean`` of the Cramér–Lundberg miss probability for several amplitudes at once.

    For amplitude a, given as (a, log a), one per latency node, the mean is over positions j of
    f(j) = (min(1, a·z^{j−1}) − ψ(K))+ / (1 − ψ(K)), z = e^{lz} > 1, as ``tail_p_miss``
    builds it. The survival P(X' >= j) over positions is the same for every amplitude,
    so it is computed once (one sf call for all of them, not one a node: scipy's
    per-call cost dominates on these arrays), as is z^{j−1}; the exact positions are
    summed as a·Σ S_j z^{j−1} − ψ·Σ S_j over the j where a·z^{j−1} > ψ. An amplitude
    below 1e-300 (a deadline many drain times long) goes through e^{log_a + lz(j−1)}
    instead, as a underflows and z^{j−1} overflows. Values match ``position_mean`` to
    rounding (~1e-15).
    """
    ex = q * xdist.int_mean
    direct, j1s = [], []
    for a, la in amps:
        direct.append(a if a > _TINY_AMPLITUDE else 0.0)  # 0: the log-space path
        if a > _TINY_AMPLITUDE:
            j_one = 1.0 + math.log(1.0 / a) / lz if a < 1.0 else 1.0
        else:
            j_one = 1.0 - la / lz
        j1s.append(max(1.0, math.ceil(min(j_one, 1e18))))
    nex = [int(min(j1 - 1, n_exact)) for j1 in j1s]
    n_max = max(nex, default=0)
    if n_max > 0:
        j = np.arange(1, n_max + 1, dtype=np.float64)
        s_exact = survival(xdist, (j - 1.0) / q)
        # z^{j−1} < 1/a <= 1e300 below j_one, where the direct path uses it.
        n_z = max((n for n, a in zip(nex, direct) if a > 0.0), default=0)
        z_exact = np.exp(lz * (j[:n_z] - 1.0))
    # The log grids beyond the exact positions, all in one survival call.
    grids = [_sorted_unique(np.geomspace(n + 1, j1 - 1, n_grid)) if j1 - 1 > n else None for j1, n in zip(j1s, nex)]
    live = [g for g in grids if g is not None]
    if live:
        s_all = survival(xdist, (np.concatenate(live) - 1.0) / q)
    excess = np.atleast_1d(excess_mean(xdist, np.array([(j1 - 1.0) / q for j1 in j1s]), integer=True))
    out, at = [], 0
    for a, (_, la), n, g, e in zip(direct, amps, nex, grids, excess):
        total = 0.0
        if n > 0 and a > 0.0:
            # a·z_j < 1 below j_one, and it rises with j: the terms at or below ψ lead.
            j0 = int(np.searchsorted(z_exact[:n], psi_k / a, side="right")) if psi_k > 0 else 0
            if j0 < n:
                sj, zj = s_exact[j0:n], z_exact[j0:n]
                # np.sum, not a BLAS dot: OpenBLAS threads a dot this long and stalls on a busy machine.
                total += (a * float(np.sum(sj * zj)) - psi_k * float(np.sum(sj))) / norm
        elif n > 0:
            t = np.exp(la + lz * (j[:n] - 1.0))
            total += float(np.sum(s_exact[:n] * (np.maximum(np.minimum(1.0, t) - psi_k, 0.0) / norm)))
        if g is not None:
            k = len(g)
            sg = s_all[at:at + k]
            at += k
            t = a * np.exp(lz * (g - 1.0)) if a > 0.0 else np.exp(la + lz * (g - 1.0))
            y = sg * (np.maximum(np.minimum(1.0, t) - psi_k, 0.0) / norm)
            total += float(np.trapezoid(y, g)) + 0.5 * (y[0] + y[-1])
        total += q * float(e)
        out.append(min(total / ex, 1.0))
    return out


def _subexp_position_means(xdist: Any, q: float, taus: list[float], unit: float,
                           f_arg: Callable[[NDArray[np.float64]], NDArray[np.float64]],
                           n_exact: int = 64, n_grid: int = 200) -> list[float]:
    """``position_mean`` of f(j) = f_arg(τ − (j − 1)·unit) for several τ at once (the subexponential miss).

    The same sums as ``position_mean`` with j_one = 1 + τ/unit, but with one call of
    f_arg, of the survival and of the excess mean for all τ (each call has a fixed cost
    far above the work on these short arrays). Values match ``position_mean`` exactly.
    """
    ex = q * xdist.int_mean
    j1s = [max(1.0, math.ceil(1.0 + tau / unit)) for tau in taus]
    nex = [int(min(j1 - 1, n_exact)) for j1 in j1s]
    n_max = max(nex, default=0)
    j = np.arange(1, n_max + 1, dtype=np.float64)
    s_exact = survival(xdist, (j - 1.0) / q) if n_max > 0 else j
    grids = [_sorted_unique(np.geomspace(n + 1, j1 - 1, n_grid)) if j1 - 1 > n else None for j1, n in zip(j1s, nex)]
    live = [g for g in grids if g is not None]
    s_all = survival(xdist, (np.concatenate(live) - 1.0) / q) if live else j
    args = []
    for tau, n, g in zip(taus, nex, grids):
        args.append(tau - (j[:n] - 1.0) * unit)
        if g is not None:
            args.append(tau - (g - 1.0) * unit)
    f_all = f_arg(np.concatenate(args))
    excess = np.atleast_1d(excess_mean(xdist, np.array([(j1 - 1.0) / q for j1 in j1s]), integer=True))
    out, at_f, at_g = [], 0, 0
    for n, g, e in zip(nex, grids, excess):
        total = 0.0
        if n > 0:
            total += float(np.sum(s_exact[:n] * f_all[at_f:at_f + n]))
            at_f += n
        if g is not None:
            k = len(g)
            y = s_all[at_g:at_g + k] * f_all[at_f:at_f + k]
            at_f += k
            at_g += k
            total += float(np.trapezoid(y, g)) + 0.5 * (y[0] + y[-1])
        total += q * float(e)
        out.append(min(total / ex, 1.0))
    return out


# --- the FIFO tail of one scenario ----------------------------------------------------------------


@dataclass(frozen=True)
class FifoTail:
    """ψ(x) = P(V > x) of the work (in seconds) a batch finds, with the regime it comes from."""

    regime: str  # "cramer-lundberg" | "subexponential" | "none"
    rho: float
    lam: float  # batches per second
    gamma: float = math.nan  # adjustment coefficient (1/s), Cramér–Lundberg
    constant: float = math.nan  # Cramér–Lundberg constant
    z: float = math.nan  # M_w(γ/C): the per-request factor of the batch m.g.f. at γ
    reason: str = ""
    batch_work_sf: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None = None  # subexponential: P(B_e > x)

    def sf_array(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """``sf`` over an array."""
        x = np.asarray(x, dtype=np.float64)
        if self.regime == "cramer-lundberg":
            out = np.minimum(1.0, self.constant * np.exp(-self.gamma * np.maximum(x, 0.0)))
        elif self.regime == "subexponential" and self.batch_work_sf is not None:
            out = np.minimum(1.0, self.rho / (1.0 - self.rho) * self.batch_work_sf(np.maximum(x, 0.0)))
        else:
            return np.full(x.shape, np.nan)
        return np.where(x < 0, 1.0, out)

    def sf(self, x: float) -> float:
        """P(V > x) by the asymptotic, capped at 1 (and 1 for x < 0)."""
        if x < 0:
            return 1.0
        if self.regime == "cramer-lundberg":
            return min(1.0, self.constant * math.exp(-self.gamma * x))
        if self.regime == "subexponential" and self.batch_work_sf is not None:
            return min(1.0, self.rho / (1.0 - self.rho) * float(self.batch_work_sf(np.asarray(x))))
        return math.nan


def _work_mgf(cap: Any, scenario: Any) -> tuple[Callable[[float], float], bool]:
    """M_w(θ) of a request's work (node-seconds) and whether the work is heavy-tailed."""
    srv = scenario.fleet.server
    if srv is not None:
        d, c = srv.service_time, srv.concurrency
        return (lambda th: distribution_mgf(d, th / c)), bool(d.is_heavy_tailed)
    w = cap.work_quantiles  # bounded: prompt + output <= max_model_len
    wmax = float(w.max())

    def mgf(th: float) -> float:
        with np.errstate(over="ignore"):
            # Shift by the maximum for range safety: E[e^{θw}] = e^{θ w_max} E[e^{θ(w − w_max)}].
            lm = th * wmax + math.log(float(np.mean(np.exp(th * (w - wmax)))))
        return math.exp(lm) if lm < 700 else math.inf

    return mgf, False


def fifo_tail(scenario: Any, cap: Any, rate_per_s: float | None = None) -> FifoTail:
    """The FIFO waiting-time tail of the fluid fleet for a homogeneous Poisson batch stream."""
    wl = scenario.workload
    C = float(scenario.fleet.nodes)
    lam = rate_per_s if rate_per_s is not None else wl.batch_rate_per_hour / 3600.0
    xd = wl.batch_size
    q = 1.0 - cap.reject_fraction
    ex = q * xd.int_mean
    wbar = cap.work_mean
    rho = lam * ex * wbar / C
    if not rho < 1.0:
        return FifoTail("none", rho, lam, reason=f"unstable: rho = {rho:.4g} >= 1")
    mgf_w, w_heavy = _work_mgf(cap, scenario)
    x_heavy = bool(xd.is_heavy_tailed)
    if not x_heavy and not w_heavy:

        def mgf_b(s: float) -> float:
            z = mgf_w(s / C)
            if not math.isfinite(z):
                return math.inf
            return batch_size_pgf(xd, 1.0 - q + q * z)

        mean_b = ex * wbar / C
        g = adjustment_coefficient(lam, mgf_b, mean_b)
        if math.isfinite(g):
            h = g * 1e-6
            dm = (mgf_b(g + h) - mgf_b(g - h)) / (2.0 * h)
            const = (1.0 - rho) / (lam * dm - 1.0)
            return FifoTail("cramer-lundberg", rho, lam, gamma=g, constant=const, z=mgf_w(g / C))
        return FifoTail("none", rho, lam, reason="light-tailed but no adjustment coefficient (m.g.f. too short)")
    # Subexponential: the integrated tail of the batch work, in seconds.
    unit = wbar / C  # seconds of fleet time per request

    def be_sf(x: NDArray[np.float64]) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=np.float64)
        part = np.zeros(x.shape)
        if x_heavy:  # B ≈ X'·unit: E[(B − x)+] / E[B] = E[(X' − x/unit)+] / E[X']
            part = part + q * excess_mean(xd, x / (unit * q), integer=True) / ex
        if w_heavy:  # B ≈ one big request: P(w_e > x) = E[(w/C − x)+] / E[w/C]
            d, c = scenario.fleet.server.service_time, scenario.fleet.server.concurrency
            s_scale = C * c  # w/C = S/(c·C)
            part = part + excess_mean(d, x * s_scale) / float(d.mean)
        return part

    which = "batch size" if x_heavy else "request work"
    if x_heavy and w_heavy:
        which = "batch size and request work"
    return FifoTail("subexponential", rho, lam, reason=f"heavy-tailed {which}", batch_work_sf=be_sf)


def tail_p_miss(scenario: Any, cap: Any, tail: FifoTail, sla_s: float, in_service_s: float, cap_s: float,
                queue_s: float = math.inf, latency: Any = None, points: int | None = None) -> float:
    """P(miss) of an accepted request by the asymptotic tail ψ of the work V (seconds) a batch finds.

    Request j of its batch starts at s_j = max(V + U_{j−1} − D, 0) (U_{j−1} its batch's
    work ahead of it, D = ``in_service_s``, all in seconds of fleet time) and ends
    after its latency L: it misses when V > T − L + D − U_{j−1}, or when the work in
    system passes the queue limit ``queue_s``. V is capped at ``cap_s`` (cancellation,
    queue limit): the capped law is ψ restricted to [0, cap] and renormalised. The
    mean is over positions j (weight P(X >= j)/E[X]) and over L (its quantiles).
    """
    psi_k = tail.sf(cap_s) if math.isfinite(cap_s) else 0.0
    norm = 1.0 - psi_k
    if norm <= 0:
        return 1.0
    xd = scenario.workload.batch_size
    q = 1.0 - cap.reject_fraction
    C = float(scenario.fleet.nodes)
    srv = scenario.fleet.server
    # The latency law on quantile midpoints of [0, F(T)); L > T always misses.
    if latency is None:
        lats, late = np.array([0.0]), 0.0
    else:
        f_t = float(latency.cdf(sla_s))
        # Gauss–Legendre nodes; the subexponential tail costs more per node and is smoother.
        points = points or (16 if tail.regime in ("subexponential", "numeric") else 32)
        nodes, weights = np.polynomial.legendre.leggauss(points)  # Gauss–Legendre on u in [0, F(T)]
        u = (nodes + 1.0) / 2.0 * f_t
        lats = np.interp(u, latency.f, latency.x)
        late = 1.0 - f_t
    wts = weights / 2.0 if latency is not None else np.array([1.0])
    if tail.regime == "cramer-lundberg":
        # E[e^{γ U_{j−1}}] = z^{j−1} exactly, U the sum of j − 1 works: the miss probability
        # at position j is min(1, a·z^{j−1}), a = c·e^{−γτ}, one amplitude per latency node.
        total = 0.0
        amps, amp_wts = [], []
        log_c = math.log(tail.constant) if tail.constant > 0 else -math.inf
        for ell, wt in zip(lats, wts):
            tau = min(sla_s - ell + in_service_s, queue_s)
            if tau <= 0:
                total += wt
            else:
                amps.append((tail.constant * math.exp(-tail.gamma * tau), log_c - tail.gamma * tau))
                amp_wts.append(wt)
        if amps:
            means = _cl_position_means(xd, q, amps, math.log(tail.z), psi_k, norm)
            for wt, pm in zip(amp_wts, means):
                total += wt * pm
        return late + (1.0 - late) * total
    total = 0.0
    taus, tau_wts = [], []
    for ell, wt in zip(lats, wts):
        tau = min(sla_s - ell + in_service_s, queue_s)
        if tau <= 0:
            total += wt
        else:
            taus.append(tau)
            tau_wts.append(wt)
    if taus and tail.regime not in ("subexponential", "numeric"):
        return math.nan
    if taus:
        unit = cap.work_mean / C  # seconds of fleet time per request

        def f_arg(x: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.maximum(tail.sf_array(x) - psi_k, 0.0) / norm

        means = _subexp_position_means(xd, q, taus, unit, f_arg)
        for tau, wt, p in zip(taus, tau_wts, means):
            if srv is not None and srv.service_time.is_heavy_tailed and xd.mean > 1:
                # A batch-mate ahead with a huge service time: E[X(X−1)/2]/E[X]·P(w/C > τ).
                ex2 = xd.var + xd.mean**2 if math.isfinite(xd.var) else math.inf
                mult = (ex2 - xd.mean) / (2.0 * xd.mean)
                p = min(1.0, p + mult * float(srv.service_time.sf(tau * C * srv.concurrency)))
            total += wt * p
    return late + (1.0 - late) * total
