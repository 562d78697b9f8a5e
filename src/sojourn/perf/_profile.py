"""Performance profiles: the fitted efficiency factors and overheads of one engine on one GPU.

A profile is what ``sojourn calibrate`` writes and what a scenario names in
``serving.profile``. The shipped defaults live in ``perf/profiles/*.json``, each
with the data it was fitted on. A GPU without measurements gets the factors of
the closest measured GPU, and the profile says so (``carried_from``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sojourn._errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "CARRY_OVER",
    "HOST_OVERLAP",
    "OVERLAP_SEQ_STARTS",
    "PRECISION_PARAM",
    "PRIOR",
    "Calibration",
    "Profile",
    "calibration",
    "calibration_of",
    "carried_origin",
    "default_profile",
    "engine_prior",
    "load_profile",
    "resolve_profile",
    "save_profile",
    "scenario_calibration",
    "shipped_profiles",
]


#: The profile field holding each precision's GEMM efficiency (``Profile.compute_efficiency``).
PRECISION_PARAM = {"bf16": "eff_compute", "fp8": "eff_compute_fp8", "fp4": "eff_compute_fp4"}


@dataclass(frozen=True)
class Profile:
    """Efficiency factors of the roofline step-time model (see ``PerfModel``)."""

    gpu: str
    backend: str = "vllm"
    #: Fraction of the dense peak FLOP/s that GEMMs and prefill attention reach (bf16; and the
    #: lower precisions where their own factor below is None).
    eff_compute: float = 0.6
    #: Fraction of the HBM bandwidth that weight and KV reads reach.
    eff_memory: float = 0.8
    #: Fixed time of one engine step (scheduler, launch and sync costs not hidden by CUDA graphs).
    step_overhead_s: float = 0.004
    #: Per-sequence cost in a step (sampling, input preparation), seconds.
    seq_overhead_s: float = 0.0
    #: Latency of one tensor-parallel all-reduce (two per layer per step).
    comm_latency_s: float = 1.0e-5
    #: Fraction of the interconnect bandwidth an all-reduce reaches.
    eff_interconnect: float = 0.7
    #: Latency of one all-to-all (a MoE layer's dispatch or combine under data-parallel attention, two per MoE
    #: layer per step); None: ``comm_latency_s``. Fitted where a profile's rows hold data-parallel attention.
    a2a_latency_s: float | None = None
    #: Per-request time outside the engine's steps that a benchmark client sees in TTFT and
    #: end-to-end latency (API server: tokenisation, HTTP, detokenisation). Fitted on TTFT,
    #: it also absorbs the extra queueing of clients more synchronised than ours (so it
    #: reads 0.1-0.3 s on the public rows, and sits at its bound for SGLang, whose
    #: admission we do not model). It does not occupy the engine, and at batch SLAs of
    #: hours it is negligible, so the fleet simulator leaves it out; ``closed_loop`` adds
    #: it to what the client measures.
    request_overhead_s: float = 0.0
    #: Fraction of the fp8 (fp4) dense peak that an fp8 (fp4) model's GEMMs reach; None: as the
    #: next wider precision (fp4 -> fp8 -> ``eff_compute``). Low-precision GEMMs reach a smaller
    #: share of their doubled peak: fitted per precision on the public rows, H100's fp8 GEMMs run at
    #: 1.0-1.6x bf16's rate (not 2x) and B200's fp4 at 1.3-1.5x fp8's (benchmarks/RESULTS.md,
    #: perf_accuracy, "Compute efficiency by precision").
    eff_compute_fp8: float | None = None
    eff_compute_fp4: float | None = None
    #: The engine prepares step n+1 on the CPU while the GPU runs step n, so a step takes
    #: max(host, GPU) rather than host + GPU, host being ``step_overhead_s`` + ``seq_overhead_s``
    #: per sampled sequence (``PerfModel.step_time``). On for TensorRT-LLM (``HOST_OVERLAP``).
    host_overlap: bool = False
    #: Tokens T_half at which a step's layer GEMMs reach half the compute factor: the factor at T
    #: tokens is e·T/(T + T_half), so the GEMMs cost as if the step had T + T_half tokens (tile and
    #: wave quantisation, pipeline fill: small-M GEMMs run far below peak). 0: one factor at every T.
    #: Fitted for TensorRT-LLM (``ENGINE_FIT_EXTRA``), whose rows span decode steps of a few
    #: hundred tokens and prefill steps of thousands.
    gemm_half_tokens: float = 0.0
    #: The models the factors are fitted on: "dense", or "moe" for a profile fitted on mixture-of-experts
    #: rows, which a MoE model runs with (``default_profile(moe=True)``): their factors absorb what the
    #: model has no term for (the routed experts' small GEMMs, routing and dispatch), and dense factors
    #: predict MoE rows about twice as far off (benchmarks/RESULTS.md, perf_accuracy, MoE section).
    models: str = "dense"
    source: str = "uncalibrated prior"
    carried_from: str | None = None
    fit: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("eff_compute", "eff_memory", "eff_interconnect", "eff_compute_fp8", "eff_compute_fp4"):
            v = getattr(self, name)
            if v is None and name.startswith("eff_compute_"):
                continue
            if not 0 < v <= 1:
                raise ConfigError(f"profile.{name}", f"must be in (0, 1], got {v!r}")
        for name in ("step_overhead_s", "seq_overhead_s", "comm_latency_s", "request_overhead_s", "gemm_half_tokens"):
            v = getattr(self, name)
            if not v >= 0:
                raise ConfigError(f"profile.{name}", f"must be >= 0, got {v!r}")
        if self.a2a_latency_s is not None and not self.a2a_latency_s >= 0:
            raise ConfigError("profile.a2a_latency_s", f"must be >= 0, got {self.a2a_latency_s!r}")
        if self.models not in ("dense", "moe"):
            raise ConfigError("profile.models", f"got {self.models!r}; allowed: dense, moe")

    def compute_efficiency(self, precision: str) -> float:
        """The share of ``precision``'s dense peak that GEMMs reach: its own factor, else the next
        wider precision's (fp4 -> fp8 -> bf16's ``eff_compute``)."""
        if precision == "fp4" and self.eff_compute_fp4 is not None:
            return self.eff_compute_fp4
        if precision in ("fp4", "fp8") and self.eff_compute_fp8 is not None:
            return self.eff_compute_fp8
        return self.eff_compute

    @property
    def calibrated(self) -> bool:
        """Fitted on measurements of its own GPU and engine (``calibration_of`` on ``self.gpu``)."""
        return calibration_of(self, self.gpu).calibrated

    @property
    def calibration(self) -> str:
        """Where the factors come from, in a few words (``calibration_of`` on ``self.gpu``)."""
        return calibration_of(self, self.gpu).source

    def carried_to(self, gpu: str, reason: str) -> Profile:
        return replace(self, gpu=gpu, carried_from=self.gpu, source=f"{self.source}; carried over: {reason}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as saved; ``host_overlap`` and ``gemm_half_tokens`` only when set, so that
        profiles written before they existed (and the fingerprints of scenarios naming them) read
        the same."""
        d = asdict(self)
        if not self.host_overlap:
            del d["host_overlap"]
        if not self.gemm_half_tokens:
            del d["gemm_half_tokens"]
        if self.models == "dense":
            del d["models"]
        if self.a2a_latency_s is None:
            del d["a2a_latency_s"]
        return d


#: The prior used where nothing is measured for an engine at all: typical published
#: efficiencies (GEMM ~60% of dense peak, HBM ~80% of nominal bandwidth), stated as a prior.
PRIOR = Profile(gpu="*", source="uncalibrated prior: 60% of dense peak FLOP/s, 80% of HBM bandwidth")

#: Engines whose default scheduler overlaps the host's work on step n+1 with the GPU's on step n
#: (``Profile.host_overlap``); a fit for one of them starts from, and keeps, ``host_overlap=True``.
#: TensorRT-LLM: the PyTorch backend's overlap scheduler, on unless ``disable_overlap_scheduler``
#: is set (default False: TensorRT-LLM docs, "Overlap Scheduler", torch/features/overlap_scheduler.md;
#: NVIDIA's MLPerf harness passes ``disable_overlap_scheduler: False``), the backend that
#: ``trtllm-serve`` runs from 1.0 on (the public TRT-LLM rows: 1.0.0rc3 to 1.3.0rc5). vLLM's async
#: scheduling does the same (opt-in ``--async-scheduling`` from vllm-project/vllm#19970, made the default
#: by #27614 in late 2025; the first release with it on was not checked). The public vLLM rows span
#: 0.11.2-0.19.0, so some ran with it and some without; their fit is within 3-6% TPOT without it
#: (perf_accuracy): left off for vLLM until a per-version switch is worth its fit.
HOST_OVERLAP: dict[str, bool] = {"trtllm": True}


#: Per-sequence host overheads a fit of an overlapping engine starts from, one fit each, the lowest
#: cost kept (``sim.calibrate.fit_profile``): where the GPU hides the host in every row the fit sees
#: no slope, so the start decides which side of max(host, GPU) it settles on. On the MoE rows of
#: TensorRT-LLM H100 (perf_accuracy's split) the held-out TPOT MAPE was 5.6% from 20 us and 9.7%
#: from 50 us.
OVERLAP_SEQ_STARTS = (2e-5, 5e-5)


def engine_prior(backend: str) -> Profile:
    """Where a fit for ``backend`` starts: ``PRIOR``, with the engine's ``HOST_OVERLAP``. An engine
    that overlaps starts from 50 us per sequence (at 0, where the GPU hides the host in every row,
    the fit would see no slope to follow) and also fits ``gemm_half_tokens``
    (``perf._calibrate.ENGINE_FIT_EXTRA``), from 256 tokens (not from its bound, 0)."""
    if not HOST_OVERLAP.get(backend, False):
        return replace(PRIOR, backend=backend)
    return replace(PRIOR, backend=backend, host_overlap=True, seq_overhead_s=5e-5, gemm_half_tokens=256.0)


#: Which measured GPU a GPU without measurements borrows its factors from, and why.
CARRY_OVER: dict[str, tuple[str, str]] = {
    "h200": ("h100-sxm", "same Hopper GH100 die as H100 SXM, larger and faster HBM3e"),
    "h100-pcie": ("h100-sxm", "same Hopper architecture, lower clocks and power (in the catalogue peaks)"),
    "a100-40gb": ("a100-80gb", "same Ampere GA100 die, HBM2 instead of HBM2e"),
    "a100-80gb": ("h100-sxm", "no A100 measurements: Hopper factors applied to A100 peaks"),
    "l4": ("l40s", "same Ada architecture, PCIe card"),
    "l40s": ("a100-80gb", "no L40S measurements: factors of the nearest measured data-centre GPU"),
    "mi300x": ("h100-sxm", "no AMD measurements in the public data: H100 factors applied to MI300X peaks"),
    "b200": ("h100-sxm", "no B200 measurements for this engine: Hopper factors applied to Blackwell peaks"),
    "b300": ("b200", "same Blackwell architecture (Blackwell Ultra), equal BF16/FP8 peaks and bandwidth; its public "
                     "rows are MoE-model rows only, whose fitted factors do not transfer to dense models (on them "
                     "B200's vLLM factors predict TPOT within 11%: benchmarks/RESULTS.md, perf_accuracy)"),
    "gb200": ("b200", "the same B200 GPU in a Grace-Blackwell superchip at 1200 W (in the catalogue peaks)"),
    "gb300": ("b300", "the same Blackwell Ultra GPU in a Grace-Blackwell superchip; its public rows are "
                      "disaggregated serving only (not modelled)"),
    "mi325x": ("mi300x", "same CDNA 3 compute as MI300X with HBM3e; no AMD measurements in the public data"),
    "mi355x": ("mi300x", "CDNA 4 successor of MI300X; no AMD measurements in the public data"),
}


def _profiles_dir() -> Traversable:
    return resources.files("sojourn.perf").joinpath("profiles")


@cache
def _shipped() -> dict[tuple[str, str, str], Profile]:
    out: dict[tuple[str, str, str], Profile] = {}
    d = _profiles_dir()
    if not d.is_dir():
        return out
    for entry in sorted(d.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            prof = _from_dict(json.loads(entry.read_text()), where=f"profile {entry.name}")
            out[(prof.gpu, prof.backend, prof.models)] = prof
    return out


def shipped_profiles(models: str = "dense") -> dict[tuple[str, str], Profile]:
    """The default profiles shipped in the package fitted on ``models`` ("dense" or "moe") rows, keyed by
    (gpu, backend)."""
    return {(g, b): p for (g, b, m), p in _shipped().items() if m == models}


def _own_or_carried(gpu: str, backend: str, table: dict[tuple[str, str], Profile]) -> Profile | None:
    """``table``'s profile of (gpu, backend), else of the first GPU along its ``CARRY_OVER`` chain that has one
    (marked carried, with the chain's reasons), else None."""
    if (gpu, backend) in table:
        return table[(gpu, backend)]
    seen, reasons, cur = {gpu}, [], gpu
    while cur in CARRY_OVER:
        nxt, why = CARRY_OVER[cur]
        if nxt in seen:
            break
        reasons.append(f"{cur} <- {nxt} ({why})")
        if (nxt, backend) in table:
            return table[(nxt, backend)].carried_to(gpu, "; ".join(reasons))
        seen.add(nxt)
        cur = nxt
    return None


def default_profile(gpu: str, backend: str = "vllm", moe: bool = False) -> Profile:
    """The shipped profile for (gpu, backend), or an honest carry-over from the closest measured GPU.

    ``moe``: for a mixture-of-experts model, the MoE-fitted profile of the GPU (or of the GPU it is
    carried over from) where one ships; else the dense one, marked so (``calibration_of``)."""
    if moe:
        found = _own_or_carried(gpu, backend, shipped_profiles("moe"))
        if found is not None:
            return found
        dense = default_profile(gpu, backend)
        return replace(dense, fit={**dense.fit, "models_carried_from": "dense"})
    found = _own_or_carried(gpu, backend, shipped_profiles())
    if found is not None:
        return found
    if backend != "vllm":
        base = default_profile(gpu, "vllm")
        # The fit record says so, for ``calibration_of``: these are another engine's factors.
        return replace(base, backend=backend, source=f"{base.source}; vllm factors used for {backend}",
                       fit={**base.fit, "engine_carried_from": "vllm"})
    return replace(PRIOR, gpu=gpu, backend=backend)


def resolve_profile(gpu: str, backend: str = "vllm", profile: str | Profile | None = None,
                    base_dir: str | Path = ".", moe: bool = False) -> Profile:
    """The profile a replica of ``gpu`` runs with: the one given or named, else the shipped default
    (``moe``: for a mixture-of-experts model)."""
    if isinstance(profile, Profile):
        return profile
    if profile:
        return load_profile(profile, base_dir)
    return default_profile(gpu, backend, moe)


@dataclass(frozen=True)
class Calibration:
    """Whether a GPU's step-time factors were fitted on its own measurements, and where they come from."""

    calibrated: bool
    #: A few words for a front row: what the factors were fitted on, or, starting "carried over
    #: from", which GPU (or engine) they come from.
    source: str

    @property
    def carried_from(self) -> str | None:
        """The GPU (or "GPU engine") the factors are carried over from, read from ``source``; None otherwise."""
        return carried_origin(self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"calibrated": self.calibrated, "source": self.source}


_CARRIED = "carried over from "


def carried_origin(source: Any) -> str | None:
    """The GPU (or "GPU engine") a ``Calibration.source`` says the factors are carried over from, else None.

    Works on the text alone, so that a front row read back from a CSV (its ``calibration`` column)
    names the GPU too: ``"carried over from h100-sxm (vllm, fitted on ...)"`` -> ``"h100-sxm"``.
    """
    if not isinstance(source, str) or not source.startswith(_CARRIED):
        return None
    return source[len(_CARRIED):].split(" (", 1)[0].strip() or None


def calibration_of(profile: Profile, gpu: str, backend: str | None = None,
                   precision: str | None = None) -> Calibration:
    """Whether ``profile``'s factors were fitted on measurements of ``gpu`` itself, with its engine.

    Not calibrated: factors carried over from another GPU (``carried_from``, or a profile
    of another GPU named in ``serving.profile``) or from another engine than ``backend``
    (default: the profile's own), a profile with no fit behind it (the uncalibrated
    prior, a hand-written file), and, given a ``precision``, a fit whose rows held none of
    that precision (its GEMM efficiency is then another precision's, or the prior's).
    """
    backend = backend or profile.backend
    fit = profile.fit if isinstance(profile.fit, dict) else {}
    rows = int(fit.get("rows_used") or 0)
    origin = profile.carried_from or profile.gpu
    if not rows:
        what = profile.source.split(":")[0]
        return Calibration(False, f"{what}: no fit to measurements of {gpu} ({backend})")
    silicon = int(fit.get("silicon_rows") or 0)
    offline = int(fit.get("throughput_rows") or 0)  # offline throughput runs: end-to-end too
    kind = "end-to-end measurements" if silicon or offline else "step times"
    if origin.lower() != gpu.strip().lower():
        return Calibration(False, f"carried over from {origin} ({profile.backend}, fitted on {rows} {kind}): "
                                  f"no {gpu} measurements")
    if fit.get("models_carried_from"):
        return Calibration(False, f"dense-model factors (fitted on {rows} {gpu} {kind}, {backend}) used for a "
                                  "mixture-of-experts model: no MoE measurements")
    engine = fit.get("engine_carried_from") or (profile.backend if profile.backend != backend else None)
    if engine:
        return Calibration(False, f"carried over from {gpu} {engine} (fitted on {rows} {kind}): "
                                  f"no {gpu} {backend} measurements")
    unmeasured = _unmeasured_precision(fit, precision)
    if unmeasured:
        return Calibration(False, f"fitted on {rows} {gpu} {kind} ({backend}), {unmeasured}")
    notes = [backend]
    if offline and not silicon:
        notes.append("offline throughput runs only")
    elif not silicon:
        notes.append("no end-to-end check")
    if fit.get("host_overheads_added"):
        notes.append("engine overheads from another GPU")
    return Calibration(True, f"fitted on {rows} {gpu} {kind} ({'; '.join(notes)})")


def _unmeasured_precision(fit: dict[str, Any], precision: str | None) -> str:
    """Why a fit says nothing of ``precision``'s GEMMs (its rows held other precisions), or ''."""
    fitted = fit.get("fitted")
    if precision is None or not fitted or PRECISION_PARAM.get(precision) in fitted:
        return ""
    measured = [p for p, name in PRECISION_PARAM.items() if name in fitted]
    if not measured:
        return ""
    carried = fit.get("carried_parameters") or {}
    if PRECISION_PARAM.get(precision) in carried.get("parameters", ()):
        return (f"on {'/'.join(measured)} models only: {precision} GEMMs use {carried.get('from')}'s fitted "
                "efficiency")
    wider = {"fp4": ["fp8", "bf16"], "fp8": ["bf16"]}.get(precision, [])
    used = next((p for p in wider if p in measured), None)
    whose = f"{used}'s" if used else "the uncalibrated prior's"
    return f"on {'/'.join(measured)} models only: {precision} GEMMs use {whose} efficiency"


def calibration(gpu: str, backend: str = "vllm", profile: str | Profile | None = None,
                base_dir: str | Path = ".", precision: str | None = None, moe: bool = False) -> Calibration:
    """``calibration_of`` the profile that ``build_perf_model`` gives a replica of ``gpu`` (a catalogue id)
    of a dense model, or with ``moe`` of a mixture-of-experts one."""
    return calibration_of(resolve_profile(gpu, backend, profile, base_dir, moe), gpu, backend, precision)


def scenario_calibration(scenario: Any) -> Calibration:
    """The ``calibration`` of a scenario's replicas; a generic server's service time is the user's own.

    A mixed fleet (``fleet.pools``) is calibrated when every pool's GPU is; otherwise its mark is its
    least certain pool's (not fitted before carried over), so a front row reads "carried" or "no" as
    that pool does, followed by every pool's own source."""
    if getattr(scenario.fleet, "pools", None):
        marks = [scenario_calibration(sc) for _, sc in scenario.pool_scenarios()]
        pools = "; ".join(f"pool {i}: {m.source}" for i, m in enumerate(marks))
        if all(m.calibrated for m in marks):
            return Calibration(True, pools)
        worst = min((m for m in marks if not m.calibrated), key=lambda m: m.carried_from is not None)
        return Calibration(False, f"{worst.source} [{pools}]")
    if scenario.fleet.server is not None:
        return Calibration(True, "generic server: the service time the scenario gives")
    sv = scenario.serving
    return calibration(scenario.gpu_spec().id, sv.backend, sv.profile, scenario.base_dir, scenario.model.precision,
                       scenario.model_spec().is_moe)


def _from_dict(data: dict[str, Any], where: str) -> Profile:
    allowed = set(Profile.__dataclass_fields__)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(where, f"unknown keys {unknown}; allowed: {sorted(allowed)}")
    if "gpu" not in data:
        raise ConfigError(f"{where}.gpu", "required")
    try:
        return Profile(**data)
    except TypeError as err:
        raise ConfigError(where, str(err)) from None


def load_profile(name_or_path: str, base_dir: str | Path = ".") -> Profile:
    """A profile by shipped name (``h100-sxm-vllm``) or by path to a JSON file."""
    for (gpu, backend, models), prof in _shipped().items():
        if name_or_path == f"{gpu}-{backend}" + ("-moe" if models == "moe" else ""):
            return prof
    p = Path(name_or_path).expanduser()
    if not p.is_absolute():
        p = Path(base_dir) / p
    if not p.exists():
        names = ", ".join(f"{g}-{b}" + ("-moe" if m == "moe" else "") for g, b, m in _shipped())
        raise ConfigError("serving.profile", f"no profile {name_or_path!r}: not a file; shipped: {names or 'none'}")
    from sojourn._io import read_text

    try:
        data = json.loads(read_text(p, "serving.profile"))  # a folder, not UTF-8: one clear error
    except json.JSONDecodeError as err:
        raise ConfigError("serving.profile", f"{p} is not valid JSON: {err}") from None
    return _from_dict(data, where="serving.profile")


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, then rename (``sojourn._io``)."""
    from sojourn._io import write_atomic

    return write_atomic(path, json.dumps(profile.to_dict(), indent=2, sort_keys=True) + "\n")
