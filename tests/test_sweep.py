"""``sojourn study sweep``: a small real study (SQLite, generic servers, the fast tier) rerun under what-ifs."""

from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

import pytest

from _tiny_study import TINY_SCENARIO
from sojourn.cli import main
from sojourn.study import StudyRunner, front_trials, load_study
from sojourn.study.sweep import cheapest_per_target, rerun_front, sweep_trials
from sojourn.whatif import WhatIf

ROOT = Path(__file__).resolve().parents[1]
RATES = (1.0, 1.1, 1.25, 1.5)
TARGETS = (1e-1, 1e-2, 1e-3)


def write_study(tmp_path: Path) -> Path:
    (tmp_path / "scenario.toml").write_text(TINY_SCENARIO)
    p = tmp_path / "sweep.toml"
    p.write_text(textwrap.dedent(f"""
        [study]
        name = "sweep"
        scenario = "scenario.toml"
        n_trials = 14
        objectives = ["sla_miss", "cost_per_hour"]
        budget_per_hour = 40.0
        seed = 3
        fidelity = "fast"
        objectives_dir = "{ROOT / 'objectives'}"
        confirm_replications = 4
        [space]
        gpu = ["h100-sxm", "a100-80gb"]
        nodes = {{ low = 6, high = 16 }}
        discipline = ["fifo", "edf"]
        """))
    return p


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = write_study(tmp_path_factory.mktemp("sweep"))
    assert main(["study", "run", str(path), "--no-polish", "--no-confirm", "--quiet"]) == 0
    return path


def test_the_baseline_reproduces_the_stored_front(study_file):
    runner = StudyRunner(load_study(study_file))
    study = runner.load(create=False)
    front = front_trials(study)
    assert len(front) >= 2
    rows = rerun_front(runner, study, [WhatIf()])
    assert [r["trial"] for r in rows] == [t.number for t in front]
    for r, t in zip(rows, front):
        assert r["what_if"] == "baseline" and r["fidelity"] == "fast"
        assert r["p_miss"] == pytest.approx(t.values[0], rel=1e-12, abs=0.0), r
        assert r["cost_per_hour"] == pytest.approx(t.values[1])


def test_more_traffic_never_makes_the_cheapest_feasible_configuration_cheaper(study_file):
    runner = StudyRunner(load_study(study_file))
    study = runner.load(create=False)
    whatifs = [WhatIf(rate_scale=k) for k in RATES]
    rows = rerun_front(runner, study, whatifs, trials=sweep_trials(study, "feasible"))
    # Per FIFO configuration, on common random numbers (the same batches, their gaps divided by the rate):
    # the sampled share missing only grows with the rate (Lindley's recursion is monotone in the gaps), and so
    # does the exact stationary value; a load past max_load reads 1.
    by_trial: dict[int, list[dict]] = {}
    for r in rows:
        by_trial.setdefault(r["trial"], []).append(r)
    fifo = [rs for rs in by_trial.values() if rs[0]["discipline"] == "fifo"]
    assert len(fifo) >= 3
    for rs in fifo:
        for key in ("p_miss_sampled", "p_miss_analytic"):
            ps = [1.0 if r["fidelity"] == "check" else r[key] for r in rs]
            assert ps == sorted(ps), (rs[0]["config"], key, ps)
    # The study's reading (an upper bound, or the analytic value unless the sample shows it low) resolves
    # shares down to about 6e-4 on these short runs; the targets stay above it, where the cheapest answer
    # may only get dearer with the traffic.
    table = cheapest_per_target(rows, TARGETS, [w.label for w in whatifs])
    for target in TARGETS:
        costs = [math.inf if r["cost_per_hour"] is None else r["cost_per_hour"] for r in table if r["target"] == target]
        assert costs == sorted(costs), (target, costs)
    # The sweep has something to say: the baseline meets a target that the heaviest traffic makes dearer or unmet.
    first = [r for r in table if r["what_if"] == "baseline"]
    last = [r for r in table if r["what_if"] == whatifs[-1].label]
    assert any(a["cost_per_hour"] is not None and (b["cost_per_hour"] is None or b["cost_per_hour"] > a["cost_per_hour"])
               for a, b in zip(first, last))


def test_a_longer_sla_never_raises_p_miss(study_file):
    runner = StudyRunner(load_study(study_file))
    study = runner.load(create=False)
    rows = rerun_front(runner, study, [WhatIf(sla_hours=1.0), WhatIf(), WhatIf(sla_hours=4.0)])
    for t in front_trials(study):
        ps = [r["p_miss"] for r in rows if r["trial"] == t.number]
        assert ps[0] >= ps[1] >= ps[2], ps
        assert ps[0] > ps[2]


def test_the_command_prints_the_table_and_writes_it_as_csv(study_file, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["study", "sweep", str(study_file), "--what-if", "rate=1.25", "--sla-hours", "4", "--targets",
                 "0.1,0.01", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert [(r["what_if"], float(r["target"])) for r in rows] == [
        (w, t) for w in ("baseline", "rate=1.25", "sla=4") for t in (0.1, 0.01)]
    for r in rows:
        assert r["config"] in printed
        if r["trial"]:
            assert float(r["p_miss"]) <= float(r["target"])
            assert float(r["cost_per_month"]) == pytest.approx(730 * float(r["cost_per_hour"]))


@pytest.mark.parametrize("args,flag", [
    (["--what-if", "rate=0"], "--what-if rate"),
    (["--what-if", "speed=2"], "--what-if"),
    (["--rate-scale", "nan"], "--rate-scale"),
    (["--targets", "1e-9"], "--targets"),
    (["--targets", "2"], "--targets"),
    (["--out", "x.png"], "--out"),
])
def test_bad_options_are_one_error_naming_the_option(study_file, capsys, args, flag):
    assert main(["study", "sweep", str(study_file), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {flag}:" in err


def test_a_configuration_the_fast_tier_does_not_model_is_left_out_and_said_so(tmp_path):
    (tmp_path / "scenario.toml").write_text(TINY_SCENARIO)
    path = tmp_path / "fair.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        name = "fair"
        scenario = "scenario.toml"
        n_trials = 2
        seed = 1
        horizon_hours = 8
        replications = 2
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        nodes = [8, 9]
        discipline = ["fair"]
        """))
    runner = StudyRunner(load_study(path))
    study = runner.run()
    rows = rerun_front(runner, study, [WhatIf()], fidelity="fast")
    assert rows and all(r["p_miss"] is None and "not modelled by the fast tier" in r["note"] for r in rows)
    assert {r["config"] for r in cheapest_per_target(rows, TARGETS)} == {"none"}
    # At the request tier (the study's own), the baseline reproduces the stored front.
    again = rerun_front(runner, study, [WhatIf()], fidelity="request")
    assert [r["p_miss"] for r in again] == pytest.approx([t.values[0] for t in front_trials(study)], rel=1e-12)
