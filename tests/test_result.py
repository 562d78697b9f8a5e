"""``sojourn.result.Result``: one type for every tier's result, serialised once, read as a mapping.

Each test runs the real tiers on a generic M/M/1 server (milliseconds a run) and checks
what the rest of the code relies on: the round trips through ``to_dict``/``from_dict``
and the study's storage, the mapping view against ``to_dict``, the key sets of the tiers,
and that an objective receives a ``Result`` whichever way it is called.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import textwrap
from functools import cache

import optuna
import pytest

from _tiny_study import TINY_SCENARIO
from sojourn._cli._common import emit_json
from sojourn.evaluate import run_scenario
from sojourn.fast import FastResult, fast_simulate
from sojourn.request import SimResult, simulate
from sojourn.result import (
    CHECK_KEYS,
    COMMON_KEYS,
    FAST_ONLY,
    FAST_ORDER,
    REQUEST_ONLY,
    REQUEST_ORDER,
    Estimate,
    Result,
    finite,
    storable,
)
from sojourn.scenario import Scenario, scenario_from_dict
from sojourn.study import StudyRunner, load_study
from sojourn.study.objectives import load_objectives
from sojourn.study.runner import pessimistic_result


def mm1(rho: float, sla_s: float = 5.0, classes: bool = False) -> Scenario:
    wl = {"batch_rate_per_hour": rho * 3600.0 / 3, "batch_size": {"dist": "geometric", "mean": 3},
          "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}}
    if classes:
        wl["sla_classes"] = [{"hours": sla_s / 3600, "weight": 1.0}, {"hours": 6 * sla_s / 3600, "weight": 1.0}]
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": wl,
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
        "serving": {"discipline": "edf" if classes else "fifo"},
        "simulation": {"horizon_hours": 0.3, "warmup_hours": 0.05, "replications": 2, "seed": 4},
    })


@cache
def results() -> dict[str, Result]:
    """Every shape a run produces: both tiers, mixed SLA classes, overload (p99 None), the check tier."""
    out = {}
    for tier in ("request", "fast", "auto"):
        out[tier] = run_scenario(mm1(0.8), tier)
    out["classes"] = run_scenario(mm1(0.7, classes=True), "request")
    out["unstable"] = run_scenario(mm1(1.3, 20.0), "request")
    out["check"] = pessimistic_result(12.5)
    return out


@pytest.mark.parametrize("shape", ["request", "fast", "auto", "classes", "unstable", "check"])
def test_round_trip_through_to_dict_json_and_the_study_storage(shape):
    r = results()[shape]
    d = r.to_dict()
    back = Result.from_dict(d)
    assert back == r and back.to_dict() == d and list(back) == list(d)
    assert Result.from_dict(r) is r
    # Through the CLI's JSON: the same text as to_json, read back to the same result.
    assert json.loads(r.to_json()) == json.loads(json.dumps(d))
    assert Result.from_dict(json.loads(r.to_json())).to_json() == r.to_json()
    # Through a study's storage: non-finite numbers are strings there, and read back as floats.
    stored = r.to_storage()
    assert stored == {k: storable(v) for k, v in d.items()}
    json.dumps(stored, allow_nan=False)
    again = Result.from_dict(stored)
    assert again.to_storage() == stored
    assert again.p_miss_ci == tuple(d["p_miss_ci"])


def test_every_attribute_is_the_value_of_its_key_and_typed_as_declared():
    for shape, r in results().items():
        for k in r:
            v = getattr(r, k)
            assert (list(v) if isinstance(v, tuple) else v) == r[k], (shape, k)
        assert r.fidelity == r["fidelity"] and isinstance(r.p_miss_ci, tuple), shape
        for k in ("p_miss", "p_miss_upper", "batch_miss", "throughput_rps", "cost_per_hour"):
            assert isinstance(getattr(r, k), float), (shape, k)
    assert results()["unstable"].sojourn_p99_s is None  # beyond every served request
    assert results()["check"].sojourn_p99_s == math.inf  # exact: every request misses


@pytest.mark.parametrize("shape", ["request", "fast", "check"])
def test_the_mapping_view_is_to_dict(shape):
    r = results()[shape]
    d = r.to_dict()
    assert dict(r) == d and list(r) == list(d) and list(r.keys()) == list(d) and len(r) == len(d)
    assert [r[k] for k in d] == list(d.values()) and list(r.items()) == list(d.items())
    assert r == d and d == r  # Mapping equality, both ways
    assert "nope" not in r and r.get("nope", 7) == 7
    with pytest.raises(KeyError):
        r["nope"]
    # to_dict is a fresh copy: changing it leaves the result alone.
    d["p_miss_ci"][0] = -1.0
    d["p_miss"] = -1.0
    assert r["p_miss_ci"][0] != -1.0 and r["p_miss"] != -1.0 and r.to_dict() != d
    assert copy.deepcopy(r) == r


def test_read_only():
    r = results()["request"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.p_miss = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        r["p_miss"] = 0.0  # type: ignore[index]
    with pytest.raises(TypeError):
        Result.build(no_such_field=1.0)  # a tier's builder cannot invent a key
    with pytest.raises(ValueError):
        Result(p_miss=0.1, order=("p_miss", "p_miss"))


def test_both_tiers_share_the_common_keys_and_add_their_own():
    s = results()
    req, fast, check = set(s["request"]), set(s["fast"]), set(s["check"])
    assert set(COMMON_KEYS) <= req & fast
    assert req & fast == set(COMMON_KEYS) | {"fidelity_requested"}
    assert req == set(COMMON_KEYS) | set(REQUEST_ONLY) | {"fidelity_requested"}
    assert fast == set(COMMON_KEYS) | set(FAST_ONLY) | {"fidelity_requested"}
    assert set(s["auto"]) == fast and s["auto"]["fidelity_requested"] == "auto"
    assert list(s["check"]) == list(CHECK_KEYS) and set(CHECK_KEYS) < set(COMMON_KEYS)
    assert not set(REQUEST_ONLY) & set(FAST_ONLY) and check < req
    # Both tiers' own builders (not only run_scenario) give the same keys, in the CLI's order.
    sc = mm1(0.8)
    sim, fr = simulate(sc), fast_simulate(sc)
    assert isinstance(sim, SimResult) and isinstance(fr, FastResult)
    assert list(sim.to_result()) == list(s["request"])[:-1] and sim.to_dict() == sim.to_result().to_dict()
    assert list(fr.to_result()) == list(s["fast"])[:-1] and dict(fr) == fr.to_dict() == fr.to_result().to_dict()


def test_both_tiers_build_through_one_estimate_whose_order_must_name_every_value():
    s = results()
    assert issubclass(SimResult, Estimate) and issubclass(FastResult, Estimate)
    assert list(s["request"])[:-1] == list(REQUEST_ORDER) and list(s["fast"])[:-1] == list(FAST_ORDER)
    fr = fast_simulate(mm1(0.8))
    with pytest.raises(ValueError, match="p_miss_best"):  # an order that leaves a value out
        fr.result(tuple(k for k in FAST_ORDER if k != "p_miss_best"), fin=("p_miss_best",))
    with pytest.raises(ValueError, match="seed"):  # a value the order has no place for
        fr.result(FAST_ORDER + ("seed",))


def test_a_fast_result_rebuilds_its_mapping_when_a_field_is_set():
    fr = fast_simulate(mm1(0.8))
    first = fr.to_result()
    assert fr.to_result() is first  # built once, not on every key lookup
    fr.cost_per_hour = 99.0
    assert fr["cost_per_hour"] == 99.0 and fr.to_result() is not first


def test_from_dict_keeps_what_it_does_not_know_and_decodes_the_storage():
    d = {"p_miss": "nan", "sojourn_p99_s": "inf", "p_miss_ci": [0.0, "inf"], "p_miss_note": "nan",
         "batch_miss": "not a number", "my_key": {"x": 1}}
    r = Result.from_dict(d)
    assert math.isnan(r.p_miss) and r.sojourn_p99_s == math.inf and r.p_miss_ci == (0.0, math.inf)
    assert r.p_miss_note == "nan"  # a text field is text
    assert r.batch_miss == "not a number"  # kept: the objective decides what it means
    assert r.extra == {"my_key": {"x": 1}} and r["my_key"] == {"x": 1} and list(r) == list(d)
    assert Result.from_dict(r.to_dict()).to_dict() == r.to_dict()
    assert finite(math.inf) is None and finite(None) is None and finite(2) == 2.0


def test_the_cli_json_is_to_dict(tmp_path):
    for r in results().values():
        emit_json(r, out=str(tmp_path / "r.json"))  # what `sojourn simulate --json` writes
        assert (tmp_path / "r.json").read_text() == json.dumps(r.to_dict(), indent=2) + "\n"


SPY = '''"""Records what it receives."""
SEEN = []
direction = "minimize"


def objective(result, scenario, settings=None):
    SEEN.append(result)
    return 0.5
'''


def test_an_objective_receives_a_result(tmp_path):
    objs = tmp_path / "objectives"
    objs.mkdir()
    (objs / "spy.py").write_text(SPY)
    (obj,) = load_objectives(["spy"], objs)
    seen = obj.fn.__globals__["SEEN"]
    sc = mm1(0.8)
    for given in (results()["fast"], results()["fast"].to_dict(), results()["check"].to_storage()):
        assert obj(given, sc) == 0.5
        assert isinstance(seen[-1], Result) and seen[-1] == Result.from_dict(given)
    assert seen[0] is results()["fast"]
    # And in a study's trial, simulated or settled without simulating.
    (tmp_path / "scenario.toml").write_text(TINY_SCENARIO)
    (tmp_path / "s.toml").write_text(textwrap.dedent(f"""
        [study]
        name = "spy"
        scenario = "scenario.toml"
        n_trials = 2
        objectives = ["spy"]
        objectives_dir = "{objs}"
        [space]
        nodes = {{ low = 1, high = 8 }}
        """))
    runner = StudyRunner(load_study(tmp_path / "s.toml"))
    seen = runner.objectives[0].fn.__globals__["SEEN"]
    for nodes in (8, 1):  # 1 node is overloaded: settled by the cheap check
        assert runner.objective()(optuna.trial.FixedTrial({"nodes": nodes})) == (0.5,)
    assert [type(r) for r in seen] == [Result, Result]
    assert seen[0].fidelity == "request" and seen[1].fidelity == "check"
