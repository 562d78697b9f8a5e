"""Bounds that are bounds: zero-miss intervals, unseen batch sizes, the analytic floor under a bound,
oversize batches, fragility, and the one rule for which P(miss) a study optimises."""

from __future__ import annotations

import math

import pytest

from sojourn.distributions import parse_distribution
from sojourn.evaluate import sla_miss_value
from sojourn.fast import fast_simulate, node_capacity
from sojourn.fast.capacity import load_report
from sojourn.request import simulate
from sojourn.scenario import scenario_from_dict
from sojourn.stats import best_p_miss, clopper_pearson_upper, episode_sizes, unseen_share


def generic(rate, mean, sla_s, batch=None, on_deadline="finish", horizon_h=2.0, reps=4, seed=3):
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": rate * 3600.0, "batch_size": batch or {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": mean}}},
        "serving": {"on_deadline": on_deadline},
        "simulation": {"horizon_hours": horizon_h, "warmup_hours": 0.1, "replications": reps, "seed": seed},
    })


def test_zero_misses_give_a_one_sided_interval_never_zero_zero():
    sc = generic(0.3, 1.0, 120.0)  # M/M/1 at rho 0.3, SLA 120 s: P(miss) = e^{-84}
    for r in (simulate(sc).to_dict(), fast_simulate(sc).to_dict()):
        assert r["p_miss"] == 0.0
        lo, hi = r["p_miss_ci"]
        assert lo == 0.0 and hi > 0.0 and hi == r["p_miss_upper"]
        # About the rule of three over the batches measured.
        n = r["batches_measured"] if "batches_measured" in r else r["requests_arrived"]
        assert r["p_miss_upper"] == pytest.approx(clopper_pearson_upper(0, n), rel=0.05)


def test_fast_bound_never_lies_below_the_analytic_value_beside_it():
    # M/M/1 at rho 0.9 with a deadline where a short run sees no miss but the law gives 1e-4.
    sc = generic(0.9, 1.0, 70.0, horizon_h=0.05, reps=2)
    r = fast_simulate(sc, min_batches=100)
    assert math.isfinite(r.analytic_p_miss)
    assert r.p_miss_upper >= r.analytic_p_miss_upper >= r.analytic_p_miss
    assert r.p_miss_ci[1] >= r.analytic_p_miss


def test_the_bound_adds_batches_larger_than_any_sampled():
    batch = {"dist": "pareto", "shape": 1.5, "scale": 10.0}
    xd = parse_distribution(batch)
    sc = generic(0.02, 0.5, 4000.0, batch=batch, horizon_h=3.0, reps=3)
    for r in (simulate(sc), fast_simulate(sc, min_batches=200)):
        d = r.to_dict()
        assert d["p_miss_unseen"] > 0
        # E[X; X > x_max]/E[X] of a Pareto: (x_max/scale)^(1 - shape), x_max the largest sampled.
        assert d["p_miss_unseen"] <= 1.0
        assert d["p_miss_upper"] >= d["p_miss_unseen"]
    assert unseen_share(xd, 1000.0) == pytest.approx((1000.0 / 10.0) ** (1 - 1.5), rel=1e-6)
    # Capped at a size the sample holds: nothing unseen.
    capped = parse_distribution({**batch, "max": 200.0})
    assert unseen_share(capped, 200.0) == 0.0


@pytest.mark.parametrize(("p", "upper", "lo", "a", "a_up", "stat", "want", "src"), [
    (1e-3, 2e-3, 5e-4, math.nan, math.nan, "upper", 2e-3, "sampled"),
    (1e-3, 2e-3, 5e-4, math.nan, math.nan, "mean", 1e-3, "sampled"),
    (1e-3, 2e-3, 5e-4, 8e-4, 9e-4, "mean", 8e-4, "analytic"),  # inside the interval
    (1e-3, 2e-3, 5e-4, 8e-4, 9e-4, "upper", 9e-4, "analytic"),
    (0.0, 3e-5, 0.0, 1e-7, 1.2e-7, "upper", 1.2e-7, "analytic"),  # sampling saw nothing
    (1e-4, 3e-4, 5e-5, 1e-3, 1.1e-3, "mean", 1e-3, "analytic"),  # a short sample sees fewer misses
    (1e-3, 2e-3, 5e-4, 1e-5, 2e-5, "mean", 1e-3, "larger of sampled and analytic (they disagree)"),
    (1e-3, 2e-3, 5e-4, 1e-5, 2e-5, "upper", 2e-3, "larger of sampled and analytic (they disagree)"),
])
def test_best_p_miss_rule(p, upper, lo, a, a_up, stat, want, src):
    assert best_p_miss(p, upper, lo, a, a_up, stat) == (pytest.approx(want), src)


def test_sla_miss_objective_reads_results_through_the_same_rule():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("sla_miss", Path(__file__).parents[1] / "objectives" / "sla_miss.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sc = generic(0.9, 1.0, 40.0)
    d = fast_simulate(sc).to_dict()

    class Settings:
        p_miss_floor = 0.0
        sla_miss_statistic = "upper"

    assert mod.objective(d, sc, Settings) == sla_miss_value(d, "upper")[0]
    assert sla_miss_value(d, "upper")[1] == "analytic"
    Settings.sla_miss_statistic = "mean"
    assert mod.objective(d, sc, Settings) == pytest.approx(d["analytic_p_miss"])
    Settings.p_miss_floor = 0.5
    assert mod.objective(d, sc, Settings) == 0.5


def test_oversize_batches_are_counted_apart():
    # One node serving 1 request/s; every batch holds 3x what it serves in one 100 s SLA:
    # at least 2/3 of every batch misses whatever the fleet does.
    sc = generic(0.001, 1.0, 100.0, batch={"dist": "fixed", "value": 300}, on_deadline="cancel", horizon_h=20.0)
    f = fast_simulate(sc, min_batches=500)
    assert f.p_miss_oversize_floor == pytest.approx(2 / 3, rel=0.01)
    assert f.p_miss_oversize == pytest.approx(f.p_miss, rel=1e-9)
    assert f.p_miss >= f.p_miss_oversize_floor
    r = simulate(sc)
    assert r.p_miss_oversize == pytest.approx(r.p_miss, rel=1e-9)
    assert r.p_miss >= 2 / 3 - 0.01
    light = fast_simulate(generic(0.001, 1.0, 100.0, batch={"dist": "fixed", "value": 30}, horizon_h=20.0),
                          min_batches=500)
    assert light.p_miss_oversize == 0.0 and light.p_miss_oversize_floor == 0.0


def test_capacity_scaling_and_fragility():
    sc = generic(0.9, 1.0, 40.0)
    cap = node_capacity(sc)
    cap98 = cap.scaled(0.98)
    assert load_report(sc, cap98).rho == pytest.approx(load_report(sc, cap).rho / 0.98)
    assert cap98.work_mean == pytest.approx(cap.work_mean / 0.98)
    # Its work order statistics are carried over, scaled (no second sort of the pool): what a sort gives.
    carried = cap98.work_quantiles
    del cap98.__dict__["work_quantiles"]
    assert (carried == cap98.work_quantiles).all() and carried[-1] == pytest.approx(cap.work_quantiles[-1] / 0.98)
    heavy = fast_simulate(generic(0.97, 1.0, 400.0))  # P(miss) ~ e^{-0.03 * 400}: 2% capacity is x2.2
    assert heavy.fragile and heavy.p_miss_fragility > 2
    light = fast_simulate(generic(0.5, 1.0, 10.0))  # e^{-5} -> e^{-4.8}: x1.2
    assert not light.fragile and 1.0 < light.p_miss_fragility < 2
    over = fast_simulate(generic(0.985, 1.0, 400.0))  # 2% less capacity is overload
    assert over.fragile and over.to_dict()["p_miss_fragility"] is None


def test_episodes_group_missed_batches_within_an_sla():
    assert episode_sizes([0.0, 5.0, 50.0, 52.0, 200.0], [1, 2, 3, 4, 5], [10.0] * 5) == [3.0, 7.0, 5.0]
    assert episode_sizes([], [], []) == []
