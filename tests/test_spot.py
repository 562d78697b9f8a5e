"""Spot nodes (``fleet.spot``): reclaims with a notice, re-acquisition, the spot price.

Checks: with no notice a reclaim is a failure with recompute and re-acquisition its repair, so
the exact M/M/c breakdown chain (``tests/_breakdowns.py``) holds; the long-run share
of time a spot node serves and is paid for (conservation) against the renewal cycle's means;
the rent, expected and as paid; what the notice does (a node on notice admits nothing, and
only what outlives the notice is recomputed); the tiers agree; a study may search the share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from _breakdowns import breakdown_chain
from sojourn.request import simulate
from sojourn.scenario import Scenario, load_scenario, scenario_from_dict


def spot(lam: float, nodes: int, share: float, service: dict[str, Any], reclaim_s: float, notice_s: float,
         reacquire_s: float, reps: int = 10, horizon_h: float = 4.0, seed: int = 3,
         sla_hours: float = 1000.0, batch: dict[str, Any] | None = None) -> Scenario:
    return scenario_from_dict({
        "sla_hours": sla_hours,
        "workload": {"batch_rate_per_hour": lam * 3600.0, "batch_size": batch or {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": nodes, "server": {"kind": "generic", "service_time": service},
                  "spot": {"share": share, "reclaims_per_hour": 3600.0 / reclaim_s, "notice_s": notice_s,
                           "reacquire_hours": reacquire_s / 3600.0, "price_usd_per_gpu_hour": 1.0}},
        "simulation": {"horizon_hours": horizon_h, "warmup_hours": 0.25, "replications": reps, "start": "empty",
                       "seed": seed},
    })


EXP = {"dist": "exponential", "mean": 1.0}


def test_reclaims_without_notice_are_the_exact_breakdown_chain() -> None:
    lam, reclaim_s, reacquire_s = 0.5, 200.0, 20.0
    exact = breakdown_chain(lam, 1.0, 1, 1.0 / reclaim_s, 1.0 / reacquire_s)[0] / lam
    r = simulate(spot(lam, 1, 1.0, EXP, reclaim_s, 0.0, reacquire_s)).to_result()
    assert r["sojourn_mean_ci"][0] <= exact <= r["sojourn_mean_ci"][1], (exact, r["sojourn_mean_ci"])
    assert r["fleet_realism"]["reclaims"] > 0 and r["fleet_realism"]["spot_nodes"] == 1


def test_spot_time_shares_and_rent_are_the_cycle_means() -> None:
    # 2 of 4 nodes spot: up 600 s on average, 60 s notice, 300 s to re-acquire. Serving share of a
    # spot node 600/960, paid share (up and notice) 660/960; on-demand nodes serve and are paid always.
    reclaim_s, notice_s, reacquire_s = 600.0, 60.0, 300.0
    sc = spot(1.0, 4, 0.5, EXP, reclaim_s, notice_s, reacquire_s, reps=12, horizon_h=6.0, seed=9)
    cycle = reclaim_s + notice_s + reacquire_s
    serving = (2 + 2 * reclaim_s / cycle) / 4
    price_od = sc.price_per_gpu_hour
    rent = 2 * price_od + 2 * 1.0 * (reclaim_s + notice_s) / cycle
    assert sc.fleet_realism().serving_share() == pytest.approx(serving)
    assert sc.cost_per_hour == pytest.approx(rent)
    res = simulate(sc)
    node_s = 4 * 6.0 * 3600.0
    for key, want in (("serving_node_s", serving), ("cost_usd", rent)):
        scale = node_s if key == "serving_node_s" else 6.0  # shares of node-time; dollars an hour
        x = np.array([r.realism[key] / scale for r in res.reps])
        lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        assert lo <= want <= hi, (key, want, lo, hi)


def test_a_node_on_notice_admits_nothing_and_finishes_what_outlives_no_notice() -> None:
    # Service takes exactly 1 s and the notice is 5 s: every request running at a notice ends
    # within it, and the node admits none after it, so a reclaim recomputes nothing.
    fixed = {"dist": "fixed", "value": 1.0}
    long = simulate(spot(0.5, 2, 0.5, fixed, 100.0, 5.0, 20.0, reps=4)).to_result()["fleet_realism"]
    assert long["reclaims"] > 10 and long["requests_recomputed"] == 0
    # A 0.5 s notice is shorter than the service: a node busy at its notice loses its request.
    short = simulate(spot(0.5, 2, 0.5, fixed, 100.0, 0.5, 20.0, reps=4)).to_result()["fleet_realism"]
    assert short["requests_recomputed"] > 0


def test_catalogue_spot_defaults_and_price() -> None:
    sc = load_scenario("studies/quickstart-scenario.toml").with_updates({"fleet.spot.share": 0.5})
    r = sc.fleet_realism()
    assert r is not None and r.spot_nodes == 2
    # The catalogue's 60% discount (Google Cloud's low end), AWS's two-minute notice.
    assert r.spot_price == pytest.approx(0.4 * sc.price_per_gpu_hour)
    assert r.notice_s == 120.0
    # Share 0: no spot node, and the rent of an all on-demand fleet.
    none = sc.with_updates({"fleet.spot.share": 0.0})
    assert none.fleet_realism().spot_nodes == 0
    assert none.cost_per_hour == pytest.approx(4 * sc.price_per_gpu_hour)


def test_tiers_agree_on_a_spot_scenario() -> None:
    from sojourn.fast import fast_simulate

    sc = spot(0.1, 4, 0.5, EXP, 1800.0, 30.0, 600.0, reps=8, horizon_h=12.0, seed=13, sla_hours=60.0 / 3600.0,
              batch={"dist": "geometric", "mean": 20})
    q = simulate(sc).to_result()
    f = fast_simulate(sc).to_result()
    assert q["p_miss_ci"][0] <= f["p_miss_ci"][1] and f["p_miss_ci"][0] <= q["p_miss_ci"][1], (q["p_miss_ci"],
                                                                                                f["p_miss_ci"])
    assert f["fleet_realism"]["serving_share"] == pytest.approx(sc.fleet_realism().serving_share(), rel=0.05)


def test_a_study_may_search_the_spot_share() -> None:
    from sojourn.study.config import StudyConfig

    base = load_scenario("studies/quickstart-scenario.toml")
    cfg = StudyConfig.model_validate({
        "study": {"name": "spot", "scenario": "studies/quickstart-scenario.toml", "n_trials": 2},
        "space": {"fleet.spot.share": [0.0, 0.5, 1.0], "nodes": [4, 8]},
    })
    cfg.check_space(base)  # the path goes through a section the base leaves unset: each trial sets it
    for share, nodes in ((0.5, 8), (1.0, 4)):
        sc = base.with_updates({"fleet.spot.share": share, "fleet.nodes": nodes})
        assert sc.fleet_realism().spot_nodes == round(share * nodes)


def test_the_shipped_fleet_realism_study_loads_and_screens_on_the_fast_tier() -> None:
    from pathlib import Path

    from sojourn.study.config import load_study
    from sojourn.study.runner import StudyRunner

    runner = StudyRunner(load_study(Path(__file__).resolve().parents[1] / "studies" / "fleet-realism.toml"))
    assert runner.base.fleet_realism() is not None
    assert runner.request_tier_choices() == []
    assert runner.cfg.space["fleet.spot.share"] == [0.0, 0.25, 0.5, 0.75, 1.0]
