"""One engine node driven alone, as a compiled kernel (numba), with the Python engine's arithmetic.

``engine.Engine`` run by ``driver.drive`` is the readable loop and the tested reference;
this is the same node and the same driver in the array style numba compiles: requests
are rows of an int64 table (prompt, output, prefill target, tokens computed, tokens
generated, blocks, decoding entry, residue, ...), the running set a list through them in
admission order, the waiting queue a ring buffer, the decoding set's residue histogram an array,
and the perf model the constants ``PerfModel.step_time`` uses for a dense model (host overlap and GEMM fill
included).
Every float operation is the engine's and ``PerfModel``'s, in the same order, so first
token and completion times and preemption counts are the engine's
(``tests/test_engine_kernel.py``).

What is covered: ``drive`` without merged steps (its users never set ``merge_steps``),
requests arriving at given times into the local queue (``arrivals``), a closed loop that
sends the next request as one completes (``relaunch``), and a central FIFO queue cycling
through a request pool with head-of-line blocking (``pool``, the saturated node of
``sojourn.fast.capacity``, whose per-plan statistics the kernel also keeps). The fleet
kernel (``sim._fleet_kernel``) runs its nodes on these same helpers (``HELPERS``), with what
an engine in the fleet does beyond that: merged "steprun" plans (``C_MERGE``:
``_plan_merged``, the cut back to the prefill step, an interruption after it applying the
step as its own ``fire``), consulting the finish heap as ``Engine.finish_heap`` holds it,
stale entries and all (``fh``); a queue of the fleet's as the source (``q``, ``cqr``, ``cqk``: a FIFO
ring, a LIFO stack or an SJF/EDF heap, with lazy deletion); removals at a boundary (``_remove``); the busy and KV counters
(``_counters``) and the fleet's questions (``_may_take``, ``_can_admit``, ``_load``). The
running set is a list through the request rows (``RPREV``/``RNEXT``), in admission order.
The helpers allocate nothing and are compiled without reference counting. Not covered
(``supported`` says no, and the Python engine runs): mixture-of-experts, multi-head latent
attention and sliding-window models, prefix caching, perf models other than ``PerfModel``.
Without numba (``SOJOURN_NO_NUMBA=1``, or where it does not install) ``node_kernel``
returns None and callers run the Python engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sojourn._numba import compile_kernel

__all__ = ["available", "node_kernel", "perf_constants", "run_node", "supported"]

_F = NDArray[np.float64]
_I = NDArray[np.int64]

# Columns of the request table ``rq`` (int64).
PROMPT, OUTPUT, TARGET, COMPUTED, GEN, BLOCKS, ESTEP, ECTX, RES, DEC, ALIVE, FIN, SEQ, PREEMPT = range(14)
# The fleet's columns (``sim._fleet_kernel``): the request's id (rows are recycled), its state, batch, the next
# request of its batch, its node, and whether it is in its node's local queue or removal list, or its batch settled.
RID, STATE, BATCH, NEXTR, NODE, INWQ, INPEND, ORPHAN = range(14, 22)
# The running set, a list in admission order: the previous and next running request of the node (-1: none).
RPREV, RNEXT = 22, 23
# The fleet's queue the request joined (its node's under push routing; 0, the central one, under pull).
QUEUE = 24
_NRQ = 25
# Columns of the request times ``rt`` (float64): entered (arrival, or admission from a pool), first token, done,
# start of service (the fleet's).
ENTER, FIRST, DONE, START = range(4)
_NRT = 4
#: A request's state in the fleet (``fleet.QUEUED`` ...): queued centrally, on a node, done, rejected, cancelled.
QUEUED, ONNODE, SDONE, REJECTED, CANCELLED = 1, 2, 3, 4, 5
# Integer state ``st``.
(S_STEP, S_USED, S_DECN, S_CBASE, S_SEQ, S_NRUN, S_WHEAD, S_WCOUNT, S_KIND, S_PSTEPS, S_NCH, S_STARTED,
 S_DONE, S_PREEMPT, S_NEXTPOOL, S_NDONE_EV, S_STOPPED, S_STATUS,
 # A "steprun" (merged plans): blocks in use after its prefill step, free at that boundary, whether its end
 # could pull; the node's index; the size of its finish heap ``fh``.
 S_USED1, S_FREE1, S_OPEN, S_INDEX, S_FHN,
 # The running set's oldest and newest request (-1: none; the list runs through ``RPREV``/``RNEXT``).
 S_RHEAD, S_RTAIL) = range(25)
_NST = 25
# Float state ``fs``: the clock, the plan's start and end; the capacity run's statistics; a "steprun"'s prefill
# step end; busy seconds and KV block-seconds (the fleet's counters).
F_NOW, F_PSTART, F_PEND, F_BUSY_SEQS, F_TOK_COST, F_TOK_N, F_TSTART, F_MID, F_BUSY, F_KVS = range(10)
_NFS = 10
#: The running set's "last step" of a request not decoding (above every step a run reaches).
_NOT_DECODING = 1 << 62
# Plan kinds.
_IDLE, _STEP, _RUN, _SRUN = 0, 1, 2, 3
# Config ``cfg``: total blocks, block size, max sequences, token budget, requests queued at the start,
# launches a closed loop may reach (0: no relaunch), completions to run, pool size (0: no pool), warm-up,
# whether a prefill step and the decode run after it may be planned as one "steprun" (``Engine.merge_steps``).
C_TOTAL, C_BS, C_SEQS, C_BUDGET, C_N0, C_RELAUNCH, C_NDONE, C_POOL, C_WARM, C_MERGE = range(10)
_NCFG = 10
# A queue a node draws from (the fleet's central queue, or a node's own under push routing), its state ``q`` (a
# node alone passes zeros): whether there is one, the head and tail positions of its entries ``cqr`` (row,
# request id; lazily deleted) and their keys ``cqk``, requests queued, their load (prompt blocks), its discipline.
Q_ON, Q_HEAD, Q_TAIL, Q_LIVE, Q_LOAD, Q_DISC = range(6)
_NQ = 6
#: The disciplines a queue of the fleet's may have (``disciplines.Fifo``, ``Lifo``, ``Sjf``, ``Edf``), by ``Q_DISC``:
#: FIFO a ring (head to tail, modulo its size); LIFO a stack (``Q_HEAD`` stays 0, the top at ``Q_TAIL - 1``);
#: SJF and EDF a binary heap on (key, request id) in entries 0 .. ``Q_TAIL - 1``, the key the prompt's tokens or
#: the deadline (``cqk``).
QUEUE_DISCIPLINES = ("fifo", "lifo", "sjf", "edf")
D_FIFO, D_LIFO, D_SJF, D_EDF = range(4)
# The fleet's int state ``g`` starts with its requests queued and never started (``FleetSim.n_waiting``).
G_NWAIT = 0
_NG0 = 1
# Perf constants ``pc``: the nine of the step's terms, then the GEMM fill's T_half (``Profile.gemm_half_tokens``)
# and whether the host overlaps the GPU (``Profile.host_overlap``: 1.0 or 0.0).
P_SO, P_SQ, P_TOK, P_LOGIT, P_W, P_PAIR, P_CTX, P_CFIX, P_CTOK, P_THALF, P_OVL = range(11)


def perf_constants(perf: Any) -> _F:
    """The constants of ``PerfModel.step_time`` for a dense full-attention model, in the kernel's order."""
    return np.array([perf._so, perf._sq, perf._c_tok, perf._c_logit, perf._w_time, perf._c_pair,
                     perf._c_ctx, perf._comm_fixed, perf._comm_tok, perf._t_half, 1.0 if perf._overlap else 0.0],
                    dtype=np.float64)


def supported(perf: Any, prefix_caching: bool = False) -> bool:
    """Whether the kernel reproduces the engine with this perf model (else the Python engine runs)."""
    from sojourn.perf import PerfModel

    if type(perf) is not PerfModel or prefix_caching:
        return False
    m = perf.model
    return not (perf._moe or perf._c_window or m.is_mla or m.sliding_window_layers or perf.ep != 1)


def _mod(a: int, b: int) -> int:
    """Python's a % b (non-negative for b > 0) whatever the platform's integer remainder."""
    return ((a % b) + b) % b


def _step_time(pc: _F, ptok: int, dec_n: int, ctx: int, pairs: float, done: int) -> float:
    """``PerfModel.step_time`` of a dense model without sliding-window layers (same operations, same order)."""
    T = ptok + dec_n
    if T <= 0:
        return 0.0
    sampled = dec_n + done
    lin = max(pc[P_TOK] * (T + pc[P_THALF]) + pc[P_LOGIT] * sampled, pc[P_W])
    if pc[P_OVL] != 0.0:
        gpu = lin + pc[P_PAIR] * pairs + pc[P_CTX] * ctx + pc[P_CFIX]
        gpu += pc[P_CTOK] * T
        over: float = max(pc[P_SO] + pc[P_SQ] * sampled, gpu)
        return over
    t: float = (pc[P_SO] + pc[P_SQ] * sampled + lin + pc[P_PAIR] * pairs + pc[P_CTX] * ctx + pc[P_CFIX]
                + pc[P_CTOK] * T)
    return t


def _decode_gpu_fixed(pc: _F, seqs: int) -> float:
    """``PerfModel._decode_gpu_fixed``: the GPU part of a decode step that does not depend on the context."""
    T = seqs
    lin = max(pc[P_TOK] * (T + pc[P_THALF]) + pc[P_LOGIT] * seqs, pc[P_W])
    t: float = lin + pc[P_CFIX] + pc[P_CTOK] * T
    return t


def _decode_fixed(pc: _F, seqs: int) -> float:
    """``PerfModel.decode_step_fixed``."""
    if pc[P_OVL] != 0.0:
        over: float = max(pc[P_SO] + pc[P_SQ] * seqs, _decode_gpu_fixed(pc, seqs))
        return over
    T = seqs
    lin = max(pc[P_TOK] * (T + pc[P_THALF]) + pc[P_LOGIT] * seqs, pc[P_W])
    t: float = pc[P_SO] + pc[P_SQ] * seqs + lin + pc[P_CFIX] + pc[P_CTOK] * T
    return t


def _decode_run_time(pc: _F, seqs: int, context0: int, steps: int) -> float:
    """``PerfModel.decode_run_time``: an arithmetic sum; with host overlap the steps whose GPU part is under the
    host's take the host's time first."""
    if steps <= 0 or seqs <= 0:
        return 0.0
    c = pc[P_CTX]
    if pc[P_OVL] == 0.0:
        a = _decode_fixed(pc, seqs)
        t: float = steps * a + c * (steps * context0 + seqs * steps * (steps - 1) / 2.0)
        return t
    host = pc[P_SO] + pc[P_SQ] * seqs
    first = _decode_gpu_fixed(pc, seqs) + c * context0
    rise = c * seqs
    if first >= host:
        k_star = 0
    elif rise <= 0:
        k_star = steps
    else:
        k_star = min(steps, int(math.ceil((host - first) / rise)))
    n = steps - k_star
    r: float = k_star * host + n * first + rise * n * (k_star + steps - 1) / 2.0
    return r


def _steps_within(pc: _F, B: int, x0: int, dt: float) -> int:
    """Smallest j with decode_run_time(j) >= dt (``Engine._steps_within``)."""
    a = _decode_fixed(pc, B)
    c = pc[P_CTX]
    qa = c * B / 2.0
    qb = a + c * x0 - qa
    if qa > 0:
        j = int(math.ceil((-qb + math.sqrt(qb * qb + 4 * qa * dt)) / (2 * qa)))
    else:
        j = int(math.ceil(dt / qb))
    if j < 0:
        j = 0
    while j > 0 and _decode_run_time(pc, B, x0, j - 1) >= dt:
        j -= 1
    while _decode_run_time(pc, B, x0, j) < dt:
        j += 1
    return j


def _partial_need(hist: _I, bs: int, base: int, part: int) -> int:
    if part <= 0:
        return 0
    r0 = _mod(-base, bs)
    lo = r0 - part + 1
    s = 0
    if lo >= 0:
        for i in range(lo, r0 + 1):
            s += hist[i]
        return s
    for i in range(0, r0 + 1):
        s += hist[i]
    for i in range(bs + lo, bs):
        s += hist[i]
    return s


def _failure_steps(free: int, B: int, hist: _I, bs: int, step: int) -> int:
    periods = free // B if B else 0
    k = periods * bs
    rem = free - periods * B
    s = step + k
    for j in range(bs):
        need = hist[_mod(-(s + j), bs)]
        if need > rem:
            return k + j
        rem -= need
    return k + bs


def _run_remove(rq: _I, st: _I, r: int) -> None:
    """Drop request ``r`` from the running list, keeping admission order."""
    p, nx = rq[r, RPREV], rq[r, RNEXT]
    if p >= 0:
        rq[p, RNEXT] = nx
    else:
        st[S_RHEAD] = nx
    if nx >= 0:
        rq[nx, RPREV] = p
    else:
        st[S_RTAIL] = p
    st[S_NRUN] -= 1


def _run_append(rq: _I, st: _I, r: int) -> None:
    """Request ``r`` joins the running list as its newest."""
    t = st[S_RTAIL]
    rq[r, RPREV], rq[r, RNEXT] = t, -1
    if t >= 0:
        rq[t, RNEXT] = r
    else:
        st[S_RHEAD] = r
    st[S_RTAIL] = r
    st[S_NRUN] += 1


def _release(rq: _I, hist: _I, st: _I, bs: int, r: int) -> None:
    """Free a running request's blocks and drop it from the running set (``Engine._release``)."""
    if rq[r, DEC]:
        step = st[S_STEP]
        st[S_USED] -= -(-(rq[r, ECTX] + (step - rq[r, ESTEP])) // bs)
        rq[r, DEC] = 0
        st[S_DECN] -= 1
        st[S_CBASE] -= rq[r, ECTX] - rq[r, ESTEP]
        hist[rq[r, RES]] -= 1
        rq[r, GEN] += step - rq[r, ESTEP]
    else:
        st[S_USED] -= rq[r, BLOCKS]
    rq[r, BLOCKS] = 0
    rq[r, ALIVE] = 0
    _run_remove(rq, st, r)


def _wq_push(wq: _I, st: _I, r: int, front: bool) -> None:
    cap = wq.shape[0]
    if front:
        st[S_WHEAD] = (st[S_WHEAD] - 1 + cap) % cap
        wq[st[S_WHEAD]] = r
    else:
        wq[(st[S_WHEAD] + st[S_WCOUNT]) % cap] = r
    st[S_WCOUNT] += 1


def _wq_pop(rq: _I, wq: _I, st: _I) -> int:
    """Take the local queue's head."""
    r: int = wq[st[S_WHEAD]]
    st[S_WHEAD] = (st[S_WHEAD] + 1) % wq.shape[0]
    st[S_WCOUNT] -= 1
    rq[r, INWQ] = 0
    return r


def _wq_remove(rq: _I, wq: _I, st: _I, r: int) -> bool:
    """Drop ``r`` from the local queue, keeping its order (``deque.remove``); False if it is not there."""
    cap = wq.shape[0]
    n = st[S_WCOUNT]
    h = st[S_WHEAD]
    i = 0
    while i < n and wq[(h + i) % cap] != r:
        i += 1
    if i == n:
        return False
    for j in range(i, n - 1):
        wq[(h + j) % cap] = wq[(h + j + 1) % cap]
    st[S_WCOUNT] = n - 1
    rq[r, INWQ] = 0
    return True


def _remove(rq: _I, hist: _I, st: _I, wq: _I, bs: int, r: int) -> None:
    """``Engine.remove`` (at a boundary): a running request is released, a waiting one dropped."""
    if rq[r, ALIVE]:
        _release(rq, hist, st, bs, r)
    else:
        _wq_remove(rq, wq, st, r)


def _preempt(rq: _I, hist: _I, st: _I, wq: _I, bs: int) -> None:
    """Preempt the newest running request by recompute (``Engine._preempt``)."""
    r = st[S_RTAIL]
    _release(rq, hist, st, bs, r)
    rq[r, TARGET] = rq[r, PROMPT] + rq[r, GEN]
    rq[r, COMPUTED] = 0
    rq[r, PREEMPT] += 1
    st[S_PREEMPT] += 1
    _wq_push(wq, st, r, True)
    rq[r, INWQ] = 1


# -- the fleet's queues (``disciplines.Fifo``, ``Lifo``, ``Sjf``, ``Edf``; stale entries dropped lazily) ---------


def _cq_live(rq: _I, cqr: _I, k: int) -> bool:
    """Whether entry ``k`` is still queued (its row not recycled since, its request not started or removed)."""
    r = cqr[k, 0]
    return bool(rq[r, RID] == cqr[k, 1] and rq[r, STATE] == QUEUED)


def _qh_less(cqr: _I, cqk: _F, a: int, b: int) -> bool:
    return bool(cqk[a] < cqk[b] or (cqk[a] == cqk[b] and cqr[a, 1] < cqr[b, 1]))


def _qh_swap(cqr: _I, cqk: _F, a: int, b: int) -> None:
    x = cqk[a]
    cqk[a] = cqk[b]
    cqk[b] = x
    for c in range(2):
        y = cqr[a, c]
        cqr[a, c] = cqr[b, c]
        cqr[b, c] = y


def _qh_pop(q: _I, cqr: _I, cqk: _F) -> None:
    """Remove a heap queue's root (``heapq.heappop``: the same entries left, in heap order)."""
    n = q[Q_TAIL] - 1
    q[Q_TAIL] = n
    _qh_swap(cqr, cqk, 0, n)
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _qh_less(cqr, cqk, c + 1, c):
            c += 1
        if not _qh_less(cqr, cqk, c, i):
            break
        _qh_swap(cqr, cqk, i, c)
        i = c


def _cq_peek(rq: _I, q: _I, cqr: _I, cqk: _F) -> int:
    """The queue's head (dropping stale entries on the way), or -1 when nothing is queued."""
    if q[Q_LIVE] == 0:
        return -1
    d = q[Q_DISC]
    if d == D_FIFO:
        cap = cqr.shape[0]
        while True:
            k = q[Q_HEAD] % cap
            if _cq_live(rq, cqr, k):
                return int(cqr[k, 0])
            q[Q_HEAD] += 1
    if d == D_LIFO:
        while True:
            k = q[Q_TAIL] - 1
            if _cq_live(rq, cqr, k):
                return int(cqr[k, 0])
            q[Q_TAIL] = k
    while not _cq_live(rq, cqr, 0):
        _qh_pop(q, cqr, cqk)
    return int(cqr[0, 0])


def _cq_push(rq: _I, q: _I, cqr: _I, cqk: _F, r: int, w: int, key: float) -> None:
    """Request ``r`` (load ``w``, key ``key`` under SJF and EDF) joins the queue."""
    k = q[Q_TAIL] % cqr.shape[0]
    cqr[k, 0], cqr[k, 1] = r, rq[r, RID]
    cqk[k] = key
    q[Q_TAIL] += 1
    q[Q_LIVE] += 1
    q[Q_LOAD] += w
    if q[Q_DISC] >= D_SJF:  # sift up
        while k > 0:
            up = (k - 1) // 2
            if not _qh_less(cqr, cqk, k, up):
                break
            _qh_swap(cqr, cqk, k, up)
            k = up


def _cq_take(rq: _I, rt: _F, q: _I, cqr: _I, cqk: _F, g: _I, bs: int, r: int, now: float) -> None:
    """The head ``r`` (``_cq_peek``'s answer) starts on a node at ``now`` (``FleetSim._make_source``'s source)."""
    q[Q_LOAD] -= -(-rq[r, PROMPT] // bs)
    d = q[Q_DISC]
    if d == D_FIFO:
        q[Q_HEAD] += 1
    elif d == D_LIFO:
        q[Q_TAIL] -= 1
    else:
        _qh_pop(q, cqr, cqk)
    q[Q_LIVE] -= 1
    rq[r, STATE] = ONNODE
    rt[r, START] = now
    g[G_NWAIT] -= 1


def _next_admit(rq: _I, rt: _F, st: _I, fs: _F, wq: _I, cfg: _I, pool: _I, q: _I, g: _I, cqr: _I,
                cqk: _F, free: int) -> int:
    """The next request to admit with ``free`` blocks: the local queue's head, else the central queue's or the
    pool's; -1 if the head does not fit, -2 if the central queue has nothing queued."""
    bs = cfg[C_BS]
    if st[S_WCOUNT]:
        r: int = wq[st[S_WHEAD]]
        if -(-rq[r, TARGET] // bs) > free:
            return -1
        return _wq_pop(rq, wq, st)
    if q[Q_ON]:
        r = _cq_peek(rq, q, cqr, cqk)
        if r < 0:
            return -2
        if -(-rq[r, PROMPT] // bs) > free:
            return -1  # head-of-line blocking
        _cq_take(rq, rt, q, cqr, cqk, g, bs, r, fs[F_NOW])
        return r
    npool = cfg[C_POOL]
    if npool == 0:
        return -1
    k = st[S_NEXTPOOL] % npool
    if -(-pool[k, 0] // bs) > free:
        return -1  # head-of-line blocking, as the central FIFO queue does
    r = int(st[S_STARTED])
    st[S_STARTED] += 1
    st[S_NEXTPOOL] += 1
    rq[r, PROMPT] = pool[k, 0]
    rq[r, OUTPUT] = pool[k, 1]
    rq[r, TARGET] = pool[k, 0]
    rt[r, ENTER] = fs[F_NOW]
    return r


# -- the finish heap of a node with merged plans (``Engine.finish_heap``, stale entries and all) -----


def _fh_less(fh: _I, a: int, b: int) -> bool:
    return bool(fh[a, 0] < fh[b, 0] or (fh[a, 0] == fh[b, 0] and fh[a, 1] < fh[b, 1]))


def _fh_swap(fh: _I, a: int, b: int) -> None:
    for c in range(3):
        x = fh[a, c]
        fh[a, c] = fh[b, c]
        fh[b, c] = x


def _fh_push(fh: _I, st: _I, s: int, seq: int, r: int) -> None:
    i = st[S_FHN]
    st[S_FHN] = i + 1
    fh[i, 0], fh[i, 1], fh[i, 2] = s, seq, r
    while i > 0:
        up = (i - 1) // 2
        if not _fh_less(fh, i, up):
            break
        _fh_swap(fh, i, up)
        i = up


def _fh_pop(fh: _I, st: _I) -> None:
    n = st[S_FHN] - 1
    st[S_FHN] = n
    _fh_swap(fh, 0, n)
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _fh_less(fh, c + 1, c):
            c += 1
        if not _fh_less(fh, c, i):
            break
        _fh_swap(fh, i, c)
        i = c


def _fh_clean(rq: _I, st: _I, fh: _I) -> None:
    """Drop the stale entries at the heap's head (``Engine.finish_heap_min``'s pops): an entry is live while its
    request decodes on this node in the same entry into decoding (its ``SEQ``)."""
    node = st[S_INDEX]
    while st[S_FHN]:
        r = fh[0, 2]
        if rq[r, ALIVE] and rq[r, DEC] and rq[r, SEQ] == fh[0, 1] and rq[r, NODE] == node:
            return
        _fh_pop(fh, st)


def _plan(pc: _F, rq: _I, rt: _F, hist: _I, st: _I, fs: _F, wq: _I, cfg: _I, pool: _I, ch_r: _I,
          ch_n: _I, fh: _I, q: _I, g: _I, cqr: _I, cqk: _F) -> float:
    """``Engine.plan``: preempt until this step's decode blocks fit, go on with prefills, admit, plan."""
    step, bs, total = st[S_STEP], cfg[C_BS], cfg[C_TOTAL]
    need = hist[_mod(-step, bs)] if st[S_DECN] else 0
    while st[S_DECN] and st[S_USED] + need > total:
        _preempt(rq, hist, st, wq, bs)
        need = hist[_mod(-step, bs)] if st[S_DECN] else 0
    dec_n = st[S_DECN]
    budget = cfg[C_BUDGET] - dec_n
    free = total - st[S_USED] - need
    ptok = 0
    pairs = 0.0
    done = 0
    nch = 0
    # The requests still prefilling are the newest (a suffix of the running list): prefills end in admission order.
    npref = 0
    r = st[S_RTAIL]
    while r >= 0 and not rq[r, DEC]:
        npref += 1
        if rq[r, RPREV] < 0 or rq[rq[r, RPREV], DEC]:
            break
        r = rq[r, RPREV]
    for _ in range(npref):
        if budget <= 0:
            break
        n = rq[r, TARGET] - rq[r, COMPUTED]
        if n > budget:
            n = budget
        ch_r[nch], ch_n[nch] = r, n
        nch += 1
        budget -= n
        ptok += n
        pairs += n * (rq[r, COMPUTED] + 0.5 * n)
        if rq[r, COMPUTED] + n >= rq[r, TARGET]:
            done += 1
        r = rq[r, RNEXT]
    empty = False  # the central queue was asked and has nothing queued
    while budget > 0 and st[S_NRUN] < cfg[C_SEQS]:
        r = _next_admit(rq, rt, st, fs, wq, cfg, pool, q, g, cqr, cqk, free)
        if r < 0:
            empty = r == -2
            break
        target = rq[r, TARGET]
        b = -(-target // bs)
        rq[r, BLOCKS] = b
        rq[r, COMPUTED] = 0
        rq[r, ALIVE] = 1
        rq[r, NODE] = st[S_INDEX]
        st[S_USED] += b
        free -= b
        _run_append(rq, st, r)
        npref += 1
        n = target if target < budget else budget
        ch_r[nch], ch_n[nch] = r, n
        nch += 1
        budget -= n
        ptok += n
        pairs += n * (0 + 0.5 * n)
        if n >= target:
            done += 1
    st[S_NCH] = nch
    fs[F_PSTART] = fs[F_NOW]
    if nch:
        dt = _step_time(pc, ptok, dec_n, st[S_CBASE] + dec_n * step, pairs, done)
        if (cfg[C_MERGE] and done == npref and (st[S_FHN] == 0 or fh[0, 0] > step + 1)
                and _plan_merged(pc, rq, hist, st, fs, wq, cfg, ch_r, fh, q, empty, dt)):
            merged: float = fs[F_PEND]
            return merged
        st[S_KIND], st[S_PSTEPS] = _STEP, 1
        end: float = fs[F_NOW] + dt
        fs[F_PEND] = end
        return end
    return _plan_run(pc, rq, hist, st, fs, cfg, fh, free, need)


def _plan_merged(pc: _F, rq: _I, hist: _I, st: _I, fs: _F, wq: _I, cfg: _I, ch_r: _I, fh: _I, q: _I,
                 empty: bool, dt: float) -> bool:
    """``Engine._plan_merged``: this prefill step and the decode run after it as one "steprun", if exact."""
    bs = cfg[C_BS]
    dec_n = st[S_DECN]
    s1 = st[S_STEP] + 1
    used1 = st[S_USED] + (hist[_mod(-(s1 - 1), bs)] if dec_n else 0)
    need1 = hist[_mod(-s1, bs)] if dec_n else 0
    first = _NOT_DECODING
    if dec_n:
        _fh_clean(rq, st, fh)
        first = fh[0, 0]  # the live head: the next completion's step
    if first <= s1:
        return False
    cbase = st[S_CBASE]
    nch = st[S_NCH]
    for i in range(nch):
        r = ch_r[i]
        gen = rq[r, GEN] + 1
        if gen >= rq[r, OUTPUT]:
            return False
        target = rq[r, TARGET]
        if not target % bs:
            need1 += 1
        cbase += target - s1
        f = s1 + rq[r, OUTPUT] - gen
        if f < first:
            first = f
    B = dec_n + nch
    total = cfg[C_TOTAL]
    free1 = total - used1 - need1
    if free1 < 0:
        return False
    if st[S_NRUN] < cfg[C_SEQS] and cfg[C_BUDGET] > B:
        if st[S_WCOUNT]:
            if -(-rq[wq[st[S_WHEAD]], TARGET] // bs) <= free1:
                return False
        elif (q[Q_ON] or cfg[C_POOL]) and not empty:
            return False
    k = first - s1
    if free1 + need1 < B * -(-k // bs):
        for i in range(nch):  # the histogram the step leaves (undone below: nothing is allocated)
            hist[_mod(rq[ch_r[i], TARGET] - s1, bs)] += 1
        k = min(k, _failure_steps(total - used1, B, hist, bs, s1))
        for i in range(nch):
            hist[_mod(rq[ch_r[i], TARGET] - s1, bs)] -= 1
    now = fs[F_NOW]
    mid = now + dt
    now1 = now + (mid - now)
    st[S_KIND] = _SRUN
    fs[F_MID] = mid
    fs[F_PEND] = now1 + _decode_run_time(pc, B, cbase + B * s1, k)
    st[S_PSTEPS] = 1 + k
    st[S_USED1] = used1
    st[S_FREE1] = free1
    st[S_OPEN] = 1 if empty else 0
    return True


def _finish_min(rq: _I, st: _I) -> int:
    """Step of the next completion among the decoding sequences."""
    best = _NOT_DECODING
    r = st[S_RHEAD]
    while r >= 0:
        if rq[r, DEC] and rq[r, FIN] < best:
            best = rq[r, FIN]
        r = rq[r, RNEXT]
    return int(best) if best < _NOT_DECODING else int(st[S_STEP]) + 1


def _plan_run(pc: _F, rq: _I, hist: _I, st: _I, fs: _F, cfg: _I, fh: _I, free: int, need: int) -> float:
    """``Engine._plan_run``: a decode run to the next completion or failing block allocation, or idle."""
    dec_n = st[S_DECN]
    if not dec_n:
        st[S_KIND], st[S_PSTEPS] = _IDLE, 0
        fs[F_PEND] = math.inf
        return math.inf
    step, bs = st[S_STEP], cfg[C_BS]
    if cfg[C_MERGE]:  # the finish heap's live head (``Engine.finish_heap_min``)
        _fh_clean(rq, st, fh)
        k = fh[0, 0] - step
    else:
        k = _finish_min(rq, st) - step
    if free + need < dec_n * -(-k // bs):
        k = min(k, _failure_steps(cfg[C_TOTAL] - st[S_USED], dec_n, hist, bs, step))
    if k < 1:
        k = 1
    dt = _decode_run_time(pc, dec_n, st[S_CBASE] + dec_n * step, k)
    st[S_KIND], st[S_PSTEPS] = _RUN, k
    end: float = fs[F_NOW] + dt
    fs[F_PEND] = end
    return end


def _advance(hist: _I, st: _I, fs: _F, bs: int, k: int, dt: float) -> None:
    """k decode-only steps (or the decode part of a prefill step) taking dt seconds."""
    dec_n = st[S_DECN]
    step = st[S_STEP]
    fs[F_KVS] += st[S_USED] * dt
    if dec_n:
        if k == 1:
            st[S_USED] += hist[_mod(-step, bs)]
        else:
            full = k // bs
            part = k - full * bs
            st[S_USED] += full * dec_n
            if part:
                st[S_USED] += _partial_need(hist, bs, step, part)
    st[S_STEP] = step + k
    fs[F_BUSY] += dt
    fs[F_NOW] += dt


def _end_prefill(rq: _I, rt: _F, hist: _I, st: _I, fs: _F, cfg: _I, ch_r: _I, ch_n: _I,
                 done_ev: _I, fh: _I) -> None:
    """The prefill chunks of the step just ended are computed (``Engine._end_prefill``)."""
    step, now, bs = st[S_STEP], fs[F_NOW], cfg[C_BS]
    for i in range(st[S_NCH]):
        r, n = ch_r[i], ch_n[i]
        if not rq[r, ALIVE]:
            continue
        c = rq[r, COMPUTED] = rq[r, COMPUTED] + n
        target = rq[r, TARGET]
        if c < target:
            continue
        if rq[r, GEN] == 0:
            rt[r, FIRST] = now
        g = rq[r, GEN] = rq[r, GEN] + 1
        if g >= rq[r, OUTPUT]:
            st[S_USED] -= rq[r, BLOCKS]
            rq[r, BLOCKS] = 0
            rq[r, ALIVE] = 0
            _run_remove(rq, st, r)
            done_ev[st[S_NDONE_EV]] = r
            st[S_NDONE_EV] += 1
        else:
            rq[r, DEC] = 1
            rq[r, ESTEP] = step
            rq[r, ECTX] = target
            res = rq[r, RES] = _mod(target - step, bs)
            st[S_DECN] += 1
            st[S_CBASE] += target - step
            hist[res] += 1
            st[S_SEQ] += 1
            rq[r, SEQ] = st[S_SEQ]
            fin = rq[r, FIN] = step + (rq[r, OUTPUT] - g)
            if cfg[C_MERGE]:
                _fh_push(fh, st, fin, st[S_SEQ], r)


def _completions(rq: _I, hist: _I, st: _I, bs: int, done_ev: _I) -> None:
    """Decoding sequences that complete at this boundary, in the order they entered decoding."""
    step = st[S_STEP]
    first = st[S_NDONE_EV]
    last = first
    x = st[S_RHEAD]
    while x >= 0:  # those completing now, sorted by entry into decoding (the engine's heap order)
        r = x
        x = rq[x, RNEXT]
        if rq[r, DEC] and rq[r, FIN] == step:
            j = last
            while j > first and rq[done_ev[j - 1], SEQ] > rq[r, SEQ]:
                done_ev[j] = done_ev[j - 1]
                j -= 1
            done_ev[j] = r
            last += 1
    for k in range(first, last):
        _complete_decoding(rq, hist, st, bs, done_ev[k])
    st[S_NDONE_EV] = last


def _complete_decoding(rq: _I, hist: _I, st: _I, bs: int, r: int) -> None:
    """A decoding sequence completes at this boundary (``Engine.fire``'s release of it)."""
    step = st[S_STEP]
    es = rq[r, ESTEP]
    st[S_USED] -= -(-(rq[r, ECTX] + (step - es)) // bs)
    rq[r, DEC] = 0
    st[S_DECN] -= 1
    st[S_CBASE] -= rq[r, ECTX] - es
    hist[rq[r, RES]] -= 1
    rq[r, GEN] += step - es
    rq[r, BLOCKS] = 0
    rq[r, ALIVE] = 0
    _run_remove(rq, st, r)


def _completions_heap(rq: _I, hist: _I, st: _I, bs: int, done_ev: _I, fh: _I) -> None:
    """``_completions`` from the finish heap, as ``Engine.fire`` pops it: stale entries dropped on the way, the
    live ones of this step in the order they entered decoding, up to the first live one of a later step."""
    step, node = st[S_STEP], st[S_INDEX]
    while st[S_FHN]:
        r = fh[0, 2]
        if not (rq[r, ALIVE] and rq[r, DEC] and rq[r, SEQ] == fh[0, 1] and rq[r, NODE] == node):
            _fh_pop(fh, st)
            continue
        if fh[0, 0] != step:
            break
        _fh_pop(fh, st)
        _complete_decoding(rq, hist, st, bs, r)
        done_ev[st[S_NDONE_EV]] = r
        st[S_NDONE_EV] += 1


def _fire(rq: _I, rt: _F, hist: _I, st: _I, fs: _F, cfg: _I, ch_r: _I, ch_n: _I, done_ev: _I,
          fh: _I) -> None:
    """``Engine.fire``: apply the planned step, run or "steprun"; its completions go to ``done_ev``."""
    st[S_NDONE_EV] = 0
    kind = st[S_KIND]
    if kind == _IDLE:
        fs[F_PSTART] = fs[F_NOW]
        fs[F_PEND] = math.inf
        return
    bs = cfg[C_BS]
    if kind == _RUN:
        _advance(hist, st, fs, bs, st[S_PSTEPS], fs[F_PEND] - fs[F_PSTART])
    else:  # the prefill step: all of a "step", the first of a "steprun"
        _advance(hist, st, fs, bs, 1, (fs[F_PEND] if kind == _STEP else fs[F_MID]) - fs[F_PSTART])
        _end_prefill(rq, rt, hist, st, fs, cfg, ch_r, ch_n, done_ev, fh)
        if kind == _SRUN:  # the decode run planned after the step (nothing completes at it)
            _advance(hist, st, fs, bs, st[S_PSTEPS] - 1, fs[F_PEND] - fs[F_NOW])
    if st[S_DECN]:
        if cfg[C_MERGE]:
            _completions_heap(rq, hist, st, bs, done_ev, fh)
        else:
            _completions(rq, hist, st, bs, done_ev)
    st[S_KIND], st[S_PSTEPS], st[S_NCH] = _IDLE, 0, 0
    fs[F_PSTART] = fs[F_NOW]
    fs[F_PEND] = math.inf


def _set_idle(st: _I, fs: _F) -> None:
    st[S_KIND], st[S_PSTEPS], st[S_NCH] = _IDLE, 0, 0
    fs[F_PSTART], fs[F_PEND] = fs[F_NOW], math.inf


def _interrupt(pc: _F, rq: _I, rt: _F, hist: _I, st: _I, fs: _F, cfg: _I, ch_r: _I, ch_n: _I,
               done_ev: _I, fh: _I, t: float) -> bool:
    """``Engine.interrupt`` then ``at_boundary``: stop at the first boundary at or after ``t``."""
    kind = st[S_KIND]
    if kind == _IDLE:
        fs[F_NOW] = max(fs[F_NOW], t)
        return True
    if t <= fs[F_PSTART]:
        _set_idle(st, fs)
        return True
    if kind == _SRUN:
        if t < fs[F_MID]:  # cut back to its prefill step (``Engine.cut_to_step``)
            st[S_KIND], st[S_PSTEPS] = _STEP, 1
            fs[F_PEND] = fs[F_MID]
            return False
        if t >= fs[F_PEND]:
            return False
        end, k = fs[F_PEND], st[S_PSTEPS] - 1
        st[S_KIND] = _STEP  # the prefill step applied as its own fire() (no event: nothing completes at its end)
        fs[F_PEND] = fs[F_MID]
        _fire(rq, rt, hist, st, fs, cfg, ch_r, ch_n, done_ev, fh)
        st[S_KIND], st[S_PSTEPS] = _RUN, k
        fs[F_PSTART], fs[F_PEND] = fs[F_NOW], end
        if t <= fs[F_PSTART]:
            _set_idle(st, fs)
            return True
        kind = _RUN
    if kind == _STEP or t >= fs[F_PEND]:
        return False
    dec_n = st[S_DECN]
    x0 = st[S_CBASE] + dec_n * st[S_STEP]
    j = _steps_within(pc, dec_n, x0, t - fs[F_PSTART])
    if j >= st[S_PSTEPS]:
        return False
    if j > 0:
        _advance(hist, st, fs, cfg[C_BS], j, _decode_run_time(pc, dec_n, x0, j))
    _set_idle(st, fs)
    return True


def _may_take(st: _I, fs: _F, t: float) -> int:
    """``Engine.may_take``: 1 yes (at a boundary), 0 no (in a prefill step), 2 if the head fits (``_can_admit``)."""
    kind = st[S_KIND]
    if kind == _IDLE:
        return 1
    if kind == _STEP or (kind == _SRUN and t < fs[F_MID]):
        return 0
    return 2


def _can_admit(hist: _I, st: _I, cfg: _I, tokens: int) -> bool:
    """``Engine.can_admit``: whether a prompt of ``tokens`` would be admitted at the next boundary."""
    if st[S_KIND] == _SRUN:
        free = st[S_FREE1]
    else:
        free = cfg[C_TOTAL] - st[S_USED] - (hist[_mod(-st[S_STEP], cfg[C_BS])] if st[S_DECN] else 0)
    return bool(st[S_WCOUNT] == 0 and st[S_NRUN] < cfg[C_SEQS] and -(-tokens // cfg[C_BS]) <= free)


def _load(st: _I, fs: _F, t: float) -> int:
    """``Engine.load``: KV blocks in use; of a "steprun" past its prefill step, as that step left them."""
    if st[S_KIND] == _SRUN and t >= fs[F_MID]:
        return int(st[S_USED1])
    return int(st[S_USED])


def _counters(st: _I, fs: _F, t: float) -> tuple[float, float]:
    """``Engine.counters``' (busy seconds, KV block-seconds) up to ``t``, a plan in flight counted from its start."""
    b, k = fs[F_BUSY], fs[F_KVS]
    if st[S_KIND] != _IDLE and fs[F_PSTART] < t:
        start, used = fs[F_PSTART], st[S_USED]
        if st[S_KIND] == _SRUN and t > fs[F_MID]:
            d = fs[F_MID] - start
            b += d
            k += used * d
            start, used = start + d, st[S_USED1]
        d = min(t, fs[F_PEND]) - start
        b += d
        k += used * d
    return b, k


def _on_plan(pc: _F, rq: _I, st: _I, fs: _F, cfg: _I, ch_r: _I, ch_n: _I, end: float) -> None:
    """The saturated run's statistics of a plan about to fire (``capacity._Saturated.on_plan``)."""
    if st[S_DONE] < cfg[C_WARM]:
        return
    fs[F_BUSY_SEQS] += st[S_NRUN] * (end - fs[F_NOW])
    nch = st[S_NCH]
    if nch:
        ptok = 0
        fin = 0
        for i in range(nch):
            r, m = ch_r[i], ch_n[i]
            ptok += m
            if rq[r, COMPUTED] + m >= rq[r, TARGET]:
                fin += 1
        dec = st[S_DECN]
        cx = st[S_CBASE] + dec * st[S_STEP]
        fs[F_TOK_COST] += _step_time(pc, ptok, dec, cx, 0.0, fin) - _step_time(pc, 0, dec, cx, 0.0, 0)
        fs[F_TOK_N] += ptok


def _launch(rq: _I, rt: _F, st: _I, wq: _I, sizes: _I, t: float) -> None:
    """The next request of ``sizes`` enters the local queue at ``t``."""
    r = st[S_STARTED]
    st[S_STARTED] += 1
    rq[r, PROMPT] = sizes[r, 0]
    rq[r, OUTPUT] = sizes[r, 1]
    rq[r, TARGET] = sizes[r, 0]
    rt[r, ENTER] = t
    _wq_push(wq, st, r, False)


def _kernel(pc: _F, cfg: _I, sizes: _I, arrivals: _F, pool: _I, rq: _I, rt: _F, order: _I, st: _I,
            fs: _F) -> None:
    """``driver.drive`` of one engine: plan, fire at the planned end, let arrivals in at their times.

    Results are left in ``rq`` (preemptions), ``rt`` (times), ``order`` (requests in completion
    order), ``st`` (status: 0 ran to the end, 1 went idle while work was expected) and ``fs``.
    """
    bs, n_arr = cfg[C_BS], arrivals.shape[0]
    hist = np.zeros(bs, np.int64)
    wq = np.zeros(rq.shape[0] + 1, np.int64)
    ch_r = np.zeros(cfg[C_SEQS] + 1, np.int64)
    ch_n = np.zeros(cfg[C_SEQS] + 1, np.int64)
    done_ev = np.zeros(cfg[C_SEQS] + 1, np.int64)
    fh = np.zeros((1, 3), np.int64)  # no merged plans: no finish heap
    q = np.zeros(_NQ, np.int64)  # no queue of the fleet's
    g = np.zeros(_NG0, np.int64)
    cqr = np.zeros((1, 2), np.int64)
    cqk = np.zeros(1)
    for _ in range(cfg[C_N0]):
        _launch(rq, rt, st, wq, sizes, 0.0)
    if st[S_DONE] >= cfg[C_NDONE]:
        return
    sched = _plan(pc, rq, rt, hist, st, fs, wq, cfg, pool, ch_r, ch_n, fh, q, g, cqr, cqk)
    ai = 0
    arr_t = arrivals[0] if n_arr else math.inf
    while sched < math.inf or arr_t < math.inf:
        if sched <= arr_t:  # a node's step end comes first at equal times
            if cfg[C_POOL]:
                _on_plan(pc, rq, st, fs, cfg, ch_r, ch_n, sched)
            _fire(rq, rt, hist, st, fs, cfg, ch_r, ch_n, done_ev, fh)
            for i in range(st[S_NDONE_EV]):
                r = done_ev[i]
                rt[r, DONE] = fs[F_NOW]
                order[st[S_DONE]] = r
                st[S_DONE] += 1
                if st[S_DONE] == cfg[C_WARM]:
                    fs[F_TSTART] = fs[F_NOW]
                if st[S_STARTED] < cfg[C_RELAUNCH]:
                    _launch(rq, rt, st, wq, sizes, fs[F_NOW])
                if st[S_DONE] >= cfg[C_NDONE]:
                    st[S_STOPPED] = 1
            if st[S_STOPPED]:
                return
            sched = _plan(pc, rq, rt, hist, st, fs, wq, cfg, pool, ch_r, ch_n, fh, q, g, cqr, cqk)
        elif _interrupt(pc, rq, rt, hist, st, fs, cfg, ch_r, ch_n, done_ev, fh, arrivals[ai]):
            _launch(rq, rt, st, wq, sizes, arrivals[ai])
            ai += 1
            sched = _plan(pc, rq, rt, hist, st, fs, wq, cfg, pool, ch_r, ch_n, fh, q, g, cqr, cqk)
            arr_t = arrivals[ai] if ai < n_arr else math.inf
        else:  # a step that is never cut: the arrival, and those after it, wait for its end
            arr_t = fs[F_PEND]
    st[S_STATUS] = 1


#: The helpers in the order numba compiles them (each before those that call it); the fleet kernel
#: (``sim._fleet_kernel``) compiles and calls the same ones.
HELPERS = ("_mod", "_step_time", "_decode_gpu_fixed", "_decode_fixed", "_decode_run_time", "_steps_within", "_partial_need",
           "_failure_steps", "_run_remove", "_run_append", "_release", "_wq_push", "_wq_pop", "_wq_remove", "_remove", "_preempt",
           "_cq_live", "_qh_less", "_qh_swap", "_qh_pop", "_cq_peek", "_cq_push", "_cq_take", "_next_admit", "_fh_less", "_fh_swap", "_fh_push", "_fh_pop", "_fh_clean",
           "_finish_min", "_plan_merged", "_plan_run", "_plan", "_advance", "_end_prefill",
           "_complete_decoding", "_completions", "_completions_heap", "_fire", "_set_idle", "_interrupt", "_may_take", "_can_admit", "_load", "_counters",
           "_on_plan", "_launch")

Kernel = Callable[..., None]
_COMPILED: list[Kernel | None] = []


def node_kernel() -> Kernel | None:
    """The compiled kernel, or None without numba (or with ``SOJOURN_NO_NUMBA`` set); compiled on first use
    and cached beside this module (``cache=True``)."""
    if not _COMPILED:
        _COMPILED.append(_compile())
    return _COMPILED[0]


def _compile() -> Kernel | None:
    # The helpers allocate nothing and run on every event: compiled without reference counting.
    return compile_kernel(globals(), HELPERS, counted_helpers=False)  # the kernel calls the compiled helpers


def available() -> bool:
    """Whether the compiled kernel is in use (numba importable and not switched off)."""
    return node_kernel() is not None


class NodeRun:
    """What ``run_node`` returns: per-request times and preemptions, completion order, and the run's totals."""

    def __init__(self, rq: _I, rt: _F, order: _I, st: _I, fs: _F) -> None:
        n = int(st[S_STARTED])
        self.prompt = rq[:n, PROMPT]
        self.output = rq[:n, OUTPUT]
        self.preemptions_of = rq[:n, PREEMPT]
        self.entered = rt[:n, ENTER]
        self.first_token = rt[:n, FIRST]
        self.done = rt[:n, DONE]
        self.order = order[: int(st[S_DONE])]
        self.preemptions = int(st[S_PREEMPT])
        self.now = float(fs[F_NOW])
        self.busy_seqs = float(fs[F_BUSY_SEQS])
        self.tok_cost = float(fs[F_TOK_COST])
        self.tok_n = float(fs[F_TOK_N])
        self.t_start = float(fs[F_TSTART])


def run_node(perf: Any, kv_blocks: int, block_size: int, max_num_seqs: int, max_num_batched_tokens: int, *,
             sizes: Any = None, initial: int = 0, arrivals: Any = None, relaunch: int = 0, until_done: int,
             pool: Any = None, warm: int = 0, compiled: bool = True) -> NodeRun:
    """Run one engine node alone as ``driver.drive`` runs ``engine.Engine``, in the kernel.

    ``sizes``: (prompt, output) rows of the requests sent, in sending order: ``initial`` of
    them queued at time 0, then one at each time of ``arrivals`` (sorted), and, while fewer
    than ``relaunch`` have been sent, one more at each completion (a closed loop). ``pool``:
    (prompt, output) rows of a central FIFO queue cycled through without end (the saturated
    node). The run stops at the ``until_done``-th completion (completions of the same step after
    it are still recorded, as ``drive`` hands them on). ``compiled=False`` runs the kernel's loop
    in Python (its helpers too while numba has not compiled them in this process; with
    ``SOJOURN_NO_NUMBA=1`` all of it). Raises RuntimeError when the node goes idle while
    completions are still expected (as ``drive``).
    """
    sz = np.zeros((0, 2), np.int64) if sizes is None else np.ascontiguousarray(sizes, dtype=np.int64).reshape(-1, 2)
    arr = np.zeros(0) if arrivals is None else np.ascontiguousarray(arrivals, dtype=np.float64)
    pl = np.zeros((0, 2), np.int64) if pool is None else np.ascontiguousarray(pool, dtype=np.int64).reshape(-1, 2)
    n = len(sz) + (until_done + max_num_seqs + 1 if len(pl) else 0)
    cfg = np.array([kv_blocks, block_size, max_num_seqs, max_num_batched_tokens, initial, relaunch, until_done,
                    len(pl), warm, 0], dtype=np.int64)
    rq = np.zeros((n, _NRQ), np.int64)
    rt = np.full((n, _NRT), math.nan)
    order = np.zeros(until_done + max_num_seqs + 1, np.int64)  # a stopping fire may complete several
    st = np.zeros(_NST, np.int64)
    st[S_RHEAD] = st[S_RTAIL] = -1
    fs = np.zeros(_NFS)
    fs[F_TSTART] = math.nan
    kernel = node_kernel() if compiled else None
    (kernel or _kernel)(perf_constants(perf), cfg, sz, arr, pl, rq, rt, order, st, fs)
    if st[S_STATUS]:
        raise RuntimeError("the node went idle while work was expected")
    return NodeRun(rq, rt, order, st, fs)
