"""The hardware and model catalogues: GPUs, models (dense and mixture-of-experts), and how to load them.

The built-in catalogue is package data (``gpus.toml`` and ``models.toml`` next
to this module). Every number in it carries its source. Users extend or
override it with a TOML file of ``[gpus.<id>]`` and ``[models.<id>]`` tables
(:meth:`Catalogue.from_file`) or in code (:meth:`Catalogue.with_overrides`);
a model may also be given as a Hugging Face ``config.json``
(:func:`model_from_hf_config`).

Every lookup and validation error is a :class:`~sojourn.ConfigError` naming
the offending field, e.g. ``catalogue.gpus.my-gpu.memory_gib`` or ``fleet.gpu``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sojourn._errors import ConfigError
from sojourn._io import read_text

__all__ = [
    "GPU",
    "PRECISIONS",
    "Catalogue",
    "ModelSpec",
    "count_parameters",
    "default_catalogue",
    "model_from_hf_config",
]

#: Tensor-core precisions a GPU entry may give a dense peak rate for.
PRECISIONS: tuple[str, ...] = ("bf16", "fp8", "fp4")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")
_DATE_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-\d{2})?$")

# Field groups of a GPU entry, each with one citation in ``sources``.
GPU_SOURCE_GROUPS: dict[str, tuple[str, ...]] = {
    "specs": (
        "name",
        "vendor",
        "memory_gib",
        "mem_bandwidth_tbps",
        "bf16_tflops",
        "fp8_tflops",
        "fp4_tflops",
        "interconnect_gbps",
        "tdp_w",
    ),
    "price": ("price_usd_per_gpu_hour", "price_date"),
    "purchase": ("purchase_usd",),
}

_GPU_REQUIRED = (
    "name",
    "vendor",
    "memory_gib",
    "mem_bandwidth_tbps",
    "bf16_tflops",
    "interconnect_gbps",
    "tdp_w",
    "price_usd_per_gpu_hour",
    "purchase_usd",
    "price_date",
)
_GPU_POSITIVE = (
    "memory_gib",
    "mem_bandwidth_tbps",
    "bf16_tflops",
    "interconnect_gbps",
    "tdp_w",
    "price_usd_per_gpu_hour",
    "purchase_usd",
)
_GPU_OPTIONAL = (
    "fp8_tflops",
    "fp4_tflops",
    "sources",
    "notes",
    "price_estimated",
    "price_estimate_reason",
    "purchase_estimated",
    "purchase_estimate_reason",
)
_GPU_KEYS = _GPU_REQUIRED + _GPU_OPTIONAL

# Prefixes of the notes generated from ``*_estimate_reason`` (so that an entry
# can be turned back into a table and overridden).
_ESTIMATE_NOTE = {
    "price": "price_usd_per_gpu_hour is an estimate: ",
    "purchase": "purchase_usd is an estimate: ",
}

_MODEL_INT_FIELDS = (
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
)
# the fields the parameter count depends on
_MODEL_ARCH_FIELDS = tuple(f for f in _MODEL_INT_FIELDS if f != "max_position_embeddings") + (
    "tie_word_embeddings",
)
_MODEL_REQUIRED = (
    "name",
    "num_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
)
#: Mixture-of-experts fields (all optional; absent or 0 = a dense model). ``moe_intermediate_size``
#: defaults to ``intermediate_size`` (Mixtral, gpt-oss); ``first_k_dense_layers`` counts the
#: leading layers with a dense MLP of ``intermediate_size`` (DeepSeek's ``first_k_dense_replace``).
_MOE_FIELDS = (
    "num_experts",
    "experts_per_token",
    "num_shared_experts",
    "moe_intermediate_size",
    "first_k_dense_layers",
)
#: Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2), all optional (``kv_lora_rank`` absent or
#: 0 = grouped-query attention): the HF config's keys of the same names. ``q_lora_rank`` 0 means
#: the queries are not compressed (DeepSeek-V2-Lite).
_MLA_FIELDS = ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
#: Sliding-window attention on some layers (gpt-oss alternates sliding and full layers): the
#: window in tokens and how many layers use it (the HF config's ``sliding_window`` and the
#: ``sliding_attention`` entries of its ``layer_types``). Absent or 0: every layer is full attention.
_WINDOW_FIELDS = ("sliding_window", "sliding_window_layers")
_MODEL_ARCH_FIELDS = _MODEL_ARCH_FIELDS + _MOE_FIELDS + _MLA_FIELDS
_MODEL_KEYS = (
    _MODEL_REQUIRED
    + ("head_dim", "tie_word_embeddings", "num_parameters", "source")
    + _MOE_FIELDS
    + _MLA_FIELDS
    + _WINDOW_FIELDS
)

#: HF config keys giving the number of routed experts (Mixtral/gpt-oss, Qwen-MoE, DeepSeek).
_MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
#: HF config keys of attention variants the perf model does not represent yet.
_UNMODELLED_ATTENTION = {
    "linear_num_value_heads": "hybrid linear attention (Gated DeltaNet, Qwen3-Next/Qwen3.5 style)",
    "index_topk": "sparse attention with a token indexer (DeepSeek-V3.2 / GLM-5 DSA style)",
}

USER_SOURCE = "user-supplied"


# ---------------------------------------------------------------------------
# Entries
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GPU:
    """One GPU type. Rates are per GPU, dense (no sparsity).

    ``memory_gib`` is the vendor capacity figure (HBM read as binary GiB); the
    driver reports slightly less. ``interconnect_gbps`` is the per-GPU
    unidirectional bandwidth usable for tensor-parallel all-reduce.
    """

    id: str
    name: str
    vendor: str
    memory_gib: float
    mem_bandwidth_tbps: float
    bf16_tflops: float
    fp8_tflops: float | None
    fp4_tflops: float | None
    interconnect_gbps: float
    tdp_w: float
    price_usd_per_gpu_hour: float
    purchase_usd: float
    price_date: str
    sources: Mapping[str, str] = field(hash=False)
    notes: tuple[str, ...] = ()
    price_estimated: bool = False
    purchase_estimated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * 2**30

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.mem_bandwidth_tbps * 1e12

    @property
    def interconnect_bytes_per_s(self) -> float:
        return self.interconnect_gbps * 1e9

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions this GPU has a dense peak rate for, in PRECISIONS order."""
        return tuple(p for p in PRECISIONS if getattr(self, f"{p}_tflops") is not None)

    def peak_flops(self, precision: str) -> float:
        """Dense peak tensor-core FLOP/s at ``precision`` ("bf16", "fp8" or "fp4")."""
        key = precision.strip().lower() if isinstance(precision, str) else precision
        if key not in PRECISIONS:
            raise ConfigError(
                "model.precision",
                f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}",
            )
        tflops = getattr(self, f"{key}_tflops")
        if tflops is None:
            raise ConfigError(
                "model.precision",
                f"GPU '{self.id}' ({self.name}) has no {key} tensor-core rate; "
                f"allowed: {', '.join(self.precisions)}",
            )
        return float(tflops) * 1e12


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer, as its Hugging Face config describes it.

    Dense unless ``num_experts`` > 0: then every layer after the first
    ``first_k_dense_layers`` has a mixture-of-experts MLP of ``num_experts`` routed
    experts (gated, 3·hidden·``moe_intermediate_size`` parameters each), of which
    each token uses ``experts_per_token``, plus ``num_shared_experts`` experts every
    token uses, and a router (hidden·num_experts). ``num_parameters`` is the total
    (every expert); :attr:`active_parameters` what one token uses.
    """

    id: str
    name: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    num_parameters: float
    source: str
    num_experts: int = 0
    experts_per_token: int = 0
    num_shared_experts: int = 0
    moe_intermediate_size: int = 0
    first_k_dense_layers: int = 0
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int = 0
    sliding_window_layers: int = 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        """Multi-head latent attention: the KV cache holds one compressed latent per token and layer."""
        return self.kv_lora_rank > 0

    @property
    def full_attention_layers(self) -> int:
        """Layers attending to the whole context (all but the sliding-window layers)."""
        return self.num_layers - self.sliding_window_layers

    @property
    def kv_elements_per_token_layer(self) -> int:
        """KV-cache elements one token keeps in one layer, over all GPUs of a replica, counted once:
        2·kv_heads·head_dim (keys and values) for grouped-query attention, kv_lora_rank +
        qk_rope_head_dim (the latent and the decoupled RoPE key, shared by every head) for MLA."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_key_value_heads * self.head_dim

    @property
    def attention_flops_per_pair(self) -> float:
        """FLOPs of one (query, key) pair in one layer, all heads: 2·heads·(qk dim + v dim)
        (QK^T and PV). 4·heads·head_dim for grouped-query attention; MLA computed as in prefill
        (keys of qk_nope_head_dim + qk_rope_head_dim, values of v_head_dim, per head)."""
        if self.is_mla:
            return 2.0 * self.num_attention_heads * (self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim)
        return 4.0 * self.num_attention_heads * self.head_dim

    @property
    def moe_layers(self) -> int:
        """Layers with a mixture-of-experts MLP (0 for a dense model)."""
        return self.num_layers - self.first_k_dense_layers if self.is_moe else 0

    @property
    def expert_parameters(self) -> float:
        """Parameters of one expert (a gated MLP: 3·hidden·moe_intermediate_size); 0 for a dense model."""
        return float(3 * self.hidden_size * self.moe_intermediate_size) if self.is_moe else 0.0

    @property
    def routed_expert_parameters(self) -> float:
        """Parameters of all routed experts of all layers (what a token does not all use)."""
        return float(self.moe_layers * self.num_experts) * self.expert_parameters

    @property
    def inactive_parameters(self) -> float:
        """Parameters of the routed experts one token does not use: (E - k) experts per MoE layer."""
        return float(self.moe_layers * (self.num_experts - self.experts_per_token)) * self.expert_parameters

    @property
    def active_parameters(self) -> float:
        """Parameters one token uses (embedding included, as model cards quote it): the total
        less the routed experts it is not sent to. Equal to ``num_parameters`` for a dense model."""
        if not self.is_moe:
            return float(self.num_parameters)
        return float(self.num_parameters) - self.inactive_parameters

    @property
    def active_matmul_parameters(self) -> float:
        """:attr:`matmul_parameters` counting only the experts a token uses (= it for a dense model)."""
        if not self.is_moe:
            return self.matmul_parameters
        return self.matmul_parameters - self.inactive_parameters

    @property
    def embedding_parameters(self) -> float:
        """Parameters of the input embedding table: vocab_size * hidden_size."""
        return float(self.vocab_size * self.hidden_size)

    @property
    def matmul_parameters(self) -> float:
        """Parameters that take part in the per-token matmuls (2 FLOPs each per token).

        The input embedding is a table lookup, not a matmul, so it is left out.
        With untied embeddings it is a separate vocab*hidden matrix:
        ``num_parameters - vocab_size*hidden_size``. With tied embeddings the one
        shared matrix is counted once in ``num_parameters`` and is also the
        lm_head, which *is* a matmul, so every parameter counts:
        ``num_parameters``. (Norm weights are included either way; they are
        negligible.)
        """
        if self.tie_word_embeddings:
            return float(self.num_parameters)
        return float(self.num_parameters) - self.embedding_parameters


def count_parameters(
    *,
    num_layers: int,
    hidden_size: int,
    intermediate_size: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    head_dim: int,
    vocab_size: int,
    tie_word_embeddings: bool,
    attention_bias: bool = False,
    num_experts: int = 0,
    experts_per_token: int = 0,
    num_shared_experts: int = 0,
    moe_intermediate_size: int = 0,
    first_k_dense_layers: int = 0,
    kv_lora_rank: int = 0,
    q_lora_rank: int = 0,
    qk_nope_head_dim: int = 0,
    qk_rope_head_dim: int = 0,
    v_head_dim: int = 0,
) -> int:
    """Total parameters of a llama-style decoder, dense or mixture-of-experts.

    embedding V*h, + lm_head V*h when untied, + per layer: q h*heads*hd,
    k and v h*kv*hd each, o heads*hd*h, gated MLP 3*h*I, two RMSNorms 2*h
    (+ q/k/v biases when ``attention_bias``), + the final norm h. With
    ``num_experts`` > 0 the MLP of every layer but the first ``first_k_dense_layers``
    is (num_experts + num_shared_experts) gated experts of 3*h*moe_intermediate_size
    plus a router h*num_experts (expert biases, as gpt-oss has, are left out: < 0.1%).
    ``experts_per_token`` does not change the total. With ``kv_lora_rank`` > 0 the attention is
    multi-head latent attention (:func:`_mla_parameters`) instead of q/k/v/o projections.
    """
    h, hd = hidden_size, head_dim
    q = h * num_attention_heads * hd
    kv = 2 * h * num_key_value_heads * hd
    o = num_attention_heads * hd * h
    mlp = 3 * h * intermediate_size
    norms = 2 * h
    bias = (num_attention_heads * hd + 2 * num_key_value_heads * hd) if attention_bias else 0
    if kv_lora_rank > 0:
        q, kv, o, bias = _mla_parameters(h, num_attention_heads, kv_lora_rank, q_lora_rank, qk_nope_head_dim,
                                         qk_rope_head_dim, v_head_dim), 0, 0, 0  # fmt: skip
    per_layer = q + kv + o + mlp + norms + bias
    embed = vocab_size * h
    lm_head = 0 if tie_word_embeddings else vocab_size * h
    if num_experts <= 0:
        return embed + lm_head + num_layers * per_layer + h
    moe_i = moe_intermediate_size or intermediate_size
    moe_layer = per_layer - mlp + (num_experts + num_shared_experts) * 3 * h * moe_i + h * num_experts
    dense = min(first_k_dense_layers, num_layers)
    return embed + lm_head + dense * per_layer + (num_layers - dense) * moe_layer + h


def _mla_parameters(h: int, heads: int, kv_lora: int, q_lora: int, nope: int, rope: int, v: int) -> int:
    """Parameters of one multi-head latent attention layer (DeepSeek-V2/V3): queries
    h·q_lora + q_lora (norm) + q_lora·heads·(nope + rope), or h·heads·(nope + rope) without
    compression; the KV down-projection h·(kv_lora + rope) + kv_lora (norm); its
    up-projection kv_lora·heads·(nope + v); the output heads·v·h."""
    qk = nope + rope
    q = (h * q_lora + q_lora + q_lora * heads * qk) if q_lora else h * heads * qk
    return q + h * (kv_lora + rope) + kv_lora + kv_lora * heads * (nope + v) + heads * v * h


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(value: Any, where: str, what: str = "") -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(where, f"{what}must be a positive number, got {value!r}")
    return float(value)


def _positive_int(value: Any, where: str, what: str = "") -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(where, f"{what}must be a positive integer, got {value!r}")
    return value


def _text(value: Any, where: str, what: str = "") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(where, f"{what}must be a non-empty string, got {value!r}")
    return value.strip()


def _flag(value: Any, where: str, what: str = "") -> bool:
    if not isinstance(value, bool):
        raise ConfigError(where, f"{what}must be true or false, got {value!r}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: Callable[[str], str]) -> None:
    for key, value in table.items():
        if key not in allowed:
            hint = ""
            if isinstance(value, Mapping):
                hint = " (an id containing dots must be quoted in TOML: [models.\"llama-3.1-8b\"])"
            raise ConfigError(where(key), f"unknown field{hint}; allowed: {', '.join(allowed)}")


def _normalise_id(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise ConfigError(where, f"id must be a string, got {raw!r}")
    key = raw.strip().lower()
    if not _ID_RE.match(key):
        raise ConfigError(
            where, f"bad id {raw!r}: use letters, digits and . _ + - (case-insensitive)"
        )
    return key


def _require_table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"expected a table of fields, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------
# GPU tables <-> GPU
# ---------------------------------------------------------------------------


def _build_gpu(
    gpu_id: str, table: Mapping[str, Any], *, strict: bool, default_source: str = USER_SOURCE
) -> GPU:
    """Validate a GPU table. ``strict`` (the built-in data) demands every source;
    otherwise a field group without a citation is cited as ``default_source``."""
    prefix = f"catalogue.gpus.{gpu_id}"

    def where(key: str) -> str:
        return f"{prefix}.{key}"

    _check_keys(table, _GPU_KEYS, where)
    for key in _GPU_REQUIRED:
        if key not in table:
            raise ConfigError(where(key), "required field is missing")

    values: dict[str, Any] = {}
    for key in ("name", "vendor"):
        values[key] = _text(table[key], where(key))
    values["vendor"] = values["vendor"].lower()
    for key in _GPU_POSITIVE:
        values[key] = _positive_number(table[key], where(key))
    for key in ("fp8_tflops", "fp4_tflops"):
        raw = table.get(key)
        values[key] = None if raw is None else _positive_number(raw, where(key))
    date = _text(table["price_date"], where("price_date"))
    if not _DATE_RE.match(date):
        raise ConfigError(where("price_date"), f"must look like 'YYYY-MM', got {date!r}")
    values["price_date"] = date

    raw_sources = _require_table(table.get("sources", {}), where("sources"))
    sources: dict[str, str] = {}
    for group, citation in raw_sources.items():
        if group not in GPU_SOURCE_GROUPS:
            raise ConfigError(
                f"{where('sources')}.{group}",
                f"unknown field group; allowed: {', '.join(GPU_SOURCE_GROUPS)}",
            )
        sources[group] = _text(citation, f"{where('sources')}.{group}", "a citation ")
    for group in GPU_SOURCE_GROUPS:
        if group not in sources:
            if strict:
                raise ConfigError(f"{where('sources')}.{group}", "every field group needs a citation")
            sources[group] = default_source

    raw_notes = table.get("notes", [])
    if isinstance(raw_notes, str) or not isinstance(raw_notes, (list, tuple)):
        raise ConfigError(where("notes"), f"must be a list of strings, got {raw_notes!r}")
    notes = [_text(n, where("notes"), "each note ") for n in raw_notes]

    estimated: dict[str, bool] = {}
    for group in ("price", "purchase"):
        flag_key, reason_key = f"{group}_estimated", f"{group}_estimate_reason"
        flag = _flag(table.get(flag_key, False), where(flag_key))
        reason = table.get(reason_key)
        if reason is not None:
            reason = _text(reason, where(reason_key))
            if not flag:
                raise ConfigError(where(reason_key), f"given but {flag_key} is not true")
        if flag and reason is None and strict:
            raise ConfigError(where(reason_key), f"required when {flag_key} = true")
        estimated[group] = flag
        if reason is not None:
            note = _ESTIMATE_NOTE[group] + reason
            notes = [n for n in notes if not n.startswith(_ESTIMATE_NOTE[group])]
            notes.append(note)

    return GPU(
        id=gpu_id,
        sources=sources,
        notes=tuple(notes),
        price_estimated=estimated["price"],
        purchase_estimated=estimated["purchase"],
        **values,
    )


def _gpu_table(gpu: GPU) -> dict[str, Any]:
    """The table a GPU was (or could have been) built from."""
    table: dict[str, Any] = {
        key: getattr(gpu, key) for key in _GPU_REQUIRED + ("fp8_tflops", "fp4_tflops")
    }
    for key in ("fp8_tflops", "fp4_tflops"):
        if table[key] is None:
            del table[key]
    table["sources"] = dict(gpu.sources)
    notes = []
    for note in gpu.notes:
        for group, prefix in _ESTIMATE_NOTE.items():
            if note.startswith(prefix) and getattr(gpu, f"{group}_estimated"):
                table[f"{group}_estimate_reason"] = note[len(prefix) :]
                break
        else:
            notes.append(note)
    table["notes"] = notes
    table["price_estimated"] = gpu.price_estimated
    table["purchase_estimated"] = gpu.purchase_estimated
    return table


def _merge_gpu(base: GPU, override: Mapping[str, Any], origin: str) -> dict[str, Any]:
    table = _gpu_table(base)
    sources = dict(table["sources"])
    given_sources = override.get("sources", {})
    if isinstance(given_sources, Mapping):
        sources.update(given_sources)
        for group, fields in GPU_SOURCE_GROUPS.items():
            changed = [f for f in fields if f in override]
            if group in given_sources or not changed:
                continue
            if group == "specs":  # the other specs keep their citation
                sources[group] = f"{sources[group]}; {', '.join(changed)} from {origin}"
            else:  # a price is one number: the old quote no longer applies
                sources[group] = origin
    for group, price_field in (("price", "price_usd_per_gpu_hour"), ("purchase", "purchase_usd")):
        # a new price replaces the old estimate unless it says it is one itself
        if price_field in override and f"{group}_estimated" not in override:
            table[f"{group}_estimated"] = False
            table.pop(f"{group}_estimate_reason", None)
    merged = {**table, **override}
    if isinstance(given_sources, Mapping):
        merged["sources"] = sources
    if not merged.get("price_estimated", False):
        merged.pop("price_estimate_reason", None)
    if not merged.get("purchase_estimated", False):
        merged.pop("purchase_estimate_reason", None)
    return merged


# ---------------------------------------------------------------------------
# Model tables <-> ModelSpec
# ---------------------------------------------------------------------------


def _build_model(
    model_id: str,
    table: Mapping[str, Any],
    *,
    strict: bool,
    where: Callable[[str], str] | None = None,
    context: str = "",
    default_source: str = USER_SOURCE,
) -> ModelSpec:
    if where is None:
        prefix = f"catalogue.models.{model_id}"

        def where(key: str) -> str:
            return f"{prefix}.{key}"

    _check_keys(table, _MODEL_KEYS, where)
    for key in _MODEL_REQUIRED:
        if key not in table:
            raise ConfigError(where(key), f"{context}required field '{key}' is missing")
    if strict:
        for key in ("num_parameters", "source", "head_dim", "tie_word_embeddings"):
            if key not in table:
                raise ConfigError(where(key), f"{context}required field '{key}' is missing")

    values: dict[str, Any] = {"name": _text(table["name"], where("name"), context)}
    for key in _MODEL_INT_FIELDS:
        if key == "head_dim" and table.get("head_dim") is None:
            continue
        values[key] = _positive_int(table[key], where(key), f"{context}{key} ")
    heads, kv = values["num_attention_heads"], values["num_key_value_heads"]
    if heads % kv:
        raise ConfigError(
            where("num_key_value_heads"),
            f"{context}num_attention_heads ({heads}) must be a multiple of "
            f"num_key_value_heads ({kv})",
        )
    if "head_dim" not in values:
        if values["hidden_size"] % heads:
            raise ConfigError(
                where("head_dim"),
                f"{context}hidden_size ({values['hidden_size']}) is not a multiple of "
                f"num_attention_heads ({heads}); give head_dim explicitly",
            )
        values["head_dim"] = values["hidden_size"] // heads
    values["tie_word_embeddings"] = _flag(
        table.get("tie_word_embeddings", False),
        where("tie_word_embeddings"),
        f"{context}tie_word_embeddings ",
    )
    values.update(_moe_values(table, where, context))
    values.update(_mla_values(table, where, context))
    values.update(_window_values(table, values["num_layers"], where, context))
    if table.get("num_parameters") is None:
        values["num_parameters"] = float(
            count_parameters(**{k: values[k] for k in _MODEL_ARCH_FIELDS if k in values})
        )
    else:
        values["num_parameters"] = _positive_number(
            table["num_parameters"], where("num_parameters"), f"{context}num_parameters "
        )
    values["source"] = _text(table.get("source", default_source), where("source"), context)
    return ModelSpec(id=model_id, **values)


def _moe_values(table: Mapping[str, Any], where: Callable[[str], str], context: str) -> dict[str, int]:
    """The validated mixture-of-experts fields of a model table ({} for a dense model)."""
    if not table.get("num_experts"):
        given = [k for k in _MOE_FIELDS if table.get(k)]
        if given:
            raise ConfigError(where(given[0]), f"{context}{given[0]} given for a dense model (num_experts absent or 0)")
        return {}
    out = {"num_experts": _positive_int(table["num_experts"], where("num_experts"), f"{context}num_experts ")}
    if table.get("experts_per_token") is None:
        raise ConfigError(where("experts_per_token"), f"{context}required for a mixture-of-experts model")
    k = _positive_int(table["experts_per_token"], where("experts_per_token"), f"{context}experts_per_token ")
    if k > out["num_experts"]:
        raise ConfigError(
            where("experts_per_token"), f"{context}experts_per_token ({k}) exceeds num_experts ({out['num_experts']})"
        )
    out["experts_per_token"] = k
    for key in ("num_shared_experts", "first_k_dense_layers"):
        raw = table.get(key, 0)
        if raw != 0:
            raw = _positive_int(raw, where(key), f"{context}{key} ")
        out[key] = int(raw)
    if out["first_k_dense_layers"] >= int(table["num_layers"]):
        raise ConfigError(where("first_k_dense_layers"), f"{context}must be less than num_layers")
    raw = table.get("moe_intermediate_size") or table["intermediate_size"]
    out["moe_intermediate_size"] = _positive_int(raw, where("moe_intermediate_size"), f"{context}moe_intermediate_size ")
    return out


def _mla_values(table: Mapping[str, Any], where: Callable[[str], str], context: str) -> dict[str, int]:
    """The validated multi-head latent attention fields ({} for grouped-query attention)."""
    if not table.get("kv_lora_rank"):
        given = [k for k in _MLA_FIELDS if table.get(k)]
        if given:
            raise ConfigError(where(given[0]), f"{context}{given[0]} given without kv_lora_rank (MLA)")
        return {}
    out = {}
    for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
        if table.get(key) is None:
            raise ConfigError(where(key), f"{context}required for multi-head latent attention (kv_lora_rank > 0)")
        out[key] = _positive_int(table[key], where(key), f"{context}{key} ")
    raw = table.get("q_lora_rank") or 0
    out["q_lora_rank"] = _positive_int(raw, where("q_lora_rank"), f"{context}q_lora_rank ") if raw else 0
    return out


def _window_values(
    table: Mapping[str, Any], num_layers: int, where: Callable[[str], str], context: str
) -> dict[str, int]:
    """The validated sliding-window fields ({} when every layer is full attention)."""
    window, layers = table.get("sliding_window") or 0, table.get("sliding_window_layers") or 0
    if not window and not layers:
        return {}
    if not window or not layers:
        missing = "sliding_window" if not window else "sliding_window_layers"
        raise ConfigError(where(missing), f"{context}sliding_window and sliding_window_layers go together")
    out = {
        "sliding_window": _positive_int(window, where("sliding_window"), f"{context}sliding_window "),
        "sliding_window_layers": _positive_int(layers, where("sliding_window_layers"), f"{context}sliding_window_layers "),
    }
    if out["sliding_window_layers"] > num_layers:
        raise ConfigError(
            where("sliding_window_layers"), f"{context}{layers} exceeds num_layers ({num_layers}); allowed: 1..{num_layers}"
        )
    return out


def _model_table(spec: ModelSpec) -> dict[str, Any]:
    drop = set()
    if not spec.is_moe:
        drop |= set(_MOE_FIELDS)
    if not spec.is_mla:
        drop |= set(_MLA_FIELDS)
    if not spec.sliding_window_layers:
        drop |= set(_WINDOW_FIELDS)
    return {key: getattr(spec, key) for key in _MODEL_KEYS if key not in drop}


def _merge_model(base: ModelSpec, override: Mapping[str, Any], origin: str) -> dict[str, Any]:
    table = _model_table(base)
    touched_arch = any(k in override for k in _MODEL_ARCH_FIELDS)
    if touched_arch and "num_parameters" not in override:
        del table["num_parameters"]  # recomputed from the new architecture
    changed = [k for k in override if k != "source"]
    if "source" not in override and changed:
        table["source"] = f"{base.source}; {', '.join(changed)} from {origin}"
    return {**table, **override}


# ---------------------------------------------------------------------------
# Hugging Face config.json
# ---------------------------------------------------------------------------


def model_from_hf_config(
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any], model_id: str | None = None
) -> ModelSpec:
    """A :class:`ModelSpec` from a llama/qwen/mistral-style HF ``config.json``, dense or MoE.

    ``path_or_dict`` is the parsed config, a path to the file, or a directory
    holding ``config.json``. The parameter count is computed from the
    architecture (see :func:`count_parameters`). Mixture-of-experts configs are
    read from the Mixtral/gpt-oss (``num_local_experts``), Qwen-MoE (``num_experts``,
    ``moe_intermediate_size``) and DeepSeek (``n_routed_experts``, ``n_shared_experts``,
    ``first_k_dense_replace``) keys, top-k from ``num_experts_per_tok`` (or gpt-oss's
    ``experts_per_token``). Multi-head latent attention (``kv_lora_rank``, DeepSeek-V3/Kimi-K2)
    and sliding-window layers (``layer_types``, gpt-oss) are read; attention the perf model cannot
    represent yet (hybrid linear attention, DSA's sparse indexer) is refused. Errors are
    :class:`ConfigError` on ``model.name``.
    """
    config, source, default_id = _read_hf_config(path_or_dict)
    context = f"HF config {source}: "
    config = _language_model(config)
    _refuse_unmodelled(config, context)
    table = _hf_table(config, context)
    table.update(_hf_moe_table(config, context))
    table.update(_hf_attention_table(config, context))
    mid = (model_id or default_id or "custom").strip().lower()
    table["name"] = config.get("_name_or_path") or model_id or default_id or "custom"
    table["source"] = source

    def where(key: str) -> str:
        return "model.name"

    # validate the architecture first (errors name the HF key in the message)
    arch = _build_model(mid, table, strict=False, where=where, context=context)
    bias = config.get("attention_bias", False)
    table["num_parameters"] = float(
        count_parameters(
            num_layers=arch.num_layers,
            hidden_size=arch.hidden_size,
            intermediate_size=arch.intermediate_size,
            num_attention_heads=arch.num_attention_heads,
            num_key_value_heads=arch.num_key_value_heads,
            head_dim=arch.head_dim,
            vocab_size=arch.vocab_size,
            tie_word_embeddings=arch.tie_word_embeddings,
            attention_bias=bool(bias),
            num_experts=arch.num_experts,
            experts_per_token=arch.experts_per_token,
            num_shared_experts=arch.num_shared_experts,
            moe_intermediate_size=arch.moe_intermediate_size,
            first_k_dense_layers=arch.first_k_dense_layers,
            **{k: getattr(arch, k) for k in _MLA_FIELDS},
        )
    )
    table["head_dim"] = arch.head_dim
    return _build_model(mid, table, strict=False, where=where, context=context)


def _read_hf_config(
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[Mapping[str, Any], str, str]:
    """The parsed HF config, where it came from, and the model id its name or path suggests."""
    if isinstance(path_or_dict, Mapping):
        config: Mapping[str, Any] = path_or_dict
        default_id = str(config.get("_name_or_path") or "custom").rstrip("/").rsplit("/", 1)[-1]
        return config, "config dict", default_id
    path = Path(path_or_dict).expanduser()
    if path.is_dir():
        path = path / "config.json"
    try:
        config = json.loads(read_text(path, "model.name", "HF config file not found"))
    except json.JSONDecodeError as exc:
        raise ConfigError("model.name", f"cannot read HF config {path}: {exc}") from None
    if not isinstance(config, Mapping):
        raise ConfigError("model.name", f"HF config {path} is not a JSON object")
    default_id = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    return config, str(path), default_id


def _language_model(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's config: multimodal wrappers keep it under ``text_config``."""
    if "num_hidden_layers" not in config and isinstance(config.get("text_config"), Mapping):
        outer_name = config.get("_name_or_path")
        inner = dict(config["text_config"])
        if outer_name and "_name_or_path" not in inner:
            inner["_name_or_path"] = outer_name
        return inner
    return config


def _refuse_unmodelled(config: Mapping[str, Any], context: str) -> None:
    for key, what in _UNMODELLED_ATTENTION.items():
        if config.get(key) not in (None, 0):
            raise ConfigError(
                "model.name",
                f"{context}{key} = {config[key]!r}: {what} is not modelled yet "
                "(its KV cache and attention cost differ from grouped-query attention)",
            )


def _hf_moe_table(config: Mapping[str, Any], context: str) -> dict[str, Any]:
    """The mixture-of-experts fields read off a HF config ({} for a dense one)."""
    experts = next((config[k] for k in _MOE_KEYS if config.get(k) not in (None, 0)), None)
    if experts is None:
        return {}
    top_k = config.get("num_experts_per_tok") or config.get("experts_per_token")
    if top_k is None:
        raise ConfigError("model.name", f"{context}a mixture-of-experts config without num_experts_per_tok")
    table: dict[str, Any] = {"num_experts": experts, "experts_per_token": top_k}
    moe_i = config.get("moe_intermediate_size")
    if moe_i:
        table["moe_intermediate_size"] = moe_i
    shared = config.get("n_shared_experts") or 0
    shared_i = config.get("shared_expert_intermediate_size")  # Qwen2-MoE: one shared expert of its own size
    if shared_i:
        unit = moe_i or config["intermediate_size"]
        if not isinstance(shared_i, int) or shared_i % unit:
            raise ConfigError(
                "model.name",
                f"{context}shared_expert_intermediate_size = {shared_i!r} is not a multiple of the expert size "
                f"({unit}): not representable as shared experts",
            )
        shared = shared_i // unit
    if shared:
        table["num_shared_experts"] = shared
    dense = config.get("first_k_dense_replace") or 0
    if dense:
        table["first_k_dense_layers"] = dense
    if config.get("mlp_only_layers") or config.get("decoder_sparse_step", 1) not in (1, None):
        raise ConfigError(
            "model.name", f"{context}mlp_only_layers / decoder_sparse_step: interleaved dense layers are not modelled"
        )
    return table


def _hf_attention_table(config: Mapping[str, Any], context: str) -> dict[str, Any]:
    """Multi-head latent attention keys (DeepSeek-V2/V3, Kimi-K2) and sliding-window layers
    (``layer_types`` entries ``sliding_attention``, as gpt-oss has) read off a HF config.

    A ``sliding_window`` without ``layer_types`` is left out, as before: Qwen configs carry one
    with ``use_sliding_window`` false, and every catalogue model that has one says so in
    ``layer_types``."""
    table: dict[str, Any] = {}
    if config.get("kv_lora_rank"):
        for key in _MLA_FIELDS:
            table[key] = config.get(key) or 0
        if config.get("head_dim") is None:
            table["head_dim"] = config.get("v_head_dim")  # unused by MLA's cost; hidden/heads need not divide
    types = config.get("layer_types")
    if isinstance(types, list) and "sliding_attention" in types:
        unknown = sorted({t for t in types if t not in ("sliding_attention", "full_attention")})
        if unknown:
            raise ConfigError(
                "model.name", f"{context}layer_types {unknown} not modelled; allowed: sliding_attention, full_attention"
            )
        window = config.get("sliding_window")
        if not window:
            raise ConfigError("model.name", f"{context}layer_types has sliding_attention layers but no sliding_window")
        table["sliding_window"] = window
        table["sliding_window_layers"] = types.count("sliding_attention")
    return table


def _hf_table(config: Mapping[str, Any], context: str) -> dict[str, Any]:
    """The architecture's catalogue fields, read off the HF keys (a missing required one is refused)."""
    hf_keys = {
        "num_layers": "num_hidden_layers",
        "hidden_size": "hidden_size",
        "intermediate_size": "intermediate_size",
        "num_attention_heads": "num_attention_heads",
        "vocab_size": "vocab_size",
        "max_position_embeddings": "max_position_embeddings",
    }
    for hf_key in hf_keys.values():
        if config.get(hf_key) is None:
            raise ConfigError("model.name", f"{context}required key '{hf_key}' is missing")
    table: dict[str, Any] = {ours: config[theirs] for ours, theirs in hf_keys.items()}
    table["num_key_value_heads"] = config.get("num_key_value_heads") or config["num_attention_heads"]
    table["head_dim"] = config.get("head_dim")
    table["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", False))
    return table


# ---------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------


class Catalogue:
    """GPUs and models by id (ids are case-insensitive, stored lower-case)."""

    gpus: Mapping[str, GPU]
    models: Mapping[str, ModelSpec]

    def __init__(self, gpus: Mapping[str, GPU], models: Mapping[str, ModelSpec]) -> None:
        self.gpus = MappingProxyType({k.lower(): v for k, v in gpus.items()})
        self.models = MappingProxyType({k.lower(): v for k, v in models.items()})
        # HF repo names need not be unique (a variant may share its base's
        # name); a lookup by name finds the first entry that has it
        self._by_hf_name: dict[str, ModelSpec] = {}
        for spec in self.models.values():
            self._by_hf_name.setdefault(spec.name.lower(), spec)

    def __repr__(self) -> str:
        return f"Catalogue(gpus=[{', '.join(self.gpus)}], models=[{', '.join(self.models)}])"

    # -- lookups -------------------------------------------------------------

    def gpu(self, gpu_id: str) -> GPU:
        """The GPU with this id (case-insensitive)."""
        key = gpu_id.strip().lower() if isinstance(gpu_id, str) else None
        if key is None or key not in self.gpus:
            raise ConfigError("fleet.gpu", f"unknown GPU {gpu_id!r}; known: {', '.join(self.gpus)}")
        return self.gpus[key]

    def model(
        self, name_or_path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None
    ) -> ModelSpec:
        """A model by catalogue id, HF repo name, or path to a HF ``config.json``.

        Ids and repo names match case-insensitively. A relative path is taken
        relative to ``base_dir`` (default: the working directory); a directory
        means its ``config.json``.
        """
        if isinstance(name_or_path, str):
            key = name_or_path.strip().lower()
            if key in self.models:
                return self.models[key]
            if key in self._by_hf_name:
                return self._by_hf_name[key]
        elif not isinstance(name_or_path, os.PathLike):
            raise ConfigError("model.name", f"expected a model name or path, got {name_or_path!r}")

        path = Path(name_or_path).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if path.is_dir() and (path / "config.json").is_file():
            return model_from_hf_config(path / "config.json")
        if path.is_file():
            return model_from_hf_config(path)
        if str(name_or_path).endswith(".json"):
            raise ConfigError("model.name", f"HF config file not found: {path}")
        raise ConfigError(
            "model.name",
            f"unknown model {str(name_or_path)!r}; known: {', '.join(self.models)} "
            "(or their Hugging Face names) or a path to a HF config.json",
        )

    # -- building ------------------------------------------------------------

    @classmethod
    def _from_tables(
        cls, gpus: Mapping[str, Any], models: Mapping[str, Any], *, strict: bool
    ) -> Catalogue:
        return cls(
            _build_gpus({}, gpus, strict=strict, origin=""),
            _build_models({}, models, strict=strict, origin=""),
        )

    def with_overrides(
        self,
        gpus: Mapping[str, Mapping[str, Any]] | None = None,
        models: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        origin: str = "user override",
    ) -> Catalogue:
        """A new catalogue with entries added or fields overridden.

        For an existing id a partial table overrides just those fields; the
        citation of every field group touched becomes ``origin`` unless the
        table gives its own ``sources``. A new id needs every required field.
        """
        new_gpus = _build_gpus(self.gpus, gpus or {}, strict=False, origin=origin)
        new_models = _build_models(self.models, models or {}, strict=False, origin=origin)
        return Catalogue(new_gpus, new_models)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], base: Catalogue | None = None) -> Catalogue:
        """Apply a user TOML of ``[gpus.<id>]`` / ``[models.<id>]`` tables on ``base``.

        ``base`` defaults to the built-in catalogue. A model table may give
        ``hf_config = "path/to/config.json"`` (relative to the file) to import
        its architecture; its other keys then override the imported values.
        Ids containing dots must be quoted: ``[models."llama-3.1-8b"]``.
        """
        path = Path(path).expanduser()
        try:
            data = tomllib.loads(read_text(path, "catalogue", "catalogue file not found"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("catalogue", f"cannot read catalogue file {path}: {exc}") from None
        for key in data:
            if key not in ("gpus", "models"):
                raise ConfigError(
                    f"catalogue.{key}", f"unknown table in {path}; allowed: [gpus.<id>], [models.<id>]"
                )
        gpus = _require_table(data.get("gpus", {}), "catalogue.gpus")
        raw_models = _require_table(data.get("models", {}), "catalogue.models")
        models: dict[str, Mapping[str, Any]] = {}
        for raw_id, table in raw_models.items():
            table = dict(_require_table(table, f"catalogue.models.{raw_id}"))
            hf = table.pop("hf_config", None)
            if hf is not None:
                hf_path = Path(_text(hf, f"catalogue.models.{raw_id}.hf_config")).expanduser()
                if not hf_path.is_absolute():
                    hf_path = path.parent / hf_path
                spec = model_from_hf_config(hf_path, model_id=str(raw_id))
                table = {**_model_table(spec), **table}
            models[raw_id] = table
        base = default_catalogue() if base is None else base
        return base.with_overrides(gpus, models, origin=f"user catalogue {path}")


def _build_entries(
    existing: Mapping[str, Any], tables: Mapping[str, Any], kind: str, merge: Any, build: Any,
    *, strict: bool, origin: str,
) -> dict[str, Any]:
    """Add or override the ``kind`` ("gpus" or "models") entries given as TOML tables."""
    out = dict(existing)
    seen: dict[str, str] = {}
    for raw_id, table in _require_table(tables, f"catalogue.{kind}").items():
        entry_id = _normalise_id(raw_id, f"catalogue.{kind}.{raw_id}")
        if entry_id in seen:
            raise ConfigError(
                f"catalogue.{kind}.{raw_id}", f"duplicate of {seen[entry_id]!r} (ids are case-insensitive)"
            )
        seen[entry_id] = str(raw_id)
        table = _require_table(table, f"catalogue.{kind}.{entry_id}")
        if entry_id in out:
            table = merge(out[entry_id], table, origin)
        out[entry_id] = build(entry_id, table, strict=strict, default_source=origin or USER_SOURCE)
    return out


def _build_gpus(
    existing: Mapping[str, GPU], tables: Mapping[str, Any], *, strict: bool, origin: str
) -> dict[str, GPU]:
    return _build_entries(existing, tables, "gpus", _merge_gpu, _build_gpu, strict=strict, origin=origin)


def _build_models(
    existing: Mapping[str, ModelSpec], tables: Mapping[str, Any], *, strict: bool, origin: str
) -> dict[str, ModelSpec]:
    return _build_entries(existing, tables, "models", _merge_model, _build_model, strict=strict, origin=origin)


def _load_package_toml(filename: str) -> dict[str, Any]:
    text = resources.files("sojourn.catalogue").joinpath(filename).read_text(encoding="utf-8")
    return tomllib.loads(text)


@functools.cache
def default_catalogue() -> Catalogue:
    """The built-in catalogue (package data), loaded and validated once."""
    return Catalogue._from_tables(
        _load_package_toml("gpus.toml"), _load_package_toml("models.toml"), strict=True
    )
