"""TTFT and TPOT per request in the request tier's fleet results (issue 16 item 3).

Checks: for every request, arrival + TTFT + (output - 1) x TPOT is its completion, so with one
output length the means add up to the mean sojourn exactly; a request alone on an idle node has
its first token at the end of its prefill step and then one token per decode step of one
sequence, the perf model's own step times; generic servers serve no tokens (no entry); the
latencies survive a stored replication; the CLI's table shows them.
"""

from __future__ import annotations

import math

import pytest

from sojourn.request import simulate
from sojourn.scenario import scenario_from_dict
from sojourn.sim._stored import replication_from_json, replication_to_json


def lone_requests(output: int = 40, prompt: int = 300, rate_per_hour: float = 4.0, **sim: float) -> dict:
    """Single requests of fixed lengths, rare enough that nearly every one finds the node idle."""
    return {
        "sla_hours": 1.0,
        "workload": {"batch_rate_per_hour": rate_per_hour, "batch_size": {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": prompt},
                     "output_tokens": {"dist": "fixed", "value": output}},
        "model": {"name": "llama-3.1-8b", "precision": "bf16"},
        "fleet": {"gpu": "h100-sxm", "nodes": 1},
        "serving": {"max_model_len": 4096, "max_num_batched_tokens": 2048},
        "simulation": {"horizon_hours": sim.get("horizon_hours", 200.0), "warmup_hours": 1.0,
                       "replications": 2, "start": "empty", "seed": 4},
    }


def test_means_add_up_to_the_sojourn_for_one_output_length() -> None:
    # Busy enough that requests share steps and wait: the identity holds request by request anyway.
    res = simulate(scenario_from_dict(lone_requests(output=40, rate_per_hour=40_000.0, horizon_hours=0.5)))
    r = res.to_result()
    tl = r["token_latency"]
    assert tl["ttft_requests"] == tl["tpot_requests"] == r["requests_completed"] > 1000
    assert r["preemptions"] == 0 and r["wait_mean_s"] > 0
    assert tl["ttft_mean_s"] + 39 * tl["tpot_mean_s"] == pytest.approx(r["sojourn_mean_s"], rel=1e-9)
    assert tl["ttft_p50_s"] <= tl["ttft_p99_s"] and tl["tpot_p50_s"] <= tl["tpot_p99_s"]


def test_a_lone_request_takes_the_perf_models_step_times() -> None:
    d = lone_requests()
    sc = scenario_from_dict(d)
    perf = sc.perf_model()
    tl = simulate(sc).to_result()["token_latency"]
    prefill = perf.step_time(300, 0, 0, prefill_done=1)
    # The median request is alone (4 an hour, each done in well under a second): its first token ends
    # its prefill step, each further token a decode step of one sequence over its growing context.
    assert tl["ttft_p50_s"] == pytest.approx(prefill, rel=1e-4)  # the histogram's resolution
    steps = [perf.step_time(0, 1, 300 + k) for k in range(1, 40)]
    assert min(steps) * (1 - 1e-4) <= tl["tpot_p50_s"] <= max(steps) * (1 + 1e-4)
    assert tl["tpot_p50_s"] == pytest.approx(sum(steps) / len(steps), rel=0.05)


def test_generic_servers_have_no_token_latency() -> None:
    d = {"sla_hours": 1.0,
         "workload": {"batch_rate_per_hour": 1800.0, "batch_size": {"dist": "fixed", "value": 1},
                      "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
         "fleet": {"nodes": 1, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
         "simulation": {"horizon_hours": 1.0, "warmup_hours": 0.1, "replications": 2, "start": "empty"}}
    assert "token_latency" not in simulate(scenario_from_dict(d)).to_result()


def test_token_latencies_survive_a_stored_replication() -> None:
    res = simulate(scenario_from_dict(lone_requests(horizon_hours=20.0)))
    st = res.reps[0]
    back = replication_from_json(replication_to_json(st))
    for name in ("ttft", "tpot"):
        h, b = getattr(st, f"{name}_hist"), getattr(back, f"{name}_hist")
        assert h is not None and b is not None and h.n == b.n > 0
        assert list(h.index) == list(b.index) and list(h.count) == list(b.count)
        assert getattr(back, f"{name}_sum") == getattr(st, f"{name}_sum")


def test_the_table_shows_ttft_and_tpot() -> None:
    from sojourn._cli.simulate import format_table

    r = simulate(scenario_from_dict(lone_requests(horizon_hours=20.0))).to_result()
    line = next(ln for ln in format_table(r.to_dict()).splitlines() if ln.startswith("token latency"))
    tl = r["token_latency"]
    assert "TTFT" in line and "TPOT" in line and f"{tl['ttft_requests']} requests" in line
    assert math.isfinite(tl["tpot_mean_s"])
