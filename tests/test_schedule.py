"""A capacity schedule (``fleet.capacity_schedule``): the nodes available by hour of day.

Checks: the rent counts the scheduled node-hours (expected, and paid in a run: exact, as
the schedule is deterministic); a schedule of the whole fleet every hour changes no result;
a node taken away drains (admits nothing, finishes what it runs: nothing is recomputed or
lost, and every request completes); the two tiers agree on a schedule that overloads the
fleet for part of the day.
"""

from __future__ import annotations

from typing import Any

import pytest

from sojourn._errors import ConfigError
from sojourn.request import simulate
from sojourn.scenario import Scenario, load_scenario, scenario_from_dict


def scheduled(schedule: list[int] | None, lam: float = 0.25, nodes: int = 4, sla_s: float = 7200.0,
              service: dict[str, Any] | None = None, reps: int = 4, horizon_h: float = 48.0) -> Scenario:
    """M/M/4 (10 s mean service) at 2.5 requests per 10 s; ``schedule`` the nodes by hour."""
    fleet: dict[str, Any] = {"nodes": nodes, "server": {
        "kind": "generic", "service_time": service or {"dist": "exponential", "mean": 10.0}}}
    if schedule is not None:
        fleet["capacity_schedule"] = {"nodes_by_hour": schedule}
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": lam * 3600.0, "batch_size": {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": fleet,
        "serving": {"on_deadline": "finish"},
        "simulation": {"horizon_hours": horizon_h, "warmup_hours": 24.0, "replications": reps, "start": "empty",
                       "seed": 5},
    })


DAY = [2] * 6 + [4] * 18  # two nodes from midnight to 6:00, all four after


def test_rent_counts_the_scheduled_node_hours() -> None:
    sc = scheduled(DAY)
    price = sc.price_per_gpu_hour
    assert sc.cost_per_hour == pytest.approx(price * sum(DAY) / 24)
    fr = simulate(sc.with_updates({"simulation.replications": 2})).to_result()["fleet_realism"]
    # 48 measured hours from hour 24: two days of the schedule, paid node-hour by node-hour.
    assert fr["node_hours_paid"] == pytest.approx(2 * sum(DAY))
    assert fr["cost_per_hour_measured"] == pytest.approx(sc.cost_per_hour)
    shares = load_scenario("studies/quickstart-scenario.toml").with_updates(
        {"fleet.capacity_schedule.share_by_hour": [0.5] * 12 + [1.0] * 12})
    assert shares.fleet_realism().schedule == (2,) * 12 + (4,) * 12


def test_the_whole_fleet_every_hour_changes_nothing() -> None:
    plain = simulate(scheduled(None, reps=2, horizon_h=12.0)).to_result()
    full = simulate(scheduled([4] * 24, reps=2, horizon_h=12.0)).to_result()
    for key in ("p_miss", "sojourn_mean_s", "sojourn_p99_s", "requests_completed"):
        assert full[key] == plain[key], key
    assert full["cost_per_hour"] == pytest.approx(plain["cost_per_hour"])
    assert "fleet_realism" not in plain and full["fleet_realism"]["serving_share"] == 1.0


def test_nodes_taken_away_drain() -> None:
    # Service takes 1,000 s, so nodes are busy when the schedule takes them away: they finish
    # their requests (none recomputed, none lost, every one completes) and admit none after.
    sc = scheduled([1, 4] * 12, lam=0.002, service={"dist": "fixed", "value": 1000.0}, reps=2, horizon_h=24.0,
                   sla_s=1e6)
    res = simulate(sc)
    r = res.to_result()
    fr = r["fleet_realism"]
    assert fr["requests_recomputed"] == 0 and fr["requests_lost"] == 0
    assert r["requests_completed"] == r["requests_arrived"] and r["requests_cancelled"] == 0
    # A drained node admits nothing: a request arriving in a one-node hour behind a busy node waits
    # for it or for the next four-node hour, so some wait longer than a service time.
    assert r["wait_mean_s"] > 0
    assert fr["serving_share"] == pytest.approx((1 + 4) / 2 / 4)


def test_tiers_agree_on_a_schedule() -> None:
    # Two nodes for six hours overload the fleet (2.5 requests per 10 s against 2): a backlog
    # builds (1.5 h of work by 6:00) and drains after 6:00. P(miss) of a one-hour SLA comes from those hours.
    from sojourn.fast import fast_simulate

    sc = scheduled(DAY, sla_s=3600.0)
    q = simulate(sc).to_result()
    f = fast_simulate(sc).to_result()
    assert 0.01 < q["p_miss"] < 0.5
    assert q["p_miss_ci"][0] <= f["p_miss_ci"][1] and f["p_miss_ci"][0] <= q["p_miss_ci"][1], (q["p_miss_ci"],
                                                                                                f["p_miss_ci"])


def test_schedule_needs_24_values_and_at_most_the_fleet() -> None:
    with pytest.raises(ConfigError, match="nodes_by_hour"):
        scheduled([4] * 23)
    with pytest.raises(ConfigError, match="nodes_by_hour"):
        scheduled([5] * 24)
    with pytest.raises(ConfigError, match="capacity_schedule"):
        load_scenario("studies/quickstart-scenario.toml").with_updates(
            {"fleet.capacity_schedule": {"nodes_by_hour": [1] * 24, "share_by_hour": [1.0] * 24}})


def _trace_scenario(tmp_path: Any, rows: list[float], unit: str = "nodes", horizon_h: float = 48.0) -> Scenario:
    (tmp_path / "spare.csv").write_text("hour,free\n" + "".join(f"{h},{v}\n" for h, v in enumerate(rows)))
    data = scheduled(None, horizon_h=horizon_h, reps=2).model_dump()
    data["fleet"]["capacity_schedule"] = {"trace": "spare.csv", "column": "free", "unit": unit}
    return scenario_from_dict(data, base_dir=tmp_path)


def test_a_trace_schedule_repeats_with_its_own_period_and_is_paid_by_the_hour(tmp_path: Any) -> None:
    # Two days recorded hour by hour (48 rows, not a repeated day): the rent is the trace's node-hours,
    # paid hour by hour over the 48 measured hours (from hour 24: the second half, then the first).
    week = [3] * 10 + [4] * 14 + [1] * 12 + [4] * 12
    sc = _trace_scenario(tmp_path, week)
    assert sc.fleet_realism().schedule == tuple(week)
    assert sc.cost_per_hour == pytest.approx(sc.price_per_gpu_hour * sum(week) / 48)
    fr = simulate(sc).to_result()["fleet_realism"]
    assert fr["node_hours_paid"] == pytest.approx(sum(week))
    # A 24-row trace of node counts is the nodes_by_hour schedule, to the last bit.
    same = simulate(_trace_scenario(tmp_path, DAY, horizon_h=12.0)).to_result()
    listed = simulate(scheduled(DAY, reps=2, horizon_h=12.0)).to_result()
    for key in ("p_miss", "sojourn_mean_s", "requests_completed", "cost_per_hour"):
        assert same[key] == listed[key], key
    # Shares of the fleet, rounded to the nearest node as share_by_hour is.
    assert _trace_scenario(tmp_path, [0.5, 1.0, 0.3], unit="share").fleet_realism().schedule == (2, 4, 1)


@pytest.mark.parametrize(("rows", "unit", "says"), [
    ([5, 4], "nodes", "exceeds fleet.nodes = 4"),
    ([1.5, 4], "nodes", "whole numbers"),
    ([0.5, 1.2], "share", "allowed: 0..1"),
    ([-1, 4], "nodes", "finite numbers >= 0"),
])
def test_a_bad_trace_schedule_names_the_field(tmp_path: Any, rows: list[float], unit: str, says: str) -> None:
    with pytest.raises(ConfigError, match="fleet.capacity_schedule.trace") as err:
        _trace_scenario(tmp_path, rows, unit=unit)
    assert says in str(err.value)


def test_a_missing_trace_schedule_names_the_field(tmp_path: Any) -> None:
    data = scheduled(None).model_dump()
    data["fleet"]["capacity_schedule"] = {"trace": "nowhere.csv"}
    with pytest.raises(ConfigError, match=r"fleet.capacity_schedule.trace.*capacity schedule trace .*nowhere.csv"):
        scenario_from_dict(data, base_dir=tmp_path)
