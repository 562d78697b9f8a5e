"""Polish: the front's unevaluated neighbours are evaluated until none is left (a real SQLite study)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
from _tiny_study import TINY_SCENARIO

from sojourn.study import StudyRunner, load_study
from sojourn.study.config import Range
from sojourn.study.front import front_trials
from sojourn.study.polish import POLISH_ATTR, neighbours, polish_front
from sojourn.study.runner import _dominates

ROOT = Path(__file__).resolve().parents[1]


def study_file(tmp_path: Path, n_trials: int = 3, budget: float = 60.0) -> Path:
    (tmp_path / "scenario.toml").write_text(TINY_SCENARIO)
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(f"""
        [study]
        name = "s"
        scenario = "scenario.toml"
        n_trials = {n_trials}
        budget_per_hour = {budget}
        refine_nodes = false
        seed = 5
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        tp = [1, 2]
        nodes = {{ low = 1, high = 12 }}
        discipline = ["fifo", "lifo"]
        """))
    return p


def test_neighbours_of_a_point():
    space = {"tp": [1, 2], "nodes": Range(low=1, high=8), "discipline": ["fifo", "lifo"]}
    got = neighbours({"tp": 2, "nodes": 5, "discipline": "fifo"}, space)
    keys = {(p["tp"], p["nodes"], p["discipline"]) for p in got}
    assert {(2, 3, "fifo"), (2, 4, "fifo"), (2, 6, "fifo"), (2, 7, "fifo")} <= keys  # nodes ±1..2
    assert (1, 5, "fifo") in keys  # the other tp, same nodes
    assert (1, 10, "fifo") not in keys  # same GPUs, but 10 nodes is outside the space
    assert (2, 5, "lifo") in keys  # the other discipline
    assert (2, 5, "fifo") not in keys
    edge = neighbours({"tp": 1, "nodes": 1, "discipline": "lifo"}, space)
    assert all(1 <= p["nodes"] <= 8 for p in edge)


def evaluated(study):
    return {tuple(sorted(t.params.items())) for t in study.trials if t.state.is_finished()}


def test_polish_converges_and_no_neighbour_dominates_the_front(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    study = runner.run()
    before = {t.number for t in front_trials(study)}
    report = polish_front(runner, study)
    assert report.converged, report.describe()
    assert report.evaluated > 0 and report.rounds >= 1
    polished = [t for t in study.trials if t.user_attrs.get(POLISH_ATTR)]
    assert len(polished) == report.evaluated
    tried = evaluated(study)
    signs = [1, 1]
    done = {tuple(sorted(t.params.items())): t for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE}
    for f in front_trials(study):
        for n in neighbours(dict(f.params), runner.cfg.space):
            if runner._cost_of(n) > runner.cfg.study.budget_per_hour:
                continue
            key = tuple(sorted(n.items()))
            assert key in tried, n  # every neighbour of the front was evaluated...
            t = done[key]
            feasible = all(c <= 0 for c in t.user_attrs["constraints"])
            assert not (feasible and _dominates(t.values, f.values, signs)), (n, f.params)  # ...none beats it
    assert report.front_after == len(front_trials(study))
    assert before  # the search had a front to polish
    # A rerun has nothing left to evaluate.
    again = polish_front(runner, study)
    assert again.evaluated == 0 and again.converged


def test_polish_finds_a_cheaper_dominating_neighbour(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    study = runner.load()
    # The search evaluated only tp 2 x 9 nodes. A generic server's speed does not depend on tp,
    # only its cost does: the untried tp 1 x 9 misses exactly as often at half the price.
    study.enqueue_trial({"tp": 2, "nodes": 9, "discipline": "fifo"})
    study.optimize(runner.objective({}), n_trials=1)
    (only,) = front_trials(study)
    assert only.params["tp"] == 2
    polish_front(runner, study)
    front = front_trials(study)
    assert min(t.user_attrs["cost_per_hour"] for t in front) < only.user_attrs["cost_per_hour"]
    assert only.number not in {t.number for t in front}


def test_polish_respects_the_budget(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path, budget=20.0)))
    study = runner.run()
    polish_front(runner, study)
    for t in study.trials:
        if t.user_attrs.get(POLISH_ATTR):
            assert runner._cost_of(t.params) <= 20.0


def test_study_run_polishes_by_default_and_says_so(tmp_path, capsys):
    from sojourn.cli import main

    f = study_file(tmp_path)
    assert main(["study", "run", str(f), "--no-confirm"]) == 0
    err = capsys.readouterr().err
    assert "polish:" in err and "configurations evaluated in" in err
    # A rerun counts the configurations polish evaluated apart from the search's.
    assert main(["study", "run", str(f), "--no-confirm"]) == 0
    assert "by polish" in capsys.readouterr().err
    f2 = tmp_path / "b"
    f2.mkdir()
    g = study_file(f2)
    assert main(["study", "run", str(g), "--no-confirm", "--no-polish"]) == 0
    assert "polish:" not in capsys.readouterr().err


@pytest.mark.parametrize("n", [1, 3])
def test_polish_limits_its_trials(tmp_path, n):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    study = runner.run()
    report = polish_front(runner, study, max_trials=n)
    assert report.evaluated <= n
