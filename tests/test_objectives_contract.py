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
from sojourn.evaluate import run_scenario
from sojourn.scenario import Scenario, scenario_from_dict
from sojourn.study.config import StudySettings
from sojourn.study.objectives import load_objectives
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


@pytest.mark.parametrize("name", ["batch_miss", "p99_sojourn"])
def test_a_result_missing_a_value_reads_as_the_worst(name):
    # A user-made or older result without the key, or with a value no number: assume the worst.
    (obj,) = load_objectives([name], OBJ_DIR)
    key, worst = {"batch_miss": ("batch_miss", 1.0), "p99_sojourn": ("sojourn_p99_s", math.inf)}[name]
    res, sc = shapes()["fast"]
    assert obj(res, sc, SETTINGS["defaults"]) < worst
    for bad in ({k: v for k, v in res.items() if k != key}, {**res, key: "nan"}, {**res, key: None}):
        assert obj(bad, sc, SETTINGS["defaults"]) == worst


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
