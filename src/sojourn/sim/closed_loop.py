"""What an engine benchmark client measures: C requests of fixed size kept in flight.

The client (vLLM's ``benchmark_serving`` with ``--max-concurrency``, aiconfigurator's
silicon runs) starts a new request as soon as one ends. We run the same engine
scheduler as the fleet simulator (``engine``), with the single-node driver
(``driver.drive``), on that closed loop, so
the predicted TPOT includes the stalls from other requests' prefills that share the
decode steps, and TTFT includes the wait for a step with room — a bare decode-step
time is not the prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sojourn.sim import _engine_kernel
from sojourn.sim.driver import drive
from sojourn.sim.engine import Engine, EngineEvent, Request

if TYPE_CHECKING:
    from sojourn.perf import PerfModel

__all__ = ["ClosedLoopResult", "OfflineResult", "closed_loop", "offline_batch"]


@dataclass(frozen=True)
class ClosedLoopResult:
    ttft_s: float  # mean time to first token
    tpot_s: float  # mean time per output token after the first, per request
    e2e_s: float  # mean request latency
    throughput_rps: float  # completed requests per second in the measured span
    output_tokens_per_s: float
    preemptions: int
    measured: int  # requests measured (after warm-up)


@dataclass(frozen=True)
class OfflineResult:
    makespan_s: float  # from the first request's arrival (all at 0) to the last completion
    output_tokens_per_s: float  # requests x output tokens / makespan, as an offline benchmark reports it
    preemptions: int
    requests: int


def offline_batch(
    perf: PerfModel,
    isl: int,
    osl: int,
    requests: int,
    *,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    kv_blocks: int | None = None,
) -> OfflineResult:
    """An offline throughput run: ``requests`` requests of ``isl``/``osl`` tokens all queued at time 0 and
    served to the last (``trtllm-bench throughput``, which feeds its requests "at an infinite rate", and
    an MLPerf Offline run). Its figure is the output tokens over the whole makespan, ramp-up and drain
    included, not a steady state (``node_capacity`` gives that)."""
    if isl < 1 or osl < 1 or requests < 1:
        raise ValueError("isl, osl and requests must be >= 1")
    budget = max_num_batched_tokens or perf.max_num_batched_tokens
    seqs = max_num_seqs or perf.max_num_seqs
    blocks = kv_blocks if kv_blocks is not None else perf.kv_capacity_blocks
    eng = Engine(perf, blocks, perf.block_size, seqs, budget)
    if not eng.fits_ever(Request(-1, isl, osl)):
        raise ValueError(f"one request of {isl}+{osl} tokens does not fit in {blocks} KV blocks")
    if _engine_kernel.supported(perf) and _engine_kernel.available():
        sizes = np.tile(np.array([[isl, osl]], dtype=np.int64), (requests, 1))
        res = _engine_kernel.run_node(perf, blocks, perf.block_size, seqs, budget, sizes=sizes, initial=requests,
                                      until_done=requests)
        makespan, preemptions = float(np.max(res.done)), res.preemptions
    else:
        for i in range(requests):
            eng.enqueue(Request(i, isl, osl))
        ends: list[float] = []
        drive(eng, lambda: len(ends) < requests, lambda ev: ends.append(ev.time))
        makespan, preemptions = max(ends), eng.preemptions
    return OfflineResult(makespan_s=makespan, output_tokens_per_s=requests * osl / makespan,
                         preemptions=preemptions, requests=requests)


class _Clients:
    """The benchmark client: a new request as soon as one ends, and the measured sums."""

    def __init__(self, eng: Engine, isl: int, osl: int, concurrency: int, warm: int, total: int) -> None:
        self.eng, self.isl, self.osl, self.concurrency = eng, isl, osl, concurrency
        self.warm, self.total = warm, total
        self.started = 0
        self.start_time: dict[int, float] = {}
        self.ttft = self.tpot = self.e2e = 0.0
        self.n = 0
        self.t_first = self.t_last = math.nan
        self.done = 0

    def more(self) -> bool:
        return self.done < self.total

    def launch(self, t: float) -> None:
        """A client sends a request at ``t`` (its clock starts then, even if it waits)."""
        r = Request(self.started, self.isl, self.osl)
        self.start_time[self.started] = t
        self.started += 1
        self.eng.enqueue(r)

    def on_done(self, ev: EngineEvent) -> None:
        r = ev.request
        self.done += 1
        osl = self.osl
        if r.rid >= self.warm and self.n < self.total - self.warm:
            t0 = self.start_time[r.rid]
            self.ttft += r.first_token_time - t0
            if osl > 1:
                self.tpot += (ev.time - r.first_token_time) / (osl - 1)
            self.e2e += ev.time - t0
            self.n += 1
            if math.isnan(self.t_first):
                self.t_first = ev.time
            self.t_last = ev.time
        if self.started < self.total + self.concurrency:
            self.launch(ev.time)


def _run_compiled(c: _Clients, perf: PerfModel, eng: Engine, arrivals: list[float]) -> int:
    """The same closed loop in the compiled kernel (``sim._engine_kernel``): ``c``'s sums, in completion
    order as ``_Clients.on_done`` adds them; returns the preemptions."""
    launches = c.total + c.concurrency
    sizes = np.tile(np.array([[c.isl, c.osl]], dtype=np.int64), (launches, 1))
    res = _engine_kernel.run_node(perf, eng.total_blocks, eng.bs, eng.max_num_seqs, eng.max_num_batched_tokens,
                                  sizes=sizes, initial=1, arrivals=arrivals, relaunch=launches, until_done=c.total)
    osl = c.osl
    entered, firsts, ends = res.entered.tolist(), res.first_token.tolist(), res.done.tolist()
    for rid in res.order.tolist():
        c.done += 1
        if rid >= c.warm and c.n < c.total - c.warm:
            t0, first, end = entered[rid], firsts[rid], ends[rid]
            c.ttft += first - t0
            if osl > 1:
                c.tpot += (end - first) / (osl - 1)
            c.e2e += end - t0
            c.n += 1
            if math.isnan(c.t_first):
                c.t_first = end
            c.t_last = end
    return res.preemptions


def closed_loop(
    perf: PerfModel,
    isl: int,
    osl: int,
    concurrency: int,
    *,
    max_num_batched_tokens: int | None = None,
    max_num_seqs: int | None = None,
    kv_blocks: int | None = None,
    warmup_rounds: float = 1.0,
    measure_rounds: float = 3.0,
    stagger: bool = True,
) -> ClosedLoopResult:
    """Steady-state TTFT and TPOT of ``concurrency`` clients sending ``isl``/``osl`` requests.

    ``perf`` is a ``sojourn.perf.PerfModel`` (its step times, KV capacity, engine settings
    and front-end overhead). The first ``warmup_rounds·C`` requests are discarded, the next
    ``measure_rounds·C`` are measured. With ``stagger`` the clients start spread
    evenly over one request latency (from a first synchronised pass): in real
    benchmarks small jitter (re-tokenised prompt lengths, HTTP and detokenisation
    delays) spreads the clients' phases, and a lock-step closed loop would batch
    all prefills together and overstate TTFT.
    """
    if stagger and concurrency > 1:
        first = closed_loop(
            perf, isl, osl, concurrency,
            max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
            kv_blocks=kv_blocks, warmup_rounds=0.0, measure_rounds=1.0, stagger=False,
        )
        # Random phases (fixed seed, so predictions are deterministic): collisions of
        # prefills happen as often as in a benchmark whose clients drift independently.
        rng = np.random.default_rng(20240601)
        offsets = sorted(rng.uniform(0.0, first.e2e_s - perf.profile.request_overhead_s, size=concurrency).tolist())
        offsets[0] = 0.0
    else:
        offsets = [0.0] * concurrency
    if isl < 1 or osl < 1 or concurrency < 1:
        raise ValueError("isl, osl and concurrency must be >= 1")
    budget = max_num_batched_tokens or perf.max_num_batched_tokens
    seqs = max_num_seqs or max(perf.max_num_seqs, concurrency)
    budget = max(budget, seqs) if budget < seqs else budget
    blocks = kv_blocks if kv_blocks is not None else perf.kv_capacity_blocks
    eng = Engine(perf, blocks, perf.block_size, seqs, budget)
    if not eng.fits_ever(Request(-1, isl, osl)):
        raise ValueError(f"one request of {isl}+{osl} tokens does not fit in {blocks} KV blocks")
    warm = math.ceil(warmup_rounds * concurrency)
    c = _Clients(eng, isl, osl, concurrency, warm, warm + max(math.ceil(measure_rounds * concurrency), 8))
    if _engine_kernel.supported(perf) and _engine_kernel.available():
        preemptions = _run_compiled(c, perf, eng, sorted(offsets)[1:])
    else:
        c.launch(0.0)
        # The other clients join at their start times.
        drive(eng, c.more, c.on_done, arrivals=sorted(offsets)[1:], on_arrival=c.launch)
        preemptions = eng.preemptions
    n, span = c.n, c.t_last - c.t_first
    rps = (n - 1) / span if n > 1 and span > 0 else math.nan
    front_end = perf.profile.request_overhead_s  # outside the engine: seen by the client only
    return ClosedLoopResult(
        ttft_s=c.ttft / n + front_end,
        tpot_s=c.tpot / n if osl > 1 else 0.0,
        e2e_s=c.e2e / n + front_end,
        throughput_rps=rps,
        output_tokens_per_s=rps * osl,
        preemptions=preemptions,
        measured=n,
    )
