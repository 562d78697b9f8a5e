"""``sojourn catalogue``: the GPUs a study can buy or rent, their numbers, and where each engine's speed on them comes from.

Every GPU row says, per engine, whether its step times are fitted on measurements of that
GPU ("measured") or carried over from another GPU ("from <gpu>"), as ``sojourn perf``,
study fronts and ``compare-hardware`` judge it (``sojourn.perf.calibration``). Prices
marked ``*`` are estimates (the catalogue says why); every number's source is in
``--json`` and in ``src/sojourn/catalogue/gpus.toml``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sojourn._cli._common import emit_json
from sojourn._errors import ConfigError

__all__ = ["BACKENDS", "add_parser", "gpu_rows", "markdown_table", "run", "text_table"]

#: Engines a profile can be fitted for, in the order the table shows them.
BACKENDS = ("vllm", "sglang", "trtllm")

LEGEND = """\
  speed:  measured = the engine's step times on this GPU are fitted on its own end-to-end measurements
          (steps: on kernel-level step times, no end-to-end check); from X = there are none, they are
          carried over from GPU X (less certain: `sojourn calibrate` with your measurements fixes it);
          prior = fitted on nothing (typical efficiencies).
  *       an estimate, not a quote: the catalogue entry says why (`--json`: notes). Prices are defaults
          that a study's [catalogue] section or `--catalogue FILE` overrides."""


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="the catalogue's GPUs, their numbers, and which are measured or carried over",
                       description=__doc__)  # fmt: skip
    p.add_argument("--catalogue", help="a catalogue TOML of [gpus.<id>] tables applied on the built-in one")
    p.add_argument("--backend", default=",".join(BACKENDS), help="engines to judge, comma-separated")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON list, every field with its sources")
    fmt.add_argument("--markdown", action="store_true", help="the table as Markdown (the README's GPU table)")
    return p


def _speed(cal: Any) -> str:
    if cal.calibrated:
        if "no end-to-end check" in cal.source:
            return "measured (steps)"
        return "measured (offline)" if "offline throughput runs only" in cal.source else "measured"
    return f"from {cal.carried_from}" if cal.carried_from else "prior"


def gpu_rows(catalogue: Any = None, backends: tuple[str, ...] = BACKENDS) -> list[dict[str, Any]]:
    """One dict per catalogue GPU: its fields, sources and notes, and per engine its ``speed``
    (``calibrated``, ``calibration``, ``carried_from``: ``sojourn.perf.calibration``)."""
    from dataclasses import fields

    from sojourn.catalogue import default_catalogue
    from sojourn.perf import calibration

    cat = catalogue if catalogue is not None else default_catalogue()
    rows = []
    for gpu in cat.gpus.values():
        row = {f.name: getattr(gpu, f.name) for f in fields(gpu)}
        row["sources"], row["notes"] = dict(gpu.sources), list(gpu.notes)
        row["speed"] = {}
        for backend in backends:
            cal = calibration(gpu.id, backend)
            row["speed"][backend] = {"calibrated": cal.calibrated, "calibration": cal.source,
                                     "carried_from": cal.carried_from, "mark": _speed(cal)}  # fmt: skip
        rows.append(row)
    return rows


def _num(v: float | None, digits: int | None = None) -> str:
    """``digits`` decimals; by default none for a whole number, one otherwise (537.6, 1,307.4)."""
    if v is None:
        return "-"
    if digits is None:
        digits = 0 if float(v).is_integer() else 1
    return f"{v:,.{digits}f}"


def _cells(r: dict[str, Any], backends: tuple[str, ...]) -> list[str]:
    return [
        r["id"], _num(r["memory_gib"]), f"{r['mem_bandwidth_tbps']:g}",
        _num(r["bf16_tflops"]), _num(r["fp8_tflops"]), _num(r["fp4_tflops"]),
        _num(r["interconnect_gbps"]), _num(r["tdp_w"]),
        _num(r["price_usd_per_gpu_hour"], 2) + ("*" if r["price_estimated"] else ""),
        _num(r["purchase_usd"]) + ("*" if r["purchase_estimated"] else ""),
        *(r["speed"][b]["mark"] for b in backends),
    ]  # fmt: skip


HEAD = ["gpu", "GiB", "TB/s", "bf16", "fp8", "fp4", "link GB/s", "TDP W", "$/GPU-h", "purchase $"]


def text_table(rows: list[dict[str, Any]], backends: tuple[str, ...] = BACKENDS) -> str:
    head = HEAD + [f"speed {b}" for b in backends]
    body = [_cells(r, backends) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) if i in (0,) or i >= len(HEAD) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(line, widths))).rstrip()
             for line in [head, *body]]  # fmt: skip
    return "\n".join([*lines, "  bf16/fp8/fp4: dense TFLOP/s; link: per-GPU one-direction interconnect", LEGEND])


def markdown_table(rows: list[dict[str, Any]], backends: tuple[str, ...] = BACKENDS) -> str:
    head = HEAD + [f"speed {b}" for b in backends]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i == 0 or i >= len(HEAD) else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(_cells(r, backends)) + " |" for r in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from sojourn.catalogue import Catalogue

    backends = tuple(b.strip() for b in args.backend.split(",") if b.strip())
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise ConfigError("--backend", f"got {args.backend!r}; allowed: {', '.join(BACKENDS)} (comma-separated)")
    cat = Catalogue.from_file(args.catalogue) if args.catalogue else None
    rows = gpu_rows(cat, backends)
    if args.json:
        emit_json(rows)
    elif args.markdown:
        sys.stdout.write(markdown_table(rows, backends) + "\n")
    else:
        sys.stdout.write(text_table(rows, backends) + "\n")
    return 0
