"""Steady state: does a default run's P(miss) match the long-run value, or say it may not?

Scenarios: M^X/M/c fleets (4 nodes of 8 slots, exponential service of 1 s, a 15-minute SLA,
cancellation at the deadline as batch APIs do, and three rows that finish late work) with
light-tailed (geometric) and
heavy-tailed (lognormal, Pareto) batch sizes capped at 5,000, at offered loads from 0.5
to 0.99, plus the quickstart's engine at rho 0.85-0.98 on the fast tier. The service is
short next to the SLA, so the fluid fleet is close to exact and its long run is the
reference for both tiers:

* long run: the fast tier over 20x the default span, 16 replications (and, for FIFO,
  the exact stationary law: ``analytic_p_miss``);
* default run: each tier with the scenario's defaults (stationary start), and with
  ``simulation.start = "empty"``, the start before issue 11, for comparison.

A row passes when the default P(miss) lies in the long run's interval, or its own 95%
interval holds the long-run value, or it is within a factor 2 of it where the long run
is under 1e-3, or the run flags itself (a steady-state note, or too few congestion
episodes for its interval).

    .venv/bin/python benchmarks/steady_state.py [--json out.json] [--quick] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sojourn.evaluate import sla_miss_value  # noqa: E402
from sojourn.fast import fast_simulate  # noqa: E402
from sojourn.request import simulate  # noqa: E402
from sojourn.scenario import scenario_from_dict  # noqa: E402

BATCHES = {
    "geometric": {"dist": "geometric", "mean": 300},
    "lognormal": {"dist": "lognormal", "median": 200, "sigma": 1.5, "max": 5000},
    "pareto": {"dist": "pareto", "shape": 1.6, "scale": 100, "max": 5000},
}
CAPACITY = 32.0  # requests per second: 4 nodes x 8 slots / 1 s


def generic(batch: str, rho: float, discipline: str = "fifo", start: str = "stationary",
            on_deadline: str = "cancel", warmup_hours: float = 1.0) -> object:
    from sojourn.distributions import parse_distribution

    ex = parse_distribution(BATCHES[batch]).int_mean
    return scenario_from_dict({
        "sla_hours": 0.25,
        "workload": {"batch_rate_per_hour": rho * CAPACITY * 3600.0 / ex, "batch_size": BATCHES[batch],
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": 4, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0},
                                         "concurrency": 8}},
        "serving": {"discipline": discipline, "on_deadline": on_deadline},
        "simulation": {"horizon_hours": 12.0, "warmup_hours": warmup_hours, "replications": 4, "seed": 11,
                       "start": start},
    })


def quickstart(nodes: int, start: str = "stationary") -> object:
    from sojourn.study import load_study
    from sojourn.study.runner import StudyRunner

    runner = StudyRunner(load_study(ROOT / "studies" / "quickstart.toml"))
    sc = runner.trial_scenario({"gpu": "h100-sxm", "tp": 1, "nodes": nodes, "gpu_memory_utilization": 0.9,
                                "max_num_batched_tokens": 8192, "max_num_seqs": 512, "discipline": "fifo"})
    return sc.with_updates({"simulation.start": start, "simulation.seed": 11})


ROWS = [  # (name, builder, tiers)
    *[(f"{b} rho {r}", (lambda b=b, r=r, **k: generic(b, r, **k)), ("fast", "request"))
      for b in ("geometric", "lognormal") for r in (0.5, 0.85, 0.95, 0.98)],
    *[(f"pareto rho {r}", (lambda r=r, **k: generic("pareto", r, **k)), ("fast", "request")) for r in (0.7, 0.97)],
    # Late work finished rather than cancelled: the queue is not held within one SLA, and
    # relaxes over 2λE[B²]/(1 − rho)² (13.6 h at 0.95), far beyond the 1 h warm-up.
    *[(f"{b} rho {r} finish", (lambda b=b, r=r, **k: generic(b, r, on_deadline="finish", **k)), ("fast", "request"))
      for b, r in (("lognormal", 0.95), ("geometric", 0.98), ("lognormal", 0.98))],
    # A warm-up shorter than the mean work found (E[V] ~ 25 min at 0.98): an empty start reads low.
    *[(f"{b} rho 0.98 finish, 0.1 h warm-up", (lambda b=b, **k: generic(b, 0.98, on_deadline="finish",
                                                                      warmup_hours=0.1, **k)), ("fast", "request"))
      for b in ("lognormal", "geometric")],
    ("lognormal rho 0.95 lifo", lambda **k: generic("lognormal", 0.95, discipline="lifo", **k), ("fast", "request")),
    ("lognormal rho 0.95 sjf", lambda **k: generic("lognormal", 0.95, discipline="sjf", **k), ("fast", "request")),
    *[(f"quickstart h100 tp1 x{n}", (lambda n=n, **k: quickstart(n, **k)), ("fast",)) for n in (8, 7)],
]


def run_tier(sc, tier: str) -> dict:
    t0 = time.perf_counter()
    d = (fast_simulate(sc) if tier == "fast" else simulate(sc)).to_dict()
    best, src = sla_miss_value(d, "mean", cancel=True)
    flag = d.get("steady_state_note") or d.get("p_miss_note") or ""
    return {"p": best, "source": src, "sampled": d["p_miss"], "ci": d["p_miss_ci"], "flag": flag,
            "load": d.get("load"), "start": (d.get("steady_state") or {}).get("start"),
            "wall_s": time.perf_counter() - t0}


def long_run(sc) -> dict:
    sim = sc.simulation
    long = sc.with_updates({"simulation.horizon_hours": 20 * sim.horizon_hours})
    r = fast_simulate(long, replications=16)
    return {"p": r.p_miss, "ci": list(r.p_miss_ci), "analytic": r.analytic_p_miss, "load": r.load.rho}


def verdict(row: dict, ref: dict) -> str:
    """inside: in the long run's interval; covers: the run's own interval holds the long-run value;
    within 2x: below 1e-3, at most a factor 2 off; flagged: the run says not to trust it; MISS."""
    p = row["p"]
    lo, hi = ref["ci"]
    if lo <= p <= hi:
        return "inside"
    centre = ref["analytic"] if ref["analytic"] is not None and math.isfinite(ref["analytic"]) else ref["p"]
    rlo, rhi = row["ci"]
    if rlo is not None and rhi is not None and rlo <= centre <= rhi and row["source"] == "sampled":
        return "covers"
    if centre < 1e-3 and centre / 2 <= p <= centre * 2:
        return "within 2x"
    if row["flag"]:
        return "flagged"
    return "MISS"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="fast tier only")
    ap.add_argument("--write", action="store_true", help="print the markdown table for RESULTS.md")
    ap.add_argument("--only", default=None, help="rows whose name holds this text")
    args = ap.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the CLI's setting, for this script's output
    out = []
    for name, build, tiers in ROWS:
        if args.only and args.only not in name:
            continue
        ref = long_run(build())
        for tier in tiers:
            if args.quick and tier == "request":
                continue
            now = run_tier(build(), tier)
            before = run_tier(build(start="empty"), tier)
            row = {"name": name, "tier": tier, "ref": ref, "default": now, "empty_start": before,
                   "verdict": verdict(now, ref), "verdict_empty_start": verdict(before, ref)}
            out.append(row)
            print(f"{name:28s} {tier:7s} rho {ref['load']:.3f} long-run {ref['p']:.3g} [{ref['ci'][0]:.3g}, "
                  f"{ref['ci'][1]:.3g}] analytic {ref['analytic']:.3g} | default {now['p']:.3g} ({now['source']}) "
                  f"{row['verdict']}{' [' + now['flag'][:60] + ']' if now['flag'] else ''} | empty start "
                  f"{before['p']:.3g} {row['verdict_empty_start']} | {now['wall_s']:.1f} s", flush=True)
    ok = sum(r["verdict"] != "MISS" for r in out)
    old = sum(r["verdict_empty_start"] != "MISS" for r in out)
    print(f"\n{ok}/{len(out)} default runs inside, within 2x below 1e-3, or flagged; "
          f"{old}/{len(out)} with an empty start")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    if args.write:
        print("\n| scenario | tier | rho | long run [95% CI] | analytic | default | verdict | empty start | verdict |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in out:
            ref, d, e = r["ref"], r["default"], r["empty_start"]
            a = ref["analytic"]
            print(f"| {r['name']} | {r['tier']} | {ref['load']:.3f} | {ref['p']:.3g} [{ref['ci'][0]:.3g}, "
                  f"{ref['ci'][1]:.3g}] | {a:.3g} | {d['p']:.3g} | {r['verdict']} | {e['p']:.3g} | "
                  f"{r['verdict_empty_start']} |" if a is not None and math.isfinite(a) else
                  f"| {r['name']} | {r['tier']} | {ref['load']:.3f} | {ref['p']:.3g} [{ref['ci'][0]:.3g}, "
                  f"{ref['ci'][1]:.3g}] | - | {d['p']:.3g} | {r['verdict']} | {e['p']:.3g} | "
                  f"{r['verdict_empty_start']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
