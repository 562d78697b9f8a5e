"""Pipeline parallelism (``PerfModel.pp``, ``serving.pipeline_parallel_size``).

A replica of pp stages of tp GPUs: memory per GPU from first principles (weights over tp·pp GPUs,
each GPU the KV of 1/pp of the layers), step times by hand on a profile without overheads (a
decode of one sequence still reads every weight once a step, as a single GPU would; a long
prefill's compute is shared over all tp·pp GPUs), the scenario's node of fleet.tp GPUs split into
stages, its errors, and the compiled engine against the Python one.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sojourn._errors import ConfigError
from sojourn.catalogue import default_catalogue
from sojourn.perf import PRIOR, PerfModel, default_profile
from sojourn.scenario import scenario_from_dict
from sojourn.sim import _engine_kernel
from sojourn.sim.closed_loop import closed_loop, offline_batch

CAT = default_catalogue()
M70, H100 = CAT.model("llama-3.1-70b"), CAT.gpu("h100-sxm")
#: No host, latency or fill terms: every term of a step is a byte or FLOP count over a rate.
BARE = replace(PRIOR, step_overhead_s=0.0, seq_overhead_s=0.0, comm_latency_s=0.0, gemm_half_tokens=0.0,
               host_overlap=False)  # fmt: skip


def pm(tp: int, pp: int = 1, profile=BARE) -> PerfModel:
    return PerfModel(M70, H100, tp, "fp8", profile, kv_cache_dtype="fp8", pp=pp)


def test_memory_per_gpu_splits_weights_over_all_gpus_and_layers_over_stages():
    a, b = pm(4, 2), pm(8)
    assert a.weights_bytes_per_gpu == pytest.approx(b.weights_bytes_per_gpu, rel=1e-12)
    assert a.kv_bytes_per_token_per_gpu == pytest.approx(pm(4).kv_bytes_per_token_per_gpu / 2, rel=1e-12)
    # 8 KV heads: TP8 keeps one per GPU over 80 layers, TP4xPP2 two per GPU over 40: the same bytes
    assert a.kv_bytes_per_token == pytest.approx(b.kv_bytes_per_token, rel=1e-12)


def test_a_lone_decode_reads_every_weight_once_a_step():
    a, one = pm(1, 2), pm(1)
    bw = H100.bandwidth_bytes_per_s * BARE.eff_memory
    ic = H100.interconnect_bytes_per_s * BARE.eff_interconnect
    ctx = 3000
    # PP2 on two GPUs: each stage reads its half of the weights, one after the other; its half of the layers' KV;
    # and hands one token's hidden state (h·2 bytes) to the next stage
    expected = a.weights_bytes / bw + a.kv_bytes_per_token_per_gpu * ctx / bw + M70.hidden_size * 2.0 / ic
    assert a.step_time(0, 1, ctx) == pytest.approx(expected, rel=1e-12)
    assert a.step_time(0, 1, ctx) < one.step_time(0, 1, ctx)  # the KV reads are split; the weight reads are not
    assert a.weights_bytes / bw == pytest.approx(one.weights_bytes / bw)


def test_a_long_prefill_shares_its_compute_over_every_gpu():
    a = pm(1, 2)
    peak = H100.peak_flops("fp8") * BARE.compute_efficiency("fp8")
    ic = H100.interconnect_bytes_per_s * BARE.eff_interconnect
    T = 16384
    pairs = T * T / 2.0
    lm_head = M70.vocab_size * M70.hidden_size
    layer_flops = 2.0 * (M70.matmul_parameters - lm_head) * T
    attn_flops = 4.0 * M70.num_layers * M70.num_attention_heads * M70.head_dim * pairs
    expected = ((layer_flops + attn_flops) / (2 * peak)  # over both GPUs
                + 2.0 * lm_head / peak  # the one sampled token's logits, on the last stage's GPU
                + T * M70.hidden_size * 2.0 / ic)  # the hidden states handed from stage to stage
    assert a.step_time(T, 0, 0, pairs, 1) == pytest.approx(expected, rel=1e-9)
    # TP2 pays two all-reduces a layer on the same tokens; PP2 one hand-over
    assert a.step_time(T, 0, 0, pairs, 1) < pm(2).step_time(T, 0, 0, pairs, 1)


def test_host_and_fill_count_once_per_micro_batch():
    prof = replace(BARE, step_overhead_s=0.004, gemm_half_tokens=100.0)
    a, one = pm(1, 2, prof), pm(1, 1, prof)
    assert a._so == pytest.approx(2 * 0.004)
    # the fill's half point in tokens, times the micro-batches (each holds half the step's tokens)
    assert a._t_half == pytest.approx(2 * one._t_half)
    assert pm(2, 1, prof)._t_half == one._t_half


def _scenario(**serving):
    return scenario_from_dict({
        "sla_hours": 1.0,
        "workload": {"batch_rate_per_hour": 10.0, "batch_size": {"dist": "geometric", "mean": 5},
                     "input_tokens": {"dist": "fixed", "value": 500}, "output_tokens": {"dist": "fixed", "value": 100}},
        "model": {"name": serving.pop("model", "llama-3.1-70b"), "precision": "fp8"},
        "fleet": {"gpu": "h100-sxm", "nodes": 2, "tp": serving.pop("tp", 8)},
        "serving": {"backend": "trtllm", **serving},
    })  # fmt: skip


def test_the_scenarios_node_splits_its_gpus_into_stages():
    sc = _scenario(pipeline_parallel_size=2)
    perf = sc.perf_model()
    assert (perf.tp, perf.pp) == (4, 2)
    assert sc.cost_per_hour == pytest.approx(_scenario().cost_per_hour)  # still 8 GPUs a node
    assert "pipeline_parallel_size" not in _scenario().model_dump()["serving"]  # fingerprints as before at 1
    assert perf.describe()["pp"] == 2


@pytest.mark.parametrize("kw, fragment", [
    (dict(pipeline_parallel_size=3), "allowed: 1, 2, 4, 8"),
    (dict(pipeline_parallel_size=2, model="gpt-oss-120b", tp=2), "dense full-attention models only"),
    (dict(pipeline_parallel_size=0), "pipeline_parallel_size"),
])  # fmt: skip
def test_a_bad_stage_count_names_the_field(kw, fragment):
    with pytest.raises(ConfigError) as err:
        _scenario(**kw).perf_model()
    assert "pipeline_parallel_size" in err.value.field and fragment in str(err.value)


def test_the_compiled_engine_runs_stages_as_the_python_one(monkeypatch):
    perf = PerfModel(M70, H100, 2, "fp8", default_profile("h100-sxm", "trtllm"), kv_cache_dtype="fp8", pp=2,
                     max_num_seqs=128, max_num_batched_tokens=2048)  # fmt: skip
    fast = [closed_loop(perf, 1000, 200, 64), offline_batch(perf, 500, 300, 400)]
    monkeypatch.setattr(_engine_kernel, "available", lambda: False)
    slow = [closed_loop(perf, 1000, 200, 64), offline_batch(perf, 500, 300, 400)]
    assert fast == slow
