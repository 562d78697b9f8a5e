"""The statistics both tiers report P(miss) with: ratio intervals, one-sided bounds, episodes, unseen batches.

Requests of one batch (and of one congestion episode) are correlated, so intervals
come from replications (a ratio estimator with a t-interval), and a one-sided
upper bound counts batches, not requests: a Clopper–Pearson bound over Kish's
effective number of batches (Σx)²/Σx², each batch taken as one trial. With no
miss observed that is about 3/n_eff. A sample also says nothing about batches
larger than any it holds: the share of requests in such batches,
E[X; X > x_max]/E[X], could all miss, so it is added to the bound
(``unseen_share``); with a batch cap the sample holds the largest size and it is 0.

Misses come in congestion episodes: missed batches each arriving within an SLA of
the previous one. The effective number of episodes (Σm)²/Σm² is how many
independent looks at the tail a run holds; with fewer than ``MIN_EPISODES`` the
interval is too narrow (``benchmarks/ci_coverage.py``).

The partial expectations of a distribution the unseen share and the fast tier's tails
use (``excess_mean``, ``limited_mean``, ``survival``) are here too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

__all__ = [
    "LEVEL",
    "MIN_EPISODES",
    "best_p_miss",
    "clopper_pearson_upper",
    "effective_episodes",
    "episode_sizes",
    "episodes_note",
    "excess_mean",
    "kish",
    "limited_mean",
    "ratio_ci",
    "survival",
    "unseen_share",
]

LEVEL = 0.95
#: Effective congestion episodes below which the P(miss) interval is flagged: measured on
#: M^X/M/8 (benchmarks/ci_coverage.py), the 95% t-interval covered 81% of 100 runs with ~3
#: effective episodes each and 97% of 60 with ~50; 10 is a judgment between the two.
MIN_EPISODES = 10


def _t_quantile(p: float, dof: int) -> float:
    return float(special.stdtrit(dof, p))


def ratio_ci(num: ArrayLike, den: ArrayLike, level: float = LEVEL) -> tuple[float, float, float]:
    """Σnum/Σden over replications with a t-interval (delta method); nan bounds with one replication."""
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
    h = _t_quantile(0.5 + level / 2.0, R - 1) * se
    return est, est - h, est + h


def clopper_pearson_upper(k: float, n: float, level: float = LEVEL) -> float:
    """One-sided upper confidence bound of a binomial proportion (k may be fractional)."""
    if n <= 0 or k >= n:
        return 1.0
    if k <= 0:
        return 1.0 - (1.0 - level) ** (1.0 / n)
    return float(special.betaincinv(k + 1.0, n - k, level))


def kish(size_sum: float, size_sq: float) -> float:
    """Kish's effective number of batches (Σx)²/Σx²: requests of a batch counted as one."""
    return size_sum * size_sum / size_sq if size_sq > 0 else 0.0


def unseen_share(xdist: Any, x_max: float) -> float:
    """E[X; X > x_max]/E[X]: the share of requests in batches larger than any the sample holds.

    From the batch-size law (0 where it is capped at or below ``x_max``).
    """
    mean = float(xdist.mean)
    if not (mean > 0 and math.isfinite(mean)):
        return 0.0
    m = float(x_max)
    part = float(excess_mean(xdist, m)) + m * float(survival(xdist, m))
    return min(max(part / mean, 0.0), 1.0)


def episode_sizes(arrival: ArrayLike, misses: ArrayLike, sla: ArrayLike) -> list[float]:
    """Misses per congestion episode: missed batches grouped while each arrives within its SLA of the last.

    ``arrival``, ``misses`` and ``sla`` are per missed batch (any order).
    """
    t = np.asarray(arrival, dtype=np.float64)
    m = np.asarray(misses, dtype=np.float64)
    s = np.asarray(sla, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, m, s = t[order], m[order], s[order]
    if not len(t):
        return []
    new = np.concatenate(([True], np.diff(t) > s[1:]))
    group = np.cumsum(new) - 1
    return np.bincount(group, weights=m).tolist()


def effective_episodes(sizes: ArrayLike) -> float:
    """(Σm)²/Σm² of the episodes' misses."""
    e = np.asarray(sizes, dtype=np.float64)
    return float(e.sum() ** 2 / (e @ e)) if len(e) and float(e @ e) > 0 else 0.0


def episodes_note(n: int, effective: float) -> str:
    """The caution a run with too few effective episodes prints (empty when there are enough)."""
    if n and effective < MIN_EPISODES:
        return (f"the misses came in {n} congestion episodes (effective {effective:.1f}): with fewer "
                f"than {MIN_EPISODES} the interval is too narrow (it covered 81% of runs at 3, "
                "benchmarks/RESULTS.md); lengthen simulation.horizon_hours or add replications")
    return ""


def best_p_miss(p: float, upper: float, lo: float, analytic: float, analytic_upper: float,
                statistic: str = "mean") -> tuple[float, str]:
    """The P(miss) a study optimises, and where it comes from: the one rule for sampled against analytic.

    ``p``, ``upper``, ``lo``: the sample's estimate, its one-sided upper bound and the
    lower end of its interval; ``analytic`` (nan when there is none) and its upper
    bracket. ``statistic``: ``mean`` (point estimates) or ``upper`` (bounds).

    * No analytic value: the sample's (``p`` or ``upper``).
    * The analytic value at or above the sample's lower end: the analytic value
      (``analytic`` or ``analytic_upper``). It is the model's exact stationary value,
      free of sampling noise; below it a sample is short of misses (in heavy traffic
      a typical run sees fewer than the long-run average, benchmarks/RESULTS.md).
    * The analytic value below the sample's interval (the sample shows more misses
      than the analytic value allows): they disagree, and the larger of the two is used.
    """
    if statistic not in ("mean", "upper"):
        raise ValueError(f"statistic = {statistic!r}; allowed: 'mean', 'upper'")
    sampled = p if statistic == "mean" else upper
    if not (isinstance(analytic, (int, float)) and math.isfinite(analytic)):
        return sampled, "sampled"
    a = analytic if statistic == "mean" or not math.isfinite(analytic_upper) else analytic_upper
    if not math.isfinite(lo) or analytic >= lo:
        return a, "analytic"
    return max(a, sampled), "larger of sampled and analytic (they disagree)"


# --- partial expectations of a distribution (closed forms for the heavy-tailed families) -----------


def excess_mean(d: Any, m: ArrayLike, integer: bool = False) -> NDArray[np.float64] | float:
    """E[(Y − m)+], vectorised in m; with ``integer``, E[(ceil(Y) − m)+] ≈ that + P(Y > m)/2.

    Closed forms for the heavy-tailed families (lognormal, Pareto); otherwise
    through a copy of the distribution clipped at each m (E[min(Y, m)]).
    """
    m = np.asarray(m, dtype=np.float64)
    out = np.maximum(float(d.mean) - limited_mean(d, m), 0.0)
    if integer:
        out = out + 0.5 * survival(d, np.maximum(m, 0.0))
        out = np.where(m <= 0, d.int_mean - m, out)
    return out if out.ndim else float(out)


def survival(d: Any, x: ArrayLike) -> NDArray[np.float64]:
    """P(Y > x) vectorised; closed forms for lognormal and Pareto (scipy's freeze costs ~1 ms a call)."""
    x = np.asarray(x, dtype=np.float64)
    fam = d.dist
    if fam == "lognormal" and d.sigma > 0:
        with np.errstate(divide="ignore"):
            z = (np.log(np.maximum(x, 0.0)) - math.log(d.median)) / d.sigma
        out = special.ndtr(-z)
    elif fam == "pareto":
        out = np.where(x < d.scale, 1.0, (d.scale / np.maximum(x, d.scale)) ** d.shape)
    else:
        return np.asarray(d.sf(x), dtype=np.float64)
    if d.max is not None:
        out = np.where(x >= d.max, 0.0, out)
    return out


def limited_mean(d: Any, m: ArrayLike) -> NDArray[np.float64]:
    """E[min(Y, m)] for each m (Y clipped at its own max, if any)."""
    m = np.asarray(m, dtype=np.float64)
    top = np.minimum(m, d.max) if d.max is not None else m
    top = np.maximum(top, 0.0)
    fam = d.dist
    if fam == "lognormal" and d.sigma > 0:
        mu, sg = math.log(d.median), d.sigma
        with np.errstate(divide="ignore"):
            lt = np.log(np.maximum(top, 1e-300))
        part = np.exp(mu + sg * sg / 2.0) * special.ndtr((lt - mu - sg * sg) / sg)
        return np.where(top > 0, part + top * special.ndtr(-(lt - mu) / sg), 0.0)
    if fam == "pareto":
        a, sc = d.shape, d.scale
        r = np.maximum(top, sc) / sc
        tail = sc * np.log(r) if a == 1.0 else sc * (1.0 - r ** (1.0 - a)) / (a - 1.0)
        return np.where(top <= sc, top, sc + tail)
    flat = np.atleast_1d(top)
    vals = np.array([float(d.model_copy(update={"max": float(t)}).mean) if t > 0 else 0.0 for t in flat.ravel()])
    return vals.reshape(top.shape)
