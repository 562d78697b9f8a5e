"""Served sojourn times in bounded memory: exact up to a cap, a fine log histogram beyond.

A replication records the sojourn of every measured request it serves, for the pooled
quantiles (p50, p90, p99). Kept exact, that is 8 bytes a request: a long confirmation of
a large fleet (32 replications of 384 h, ~10^8 requests) would hold gigabytes. Past
``EXACT_CAP`` samples a replication folds them into a histogram of logarithmic bins of
ratio ``1 + REL``, whose size depends on the spread of the sojourns, not their number
(at most ln(max/min)/REL bins: ~92,000 for sojourns from 10 s to 28 h). A quantile read
from it is the geometric middle of its bin, within REL/2 (0.005%) of the exact one;
runs below the cap, every test and benchmark among them, keep the exact quantiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["EXACT_CAP", "POOL_CAP", "REL", "LogHistogram", "pooled_quantiles"]

#: Samples a replication keeps exact before folding them into its histogram (16 MB).
EXACT_CAP = 1 << 21
#: Samples the replications of one run keep exact together, unless samples are asked for (32 MB).
POOL_CAP = 1 << 22
#: Relative bin width: a histogram quantile is within REL/2 of the exact one.
REL = 1e-4
#: Sojourns below this (seconds) share the lowest bin.
FLOOR_S = 1e-6
_LOG_STEP = math.log1p(REL)


@dataclass
class LogHistogram:
    """Counts of sojourns by logarithmic bin: ``index`` (sorted, unique) and ``count``."""

    index: np.ndarray
    count: np.ndarray

    @classmethod
    def empty(cls) -> LogHistogram:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64))

    @classmethod
    def of(cls, samples: np.ndarray) -> LogHistogram:
        """The histogram of ``samples`` (seconds)."""
        s = np.maximum(np.asarray(samples, dtype=np.float64), FLOOR_S)
        index, count = np.unique(np.floor(np.log(s) / _LOG_STEP).astype(np.int64), return_counts=True)
        return cls(index, count.astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.count.sum())

    def merge(self, *others: LogHistogram) -> LogHistogram:
        """This histogram and ``others`` pooled."""
        idx = np.concatenate([self.index, *(o.index for o in others)])
        cnt = np.concatenate([self.count, *(o.count for o in others)])
        index, inverse = np.unique(idx, return_inverse=True)
        return LogHistogram(index, np.bincount(inverse, weights=cnt, minlength=len(index)).astype(np.int64))

    def value(self, k: int) -> float:
        """The (k+1)-th smallest sample (0-based ``k``), as its bin's geometric middle."""
        i = int(np.searchsorted(np.cumsum(self.count), k, side="right"))
        return math.exp((float(self.index[i]) + 0.5) * _LOG_STEP)


def pooled_quantiles(exact: list[np.ndarray], hists: list[LogHistogram], n_total: int,
                     qs: tuple[float, ...]) -> list[float]:
    """Quantiles (inverted cdf) of S over ``n_total`` requests, unserved ones at +inf.

    ``exact``: the replications' exact samples; ``hists``: their folded ones. Exact
    throughout when nothing was folded; otherwise over the pooled histogram.
    """
    if n_total == 0:
        return [math.nan for _ in qs]
    ks = [max(math.ceil(q * n_total) - 1, 0) for q in qs]
    hists = [h for h in hists if len(h.index)]
    if not hists:
        served = np.sort(np.concatenate(exact)) if exact else np.empty(0)
        return [float(served[k]) if k < len(served) else math.inf for k in ks]
    pooled = LogHistogram.empty().merge(*hists, *(LogHistogram.of(e) for e in exact if len(e)))
    n = pooled.n
    return [pooled.value(k) if k < n else math.inf for k in ks]
