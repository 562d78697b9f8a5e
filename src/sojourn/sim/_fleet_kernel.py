"""The fleet's replication as a compiled kernel (numba), with ``fleet.FleetSim``'s rules and the engine's arithmetic.

``fleet.FleetSim`` (its nodes ``engine.Engine``, its loop ``driver.Scheduler``) is the
readable replication and the tested reference; this is the same replication in the array
style numba compiles, for the common case (``supported``): engine nodes of one pool whose
perf model the engine kernel reproduces, no prefix caching, the FIFO, LIFO, SJF or EDF discipline
(``disciplines.Fifo``, ``Lifo``, ``Sjf``, ``Edf``; not ``sjf_work``, ``fair``, ``triage``), no work
forecasts, no failures, spot nodes or capacity schedule, any routing (``pull``: one central
queue every node draws from; ``round_robin``, ``least_loaded``: a queue per node, the node
picked as each request arrives). Everything the engine does is ``sim._engine_kernel``'s helpers (one
copy of the engine arithmetic, merged "steprun" plans included), called on a node's rows of
2-D arrays; what the fleet adds is here:

* the event heap, ordered as the driver's: (time, kind, insertion counter), node step ends
  first at equal times, then arrivals, deadlines and marks; each node's version number
  makes its superseded step ends stale, and only the latest deadline timer is live;
* the queues (``sim._engine_kernel``'s: a ring, a stack or a heap on (key, request id), with lazy
  deletion as the disciplines' ``inq`` flags), their entries dropped when a queue grows where they pile
  up (``_Run.queues``), and the fleet's
  ``_offer``, ``_can_take``, the scheduler's ``poke``/``resched``/``fire`` and removals at a
  node's next boundary (``pend``) for requests cancelled at their deadline;
* batches (their requests chained in arrival order), the open batches of each SLA class in
  deadline order, the deadline timer, rejections (``empty``, ``max_model_len``,
  ``queue_full``), cancellations, misses and their episodes, the measurement marks
  (``release``, ``start``, ``end``) and the steady-state series, as ``FleetSim`` counts them.

Request rows and batch rows are recycled (free lists): memory follows the work in the
system, not the length of the run. The kernel is resumable: every piece of state lives in
arrays between calls, and it returns a status when it needs the next chunk of arrivals
(``workload.batch_chunks``, the same draws as ``batch_stream``), when an array must grow,
when its sojourn buffers are full (folded as ``FleetSim`` folds them past ``EXACT_CAP``) or at
a progress mark; ``run`` answers and calls it again. Without numba (``SOJOURN_NO_NUMBA=1``)
``fleet_kernel`` returns None and ``fleet.run_replication`` runs ``FleetSim``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sojourn._numba import compile_kernel
from sojourn.sim import _engine_kernel as ek
from sojourn.sim._engine_kernel import (
    _NG0,
    ALIVE,
    BATCH,
    C_BS,
    C_SEQS,
    CANCELLED,
    F_NOW,
    F_PEND,
    FIRST,
    G_NWAIT,
    INPEND,
    INWQ,
    NEXTR,
    NODE,
    ONNODE,
    ORPHAN,
    OUTPUT,
    PROMPT,
    Q_HEAD,
    Q_LIVE,
    Q_LOAD,
    Q_TAIL,
    QUEUE,
    QUEUED,
    REJECTED,
    RID,
    S_PREEMPT,
    SDONE,
    START,
    STATE,
    TARGET,
)
from sojourn.sim._sojourns import FLOOR_S, REL, LogHistogram
from sojourn.steady import BINS

if TYPE_CHECKING:
    from sojourn.sim.fleet import ReplicationStats

__all__ = ["fleet_kernel", "run", "supported"]

_F = NDArray[np.float64]
_I = NDArray[np.int64]

# The fleet's int state ``g`` (after the engine's first ``_NG0``).
(G_COUNT, G_HN, G_RID, G_MOPEN, G_MARKED_END, G_STOPPED, G_TIMER_V, G_COMPLETIONS, G_FREE_N, G_HI, G_BFREE_N,
 G_BHI, G_NMISSED, G_SOJ_N, G_TTFT_N, G_TPOT_N, G_CI, G_CR, G_NEED_ARR, G_ARR_R, G_STARTED, G_PROGRESS,
 G_ARRIVED, G_COMPLETED, G_REJECTED, G_REJ_EMPTY, G_REJ_MML, G_REJ_QFULL, G_CANCELLED, G_INSYS, G_MISSES,
 G_BATCHES, G_BMISSED, G_SIZE_MAX, G_OVERSIZE, G_PRE0, G_PRE1, G_COMP0, G_COMP1, G_RR, G_NOPEN) = range(_NG0, _NG0 + 41)
_NG = _NG0 + 41
# The fleet's float state ``gf``: the clock, the live timer, sums, the halves' queued sums and counts, the marks.
(GF_NOW, GF_TIMER, GF_SOJ_SUM, GF_WAIT_SUM, GF_BSUM, GF_BSQ, GF_H0, GF_H1, GF_HN0, GF_HN1, GF_B0, GF_K0, GF_B1,
 GF_K1, GF_TTFT_SUM, GF_TPOT_SUM) = range(16)
_NGF = 16
# Float config ``fcf``: warm-up, its end plus the horizon, the horizon, the cap, the stationary start's backlog,
# the oversize batch, the steady-state bin width, max_queue (inf: none).
FC_W, FC_WH, FC_H, FC_CAP, FC_BUSY, FC_OVERSIZE, FC_BINW, FC_MAXQ = range(8)
# Int config ``fci``: nodes, cancel at the deadline, max_model_len, progress marks, SLA classes, routing.
FI_N, FI_CANCEL, FI_MML, FI_PROGRESS, FI_NCLS, FI_ROUTING = range(6)
#: Routings (``fleet.routing``): one central queue; a queue per node, the next in turn or the least loaded.
ROUTINGS = ("pull", "round_robin", "least_loaded")
_PULL, _RR, _LEAST = range(3)
# Event kinds, in their order at equal times (``fleet``'s).
_FIRE, _ARRIVAL, _DEADLINE, _MARK = 0, 1, 2, 3
# Marks: the backlog released, the measured span's start and end; progress marks are 10, 20, ... 90.
_M_RELEASE, _M_START, _M_END = 0, 1, 2
# Heap columns (int; the times apart).
H_KIND, H_COUNT, H_ARG, H_VER = range(4)
# Batch columns (int): measured, requests pending, its miss record (-1: none), size, SLA class, first and last
# request (rows), the next open batch of its class.
B_MEAS, B_PEND, B_MREC, B_SIZE, B_CLS, B_FIRST, B_LAST, B_NEXT = range(8)
_NB = 8
BF_ARR, BF_SLA, BF_DL = range(3)
# Class columns: the open batches' head and tail, measured requests arrived and missed, seen measured, opened
# (a batch with work to do arrived); by rank, the classes in the order they opened (``FleetSim._open``'s order).
K_HEAD, K_TAIL, K_ARR, K_MISS, K_SEEN, K_OPENED, K_BYRANK = range(7)
_NK = 7
# Statuses the kernel returns.
ST_DONE, ST_CHUNK, ST_GROW, ST_BUF, ST_PROGRESS = range(5)

Tuple = Any  # the kernel's groups of arrays (numba tuples)


# -- the event heap ----------------------------------------------------------------------


def _h_less(hf: _F, hi: _I, a: int, b: int) -> bool:
    if hf[a] != hf[b]:
        return bool(hf[a] < hf[b])
    if hi[a, H_KIND] != hi[b, H_KIND]:
        return bool(hi[a, H_KIND] < hi[b, H_KIND])
    return bool(hi[a, H_COUNT] < hi[b, H_COUNT])


def _h_swap(hf: _F, hi: _I, a: int, b: int) -> None:
    x = hf[a]
    hf[a] = hf[b]
    hf[b] = x
    for c in range(4):
        y = hi[a, c]
        hi[a, c] = hi[b, c]
        hi[b, c] = y


def _push(E: Tuple, g: _I, t: float, kind: int, arg: int, ver: int) -> None:
    """An event on the heap (``Scheduler.push``)."""
    hf, hi = E
    g[G_COUNT] += 1
    i = g[G_HN]
    g[G_HN] = i + 1
    hf[i] = t
    hi[i, H_KIND], hi[i, H_COUNT], hi[i, H_ARG], hi[i, H_VER] = kind, g[G_COUNT], arg, ver
    while i > 0:
        up = (i - 1) // 2
        if not _h_less(hf, hi, i, up):
            break
        _h_swap(hf, hi, i, up)
        i = up


def _pop(E: Tuple, g: _I) -> tuple[float, int, int, int]:
    hf, hi = E
    t, kind, arg, ver = hf[0], hi[0, H_KIND], hi[0, H_ARG], hi[0, H_VER]
    n = g[G_HN] - 1
    g[G_HN] = n
    _h_swap(hf, hi, 0, n)
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _h_less(hf, hi, c + 1, c):
            c += 1
        if not _h_less(hf, hi, c, i):
            break
        _h_swap(hf, hi, i, c)
        i = c
    return t, kind, arg, ver


# -- nodes as the scheduler drives them (``driver.Scheduler``) ------------------------------


def _plan_node(S: Tuple, N: Tuple, C: Tuple, i: int) -> float:
    pc, cfg, rq, rt, g, gf, cqr, done_ev, qs, cqk = S
    hist, st, fs, wq, ch_r, ch_n, fh, pend, pn, sched, ver, _, _, _ = N
    qi = i if C[1][FI_ROUTING] != _PULL else 0
    pool = cqr[qi]  # unused: the fleet's queue is the source
    end: float = ek._plan(pc, rq, rt, hist[i], st[i], fs[i], wq[i], cfg, pool, ch_r[i], ch_n[i], fh[i], qs[qi], g,
                          cqr[qi], cqk[qi])
    return end


def _replan(S: Tuple, N: Tuple, E: Tuple, C: Tuple, i: int) -> None:
    """``Scheduler.replan``: plan from the boundary; schedule the end if it moved."""
    g = S[4]
    sched, ver = N[9], N[10]
    end = _plan_node(S, N, C, i)
    if end != sched[i]:
        sched[i] = end
        ver[i] += 1
        if end < math.inf:
            _push(E, g, end, _FIRE, i, ver[i])


def _resched(S: Tuple, N: Tuple, E: Tuple, i: int) -> None:
    """``Scheduler.resched``: the plan ends earlier than scheduled (a "steprun" cut back to its step)."""
    fs, sched, ver = N[2], N[9], N[10]
    end = sched[i] = fs[i, F_PEND]
    ver[i] += 1
    _push(E, S[4], end, _FIRE, i, ver[i])


def _maybe_free(S: Tuple, B: Tuple, r: int) -> None:
    """Recycle a request's row once its batch is settled and no node holds it."""
    rq = S[2]
    if rq[r, ORPHAN] and not rq[r, ALIVE] and not rq[r, INWQ] and not rq[r, INPEND]:
        g, rfree = S[4], B[3]
        rfree[g[G_FREE_N]] = r
        g[G_FREE_N] += 1


def _purge(S: Tuple, N: Tuple, B: Tuple, i: int) -> None:
    """``Scheduler.purge``: remove from node ``i`` (at a boundary) the requests cancelled meanwhile."""
    cfg, rq = S[1], S[2]
    hist, st, wq, pend, pn = N[0], N[1], N[3], N[7], N[8]
    for k in range(pn[i]):
        r = pend[i, k]
        ek._remove(rq, hist[i], st[i], wq[i], cfg[C_BS], r)
        rq[r, INPEND] = 0
        _maybe_free(S, B, r)
    pn[i] = 0


def _poke(S: Tuple, N: Tuple, E: Tuple, B: Tuple, C: Tuple, i: int, t: float) -> bool:
    """``Scheduler.poke``: stop node ``i`` at its first boundary at or after ``t`` and replan there."""
    pc, cfg, rq, rt, g, gf, cqr, done_ev, qs, cqk = S
    hist, st, fs, wq, ch_r, ch_n, fh, pend, pn, sched, ver, _, _, _ = N
    if ek._interrupt(pc, rq, rt, hist[i], st[i], fs[i], cfg, ch_r[i], ch_n[i], done_ev, fh[i], t):
        if pn[i]:
            _purge(S, N, B, i)
        _replan(S, N, E, C, i)
        return True
    if fs[i, F_PEND] != sched[i]:
        _resched(S, N, E, i)
    return False


def _fire_node(S: Tuple, N: Tuple, E: Tuple, B: Tuple, M: Tuple, C: Tuple, i: int) -> None:
    """``Scheduler.fire``: node ``i``'s plan ends: its completions, its removals, then its next plan."""
    pc, cfg, rq, rt, g, gf, cqr, done_ev, qs, cqk = S
    hist, st, fs, wq, ch_r, ch_n, fh, pend, pn, sched, ver, _, _, _ = N
    ek._fire(rq, rt, hist[i], st[i], fs[i], cfg, ch_r[i], ch_n[i], done_ev, fh[i])
    now = fs[i, F_NOW]
    for k in range(st[i, ek.S_NDONE_EV]):
        _complete(S, B, M, C, done_ev[k], now)
    if pn[i]:
        _purge(S, N, B, i)
    if g[G_STOPPED]:
        return
    end = _plan_node(S, N, C, i)
    sched[i] = end
    if end < math.inf:
        ver[i] += 1
        _push(E, g, end, _FIRE, i, ver[i])


# -- request outcomes (``FleetSim._resolve``, ``_reject``, ``_cancel``, ``_miss``, ``_complete``) -----


def _settle(S: Tuple, B: Tuple, b: int) -> None:
    """Every request of batch ``b`` is resolved: nothing reads them again; recycle the rows no node holds."""
    rq = S[2]
    bi = B[0]
    r = bi[b, B_FIRST]
    while r >= 0:
        nxt = rq[r, NEXTR]
        rq[r, ORPHAN] = 1
        _maybe_free(S, B, r)
        r = nxt


def _resolve(S: Tuple, B: Tuple, r: int) -> int:
    g, rq = S[4], S[2]
    bi = B[0]
    b = rq[r, BATCH]
    bi[b, B_PEND] -= 1
    if bi[b, B_MEAS]:
        g[G_MOPEN] -= 1
        if not g[G_MOPEN] and g[G_MARKED_END]:
            g[G_STOPPED] = 1  # every measured request is settled: the run is over
    if not bi[b, B_PEND]:
        _settle(S, B, b)
    return int(b)


def _miss(S: Tuple, B: Tuple, C: Tuple, b: int) -> None:
    g = S[4]
    bi, bf, mrf, mrn, cls = B[0], B[1], B[4], B[5], B[6]
    g[G_MISSES] += 1
    if bi[b, B_SIZE] > C[0][FC_OVERSIZE]:
        g[G_OVERSIZE] += 1
    cls[bi[b, B_CLS], K_MISS] += 1
    if bi[b, B_MREC] < 0:
        m = bi[b, B_MREC] = g[G_NMISSED]
        g[G_NMISSED] += 1
        mrf[m, 0], mrf[m, 1] = bf[b, BF_ARR], bf[b, BF_SLA]
        mrn[m] = 0
        g[G_BMISSED] += 1
    mrn[bi[b, B_MREC]] += 1


def _reject(S: Tuple, B: Tuple, C: Tuple, r: int, reason: int) -> None:
    """``FleetSim._reject``: ``reason`` is the counter of its name (``G_REJ_EMPTY`` ...)."""
    g, rq = S[4], S[2]
    rq[r, STATE] = REJECTED
    b = _resolve(S, B, r)
    if B[0][b, B_MEAS]:
        g[G_REJECTED] += 1
        g[reason] += 1
        _miss(S, B, C, b)


def _cancel(S: Tuple, B: Tuple, C: Tuple, r: int) -> None:
    """``FleetSim._cancel`` at the deadline."""
    g, rq = S[4], S[2]
    rq[r, STATE] = CANCELLED
    b = _resolve(S, B, r)
    if B[0][b, B_MEAS]:
        g[G_CANCELLED] += 1
        _miss(S, B, C, b)


def _complete(S: Tuple, B: Tuple, M: Tuple, C: Tuple, r: int, t: float) -> None:
    """``FleetSim._complete``: a node's "done" event, unless the request was cancelled meanwhile."""
    rq, rt, g, gf = S[2], S[3], S[4], S[5]
    bi, bf = B[0], B[1]
    if rq[r, STATE] != ONNODE:
        _maybe_free(S, B, r)
        return
    rq[r, STATE] = SDONE
    g[G_COMPLETIONS] += 1
    b = rq[r, BATCH]
    bi[b, B_PEND] -= 1
    if bi[b, B_MEAS]:
        g[G_MOPEN] -= 1
        if not g[G_MOPEN] and g[G_MARKED_END]:
            g[G_STOPPED] = 1
        soj, ttft, tpot = M[0], M[1], M[2]
        arr = bf[b, BF_ARR]
        s = t - arr
        g[G_COMPLETED] += 1
        gf[GF_SOJ_SUM] += s
        gf[GF_WAIT_SUM] += rt[r, START] - arr
        soj[g[G_SOJ_N]] = s
        g[G_SOJ_N] += 1
        ft = rt[r, FIRST]
        x = ft - arr
        ttft[g[G_TTFT_N]] = x
        g[G_TTFT_N] += 1
        gf[GF_TTFT_SUM] += x
        if rq[r, OUTPUT] > 1:
            x = (t - ft) / (rq[r, OUTPUT] - 1)
            tpot[g[G_TPOT_N]] = x
            g[G_TPOT_N] += 1
            gf[GF_TPOT_SUM] += x
        if s > bf[b, BF_SLA]:
            _miss(S, B, C, b)
    if not bi[b, B_PEND]:
        _settle(S, B, b)


# -- the queue and the nodes (``FleetSim._offer``, ``_can_take``) ------------------------------


def _can_take(S: Tuple, N: Tuple, E: Tuple, qi: int, i: int, t: float) -> bool:
    """Whether waking node ``i`` now could start queue ``qi``'s head on it; a "steprun" whose prefill step's end
    could pull is cut back to that step and rescheduled."""
    cfg, rq, cqr, qs, cqk = S[1], S[2], S[6], S[8], S[9]
    hist, st, fs = N[0], N[1], N[2]
    ok = ek._may_take(st[i], fs[i], t)
    if ok == 2:
        head = ek._cq_peek(rq, qs[qi], cqr[qi], cqk[qi])
        return head >= 0 and ek._can_admit(hist[i], st[i], cfg, rq[head, PROMPT])
    if ok == 0 and st[i, ek.S_KIND] == ek._SRUN and t < fs[i, ek.F_MID] and st[i, ek.S_OPEN]:
        st[i, ek.S_KIND], st[i, ek.S_PSTEPS] = ek._STEP, 1  # Engine.cut_to_step
        fs[i, F_PEND] = fs[i, ek.F_MID]
        _resched(S, N, E, i)
    return ok == 1


def _offer(S: Tuple, N: Tuple, E: Tuple, B: Tuple, C: Tuple, qi: int, lo: int, hi: int, t: float) -> None:
    """``FleetSim._offer``: queue ``qi``'s work to the nodes ``lo`` .. ``hi - 1``."""
    if t < C[0][FC_BUSY]:
        return  # every node is serving the stationary start's backlog
    qs = S[8]
    for i in range(lo, hi):
        if not qs[qi, Q_LIVE]:
            return
        if _can_take(S, N, E, qi, i, t):
            _poke(S, N, E, B, C, i, t)


def _offer_all(S: Tuple, N: Tuple, E: Tuple, B: Tuple, C: Tuple, touched: Any, t: float) -> None:
    """Offer the queues ``touched`` (every queue when None) to their nodes: under pull, the one to all."""
    n = C[1][FI_N]
    if C[1][FI_ROUTING] == _PULL:
        _offer(S, N, E, B, C, 0, 0, n, t)
        return
    for qi in range(n):
        if touched is None or touched[qi]:
            _offer(S, N, E, B, C, qi, qi, qi + 1, t)


def _unqueue(S: Tuple, r: int) -> None:
    """``FleetSim._unqueue`` (the ring's entry is dropped lazily once the request leaves ``QUEUED``)."""
    cfg, rq, g, qs = S[1], S[2], S[4], S[8]
    qi = rq[r, QUEUE]
    qs[qi, Q_LIVE] -= 1
    qs[qi, Q_LOAD] -= -(-rq[r, PROMPT] // cfg[C_BS])
    g[G_NWAIT] -= 1


# -- events -------------------------------------------------------------------------------


def _new_request(S: Tuple, B: Tuple, b: int, p: int, o: int) -> int:
    """A recycled (or fresh) row for a request of batch ``b``, chained after the batch's last."""
    rq, rt, g = S[2], S[3], S[4]
    bi, rfree = B[0], B[3]
    if g[G_FREE_N]:
        g[G_FREE_N] -= 1
        r = rfree[g[G_FREE_N]]
    else:
        r = g[G_HI]
        g[G_HI] += 1
    rq[r, :] = 0
    rt[r, :] = math.nan
    rq[r, RID] = g[G_RID]
    g[G_RID] += 1
    rq[r, PROMPT], rq[r, OUTPUT], rq[r, TARGET] = p, o, p
    rq[r, BATCH], rq[r, NEXTR], rq[r, NODE] = b, -1, -1
    if bi[b, B_LAST] >= 0:
        rq[bi[b, B_LAST], NEXTR] = r
    else:
        bi[b, B_FIRST] = r
    bi[b, B_LAST] = r
    return int(r)


def _new_batch(S: Tuple, B: Tuple, t: float, sla: float, measured: bool, size: int, c: int) -> int:
    g = S[4]
    bi, bf, bfree = B[0], B[1], B[2]
    if g[G_BFREE_N]:
        g[G_BFREE_N] -= 1
        b = bfree[g[G_BFREE_N]]
    else:
        b = g[G_BHI]
        g[G_BHI] += 1
    bf[b, BF_ARR], bf[b, BF_SLA], bf[b, BF_DL] = t, sla, t + sla
    bi[b, B_MEAS], bi[b, B_PEND], bi[b, B_MREC], bi[b, B_SIZE] = 1 if measured else 0, size, -1, size
    bi[b, B_CLS], bi[b, B_FIRST], bi[b, B_LAST], bi[b, B_NEXT] = c, -1, -1, -1
    return int(b)


def _free_batch(S: Tuple, B: Tuple, b: int) -> None:
    g, bfree = S[4], B[2]
    bfree[g[G_BFREE_N]] = b
    g[G_BFREE_N] += 1


def _count_arrival(S: Tuple, B: Tuple, M: Tuple, C: Tuple, t: float, size: int, c: int, measured: bool) -> None:
    """``FleetSim._count_arrival``: the steady-state series, and the measured arrival counts."""
    g, gf = S[4], S[5]
    fcf = C[0]
    qsum, qn = M[3], M[4]
    if t < fcf[FC_WH]:
        k = min(int(t / fcf[FC_BINW]), BINS - 1)
        qsum[k] += g[G_NWAIT]
        qn[k] += 1
        if measured:
            h = 1 if t >= fcf[FC_W] + 0.5 * fcf[FC_H] else 0
            gf[GF_H0 + h] += g[G_NWAIT]
            gf[GF_HN0 + h] += 1
    if measured:
        if size > g[G_SIZE_MAX]:
            g[G_SIZE_MAX] = size
        g[G_ARRIVED] += size
        cls = B[6]
        cls[c, K_ARR] += size
        cls[c, K_SEEN] = 1
        g[G_BATCHES] += 1
        gf[GF_BSUM] += size
        gf[GF_BSQ] += size * size
        g[G_MOPEN] += size


def _arrive(S: Tuple, N: Tuple, E: Tuple, B: Tuple, M: Tuple, C: Tuple, A: Tuple, t: float, ci: int) -> None:
    """``FleetSim._arrive`` of the chunk's batch ``ci``: its requests join the central queue in order (pull), or
    each the queue of the node it is routed to."""
    cfg, rq, g, cqr, qs, cqk = S[1], S[2], S[4], S[6], S[8], S[9]
    fcf, fci = C
    ch_t, ch_size, ch_p, ch_o, ch_sla, ch_cls, jn = A
    measured = fcf[FC_W] <= t < fcf[FC_WH]
    size, c = ch_size[ci], ch_cls[ci]
    _count_arrival(S, B, M, C, t, size, c, measured)
    b = _new_batch(S, B, t, ch_sla[ci], measured, size, c)
    bs, mml = cfg[C_BS], fci[FI_MML]
    off = g[G_ARR_R]
    nj = 0
    routing, n = fci[FI_ROUTING], fci[FI_N]
    disc = qs[0, ek.Q_DISC]
    dl = B[1][b, BF_DL]
    least, touched = N[12], N[13]
    touched[:] = 0
    if routing == _LEAST:  # the loads as the batch arrives (FleetSim's heap of them, as a plain minimum)
        for i in range(n):
            least[i] = ek._load(N[1][i], N[2][i], t) + qs[i, Q_LOAD]
    for j in range(size):
        p, o = ch_p[off + j], ch_o[off + j]
        r = _new_request(S, B, b, p, o)
        if p < 1 or o < 1:
            _reject(S, B, C, r, G_REJ_EMPTY)
            continue
        if p + o > mml:
            _reject(S, B, C, r, G_REJ_MML)
            continue
        rq[r, STATE] = QUEUED
        jn[nj] = r
        nj += 1
        w = -(-p // bs)
        qi = _route(g, least, routing, n, w)
        rq[r, QUEUE] = qi
        ek._cq_push(rq, qs[qi], cqr[qi], cqk[qi], r, w, dl if disc == ek.D_EDF else float(p))
        touched[qi] = 1
    g[G_NWAIT] += nj
    _arrived(S, N, E, B, C, A, b, nj, t)


def _route(g: _I, least: _I, routing: int, n: int, w: int) -> int:
    """The queue a request of load ``w`` joins (``FleetSim._route``; least_loaded: least load, then lowest index)."""
    if routing == _PULL:
        return 0
    if routing == _RR:
        qi = g[G_RR]
        g[G_RR] = (qi + 1) % n
        return int(qi)
    qi = 0
    for i in range(1, n):
        if least[i] < least[qi]:
            qi = i
    least[qi] += w
    return qi


def _arrived(S: Tuple, N: Tuple, E: Tuple, B: Tuple, C: Tuple, A: Tuple, b: int, nj: int, t: float) -> None:
    """``FleetSim._arrived``: open the batch for its deadline, offer the work, apply the admission cap."""
    rq, g, gf = S[2], S[4], S[5]
    bi, bf, cls = B[0], B[1], B[6]
    fcf, fci = C
    if bi[b, B_PEND]:
        c = bi[b, B_CLS]
        while cls[c, K_HEAD] >= 0 and bi[cls[c, K_HEAD], B_PEND] == 0:
            h = cls[c, K_HEAD]
            cls[c, K_HEAD] = bi[h, B_NEXT]
            _free_batch(S, B, h)
        if cls[c, K_HEAD] < 0:
            cls[c, K_HEAD] = b
        else:
            bi[cls[c, K_TAIL], B_NEXT] = b
        cls[c, K_TAIL] = b
        if not cls[c, K_OPENED]:
            cls[c, K_OPENED] = 1
            cls[g[G_NOPEN], K_BYRANK] = c
            g[G_NOPEN] += 1
        if fci[FI_CANCEL] and bf[b, BF_DL] < gf[GF_TIMER]:
            _set_timer(S, E, bf[b, BF_DL])
    else:
        _free_batch(S, B, b)  # never opened: every request was rejected
    _offer_all(S, N, E, B, C, N[13], t)
    mq = fcf[FC_MAXQ]
    if g[G_NWAIT] > mq:
        jn = A[6]
        for j in range(nj - 1, -1, -1):  # what cannot start and finds the queue full, the batch's last first
            if g[G_NWAIT] <= mq:
                break
            r = jn[j]
            if rq[r, STATE] == QUEUED:
                _unqueue(S, r)
                _reject(S, B, C, r, G_REJ_QFULL)


def _set_timer(S: Tuple, E: Tuple, t: float) -> None:
    g, gf = S[4], S[5]
    gf[GF_TIMER] = t
    g[G_TIMER_V] += 1
    _push(E, g, t, _DEADLINE, 0, g[G_TIMER_V])


def _expire(S: Tuple, N: Tuple, E: Tuple, B: Tuple, C: Tuple, t: float) -> None:
    """``FleetSim._expire``: cancel the unfinished work of every batch whose deadline has come."""
    rq = S[2]
    bi, bf, cls = B[0], B[1], B[6]
    pend, pn = N[7], N[8]
    n = C[1][FI_N]
    touched = N[11]
    touched[:] = 0
    for k in range(S[4][G_NOPEN]):  # in FleetSim._open's order
        c = cls[k, K_BYRANK]
        while cls[c, K_HEAD] >= 0:
            b = cls[c, K_HEAD]
            if not (bi[b, B_PEND] == 0 or bf[b, BF_DL] <= t):
                break
            cls[c, K_HEAD] = bi[b, B_NEXT]
            if bi[b, B_PEND]:
                r = bi[b, B_FIRST]
                while r >= 0:
                    s = rq[r, STATE]
                    if s == QUEUED:
                        _unqueue(S, r)
                        _cancel(S, B, C, r)
                    elif s == ONNODE:
                        i = rq[r, NODE]
                        rq[r, INPEND] = 1  # removed from its node at the next boundary
                        pend[i, pn[i]] = r
                        pn[i] += 1
                        touched[i] = 1
                        _cancel(S, B, C, r)
                    r = rq[r, NEXTR]
            _free_batch(S, B, b)
    for i in range(n):
        if touched[i]:
            _poke(S, N, E, B, C, i, t)
    nxt = math.inf
    for k in range(S[4][G_NOPEN]):  # in FleetSim._open's order
        c = cls[k, K_BYRANK]
        if cls[c, K_HEAD] >= 0:
            nxt = min(nxt, bf[cls[c, K_HEAD], BF_DL])
    if nxt < math.inf:
        _set_timer(S, E, nxt)


def _mark(S: Tuple, N: Tuple, E: Tuple, B: Tuple, C: Tuple, m: int) -> None:
    """``FleetSim._mark``: the backlog released, or the counters at the measured span's start or end."""
    g, gf = S[4], S[5]
    st, fs = N[1], N[2]
    now = gf[GF_NOW]
    if m == _M_RELEASE:
        _offer_all(S, N, E, B, C, None, now)
        return
    busy = 0.0
    kv = 0.0
    pre = 0
    for i in range(C[1][FI_N]):
        b, k = ek._counters(st[i], fs[i], now)
        busy += b
        kv += k
        pre += st[i, S_PREEMPT]
    if m == _M_START:
        gf[GF_B0], gf[GF_K0], g[G_PRE0], g[G_COMP0] = busy, kv, pre, g[G_COMPLETIONS]
        return
    gf[GF_B1], gf[GF_K1], g[G_PRE1], g[G_COMP1] = busy, kv, pre, g[G_COMPLETIONS]
    g[G_MARKED_END] = 1
    if not g[G_MOPEN]:
        g[G_STOPPED] = 1


# -- the loop -----------------------------------------------------------------------------


def _start(S: Tuple, E: Tuple, C: Tuple) -> None:
    """``FleetSim.run``'s first pushes: the marks (the arrivals follow, ``G_NEED_ARR``)."""
    g = S[4]
    fcf, fci = C
    if fcf[FC_BUSY] > 0:
        _push(E, g, fcf[FC_BUSY], _MARK, _M_RELEASE, 0)
    _push(E, g, fcf[FC_W], _MARK, _M_START, 0)
    _push(E, g, fcf[FC_WH], _MARK, _M_END, 0)
    if fci[FI_PROGRESS]:
        for k in range(1, 10):
            _push(E, g, fcf[FC_W] + fcf[FC_H] * k / 10, _MARK, 10 * k, 0)
    g[G_STARTED] = 1
    g[G_NEED_ARR] = 1


def _room(S: Tuple, N: Tuple, E: Tuple, B: Tuple, M: Tuple, C: Tuple, A: Tuple) -> int:
    """ST_GROW or ST_BUF when an array could overflow during the next event, else 0 (``run`` grows them)."""
    cfg, rq, g, cqr, qs = S[1], S[2], S[4], S[6], S[8]
    n = C[1][FI_N]
    seqs = cfg[C_SEQS]
    size = A[1][g[G_CI] - 1] if g[G_CI] else 0  # the batch whose arrival is on the heap
    if g[G_FREE_N] + rq.shape[0] - g[G_HI] < size + 1 or g[G_BFREE_N] + B[0].shape[0] - g[G_BHI] < 1:
        return ST_GROW
    if g[G_HN] + 4 * n + 16 > E[0].shape[0]:
        return ST_GROW
    for qi in range(qs.shape[0]):
        if qs[qi, Q_TAIL] - qs[qi, Q_HEAD] + size > cqr.shape[1]:
            return ST_GROW
    if g[G_NMISSED] + g[G_BHI] - g[G_BFREE_N] + 1 > B[5].shape[0]:
        return ST_GROW
    st, fh = N[1], N[6]
    for i in range(n):
        if st[i, ek.S_FHN] + seqs + 2 > fh.shape[1]:
            return ST_GROW
    if g[G_SOJ_N] + n * (seqs + 2) >= M[0].shape[0]:  # full: at the cap, when the buffers are that size
        return ST_BUF
    return 0


def _step(S: Tuple, N: Tuple, E: Tuple, B: Tuple, M: Tuple, C: Tuple, A: Tuple, t: float, kind: int, arg: int,
          ver: int) -> bool:
    """Handle one event; True at a progress mark (the caller reports it)."""
    g, gf = S[4], S[5]
    if kind == _FIRE:
        if ver == N[10][arg]:
            _fire_node(S, N, E, B, M, C, arg)
    elif kind == _ARRIVAL:
        _arrive(S, N, E, B, M, C, A, t, arg)
        g[G_NEED_ARR] = 1
    elif kind == _DEADLINE:
        if ver == g[G_TIMER_V]:  # only the latest timer is live
            gf[GF_TIMER] = math.inf
            _expire(S, N, E, B, C, t)
    elif arg >= 10:
        g[G_PROGRESS] = arg
        return True
    else:
        _mark(S, N, E, B, C, arg)
    return False


def _finish(S: Tuple, B: Tuple, C: Tuple) -> None:
    """``FleetSim._finish``'s count of the measured requests still unresolved (past their deadline)."""
    rq, g = S[2], S[4]
    bi, cls = B[0], B[6]
    for k in range(S[4][G_NOPEN]):  # in FleetSim._open's order
        c = cls[k, K_BYRANK]
        b = cls[c, K_HEAD]
        while b >= 0:
            if bi[b, B_MEAS] and bi[b, B_PEND]:
                r = bi[b, B_FIRST]
                while r >= 0:
                    if rq[r, STATE] == QUEUED or rq[r, STATE] == ONNODE:
                        g[G_INSYS] += 1
                        _miss(S, B, C, b)
                    r = rq[r, NEXTR]
            b = bi[b, B_NEXT]


def _kernel(S: Tuple, N: Tuple, E: Tuple, B: Tuple, M: Tuple, C: Tuple, A: Tuple) -> int:
    """``FleetSim.run`` from where the last call stopped; returns why it stopped (``ST_*``)."""
    g, gf = S[4], S[5]
    if not g[G_STARTED]:
        _start(S, E, C)
    while True:
        if g[G_NEED_ARR]:
            ci = g[G_CI]
            if ci >= A[0].shape[0]:
                return ST_CHUNK
            g[G_ARR_R] = g[G_CR]
            g[G_CR] += A[1][ci]
            g[G_CI] = ci + 1
            g[G_NEED_ARR] = 0
            _push(E, g, A[0][ci], _ARRIVAL, ci, 0)
        status = _room(S, N, E, B, M, C, A)
        if status:
            return status
        if not g[G_HN] or g[G_STOPPED]:
            break
        t, kind, arg, ver = _pop(E, g)
        if t > C[0][FC_CAP]:
            break
        gf[GF_NOW] = t
        if _step(S, N, E, B, M, C, A, t, kind, arg, ver):
            return ST_PROGRESS
    if not g[G_MARKED_END]:  # pragma: no cover - the end mark precedes the cap
        _mark(S, N, E, B, C, _M_END)
    _finish(S, B, C)
    return ST_DONE


_HELPERS = ("_h_less", "_h_swap", "_push", "_pop", "_plan_node", "_replan", "_resched", "_maybe_free", "_purge",
            "_poke", "_settle", "_resolve", "_miss", "_reject", "_cancel", "_complete", "_fire_node", "_can_take",
            "_offer", "_offer_all", "_unqueue", "_route", "_new_request", "_new_batch", "_free_batch", "_count_arrival", "_arrive",
            "_arrived", "_set_timer", "_expire", "_mark", "_start", "_room", "_step", "_finish")

Kernel = Callable[..., int]
_COMPILED: list[Kernel | None] = []


def fleet_kernel() -> Kernel | None:
    """The compiled fleet kernel, or None without numba (or with ``SOJOURN_NO_NUMBA`` set); compiled on first
    use (the engine kernel's helpers with it) and cached by the content of both modules (``_numba``)."""
    if not _COMPILED:
        _COMPILED.append(_compile())
    return _COMPILED[0]


def _compile() -> Kernel | None:
    if ek.node_kernel() is None:  # compiles the engine helpers the fleet's call
        return None
    # Helpers without reference counting: they pass the state's groups of arrays (numba tuples) to each
    # other on every event, and counting their references cost more than the work itself.
    # The engine kernel's source is part of the cache's key: the fleet's kernel inlines its helpers.
    return compile_kernel(globals(), _HELPERS, counted_helpers=False, depends=(ek.__file__,))


def supported(scenario: Any) -> bool:
    """Whether the fleet kernel reproduces ``FleetSim`` on this scenario (module docstring); else FleetSim runs."""
    sc = scenario
    if sc.fleet.server is not None or sc.prefix_caching or sc.fleet.routing not in ROUTINGS:
        return False
    if sc.serving.discipline not in ek.QUEUE_DISCIPLINES or sc.serving.forecast_sigma is not None or sc.fleet_realism() is not None:
        return False
    pools = [s for p, s in sc.pool_scenarios() if p.nodes > 0]
    return len(pools) == 1 and ek.supported(pools[0].perf_model())


# -- the Python side: arrays, chunks, growth, folding, the result ----------------------------


#: The request table's first rows (the other arrays' first sizes follow it); every array grows by doubling.
_INITIAL = 1024
#: Batches (or requests) handed to the kernel at once, the stream's chunks joined: fewer calls of the kernel,
#: without drawing much more traffic than the run uses.
_CHUNK_BATCHES = 8192


class _Run:
    """The kernel's arrays for one replication of ``sim`` (a ``FleetSim`` built but not run), and what
    ``run`` does between calls: load the next chunk of arrivals, grow an array, fold the sojourns."""

    def __init__(self, sim: Any, chunks: Any) -> None:
        node = sim.nodes[0]
        n, seqs, bs = len(sim.nodes), node.max_num_seqs, node.bs
        self.sim, self.chunks, self.n, self.seqs = sim, chunks, n, seqs
        cfg = np.zeros(ek._NCFG, np.int64)
        cfg[[ek.C_TOTAL, ek.C_BS, ek.C_SEQS, ek.C_BUDGET, ek.C_MERGE]] = (node.total_blocks, bs, seqs,
                                                                        node.max_num_batched_tokens, 1)
        g = np.zeros(_NG, np.int64)
        routing = ROUTINGS.index(sim.routing)
        nq = n if routing != _PULL else 1
        qs = np.zeros((nq, ek._NQ), np.int64)
        qs[:, ek.Q_ON] = 1
        qs[:, ek.Q_DISC] = ek.QUEUE_DISCIPLINES.index(sim.scenario.serving.discipline)
        gf = np.zeros(_NGF)
        gf[GF_TIMER] = math.inf
        rows, nb = _INITIAL, _INITIAL // 4
        self.S = [ek.perf_constants(node.perf), cfg, np.zeros((rows, ek._NRQ), np.int64),
                  np.full((rows, ek._NRT), math.nan), g, gf, np.zeros((nq, rows, 2), np.int64),
                  np.zeros(seqs + 2, np.int64), qs, np.zeros((nq, rows))]
        st = np.zeros((n, ek._NST), np.int64)
        st[:, ek.S_INDEX] = np.arange(n)
        st[:, ek.S_RHEAD] = st[:, ek.S_RTAIL] = -1
        fs = np.zeros((n, ek._NFS))
        fs[:, F_PEND] = math.inf
        # Per node: residue histogram, int and float state, local queue, planned chunks (rows, tokens), finish
        # heap, removals waiting for a boundary and their count, scheduled step end, version; then scratch:
        # the nodes an expiry touched, least_loaded's loads, the queues an arrival touched.
        self.N = [np.zeros((n, bs), np.int64), st, fs, np.zeros((n, seqs + 2), np.int64),
                  np.zeros((n, seqs + 1), np.int64), np.zeros((n, seqs + 1), np.int64),
                  np.zeros((n, seqs + 2 + _INITIAL // 128, 3), np.int64), np.zeros((n, seqs + 2), np.int64),
                  np.zeros(n, np.int64), np.full(n, math.inf), np.zeros(n, np.int64),
                  np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)]
        ne = max(nb // 4, 4 * n + 32)  # room for the first marks (``_start`` pushes them before any check)
        self.E = [np.zeros(ne), np.zeros((ne, 4), np.int64)]
        self.classes: dict[float, int] = {}
        classes = sim.scenario_classes
        ncls = len(classes)
        cls = np.zeros((ncls, _NK), np.int64)
        cls[:, K_HEAD] = cls[:, K_TAIL] = -1
        self.B = [np.zeros((nb, _NB), np.int64), np.zeros((nb, 3)), np.zeros(nb, np.int64),
                  np.zeros(rows, np.int64), np.zeros((nb, 2)), np.zeros(nb, np.int64), cls]
        self.classes = {sla: k for k, sla in enumerate(classes)}
        #: Room for the completions of one event past the buffers' fill (``_room``'s margin).
        self.margin = n * (seqs + 2)
        buf = int(min(sim.sojourn_cap, 64 * _INITIAL)) + self.margin
        self.M = [np.zeros(buf), np.zeros(buf), np.zeros(buf), sim._qsum, sim._qn]
        fcf = np.array([sim.W, sim.WH, sim.H, sim.cap, sim.busy_until, sim.oversize, sim._bin_w,
                        math.inf if sim.max_queue is None else float(sim.max_queue)])
        progress = bool(sim.progress_label or sim.on_progress is not None)
        self.C = (fcf, np.array([n, int(sim.cancel), sim.max_model_len, int(progress), ncls, routing], np.int64))
        self.A: list[Any] = [np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                             np.zeros(0), np.zeros(0, np.int64), np.zeros(1, np.int64)]

    def args(self) -> tuple[Any, ...]:
        return tuple(self.S), tuple(self.N), tuple(self.E), tuple(self.B), tuple(self.M), self.C, tuple(self.A)

    def load_chunk(self) -> None:
        """The stream's next chunks, joined until they hold ``_CHUNK_BATCHES`` batches (fewer kernel calls)."""
        parts = []
        nb = nr = 0
        while nb < _CHUNK_BATCHES and nr < _CHUNK_BATCHES:
            parts.append(next(self.chunks))
            nb += len(parts[-1][0])
            nr += len(parts[-1][2])
        t, sizes, p, o, sla = parts[0] if len(parts) == 1 else (np.concatenate(x) for x in zip(*parts))
        vals = np.array(list(self.classes))
        order = np.argsort(vals)
        cls = np.array([self.classes[x] for x in vals[order]], dtype=np.int64)[np.searchsorted(vals[order], sla)]
        big = int(sizes.max()) if len(sizes) else 0
        jn = self.A[6] if len(self.A[6]) >= big else np.zeros(big, np.int64)
        self.A = [t, sizes, p, o, sla, cls, jn]
        g = self.S[4]
        g[G_CI] = g[G_CR] = 0

    def grow(self) -> None:
        """Double whatever ``_room`` found short."""
        S, N, E, B, g = self.S, self.N, self.E, self.B, self.S[4]
        size = int(self.A[1][g[G_CI] - 1]) if g[G_CI] else 0
        while g[G_FREE_N] + len(S[2]) - g[G_HI] < size + 1:
            S[2] = _grown(S[2], 0)
            S[3] = _grown(S[3], math.nan)
            B[3] = _grown(B[3], 0)
        if g[G_BFREE_N] + len(B[0]) - g[G_BHI] < 1:
            B[0], B[1], B[2] = _grown(B[0], 0), _grown(B[1], 0.0), _grown(B[2], 0)
        self.queues(size)
        while g[G_HN] + 4 * self.n + 16 > len(E[0]):
            E[0], E[1] = _grown(E[0], 0.0), _grown(E[1], 0)
        while g[G_NMISSED] + g[G_BHI] - g[G_BFREE_N] + 1 > len(B[5]):
            B[4], B[5] = _grown(B[4], 0.0), _grown(B[5], 0)
        fh = N[6]
        if int(N[1][:, ek.S_FHN].max()) + self.seqs + 2 > fh.shape[1]:
            new = np.zeros((fh.shape[0], 2 * fh.shape[1], 3), np.int64)
            new[:, : fh.shape[1]] = fh
            N[6] = new

    def queues(self, size: int) -> None:
        """Room for ``size`` more entries in every queue: each laid out again from its head (a ring) or bottom
        (a stack, a heap), its stale entries dropped where the discipline lets them pile up (a stack's below
        its top, a heap's below its root: the live ones keep their order, a heap's sorted, which is a heap
        that pops as the old one did), in arrays twice as large where that is not enough."""
        S = self.S
        cqr, qs, cqk, rq = S[6], S[8], S[9], S[2]
        cap = cqr.shape[1]
        if int((qs[:, ek.Q_TAIL] - qs[:, ek.Q_HEAD]).max()) + size <= cap:
            return
        disc = int(qs[0, ek.Q_DISC])
        kept = []
        for qi, (h, t) in enumerate(qs[:, [ek.Q_HEAD, ek.Q_TAIL]].tolist()):
            idx = np.arange(h, t) % cap
            if disc != ek.D_FIFO:
                rows, rids = cqr[qi, idx, 0], cqr[qi, idx, 1]
                idx = idx[(rq[rows, ek.RID] == rids) & (rq[rows, ek.STATE] == ek.QUEUED)]
                if disc != ek.D_LIFO:
                    idx = idx[np.lexsort((cqr[qi, idx, 1], cqk[qi, idx]))]
            kept.append(idx)
        held = max(len(idx) for idx in kept)
        new = cap if held + size <= cap // 2 else 2 * max(cap, held + size)
        ring, keys = np.zeros((len(qs), new, 2), np.int64), np.zeros((len(qs), new))
        for qi, idx in enumerate(kept):
            ring[qi, : len(idx)], keys[qi, : len(idx)] = cqr[qi, idx], cqk[qi, idx]
            qs[qi, ek.Q_HEAD], qs[qi, ek.Q_TAIL] = 0, len(idx)
        S[6], S[9] = ring, keys

    def buffers(self) -> None:
        """The sojourn buffers are full: fold them once they hold the cap's samples, as FleetSim does (the
        buffers grow to the cap plus ``margin``, no further, so that is as soon as the cap is reached),
        else grow them."""
        sim, g, M = self.sim, self.S[4], self.M
        if g[G_SOJ_N] >= sim.sojourn_cap:
            self.fold()
            return
        size = min(2 * len(M[0]), sim.sojourn_cap + self.margin)
        for k in range(3):
            new = np.empty(int(size))
            new[: len(M[k])] = M[k]
            M[k] = new

    def fold(self, sojourns: bool = True) -> None:
        """``FleetSim._fold_sojourns`` (unless not ``sojourns``) and ``_fold_latencies`` of the buffers: the
        same histograms, counted by ``_log_histogram`` (the sums are kept as each request completes, as
        ``FleetSim`` keeps them, so they do not depend on where the buffers fold)."""
        st, g, M = self.sim.st, self.S[4], self.M
        if sojourns:
            h = _log_histogram(M[0][: g[G_SOJ_N]])
            st.sojourn_hist = h if st.sojourn_hist is None else st.sojourn_hist.merge(h)
            g[G_SOJ_N] = 0
        for name, a in (("ttft", M[1][: g[G_TTFT_N]]), ("tpot", M[2][: g[G_TPOT_N]])):
            if len(a):
                h = _log_histogram(a)
                old = getattr(st, f"{name}_hist")
                setattr(st, f"{name}_hist", h if old is None else old.merge(h))
        g[G_TTFT_N] = g[G_TPOT_N] = 0


def _grown(a: Any, fill: float) -> Any:
    """``a`` with twice the rows (at least 4), the new ones ``fill``."""
    new = np.full((max(2 * len(a), 4), *a.shape[1:]), fill, dtype=a.dtype)
    new[: len(a)] = a
    return new


def _log_histogram(samples: Any) -> LogHistogram:
    """``LogHistogram.of(samples)``, the same bins by the same operations, counted in linear time (a count
    per bin over the samples' span of bins, instead of sorting them): folding millions of sojourns is
    otherwise a good part of a long replication's time in the kernel."""
    if not len(samples):
        return LogHistogram.empty()
    s = np.maximum(np.asarray(samples, dtype=np.float64), FLOOR_S)
    idx = np.floor(np.log(s) / math.log1p(REL)).astype(np.int64)  # _sojourns._LOG_STEP
    lo = int(idx.min())
    count = np.bincount(idx - lo)
    nz = np.flatnonzero(count)
    return LogHistogram(nz + lo, count[nz].astype(np.int64))


def run(sim: Any, kernel: Kernel | None = None) -> ReplicationStats:
    """``sim.run()`` (a ``FleetSim`` of a ``supported`` scenario, built and not run) in the fleet kernel: the
    same ``ReplicationStats``. ``kernel``: the compiled one by default; ``_kernel`` runs it as plain Python."""
    from sojourn.sim.fleet import Batch
    from sojourn.sim.workload import batch_chunks

    kern = kernel or fleet_kernel()
    assert kern is not None, "the fleet kernel needs numba (or pass _kernel)"
    wall = time.perf_counter()
    sim._wall0 = sim._last_report = wall
    ws = sim.wl_seed  # the traffic's seed as it was before FleetSim's stream spawned its children
    fresh = np.random.SeedSequence(ws.entropy, spawn_key=ws.spawn_key, pool_size=ws.pool_size)
    r = _Run(sim, batch_chunks(sim.scenario, fresh))
    while True:
        status = kern(*r.args())
        if status == ST_DONE:
            break
        if status == ST_CHUNK:
            r.load_chunk()
        elif status == ST_GROW:
            r.grow()
        elif status == ST_BUF:
            r.buffers()
        else:
            sim._mark(f"progress:{int(r.S[4][G_PROGRESS])}")
    g, gf = r.S[4], r.S[5]
    st: ReplicationStats = sim.st
    for name, k in (("arrived", G_ARRIVED), ("completed", G_COMPLETED), ("rejected", G_REJECTED),
                    ("cancelled", G_CANCELLED), ("in_system", G_INSYS), ("misses", G_MISSES),
                    ("batches", G_BATCHES), ("batches_missed", G_BMISSED), ("size_max", G_SIZE_MAX),
                    ("oversize_misses", G_OVERSIZE)):
        setattr(st, name, int(g[k]))
    st.rejected_by = {k: int(g[i]) for k, i in (("empty", G_REJ_EMPTY), ("max_model_len", G_REJ_MML),
                                                 ("queue_full", G_REJ_QFULL)) if g[i]}
    st.cancelled_by = {"deadline": int(g[G_CANCELLED])} if g[G_CANCELLED] else {}
    cls = r.B[6]
    st.by_sla = {sla: [int(cls[k, K_ARR]), int(cls[k, K_MISS])] for sla, k in r.classes.items() if cls[k, K_SEEN]}
    st.batch_size_sum, st.batch_size_sq = float(gf[GF_BSUM]), float(gf[GF_BSQ])
    st.sojourn_sum, st.wait_sum = float(gf[GF_SOJ_SUM]), float(gf[GF_WAIT_SUM])
    st.ttft_sum, st.tpot_sum = float(gf[GF_TTFT_SUM]), float(gf[GF_TPOT_SUM])
    # As FleetSim._finish: the sojourns exact unless some were folded already, the latencies folded.
    st.sojourn = r.M[0][: g[G_SOJ_N]].copy()
    r.fold(sojourns=st.sojourn_hist is not None)
    if st.sojourn_hist is not None:
        st.sojourn = np.empty(0)
    mrf, mrn = r.B[4], r.B[5]
    missed = []
    for m in range(int(g[G_NMISSED])):
        b = Batch(float(mrf[m, 0]), float(mrf[m, 1]), True)
        b.nmiss = int(mrn[m])
        missed.append(b)
    sim._missed = missed
    st.miss_episodes = sim._episodes()
    st.queue_bins, st.queue_bins_n = sim._qsum, sim._qn
    h = gf[GF_H0:GF_HN1 + 1]
    st.queue_halves = (float(h[0] / h[2]) if h[2] else math.nan, float(h[1] / h[3]) if h[3] else math.nan)
    n, H = r.n, sim.H
    st.busy_fraction = float((gf[GF_B1] - gf[GF_B0]) / (n * H))
    st.kv_utilization = float((gf[GF_K1] - gf[GF_K0]) / (sum(node.total_blocks for node in sim.nodes) * H))
    st.preemptions = int(g[G_PRE1] - g[G_PRE0])
    st.completions_in_horizon = int(g[G_COMP1] - g[G_COMP0])
    st.sim_end_s = float(gf[GF_NOW])
    st.requests_simulated = int(g[G_RID])
    st.wall_s = time.perf_counter() - wall
    nst = r.N[1]
    #: What the benchmark reports (``benchmarks/sim_speed.py``): events pushed on the heap, steps simulated.
    sim.kernel_counts = {"events": int(g[G_COUNT]), "steps": int(nst[:, ek.S_STEP].sum()),
                         "preemptions": int(nst[:, S_PREEMPT].sum())}
    return st
