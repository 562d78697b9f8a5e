"""What an engine benchmark client measures: C requests of fixed size kept in flight.

The client (vLLM's ``benchmark_serving`` with ``--max-concurrency``, aiconfigurator's
silicon runs) starts a new request as soon as one ends. We run the same engine
scheduler as the fleet simulator (``sojourn.sim.engine``) on that closed loop, so
the predicted TPOT includes the stalls from other requests' prefills that share the
decode steps, and TTFT includes the wait for a step with room — a bare decode-step
time is not the prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sojourn.perf._model import PerfModel
from sojourn.sim.engine import Engine, Request

__all__ = ["ClosedLoopResult", "closed_loop"]


@dataclass(frozen=True)
class ClosedLoopResult:
    ttft_s: float  # mean time to first token
    tpot_s: float  # mean time per output token after the first, per request
    e2e_s: float  # mean request latency
    throughput_rps: float  # completed requests per second in the measured span
    output_tokens_per_s: float
    preemptions: int
    measured: int  # requests measured (after warm-up)


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

    The first ``warmup_rounds·C`` requests are discarded, the next
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
    total = warm + max(math.ceil(measure_rounds * concurrency), 8)
    started = 0
    start_time: dict[int, float] = {}

    def launch(t: float) -> None:
        nonlocal started
        r = Request(started, isl, osl)
        start_time[started] = t
        started += 1
        eng.enqueue(r)

    pending = sorted(offsets)[1:]  # client start times still to come
    launch(0.0)
    ttft = tpot = e2e = 0.0
    n = 0
    t_first = t_last = math.nan
    done = 0
    while done < total:
        end = eng.plan()
        while pending and pending[0] < end:
            if eng.interrupt(pending[0]) > eng.now:
                break  # inside a prefill step, which is never cut: the client joins after it
            launch(pending.pop(0))  # its clock starts when the client sends, even if it waits
            end = eng.plan()
        if math.isinf(end):  # pragma: no cover - cannot happen with requests in flight
            raise RuntimeError("closed loop stalled")
        for ev in eng.fire():
            if ev.kind != "done":
                continue
            r = ev.request
            done += 1
            if r.rid >= warm and n < total - warm:
                t0 = start_time[r.rid]
                ttft += r.first_token_time - t0
                if osl > 1:
                    tpot += (ev.time - r.first_token_time) / (osl - 1)
                e2e += ev.time - t0
                n += 1
                if math.isnan(t_first):
                    t_first = ev.time
                t_last = ev.time
            if started < total + concurrency:
                launch(ev.time)
    span = t_last - t_first
    rps = (n - 1) / span if n > 1 and span > 0 else math.nan
    front_end = perf.profile.request_overhead_s  # outside the engine: seen by the client only
    return ClosedLoopResult(
        ttft_s=ttft / n + front_end,
        tpot_s=tpot / n if osl > 1 else 0.0,
        e2e_s=e2e / n + front_end,
        throughput_rps=rps,
        output_tokens_per_s=rps * osl,
        preemptions=eng.preemptions,
        measured=n,
    )
