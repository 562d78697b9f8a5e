"""Data-parallel attention (``PerfModel.dp``, ``serving.data_parallel_size``): dp ranks of tp GPUs run the
attention and dense layers on their own sequences, the experts spread over all tp·dp GPUs.

Memory per GPU by hand (dense weights replicated per rank, the experts shared; a token's KV in one
rank, which for MLA's latent, replicated by tensor parallelism, is what data parallelism is for),
step times by hand on a profile without overheads (a decode waits for the busiest rank, a prefill
runs on one rank's GPUs, the routed experts on all), the scenario's settings and errors, and the
silicon rows that carry their ranks.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sojourn._errors import ConfigError
from sojourn.catalogue import default_catalogue
from sojourn.perf import PRIOR, PerfModel, ep_busiest
from sojourn.perf._calibrate import load_silicon
from sojourn.perf._model import EXPERT_LOAD_IMBALANCE, weight_bytes_per_param
from sojourn.scenario import scenario_from_dict
from test_calibrate import SILICON

CAT = default_catalogue()
OSS, R1, B200 = CAT.model("gpt-oss-120b"), CAT.model("deepseek-r1"), CAT.gpu("b200")
BARE = replace(PRIOR, step_overhead_s=0.0, seq_overhead_s=0.0, comm_latency_s=0.0, gemm_half_tokens=0.0,
               host_overlap=False)  # fmt: skip


def pm(model, tp, dp=1, ep=1, **kw) -> PerfModel:
    return PerfModel(model, B200, tp, "fp8", BARE, kv_cache_dtype="fp8", dp=dp, ep=ep, **kw)


def test_dense_weights_stay_in_every_rank_and_the_experts_are_shared():
    a = pm(OSS, 2, dp=2, ep=4)
    experts = OSS.num_experts * OSS.moe_layers * OSS.expert_parameters * weight_bytes_per_param("fp8")
    assert a.weights_bytes_per_gpu == pytest.approx((a.weights_bytes - experts) / 2 + experts / 4, rel=1e-12)
    assert a.weights_bytes_per_gpu > pm(OSS, 4, ep=4).weights_bytes_per_gpu  # TP4 splits the dense part 4 ways


def test_mla_latent_kv_is_split_by_ranks_not_by_tensor_slices():
    tp8, dp8 = pm(R1, 8), pm(R1, 1, dp=8, ep=8)
    # TP keeps the whole latent on every GPU; eight ranks keep a token's latent on one GPU of eight
    assert dp8.kv_bytes_per_token_per_gpu == pytest.approx(tp8.kv_bytes_per_token_per_gpu / 8, rel=1e-12)
    assert dp8.kv_capacity_tokens > 4 * tp8.kv_capacity_tokens


def test_a_decode_waits_for_the_busiest_rank_and_shares_the_experts():
    a = pm(OSS, 1, dp=4, ep=4)
    peak = 4 * B200.peak_flops("fp8") * BARE.compute_efficiency("fp8")
    lm_head = OSS.vocab_size * OSS.hidden_size
    routed = float(OSS.moe_layers * OSS.experts_per_token) * OSS.expert_parameters
    dense = OSS.active_matmul_parameters - lm_head - routed
    B = 64
    busiest = ep_busiest(B, 4)
    compute = (4 * (2.0 * dense / peak * busiest + 2.0 * lm_head / peak * busiest)
               + 2.0 * EXPERT_LOAD_IMBALANCE * routed / peak * B + a.ep_compute_excess(B))  # fmt: skip
    lin = max(compute, a.weight_read_time(B))
    expected = lin + a._c_ctx * B * 1000 + a._comm_fixed + a._comm_tok * B + a._c_window * B
    assert a.step_time(0, B, B * 1000) == pytest.approx(expected, rel=1e-12)
    assert busiest > B / 4  # the ranks are not perfectly balanced at 16 sequences each


def test_a_prefill_runs_on_one_ranks_gpus():
    # 16k tokens of one prompt: dense GEMMs and attention on one of 4 ranks, four times its share of the replica
    one_rank, spread = pm(OSS, 1, dp=4, ep=4), pm(OSS, 4, ep=4)
    T = 16384
    assert one_rank._c_pair == pytest.approx(4 * spread._c_pair, rel=1e-12)
    # gpt-oss's dense part is small (the routed experts, shared by all GPUs, are most of a token's work)
    extra = one_rank.step_time(T, 0, 0, prefill_done=1) - spread.step_time(T, 0, 0, prefill_done=1)
    assert extra > 3 * one_rank._c_dense * T


def _scenario(**serving):
    return scenario_from_dict({
        "sla_hours": 1.0,
        "workload": {"batch_rate_per_hour": 10.0, "batch_size": {"dist": "geometric", "mean": 5},
                     "input_tokens": {"dist": "fixed", "value": 500}, "output_tokens": {"dist": "fixed", "value": 100}},
        "model": {"name": serving.pop("model", "gpt-oss-120b"), "precision": "fp8"},
        "fleet": {"gpu": "b200", "nodes": 2, "tp": serving.pop("tp", 4)},
        "serving": {"max_num_seqs": 64, "max_num_batched_tokens": 4096, **serving},
    })  # fmt: skip


def test_the_scenarios_node_splits_into_ranks_with_their_own_limits():
    perf = _scenario(data_parallel_size=2, enable_expert_parallel=True).perf_model()
    assert (perf.tp, perf.dp, perf.ep) == (2, 2, 4)
    assert (perf.max_num_seqs, perf.max_num_batched_tokens) == (128, 8192)
    assert _scenario(data_parallel_size=2).perf_model().ep == 1  # experts sliced over all four GPUs
    assert "data_parallel_size" not in _scenario().model_dump()["serving"]
    assert perf.describe()["dp"] == 2


@pytest.mark.parametrize("kw, fragment", [
    (dict(data_parallel_size=3), "allowed: 1, 2, 4"),
    (dict(data_parallel_size=2, model="llama-3.1-70b"), "dense model"),
    (dict(data_parallel_size=2, pipeline_parallel_size=2, model="llama-3.1-70b"), "data_parallel_size"),
])  # fmt: skip
def test_a_bad_rank_count_names_the_field(kw, fragment):
    with pytest.raises(ConfigError) as err:
        _scenario(**kw).perf_model()
    assert "parallel_size" in err.value.field and fragment in str(err.value)


def test_silicon_rows_with_attention_dp_keep_their_ranks():
    loaded = load_silicon(SILICON, models="moe")
    ranked = [r for r in loaded.records if r.dp > 1]
    assert len(ranked) >= 50
    assert {(r.model, r.tp, r.dp, r.ep) for r in ranked} >= {("minimax-m2.5", 2, 2, 4), ("deepseek-r1", 1, 8, 8)}
    assert all(r.tp * r.dp <= 8 for r in ranked)


def test_sojourn_perf_takes_the_ranks_and_stages(capsys):
    from sojourn.cli import main

    assert main(["perf", "--model", "deepseek-r1", "--gpu", "b200", "--tp", "8", "--precision", "fp4",
                 "--data-parallel-size", "8", "--enable-expert-parallel", "--json"]) == 0  # fmt: skip
    import json

    out = json.loads(capsys.readouterr().out)
    assert (out["tp"], out["dp"], out["ep"], out["pp"]) == (8, 8, 8, 1)
    assert main(["perf", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "8", "--pipeline-parallel-size",
                 "3"]) == 2  # fmt: skip
    assert "serving.pipeline_parallel_size" in capsys.readouterr().err


def test_the_all_to_alls_latency_is_its_own_where_fitted():
    base = pm(OSS, 1, dp=4, ep=4)
    slow = PerfModel(OSS, B200, 1, "fp8", replace(BARE, a2a_latency_s=50e-6), kv_cache_dtype="fp8", dp=4, ep=4)
    # two all-to-alls per MoE layer a step, nothing else changed (BARE's all-reduce latency is 0)
    assert slow._comm_fixed - base._comm_fixed == pytest.approx(2 * OSS.moe_layers * 50e-6, rel=1e-12)
    assert "a2a_latency_s" not in BARE.to_dict() and replace(BARE, a2a_latency_s=1e-5).to_dict()["a2a_latency_s"]
    from sojourn.perf._calibrate import default_fit_params

    ranked = [r for r in load_silicon(SILICON, models="moe").records if r.dp > 1]
    assert "a2a_latency_s" in default_fit_params(ranked)
    assert "a2a_latency_s" not in default_fit_params([replace(r, dp=1) for r in ranked])
    with pytest.raises(ConfigError):
        replace(BARE, a2a_latency_s=-1.0)
