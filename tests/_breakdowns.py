"""The exact M/M/c queue with node breakdowns, for tests/test_failures.py and tests/test_spot.py.

c one-slot nodes, each failing at rate xi (busy or idle) and repaired at rate eta; Poisson
arrivals at rate lam, exponential service at rate mu. A failure sends a busy node's request
back to the queue (for exponential service the same as resuming it), or loses it. The chain
on (requests in system, nodes up) is truncated far out in its tail and solved with scipy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve


def breakdown_chain(lam: float, mu: float, c: int, xi: float, eta: float, lose: bool = False,
                    n_max: int = 2000) -> tuple[float, float]:
    """(mean number in system, rate of requests lost) of M/M/c with node breakdowns.

    Each of c one-slot nodes fails at rate ``xi`` (busy or idle) and is repaired at rate ``eta``;
    the nodes up serve min(n, up) requests at rate ``mu`` each. A failure of a busy node sends its
    request back to the queue (``lose``: removes it, a loss). Truncated at ``n_max`` requests.
    """
    k_n = c + 1
    size = (n_max + 1) * k_n
    rows: list[int] = []
    cols: list[int] = []
    rates: list[float] = []

    def add(n: int, k: int, n2: int, k2: int, rate: float) -> None:
        rows.append(n * k_n + k)
        cols.append(n2 * k_n + k2)
        rates.append(rate)

    for n in range(n_max + 1):
        for k in range(c + 1):
            if n < n_max:
                add(n, k, n + 1, k, lam)
            busy = min(n, k)
            if busy:
                add(n, k, n - 1, k, busy * mu)
            if k:
                # A failure hits one of the k nodes up: a busy one with probability busy / k.
                if lose and busy:
                    add(n, k, n - 1, k - 1, xi * busy)
                    if k > busy:
                        add(n, k, n, k - 1, xi * (k - busy))
                else:
                    add(n, k, n, k - 1, xi * k)
            if k < c:
                add(n, k, n, k + 1, eta * (c - k))
    q = sparse.coo_matrix((rates, (rows, cols)), shape=(size, size)).tocsr()
    q = (q - sparse.diags(np.asarray(q.sum(axis=1)).ravel())).T.tolil()
    q[0, :] = 1.0  # one balance equation replaced by the normalisation
    b = np.zeros(size)
    b[0] = 1.0
    pi = spsolve(q.tocsc(), b).reshape(n_max + 1, k_n)
    assert pi[-1].sum() < 1e-12  # the truncation is far out in the tail
    n = np.arange(n_max + 1)
    mean_n = float((pi.sum(axis=1) * n).sum())
    lost = 0.0
    if lose:
        for k in range(1, c + 1):
            lost += xi * float((pi[:, k] * np.minimum(n, k)).sum())
    return mean_n, lost


def assert_tiers_agree(q: Any, f: Any) -> None:
    """The request tier's result ``q`` and the fast tier's ``f`` agree: their P(miss) intervals overlap,
    and each tier's mean sojourn is inside the other's interval widened by 5%."""
    assert q["p_miss_ci"][0] <= f["p_miss_ci"][1] and f["p_miss_ci"][0] <= q["p_miss_ci"][1], (q["p_miss_ci"],
                                                                                                f["p_miss_ci"])
    for a, b in ((q, f), (f, q)):
        lo, hi = b["sojourn_mean_ci"]
        assert 0.95 * lo <= a["sojourn_mean_s"] <= 1.05 * hi
