"""Calibration data: the measurements a ``Profile`` is fitted to, and their errors.

The fit itself (``fit_profile``, ``evaluate``) predicts silicon rows by running the
engine, so it lives with the engine, in ``sim/calibrate.py``; this module has the
records, their loaders, the benchmark settings and the error summaries.

Two kinds of measurement:

- *Silicon rows*: closed-loop engine benchmarks (C clients of fixed input/output
  length, a new request as soon as one ends), as in aiconfigurator's
  ``silicon_sample.csv``. The prediction of a row is ``closed_loop(...)`` — the
  same engine scheduler the simulator runs — so TPOT includes the stalls from
  other requests' prefills, exactly what the benchmark measures.
- *Step rows*: the time of one engine step with a given composition
  (``prefill_tokens, decode_seqs, context_tokens, step_ms``), from a user's own
  profiling or from aiconfigurator's per-kernel step grid. The prediction is
  ``PerfModel.step_time``.

One profile holds one parameter set per (GPU, engine), fitted across every model,
precision and TP size given: that is what makes it transfer to models that were
not measured. Groups that fit badly are reported, never patched with per-model
factors.
"""

from __future__ import annotations

import csv
import io
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sojourn._errors import ConfigError
from sojourn._io import read_text
from sojourn.perf._model import PerfModel
from sojourn.perf._profile import PRECISION_PARAM, PRIOR, Profile

__all__ = [
    "BENCH_DEFAULTS",
    "BENCH_KV_CACHE",
    "DEFAULT_FIT",
    "ENGINE_FIT_EXTRA",
    "FIT_PARAMS",
    "PRECISION_PARAM",
    "Loaded",
    "Prediction",
    "Record",
    "SiliconRow",
    "StepRow",
    "TRTLLM_OFFLINE",
    "OFFLINE_ORIGIN",
    "kv_free_utilization",
    "trtllm_bench_settings",
    "load_throughput",
    "ThroughputRow",
    "fits",
    "group_mape",
    "holdout_split",
    "load_silicon",
    "load_step_grid",
    "load_steps",
    "overall_mape",
    "default_fit_params",
    "perf_model_for",
    "summary_lines",
    "GRID_ORIGIN",
    "SILICON_ORIGIN",
]

#: Hugging Face model paths of the public data -> catalogue ids (dense models only).
MODEL_PATHS = {
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Meta-Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b",
    "meta-llama/Meta-Llama-3.1-70B": "llama-3.1-70b",
    "Qwen/Qwen3-32B": "qwen3-32b",
    "nvidia/Qwen3-32B-NVFP4": "qwen3-32b",
}
#: Hugging Face model paths of the public data's mixture-of-experts models -> catalogue ids
#: (loaded with ``load_silicon(..., models="moe")``).
MOE_MODEL_PATHS = {
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "Qwen/Qwen3-235B-A22B": "qwen3-235b-a22b",
    "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b",
    "MiniMaxAI/MiniMax-M2.5": "minimax-m2.5",
    # multi-head latent attention
    "deepseek-ai/DeepSeek-R1": "deepseek-r1",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "nvidia/DeepSeek-R1-NVFP4": "deepseek-r1",
    "moonshotai/Kimi-K2.5": "kimi-k2.5",
}
#: MoE models of the public data the perf model cannot represent yet, and why.
UNMODELLED_MOE = {
    "nvidia/DeepSeek-V3.1-NVFP4": "an architecture not in the catalogue (DeepSeek-V3.1)",
    "zhipuai/GLM-5": "sparse/latent attention (architecture not in the catalogue)",
    "Qwen/Qwen3.5-397B-A17B": "hybrid linear attention (Gated DeltaNet)",
}
MODEL_KINDS = ("dense", "moe", "all")
#: GPUs of one NVLink domain: 8 in an HGX/DGX node; a replica on more spans nodes, whose network
#: (InfiniBand, ~50 GB/s per GPU) the NVLink interconnect figure does not describe. GB200/GB300
#: NVL72 racks are one NVLink domain of 72 GPUs (their catalogue notes).
NODE_GPUS = 8
NVLINK_DOMAIN = {"gb200": 72, "gb300": 72}
#: aiconfigurator system names -> catalogue GPU ids.
SYSTEMS = {
    "h100_sxm": "h100-sxm", "b200_sxm": "b200", "a100_sxm": "a100-80gb", "l40s": "l40s",
    "b300_sxm": "b300", "gb200": "gb200", "gb300": "gb300",
}  # fmt: skip

#: What the benchmark engine is assumed to run with where a row does not say: vLLM's
#: defaults for its OpenAI server on a GPU with >= 70 GiB (max_num_batched_tokens 8192),
#: max_num_seqs 256 (raised to the concurrency so the client's requests all run), and
#: gpu_memory_utilization 0.9.
BENCH_DEFAULTS = {"max_num_batched_tokens": 8192, "max_num_seqs": 256, "gpu_memory_utilization": 0.9}

#: KV-cache element type of the benchmark runs, by (backend, GPU, weight precision), where
#: it is not what the precision implies (fp8 for fp8/fp4 weights). vLLM's
#: ``--kv-cache-dtype auto`` keeps a bf16 cache for fp8 checkpoints without KV quantisation,
#: and the public H100 fp8 Llama-3.1-70B rows were run that way, by two independent signs:
#: (1) TTFT explodes (KV exhausted, requests queue) at tp2 8192x1024 c32, where a bf16 cache
#: (237k tokens) overflows and an fp8 one (474k) would not; (2) TPOT grows with context at
#: the bf16 rate (tp4 1024x8192: +11.4 ms from c4 to c64; bf16 reads predict ~9.5, fp8 ~5.5).
#: The B200 fp8 rows grow at the fp8 rate (tp2 1024x8192: +5.3 ms; fp8 ~5.2, bf16 ~8.5), so
#: they keep the default.
BENCH_KV_CACHE: dict[tuple[str, str, str], str] = {("vllm", "h100-sxm", "fp8"): "bf16"}

#: Parameters that can be fitted: name -> (lower bound, upper bound, unit scale). The optimiser works on
#: value/scale so every parameter is O(1) and finite-difference steps are comparable.
FIT_PARAMS: dict[str, tuple[float, float, float]] = {
    "eff_compute": (0.05, 1.0, 1.0),
    "eff_memory": (0.05, 1.0, 1.0),
    "step_overhead_s": (0.0, 0.05, 1e-3),
    "seq_overhead_s": (0.0, 2e-4, 1e-6),
    "comm_latency_s": (0.0, 1e-4, 1e-6),
    "a2a_latency_s": (0.0, 5e-4, 1e-6),
    "eff_interconnect": (0.05, 1.0, 1.0),
    "request_overhead_s": (0.0, 0.5, 1e-2),
    "eff_compute_fp8": (0.05, 1.0, 1.0),
    "eff_compute_fp4": (0.05, 1.0, 1.0),
    "gemm_half_tokens": (0.0, 4096.0, 100.0),
}
#: Parameters fitted besides ``DEFAULT_FIT`` for an engine's rows (``default_fit_params``):
#: TensorRT-LLM's GEMM fill (``Profile.gemm_half_tokens``), which its rows (decode batches up to
#: 256 on one side, 8k-token prefills on the other) pin down once the host overlaps the GPU.
ENGINE_FIT_EXTRA: dict[str, tuple[str, ...]] = {"trtllm": ("gemm_half_tokens",)}
DEFAULT_FIT = ("eff_compute", "eff_memory", "step_overhead_s", "seq_overhead_s", "comm_latency_s", "request_overhead_s")
#: The compute factor each precision's rows pin down (``Profile.compute_efficiency``).


def default_fit_params(records: Sequence[Any], extra: Sequence[str] = ()) -> tuple[str, ...]:
    """``DEFAULT_FIT`` with the compute factors of the precisions ``records`` hold: rows of
    several precisions fit one factor each (bf16's is ``eff_compute``), and a factor no row
    measures is left as it was, not fitted (fp8-only rows say nothing of bf16 GEMMs)."""
    present = {PRECISION_PARAM[p] for p in {r.precision for r in records} if p in PRECISION_PARAM}
    rest = [n for n in DEFAULT_FIT if n != "eff_compute"]
    compute = [n for n in PRECISION_PARAM.values() if n in present] or ["eff_compute"]
    engines = sorted({getattr(r, "backend", "") for r in records})
    extra = (*extra, *(n for e in engines for n in ENGINE_FIT_EXTRA.get(e, ())))
    if any(getattr(r, "dp", 1) > 1 for r in records):  # data-parallel attention: its all-to-all's latency
        extra = (*extra, "a2a_latency_s")
    return (*compute, *rest, *dict.fromkeys(n for n in extra if n not in rest))


SILICON_ORIGIN = "aiconfigurator-core 0.12.0 (PyPI), aiconfigurator_core/systems/silicon_sample.csv, Apache-2.0"
GRID_ORIGIN = (
    "aiconfigurator 0.12.0 cli_estimate (static_ctx/static_gen, SILICON database), Apache-2.0: "
    "per-kernel estimates of step times, not end-to-end measurements"
)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """What every end-to-end run states: its engine, model, GPU, precision, TP and request size."""

    id: str
    backend: str
    model: str
    gpu: str
    precision: str
    tp: int
    isl: int
    osl: int


@dataclass(frozen=True)
class SiliconRow(_Run):
    """One closed-loop benchmark: ``concurrency`` clients of ``isl``/``osl`` tokens."""

    concurrency: int
    ttft_s: float
    tpot_s: float
    version: str = ""
    line: int = 0
    #: expert-parallel size of the MoE layers (1: experts split by TP, as for dense layers)
    ep: int = 1
    #: data-parallel attention ranks (the row's attention_dp_size), each of ``tp`` GPUs: tp·dp GPUs in all
    dp: int = 1


@dataclass(frozen=True)
class StepRow:
    """One engine step: its composition and measured (or estimated) time."""

    model: str
    gpu: str
    tp: int
    precision: str
    prefill_tokens: int
    decode_seqs: int
    context_tokens: float
    step_s: float
    line: int = 0
    kind: str = "step"


@dataclass(frozen=True)
class ThroughputRow(_Run):
    """One offline throughput run: ``requests`` requests of ``isl``/``osl`` tokens all queued at once and served
    to the last, reported as output tokens over the makespan (``trtllm-bench throughput``), with the engine
    limits the run had (``max_num_seqs``, ``max_num_batched_tokens``) and the KV share of the memory left
    after weights and activations (``kv_free_fraction``, TensorRT-LLM's kv_cache_free_gpu_mem_fraction)."""

    requests: int
    output_tokens_per_s: float
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_free_fraction: float
    line: int = 0


Record = SiliconRow | StepRow | ThroughputRow


@dataclass
class Loaded:
    """Records read from a file, and how many rows were skipped and why."""

    records: list[Any]
    skipped: Counter[str] = field(default_factory=Counter)
    path: str = ""

    def skipped_lines(self) -> list[str]:
        return [f"{n} {why}" for why, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0]))]


def _catalogue(catalogue: Any = None) -> Any:
    if catalogue is None:
        from sojourn.catalogue import default_catalogue

        return default_catalogue()
    return catalogue


def _read_csv(path: str | Path, what: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and rows (with their line numbers) of a CSV; blank and ``#`` lines are skipped.

    One record a line: a quoted value that spans lines, like a file that is missing, a
    folder, unreadable or not UTF-8 (``sojourn._io.read_text``), is a ConfigError naming ``what``.
    """
    p = Path(path)
    text = read_text(p, what, missing="no such file")
    lines = [(i, ln) for i, ln in enumerate(io.StringIO(text, newline=""), start=1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ConfigError(what, f"{p.name} is empty")
    reader = csv.reader([ln for _, ln in lines])
    records = []
    used = 0
    try:
        for values in reader:
            if reader.line_num - used > 1:
                raise ConfigError(what, f"line {lines[used][0]} of {p.name}: a quoted value spans several lines; "
                                        "each row must be one line")
            records.append((lines[used][0], values))
            used = reader.line_num
    except csv.Error as err:
        lineno = lines[min(reader.line_num, len(lines)) - 1][0]
        raise ConfigError(what, f"line {lineno} of {p.name}: not CSV ({err})") from None
    (_, head), *body = records
    header = [h.strip() for h in head]
    rows = []
    for lineno, values in body:
        if len(values) != len(header):
            raise ConfigError(
                what, f"line {lineno} of {p.name}: {len(values)} values for {len(header)} columns ({','.join(header)})"
            )
        rows.append((lineno, {h: v.strip() for h, v in zip(header, values, strict=True)}))
    return header, rows


def load_silicon(
    path: str | Path,
    backend: str | None = None,
    gpu: str | None = None,
    catalogue: Any = None,
    models: str = "dense",
) -> Loaded:
    """Aggregated-serving rows of an aiconfigurator silicon CSV of ``models`` "dense", "moe" or "all".

    Rows of unknown models, disaggregated serving, unknown systems, precisions the
    GPU lacks and unreadable measurements are skipped and counted by reason;
    ``backend``/``gpu`` filters are counted too. Which MoE rows are kept: ``_row_model``.
    """
    if models not in MODEL_KINDS:
        raise ConfigError("silicon.models", f"got {models!r}; allowed: {', '.join(MODEL_KINDS)}")
    cat = _catalogue(catalogue)
    header, rows = _read_csv(path, "silicon")
    need = ["backend", "model_path", "system", "precision", "mode", "isl", "osl", "batch_size", "tp_size",
            "silicon_ttft_ms", "silicon_tpot_ms"]  # fmt: skip
    missing = [c for c in need if c not in header]
    if missing:
        raise ConfigError(
            "silicon", f"{Path(path).name} lacks column(s) {', '.join(missing)}; expected {','.join(need)}"
        )
    out = Loaded(records=[], path=str(path))
    for lineno, r in rows:
        if backend is not None and r["backend"] != backend:
            out.skipped[f"other backend ({r['backend']})"] += 1
            continue
        g = SYSTEMS.get(r["system"])
        if g is None:
            out.skipped[f"system not in the catalogue ({r['system']})"] += 1
            continue
        if gpu is not None and g != gpu:
            out.skipped[f"other GPU ({g})"] += 1
            continue
        if r["mode"] != "agg":
            out.skipped[f"{r['mode'] or 'unknown'} mode (only agg is modelled)"] += 1
            continue
        if "dynamo" in r.get("silicon_data_source", "").lower():
            # Whole-node Dynamo deployments run 8/tp workers (concurrency 24/48/144 at tp 1/2/8,
            # TPOT flat across tp): the row's concurrency is spread over workers it does not count.
            out.skipped["Dynamo deployment (concurrency split over an unstated number of workers)"] += 1
            continue
        model, ep, dp, why = _row_model(r, models)
        if model is None:
            out.skipped[why] += 1
            continue
        prec = r["precision"] or "bf16"
        if prec not in cat.gpu(g).precisions:
            out.skipped[f"precision {prec} not modelled on {g}"] += 1
            continue
        row, why = _silicon_row(r, lineno, model, g, prec, ep, dp)
        if row is None:
            out.skipped[why] += 1
            continue
        out.records.append(row)
    return out


def _silicon_row(r: dict[str, str], lineno: int, model: str, gpu: str, precision: str, ep: int,
                 dp: int) -> tuple[SiliconRow | None, str]:
    """The row's ``SiliconRow``, or None and why it cannot be one (unreadable, non-positive, no TPOT)."""
    try:
        row = SiliconRow(
            id=r.get("id") or f"line{lineno}", backend=r["backend"], model=model, gpu=gpu, precision=precision,
            tp=int(r["tp_size"]), isl=int(r["isl"]), osl=int(r["osl"]), concurrency=int(r["batch_size"]),
            ttft_s=float(r["silicon_ttft_ms"]) / 1e3, tpot_s=float(r["silicon_tpot_ms"]) / 1e3,
            version=r.get("backend_version", ""), line=lineno, ep=ep, dp=dp,
        )  # fmt: skip
    except ValueError:
        return None, "unreadable numbers"
    if min(row.tp, row.isl, row.osl, row.concurrency) < 1 or not (row.ttft_s > 0 and row.tpot_s > 0):
        return None, "non-positive sizes or times"
    if row.osl < 2:
        return None, "osl < 2 (no TPOT)"
    return row, ""


def _row_model(r: dict[str, str], models: str) -> tuple[str | None, int, int, str]:
    """A silicon row's catalogue model, expert-parallel size and data-parallel attention ranks, or None and why
    it is skipped.

    MoE rows are skipped where the model's attention is not modelled (hybrid linear attention, DSA:
    ``UNMODELLED_MOE``), where the experts do not spread over exactly the replica's GPUs, and where the
    replica spans more than one NVLink domain (``NODE_GPUS``, ``NVLINK_DOMAIN``). Rows with expert
    parallelism (``moe_ep_size`` > 1) are kept with their ``ep`` (``PerfModel.ep``: the busiest GPU's
    share of the routed experts), and rows with data-parallel attention (``attention_dp_size`` > 1,
    ``moe_tp_size·moe_ep_size = tp·dp``) with their ``dp`` (``PerfModel.dp``).
    """
    path = r["model_path"]
    model = MODEL_PATHS.get(path) if models != "moe" else None
    moe = MOE_MODEL_PATHS.get(path) if models != "dense" else None
    if moe is None:
        if model is not None:
            return model, 1, 1, ""
        if models == "dense":
            return None, 1, 1, "MoE or unknown model"
        if path in UNMODELLED_MOE:
            return None, 1, 1, f"MoE model with {UNMODELLED_MOE[path]} (not modelled)"
        return None, 1, 1, "dense model" if path in MODEL_PATHS else "unknown model"
    try:
        dp = int(r.get("attention_dp_size") or 1) or 1
        ep = int(r.get("moe_ep_size") or 1) or 1
        moe_tp = int(r.get("moe_tp_size") or 1) or 1
        tp = int(r["tp_size"])
    except ValueError:
        return None, 1, 1, "unreadable numbers"
    if (ep > 1 or dp > 1) and moe_tp * ep != tp * dp:
        return None, 1, 1, "expert parallelism over other GPUs than the replica's (not modelled)"
    if tp * dp > NVLINK_DOMAIN.get(r["system"], NODE_GPUS):
        return None, 1, 1, f"replica beyond one NVLink domain ({NODE_GPUS}-GPU node; the inter-node network is not modelled)"
    return moe, ep, dp, ""


STEP_COLUMNS = ("prefill_tokens", "decode_seqs", "context_tokens", "step_ms")


def load_steps(
    path: str | Path,
    model: str,
    gpu: str,
    tp: int = 1,
    precision: str = "bf16",
) -> Loaded:
    """A plain step CSV: ``prefill_tokens,decode_seqs,context_tokens,step_ms`` for one replica.

    ``context_tokens`` is the total context of the decoding sequences (the KV they
    read). Prefill tokens count as fresh prompts that finish in the step. Every bad
    value is a ConfigError naming the column and the line.
    """
    header, rows = _read_csv(path, "steps")
    name = Path(path).name
    missing = [c for c in STEP_COLUMNS if c not in header]
    extra = [c for c in header if c not in STEP_COLUMNS]
    if missing or extra:
        what = f"missing column(s) {', '.join(missing)}" if missing else f"unknown column(s) {', '.join(extra)}"
        raise ConfigError(f"steps.{(missing or extra)[0]}", f"{name}: {what}; expected header {','.join(STEP_COLUMNS)}")
    if not rows:
        raise ConfigError("steps", f"{name} has a header but no rows")
    out = Loaded(records=[], path=str(path))
    for lineno, r in rows:
        vals: dict[str, float] = {}
        for col in STEP_COLUMNS:
            text = r[col]
            try:
                v = float(text)
            except ValueError:
                v = math.nan
            integer = col in ("prefill_tokens", "decode_seqs")
            ok = math.isfinite(v) and (v > 0 if col == "step_ms" else v >= 0) and (not integer or v == int(v))
            if not ok:
                allowed = {"step_ms": "a number > 0", "context_tokens": "a number >= 0"}.get(col, "an integer >= 0")
                raise ConfigError(f"steps.{col}", f"line {lineno} of {name}: expected {allowed}, got {text!r}")
            vals[col] = v
        if vals["prefill_tokens"] + vals["decode_seqs"] <= 0:
            raise ConfigError(
                "steps.decode_seqs", f"line {lineno} of {name}: a step needs prefill_tokens or decode_seqs > 0"
            )
        if vals["context_tokens"] < vals["decode_seqs"]:
            raise ConfigError(
                "steps.context_tokens",
                f"line {lineno} of {name}: total context {r['context_tokens']} is less than one token per "
                f"decoding sequence ({int(vals['decode_seqs'])})",
            )
        out.records.append(
            StepRow(
                model=model,
                gpu=gpu,
                tp=tp,
                precision=precision,
                prefill_tokens=int(vals["prefill_tokens"]),
                decode_seqs=int(vals["decode_seqs"]),
                context_tokens=vals["context_tokens"],
                step_s=vals["step_ms"] / 1e3,
                line=lineno,
            )
        )
    return out


def load_step_grid(path: str | Path, gpu: str | None = None, catalogue: Any = None) -> Loaded:
    """aiconfigurator's step grid (``system,model,tp,precision,kind,tokens_or_batch,context,ms``).

    ``prefill`` rows are one fresh prompt of ``tokens_or_batch`` tokens in one step;
    ``decode_step`` rows are ``tokens_or_batch`` sequences holding ``context`` tokens each.
    """
    cat = _catalogue(catalogue)
    header, rows = _read_csv(path, "step_grid")
    need = ["system", "model", "tp", "precision", "kind", "tokens_or_batch", "context", "ms"]
    missing = [c for c in need if c not in header]
    if missing:
        raise ConfigError("step_grid", f"{Path(path).name} lacks column(s) {', '.join(missing)}")
    out = Loaded(records=[], path=str(path))
    for lineno, r in rows:
        model = MODEL_PATHS.get(r["model"])
        g = SYSTEMS.get(r["system"])
        prec = r["precision"] or "bf16"
        if model is None:
            out.skipped["MoE or unknown model"] += 1
            continue
        if g is None:
            out.skipped[f"system not in the catalogue ({r['system']})"] += 1
            continue
        if gpu is not None and g != gpu:
            out.skipped[f"other GPU ({g})"] += 1
            continue
        if prec not in cat.gpu(g).precisions:
            out.skipped[f"precision {prec} not modelled on {g}"] += 1
            continue
        try:
            n, ctx, ms, tp = int(r["tokens_or_batch"]), float(r["context"]), float(r["ms"]), int(r["tp"])
        except ValueError:
            out.skipped["unreadable numbers"] += 1
            continue
        if r["kind"] == "prefill":
            rec = StepRow(model, g, tp, prec, n, 0, 0.0, ms / 1e3, lineno, "prefill")
        elif r["kind"] == "decode_step":
            rec = StepRow(model, g, tp, prec, 0, n, n * ctx, ms / 1e3, lineno, "decode")
        else:
            out.skipped[f"unknown kind {r['kind']!r}"] += 1
            continue
        out.records.append(rec)
    return out


# ---------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------


#: TensorRT-LLM's own offline maximum-throughput table, shipped with sojourn (its source in the file's header).
TRTLLM_OFFLINE = "trtllm_perf_overview.csv"
OFFLINE_ORIGIN = ("TensorRT-LLM 1.0 docs/source/performance/perf-overview.md (github.com/NVIDIA/TensorRT-LLM): "
                  "trtllm-bench throughput, PyTorch backend, NVIDIA's FP8/FP4 checkpoints")
#: The KV share trtllm-bench's published runs used: "In many cases, we also use a higher KV cache percentage by
#: setting --kv_cache_free_gpu_mem_fraction 0.95" (perf-overview.md; 0.90 is the default they fall back to).
OFFLINE_KV_FRACTION = 0.95
#: Bytes per weight and per KV element trtllm-bench's tuning heuristic assumes (bench/build/tuning.py BYTES_PER_ELEM).
_BENCH_BYTES = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5}


def trtllm_bench_settings(model: Any, gpu: Any, tp: int, precision: str, isl: int, osl: int,
                          kv_fraction: float = OFFLINE_KV_FRACTION) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) that ``trtllm-bench throughput`` picks for a dataset of fixed ``isl``/``osl``
    when none are given: the requests of isl + osl tokens its estimate of the KV cache holds (fp8 KV, every parameter
    at the weight precision), capped at 4096 and rounded up optimistically; max_num_tokens that batch times
    1 + isl/osl, capped at 32768, at least 2048 and rounded up (TensorRT-LLM tensorrt_llm/bench/build/tuning.py,
    calc_engine_setting and finetune_setting, v1.0; paraphrased, not copied)."""
    kv_gib_per_token = 2 * model.num_layers * max(tp, model.num_key_value_heads) * model.head_dim * 1.0 / 2**30
    engine_gib = model.num_parameters * _BENCH_BYTES[precision] / 2**30
    available = gpu.memory_gib * tp - engine_gib
    requests = available * kv_fraction / (kv_gib_per_token * (isl + osl))
    raw_bs = min(requests, 4096.0)
    raw_tokens = min(raw_bs * (1 + isl / osl), 32768.0)
    bs = _round_up(raw_bs, 64, ((256, 32), (1024, 128), (math.inf, 256)))
    tokens = _round_up(raw_tokens, 2048, ((4096, 256), (8192, 512), (math.inf, 1024)))
    return bs, tokens


def _round_up(x: float, floor: int, tiers: tuple[tuple[float, int], ...]) -> int:
    """``x`` rounded up to the step of the first tier whose bound exceeds it, and at least ``floor``."""
    step = next(s for bound, s in tiers if x < bound)
    return max(floor, step * math.ceil(x / step))


def load_throughput(path: str | Path | None = None, gpu: str | None = None, catalogue: Any = None) -> Loaded:
    """Offline throughput rows (``ThroughputRow``) of a CSV with columns model, gpu, tp, precision, isl, osl,
    requests, output_tokens_per_s; by default the shipped TensorRT-LLM table (``TRTLLM_OFFLINE``). The engine
    limits of each run are trtllm-bench's own choice (``trtllm_bench_settings``). ``gpu`` keeps that GPU's rows."""
    from importlib.resources import files

    cat = _catalogue(catalogue)
    where = "calibrate.throughput"
    src = Path(str(files("sojourn.perf") / "measurements" / TRTLLM_OFFLINE)) if path is None else Path(path)
    _, rows = _read_csv(src, where)
    out = Loaded(records=[], path=str(src))
    for lineno, r in rows:
        try:
            model, g = cat.model(r["model"]), cat.gpu(r["gpu"])
            tp, isl, osl = int(r["tp"]), int(r["isl"]), int(r["osl"])
            requests, tps = int(r["requests"]), float(r["output_tokens_per_s"])
        except KeyError as err:
            raise ConfigError(where, f"{src.name} lacks column {err}") from None
        except ValueError as err:
            raise ConfigError(where, f"line {lineno} of {src.name}: {err}") from None
        if gpu is not None and g.id != gpu:
            out.skipped["other GPU"] += 1
            continue
        bs, tokens = trtllm_bench_settings(model, g, tp, r["precision"], isl, osl)
        out.records.append(ThroughputRow(
            id=f"{model.id}/{g.id}/tp{tp}/{r['precision']}/{isl}x{osl}", backend="trtllm", model=model.id, gpu=g.id,
            precision=r["precision"], tp=tp, isl=isl, osl=osl, requests=requests, output_tokens_per_s=tps,
            max_num_seqs=bs, max_num_batched_tokens=tokens, kv_free_fraction=OFFLINE_KV_FRACTION, line=lineno,
        ))  # fmt: skip
    return out


def kv_free_utilization(pm: PerfModel, kv_free_fraction: float) -> float:
    """sojourn's ``gpu_memory_utilization`` (the share of a GPU that weights, activations and KV may take) that gives
    the KV cache TensorRT-LLM's ``kv_cache_free_gpu_mem_fraction`` gives it: that fraction of what the weights and
    activation buffers leave, u = (W + A + f·(M - W - A)) / M per GPU."""
    mem = pm.gpu.memory_bytes
    used = pm.weights_bytes_per_gpu + pm.activation_reserve_bytes_per_gpu
    return (used + kv_free_fraction * (mem - used)) / mem


def perf_model_for(
    rec: Record, profile: Profile, catalogue: Any = None, specs: dict[tuple[str, str], Any] | None = None
) -> PerfModel:
    """The PerfModel a record's engine ran: benchmark defaults (``BENCH_DEFAULTS``) for silicon rows.

    ``specs`` caches catalogue look-ups across calls (a model given as a config path is read once).
    """
    cat = _catalogue(catalogue)
    specs = {} if specs is None else specs
    if ("m", rec.model) not in specs:
        specs[("m", rec.model)] = cat.model(rec.model)
    if ("g", rec.gpu) not in specs:
        specs[("g", rec.gpu)] = cat.gpu(rec.gpu)
    kwargs: dict[str, Any] = {}
    if isinstance(rec, SiliconRow):
        kwargs = dict(
            gpu_memory_utilization=BENCH_DEFAULTS["gpu_memory_utilization"],
            max_num_batched_tokens=BENCH_DEFAULTS["max_num_batched_tokens"],
            max_num_seqs=max(BENCH_DEFAULTS["max_num_seqs"], rec.concurrency),
            kv_cache_dtype=BENCH_KV_CACHE.get((rec.backend, rec.gpu, rec.precision)),
        )
        if rec.ep > 1:
            kwargs["ep"] = rec.ep
        if rec.dp > 1:  # each rank's engine runs the benchmark defaults: the replica's limits are dp times them
            kwargs.update(dp=rec.dp, max_num_seqs=max(BENCH_DEFAULTS["max_num_seqs"] * rec.dp, rec.concurrency),
                          max_num_batched_tokens=BENCH_DEFAULTS["max_num_batched_tokens"] * rec.dp)
    elif isinstance(rec, ThroughputRow):
        kwargs = dict(max_num_batched_tokens=rec.max_num_batched_tokens, max_num_seqs=rec.max_num_seqs,
                      kv_cache_dtype="fp8")
        bare = PerfModel(model=specs[("m", rec.model)], gpu=specs[("g", rec.gpu)], tp=rec.tp, precision=rec.precision,
                         profile=profile, **kwargs)  # fmt: skip
        kwargs["gpu_memory_utilization"] = kv_free_utilization(bare, rec.kv_free_fraction)
    return PerfModel(
        model=specs[("m", rec.model)], gpu=specs[("g", rec.gpu)], tp=rec.tp, precision=rec.precision,
        profile=profile, **kwargs,
    )  # fmt: skip


@dataclass(frozen=True)
class Prediction:
    """A record with its prediction: TTFT/TPOT for silicon rows, step time for step rows."""

    record: Any
    tpot_s: float = math.nan
    ttft_s: float = math.nan
    step_s: float = math.nan
    output_tokens_per_s: float = math.nan
    preemptions: int = 0

    def errors(self) -> dict[str, float]:
        """Relative errors (pred/meas - 1) of what this record measured."""
        r = self.record
        if isinstance(r, SiliconRow):
            return {"tpot": self.tpot_s / r.tpot_s - 1.0, "ttft": self.ttft_s / r.ttft_s - 1.0}
        if isinstance(r, ThroughputRow):
            return {"throughput": self.output_tokens_per_s / r.output_tokens_per_s - 1.0}
        return {"step": self.step_s / r.step_s - 1.0}


def fits(rec: Record, catalogue: Any = None) -> str | None:
    """Why a record cannot be predicted (weights or one request do not fit), or None."""
    try:
        pm = perf_model_for(rec, PRIOR, catalogue)
    except ConfigError as err:
        return f"not a valid replica ({err.field})"
    try:
        pm.check_fits()
    except ConfigError as err:
        return f"does not fit ({err.field})"
    if isinstance(rec, (SiliconRow, ThroughputRow)):
        blocks = -(-(rec.isl + rec.osl) // pm.block_size)
        if blocks > pm.kv_capacity_blocks:
            return "one request does not fit in the KV cache"
    return None


# ---------------------------------------------------------------------------
# Errors by group
# ---------------------------------------------------------------------------


def group_key(rec: Record, by: Sequence[str]) -> tuple[Any, ...]:
    return tuple(getattr(rec, k) for k in by)


def group_mape(
    preds: Iterable[Prediction], by: Sequence[str] = ("model", "precision", "tp")
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Mean absolute percentage error of each measured quantity, per group of records."""
    acc: dict[tuple[Any, ...], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in preds:
        for k, e in p.errors().items():
            acc[group_key(p.record, by)][k].append(abs(e))
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, errs in sorted(acc.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        row: dict[str, Any] = {"rows": max(len(v) for v in errs.values())}
        for k, v in errs.items():
            row[f"mape_{k}"] = 100.0 * float(np.mean(v))
        out[key] = row
    return out


def overall_mape(preds: Sequence[Prediction]) -> dict[str, float]:
    """Mean absolute percentage error of each measured quantity over all records."""
    acc: dict[str, list[float]] = defaultdict(list)
    for p in preds:
        for k, e in p.errors().items():
            acc[k].append(abs(e))
    return {f"mape_{k}": round(100.0 * float(np.mean(v)), 2) for k, v in acc.items()}


def holdout_split(records: Sequence[SiliconRow]) -> tuple[list[SiliconRow], list[SiliconRow]]:
    """Deterministic split into (fit, held out): by the parity of the CRC-32 of the row id.

    A hash of the id (not the file order) keeps the split stable when the file is
    re-sorted or extended, and spreads every shape and concurrency over both halves.
    """
    fit: list[SiliconRow] = []
    held: list[SiliconRow] = []
    for r in records:
        (fit if zlib.crc32(r.id.encode()) % 2 == 0 else held).append(r)
    return fit, held


# ---------------------------------------------------------------------------
# Summary of a fitted profile
# ---------------------------------------------------------------------------


def summary_lines(profile: Profile, skipped: Counter[str] | None = None) -> list[str]:
    """Human-readable fit summary: parameters, errors overall and per group, rows used and skipped."""
    f = profile.fit
    moe = "-moe" if profile.models == "moe" else ""
    lines = [f"profile {profile.gpu}-{profile.backend}{moe}: {profile.source}"]
    units = {
        "eff_compute": (1, ""), "eff_compute_fp8": (1, ""), "eff_compute_fp4": (1, ""),
        "eff_memory": (1, ""), "eff_interconnect": (1, ""),
        "step_overhead_s": (1e3, " ms"), "seq_overhead_s": (1e6, " us"), "comm_latency_s": (1e6, " us"),
        "a2a_latency_s": (1e6, " us"),
        "gemm_half_tokens": (1, " tokens"),
    }  # fmt: skip
    for name, (mult, unit) in units.items():
        tag = "fitted" if name in f.get("fitted", ()) else "fixed"
        if getattr(profile, name) is None:
            continue  # a precision's own factor not set: it uses the next wider one's
        lines.append(f"  {name:18s} {getattr(profile, name) * mult:10.4g}{unit}  ({tag})")
    if profile.host_overlap:
        lines.append("  host_overlap             on  (a step takes max(host, GPU): the engine overlaps them)")
    overall = ", ".join(f"{k.removeprefix('mape_').upper()} {v:.1f}%" for k, v in f.get("overall", {}).items())
    lines.append(f"  rows used: {f.get('rows_used', 0)}; MAPE {overall}")
    for key, row in f.get("groups", {}).items():
        errs = ", ".join(f"{k.removeprefix('mape_').upper()} {v:.1f}%" for k, v in row.items() if k.startswith("mape"))
        lines.append(f"    {key:28s} {row['rows']:4d} rows  {errs}")
    if "warning" in f:
        lines.append(f"  warning: {f['warning']}")
    skip = Counter(f.get("skipped", {}))
    for k, v in (skipped or {}).items():
        if k not in skip and not k.startswith(("other backend", "other GPU")):
            skip[k] = v
    if skip:
        lines.append("  rows skipped: " + "; ".join(f"{n} {why}" for why, n in skip.most_common()))
    return lines
