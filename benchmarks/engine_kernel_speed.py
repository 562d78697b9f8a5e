"""Speed of the compiled engine node (``sim._engine_kernel``) against the Python engine, side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/engine_kernel_speed.py [--requests N] [--write]

Three cases, each run on the Python engine (``Engine`` + ``driver.drive``) and on the
kernel in the same process, timed with ``time.process_time``; the figure is CPU-seconds
per simulated request (completions), and the ratio Python / compiled:

1. *poisson*: one Llama-3.1-8B node on one H100 (vLLM defaults: 256 sequences, 8,192
   batched tokens), Poisson single arrivals at 2 req/s with the Azure conversation
   trace's prompt and output lengths (../shared/data/AzureLLMInferenceTrace_conv.csv,
   cycled in trace order), the workload simulators like Vidur are compared on.
2. *closed_loop*: ``closed_loop`` (the ``sojourn perf`` prediction): 64 clients of
   1,000 + 200 tokens, 40 rounds measured.
3. *node_capacity*: the saturated node of ``sojourn.fast.capacity`` for
   examples/llama8b-h100.toml (``_engine_capacity``, 100,000 measured completions);
   the figure includes drawing the 2^20-request mix, the same in both.

numba's compile time is measured apart (a fresh cache directory, the first call) and
excluded: each case runs the kernel once untimed first. Every case checks that both
engines give the same times (max relative difference printed). ``--write`` replaces the
``## engine_kernel`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AZURE = ROOT.parent / "shared" / "data" / "AzureLLMInferenceTrace_conv.csv"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## engine_kernel"
RATE = 2.0  # requests per second (issue 16)
#: What the table shows, written under it by ``--write``.
EXPLAIN = (
    "poisson: one Llama-3.1-8B node on one H100 (vLLM defaults), Poisson single arrivals at 2 req/s with the Azure "
    "conversation trace's lengths; every completion time equal to the bit (max rel. diff 0), the same preemptions. "
    "closed_loop and node_capacity are whole calls of `closed_loop(perf, 1000, 200, 64, measure_rounds=40)` and "
    "`_engine_capacity(examples/llama8b-h100.toml, 100,000)`: their fixed Python parts (the client's sums in "
    "completion order; drawing the 2^20-request mix, the work fit and the in-service integral) are in both columns "
    "and dominate the compiled one; \"saturated run alone\" is node_capacity's engine run without them (`drive` "
    "with the `_Saturated` source vs the kernel, same latencies, prefill-token costs and end time asserted). Results "
    "are identical with and without the kernel. One run on the shared 2-CPU machine (noise of a few to tens of "
    "percent). The engine kernel's helpers are also the fleet kernel's (`sim/_fleet_kernel.py`, `## sim_speed`)."
)


def _perf() -> Any:
    from sojourn.catalogue import default_catalogue
    from sojourn.perf import build_perf_model

    cat = default_catalogue()
    return build_perf_model(cat.model("llama-3.1-8b"), cat.gpu("h100-sxm"))


def _azure_sizes(n: int) -> np.ndarray:
    from sojourn.sim.workload import load_trace

    if AZURE.exists():
        _, inp, out = load_trace(AZURE, "azure")
    else:  # pragma: no cover - the data folder is optional; lognormal lengths of the same medians instead
        rng = np.random.default_rng(1)
        inp, out = np.ceil(rng.lognormal(6.9, 1.0, 20_000)), np.ceil(rng.lognormal(5.4, 0.8, 20_000))
    idx = np.arange(n) % len(inp)
    return np.stack([np.asarray(inp)[idx], np.asarray(out)[idx]], 1).astype(np.int64)


def _python_poisson(perf: Any, sizes: np.ndarray, arrivals: np.ndarray) -> tuple[np.ndarray, int]:
    from sojourn.sim.driver import drive
    from sojourn.sim.engine import Engine, Request

    eng = Engine(perf, perf.kv_capacity_blocks, perf.block_size, perf.max_num_seqs, perf.max_num_batched_tokens)
    n = len(sizes)
    done = np.full(n, np.nan)
    count = [0, 0]  # sent, done

    def arrive(t: float) -> None:
        i = count[0]
        count[0] += 1
        eng.enqueue(Request(i, int(sizes[i, 0]), int(sizes[i, 1])))

    def on_done(ev: Any) -> None:
        done[ev.request.rid] = ev.time
        count[1] += 1

    drive(eng, lambda: count[1] < n, on_done, arrivals=arrivals.tolist(), on_arrival=arrive)
    return done, eng.preemptions


def poisson(requests: int) -> dict[str, Any]:
    from sojourn.sim import _engine_kernel

    perf = _perf()
    sizes = _azure_sizes(requests)
    arrivals = np.random.default_rng(2).exponential(1.0 / RATE, requests).cumsum()

    def compiled() -> tuple[np.ndarray, int]:
        r = _engine_kernel.run_node(perf, perf.kv_capacity_blocks, perf.block_size, perf.max_num_seqs,
                                    perf.max_num_batched_tokens, sizes=sizes, arrivals=arrivals, until_done=requests)
        return r.done, r.preemptions

    compiled()  # warm (loads the compiled code)
    t0 = time.process_time()
    ref = _python_poisson(perf, sizes, arrivals)
    t1 = time.process_time()
    got = compiled()
    t2 = time.process_time()
    diff = float(np.max(np.abs(got[0] - ref[0]) / ref[0]))
    assert diff <= 1e-9 and got[1] == ref[1], (diff, got[1], ref[1])
    return {"case": "poisson", "requests": requests, "python_s": t1 - t0, "compiled_s": t2 - t1, "max_rel_diff": diff,
            "preemptions": ref[1]}


def closed(rounds: float) -> dict[str, Any]:
    from sojourn.sim import _engine_kernel
    from sojourn.sim.closed_loop import closed_loop

    perf = _perf()

    def once() -> Any:
        return closed_loop(perf, 1000, 200, 64, measure_rounds=rounds)

    once()
    t0 = time.process_time()
    fast = once()
    t1 = time.process_time()
    real = _engine_kernel.available
    _engine_kernel.available = lambda: False  # type: ignore[assignment]
    try:
        slow = once()
    finally:
        _engine_kernel.available = real  # type: ignore[assignment]
    t2 = time.process_time()
    assert fast == slow
    n = 64 + 64 + fast.measured  # completions: the staggering pass (64), warm-up (64) and measured
    return {"case": "closed_loop", "requests": n, "python_s": t2 - t1, "compiled_s": t1 - t0, "max_rel_diff": 0.0,
            "preemptions": fast.preemptions}


def capacity(measure: int) -> dict[str, Any]:
    from sojourn.fast.capacity import _engine_capacity
    from sojourn.scenario import load_scenario
    from sojourn.sim import _engine_kernel

    sc = load_scenario(ROOT / "examples" / "llama8b-h100.toml")
    _engine_capacity(sc, 1000, None)
    t0 = time.process_time()
    fast = _engine_capacity(sc, measure, None)
    t1 = time.process_time()
    real = _engine_kernel.available
    _engine_kernel.available = lambda: False  # type: ignore[assignment]
    try:
        slow = _engine_capacity(sc, measure, None)
    finally:
        _engine_kernel.available = real  # type: ignore[assignment]
    t2 = time.process_time()
    assert fast.requests_per_s == slow.requests_per_s and fast.work_coef == slow.work_coef
    warm = max(2_000, 3 * sc.serving.max_num_seqs)
    return {"case": "node_capacity", "requests": warm + measure, "python_s": t2 - t1, "compiled_s": t1 - t0,
            "max_rel_diff": 0.0, "preemptions": fast.preemptions}


def capacity_engine(measure: int) -> dict[str, Any]:
    """The saturated run alone (no mix drawing, no work fit): ``drive`` on the Python engine vs the kernel."""
    from sojourn.fast.capacity import _accepted, _engine_mix, _run_compiled, _Saturated
    from sojourn.scenario import load_scenario
    from sojourn.sim.driver import drive
    from sojourn.sim.engine import Engine

    sc = load_scenario(ROOT / "examples" / "llama8b-h100.toml")
    perf, sv = sc.perf_model(), sc.serving
    inp, out = _engine_mix(sc, None)
    ok = _accepted(sc, perf, inp, out)
    inp, out = inp[ok], out[ok]
    warm = max(2_000, 3 * sv.max_num_seqs)

    def run() -> _Saturated:
        return _Saturated(inp, out, warm, warm + measure, perf.step_time)

    _run_compiled(run(), perf, sv)
    t0 = time.process_time()
    fast = run()
    eng_fast = _run_compiled(fast, perf, sv)
    t1 = time.process_time()
    slow = run()
    eng = Engine(perf, perf.kv_capacity_blocks, perf.block_size, sv.max_num_seqs, sv.max_num_batched_tokens,
                 source=slow.source)
    drive(eng, slow.more, slow.on_done, on_plan=slow.on_plan)
    t2 = time.process_time()
    assert eng.now == eng_fast.now and slow.latencies == fast.latencies and slow.tok_cost == fast.tok_cost
    return {"case": "saturated run alone", "requests": warm + measure, "python_s": t2 - t1, "compiled_s": t1 - t0,
            "max_rel_diff": 0.0, "preemptions": eng.preemptions}


def compile_time() -> float:
    """Seconds numba takes to compile the kernel with an empty cache (process time of the first call)."""
    from sojourn.sim import _engine_kernel

    t0 = time.process_time()
    _engine_kernel.run_node(_perf(), 100, 16, 4, 512, sizes=np.array([[10, 5]]), arrivals=[0.0], until_done=1)
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=50_000, help="Poisson case: requests simulated")
    ap.add_argument("--write", action="store_true", help="replace the ## engine_kernel section of RESULTS.md")
    args = ap.parse_args(argv)
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="sojourn-numba-")  # before numba is imported
    comp = compile_time()
    rows = [poisson(args.requests), closed(40.0), capacity(100_000), capacity_engine(100_000)]
    lines = [f"numba compile time (empty cache, first call): {comp:.1f} CPU-s, excluded below.", "",
             "| case | requests | preemptions | Python µs/request | compiled µs/request | ratio | max rel. diff |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        py, co = 1e6 * r["python_s"] / r["requests"], 1e6 * r["compiled_s"] / r["requests"]
        lines.append(f"| {r['case']} | {r['requests']:,} | {r['preemptions']:,} | {py:.2f} | {co:.2f} | "
                     f"{py / co:.1f}x | {r['max_rel_diff']:.1e} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        cmd = "PYTHONPATH=src .venv/bin/python benchmarks/engine_kernel_speed.py " + " ".join(argv or sys.argv[1:])
        head = (f"{SECTION}\n\nCommand: `{cmd}` (Python {platform.python_version()}, {platform.machine()}, "
                f"{os.cpu_count()} CPUs, shared). CPU-seconds (`time.process_time`) per simulated request, Python "
                "engine (`Engine` + `drive`) and compiled kernel in the same process; both give the same times.\n\n")
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _results import write_section  # the section by its heading line, not a mention of it elsewhere

        write_section(SECTION, head + text + "\n\n" + EXPLAIN + "\n", RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
