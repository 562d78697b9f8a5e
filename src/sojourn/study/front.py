"""The Pareto front of a study: feasible, non-dominated trials, confirmed by re-simulation."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import optuna

from sojourn.study.confirm import CONFIRM_PREFIX
from sojourn.study.runner import DUPLICATE_ATTR, INFEASIBLE_ATTR, StudyRunner, _dominates, _feasible

__all__ = [
    "CONFIRM_PREFIX",
    "confirm_front",
    "confirm_replications",
    "fleet_label",
    "front_rows",
    "front_trials",
    "is_feasible",
    "non_dominated",
    "rows_to_csv",
    "rows_to_json",
    "spread",
]


def is_feasible(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == optuna.trial.TrialState.COMPLETE and _feasible(t)


def non_dominated(points: Sequence[Sequence[float]], signs: Sequence[int]) -> list[int]:
    """Indices of the non-dominated points (duplicates all kept)."""
    return [
        i
        for i, p in enumerate(points)
        if not any(_dominates(q, p, signs) for j, q in enumerate(points) if j != i)
    ]


def front_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Feasible non-dominated trials, cheapest first."""
    # A trial that repeated a configuration carries that configuration's result: list it once.
    feas = [t for t in study.trials if is_feasible(t) and DUPLICATE_ATTR not in t.user_attrs]
    signs = [1 if d == optuna.study.StudyDirection.MINIMIZE else -1 for d in study.directions]
    idx = non_dominated([t.values for t in feas], signs)
    front = [feas[i] for i in idx]
    return sorted(front, key=lambda t: (t.user_attrs.get("cost_per_hour", 0.0), t.number))


def confirm_front(runner: StudyRunner, study: optuna.Study, replications: int | None = None,
                  trials: Sequence[optuna.trial.FrozenTrial] | None = None,
                  bar: Any = None) -> dict[int, dict[str, Any]]:
    """Re-simulate front trials with more replications; each stored on the study as it finishes.

    The request tier confirms, unless the study runs at ``fidelity = "fast"``: then the
    fast tier re-simulates with more replications (and says so in ``fidelity``). The
    confirmations are jobs in the study's storage (``sojourn.study.confirm``): stored
    ones are reused, workers sharing the study split the rest, a stopped run resumes.
    """
    from sojourn.study.confirm import run_jobs

    reps = confirm_replications(runner, replications)
    chosen = list(trials) if trials is not None else spread(front_trials(study), runner.cfg.study.confirm_max)
    jobs = {t.number: {k: t.params[k] for k in runner.cfg.space if k in t.params} for t in chosen}
    return run_jobs(runner, study, jobs, reps, bar)


def confirm_replications(runner: StudyRunner, replications: int | None = None) -> int:
    """Replications of a confirmation: asked, the study's ``confirm_replications``, or twice a trial's."""
    return int(replications or runner.cfg.study.confirm_replications or 2 * runner.base.simulation.replications)


def sampled_fragility(scenario: Any, replications: int | None = None) -> dict[str, Any]:
    """P(miss) with 2% less node capacity over P(miss), by the fast tier's sample on the same traffic.

    For the points the analytic value does not cover (non-FIFO orders, the request tier's
    confirmations): two fast-tier runs with common random numbers. Empty where the fast
    tier does not model the scenario or P(miss) is 0 at full capacity.
    """
    from sojourn.evaluate import fast_applies
    from sojourn.fast import fast_simulate, node_capacity
    from sojourn.fast.simulate import FRAGILITY_CAPACITY_ERROR, FRAGILITY_LIMIT, FRAGILITY_RELEVANT

    if fast_applies(scenario) is not None:
        return {}
    cap = node_capacity(scenario)
    base = fast_simulate(scenario, replications, capacity=cap, analytic=False)
    low = fast_simulate(scenario, replications, capacity=cap.scaled(1.0 - FRAGILITY_CAPACITY_ERROR), analytic=False)
    if not base.p_miss > 0:
        return {}
    ratio = low.p_miss / base.p_miss if low.load.rho < 1.0 else math.inf
    fragile = ratio > FRAGILITY_LIMIT and (low.p_miss >= FRAGILITY_RELEVANT or not math.isfinite(ratio))
    return {"p_miss_fragility": ratio if math.isfinite(ratio) else None, "fragile": bool(fragile)}


def spread(items: Sequence[Any], k: int) -> list[Any]:
    """At most ``k`` items evenly spread over a sorted sequence, both ends included."""
    n = len(items)
    if n <= k:
        return list(items)
    if k == 1:
        return [items[0]]
    idx = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def front_rows(study: optuna.Study, space: Sequence[str], runner: StudyRunner | None = None) -> list[dict[str, Any]]:
    """One row per front trial: P(miss) (confirmed when available), its CI, cost, what to trust, every parameter.

    With ``runner`` (its base scenario and the trial's parameters), each row also says
    whether its GPU's step-time factors are fitted on its own measurements or carried
    over from another GPU (``Scenario.calibration``: ``sojourn.perf.scenario_calibration``, every
    pool's in a mixed fleet); old studies included.
    """
    rows = []
    for t in front_trials(study):
        ua = t.user_attrs
        conf = study.user_attrs.get(f"{CONFIRM_PREFIX}{t.number}")
        src = conf or ua
        ci = src.get("p_miss_ci") or [math.nan, math.nan]
        names = study.user_attrs.get("objectives", [])
        row: dict[str, Any] = {
            "trial": t.number,
            "cost_per_hour": ua.get("cost_per_hour"),
            # The value the sla_miss objective optimised (e.g. the upper bound, or the
            # fast tier's analytic value where sampling could not resolve P(miss)).
            "p_miss_objective": t.values[names.index("sla_miss")] if "sla_miss" in names else None,
            "p_miss_analytic": src.get("analytic_p_miss", ua.get("analytic_p_miss")),
            "p_miss": src.get("p_miss"),
            "p_miss_ci_lo": ci[0],
            "p_miss_ci_hi": ci[1],
            "p_miss_upper": src.get("p_miss_upper"),
            "batch_miss": src.get("batch_miss"),
            "sojourn_p99_h": _hours(src.get("sojourn_p99_s")),
            "confirmed": bool(conf),
            "replications": conf.get("replications") if conf else None,
            "fidelity": src.get("fidelity"),
            "load": ua.get("load"),
            # A 2% capacity error moves P(miss) more than 2x (fast tier's analytic, or the confirmation's sample).
            "fragile": src.get("fragile", ua.get("fragile")),
            "p_miss_fragility": src.get("p_miss_fragility", ua.get("p_miss_fragility")),
            "steady_state_note": src.get("steady_state_note", ua.get("steady_state_note")) or "",
            "p_miss_note": src.get("p_miss_note", ua.get("p_miss_note")) or "",
            "calibrated": None,
            "calibration": None,
        }
        if runner is not None:
            try:
                sc = runner.trial_scenario({k: t.params[k] for k in runner.cfg.space if k in t.params})
                row["calibrated"], row["calibration"] = sc.calibration()  # a mixed fleet's: every pool's
            except Exception as err:  # noqa: BLE001 - a row still lists what it can
                row["calibration"] = f"unknown: {err}"
        for name, value in zip(study.user_attrs.get("objectives", []), t.values):
            row[f"objective_{name}"] = value
        for name in space:
            row[name] = t.params.get(name)
        rows.append(row)
    return rows


def _hours(v: Any) -> Any:
    if isinstance(v, (int, float)) and math.isfinite(v):
        return v / 3600.0
    return v


FRONT_COLUMNS = [
    "trial", "cost_per_hour", "p_miss_objective", "p_miss_analytic", "p_miss", "p_miss_ci_lo", "p_miss_ci_hi",
    "p_miss_upper", "batch_miss", "sojourn_p99_h", "confirmed", "replications", "fidelity", "load", "fragile",
    "p_miss_fragility", "steady_state_note", "p_miss_note", "calibrated", "calibration",
]  # fmt: skip


def rows_to_csv(rows: list[dict[str, Any]], space: Sequence[str] = ()) -> str:
    """CSV with a header even when the front is empty (so scripts can rely on the columns)."""
    buf = io.StringIO()
    fields = list(rows[0]) if rows else FRONT_COLUMNS + list(space)
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def rows_to_json(rows: list[dict[str, Any]]) -> str:
    """Strict JSON: a non-finite number (an infinite p99 objective) is null, as in the result JSON."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(rows), indent=2, allow_nan=False) + "\n"


def trial_summary(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    ua = t.user_attrs
    return {
        "trial": t.number,
        "feasible": is_feasible(t),
        "reason": ua.get(INFEASIBLE_ATTR),
        "cost_per_hour": ua.get("cost_per_hour"),
        "p_miss_upper": ua.get("p_miss_upper"),
        "params": dict(t.params),
    }


def fleet_label(params: dict[str, Any], base: Any, short: bool = False) -> str:
    """A configuration's fleet in words: "7 x h100-sxm tp1" ("7×h100-sxm tp1" when ``short``, for plots),
    with ", 4 spot" where spot nodes are part of it; a mixed fleet's pools joined by " + ", owned ones
    marked ("3 x a100-80gb tp1 owned + 6 x h100-sxm tp1"), empty pools left out. The nodes, GPU, tp,
    spot share and pools are the trial's where the space sets them, the study scenario's otherwise."""
    from sojourn.scenario import SpotNodes

    fleet = base.fleet
    times = "×" if short else " x "
    pools = getattr(fleet, "pools", None)
    if pools:
        parts = []
        for i, pool in enumerate(pools):
            n, gpu, tp = (params.get(f"fleet.pools.{i}.{k}", getattr(pool, k)) for k in ("nodes", "gpu", "tp"))
            if n:
                parts.append(f"{n}{times}{gpu} tp{tp}" + (" owned" if pool.owned else ""))
        return " + ".join(parts)
    nodes = params.get("nodes", fleet.nodes)
    text = f"{nodes}{times}{params.get('gpu', fleet.gpu)} tp{params.get('tp', fleet.tp)}"
    share = params.get("fleet.spot.share", fleet.spot.share if getattr(fleet, "spot", None) else 0.0)
    spot = SpotNodes(share=share).nodes_of(nodes) if share else 0
    return text + (f", {spot} spot" if spot else "")
