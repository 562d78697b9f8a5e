"""Polish: the front's unevaluated neighbours are evaluated until none is left (a real SQLite study)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from _tiny_study import TINY_SCENARIO
from sojourn.study import StudyRunner, load_study
from sojourn.study.config import Range
from sojourn.study.front import front_trials
from sojourn.study.polish import POLISH_ATTR, neighbours, polish_front
from sojourn.study.runner import DUPLICATE_ATTR, _dominates
from sojourn.study.sampler import NodesAwareSampler

ROOT = Path(__file__).resolve().parents[1]


def study_file(tmp_path: Path, n_trials: int = 3, budget: float = 60.0, refine: bool = False) -> Path:
    (tmp_path / "scenario.toml").write_text(TINY_SCENARIO)
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(f"""
        [study]
        name = "s"
        scenario = "scenario.toml"
        n_trials = {n_trials}
        budget_per_hour = {budget}
        refine_nodes = {str(refine).lower()}
        seed = 5
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        tp = [1, 2]
        nodes = {{ low = 1, high = 12 }}
        discipline = ["fifo", "lifo"]
        """))
    return p


def key(params):
    return tuple(sorted(params.items()))


def evaluated(study):
    """Configurations with a result (complete trials that are not repeats)."""
    return [key(t.params) for t in study.get_trials(states=(TrialState.COMPLETE,))
            if DUPLICATE_ATTR not in t.user_attrs]


def test_neighbours_of_a_point():
    space = {"tp": [1, 2], "nodes": Range(low=1, high=8), "discipline": ["fifo", "lifo"]}
    got = neighbours({"tp": 2, "nodes": 5, "discipline": "fifo"}, space)
    keys = {(p["tp"], p["nodes"], p["discipline"]) for p in got}
    assert {(2, 3, "fifo"), (2, 4, "fifo"), (2, 6, "fifo"), (2, 7, "fifo")} <= keys  # nodes ±1..2
    assert (1, 5, "fifo") in keys  # the other tp, same nodes
    assert (1, 10, "fifo") not in keys  # same GPUs, but 10 nodes is outside the space
    assert (2, 5, "lifo") in keys  # the other discipline
    assert (2, 5, "fifo") not in keys
    assert {"tp": 1, "nodes": 6, "discipline": "fifo"} in neighbours({"tp": 2, "nodes": 3, "discipline": "fifo"}, space)
    edge = neighbours({"tp": 1, "nodes": 1, "discipline": "lifo"}, space)
    assert all(1 <= p["nodes"] <= 8 for p in edge)
    # A continuous parameter keeps the point's value.
    cont = {**space, "gpu_memory_utilization": Range(low=0.8, high=0.95)}
    assert all(p["gpu_memory_utilization"] == 0.83
               for p in neighbours({"tp": 1, "nodes": 4, "discipline": "fifo", "gpu_memory_utilization": 0.83}, cont))


def test_after_polish_no_neighbour_in_the_space_dominates_the_front(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    study = runner.run()
    report = polish_front(runner, study)
    assert report.converged, report.describe()
    assert report.evaluated > 0 and report.rounds >= 1 and report.dominated == 0 and report.open_points == 0
    assert report.front_after == len(front_trials(study))
    assert len([t for t in study.trials if t.user_attrs.get(POLISH_ATTR)]) == report.evaluated
    assert len(evaluated(study)) == len(set(evaluated(study)))  # nothing simulated twice
    # Evaluate every neighbour of the final front afresh, outside the study: none beats its point.
    fresh = runner.objective()
    budget = runner.cfg.study.budget_per_hour
    checked = 0
    for f in front_trials(study):
        for n in neighbours(dict(f.params), runner.cfg.space):
            trial = optuna.trial.FixedTrial(n)
            values = fresh(trial)
            feasible = all(c <= 0 for c in trial.user_attrs["constraints"])
            assert not (feasible and _dominates(values, f.values, [1, 1])), (n, f.params)
            checked += runner._cost_of(n) <= budget
    assert checked >= 5


def test_polish_finds_a_cheaper_dominating_neighbour(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    study = runner.load()
    # The search evaluated only tp 2 x 9 nodes. A generic server's speed does not depend on tp,
    # only its cost does: the untried tp 1 x 9 misses exactly as often at half the price.
    study.enqueue_trial({"tp": 2, "nodes": 9, "discipline": "fifo"})
    study.optimize(runner.objective({}), n_trials=1)
    (only,) = front_trials(study)
    assert only.params["tp"] == 2
    report = polish_front(runner, study)
    front = front_trials(study)
    assert min(t.user_attrs["cost_per_hour"] for t in front) < only.user_attrs["cost_per_hour"]
    assert only.number not in {t.number for t in front}
    assert report.front_before == 1 and report.rounds >= 2  # the new front's neighbours were polished too


def test_enqueued_neighbours_bypass_the_nodes_aware_sampler(tmp_path, monkeypatch):
    runner = StudyRunner(load_study(study_file(tmp_path, refine=True)))
    study = runner.run()
    assert isinstance(study.sampler, NodesAwareSampler)
    calls = []
    monkeypatch.setattr(NodesAwareSampler, "sample_independent", lambda *a: calls.append(a[3]) or 12)
    monkeypatch.setattr(NodesAwareSampler, "sample_relative", lambda *a: calls.append("relative") or {})
    report = polish_front(runner, study)
    assert report.evaluated > 0 and report.converged
    assert calls == []  # every polish trial took its enqueued parameters, none asked the sampler


def test_a_rerun_evaluates_only_what_is_missing(tmp_path, monkeypatch):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    study = runner.run()
    objective = runner.objective
    count = [0]

    def interrupted_at_the_second(seen=None):
        fn = objective(seen)

        def wrapped(trial):
            count[0] += 1
            if count[0] == 2:  # a second Ctrl-C aborts the running trial
                raise KeyboardInterrupt
            return fn(trial)

        return wrapped

    monkeypatch.setattr(runner, "objective", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        polish_front(runner, study)
    monkeypatch.setattr(runner, "objective", objective)
    aborted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(aborted) == 1 and study.get_trials(states=(TrialState.WAITING,))
    done_before = set(evaluated(study))
    report = polish_front(runner, study)
    assert report.converged, report.describe()
    assert key(aborted[0].system_attrs["fixed_params"]) in set(evaluated(study))  # the aborted configuration is evaluated now
    assert not study.get_trials(states=(TrialState.WAITING,))  # and those left waiting were run
    assert len(evaluated(study)) == len(set(evaluated(study)))  # none twice
    assert report.evaluated == len(evaluated(study)) - len(done_before)
    again = polish_front(runner, study)
    assert again.evaluated == 0 and again.rounds == 0 and again.converged


def test_first_ctrl_c_stops_after_the_running_trial(tmp_path, monkeypatch):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    study = runner.run()
    objective = runner.objective

    def asks_to_stop(seen=None):
        fn = objective(seen)

        def wrapped(trial):
            runner.interrupted = True  # what the SIGINT handler of StudyRunner.guarded does
            return fn(trial)

        return wrapped

    monkeypatch.setattr(runner, "objective", asks_to_stop)
    report = polish_front(runner, study)
    assert report.interrupted and not report.converged and report.evaluated == 1
    assert "interrupted" in report.describe()
    monkeypatch.setattr(runner, "objective", objective)
    assert polish_front(runner, study).converged


def test_polish_respects_the_budget(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path, budget=25.0)))  # 10 GPUs at 2.49 $/h
    study = runner.load()
    study.enqueue_trial({"tp": 1, "nodes": 8, "discipline": "fifo"})  # load 0.78: feasible
    study.optimize(runner.objective({}), n_trials=1)
    polish_front(runner, study)
    over = [n for f in front_trials(study) for n in neighbours(dict(f.params), runner.cfg.space)
            if runner._cost_of(n) > 25.0]
    assert over  # the front has neighbours above the budget...
    polished = [t for t in study.trials if t.user_attrs.get(POLISH_ATTR)]
    assert polished and all(runner._cost_of(t.params) <= 25.0 for t in polished)  # ...and polish skipped them


def test_study_run_polishes_by_default_and_says_so(tmp_path, capsys):
    from sojourn.cli import main

    f = study_file(tmp_path)
    assert main(["study", "run", str(f), "--no-confirm", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "polish:" in err and "configurations evaluated in" in err and "converged" in err
    # A rerun counts the configurations polish evaluated apart from the search's, and adds none.
    assert main(["study", "run", str(f), "--no-confirm", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "by polish" in err and "polish: 0 configurations evaluated" in err
    f2 = tmp_path / "b"
    f2.mkdir()
    g = study_file(f2)
    assert main(["study", "run", str(g), "--no-confirm", "--no-progress", "--no-polish"]) == 0
    assert "polish:" not in capsys.readouterr().err
    study = StudyRunner(load_study(g)).load(create=False)
    assert not any(t.user_attrs.get(POLISH_ATTR) for t in study.trials)


@pytest.mark.parametrize("n", [1, 3])
def test_polish_limits_its_trials(tmp_path, n):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    study = runner.run()
    report = polish_front(runner, study, max_trials=n)
    assert report.evaluated == n and not report.converged
    assert "limit reached" in report.describe()


def test_a_neighbour_that_fails_is_reported_and_not_retried(tmp_path, monkeypatch):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    study = runner.load()
    study.enqueue_trial({"tp": 1, "nodes": 8, "discipline": "fifo"})
    study.optimize(runner.objective({}), n_trials=1)
    scenario = runner.trial_scenario

    def broken_at_nine(params):
        if params["nodes"] == 9:
            raise ValueError("model bug")
        return scenario(params)

    monkeypatch.setattr(runner, "trial_scenario", broken_at_nine)
    report = polish_front(runner, study)  # goes on past the failure
    assert report.evaluated > 0 and report.unevaluated == 0 and not report.converged
    assert report.failed and all("model bug" in f for f in report.failed)
    assert "failed to evaluate" in report.describe() and "ValueError: model bug" in report.describe()
    failures = len(study.get_trials(states=(TrialState.FAIL,)))
    again = polish_front(runner, study)
    assert again.evaluated == 0 and len(study.get_trials(states=(TrialState.FAIL,))) == failures  # not retried
