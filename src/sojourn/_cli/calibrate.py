"""``sojourn calibrate``: fit a performance profile to engine measurements and write it.

Three inputs: closed-loop benchmark rows (``--silicon``, aiconfigurator's
silicon_sample format), a plain step CSV of one replica (``--steps``:
``prefill_tokens,decode_seqs,context_tokens,step_ms``) or aiconfigurator's step
grid (``--step-grid``). The profile file it writes is what a scenario names in
``serving.profile`` and ``sojourn perf --profile`` reads.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from sojourn._cli._common import check_field, check_out
from sojourn._errors import ConfigError

__all__ = ["add_parser", "run"]

#: Public files whose origin the profile's ``source`` can name.
_KNOWN_ORIGINS = {
    "silicon_sample_public.csv": "silicon",
    "silicon_sample.csv": "silicon",
    "step_time_grid_public.csv": "grid",
}


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="fit a performance profile (efficiency factors, overheads) to measurements",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--silicon", metavar="PATH", help="closed-loop benchmark CSV (aiconfigurator silicon_sample)")
    src.add_argument("--steps", metavar="PATH", help="step CSV: prefill_tokens,decode_seqs,context_tokens,step_ms")
    src.add_argument("--step-grid", metavar="PATH", help="aiconfigurator step grid CSV (kernel-based estimates)")
    p.add_argument("--backend", default="vllm", help="engine the measurements come from (default vllm)")
    p.add_argument("--gpu", help="catalogue GPU id; required with --steps and when the file holds several GPUs")
    p.add_argument("--model", help="model of the --steps measurements (catalogue id or HF config.json path)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size of the --steps measurements")
    p.add_argument("--precision", default="bf16", help="precision of the --steps measurements: bf16 | fp8 | fp4")
    p.add_argument("--ttft-weight", type=float, default=0.1,
                   help="weight of TTFT residuals against TPOT for --silicon (default 0.1)")  # fmt: skip
    p.add_argument("--fit-interconnect", action="store_true",
                   help="also fit eff_interconnect (worth it when many rows have tp > 1)")  # fmt: skip
    p.add_argument("--out", required=True, metavar="PATH", help="profile JSON to write (atomically)")
    p.add_argument("--json", action="store_true", help="print the profile as JSON instead of the summary")
    return p


def _source(kind: str, path: Path, n: int, backend: str) -> str:
    from sojourn.perf._calibrate import GRID_ORIGIN, SILICON_ORIGIN

    text = f"fitted by sojourn calibrate to {n} {backend} {kind} rows of {path.name}"
    origin = _KNOWN_ORIGINS.get(path.name)
    if origin == "silicon":
        text += f" ({SILICON_ORIGIN})"
    elif origin == "grid":
        text += f" ({GRID_ORIGIN})"
    return text


def _only_gpu(records: list[Any], gpu: str | None, where: str) -> str:
    gpus = sorted({r.gpu for r in records})
    if gpu is not None:
        return gpu
    if len(gpus) > 1:
        raise ConfigError("--gpu", f"{where} holds rows for {', '.join(gpus)}; choose one (one profile per GPU)")
    return gpus[0]


#: The field a loader names for its file as a whole, and the option that gave the file.
_FILE_OPTIONS = {"silicon": "--silicon", "steps": "--steps", "step_grid": "--step-grid"}


def run(args: argparse.Namespace) -> int:
    from sojourn.catalogue import default_catalogue
    from sojourn.perf import load_profile, save_profile
    from sojourn.perf._calibrate import (
        default_fit_params,
        load_silicon,
        load_step_grid,
        load_steps,
        perf_model_for,
        summary_lines,
    )
    from sojourn.perf._profile import PRIOR
    from sojourn.scenario import Fleet
    from sojourn.sim.calibrate import fit_profile

    check_out(args.out)
    check_field(Fleet, "tp", args.tp, "--tp", "fleet.tp")
    if not (args.ttft_weight >= 0 and math.isfinite(args.ttft_weight)):
        raise ConfigError("--ttft-weight", f"must be a finite number >= 0, got {args.ttft_weight}")
    cat = default_catalogue()
    try:
        gpu = cat.gpu(args.gpu).id if args.gpu else None
    except ConfigError as err:
        raise ConfigError("--gpu", err.message) from None
    extra = ("eff_interconnect",) if args.fit_interconnect else ()
    try:
        if args.silicon:
            path, kind = Path(args.silicon), "silicon"
            loaded = load_silicon(path, backend=args.backend, gpu=gpu, catalogue=cat)
        elif args.step_grid:
            path, kind = Path(args.step_grid), "step-grid"
            loaded = load_step_grid(path, gpu=gpu, catalogue=cat)
        else:
            path, kind = Path(args.steps), "step"
            if not args.model or not gpu:
                raise ConfigError("--model/--gpu", "--steps needs the --model and --gpu the steps were measured on")
            try:
                cat.model(args.model)
            except ConfigError as err:
                raise ConfigError("--model", err.message) from None
            loaded = load_steps(path, model=args.model, gpu=gpu, tp=args.tp, precision=args.precision)
            # Check the replica once here, so a bad --tp/--precision is named as the option, not skipped.
            try:
                perf_model_for(loaded.records[0], PRIOR, cat)
            except ConfigError as err:
                option = {"fleet.tp": "--tp", "model.precision": "--precision"}.get(err.field, err.field)
                raise ConfigError(option, err.message) from None
    except ConfigError as err:  # the file as a whole (missing, a folder, not UTF-8, not CSV) is its option
        file_option = _FILE_OPTIONS.get(err.field)
        raise (ConfigError(file_option, err.message) if file_option else err) from None
    if not loaded.records:
        option = {"silicon": "--silicon", "step": "--steps", "step-grid": "--step-grid"}[kind]
        where = f"backend {args.backend}, " if kind == "silicon" else ""
        where += f"gpu {gpu}, " if gpu else ""
        skipped = "; ".join(loaded.skipped_lines()) or "none"
        raise ConfigError(option, f"no usable rows in {path.name} ({where.rstrip(', ') or 'any'}); skipped: {skipped}")
    gpu = _only_gpu(loaded.records, gpu, path.name)
    records = [r for r in loaded.records if r.gpu == gpu]
    backend = args.backend
    prof = fit_profile(
        records,
        gpu,
        backend,
        params=default_fit_params(records, extra),
        ttft_weight=args.ttft_weight,
        source=_source(kind, path, len(records), backend),
        skipped_on_load=dict(loaded.skipped),
        catalogue=cat,
    )
    save_profile(prof, args.out)
    load_profile(str(Path(args.out).resolve()))  # what a scenario's serving.profile will do
    if args.json:
        sys.stdout.write(json.dumps(prof.to_dict(), indent=2) + "\n")
    else:
        lines = summary_lines(prof)
        lines.append(f"wrote {args.out} (name it in a scenario's serving.profile, or sojourn perf --profile)")
        sys.stdout.write("\n".join(lines) + "\n")
    return 0
