"""The performance model: memory against hand computations, step-time properties, fit checks."""

from __future__ import annotations

import math

import pytest

from sojourn import ConfigError
from sojourn.catalogue import default_catalogue
from sojourn.perf import GIB, PerfModel, Profile, build_perf_model

CAT = default_catalogue()


def pm(model="llama-3.1-8b", gpu="h100-sxm", tp=1, precision="bf16", **kw) -> PerfModel:
    return build_perf_model(CAT.model(model), CAT.gpu(gpu), tp=tp, precision=precision, check=False, **kw)


def test_kv_capacity_llama70b_tp4_by_hand():
    # Llama-3.1-70B: 80 layers, 8 KV heads of dim 128; tp=4 puts 2 KV heads on each GPU.
    m = pm("llama-3.1-70b", tp=4)
    kv_per_token_gpu = 2 * 80 * 2 * 128 * 2  # K and V, layers, heads, dim, bf16 bytes = 81,920
    assert m.kv_bytes_per_token_per_gpu == kv_per_token_gpu
    assert m.kv_bytes_per_token == 4 * kv_per_token_gpu  # = 2*80*8*128*2: the heads are split, not copied
    weights_gpu = 70.6e9 * 2 / 4  # every parameter in bf16, a quarter per GPU
    assert m.weights_bytes_per_gpu == pytest.approx(weights_gpu, rel=0.01)
    reserve = 1 * GIB + 8192 * (4 * 8192 + 2 * 28672 / 4) * 2 + 256 * 128256 * 4 / 4
    free = 80 * GIB * 0.9 - m.weights_bytes_per_gpu - reserve
    blocks = int(free // (kv_per_token_gpu * 16))
    assert m.kv_capacity_blocks == blocks
    assert m.kv_capacity_tokens == blocks * 16
    # Order of magnitude: ~37 GiB free per GPU over 80 KiB per token is about half a million tokens.
    assert 400_000 < m.kv_capacity_tokens < 600_000


def test_kv_heads_replicate_when_tp_exceeds_them():
    # 8 KV heads on 16 GPUs: each GPU holds one (replicated) head, not half a head.
    m = pm("llama-3.1-405b", tp=16)
    assert m.kv_heads_per_gpu == 1
    assert m.kv_bytes_per_token_per_gpu == 2 * 126 * 1 * 128 * 2
    m8 = pm("llama-3.1-405b", tp=8)
    assert m8.kv_bytes_per_token_per_gpu == m.kv_bytes_per_token_per_gpu


def test_tp_shards_weights_and_kv():
    one, two = pm(tp=1), pm(tp=2)
    assert two.weights_bytes_per_gpu == pytest.approx(one.weights_bytes_per_gpu / 2)
    assert two.kv_bytes_per_token_per_gpu == one.kv_bytes_per_token_per_gpu / 2
    assert two.kv_capacity_tokens > 2 * one.kv_capacity_tokens  # weights freed on each GPU too


def test_fp8_halves_layer_weights_and_kv():
    b, f = pm(precision="bf16"), pm(precision="fp8")
    assert f.kv_bytes_per_token == b.kv_bytes_per_token / 2
    emb = 2 * 128256 * 4096 * 2  # untied embedding and lm_head stay bf16
    assert f.weights_bytes == pytest.approx((b.weights_bytes - emb) / 2 + emb)


def test_decode_run_time_is_the_exact_sum_of_its_steps():
    m = pm("qwen3-32b", tp=2)
    for seqs, ctx0, k in [(1, 100, 1), (7, 5000, 13), (64, 64 * 1500, 250), (256, 256 * 40, 3)]:
        by_step = sum(m.step_time(0, seqs, ctx0 + seqs * j) for j in range(k))
        assert m.decode_run_time(seqs, ctx0, k) == pytest.approx(by_step, rel=1e-12)


def test_step_time_grows_with_work():
    m = pm()
    assert m.beta(64, 4096) > m.beta(64, 1024) > m.beta(8, 1024) > 0
    assert m.step_time(2048, 0, 0) > m.step_time(512, 0, 0)
    # Prefill is compute-bound: at large chunks alpha approaches the GEMM cost per token.
    flops_per_token = 2 * (CAT.model("llama-3.1-8b").matmul_parameters - 128256 * 4096)
    floor = flops_per_token / (CAT.gpu("h100-sxm").peak_flops("bf16") * m.profile.eff_compute)
    assert m.alpha(8192) > floor
    assert m.alpha(8192) < 3 * floor


def test_tp_adds_communication_and_divides_compute():
    prof = Profile(gpu="h100-sxm", step_overhead_s=0.0, comm_latency_s=0.0)
    one = pm(tp=1, profile=prof)
    two = pm(tp=2, profile=prof)
    # Compute-bound prefill: two GPUs take about half the time, plus all-reduce traffic.
    assert one.alpha(8192) / 2 < two.alpha(8192) < one.alpha(8192)


def test_fit_errors_name_the_field():
    with pytest.raises(ConfigError) as e:
        build_perf_model(CAT.model("llama-3.1-8b"), CAT.gpu("h100-sxm"), tp=3)
    assert e.value.field == "fleet.tp" and "allowed: 1, 2, 4, 8, 16, 32" in str(e.value)
    with pytest.raises(ConfigError) as e:
        build_perf_model(CAT.model("llama-3.1-70b"), CAT.gpu("l4"), tp=1)
    assert e.value.field == "fleet.tp" and "GiB" in str(e.value)
    with pytest.raises(ConfigError) as e:
        build_perf_model(CAT.model("llama-3.1-8b"), CAT.gpu("a100-80gb"), precision="fp8")
    assert e.value.field == "model.precision"


def test_kv_too_small_for_one_request_is_an_error():
    class S:
        gpu_memory_utilization = 0.9
        max_num_batched_tokens = 8192
        max_num_seqs = 256
        block_size = 16
        max_model_len = 10_000_000

    with pytest.raises(ConfigError) as e:
        build_perf_model(CAT.model("llama-3.1-8b"), CAT.gpu("h100-sxm"), serving=S())
    assert e.value.field == "serving.max_model_len"


def test_requests_in_kv():
    m = pm()
    assert m.requests_in_kv(1024) == m.kv_capacity_blocks // 64
    assert m.requests_in_kv(1025) == m.kv_capacity_blocks // 65
    assert math.isclose(m.kv_capacity_tokens / 1024, m.requests_in_kv(1024), rel_tol=0.01)
