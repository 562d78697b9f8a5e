"""``sojourn simulate``: the request-level estimate of one scenario."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from typing import Any

from sojourn._cli._common import add_what_if_options, check_field, check_n_jobs, emit_json, what_if_of
from sojourn.result import FIDELITIES

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="simulate every request of a scenario: P(miss), sojourn times, utilisation",
        description="Request-level simulation of a scenario, with confidence intervals from replications.",
    )
    p.add_argument("scenario", metavar="SCENARIO.toml")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--replications", type=int, default=None, metavar="R", help="replications (>= 2)")
    p.add_argument("--n-jobs", type=int, default=1, metavar="J", help="parallel workers (-1: all CPUs)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="root seed of the replications")
    p.add_argument("--horizon-hours", type=float, default=None, metavar="H", help="measured span after warm-up")
    p.add_argument("--fidelity", choices=FIDELITIES, default=None,
                   help="simulation tier (default: the scenario's simulation.fidelity)")
    p.add_argument("--max-requests", type=float, default=None, metavar="N",
                   help="refuse a request-tier run expected to simulate more requests than this, all replications "
                        "(default: the scenario's simulation.max_requests, 1e9)")
    p.add_argument("--max-batches", type=float, default=None, metavar="N",
                   help="refuse a fast-tier run holding more batches than this in one replication "
                        "(default: the scenario's simulation.max_batches, 2e7)")
    add_what_if_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar (there is none off a terminal either)")
    return p


def run(args: argparse.Namespace) -> int:
    from sojourn.evaluate import run_scenario
    from sojourn.scenario import SimulationSettings, load_scenario

    # Each number by the rule of the scenario setting it overrides, before any work.
    check_n_jobs(args.n_jobs)
    overrides = {"--horizon-hours": "horizon_hours", "--replications": "replications", "--seed": "seed",
                 "--max-requests": "max_requests", "--max-batches": "max_batches"}
    given = {}
    for flag, name in overrides.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if name.startswith("max_") and value is not None and math.isfinite(value) and value == int(value):
            value = int(value)  # 1e9 reads as a float
        given[name] = check_field(SimulationSettings, name, value, flag, f"simulation.{name}")
    what_if = what_if_of(args)  # checked before the scenario is read
    scenario = load_scenario(args.scenario)
    notes: list[str] = []
    if what_if is not None:
        scenario, notes = what_if.apply(scenario)
        for note in notes:
            print(f"what-if: {note}", file=sys.stderr)
    updates = {f"simulation.{k}": given[k] for k in ("horizon_hours", "max_requests", "max_batches")
               if given[k] is not None}
    if updates:
        scenario = scenario.with_updates(updates)
    from sojourn._progress import bar, wanted

    with bar(None, "simulate", unit="replication", enabled=wanted(args.quiet)) as pbar:

        def progress(done: float, total: int) -> None:  # the request tier's replications, on a terminal
            pbar.total = total
            pbar.n = round(done, 2)
            pbar.refresh()

        result = run_scenario(
            scenario,
            fidelity=args.fidelity,
            replications=args.replications,
            n_jobs=args.n_jobs,
            seed=args.seed,
            progress=progress if pbar.disable is False else False,
        )
    from sojourn.perf import scenario_calibration

    # Whether the fleet's step times are fitted on measurements of its GPU (sojourn.perf.calibration_of).
    cal = scenario_calibration(scenario)
    out = {**result.to_dict(), "calibrated": cal.calibrated, "calibration": cal.source}
    if what_if is not None:  # only when asked: the output of a plain run is as it was
        out["what_if"] = {"rate_scale": what_if.rate_scale, "sla_hours": scenario.sla_hours,
                          "label": what_if.label, "notes": notes}
    if scenario.fleet.pools is not None:  # a mixed fleet: the owned nodes' rent
        out["owned_cost_per_hour"] = scenario.owned_cost_per_hour
    if args.json:
        emit_json(out)
    else:
        if what_if is not None:
            print(f"what-if: {what_if.describe()}")
        print(format_table(out, cancel=scenario.serving.on_deadline == "cancel"))
    return 0


def _num(x: Any, unit: str = "", digits: int = 4) -> str:
    if x is None:
        return "unserved" if unit == "s" else "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}{(' ' + unit) if unit else ''}"
    return f"{x}{(' ' + unit) if unit else ''}"


def _prefix_rows(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The prefix cache's row, where prefix caching acts: the request tier's hits, or the share of
    prompt tokens the fast tier's saturated node found cached."""
    pc: Mapping[str, Any] = d.get("prefix_cache") or {}
    share = (d.get("node_capacity") or {}).get("prefix_cached_share")
    if pc:
        lo, hi = pc["hit_rate_ci"]
        return [("prefix cache", f"{_num(pc['hit_rate'])} of prompt tokens cached (95% CI [{_num(lo)}, "
                                 f"{_num(hi)}]), {_num(pc['request_hit_rate'])} of admissions hit, "
                                 f"{pc['evictions']} blocks evicted")]
    if share is not None:
        return [("prefix cache", f"{_num(share)} of prompt tokens cached on the saturated node")]
    return []


def _realism_rows(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What node failures, spot nodes and a capacity schedule did to the run (``fleet_realism``): the
    settings as resolved, the node-time that served against what they imply, and the requests they cost."""
    fr: Mapping[str, Any] = d.get("fleet_realism") or {}
    if not fr:
        return []
    parts = []
    if fr.get("mtbf_node_hours") is not None:
        parts.append(f"failures: node MTBF {_num(fr['mtbf_node_hours'], 'h')}, repair {_num(fr['repair_hours'], 'h')} "
                     f"({fr['on_failure']}), availability {_num(fr['node_availability'])}, {fr['failures']} failures")
    if fr.get("spot_nodes"):
        parts.append(f"spot: {fr['spot_nodes']} nodes at {_num(fr['spot_price_usd_per_gpu_hour'], '$/GPU-h')}, "
                     f"{fr['reclaims']} reclaims")
    if fr.get("capacity_schedule") is not None:
        hours = fr["capacity_schedule"]
        parts.append(f"capacity schedule: {' '.join(str(n) for n in hours)} nodes by hour" if len(hours) <= 24 else
                     f"capacity schedule: a {len(hours)}-hour trace, {min(hours)} to {max(hours)} nodes")
    served = f"nodes serving {_num(fr['serving_share'])} of the time (expected {_num(fr['serving_share_expected'])})"
    lost = [f"{fr[k]} {k.split('_')[1]}" for k in ("requests_recomputed", "requests_lost") if fr.get(k)]
    tail = f"; requests {', '.join(lost)}" if lost else ""
    rows = [("fleet as it runs", "; ".join(parts) or "as nominal")]
    rows.append(("  node time", f"{served}; {_num(fr['node_hours_paid'])} node-hours paid, "
                                f"{_num(fr['cost_per_hour_measured'], '$/h')} rent measured{tail}"))
    return rows
def _latency_rows(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """TTFT (from arrival) and TPOT of the requests engines served (the request tier's ``token_latency``)."""
    tl: Mapping[str, Any] = d.get("token_latency") or {}
    if "ttft_mean_s" not in tl:
        return []
    text = (f"TTFT mean {_num(tl['ttft_mean_s'], 's')}, p50 {_num(tl['ttft_p50_s'], 's')}, "
            f"p99 {_num(tl['ttft_p99_s'], 's')} (from arrival; {tl['ttft_requests']} requests)")
    if "tpot_mean_s" in tl:
        ms = {k: 1e3 * tl[k] for k in ("tpot_mean_s", "tpot_p50_s", "tpot_p99_s")}
        text += (f"; TPOT mean {_num(ms['tpot_mean_s'], 'ms')}, p50 {_num(ms['tpot_p50_s'], 'ms')}, "
                 f"p99 {_num(ms['tpot_p99_s'], 'ms')}")
    return [("token latency", text)]


def _cost(d: Mapping[str, Any]) -> str:
    """The rent row: with owned nodes (``fleet.pools[i].owned``), what is added and the whole fleet's."""
    owned = d.get("owned_cost_per_hour") or 0.0
    if not owned:
        return _num(d["cost_per_hour"], "$/h")
    return (f"{_num(d['cost_per_hour'], '$/h')} added (the owned nodes' rent {_num(owned, '$/h')}; "
            f"the whole fleet {_num(d['cost_per_hour'] + owned, '$/h')})")


def format_table(d: Mapping[str, Any], cancel: bool = False) -> str:
    """A short human summary of a run's ``sojourn.result.Result`` (or its ``to_dict()``), either tier."""
    from sojourn.evaluate import sla_miss_value

    lo, hi = d["p_miss_ci"]
    bound = f"upper bound {_num(d['p_miss_upper'])}"
    if (d.get("p_miss_unseen") or 0.0) > 0:
        bound += f" (of which {_num(d['p_miss_unseen'], digits=2)} for batches larger than any sampled)"
    sampled = f"{_num(d['p_miss'])}  95% CI [{_num(lo)}, {_num(hi)}], {bound}"
    if d.get("stable") is False and not cancel:
        sampled = (f"UNSTABLE: offered load {_num(d.get('load'))} >= 1, the queue grows without bound and "
                   f"every request eventually misses (this finite run saw {_num(d['p_miss'])})")
    best, source = sla_miss_value(d, "mean", cancel)
    rows = [
        ("P(S > SLA)", sampled),
        ("best estimate", f"{_num(best)} ({source}; what a study's sla_miss optimises, see docs/model.md)"),
        ("batches missing SLA", _num(d["batch_miss"])),
        (
            "sojourn",
            f"mean {_num(d['sojourn_mean_s'], 's')}, p50 {_num(d['sojourn_p50_s'], 's')}, "
            f"p90 {_num(d['sojourn_p90_s'], 's')}, p99 {_num(d['sojourn_p99_s'], 's')}",
        ),
        ("mean wait", _num(d["wait_mean_s"], "s")),
        ("throughput", _num(d["throughput_rps"], "req/s")),
        (
            "requests",
            f"{d['requests_arrived']} arrived, {d['requests_completed']} completed, "
            f"{d['requests_rejected']} rejected, {d['requests_cancelled']} cancelled, "
            f"{d['requests_in_system']} in system",
        ),
        ("cost", _cost(d)),
    ]
    if d.get("fidelity") == "fast":
        rows.insert(-1, ("load", f"rho {_num(d.get('load'))} of a capacity of {_num(d.get('capacity_rps'))} req/s"))
        if d.get("analytic_p_miss") is not None:
            rows.insert(1, ("analytic P(S > SLA)", f"{_num(d['analytic_p_miss'])} ({d.get('analytic_regime')})"))
        rows.append(("run", f"fast tier (batch-level fluid model), {d.get('replications')} replications, "
                            f"{_num(d.get('wall_s'), 's')}"))
    else:
        rows.insert(-1, ("utilisation", f"busy {_num(d['busy_fraction'])}, KV {_num(d['kv_utilization'])}, "
                                        f"{d['preemptions']} preemptions"))
        rows.append(("run", f"request tier, {d['replications']} replications of {_num(d['horizon_hours'], 'h')} "
                            f"(seed {d['seed']}), {d['requests_simulated']} requests simulated in {d['wall_s']:.1f} s"))
    rows += _prefix_rows(d)
    rows += _realism_rows(d)
    rows += _latency_rows(d)
    for c in d.get("by_sla_class") or []:
        lo, hi = c["p_miss_ci"]
        rows.append((f"  SLA {_num(c['sla_hours'])} h",
                     f"P(miss) {_num(c['p_miss'])}  95% CI [{_num(lo)}, {_num(hi)}] of {c['requests_arrived']} requests"))
    ss: Mapping[str, Any] = d.get("steady_state") or {}
    if ss:
        relax = ss.get("relaxation_hours")
        start = str(ss.get("start"))
        how = {"stationary": "started from a stationary draw of the work in system",
               "empty": "started empty"}.get(start, start)
        rows.append(("steady state", f"{how}; warm-up {_num(ss.get('warmup_hours'))} h, measured "
                                     f"{_num(ss.get('span_hours'))} h, relaxation time {_num(relax)} h"
                     + (f"; {'; '.join(ss['adjusted'])}" if ss.get("adjusted") else "")))
    rows += _caution_rows(d)
    rows += _speed_row(d)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _caution_rows(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The run's cautions and its rejection/cancellation counts, as (label, text) rows."""
    out: list[tuple[str, str]] = []
    if d.get("steady_state_note"):
        out.append(("steady-state caution", d["steady_state_note"]))
    if d.get("p_miss_oversize") is not None:
        part = f"{_num(d['p_miss_oversize'], digits=3)} of all requests missed in batches larger than the fleet serves in one SLA"
        if d.get("p_miss_oversize_floor") is not None:
            part += f" (at least {_num(d['p_miss_oversize_floor'], digits=3)} whatever the fleet's state)"
        out.append(("oversize batches", part))
    if d.get("p_miss_fragility") is not None or d.get("fragile"):
        ratio = d.get("p_miss_fragility")
        text = "unstable" if ratio is None else f"x{_num(ratio, digits=3)}"
        out.append(("capacity -2%", f"P(miss) {text}" + (": FRAGILE, a 2% capacity error moves it more than 2x"
                                                        if d.get("fragile") else "")))
    if d.get("p_miss_note"):
        out.append(("P(miss) caution", d["p_miss_note"]))
    if d.get("sojourn_note"):
        out.append(("sojourn caution", d["sojourn_note"]))
    if d.get("fidelity_note"):
        out.append(("note", d["fidelity_note"]))
    for key in ("rejected_by", "cancelled_by"):
        if d.get(key):
            out.append((key.replace("_", " "), ", ".join(f"{k}: {v}" for k, v in sorted(d[key].items()))))
    return out


def _speed_row(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Where the fleet's step times come from: measured on its GPU, or carried over from which one."""
    if not d.get("calibration"):
        return []
    return [("GPU speed", ("measured: " if d.get("calibrated") else "") + str(d["calibration"]))]
