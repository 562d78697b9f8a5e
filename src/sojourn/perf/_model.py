"""Engine performance model: memory (weights, KV capacity) and step time of one replica.

One replica is a vLLM-like engine on ``tp`` GPUs with tensor parallelism: every GPU
holds 1/tp of the weights and of the KV heads (KV heads are replicated when there
are fewer of them than GPUs). The step time is a per-kernel-group roofline,

    t = t0 + s·(B + P_done)                         fixed and per-sampled-sequence overheads
        + max(F_lin·T / (tp·peak·e_c), W_gpu / (bw·e_m))   layer GEMMs: compute or weight reads
        + F_attn·pairs / (tp·peak·e_c)              prefill attention (compute-bound)
        + kv_gpu·ctx / (bw·e_m)                     decode attention: KV reads (memory-bound)
        + [tp>1] 2·L·(lat + 2(tp-1)/tp · T·h·2 B / (ic·e_ic))   two all-reduces per layer

where T = prefill + decode tokens in the step, B the decoding sequences and P_done
the prefills finishing in the step (each samples a token, as a decode does). The
efficiency factors come from a ``Profile`` fitted to measurements (``sojourn calibrate``).

Host overlap (``Profile.host_overlap``): an engine that prepares step n+1 on the CPU while
the GPU runs step n (TensorRT-LLM's overlap scheduler, on by default in its PyTorch
backend) hides the host part of the step behind the GPU part, so

    t = max(t0 + s·(B + P_done),  GPU terms)          instead of their sum.

Off (the sum) for engines that run the two in series.

GEMM fill (``Profile.gemm_half_tokens``, T_half): the layer GEMMs' compute term is
F_lin·(T + T_half) / (tp·peak·e_c), i.e. their efficiency at T tokens is e_c·T/(T + T_half),
half of e_c at T = T_half and e_c at large T (small-M GEMMs lose to tile and wave
quantisation and pipeline fill). 0 by default: one factor at every T.

Mixture-of-experts models (``ModelSpec.num_experts`` > 0) change two terms:

- F_lin counts the *active* parameters: attention, shared experts and the
  ``k = experts_per_token`` routed experts each token is sent to (2 FLOPs each per token).
- W_gpu, the weights a step reads, counts the dense parts (attention, shared experts,
  router, embeddings, lm_head) plus only the routed experts the step's T tokens touch.
  With each token choosing k of E experts uniformly and independently, the expected
  number of distinct experts hit in a layer is  E·(1 - (1 - k/E)^T):  k at T = 1,
  E as T grows. Expert load imbalance (routers are not uniform; under expert
  parallelism the step waits for the busiest GPU) is the documented factor
  ``EXPERT_LOAD_IMBALANCE`` on the routed experts' compute and reads, 1 for now.

The memory side counts every expert (total parameters).

Expert parallelism (``ep`` > 1; vLLM's --enable-expert-parallel gives ep = tp): whole
experts live on one of ep GPUs (each sliced tp/ep ways), attention stays TP. The per-GPU
weight share is the same as TP's; the step waits for the busiest GPU, whose share of the
T·k token-expert pairs (compute) and of the distinct experts hit (reads) is the
balls-into-bins estimate :func:`ep_busiest`, ~mean + sqrt(2·ln(ep)·variance): large at
small batches, vanishing at large ones. Communication is TP's all-reduce: with attention
tensor-parallel and no data-parallel attention, vLLM and SGLang reduce the MoE output over
the TP group as they reduce a dense MLP's (all-to-all dispatch comes with data-parallel
attention, which is not modelled).

Pipeline parallelism (``pp`` > 1, vLLM's --pipeline-parallel-size): the replica is pp stages of tp
GPUs, each stage holding L/pp layers, with pp micro-batches in flight (in-flight batching keeps
them all busy: no pipeline bubbles are counted). A step, in which every running sequence
advances a token, is pp micro-batch passes through the slowest stage, so over the tp·pp GPUs:
the GEMM and attention compute is shared as under tensor parallelism; each stage reads its
weights once per micro-batch (pp·W/(tp·pp) = W/tp a step: more than TP over tp·pp GPUs reads,
W/(tp·pp)); a micro-batch's GEMMs see T/pp tokens (the fill's T_half counts pp times); the
all-reduces stay within a stage's tp GPUs, on T/pp tokens per micro-batch, and each micro-batch
hands its T/pp hidden states to the next stage (pp latencies and T·h·2 bytes a step); the
logits are the last stage's; and each micro-batch is scheduled as a step of its own
(pp·t0 of host time). Each GPU holds W/(tp·pp) of the weights and 1/pp of the layers' KV.
Dense full-attention models only.

Data-parallel attention (``dp`` > 1, MoE models: vLLM's --data-parallel-size, SGLang's
--enable-dp-attention, TensorRT-LLM's enable_attention_dp): dp ranks of tp GPUs each run the
attention and dense layers on their own sequences (their own KV cache and scheduler), and the
experts spread over all tp·dp GPUs (expert-parallel of size ``ep``, each expert sliced tp·dp/ep
ways). One engine stands for the dp ranks, balanced (the busiest rank's excess is not counted):
its limits are the ranks' together; the compute is shared over the tp·dp GPUs; every GPU reads
its rank's dense weights (replicated, W_dense/tp) and its share of the experts hit; a token's KV
lives in one rank (1/dp per GPU on average); the all-reduces stay within a rank on its 1/dp of
the tokens, and each MoE layer adds an all-to-all dispatch and combine, each GPU sending its
1/(tp·dp) of the tokens' hidden states to the k experts' GPUs; each rank schedules its own
sequences, in parallel (the per-sequence host cost over dp).

Attention is counted per layer type:

- Multi-head latent attention (DeepSeek-V3/R1, Kimi-K2; ``ModelSpec.is_mla``): the KV cache
  holds kv_lora_rank + qk_rope_head_dim elements per token and layer, and every GPU of the
  TP group holds all of it (the heads share the latent), so kv_gpu does not shrink with tp.
  Prefill attention is 2·heads·(qk_nope + qk_rope + v_head_dim) FLOPs per pair and layer.
  Decode attention stays a read of the latent at memory bandwidth (the absorbed-weight
  compute of MLA decode is left out).
- Sliding-window layers (gpt-oss: 18 of 36 with a 128-token window): the context-dependent
  KV bytes count the full-attention layers only; each decoding sequence reads a window of
  the sliding layers per step (an upper bound under the window) and prefill pairs there are
  capped at window·tokens; the KV capacity sets aside the window's blocks of max_num_seqs
  sequences (vLLM's sliding-window manager frees blocks outside the window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sojourn._errors import ConfigError
from sojourn.perf._profile import Calibration, Profile, calibration_of, resolve_profile

if TYPE_CHECKING:  # pragma: no cover
    from sojourn.catalogue import GPU, ModelSpec

__all__ = [
    "EXPERT_LOAD_IMBALANCE",
    "GIB",
    "ep_busiest",
    "KV_CACHE_DTYPES",
    "PerfModel",
    "build_perf_model",
    "expected_distinct_experts",
    "kv_bytes_per_element",
    "weight_bytes_per_param",
]

GIB = float(2**30)

#: Bytes per weight parameter of the transformer layers by precision. FP4 (NVFP4) stores
#: 4-bit values plus one 8-bit scale per 16 values: 0.5 + 1/16 bytes.
_WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5625}
#: KV cache element size: fp8 and fp4 checkpoints serve with an fp8 KV cache unless
#: ``kv_cache_dtype`` says otherwise (vLLM's ``--kv-cache-dtype auto`` keeps bf16 for
#: checkpoints that carry no KV-cache quantisation).
_KV_BYTES = {"bf16": 2.0, "fp8": 1.0, "fp4": 1.0}
KV_CACHE_DTYPES = ("bf16", "fp8")

#: Memory vLLM keeps outside the KV cache besides the weights (CUDA context, CUDA graphs,
#: NCCL buffers), per GPU. Estimate from typical vLLM start-up logs ("non-torch memory"
#: 0.3-0.7 GiB plus "graph capturing" 0.2-0.6 GiB); a stated estimate, not a measurement.
FIXED_RESERVE_BYTES = 1.0 * GIB

#: Multiplier on the routed experts' compute and weight reads for uneven routing (the
#: busiest expert, or under expert parallelism the busiest GPU, sets the pace). 1 = the
#: uniform-routing expectation; not yet fitted (the public MoE rows do not separate it
#: from eff_compute/eff_memory).
EXPERT_LOAD_IMBALANCE = 1.0


def expected_distinct_experts(tokens: float, num_experts: int, top_k: int) -> float:
    """Expected number of distinct experts ``tokens`` tokens hit in one layer, each choosing
    ``top_k`` of ``num_experts`` uniformly: E·(1 - (1 - k/E)^T). k at T = 1; -> E as T grows.

    (Exact for one token; for several it treats each token's k choices as independent draws of
    probability k/E per expert, which is the exact marginal of a uniform k-subset.)
    """
    if tokens <= 0 or num_experts <= 0:
        return 0.0
    return num_experts * (1.0 - float((1.0 - top_k / num_experts) ** tokens))


def ep_busiest(n: float, ep: int, population: int | None = None) -> float:
    """Expected load of the busiest of ``ep`` GPUs when ``n`` units (token-expert pairs, or the
    distinct experts a step hits) fall on them uniformly at random.

    Gaussian approximation of the maximum of ``ep`` loads of mean n/ep and variance
    n·(1/ep)·(1 - 1/ep), the maximum of ``ep`` such being about mean + sqrt(2·ln(ep)·variance)
    (balls into bins with n >> ep: Raab and Steger, "Balls into bins - a simple and tight
    analysis", RANDOM 1998). With ``population`` (units drawn without replacement from that
    many, as distinct experts are) the variance takes the finite-population factor
    (population - n)/(population - 1). Capped at n and, with a population, at population/ep.
    """
    if ep <= 1 or n <= 0:
        return float(n)
    mean = n / ep
    var = mean * (1.0 - 1.0 / ep)
    cap = float(n)
    if population is not None and population > 1:
        var *= max(0.0, (population - n) / (population - 1))
        cap = min(cap, population / ep)
    return min(cap, mean + math.sqrt(2.0 * math.log(ep) * var))


def weight_bytes_per_param(precision: str) -> float:
    try:
        return _WEIGHT_BYTES[precision]
    except KeyError:
        raise ConfigError("model.precision", f"got {precision!r}; allowed: {', '.join(_WEIGHT_BYTES)}") from None


def kv_bytes_per_element(precision: str, kv_cache_dtype: str | None = None) -> float:
    """Bytes of one KV-cache element: ``kv_cache_dtype`` if given, else what ``precision`` implies."""
    weight_bytes_per_param(precision)
    if kv_cache_dtype is None:
        return _KV_BYTES[precision]
    if kv_cache_dtype not in KV_CACHE_DTYPES:
        raise ConfigError(
            "serving.kv_cache_dtype", f"got {kv_cache_dtype!r}; allowed: {', '.join(KV_CACHE_DTYPES)} (or unset)"
        )
    return _KV_BYTES[kv_cache_dtype]


@dataclass(frozen=True)
class PerfModel:
    """Memory and step-time model of one engine replica. All times in seconds."""

    model: ModelSpec
    gpu: GPU
    tp: int
    precision: str
    profile: Profile
    #: vLLM's engine defaults (its OpenAI server on a GPU with >= 70 GiB), written only here:
    #: ``scenario.Serving`` and ``sojourn perf`` take theirs from these fields.
    gpu_memory_utilization: float = 0.9
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    block_size: int = 16
    #: KV-cache element type; None: fp8 for fp8/fp4 weights, bf16 for bf16 weights.
    kv_cache_dtype: str | None = None
    #: Expert-parallel size of the MoE layers within the replica (1: every expert sliced over
    #: the tp GPUs, as TP does; tp: vLLM's --enable-expert-parallel, whole experts spread over
    #: the GPUs, moe_tp = tp/ep slicing each). Must divide tp; MoE models only.
    ep: int = 1
    #: Pipeline-parallel stages (vLLM's --pipeline-parallel-size, TensorRT-LLM's pp_size): the replica is
    #: ``pp`` stages of ``tp`` GPUs, each stage holding num_layers/pp layers; tp·pp GPUs in all. Dense
    #: full-attention models only (module docstring, "Pipeline parallelism").
    pp: int = 1
    #: Data-parallel attention ranks (vLLM's --data-parallel-size with a MoE model, SGLang's and TensorRT-LLM's
    #: attention DP): dp ranks of tp GPUs each run attention and the dense layers on their own sequences, and
    #: the experts spread over all tp·dp GPUs (module docstring, "Data-parallel attention"). MoE models only.
    dp: int = 1

    if TYPE_CHECKING:
        # The hot path's constants, set per instance by __post_init__ (object.__setattr__, the class
        # being frozen). Declared for the type checker only: not dataclass fields, so not in __init__,
        # fields(), eq or repr. ClassVar keeps mypy's dataclass plugin from taking them for fields.
        _c_tok: ClassVar[float]
        _c_logit: ClassVar[float]
        _w_time: ClassVar[float]
        _c_pair: ClassVar[float]
        _c_ctx: ClassVar[float]
        _comm_fixed: ClassVar[float]
        _comm_tok: ClassVar[float]
        _moe: ClassVar[bool]
        _overlap: ClassVar[bool]
        _t_half: ClassVar[float]
        _so: ClassVar[float]
        _sq: ClassVar[float]
        _c_dense: ClassVar[float]
        _w_dense: ClassVar[float]
        _w_expert: ClassVar[float]
        _n_experts: ClassVar[int]
        _miss: ClassVar[float]
        _c_routed: ClassVar[float]
        _c_window: ClassVar[float]
        _c_pair_window: ClassVar[float]

    # Class defaults of the constants only some models set: no sliding-window layers, no routed experts.
    _c_window = 0.0
    _c_pair_window = 0.0
    _c_routed = 0.0

    def __post_init__(self) -> None:
        m = self.model
        self._check_tp()
        self._check_dp()
        self._check_ep()
        self._check_pp()
        # Validates the precision against the GPU (e.g. no fp8 on A100).
        self.gpu.peak_flops(self.precision)
        # Precompute the constants of the hot path (step_time is called per simulated step).
        p = self.profile
        L, h = m.num_layers, m.hidden_size
        pp, dp = self.pp, self.dp
        # All the replica's GPUs (tp·pp·dp): pipeline stages and data-parallel ranks share the layers' work as
        # tensor slices do.
        peak = self.gpu.peak_flops(self.precision) * self.tp * pp * dp * p.compute_efficiency(self.precision)
        bw = self.gpu.bandwidth_bytes_per_s * p.eff_memory
        lm_head = m.vocab_size * h
        # The logits: on the last stage's tp GPUs, whose share of them paces the pipeline.
        object.__setattr__(self, "_c_logit", 2.0 * lm_head / peak * pp)
        # Weights: each stage reads its own for each of the pp micro-batches of a step.
        object.__setattr__(self, "_w_time", self.weights_bytes_per_gpu * pp / bw)
        object.__setattr__(self, "_moe", m.is_moe)
        object.__setattr__(self, "_overlap", bool(p.host_overlap))
        # GEMM fill: each micro-batch holds 1/pp of the step's tokens. (Scaling the half point with the per-GPU
        # width h/tp as well, i.e. in output tiles, was tried: it fitted TRT-LLM's rows no better, B200's worse.)
        object.__setattr__(self, "_t_half", float(p.gemm_half_tokens) * pp)
        # Host: each micro-batch is scheduled as a step of its own; each data-parallel rank schedules its own share.
        object.__setattr__(self, "_so", p.step_overhead_s * pp)
        object.__setattr__(self, "_sq", p.seq_overhead_s / dp)
        if not m.is_moe:
            layer_matmul = m.matmul_parameters - lm_head
            object.__setattr__(self, "_c_tok", 2.0 * layer_matmul / peak)
        else:
            routed_active = float(m.moe_layers * m.experts_per_token) * m.expert_parameters
            rest = m.active_matmul_parameters - lm_head - routed_active
            object.__setattr__(self, "_c_tok", 2.0 * (rest + EXPERT_LOAD_IMBALANCE * routed_active) / peak)
            # one routed expert in every MoE layer, per GPU; the rest of the weights are read every step
            w_expert = m.moe_layers * m.expert_parameters * weight_bytes_per_param(self.precision) / self.tp / bw
            w_dense = self._w_time - m.num_experts * w_expert
            if dp > 1:  # the experts over all tp·dp GPUs; the dense parts replicated in every rank's tp GPUs
                w_expert /= dp
                w_dense = (self.weights_bytes - self._routed_expert_bytes) / self.tp / bw
            object.__setattr__(self, "_w_expert", EXPERT_LOAD_IMBALANCE * w_expert)
            object.__setattr__(self, "_w_dense", w_dense)
            object.__setattr__(self, "_n_experts", m.num_experts)
            object.__setattr__(self, "_miss", 1.0 - m.experts_per_token / m.num_experts)
            object.__setattr__(self, "_c_routed", 2.0 * EXPERT_LOAD_IMBALANCE * routed_active / peak)
        if not (m.is_mla or m.sliding_window_layers):
            object.__setattr__(self, "_c_pair", 4.0 * L * m.num_attention_heads * m.head_dim / peak)
        else:
            self._set_attention_constants(peak, bw)
        if dp > 1:  # a prefill runs on its own rank's tp GPUs: dp times the share the whole replica would take
            object.__setattr__(self, "_c_pair", self._c_pair * dp)
            object.__setattr__(self, "_c_pair_window", self._c_pair_window * dp)
            lm_and_routed = 2.0 * EXPERT_LOAD_IMBALANCE * float(m.moe_layers * m.experts_per_token) * m.expert_parameters
            object.__setattr__(self, "_c_dense", self._c_tok - lm_and_routed / peak)
        object.__setattr__(self, "_c_ctx", self.kv_bytes_per_token_per_gpu / bw)
        ic = self.gpu.interconnect_bytes_per_s * p.eff_interconnect
        if self.tp > 1:
            comm_fixed = 2 * L * p.comm_latency_s
            comm_tok = 2 * L * 2 * (self.tp - 1) / self.tp * h * 2.0 / ic
        else:
            comm_fixed = comm_tok = 0.0
        if pp > 1:  # all-reduces of 1/pp of the tokens per micro-batch; one hand-over per stage and micro-batch
            comm_tok = comm_tok / pp + h * 2.0 / ic
            comm_fixed += pp * p.comm_latency_s
        if dp > 1:  # all-reduces within a rank on its 1/dp of the tokens; an all-to-all dispatch and combine per
            # MoE layer, each GPU sending its 1/(tp·dp) of the tokens' hidden states to the k experts' GPUs
            g = self.tp * dp
            comm_tok = comm_tok / dp + 2 * m.moe_layers * m.experts_per_token * h * 2.0 * (g - 1) / g / g / ic
            a2a = p.comm_latency_s if p.a2a_latency_s is None else p.a2a_latency_s
            comm_fixed += 2 * m.moe_layers * a2a
        object.__setattr__(self, "_comm_fixed", comm_fixed)
        object.__setattr__(self, "_comm_tok", comm_tok)

    def _check_ep(self) -> None:
        """The expert-parallel size: 1, or a divisor of tp above 1 for a mixture-of-experts model."""
        if self.ep == 1:
            return
        where = "serving.enable_expert_parallel"
        if not self.model.is_moe:
            raise ConfigError(where, f"{self.model.id} is a dense model: expert parallelism needs a mixture-of-experts "
                                     "model; allowed: false")  # fmt: skip
        gpus = self.tp * self.dp
        if self.ep < 1 or gpus % self.ep:
            allowed = [d for d in range(1, gpus + 1) if gpus % d == 0]
            raise ConfigError(where, f"expert-parallel size {self.ep} does not divide the replica's {gpus} GPUs; "
                                     f"allowed: {', '.join(map(str, allowed))}")  # fmt: skip

    def _check_tp(self) -> None:
        """The tensor-parallel size divides the attention heads, and divides or is a multiple of the KV heads."""
        m = self.model
        if self.tp < 1:
            raise ConfigError("fleet.tp", f"must be >= 1, got {self.tp}")
        if m.num_attention_heads % self.tp:
            allowed = [d for d in range(1, m.num_attention_heads + 1) if m.num_attention_heads % d == 0]
            raise ConfigError(
                "fleet.tp",
                f"tp={self.tp} does not divide {m.id}'s {m.num_attention_heads} attention heads; "
                f"allowed: {', '.join(map(str, allowed))}",
            )
        kv = m.num_key_value_heads
        if not m.is_mla and kv % self.tp and self.tp % kv:
            raise ConfigError(
                "fleet.tp",
                f"tp={self.tp} neither divides nor is a multiple of {m.id}'s {kv} KV heads",
            )

    def _check_dp(self) -> None:
        """The data-parallel attention size: 1, or more ranks of a mixture-of-experts model (without pipeline stages)."""
        if self.dp == 1:
            return
        where = "serving.data_parallel_size"
        if self.dp < 1:
            raise ConfigError(where, f"got {self.dp}; allowed: >= 1")
        if not self.model.is_moe:
            raise ConfigError(where, f"{self.model.id} is a dense model: data-parallel attention is modelled for "
                                     "mixture-of-experts models (whose experts the ranks share); allowed: 1")  # fmt: skip
        if self.pp > 1:
            raise ConfigError(where, "data-parallel attention with pipeline stages is not modelled; allowed: 1")

    def _check_pp(self) -> None:
        """The pipeline-parallel size: 1, or up to num_layers stages of a dense full-attention model."""
        if self.pp == 1:
            return
        m, where = self.model, "serving.pipeline_parallel_size"
        if self.pp < 1 or self.pp > m.num_layers:
            raise ConfigError(where, f"got {self.pp}; allowed: 1..{m.num_layers} ({m.id}'s layers)")
        if m.is_moe or m.is_mla or m.sliding_window_layers:
            raise ConfigError(where, f"pipeline parallelism is modelled for dense full-attention models only, and "
                                     f"{m.id} is not one; allowed: 1")  # fmt: skip

    def _set_attention_constants(self, peak: float, bw: float) -> None:
        """Prefill-attention and sliding-window constants of MLA and sliding-window models (the
        grouped-query, full-attention case is the one line in ``__post_init__``, kept as it was)."""
        m = self.model
        object.__setattr__(self, "_c_pair", m.full_attention_layers * m.attention_flops_per_pair / peak)
        object.__setattr__(self, "_c_pair_window", m.sliding_window_layers * m.attention_flops_per_pair / peak)
        object.__setattr__(self, "_c_window", m.sliding_window * self.window_kv_bytes_per_token_per_gpu / bw)

    # -- memory ---------------------------------------------------------------

    @property
    def weights_bytes(self) -> float:
        """Bytes of all weights of one replica (embeddings and lm_head stay bf16)."""
        m = self.model
        emb = m.vocab_size * m.hidden_size * (1 if m.tie_word_embeddings else 2)
        return (m.num_parameters - emb) * weight_bytes_per_param(self.precision) + emb * 2.0

    @property
    def _routed_expert_bytes(self) -> float:
        """Bytes of every routed expert of a MoE model (0 for a dense one)."""
        m = self.model
        if not m.is_moe:
            return 0.0
        return m.num_experts * m.moe_layers * m.expert_parameters * weight_bytes_per_param(self.precision)

    @property
    def weights_bytes_per_gpu(self) -> float:
        if self.dp > 1:  # data-parallel attention: the dense parts in every rank, the experts spread over all GPUs
            experts = self._routed_expert_bytes
            return (self.weights_bytes - experts) / self.tp + experts / (self.tp * self.dp)
        return self.weights_bytes / (self.tp * self.pp)

    @property
    def kv_heads_per_gpu(self) -> int:
        return max(1, self.model.num_key_value_heads // self.tp)

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        """KV bytes one token of context keeps on each GPU, over the full-attention layers.

        Grouped-query attention: the GPU's share of the KV heads. MLA: the whole latent
        (kv_lora_rank + qk_rope_head_dim), which every GPU of a TP group holds (the heads share
        it). Sliding-window layers are not here: they keep a window per sequence
        (:attr:`window_kv_bytes_per_token_per_gpu`)."""
        m = self.model
        kv = kv_bytes_per_element(self.precision, self.kv_cache_dtype)
        if not (m.is_mla or m.sliding_window_layers):  # a pipeline stage holds 1/pp of the layers
            per_gpu = 2.0 * m.num_layers * self.kv_heads_per_gpu * m.head_dim * kv / self.pp
        else:
            per_gpu = m.full_attention_layers * self._kv_elements_per_layer_per_gpu * kv
        # data-parallel attention: a token's KV lives in one rank's tp GPUs, 1/dp of it per GPU on average
        return per_gpu / self.dp if self.dp > 1 else per_gpu

    @property
    def _kv_elements_per_layer_per_gpu(self) -> float:
        m = self.model
        return float(m.kv_elements_per_token_layer) if m.is_mla else 2.0 * self.kv_heads_per_gpu * m.head_dim

    @property
    def window_kv_bytes_per_token_per_gpu(self) -> float:
        """KV bytes of one token in the sliding-window layers, per GPU (0 without such layers)."""
        m = self.model
        if not m.sliding_window_layers:
            return 0.0
        kv = kv_bytes_per_element(self.precision, self.kv_cache_dtype)
        per_gpu = m.sliding_window_layers * self._kv_elements_per_layer_per_gpu * kv
        return per_gpu / self.dp if self.dp > 1 else per_gpu

    @property
    def window_reserve_bytes_per_gpu(self) -> float:
        """KV memory the sliding-window layers hold with ``max_num_seqs`` sequences running: each
        keeps ceil(window/block) + 1 blocks (vLLM's sliding-window manager frees the blocks that
        fall out of the window). Taken off the memory the full-attention layers' cache gets."""
        m = self.model
        if not m.sliding_window_layers:
            return 0.0
        blocks = -(-m.sliding_window // self.block_size) + 1
        return self.max_num_seqs * blocks * self.block_size * self.window_kv_bytes_per_token_per_gpu

    @property
    def kv_bytes_per_token(self) -> float:
        """KV bytes of one token over the whole replica (replicated heads counted once per GPU)."""
        return self.kv_bytes_per_token_per_gpu * self.tp * self.pp * self.dp

    @property
    def activation_reserve_bytes_per_gpu(self) -> float:
        """Peak activation memory vLLM's profiling run reserves, plus fixed runtime memory.

        The profiling forward pass holds ``max_num_batched_tokens`` hidden states and
        the sharded MLP intermediate (gate and up projections; for MoE those of the k routed
        and the shared experts each token uses), and the sampler's
        float32 logits for ``max_num_seqs`` sequences.
        """
        m = self.model
        M: float = self.max_num_batched_tokens
        if self.dp > 1:  # limits of the whole replica: each rank's GPUs hold their rank's share
            M = M / self.dp
        # MoE: the fused expert kernel holds each token's k (+ shared) expert intermediates
        inter = m.intermediate_size
        if m.is_moe:
            moe = (m.experts_per_token + m.num_shared_experts) * m.moe_intermediate_size
            inter = max(moe, m.intermediate_size if m.first_k_dense_layers else 0)
        hidden = M * (4 * m.hidden_size + 2 * inter / self.tp) * 2.0
        logits = min(self.max_num_seqs / self.dp if self.dp > 1 else self.max_num_seqs, M) * m.vocab_size * 4.0 / self.tp
        return FIXED_RESERVE_BYTES + hidden + logits

    @property
    def kv_free_bytes_per_gpu(self) -> float:
        free = (
            self.gpu.memory_bytes * self.gpu_memory_utilization
            - self.weights_bytes_per_gpu
            - self.activation_reserve_bytes_per_gpu
        )
        if self.model.sliding_window_layers:
            free -= self.window_reserve_bytes_per_gpu
        return free

    @property
    def kv_capacity_blocks(self) -> int:
        free = self.kv_free_bytes_per_gpu
        if free <= 0:
            return 0
        return int(free // (self.kv_bytes_per_token_per_gpu * self.block_size))

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens of KV cache of one replica (whole blocks)."""
        return self.kv_capacity_blocks * self.block_size

    def requests_in_kv(self, tokens_per_request: int) -> int:
        """How many requests of this many tokens (prompt + output) fit at once."""
        blocks = math.ceil(tokens_per_request / self.block_size)
        return self.kv_capacity_blocks // blocks if blocks else 0

    def check_fits(self, max_model_len: int | None = None) -> None:
        """Raise a ConfigError naming the field when the model or one request does not fit."""
        usable = self.gpu.memory_bytes * self.gpu_memory_utilization
        if self.weights_bytes_per_gpu >= usable:
            raise ConfigError(
                "fleet.tp",
                f"{self.model.id} weights need {self.weights_bytes_per_gpu / GIB:.1f} GiB per GPU at tp={self.tp} "
                f"({self.precision}), but {self.gpu.id} offers {usable / GIB:.1f} GiB at "
                f"gpu_memory_utilization={self.gpu_memory_utilization}: raise tp, use fp8, or a larger GPU",
            )
        if self.kv_capacity_blocks <= 0:
            raise ConfigError(
                "serving.gpu_memory_utilization",
                f"no memory left for the KV cache on {self.gpu.id} at tp={self.tp}: weights "
                f"{self.weights_bytes_per_gpu / GIB:.1f} GiB + activations "
                f"{self.activation_reserve_bytes_per_gpu / GIB:.1f} GiB per GPU exceed "
                f"{usable / GIB:.1f} GiB; raise gpu_memory_utilization or tp, or lower max_num_batched_tokens",
            )
        if max_model_len is not None and self.kv_capacity_tokens < max_model_len:
            raise ConfigError(
                "serving.max_model_len",
                f"the KV cache holds {self.kv_capacity_tokens} tokens per replica, fewer than one request of "
                f"max_model_len={max_model_len}; lower max_model_len to at most {self.kv_capacity_tokens} "
                "or add memory (gpu_memory_utilization, tp)",
            )

    # -- time -----------------------------------------------------------------

    def step_time(
        self,
        prefill_tokens: float,
        decode_seqs: float,
        decode_context: float,
        prefill_pairs: float | None = None,
        prefill_done: int = 0,
    ) -> float:
        """Seconds of one engine step.

        ``decode_context`` is the total context (tokens of KV) the decoding sequences
        read; ``prefill_pairs`` is the attention work of the prefill chunks,
        sum of chunk·(prior context + chunk/2) — by default a fresh prompt, chunk²/2.
        ``prefill_done`` counts prefills finishing this step (their first token needs logits).
        """
        T = prefill_tokens + decode_seqs
        if T <= 0:
            return 0.0
        if prefill_pairs is None:
            prefill_pairs = 0.5 * prefill_tokens * prefill_tokens
        sampled = decode_seqs + prefill_done
        Tg = T + self._t_half
        if not self._moe:
            lin = max(self._c_tok * Tg + self._c_logit * sampled, self._w_time)
        else:
            lin = self._moe_lin(T, Tg, sampled, prefill_tokens)
        if self._overlap:
            gpu = lin + self._c_pair * prefill_pairs + self._c_ctx * decode_context + self._comm_fixed
            gpu += self._comm_tok * T
            if self._c_window:
                gpu += self.window_attention_time(prefill_tokens, decode_seqs, prefill_pairs)
            return max(self._so + self._sq * sampled, gpu)
        # host + GPU, summed in the order it always was (bit-for-bit the same step times)
        t = (
            self._so
            + self._sq * sampled
            + lin
            + self._c_pair * prefill_pairs
            + self._c_ctx * decode_context
            + self._comm_fixed
            + self._comm_tok * T
        )
        if self._c_window:
            t += self.window_attention_time(prefill_tokens, decode_seqs, prefill_pairs)
        return t

    def window_attention_time(self, prefill_tokens: float, decode_seqs: float, prefill_pairs: float) -> float:
        """Sliding-window layers' attention in a step: each decoding sequence reads a full window of
        KV (an upper bound while its context is shorter), and prefill pairs are capped at a window
        per token (min(pairs, tokens·window))."""
        w = self.model.sliding_window
        return self._c_window * decode_seqs + self._c_pair_window * min(prefill_pairs, prefill_tokens * w)

    def _moe_lin(self, T: float, Tg: float, sampled: float, prefill_tokens: float) -> float:
        """A MoE step's layer GEMMs and logits, or its weight reads, whichever is longer (``step_time``'s ``lin``).

        With data-parallel attention the ranks' dense parts (attention projections, shared experts, dense
        layers, logits) run on each rank's own tp GPUs and the step waits for the busiest rank: its share of the
        decoding sequences (balls into bins over dp ranks, :func:`ep_busiest`) and the step's prefill tokens,
        which a rank's own chunk holds (taken as one rank's); the routed experts' GEMMs are shared by all GPUs."""
        if self.dp == 1:
            return max(self._c_tok * Tg + self._c_logit * sampled + self.ep_compute_excess(T), self.weight_read_time(T))
        dp, th = self.dp, self._t_half
        decode = T - prefill_tokens
        rank_tokens = prefill_tokens + ep_busiest(decode, dp) + th
        dense = dp * (self._c_dense * rank_tokens + self._c_logit * ep_busiest(sampled, dp))
        routed = (self._c_tok - self._c_dense) * Tg
        return max(dense + routed + self.ep_compute_excess(T), self.weight_read_time(T))

    def ep_compute_excess(self, tokens: float) -> float:
        """Seconds the busiest GPU's routed-expert GEMMs add over an even split, under expert
        parallelism (0 when ep = 1): the routed compute times (busiest share · ep - 1) of the
        T·k token-expert pairs (:func:`ep_busiest`)."""
        if self.ep == 1 or tokens <= 0:
            return 0.0
        pairs = tokens * self.model.experts_per_token
        return self._c_routed * tokens * (ep_busiest(pairs, self.ep) * self.ep / pairs - 1.0)

    def decode_run_time(self, seqs: int, context0: float, steps: int) -> float:
        """Exact time of ``steps`` consecutive decode-only steps of ``seqs`` sequences.

        The batch is fixed, so each step's cost is affine in the context, which grows
        by ``seqs`` tokens per step: the sum is arithmetic, no per-step loop.
        """
        if steps <= 0 or seqs <= 0:
            return 0.0
        c = self._c_ctx
        if not self._overlap:
            a = self.decode_step_fixed(seqs)
            return steps * a + c * (steps * context0 + seqs * steps * (steps - 1) / 2.0)
        # max(host, gpu_k), gpu_k = g0 + c·(context0 + seqs·k) rising in k: the first k_star steps
        # (gpu_k < host) take the host time, the rest their GPU time (an arithmetic sum).
        host, g0 = self._decode_host(seqs), self._decode_gpu_fixed(seqs)
        first = g0 + c * context0
        rise = c * seqs
        if first >= host:
            k_star = 0
        elif rise <= 0:
            k_star = steps
        else:
            k_star = min(steps, math.ceil((host - first) / rise))
        n = steps - k_star
        return k_star * host + n * first + rise * n * (k_star + steps - 1) / 2.0

    def _decode_host(self, seqs: int) -> float:
        """Host part of a decode step of ``seqs`` sequences (per-step and per-sequence overheads)."""
        return self._so + self._sq * seqs

    def _decode_gpu_fixed(self, seqs: int) -> float:
        """GPU part of a decode step of ``seqs`` sequences that does not depend on the context read."""
        T = seqs
        Tg = T + self._t_half
        if not self._moe:
            lin = max(self._c_tok * Tg + self._c_logit * seqs, self._w_time)
        else:
            lin = self._moe_lin(T, Tg, seqs, 0.0)
        t = lin + self._comm_fixed + self._comm_tok * T
        if self._c_window:
            t += self._c_window * seqs
        return t

    def decode_step_fixed(self, seqs: int) -> float:
        """Part of a decode step's time that does not depend on the context read.

        With host overlap the step is max(host, GPU) and no part is independent of the context:
        this is then max(host, GPU's fixed part), exact while the GPU part dominates and an upper
        bound otherwise (the engine uses it only to guess how many steps fit in a span, and
        corrects the guess with :meth:`decode_run_time`)."""
        if self._overlap:
            return max(self._decode_host(seqs), self._decode_gpu_fixed(seqs))
        T = seqs
        Tg = T + self._t_half
        if not self._moe:
            lin = max(self._c_tok * Tg + self._c_logit * seqs, self._w_time)
        else:
            lin = self._moe_lin(T, Tg, seqs, 0.0)
        t = self._so + self._sq * seqs + lin + self._comm_fixed + self._comm_tok * T
        if self._c_window:
            t += self._c_window * seqs
        return t

    def weight_read_time(self, tokens: float) -> float:
        """Seconds to read the weights a step of ``tokens`` tokens uses, per GPU (memory-bound floor).

        Dense: every weight. MoE: the dense parts plus the expected distinct routed experts
        the tokens hit (:func:`expected_distinct_experts`), times ``EXPERT_LOAD_IMBALANCE``.
        """
        if not self._moe:
            return self._w_time
        hit = self._n_experts * (1.0 - float(self._miss**tokens)) if tokens > 0 else 0.0
        if self.ep > 1 and hit > 0:
            # whole experts live on one of ep GPUs (each sliced tp/ep ways): the busiest GPU reads
            # its share of the hit experts, drawn without replacement from the E experts
            return self._w_dense + self._w_expert * self.ep * ep_busiest(hit, self.ep, self._n_experts)
        return self._w_dense + self._w_expert * hit

    @property
    def seconds_per_context_token(self) -> float:
        """Decode-step seconds per token of context read (the slope of β in context)."""
        return self._c_ctx

    def alpha(self, chunk: int | None = None) -> float:
        """Prefill seconds per token: one fresh prompt of ``chunk`` tokens in one step, per token."""
        c = chunk or self.max_num_batched_tokens
        return self.step_time(c, 0, 0, prefill_done=1) / c

    def beta(self, batch: int, context: float) -> float:
        """Decode step time with ``batch`` sequences each holding ``context`` tokens."""
        return self.step_time(0, batch, batch * context)

    @property
    def calibration(self) -> Calibration:
        """Whether this GPU's step-time factors were fitted on its own measurements (``calibration_of``)."""
        return calibration_of(self.profile, self.gpu.id, precision=self.precision)

    def describe(self) -> dict[str, Any]:
        prof = self.profile
        return {
            "model": self.model.id,
            "gpu": self.gpu.id,
            "tp": self.tp,
            **({"pp": self.pp} if self.pp > 1 else {}),
            **({"dp": self.dp} if self.dp > 1 else {}),
            "precision": self.precision,
            "kv_cache_dtype": self.kv_cache_dtype or ("bf16" if _KV_BYTES[self.precision] == 2.0 else "fp8"),
            "profile_source": prof.source,
            "profile_carried_from": prof.carried_from,
        }


def _split(gpus: int, parts: int, field: str, what: str) -> int:
    """The tensor-parallel GPUs of each of ``parts`` stages or ranks of a node's ``gpus``; a ConfigError naming
    ``field`` and the allowed values where they do not divide."""
    if gpus % parts:
        allowed = [d for d in range(1, gpus + 1) if gpus % d == 0]
        raise ConfigError(field, f"{parts} {what} do not divide the node's {gpus} GPUs (fleet.tp); allowed: "
                                 f"{', '.join(map(str, allowed))}")  # fmt: skip
    return gpus // parts


def build_perf_model(
    model: ModelSpec,
    gpu: GPU,
    tp: int = 1,
    precision: str = "bf16",
    profile: str | Profile | None = None,
    backend: str = "vllm",
    serving: Any = None,
    base_dir: str | Path = ".",
    check: bool = True,
    kv_cache_dtype: str | None = None,
    ep: int = 1,
) -> PerfModel:
    """A PerfModel for a replica, with the shipped or named profile, validated to fit.

    ``kv_cache_dtype`` (or ``serving.kv_cache_dtype`` where the serving settings have
    it) overrides the KV-cache element type that ``precision`` implies.
    ``serving.enable_expert_parallel`` (vLLM's --enable-expert-parallel) sets ``ep`` = tp.
    ``serving.pipeline_parallel_size`` = pp > 1 splits the node's ``tp`` GPUs into pp stages of
    tp/pp tensor-parallel GPUs each (the PerfModel's ``tp`` is then tp/pp, its ``pp`` pp), and
    ``serving.data_parallel_size`` = dp > 1 into dp attention ranks of tp/dp GPUs (``dp``), whose
    limits add up (max_num_seqs and max_num_batched_tokens are per rank, as in vLLM).
    """
    prof = resolve_profile(gpu.id, backend, profile, base_dir, moe=model.is_moe)
    kwargs: dict[str, Any] = {}
    max_model_len = None
    if serving is not None:
        kwargs = dict(
            gpu_memory_utilization=serving.gpu_memory_utilization,
            max_num_batched_tokens=serving.max_num_batched_tokens,
            max_num_seqs=serving.max_num_seqs,
            block_size=serving.block_size,
        )
        max_model_len = serving.max_model_len
        kv_cache_dtype = kv_cache_dtype or getattr(serving, "kv_cache_dtype", None)
        pp = getattr(serving, "pipeline_parallel_size", 1)
        if pp > 1:
            tp = _split(tp, pp, "serving.pipeline_parallel_size", "stages")
            kwargs["pp"] = pp
        dp = getattr(serving, "data_parallel_size", 1)
        gpus = tp
        if dp > 1:
            tp = _split(tp, dp, "serving.data_parallel_size", "ranks")
            # each rank has its own limits: the replica's are dp times them
            kwargs.update(dp=dp, max_num_seqs=serving.max_num_seqs * dp,
                          max_num_batched_tokens=serving.max_num_batched_tokens * dp)
        if getattr(serving, "enable_expert_parallel", False):
            if gpus == 1:
                raise ConfigError(
                    "serving.enable_expert_parallel",
                    "expert parallelism spreads the experts over the replica's GPUs, and tp=1 has one; "
                    "allowed: false, or fleet.tp > 1",
                )
            ep = gpus
    pm = PerfModel(
        model=model, gpu=gpu, tp=tp, precision=precision, profile=prof, kv_cache_dtype=kv_cache_dtype, ep=ep, **kwargs
    )
    if check:
        pm.check_fits(max_model_len)
    return pm
