"""The event-jumping engine against a plain step-by-step reference of the same scheduler.

The reference loops over every engine step (the obvious, slow implementation of the
rules in sojourn.sim.engine's docstring); the engine jumps over decode runs. Both
must produce the same first-token and completion times, to rounding, including
under chunked prefill, head-of-line blocking and preemption.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from sojourn.catalogue import default_catalogue
from sojourn.perf import build_perf_model
from sojourn.sim.engine import Engine, Request

PERF = build_perf_model(default_catalogue().model("llama-3.1-8b"), default_catalogue().gpu("h100-sxm"), check=False)


class _R:
    def __init__(self, rid, prompt, output):
        self.rid, self.prompt, self.output = rid, prompt, output
        self.generated = 0
        self.target = prompt
        self.computed = 0
        self.ctx = 0
        self.blocks = 0


def reference(arrivals, kv_blocks, bs, max_seqs, budget):
    """Step-by-step scheduler: returns {rid: (first_token_time, done_time)} and preemption count."""
    pending = deque(sorted(arrivals, key=lambda a: a[0]))
    waiting: deque[_R] = deque()
    running: list[_R] = []
    used = 0
    now = 0.0
    out: dict[int, list[float]] = {}
    preemptions = 0
    nblk = lambda n: -(-n // bs)  # noqa: E731
    while pending or waiting or running:
        if not waiting and not running:
            now = max(now, pending[0][0])
        while pending and pending[0][0] <= now:
            t, rid, p, o = pending.popleft()
            waiting.append(_R(rid, p, o))
            out[rid] = [math.nan, math.nan]
        decoders = [r for r in running if r.computed >= r.target]
        need = sum(1 for r in decoders if r.ctx % bs == 0)
        while decoders and used + need > kv_blocks:
            v = running.pop()
            used -= v.blocks
            v.blocks, v.computed, v.target, v.ctx = 0, 0, v.prompt + v.generated, 0
            waiting.appendleft(v)
            preemptions += 1
            decoders = [r for r in running if r.computed >= r.target]
            need = sum(1 for r in decoders if r.ctx % bs == 0)
        left = budget - len(decoders)
        chunks = []
        for r in running:
            if left <= 0:
                break
            if r.computed < r.target:
                n = min(r.target - r.computed, left)
                chunks.append((r, n))
                left -= n
        free = kv_blocks - used - need
        while left > 0 and len(running) < max_seqs and waiting and nblk(waiting[0].target) <= free:
            r = waiting.popleft()
            r.blocks = nblk(r.target)
            used += r.blocks
            free -= r.blocks
            running.append(r)
            n = min(r.target, left)
            chunks.append((r, n))
            left -= n
        if not chunks and not decoders:
            continue
        ptok = sum(n for _, n in chunks)
        pairs = sum(n * (r.computed + 0.5 * n) for r, n in chunks)
        done = sum(1 for r, n in chunks if r.computed + n >= r.target)
        ctx = sum(r.ctx for r in decoders)
        now += PERF.step_time(ptok, len(decoders), ctx, pairs, done)
        for r in decoders:
            r.ctx += 1
            r.generated += 1
            r.blocks = nblk(r.ctx)
        used += need
        for r, n in chunks:
            r.computed += n
            if r.computed >= r.target:
                if r.generated == 0:
                    out[r.rid][0] = now
                r.generated += 1
                r.ctx = r.target
        for r in list(running):
            if r.computed >= r.target and r.generated >= r.output:
                running.remove(r)
                used -= r.blocks
                out[r.rid][1] = now
        assert used == sum(r.blocks for r in running) and 0 <= used <= kv_blocks
    return out, preemptions


def drive(arrivals, kv_blocks, bs, max_seqs, budget):
    """The engine, fed the same arrivals through interrupt/enqueue/plan/fire."""
    eng = Engine(PERF, kv_blocks, bs, max_seqs, budget)
    pending = deque(sorted(arrivals, key=lambda a: a[0]))
    out: dict[int, list[float]] = {}
    eng.plan()
    while pending or eng.next_event_time() < math.inf:
        e = eng.next_event_time()
        if pending and pending[0][0] < e:
            t, rid, p, o = pending.popleft()
            eng.interrupt(t)
            eng.enqueue(Request(rid, p, o))
            out[rid] = [math.nan, math.nan]
            if eng.plan_.kind == "idle":
                eng.plan()
            continue
        for ev in eng.fire():
            if ev.kind == "first_token":
                out[ev.request.rid][0] = ev.time
            elif ev.kind == "done":
                out[ev.request.rid][1] = ev.time
        assert 0 <= eng.used <= eng.total_blocks
        while pending and pending[0][0] <= eng.now:
            t, rid, p, o = pending.popleft()
            eng.enqueue(Request(rid, p, o))
            out[rid] = [math.nan, math.nan]
        eng.plan()
    return out, eng.preemptions


def workload(seed, n, rate, prompt_max, out_max):
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1 / rate, n)
    gaps[rng.random(n) < 0.3] = 0.0  # some arrivals share a time stamp, as M^X batches do
    t = np.cumsum(gaps)
    p = rng.integers(1, prompt_max, n)
    o = rng.integers(1, out_max, n)
    return [(float(t[i]), i, int(p[i]), int(o[i])) for i in range(n)]


@pytest.mark.parametrize(
    "seed, n, rate, pmax, omax, blocks, bs, seqs, budget",
    [
        (1, 40, 5.0, 600, 300, 10_000, 16, 256, 8192),  # roomy: no preemption, jumps dominate
        (2, 60, 20.0, 2000, 400, 400, 16, 64, 512),  # chunked prefill, HOL blocking, preemption
        (3, 80, 50.0, 300, 200, 60, 8, 16, 256),  # very tight KV: many preemptions
        (4, 50, 2.0, 5000, 50, 2000, 16, 8, 1024),  # long prompts, short outputs, seq limit
        (5, 30, 100.0, 100, 150, 200, 1, 32, 64),  # block size 1
    ],
)
def test_engine_matches_step_by_step_reference(seed, n, rate, pmax, omax, blocks, bs, seqs, budget):
    arr = workload(seed, n, rate, pmax, omax)
    arr = [a for a in arr if -(-(a[2] + a[3]) // bs) <= blocks]  # both reject the never-fitting
    ref, ref_pre = reference(arr, blocks, bs, seqs, budget)
    got, got_pre = drive(arr, blocks, bs, seqs, budget)
    assert got_pre == ref_pre
    if blocks < 500:
        assert ref_pre > 0  # the tight cases do exercise preemption
    for rid, (ft, done) in ref.items():
        assert got[rid][0] == pytest.approx(ft, rel=1e-9, abs=1e-9), rid
        assert got[rid][1] == pytest.approx(done, rel=1e-9, abs=1e-9), rid
    assert not any(math.isnan(v) for pair in got.values() for v in pair)


def _fires(outputs, prompts, *, kv_blocks, max_seqs, merge, budget=2048):
    """Run requests queued at time 0 to the end: (events fired, steps, preemptions)."""
    eng = Engine(PERF, kv_blocks, 16, max_seqs, budget)
    eng.merge_steps = merge
    for i, (p, o) in enumerate(zip(prompts, outputs)):
        eng.enqueue(Request(i, p, o))
    fires = 0
    eng.plan()
    while eng.next_event_time() < math.inf:
        eng.fire()
        fires += 1
        eng.plan()
    return fires, eng.steps_done, eng.preemptions


def test_a_run_of_decode_steps_is_one_event():
    # 10 requests of 1000 output tokens: the engine must not take ~10,000 events.
    fires, steps, _ = _fires([1000 + i for i in range(10)], [100] * 10, kv_blocks=100_000, max_seqs=256,
                             merge=False, budget=8192)
    assert steps >= 1000
    assert fires < 30


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("max_seqs", [8, 64])
def test_events_do_not_grow_with_output_length(merge, max_seqs):
    # Issue 3, section 3: "cost per request must not grow with its output length". The
    # engine's work is per event, so the exact form of that claim is: scale every output
    # length 1x, 10x, 100x (same prompts, same order of completions, a cache that never
    # runs out) and the number of events stays exactly the same while the steps grow
    # about a hundredfold. Outputs are distinct, at least 60 apart, so no two
    # completions share a step at any scale, and 60 tokens are more than the prefill
    # phase spans, so the order of completions is the order of the outputs.
    rng = np.random.default_rng(7)
    n = 48
    prompts = rng.integers(100, 1500, n).tolist()
    outputs = (60 * (rng.permutation(n) + 1)).tolist()
    got = {k: _fires([o * k for o in outputs], prompts, kv_blocks=1_000_000, max_seqs=max_seqs, merge=merge) for k in (1, 10, 100)}
    fires = {k: v[0] for k, v in got.items()}
    assert all(v[2] == 0 for v in got.values())  # no preemption: the cache is roomy
    assert fires[1] == fires[10] == fires[100], fires
    assert fires[1] <= 2 * n  # about one event per request (at most a prefill step and a run)
    assert got[100][1] > 50 * got[1][1]  # while the steps did grow with the length
