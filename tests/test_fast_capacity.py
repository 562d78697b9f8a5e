"""Node capacity for the fast tier: the saturated engine, the work measure, the load report."""

from __future__ import annotations

import numpy as np
import pytest

from sojourn.fast import load_report, node_capacity
from sojourn.scenario import scenario_from_dict


def llm(**serving):
    return scenario_from_dict({
        "sla_hours": 0.1,
        "workload": {
            "batch_rate_per_hour": 100.0,
            "batch_size": {"dist": "geometric", "mean": 50},
            "input_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6},
            "output_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.6},
        },
        "fleet": {"nodes": 2, "gpu": "h100-sxm"},
        "serving": {"max_num_seqs": 64, "max_model_len": 8192, **serving},
        "simulation": {"horizon_hours": 1.0, "warmup_hours": 0.1, "replications": 2, "seed": 1},
    })


def test_generic_capacity_is_concurrency_over_mean_service():
    sc = scenario_from_dict({
        "workload": {"batch_rate_per_hour": 3600, "input_tokens": {"dist": "fixed", "value": 1},
                     "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": 3, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 2.0},
                                         "concurrency": 4}},
    })
    cap = node_capacity(sc)
    assert cap.requests_per_s == pytest.approx(2.0)
    assert cap.work_mean == pytest.approx(0.5)
    rep = load_report(sc, cap)
    assert rep.capacity_rps == pytest.approx(6.0)
    assert rep.rho == pytest.approx(1.0 / 6.0)


def test_engine_capacity_is_cached_per_node_configuration():
    a = node_capacity(llm())
    assert node_capacity(llm()) is a
    # The node count and the queue settings do not change a node's capacity.
    assert node_capacity(llm().with_updates({"fleet.nodes": 7, "serving.discipline": "lifo"})) is a
    b = node_capacity(llm(max_num_seqs=32))
    assert b is not a and b.requests_per_s < a.requests_per_s


def test_work_measure_mean_is_one_over_throughput_and_splits_by_size():
    cap = node_capacity(llm())
    assert cap.work_mean == pytest.approx(1.0 / cap.requests_per_s, rel=1e-12)
    w = cap.work_of(np.array([100, 4000, 300, 300]), np.array([100, 100, 20, 400]))
    assert w[1] > w[0] and w[3] > w[2] > 0
    assert cap.concurrency == pytest.approx(64, rel=0.02)
    assert cap.latency.mean == pytest.approx(cap.concurrency / cap.requests_per_s, rel=0.05)  # Little


def test_analytic_cross_check_is_in_the_right_range():
    cap = node_capacity(llm())
    assert 0.7 < cap.analytic_requests_per_s / cap.requests_per_s < 1.3


def test_engine_capacity_matches_a_saturated_request_level_fleet():
    from sojourn.request import simulate

    base = llm()
    cap = node_capacity(base)
    # Offered at 1.5x capacity, late work finished: the fleet runs flat out all the horizon.
    rate = 1.5 * 2 * cap.requests_per_s * 3600.0 / base.workload.batch_size.int_mean
    sc = base.with_updates({"workload.batch_rate_per_hour": rate, "sla_hours": 5.0, "serving.on_deadline": "finish",
                            "simulation.horizon_hours": 0.15, "simulation.warmup_hours": 0.05})
    r = simulate(sc)
    assert r.busy_fraction == pytest.approx(1.0, abs=1e-6)
    assert r.throughput_rps == pytest.approx(2 * cap.requests_per_s, rel=0.02)


def test_load_report_counts_refused_requests_out():
    sc = llm().with_updates({"workload.output_tokens": {"dist": "lognormal", "median": 3000, "sigma": 1.0},
                             "serving.max_model_len": 4096})
    cap = node_capacity(sc)
    assert 0.05 < cap.reject_fraction < 0.9
    rep = load_report(sc, cap)
    offered = sc.workload.mean_requests_per_hour / 3600.0
    assert rep.rho == pytest.approx(offered * (1 - cap.reject_fraction) / rep.capacity_rps)
    assert "rho" in rep.describe()
