"""``fast_simulate``'s contract: the request-level result's keys, tiers, determinism, every discipline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sojourn import ConfigError
from sojourn.fast import FAST_DISCIPLINES, fast_simulate
from sojourn.fast.batches import arrival_times
from sojourn.scenario import scenario_from_dict

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def scenario(**over):
    d = {
        "sla_hours": 0.02,
        "workload": {"batch_rate_per_hour": 200.0, "batch_size": {"dist": "geometric", "mean": 40},
                     "input_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6},
                     "output_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.6}},
        "fleet": {"nodes": 1, "gpu": "h100-sxm"},
        "serving": {"max_num_seqs": 64, "max_model_len": 8192},
        "simulation": {"horizon_hours": 1.0, "warmup_hours": 0.1, "replications": 3, "seed": 4},
    }
    sc = scenario_from_dict(d)
    return sc.with_updates(over) if over else sc


def test_result_has_the_request_level_keys_and_its_own():
    from sojourn.request import SimResult

    r = fast_simulate(scenario(), min_batches=5_000).to_dict()
    json.dumps(r)  # plain JSON
    sim_keys = {"p_miss", "p_miss_ci", "p_miss_upper", "batch_miss", "sojourn_mean_s", "sojourn_p50_s",
                "sojourn_p90_s", "sojourn_p99_s", "wait_mean_s", "throughput_rps", "requests_arrived",
                "requests_completed", "requests_rejected", "requests_cancelled", "requests_in_system",
                "cost_per_hour", "fidelity"}
    assert sim_keys <= set(r)
    assert sim_keys <= set(SimResult.__dataclass_fields__) | {"fidelity"}
    assert r["fidelity"] == "fast"
    for k in ("load", "capacity_rps", "analytic_p_miss", "analytic_regime", "tiers", "agreement"):
        assert k in r
    assert r["tiers"]["p_miss"].startswith("fluid") and r["tiers"]["capacity_rps"].startswith("engine")
    assert 0 < r["load"] < 1
    # Conservation (the counts are expectations over latencies, rounded: within a couple of requests).
    accounted = r["requests_completed"] + r["requests_rejected"] + r["requests_cancelled"]
    assert abs(r["requests_arrived"] - accounted) <= 2


def test_same_seed_same_result_different_seed_different():
    a = fast_simulate(scenario(), min_batches=5_000)
    b = fast_simulate(scenario(), min_batches=5_000)
    c = fast_simulate(scenario(), seed=99, min_batches=5_000)
    assert a.to_dict() | {"wall_s": 0} == b.to_dict() | {"wall_s": 0}
    assert a.sojourn_mean_s != c.sojourn_mean_s  # other traffic (P(miss) may be 0 in both)


@pytest.mark.parametrize("discipline", FAST_DISCIPLINES)
@pytest.mark.parametrize("on_deadline", ["cancel", "finish"])
def test_every_discipline_runs_and_is_sane(discipline, on_deadline):
    r = fast_simulate(scenario(**{"serving.discipline": discipline, "serving.on_deadline": on_deadline}),
                      min_batches=3_000)
    # A 72 s SLA against a mean sojourn of about 2 s at load 0.06: nothing misses, and the interval
    # is one-sided, [0, the upper bound] (never [0, 0]), that bound below 1%.
    assert r.p_miss == 0.0 and r.p_miss_ci == (0.0, r.p_miss_upper) and 0.0 < r.p_miss_upper < 0.01
    assert r.sojourn_mean_s > r.wait_mean_s >= 0.0
    assert r.throughput_rps == pytest.approx(r.load.offered_rps * (1 - r.p_miss), rel=0.05)
    if on_deadline == "cancel":
        assert r.sojourn_p50_s <= scenario().sla_seconds or math.isinf(r.sojourn_p50_s)


def test_unsupported_discipline_names_the_field():
    with pytest.raises(ConfigError, match="serving.discipline"):
        fast_simulate(scenario(**{"serving.discipline": "fair"}))


def test_profile_arrivals_follow_the_hourly_rates():
    prof = [0.0] * 6 + [2.0] * 18
    t = arrival_times(np.random.default_rng(1), 100 / 3600.0, 48 * 3600.0, prof)
    hours = (t // 3600).astype(int) % 24
    assert np.all(hours >= 6)
    # 18 hours a day at twice the base rate of 100 batches an hour, for two days.
    assert len(t) == pytest.approx(100 * 2.0 * 18 * 2, rel=0.05)


def test_max_queue_and_refused_lengths_are_misses():
    sc = scenario(**{"serving.max_queue": 20, "workload.batch_rate_per_hour": 900.0,
                     "workload.output_tokens": {"dist": "lognormal", "median": 100, "sigma": 2.5}})
    r = fast_simulate(sc, min_batches=3_000)
    assert r.requests_rejected > 0
    assert r.p_miss >= r.requests_rejected / r.requests_arrived - 1e-9


@pytest.mark.skipif(not (DATA / "AzureLLMInferenceTrace_conv.csv").exists(), reason="needs ../shared/data")
def test_trace_workload_uses_the_trace_mix():
    sc = scenario_from_dict({
        "sla_hours": 0.05,
        "workload": {"trace": str(DATA / "AzureLLMInferenceTrace_conv.csv"), "format": "azure",
                     "rate_scale": 2.0, "batch_window_s": 30},
        "fleet": {"nodes": 1, "gpu": "h100-sxm"},
        "serving": {"max_num_seqs": 128, "max_model_len": 8192},
        "simulation": {"horizon_hours": 0.5, "warmup_hours": 0.1, "replications": 2, "seed": 4},
    })
    r = fast_simulate(sc)
    assert r.analytic_regime.startswith("none")
    assert 0.3 < r.load.rho < 1.0
    assert r.requests_arrived > 1000


def test_result_is_a_mapping_and_offered_load_is_exposed():
    from sojourn.fast import offered_load

    r = fast_simulate(scenario(), min_batches=2_000)
    d = dict(r)
    assert d == r.to_dict() and r["fidelity"] == "fast"
    assert offered_load(scenario()) == pytest.approx(r.load.rho)


@pytest.mark.skipif(not (DATA / "AzureLLMInferenceTrace_conv.csv").exists(), reason="needs ../shared/data")
def test_generic_nodes_replaying_a_trace_take_shortest_prompt_first_on_its_prompts():
    # The fast tier's sjf key pool on generic nodes comes from the trace, as the request
    # tier's prompts do (it used to be all ones: the token distributions are refused beside a trace).
    from sojourn.fast import node_capacity
    from sojourn.sim.workload import load_trace

    path = DATA / "AzureLLMInferenceTrace_conv.csv"
    sc = scenario_from_dict({
        "sla_hours": 0.05,
        "workload": {"trace": str(path), "format": "azure"},
        "fleet": {"nodes": 1, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
        "serving": {"discipline": "sjf"},
        "simulation": {"horizon_hours": 0.5, "warmup_hours": 0.1, "replications": 2, "seed": 4},
    })
    pool = node_capacity(sc).inputs
    _, inp, _ = load_trace(path, "azure")
    assert set(np.unique(pool)) <= set(inp.astype(np.float64))
    assert pool.mean() == pytest.approx(inp.mean(), rel=0.05)
