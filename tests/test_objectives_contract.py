"""Contract suite: every objective module in objectives/ against every result shape the project produces.

Shapes, each produced for real: the request tier, the fast tier, zero misses and an
unstable fleet (offered load >= 1, finishing late work or cancelling it at the deadline)
in both tiers, the pessimistic result of a configuration settled without simulating
(``runner.pessimistic_result``), and each of those after the CLI's JSON (``emit_json``:
a non-finite number is null) and after a real study storage (``runner._jsonable`` then
SQLite: inf is the string "inf"). A module dropped into objectives/ is discovered and
held to the same contract.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from functools import cache
from pathlib import Path

import optuna
import pytest

from sojourn._cli._common import emit_json
from sojourn._errors import ConfigError
from sojourn.evaluate import run_scenario
from sojourn.scenario import Scenario, scenario_from_dict
from sojourn.study.config import StudySettings
from sojourn.study.objectives import Objective, check_objectives, load_objectives
from sojourn.study.runner import _jsonable, pessimistic_result

OBJ_DIR = Path(__file__).resolve().parents[1] / "objectives"
#: Discovered as ``load_objectives`` lists them: a new module is tested without editing this file.
NAMES = sorted(p.stem for p in OBJ_DIR.glob("*.py") if not p.stem.startswith("_"))
#: Objectives of misses: a fleet where nothing misses must beat an overloaded one, strictly.
MISS_OBJECTIVES = {"sla_miss", "batch_miss", "p99_sojourn"}
#: The study settings objectives see: the defaults, and the other statistic without a floor.
SETTINGS = {
    "defaults": StudySettings(name="contract", scenario="scenario.toml"),
    "mean, no floor": StudySettings(name="contract", scenario="scenario.toml", sla_miss_statistic="mean",
                                    p_miss_floor=0.0),
}


def mm1(rho: float, sla_s: float, on_deadline: str = "finish") -> Scenario:
    """A generic M/M/1 server (mean service 1 s) at load ``rho``: milliseconds per run."""
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": rho * 3600.0, "batch_size": {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
        "serving": {"on_deadline": on_deadline},
        "simulation": {"horizon_hours": 0.3, "warmup_hours": 0.05, "replications": 2, "seed": 4},
    })


@cache
def shapes() -> dict[str, tuple[dict, Scenario]]:
    busy, idle = mm1(0.8, 5.0), mm1(0.3, 600.0)
    over, over_cancel = mm1(1.3, 20.0), mm1(1.3, 20.0, "cancel")
    # Overloaded by 10% with a long SLA: a short run sees its queue build but few or no misses.
    creeping = mm1(1.1, 600.0)
    out: dict[str, tuple[dict, Scenario]] = {}
    for tier in ("request", "fast"):
        out[tier] = (run_scenario(busy, tier, replications=2), busy)
        out[f"zero misses ({tier})"] = (run_scenario(idle, tier, replications=2), idle)
        out[f"unstable ({tier})"] = (run_scenario(over, tier, replications=2), over)
        out[f"unstable, creeping ({tier})"] = (run_scenario(creeping, tier, replications=2), creeping)
        out[f"unstable, cancelled ({tier})"] = (run_scenario(over_cancel, tier, replications=2), over_cancel)
    out["pessimistic"] = (pessimistic_result(busy.cost_per_hour), busy)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/store.db"
        study = optuna.create_study(storage=url, study_name="store")
        for name, (res, sc) in list(out.items()):
            emit_json(res, out=f"{tmp}/result.json")  # what `sojourn simulate --json` writes
            out[f"{name}, JSON"] = (json.loads(Path(f"{tmp}/result.json").read_text()), sc)
            trial = study.ask()
            for k, v in res.items():  # as StudyRunner.objective stores a result
                trial.set_user_attr(k, _jsonable(v))
            study.tell(trial, 0.0)
        stored = optuna.load_study(storage=url, study_name="store").trials
        for (name, (_res, sc)), t in zip(list(out.items())[: len(stored)], stored, strict=True):
            out[f"{name}, stored"] = (dict(t.user_attrs), sc)
    return out


def values_of(name: str, settings: StudySettings) -> dict[str, float]:
    (obj,) = load_objectives([name], OBJ_DIR)
    return {shape: obj(res, sc, settings) for shape, (res, sc) in shapes().items()}


def test_the_shapes_are_what_they_are_named():
    s = shapes()
    for tier in ("request", "fast"):
        assert s[tier][0]["fidelity"] == tier and 0 < s[tier][0]["p_miss"] < 1
        assert s[f"zero misses ({tier})"][0]["p_miss"] == 0.0
        assert s[f"unstable ({tier})"][0]["stable"] is False
        assert s[f"unstable, creeping ({tier})"][0]["stable"] is False
        assert s[f"unstable, cancelled ({tier})"][1].serving.on_deadline == "cancel"
    # Non-finite numbers are what each path makes of them: null in JSON, "inf" in the storage.
    assert s["unstable (request)"][0]["sojourn_p99_s"] is None  # more than 1% unserved: no p99
    assert s["unstable, creeping (request)"][0]["p_miss"] == 0.0  # the run alone would call it perfect
    assert s["pessimistic, JSON"][0]["sojourn_p99_s"] == math.inf
    assert s["pessimistic, stored"][0]["sojourn_p99_s"] == "inf"
    assert len(s) == 3 * 11


def test_every_module_is_discovered():
    assert {"sla_miss", "batch_miss", "p99_sojourn", "cost_per_hour"} <= set(NAMES)
    assert {o.name for o in load_objectives(NAMES, OBJ_DIR)} == set(NAMES)


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
@pytest.mark.parametrize("name", NAMES)
def test_a_float_never_nan_deterministic_and_the_result_left_alone(name, settings):
    (obj,) = load_objectives([name], OBJ_DIR)
    assert obj.direction in ("minimize", "maximize")
    for shape, (res, sc) in shapes().items():
        before = copy.deepcopy(res)
        raw = obj.fn(res, sc, settings)  # the module's own return value, before Objective's float()
        assert isinstance(raw, float), (shape, raw)
        assert not math.isnan(raw), shape
        assert res == before, shape  # the runner stores the result after the objectives read it
        assert obj.fn(copy.deepcopy(res), sc, settings) == raw, shape


@pytest.mark.parametrize("name", NAMES)
def test_optuna_takes_every_value_as_a_complete_trial(name, tmp_path):
    (obj,) = load_objectives([name], OBJ_DIR)
    values = values_of(name, SETTINGS["defaults"])
    # One objective in memory, and beside cost in a SQLite study as a study runs (inf stored and read back).
    single = optuna.create_study(direction=obj.direction)
    url = f"sqlite:///{tmp_path / 'tell.db'}"
    multi = optuna.create_study(directions=[obj.direction, "minimize"], storage=url, study_name="tell")
    for v in values.values():
        single.tell(single.ask(), v)
        multi.tell(multi.ask(), [v, 1.0])
    reloaded = optuna.load_study(storage=url, study_name="tell").trials
    for trials in (single.trials, reloaded):
        assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * len(values)
    assert [t.values[0] for t in reloaded] == list(values.values())


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
@pytest.mark.parametrize("name", NAMES)
def test_a_configuration_that_cannot_work_is_never_better(name, settings):
    (obj,) = load_objectives([name], OBJ_DIR)
    sign = 1 if obj.direction == "minimize" else -1
    values = values_of(name, settings)
    for shape, v in values.items():
        for how in ("", ", JSON", ", stored"):
            assert sign * values[f"pessimistic{how}"] >= sign * v, (shape, values)


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
@pytest.mark.parametrize("name", sorted(MISS_OBJECTIVES))
def test_miss_objectives_rank_no_misses_over_overload_and_overload_as_the_worst(name, settings):
    (obj,) = load_objectives([name], OBJ_DIR)
    sign = 1 if obj.direction == "minimize" else -1
    values = values_of(name, settings)
    worst = values["pessimistic"]
    for how in ("", ", JSON", ", stored"):
        for tier in ("request", "fast"):
            zero = values[f"zero misses ({tier}){how}"]
            assert sign * zero < sign * worst, (tier, how, values)
            # A fleet that cannot keep up and finishes late work: its misses grow without bound,
            # however few a short run counted.
            assert values[f"unstable ({tier}){how}"] == worst, (tier, how, values)
            assert values[f"unstable, creeping ({tier}){how}"] == worst, (tier, how, values)
            assert sign * zero < sign * values[f"unstable, cancelled ({tier}){how}"], (tier, how, values)
        # The same result read through JSON or the storage reads the same.
        for shape in ("request", "fast", "zero misses (request)", "unstable, cancelled (fast)"):
            assert values[f"{shape}{how}"] == values[shape], (shape, how)


def test_sla_miss_reads_an_unstable_fleet_as_missing_everything_unless_it_cancels():
    values = values_of("sla_miss", SETTINGS["defaults"])
    for shape in ("unstable (request)", "unstable (fast)", "unstable, creeping (request)",
                  "unstable, creeping (request), stored", "unstable, creeping (fast), JSON"):
        assert values[shape] == 1.0, shape
    assert values["unstable, cancelled (fast)"] < 1.0  # cancellation bounds it: the sample stands


def test_p99_beyond_every_served_request_is_the_worst_not_an_error():
    values = values_of("p99_sojourn", SETTINGS["defaults"])
    res, _ = shapes()["unstable, cancelled (request)"]
    assert res["sojourn_p99_s"] is None and res["stable"] is False
    assert values["unstable, cancelled (request)"] == math.inf
    assert 0 < values["zero misses (request)"] < math.inf
    assert values["zero misses (request), JSON"] == values["zero misses (request)"]


#: What each objective reads of a result, and the worst value it gives: a result without the
#: value, with a value no number (None, "nan") or an infinite one reads as that worst.
READS = {"batch_miss": (("batch_miss",), 1.0), "p99_sojourn": (("sojourn_p99_s",), math.inf),
         # Both of the sample's numbers: which one counts depends on settings.sla_miss_statistic.
         "sla_miss": (("p_miss", "p_miss_upper"), 1.0)}


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
@pytest.mark.parametrize("name", sorted(READS))
def test_a_result_missing_a_value_reads_as_the_worst(name, settings):
    # A user-made or older result without the key, or with a value no number: assume the worst.
    # The request tier: no analytic value stands in for a missing sample (see sla_miss_value).
    (obj,) = load_objectives([name], OBJ_DIR)
    keys, worst = READS[name]
    tested = []
    for shape in ("request", "fast", "zero misses (request)", "request, JSON", "fast, stored",
                  "zero misses (request), stored"):
        res, sc = shapes()[shape]
        if obj(res, sc, settings) == worst:  # e.g. the upper bound of 2 replications' P(miss) is 1
            continue
        if name == "sla_miss" and shape.startswith("fast"):
            continue  # the fast tier's analytic value is the documented stand-in for a missing sample
        tested.append(shape)
        bad = [{k: v for k, v in res.items() if k not in keys}]
        bad += [{**res, **dict.fromkeys(keys, v)} for v in ("nan", None, math.nan, math.inf, "inf")]
        for b in bad:
            assert obj(b, sc, settings) == worst, (shape, b)
    assert any("request" in t for t in tested) and any(t.endswith(("JSON", "stored")) for t in tested), tested


# --- monotone where it should be -------------------------------------------------------------------

#: For each objective of the result: a copy of a result made worse by a level x in [0, 1] of what
#: the objective measures (x = 0: nothing missed, instantly; x = 1: everything missed, or waited
#: forever). The objective must never get better as x grows, and strictly worse somewhere on a
#: stable result. An objective added to objectives/ fails ``test_every_objective_states_...``
#: until it is given an entry here (or in COSTS).
def _p_miss(res: dict, x: float) -> dict:
    upper = min(1.0, 2 * x + 1e-3 * (x > 0))
    return {**res, "p_miss": x, "p_miss_upper": upper, "p_miss_ci": [x / 2, upper]}


WORSE = {
    "sla_miss": _p_miss,  # the sample's P(miss) grows; an analytic value, if any, stays
    "batch_miss": lambda res, x: {**res, "batch_miss": x},
    "p99_sojourn": lambda res, x: {**res, "sojourn_p99_s": math.inf if x == 1 else 1e6 * x},
}
#: Objectives of the configuration, not of its result: each must follow this function of the scenario.
COSTS = {"cost_per_hour": lambda sc: sc.cost_per_hour}
LEVELS = [0.0, 1e-9, 1e-6, 1e-4, 0.01, 0.1, 0.3, 0.5, 0.9, 1.0]


def test_every_objective_states_what_makes_it_worse():
    assert set(NAMES) == set(WORSE) | set(COSTS)
    assert not set(WORSE) & set(COSTS)


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
@pytest.mark.parametrize("name", sorted(WORSE))
def test_a_worse_result_is_never_better(name, settings):
    (obj,) = load_objectives([name], OBJ_DIR)
    sign = 1 if obj.direction == "minimize" else -1
    for shape, (res, sc) in shapes().items():
        values = [sign * obj(WORSE[name](res, x), sc, settings) for x in LEVELS]
        assert values == sorted(values), (shape, dict(zip(LEVELS, values)))
        if shape in ("request", "fast", "zero misses (request)", "request, JSON", "fast, stored"):
            # Stable and simulated: what it measures counts (above the study's floor of P(miss)).
            assert values[LEVELS.index(0.01)] < values[LEVELS.index(0.5)] < values[-1] or (
                name == "sla_miss" and values[LEVELS.index(0.1)] < values[-1]), (shape, values)


@pytest.mark.parametrize("name", sorted(COSTS))
def test_a_cost_follows_the_configuration_not_the_result(name):
    (obj,) = load_objectives([name], OBJ_DIR)
    sign = 1 if obj.direction == "minimize" else -1
    res, base = shapes()["request"]
    costs = []
    for nodes, tp, price in ((1, 1, 0.5), (2, 1, 0.5), (2, 2, 0.5), (2, 2, 3.0), (7, 2, 3.0)):
        sc = base.with_updates({"fleet.nodes": nodes, "fleet.tp": tp, "fleet.price_usd_per_gpu_hour": price})
        want = COSTS[name](sc)
        for shape, (r, _) in shapes().items():  # whatever the result, simulated or not
            assert obj(r, sc, SETTINGS["defaults"]) == want, shape
        assert obj({}, sc, None) == want
        costs.append(sign * obj(res, sc, SETTINGS["defaults"]))
    assert costs == sorted(costs) and len(set(costs)) == len(costs)


@pytest.mark.parametrize("name", NAMES)
def test_each_objective_has_its_name_a_direction_and_a_summary(name):
    (obj,) = load_objectives([name], OBJ_DIR)
    assert obj.name == name and obj.direction in ("minimize", "maximize")
    assert obj.doc and not obj.doc.startswith(" ")  # the module docstring's first line: what --help shows
    # check_objectives, which every study runs at load, accepts it.
    check_objectives([obj], shapes()["request"][1], SETTINGS["defaults"])


def test_an_objective_returning_nan_stops_the_study_naming_it():
    nan = Objective("broken", "minimize", lambda result, scenario, settings=None: math.nan, "")
    res, sc = shapes()["request"]
    with pytest.raises(ConfigError, match="broken returned NaN") as err:
        nan(res, sc)
    assert err.value.field == "study.objectives"
    raising = Objective("raises", "minimize", lambda result, scenario, settings=None: result["no such key"], "")
    with pytest.raises(ConfigError, match="raises fails on an infeasible") as err:
        check_objectives([raising], sc)
    assert err.value.field == "study.objectives"


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_a_study_survives_an_infinite_p99(tmp_path, sampler):
    # Issue 11: the p99 of a saturated fleet raised TypeError, and optimize(catch=()) aborted the
    # study. Now it is +inf, which both samplers take past their random start-up trials.
    (tmp_path / "s.toml").write_text(
        'sla_hours = 0.005\n[workload]\nbatch_rate_per_hour = 7200\nbatch_size = { dist = "fixed", value = 1 }\n'
        'input_tokens = { dist = "fixed", value = 1 }\noutput_tokens = { dist = "fixed", value = 1 }\n'
        '[fleet]\nserver = { kind = "generic", service_time = { dist = "exponential", mean = 1.0 } }\n'
        '[serving]\non_deadline = "finish"\n'
        '[simulation]\nhorizon_hours = 0.03\nwarmup_hours = 0.01\nreplications = 2\nfidelity = "request"\n')
    (tmp_path / "study.toml").write_text(
        f'[study]\nname = "p99"\nscenario = "s.toml"\nn_trials = 10\nobjectives = ["p99_sojourn", "cost_per_hour"]\n'
        f'objectives_dir = "{OBJ_DIR}"\nmax_load = 3.0\nrefine_nodes = false\nsampler = "{sampler}"\n'
        '[space]\nnodes = [1, 2, 3, 4, 5, 6, 7, 8]\ndiscipline = ["fifo", "lifo", "sjf"]\n')
    from sojourn.study import StudyRunner, load_study

    study = StudyRunner(load_study(tmp_path / "study.toml")).run()
    states = [t.state for t in study.trials]
    assert len(states) >= 10 and all(s == optuna.trial.TrialState.COMPLETE for s in states)
    assert any(math.isinf(t.values[0]) for t in study.trials)  # 1 or 2 nodes: load >= 1, no finite p99
