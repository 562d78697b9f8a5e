"""Lindley recursions over batch arrivals, vectorised with numpy.

The fleet is one server of capacity C (node-seconds per second). V_n, the work in
the system that batch n finds on arrival, follows

    V_{n+1} = max(0, V_n + W_n − A_n)                       (no cap)
    V_{n+1} = max(0, min(V_n + W_n, K) − A_n)               (work capped at K)

with W_n the batch's work and A_n = C·(t_{n+1} − t_n) the work the fleet does
until the next arrival. Without a cap, V_n = P_n − min_{k<=n} P_k over the partial
sums P of W − A: a cumulative sum and a running minimum. The cap is how
deadline cancellation (work that cannot be done by a batch's deadline is
dropped: K = C·T) and a queue limit (K = the work of ``max_queue`` waiting
requests plus those in service) act on the workload. Each step is then the map
x ↦ clamp(x + c_n, 0, h_n), c_n = W_n − A_n, h_n = max(K − A_n, 0), and maps of
that form are closed under composition:

    clamp(clamp(x + c1, l1, h1) + c2, l2, h2) = clamp(x + c1 + c2, clamp(l1 + c2, l2, h2), clamp(h1 + c2, l2, h2)).

So the recursion is a prefix scan of an associative operation, done here in
blocks: a column sweep composes the maps inside all blocks at once, a short loop
chains the blocks, and one vectorised pass evaluates every prefix.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["lindley", "lindley_capped"]


def lindley(work: ArrayLike, service: ArrayLike, v0: float = 0.0) -> NDArray[np.float64]:
    """V_n for n = 0..N-1: the work found by each arrival, V_0 = v0, no cap.

    ``work[n]`` is what arrival n brings, ``service[n]`` what the server can do
    between arrival n and n + 1 (the last entry is not used).
    """
    w = np.asarray(work, dtype=np.float64)
    a = np.asarray(service, dtype=np.float64)
    n = len(w)
    if n == 0:
        return np.empty(0)
    p = np.empty(n)
    p[0] = 0.0
    np.cumsum(w[:-1] - a[:-1], out=p[1:])
    # V_n = max(v0 + P_n, P_n - min_{1<=k<=n} P_k): reflection at 0 since the start.
    low = np.minimum.accumulate(p)
    return np.maximum(p - low, p + v0) if v0 > 0 else p - low


def lindley_capped(work: ArrayLike, service: ArrayLike, cap: float | NDArray[np.float64], v0: float = 0.0,
                   block: int | None = None) -> NDArray[np.float64]:
    """V_n with the work in system capped at ``cap`` (the part of a batch above the cap is dropped):
    one cap, or one per arrival (V_{n+1} = max(0, min(V_n + W_n, K_n) − A_n))."""
    w = np.asarray(work, dtype=np.float64)
    a = np.asarray(service, dtype=np.float64)
    n = len(w)
    if n == 0:
        return np.empty(0)
    caps = np.asarray(cap, dtype=np.float64)  # one cap, or one per arrival (the work its deadline allows)
    if caps.ndim == 0 and not math.isfinite(float(caps)):
        return lindley(w, a, v0)
    if not 0.0 <= v0 <= (float(caps) if caps.ndim == 0 else float(caps[0])):
        raise ValueError(f"v0 = {v0!r}: must be in [0, cap = {cap!r}]")
    # Map n takes V_n to V_{n+1}; the last one is never applied.
    c: NDArray[np.float64] = w - a  # 1-d, then (blocks, block)
    hi: NDArray[np.float64] = np.maximum(caps - a, 0.0)
    b = block or max(64, int(math.sqrt(n)))
    m = -(-n // b)
    pad = m * b - n
    if pad:  # identity maps
        c = np.concatenate((c, np.zeros(pad)))
        hi = np.concatenate((hi, np.full(pad, np.inf)))
    lo_in: NDArray[np.float64] = np.zeros(m * b)
    if pad:
        lo_in[n:] = -np.inf
    c = c.reshape(m, b)
    hi = hi.reshape(m, b)
    lo_in = lo_in.reshape(m, b)
    # Prefix compositions inside every block: F_j = f_j ∘ ... ∘ f_0 as (C_j, L_j, H_j).
    cc = np.empty((m, b))
    ll = np.empty((m, b))
    hh = np.empty((m, b))
    cc[:, 0], ll[:, 0], hh[:, 0] = c[:, 0], lo_in[:, 0], hi[:, 0]
    for j in range(1, b):
        cj, lj, hj = c[:, j], lo_in[:, j], hi[:, j]
        np.add(cc[:, j - 1], cj, out=cc[:, j])
        np.minimum(np.maximum(ll[:, j - 1] + cj, lj), hj, out=ll[:, j])
        np.minimum(np.maximum(hh[:, j - 1] + cj, lj), hj, out=hh[:, j])
    # Chain the blocks: the value entering each block.
    start = np.empty(m)
    x = float(v0)
    last_c, last_l, last_h = cc[:, -1].tolist(), ll[:, -1].tolist(), hh[:, -1].tolist()
    for k in range(m):
        start[k] = x
        x = min(max(x + last_c[k], last_l[k]), last_h[k])
    # V at position j of block k is F_{j-1} applied to the block's entry value.
    out = np.empty((m, b))
    out[:, 0] = start
    out[:, 1:] = np.minimum(np.maximum(start[:, None] + cc[:, :-1], ll[:, :-1]), hh[:, :-1])
    return out.ravel()[:n]
