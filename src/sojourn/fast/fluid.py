"""The fleet as one fluid server over batches: when each request of each batch starts.

The fleet serves C = nodes node-seconds of work per second whenever it has work
(``capacity``). A batch's requests are served in order, evenly spaced in work:
with the work V found on arrival, request j of a batch of X requests and work W
has had the work ahead of it, V + (j − 1)·w with w = W/X, done by the fluid
server at (V + (j − 1)·w)/C after the batch arrived. A fleet has K = nodes ×
concurrency requests in service at once, each holding its slot for its whole
latency L (the law a saturated node shows: ``capacity``), so request j *starts*
when the work ahead of it, less what is still in the other K − 1 slots (on
average D = (K − 1)·w_e, w_e = E[w²]/2E[w] the residual work of a request in
service, measured on the saturated engine), is done:

    s_j = max(V + (j − 1)·w − D, 0) / C,      S_j = s_j + L_j,

and the mean of L is K·w̄/C by Little's law, so a busy fleet's completions keep
the fluid rate. A fleet with free slots (V < D) starts the first requests at once
(``FluidFleet.free_slots``). For one server (K = 1, D = 0, L = the request's own service
time) this is exactly FIFO M^X/G/1. ``outcomes`` turns runs of starts into
misses, sojourns and batch outcomes.

FIFO with one deadline per batch is vectorised (``lindley``); other orders
(``lifo``, ``edf``, ``sjf``, and FIFO with cancellation under mixed deadlines)
run an event loop over batches in which the server works on the highest-priority
piece of queued work (preemptive at the fluid level, as a central queue reorders
every request not yet started).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sojourn._cache import register
from sojourn.fast import _priority_kernel as _kernel
from sojourn.fast.batches import Batches
from sojourn.fast.lindley import lindley, lindley_capped
from sojourn.fast.outcomes import Runs

__all__ = ["FluidFleet", "Segments", "fifo_runs", "priority_runs", "priority_runs_reference", "split_by_key"]

_EPS = 1e-9


@dataclass(frozen=True)
class FluidFleet:
    """The fluid server: capacity, slots in service, and the admission rules."""

    capacity: float  # node-seconds per second (= nodes)
    slots: float  # requests in service at saturation, fleet-wide
    work_mean: float  # mean request work (node-seconds)
    in_service_work: float  # D: work the other requests in service hold when one starts
    cancel: bool  # on_deadline = "cancel"
    max_queue: int | None = None
    work_excess: float = 0.0  # residual work of a request in service, E[w²]/2E[w]

    @property
    def queue_cap(self) -> float:
        """Work in system at which the central queue holds ``max_queue`` waiting requests.

        The waiting requests' work plus what a full fleet holds in service: the
        other slots' D and one more request's residual.
        """
        if self.max_queue is None:
            return math.inf
        return self.max_queue * self.work_mean + self.in_service + self.work_excess

    @property
    def in_service(self) -> float:
        """D: work still held by the other requests in service when one starts."""
        return self.in_service_work

    def free_slots(self, v: NDArray[np.float64]) -> NDArray[np.float64]:
        """Requests a batch can start at once: slots free when the work in system is v.

        A busy fleet (v >= D) has none; with less work, about (K − 1)·v/D requests are
        in service, and the rest of the K slots take the first requests immediately.
        """
        d, k = self.in_service_work, self.slots
        if d <= 0.0:
            return np.where(v > 0, 0.0, np.floor(k))
        return np.floor(np.maximum(k - (k - 1.0) * v / d, 0.0))

    def scaled_to(self, slots: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(free slots, D) for fleets of ``slots`` slots each, rather than ``self.slots`` (fewer nodes up):
        D in proportion to the other slots, (slots − 1)/(self.slots − 1)."""
        share = np.maximum(slots - 1.0, 0.0) / max(self.slots - 1.0, 1.0)
        return share, share * self.in_service_work

    def free_at(self, v: NDArray[np.float64], k: NDArray[np.float64], d: NDArray[np.float64]) -> NDArray[np.float64]:
        """``free_slots`` with the slots ``k`` and the work in service ``d`` given per batch."""
        with np.errstate(divide="ignore", invalid="ignore"):
            busy = np.where(d > 0, np.maximum(k - (k - 1.0) * v / np.where(d > 0, d, 1.0), 0.0),
                            np.where(v > 0, 0.0, k))
        return np.floor(busy)


@dataclass
class Segments:
    """Queued work by (batch, class): a batch's requests of one priority class, served in order."""

    batch: NDArray[np.int64]
    key: NDArray[np.float64]  # priority class (smaller first); 0 for all when unsplit
    count: NDArray[np.int64]
    work: NDArray[np.float64]

    @staticmethod
    def whole(b: Batches) -> Segments:
        n = len(b)
        return Segments(np.arange(n), np.zeros(n), b.accepted.copy(), b.work.copy())


def fifo_runs(b: Batches, fleet: FluidFleet, v0: float = 0.0, service: NDArray[np.float64] | None = None,
              slots: NDArray[np.float64] | None = None,
              hold: NDArray[np.float64] | None = None) -> tuple[Runs, NDArray[np.int64], NDArray[np.float64]]:
    """FIFO by batch, vectorised: (runs, requests refused by max_queue per batch, work found V).

    ``v0``: the work (node-seconds) in the system when the first batch arrives (a
    stationary start, ``stationary``); it is held within the cap. Needs one deadline
    for all batches when ``cancel`` (the cap of the capped Lindley recursion).
    ``service``: the work the fleet does between arrivals, when not the constant
    capacity's; ``slots``: the slots in service at each arrival, when not all of them
    (``fast.availability``: nodes out); ``hold``: with ``cancel``, the work each batch's
    deadline leaves room for, when not the deadline times the constant capacity.
    """
    c = fleet.capacity
    n = len(b)
    cap: Any = fleet.queue_cap
    if fleet.cancel and hold is not None:
        cap = np.minimum(hold, cap)
    elif fleet.cancel:
        sla = np.unique(b.sla)
        if len(sla) > 1:
            raise ValueError("fifo_runs: mixed deadlines with cancellation need priority_runs")
        if len(sla):
            cap = min(cap, float(sla[0]) * c)
    if service is None:
        service = np.empty(n)
        if n:
            service[:-1] = np.diff(b.arrival) * c
            service[-1] = 0.0
    if isinstance(cap, np.ndarray):
        v0 = min(max(v0, 0.0), float(cap[0]) if n else 0.0)
        v = lindley_capped(b.work, service, cap, v0)
    else:
        v0 = min(max(v0, 0.0), cap)
        v = lindley_capped(b.work, service, cap, v0) if math.isfinite(cap) else lindley(b.work, service, v0)
    x = b.accepted
    has = x > 0
    w = np.where(has, b.work / np.maximum(x, 1), 0.0)
    if math.isfinite(fleet.queue_cap):
        # The recursion admits the work below the cap; the requests it holds, rounded, are admitted.
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.round(np.maximum(fleet.queue_cap - v, 0.0) / w)
        admitted = np.clip(np.nan_to_num(room, nan=0.0, posinf=np.inf), 0, x).astype(np.int64)
    else:
        admitted = x.copy()
    refused = x - admitted
    sel = np.flatnonzero(has & (admitted > 0))
    # Requests taking free slots start at once; the rest start as the work ahead of them
    # (less D) is done. (Renewal theory says the second part also holds after a cold
    # start, to O(latency), which the request-level runs confirm.)
    n_adm = admitted[sel]
    d: NDArray[np.float64] | float = fleet.in_service
    if slots is None:
        free = np.minimum(fleet.free_slots(v[sel]), n_adm).astype(np.int64)
    else:
        _, d = fleet.scaled_to(slots[sel])
        free = np.minimum(fleet.free_at(v[sel], slots[sel], d), n_adm).astype(np.int64)
    a = free > 0
    head = Runs(batch=sel[a], start=np.zeros(int(a.sum())), step=np.zeros(int(a.sum())), count=free[a])
    b_ = n_adm > free
    d_rest = d[b_] if isinstance(d, np.ndarray) else d
    rest = Runs(
        batch=sel[b_],
        start=(v[sel][b_] + free[b_] * w[sel][b_] - d_rest) / c,
        step=w[sel][b_] / c,
        count=(n_adm - free)[b_],
    )
    return Runs.concat([head, rest]), refused, v


@dataclass(frozen=True)
class _Classes:
    """A request pool split into priority classes: each class's probability, moments and works.

    ``works`` holds the pool's request works sorted by class, class k's at
    ``works[start[k]:start[k] + size[k]]``.
    """

    p: NDArray[np.float64]
    mean: NDArray[np.float64]
    var: NDArray[np.float64]
    start: NDArray[np.int64]
    size: NDArray[np.int64]
    works: NDArray[np.float64]


#: The class split of recent request pools (a pool belongs to a cached node capacity and is
#: split the same way on every call): (pool_key, pool_work, bins, classes).
_CLASS_CACHE: list[tuple[NDArray[np.float64], NDArray[np.float64], int, _Classes]] = []
register("fluid classes", _CLASS_CACHE.clear)


def _key_classes(pool_key: NDArray[np.float64], pool_work: NDArray[np.float64], bins: int) -> _Classes:
    """Quantile bins of the key over the pool, and each bin's request works and their moments."""
    for key, work, nb, out in _CLASS_CACHE:
        if key is pool_key and work is pool_work and nb == bins:
            return out
    # Quantile edges of the key; equal keys always share a class (a tie is served in arrival order).
    edges = np.unique(np.quantile(pool_key, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    cls = np.searchsorted(edges, pool_key, side="right")
    order = np.argsort(cls, kind="stable")
    size = np.bincount(cls, minlength=len(edges) + 1)
    used = size > 0
    works = pool_work[order]
    start = (np.cumsum(size) - size)[used]
    size = size[used]
    groups = [works[a:a + n] for a, n in zip(start, size)]
    out = _Classes(p=size / size.sum(), mean=np.array([g.mean() for g in groups]),
                   var=np.array([g.var() for g in groups]), start=start.astype(np.int64),
                   size=size.astype(np.int64), works=works)
    _CLASS_CACHE.insert(0, (pool_key, pool_work, bins, out))
    del _CLASS_CACHE[4:]
    return out


#: Prompt-length classes shortest-prompt-first is split into. Measured on the scale matrix's
#: SJF rows (benchmarks/RESULTS.md): from 8 to 16 classes the share of batches with a miss
#: moves 30-50% of the way to the request tier's, at 1.5x the fast tier's time.
SJF_CLASSES = 16


def split_by_key(b: Batches, pool_key: NDArray[np.float64], pool_work: NDArray[np.float64],
                 rng: np.random.Generator, bins: int = SJF_CLASSES) -> Segments:
    """Split each batch into ``bins`` priority classes of equal probability by a request key.

    The classes are quantile bins of the key over the request pool (input tokens
    for shortest-prompt-first); a batch's requests fall into them multinomially,
    and each class's work is summed as in ``batches.batch_work``, with that class's
    own mean and variance of the request work: at most 8 requests by drawing their
    works from the class's pool, more by a gamma law of the sum's mean and variance.
    """
    cl = _key_classes(pool_key, pool_work, bins)
    k = len(cl.p)
    counts = rng.multinomial(b.accepted, cl.p)  # (batches, classes)
    seg_count = counts.ravel()
    keep = np.flatnonzero(seg_count > 0)
    x = seg_count[keep]
    c = keep % k  # each segment's class
    work = np.empty(len(keep))
    small = x <= 8
    if small.any():
        xs, cs = x[small], c[small]
        owner = np.repeat(np.arange(len(xs)), xs)
        pick = cl.start[cs][owner] + (rng.random(len(owner)) * cl.size[cs][owner]).astype(np.int64)
        work[small] = np.bincount(owner, weights=cl.works[pick], minlength=len(xs))
    big = ~small
    if big.any():
        xb, cb = x[big].astype(np.float64), c[big]
        m, v = cl.mean[cb], cl.var[cb]
        flat = v <= 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            shape = np.where(flat, 1.0, xb * (m * m / np.where(flat, 1.0, v)))
            scale = np.where(flat, 0.0, v / np.where(m > 0, m, 1.0))
        work[big] = np.where(flat, xb * m, rng.gamma(shape, scale))
    return Segments(keep // k, c.astype(np.float64), x, work)


def priority_runs(b: Batches, seg: Segments, fleet: FluidFleet, order: str,
                  t_stop: float = math.inf) -> tuple[Runs, NDArray[np.int64]]:
    """Event loop over batches: the server works on the highest-priority queued segment.

    The compiled kernel (``_priority_kernel``) where numba is available, otherwise
    ``priority_runs_reference``; both return the same runs.
    """
    kernel = _kernel.priority_kernel()
    if kernel is None:
        return priority_runs_reference(b, seg, fleet, order, t_stop)
    if order not in _kernel.ORDERS:
        raise ValueError(f"order = {order!r}; allowed: 'fifo', 'lifo', 'edf', 'key'")
    nb = len(b)
    sb = seg.batch
    if len(sb) and np.any(np.diff(sb) < 0):
        raise ValueError("segments must be sorted by batch")
    seg_lo = np.searchsorted(sb, np.arange(nb + 1))
    deadline = b.arrival + b.sla
    dl_order = np.argsort(deadline, kind="stable") if fleet.cancel else np.empty(0, dtype=np.int64)
    mq = -1 if fleet.max_queue is None else int(fleet.max_queue)
    p_seg, p_t0, p_from, p_to, t_seg, t_t, t_pos, scale, refused = kernel(
        np.ascontiguousarray(b.arrival, dtype=np.float64), deadline, seg_lo.astype(np.int64),
        np.ascontiguousarray(seg.work, dtype=np.float64), np.ascontiguousarray(seg.count, dtype=np.int64),
        np.ascontiguousarray(seg.key, dtype=np.float64), np.ascontiguousarray(b.accepted, dtype=np.int64),
        _kernel.ORDERS[order], dl_order.astype(np.int64), mq, int(round(fleet.slots)), float(fleet.capacity),
        float(fleet.in_service), float(t_stop))
    runs = _pieces_to_runs(b, seg, fleet, scale, p_seg, p_t0, p_from, p_to)
    if len(t_seg):
        runs = Runs.concat([runs, _tails_to_runs(b, seg, fleet, scale, t_seg, t_t, t_pos)])
    return runs, refused


def priority_runs_reference(b: Batches, seg: Segments, fleet: FluidFleet, order: str,
                            t_stop: float = math.inf) -> tuple[Runs, NDArray[np.int64]]:
    """Event loop over batches: the server works on the highest-priority queued segment.

    ``order``: "fifo" (by batch arrival), "lifo" (newest batch first), "edf"
    (earliest deadline first), "key" (segment key, then arrival: shortest-first).
    Deadlines cancel a batch's queued work when ``fleet.cancel``. Returns the runs
    of completions and the requests refused by ``max_queue`` per batch.
    """
    c = fleet.capacity
    nb = len(b)
    arrival = b.arrival.tolist()
    deadline = (b.arrival + b.sla).tolist()
    # Segments of batch i are seg_lo[i]..seg_lo[i+1]-1 (Segments are sorted by batch).
    sb = seg.batch
    if len(sb) and np.any(np.diff(sb) < 0):
        raise ValueError("segments must be sorted by batch")
    seg_lo = np.searchsorted(sb, np.arange(nb + 1)).tolist()
    s_work = seg.work.tolist()
    s_count = seg.count.tolist()
    s_key = seg.key.tolist()
    rem = list(s_work)
    scale = [1.0] * len(s_work)  # admitted fraction (max_queue)
    dead = [False] * len(s_work)
    refused = [0] * nb
    prio: Callable[[int, int], tuple[float, ...]]
    if order == "fifo":
        prio = lambda i, s: (i, s)  # noqa: E731
    elif order == "lifo":
        prio = lambda i, s: (-i, s)  # noqa: E731
    elif order == "edf":
        prio = lambda i, s: (deadline[i], i, s)  # noqa: E731
    elif order == "key":
        prio = lambda i, s: (s_key[s], i, s)  # noqa: E731
    else:
        raise ValueError(f"order = {order!r}; allowed: 'fifo', 'lifo', 'edf', 'key'")
    if fleet.cancel:
        dl_order = np.argsort(b.arrival + b.sla, kind="stable").tolist()
    else:
        dl_order = []
    nd = len(dl_order)
    x_acc = b.accepted.tolist()
    heap: list[tuple[Any, ...]] = []  # (the order's key..., segment); the key's length depends on the order
    vsum = 0.0  # work in system
    nsys = 0.0  # requests in system (the one in progress in a piece counted by its remaining share)
    mq = fleet.max_queue
    slots = int(round(fleet.slots))
    now = 0.0
    i = d = 0
    inf = math.inf
    D = fleet.in_service
    # The segment in service and the position it keeps the server to: a newcomer of higher
    # priority takes the server only once the requests already in service (the work D
    # beyond the position, to a request's end) are done, as a central queue reorders
    # only requests not yet started.
    cur, lock = -1, 0.0
    p_seg: list[int] = []
    p_t0: list[float] = []
    p_from: list[float] = []
    p_to: list[float] = []
    tails: list[tuple[int, float, float]] = []  # (segment, deadline, position) of cancelled work in service
    pop = heapq.heappop
    push = heapq.heappush

    def per_request(s: int) -> float:
        n = round(s_count[s] * scale[s])
        return s_work[s] * scale[s] / n if n else math.inf

    while True:
        t_arr = arrival[i] if i < nb else inf
        t_dl = deadline[dl_order[d]] if d < nd else inf
        t_next = min(t_arr, t_dl, t_stop)
        # Serve until the next event: the locked work first, then by priority.
        while True:
            full = 0.0
            if cur >= 0 and not dead[cur]:
                full = s_work[cur] * scale[cur]
                if full - rem[cur] < lock * (1.0 - 1e-12):
                    s, target = cur, lock
                else:
                    cur = -1
            else:
                cur = -1
            if cur < 0:
                while heap and dead[heap[0][-1]]:
                    pop(heap)
                if not heap:
                    break
                s = heap[0][-1]
                full = s_work[s] * scale[s]
                target = full
            pos = full - rem[s]
            end = now + (target - pos) / c
            if end <= t_next:
                p_seg.append(s)
                p_t0.append(now)
                p_from.append(pos)
                p_to.append(target)
                vsum -= target - pos
                nsys -= (target - pos) / per_request(s)
                rem[s] = full - target
                now = end
                if rem[s] <= 1e-12 * full:
                    rem[s] = 0.0
                    dead[s] = True
                cur = -1
            else:
                amt = (t_next - now) * c
                p_seg.append(s)
                p_t0.append(now)
                p_from.append(pos)
                p_to.append(pos + amt)
                rem[s] -= amt
                vsum -= amt
                nsys -= amt / per_request(s)
                now = t_next
                if s != cur:
                    w = per_request(s)
                    cur, lock = s, min(full, math.ceil((pos + amt + D) / w - 1e-9) * w)
                break
        if t_next == inf or t_next >= t_stop:
            break
        now = t_next
        if t_arr <= t_dl:
            lo, hi = seg_lo[i], seg_lo[i + 1]
            x = x_acc[i]
            frac = 1.0
            if x and mq is not None:
                # The central queue's rule: requests waiting (in system, less the slots in
                # service) plus the newcomers may not pass max_queue; the batch's last are refused.
                waiting = max(math.ceil(nsys - 1e-9) - slots, 0)
                admit = min(x, max(mq - waiting, 0))
                if admit < x:
                    frac = admit / x
                    refused[i] = x - admit
            for s in range(lo, hi):
                if frac < 1.0:
                    scale[s] = frac
                    rem[s] = s_work[s] * frac
                if rem[s] > 0.0:
                    vsum += rem[s]
                    nsys += rem[s] / per_request(s)
                    push(heap, (*prio(i, s), s))
                else:
                    dead[s] = True
            i += 1
        else:
            j = dl_order[d]
            d += 1
            for s in range(seg_lo[j], seg_lo[j + 1]):
                if not dead[s]:
                    if s == cur:  # requests in service at the deadline: they end only if already done
                        tails.append((s, now, s_work[s] * scale[s] - rem[s]))
                        cur = -1
                    dead[s] = True
                    vsum -= rem[s]
                    nsys -= rem[s] / per_request(s)
    runs = _pieces_to_runs(b, seg, fleet, scale, p_seg, p_t0, p_from, p_to)
    if tails:
        t_seg = np.array([t[0] for t in tails], dtype=np.int64)
        runs = Runs.concat([runs, _tails_to_runs(b, seg, fleet, scale, t_seg, np.array([t[1] for t in tails]),
                                                 np.array([t[2] for t in tails]))])
    return runs, np.asarray(refused, dtype=np.int64)


def _tails_to_runs(b: Batches, seg: Segments, fleet: FluidFleet, scale: Sequence[float] | NDArray[np.float64],
                   s: NDArray[np.int64], t_dl: NDArray[np.float64], p: NDArray[np.float64]) -> Runs:
    """Requests a cancellation caught in service: those whose start (D before their work) came first."""
    frac = np.asarray(scale)[s]
    cnt = np.round(seg.count[s] * frac)
    w = np.where(cnt > 0, seg.work[s] * frac / np.maximum(cnt, 1), np.inf)
    c, d = fleet.capacity, fleet.in_service
    with np.errstate(invalid="ignore"):
        first = np.floor(p / w + _EPS) + 1.0
        last = np.minimum(np.floor((p + d) / w + _EPS) + 1.0, cnt)
    ok = np.isfinite(w) & (last >= first)
    s, t_dl, p, w, first, last = s[ok], t_dl[ok], p[ok], w[ok], first[ok], last[ok]
    batch = seg.batch[s]
    start = t_dl + ((first - 1.0) * w - p - d) / c - b.arrival[batch]
    return Runs(batch=batch, start=start, step=w / c, count=(last - first + 1).astype(np.int64))


def _pieces_to_runs(b: Batches, seg: Segments, fleet: FluidFleet, scale: Sequence[float] | NDArray[np.float64],
                    p_seg: Sequence[int] | NDArray[np.int64], p_t0: Sequence[float] | NDArray[np.float64],
                    p_from: Sequence[float] | NDArray[np.float64], p_to: Sequence[float] | NDArray[np.float64]
                    ) -> Runs:
    """Requests completing inside each served piece of a segment, as runs."""
    if len(p_seg) == 0:
        return Runs.empty()
    s = np.asarray(p_seg, dtype=np.int64)
    t0 = np.asarray(p_t0)
    p0 = np.asarray(p_from)
    p1 = np.asarray(p_to)
    frac = np.asarray(scale)[s]
    cnt = np.round(seg.count[s] * frac)
    w = np.where(cnt > 0, seg.work[s] * frac / np.maximum(cnt, 1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.floor(p0 / w + _EPS) + 1.0  # requests whose end position lies in (p0, p1]
        last = np.minimum(np.floor(p1 / w + _EPS), cnt)
    ok = (w > 0) & (last >= first)
    s, t0, p0, w, first, last = s[ok], t0[ok], p0[ok], w[ok], first[ok], last[ok]
    batch = seg.batch[s]
    c = fleet.capacity
    # Request j's work ends at position j·w, at fluid time t0 + (j·w − p0)/C; it started
    # when the work ahead of it (less what the other slots hold) was done: (w + D)/C earlier.
    start = t0 + (first * w - p0 - w - fleet.in_service) / c - b.arrival[batch]
    return Runs(batch=batch, start=start, step=w / c, count=(last - first + 1).astype(np.int64))
