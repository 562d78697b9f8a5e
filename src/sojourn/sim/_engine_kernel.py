"""One engine node driven alone, as a compiled kernel (numba), with the Python engine's arithmetic.

``engine.Engine`` run by ``driver.drive`` is the readable loop and the tested reference;
this is the same node and the same driver in the array style numba compiles: requests
are rows of an int64 table (prompt, output, prefill target, tokens computed, tokens
generated, blocks, decoding entry, residue, ...), the running set an array in admission
order, the waiting queue a ring buffer, the decoding set's residue histogram an array,
and the perf model the nine constants ``PerfModel.step_time`` uses for a dense model.
Every float operation is the engine's and ``PerfModel``'s, in the same order, so first
token and completion times and preemption counts are the engine's
(``tests/test_engine_kernel.py``).

What is covered: ``drive`` without merged steps (its users never set ``merge_steps``),
requests arriving at given times into the local queue (``arrivals``), a closed loop that
sends the next request as one completes (``relaunch``), and a central FIFO queue cycling
through a request pool with head-of-line blocking (``pool``, the saturated node of
``sojourn.fast.capacity``, whose per-plan statistics the kernel also keeps). Not covered
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
_NRQ = 14
# Columns of the request times ``rt`` (float64): entered (arrival, or admission from a pool), first token, done.
ENTER, FIRST, DONE = range(3)
# Integer state ``st``.
(S_STEP, S_USED, S_DECN, S_CBASE, S_SEQ, S_NRUN, S_WHEAD, S_WCOUNT, S_KIND, S_PSTEPS, S_NCH, S_STARTED,
 S_DONE, S_PREEMPT, S_NEXTPOOL, S_NDONE_EV, S_STOPPED, S_STATUS) = range(18)
_NST = 18
# Float state ``fs``: the clock, the plan's start and end; the capacity run's statistics.
F_NOW, F_PSTART, F_PEND, F_BUSY_SEQS, F_TOK_COST, F_TOK_N, F_TSTART = range(7)
_NFS = 7
#: The running set's "last step" of a request not decoding (above every step a run reaches).
_NOT_DECODING = 1 << 62
# Plan kinds.
_IDLE, _STEP, _RUN = 0, 1, 2
# Config ``cfg``: total blocks, block size, max sequences, token budget, requests queued at the start,
# launches a closed loop may reach (0: no relaunch), completions to run, pool size (0: no pool), warm-up.
C_TOTAL, C_BS, C_SEQS, C_BUDGET, C_N0, C_RELAUNCH, C_NDONE, C_POOL, C_WARM = range(9)
# Perf constants ``pc``.
P_SO, P_SQ, P_TOK, P_LOGIT, P_W, P_PAIR, P_CTX, P_CFIX, P_CTOK = range(9)


def perf_constants(perf: Any) -> _F:
    """The constants of ``PerfModel.step_time`` for a dense full-attention model, in the kernel's order."""
    p = perf.profile
    return np.array([p.step_overhead_s, p.seq_overhead_s, perf._c_tok, perf._c_logit, perf._w_time, perf._c_pair,
                     perf._c_ctx, perf._comm_fixed, perf._comm_tok], dtype=np.float64)


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
    lin = max(pc[P_TOK] * T + pc[P_LOGIT] * sampled, pc[P_W])
    t: float = (pc[P_SO] + pc[P_SQ] * sampled + lin + pc[P_PAIR] * pairs + pc[P_CTX] * ctx + pc[P_CFIX]
                + pc[P_CTOK] * T)
    return t


def _decode_fixed(pc: _F, seqs: int) -> float:
    T = seqs
    lin = max(pc[P_TOK] * T + pc[P_LOGIT] * seqs, pc[P_W])
    t: float = pc[P_SO] + pc[P_SQ] * seqs + lin + pc[P_CFIX] + pc[P_CTOK] * T
    return t


def _decode_run_time(pc: _F, seqs: int, context0: int, steps: int) -> float:
    if steps <= 0 or seqs <= 0:
        return 0.0
    a = _decode_fixed(pc, seqs)
    t: float = steps * a + pc[P_CTX] * (steps * context0 + seqs * steps * (steps - 1) / 2.0)
    return t


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


def _run_remove(run: _I, st: _I, r: int) -> None:
    """Drop request ``r`` from the running array, keeping admission order."""
    n = st[S_NRUN]
    i = 0
    while run[0, i] != r:
        i += 1
    for j in range(i, n - 1):
        run[0, j] = run[0, j + 1]
        run[1, j] = run[1, j + 1]
    st[S_NRUN] = n - 1


def _release(rq: _I, run: _I, hist: _I, st: _I, bs: int, r: int) -> None:
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
    _run_remove(run, st, r)


def _wq_push(wq: _I, st: _I, r: int, front: bool) -> None:
    cap = wq.shape[0]
    if front:
        st[S_WHEAD] = (st[S_WHEAD] - 1 + cap) % cap
        wq[st[S_WHEAD]] = r
    else:
        wq[(st[S_WHEAD] + st[S_WCOUNT]) % cap] = r
    st[S_WCOUNT] += 1


def _preempt(rq: _I, run: _I, hist: _I, st: _I, wq: _I, bs: int) -> None:
    """Preempt the newest running request by recompute (``Engine._preempt``)."""
    r = run[0, st[S_NRUN] - 1]
    _release(rq, run, hist, st, bs, r)
    rq[r, TARGET] = rq[r, PROMPT] + rq[r, GEN]
    rq[r, COMPUTED] = 0
    rq[r, PREEMPT] += 1
    st[S_PREEMPT] += 1
    _wq_push(wq, st, r, True)


def _next_admit(rq: _I, rt: _F, st: _I, fs: _F, wq: _I, cfg: _I, pool: _I, free: int) -> int:
    """The next request to admit with ``free`` blocks: the local queue's head, else the pool's; -1 if none fits."""
    bs = cfg[C_BS]
    if st[S_WCOUNT]:
        r: int = wq[st[S_WHEAD]]
        if -(-rq[r, TARGET] // bs) > free:
            return -1
        st[S_WHEAD] = (st[S_WHEAD] + 1) % wq.shape[0]
        st[S_WCOUNT] -= 1
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


def _plan(pc: _F, rq: _I, rt: _F, run: _I, hist: _I, st: _I, fs: _F, wq: _I, cfg: _I, pool: _I, ch_r: _I,
          ch_n: _I) -> float:
    """``Engine.plan``: preempt until this step's decode blocks fit, go on with prefills, admit, plan."""
    step, bs, total = st[S_STEP], cfg[C_BS], cfg[C_TOTAL]
    need = hist[_mod(-step, bs)] if st[S_DECN] else 0
    while st[S_DECN] and st[S_USED] + need > total:
        _preempt(rq, run, hist, st, wq, bs)
        need = hist[_mod(-step, bs)] if st[S_DECN] else 0
    dec_n = st[S_DECN]
    budget = cfg[C_BUDGET] - dec_n
    free = total - st[S_USED] - need
    ptok = 0
    pairs = 0.0
    done = 0
    nch = 0
    first = st[S_NRUN]  # the requests still prefilling are the newest (a suffix): prefills end in admission order
    while first > 0 and run[1, first - 1] == _NOT_DECODING:
        first -= 1
    for i in range(first, st[S_NRUN]):
        r = run[0, i]
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
    while budget > 0 and st[S_NRUN] < cfg[C_SEQS]:
        r = _next_admit(rq, rt, st, fs, wq, cfg, pool, free)
        if r < 0:
            break
        target = rq[r, TARGET]
        b = -(-target // bs)
        rq[r, BLOCKS] = b
        rq[r, COMPUTED] = 0
        rq[r, ALIVE] = 1
        st[S_USED] += b
        free -= b
        run[0, st[S_NRUN]] = r
        run[1, st[S_NRUN]] = _NOT_DECODING
        st[S_NRUN] += 1
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
        st[S_KIND], st[S_PSTEPS] = _STEP, 1
        end: float = fs[F_NOW] + dt
        fs[F_PEND] = end
        return end
    return _plan_run(pc, rq, run, hist, st, fs, cfg, free, need)


def _finish_min(rq: _I, run: _I, st: _I) -> int:
    """Step of the next completion among the decoding sequences."""
    best = _NOT_DECODING
    for i in range(st[S_NRUN]):
        if run[1, i] < best:
            best = run[1, i]
    return int(best) if best < _NOT_DECODING else int(st[S_STEP]) + 1


def _plan_run(pc: _F, rq: _I, run: _I, hist: _I, st: _I, fs: _F, cfg: _I, free: int, need: int) -> float:
    """``Engine._plan_run``: a decode run to the next completion or failing block allocation, or idle."""
    dec_n = st[S_DECN]
    if not dec_n:
        st[S_KIND], st[S_PSTEPS] = _IDLE, 0
        fs[F_PEND] = math.inf
        return math.inf
    step, bs = st[S_STEP], cfg[C_BS]
    k = _finish_min(rq, run, st) - step
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
    fs[F_NOW] += dt


def _end_prefill(rq: _I, rt: _F, run: _I, hist: _I, st: _I, fs: _F, bs: int, ch_r: _I, ch_n: _I,
                 done_ev: _I) -> None:
    """The prefill chunks of the step just ended are computed (``Engine._end_prefill``)."""
    step, now = st[S_STEP], fs[F_NOW]
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
            _run_remove(run, st, r)
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
            i = st[S_NRUN] - 1  # its place in the running set: among the newest (still prefilling)
            while run[0, i] != r:
                i -= 1
            run[1, i] = fin


def _completions(rq: _I, run: _I, hist: _I, st: _I, bs: int, done_ev: _I) -> None:
    """Decoding sequences that complete at this boundary, in the order they entered decoding."""
    step = st[S_STEP]
    first = st[S_NDONE_EV]
    last = first
    for i in range(st[S_NRUN]):  # those completing now, sorted by entry into decoding (the engine's heap order)
        if run[1, i] == step:
            r = run[0, i]
            j = last
            while j > first and rq[done_ev[j - 1], SEQ] > rq[r, SEQ]:
                done_ev[j] = done_ev[j - 1]
                j -= 1
            done_ev[j] = r
            last += 1
    for k in range(first, last):
        r = done_ev[k]
        es = rq[r, ESTEP]
        st[S_USED] -= -(-(rq[r, ECTX] + (step - es)) // bs)
        rq[r, DEC] = 0
        st[S_DECN] -= 1
        st[S_CBASE] -= rq[r, ECTX] - es
        hist[rq[r, RES]] -= 1
        rq[r, GEN] += step - es
        rq[r, BLOCKS] = 0
        rq[r, ALIVE] = 0
        _run_remove(run, st, r)
    st[S_NDONE_EV] = last


def _fire(rq: _I, rt: _F, run: _I, hist: _I, st: _I, fs: _F, cfg: _I, ch_r: _I, ch_n: _I, done_ev: _I) -> None:
    """``Engine.fire``: apply the planned step or run; its completions go to ``done_ev``."""
    st[S_NDONE_EV] = 0
    kind = st[S_KIND]
    if kind == _IDLE:
        fs[F_PSTART] = fs[F_NOW]
        fs[F_PEND] = math.inf
        return
    bs = cfg[C_BS]
    k = st[S_PSTEPS] if kind == _RUN else 1
    _advance(hist, st, fs, bs, k, fs[F_PEND] - fs[F_PSTART])
    if kind == _STEP:
        _end_prefill(rq, rt, run, hist, st, fs, bs, ch_r, ch_n, done_ev)
    if st[S_DECN]:
        _completions(rq, run, hist, st, bs, done_ev)
    st[S_KIND], st[S_PSTEPS], st[S_NCH] = _IDLE, 0, 0
    fs[F_PSTART] = fs[F_NOW]
    fs[F_PEND] = math.inf


def _interrupt(pc: _F, hist: _I, st: _I, fs: _F, cfg: _I, t: float) -> bool:
    """``Engine.interrupt`` then ``at_boundary``: stop at the first boundary at or after ``t``."""
    kind = st[S_KIND]
    if kind == _IDLE:
        fs[F_NOW] = max(fs[F_NOW], t)
        return True
    if t <= fs[F_PSTART]:
        st[S_KIND], st[S_PSTEPS], st[S_NCH] = _IDLE, 0, 0
        fs[F_PSTART], fs[F_PEND] = fs[F_NOW], math.inf
        return True
    if kind == _STEP or t >= fs[F_PEND]:
        return False
    dec_n = st[S_DECN]
    x0 = st[S_CBASE] + dec_n * st[S_STEP]
    j = _steps_within(pc, dec_n, x0, t - fs[F_PSTART])
    if j >= st[S_PSTEPS]:
        return False
    if j > 0:
        _advance(hist, st, fs, cfg[C_BS], j, _decode_run_time(pc, dec_n, x0, j))
    st[S_KIND], st[S_PSTEPS], st[S_NCH] = _IDLE, 0, 0
    fs[F_PSTART], fs[F_PEND] = fs[F_NOW], math.inf
    return True


def _on_plan(pc: _F, rq: _I, run: _I, st: _I, fs: _F, cfg: _I, ch_r: _I, ch_n: _I, end: float) -> None:
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
    run = np.zeros((2, cfg[C_SEQS] + 1), np.int64)  # the running requests, admission order; their last steps
    hist = np.zeros(bs, np.int64)
    wq = np.zeros(rq.shape[0] + 1, np.int64)
    ch_r = np.zeros(cfg[C_SEQS] + 1, np.int64)
    ch_n = np.zeros(cfg[C_SEQS] + 1, np.int64)
    done_ev = np.zeros(cfg[C_SEQS] + 1, np.int64)
    for _ in range(cfg[C_N0]):
        _launch(rq, rt, st, wq, sizes, 0.0)
    if st[S_DONE] >= cfg[C_NDONE]:
        return
    sched = _plan(pc, rq, rt, run, hist, st, fs, wq, cfg, pool, ch_r, ch_n)
    ai = 0
    arr_t = arrivals[0] if n_arr else math.inf
    while sched < math.inf or arr_t < math.inf:
        if sched <= arr_t:  # a node's step end comes first at equal times
            if cfg[C_POOL]:
                _on_plan(pc, rq, run, st, fs, cfg, ch_r, ch_n, sched)
            _fire(rq, rt, run, hist, st, fs, cfg, ch_r, ch_n, done_ev)
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
            sched = _plan(pc, rq, rt, run, hist, st, fs, wq, cfg, pool, ch_r, ch_n)
        elif _interrupt(pc, hist, st, fs, cfg, arrivals[ai]):
            _launch(rq, rt, st, wq, sizes, arrivals[ai])
            ai += 1
            sched = _plan(pc, rq, rt, run, hist, st, fs, wq, cfg, pool, ch_r, ch_n)
            arr_t = arrivals[ai] if ai < n_arr else math.inf
        else:  # a step that is never cut: the arrival, and those after it, wait for its end
            arr_t = fs[F_PEND]
    st[S_STATUS] = 1


_HELPERS = ("_mod", "_step_time", "_decode_fixed", "_decode_run_time", "_steps_within", "_partial_need",
            "_failure_steps", "_run_remove", "_release", "_wq_push", "_preempt", "_next_admit", "_plan",
            "_finish_min", "_plan_run", "_advance", "_end_prefill", "_completions", "_fire", "_interrupt",
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
    return compile_kernel(globals(), _HELPERS)  # the kernel calls the compiled helpers


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
                    len(pl), warm], dtype=np.int64)
    rq = np.zeros((n, _NRQ), np.int64)
    rt = np.full((n, 3), math.nan)
    order = np.zeros(until_done + max_num_seqs + 1, np.int64)  # a stopping fire may complete several
    st = np.zeros(_NST, np.int64)
    fs = np.zeros(_NFS)
    fs[F_TSTART] = math.nan
    kernel = node_kernel() if compiled else None
    (kernel or _kernel)(perf_constants(perf), cfg, sz, arr, pl, rq, rt, order, st, fs)
    if st[S_STATUS]:
        raise RuntimeError("the node went idle while work was expected")
    return NodeRun(rq, rt, order, st, fs)
