"""What-if sweeps of a study's front: its configurations rerun under other traffic or SLAs.

``sojourn study sweep`` takes the front's points from the study's storage, reruns each
under every what-if (``sojourn.whatif``: the arrival rate scaled, the SLA replaced; the
fast tier by default) and answers, per what-if and per P(miss) target, with the cheapest
of those configurations that meets the target. Every point is judged as the study judged
its trials: a load at or above the study's ``max_load`` is not simulated and counts as
every request missing; otherwise P(miss) is what the study's ``sla_miss`` objective reads
(its statistic, the analytic value where there is one, the ``p_miss_floor``). The
baseline (no change) at the study's own fidelity reproduces the stored front.

The study's reading of P(miss) is an upper bound (or the analytic value unless the sample shows
it too low), so below its resolution (about 3 / requests sampled) it can fall when the rate
rises and more requests are sampled: read targets near it with care.

Only the front's configurations are rerun (``--configs feasible``: every feasible one): under heavier traffic a configuration the
study found dominated is not considered, so "none" means none of the front's.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

import optuna

from sojourn.evaluate import fast_applies
from sojourn.study.confirm import miss_used
from sojourn.study.front import fleet_label, front_trials, is_feasible
from sojourn.study.runner import DUPLICATE_ATTR, StudyRunner, evaluate, offered_load, screen_capacity
from sojourn.whatif import WhatIf

__all__ = [
    "DEFAULT_TARGETS", "HOURS_PER_MONTH", "SWEEP_COLUMNS", "cheapest_per_target", "config_label", "format_sweep",
    "rerun_front", "sweep_csv", "sweep_trials",
]  # fmt: skip

#: The P(miss) targets a sweep and a report answer by default.
DEFAULT_TARGETS = (1e-2, 1e-3, 1e-4)
#: Hours in an average month (8,760 / 12): what $/month multiplies $/hour by.
HOURS_PER_MONTH = 730.0


def config_label(params: dict[str, Any], base: Any) -> str:
    """"4 x h100-sxm tp2, edf": the fleet (``front.fleet_label``), and the queue discipline, model and
    precision where the space chooses them."""
    text = fleet_label(params, base)
    for key in ("discipline", "model", "precision"):
        if key in params:
            text += f", {params[key]}"
    return text


def sweep_trials(study: optuna.Study, configs: str = "front") -> list[optuna.trial.FrozenTrial]:
    """The trials a sweep reruns, cheapest first: the front's (``front``), or every feasible configuration
    the study evaluated (``feasible``: under heavier traffic a dominated one may be the answer)."""
    if configs == "front":
        return front_trials(study)
    feas = [t for t in study.trials if is_feasible(t) and DUPLICATE_ATTR not in t.user_attrs]
    return sorted(feas, key=lambda t: (t.user_attrs.get("cost_per_hour", 0.0), t.number))


def rerun_front(runner: StudyRunner, study: optuna.Study, what_ifs: Sequence[WhatIf], fidelity: str = "fast",
                replications: int | None = None, bar: Any = None,
                trials: Sequence[optuna.trial.FrozenTrial] | None = None) -> list[dict[str, Any]]:
    """One row per front configuration (or per trial of ``trials``) and what-if: its cost, P(miss) as the
    study reads it, load, tier.

    ``replications``: per run (default the study's per trial). ``bar`` (tqdm) advances by one run.
    Node capacity does not depend on the rate or the SLA: measured once per configuration, as the
    study's screen measured it, so the baseline's run is the trial's run again.
    """
    rows: list[dict[str, Any]] = []
    space = list(runner.cfg.space)
    for t in front_trials(study) if trials is None else trials:
        params = {k: t.params[k] for k in space if k in t.params}
        scenario = runner.trial_scenario(params)
        cap = screen_capacity(scenario)
        for w in what_ifs:
            sc, notes = w.apply(scenario)
            row: dict[str, Any] = {
                "what_if": w.label, "rate_scale": w.rate_scale, "sla_hours": sc.sla_hours, "trial": t.number,
                "config": config_label(params, runner.base), "cost_per_hour": sc.cost_per_hour,
                "cost_per_month": sc.cost_per_hour * HOURS_PER_MONTH, "p_miss": 1.0, "p_miss_sampled": None,
                "p_miss_ci_lo": None, "p_miss_ci_hi": None, "p_miss_analytic": None,
                "load": offered_load(sc, cap), "fidelity": None, "note": "; ".join(notes), **params,
            }  # fmt: skip
            rows.append(row)
            why_not = fast_applies(sc) if fidelity == "fast" else None
            if why_not is not None:  # left out of the answers, said in its row
                row.update(p_miss=None, note=_join(row["note"], f"not modelled by the fast tier ({why_not}): "
                                                                "rerun with --fidelity auto or request"))
            elif row["load"] is not None and row["load"] >= runner.max_load:
                row["fidelity"] = "check"
                row["note"] = _join(row["note"], f"offered load {row['load']:.3f} >= max_load {runner.max_load:.3f}: "
                                                 "not simulated, every request counts as missing")
            else:
                res = evaluate(sc, fidelity, replications=replications, n_jobs=runner.n_jobs, capacity=cap)
                ci = res.get("p_miss_ci") or (None, None)
                row.update(p_miss=miss_used(runner, res, sc), p_miss_sampled=res.get("p_miss"), p_miss_ci_lo=ci[0],
                           p_miss_ci_hi=ci[1], p_miss_analytic=res.get("analytic_p_miss"),
                           fidelity=res.get("fidelity"))
            if bar is not None:
                bar.update(1)
    return rows


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def cheapest_per_target(rows: Sequence[dict[str, Any]], targets: Sequence[float],
                        what_ifs: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per what-if (in the order given, else as the rows have them) and target: the cheapest row whose
    ``p_miss`` is at most the target (ties: the lower P(miss), then the lower trial number), or a row
    with ``trial`` None where none meets it."""
    order = list(what_ifs) if what_ifs is not None else list(dict.fromkeys(r["what_if"] for r in rows))
    out: list[dict[str, Any]] = []
    for w in order:
        mine = [r for r in rows if r["what_if"] == w]
        for target in targets:
            ok = [r for r in mine if r["p_miss"] is not None and r["p_miss"] <= target]
            best = min(ok, key=lambda r: (r["cost_per_hour"], r["p_miss"], r["trial"]), default=None)
            if best is None:
                out.append({"what_if": w, "target": target, "trial": None, "config": "none",
                            "cost_per_hour": None, "cost_per_month": None, "p_miss": None})
            else:
                out.append({**best, "target": target})
    return out


#: The columns of ``sweep.csv`` before the configuration's parameters.
SWEEP_COLUMNS = [
    "what_if", "target", "trial", "config", "cost_per_hour", "cost_per_month", "p_miss", "p_miss_sampled",
    "p_miss_ci_lo", "p_miss_ci_hi", "p_miss_analytic", "load", "fidelity", "rate_scale", "sla_hours", "note",
]  # fmt: skip


def sweep_csv(table: Sequence[dict[str, Any]], space: Sequence[str]) -> str:
    """The table as CSV: one row per what-if and target (a header even when empty)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SWEEP_COLUMNS + list(space), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    return buf.getvalue()


def _g(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.3g}"
    return str(v)


def format_sweep(table: Sequence[dict[str, Any]], n_configs: int, fidelity: str, configs: str = "front") -> str:
    """The table for a terminal, with a line on what it compares."""
    head = f"{'what-if':<18} {'P(miss) <=':>10}  {'cheapest configuration':<32} {'trial':>5} {'$/hour':>9} " \
           f"{'$/month':>10} {'P(miss)':>9} {'load':>6}"
    lines = [head]
    for r in table:
        cost, month, load = r.get("cost_per_hour"), r.get("cost_per_month"), r.get("load")
        hour_s = f"{cost:.2f}" if cost is not None else "-"
        month_s = f"{month:,.0f}" if month is not None else "-"
        load_s = f"{load:.3f}" if isinstance(load, float) else "-"
        lines.append(f"{r['what_if']:<18} {r['target']:>10.0e}  {r['config']:<32} {_g(r['trial']):>5} {hour_s:>9} "
                     f"{month_s:>10} {_g(r['p_miss']):>9} {load_s:>6}")
    among = "the study front's" if configs == "front" else "the study's feasible"
    lines.append(f"  Among {among} {n_configs} configurations, rerun on the {fidelity} tier under each "
                 "what-if; P(miss) as the study reads it (its sla_miss statistic, floored at p_miss_floor); "
                 f"$/month = $/hour x {HOURS_PER_MONTH:g}; none = none of them meets the target.")
    return "\n".join(lines)
