"""Offline throughput runs (all requests queued at once, output tokens over the makespan) and the
TensorRT-LLM throughput table the TensorRT-LLM profiles are fitted on with the closed-loop rows.

``offline_batch`` is checked against exact cases (one request alone is one prefill step and a run of
decode steps; a batch that fits at once finishes with its last request, as the engine says), the
compiled kernel against the Python engine, trtllm-bench's tuning heuristic against hand-worked
values, and the fit against known parameters recovered from synthetic throughput figures.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sojourn._errors import ConfigError
from sojourn.catalogue import default_catalogue
from sojourn.perf import PerfModel, build_perf_model, default_profile
from sojourn.perf._calibrate import (
    OFFLINE_KV_FRACTION,
    ThroughputRow,
    kv_free_utilization,
    load_throughput,
    perf_model_for,
    trtllm_bench_settings,
)
from sojourn.sim import _engine_kernel
from sojourn.sim.calibrate import evaluate, fit_profile
from sojourn.sim.closed_loop import offline_batch

CAT = default_catalogue()
TRT_H100 = build_perf_model(CAT.model("llama-3.1-8b"), CAT.gpu("h100-sxm"), precision="fp8", backend="trtllm",
                            check=False)  # fmt: skip


def test_one_request_alone_takes_a_prefill_step_and_its_decode_run():
    pm = replace(TRT_H100, max_num_batched_tokens=8192, max_num_seqs=8)
    isl, osl = 1500, 40
    res = offline_batch(pm, isl, osl, 1)
    # the first decode step reads the prompt's KV (the sampled token's is written as it runs)
    exact = pm.step_time(isl, 0, 0, prefill_done=1) + pm.decode_run_time(1, isl, osl - 1)
    assert res.makespan_s == pytest.approx(exact, rel=1e-12)
    assert res.output_tokens_per_s == pytest.approx(osl / exact, rel=1e-12)


def test_a_batch_admitted_at_once_decodes_in_lock_step():
    # Four prompts of 100 tokens fit one 512-token step: one prefill step, then the four decode together.
    pm = replace(TRT_H100, max_num_batched_tokens=512, max_num_seqs=4)
    res = offline_batch(pm, 100, 30, 4)
    exact = pm.step_time(400, 0, 0, prefill_pairs=4 * 100 * 100 / 2, prefill_done=4) + pm.decode_run_time(4, 400, 29)
    assert res.makespan_s == pytest.approx(exact, rel=1e-12)
    assert res.preemptions == 0


def test_the_compiled_run_is_the_python_engines(monkeypatch):
    pm = replace(TRT_H100, max_num_batched_tokens=2048, max_num_seqs=96)
    small = replace(pm, gpu_memory_utilization=0.3)  # a KV cache that preempts
    cases = [(pm, 1000, 200, 500), (small, 2000, 800, 300), (pm, 128, 128, 3000)]
    fast = [offline_batch(p, i, o, n) for p, i, o, n in cases]
    monkeypatch.setattr(_engine_kernel, "available", lambda: False)
    slow = [offline_batch(p, i, o, n) for p, i, o, n in cases]
    assert fast == slow
    assert slow[1].preemptions > 0


def test_more_requests_amortise_the_ramp_and_drain():
    pm = replace(TRT_H100, max_num_batched_tokens=2048, max_num_seqs=64)
    few, many = offline_batch(pm, 500, 200, 64), offline_batch(pm, 500, 200, 2000)
    assert many.output_tokens_per_s > few.output_tokens_per_s


def test_trtllm_bench_settings_match_hand_worked_cases():
    # Llama-3.3-70B fp8 on one H200: fp8 KV of 2·80·8·128 B = 1.526e-4 GiB a token; 70.6e9 params = 65.75 GiB;
    # (141 - 65.75)·0.95 GiB holds 234.2 requests of 2000 tokens -> batch 32·ceil(234.2/32) = 256; tokens 468 ->
    # the floor 2048. At 128/128: 1830 requests -> 256·ceil(1830/256) = 2048; tokens 3660 -> 256·ceil(14.3) = 3840.
    m, g = CAT.model("llama-3.3-70b"), CAT.gpu("h200")
    assert trtllm_bench_settings(m, g, 1, "fp8", 1000, 1000) == (256, 2048)
    assert trtllm_bench_settings(m, g, 1, "fp8", 128, 128) == (2048, 3840)
    # Capped at 4096 requests and 32768 tokens; at least 64 requests.
    assert trtllm_bench_settings(CAT.model("llama-3.1-8b"), g, 1, "fp8", 100, 10) == (4096, 32768)
    assert trtllm_bench_settings(m, g, 1, "fp8", 20000, 2000)[0] == 64


def test_the_shipped_table_loads_and_every_row_runs():
    loaded = load_throughput()
    assert len(loaded.records) == 80
    assert {r.gpu for r in loaded.records} == {"b200", "h200", "h100-sxm"}
    assert all(r.backend == "trtllm" and r.kv_free_fraction == OFFLINE_KV_FRACTION for r in loaded.records)
    h200 = load_throughput(gpu="h200")
    assert len(h200.records) == 30 and h200.skipped["other GPU"] == 50
    preds = evaluate(h200.records, default_profile("h200", "trtllm"))
    assert all(p.output_tokens_per_s > 0 for p in preds)
    # The KV cache is TRT-LLM's share of what weights and activations leave, not vLLM's share of the GPU.
    rec = h200.records[0]
    pm = perf_model_for(rec, default_profile("h200", "trtllm"))
    free = pm.gpu.memory_bytes - pm.weights_bytes_per_gpu - pm.activation_reserve_bytes_per_gpu
    assert pm.kv_free_bytes_per_gpu == pytest.approx(OFFLINE_KV_FRACTION * free, rel=1e-9)
    assert kv_free_utilization(pm, 1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("text, fragment", [
    ("model,gpu,tp\nllama-3.1-8b,h200,1\n", "lacks column"),
    ("model,gpu,tp,precision,isl,osl,requests,output_tokens_per_s\nllama-3.1-8b,h200,one,fp8,1,1,1,1\n", "line 2"),
])  # fmt: skip
def test_a_bad_table_names_the_field(tmp_path: Path, text, fragment):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_throughput(path)
    assert err.value.field == "calibrate.throughput" and fragment in str(err.value)


def test_fit_recovers_known_factors_from_throughput_figures():
    known = replace(default_profile("h200", "trtllm"), eff_compute_fp8=0.55, eff_memory=0.8, gemm_half_tokens=120.0)
    rows = [r for r in load_throughput(gpu="h200").records if r.model != "llama-3.1-405b"]
    made = [replace(r, output_tokens_per_s=p.output_tokens_per_s) for r, p in zip(rows, evaluate(rows, known))]
    start = replace(known, eff_compute_fp8=0.4, eff_memory=0.95, gemm_half_tokens=300.0)
    prof = fit_profile(made, "h200", "trtllm", params=("eff_compute_fp8", "eff_memory", "gemm_half_tokens"),
                       start=start, max_nfev=80)  # fmt: skip
    assert prof.eff_compute_fp8 == pytest.approx(0.55, rel=0.03)
    assert prof.eff_memory == pytest.approx(0.8, rel=0.03)
    assert prof.fit["overall"]["mape_throughput"] < 1.0
    assert prof.fit["throughput_rows"] == len(made)


def test_a_throughput_row_is_a_perf_model_with_the_runs_limits():
    rec = ThroughputRow("x", "trtllm", "llama-3.1-8b", "h100-sxm", "fp8", 1, 1000, 1000, 10, 1.0, 640, 2048, 0.9)
    pm = perf_model_for(rec, default_profile("h100-sxm", "trtllm"))
    assert isinstance(pm, PerfModel)
    assert (pm.max_num_seqs, pm.max_num_batched_tokens, pm.kv_cache_dtype) == (640, 2048, "fp8")
