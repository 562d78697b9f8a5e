"""Disciplines do what they claim, on generic servers and on LLM engines.

Each comparison runs the disciplines on the same traffic (common random numbers:
same seed) and asks that the 95% replication intervals do not overlap.
"""

from __future__ import annotations

import math

import pytest

from sojourn.request import simulate
from sojourn.scenario import scenario_from_dict


def generic(discipline, rate_per_s, sla_s, service=None, classes=None):
    d = {
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": rate_per_s * 3600.0, "input_tokens": {"dist": "fixed", "value": 1},
                     "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": 1, "server": {"kind": "generic",
                                         "service_time": service or {"dist": "fixed", "value": 1.0}}},
        "serving": {"discipline": discipline},
        "simulation": {"horizon_hours": 1.0, "warmup_hours": 0.2, "replications": 3, "seed": 2},
    }
    if classes:
        d["workload"]["sla_classes"] = classes
    return scenario_from_dict(d)


def engine(discipline, batches_per_hour):
    return scenario_from_dict({
        "sla_hours": 0.05,
        "workload": {"batch_rate_per_hour": batches_per_hour, "batch_size": {"dist": "geometric", "mean": 20},
                     "input_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.7, "max": 4000},
                     "output_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.7, "max": 2000}},
        "fleet": {"nodes": 1},
        "serving": {"max_model_len": 8192, "max_num_seqs": 64, "discipline": discipline},
        "simulation": {"horizon_hours": 0.3, "warmup_hours": 0.1, "replications": 3, "seed": 5},
    })


def clearly_below(a, b):
    """a's miss probability is below b's: their 95% intervals do not overlap."""
    return a.p_miss_ci[1] < b.p_miss_ci[0]


@pytest.mark.parametrize("better", ["lifo", "triage"])
def test_under_overload_lifo_and_triage_miss_fewer_than_fifo(better):
    # rho = 1.3 with deterministic 1 s service and a 60 s SLA: FIFO starts requests with
    # almost no slack left, which the deadline then cancels mid-service (wasted capacity).
    fifo = simulate(generic("fifo", 1.3, 60.0))
    other = simulate(generic(better, 1.3, 60.0))
    assert clearly_below(other, fifo)
    assert other.throughput_rps > fifo.throughput_rps
    if better == "triage":
        assert other.cancelled_by.get("triage", 0) > 0


@pytest.mark.parametrize("better", ["lifo", "triage"])
def test_on_an_llm_engine_too(better):
    fifo = simulate(engine("fifo", 4000.0))  # about twice the node's capacity
    other = simulate(engine(better, 4000.0))
    assert clearly_below(other, fifo)


def test_edf_honours_per_batch_deadlines():
    # Two SLA classes, 20 s and 10 min, at rho = 0.95: FIFO lets the short ones expire
    # behind long ones; EDF serves them first and the long ones still make it.
    classes = [{"hours": 20 / 3600}, {"hours": 600 / 3600}]
    svc = {"dist": "exponential", "mean": 1.0}
    fifo = simulate(generic("fifo", 0.95, 60.0, svc, classes))
    edf = simulate(generic("edf", 0.95, 60.0, svc, classes))
    assert fifo.requests_cancelled > 0
    assert edf.p_miss < fifo.p_miss
    assert all(e.misses < f.misses for e, f in zip(edf.reps, fifo.reps))  # in every replication


def test_sjf_shortens_the_mean_sojourn_on_an_engine():
    # Shortest prompt first lowers the mean sojourn when the queue is long (classic SPT result).
    fifo = simulate(engine("fifo", 2000.0))
    sjf = simulate(engine("sjf", 2000.0))
    assert sjf.sojourn_mean_s < fifo.sojourn_mean_s


def test_per_class_miss_probabilities_add_up_and_show_where_edf_helps():
    # The same two-class traffic as above: each class gets its own P(miss) and interval,
    # the classes' misses add up to the total, and EDF's gain is in the 20 s class.
    classes = [{"hours": 20 / 3600}, {"hours": 600 / 3600}]
    svc = {"dist": "exponential", "mean": 1.0}
    fifo = simulate(generic("fifo", 0.95, 60.0, svc, classes))
    edf = simulate(generic("edf", 0.95, 60.0, svc, classes))
    for res in (fifo, edf):
        by = {round(c["sla_hours"] * 3600): c for c in res.to_dict()["by_sla_class"]}
        assert set(by) == {20, 600}
        assert sum(c["requests_arrived"] for c in by.values()) == res.requests_arrived
        total = sum(c["p_miss"] * c["requests_arrived"] for c in by.values())
        assert total == pytest.approx(res.p_miss * res.requests_arrived, rel=1e-9)
    f20 = next(c for c in fifo.by_sla_class if round(c["sla_hours"] * 3600) == 20)
    e20 = next(c for c in edf.by_sla_class if round(c["sla_hours"] * 3600) == 20)
    assert e20["p_miss_ci"][1] < f20["p_miss_ci"][0]
    # Each class's own interval against an exact value: with late work finished, FIFO is an
    # M/M/1 queue whatever the classes, so a class misses with P(S > its SLA) = exp(-0.05 SLA):
    # e^-1 for the 20 s class, e^-30 for the 600 s one (none in ~5,000 requests).
    fin = simulate(generic("fifo", 0.95, 60.0, svc, classes).with_updates({"serving.on_deadline": "finish"}))
    by = {round(c["sla_hours"] * 3600): c for c in fin.by_sla_class}
    lo, hi = by[20]["p_miss_ci"]
    assert lo <= math.exp(-1.0) <= hi, (lo, hi)
    assert by[600]["p_miss"] == 0.0 and by[600]["requests_arrived"] > 1000
