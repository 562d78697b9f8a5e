"""Mixed fleets (``fleet.pools``): the schema, the request tier against an exact heterogeneous
queue, and the one-pool list against the plain form.

The exact reference: two exponential servers of different rates fed one Poisson stream through
one FIFO queue (``routing = "pull"``); a request that finds both idle goes to the lowest-numbered
node (the first pool's), as ``FleetSim._offer`` offers work in node order. Its Markov chain
(the servers' busy states and the queue length, truncated far beyond any mass) is solved here,
and the mean sojourn follows by Little's law; the simulator's 95% replication interval must
hold it (fixed seed).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from _breakdowns import assert_tiers_agree
from sojourn import ConfigError
from sojourn.request import simulate
from sojourn.scenario import load_scenario, scenario_from_dict
from sojourn.sim.fleet import run_replication
from test_routers_contract import run_audited
from test_sim_fleet import engine_scenario, generic_scenario


def pooled(d: dict, pools: list[dict]) -> dict:
    """``d`` with its fleet's gpu/nodes/tp replaced by ``pools`` (routing and server kept)."""
    fleet = {k: v for k, v in d["fleet"].items() if k not in ("gpu", "nodes", "tp")}
    return {**d, "fleet": {**fleet, "pools": pools}}


# --- the schema ------------------------------------------------------------------------------


def test_plain_fleets_serialise_as_before_and_pools_serialise_alone():
    sc = load_scenario("studies/quickstart-scenario.toml")
    dumped = sc.model_dump(mode="json", exclude_none=True)
    assert "pools" not in dumped["fleet"] and dumped["fleet"]["nodes"] == 4
    d = pooled(dumped, [{"gpu": "a100-80gb", "nodes": 2, "owned": True}, {"gpu": "h100-sxm", "nodes": 1}])
    m = scenario_from_dict(d)
    assert (m.fleet.nodes, m.fleet.gpu) == (3, "a100-80gb")  # the whole fleet's nodes, the first pool's GPU
    fleet = m.model_dump(mode="json", exclude_none=True)["fleet"]
    assert "nodes" not in fleet and len(fleet["pools"]) == 2
    assert m.with_updates({"fleet.pools.1.nodes": 3}).fleet.nodes == 5


@pytest.mark.parametrize(("study", "sha"), [
    # scenario_sha256 of each shipped study's fingerprint as computed before fleet.pools existed
    # (the branch's parent commit, 129bf66): a scenario without pools must read exactly as before.
    ("studies/quickstart.toml", "aee87d93644528a0"),
    ("studies/hardware-purchase.toml", "7d31dc253502b7ba"),
    ("studies/overnight-70b.toml", "47be9c1c703e9a46"),
])
def test_saved_study_fingerprints_are_unchanged(study, sha):
    from sojourn.study.config import load_study
    from sojourn.study.runner import StudyRunner

    assert StudyRunner(load_study(study)).fingerprint()["scenario_sha256"] == sha


def test_owned_nodes_cost_nothing_in_the_addition_and_the_total_says_both():
    d = pooled(engine_scenario(), [{"gpu": "a100-80gb", "nodes": 2, "owned": True},
                                   {"gpu": "h100-sxm", "nodes": 3, "price_usd_per_gpu_hour": 2.0}])
    m = scenario_from_dict(d)
    assert m.cost_per_hour == pytest.approx(3 * 2.0)
    a100 = m.catalogue_obj().gpu("a100-80gb").price_usd_per_gpu_hour
    assert m.owned_cost_per_hour == pytest.approx(2 * a100)
    plain = scenario_from_dict(engine_scenario(**{"fleet.nodes": 3, "fleet.price_usd_per_gpu_hour": 2.0}))
    assert plain.owned_cost_per_hour == 0.0 and plain.cost_per_hour == pytest.approx(6.0)


@pytest.mark.parametrize(("pools", "field"), [
    ([{"gpu": "h100-sxm"}, {"gpu": "h100-sxm", "tp": 3}], "fleet.pools[1].tp"),
    ([{"gpu": "h100-sxm"}, {"gpu": "nope"}], "fleet.pools[1].gpu"),
    ([{"gpu": "h100-sxm", "nodes": 0}], "fleet.pools"),
    ([{"gpu": "h100-sxm", "max_num_seqs": 4096}], "serving.max_num_batched_tokens"),  # "on fleet.pools[0]'s nodes"
    ([{"gpu": "h100-sxm", "speed": 2.0}], "fleet.pools[0].speed"),
])
def test_a_bad_pool_names_its_field(pools, field):
    with pytest.raises(ConfigError) as e:
        scenario_from_dict(pooled(engine_scenario(), pools))
    assert e.value.field == field, e.value
    assert "fleet.pools" in str(e.value)


def test_pools_with_spot_nodes_are_refused_for_now():
    d = pooled(engine_scenario(), [{"gpu": "h100-sxm", "nodes": 2}])
    d["fleet"]["spot"] = {"share": 0.5}
    with pytest.raises(ConfigError) as e:
        scenario_from_dict(d)
    assert e.value.field == "fleet.spot" and "fleet.pools" in e.value.message


def test_pools_with_a_plain_node_count_that_disagrees_are_refused():
    d = pooled(engine_scenario(), [{"gpu": "h100-sxm", "nodes": 2}])
    d["fleet"]["nodes"] = 3
    with pytest.raises(ConfigError) as e:
        scenario_from_dict(d)
    assert e.value.field == "fleet.nodes"


# --- the request tier --------------------------------------------------------------------------


def test_one_pool_list_is_bit_identical_to_the_plain_form():
    for d in (engine_scenario(**{"fleet.nodes": 3}), generic_scenario(**{"fleet.routing": "least_loaded"})):
        plain = scenario_from_dict(d)
        one = scenario_from_dict(pooled(d, [{k: v for k, v in d["fleet"].items() if k in ("gpu", "nodes", "tp")}]))
        a = run_replication(plain, np.random.SeedSequence(3))
        b = run_replication(one, np.random.SeedSequence(3))
        assert a.sojourn.tobytes() == b.sojourn.tobytes() and a.completed == b.completed > 50
        assert (a.misses, a.cancelled, a.busy_fraction) == (b.misses, b.cancelled, b.busy_fraction)
        np.testing.assert_equal(a.kv_utilization, b.kv_utilization)  # nan on a generic server: equal too


def test_one_pool_list_gives_the_fast_tier_s_result_exactly():
    from sojourn.fast import fast_simulate

    d = engine_scenario(**{"fleet.nodes": 2, "simulation.fidelity": "fast"})
    one = pooled(d, [{"gpu": "h100-sxm", "nodes": 2}])
    a, b = fast_simulate(scenario_from_dict(d)), fast_simulate(scenario_from_dict(one))
    assert (a.p_miss, a.sojourn_mean_s, a.analytic_p_miss) == (b.p_miss, b.sojourn_mean_s, b.analytic_p_miss)


def _two_speed_generic(routing: str, **extra) -> dict:
    d = generic_scenario(**{"fleet.routing": routing, "workload.batch_rate_per_hour": 2400.0,
                            "workload.sla_classes": [{"hours": 0.003, "weight": 1.0}, {"hours": 0.2, "weight": 2.0}],
                            "serving.max_queue": 40, "simulation.horizon_hours": 0.3, **extra})
    return pooled(d, [{"nodes": 1}, {"nodes": 2, "speed": 3.0}])


@pytest.mark.parametrize("routing", ["pull", "round_robin", "least_loaded"])
def test_every_request_of_a_mixed_fleet_is_settled_once(routing):
    sim, s = run_audited(scenario_from_dict(_two_speed_generic(routing)), seed=1)
    measured = [rid for rid, m in sim.measured.items() if m]
    outcomes = [sim.outcome.get(rid) for rid in measured]
    assert len(measured) == s.arrived > 100
    assert outcomes.count("done") == s.completed and outcomes.count("cancelled") == s.cancelled
    assert s.arrived == s.completed + s.rejected + s.cancelled + s.in_system
    assert not sim.idle_with_work or routing != "pull"


def test_engine_pools_run_their_own_engines_and_conserve_requests():
    d = pooled(engine_scenario(), [{"gpu": "a100-80gb", "nodes": 1, "max_num_seqs": 16},
                                   {"gpu": "h100-sxm", "nodes": 2}])
    sc = scenario_from_dict(d)
    sim, s = run_audited(sc, seed=2)
    assert [n.max_num_seqs for n in sim.nodes] == [16, 32, 32]
    assert sim.nodes[0].perf.gpu.id == "a100-80gb" and sim.nodes[1].perf.gpu.id == "h100-sxm"
    assert s.arrived == s.completed + s.rejected + s.cancelled + s.in_system and s.completed > 50


def hetero_mm2_mean_sojourn(lam: float, mu0: float, mu1: float, qmax: int = 400) -> float:
    """Exact mean sojourn of M/M/2 with server rates mu0, mu1, one FIFO queue, and an arrival that
    finds both idle served by server 0: the CTMC on (empty), (0 busy), (1 busy), (both, queue q)."""
    E, A, B = 0, 1, 2  # empty; only server 0 busy; only server 1 busy
    n = 3 + qmax + 1
    both = lambda q: 3 + q  # noqa: E731
    rows, cols, vals = [], [], []

    def rate(i: int, j: int, r: float) -> None:
        rows.append(i), cols.append(j), vals.append(r)

    rate(E, A, lam)
    rate(A, both(0), lam), rate(A, E, mu0)
    rate(B, both(0), lam), rate(B, E, mu1)
    rate(both(0), B, mu0), rate(both(0), A, mu1)
    for q in range(qmax + 1):
        if q < qmax:
            rate(both(q), both(q + 1), lam)
        if q > 0:
            rate(both(q), both(q - 1), mu0 + mu1)
    Q = sp.csr_matrix((vals, (rows, cols)), shape=(n, n)).tolil()
    Q.setdiag(-np.asarray(Q.sum(axis=1)).ravel())
    M = Q.T.tolil()
    M[0, :] = 1.0  # replace one balance equation by the normalisation
    rhs = np.zeros(n)
    rhs[0] = 1.0
    pi = spla.spsolve(M.tocsr(), rhs)
    in_system = np.array([0, 1, 1] + [2 + q for q in range(qmax + 1)], dtype=float)
    return float(pi @ in_system) / lam


def test_pull_on_two_speeds_is_the_exact_heterogeneous_chain():
    lam, mu0, mu1 = 0.9, 0.5, 1.5  # per second; server 0 (the first pool) the slow one; load 0.45
    d = {
        "sla_hours": 1000.0,
        "workload": {"batch_rate_per_hour": lam * 3600.0, "batch_size": {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0 / mu0}},
                  "pools": [{"nodes": 1}, {"nodes": 1, "speed": mu1 / mu0}]},
        "serving": {"on_deadline": "finish"},
        "simulation": {"horizon_hours": 4.0, "warmup_hours": 0.25, "replications": 10, "seed": 5},
    }
    res = simulate(scenario_from_dict(d))
    exact = hetero_mm2_mean_sojourn(lam, mu0, mu1)
    lo, hi = res.sojourn_mean_ci
    assert lo <= exact <= hi, (exact, res.sojourn_mean_s, (lo, hi))
    # The reference tells the policies apart: the fast server first would give a lower mean.
    assert abs(hetero_mm2_mean_sojourn(lam, mu1, mu0) - exact) > hi - lo


def test_least_loaded_ranks_engine_pools_by_their_speed():
    d = pooled(engine_scenario(**{"fleet.routing": "least_loaded"}),
               [{"gpu": "a100-80gb", "nodes": 1}, {"gpu": "h100-sxm", "nodes": 2}])
    sim, _ = run_audited(scenario_from_dict(d), seed=1)
    slow, fast1, fast2 = sim._inv_speed
    assert slow > 1.0 and fast1 == fast2 == 1.0  # the A100's load counts for more than the H100s'


def test_least_loaded_counts_a_fast_node_s_load_as_less_work():
    sc = scenario_from_dict(_two_speed_generic("least_loaded"))
    sim, _ = run_audited(sc, seed=4)
    assert sim._inv_speed == [3.0, 1.0, 1.0]
    # Routed by expected work: the fast nodes take most of the requests, the slow one about 1/7.
    routed = np.bincount([qi for _, qi in sim.routed], minlength=3)
    assert routed[0] < 0.25 * routed.sum()


# --- the fast tier ---------------------------------------------------------------------------


def test_fast_capacity_is_the_sum_of_the_pools_measured_on_their_own_engines():
    from sojourn.fast import load_report, node_capacity

    d = pooled(engine_scenario(), [{"gpu": "a100-80gb", "nodes": 2}, {"gpu": "h100-sxm", "nodes": 1}])
    sc = scenario_from_dict(d)
    a100 = node_capacity(scenario_from_dict(engine_scenario(**{"fleet.gpu": "a100-80gb"})))
    h100 = node_capacity(scenario_from_dict(engine_scenario()))
    assert h100.requests_per_s > 1.2 * a100.requests_per_s  # the pools differ: the test can fail
    rep = load_report(sc)
    assert rep.capacity_rps == pytest.approx(2 * a100.requests_per_s + h100.requests_per_s, rel=1e-12)
    assert rep.nodes == 3
    # A one-pool list is its pool's capacity, exactly.
    one = scenario_from_dict(pooled(engine_scenario(), [{"gpu": "h100-sxm", "nodes": 2}]))
    assert node_capacity(one) is h100


def _agree(sc, rel_throughput=0.05):
    from sojourn.fast import fast_simulate

    req = simulate(sc)
    fast = fast_simulate(sc)
    lo, hi = req.p_miss_ci
    assert req.p_miss > 0.01  # a tail both tiers resolve
    # Stated tolerance: the mean-node reading within the request tier's interval widened by 30%
    # on each side (the identical-server approximation), throughputs within 5%.
    assert 0.7 * lo <= fast.p_miss <= 1.3 * max(hi, req.p_miss_upper), (fast.p_miss, req.p_miss_ci)
    assert fast.throughput_rps == pytest.approx(req.throughput_rps, rel=rel_throughput)
    return req, fast


def test_fast_tier_agrees_with_the_request_tier_on_two_generic_speeds():
    d = {
        "sla_hours": 12.0 / 3600.0,
        "workload": {"batch_rate_per_hour": 0.45 * 3600.0, "batch_size": {"dist": "geometric", "mean": 4},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}},
                  "pools": [{"nodes": 1}, {"nodes": 1, "speed": 2.0}]},
        "serving": {"on_deadline": "finish"},
        "simulation": {"horizon_hours": 2.0, "warmup_hours": 0.2, "replications": 4, "seed": 5},
    }
    _agree(scenario_from_dict(d))  # load 1.8 / 3 = 0.6


def test_fast_tier_agrees_with_the_request_tier_on_an_a100_h100_fleet():
    from sojourn.fast import node_capacity

    d = pooled({
        "sla_hours": 20.0 / 3600.0,
        "workload": {"batch_rate_per_hour": 10.0, "batch_size": {"dist": "geometric", "mean": 100},
                     "input_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6},
                     "output_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.6}},
        "fleet": {},
        "serving": {"max_num_seqs": 64, "max_model_len": 8192},
        "simulation": {"horizon_hours": 0.5, "warmup_hours": 0.1, "replications": 4, "seed": 9},
    }, [{"gpu": "a100-80gb", "nodes": 1}, {"gpu": "h100-sxm", "nodes": 1, "max_num_seqs": 128}])
    sc = scenario_from_dict(d)
    cap = node_capacity(sc)
    rate = 0.8 * 2 * cap.requests_per_s * 3600.0 / sc.workload.batch_size.int_mean
    req, fast = _agree(sc.with_updates({"workload.batch_rate_per_hour": rate}))  # load 0.8
    # The mean node's sojourn: the pools' in-service laws mixed, the wait on the mean speed.
    assert fast.sojourn_mean_s == pytest.approx(req.sojourn_mean_s, rel=0.2)


# --- the cheapest addition (compare-hardware --addition) and studies over pools -----------------


def _generic_base(nodes: int = 2) -> dict:
    return {
        "sla_hours": 20.0 / 3600.0,
        "workload": {"batch_rate_per_hour": 3.0 * 3600.0, "batch_size": {"dist": "geometric", "mean": 2},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": nodes, "gpu": "a100-80gb",
                  "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
        "serving": {"on_deadline": "finish"},
        "simulation": {"horizon_hours": 1.0, "warmup_hours": 0.1, "replications": 4, "seed": 3, "fidelity": "fast"},
    }


def _fast_miss(sc) -> float:
    from sojourn.evaluate import run_scenario, sla_miss_value

    return sla_miss_value(run_scenario(sc, "fast"), "mean")[0]


def test_cheapest_addition_keeps_the_fleet_and_finds_the_fewest_nodes():
    from sojourn.study.hardware import addition_scenario, cheapest_addition

    base = scenario_from_dict(_generic_base())  # 2 servers for 6 requests/s of work 1: overloaded
    sc = addition_scenario(base, "h100-sxm", 1, 3)
    assert [(p.gpu, p.nodes, p.owned) for p in sc.fleet.pools] == [("a100-80gb", 2, True), ("h100-sxm", 3, False)]
    assert sc.cost_per_hour == pytest.approx(3 * sc.catalogue_obj().gpu("h100-sxm").price_usd_per_gpu_hour)
    seen: dict[tuple, float] = {}

    def miss(s):
        seen[(s.fleet.pools[-1].gpu, s.fleet.pools[-1].nodes)] = v = _fast_miss(s)
        return v

    strict, loose = cheapest_addition(base, ["h100-sxm"], 1e-4, miss)[0], cheapest_addition(base, ["h100-sxm"], 1e-2, miss)[0]
    for row in (strict, loose):
        k = row["nodes_added"]
        assert k >= 5  # at least the nodes that make the fleet stable (7 > 6)
        target = 1e-4 if row is strict else 1e-2
        assert seen[("h100-sxm", k)] <= target < seen[("h100-sxm", k - 1)]  # k meets it, k - 1 does not
    assert loose["nodes_added"] <= strict["nodes_added"]  # monotone in the target
    assert strict["total_usd_per_hour"] == pytest.approx(strict["added_usd_per_hour"] + strict["owned_usd_per_hour"])


def test_cheapest_addition_adds_nothing_when_the_fleet_meets_the_target():
    from sojourn.study.hardware import cheapest_addition

    base = scenario_from_dict(_generic_base(nodes=12))
    rows = cheapest_addition(base, ["h100-sxm", "l40s"], 0.5, _fast_miss)
    assert [(r["nodes_added"], r["added_usd_per_hour"]) for r in rows] == [(0, 0.0), (0, 0.0)]
    assert rows[0]["p_miss_current"] <= 0.5


def test_the_bisection_finds_the_least_count_of_a_monotone_predicate():
    from sojourn.study.hardware import _fewest

    for need in (0, 1, 2, 3, 5, 17, 64, 100):
        calls: list[int] = []

        def meets(k, need=need, calls=calls):
            calls.append(k)
            return k >= need

        assert _fewest(meets, 100) == need
        assert len(calls) <= 2 * 7 + 2
    assert _fewest(lambda k: False, 10) is None


def test_a_study_space_reaches_a_pool_by_index_and_names_a_bad_one(tmp_path):
    import shutil

    from sojourn.study.config import load_study

    for f in ("mixed-fleet.toml", "mixed-fleet-scenario.toml"):
        shutil.copy(f"studies/{f}", tmp_path / f)
    (tmp_path / "objectives").symlink_to(__import__("pathlib").Path("objectives").resolve())
    cfg = load_study(tmp_path / "mixed-fleet.toml")
    from sojourn.study.runner import StudyRunner

    sc = StudyRunner(cfg).trial_scenario({"fleet.pools.1.gpu": "l40s", "fleet.pools.1.nodes": 0, "fleet.pools.1.tp": 2})
    assert [(p.gpu, p.nodes, p.tp) for p in sc.fleet.pools] == [("a100-80gb", 3, 1), ("l40s", 0, 2)]
    assert sc.cost_per_hour == 0.0  # nothing added, the A100s are owned
    for key, value, field in (('"fleet.pools.1.gpu"', '["nope"]', "space.fleet.pools.1.gpu"),
                              ('"fleet.pools.2.nodes"', "[1]", "space.fleet.pools.2.nodes"),
                              ('"fleet.pools.1.tp"', "[0]", "space.fleet.pools.1.tp")):
        # The shipped study with one line of its space replaced (or added) by the bad one.
        lines = [ln for ln in (tmp_path / "mixed-fleet.toml").read_text().splitlines() if not ln.startswith(key)]
        text = "\n".join(lines).replace("[space]", f"[space]\n{key} = {value}", 1)
        bad = tmp_path / "bad.toml"
        bad.write_text(text.replace('name = "mixed-fleet"', 'name = "bad"'))
        with pytest.raises(ConfigError) as e:
            load_study(bad)
        assert e.value.field == field, e.value


def test_compare_hardware_addition_on_the_command_line(tmp_path, capsys):
    import csv
    import pathlib

    from sojourn.cli import main

    (tmp_path / "objectives").symlink_to(pathlib.Path("objectives").resolve())
    (tmp_path / "sc.toml").write_text("""
sla_hours = 0.005555555555555556
[workload]
batch_rate_per_hour = 10800.0
batch_size = { dist = "geometric", mean = 2 }
input_tokens = { dist = "fixed", value = 1 }
output_tokens = { dist = "fixed", value = 1 }
[fleet]
gpu = "a100-80gb"
nodes = 2
server = { kind = "generic", service_time = { dist = "exponential", mean = 1.0 } }
[serving]
on_deadline = "finish"
[simulation]
horizon_hours = 1.0
warmup_hours = 0.1
replications = 4
seed = 3
fidelity = "fast"
""")
    study = tmp_path / "s.toml"
    study.write_text('[study]\nname = "s"\nscenario = "sc.toml"\n[space]\nnodes = [1, 2]\n')
    # No GPU type to add: one clear error (exit 2), naming the option.
    assert main(["compare-hardware", str(study), "--addition", "--target-miss", "0.01"]) == 2
    assert "--gpus" in capsys.readouterr().err
    assert main(["compare-hardware", str(study), "--addition", "--target-miss", "0.01", "--gpus", "h100-sxm,l40s",
                 "--out", str(tmp_path / "o")]) == 0
    rows = list(csv.DictReader((tmp_path / "o" / "addition.csv").open()))
    assert [r["gpu"] for r in rows] == ["h100-sxm", "l40s"]
    assert all(int(r["nodes_added"]) >= 5 and float(r["p_miss_used"]) <= 0.01 for r in rows)
    assert "added $/h" in capsys.readouterr().out


def test_an_infeasible_mixed_trial_is_priced_as_its_added_pools():
    import pathlib

    from sojourn.study.config import load_study
    from sojourn.study.runner import StudyRunner

    base = pathlib.Path("studies")
    runner = StudyRunner(load_study(base / "mixed-fleet.toml"))
    params = {"fleet.pools.1.gpu": "h200", "fleet.pools.1.nodes": 4, "fleet.pools.1.tp": 2}
    h200 = runner.base.catalogue_obj().gpu("h200").price_usd_per_gpu_hour
    assert runner._cost_of(params) == pytest.approx(8 * h200)
    assert runner._cost_of(params) == pytest.approx(runner.trial_scenario(params).cost_per_hour)


def test_simulate_prints_the_added_and_the_whole_fleet_s_rent(capsys):
    from sojourn.cli import main

    assert main(["simulate", "studies/mixed-fleet-scenario.toml", "--fidelity", "fast", "--horizon-hours", "24"]) == 0
    out = capsys.readouterr().out
    assert "2.49 $/h added (the owned nodes' rent 6 $/h; the whole fleet 8.49 $/h)" in out


def test_a_mixed_fleet_is_calibrated_only_when_every_pool_is():
    d = pooled(engine_scenario(), [{"gpu": "a100-80gb", "nodes": 1}, {"gpu": "h100-sxm", "nodes": 1}])
    calibrated, source = scenario_from_dict(d).calibration()
    marks = [scenario_from_dict(engine_scenario(**{"fleet.gpu": g})).calibration() for g in ("a100-80gb", "h100-sxm")]
    assert calibrated == all(c for c, _ in marks)
    assert source == f"pool 0: {marks[0][1]}; pool 1: {marks[1][1]}"
    d = pooled(engine_scenario(), [{"gpu": "h100-sxm", "nodes": 1}, {"gpu": "l4", "nodes": 1}])
    l4 = scenario_from_dict(engine_scenario(**{"fleet.gpu": "l4"})).calibration()[0]
    assert scenario_from_dict(d).calibration()[0] == (marks[1][0] and l4)


def test_front_labels_name_every_pool_the_trial_runs() -> None:
    # The fleet label of the front table, plot and report: each non-empty pool with the trial's values.
    from pathlib import Path

    from sojourn.scenario import load_scenario
    from sojourn.study.front import fleet_label

    base = load_scenario(Path(__file__).parent.parent / "studies" / "mixed-fleet-scenario.toml")
    params = {"fleet.pools.1.gpu": "h200", "fleet.pools.1.nodes": 5, "fleet.pools.1.tp": 2}
    assert fleet_label(params, base) == "3 x a100-80gb tp1 owned + 5 x h200 tp2"
    assert fleet_label({**params, "fleet.pools.1.nodes": 0}, base, short=True) == "3×a100-80gb tp1 owned"


# --- node failures on a mixed fleet (fleet.failures with fleet.pools) -------------------------


def _two_pool_failures(on_failure: str = "recompute", seed: int = 11) -> dict:
    """M^X/M/4 on two generic pools (2 nodes of speed 1, tp 1; 2 of speed 2, tp 2) failing at 1 h per
    GPU (so 1 h and 0.5 h a node), 6-minute repairs; 3.6 requests a second against 6 (0.7 on
    the capacity that serves on average), cancellation at a 60 s deadline."""
    return {
        "sla_hours": 60.0 / 3600.0,
        "workload": {"batch_rate_per_hour": 3.6 * 3600 / 10, "batch_size": {"dist": "geometric", "mean": 10},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}},
                  "pools": [{"nodes": 2}, {"nodes": 2, "tp": 2, "speed": 2.0}],
                  "failures": {"mtbf_hours_per_gpu": 1.0, "repair_hours": 0.1, "on_failure": on_failure}},
        "simulation": {"horizon_hours": 12.0, "warmup_hours": 1.0, "replications": 8, "start": "empty", "seed": seed},
    }


def test_each_pool_fails_at_its_own_gpu_rate_and_its_failed_share_is_mttr_over_mtbf_plus_mttr():
    from scipy import stats

    from sojourn.fast.availability import capacity_path

    sc = scenario_from_dict(_two_pool_failures())
    realism = sc.fleet_realism()
    assert [(p.nodes, p.mtbf_node_h, p.repair_h) for p in realism.pools] == [(2, 1.0, 0.1), (2, 0.5, 0.1)]
    # Conservation per pool over independent draws of the node processes: failed node-time over
    # the span holds MTTR / (MTBF + MTTR) of that pool's nodes (95% t-interval, fixed seed).
    rng = np.random.default_rng(21)
    span = 20 * 3600.0
    shares = np.array([[capacity_path(realism, rng, span, (0.0, span), 0.0, 0.0).summary[f"failed_node_s:{k}"]
                        / (2 * span) for k in (0, 1)] for _ in range(30)])
    for k, want in ((0, 0.1 / 1.1), (1, 0.1 / 0.6)):
        x = shares[:, k]
        lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        assert lo <= want <= hi, (k, lo, hi)
    # The capacity process weighs each node by its pool's speed over the mean node's (1.5): 2/3 and 4/3.
    from sojourn.fast.simulate import node_weights

    assert node_weights(sc) == pytest.approx([2 / 3, 2 / 3, 4 / 3, 4 / 3])
    # Unset, each pool's nodes fail at their own GPU's catalogue MTBF per GPU over their tp.
    d = _two_pool_failures()
    d["fleet"]["failures"] = {}
    from sojourn.catalogue import reliability

    pools = scenario_from_dict(d).fleet_realism().pools
    assert [p.mtbf_node_h for p in pools] == pytest.approx([reliability("h100-sxm").mtbf_hours_per_gpu / tp
                                                            for tp in (1, 2)])


@pytest.mark.parametrize("on_failure", ["recompute", "lose"])
def test_tiers_agree_on_a_two_pool_fleet_with_failures(on_failure):
    # Both tiers on the two-pool fleet with failures: P(miss) intervals overlap, each mean sojourn
    # inside the other's interval widened by 5%, and the failed share within 3 points.
    from sojourn.fast import fast_simulate

    sc = scenario_from_dict(_two_pool_failures(on_failure))
    q = simulate(sc).to_result()
    f = fast_simulate(sc).to_result()
    assert_tiers_agree(q, f)
    want = (2 * 0.1 / 1.1 + 2 * 0.1 / 0.6) / 4
    for r in (q, f):
        assert r["fleet_realism"]["failed_share"] == pytest.approx(want, abs=0.03)
        assert [p["mtbf_node_hours"] for p in r["fleet_realism"]["pools"]] == [1.0, 0.5]
    if on_failure == "lose":
        assert q["cancelled_by"]["node_failure"] > 0 and f["cancelled_by"]["node_failure"] > 0
    else:
        # Failures matter here: on never-failing nodes P(miss) is far lower.
        calm = fast_simulate(sc.with_updates({"fleet.failures.mtbf_hours_per_gpu": 1e6})).to_result()
        assert calm["p_miss_ci"][1] < q["p_miss_ci"][0]


def test_a_carried_over_pool_marks_the_mixed_fleet_carried_everywhere() -> None:
    # perf.scenario_calibration (front rows, report, plot, compare-hardware, simulate) reads a mixed fleet as
    # its least certain pool: an H200 pool (speed carried over from H100) makes the fleet "carried from h100-sxm".
    from pathlib import Path

    from sojourn.perf import scenario_calibration
    from sojourn.scenario import load_scenario

    base = load_scenario(Path(__file__).parent.parent / "studies" / "mixed-fleet-scenario.toml")
    assert scenario_calibration(base).calibrated  # A100 and H100 pools, both fitted on their own GPU
    mixed = base.with_updates({"fleet.pools.1.gpu": "h200"})
    cal = scenario_calibration(mixed)
    assert not cal.calibrated and cal.carried_from == "h100-sxm"
    assert "pool 0: " in cal.source and "pool 1: carried over from h100-sxm" in cal.source
    assert mixed.calibration() == (cal.calibrated, cal.source)
