"""Tail asymptotics of the fast tier: adjustment coefficients, constants, integrated tails."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize

from sojourn.distributions import parse_distribution
from sojourn.fast import (
    adjustment_coefficient,
    batch_size_pgf,
    distribution_mgf,
    fast_simulate,
    fifo_tail,
    node_capacity,
)
from sojourn.fast.tails import excess_mean, survival
from sojourn.scenario import scenario_from_dict


def generic(rate_per_s, service, sla_s, batch=None, profile=None):
    wl = {
        "batch_rate_per_hour": rate_per_s * 3600.0,
        "batch_size": batch or {"dist": "fixed", "value": 1},
        "input_tokens": {"dist": "fixed", "value": 1},
        "output_tokens": {"dist": "fixed", "value": 1},
    }
    if profile:
        wl["rate_profile"] = profile
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": wl,
        "fleet": {"server": {"kind": "generic", "service_time": service}},
        "serving": {"on_deadline": "finish"},
        "simulation": {"horizon_hours": 10.0, "warmup_hours": 0.5, "replications": 8, "seed": 3},
    })


@pytest.mark.parametrize(("lam", "mu"), [(0.5, 1.0), (0.9, 1.0), (3.0, 4.0)])
def test_cramer_lundberg_coefficient_is_the_mm1_decay_rate(lam, mu):
    g = adjustment_coefficient(lam, lambda s: mu / (mu - s) if s < mu else math.inf, 1.0 / mu)
    assert g == pytest.approx(mu - lam, rel=1e-10)


def test_scenario_tail_of_mm1_is_exact():
    sc = generic(0.8, {"dist": "exponential", "mean": 0.5}, 10.0)  # mu = 2
    tail = fifo_tail(sc, node_capacity(sc))
    assert tail.regime == "cramer-lundberg"
    assert tail.gamma == pytest.approx(2.0 - 0.8, rel=1e-9)
    assert tail.constant == pytest.approx(0.4, rel=1e-6)  # rho
    assert tail.sf(3.0) == pytest.approx(0.4 * math.exp(-1.2 * 3.0), rel=1e-6)


def test_geometric_batches_of_exponentials_are_mm1_with_a_slower_server():
    # A geometric(p) sum of Exp(mu) is Exp(p·mu): the batch queue is M/M/1 with rate p·mu.
    m = 4.0
    sc = generic(0.15, {"dist": "exponential", "mean": 1.0}, 100.0, batch={"dist": "geometric", "mean": m})
    tail = fifo_tail(sc, node_capacity(sc))
    assert tail.gamma == pytest.approx(1.0 / m - 0.15, rel=1e-8)
    assert tail.constant == pytest.approx(0.15 * m, rel=1e-5)


def test_md1_coefficient_solves_the_lundberg_equation():
    lam, d = 0.6, 1.0
    sc = generic(lam, {"dist": "fixed", "value": d}, 10.0)
    g = fifo_tail(sc, node_capacity(sc)).gamma
    ref = optimize.brentq(lambda s: lam * (math.exp(s * d) - 1.0) - s, 1e-6, 20.0)
    assert g == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("spec", [
    {"dist": "exponential", "mean": 2.0},
    {"dist": "gamma", "mean": 2.0, "cv": 0.5},
    {"dist": "uniform", "low": 0.5, "high": 3.0},
    {"dist": "fixed", "value": 1.5},
    {"dist": "lognormal", "median": 1.0, "sigma": 0.8, "max": 6.0},
    {"dist": "empirical", "values": [0.5, 1.0, 4.0]},
])
def test_mgf_against_monte_carlo(spec):
    d = parse_distribution(spec)
    x = d.sample(np.random.default_rng(0), 2_000_000)
    for s in (-0.3, 0.1, 0.2):
        mc = float(np.mean(np.exp(s * x)))
        se = float(np.std(np.exp(s * x))) / math.sqrt(len(x))
        assert abs(distribution_mgf(d, s) - mc) < 5 * se + 1e-9


def test_heavy_mgf_diverges():
    assert math.isinf(distribution_mgf(parse_distribution({"dist": "lognormal", "median": 1, "sigma": 1}), 0.01))
    assert math.isinf(batch_size_pgf(parse_distribution({"dist": "pareto", "shape": 2.5, "scale": 10}), 1.01))


@pytest.mark.parametrize("spec", [
    {"dist": "geometric", "mean": 5.0},
    {"dist": "exponential", "mean": 5.0},
    {"dist": "gamma", "mean": 20.0, "cv": 0.7},
    {"dist": "uniform", "low": 1.0, "high": 40.0},
    {"dist": "lognormal", "median": 30.0, "sigma": 1.0, "max": 500.0},
])
def test_pgf_of_the_integer_batch_size(spec):
    d = parse_distribution(spec)
    x = d.sample_int(np.random.default_rng(1), 2_000_000)
    for z in (0.9, 1.01, 1.02):
        v = z**x.astype(np.float64)
        if not np.isfinite(v).all():
            continue
        se = float(np.std(v)) / math.sqrt(len(v))
        assert abs(batch_size_pgf(d, z) - float(np.mean(v))) < 6 * se + 1e-9


@pytest.mark.parametrize("spec", [
    {"dist": "lognormal", "median": 300.0, "sigma": 1.2},
    {"dist": "pareto", "shape": 1.8, "scale": 100.0},
    {"dist": "gamma", "mean": 100.0, "cv": 2.0},
])
def test_integrated_tail_closed_forms(spec):
    d = parse_distribution(spec)
    for m in (50.0, 400.0, 5000.0):
        ref, _ = integrate.quad(lambda y: float(d.sf(y)), m, np.inf, limit=400)
        assert float(excess_mean(d, m)) == pytest.approx(ref, rel=1e-6, abs=1e-9)
        assert float(survival(d, m)) == pytest.approx(float(d.sf(m)), rel=1e-12)


def test_heavy_tailed_batches_name_the_subexponential_regime():
    sc = generic(0.008, {"dist": "exponential", "mean": 1.0}, 3000.0, batch={"dist": "pareto", "shape": 1.8, "scale": 40})
    r = fast_simulate(sc, min_batches=200_000)
    assert r.analytic_regime.startswith("subexponential")
    assert math.isfinite(r.analytic_p_miss)
    # Far in the tail both tiers see the same order of magnitude.
    assert 0.33 < r.analytic_p_miss / r.p_miss < 3.0, (r.analytic_p_miss, r.p_miss, r.p_miss_ci)


def test_analytic_reaches_below_sampling_and_says_so():
    # M/M/1 at rho = 0.5 with a 60 s deadline: P(miss) = e^{-30} ~ 1e-13, far below any sample.
    sc = generic(0.5, {"dist": "exponential", "mean": 1.0}, 60.0)
    r = fast_simulate(sc, min_batches=20_000)
    assert r.p_miss == 0.0
    assert r.analytic_p_miss == pytest.approx(math.exp(-0.5 * 60.0), rel=1e-3)
    assert r.p_miss_best == r.analytic_p_miss
    assert "no miss" in r.agreement and r.analytic_p_miss < r.p_miss_upper
    assert r.tiers["p_miss_best"] == "analytic"


def test_time_of_day_profile_gives_a_peak_rate_upper_bound():
    profile = [0.5] * 12 + [1.5] * 12
    sc = generic(0.5, {"dist": "exponential", "mean": 1.0}, 15.0, profile=profile)
    r = fast_simulate(sc, min_batches=200_000)
    assert r.analytic_regime.startswith("upper bound")
    assert r.analytic_p_miss >= r.p_miss_ci[0]
    assert r.load.rho_peak == pytest.approx(0.75)


def test_a_heavy_tailed_batch_near_full_load_gets_a_value_not_an_exception():
    """Found by the search_quality benchmark: on the quickstart's lognormal batches at load 0.966 the
    rounding of M_B(s) - 1 near 0 hid kappa's dip, brentq raised, and the study stopped (catch=())."""
    from pathlib import Path

    import optuna

    from sojourn.study import StudyRunner, load_study

    runner = StudyRunner(load_study(Path(__file__).resolve().parents[1] / "studies" / "quickstart.toml"))
    params = {"gpu": "h200", "tp": 2, "nodes": 5, "max_num_batched_tokens": 512, "max_num_seqs": 256,
              "gpu_memory_utilization": 0.95, "discipline": "fifo"}
    trial = optuna.trial.FixedTrial(params)
    miss, cost = runner.objective()(trial)
    assert 0.9 < trial.user_attrs["load"] < runner.max_load
    a = trial.user_attrs["analytic_p_miss"]
    assert a is not None and 0 < a < 1e-3 and math.isfinite(miss)
