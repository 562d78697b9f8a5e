"""Per-request work forecasts (``serving.forecast_sigma``), ``sjf_work`` and ``triage``'s estimate.

The forecast is the truth times a lognormal error of log-sd ``forecast_sigma`` (0: an
oracle); without one a scheduler knows only the distributions. Comparisons run on the
same traffic (same seed). The exact check of ``sjf_work`` with an oracle forecast
against Phipps' M/G/1 shortest-job-first formula is in test_sim_theory.py.
"""

from __future__ import annotations

import math

import pytest

from sojourn import ConfigError
from sojourn.request import simulate
from sojourn.scenario import scenario_from_dict
from sojourn.sim.engine import Engine, Request
from sojourn.sim.fleet import FleetSim, SimRequest


def engine(discipline, batches_per_hour, sigma=None, sla_s=180.0, prompt=None, seed=5):
    d = {
        "sla_hours": sla_s / 3600.0,
        "workload": {
            "batch_rate_per_hour": batches_per_hour,
            "batch_size": {"dist": "geometric", "mean": 20},
            "input_tokens": prompt or {"dist": "fixed", "value": 600},
            "output_tokens": {"dist": "lognormal", "median": 200, "sigma": 1.2, "max": 4000},
        },
        "fleet": {"nodes": 1},
        "serving": {"max_model_len": 8192, "max_num_seqs": 64, "discipline": discipline},
        "simulation": {"horizon_hours": 0.3, "warmup_hours": 0.1, "replications": 3, "seed": seed},
    }
    if sigma is not None:
        d["serving"]["forecast_sigma"] = sigma
    return scenario_from_dict(d)


def generic(discipline, rate_per_s, sla_s, service, sigma=None):
    d = {
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": rate_per_s * 3600.0, "input_tokens": {"dist": "fixed", "value": 1},
                     "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": 1, "server": {"kind": "generic", "service_time": service}},
        "serving": {"discipline": discipline},
        "simulation": {"horizon_hours": 1.0, "warmup_hours": 0.2, "replications": 3, "seed": 2},
    }
    if sigma is not None:
        d["serving"]["forecast_sigma"] = sigma
    return scenario_from_dict(d)


def same(a, b) -> bool:
    return (a.p_miss, a.sojourn_mean_s, a.requests_completed, a.requests_cancelled) == (
        b.p_miss, b.sojourn_mean_s, b.requests_completed, b.requests_cancelled)


EXP = {"dist": "exponential", "mean": 1.0}


def test_a_forecast_leaves_the_traffic_alone():
    # The forecast draws come from their own seed: a discipline that does not read them
    # sees exactly the same run with or without them.
    assert same(simulate(engine("fifo", 2500.0)), simulate(engine("fifo", 2500.0, sigma=0.7)))
    assert same(simulate(generic("fifo", 0.9, 5.0, EXP)), simulate(generic("fifo", 0.9, 5.0, EXP, sigma=0.7)))


def test_without_a_forecast_sjf_work_orders_as_sjf_on_an_engine_and_fifo_on_a_generic_server():
    prompt = {"dist": "lognormal", "median": 600, "sigma": 0.7, "max": 4000}
    assert same(simulate(engine("sjf_work", 2500.0, prompt=prompt)), simulate(engine("sjf", 2500.0, prompt=prompt)))
    assert same(simulate(generic("sjf_work", 0.9, 5.0, EXP)), simulate(generic("fifo", 0.9, 5.0, EXP)))


def test_sjf_work_gains_with_the_forecast_and_loses_with_its_error():
    # Equal prompts, so sjf cannot tell requests apart (it runs as fifo); with a forecast
    # of the output length, shortest-predicted-work first cuts the mean sojourn, the more
    # so the better the forecast (one node near saturation, outputs of log-sd 1.2).
    none = simulate(engine("sjf_work", 2000.0))
    assert same(none, simulate(engine("sjf", 2000.0)))
    oracle = simulate(engine("sjf_work", 2000.0, sigma=0.0))
    rough = simulate(engine("sjf_work", 2000.0, sigma=1.0))
    assert oracle.sojourn_mean_ci[1] < none.sojourn_mean_ci[0]
    assert rough.sojourn_mean_ci[1] < none.sojourn_mean_ci[0]
    for o, r, n in zip(oracle.reps, rough.reps, none.reps):  # same traffic: in every replication
        assert o.sojourn_sum / o.completed < r.sojourn_sum / r.completed < n.sojourn_sum / n.completed


def test_triage_drops_nothing_at_light_load():
    # A 4 s SLA on an engine busy a few % of the time: a request of the median output
    # takes ~1.4 s alone, so triage must start every request, as fifo does, and miss no
    # more than fifo. (Its old estimate, the mean output at a saturated engine's batch,
    # was 4.8 s here: it dropped every request.)
    fifo = simulate(engine("fifo", 100.0, sla_s=4.0))
    tri = simulate(engine("triage", 100.0, sla_s=4.0))
    assert tri.cancelled_by.get("triage", 0) == 0
    assert tri.p_miss <= fifo.p_miss_ci[1]
    assert tri.requests_completed >= 0.97 * fifo.requests_completed


def test_triage_drops_only_the_more_likely_misses_on_a_generic_server():
    # Exponential service of mean 1 s and a 0.9 s SLA at light load: a fresh request makes
    # it with probability 1 - e^-0.9 = 0.59, so it is started (its median, 0.69 s, fits);
    # dropping on the mean (1 s) would miss every request.
    fifo = simulate(generic("fifo", 0.05, 0.9, EXP))
    tri = simulate(generic("triage", 0.05, 0.9, EXP))
    assert tri.p_miss < 0.6
    assert tri.p_miss <= fifo.p_miss_ci[1]


def test_triage_uses_the_forecast_where_there_is_one():
    # In overload, a forecast tells triage which requests are long: it drops those near
    # their deadline and finishes more of the rest.
    median = simulate(engine("triage", 2500.0))
    oracle = simulate(engine("triage", 2500.0, sigma=0.0))
    assert oracle.p_miss_ci[1] < median.p_miss_ci[0]
    assert oracle.cancelled_by.get("triage", 0) > 0


def _lone_time(prompt: int, output: int, sc) -> float:
    perf = sc.perf_model()
    sv = sc.serving
    eng = Engine(perf, perf.kv_capacity_blocks, sv.block_size, sv.max_num_seqs, sv.max_num_batched_tokens)
    eng.enqueue(Request(0, prompt, output))
    eng.plan()
    while eng.next_event_time() < math.inf:
        for ev in eng.fire():
            if ev.kind == "done":
                return ev.time
        eng.plan()
    raise AssertionError("the request never completed")


def test_triage_estimate_is_a_lone_requests_time_on_an_idle_node_and_longer_on_a_full_one():
    sc = engine("triage", 100.0)
    sc = sc.model_copy(update={"workload": sc.workload.model_copy(update={
        "output_tokens": sc.workload.output_tokens.model_copy(update={"sigma": 1e-9})})})
    sim = FleetSim(sc, __import__("numpy").random.SeedSequence(1))
    est = sim.queues[0].ctx.estimate
    node = sim.nodes[0]
    r = SimRequest(0, 600, 200)
    sim._asking = node
    idle = est(r)
    assert idle == pytest.approx(_lone_time(600, 200, sc), rel=0.10)
    for i in range(63):  # a full node: 63 running, the request would be the 64th
        node.running[Request(100 + i, 10, 10)] = None
    assert est(r) > 1.5 * idle


@pytest.mark.parametrize("bad", [-0.1, 11.0, "high"])
def test_forecast_sigma_is_checked(bad):
    with pytest.raises(ConfigError) as e:
        engine("sjf_work", 100.0, sigma=bad)
    assert "serving.forecast_sigma" in str(e.value)
