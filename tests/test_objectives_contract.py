"""Contract suite: every objective module in objectives/ against every result shape the project produces.

Shapes, each produced for real: the request tier, the fast tier, the pessimistic result of
a configuration settled without simulating, an unstable fleet (both tiers), zero misses,
and each of those after JSON (the CLI's output) and after the study storage's encoding
(``runner._jsonable``: inf as the string "inf"). A new module in objectives/ is picked up
and held to the same contract.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import optuna
import pytest

from sojourn.evaluate import run_scenario
from sojourn.scenario import scenario_from_dict
from sojourn.study.objectives import load_objectives
from sojourn.study.runner import _jsonable, pessimistic_result

OBJ_DIR = Path(__file__).resolve().parents[1] / "objectives"
NAMES = sorted(p.stem for p in OBJ_DIR.glob("*.py") if not p.stem.startswith("_"))
MISS_OBJECTIVES = {"sla_miss", "batch_miss", "p99_sojourn"}


def mm1(rho: float, sla_s: float, on_deadline: str = "finish", reps: int = 2):
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": rho * 3600.0, "batch_size": {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
        "serving": {"on_deadline": on_deadline},
        "simulation": {"horizon_hours": 0.3, "warmup_hours": 0.05, "replications": reps, "seed": 4},
    })


class Settings:
    p_miss_floor = 1e-6
    sla_miss_statistic = "upper"


@cache
def shapes() -> dict[str, tuple[dict, object]]:
    busy, idle, over = mm1(0.8, 5.0), mm1(0.3, 600.0), mm1(1.3, 20.0)
    out = {
        "request": (run_scenario(busy, "request"), busy),
        "fast": (run_scenario(busy, "fast"), busy),
        "zero misses (request)": (run_scenario(idle, "request"), idle),
        "zero misses (fast)": (run_scenario(idle, "fast"), idle),
        "unstable (request)": (run_scenario(over, "request"), over),
        "unstable (fast)": (run_scenario(over, "fast"), over),
        "unstable, cancelled (fast)": (run_scenario(mm1(1.3, 20.0, "cancel"), "fast"), mm1(1.3, 20.0, "cancel")),
        "pessimistic": (pessimistic_result(busy.cost_per_hour), busy),
    }
    for name, (res, sc) in list(out.items()):
        out[f"{name}, JSON"] = (json.loads(json.dumps(res)), sc)
        out[f"{name}, stored"] = ({k: _jsonable(v) for k, v in res.items()}, sc)
    return out


def test_every_module_is_covered():
    assert {"sla_miss", "batch_miss", "p99_sojourn", "cost_per_hour"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_objective_contract(name):
    (obj,) = load_objectives([name], OBJ_DIR)
    assert obj.direction in ("minimize", "maximize")
    values = {}
    for shape, (res, sc) in shapes().items():
        v = obj(res, sc, Settings)
        assert isinstance(v, float), (shape, v)
        assert not math.isnan(v), shape
        assert v == obj(res, sc, Settings), shape  # deterministic
        values[shape] = v
    # Optuna takes every value as a finished trial (NaN would fail it, None raise).
    study = optuna.create_study(direction=obj.direction)
    for shape, v in values.items():
        t = study.ask()
        study.tell(t, v)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if name in MISS_OBJECTIVES:
        sign = 1 if obj.direction == "minimize" else -1
        for shape in values:
            # A configuration that cannot work is never better than any simulated one.
            assert sign * values["pessimistic"] >= sign * values[shape], (shape, values)
        # A fleet where nothing misses is better than an overloaded one.
        assert sign * values["zero misses (fast)"] < sign * values["unstable (fast)"]


def test_miss_objectives_read_the_unstable_fleet_as_missing_everything():
    (sla,) = load_objectives(["sla_miss"], OBJ_DIR)
    for shape in ("unstable (request)", "unstable (fast)", "unstable (request), stored", "unstable (fast), JSON"):
        res, sc = shapes()[shape]
        assert sla(res, sc, Settings) == 1.0, shape
    res, sc = shapes()["unstable, cancelled (fast)"]
    assert sla(res, sc, Settings) < 1.0  # cancellation bounds it: the sample stands


def test_p99_beyond_every_served_request_is_worst_not_an_error():
    (p99,) = load_objectives(["p99_sojourn"], OBJ_DIR)
    res, sc = shapes()["unstable (request)"]
    assert res["sojourn_p99_s"] is None  # more than 1% unserved: p99 is infinite
    assert p99(res, sc, Settings) == math.inf
    ok, sc2 = shapes()["zero misses (request)"]
    assert 0 < p99(ok, sc2, Settings) < math.inf


def test_a_study_survives_an_infinite_p99(tmp_path):
    # The crash of issue 11: runner.optimize(catch=()) aborted the study on the TypeError.
    (tmp_path / "s.toml").write_text(
        'sla_hours = 0.005\n[workload]\nbatch_rate_per_hour = 3600\nbatch_size = { dist = "fixed", value = 1 }\n'
        'input_tokens = { dist = "fixed", value = 1 }\noutput_tokens = { dist = "fixed", value = 1 }\n'
        '[fleet]\nserver = { kind = "generic", service_time = { dist = "exponential", mean = 1.0 } }\n'
        '[serving]\non_deadline = "finish"\n'
        '[simulation]\nhorizon_hours = 0.2\nwarmup_hours = 0.02\nreplications = 2\nfidelity = "request"\n')
    (tmp_path / "study.toml").write_text(
        f'[study]\nname = "p99"\nscenario = "s.toml"\nn_trials = 3\nobjectives = ["p99_sojourn", "cost_per_hour"]\n'
        f'objectives_dir = "{OBJ_DIR}"\nmax_load = 2.0\nrefine_nodes = false\n[space]\nnodes = [1, 2, 3]\n')
    from sojourn.study import StudyRunner, load_study

    study = StudyRunner(load_study(tmp_path / "study.toml")).run()
    states = [t.state for t in study.trials]
    assert states and all(s == optuna.trial.TrialState.COMPLETE for s in states)
    assert any(math.isinf(t.values[0]) for t in study.trials)  # one node at rho 1 leaves p99 unserved


def test_a_result_missing_a_value_reads_as_the_worst():
    # A user-made or older result without the key: the miss objectives assume the worst.
    res, sc = shapes()["fast"]
    for name, worst in (("batch_miss", 1.0), ("p99_sojourn", math.inf)):
        (obj,) = load_objectives([name], OBJ_DIR)
        key = {"batch_miss": "batch_miss", "p99_sojourn": "sojourn_p99_s"}[name]
        stripped = {k: v for k, v in res.items() if k != key}
        assert obj(stripped, sc, Settings) == worst
        assert obj({**res, key: "nan"}, sc, Settings) == worst
