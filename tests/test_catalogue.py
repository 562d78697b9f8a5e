"""Tests of the hardware and model catalogues (sojourn.catalogue)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from sojourn import ConfigError
from sojourn.catalogue import (
    GPU,
    PRECISIONS,
    Catalogue,
    ModelSpec,
    count_parameters,
    default_catalogue,
    model_from_hf_config,
)

GPU_IDS = ["a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "b200", "l40s", "l4", "mi300x",
           "b300", "gb200", "gb300", "mi325x", "mi355x"]
MODEL_IDS = [
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "llama-3.3-70b",
    "qwen3-8b",
    "qwen3-32b",
    "mistral-7b",
    "llama-2-70b",  # MLPerf Inference Llama-2-70B (benchmarks/mlperf_offline.py)
    # mixture-of-experts
    "gpt-oss-120b",
    "qwen3-235b-a22b",
    "minimax-m2.5",
    # multi-head latent attention
    "deepseek-v3",
    "deepseek-r1",
    "kimi-k2.5",
]

# Where the GPU facts were transcribed from (outside the project; optional).
FACTS_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpu_facts.csv"


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return default_catalogue()


def hf_config_of(spec: ModelSpec) -> dict:
    """Write a ModelSpec back out as the HF config.json it would come from."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": spec.num_layers,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.head_dim,
        "vocab_size": spec.vocab_size,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "max_position_embeddings": spec.max_position_embeddings,
        **(
            {
                "num_local_experts": spec.num_experts,
                "num_experts_per_tok": spec.experts_per_token,
                "moe_intermediate_size": spec.moe_intermediate_size,
                "n_shared_experts": spec.num_shared_experts,
                "first_k_dense_replace": spec.first_k_dense_layers,
            }
            if spec.is_moe
            else {}
        ),
        **(
            {k: getattr(spec, k) for k in ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                                           "v_head_dim")}  # fmt: skip
            if spec.is_mla
            else {}
        ),
        **(
            {
                "sliding_window": spec.sliding_window,
                "layer_types": ["sliding_attention"] * spec.sliding_window_layers
                + ["full_attention"] * spec.full_attention_layers,
            }
            if spec.sliding_window_layers
            else {}
        ),
    }


# A Qwen3-8B config.json as published (abridged to the keys that matter plus
# a few that must be ignored).
QWEN3_8B_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 12288,
    "max_position_embeddings": 40960,
    "max_window_layers": 36,
    "model_type": "qwen3",
    "num_attention_heads": 32,
    "num_hidden_layers": 36,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

NEW_GPU = {
    "name": "Example accelerator",
    "vendor": "example",
    "memory_gib": 96,
    "mem_bandwidth_tbps": 4.0,
    "bf16_tflops": 800,
    "fp8_tflops": 1600,
    "interconnect_gbps": 400,
    "tdp_w": 600,
    "price_usd_per_gpu_hour": 2.0,
    "purchase_usd": 20000,
    "price_date": "2026-01",
}


# ---------------------------------------------------------------------------
# Built-in GPUs
# ---------------------------------------------------------------------------


def test_builtin_gpu_ids(cat):
    assert list(cat.gpus) == GPU_IDS


@pytest.mark.parametrize("gpu_id", GPU_IDS)
def test_builtin_gpu_complete_and_sourced(cat, gpu_id):
    gpu = cat.gpu(gpu_id)
    assert isinstance(gpu, GPU) and gpu.id == gpu_id
    assert gpu.name.strip() and gpu.vendor in ("nvidia", "amd")
    for key in (
        "memory_gib",
        "mem_bandwidth_tbps",
        "bf16_tflops",
        "interconnect_gbps",
        "tdp_w",
        "price_usd_per_gpu_hour",
        "purchase_usd",
    ):
        value = getattr(gpu, key)
        assert isinstance(value, float) and math.isfinite(value) and value > 0, key
    assert re.fullmatch(r"\d{4}-\d{2}", gpu.price_date)
    for group in ("specs", "price", "purchase"):
        citation = gpu.sources.get(group, "")
        assert citation.strip() and citation != "user-supplied", group
    # an estimate always says why
    if gpu.price_estimated:
        assert any(n.startswith("price_usd_per_gpu_hour is an estimate: ") for n in gpu.notes)
        assert "estimate" in gpu.sources["price"]
    if gpu.purchase_estimated:
        assert any(n.startswith("purchase_usd is an estimate: ") for n in gpu.notes)
        assert "estimate" in gpu.sources["purchase"]


def test_builtin_gpu_precisions(cat):
    for gpu_id in ("a100-40gb", "a100-80gb"):
        assert cat.gpu(gpu_id).fp8_tflops is None
    for gpu_id in set(GPU_IDS) - {"a100-40gb", "a100-80gb"}:
        assert cat.gpu(gpu_id).fp8_tflops is not None
    assert [g for g in GPU_IDS if cat.gpu(g).fp4_tflops is not None] == ["b200", "b300", "gb200", "gb300", "mi355x"]
    assert cat.gpu("b200").fp4_tflops == 9000
    # dense figures (half the sparse ones the spec sheets headline)
    assert cat.gpu("b300").fp4_tflops == 13125 and cat.gpu("gb300").fp4_tflops == 15000
    assert cat.gpu("gb200").fp4_tflops == 10000 and cat.gpu("gb200").bf16_tflops == 2500
    assert cat.gpu("mi325x").fp8_tflops == 2614.9 and cat.gpu("mi325x").fp4_tflops is None
    # MI355X: 256 CUs x 8192 FP8 FLOP/clock x 2.4 GHz; BF16 half, FP4 double
    mi355x = cat.gpu("mi355x")
    assert mi355x.fp8_tflops == pytest.approx(256 * 8192 * 2.4e9 / 1e12, abs=0.1)
    assert mi355x.bf16_tflops == pytest.approx(mi355x.fp8_tflops / 2, abs=0.1)
    assert mi355x.fp4_tflops == pytest.approx(mi355x.fp8_tflops * 2, abs=0.2)


def test_builtin_estimates_are_flagged(cat):
    # no rent price in the sources for these two
    assert cat.gpu("l4").price_estimated and cat.gpu("h100-pcie").price_estimated
    # no purchase price in the sources for these
    for gpu_id in ("h100-pcie", "b200", "l40s", "l4"):
        assert cat.gpu(gpu_id).purchase_estimated, gpu_id
    for gpu_id in ("h100-sxm", "h200", "a100-80gb", "mi300x"):
        gpu = cat.gpu(gpu_id)
        assert not gpu.price_estimated and not gpu.purchase_estimated, gpu_id
    # GB200/GB300 are sold and rented by the NVL72 rack: both prices are per-GPU estimates
    for gpu_id in ("gb200", "gb300"):
        assert cat.gpu(gpu_id).price_estimated and cat.gpu(gpu_id).purchase_estimated, gpu_id
    assert cat.gpu("mi355x").price_estimated and not cat.gpu("mi355x").purchase_estimated
    assert cat.gpu("mi325x").purchase_estimated and not cat.gpu("mi325x").price_estimated
    assert not cat.gpu("b300").price_estimated and not cat.gpu("b300").purchase_estimated


def test_interconnect_is_unidirectional(cat):
    assert cat.gpu("h100-sxm").interconnect_gbps == 450  # 900 bidirectional
    assert cat.gpu("a100-80gb").interconnect_gbps == 300  # 600 bidirectional
    assert cat.gpu("b200").interconnect_gbps == 900  # 1800 bidirectional
    assert cat.gpu("mi300x").interconnect_gbps == 448  # 896 aggregate
    assert cat.gpu("mi325x").interconnect_gbps == 448  # the same 7 Infinity Fabric links
    assert cat.gpu("mi355x").interconnect_gbps == 537.6  # 1075.2 aggregate
    for gpu_id in ("b300", "gb200", "gb300"):
        assert cat.gpu(gpu_id).interconnect_gbps == 900, gpu_id  # NVLink 5, 1800 bidirectional
    # the NVL72 parts say that their NVLink domain is the rack
    for gpu_id in ("gb200", "gb300"):
        assert any("NVLink domain of 72 GPUs" in n for n in cat.gpu(gpu_id).notes), gpu_id
    assert cat.gpu("l40s").interconnect_gbps == 32  # PCIe Gen4 x16, one direction
    assert cat.gpu("l4").interconnect_gbps == 32
    assert cat.gpu("h100-pcie").tdp_w == 350


def _leading_number(text: str) -> float | None:
    match = re.match(r"\s*([0-9.]+)", text)
    return float(match.group(1)) if match else None


@pytest.mark.skipif(not FACTS_CSV.is_file(), reason="shared gpu_facts.csv not present")
def test_builtin_gpus_match_fact_sheet(cat):
    """The transcribed specs agree with the fact sheet they cite."""
    csv_to_id = {
        "A100-40GB-SXM": "a100-40gb",
        "A100-80GB-SXM": "a100-80gb",
        "H100-SXM": "h100-sxm",
        "H100-PCIe": "h100-pcie",
        "H200-SXM": "h200",
        "B200-HGX": "b200",
        "L40S": "l40s",
        "L4": "l4",
        "MI300X": "mi300x",
    }
    with FACTS_CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["gpu"] for r in rows} == set(csv_to_id)
    for row in rows:
        gpu = cat.gpu(csv_to_id[row["gpu"]])
        assert gpu.memory_gib == _leading_number(row["hbm_gb"]), gpu.id
        assert gpu.mem_bandwidth_tbps == _leading_number(row["hbm_tbps"]), gpu.id
        assert gpu.bf16_tflops == _leading_number(row["bf16_dense_tflops"]), gpu.id
        fp8 = _leading_number(row["fp8_dense_tflops"])
        assert gpu.fp8_tflops == fp8, gpu.id
        nvlink = _leading_number(row["nvlink_gbps_bidir"])
        if nvlink is not None:
            assert gpu.interconnect_gbps == nvlink / 2, gpu.id
        tdp = row["tdp_w"].split("-")[-1]  # a range: the upper figure
        assert gpu.tdp_w == float(tdp), gpu.id


def test_gpu_units(cat):
    h100 = cat.gpu("h100-sxm")
    assert h100.memory_bytes == 80 * 2**30
    assert h100.bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert h100.interconnect_bytes_per_s == pytest.approx(450e9)
    assert h100.peak_flops("bf16") == pytest.approx(989e12)
    assert h100.peak_flops("FP8") == pytest.approx(1979e12)
    assert cat.gpu("b200").peak_flops("fp4") == pytest.approx(9000e12)


def test_peak_flops_missing_precision_raises(cat):
    with pytest.raises(ConfigError) as exc:
        cat.gpu("a100-80gb").peak_flops("fp8")
    assert exc.value.field == "model.precision"
    assert "a100-80gb" in exc.value.message and "allowed: bf16" in exc.value.message
    with pytest.raises(ConfigError) as exc:
        cat.gpu("h100-sxm").peak_flops("fp4")
    assert "h100-sxm" in exc.value.message and "no fp4" in exc.value.message
    assert exc.value.message.endswith("allowed: bf16, fp8")


def test_peak_flops_unknown_precision_lists_allowed(cat):
    with pytest.raises(ConfigError) as exc:
        cat.gpu("h100-sxm").peak_flops("int4")
    assert exc.value.field == "model.precision"
    assert "bf16, fp8, fp4" in exc.value.message
    assert PRECISIONS == ("bf16", "fp8", "fp4")


def test_gpu_is_immutable(cat):
    gpu = cat.gpu("h100-sxm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        gpu.memory_gib = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        gpu.sources["price"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        cat.gpus["x"] = gpu  # type: ignore[index]
    assert hash(gpu) == hash(dataclasses.replace(gpu))


# ---------------------------------------------------------------------------
# Built-in models
# ---------------------------------------------------------------------------


def test_builtin_model_ids(cat):
    assert sorted(cat.models) == sorted(MODEL_IDS)


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_builtin_model_parameter_count_matches_quoted_total(cat, model_id):
    """Architecture fields reproduce the quoted total within 2%."""
    spec = cat.model(model_id)
    assert spec.source.startswith("https://huggingface.co/") and spec.source.endswith("config.json")
    assert spec.name in spec.source
    computed = model_from_hf_config(hf_config_of(spec)).num_parameters
    assert computed == pytest.approx(spec.num_parameters, rel=0.02)
    assert spec.num_attention_heads % spec.num_key_value_heads == 0


def test_parameter_check_can_fail(cat):
    """A mistranscribed dimension is caught by the 2% check above."""
    spec = cat.model("llama-3.1-70b")
    wrong = dataclasses.replace(spec, intermediate_size=24576)
    computed = model_from_hf_config(hf_config_of(wrong)).num_parameters
    assert computed != pytest.approx(spec.num_parameters, rel=0.02)


def test_llama_8b_exact_parameter_count(cat):
    # the published safetensors total of Llama-3.1-8B
    spec = cat.model("llama-3.1-8b")
    assert model_from_hf_config(hf_config_of(spec)).num_parameters == 8_030_261_248


def test_known_architectures(cat):
    l8 = cat.model("llama-3.1-8b")
    assert (l8.num_layers, l8.hidden_size, l8.intermediate_size) == (32, 4096, 14336)
    assert (l8.num_attention_heads, l8.num_key_value_heads, l8.head_dim) == (32, 8, 128)
    assert (l8.vocab_size, l8.tie_word_embeddings) == (128256, False)
    q32 = cat.model("qwen3-32b")
    assert (q32.num_layers, q32.hidden_size, q32.intermediate_size) == (64, 5120, 25600)
    assert (q32.num_attention_heads, q32.num_key_value_heads, q32.head_dim) == (64, 8, 128)
    l405 = cat.model("llama-3.1-405b")
    assert (l405.num_layers, l405.hidden_size, l405.num_attention_heads) == (126, 16384, 128)
    assert cat.model("mistral-7b").vocab_size == 32768


def test_matmul_parameters():
    untied = model_from_hf_config(QWEN3_8B_CONFIG)
    assert untied.embedding_parameters == 151936 * 4096
    assert untied.matmul_parameters == untied.num_parameters - 151936 * 4096
    tied = model_from_hf_config({**QWEN3_8B_CONFIG, "tie_word_embeddings": True})
    assert tied.num_parameters == untied.num_parameters - 151936 * 4096
    assert tied.matmul_parameters == tied.num_parameters
    # both have the lm_head in their matmuls: the same per-token matmul weights
    assert tied.matmul_parameters == untied.matmul_parameters


# ---------------------------------------------------------------------------
# HF config.json
# ---------------------------------------------------------------------------


def test_load_hf_config_from_tmp_path(tmp_path, cat):
    model_dir = tmp_path / "Qwen3-8B"
    model_dir.mkdir()
    path = model_dir / "config.json"
    path.write_text(json.dumps(QWEN3_8B_CONFIG))

    spec = model_from_hf_config(path)
    assert spec.id == "qwen3-8b"
    assert (spec.num_layers, spec.hidden_size, spec.intermediate_size) == (36, 4096, 12288)
    assert (spec.num_attention_heads, spec.num_key_value_heads, spec.head_dim) == (32, 8, 128)
    assert spec.vocab_size == 151936 and spec.max_position_embeddings == 40960
    assert spec.tie_word_embeddings is False
    assert spec.source == str(path)
    assert spec.num_parameters == pytest.approx(cat.model("qwen3-8b").num_parameters, rel=0.02)

    # through the catalogue: a path relative to base_dir, an absolute path, a directory
    assert cat.model("Qwen3-8B/config.json", base_dir=tmp_path) == spec
    assert cat.model(str(path)) == spec
    assert cat.model(model_dir) == spec
    named = model_from_hf_config(path, model_id="my-qwen")
    assert named.id == "my-qwen"


def test_hf_config_defaults():
    config = {
        "num_hidden_layers": 2,
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_attention_heads": 4,
        "vocab_size": 1000,
        "max_position_embeddings": 2048,
    }
    spec = model_from_hf_config(config)
    assert spec.num_key_value_heads == 4  # default: multi-head attention
    assert spec.head_dim == 64  # default: hidden / heads
    assert spec.tie_word_embeddings is False
    h, v = 256, 1000
    per_layer = 4 * h * h + 3 * h * 512 + 2 * h
    assert spec.num_parameters == 2 * v * h + 2 * per_layer + h
    biased = model_from_hf_config({**config, "attention_bias": True})
    assert biased.num_parameters - spec.num_parameters == 2 * (3 * 256)
    assert count_parameters(
        num_layers=2,
        hidden_size=256,
        intermediate_size=512,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=64,
        vocab_size=1000,
        tie_word_embeddings=False,
    ) == spec.num_parameters


@pytest.mark.parametrize(("key", "what"), [("index_topk", "sparse attention"), ("linear_num_value_heads", "linear")])
def test_unmodelled_attention_rejected(tmp_path, key, what):
    """MoE configs load (tests/test_moe.py); attention the perf model cannot represent is refused."""
    config = {**QWEN3_8B_CONFIG, "num_experts": 8, "num_experts_per_tok": 2, key: 512}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError) as exc:
        model_from_hf_config(path)
    assert exc.value.field == "model.name"
    assert key in exc.value.message and what in exc.value.message and "not modelled" in exc.value.message
    with pytest.raises(ConfigError):
        default_catalogue().model(str(path))


def test_hf_config_missing_key_named(tmp_path):
    config = dict(QWEN3_8B_CONFIG)
    del config["intermediate_size"]
    with pytest.raises(ConfigError) as exc:
        model_from_hf_config(config)
    assert exc.value.field == "model.name"
    assert "'intermediate_size'" in exc.value.message


def test_hf_config_bad_values():
    with pytest.raises(ConfigError, match="multiple of num_key_value_heads"):
        model_from_hf_config({**QWEN3_8B_CONFIG, "num_key_value_heads": 5})
    with pytest.raises(ConfigError, match="hidden_size"):
        model_from_hf_config({**QWEN3_8B_CONFIG, "hidden_size": -1})


def test_hf_config_unreadable(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{ not json")
    with pytest.raises(ConfigError, match="cannot read"):
        model_from_hf_config(bad)
    with pytest.raises(ConfigError, match="not found") as exc:
        default_catalogue().model("nowhere/config.json", base_dir=tmp_path)
    assert exc.value.field == "model.name"


# ---------------------------------------------------------------------------
# Lookups
# ---------------------------------------------------------------------------


def test_unknown_gpu_names_field_and_known_ids(cat):
    with pytest.raises(ConfigError) as exc:
        cat.gpu("h100")
    assert exc.value.field == "fleet.gpu"
    assert "unknown GPU 'h100'" in exc.value.message
    assert "known: " + ", ".join(GPU_IDS) in exc.value.message


def test_unknown_model_names_field_and_known_ids(cat):
    with pytest.raises(ConfigError) as exc:
        cat.model("gpt-4")
    assert exc.value.field == "model.name"
    assert "unknown model 'gpt-4'" in exc.value.message
    for model_id in MODEL_IDS:
        assert model_id in exc.value.message
    assert "config.json" in exc.value.message


def test_case_insensitive_lookup(cat):
    assert cat.gpu("H100-SXM") is cat.gpu("h100-sxm")
    assert cat.gpu(" MI300X ") is cat.gpu("mi300x")
    assert cat.model("Llama-3.1-8B") is cat.model("llama-3.1-8b")
    assert cat.model("meta-llama/Llama-3.1-8B") is cat.model("llama-3.1-8b")
    assert cat.model("qwen/qwen3-32b") is cat.model("qwen3-32b")


def test_default_catalogue_is_cached():
    assert default_catalogue() is default_catalogue()


# ---------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------


def test_partial_override_of_existing_gpu(cat):
    new = cat.with_overrides(gpus={"H100-SXM": {"price_usd_per_gpu_hour": 1.99}})
    gpu = new.gpu("h100-sxm")
    assert gpu.price_usd_per_gpu_hour == 1.99
    old = cat.gpu("h100-sxm")
    assert dataclasses.replace(gpu, price_usd_per_gpu_hour=old.price_usd_per_gpu_hour, sources=old.sources) == old
    assert gpu.sources["price"] == "user override"
    assert gpu.sources["specs"] == old.sources["specs"]
    # the original catalogue is untouched
    assert cat.gpu("h100-sxm").price_usd_per_gpu_hour == old.price_usd_per_gpu_hour
    assert default_catalogue().gpu("h100-sxm").price_usd_per_gpu_hour == old.price_usd_per_gpu_hour


def test_override_with_own_source_and_estimate_cleared(cat):
    new = cat.with_overrides(
        gpus={"h100-pcie": {"price_usd_per_gpu_hour": 1.8, "sources": {"price": "our contract, 2026"}}}
    )
    gpu = new.gpu("h100-pcie")
    assert gpu.sources["price"] == "our contract, 2026"
    assert not gpu.price_estimated
    assert not any(n.startswith("price_usd_per_gpu_hour is an estimate") for n in gpu.notes)
    assert gpu.purchase_estimated  # untouched


def test_new_gpu(cat):
    new = cat.with_overrides(gpus={"my-gpu": NEW_GPU})
    gpu = new.gpu("MY-GPU")
    assert gpu.memory_gib == 96.0 and gpu.fp8_tflops == 1600 and gpu.fp4_tflops is None
    assert dict(gpu.sources) == {g: "user override" for g in ("specs", "price", "purchase")}
    assert "my-gpu" not in cat.gpus
    faster = cat.with_overrides(gpus={"h100-pcie": {"interconnect_gbps": 64}}).gpu("h100-pcie")
    assert faster.interconnect_gbps == 64
    assert faster.sources["specs"] == cat.gpu("h100-pcie").sources["specs"] + "; interconnect_gbps from user override"
    assert faster.sources["price"] == cat.gpu("h100-pcie").sources["price"]
    assert list(new.gpus)[: len(GPU_IDS)] == GPU_IDS


@pytest.mark.parametrize("missing", ["memory_gib", "price_date", "name"])
def test_new_gpu_missing_field_named(cat, missing):
    table = {k: v for k, v in NEW_GPU.items() if k != missing}
    with pytest.raises(ConfigError) as exc:
        cat.with_overrides(gpus={"my-gpu": table})
    assert exc.value.field == f"catalogue.gpus.my-gpu.{missing}"


@pytest.mark.parametrize(
    ("key", "value"),
    [("memory_gib", -1), ("tdp_w", "700"), ("bf16_tflops", float("nan")), ("price_date", "Jan 2026")],
)
def test_gpu_bad_value_named(cat, key, value):
    with pytest.raises(ConfigError) as exc:
        cat.with_overrides(gpus={"h100-sxm": {key: value}})
    assert exc.value.field == f"catalogue.gpus.h100-sxm.{key}"


def test_gpu_unknown_field_named(cat):
    with pytest.raises(ConfigError) as exc:
        cat.with_overrides(gpus={"h100-sxm": {"memory_gb": 80}})
    assert exc.value.field == "catalogue.gpus.h100-sxm.memory_gb"
    assert "memory_gib" in exc.value.message


def test_model_overrides(cat):
    new = cat.with_overrides(
        models={
            "llama-3.1-8b": {"max_position_embeddings": 8192},
            "tiny": {
                "name": "example/tiny",
                "num_layers": 2,
                "hidden_size": 256,
                "intermediate_size": 512,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 1000,
                "max_position_embeddings": 2048,
            },
        }
    )
    l8 = new.model("llama-3.1-8b")
    assert l8.max_position_embeddings == 8192
    assert l8.num_parameters == cat.model("llama-3.1-8b").num_parameters  # not an arch change
    tiny = new.model("example/tiny")
    assert tiny.head_dim == 64 and tiny.source == "user override"
    assert tiny.num_parameters == model_from_hf_config(hf_config_of(tiny)).num_parameters

    # changing the architecture recomputes the parameter count
    wider = cat.with_overrides(models={"llama-3.1-8b": {"intermediate_size": 16384}}).model("llama-3.1-8b")
    assert wider.num_parameters == model_from_hf_config(hf_config_of(wider)).num_parameters
    assert wider.source == cat.model("llama-3.1-8b").source + "; intermediate_size from user override"


def test_model_validation_names_field(cat):
    with pytest.raises(ConfigError) as exc:
        cat.with_overrides(models={"llama-3.1-8b": {"num_key_value_heads": 5}})
    assert exc.value.field == "catalogue.models.llama-3.1-8b.num_key_value_heads"
    with pytest.raises(ConfigError) as exc:
        cat.with_overrides(models={"new-model": {"name": "x/y", "num_layers": 2}})
    assert exc.value.field.startswith("catalogue.models.new-model.")


def test_from_file(tmp_path, cat):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps(QWEN3_8B_CONFIG))
    user = tmp_path / "catalogue.toml"
    user.write_text(
        """
[gpus.h100-sxm]
price_usd_per_gpu_hour = 1.75
sources = { price = "our reserved rate" }

[gpus.my-gpu]
name = "Example accelerator"
vendor = "example"
memory_gib = 96
mem_bandwidth_tbps = 4.0
bf16_tflops = 800
interconnect_gbps = 400
tdp_w = 600
price_usd_per_gpu_hour = 2.0
purchase_usd = 20000
price_date = "2026-01"

[models."my-qwen"]
hf_config = "hf/config.json"
max_position_embeddings = 32768
"""
    )
    loaded = Catalogue.from_file(user)
    assert loaded.gpu("h100-sxm").price_usd_per_gpu_hour == 1.75
    assert loaded.gpu("h100-sxm").sources["price"] == "our reserved rate"
    assert loaded.gpu("my-gpu").sources["price"].startswith("user catalogue")
    assert loaded.gpu("my-gpu").fp8_tflops is None
    qwen = loaded.model("my-qwen")
    assert qwen.hidden_size == 4096 and qwen.max_position_embeddings == 32768
    assert set(MODEL_IDS) < set(loaded.models)

    # a different base catalogue
    base = cat.with_overrides(gpus={"h200": {"price_usd_per_gpu_hour": 3.0}})
    assert Catalogue.from_file(user, base=base).gpu("h200").price_usd_per_gpu_hour == 3.0


def test_from_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gpu.h100-sxm]\nprice_usd_per_gpu_hour = 1.0\n")
    with pytest.raises(ConfigError) as exc:
        Catalogue.from_file(bad)
    assert exc.value.field == "catalogue.gpu"
    # an unquoted dotted id parses as nested tables: say so
    bad.write_text("[models.llama-3.1-8b]\nmax_position_embeddings = 8192\n")
    with pytest.raises(ConfigError, match="quoted"):
        Catalogue.from_file(bad)
    bad.write_text("[gpus.x\n")
    with pytest.raises(ConfigError, match="cannot read"):
        Catalogue.from_file(bad)
    with pytest.raises(ConfigError, match="not found"):
        Catalogue.from_file(tmp_path / "missing.toml")
    # The same reader as scenario and study files: a folder, a dangling link, bytes that are not UTF-8.
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "dangling.toml").symlink_to(tmp_path / "nowhere.toml")
    (tmp_path / "latin1.toml").write_bytes("[gpus.h100-sxm]\nnotes = 'caf\xe9'\n".encode("latin-1"))
    for name, what in (("folder.toml", "is a folder"), ("dangling.toml", "does not exist"),
                       ("latin1.toml", "UTF-8")):
        with pytest.raises(ConfigError, match=what) as exc:
            Catalogue.from_file(tmp_path / name)
        assert exc.value.field == "catalogue"
    (tmp_path / "hf").mkdir()
    with pytest.raises(ConfigError, match="HF config file not found") as exc:
        model_from_hf_config(tmp_path / "hf")
    assert exc.value.field == "model.name"


def test_variant_may_share_hf_name(cat):
    new = cat.with_overrides(
        models={
            "llama-8b-8k": {
                "name": "meta-llama/Llama-3.1-8B",
                "num_layers": 32,
                "hidden_size": 4096,
                "intermediate_size": 14336,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "vocab_size": 128256,
                "max_position_embeddings": 8192,
            }
        }
    )
    assert new.model("llama-8b-8k").max_position_embeddings == 8192
    assert new.model("meta-llama/Llama-3.1-8B").id == "llama-3.1-8b"  # first entry wins
