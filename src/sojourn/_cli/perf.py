"""``sojourn perf``: what one engine replica holds and how fast it steps, each number with its source."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any

from sojourn._cli._common import check_field, emit_json, int_list
from sojourn._errors import ConfigError

__all__ = ["add_parser", "run"]

DEFAULT_BATCH = "1,8,32,64,128,256"
DEFAULT_CONTEXT = "1024,4096,16384"


#: The options that stand for a scenario setting: option -> (section, field). Each is validated by
#: the scenario's own pydantic model of that section, which also gives its default and allowed values.
SETTINGS = {
    "model": ("model", "name"),
    "precision": ("model", "precision"),
    "gpu": ("fleet", "gpu"),
    "tp": ("fleet", "tp"),
    "backend": ("serving", "backend"),
    "profile": ("serving", "profile"),
    "gpu_memory_utilization": ("serving", "gpu_memory_utilization"),
    "max_num_batched_tokens": ("serving", "max_num_batched_tokens"),
    "max_num_seqs": ("serving", "max_num_seqs"),
    "block_size": ("serving", "block_size"),
    "kv_cache_dtype": ("serving", "kv_cache_dtype"),
    "pipeline_parallel_size": ("serving", "pipeline_parallel_size"),
    "data_parallel_size": ("serving", "data_parallel_size"),
}
#: The scenario's model of each section.
SECTIONS = {"model": "ModelConfig", "fleet": "Fleet", "serving": "Serving"}


def _flag(dest: str) -> str:
    return f"--{dest.replace('_', '-')}"


class _SettingHelp(argparse.HelpFormatter):
    """Help naming, for an option that stands for a scenario setting, the setting, its allowed values
    and its default: read from the pydantic field when --help is printed, so building the parser
    imports no schema."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.dest not in SETTINGS or action.required:
            return text
        from sojourn import scenario

        section, field = SETTINGS[action.dest]
        info = getattr(scenario, SECTIONS[section]).model_fields[field]
        kind = info.annotation
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # Optional[Literal[...]]
            kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        allowed = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else ()
        rule = f"; allowed: {' | '.join(map(str, allowed))}" if allowed else ""
        shown = "unset" if info.default is None else info.default
        return f"{text} (scenario setting {section}.{field}{rule}; default {shown})".lstrip()


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="memory, KV capacity, prefill and decode step times of one replica",
        description=__doc__,
        formatter_class=_SettingHelp,
    )
    p.add_argument("--model", required=True, help="catalogue model id or a path to a HF config.json")
    p.add_argument("--gpu", required=True, help="catalogue GPU id (e.g. h100-sxm)")
    p.add_argument("--tp", type=int, help="GPUs per replica (tensor parallel, or split by the two options below)")
    p.add_argument("--precision", help="of the weights (and the KV cache, unless --kv-cache-dtype)")
    p.add_argument("--backend", help="engine whose profile to use")
    p.add_argument("--profile", help="a profile from `sojourn calibrate` (name or path); unset: the shipped one")
    p.add_argument("--batch", default=DEFAULT_BATCH, help="decode batch sizes of the β table")
    p.add_argument("--context", default=DEFAULT_CONTEXT, help="context tokens per sequence of the β table")
    p.add_argument("--gpu-memory-utilization", type=float, help="vLLM's, as a fraction")
    p.add_argument("--max-num-batched-tokens", type=int, help="vLLM's token budget of a step")
    p.add_argument("--max-num-seqs", type=int, help="vLLM's limit of sequences a step runs")
    p.add_argument("--block-size", type=int, help="vLLM's KV-cache block, in tokens")
    p.add_argument("--kv-cache-dtype", help="vLLM's; unset: fp8 with fp8/fp4 weights, else bf16")
    p.add_argument("--enable-expert-parallel", action="store_true",
                   help="vLLM's: a MoE model's experts spread whole over the tp GPUs (scenario setting "
                        "serving.enable_expert_parallel; default false)")  # fmt: skip
    p.add_argument("--pipeline-parallel-size", type=int,
                   help="vLLM's: the --tp GPUs as this many pipeline stages (dense models; default 1)")
    p.add_argument("--data-parallel-size", type=int,
                   help="vLLM's: the --tp GPUs as this many attention ranks (MoE models; default 1)")
    p.add_argument("--request-tokens", type=int, default=None,
                   help="tokens of one request for 'KV capacity in requests' (default isl+osl, else 1024+256)")
    p.add_argument("--isl", type=int, help="input tokens per request (closed-loop prediction)")
    p.add_argument("--osl", type=int, help="output tokens per request (closed-loop prediction)")
    p.add_argument("--concurrency", type=int, help="requests kept in flight by the benchmark client")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


#: Benchmark clients a closed-loop prediction simulates at most: 10^5 takes half a minute;
#: beyond a replica's KV capacity more clients only queue.
MAX_CONCURRENCY = 100_000


def _section(args: argparse.Namespace, section: str) -> Any:
    """The scenario's model of ``section`` (``model``, ``fleet``, ``serving``) built from the options
    that stand for its settings (one not given takes the model's default), validated once, by the
    model: a ConfigError naming the option, the setting and what it allows."""
    from pydantic import ValidationError

    from sojourn import scenario

    cls = getattr(scenario, SECTIONS[section])
    given = {field: getattr(args, dest) for dest, (sec, field) in SETTINGS.items()
             if sec == section and getattr(args, dest) is not None}
    try:
        return cls(**given)
    except ValidationError as err:
        # Worded as every command-line number is (check_field): the option, then the setting's rule.
        for dest, (sec, field) in SETTINGS.items():
            if sec == section and field in given:
                check_field(cls, field, given[field], _flag(dest), f"{section}.{field}")
        raise scenario.format_validation_error(err, prefix=section) from None


def _settings(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(ModelConfig, Fleet, Serving) from the command line, as a scenario holds them."""
    model, fleet, serving = (_section(args, s) for s in ("model", "fleet", "serving"))
    try:
        serving.check_engine()  # the scenario's rule between an engine's settings
    except ConfigError as err:
        field = err.field.split(".")[-1]
        raise ConfigError(_flag(field), f"{err.message} (the rule of {err.field})") from None
    return model, fleet, serving


def _check_args(args: argparse.Namespace) -> None:
    """Every option not a scenario setting, before any work."""
    for name in ("request_tokens", "isl", "osl"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')}", f"must be >= 1, got {v}")
    c = args.concurrency
    if c is not None and not 1 <= c <= MAX_CONCURRENCY:
        raise ConfigError("--concurrency", f"must be 1..{MAX_CONCURRENCY} benchmark clients, got {c} (beyond a "
                                           "replica's KV capacity more clients only wait)")


def _replica(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """(ModelConfig, Fleet, Serving, PerfModel) of the command line's replica, checked to fit."""
    from sojourn.catalogue import default_catalogue
    from sojourn.perf import build_perf_model

    model_cfg, fleet, serving = _settings(args)
    if getattr(args, "enable_expert_parallel", False):
        serving = serving.model_copy(update={"enable_expert_parallel": True})
    _check_args(args)
    cat = default_catalogue()
    # A replica on its own: the KV capacity is reported, not held to one request of max_model_len.
    pm = build_perf_model(cat.model(model_cfg.name), cat.gpu(fleet.gpu), tp=fleet.tp, precision=model_cfg.precision,
                          profile=serving.profile, backend=serving.backend, serving=serving, check=False)  # fmt: skip
    pm.check_fits()
    return model_cfg, fleet, serving, pm


def report(args: argparse.Namespace) -> dict[str, Any]:
    model_cfg, fleet, serving, pm = _replica(args)
    model, gpu = pm.model, pm.gpu
    batches = int_list(args.batch, "--batch")
    contexts = int_list(args.context, "--context")
    closed = [args.isl, args.osl, args.concurrency]
    if any(v is not None for v in closed) and not all(v is not None for v in closed):
        raise ConfigError("--isl/--osl/--concurrency", "give all three for a closed-loop prediction")
    req_tokens = args.request_tokens or ((args.isl + args.osl) if args.isl else 1024 + 256)
    prof = pm.profile
    prof_src = prof.source + (f" (factors carried over from {prof.carried_from})" if prof.carried_from else "")
    speed = _speed(prof, gpu.id, serving.backend, model_cfg.precision)
    out: dict[str, Any] = {
        "model": model.id,
        "gpu": gpu.id,
        "tp": fleet.tp,
        "ep": pm.ep,
        "pp": pm.pp,
        "dp": pm.dp,
        "precision": model_cfg.precision,
        "backend": serving.backend,
        "calibrated": speed["calibrated"],
        "calibration": speed["calibration"],
        "weights_bytes": pm.weights_bytes,
        "weights_bytes_per_gpu": pm.weights_bytes_per_gpu,
        "kv_bytes_per_token": pm.kv_bytes_per_token,
        "kv_capacity_tokens": pm.kv_capacity_tokens,
        "kv_capacity_blocks": pm.kv_capacity_blocks,
        "kv_capacity_requests": {"tokens_per_request": req_tokens, "requests": pm.requests_in_kv(req_tokens)},
        "alpha_s_per_token": pm.alpha(),
        "alpha_chunk_tokens": pm.max_num_batched_tokens,
        "decode_step_s": {
            "batch": batches,
            "context": contexts,
            "seconds": [[pm.beta(b, c) for c in contexts] for b in batches],
        },
        "profile": {k: v for k, v in prof.to_dict().items() if k != "fit"},
        "sources": {
            "weights_bytes": f"{model.id} parameters ({model.source}) x bytes per parameter at {model_cfg.precision}",
            "kv_capacity_tokens": (
                f"{gpu.id} memory ({gpu.sources.get('specs', '')}) x gpu_memory_utilization "
                f"- weights - activation reserve (estimate), / KV bytes per token"
            ),
            "alpha_s_per_token": f"roofline with profile: {prof_src}",
            "decode_step_s": f"roofline with profile: {prof_src}",
        },
    }
    if "warning" in speed:
        out["warning"] = speed["warning"]
    if args.isl is not None:
        _closed_loop(args, pm, out)
    return out


def _speed(prof: Any, gpu: str, backend: str, precision: str | None = None) -> dict[str, Any]:
    """Whether the step times are fitted on measurements of this GPU and engine (``calibrated``,
    ``calibration``: ``sojourn.perf.calibration_of``), and a ``warning`` where they are not."""
    from sojourn.perf import calibration_of

    cal = calibration_of(prof, gpu, backend, precision)
    out: dict[str, Any] = {"calibrated": cal.calibrated, "calibration": cal.source}
    if prof.carried_from:
        out["warning"] = (
            f"no measurements for {gpu} ({backend}): efficiency factors carried over from "
            f"{prof.carried_from}; treat times as a roofline estimate"
        )
    elif not cal.calibrated:  # a profile of another GPU or engine named, or no fit at all
        out["warning"] = f"{cal.source}; treat times as a roofline estimate"
    return out


def _closed_loop(args: argparse.Namespace, pm: Any, out: dict[str, Any]) -> None:
    """Add the closed-loop prediction (TTFT, TPOT, throughput at --isl/--osl/--concurrency) to ``out``."""
    from sojourn.sim.closed_loop import closed_loop

    try:
        res = closed_loop(pm, args.isl, args.osl, args.concurrency)
    except ValueError as err:
        raise ConfigError("--isl/--osl", str(err)) from None
    out.update(
        isl=args.isl,
        osl=args.osl,
        concurrency=args.concurrency,
        ttft_s=res.ttft_s,
        tpot_s=res.tpot_s,
        e2e_s=res.e2e_s,
        throughput_rps=res.throughput_rps,
        output_tokens_per_s=res.output_tokens_per_s,
        preemptions=res.preemptions,
    )
    out["sources"]["ttft_s"] = out["sources"]["tpot_s"] = (
        "closed-loop run of the engine scheduler (sojourn.sim.engine) with the step times above"
    )


def _table(out: dict[str, Any]) -> str:
    gib = 2**30
    lines = [
        f"{out['model']} on {out['gpu']} x{out['tp']}{f' PP{pp}' if (pp := out.get('pp', 1)) > 1 else ''}"
        f"{f' DP{dp}' if (dp := out.get('dp', 1)) > 1 else ''}{' EP' if out['ep'] > 1 else ''} ({out['precision']}, "
        f"{out['backend']})",
        f"  GPU speed          {'measured: ' if out['calibrated'] else ''}{out['calibration']}",
        f"  weights            {out['weights_bytes'] / gib:8.1f} GiB  ({out['weights_bytes_per_gpu'] / gib:.1f} GiB per GPU)",
        f"  KV per token       {out['kv_bytes_per_token'] / 1024:8.1f} KiB",
        f"  KV capacity        {out['kv_capacity_tokens']:8d} tokens = "
        f"{out['kv_capacity_requests']['requests']} requests of {out['kv_capacity_requests']['tokens_per_request']} tokens",
        f"  alpha (prefill)    {out['alpha_s_per_token'] * 1e6:8.2f} us/token  (chunk of {out['alpha_chunk_tokens']})",
        "  beta (decode step, ms)   context ->",
    ]
    d = out["decode_step_s"]
    lines.append("    batch " + "".join(f"{c:>10d}" for c in d["context"]))
    for b, row in zip(d["batch"], d["seconds"]):
        lines.append(f"    {b:5d} " + "".join(f"{s * 1e3:10.2f}" for s in row))
    if "ttft_s" in out:
        lines.append(
            f"  closed loop isl={out['isl']} osl={out['osl']} c={out['concurrency']}: "
            f"TTFT {out['ttft_s'] * 1e3:.1f} ms, TPOT {out['tpot_s'] * 1e3:.2f} ms, "
            f"{out['throughput_rps']:.2f} req/s, {out['preemptions']} preemptions"
        )
    lines.append("  sources:")
    for k, v in out["sources"].items():
        lines.append(f"    {k}: {v}")
    if "warning" in out:
        lines.append(f"  warning: {out['warning']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    out = report(args)
    if args.json:
        emit_json(out)
    else:
        sys.stdout.write(_table(out) + "\n")
    return 0
