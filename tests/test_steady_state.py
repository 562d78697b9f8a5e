"""Steady state: stationary starts, warm-up flags, MSER-5 and the two-halves test, both tiers.

The exact reference is M/M/1 FIFO: the sojourn is exponential with rate μ − λ, so
P(S > T) = e^{−(μ−λ)T}. At rho = 0.95 the queue relaxes over 1/μ(1 − √ρ)² ≈ 1,560 s,
so a run of 500 s that starts empty sees a far emptier queue than the stationary one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sojourn.fast import fast_simulate
from sojourn.request import simulate
from sojourn.scenario import scenario_from_dict
from sojourn.steady import SteadyState, mser_truncation


def mm1(rho=0.95, sla_s=40.0, horizon_s=500.0, warm_s=0.0, reps=40, start="stationary", profile=None, seed=5,
        on_deadline="finish"):
    wl = {"batch_rate_per_hour": rho * 3600.0, "batch_size": {"dist": "fixed", "value": 1},
          "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}}
    if profile:
        wl["rate_profile"] = profile
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": wl,
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
        "serving": {"on_deadline": on_deadline},
        "simulation": {"horizon_hours": horizon_s / 3600.0, "warmup_hours": warm_s / 3600.0,
                       "replications": reps, "seed": seed, "start": start},
    })


def test_request_tier_stationary_start_is_unbiased_where_an_empty_start_reads_low():
    exact = math.exp(-0.05 * 40.0)
    st = simulate(mm1())
    assert st.steady_state.start == "stationary"
    assert st.p_miss_ci[0] <= exact <= st.p_miss_ci[1], (st.p_miss_ci, exact)
    empty = simulate(mm1(start="empty"))
    assert empty.steady_state.start == "empty"
    assert empty.p_miss_ci[1] < exact, (empty.p_miss_ci, exact)  # the transient reads low...
    assert "reads low" in empty.steady_state.note  # ...and the run says so
    assert "relaxation time" in empty.steady_state.note
    assert st.steady_state.note == ""


def test_request_tier_mean_wait_of_a_stationary_start_matches_mm1():
    st = simulate(mm1(reps=60))
    lo, hi = st.wait_mean_ci
    assert lo <= 0.95 / 0.05 <= hi, (lo, hi)  # E[W] = ρ/(μ − λ) = 19 s


def test_fast_tier_starts_stationary_and_an_empty_start_extends_its_warm_up():
    r = fast_simulate(mm1(horizon_s=3600.0, reps=8))
    assert r.steady_state.start == "stationary"
    assert r.steady_state.ok, r.steady_state.note
    e = fast_simulate(mm1(horizon_s=3600.0, reps=8, start="empty"))
    assert e.steady_state.start == "empty"
    # 3 relaxation times of warm-up instead of none, said in the result.
    assert e.steady_state.warmup_hours * 3600 >= 3 * 1500
    assert any("warm-up" in a for a in e.steady_state.adjusted)


def test_a_rate_profile_starts_empty_and_a_short_warm_up_is_flagged():
    # No stationary law under a daily profile: the request tier starts empty and says the
    # 0.1 h warm-up is far below the relaxation time at this load.
    sc = mm1(rho=0.9, horizon_s=7200.0, warm_s=360.0, reps=3, profile=[1.0] * 24)
    r = simulate(sc)
    assert r.steady_state.start == "empty"
    assert "reads low" in r.steady_state.note and "warmup_hours" in r.steady_state.note


def test_unstable_fleet_is_reported_unstable_not_as_a_small_probability():
    from sojourn.evaluate import sla_miss_value

    sc = mm1(rho=1.1, horizon_s=2000.0, reps=3)
    d = simulate(sc).to_dict()
    assert d["stable"] is False and d["load"] == pytest.approx(1.1)
    assert "unstable" in d["steady_state_note"]
    assert sla_miss_value(d, "upper") == (1.0, "unstable")
    f = fast_simulate(sc).to_dict()
    assert f["stable"] is False
    assert sla_miss_value(f, "mean") == (1.0, "unstable")
    # Cancelling at the deadline bounds an overloaded fleet: its sampled value stands.
    c = simulate(mm1(rho=1.1, horizon_s=2000.0, reps=3, on_deadline="cancel")).to_dict()
    value, source = sla_miss_value(c, "mean", cancel=True)
    assert source == "sampled" and 0 < value < 1


def test_mser_finds_an_initial_transient_and_not_one_in_noise():
    rng = np.random.default_rng(1)
    n = 2000
    noise = rng.normal(0.0, 1.0, n)
    trend = 10.0 * np.exp(-np.arange(n) / 150.0)  # a transient of ~500 observations
    d = mser_truncation(trend + noise)
    assert 250 <= d <= 900, d
    assert mser_truncation(noise) < 0.2 * n
    # A series that trends all the way: the truncation runs to the end of MSER's search.
    assert mser_truncation(np.linspace(0.0, 10.0, n) + noise) >= 0.45 * n


def test_two_halves_test_flags_a_trend_and_passes_noise():
    series = np.ones(200)
    ok = SteadyState("stationary", 1.0, 10.0, 1.0)
    rng = np.random.default_rng(2)
    a = rng.normal(5.0, 1.0, 8)
    ok.check(series, 11.0, a, a + rng.normal(0.0, 1.0, 8))
    assert ok.ok, ok.note
    bad = SteadyState("stationary", 1.0, 10.0, 1.0)
    bad.check(series, 11.0, a, a + 3.0 + rng.normal(0.0, 0.3, 8))
    assert not bad.ok and "two halves" in bad.note


def test_empty_start_flags_a_transient_that_runs_past_the_warm_up():
    t = np.arange(200)
    series = 20.0 * (1.0 - np.exp(-t / 60.0))  # still rising well past bin 20 (the warm-up)
    st = SteadyState("empty", warmup_hours=1.0, span_hours=9.0, relaxation_hours=3.0)
    st.check(series, 10.0)
    assert not st.ok and "MSER" in st.note


def test_load_margin_from_the_workloads_variance():
    from sojourn.steady import load_margin

    # A batch API: hundreds of batches per SLA window, the capacity model's 0.98 binds.
    many = mm1(rho=0.5, sla_s=86400.0)
    assert load_margin(many)[0] == pytest.approx(1 / 1.02)
    # A few huge batches a day: the window's work varies a lot, the margin is the load where
    # exp(-2(1 - rho)/(rho^2 CV^2)) = 1/2.
    few = scenario_from_dict({
        "sla_hours": 24, "workload": {"batch_rate_per_hour": 0.2, "batch_size": {"dist": "fixed", "value": 10000},
                                      "input_tokens": {"dist": "fixed", "value": 1},
                                      "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
    })
    rho, why = load_margin(few)
    cv2 = (1e8 + 1e4) / (0.2 * 24 * 1e8)
    assert rho < 0.98 and "CV" in why
    assert math.exp(-2 * (1 - rho) / (rho * rho * cv2)) == pytest.approx(0.5, rel=1e-9)


def test_study_max_load_accepts_auto_or_a_positive_number(tmp_path):
    from sojourn._errors import ConfigError
    from sojourn.study import load_study

    sc = tmp_path / "s.toml"
    sc.write_text('[workload]\nbatch_rate_per_hour = 10\ninput_tokens = { dist = "fixed", value = 10 }\n'
                  'output_tokens = { dist = "fixed", value = 10 }\n')
    for value, ok in (('"auto"', True), ("0.9", True), ("-1", False), ('"big"', False)):
        f = tmp_path / "study.toml"
        f.write_text(f'[study]\nname = "s"\nscenario = "s.toml"\nmax_load = {value}\n[space]\nnodes = [1, 2]\n')
        if ok:
            load_study(f)
        else:
            with pytest.raises(ConfigError) as err:
                load_study(f)
            assert "max_load" in str(err.value)
