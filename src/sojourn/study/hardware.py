"""Hardware comparison: per GPU type, the cheapest configuration meeting a P(miss) target.

Candidates come from a study's feasible trials; the cheapest candidate of each
GPU type is confirmed by re-simulating with more replications (request tier, or
the fast tier for a ``fidelity = "fast"`` study): P(miss) as the study's sla_miss
objective reads it (by default the upper 95% bound) must meet the target, else the
next cheapest is tried. Rent is the catalogue's $/GPU-hour; own-and-operate
amortises the purchase price over the study's ``costs.years`` and adds power
(TDP x draw fraction x PUE at $/kWh) and hosting.
"""

from __future__ import annotations

from typing import Any

import optuna

from sojourn.study.front import is_feasible
from sojourn.study.runner import StudyRunner, evaluate

__all__ = ["compare_hardware", "own_cost_per_hour"]

HOURS_PER_YEAR = 8766.0  # 365.25 days


def own_cost_per_hour(gpu: Any, n_gpus: int, costs: Any) -> dict[str, float]:
    """$/hour of owning and operating ``n_gpus`` of this GPU."""
    capex = gpu.purchase_usd * n_gpus / (costs.years * HOURS_PER_YEAR)
    kw = gpu.tdp_w * costs.power_fraction_of_tdp * costs.pue / 1000.0 * n_gpus
    power = kw * costs.power_usd_per_kwh
    hosting = costs.hosting_usd_per_gpu_hour * n_gpus
    return {"capex_usd_per_hour": capex, "power_usd_per_hour": power, "hosting_usd_per_hour": hosting,
            "own_usd_per_hour": capex + power + hosting}


def _result_miss(runner: StudyRunner, result: dict[str, Any], scenario: Any) -> float:
    """P(miss) as the study's sla_miss objective reads it (the upper bound without one)."""
    obj = next((o for o in runner.objectives if o.name == "sla_miss"), None)
    return obj(result, scenario, runner.cfg.study) if obj else float(result["p_miss_upper"])


def _trial_miss(runner: StudyRunner, t: optuna.trial.FrozenTrial) -> float:
    names = [o.name for o in runner.objectives]
    if "sla_miss" in names and t.values:
        return float(t.values[names.index("sla_miss")])
    v = t.user_attrs.get("p_miss_upper")
    return float(v) if v is not None else 1.0


def _calibration(scenario: Any, gpu: str | None = None) -> dict[str, Any]:
    """``calibrated`` and ``calibration`` of the scenario's replicas, or of ``gpu`` with its engine and profile."""
    from sojourn.perf import calibration, scenario_calibration

    if gpu is None or scenario.fleet.server is not None:
        cal = scenario_calibration(scenario)
    else:
        sv = scenario.serving
        cal = calibration(gpu, sv.backend, sv.profile, scenario.base_dir)
    return {"calibrated": cal.calibrated, "calibration": cal.source}


def compare_hardware(
    runner: StudyRunner,
    study: optuna.Study,
    target_miss: float,
    replications: int | None = None,
    max_tries: int = 3,
) -> list[dict[str, Any]]:
    """One row per GPU type of the study's space (or the base scenario's GPU).

    Each row says whether the GPU's speed is fitted on its own measurements or carried
    over from another GPU (``calibrated``, ``calibration``: ``sojourn.perf.calibration``).
    """
    cfg = runner.cfg
    gpus = list(cfg.space["gpu"]) if isinstance(cfg.space.get("gpu"), list) else [runner.base.fleet.gpu]
    reps = replications or cfg.study.confirm_replications or 2 * runner.base.simulation.replications
    cat = runner.base.catalogue_obj()
    rows = []
    for gpu_id in gpus:
        gpu = cat.gpu(gpu_id)
        cands = [
            t for t in study.trials
            if is_feasible(t)
            and t.params.get("gpu", runner.base.fleet.gpu) == gpu_id
            and _trial_miss(runner, t) <= target_miss
        ]
        cands.sort(key=lambda t: (t.user_attrs["cost_per_hour"], t.number))
        row: dict[str, Any] = {"gpu": gpu_id, "candidates": len(cands)}
        row.update(_calibration(runner.base, gpu.id))
        chosen = None
        for t in cands[:max_tries]:
            sc = runner.trial_scenario({k: t.params[k] for k in cfg.space if k in t.params})
            res = evaluate(sc, runner.confirm_fidelity, replications=reps, n_jobs=runner.n_jobs)
            if _result_miss(runner, res, sc) <= target_miss:
                chosen = (t, sc, res)
                break
        if chosen is None:
            row["note"] = (
                "no configuration in the study met the target"
                if not cands
                else f"the {min(len(cands), max_tries)} cheapest candidates failed confirmation"
            )
            row.update(rent_usd_per_hour=None, own_usd_per_hour=None)
            rows.append(row)
            continue
        t, sc, res = chosen
        row.update(_calibration(sc))  # the chosen configuration's engine and profile
        n_gpus = sc.fleet.nodes * sc.fleet.tp
        row.update(
            trial=t.number,
            nodes=sc.fleet.nodes,
            tp=sc.fleet.tp,
            gpus=n_gpus,
            p_miss=res["p_miss"],
            p_miss_upper=res["p_miss_upper"],
            p_miss_used=_result_miss(runner, res, sc),
            replications=reps,
            fragile=res.get("fragile"),
            rent_usd_per_hour=sc.cost_per_hour,
            **own_cost_per_hour(gpu, n_gpus, cfg.costs),
            purchase_usd=gpu.purchase_usd * n_gpus,
            params={k: v for k, v in t.params.items()},
        )
        rows.append(row)
    return rows
