"""The priority fluid's event loop as a compiled kernel (numba), with the same arithmetic.

``fluid.priority_runs_reference`` is the readable loop and the tested reference;
this is the same loop in the array style numba compiles: the priority queue is a
binary heap over three parallel arrays instead of ``heapq`` over tuples, and the
served pieces go to preallocated arrays. Every float operation is the reference's,
in the same order, so the two return the same pieces (``tests/test_fast_kernel.py``).

Why compiled: shortest-prompt-first splits each batch into prompt-length classes,
and the Python loop's cost per class and batch (≈ 5 µs) kept the fast tier under a
thousandth of the request-level tier's time (``benchmarks/RESULTS.md``, agreement).
Without numba (``SOJOURN_NO_NUMBA=1``, or where it does not install) the reference
loop runs instead; results are the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from sojourn._numba import compile_kernel

__all__ = ["ORDERS", "available", "priority_kernel"]

#: Order codes of the kernel: the heap key (k1, k2, segment) each gives a segment of batch i.
ORDERS = {"fifo": 0, "lifo": 1, "edf": 2, "key": 3}

_F = NDArray[np.float64]
_I = NDArray[np.int64]
#: What the kernel returns: piece segment, start time, from, to; tail segment, time, position; scale; refused.
KernelOut = tuple[_I, _F, _F, _F, _I, _F, _F, _F, _I]
#: The compiled kernel's signature (``_kernel``'s).
Kernel = Callable[..., KernelOut]


def _less(k1: _F, k2: _F, ks: _I, a: int, b: int) -> bool:
    if k1[a] != k1[b]:
        return k1[a] < k1[b]
    if k2[a] != k2[b]:
        return k2[a] < k2[b]
    return ks[a] < ks[b]


def _heap_push(k1: _F, k2: _F, ks: _I, n: int, a: float, b: float, s: int) -> int:
    """Push (a, b, s) onto the heap of size n; return the new size."""
    j = n
    k1[j], k2[j], ks[j] = a, b, s
    while j > 0:
        p = (j - 1) >> 1
        if _less(k1, k2, ks, j, p):
            k1[j], k1[p] = k1[p], k1[j]
            k2[j], k2[p] = k2[p], k2[j]
            ks[j], ks[p] = ks[p], ks[j]
            j = p
        else:
            break
    return n + 1


def _heap_pop(k1: _F, k2: _F, ks: _I, n: int) -> int:
    """Drop the top of the heap of size n; return the new size."""
    n -= 1
    k1[0], k2[0], ks[0] = k1[n], k2[n], ks[n]
    j = 0
    while True:
        left = 2 * j + 1
        if left >= n:
            break
        m = left
        if left + 1 < n and _less(k1, k2, ks, left + 1, left):
            m = left + 1
        if _less(k1, k2, ks, m, j):
            k1[j], k1[m] = k1[m], k1[j]
            k2[j], k2[m] = k2[m], k2[j]
            ks[j], ks[m] = ks[m], ks[j]
            j = m
        else:
            break
    return n


def _per_request(s_work: _F, s_count: _I, scale: _F, s: int) -> float:
    n = round(s_count[s] * scale[s])
    if n:
        return s_work[s] * scale[s] / n
    return math.inf


def _kernel(arrival: _F, deadline: _F, seg_lo: _I, s_work: _F, s_count: _I, s_key: _F, x_acc: _I, order: int,
            dl_order: _I, max_queue: int, slots: int, c: float, in_service: float, t_stop: float) -> KernelOut:
    """The loop of ``fluid.priority_runs_reference``; ``max_queue`` < 0 means none.

    Returns (piece segment, start time, from, to; tail segment, time, position; scale; refused).
    """
    inf = math.inf
    nb = arrival.shape[0]
    ns = s_work.shape[0]
    nd = dl_order.shape[0]
    rem = s_work.copy()
    scale = np.ones(ns)
    dead = np.zeros(ns, dtype=np.bool_)
    refused = np.zeros(nb, dtype=np.int64)
    hk1 = np.empty(ns)
    hk2 = np.empty(ns)
    hks = np.empty(ns, dtype=np.int64)
    hn = 0
    # A piece ends at a segment's end, at a lock's end (once per event) or at an event.
    cap = ns + 2 * (nb + nd) + 16
    p_seg = np.empty(cap, dtype=np.int64)
    p_t0 = np.empty(cap)
    p_from = np.empty(cap)
    p_to = np.empty(cap)
    npc = 0
    t_seg = np.empty(ns, dtype=np.int64)
    t_t = np.empty(ns)
    t_pos = np.empty(ns)
    nt = 0
    nsys = 0.0
    now = 0.0
    i = 0
    d = 0
    cur = -1
    lock = 0.0
    while True:
        t_arr = arrival[i] if i < nb else inf
        t_dl = deadline[dl_order[d]] if d < nd else inf
        t_next = min(t_arr, t_dl, t_stop)
        while True:
            full = 0.0
            s = -1
            target = 0.0
            if cur >= 0 and not dead[cur]:
                full = s_work[cur] * scale[cur]
                if full - rem[cur] < lock * (1.0 - 1e-12):
                    s = cur
                    target = lock
                else:
                    cur = -1
            else:
                cur = -1
            if cur < 0:
                while hn > 0 and dead[hks[0]]:
                    hn = _heap_pop(hk1, hk2, hks, hn)
                if hn == 0:
                    break
                s = hks[0]
                full = s_work[s] * scale[s]
                target = full
            pos = full - rem[s]
            end = now + (target - pos) / c
            if end <= t_next:
                p_seg[npc] = s
                p_t0[npc] = now
                p_from[npc] = pos
                p_to[npc] = target
                npc += 1
                nsys -= (target - pos) / _per_request(s_work, s_count, scale, s)
                rem[s] = full - target
                now = end
                if rem[s] <= 1e-12 * full:
                    rem[s] = 0.0
                    dead[s] = True
                cur = -1
            else:
                amt = (t_next - now) * c
                p_seg[npc] = s
                p_t0[npc] = now
                p_from[npc] = pos
                p_to[npc] = pos + amt
                npc += 1
                rem[s] -= amt
                nsys -= amt / _per_request(s_work, s_count, scale, s)
                now = t_next
                if s != cur:
                    w = _per_request(s_work, s_count, scale, s)
                    cur = s
                    q = math.ceil((pos + amt + in_service) / w - 1e-9) * w if w < inf else math.nan
                    lock = q if q < full else full  # min(full, q) as Python's min orders it
                break
        if t_next == inf or t_next >= t_stop:
            break
        now = t_next
        if t_arr <= t_dl:
            lo = seg_lo[i]
            hi = seg_lo[i + 1]
            x = x_acc[i]
            frac = 1.0
            if x != 0 and max_queue >= 0:
                waiting = max(math.ceil(nsys - 1e-9) - slots, 0)
                admit = min(x, max(max_queue - waiting, 0))
                if admit < x:
                    frac = admit / x
                    refused[i] = x - admit
            for s in range(lo, hi):
                if frac < 1.0:
                    scale[s] = frac
                    rem[s] = s_work[s] * frac
                if rem[s] > 0.0:
                    nsys += rem[s] / _per_request(s_work, s_count, scale, s)
                    if order == 0:
                        hn = _heap_push(hk1, hk2, hks, hn, float(i), 0.0, s)
                    elif order == 1:
                        hn = _heap_push(hk1, hk2, hks, hn, -float(i), 0.0, s)
                    elif order == 2:
                        hn = _heap_push(hk1, hk2, hks, hn, deadline[i], float(i), s)
                    else:
                        hn = _heap_push(hk1, hk2, hks, hn, s_key[s], float(i), s)
                else:
                    dead[s] = True
            i += 1
        else:
            j = dl_order[d]
            d += 1
            for s in range(seg_lo[j], seg_lo[j + 1]):
                if not dead[s]:
                    if s == cur:  # requests in service at the deadline: they end only if already done
                        t_seg[nt] = s
                        t_t[nt] = now
                        t_pos[nt] = s_work[s] * scale[s] - rem[s]
                        nt += 1
                        cur = -1
                    dead[s] = True
                    nsys -= rem[s] / _per_request(s_work, s_count, scale, s)
    return (p_seg[:npc], p_t0[:npc], p_from[:npc], p_to[:npc], t_seg[:nt], t_t[:nt], t_pos[:nt], scale, refused)


_COMPILED: list[Kernel | None] = []


def priority_kernel() -> Kernel | None:
    """The compiled kernel, or None without numba; numba is imported and the kernel loaded on first use.

    numba caches the machine code beside this module (``cache=True``): the first call
    on a machine compiles for about two seconds, later processes load it in a tenth.
    """
    if not _COMPILED:
        _COMPILED.append(_compile())
    return _COMPILED[0]


def _compile() -> Kernel | None:
    # the kernel calls the compiled helpers
    return compile_kernel(globals(), ("_less", "_heap_push", "_heap_pop", "_per_request"))


def available() -> bool:
    """Whether the compiled kernel is in use (numba importable and not switched off)."""
    return priority_kernel() is not None
