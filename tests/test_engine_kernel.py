"""The compiled engine node (``sim._engine_kernel``) against the Python engine run by ``driver.drive``.

Randomized scenarios (seeded numpy: prompt and output laws, block size, max_num_seqs,
max_num_batched_tokens, KV caches small enough to preempt, Poisson and bunched arrivals,
tp 1 and 4) must give every request's first-token and completion time to 1e-9 (relative)
and the same preemption counts; the closed loop and the saturated node's capacity must be
those of the Python engine; the kernel's own code run as plain Python (numba off) too; and
what the kernel does not model falls back to the Python engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sojourn.catalogue import default_catalogue
from sojourn.perf import build_perf_model
from sojourn.sim import _engine_kernel
from sojourn.sim.closed_loop import closed_loop
from sojourn.sim.driver import drive
from sojourn.sim.engine import Engine, Request

CAT = default_catalogue()
PERF = build_perf_model(CAT.model("llama-3.1-8b"), CAT.gpu("h100-sxm"), check=False)
PERF_TP4 = build_perf_model(CAT.model("llama-3.1-70b"), CAT.gpu("h100-sxm"), tp=4, check=False)
#: TensorRT-LLM's profiles: the host overlaps the GPU (a step is max(host, GPU)) and the GEMMs fill up
#: (T_half > 0). On B200 a small model's step is the host's at small batches, the GPU's at large ones.
PERF_TRT = build_perf_model(CAT.model("llama-3.1-8b"), CAT.gpu("b200"), precision="fp8", backend="trtllm", check=False)
PERF_TRT_TP4 = build_perf_model(CAT.model("llama-3.1-70b"), CAT.gpu("h100-sxm"), tp=4, precision="fp8",
                                backend="trtllm", check=False)

needs_numba = pytest.mark.skipif(not _engine_kernel.available(), reason="numba not available or switched off")


def python_engine(perf, sizes, arrivals, blocks, bs, seqs, budget):
    """Every request's (first token, completion, preemptions) and the engine's preemptions, by Engine + drive."""
    eng = Engine(perf, blocks, bs, seqs, budget)
    reqs: list[Request] = []
    done: dict[int, float] = {}

    def arrive(t):
        r = Request(len(reqs), int(sizes[len(reqs), 0]), int(sizes[len(reqs), 1]))
        reqs.append(r)
        eng.enqueue(r)

    drive(eng, lambda: len(done) < len(sizes), lambda ev: done.__setitem__(ev.request.rid, ev.time),
          arrivals=list(arrivals), on_arrival=arrive)
    first = np.array([r.first_token_time for r in reqs])
    end = np.array([done[i] for i in range(len(reqs))])
    return first, end, np.array([r.preemptions for r in reqs]), eng.preemptions


def scenario(seed: int):
    """A random one-node scenario: (perf, sizes, arrivals, blocks, block size, max_num_seqs, token budget)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 150))
    bs = int(rng.choice([1, 4, 16, 32]))
    seqs = int(rng.integers(1, 64))
    budget = int(rng.integers(seqs, 4096)) if rng.random() < 0.8 else int(rng.integers(1, 64))
    if rng.random() < 0.5:
        sizes = np.stack([rng.integers(1, 2000, n), rng.integers(1, 500, n)], 1)
    else:  # lognormal prompts and outputs, as the workload laws
        sizes = np.stack([np.ceil(rng.lognormal(6.0, 1.0, n)), np.ceil(rng.lognormal(4.5, 1.0, n))], 1).astype(np.int64)
    blocks = int(max(-(-(a + b) // bs) for a, b in sizes) * rng.uniform(1.0, 6.0))
    if rng.random() < 0.7:  # Poisson arrivals
        arrivals = rng.exponential(1.0 / rng.uniform(0.5, 50.0), n).cumsum()
    else:  # bunched: several requests at each of a few instants
        arrivals = np.sort(rng.choice(rng.uniform(0.0, 5.0, 5), n))
    perf = PERF if rng.random() < 0.7 else PERF_TP4
    if seed % 3 == 2:  # a third of the seeds on TensorRT-LLM's overlapping, filling profiles
        perf = PERF_TRT if perf is PERF else PERF_TRT_TP4
    return perf, sizes, arrivals, blocks, bs, seqs, budget


def assert_same(res, ref):
    first, end, pre, total = ref
    np.testing.assert_allclose(res.first_token, first, rtol=1e-9, atol=0)
    np.testing.assert_allclose(res.done, end, rtol=1e-9, atol=0)
    np.testing.assert_array_equal(res.preemptions_of, pre)
    assert res.preemptions == total


@needs_numba
def test_compiled_node_matches_the_python_engine_on_random_scenarios():
    preempted = 0
    for seed in range(60):
        perf, sizes, arrivals, blocks, bs, seqs, budget = scenario(seed)
        ref = python_engine(perf, sizes, arrivals, blocks, bs, seqs, budget)
        res = _engine_kernel.run_node(perf, blocks, bs, seqs, budget, sizes=sizes, arrivals=arrivals,
                                      until_done=len(sizes))
        assert_same(res, ref)
        preempted += ref[3] > 0
    assert preempted >= 20  # the scenarios do exercise preemption


def test_the_kernels_step_arithmetic_is_the_perf_models():
    """Step, decode-run and fixed-part times of the kernel's helpers against PerfModel's, on both sides of
    max(host, GPU) and with the GEMM fill, bit for bit."""
    assert PERF_TRT.profile.host_overlap and PERF_TRT.profile.gemm_half_tokens > 0
    host_side = gpu_side = 0
    for perf in (PERF, PERF_TP4, PERF_TRT, PERF_TRT_TP4):
        pc = _engine_kernel.perf_constants(perf)
        for ptok, dec, ctx, pairs, done in [(0, 1, 100, 0.0, 0), (512, 0, 0, 131072.0, 1), (0, 256, 200_000, 0.0, 0),
                                            (3000, 40, 40_000, 4.5e6, 2), (0, 2048, 4_000_000, 0.0, 0), (7, 3, 9, 24.5, 0)]:
            assert _engine_kernel._step_time(pc, ptok, dec, ctx, pairs, done) == perf.step_time(ptok, dec, ctx, pairs, done)
        for seqs in (1, 8, 64, 256, 1024, 2048):
            assert _engine_kernel._decode_fixed(pc, seqs) == perf.decode_step_fixed(seqs)
            for ctx0, steps in [(0, 1), (seqs * 100, 7), (seqs * 3000, 500), (5, 0)]:
                assert _engine_kernel._decode_run_time(pc, seqs, ctx0, steps) == perf.decode_run_time(seqs, ctx0, steps)
            if perf.profile.host_overlap:
                host = perf._decode_host(seqs)
                host_side += host > perf._decode_gpu_fixed(seqs)
                gpu_side += host < perf._decode_gpu_fixed(seqs)
    assert host_side and gpu_side  # both sides of the max are exercised


_PURE = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_engine_kernel import scenario
from sojourn.sim import _engine_kernel
assert not _engine_kernel.available()
out = []
for seed in {seeds!r}:
    perf, sizes, arrivals, blocks, bs, seqs, budget = scenario(seed)
    r = _engine_kernel.run_node(perf, blocks, bs, seqs, budget, sizes=sizes, arrivals=arrivals, until_done=len(sizes))
    out.append([r.first_token.tolist(), r.done.tolist(), r.preemptions_of.tolist(), r.preemptions])
print(json.dumps(out))
"""


def test_the_kernel_as_plain_python_matches_the_python_engine():
    seeds = [0, 2, 3, 7]
    env = dict(os.environ, SOJOURN_NO_NUMBA="1")
    code = _PURE.format(tests=str(Path(__file__).parent), seeds=seeds)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    for seed, (first, end, pre, total) in zip(seeds, json.loads(out.stdout), strict=True):
        perf, sizes, arrivals, blocks, bs, seqs, budget = scenario(seed)
        ref = python_engine(perf, sizes, arrivals, blocks, bs, seqs, budget)
        np.testing.assert_allclose(first, ref[0], rtol=1e-9, atol=0)
        np.testing.assert_allclose(end, ref[1], rtol=1e-9, atol=0)
        assert pre == ref[2].tolist() and total == ref[3]


@needs_numba
def test_closed_loop_on_the_kernel_equals_the_python_engine(monkeypatch):
    cases = [(1000, 200, 32, None), (2000, 500, 64, 2000), (3000, 1, 16, None), (500, 300, 100, 800)]
    perfs = (PERF, PERF_TRT)
    fast = [closed_loop(perf, i, o, c, kv_blocks=kv) for perf in perfs for i, o, c, kv in cases]
    monkeypatch.setattr(_engine_kernel, "available", lambda: False)
    slow = [closed_loop(perf, i, o, c, kv_blocks=kv) for perf in perfs for i, o, c, kv in cases]
    assert fast == slow
    assert any(r.preemptions for r in slow)


def _llm(**serving):
    from sojourn.scenario import scenario_from_dict

    return scenario_from_dict({
        "sla_hours": 0.1,
        "workload": {"batch_rate_per_hour": 100.0, "batch_size": {"dist": "geometric", "mean": 50},
                     "input_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6},
                     "output_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.6}},
        "fleet": {"nodes": 2, "gpu": "h100-sxm"},
        "serving": {"max_num_seqs": 64, "max_model_len": 8192, **serving},
        "simulation": {"horizon_hours": 1.0, "warmup_hours": 0.1, "replications": 2, "seed": 1},
    })


@needs_numba
def test_saturated_capacity_on_the_kernel_equals_the_python_engine(monkeypatch):
    from sojourn.fast.capacity import _engine_capacity

    def figures(sc):
        c = _engine_capacity(sc, 3000, None)
        return (c.requests_per_s, c.concurrency, c.latency_s, c.work_coef, c.preemptions, c.in_service_work,
                c.works.tolist(), c.measured_requests)

    scenarios = [_llm(), _llm(gpu_memory_utilization=0.25, max_num_seqs=256), _llm(backend="trtllm")]
    fast = [figures(sc) for sc in scenarios]
    monkeypatch.setattr(_engine_kernel, "available", lambda: False)
    slow = [figures(sc) for sc in scenarios]
    assert fast == slow
    assert slow[1][4] > 0  # the small cache preempts


def test_unsupported_settings_fall_back_to_the_python_engine(monkeypatch):
    assert _engine_kernel.supported(PERF) and _engine_kernel.supported(PERF_TP4)
    assert not _engine_kernel.supported(PERF, prefix_caching=True)
    for model, tp in [("qwen3-235b-a22b", 4), ("gpt-oss-120b", 1), ("deepseek-v3", 8)]:
        gpu = CAT.gpu("h200" if model == "deepseek-v3" else "h100-sxm")
        assert not _engine_kernel.supported(build_perf_model(CAT.model(model), gpu, tp=tp, precision="fp8", check=False))

    class Slower:  # an EnginePerf that is not a PerfModel
        def __getattr__(self, name):
            return getattr(PERF, name)

    assert not _engine_kernel.supported(Slower())

    def refuse(*args, **kwargs):
        raise AssertionError("the kernel ran for an unsupported setting")

    monkeypatch.setattr(_engine_kernel, "run_node", refuse)
    moe = build_perf_model(CAT.model("qwen3-235b-a22b"), CAT.gpu("h100-sxm"), tp=4, precision="fp8", check=False)
    assert closed_loop(moe, 500, 50, 4).measured > 0
    monkeypatch.setenv("SOJOURN_NO_NUMBA", "1")
    monkeypatch.setattr(_engine_kernel, "_COMPILED", [])
    assert not _engine_kernel.available()
    assert closed_loop(PERF, 500, 50, 4).measured > 0


@needs_numba
def test_a_node_idle_while_completions_are_expected_raises():
    sizes = np.array([[100, 10], [200, 20]])
    with pytest.raises(RuntimeError, match="idle"):
        _engine_kernel.run_node(PERF, 1000, 16, 8, 2048, sizes=sizes, arrivals=[0.0, 1.0], until_done=3)
