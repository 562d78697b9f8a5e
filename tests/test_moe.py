"""Mixture-of-experts models: HF configs, total vs active parameters, and the perf model's use of each."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sojourn import ConfigError
from sojourn.catalogue import count_parameters, default_catalogue, model_from_hf_config
from sojourn.perf import PRIOR, PerfModel, Profile, build_perf_model, expected_distinct_experts, load_silicon
from sojourn.perf._calibrate import fits
from sojourn.perf._model import weight_bytes_per_param

# mistralai/Mixtral-8x7B-v0.1 config.json (abridged)
MIXTRAL = {
    "_name_or_path": "mistralai/Mixtral-8x7B-v0.1",
    "architectures": ["MixtralForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mixtral",
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}
# deepseek-ai/deepseek-moe-16b-base config.json (abridged): DeepSeek's MoE keys, with MHA
DEEPSEEK_MOE_16B = {
    "_name_or_path": "deepseek-ai/deepseek-moe-16b-base",
    "first_k_dense_replace": 1,
    "hidden_size": 2048,
    "intermediate_size": 10944,
    "max_position_embeddings": 4096,
    "moe_intermediate_size": 1408,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "num_attention_heads": 16,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 28,
    "num_key_value_heads": 16,
    "vocab_size": 102400,
}
# Qwen/Qwen3-30B-A3B config.json (abridged): Qwen3-MoE keys
QWEN3_30B_A3B = {
    "_name_or_path": "Qwen/Qwen3-30B-A3B",
    "decoder_sparse_step": 1,
    "head_dim": 128,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "max_position_embeddings": 40960,
    "mlp_only_layers": [],
    "moe_intermediate_size": 768,
    "num_attention_heads": 32,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 48,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
    "vocab_size": 151936,
}


def test_mixtral_total_and_active_by_hand():
    spec = model_from_hf_config(MIXTRAL)
    assert spec.is_moe and spec.num_experts == 8 and spec.experts_per_token == 2
    assert spec.moe_intermediate_size == 14336  # Mixtral gives the expert size as intermediate_size
    # by hand: attention 2*4096*4096 + 2*4096*1024 per layer, 8 experts of 3*4096*14336, router 4096*8,
    # two norms; embedding and lm_head 32000*4096 each; final norm
    attn = 2 * 4096 * 4096 + 2 * 4096 * 1024
    expert = 3 * 4096 * 14336
    layer_total = attn + 8 * expert + 4096 * 8 + 2 * 4096
    emb = 2 * 32000 * 4096
    total = 32 * layer_total + emb + 4096
    active = total - 32 * 6 * expert
    assert spec.num_parameters == total
    assert spec.active_parameters == active
    assert spec.num_parameters == pytest.approx(46.7e9, rel=0.005)  # "46.7B total" (Mistral)
    assert spec.active_parameters == pytest.approx(12.9e9, rel=0.005)  # "12.9B active"


def test_deepseek_and_qwen3_moe_keys():
    ds = model_from_hf_config(DEEPSEEK_MOE_16B)
    assert (ds.num_experts, ds.experts_per_token, ds.num_shared_experts, ds.first_k_dense_layers) == (64, 6, 2, 1)
    assert ds.moe_layers == 27
    assert ds.num_parameters == pytest.approx(16.4e9, rel=0.01)  # model card: 16.4B
    assert ds.active_parameters == pytest.approx(2.8e9, rel=0.02)  # model card: 2.8B activated
    qw = model_from_hf_config(QWEN3_30B_A3B)
    assert qw.num_parameters == pytest.approx(30.5e9, rel=0.01)  # model card: 30.5B
    assert qw.active_parameters == pytest.approx(3.3e9, rel=0.03)  # model card: 3.3B activated
    # gpt-oss's spelling of top-k
    gpt = {**MIXTRAL, "experts_per_token": 2}
    del gpt["num_experts_per_tok"]
    assert model_from_hf_config(gpt).active_parameters == model_from_hf_config(MIXTRAL).active_parameters


def test_moe_config_needs_top_k_and_refuses_interleaved_dense_layers():
    bad = dict(MIXTRAL)
    del bad["num_experts_per_tok"]
    with pytest.raises(ConfigError, match="num_experts_per_tok"):
        model_from_hf_config(bad)
    with pytest.raises(ConfigError, match="mlp_only_layers"):
        model_from_hf_config({**QWEN3_30B_A3B, "mlp_only_layers": [0, 1]})


def test_dense_count_unchanged_by_moe_arguments():
    kw = dict(num_layers=4, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, vocab_size=1000, tie_word_embeddings=False)  # fmt: skip
    assert count_parameters(**kw) == count_parameters(**kw, num_experts=0, experts_per_token=0)
    # one expert of the dense size, top-1, is the dense model plus its router
    assert count_parameters(**kw, num_experts=1, experts_per_token=1) == count_parameters(**kw) + 4 * 64


def test_catalogue_moe_entries():
    cat = default_catalogue()
    gpt = cat.model("openai/gpt-oss-120b")
    assert gpt.num_parameters == 116.8e9
    # card: 5.1B active, counting the unembedding (lm_head) but not the embedding table
    assert gpt.active_parameters - gpt.embedding_parameters == pytest.approx(5.13e9, rel=0.01)
    qw = cat.model("qwen3-235b-a22b")
    assert qw.active_parameters == pytest.approx(22e9, rel=0.02)
    for dense in ("llama-3.1-70b", "qwen3-32b"):
        spec = cat.model(dense)
        assert not spec.is_moe and spec.active_parameters == spec.num_parameters
        assert spec.active_matmul_parameters == spec.matmul_parameters


def test_moe_fields_validated_in_tables():
    cat = default_catalogue()
    with pytest.raises(ConfigError) as exc:
        cat.with_overrides(models={"qwen3-235b-a22b": {"experts_per_token": 200}})
    assert exc.value.field.endswith("experts_per_token")
    with pytest.raises(ConfigError) as exc:
        cat.with_overrides(models={"qwen3-32b": {"experts_per_token": 2}})
    assert "dense model" in exc.value.message


@pytest.mark.parametrize(("E", "k"), [(8, 2), (128, 4), (256, 8)])
def test_expected_distinct_experts(E, k):
    assert expected_distinct_experts(1, E, k) == pytest.approx(k)
    assert expected_distinct_experts(0, E, k) == 0.0
    assert expected_distinct_experts(10_000, E, k) == pytest.approx(E, rel=1e-9)
    prev = 0.0
    for b in (1, 2, 4, 16, 64, 256):
        hit = expected_distinct_experts(b, E, k)
        assert prev < hit <= min(E, b * k) + 1e-9
        prev = hit


def _mixtral_pm(tp: int = 1, precision: str = "bf16") -> PerfModel:
    cat = default_catalogue()
    return PerfModel(model_from_hf_config(MIXTRAL), cat.gpu("h100-sxm"), tp=tp, precision=precision, profile=PRIOR)


def test_weight_memory_counts_every_expert():
    pm = _mixtral_pm(tp=2)
    spec = pm.model
    emb = 2 * spec.embedding_parameters
    assert pm.weights_bytes == pytest.approx((spec.num_parameters - emb) * 2.0 + emb * 2.0)
    assert pm.weights_bytes > 3 * spec.active_parameters * 2.0


def test_prefill_compute_counts_active_parameters():
    """A long prefill is compute-bound: its linear time scales with the active, not the total, parameters."""
    pm = _mixtral_pm()
    spec = pm.model
    peak = pm.gpu.peak_flops("bf16") * pm.profile.eff_compute
    lm_head = spec.vocab_size * spec.hidden_size
    expected = 2.0 * (spec.active_matmul_parameters - lm_head) / peak
    assert pm._c_tok == pytest.approx(expected, rel=1e-12)
    # the same architecture made dense with all experts active costs E/k times more in routed-expert FLOPs
    dense_all = dataclasses.replace(spec, experts_per_token=spec.num_experts)
    pm_all = PerfModel(dense_all, pm.gpu, tp=1, precision="bf16", profile=PRIOR)
    assert pm_all._c_tok > 3 * pm._c_tok
    T = 8192
    assert pm.step_time(T, 0, 0, prefill_done=1) < pm_all.step_time(T, 0, 0, prefill_done=1)


def test_decode_weight_reads_follow_distinct_experts():
    pm = _mixtral_pm(tp=2)
    spec = pm.model
    bw = pm.gpu.bandwidth_bytes_per_s * pm.profile.eff_memory
    expert_bytes = spec.moe_layers * spec.expert_parameters * weight_bytes_per_param("bf16") / 2
    dense_bytes = pm.weights_bytes_per_gpu - spec.num_experts * expert_bytes
    for b in (1, 3, 16):
        hit = expected_distinct_experts(b, spec.num_experts, spec.experts_per_token)
        assert pm.weight_read_time(b) == pytest.approx((dense_bytes + hit * expert_bytes) / bw, rel=1e-12)
    assert pm.weight_read_time(1) < 0.4 * pm.weight_read_time(10_000)
    assert pm.weight_read_time(10_000) == pytest.approx(pm.weights_bytes_per_gpu / bw, rel=1e-9)
    # a batch-1 decode step is memory-bound and reads the k experts, not all E
    assert pm.beta(1, 100) < pm.weights_bytes_per_gpu / bw


# Step times of dense models computed at HEAD before MoE support (commit 6b3c5bf), with the shipped
# profiles of then (their factors below, since the shipped profiles have been refitted): a dense
# model's numbers must not move by one bit.
PROFILES_THEN = {
    "h100-sxm": Profile(gpu="h100-sxm", eff_compute=0.6536155812492831, eff_memory=0.960140208501675,
                        step_overhead_s=0.0016407606716799126, seq_overhead_s=5.3988467782137426e-05,
                        comm_latency_s=2.4739194473027686e-05, request_overhead_s=0.16502503031351293),
    "b200": Profile(gpu="b200", eff_compute=0.34661274723238805, eff_memory=0.9498827381504548,
                    step_overhead_s=0.005551819048300706, seq_overhead_s=4.443327998591751e-05,
                    comm_latency_s=1.3597406246780448e-07, request_overhead_s=0.10941695435859126),
}  # fmt: skip
DENSE_BEFORE = {
    ("llama-3.1-8b", "h100-sxm", 1, "bf16"): (0.015305108681808698, 0.0476209553919173, 0.016633245078071162,
                                              0.7855904363057291, 16060000000.0, 452464, 1943273472.0),
    ("llama-3.1-70b", "h100-sxm", 4, "fp8"): (0.01713392918121386, 0.08650801712350742, 0.029062730357344038,
                                              1.242524710907922, 72701346304.0, 1397840, 1878327296.0),
    ("qwen3-32b", "b200", 2, "fp4"): (0.011011128442776654, 0.031091898979692487, 0.013944130221081113,
                                      0.7750390317101234, 20686497920.0, 2467280, 1906507776.0),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DENSE_BEFORE))
def test_dense_perf_numbers_unchanged(case):
    model, gpu, tp, prec = case
    cat = default_catalogue()
    pm = build_perf_model(cat.model(model), cat.gpu(gpu), tp, prec, profile=PROFILES_THEN[gpu])
    got = (
        pm.step_time(0, 64, 64 * 2000),
        pm.step_time(2048, 0, 0, prefill_done=1),
        pm.step_time(512, 32, 32 * 1000, prefill_done=1),
        pm.decode_run_time(16, 16 * 500, 100),
        pm.weights_bytes,
        pm.kv_capacity_tokens,
        pm.activation_reserve_bytes_per_gpu,
    )
    assert got == DENSE_BEFORE[case]


SILICON = Path(__file__).resolve().parents[2] / "shared" / "data" / "silicon_sample_public.csv"
needs_data = pytest.mark.skipif(not SILICON.is_file(), reason="reference data not present")


def _silicon_csv(tmp_path: Path, rows: list[dict[str, str]]) -> Path:
    cols = ["id", "backend", "model_path", "system", "precision", "mode", "isl", "osl", "batch_size", "tp_size",
            "attention_dp_size", "moe_tp_size", "moe_ep_size", "silicon_ttft_ms", "silicon_tpot_ms"]  # fmt: skip
    base = dict(backend="vllm", system="b200_sxm", precision="fp8", mode="agg", isl="1024", osl="1024",
                batch_size="8", tp_size="4", attention_dp_size="1", moe_tp_size="4", moe_ep_size="1",
                silicon_ttft_ms="100", silicon_tpot_ms="10")  # fmt: skip
    lines = [",".join(cols)]
    for i, r in enumerate(rows):
        full = {**base, "id": f"r{i}", **r}
        lines.append(",".join(full[c] for c in cols))
    path = tmp_path / "silicon.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_loader_moe_rows_and_reasons(tmp_path):
    path = _silicon_csv(tmp_path, [
        {"model_path": "MiniMaxAI/MiniMax-M2.5"},
        {"model_path": "MiniMaxAI/MiniMax-M2.5", "moe_tp_size": "1", "moe_ep_size": "4"},
        {"model_path": "MiniMaxAI/MiniMax-M2.5", "attention_dp_size": "4", "moe_tp_size": "1", "moe_ep_size": "16"},
        {"model_path": "deepseek-ai/DeepSeek-V3"},
        {"model_path": "Qwen/Qwen3-32B", "precision": ""},
        {"model_path": "Qwen/Qwen3.5-397B-A17B"},
        {"model_path": "deepseek-ai/DeepSeek-R1", "tp_size": "16", "moe_tp_size": "4", "moe_ep_size": "4"},
        {"model_path": "MiniMaxAI/MiniMax-M2.5", "tp_size": "2", "attention_dp_size": "2", "moe_tp_size": "1",
         "moe_ep_size": "4"},
        {"model_path": "MiniMaxAI/MiniMax-M2.5", "tp_size": "2", "attention_dp_size": "2", "moe_tp_size": "1",
         "moe_ep_size": "2"},
    ])  # fmt: skip
    dense = load_silicon(path)
    assert [r.model for r in dense.records] == ["qwen3-32b"]
    assert dense.skipped["MoE or unknown model"] == 8  # the dense default is what it was
    moe = load_silicon(path, models="moe")
    assert [(r.model, r.ep, r.dp) for r in moe.records] == [
        ("minimax-m2.5", 1, 1), ("minimax-m2.5", 4, 1), ("deepseek-v3", 1, 1), ("minimax-m2.5", 4, 2)]
    assert moe.skipped["expert parallelism over other GPUs than the replica's (not modelled)"] == 1
    assert moe.skipped["MoE model with hybrid linear attention (Gated DeltaNet) (not modelled)"] == 1
    # the tp16 row, and the 4 ranks of tp4 (16 GPUs)
    assert moe.skipped["replica beyond one NVLink domain (8-GPU node; the inter-node network is not modelled)"] == 2
    assert moe.skipped["dense model"] == 1
    assert len(load_silicon(path, models="all").records) == 5
    # the EP row's replica has ep = 4: the busiest GPU's share of the routed experts
    from sojourn.perf._calibrate import perf_model_for

    assert perf_model_for(moe.records[1], PRIOR).ep == 4 and perf_model_for(moe.records[0], PRIOR).ep == 1
    with pytest.raises(ConfigError):
        load_silicon(path, models="sparse")


@needs_data
def test_public_moe_rows_load_and_fit_in_memory():
    loaded = load_silicon(SILICON, models="moe")
    models = {r.model for r in loaded.records}
    assert models == {"gpt-oss-120b", "qwen3-235b-a22b", "minimax-m2.5", "deepseek-v3", "deepseek-r1", "kimi-k2.5"}
    assert {r.model for r in loaded.records if r.backend == "sglang"} == {"deepseek-v3", "deepseek-r1"}
    # every row fits but GB200's TP sizes that do not divide DeepSeek's 128 heads (12, 20, ..., 72)
    unfit = {(r.gpu, r.model, r.tp) for r in loaded.records if fits(r) is not None}
    assert unfit and all(g == "gb200" and m == "deepseek-r1" and 128 % tp for g, m, tp in unfit)
    assert len(load_silicon(SILICON).records) == 836  # the dense rows, as before MoE support


# deepseek-ai/DeepSeek-V3 config.json (abridged to the architecture keys)
DEEPSEEK_V3 = {
    "_name_or_path": "deepseek-ai/DeepSeek-V3",
    "first_k_dense_replace": 3,
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "moe_intermediate_size": 2048,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "tie_word_embeddings": False,
    "v_head_dim": 128,
    "vocab_size": 129280,
}


def test_mla_config_parsed_with_parameter_counts():
    ds = model_from_hf_config(DEEPSEEK_V3)
    assert ds.is_mla and ds.is_moe and ds.kv_elements_per_token_layer == 512 + 64
    assert ds.num_parameters == pytest.approx(671e9, rel=0.005)  # model card: 671B (without the MTP module)
    # README_WEIGHTS.md: 36.6B activated including the 0.9B output head (not the embedding table)
    assert ds.active_parameters - ds.embedding_parameters == pytest.approx(36.6e9, rel=0.01)
    # MLA attention by hand: q_a + norm + q_b, kv_a + norm, kv_b, o
    attn = 7168 * 1536 + 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 + 512 * 128 * 256 + 128 * 128 * 7168
    gqa_free = dataclasses.replace(ds, kv_lora_rank=0)
    assert count_parameters(**{k: getattr(ds, k) for k in _ARCH}) - count_parameters(
        **{k: getattr(gqa_free, k) for k in _ARCH if k not in _MLA}
    ) == 61 * (attn - _gqa_attention(gqa_free))
    # Kimi-K2.5 keeps its language model under text_config
    kimi = model_from_hf_config({"_name_or_path": "moonshotai/Kimi-K2.5", "text_config": {
        **DEEPSEEK_V3, "num_attention_heads": 64, "num_key_value_heads": 64, "n_routed_experts": 384,
        "first_k_dense_replace": 1, "vocab_size": 163840, "max_position_embeddings": 262144}})  # fmt: skip
    assert kimi.num_parameters == pytest.approx(default_catalogue().model("kimi-k2.5").num_parameters, rel=1e-3)
    assert kimi.active_parameters == pytest.approx(32.5e9, rel=0.02)  # card: 32B activated
    with pytest.raises(ConfigError, match="v_head_dim"):
        model_from_hf_config({k: v for k, v in DEEPSEEK_V3.items() if k != "v_head_dim"})


_MLA = ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
_ARCH = ("num_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
         "vocab_size", "tie_word_embeddings", "num_experts", "experts_per_token", "num_shared_experts",
         "moe_intermediate_size", "first_k_dense_layers", *_MLA)  # fmt: skip


def _gqa_attention(spec) -> int:
    h, H, kv, hd = spec.hidden_size, spec.num_attention_heads, spec.num_key_value_heads, spec.head_dim
    return 2 * h * H * hd + 2 * h * kv * hd


def test_mla_kv_cache_is_the_latent_on_every_gpu():
    cat = default_catalogue()
    ds = cat.model("deepseek-v3")
    for tp in (4, 8):
        pm = build_perf_model(ds, cat.gpu("b200"), tp, "fp8", check=False)
        # 61 layers x (512 + 64) fp8 elements, not divided by tp (every GPU holds the latent)
        assert pm.kv_bytes_per_token_per_gpu == 61 * 576 * 1.0
        peak = cat.gpu("b200").peak_flops("fp8") * tp * pm.profile.compute_efficiency("fp8")
        assert pm._c_pair == pytest.approx(61 * 2 * 128 * (192 + 128) / peak, rel=1e-12)
    # as grouped-query attention with 128 KV heads of 128 it would be 2*128*128 = 32768 elements a layer
    assert ds.kv_elements_per_token_layer * 56 < 2 * 128 * 128
    pm = build_perf_model(ds, cat.gpu("b200"), 8, "fp8")
    assert pm.kv_capacity_tokens > 1_000_000  # ~35 KB a token: millions of tokens on 8 B200s
    assert pm.tp == 8 and "deepseek-v3" in cat.models and cat.model("deepseek-ai/DeepSeek-R1").id == "deepseek-r1"


def test_sliding_window_layers_keep_a_window():
    cat = default_catalogue()
    gpt = cat.model("gpt-oss-120b")
    assert (gpt.sliding_window, gpt.sliding_window_layers, gpt.full_attention_layers) == (128, 18, 18)
    full = dataclasses.replace(gpt, sliding_window=0, sliding_window_layers=0)
    pm = build_perf_model(gpt, cat.gpu("h100-sxm"), 2, "fp8")
    pm_full = build_perf_model(full, cat.gpu("h100-sxm"), 2, "fp8")
    assert pm.kv_bytes_per_token_per_gpu == pytest.approx(pm_full.kv_bytes_per_token_per_gpu / 2)
    assert pm.window_kv_bytes_per_token_per_gpu == pm.kv_bytes_per_token_per_gpu
    # each of max_num_seqs sequences keeps ceil(128/16) + 1 blocks in the 18 sliding layers
    assert pm.window_reserve_bytes_per_gpu == 256 * 9 * 16 * pm.window_kv_bytes_per_token_per_gpu
    assert 1.8 < pm.kv_capacity_tokens / pm_full.kv_capacity_tokens < 2.0
    # decode: full layers read the context, sliding layers a window per sequence
    b, ctx = 32, 32 * 8000
    extra = pm_full.step_time(0, b, ctx) - pm.step_time(0, b, ctx)
    bw = pm.gpu.bandwidth_bytes_per_s * pm.profile.eff_memory
    assert extra == pytest.approx(pm.window_kv_bytes_per_token_per_gpu * (ctx - b * 128) / bw, rel=1e-9)
    assert pm.decode_run_time(b, ctx, 10) == pytest.approx(sum(pm.step_time(0, b, ctx + b * i) for i in range(10)))
    # the HF config's layer_types
    cfg = {"_name_or_path": "openai/gpt-oss-120b", "num_hidden_layers": 4, "hidden_size": 64, "intermediate_size": 64,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100,
           "max_position_embeddings": 4096, "num_local_experts": 4, "experts_per_token": 2, "sliding_window": 128,
           "layer_types": ["sliding_attention", "full_attention"] * 2}  # fmt: skip
    assert model_from_hf_config(cfg).sliding_window_layers == 2
    with pytest.raises(ConfigError, match="chunked_attention"):
        model_from_hf_config({**cfg, "layer_types": ["sliding_attention", "chunked_attention"] * 2})
    # a sliding_window without layer_types (Qwen: use_sliding_window false) is full attention, as before
    assert model_from_hf_config({**cfg, "layer_types": None}).sliding_window_layers == 0


def test_ep_busiest_balls_into_bins():
    from sojourn.perf import ep_busiest

    assert ep_busiest(64, 1) == 64
    for n in (1, 8, 64, 4096):
        got = ep_busiest(n, 8)
        assert n / 8 < got <= n
    # the relative excess of the busiest GPU shrinks as the load grows
    assert ep_busiest(8, 8) * 8 / 8 > ep_busiest(4096, 8) * 8 / 4096 > 1.0
    # distinct experts drawn without replacement: all E hit -> exactly E/ep each
    assert ep_busiest(256, 8, population=256) == pytest.approx(32)


def test_expert_parallel_costs_the_busiest_gpu():
    cat = default_catalogue()
    qw = cat.model("qwen3-235b-a22b")
    tp = build_perf_model(qw, cat.gpu("h100-sxm"), 8, "fp8")
    ep = build_perf_model(qw, cat.gpu("h100-sxm"), 8, "fp8", ep=8)
    assert ep.weights_bytes_per_gpu == tp.weights_bytes_per_gpu and ep.kv_capacity_tokens == tp.kv_capacity_tokens
    small = ep.beta(1, 1000) / tp.beta(1, 1000)
    large = ep.step_time(8192, 0, 0, prefill_done=1) / tp.step_time(8192, 0, 0, prefill_done=1)
    assert small > 1.05 and 1.0 < large < small  # imbalance matters at small batches, averages out at large ones
    assert build_perf_model(qw, cat.gpu("h100-sxm"), 8, "fp8", ep=1).beta(4, 100) == tp.beta(4, 100)
    assert ep.decode_run_time(16, 16 * 500, 5) == pytest.approx(sum(ep.step_time(0, 16, 16 * (500 + i)) for i in range(5)))
    with pytest.raises(ConfigError) as exc:
        build_perf_model(cat.model("qwen3-32b"), cat.gpu("h100-sxm"), 8, "fp8", ep=8)
    assert exc.value.field == "serving.enable_expert_parallel" and "dense" in exc.value.message
    with pytest.raises(ConfigError, match="allowed: 1, 2, 4, 8"):
        build_perf_model(qw, cat.gpu("h100-sxm"), 8, "fp8", ep=3)


def _moe_scenario(**serving):
    from sojourn.scenario import scenario_from_dict

    return scenario_from_dict({
        "workload": {"batch_rate_per_hour": 1.0, "batch_size": {"dist": "fixed", "value": 100},
                     "input_tokens": {"dist": "fixed", "value": 1000},
                     "output_tokens": {"dist": "fixed", "value": 200}},
        "model": {"name": serving.pop("model", "qwen3-235b-a22b"), "precision": "fp8"},
        "fleet": {"gpu": "h100-sxm", "tp": serving.pop("tp", 8), "nodes": 1},
        "serving": serving,
    })  # fmt: skip


def test_serving_enable_expert_parallel():
    on = _moe_scenario(enable_expert_parallel=True)
    assert on.perf_model().ep == 8 and on.model_dump()["serving"]["enable_expert_parallel"] is True
    off = _moe_scenario()
    assert off.perf_model().ep == 1
    assert "enable_expert_parallel" not in off.model_dump()["serving"]  # scenarios without it serialise as before
    assert off.with_updates({"serving.enable_expert_parallel": True}).perf_model().ep == 8
    for bad, words in (({"model": "llama-3.1-70b"}, "dense"), ({"tp": 1, "model": "gpt-oss-120b"}, "tp=1")):
        with pytest.raises(ConfigError) as exc:
            _moe_scenario(enable_expert_parallel=True, **bad)
        assert exc.value.field == "serving.enable_expert_parallel" and words in exc.value.message


def test_cli_perf_enable_expert_parallel(capsys):
    import json

    from sojourn.cli import main

    args = ["perf", "--model", "qwen3-235b-a22b", "--gpu", "h100-sxm", "--tp", "8", "--precision", "fp8", "--json"]
    assert main([*args, "--enable-expert-parallel"]) == 0
    on = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    off = json.loads(capsys.readouterr().out)
    assert (on["ep"], off["ep"]) == (8, 1) and on["kv_capacity_tokens"] == off["kv_capacity_tokens"]
    assert main(["perf", "--model", "qwen3-32b", "--gpu", "h100-sxm", "--tp", "2", "--enable-expert-parallel"]) != 0
    assert "serving.enable_expert_parallel" in capsys.readouterr().err
