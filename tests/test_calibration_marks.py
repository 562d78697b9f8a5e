"""Every front row and point says whether its GPU's step times are calibrated on its own measurements."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path

import optuna
import pytest

from sojourn.perf import default_profile
from sojourn.scenario import scenario_from_dict
from sojourn.study import StudyRunner, load_study
from sojourn.study.front import front_rows, rows_to_csv

ROOT = Path(__file__).resolve().parents[1]

ENGINE = """
sla_hours = 24
[workload]
batch_rate_per_hour = 10.0
batch_size = { dist = "lognormal", median = 1000, sigma = 1.0, max = 100000 }
input_tokens = { dist = "lognormal", median = 500, sigma = 0.5, max = 4000 }
output_tokens = { dist = "lognormal", median = 200, sigma = 0.5, max = 2000 }
[model]
name = "llama-3.1-8b"
[fleet]
gpu = "h100-sxm"
nodes = 2
[simulation]
fidelity = "fast"
"""


@pytest.mark.parametrize(("gpu", "calibrated", "words"), [
    ("h100-sxm", True, "calibrated on h100-sxm"),
    ("a100-80gb", True, "calibrated on a100-80gb"),
    ("h200", False, "carried over from h100-sxm"),
    ("mi300x", False, "carried over from h100-sxm"),
])
def test_profile_and_scenario_say_where_the_factors_come_from(gpu, calibrated, words):
    prof = default_profile(gpu)
    assert prof.calibrated is calibrated
    assert words in prof.calibration
    sc = scenario_from_dict({**_engine_dict(), "fleet": {"gpu": gpu, "nodes": 2}})
    assert sc.calibration() == (calibrated, prof.calibration)


def test_a_generic_server_and_a_users_own_profile(tmp_path):
    generic = scenario_from_dict({"workload": {"batch_rate_per_hour": 1, "input_tokens": {"dist": "fixed", "value": 1},
                                               "output_tokens": {"dist": "fixed", "value": 1}},
                                  "fleet": {"server": {"kind": "generic",
                                                       "service_time": {"dist": "fixed", "value": 1.0}}}})
    assert generic.calibration()[0] is True and "generic" in generic.calibration()[1]
    # The uncalibrated prior is not calibrated.
    from sojourn.perf import PRIOR

    assert not PRIOR.calibrated


def _engine_dict():
    import tomllib

    return tomllib.loads(ENGINE)


def study_with_front(tmp_path: Path):
    (tmp_path / "scenario.toml").write_text(ENGINE)
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(f"""
        [study]
        name = "s"
        scenario = "scenario.toml"
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        gpu = ["h100-sxm", "h200"]
        nodes = [1, 2, 3]
        """))
    runner = StudyRunner(load_study(p))
    study = runner.load()
    dists = {"gpu": optuna.distributions.CategoricalDistribution(["h100-sxm", "h200"]),
             "nodes": optuna.distributions.CategoricalDistribution([1, 2, 3])}
    # A front of two points: a cheap H100 fleet and a dearer H200 one that misses less.
    for gpu, nodes, miss in (("h100-sxm", 1, 1e-2), ("h200", 2, 1e-5), ("h100-sxm", 3, 1e-4)):
        cost = runner._cost_of({"gpu": gpu, "nodes": nodes})
        study.add_trial(optuna.trial.create_trial(
            params={"gpu": gpu, "nodes": nodes}, distributions=dists, values=[miss, cost],
            user_attrs={"constraints": [0.0, 0.0], "cost_per_hour": cost, "p_miss": miss, "load": 0.5,
                        "fragile": gpu == "h200"}))
    return runner, study


def test_front_rows_csv_table_and_plot_mark_carried_over_gpus(tmp_path):
    from sojourn._cli.study import format_front
    from sojourn.study.plot import plot_front

    runner, study = study_with_front(tmp_path)
    space = list(runner.cfg.space)
    rows = front_rows(study, space, runner)
    by_gpu = {r["gpu"]: r for r in rows}
    assert by_gpu["h100-sxm"]["calibrated"] is True
    assert by_gpu["h200"]["calibrated"] is False and "carried over" in by_gpu["h200"]["calibration"]
    text = rows_to_csv(rows, space)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert {"calibrated", "calibration", "fragile", "load"} <= set(parsed[0])
    assert {r["gpu"]: r["calibrated"] for r in parsed} == {"h100-sxm": "True", "h200": "False"}
    table = format_front(rows, space)
    h200_line = next(line for line in table.splitlines() if "h200" in line and "carried" in line)
    assert "fragile" in h200_line
    assert not any("carried" in line for line in table.splitlines() if "h100-sxm" in line)
    assert "carried = no measurements of this GPU" in table  # the legend
    out = plot_front(study, tmp_path / "front.svg", runner=runner)
    svg = out.read_text()
    assert "carried over from another GPU" in svg and "fragile" in svg
    # Without the runner (an old caller), the rows still list, unmarked.
    assert all(r["calibrated"] is None for r in front_rows(study, space))
