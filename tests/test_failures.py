"""Node failures (``fleet.failures``; ``sim.availability``, ``sim.fleet``) against exact results.

The request tier on generic servers with exponential service, exponential times to failure
and exponential repairs is a continuous-time Markov chain on (requests in system, nodes up):
its stationary law, from a truncated generator solved with numpy, gives the mean number in
system and, by Little's law, the mean sojourn; with ``on_failure = "lose"``, the rate of
requests lost (a failure of a busy node) over the arrival rate is P(miss) when the SLA is
never reached otherwise. A failure's job goes back to the queue and starts over with a fresh
service time, which for exponential service is the classical preemptive-resume breakdown
model. Each check asks the simulator's own 95% interval over replications, from a fixed
seed, to hold the exact value. The fast tier (a capacity process, ``fast.availability``) is
checked against the same chain, with a stated tolerance where its batch-level reading of a
failure (expected requests in service, mean residual work) is approximate, and against the
request tier on M^X/M/4 with failures, recomputing and losing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from _breakdowns import assert_tiers_agree, breakdown_chain
from sojourn.request import simulate
from sojourn.scenario import Scenario, load_scenario, scenario_from_dict


def generic(lam: float, nodes: int, mtbf_s: float, repair_s: float, on_failure: str = "recompute",
            reps: int = 10, horizon_h: float = 4.0, seed: int = 3, sla_hours: float = 1000.0) -> Scenario:
    """M/M/nodes (mean service 1 s) with node failures; an empty start and a quarter hour of warm-up."""
    return scenario_from_dict({
        "sla_hours": sla_hours,
        "workload": {"batch_rate_per_hour": lam * 3600.0, "batch_size": {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": nodes, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}},
                  "failures": {"mtbf_hours_per_gpu": mtbf_s / 3600.0, "repair_hours": repair_s / 3600.0,
                               "on_failure": on_failure}},
        "simulation": {"horizon_hours": horizon_h, "warmup_hours": 0.25, "replications": reps, "start": "empty",
                       "seed": seed},
    })


def _inside(value: float, ci: Any) -> bool:
    return ci[0] <= value <= ci[1]


@pytest.mark.parametrize(("lam", "nodes", "mtbf_s", "repair_s"), [(0.5, 1, 200.0, 20.0), (1.5, 3, 600.0, 60.0)])
def test_breakdowns_mean_sojourn_is_exact(lam: float, nodes: int, mtbf_s: float, repair_s: float) -> None:
    # M/M/1 and M/M/3 with breakdowns: the mean sojourn is E[N]/lambda (Little) of the exact chain.
    mean_n, _ = breakdown_chain(lam, 1.0, nodes, 1.0 / mtbf_s, 1.0 / repair_s)
    exact = mean_n / lam
    r = simulate(generic(lam, nodes, mtbf_s, repair_s)).to_result()
    assert _inside(exact, r["sojourn_mean_ci"]), (exact, r["sojourn_mean_ci"])
    # Failures matter here: without them M/M/c's mean sojourn is well below the interval.
    assert r["sojourn_mean_ci"][0] > 1.2 * (1.0 / (1.0 - lam / nodes) if nodes == 1 else 1.0)
    assert r["fleet_realism"]["requests_recomputed"] > 0


def test_lost_requests_are_the_exact_loss_rate() -> None:
    # on_failure = "lose": a failure of a busy node loses its request; with an SLA no request
    # reaches, P(miss) is the loss rate over the arrival rate, xi * E[busy nodes up] / lambda.
    lam, nodes, mtbf_s, repair_s = 0.5, 1, 100.0, 20.0
    _, lost = breakdown_chain(lam, 1.0, nodes, 1.0 / mtbf_s, 1.0 / repair_s, lose=True)
    res = simulate(generic(lam, nodes, mtbf_s, repair_s, on_failure="lose", seed=5))
    r = res.to_result()
    assert _inside(lost / lam, r["p_miss_ci"]), (lost / lam, r["p_miss_ci"])
    fr = r["fleet_realism"]
    assert r["cancelled_by"] == {"node_failure": fr["requests_lost"]}
    assert fr["requests_lost"] > 0 and fr["requests_recomputed"] == 0


def test_failed_node_time_is_mttr_over_mtbf_plus_mttr() -> None:
    # Conservation: the share of node-time failed, over replications, holds MTTR / (MTBF + MTTR).
    mtbf_s, repair_s = 300.0, 100.0
    res = simulate(generic(0.5, 4, mtbf_s, repair_s, reps=12, horizon_h=6.0, seed=8))
    node_s = 4 * 6.0 * 3600.0
    shares = np.array([r.realism["failed_node_s"] / node_s for r in res.reps])
    lo, hi = stats.t.interval(0.95, len(shares) - 1, loc=shares.mean(), scale=stats.sem(shares))
    assert lo <= repair_s / (mtbf_s + repair_s) <= hi, (lo, hi)
    fr = res.to_result()["fleet_realism"]
    assert fr["node_availability"] == pytest.approx(0.75)
    # Serving plus failed node-time is all of it (no spot nodes, no schedule).
    assert fr["serving_share"] + fr["failed_share"] == pytest.approx(1.0)


def test_unset_failures_leave_scenarios_and_costs_as_they_were() -> None:
    sc = load_scenario("studies/quickstart-scenario.toml")
    dumped = sc.model_dump(mode="json")["fleet"]
    assert set(dumped) == {"gpu", "nodes", "tp", "routing", "server", "price_usd_per_gpu_hour"}
    assert sc.fleet_realism() is None
    assert sc.cost_per_hour == pytest.approx(sc.price_per_gpu_hour * sc.fleet.nodes * sc.fleet.tp)
    on = sc.with_updates({"fleet.failures.on_failure": "recompute"})
    assert "failures" in on.model_dump(mode="json")["fleet"]
    # A failed node is still paid for: failures alone leave the rent as it was.
    assert on.cost_per_hour == pytest.approx(sc.cost_per_hour)


def test_catalogue_defaults_come_from_the_llama3_figure() -> None:
    sc = load_scenario("studies/quickstart-scenario.toml").with_updates(
        {"fleet.failures.on_failure": "lose", "fleet.tp": 2})
    r = sc.fleet_realism()
    assert r is not None
    # 0.78 x 419 hardware interruptions over 16,384 x 54 x 24 GPU-hours, per GPU; a 2-GPU node fails twice as often.
    assert r.mtbf_node_h == pytest.approx(16384 * 54 * 24 / (0.78 * 419) / 2, rel=0.01)
    assert r.on_failure == "lose"


def test_push_routing_with_failures_is_refused() -> None:
    from sojourn._errors import ConfigError

    sc = load_scenario("studies/quickstart-scenario.toml")
    with pytest.raises(ConfigError, match="fleet.routing"):
        sc.with_updates({"fleet.failures.on_failure": "recompute", "fleet.routing": "round_robin"})


# -- the fast tier: a capacity process (fast.availability) ---------------------------------------


def test_fast_tier_breakdowns_mean_sojourn_is_near_exact() -> None:
    # M/M/1 with breakdowns in the fluid model: the work is drained at C(t) exactly (FIFO, one
    # server, D = 0), but a request's own latency is drawn uninterrupted, which leaves out the
    # breakdowns during its own service: E[S] x MTTR/MTBF = 0.1 s of the 6.5 s. The exact value
    # must sit within the fast tier's interval widened by 3% of it.
    lam, mtbf_s, repair_s = 0.5, 200.0, 20.0
    exact = breakdown_chain(lam, 1.0, 1, 1.0 / mtbf_s, 1.0 / repair_s)[0] / lam
    from sojourn.fast import fast_simulate

    r = fast_simulate(generic(lam, 1, mtbf_s, repair_s), horizon_hours=40.0).to_result()
    lo, hi = r["sojourn_mean_ci"]
    assert lo - 0.03 * exact <= exact <= hi + 0.03 * exact, (exact, lo, hi)
    # Without the capacity process the fluid M/M/1 is far below (1 / (1 - rho) = 2 s).
    assert lo > 4.0
    assert r["analytic_regime"].startswith("quasi-static mixture") and r["analytic_p_miss"] < 1e-12
    assert r["fleet_realism"]["requests_lost"] == 0


def test_capacity_process_failed_share_is_mttr_over_mtbf_plus_mttr() -> None:
    # Conservation in the fast tier's capacity process: failed node-time over the span, across draws.
    from sojourn.fast.availability import capacity_path

    sc = generic(0.5, 8, 500.0, 100.0)
    realism = sc.fleet_realism()
    rng = np.random.default_rng(12)
    span = 20 * 3600.0
    shares = []
    for _ in range(30):
        path = capacity_path(realism, rng, span, (0.0, span), 0.0, 0.0)
        shares.append(path.summary["failed_node_s"] / (8 * span))
        # C(t) is the nodes not failed: its time-average is the serving share.
        served = float(np.sum(np.diff(np.append(path.time, span).clip(0, span)) * path.nodes)) / (8 * span)
        assert served == pytest.approx(path.summary["serving_node_s"] / (8 * span), abs=1e-9)
    x = np.array(shares)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert lo <= 100.0 / 600.0 <= hi, (lo, hi)


def mx_failures(sla_s: float, seed: int = 11) -> Scenario:
    """M^X/M/4 (geometric batches of mean 20, 2 requests a second) with node failures every half hour
    (a 6-minute repair) and cancellation at a deadline of ``sla_s``."""
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": 360.0, "batch_size": {"dist": "geometric", "mean": 20},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": 4, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}},
                  "failures": {"mtbf_hours_per_gpu": 0.5, "repair_hours": 0.1}},
        "simulation": {"horizon_hours": 12.0, "warmup_hours": 1.0, "replications": 8, "start": "empty", "seed": seed},
    })


@pytest.mark.parametrize("sla_s", [60.0, 120.0])
def test_tiers_agree_on_a_failure_scenario(sla_s: float) -> None:
    # The request tier and the fast tier's capacity process: P(miss) intervals overlap, and each
    # tier's mean sojourn is inside the other's interval widened by 5%.
    from sojourn.fast import fast_simulate

    sc = mx_failures(sla_s)
    q = simulate(sc).to_result()
    f = fast_simulate(sc).to_result()
    assert_tiers_agree(q, f)
    # Failures matter here: without them P(miss) is far lower.
    calm = fast_simulate(sc.with_updates({"fleet.failures.mtbf_hours_per_gpu": 1e6})).to_result()
    assert calm["p_miss_ci"][1] < q["p_miss_ci"][0]


def test_fast_tier_lost_requests_are_the_exact_loss_rate() -> None:
    # on_failure = "lose" in the fast tier: each failure drops the expected requests in service on the
    # node (here 1 while the work held is > 0). With an SLA no request reaches, P(miss) is the loss
    # rate over the arrival rate. Stated tolerance: the exact value inside the fast tier's 95% interval
    # widened by 3% of it (the work removed is the mean residual, not the request's own).
    from sojourn.fast import fast_simulate

    lam, mtbf_s, repair_s = 0.5, 100.0, 20.0
    _, lost = breakdown_chain(lam, 1.0, 1, 1.0 / mtbf_s, 1.0 / repair_s, lose=True)
    exact = lost / lam
    r = fast_simulate(generic(lam, 1, mtbf_s, repair_s, on_failure="lose", seed=5), horizon_hours=40.0).to_result()
    lo, hi = r["p_miss_ci"]
    assert lo - 0.03 * exact <= exact <= hi + 0.03 * exact, (exact, lo, hi)
    fr = r["fleet_realism"]
    assert fr["requests_lost"] > 0 and r["cancelled_by"]["node_failure"] == fr["requests_lost"]
    # The mixture adds the loss rate (failures an hour x requests in service / requests an hour).
    assert r["analytic_p_miss"] == pytest.approx(exact, rel=0.05)
    # Recomputing instead loses nothing: P(miss) is then far below.
    again = fast_simulate(generic(lam, 1, mtbf_s, repair_s, seed=5), horizon_hours=40.0).to_result()
    assert again["p_miss_ci"][1] < 0.1 * exact and "cancelled_by" not in again


@pytest.mark.parametrize("sla_s", [60.0, 120.0])
def test_tiers_agree_on_a_failure_scenario_with_lost_requests(sla_s: float) -> None:
    # M^X/M/4 with failures every half hour and on_failure = "lose": the P(miss) intervals overlap,
    # each tier's mean sojourn is inside the other's interval widened by 5%, and the share of the
    # requests lost with failed nodes agrees within 25% (about 370 of 690,000 in the request tier).
    from sojourn.fast import fast_simulate

    sc = mx_failures(sla_s).with_updates({"fleet.failures.on_failure": "lose"})
    q = simulate(sc).to_result()
    f = fast_simulate(sc).to_result()
    assert_tiers_agree(q, f)
    shares = [r["cancelled_by"]["node_failure"] / r["requests_arrived"] for r in (q, f)]
    assert shares[0] > 0 and 0.75 <= shares[1] / shares[0] <= 1.25, shares
    assert f["fleet_realism"]["requests_recomputed"] is None and q["fleet_realism"]["requests_recomputed"] == 0


# -- the fast tier's analytic value under failures: a quasi-static mixture over the nodes up ------


def test_nodes_up_law_is_the_binomial_of_availability() -> None:
    from sojourn.fast import nodes_up_law

    sc = generic(0.5, 6, 500.0, 100.0)
    pmf = nodes_up_law(sc.fleet_realism())
    assert pmf == pytest.approx(stats.binom.pmf(np.arange(7), 6, 500.0 / 600.0), abs=1e-15)
    # Spot nodes serve a share of the time on top: two of six, up 600 s, 0 notice, 300 s to re-acquire.
    spot = sc.with_updates({"fleet.spot": {"share": 2 / 6, "reclaims_per_hour": 6.0, "notice_s": 0.0,
                                           "reacquire_hours": 300 / 3600}})
    pmf = nodes_up_law(spot.fleet_realism())
    want = np.convolve(stats.binom.pmf(np.arange(5), 4, 5 / 6), stats.binom.pmf(np.arange(3), 2, 5 / 6 * 2 / 3))
    assert pmf == pytest.approx(want, abs=1e-15)


def test_mixture_with_rare_failures_is_the_plain_analytic_value() -> None:
    from sojourn.fast import analytic_p_miss, mixture_p_miss, node_capacity

    sc = mx_failures(60.0).with_updates({"fleet.failures.mtbf_hours_per_gpu": 1e12})
    cap = node_capacity(sc)
    mixed = mixture_p_miss(sc, cap, sc.fleet_realism())
    plain = analytic_p_miss(sc, cap)
    assert mixed.p == pytest.approx(plain.p, rel=1e-6)
    assert mixed.regime.startswith("quasi-static mixture")


@pytest.mark.parametrize("sla_s", [60.0, 120.0])
def test_mixture_and_the_fluid_sample_agree_within_a_factor_of_three(sla_s: float) -> None:
    # Repairs here (6 min) are short against nothing but the SLA: the stated tolerance is a factor
    # of 3 (the mixture leaves out the backlog an overload state leaves behind: it reads low).
    from sojourn.fast import fast_simulate

    f = fast_simulate(mx_failures(sla_s)).to_result()
    assert 1 / 3 <= f["analytic_p_miss"] / f["p_miss"] <= 3, (f["analytic_p_miss"], f["p_miss"])
    # The study's value is the larger where they disagree.
    assert f["p_miss_best"] >= min(f["analytic_p_miss"], f["p_miss_ci"][0])


def test_simulate_table_says_what_failures_did() -> None:
    # The CLI's table carries the fleet_realism entry: the settings as resolved and what the run measured.
    from sojourn._cli.simulate import format_table

    r = simulate(generic(0.5, 4, 300.0, 100.0, reps=3, horizon_h=2.0, seed=8)).to_result()
    fr = r["fleet_realism"]
    table = format_table(r.to_dict())
    line = next(ln for ln in table.splitlines() if ln.startswith("fleet as it runs"))
    assert "availability 0.75" in line and f"{fr['failures']} failures" in line
    node = next(ln for ln in table.splitlines() if ln.strip().startswith("node time"))
    assert f"{fr['requests_recomputed']} recomputed" in node
    # Without failures, spot nodes or a schedule there is no such row.
    plain = simulate(scenario_from_dict({**generic(0.5, 4, 300.0, 100.0, reps=2, horizon_h=1.0).model_dump(),
                                         "fleet": {"nodes": 4, "server": {"kind": "generic",
                                                   "service_time": {"dist": "exponential", "mean": 1.0}}}}))
    assert "fleet as it runs" not in format_table(plain.to_result().to_dict())
