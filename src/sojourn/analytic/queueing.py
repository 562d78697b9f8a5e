"""Exact results of classical queues, used to check the simulator against theory.

Plain functions of the queue's parameters, all in consistent time units (rates
per second and times in seconds, say). ``lam`` is the arrival rate (of batches
for the batch-arrival queues), ``mu`` the service rate of one server, ``c`` the
number of servers. Every function checks its arguments and raises ``ValueError``
naming the argument and the allowed range, including an unstable load
(``rho >= 1``). The queue discipline is FCFS throughout.

Sources:
- Erlang C (M/M/c): A. K. Erlang (1917); the forms used here are those of
  L. Kleinrock, *Queueing Systems, Vol. 1: Theory* (1975), §3.5 (M/M/m), and
  of D. Gross, J. Shortle, J. Thompson, C. Harris, *Fundamentals of Queueing
  Theory*, 4th ed. (2008), chapter 2 (M/M/c, with the waiting- and
  sojourn-time distributions).
- Pollaczek–Khinchine mean wait (M/G/1): Kleinrock Vol. 1, §5.6 (the P-K
  mean-value formula).
- Batch arrivals (M^X/G/1): P. J. Burke, "Delays in single-server queues with
  batch input", *Operations Research* 23(4), 830–833 (1975); also
  M. L. Chaudhry and J. G. C. Templeton, *A First Course in Bulk Queues* (1983).
- Shortest job first, non-preemptive, on M/G/1 (the service times known to the
  scheduler): W. R. Phipps, "Machine repair as a priority waiting-line problem",
  *Operations Research* 4(1), 76–85 (1956); in the form of Kleinrock,
  *Queueing Systems, Vol. 2* (1976), §3.6 (a continuum of priority classes),
  and R. W. Conway, W. L. Maxwell, L. W. Miller, *Theory of Scheduling* (1967),
  §8-7. That is the one result here whose discipline is not FCFS.
- M/D/c: C. D. Crommelin, "Delay probability formulae when the holding times
  are constant", *P.O. Electrical Engineers' Journal* 25, 41–50 (1932); the
  root form of the mean and the waiting-time distribution as in G. J. Franx,
  "A simple solution for the M/D/c waiting time distribution", *Operations
  Research Letters* 29, 221–229 (2001).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from sojourn._cache import register

__all__ = [
    "erlang_b",
    "erlang_c",
    "mdc_mean_wait",
    "mdc_number_distribution",
    "mdc_wait_sf",
    "md1_mean_wait",
    "mg1_mean_wait",
    "mmc_mean_sojourn",
    "mmc_mean_wait",
    "mmc_sojourn_sf",
    "mmc_wait_sf",
    "mxg1_mean_wait",
    "mxm1_geometric_mean_wait",
]


# --- argument checks -----------------------------------------------------------


def _positive(name: str, value: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} = {value!r}: must be a finite number > 0")
    return v


def _servers(c: int) -> int:
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
        raise ValueError(f"c = {c!r}: must be an integer >= 1 (the number of servers)")
    return int(c)


def _stable(rho: float) -> float:
    if not rho < 1.0:
        raise ValueError(f"rho = {rho:.6g} >= 1: the queue is unstable (need lam < capacity)")
    return rho


def _times(t: ArrayLike) -> NDArray[np.float64]:
    x = np.asarray(t, dtype=np.float64)
    if np.any(np.isnan(x)):
        raise ValueError("t: must not be NaN")
    return x


def _out(x: NDArray[np.float64]) -> float | NDArray[np.float64]:
    return float(x) if x.ndim == 0 else x


# --- M/M/c ---------------------------------------------------------------------


def erlang_b(c: int, a: float) -> float:
    """Erlang B blocking probability of c servers offered ``a`` erlangs (M/M/c/c).

    By the recursion B(k) = a·B(k-1) / (k + a·B(k-1)), B(0) = 1, which is stable
    for any c (the factorial form overflows past c ≈ 170).
    """
    c = _servers(c)
    a = _positive("a", a)
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(lam: float, mu: float, c: int) -> float:
    """Erlang C: the probability that an arrival to an M/M/c queue has to wait.

    C(c, a) = B / (1 − ρ(1 − B)) with a = λ/μ, ρ = a/c and B = Erlang B(c, a)
    (Kleinrock Vol. 1, §3.5; computed through Erlang B for numerical stability).
    """
    lam, mu, c = _positive("lam", lam), _positive("mu", mu), _servers(c)
    a = lam / mu
    rho = _stable(a / c)
    b = erlang_b(c, a)
    return b / (1.0 - rho * (1.0 - b))


def mmc_mean_wait(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue of M/M/c: E[W] = C(c, a) / (cμ − λ)."""
    return erlang_c(lam, mu, c) / (c * mu - lam)


def mmc_mean_sojourn(lam: float, mu: float, c: int) -> float:
    """Mean sojourn (wait + service) of M/M/c: E[S] = C(c, a) / (cμ − λ) + 1/μ."""
    return mmc_mean_wait(lam, mu, c) + 1.0 / mu


def mmc_wait_sf(t: ArrayLike, lam: float, mu: float, c: int) -> float | NDArray[np.float64]:
    """P(W > t) of M/M/c: C(c, a)·exp(−(cμ − λ)t) for t >= 0 (and 1 for t < 0).

    The wait is 0 with probability 1 − C and otherwise exponential with rate
    cμ − λ (Gross et al., ch. 2).
    """
    pc = erlang_c(lam, mu, c)
    x = _times(t)
    theta = c * mu - lam
    out = np.where(x < 0.0, 1.0, pc * np.exp(-theta * np.maximum(x, 0.0)))
    return _out(out)


def mmc_sojourn_sf(t: ArrayLike, lam: float, mu: float, c: int) -> float | NDArray[np.float64]:
    """P(S > t) of M/M/c, S = W + B with B exponential(μ) independent of W.

    With θ = cμ − λ: P(S > t) = (1 − C)e^{−μt} + C·P(E_θ + E_μ > t), where the sum of
    two exponentials has P(E_θ + E_μ > t) = (μe^{−θt} − θe^{−μt}) / (μ − θ), and
    (1 + μt)e^{−μt} in the special case θ = μ, i.e. cμ − λ = μ (Gross et al., ch. 2).
    Written as e^{−mt}(1 + m(1 − e^{−δt})/δ), m = min(θ, μ), δ = |θ − μ|, which is
    the same function, continuous through δ = 0 and free of cancellation near it.
    """
    pc = erlang_c(lam, mu, c)
    x = _times(t)
    theta = c * mu - lam
    m, delta = min(theta, mu), abs(theta - mu)
    tt = np.maximum(x, 0.0)
    if delta == 0.0:
        g = tt
    else:
        g = -np.expm1(-delta * tt) / delta
    hypo = np.exp(-m * tt) * (1.0 + m * g)
    out = (1.0 - pc) * np.exp(-mu * tt) + pc * hypo
    return _out(np.where(x < 0.0, 1.0, out))


# --- M/G/1 and batch arrivals ----------------------------------------------------


def _moments(name: str, mean: float, second: float) -> tuple[float, float]:
    m = _positive(f"{name} mean", mean)
    s = float(second)
    if not (math.isfinite(s) and s >= m * m * (1.0 - 1e-12)):
        raise ValueError(
            f"{name} second moment = {second!r}: must be finite and >= mean^2 = {m * m:.6g}"
        )
    return m, s


def mg1_mean_wait(lam: float, mean_s: float, second_moment_s: float) -> float:
    """Pollaczek–Khinchine mean wait in queue of M/G/1: E[W] = λE[S²] / (2(1 − ρ)), ρ = λE[S].

    (Kleinrock Vol. 1, §5.6.) Exponential service, E[S²] = 2/μ², gives the M/M/1
    value ρ/(μ − λ).
    """
    lam = _positive("lam", lam)
    es, es2 = _moments("service time", mean_s, second_moment_s)
    rho = _stable(lam * es)
    return lam * es2 / (2.0 * (1.0 - rho))


def mg1_sjf_mean_wait(lam: float, service: Any) -> float:
    """Mean wait in queue of M/G/1 under non-preemptive shortest-job-first (SJF/SPT).

    The server, when free, starts the waiting job of least service time, each job's
    time known exactly. With a continuous service law F (a frozen ``scipy.stats``
    distribution on [0, ∞)), a job of size x waits on average
    W(x) = W0 / (1 − ρ(x))², with W0 = λE[S²]/2 the mean residual work found in
    service and ρ(x) = λ∫₀ˣ t dF(t) the load of the jobs shorter than x (Phipps
    1956; Kleinrock Vol. 2, §3.6). The mean wait is ∫ W(x) dF(x), by quadrature.
    """
    from scipy import integrate

    lam = _positive("lam", lam)
    es = float(service.mean())
    es2 = float(service.moment(2))
    _moments("service time", es, es2)
    _stable(lam * es)
    w0 = lam * es2 / 2.0

    def rho(x: float) -> float:
        return lam * integrate.quad(lambda t: t * service.pdf(t), 0.0, x, limit=200)[0]

    val, _ = integrate.quad(lambda x: service.pdf(x) / (1.0 - rho(x)) ** 2, 0.0, np.inf, limit=200)
    return w0 * val


def md1_mean_wait(lam: float, d: float) -> float:
    """Mean wait of M/D/1 (service exactly ``d``): P-K with E[S²] = d², i.e. ρd / (2(1 − ρ))."""
    d = _positive("d", d)
    return mg1_mean_wait(lam, d, d * d)


def mxg1_mean_wait(
    lam: float,
    mean_x: float,
    second_moment_x: float,
    mean_s: float,
    second_moment_s: float,
) -> float:
    """Mean wait in queue of a random customer of M^X/G/1 (batches at rate ``lam``, FCFS).

    Burke (1975); Chaudhry & Templeton (1983):

        E[W] = λE[X]E[S²] / (2(1 − ρ)) + E[S](E[X²] − E[X]) / (2E[X](1 − ρ)),   ρ = λE[X]E[S].

    Derivation: the first member of a batch waits as the customer of an M/G/1 queue
    whose "customers" are whole batches, service Σ_{i≤X} S_i; its P-K wait is
    λE[(ΣS)²] / (2(1 − ρ)) with E[(ΣS)²] = E[X]E[S²] + (E[X²] − E[X])E[S]². A
    random customer also waits for the members of its own batch served before it:
    by length biasing it has on average (E[X²] − E[X]) / (2E[X]) of them. Summing
    gives the formula above. It holds for any order within a batch that does not
    look at service times. X is an integer >= 1 (so E[X²] >= E[X]).
    """
    lam = _positive("lam", lam)
    ex, ex2 = _moments("batch size", mean_x, second_moment_x)
    if ex < 1.0:
        raise ValueError(f"batch size mean = {mean_x!r}: must be >= 1 (batches hold at least one customer)")
    es, es2 = _moments("service time", mean_s, second_moment_s)
    rho = _stable(lam * ex * es)
    return (lam * ex * es2 + es * (ex2 - ex) / ex) / (2.0 * (1.0 - rho))


def mxm1_geometric_mean_wait(lam: float, mean_batch: float, mu: float) -> float:
    """Mean wait of a random customer of M^X/M/1 with geometric batches (mean m, P(X=k) = p(1−p)^{k−1}).

    From ``mxg1_mean_wait`` with E[X] = m, E[X²] = 2m² − m, E[S] = 1/μ, E[S²] = 2/μ²:
    E[W] = (ρ + m − 1) / (μ(1 − ρ)), ρ = λm/μ. Consistent with the bulk-arrival
    mean number in system L = ρm/(1 − ρ) (Gross et al., ch. 3, M^[X]/M/1) through Little's law.
    """
    m = _positive("mean_batch", mean_batch)
    if m < 1.0:
        raise ValueError(f"mean_batch = {mean_batch!r}: must be >= 1 (a geometric batch holds at least one)")
    mu = _positive("mu", mu)
    return mxg1_mean_wait(lam, m, 2.0 * m * m - m, 1.0 / mu, 2.0 / (mu * mu))


# --- M/D/c (Crommelin) -------------------------------------------------------------


def _mdc_check(lam: float, d: float, c: int) -> tuple[float, float, int, float]:
    lam, d, c = _positive("lam", lam), _positive("d", d), _servers(c)
    a = lam * d
    _stable(a / c)
    return lam, d, c, a


def _mdc_roots(a: float, c: int) -> NDArray[np.complex128]:
    """The c − 1 roots z ≠ 1 of z^c = exp(a(z − 1)) in the unit disk.

    Each is the unique fixed point in the closed unit disk of z = ω·exp(ρ(z − 1)),
    ω = e^{2πik/c}, k = 1..c−1, ρ = a/c: the map sends the disk into itself with
    derivative of modulus <= ρ < 1, so plain iteration converges from 0. Newton's
    method (h(z) = z − ω e^{ρ(z−1)}, h' = 1 − ρz at the root, never 0 in the disk)
    then polishes the roots to machine precision.
    """
    rho = a / c
    k = np.arange(1, c)
    omega = np.exp(2j * np.pi * k / c)
    z = np.zeros(c - 1, dtype=np.complex128)
    # Fixed-point steps until every root is within ~1e-3 (the distance shrinks by ρ a step).
    for _ in range(int(min(10_000, 8.0 / max(1.0 - rho, 1e-12)) + 10)):
        z_new = omega * np.exp(rho * (z - 1.0))
        step = np.max(np.abs(z_new - z)) if z.size else 0.0
        z = z_new
        if step < 1e-3 * (1.0 - rho):
            break
    for _ in range(100):
        e = omega * np.exp(rho * (z - 1.0))
        dz = (z - e) / (1.0 - rho * e)
        z = z - dz
        if z.size == 0 or np.max(np.abs(dz)) < 1e-15:
            break
    if z.size and (np.max(np.abs(z)) > 1.0 + 1e-12 or np.max(np.abs(z - omega * np.exp(rho * (z - 1.0)))) > 1e-12):
        raise ArithmeticError(f"M/D/c roots did not converge for c = {c}, a = {a}")  # pragma: no cover
    return z


def mdc_mean_wait(lam: float, d: float, c: int) -> float:
    """Mean wait in queue of M/D/c (c servers, service exactly ``d``), exact by Crommelin's method.

    The number in system seen every ``d`` seconds is the Markov chain
    N' = max(N − c, 0) + A, A ~ Poisson(a), a = λd, whose generating function is
    P(z) = K(z − 1)Π_k(z − z_k)·e^{a(z−1)} / (z^c − e^{a(z−1)}) over the c − 1 roots
    z_k ≠ 1 of z^c = e^{a(z−1)} in the unit disk. Differentiating at z = 1 gives
    the mean queue length (Crommelin 1932; Franx 2001)

        L_q = Σ_k 1/(1 − z_k) + (a² − c(c − 1)) / (2(c − a)),

    and E[W] = L_q / λ by Little's law. For c = 1 this is the M/D/1 P-K value.
    The two terms cancel when the wait is tiny against c (many servers, light
    load): the absolute error of L_q is about 1e-15·c², so a wait far below that
    scale is returned as that rounding noise, never negative.
    """
    lam, d, c, a = _mdc_check(lam, d, c)
    z = _mdc_roots(a, c)
    lq = float(np.sum(1.0 / (1.0 - z)).real) + (a * a - c * (c - 1.0)) / (2.0 * (c - a))
    return max(lq, 0.0) / lam


def _mdc_outside_root(a: float, c: int) -> float:
    """The real root z0 > 1 of z^c = e^{a(z−1)}: the number in system has tail ~ z0^{-n}."""
    rho = a / c
    # ln z / (z − 1) = ρ on z > 1; the left side falls from 1 to 0, so bisect in log space.
    lo, hi = 1.0, 2.0
    while math.log(hi) / (hi - 1.0) > rho:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi:
            break
        if math.log(mid) / (mid - 1.0) > rho:
            lo = mid
        else:
            hi = mid
    return hi


#: Largest truncated chain ``mdc_number_distribution`` solves densely (128 MB per matrix).
_MDC_MAX_STATES = 4000


def mdc_number_distribution(lam: float, d: float, c: int, tail: float = 1e-14) -> NDArray[np.float64]:
    """Stationary distribution of the number in system of M/D/c, P(N = n) for n = 0..n_max.

    Solves the chain N' = max(N − c, 0) + A, A ~ Poisson(λd), seen every d seconds
    (by PASTA and the Poisson increments this is also the time-stationary law and the
    law an arrival sees). The chain is truncated where the geometric tail z0^{-n}
    (z0 > 1 the real root of z^c = e^{a(z−1)}) falls below ``tail``, with the
    transitions past the end lumped into the last state, and solved directly. The
    size grows like c + 1/(1 − ρ): past 4,000 states (e.g. ρ > 0.995 at c = 1) a
    ValueError says so; the mean is always available from ``mdc_mean_wait``.
    """
    lam, d, c, a = _mdc_check(lam, d, c)
    tail = float(tail)
    if not 0.0 < tail < 1e-3:
        raise ValueError(f"tail = {tail!r}: must be in (0, 1e-3)")
    return _mdc_distribution(a, c, tail).copy()


@functools.lru_cache(maxsize=32)
def _mdc_distribution(a: float, c: int, tail: float) -> NDArray[np.float64]:
    """The solve behind ``mdc_number_distribution``, cached: ``mdc_wait_sf`` is often called point by point."""
    z0 = _mdc_outside_root(a, c)
    n = c + int(math.ceil((math.log(1.0 / tail) + 10.0) / math.log(z0))) + int(a + 10.0 * math.sqrt(a) + 10)
    if n > _MDC_MAX_STATES:
        raise ValueError(
            f"rho = {a / c:.6g} with c = {c}: the distribution needs {n} states, more than "
            f"{_MDC_MAX_STATES} for a direct solve; use mdc_mean_wait for the mean"
        )
    size = n + 1
    pois = stats.poisson.pmf(np.arange(size), a)
    # M = P^T − I, built column by column: P[i, j] = P(A = j − (i − c)^+), and the
    # last state takes what would fall past n.
    M = np.zeros((size, size))
    for i in range(size):
        lo = max(i - c, 0)
        M[lo:, i] = pois[: size - lo]
        M[-1, i] += max(1.0 - M[lo:, i].sum(), 0.0)
    M[np.diag_indices(size)] -= 1.0
    M[-1, :] = 1.0  # replace one balance equation by the normalisation
    rhs = np.zeros(size)
    rhs[-1] = 1.0
    pi = np.linalg.solve(M, rhs)
    pi = np.maximum(pi, 0.0)
    pi /= pi.sum()
    pi.setflags(write=False)
    return pi


register("M/D/c numbers", _mdc_distribution.cache_clear)


def mdc_wait_sf(t: ArrayLike, lam: float, d: float, c: int) -> float | NDArray[np.float64]:
    """P(W > t) of M/D/c (FCFS), from the distribution of the number in system.

    Crommelin's argument (as in Franx 2001): write t = jd + u, 0 <= u < d. Every
    d seconds the c oldest customers present leave (all of them if fewer), so a
    customer has started service t after its arrival iff max(N − c, 0) + A <= (j + 1)c − 1,
    where N is the number in system d − u before its arrival and A ~ Poisson(λ(d − u))
    the arrivals in between; N and A are independent, so

        P(W <= jd + u) = Σ_m q_m · P(Poisson(λ(d − u)) <= (j + 1)c − 1 − m),

    with q_m = P(max(N − c, 0) = m) under the stationary law. For t < 0 it is 1.
    """
    lam, d, c, a = _mdc_check(lam, d, c)
    x = _times(t)
    pi = _mdc_distribution(a, c, 1e-14)
    q = np.concatenate(([pi[: c + 1].sum()], pi[c + 1 :]))
    flat = np.atleast_1d(x).ravel()
    out = np.ones_like(flat)
    for i, ti in enumerate(flat):
        if ti < 0.0:
            continue
        j = math.floor(ti / d)
        u = ti - j * d
        top = (j + 1) * c - 1
        m = np.arange(min(top, q.size - 1) + 1)
        cdf = float(np.sum(q[m] * stats.poisson.cdf(top - m, lam * (d - u))))
        out[i] = max(1.0 - cdf, 0.0)
    return _out(out.reshape(x.shape))
