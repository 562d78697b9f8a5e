"""Estimation: reproducibility across workers, intervals from replications, bounds with no miss."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sojourn.request import SimResult, ratio_ci, simulate
from sojourn.scenario import scenario_from_dict

KEYS = {
    "p_miss", "p_miss_ci", "p_miss_upper", "batch_miss", "sojourn_mean_s", "sojourn_p50_s", "sojourn_p90_s",
    "sojourn_p99_s", "wait_mean_s", "throughput_rps", "requests_arrived", "requests_completed",
    "requests_rejected", "requests_cancelled", "requests_in_system", "preemptions", "kv_utilization",
    "busy_fraction", "cost_per_hour", "fidelity", "sojourn_mean_ci", "wait_mean_ci",
}


def mm1(rate_per_s=0.8, sla_s=3600.0, hours=2.0, **extra):
    d = {
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": rate_per_s * 3600, "input_tokens": {"dist": "fixed", "value": 1},
                     "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": 1, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
        "simulation": {"horizon_hours": hours, "warmup_hours": 0.2, "replications": 4, "seed": 11},
    }
    d.update(extra)
    return scenario_from_dict(d)


def engine_small():
    return scenario_from_dict({
        "sla_hours": 0.05,
        "workload": {"batch_rate_per_hour": 400.0, "batch_size": {"dist": "geometric", "mean": 6},
                     "input_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.7, "max": 4000},
                     "output_tokens": {"dist": "lognormal", "median": 150, "sigma": 0.7, "max": 1000}},
        "fleet": {"nodes": 2},
        "serving": {"max_model_len": 8192},
        "simulation": {"horizon_hours": 0.3, "warmup_hours": 0.05, "replications": 3, "seed": 5},
    })


def strip(d):
    return {k: v for k, v in d.items() if k != "wall_s"}


@pytest.mark.parametrize("make", [mm1, engine_small])
def test_same_result_for_any_number_of_jobs(make):
    sc = make()
    a = simulate(sc, n_jobs=1, keep_samples=True)
    b = simulate(sc, n_jobs=2, keep_samples=True)
    assert strip(a.to_dict()) == strip(b.to_dict())
    for ra, rb in zip(a.reps, b.reps):
        assert np.array_equal(ra.sojourn, rb.sojourn)


def test_seed_fixes_the_result_and_changes_it():
    sc = mm1(hours=0.5)
    a, b, c = simulate(sc, seed=3), simulate(sc, seed=3), simulate(sc, seed=4)
    assert strip(a.to_dict()) == strip(b.to_dict())
    assert a.sojourn_mean_s != c.sojourn_mean_s


def test_result_has_the_documented_keys_and_is_consistent():
    # M/M/1 (0.8 arrivals a second, mean service 1 s), late work finished: the sojourn is
    # exponential of rate 0.2, so each statistic is checked against its exact value, not
    # against the estimate its interval is built around.
    r = simulate(mm1(sla_s=10.0, hours=0.5, serving={"on_deadline": "finish"}), replications=3, keep_samples=True)
    assert isinstance(r, SimResult)
    d = r.to_dict()
    assert KEYS <= set(d)
    assert d["fidelity"] == "request"
    assert d["requests_arrived"] == d["requests_completed"] + d["requests_rejected"] + d["requests_cancelled"] \
        + d["requests_in_system"]
    lo, hi = d["p_miss_ci"]
    assert lo <= math.exp(-2.0) <= hi, (lo, hi)  # P(S > 10 s)
    assert d["sojourn_mean_ci"][0] <= 5.0 <= d["sojourn_mean_ci"][1], d["sojourn_mean_ci"]  # 1/(mu - lambda)
    assert d["wait_mean_ci"][0] <= 4.0 <= d["wait_mean_ci"][1], d["wait_mean_ci"]  # rho/(mu - lambda)
    served = np.concatenate([x.sojourn for x in r.reps])
    assert len(served) == d["requests_arrived"]
    for q, key in ((0.5, "sojourn_p50_s"), (0.9, "sojourn_p90_s"), (0.99, "sojourn_p99_s")):
        x = d[key]
        assert np.mean(served <= x) >= q > np.mean(served < x), key  # the q-quantile of every request
        _, qlo, qhi = r.exceed(-math.log(1.0 - q) / 0.2)  # P(S > the exact q-quantile) = 1 - q
        assert qlo <= 1.0 - q <= qhi, (key, qlo, qhi)
    assert r.replications == 3


def test_no_miss_still_reports_an_upper_bound():
    r = simulate(mm1(hours=0.5, sla_s=3600.0))
    # Never an interval [0, 0]: with no miss it is one-sided, [0, the upper bound].
    assert r.p_miss == 0.0 and r.p_miss_ci == (0.0, r.p_miss_upper)
    # One request per batch: Kish's effective size is the number of batches, rule of three.
    n = r.requests_arrived
    assert r.p_miss_upper == pytest.approx(1 - 0.05 ** (1 / n))
    assert 2.9 / n < r.p_miss_upper < 3.1 / n


def test_a_class_without_misses_gets_a_one_sided_interval_not_zero_zero():
    # M/M/1 at load 0.5: P(S > 10 s) = e^-5 (some misses), P(S > 1 h) = e^-1800 (none).
    sc = mm1(rate_per_s=0.5, hours=0.5).with_updates(
        {"workload.sla_classes": [{"hours": 10 / 3600}, {"hours": 1.0}]})
    r = simulate(sc)
    by = {round(c["sla_hours"] * 3600): c for c in r.by_sla_class}
    assert by[10]["p_miss"] > 0 and by[3600]["p_miss"] == 0.0
    assert by[3600]["p_miss_ci"][0] == 0.0
    assert by[3600]["p_miss_ci"][1] > 0.0  # as the overall interval with no miss: [0, upper]


def test_upper_bound_counts_batches_not_requests():
    # Batches of 100 requests: the bound is ~3/(number of batches), far above 3/(requests).
    sc = mm1(rate_per_s=0.005, hours=1.0, sla_s=36000.0)
    sc = sc.with_updates({"workload.batch_size": {"dist": "fixed", "value": 100}})
    r = simulate(sc)
    assert r.p_miss == 0.0
    batches = sum(x.batches for x in r.reps)
    assert r.p_miss_upper == pytest.approx(1 - 0.05 ** (1 / batches))
    assert r.p_miss_upper > 50 * 3 / r.requests_arrived


def test_exceed_matches_p_miss_at_the_sla_and_is_monotone():
    # Late work finished (no cancellation), so the queue is a plain M/M/1.
    r = simulate(mm1(rate_per_s=0.8, sla_s=20.0, hours=2.0, serving={"on_deadline": "finish"}), keep_samples=True)
    est, lo, hi = r.exceed(20.0)
    assert est == pytest.approx(r.p_miss)
    assert lo < math.exp(-4.0) < hi  # P(S > 20) = exp(-0.2 * 20)
    values = [r.exceed(t)[0] for t in (0.5, 2.0, 8.0, 20.0)]
    assert values == sorted(values, reverse=True)
    # M/M/1 sojourn is exponential with rate mu - lambda = 0.2: P(S > 8) = exp(-1.6).
    e8, lo8, hi8 = r.exceed(8.0)
    assert lo8 < math.exp(-1.6) < hi8  # the 95% replication interval, fixed seed


def test_cancelling_at_the_deadline_truncates_sojourns():
    r = simulate(mm1(rate_per_s=0.9, sla_s=20.0, hours=1.0), keep_samples=True)
    assert r.requests_cancelled > 0
    assert all(np.all(x.sojourn <= 20.0) for x in r.reps)
    assert r.exceed(20.0)[0] == pytest.approx(r.p_miss)


def test_exceed_needs_kept_samples():
    r = simulate(mm1(hours=0.2))
    with pytest.raises(ValueError, match="keep_samples"):
        r.exceed(1.0)


def test_ratio_ci_is_a_t_interval_over_replications():
    num = np.array([1.0, 2.0, 3.0, 2.0])
    den = np.array([10.0, 10.0, 10.0, 10.0])
    est, lo, hi = ratio_ci(num, den)
    per = num / den
    from scipy import stats

    h = stats.t.ppf(0.975, 3) * per.std(ddof=1) / 2
    assert est == pytest.approx(0.2) and lo == pytest.approx(0.2 - h) and hi == pytest.approx(0.2 + h)


def test_replications_below_two_are_refused():
    from sojourn._errors import ConfigError

    with pytest.raises(ConfigError, match="replications"):
        simulate(mm1(), replications=1)


def test_engine_statistics_are_in_range():
    r = simulate(engine_small())
    assert 0.0 < r.busy_fraction <= 1.0
    assert 0.0 < r.kv_utilization <= 1.0
    assert r.throughput_rps > 0
    assert r.cost_per_hour > 0


def test_progress_reporting_does_not_change_results(capsys):
    from sojourn.request import simulate
    from sojourn.scenario import load_scenario

    sc = load_scenario(Path(__file__).resolve().parents[1] / "examples" / "generic-mmc.toml")
    sc = sc.with_updates({"simulation.horizon_hours": 0.5})
    quiet = simulate(sc, replications=2, progress=False).to_dict()
    loud = simulate(sc, replications=2, progress=True).to_dict()
    assert "replication 2/2" in capsys.readouterr().err
    seen: list[tuple[float, int]] = []
    bar = simulate(sc, replications=2, progress=lambda done, total: seen.append((done, total))).to_dict()
    for d in (quiet, loud, bar):
        d.pop("wall_s")
    assert quiet == loud == bar
    # A progress bar's callback: within each replication by tenths of its span, then each replication done.
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == 2.0 and {t for _, t in seen} == {2}
    assert 1.0 in done and sum(0 < d < 1 for d in done) == 9


def _episodic(mean_batch, sla_s, seed=10):
    """M^X/M/8 at rho 0.9 with cancellation: misses come in congestion episodes (benchmarks/ci_coverage.py)."""
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": 0.9 * 8 / mean_batch * 3600.0,
                     "batch_size": {"dist": "geometric", "mean": mean_batch},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": 1, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0},
                                         "concurrency": 8}},
        "serving": {"on_deadline": "cancel"},
        "simulation": {"horizon_hours": 3.0, "warmup_hours": 0.2, "replications": 5, "seed": seed},
    })


def test_misses_are_grouped_into_congestion_episodes():
    r = simulate(_episodic(200, 500.0), n_jobs=1)
    for rep in r.reps:
        # Every miss belongs to exactly one episode; an episode holds at least one missed batch.
        assert sum(rep.miss_episodes) == rep.misses
        assert len(rep.miss_episodes) <= rep.batches_missed
        assert (len(rep.miss_episodes) > 0) == (rep.misses > 0)
    assert r.miss_episodes == sum(len(rep.miss_episodes) for rep in r.reps) > 0
    sizes = np.array([m for rep in r.reps for m in rep.miss_episodes], dtype=float)
    assert r.miss_episodes_effective == pytest.approx(sizes.sum() ** 2 / (sizes @ sizes))
    assert 1.0 <= r.miss_episodes_effective <= r.miss_episodes


def test_an_interval_over_few_episodes_is_flagged_and_one_over_many_is_not():
    few = simulate(_episodic(200, 500.0), n_jobs=1)
    assert few.p_miss > 0 and few.miss_episodes_effective < 10
    assert "episodes" in few.p_miss_note and few.to_dict()["p_miss_note"] == few.p_miss_note
    many = simulate(_episodic(50, 60.0), n_jobs=1)
    assert many.miss_episodes_effective >= 10
    assert many.p_miss_note == ""
    # No miss at all: nothing to flag (the upper bound speaks for itself).
    none = simulate(_episodic(50, 3600.0), n_jobs=1)
    assert none.p_miss == 0 and none.miss_episodes == 0 and none.p_miss_note == ""
