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

A prefill step and the decode run after it can be one event too (``merge_steps``,
on in the fleet): a "steprun", one step with prefill then k >= 1 decode-only steps.
At the step's end ``plan()`` would (a) preempt until the step's new blocks fit,
(b) go on with unfinished prefills, (c) admit waiting requests, (d) fix the decode
run to the next completion or failing block allocation. The merged plan computes
(d) at the step's start from the state the step will leave: the newly prefilled
requests join the decoding set with known residues, contexts and finishing steps,
so the block need, the run length and its time are those that ``fire()`` then
``plan()`` would find (its times are even summed in the same order, to the bit).
It is taken only when (a)-(c) provably do nothing, so the state at the step's end
matters to nobody: every chunk completes its prompt (nothing left prefilling);
nothing completes at the step's end (neither a sequence whose first token is its
last nor a decoding one), so no room frees; the blocks of the first decode step
fit (no preemption); and admission stops for a reason the step's duration cannot
change: the sequence limit, a token budget the decoders use up, a local queue head
that needs more blocks than the step's end leaves free, or a source that has
nothing queued (it returns None; a central-queue head that does not fit is
reported as False and prevents the merge, since another node taking it or a
deadline removing it would not wake this one). What remains is the outside world
during the prefill step: an arrival the step's end could take (``_Plan.open``)
cuts the plan back to the prefill step (``cut_to_step``), whose end then plans as
usual; an interruption (a deadline) during the prefill step does the same, and one
during the decode part applies the prefill step and stops the run, as for a run
planned at the step's end. Free blocks only shrink along a run, so ``can_admit``
answers for the decode part with the blocks free at the step's end.

Automatic prefix caching (``prefix_caching``, ``sim.prefix``) changes admission only
(``_admit_cached``): a request's cached prefix is counted as computed (its prefill and
attention start after it), the blocks of that prefix that running requests use are
shared (``used`` counts every block once), and a request is admitted when the blocks it
does not share are free (``admit_need``). Freed blocks are reported to the cache
(``PrefixCache.release``), which follows the engine's allocations lazily, so the decode
runs, their jumps and the merged plans are those above; with caching off the engine is
exactly as without it.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sojourn.sim.node import EnginePerf, PlanKind
from sojourn.sim.prefix import PrefixCache

__all__ = ["Engine", "EngineEvent", "PlanKind", "Request"]


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
        "prefix",
    )

    def __init__(self, rid: int, prompt: int, output: int, payload: Any = None, prefix: Any = None) -> None:
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
        #: The shared prefix its prompt starts with, ``(ids, seg_tokens, length)`` (``sim.prefix``), or None.
        self.prefix = prefix

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Request({self.rid}, prompt={self.prompt}, output={self.output}, gen={self.generated})"


@dataclass(slots=True)
class EngineEvent:
    kind: str  # "first_token" | "done" | "preempted" | "rejected"
    request: Request
    time: float
    reason: str = ""


_IDLE, _STEP, _RUN, _SRUN = PlanKind.IDLE, PlanKind.STEP, PlanKind.RUN, PlanKind.STEPRUN


def _partial_need(hist: list[int], bs: int, base: int, part: int) -> int:
    """Blocks the decoding set needs over steps base..base+part-1, part < bs.

    Step s needs ``hist[(-s) % bs]``; over consecutive steps the index walks down from
    r0 = (-base) % bs, so the sum is one slice of the histogram, or two when it wraps.
    """
    if part <= 0:
        return 0
    r0 = (-base) % bs
    lo = r0 - part + 1
    if lo >= 0:
        return sum(hist[lo : r0 + 1])
    return sum(hist[: r0 + 1]) + sum(hist[bs + lo :])


def _failure_steps(free: int, B: int, hist: list[int], bs: int, step: int) -> int:
    """Largest k such that steps step..step+k-1 of B decoding sequences (residue histogram
    ``hist``) all find their new blocks among ``free``."""
    periods = free // B if B else 0
    k = periods * bs
    rem = free - periods * B
    s = step + k
    for j in range(bs):
        need = hist[(-(s + j)) % bs]
        if need > rem:
            return k + j
        rem -= need
    return k + bs  # unreachable in practice: a full period needs exactly B blocks


_NO_CHUNKS: tuple[tuple[Request, int], ...] = ()


class _Plan:
    """The step or decode run fixed by ``plan()``; one per engine, updated in place."""

    __slots__ = ("kind", "start", "end", "steps", "chunks", "mid", "used1", "free1", "open")

    def __init__(self, kind: PlanKind, start: float, end: float, steps: int = 0, chunks: Any = _NO_CHUNKS) -> None:
        # A PlanKind: STEP (one step with prefill) | RUN (k decode-only steps) | IDLE |
        # STEPRUN (one step with prefill, then steps - 1 >= 1 decode-only steps).
        self.kind = kind
        self.start = start
        self.end = end
        self.steps = steps
        self.chunks = chunks  # (request, tokens) of the prefill step
        # Of a "steprun" only: the end of its prefill step; the blocks in use after it and the
        # blocks free at that boundary (as a "run" planned there would see them); whether a
        # request arriving during the prefill step could be admitted at its end (then the
        # fleet cuts the plan back to the prefill step, see Engine.cut_to_step).
        self.mid = end
        self.used1 = 0
        self.free1 = 0
        self.open = False

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        mid = f", mid={self.mid}" if self.kind == _SRUN else ""
        return f"_Plan({self.kind}, {self.start}, {self.end}, steps={self.steps}{mid})"


class Engine:
    """The scheduler and KV cache of one replica, advanced event by event.

    It is a ``sim.node.Node`` (the protocol the fleet and the single-node driver use,
    ``sim.driver``; its performance model an ``EnginePerf``): ``plan()`` at a step
    boundary fixes the next step or decode run and returns its end time;
    ``fire()`` applies it and returns the events; ``interrupt(t)`` stops a decode run
    at the first step boundary at or after ``t`` (so a new arrival can be admitted).
    ``source(engine, free)`` gives the next request of a central queue if its prompt
    fits in ``free`` blocks; else None when nothing is queued, False when the head
    does not fit (head-of-line blocking; only None lets a "steprun" be planned).

    Hot-path notes (behaviour is that of the plain rules above): ``running`` is an
    insertion-ordered dict used as an ordered set (O(1) removal at completion, the
    newest is its last key), and ``prefilling`` the same for the running requests
    still prefilling, so a step never scans the decoding ones; the plan object is
    reused; ``plan`` and ``fire`` bind what they use to locals.
    """

    def __init__(
        self,
        perf: EnginePerf,
        kv_blocks: int,
        block_size: int,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        source: Callable[[Engine, int], Request | None | Literal[False]] | None = None,
        index: int = 0,
        prefix_caching: bool = False,
    ) -> None:
        if max_num_batched_tokens < 1 or max_num_seqs < 1 or kv_blocks < 1 or block_size < 1:
            raise ValueError("engine sizes must be positive")
        self.perf = perf
        self.total_blocks = int(kv_blocks)
        self.bs = int(block_size)
        self.max_num_seqs = int(max_num_seqs)
        self.max_num_batched_tokens = int(max_num_batched_tokens)
        self.source = source  # pulls the next request from a central queue (or None)
        self.index = index
        self.now = 0.0
        self.step = 0
        self.used = 0
        # Admission order; the newest (last key) is preempted first. Values unused.
        self.running: dict[Request, None] = {}
        self.prefilling: dict[Request, None] = {}  # the running requests not decoding yet, in admission order
        self.waiting: deque[Request] = deque()  # local queue: preempted (front) and pushed requests
        # Aggregates of the decoding set (see module docstring).
        self.dec_n = 0
        self.dec_cbase = 0
        self.dec_hist = [0] * self.bs
        self.finish_heap: list[tuple[int, int, int, Request]] = []
        self._seq = 0
        self.plan_ = _Plan(_IDLE, 0.0, math.inf)
        # Statistics.
        self.busy_time = 0.0
        self.kv_block_seconds = 0.0
        self.preemptions = 0
        self.steps_done = 0
        self._events: list[EngineEvent] = []  # preemptions found while planning, returned by fire()
        #: Whether ``fire()`` reports "first_token" events (``first_token_time`` is set either way).
        self.first_token_events = True
        #: Whether ``plan()`` may fold a prefill step and the decode run after it into one
        #: "steprun" plan (module docstring). Opt-in: a caller that sets it must, when a
        #: request arrives during the prefill step of a "steprun" with ``plan_.open``, cut
        #: it back to that step (``cut_to_step`` or ``interrupt``) and wait for its end, as
        #: the fleet does; "first_token" events then come with the ``fire()`` that ends
        #: the run (their times, and ``first_token_time``, are exact).
        self.merge_steps = False
        #: Automatic prefix caching (``sim.prefix``): None when off, the engine then as without it.
        self.cache: PrefixCache | None = None
        if prefix_caching:
            self.cache = PrefixCache(self.total_blocks, self.bs)
            self._admit = self._admit_cached  # type: ignore[method-assign]

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

    def admit_need(self, req: Request) -> int:
        """Free blocks ``req`` needs to be admitted now: its blocks, less those of its cached prefix
        that running requests already use (shared, counted once)."""
        b = -(-req.target // self.bs)
        cache = self.cache
        if cache is None or req.prefix is None:
            return b
        return b - cache.shared_in_use(req.prefix, req.target)

    def can_admit(self, tokens: int) -> bool:
        """Whether a prompt of ``tokens`` would be admitted at the next step boundary (ignoring budget).

        During a run the answer is that of its first boundary, an upper bound of the later
        ones (free blocks only shrink along a run); of a "steprun", that of the end of its
        prefill step (where the decode run starts).
        """
        p = self.plan_
        free = p.free1 if p.kind == _SRUN else self.total_blocks - self.used - self._decode_need(self.step)
        return not self.waiting and len(self.running) < self.max_num_seqs and -(-tokens // self.bs) <= free

    def next_event_time(self) -> float:
        return self.plan_.end

    def context_sum(self) -> int:
        return self.dec_cbase + self.dec_n * self.step

    # -- the Node protocol's questions (sim.node.Node) -----------------------------------

    def at_boundary(self) -> bool:
        return self.plan_.kind == _IDLE

    def planned_chunks(self) -> Any:
        """The (request, tokens) prefill chunks of the planned step (empty for a decode run or idle)."""
        return self.plan_.chunks

    def may_take(self, t: float) -> bool | None:
        """At a boundary: yes; in a prefill step (a "step", or a "steprun" before its step's end):
        no, its end comes soon and pulls then; in a decode run: if the queue's head fits
        (None: ask ``can_admit``)."""
        p = self.plan_
        kind = p.kind
        if kind == _IDLE:
            return True
        if kind == _STEP or (kind == _SRUN and t < p.mid):
            return False
        return None

    def cut_for_arrival(self, t: float) -> bool:
        """A "steprun" in its prefill step whose end could pull (``_Plan.open``) is cut back to
        that step, as a plain step would end there and pull (module docstring)."""
        p = self.plan_
        if p.kind == _SRUN and t < p.mid and p.open:
            self.cut_to_step()
            return True
        return False

    def load(self, t: float) -> int:
        """KV blocks in use; of a "steprun" past its prefill step, as that step's end left them."""
        p = self.plan_
        return p.used1 if p.kind == _SRUN and t >= p.mid else self.used

    def counters(self, t: float) -> tuple[float, float, int]:
        """(busy seconds, KV block-seconds, preemptions) up to ``t``; a plan in flight counts
        as busy from its start with the blocks in use then (after a "steprun"'s prefill
        step, those the step left)."""
        b, k = self.busy_time, self.kv_block_seconds
        p = self.plan_
        if p.kind != _IDLE and p.start < t:
            start, used = p.start, self.used
            if p.kind == _SRUN and t > p.mid:
                d = p.mid - start
                b += d
                k += used * d
                start, used = start + d, p.used1
            d = min(t, p.end) - start
            b += d
            k += used * d
        return b, k, self.preemptions

    # -- decoding-set bookkeeping ------------------------------------------------

    def _decode_need(self, step: int) -> int:
        """Blocks the decoding set needs to run step ``step``."""
        return self.dec_hist[(-step) % self.bs] if self.dec_n else 0

    def _release(self, r: Request) -> None:
        """Free a running request's blocks and drop it from the running set."""
        if r.decoding:
            # Its blocks and generated tokens brought up to the current step; its heap
            # entry is dropped lazily (checked against r.alive / r.decoding / r.epoch).
            step = self.step
            self.used -= -(-(r.enter_ctx + (step - r.enter_step)) // self.bs)
            r.decoding = False
            self.dec_n -= 1
            self.dec_cbase -= r.enter_ctx - r.enter_step
            self.dec_hist[r.residue] -= 1
            r.generated += step - r.enter_step
            if self.cache is not None:
                self.used += self.cache.release(r, -(-(r.enter_ctx + (step - r.enter_step)) // self.bs))
        else:
            self.used -= r.blocks
            del self.prefilling[r]
            if self.cache is not None:
                self.used += self.cache.release(r, r.blocks)
        r.blocks = 0
        r.alive = False
        del self.running[r]

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
        boundary is its end, and the caller must wait for ``fire()``. A "steprun" is
        cut back to its prefill step when ``t`` falls in it (its end moves earlier:
        the caller must reschedule ``fire()``); after it, the prefill step is applied
        as its own ``fire()`` would (its events wait for the next ``fire()``) and the
        rest is the decode run planned at its end, stopped as any run.
        """
        p = self.plan_
        if p.kind == _IDLE:
            self.now = max(self.now, t)
            return self.now
        if t <= p.start:
            # Not started yet: drop the plan (requests it admitted stay, still to prefill).
            self._set_idle()
            return self.now
        if p.kind == _SRUN:
            if t < p.mid:
                return self.cut_to_step()
            if t >= p.end:
                return p.end
            end, k = p.end, p.steps - 1
            p.kind = _STEP
            p.end = p.mid
            self._events = self.fire()
            p.kind = _RUN
            p.start = self.now
            p.end = end
            p.steps = k
            if t <= p.start:
                self._set_idle()
                return self.now
        if p.kind == _STEP or t >= p.end:
            return p.end
        j = self._steps_within(t - p.start)
        if j >= p.steps:
            return p.end
        if j > 0:
            dt = self.perf.decode_run_time(self.dec_n, self.context_sum(), j)
            self._advance_decode(j, dt)
        self._set_idle()
        return self.now

    def cut_to_step(self) -> float:
        """Cut a "steprun" back to its prefill step (a "step" now); return that step's end.

        For an arrival during the prefill step that its end could admit (``_Plan.open``):
        the caller reschedules ``fire()`` at the earlier end, where ``plan()`` pulls.
        """
        p = self.plan_
        p.kind = _STEP
        p.end = p.mid
        p.steps = 1
        return p.end

    def _set_idle(self) -> None:
        p = self.plan_
        p.kind = _IDLE
        p.start = self.now
        p.end = math.inf
        p.steps = 0
        p.chunks = _NO_CHUNKS

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
        if self.plan_.kind != "idle":
            raise RuntimeError("plan() while a step or run is planned: fire() or interrupt() it first")
        step = self.step
        bs = self.bs
        hist = self.dec_hist
        total = self.total_blocks
        running = self.running
        # 1. Make room for this step's decode tokens: preempt the newest until the blocks fit.
        need = hist[(-step) % bs] if self.dec_n else 0
        while self.dec_n and self.used + need > total:
            self._preempt(next(reversed(running)))
            need = hist[(-step) % bs] if self.dec_n else 0
        dec_n = self.dec_n
        budget = self.max_num_batched_tokens - dec_n
        chunks: list[tuple[Request, int]] | None = None
        free = total - self.used - need
        ptok = 0
        pairs: float = 0
        done = 0
        # 2. Running requests still prefilling, in admission order.
        if self.prefilling:
            chunks = []
            for r in self.prefilling:
                if budget <= 0:
                    break
                n = r.target - r.computed
                if n > budget:
                    n = budget
                chunks.append((r, n))
                budget -= n
                ptok += n
                pairs += n * (r.computed + 0.5 * n)
                if r.computed + n >= r.target:
                    done += 1
        # 3. Admit waiting requests (local queue first, then the central queue).
        empty = False  # the source was asked and has nothing queued
        if budget > 0 and len(running) < self.max_num_seqs:
            chunks, budget, free, ptok, pairs, done, empty = self._admit(chunks, budget, free, ptok, pairs, done)
        if chunks:
            return self._plan_step(chunks, ptok, dec_n, pairs, done, empty)
        return self._plan_run(dec_n, free, need)

    def _admit(self, chunks: list[tuple[Request, int]] | None, budget: int, free: int, ptok: int, pairs: float,
               done: int) -> tuple[list[tuple[Request, int]] | None, int, int, int, float, int, bool]:
        """Admit waiting requests into this step's budget and the free blocks (local queue first, then the
        central queue); return the step's updated (chunks, budget, free, tokens, pairs, done, source empty)."""
        empty = False
        running = self.running
        bs = self.bs
        waiting, source, max_seqs = self.waiting, self.source, self.max_num_seqs
        prefilling = self.prefilling
        index = self.index
        while budget > 0 and len(running) < max_seqs:
            if waiting:
                r = waiting[0]
                if -(-r.target // bs) > free:
                    break  # head-of-line blocking
                waiting.popleft()
            elif source is not None:
                got = source(self, free)
                if not got:  # None: nothing queued; False: the head does not fit in free
                    empty = got is None
                    break
                r = got
            else:
                break
            target = r.target
            b = -(-target // bs)
            r.blocks = b
            r.computed = 0
            r.alive = True
            r.node = index
            self.used += b
            free -= b
            running[r] = None
            prefilling[r] = None
            n = target if target < budget else budget
            if chunks is None:
                chunks = []
            chunks.append((r, n))
            budget -= n
            ptok += n
            pairs += n * (0 + 0.5 * n)
            if n >= target:
                done += 1
        return chunks, budget, free, ptok, pairs, done, empty

    def _admit_cached(self, chunks: list[tuple[Request, int]] | None, budget: int, free: int, ptok: int,
                      pairs: float, done: int) -> tuple[list[tuple[Request, int]] | None, int, int, int, float, int,
                                                        bool]:
        """``_admit`` with automatic prefix caching (``sim.prefix``): a request's cached prefix is not
        prefilled, and its blocks that running requests already use are shared, not allocated again."""
        empty = False
        running = self.running
        bs = self.bs
        cache = self.cache
        assert cache is not None
        total = self.total_blocks
        waiting, source, max_seqs = self.waiting, self.source, self.max_num_seqs
        prefilling = self.prefilling
        index = self.index
        while budget > 0 and len(running) < max_seqs:
            if waiting:
                r = waiting[0]
                if self.admit_need(r) > free:
                    break  # head-of-line blocking
                waiting.popleft()
            elif source is not None:
                got = source(self, free)
                if not got:  # None: nothing queued; False: the head does not fit in free
                    empty = got is None
                    break
                r = got
            else:
                break
            target = r.target
            b = -(-target // bs)
            # The blocks allocated so far, this step's decode blocks included (total - free).
            hit, shared = cache.admit(r, target, total - free)
            r.blocks = b
            r.computed = hit
            r.alive = True
            r.node = index
            self.used += b - shared
            free -= b - shared
            running[r] = None
            prefilling[r] = None
            left = target - hit
            n = left if left < budget else budget
            if chunks is None:
                chunks = []
            chunks.append((r, n))
            budget -= n
            ptok += n
            pairs += n * (hit + 0.5 * n)
            if n >= left:
                done += 1
        return chunks, budget, free, ptok, pairs, done, empty

    def _plan_step(self, chunks: list[tuple[Request, int]], ptok: int, dec_n: int, pairs: float, done: int,
                   empty: bool) -> float:
        """Plan a step with prefill ``chunks`` (merged with the decode steps after it where it can be)."""
        p = self.plan_
        now = self.now
        step = self.step
        dt = self.perf.step_time(ptok, dec_n, self.dec_cbase + dec_n * step, pairs, done)
        p.start = now
        p.chunks = chunks
        h = self.finish_heap
        if not (
            self.merge_steps
            and done == len(self.prefilling)
            and (not h or h[0][0] > step + 1)  # quick look: no completion at the step's end
            and self._plan_merged(chunks, empty, dt)
        ):
            p.kind = _STEP
            p.end = now + dt
            p.steps = 1
        return p.end

    def _plan_run(self, dec_n: int, free: int, need: int) -> float:
        """Plan a decode run up to the next completion or block failure, or idle with nothing to do."""
        p = self.plan_
        now = self.now
        p.start = now
        p.chunks = _NO_CHUNKS
        if not dec_n:
            p.kind = _IDLE
            p.end = math.inf
            p.steps = 0
            return p.end
        step = self.step
        k = self.finish_heap_min() - step  # steps to the next completion
        # A block allocation can fail within k steps only if the free blocks do not
        # cover the most the decoding set can ask for: each sequence one per bs steps.
        if free + need < dec_n * -(-k // self.bs):
            k = min(k, self._steps_until_block_failure())
        if k < 1:
            k = 1
        dt = self.perf.decode_run_time(dec_n, self.dec_cbase + dec_n * step, k)
        p.kind = _RUN
        p.end = now + dt
        p.steps = k
        return p.end

    def finish_heap_min(self) -> int:
        """Step index of the next completion among decoding sequences (stale entries dropped)."""
        h = self.finish_heap
        while h:
            s, _, epoch, r = h[0]
            if r.alive and r.decoding and epoch == r.epoch:
                return s
            heapq.heappop(h)
        return self.step + 1

    def _plan_merged(self, chunks: list[tuple[Request, int]], empty: bool, dt: float) -> bool:
        """Plan this prefill step and the decode run after it as one "steprun", if that is exact.

        Called by ``plan()`` when every running request still prefilling completes its
        prefill in this step (``chunks``, taking ``dt``). The decode run is what
        ``plan()`` would fix at the step's end, computed here from the state the step
        leaves (module docstring); False (nothing changed) when that boundary could do
        anything but plan a decode run: complete a request, preempt, or admit one.
        """
        bs = self.bs
        hist = self.dec_hist
        dec_n = self.dec_n
        s1 = self.step + 1
        used1 = self.used + (hist[(-(s1 - 1)) % bs] if dec_n else 0)  # after the step's own new blocks
        need1 = hist[(-s1) % bs] if dec_n else 0  # what step s1 asks of the decoding set, old part
        first = self.finish_heap_min() if dec_n else math.inf  # the next completion's step
        if first <= s1:
            return False  # a decoding sequence completes at the step's end
        cbase = self.dec_cbase
        for r, _ in chunks:
            g = r.generated + 1
            if g >= r.output:
                return False  # completes at the step's end
            target = r.target
            if not target % bs:
                need1 += 1  # enters decoding with full blocks: step s1 opens a new one
            cbase += target - s1
            f = s1 + r.output - g
            if f < first:
                first = f
        B = dec_n + len(chunks)
        total = self.total_blocks
        free1 = total - used1 - need1
        if free1 < 0:
            return False  # step s1 would preempt
        if len(self.running) < self.max_num_seqs and self.max_num_batched_tokens > B:
            # Step s1 would try to admit: it must find nothing it could take.
            waiting = self.waiting
            if waiting:
                if self.admit_need(waiting[0]) <= free1:
                    return False
            elif self.source is not None and not empty:
                return False
        k = int(first) - s1  # finite: every chunk above set a completion step
        if free1 + need1 < B * -(-k // bs):
            hist1 = hist[:]
            for r, _ in chunks:
                hist1[(r.target - s1) % bs] += 1
            k = min(k, _failure_steps(total - used1, B, hist1, bs, s1))
        # As fire() then plan() at the step's end would compute them, to the bit.
        now = self.now
        mid = now + dt
        now1 = now + (mid - now)
        p = self.plan_
        p.kind = _SRUN
        p.mid = mid
        p.end = now1 + self.perf.decode_run_time(B, cbase + B * s1, k)
        p.steps = 1 + k
        p.used1 = used1
        p.free1 = free1
        p.open = empty
        return True

    def _steps_until_block_failure(self) -> int:
        """Largest k such that steps step..step+k-1 all find their new blocks free."""
        return _failure_steps(self.total_blocks - self.used, self.dec_n, self.dec_hist, self.bs, self.step)

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
        if self.dec_n:
            bs = self.bs
            full, part = divmod(k, bs)
            need = full * self.dec_n + _partial_need(self.dec_hist, bs, self.step + full * bs, part)
        self.used += need
        self.step += k
        self.steps_done += k
        self.busy_time += dt
        self.now += dt

    def _end_prefill(
        self, chunks: Any, events: list[EngineEvent], step: int, now: float, used: int, dec_n: int, cbase: int
    ) -> tuple[int, int, int]:
        """The prefill chunks of the step ending at (``step``, ``now``) are computed: a prompt
        done yields its first token, then completes or joins the decoding set. Works on
        ``fire()``'s locals (blocks used, decoding count, context base): returns them updated."""
        bs = self.bs
        hist = self.dec_hist
        h = self.finish_heap
        running = self.running
        prefilling = self.prefilling
        first_events = self.first_token_events
        for r, n in chunks:
            if not r.alive:
                continue
            c = r.computed = r.computed + n
            target = r.target
            if c >= target:
                if r.generated == 0:
                    r.first_token_time = now
                    if first_events:
                        events.append(EngineEvent("first_token", r, now))
                g = r.generated = r.generated + 1
                del prefilling[r]
                if g >= r.output:
                    # As _release(r) of a request not decoding.
                    used -= r.blocks
                    if self.cache is not None:
                        used += self.cache.release(r, r.blocks)
                    r.blocks = 0
                    r.alive = False
                    del running[r]
                    events.append(EngineEvent("done", r, now))
                else:
                    # r enters the decoding set (the aggregates of the module docstring).
                    r.decoding = True
                    r.enter_step = step
                    r.enter_ctx = target
                    res = r.residue = (target - step) % bs
                    dec_n += 1
                    cbase += target - step
                    hist[res] += 1
                    e = r.epoch = r.epoch + 1
                    self._seq += 1
                    heapq.heappush(h, (step + (r.output - g), self._seq, e, r))
        return used, dec_n, cbase

    def fire(self) -> list[EngineEvent]:
        """Apply the planned step or run; return its events (first tokens, completions, preemptions).

        A plan is one or two phases: a prefill step (k = 1), then or alone a decode run of k
        steps. ``_advance_decode`` and ``_release`` are the rules; the hot path applies them
        here on locals (one copy of each: the advance serves both phases).
        """
        p = self.plan_
        events = self._events
        self._events = []
        kind = p.kind
        if kind == _IDLE:
            self._set_idle()
            return events
        used = self.used
        step = self.step
        dec_n = self.dec_n
        bs = self.bs
        hist = self.dec_hist
        cbase = self.dec_cbase
        h = self.finish_heap
        running = self.running
        now = self.now
        if kind == _RUN:
            k, dt = p.steps, p.end - p.start
        else:  # the prefill step: all of a "step", the first of a "steprun"
            k, dt = 1, (p.end if kind == _STEP else p.mid) - p.start
        while True:
            # As _advance_decode(k, dt).
            self.kv_block_seconds += used * dt
            if dec_n:
                if k == 1:  # every prefill step, and a short run: the blocks one step opens
                    used += hist[(-step) % bs]
                else:
                    full, part = divmod(k, bs)
                    used += full * dec_n
                    if part:
                        used += _partial_need(hist, bs, step, part)
            step += k
            self.steps_done += k
            self.busy_time += dt
            now += dt
            if kind == _RUN:
                break
            used, dec_n, cbase = self._end_prefill(p.chunks, events, step, now, used, dec_n, cbase)
            if kind == _STEP:
                break
            # A "steprun": the decode run plan() would fix at this boundary (nothing completes
            # at it), as its fire() would apply it: k >= 1 steps of the decoding set the step left.
            kind = _RUN
            k, dt = p.steps - 1, p.end - now
        self.step = step
        self.now = now
        # Completions of decoding sequences at this boundary (stale heap entries dropped).
        if dec_n:
            cache = self.cache
            pop = heapq.heappop
            while h:
                s, _, epoch, r = h[0]
                if not (r.alive and r.decoding and epoch == r.epoch):
                    pop(h)
                    continue
                if s != step:
                    break
                pop(h)
                # As _release(r) of a decoding request.
                es = r.enter_step
                nb = -(-(r.enter_ctx + (step - es)) // bs)
                used -= nb
                if cache is not None:
                    used += cache.release(r, nb)
                r.decoding = False
                dec_n -= 1
                cbase -= r.enter_ctx - es
                hist[r.residue] -= 1
                r.generated += step - es
                r.blocks = 0
                r.alive = False
                del running[r]
                events.append(EngineEvent("done", r, now))
        self.used = used
        self.dec_n = dec_n
        self.dec_cbase = cbase
        p.kind = _IDLE
        p.start = now
        p.end = math.inf
        p.steps = 0
        p.chunks = _NO_CHUNKS
        return events
