"""Sizing studies end to end on a tiny space (generic servers, so each trial takes milliseconds)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from sqlalchemy.exc import SQLAlchemyError

from _tiny_study import TINY_SCENARIO
from sojourn import ConfigError
from sojourn.cli import main
from sojourn.study import StudyRunner, front_trials, load_study, non_dominated
from sojourn.study.front import is_feasible

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = TINY_SCENARIO


def write_study(tmp_path: Path, name="tiny", n_trials=8, budget=30.0, extra_space="", seed=7, sampler="tpe") -> Path:
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    text = textwrap.dedent(
        f"""
        [study]
        name = "{name}"
        scenario = "scenario.toml"
        n_trials = {n_trials}
        objectives = ["sla_miss", "cost_per_hour"]
        budget_per_hour = {budget}
        seed = {seed}
        sampler = "{sampler}"
        objectives_dir = "{ROOT / 'objectives'}"
        confirm_replications = 4

        [space]
        gpu = ["h100-sxm", "a100-80gb"]
        nodes = {{ low = 1, high = 8 }}
        discipline = ["fifo", "edf"]
        {extra_space}
        """
    )
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def n_evaluated(study) -> int:
    """Configurations evaluated: trials that repeated one (``duplicate_of``) do not count."""
    return sum(1 for t in study.trials if t.state.is_finished() and "duplicate_of" not in t.user_attrs)


def test_study_runs_end_to_end_and_front_is_non_dominated_within_budget(tmp_path):
    path = write_study(tmp_path)
    assert main(["study", "run", str(path), "--no-polish", "--no-progress"]) == 0
    runner = StudyRunner(load_study(path))
    study = runner.load(create=False)
    assert n_evaluated(study) == 8
    front = front_trials(study)
    assert front, "some configuration must be feasible"
    assert all(is_feasible(t) and t.user_attrs["cost_per_hour"] <= 30.0 for t in front)
    vals = [t.values for t in front]
    assert sorted(non_dominated(vals, [1, 1])) == list(range(len(vals)))
    # Every other feasible trial is dominated by (or equal to) some front trial.
    others = [t for t in study.trials if is_feasible(t) and t not in front]
    for t in others:
        assert any(all(f <= v for f, v in zip(ft.values, t.values)) for ft in front)
    out = tmp_path / "tiny-out"
    rows = list(csv.DictReader((out / "front.csv").open()))
    assert len(rows) == len(front) and {"p_miss", "p_miss_ci_lo", "cost_per_hour", "gpu", "nodes"} <= set(rows[0])
    assert (out / "front.png").stat().st_size > 1000
    # Every trial's user attributes hold its metrics (for optuna-dashboard).
    sim = [t for t in study.trials if "infeasible_reason" not in t.user_attrs]
    assert sim and all("sojourn_p99_s" in t.user_attrs and "p_miss_ci" in t.user_attrs for t in sim)


def test_resuming_adds_trials_to_the_same_study(tmp_path):
    path = write_study(tmp_path, n_trials=3)
    assert main(["study", "run", str(path), "--no-polish", "--no-progress", "--no-confirm"]) == 0
    assert main(["study", "run", str(path), "--no-polish", "--no-progress", "--no-confirm"]) == 0  # already at n_trials
    study = StudyRunner(load_study(path)).load(create=False)
    assert n_evaluated(study) == 3
    assert main(["study", "run", str(path), "--no-polish", "--no-progress", "--no-confirm", "--n-trials", "2"]) == 0
    study = StudyRunner(load_study(path)).load(create=False)
    assert n_evaluated(study) == 5
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) >= 2


def test_same_seed_same_trials(tmp_path):
    seqs = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        path = write_study(tmp_path / d, n_trials=6)
        StudyRunner(load_study(path)).run()
        study = StudyRunner(load_study(path)).load(create=False)
        seqs.append([(t.params, t.values) for t in study.trials])
    assert seqs[0] == seqs[1]
    (tmp_path / "c").mkdir()
    path = write_study(tmp_path / "c", n_trials=6, seed=8)
    StudyRunner(load_study(path)).run()
    other = [(t.params, t.values) for t in StudyRunner(load_study(path)).load(create=False).trials]
    assert other != seqs[0]


def test_objective_with_fixed_trial(tmp_path):
    runner = StudyRunner(load_study(write_study(tmp_path)))
    trial = optuna.trial.FixedTrial({"gpu": "h100-sxm", "nodes": 8, "discipline": "fifo"})
    miss, cost = runner.objective()(trial)
    assert cost == pytest.approx(8 * runner.base.catalogue_obj().gpu("h100-sxm").price_usd_per_gpu_hour)
    assert 0 < miss < 1
    assert trial.user_attrs["constraints"][1] == 0.0
    assert trial.user_attrs["load"] == pytest.approx(100 / (32 * 3600 / 900))  # 100 req/h on 32 slots of 900 s
    # Common random numbers: the same configuration gives the same value.
    assert runner.objective()(optuna.trial.FixedTrial({"gpu": "h100-sxm", "nodes": 8, "discipline": "fifo"}))[0] == miss


def test_offered_load_above_capacity_is_infeasible_without_simulating(tmp_path):
    runner = StudyRunner(load_study(write_study(tmp_path)))
    trial = optuna.trial.FixedTrial({"gpu": "h100-sxm", "nodes": 3, "discipline": "fifo"})
    miss, _ = runner.objective()(trial)
    assert miss == 1.0 and "offered load 2.08" in trial.user_attrs["infeasible_reason"]
    assert "requests_simulated" not in trial.user_attrs


def test_impossible_configuration_is_infeasible_without_simulating(tmp_path):
    (tmp_path / "scenario.toml").write_text(
        'sla_hours = 24\n[workload]\nbatch_rate_per_hour = 1.0\n'
        'input_tokens = { dist = "fixed", value = 100 }\noutput_tokens = { dist = "fixed", value = 100 }\n'
    )
    (tmp_path / "s.toml").write_text(
        f'[study]\nname = "x"\nscenario = "scenario.toml"\nobjectives_dir = "{ROOT / "objectives"}"\n'
        '[space]\ntp = [1, 3]\n'
    )
    runner = StudyRunner(load_study(tmp_path / "s.toml"))
    trial = optuna.trial.FixedTrial({"tp": 3})
    miss, cost = runner.objective()(trial)
    assert miss == 1.0 and "fleet.tp" in trial.user_attrs["infeasible_reason"]
    assert trial.user_attrs["constraints"][1] == 1.0


def test_over_budget_is_not_simulated(tmp_path):
    runner = StudyRunner(load_study(write_study(tmp_path, budget=5.0)))
    trial = optuna.trial.FixedTrial({"gpu": "h100-sxm", "nodes": 8, "discipline": "fifo"})
    miss, cost = runner.objective()(trial)
    assert miss == 1.0 and "budget" in trial.user_attrs["infeasible_reason"]
    assert trial.user_attrs["constraints"][0] > 0


def test_front_export_formats(tmp_path, capsys):
    path = write_study(tmp_path, n_trials=5)
    assert main(["study", "run", str(path), "--no-polish", "--no-progress", "--no-confirm"]) == 0
    capsys.readouterr()
    assert main(["study", "front", str(path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and all("p_miss" in r and "discipline" in r for r in rows)
    out = tmp_path / "front.csv"
    assert main(["study", "front", str(path), "--out", str(out)]) == 0
    assert out.read_text().startswith("trial,")
    html = tmp_path / "front.html"
    assert main(["study", "plot", str(path), "--out", str(html)]) == 0
    assert "<svg" in html.read_text()


def test_user_objective_dropped_in_a_folder(tmp_path):
    objs = tmp_path / "objectives"
    objs.mkdir()
    for name in ("sla_miss", "cost_per_hour"):
        (objs / f"{name}.py").write_text((ROOT / "objectives" / f"{name}.py").read_text())
    (objs / "gpus.py").write_text(
        '"""GPUs in the fleet."""\ndirection = "minimize"\n\ndef objective(result, scenario, settings=None):\n'
        "    return scenario.cost_per_hour * 0 + 1\n"
    )
    path = write_study(tmp_path)
    text = path.read_text().replace(f'objectives_dir = "{ROOT / "objectives"}"\n', "")
    text = text.replace('objectives = ["sla_miss", "cost_per_hour"]', 'objectives = ["sla_miss", "gpus"]')
    path.write_text(text)
    runner = StudyRunner(load_study(path))
    assert [o.name for o in runner.objectives] == ["sla_miss", "gpus"]
    vals = runner.objective()(optuna.trial.FixedTrial({"gpu": "h100-sxm", "nodes": 2, "discipline": "fifo"}))
    assert vals[1] == 1


def test_bad_study_files(tmp_path):
    path = write_study(tmp_path)
    bad = path.read_text().replace('objectives = ["sla_miss", "cost_per_hour"]', 'objectives = ["nope"]')
    path.write_text(bad)
    with pytest.raises(ConfigError) as e:
        StudyRunner(load_study(path))
    assert e.value.field == "study.objectives" and "available: " in str(e.value)
    path.write_text(write_study(tmp_path).read_text().replace("[space]", "[space]\nwarp = [1, 2]"))
    proc = subprocess.run([sys.executable, "-m", "sojourn.cli", "study", "run", str(path), "--no-polish"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "space" in proc.stderr and "warp" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = subprocess.run([sys.executable, "-m", "sojourn.cli", "study", "front", str(tmp_path / "missing.toml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_compare_hardware(tmp_path, capsys):
    path = write_study(tmp_path, n_trials=12, budget=100.0)
    assert main(["study", "run", str(path), "--no-polish", "--no-progress", "--no-confirm"]) == 0
    capsys.readouterr()
    assert main(["compare-hardware", str(path), "--target-miss", "0.5", "--out", str(tmp_path / "hw")]) == 0
    rows = list(csv.DictReader((tmp_path / "hw" / "hardware.csv").open()))
    assert {r["gpu"] for r in rows} == {"h100-sxm", "a100-80gb"}
    for r in rows:
        if r["rent_usd_per_hour"]:
            assert float(r["p_miss_used"]) <= 0.5
            assert float(r["own_usd_per_hour"]) == pytest.approx(
                float(r["capex_usd_per_hour"]) + float(r["power_usd_per_hour"]) + float(r["hosting_usd_per_hour"])
            )
    assert (tmp_path / "hw" / "hardware.png").exists()


ISSUE_EXAMPLE = """
[study]
name = "quickstart"
scenario = "quickstart-scenario.toml"
n_trials = 60
objectives = ["sla_miss", "cost_per_hour"]   # modules in objectives/
budget_per_hour = 400                         # $/hour, a constraint
seed = 7

[space]
gpu = ["a100-80gb", "h100-sxm", "h200"]
tp = [1, 2]
nodes = { low = 1, high = 32, log = true }
gpu_memory_utilization = { low = 0.80, high = 0.95 }
max_num_batched_tokens = [512, 1024, 2048, 4096, 8192, 16384]
max_num_seqs = [64, 128, 256, 512]
discipline = ["fifo", "sjf", "edf", "triage"]
"""


def test_the_documented_study_shape_works_as_written(tmp_path):
    # The study example of the issue, verbatim, over a generic-server scenario (fast to run).
    (tmp_path / "quickstart-scenario.toml").write_text(SCENARIO)
    (tmp_path / "objectives").mkdir()
    for name in ("sla_miss", "cost_per_hour"):
        (tmp_path / "objectives" / f"{name}.py").write_text((ROOT / "objectives" / f"{name}.py").read_text())
    (tmp_path / "quickstart.toml").write_text(ISSUE_EXAMPLE)
    assert main(["study", "run", str(tmp_path / "quickstart.toml"), "--no-polish", "--n-trials", "4", "--no-progress",
                 "--no-confirm"]) == 0
    study = StudyRunner(load_study(tmp_path / "quickstart.toml")).load(create=False)
    assert len(study.trials) == 4
    assert set(study.trials[0].params) == {"gpu", "tp", "nodes", "gpu_memory_utilization",
                                           "max_num_batched_tokens", "max_num_seqs", "discipline"}
    assert (tmp_path / "quickstart.db").exists()  # SQLite next to the study file by default


def test_shipped_studies_load():
    for name in ("quickstart", "overnight-70b", "hardware-purchase", "moe-vs-dense"):
        runner = StudyRunner(load_study(ROOT / "studies" / f"{name}.toml"))
        assert runner.base.perf_model().kv_capacity_tokens > 0
        # Every trial of a shipped study screens on the fast tier (none needs an hour of request tier).
        assert runner.request_tier_choices() == [], name


def test_study_run_says_which_choices_run_the_request_tier(tmp_path, capsys):
    path = write_study(tmp_path, extra_space='routing = ["pull", "least_loaded"]')
    path.write_text(path.read_text().replace("[study]\n", '[study]\nfidelity = "auto"\n', 1))
    runner = StudyRunner(load_study(path))
    assert runner.trial_fidelity == "auto"
    assert runner.request_tier_choices() == ["routing least_loaded"]
    assert main(["study", "run", str(path), "--no-polish", "--no-progress", "--n-trials", "0", "--no-confirm"]) == 0
    assert "the fast tier does not model routing least_loaded" in capsys.readouterr().err


def test_ctrl_c_keeps_finished_trials_and_the_study_resumes(tmp_path):
    import signal
    import time

    path = write_study(tmp_path, n_trials=500)
    proc = subprocess.Popen([sys.executable, "-m", "sojourn.cli", "study", "run", str(path), "--no-polish", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C as at a terminal, even where the tests run as a background job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    db = tmp_path / "tiny.db"
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and done < 3:
        time.sleep(0.5)
        if db.exists():
            try:
                st = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
                done = sum(1 for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE)
            except (KeyError, SQLAlchemyError):  # not created yet, or the worker is creating its tables
                pass
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume" in err
    st = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    kept = [t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(kept) >= 3 and all("cost_per_hour" in t.user_attrs for t in kept)
    assert main(["study", "run", str(path), "--no-polish", "--n-trials", "2", "--no-progress", "--no-confirm"]) == 0
    st = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    assert n_evaluated(st) == sum(1 for t in kept if "duplicate_of" not in t.user_attrs) + 2


def test_n_trials_counts_configurations_evaluated_not_repeats(tmp_path):
    # 4 configurations in all: the sampler repeats some, and repeats do not count.
    path = write_study(tmp_path, n_trials=4)
    text = path.read_text().replace('nodes = { low = 1, high = 8 }', 'nodes = [8]')
    path.write_text(text)
    runner = StudyRunner(load_study(path))
    study = runner.run()
    configs = [tuple(sorted(t.params.items())) for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(configs) == len(set(configs)) == 4
    # Asking for more than the space holds ends after a bounded number of repeats.
    study = runner.run(n_trials=3)
    assert n_evaluated(study) == 4 and len(study.trials) <= 4 + 10 * 3 + 100 + 4
    # The front lists a configuration once, however often it was repeated.
    front = front_trials(study)
    assert len({tuple(sorted(t.params.items())) for t in front}) == len(front)


def test_run_reports_configurations_evaluated_and_repeats(tmp_path, capsys):
    path = write_study(tmp_path, n_trials=4)
    path.write_text(path.read_text().replace('nodes = { low = 1, high = 8 }', 'nodes = [8]'))
    assert main(["study", "run", str(path), "--no-polish", "--no-progress", "--no-confirm"]) == 0
    study = StudyRunner(load_study(path)).load(create=False)
    repeats = sum(1 for t in study.trials if "duplicate_of" in t.user_attrs)
    err = capsys.readouterr().err
    assert f"{len(study.trials)} trials in the study: 4 configurations evaluated" in err
    assert (f"{repeats} repeats answered" in err) == (repeats > 0)
