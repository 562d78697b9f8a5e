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

import math
from collections.abc import Callable
from typing import Any

import optuna

from sojourn._errors import ConfigError
from sojourn.study.front import is_feasible
from sojourn.study.runner import StudyRunner

__all__ = ["addition_scenario", "cheapest_addition", "compare_hardware", "own_cost_per_hour", "study_p_miss"]

HOURS_PER_YEAR = 8766.0  # 365.25 days


def own_cost_per_hour(gpu: Any, n_gpus: int, costs: Any) -> dict[str, float]:
    """$/hour of owning and operating ``n_gpus`` of this GPU."""
    capex = gpu.purchase_usd * n_gpus / (costs.years * HOURS_PER_YEAR)
    kw = gpu.tdp_w * costs.power_fraction_of_tdp * costs.pue / 1000.0 * n_gpus
    power = kw * costs.power_usd_per_kwh
    hosting = costs.hosting_usd_per_gpu_hour * n_gpus
    return {"capex_usd_per_hour": capex, "power_usd_per_hour": power, "hosting_usd_per_hour": hosting,
            "own_usd_per_hour": capex + power + hosting}


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
        cal = calibration(gpu, sv.backend, sv.profile, scenario.base_dir, scenario.model.precision,
                          scenario.model_spec().is_moe)
    return {"calibrated": cal.calibrated, "calibration": cal.source}


def compare_hardware(
    runner: StudyRunner,
    study: optuna.Study,
    target_miss: float,
    replications: int | None = None,
    max_tries: int = 3,
    bar: Any = None,
) -> list[dict[str, Any]]:
    """One row per GPU type of the study's space (or the base scenario's GPU).

    Rounds of confirmations: each round confirms, for every GPU type not yet settled, its
    cheapest candidate not yet tried; a GPU type is settled when one meets the target or
    ``max_tries`` have not. The confirmations are the study's shared, resumable jobs
    (``sojourn.study.confirm``): stored as they finish and reused by the front's, split
    among workers, resumed after Ctrl-C. ``bar`` counts them (its total grows when a
    candidate falls short).

    Each row says whether the GPU's speed is fitted on its own measurements or carried
    over from another GPU (``calibrated``, ``calibration``: ``sojourn.perf.calibration``).
    """
    from sojourn.study.front import confirm_replications

    cfg = runner.cfg
    gpus = list(cfg.space["gpu"]) if isinstance(cfg.space.get("gpu"), list) else [runner.base.fleet.gpu]
    reps = confirm_replications(runner, replications)
    cat = runner.base.catalogue_obj()
    cands = _candidates(runner, study, gpus, cat, target_miss)
    chosen = _confirm_cheapest(runner, study, gpus, cands, target_miss, reps, max_tries, bar)
    return [_row(runner, cat.gpu(gpu_id), gpu_id, cands[gpu_id], chosen.get(gpu_id), reps, max_tries)
            for gpu_id in gpus]


def _candidates(runner: StudyRunner, study: optuna.Study, gpus: list[str], cat: Any,
                target_miss: float) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Per GPU type, its feasible trials that meet the target, cheapest first."""
    feasible = [t for t in study.get_trials(deepcopy=False) if is_feasible(t)]
    cands: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for gpu_id in gpus:
        cat.gpu(gpu_id)  # an unknown GPU is a clear error before any simulation
        cs = [t for t in feasible
              if t.params.get("gpu", runner.base.fleet.gpu) == gpu_id and _trial_miss(runner, t) <= target_miss]
        cands[gpu_id] = sorted(cs, key=lambda t: (t.user_attrs["cost_per_hour"], t.number))
    return cands


def _confirm_cheapest(
    runner: StudyRunner,
    study: optuna.Study,
    gpus: list[str],
    cands: dict[str, list[optuna.trial.FrozenTrial]],
    target_miss: float,
    reps: int,
    max_tries: int,
    bar: Any,
) -> dict[str, tuple[optuna.trial.FrozenTrial, Any, dict[str, Any]]]:
    """Confirm each GPU type's candidates, cheapest first, in rounds: the first that meets the target,
    with its scenario and confirmed result (a GPU type none of whose tries met it is absent)."""
    from sojourn.study.confirm import miss_used, run_jobs

    tries = {g: 0 for g in gpus}
    chosen: dict[str, tuple[optuna.trial.FrozenTrial, Any, dict[str, Any]]] = {}
    pending = [g for g in gpus if cands[g]]
    if bar is not None:
        bar.total = len(pending)
        bar.refresh()
    while pending:
        now = {g: cands[g][tries[g]] for g in pending}
        jobs = {t.number: {k: t.params[k] for k in runner.cfg.space if k in t.params} for t in now.values()}
        results = run_jobs(runner, study, jobs, reps, bar)
        for g, t in now.items():
            res = results[t.number]
            sc = runner.trial_scenario(jobs[t.number])
            used = res.get("p_miss_used")
            used = miss_used(runner, res, sc) if used is None else float(used)
            if used <= target_miss:
                chosen[g] = (t, sc, {**res, "p_miss_used": used})
                pending.remove(g)
                continue
            tries[g] += 1
            if tries[g] >= min(max_tries, len(cands[g])):
                pending.remove(g)
            elif bar is not None:
                bar.total += 1
                bar.refresh()
    return chosen


def _row(runner: StudyRunner, gpu: Any, gpu_id: str, cands: list[optuna.trial.FrozenTrial],
         chosen: tuple[optuna.trial.FrozenTrial, Any, dict[str, Any]] | None, reps: int,
         max_tries: int) -> dict[str, Any]:
    """A GPU type's row: its chosen configuration's costs, or why there is none."""
    row: dict[str, Any] = {"gpu": gpu_id, "candidates": len(cands)}
    row.update(_calibration(runner.base, gpu.id))
    if chosen is None:
        row["note"] = (
            "no configuration in the study met the target"
            if not cands
            else f"the {min(len(cands), max_tries)} cheapest candidates failed confirmation"
        )
        row.update(rent_usd_per_hour=None, own_usd_per_hour=None)
        return row
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
        p_miss_used=res["p_miss_used"],
        replications=res.get("replications", reps),
        fragile=res.get("fragile"),
        rent_usd_per_hour=sc.cost_per_hour,
        **own_cost_per_hour(gpu, n_gpus, runner.cfg.costs),
        purchase_usd=gpu.purchase_usd * n_gpus,
        params={k: v for k, v in t.params.items()},
    )
    return row


# --- the cheapest addition to the current fleet ----------------------------------------------

#: Tensor-parallel sizes tried for an added GPU type when none is given (the smallest that fits wins).
ADD_TPS = (1, 2, 4, 8)


def addition_scenario(base: Any, gpu: str, tp: int, nodes: int) -> Any:
    """``base``'s current fleet plus ``nodes`` x ``gpu`` at ``tp`` as one more pool, bought or rented:
    its ``cost_per_hour`` is the addition's rent. The current fleet: the owned pools of a mixed
    fleet (all its pools when none is owned), or a plain fleet as one owned pool."""
    owned = [p for p in base.fleet.pools or () if p.owned] or base.fleet.pools
    pools = ([p.model_dump(exclude_none=True) for p in owned] if owned is not None else
             [{"gpu": base.fleet.gpu, "nodes": base.fleet.nodes, "tp": base.fleet.tp, "owned": True,
               **({} if base.fleet.price_usd_per_gpu_hour is None
                  else {"price_usd_per_gpu_hour": base.fleet.price_usd_per_gpu_hour})}])
    from sojourn.scenario import scenario_from_dict

    data = base.model_dump(mode="json", exclude_none=True)
    data["simulation"].update(max_requests=base.simulation.max_requests, max_batches=base.simulation.max_batches)
    fleet = {k: v for k, v in data["fleet"].items() if k not in ("gpu", "nodes", "tp", "price_usd_per_gpu_hour")}
    data["fleet"] = {**fleet, "pools": [*pools, {"gpu": gpu, "tp": tp, "nodes": nodes}]}
    return scenario_from_dict(data, base_dir=base.base_dir)


def study_p_miss(runner: StudyRunner, n_jobs: int = 1) -> Callable[[Any], float]:
    """A scenario's P(miss) as the study's sla_miss objective reads it, simulated at the study's fidelity."""
    from sojourn.study.confirm import miss_used
    from sojourn.study.runner import evaluate

    def p_miss(sc: Any) -> float:
        return miss_used(runner, evaluate(sc, fidelity=runner.fidelity, n_jobs=n_jobs), sc)

    return p_miss


def _added_tp(base: Any, gpu: str, tps: tuple[int, ...]) -> int:
    """The smallest tp of ``tps`` at which one node of ``gpu`` holds the model (ConfigError naming why none does)."""
    last: ConfigError | None = None
    for tp in tps:
        try:
            addition_scenario(base, gpu, tp, 1)
            return tp
        except ConfigError as err:
            if err.field.startswith("fleet.pools") and err.field.endswith(".gpu"):
                raise  # an unknown GPU: no tp helps
            last = err
    assert last is not None
    raise ConfigError("--gpus", f"{gpu} holds the model at none of tp {', '.join(map(str, tps))}: {last}")


def cheapest_addition(
    base: Any,
    gpus: list[str],
    target_miss: float,
    p_miss: Callable[[Any], float],
    *,
    tps: tuple[int, ...] = ADD_TPS,
    max_nodes: int = 256,
) -> list[dict[str, Any]]:
    """Per candidate GPU type, the fewest nodes to add to ``base``'s fleet so that ``p_miss`` (a
    scenario's P(miss), as the study's objective reads it) meets ``target_miss``, with their rent.

    The current fleet is kept (``addition_scenario``); the added pool runs at the smallest tp of
    ``tps`` that holds the model. P(miss) is taken to fall as nodes are added (more capacity, the
    same traffic and seeds), so the count is found by doubling then bisection: O(log n)
    evaluations. When the current fleet already meets the target, every row adds 0 nodes.
    """
    rows = []
    current = p_miss(addition_scenario(base, gpus[0], _added_tp(base, gpus[0], tps), 0)) if gpus else math.nan
    for gpu in gpus:
        tp = _added_tp(base, gpu, tps)
        miss = {0: current}

        def meets(k: int, gpu: str = gpu, tp: int = tp, miss: dict[int, float] = miss) -> bool:
            if k not in miss:
                miss[k] = p_miss(addition_scenario(base, gpu, tp, k))
            return miss[k] <= target_miss

        rows.append(_addition_row(base, gpu, tp, _fewest(meets, max_nodes), miss, max_nodes))
    return rows


def _fewest(meets: Callable[[int], bool], max_nodes: int) -> int | None:
    """The least k in 0..max_nodes with meets(k), for a monotone ``meets`` (None if none)."""
    if meets(0):
        return 0
    lo, hi = 0, 1  # meets(lo) is false
    while not meets(hi):
        if hi >= max_nodes:
            return None
        lo, hi = hi, min(2 * hi, max_nodes)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _addition_row(base: Any, gpu: str, tp: int, k: int | None, miss: dict[int, float], max_nodes: int) -> dict[str, Any]:
    row: dict[str, Any] = {"gpu": gpu, "tp": tp, "p_miss_current": miss[0], "evaluated": len(miss)}
    if k is None:
        row.update(nodes_added=None, note=f"not met with up to {max_nodes} added nodes")
        return row
    sc = addition_scenario(base, gpu, tp, k)
    row.update(nodes_added=k, gpus_added=k * tp, p_miss_used=miss[k], added_usd_per_hour=sc.cost_per_hour,
               owned_usd_per_hour=sc.owned_cost_per_hour,
               total_usd_per_hour=sc.cost_per_hour + sc.owned_cost_per_hour)
    return row
