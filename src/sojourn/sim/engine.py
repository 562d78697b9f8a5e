"""One node's engine: a vLLM-V1-like decode-first scheduler over a paged KV cache.

Each step, every running sequence that has finished its prefill decodes one token;
prefill chunks then fill the rest of the ``max_num_batched_tokens`` budget: first the
running requests still prefilling, then waiting requests in queue order while a
sequence slot and the blocks of the whole prompt are free (a prompt that does not
fit blocks the head of the queue). Each decoding sequence appends one token of KV
per step, a new block when it crosses a block boundary; when no block is free the
newest running request is preempted by recompute (its KV freed, back to the head
of the waiting queue, its prompt plus what it already generated prefilled again).

Speed by design: the engine never loops per token. While no prefill is in flight
and no waiting request can be admitted, the batch composition is fixed, so the
time of the next k decode steps is an arithmetic sum (``PerfModel.decode_run_time``)
and the engine jumps straight to the next event: a completion, the first block
allocation that fails, or an outside interruption. The jump is exact because
(1) every decoding sequence advances exactly one token per step, so completions
fall on known step indices; (2) a sequence needs a new block exactly when its
context is a multiple of the block size, a residue that is invariant along the run,
so a histogram of residues gives the blocks needed at every future step; and
(3) admission can only change at a step boundary after something frees room
(a completion) or something arrives (an interruption, which stops the run at the
first step boundary after the arrival, as vLLM's scheduler would see it).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Engine", "EngineEvent", "Request"]


class Request:
    """A request as the engine sees it. ``output`` is known to the simulator, not the scheduler."""

    __slots__ = (
        "rid",
        "prompt",
        "output",
        "generated",
        "computed",
        "target",
        "blocks",
        "enter_step",
        "enter_ctx",
        "residue",
        "epoch",
        "decoding",
        "alive",
        "node",
        "preemptions",
        "first_token_time",
        "payload",
    )

    def __init__(self, rid: int, prompt: int, output: int, payload: Any = None) -> None:
        self.rid = rid
        self.prompt = prompt
        self.output = output
        self.generated = 0  # output tokens produced so far (kept across preemption)
        self.computed = 0  # prefill tokens computed of the current target
        self.target = prompt  # tokens to prefill: the prompt, plus generated after a preemption
        self.blocks = 0
        self.enter_step = 0
        self.enter_ctx = 0
        self.residue = 0
        self.epoch = 0  # bumped on every entry into decoding; heap entries of older epochs are stale
        self.decoding = False
        self.alive = False
        self.node = -1
        self.preemptions = 0
        self.first_token_time = math.nan
        self.payload = payload

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Request({self.rid}, prompt={self.prompt}, output={self.output}, gen={self.generated})"


@dataclass(slots=True)
class EngineEvent:
    kind: str  # "first_token" | "done" | "preempted" | "rejected"
    request: Request
    time: float
    reason: str = ""


@dataclass
class _Plan:
    kind: str  # "step" (one step with prefill) | "run" (k decode-only steps) | "idle"
    start: float
    end: float
    steps: int = 0
    chunks: list = field(default_factory=list)  # (request, tokens) of the prefill step


class Engine:
    """The scheduler and KV cache of one replica, advanced event by event.

    Protocol used by the fleet and the closed-loop predictor: ``plan()`` at a step
    boundary fixes the next step or decode run and returns its end time;
    ``fire()`` applies it and returns the events; ``interrupt(t)`` stops a decode run
    at the first step boundary at or after ``t`` (so a new arrival can be admitted).
    """

    def __init__(
        self,
        perf: Any,
        kv_blocks: int,
        block_size: int,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        source: Callable[[Engine, int], Request | None] | None = None,
        index: int = 0,
    ) -> None:
        if max_num_batched_tokens < 1 or max_num_seqs < 1 or kv_blocks < 1 or block_size < 1:
            raise ValueError("engine sizes must be positive")
        self.perf = perf
        self.total_blocks = int(kv_blocks)
        self.bs = int(block_size)
        self.max_seqs = int(max_num_seqs)
        self.budget = int(max_num_batched_tokens)
        self.source = source  # pulls the next request from a central queue (or None)
        self.index = index
        self.now = 0.0
        self.step = 0
        self.used = 0
        self.running: list[Request] = []  # admission order; the newest is preempted first
        self.waiting: deque[Request] = deque()  # local queue: preempted (front) and pushed requests
        # Aggregates of the decoding set (see module docstring).
        self.dec_n = 0
        self.dec_cbase = 0
        self.dec_hist = [0] * self.bs
        self.finish_heap: list[tuple[int, int, int, Request]] = []
        self._seq = 0
        self.plan_: _Plan = _Plan("idle", 0.0, math.inf)
        # Statistics.
        self.busy_time = 0.0
        self.kv_block_seconds = 0.0
        self.preemptions = 0
        self.steps_done = 0
        self._events: list[EngineEvent] = []  # preemptions found while planning, returned by fire()

    # -- queries ----------------------------------------------------------------

    @property
    def free_blocks(self) -> int:
        return self.total_blocks - self.used

    @property
    def n_running(self) -> int:
        return len(self.running)

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.bs)

    def fits_ever(self, req: Request) -> bool:
        """A request whose whole sequence cannot fit in an empty cache can never finish."""
        return self.blocks_for(req.prompt + req.output) <= self.total_blocks

    def can_admit(self, tokens: int) -> bool:
        """Whether a prompt of ``tokens`` would be admitted at the next step boundary (ignoring budget)."""
        return (
            not self.waiting
            and len(self.running) < self.max_seqs
            and self.blocks_for(tokens) <= self.total_blocks - self.used - self._decode_need(self.step)
        )

    def next_event_time(self) -> float:
        return self.plan_.end

    def context_sum(self) -> int:
        return self.dec_cbase + self.dec_n * self.step

    # -- decoding-set bookkeeping ------------------------------------------------

    def _decode_need(self, step: int) -> int:
        """Blocks the decoding set needs to run step ``step``."""
        return self.dec_hist[(-step) % self.bs] if self.dec_n else 0

    def _enter_decoding(self, r: Request) -> None:
        r.decoding = True
        r.enter_step = self.step
        r.enter_ctx = r.target
        c = (r.enter_ctx - r.enter_step) % self.bs
        r.residue = c
        self.dec_n += 1
        self.dec_cbase += r.enter_ctx - r.enter_step
        self.dec_hist[c] += 1
        r.epoch += 1
        self._seq += 1
        heapq.heappush(self.finish_heap, (r.enter_step + (r.output - r.generated), self._seq, r.epoch, r))

    def _leave_decoding(self, r: Request) -> None:
        # The heap entry is dropped lazily (checked against r.alive / r.decoding).
        r.decoding = False
        self.dec_n -= 1
        self.dec_cbase -= r.enter_ctx - r.enter_step
        self.dec_hist[r.residue] -= 1
        r.generated += self.step - r.enter_step

    def _sync_blocks(self, r: Request) -> None:
        """Bring a decoding request's block count and generated tokens up to the current step."""
        if r.decoding:
            ctx = r.enter_ctx + (self.step - r.enter_step)
            r.blocks = self.blocks_for(ctx)

    def _release(self, r: Request) -> None:
        if r.decoding:
            self._sync_blocks(r)
            self._leave_decoding(r)
        self.used -= r.blocks
        r.blocks = 0
        r.alive = False
        self.running.remove(r)

    def _recount_used(self) -> None:
        """Blocks held after decode steps: recompute from the aggregates (cheap: O(running))."""
        total = 0
        for r in self.running:
            self._sync_blocks(r)
            total += r.blocks
        self.used = total

    # -- the outside world ---------------------------------------------------------

    def enqueue(self, req: Request, front: bool = False) -> None:
        """Put a request in this node's local waiting queue (push routing, preemption)."""
        req.node = self.index
        if front:
            self.waiting.appendleft(req)
        else:
            self.waiting.append(req)

    def remove(self, req: Request) -> bool:
        """Drop a request (cancelled at its deadline); call at a step boundary. True if it was here."""
        if req.alive and req in self.running:
            self._release(req)
            return True
        try:
            self.waiting.remove(req)
            return True
        except ValueError:
            return False

    def interrupt(self, t: float) -> float:
        """Stop a decode run at the first step boundary at or after ``t``; return that boundary.

        An idle engine wakes at ``t``. A single prefill step is never cut: the
        boundary is its end, and the caller must wait for ``fire()``.
        """
        p = self.plan_
        if p.kind == "idle":
            self.now = max(self.now, t)
            return self.now
        if t <= p.start:
            # Not started yet: drop the plan (requests it admitted stay, still to prefill).
            self.plan_ = _Plan("idle", self.now, math.inf)
            return self.now
        if p.kind == "step" or t >= p.end:
            return p.end
        j = self._steps_within(t - p.start)
        if j >= p.steps:
            return p.end
        if j > 0:
            dt = self.perf.decode_run_time(self.dec_n, self.context_sum(), j)
            self._advance_decode(j, dt)
        self.plan_ = _Plan("idle", self.now, math.inf)
        return self.now

    def _steps_within(self, dt: float) -> int:
        """Smallest j with decode_run_time(j) >= dt (quadratic in j, then fixed up)."""
        B, x0 = self.dec_n, self.context_sum()
        a = self.perf.decode_step_fixed(B)
        c = self.perf.seconds_per_context_token
        qa = c * B / 2.0
        qb = a + c * x0 - qa
        if qa > 0:
            j = math.ceil((-qb + math.sqrt(qb * qb + 4 * qa * dt)) / (2 * qa))
        else:
            j = math.ceil(dt / qb)
        j = max(j, 0)
        run = self.perf.decode_run_time
        while j > 0 and run(B, x0, j - 1) >= dt:
            j -= 1
        while run(B, x0, j) < dt:
            j += 1
        return j

    # -- planning ------------------------------------------------------------------

    def plan(self) -> float:
        """Fix the next step (with prefill) or decode run from the current boundary; return its end."""
        now = self.now
        # 1. Make room for this step's decode tokens: preempt the newest until the blocks fit.
        need = self._decode_need(self.step)
        while self.dec_n and self.used + need > self.total_blocks:
            self._preempt(self.running[-1])
            need = self._decode_need(self.step)
        budget = self.budget - self.dec_n
        chunks: list[tuple[Request, int]] = []
        free = self.total_blocks - self.used - need
        # 2. Running requests still prefilling, in admission order (skip the scan when none is).
        for r in self.running if len(self.running) > self.dec_n else ():
            if budget <= 0:
                break
            if not r.decoding:
                n = min(r.target - r.computed, budget)
                chunks.append((r, n))
                budget -= n
        # 3. Admit waiting requests (local queue first, then the central queue).
        while budget > 0 and len(self.running) < self.max_seqs:
            if self.waiting:
                r = self.waiting[0]
                if self.blocks_for(r.target) > free:
                    break  # head-of-line blocking
                self.waiting.popleft()
            elif self.source is not None:
                r = self.source(self, free)
                if r is None:
                    break
            else:
                break
            b = self.blocks_for(r.target)
            r.blocks = b
            r.computed = 0
            r.alive = True
            r.node = self.index
            self.used += b
            free -= b
            self.running.append(r)
            n = min(r.target, budget)
            chunks.append((r, n))
            budget -= n
        if chunks:
            ptok = sum(n for _, n in chunks)
            pairs = sum(n * (r.computed + 0.5 * n) for r, n in chunks)
            done = sum(1 for r, n in chunks if r.computed + n >= r.target)
            dt = self.perf.step_time(ptok, self.dec_n, self.context_sum(), pairs, done)
            self.plan_ = _Plan("step", now, now + dt, 1, chunks)
        elif self.dec_n:
            k = self.finish_heap_min() - self.step
            k = min(k, self._steps_until_block_failure())
            k = max(k, 1)
            dt = self.perf.decode_run_time(self.dec_n, self.context_sum(), k)
            self.plan_ = _Plan("run", now, now + dt, k)
        else:
            self.plan_ = _Plan("idle", now, math.inf)
        return self.plan_.end

    def finish_heap_min(self) -> int:
        """Step index of the next completion among decoding sequences (stale entries dropped)."""
        h = self.finish_heap
        while h:
            s, _, epoch, r = h[0]
            if r.alive and r.decoding and epoch == r.epoch:
                return s
            heapq.heappop(h)
        return self.step + 1

    def _steps_until_block_failure(self) -> int:
        """Largest k such that steps step..step+k-1 all find their new blocks free."""
        free = self.total_blocks - self.used
        B = self.dec_n
        periods = free // B if B else 0
        k = periods * self.bs
        rem = free - periods * B
        hist, bs, s = self.dec_hist, self.bs, self.step + k
        for j in range(bs):
            need = hist[(-(s + j)) % bs]
            if need > rem:
                return k + j
            rem -= need
        return k + bs  # unreachable in practice: a full period needs exactly B blocks

    def _preempt(self, r: Request) -> None:
        self._release(r)
        r.target = r.prompt + r.generated
        r.computed = 0
        r.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(r)
        self._events.append(EngineEvent("preempted", r, self.now))

    # -- applying a plan ---------------------------------------------------------------

    def _advance_decode(self, k: int, dt: float) -> None:
        """Apply k decode-only steps taking dt seconds (no completion inside)."""
        self.kv_block_seconds += self.used * dt
        need = 0
        hist, bs = self.dec_hist, self.bs
        if self.dec_n:
            full, part = divmod(k, bs)
            need = full * self.dec_n
            for j in range(part):
                need += hist[(-(self.step + full * bs + j)) % bs]
        self.used += need
        self.step += k
        self.steps_done += k
        self.busy_time += dt
        self.now += dt

    def fire(self) -> list[EngineEvent]:
        """Apply the planned step or run; return its events (first tokens, completions, preemptions)."""
        p = self.plan_
        events = self._events
        if p.kind == "idle":
            self.plan_ = _Plan("idle", self.now, math.inf)
            out, self._events = events, []
            return out
        dt = p.end - p.start
        if p.kind == "run":
            self._advance_decode(p.steps, dt)
        else:
            self._advance_decode(1, dt)
            for r, n in p.chunks:
                if not r.alive:
                    continue
                r.computed += n
                if r.computed >= r.target:
                    if r.generated == 0:
                        r.first_token_time = self.now
                        events.append(EngineEvent("first_token", r, self.now))
                    r.generated += 1
                    if r.generated >= r.output:
                        self._release(r)
                        events.append(EngineEvent("done", r, self.now))
                    else:
                        self._enter_decoding(r)
        # Completions of decoding sequences at this boundary.
        while self.dec_n and self.finish_heap_min() == self.step:
            r = heapq.heappop(self.finish_heap)[3]
            self._release(r)
            events.append(EngineEvent("done", r, self.now))
        self.plan_ = _Plan("idle", self.now, math.inf)
        self._events = []
        return events
