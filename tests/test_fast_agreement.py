"""The fast tier against the request-level simulator on small scenarios, with fixed seeds.

Agreement means: the fast P(miss) lies inside the request-level 95% interval (or,
where the simulator saw no miss, below its upper bound), and throughputs agree
within 5%. The wider study of agreement is ``benchmarks/agreement.py``.
"""

from __future__ import annotations

import pytest

from sojourn.fast import fast_simulate, node_capacity
from sojourn.request import simulate
from sojourn.scenario import scenario_from_dict


def generic(rate, service, sla_s, *, batch=None, nodes=1, discipline="fifo", on_deadline="finish", hours=2.0):
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": rate * 3600.0, "batch_size": batch or {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": nodes, "server": {"kind": "generic", "service_time": service}},
        "serving": {"discipline": discipline, "on_deadline": on_deadline},
        "simulation": {"horizon_hours": hours, "warmup_hours": 0.2, "replications": 4, "seed": 5},
    })


def llm(rho, sla_s, discipline="fifo", classes=None):
    d = {
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": 10.0, "batch_size": {"dist": "geometric", "mean": 100},
                     "input_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6},
                     "output_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.6}},
        "fleet": {"nodes": 1, "gpu": "h100-sxm"},
        "serving": {"max_num_seqs": 64, "max_model_len": 8192, "discipline": discipline},
        "simulation": {"horizon_hours": 0.5, "warmup_hours": 0.1, "replications": 4, "seed": 9},
    }
    if classes:
        d["workload"]["sla_classes"] = classes
    sc = scenario_from_dict(d)
    rate = rho * node_capacity(sc).requests_per_s * 3600.0 / sc.workload.batch_size.int_mean
    return sc.with_updates({"workload.batch_rate_per_hour": rate})


def agree(sc, n_jobs=1):
    req = simulate(sc, n_jobs=n_jobs)
    fast = fast_simulate(sc)
    lo, hi = req.p_miss_ci
    assert lo <= fast.p_miss <= max(hi, req.p_miss_upper), (fast.p_miss, req.p_miss_ci, req.p_miss_upper)
    assert fast.throughput_rps == pytest.approx(req.throughput_rps, rel=0.05)
    assert fast.to_dict()["fidelity"] == "fast"
    return req, fast


def test_batches_on_two_servers():
    agree(generic(0.4, {"dist": "exponential", "mean": 1.0}, 10.0, batch={"dist": "geometric", "mean": 4}, nodes=2))


@pytest.mark.parametrize("discipline", ["fifo", "lifo"])
def test_overload_with_cancellation(discipline):
    req, fast = agree(generic(1.3, {"dist": "fixed", "value": 1.0}, 60.0, discipline=discipline,
                              on_deadline="cancel", hours=1.0))
    assert fast.batch_miss == pytest.approx(req.batch_miss, abs=0.03)


def test_heavy_tailed_batches_on_eight_servers():
    agree(generic(0.05, {"dist": "exponential", "mean": 1.0}, 60.0, nodes=8, on_deadline="cancel",
                  batch={"dist": "lognormal", "median": 100, "sigma": 0.8}))


@pytest.mark.slow
@pytest.mark.parametrize("discipline", ["fifo", "lifo", "sjf"])
def test_llm_node(discipline):
    req, fast = agree(llm(0.8, 30.0, discipline))
    assert fast.sojourn_mean_s == pytest.approx(req.sojourn_mean_s, rel=0.15)


@pytest.mark.slow
def test_llm_node_edf_with_two_deadlines():
    agree(llm(0.9, 30.0, "edf", classes=[{"hours": 15 / 3600}, {"hours": 60 / 3600}]))


@pytest.mark.slow
@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_llm_node_sjf_work_with_a_forecast(sigma):
    # Least predicted work first in overload: the fast tier splits batches by the pool's
    # forecast works, the request tier orders requests by theirs.
    agree(llm(1.2, 600.0, "sjf_work").with_updates({"serving.forecast_sigma": sigma}))
