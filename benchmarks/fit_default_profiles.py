"""Regenerate the shipped performance profiles (src/sojourn/perf/profiles/*.json).

    .venv/bin/python benchmarks/fit_default_profiles.py [--only h100-sxm-vllm,...] [--dry-run]

Silicon profiles are fitted to the dense-model, aggregated-serving rows of
../shared/data/silicon_sample_public.csv (aiconfigurator-core 0.12.0,
aiconfigurator_core/systems/silicon_sample.csv, Apache-2.0), all rows of the
engine on that GPU. TensorRT-LLM's are fitted with its own offline throughput
figures on the GPU too (src/sojourn/perf/measurements/trtllm_perf_overview.csv),
and its H200 profile on those figures alone, from H100's. A100 and L40S have no such rows: their profiles are fitted to
../shared/data/step_time_grid_public.csv, aiconfigurator's kernel-based step-time
estimates (not end-to-end measurements). Kernel sums leave out the engine's host
overheads (scheduling, input preparation, sampling), so the per-step and
per-sequence overheads are raised by what H100 shows between its silicon fit and
its grid fit. Checked on B200, which has both (benchmarks/perf_accuracy.py prints
the check): the grid fit alone predicts the vLLM silicon TPOT 21% too fast on
average; with the H100 overheads the mean absolute error falls to ~17% and the
bias to +8%. Treat the A100 and L40S profiles as estimates of that quality.

B300, GB200 and GB300 have rows in the file but none a dense profile can be fitted
on (B300: MoE models only; GB200: Dynamo deployments and disaggregated serving;
GB300: disaggregated serving only), and MI325X/MI355X have none: no profile ships
for them, and ``perf._profile.CARRY_OVER`` says which measured GPU each borrows its
factors from. benchmarks/perf_accuracy.py checks the B300 carry-over on B300's MoE rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from sojourn.perf import engine_prior, save_profile
from sojourn.perf._calibrate import (
    DEFAULT_FIT,
    GRID_ORIGIN,
    OFFLINE_ORIGIN,
    SILICON_ORIGIN,
    load_silicon,
    load_step_grid,
    load_throughput,
    summary_lines,
)
from sojourn.sim.calibrate import fit_profile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SILICON = DATA / "silicon_sample_public.csv"
GRID = DATA / "step_time_grid_public.csv"
PROFILES = ROOT / "src" / "sojourn" / "perf" / "profiles"

#: (backend, gpu) fitted to silicon rows: every engine/GPU pair with dense agg rows.
SILICON_FITS = [
    ("vllm", "h100-sxm"), ("vllm", "b200"), ("sglang", "h100-sxm"), ("trtllm", "h100-sxm"), ("trtllm", "b200"),
]  # fmt: skip
#: GPUs fitted to the step grid (vLLM, bf16), with the host overheads carried from H100.
GRID_FITS = ["a100-80gb", "l40s"]
#: The grid has prefill steps of up to 16k tokens at tp 2 and 4, so it pins the interconnect too.
GRID_PARAMS = (*DEFAULT_FIT, "eff_interconnect")
TTFT_WEIGHT = 0.1


def fit_silicon(backend: str, gpu: str):
    loaded = load_silicon(SILICON, backend=backend, gpu=gpu)
    src = (
        f"fitted to {len(loaded.records)} dense-model {backend} rows on {gpu} of silicon_sample_public.csv "
        f"({SILICON_ORIGIN}): closed-loop TPOT and TTFT, end-to-end measurements"
    )
    records = list(loaded.records)
    if backend == "trtllm":  # the engine's own offline throughput figures on this GPU, fitted with them
        offline = load_throughput(gpu=gpu).records
        records += offline
        src += f"; and {len(offline)} offline throughput figures ({OFFLINE_ORIGIN})"
    prof = fit_profile(records, gpu, backend, ttft_weight=TTFT_WEIGHT, source=src, skipped_on_load=dict(loaded.skipped))
    return prof, loaded


#: (backend, gpu) with a mixture-of-experts profile fitted on the file's MoE rows (``load_silicon(models="moe")``),
#: which MoE models run with (``Profile.models``): every pair with enough rows the model can run.
#: SGLang's 10 B300 rows are left out: fitted alone they gave TPOT 22% and a memory factor of 0.32 (B300 borrows
#: B200's MoE profile instead).
MOE_FITS = [("vllm", "b200"), ("vllm", "b300"), ("vllm", "h100-sxm"), ("sglang", "b200"), ("trtllm", "b200"),
            ("trtllm", "h100-sxm")]  # fmt: skip


def fit_moe(backend: str, gpu: str):
    loaded = load_silicon(SILICON, backend=backend, gpu=gpu, models="moe")
    src = (
        f"fitted to the mixture-of-experts {backend} rows on {gpu} of silicon_sample_public.csv ({SILICON_ORIGIN}): "
        "closed-loop TPOT and TTFT, end-to-end measurements"
    )
    base = replace(engine_prior(backend), models="moe")
    prof = fit_profile(loaded.records, gpu, backend, ttft_weight=TTFT_WEIGHT, start=base, source=src,
                       skipped_on_load=dict(loaded.skipped))  # fmt: skip
    return replace(prof, models="moe")


#: GPUs whose TensorRT-LLM profile is fitted on offline throughput figures alone (no closed-loop rows): the GEMM,
#: memory and GEMM-fill factors; the host and communication parameters are the measured GPU's they start from.
OFFLINE_FITS = {"h200": "h100-sxm"}
OFFLINE_PARAMS = ("eff_compute_fp8", "eff_memory", "gemm_half_tokens")


def fit_offline(gpu: str, start):
    offline = load_throughput(gpu=gpu).records
    src = (
        f"fitted to {len(offline)} offline throughput figures on {gpu} ({OFFLINE_ORIGIN}): the fp8 GEMM, memory and "
        f"GEMM-fill factors; the host and communication parameters from {start.gpu}'s fit ({start.source})"
    )
    prof = fit_profile(offline, gpu, "trtllm", params=OFFLINE_PARAMS, start=start, source=src)
    # What the profile takes from the measured GPU's fit, for ``calibration_of`` (e.g. its bf16 GEMM factor).
    taken = [n for n in start.fit.get("fitted", ()) if n not in OFFLINE_PARAMS]
    return replace(prof, fit={**prof.fit, "carried_parameters": {"from": start.gpu, "parameters": taken}})


def fit_grid(gpu: str):
    loaded = load_step_grid(GRID, gpu=gpu)
    src = (
        f"fitted to {len(loaded.records)} step times on {gpu} of step_time_grid_public.csv ({GRID_ORIGIN}); "
        "vLLM, bf16, Llama-3.1-8B tp1, Qwen3-32B tp2, Llama-3.1-70B tp4"
    )
    prof = fit_profile(
        loaded.records, gpu, "vllm", params=GRID_PARAMS, source=src, skipped_on_load=dict(loaded.skipped)
    )
    return prof, loaded


def host_overheads(silicon_h100, grid_h100) -> dict[str, float]:
    """Engine overheads that kernel sums omit: H100's silicon fit minus its grid fit (never negative)."""
    return {
        k: max(0.0, getattr(silicon_h100, k) - getattr(grid_h100, k)) for k in ("step_overhead_s", "seq_overhead_s")
    }


def with_host_overheads(grid_prof, extra: dict[str, float]):
    vals = {k: getattr(grid_prof, k) + v for k, v in extra.items()}
    fit = dict(grid_prof.fit)
    fit["parameters"] = {**fit["parameters"], **vals}
    fit["host_overheads_added"] = extra
    fit["grid_fit_overheads"] = {k: getattr(grid_prof, k) for k in extra}
    fit["note"] = (
        "'overall'/'groups' are the errors against the grid before the host overheads were added; "
        "no end-to-end measurement of this GPU was available to check the result"
    )
    src = (
        f"{grid_prof.source}; engine host overheads the kernel sums omit added from h100-sxm (its vLLM silicon "
        f"fit minus its grid fit): +{extra['step_overhead_s'] * 1e3:.2f} ms per step, "
        f"+{extra['seq_overhead_s'] * 1e6:.1f} us per sequence"
    )
    return replace(grid_prof, source=src, fit=fit, **vals)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated profile names (e.g. h100-sxm-vllm,l40s-vllm)")
    ap.add_argument("--dry-run", action="store_true", help="fit and print, write nothing")
    args = ap.parse_args(argv)
    if not SILICON.is_file() or not GRID.is_file():
        print(f"reference data not found under {DATA}", file=sys.stderr)
        return 2
    only = set(args.only.split(",")) if args.only else None
    want = lambda name: only is None or name in only  # noqa: E731
    written = []

    def emit(prof):
        name = f"{prof.gpu}-{prof.backend}" + ("-moe" if prof.models == "moe" else "")
        print("\n".join(summary_lines(prof)), flush=True)
        if not args.dry_run:
            written.append(save_profile(prof, PROFILES / f"{name}.json"))

    t0 = time.perf_counter()
    silicon: dict[tuple[str, str], object] = {}
    need_h100 = any(want(f"{g}-vllm") for g in GRID_FITS)
    for backend, gpu in SILICON_FITS:
        name = f"{gpu}-{backend}"
        if want(name) or (name == "h100-sxm-vllm" and need_h100):
            prof, _ = fit_silicon(backend, gpu)
            silicon[(backend, gpu)] = prof
            if want(name):
                emit(prof)
            print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    for backend, gpu in MOE_FITS:
        if want(f"{gpu}-{backend}-moe"):
            emit(fit_moe(backend, gpu))
            print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    for gpu, measured in OFFLINE_FITS.items():
        if want(f"{gpu}-trtllm"):
            start = silicon.get(("trtllm", measured))
            if start is None:  # the measured GPU's shipped profile, as last written
                from sojourn.perf import default_profile

                start = default_profile(measured, "trtllm")
            emit(fit_offline(gpu, start))
            print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if need_h100:
        grid_h100, _ = fit_grid("h100-sxm")
        extra = host_overheads(silicon[("vllm", "h100-sxm")], grid_h100)
        for gpu in GRID_FITS:
            if want(f"{gpu}-vllm"):
                grid_prof, _ = fit_grid(gpu)
                emit(with_host_overheads(grid_prof, extra))
    for p in written:
        print(f"wrote {p.relative_to(ROOT)}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
