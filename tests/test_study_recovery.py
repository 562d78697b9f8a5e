"""Long studies that survive: a worker killed mid-trial, n_trials as the study's total, settings that changed.

The PostgreSQL versions of the kill test and of several workers live in test_study_postgres.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from _recovery import S, kill_mid_trial_and_restart, slow_study, worker
from _tiny_study import TINY_SCENARIO
from sojourn import ConfigError
from sojourn.study import StudyRunner, load_study
from sojourn.study.runner import count_trials

ROOT = Path(__file__).resolve().parents[1]


def test_sigkilled_worker_leaves_nothing_running_and_loses_no_trial_sqlite(tmp_path):
    storage = f"sqlite:///{tmp_path / 'recover.db'}"
    ts = kill_mid_trial_and_restart(tmp_path, storage)
    assert not any(t.state in (S.RUNNING, S.WAITING) for t in ts)
    failed = [t for t in ts if t.state == S.FAIL]
    assert len(failed) == 1  # the killed trial, failed by the next worker's heartbeat check...
    (dead,) = failed
    retried = [t for t in ts if t.state == S.COMPLETE and t.params == dead.params]
    assert retried  # ...and its configuration evaluated again
    c = count_trials(optuna.load_study(study_name="recover", storage=storage))
    assert c["evaluated"] == 4 and c["failed"] == 1  # n_trials counts configurations, not the failure


def test_n_trials_is_the_studys_total_whatever_the_workers(tmp_path):
    storage = f"sqlite:///{tmp_path / 'total.db'}"
    path = slow_study(tmp_path, storage, "total", n_trials=6)
    # Shorter trials: the point is the count, not the kill.
    path.write_text(path.read_text().replace("horizon_hours = 3000", "horizon_hours = 200"))
    procs = [worker(path, "--worker-id", str(k)) for k in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    c = count_trials(optuna.load_study(study_name="total", storage=storage))
    assert c["evaluated"] == 6, c  # not 12: each worker stops at the study's total
    # A restarted worker goes on from the count stored: nothing to add.
    p = worker(path)
    p.communicate(timeout=300)
    assert count_trials(optuna.load_study(study_name="total", storage=storage))["evaluated"] == 6


def study_file(tmp_path: Path, objectives: str = '["sla_miss", "cost_per_hour"]', extra: str = "") -> Path:
    (tmp_path / "scenario.toml").write_text(TINY_SCENARIO)
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(f"""
        [study]
        name = "s"
        scenario = "scenario.toml"
        n_trials = 2
        objectives = {objectives}
        objectives_dir = "{ROOT / 'objectives'}"
        {extra}
        [space]
        nodes = [1, 2, 3]
        """))
    return p


@pytest.mark.parametrize(("change", "field"), [
    ({"objectives": '["cost_per_hour", "sla_miss"]'}, "objectives"),  # reordered: a cost read as P(miss)
    ({"objectives": '["batch_miss", "cost_per_hour"]'}, "objectives"),
    ({"extra": "p_miss_floor = 1e-3"}, "p_miss_floor"),
    ({"extra": 'sla_miss_statistic = "mean"'}, "sla_miss_statistic"),
])
def test_a_study_file_that_changed_what_results_mean_is_refused(tmp_path, change, field):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    runner.run()
    db = tmp_path / "s.db"

    def held() -> tuple:
        st = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
        trials = [(t.number, t.state, t.params, t.values, t.user_attrs) for t in st.trials]
        return trials, st.user_attrs

    before = held()
    changed = StudyRunner(load_study(study_file(tmp_path, **change)))
    with pytest.raises(ConfigError) as err:
        changed.run()
    assert field in str(err.value) and "new name" in str(err.value)
    # What the study holds is unchanged (no trial added, no attribute rewritten).
    after = held()
    assert len(after[0]) == 2 and after[1]["objectives"] == ["sla_miss", "cost_per_hour"]
    assert after == before


def test_settings_that_do_not_change_results_may_change(tmp_path):
    StudyRunner(load_study(study_file(tmp_path))).run()
    more = study_file(tmp_path, extra="confirm_max = 3\ntimeout_s = 100")
    StudyRunner(load_study(more)).run()  # n_trials, confirmation and timeouts are how to run, not what results mean


def test_study_run_refuses_a_changed_study_with_exit_2(tmp_path, capsys):
    from sojourn.cli import main

    StudyRunner(load_study(study_file(tmp_path))).run()
    assert main(["study", "run", str(study_file(tmp_path, objectives='["cost_per_hour", "sla_miss"]')),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "objectives" in err and "Traceback" not in err


def test_of_two_trials_started_at_once_for_the_last_place_the_later_steps_back():
    """Workers check the count between trials, so two can start the last one together: exact anyway."""
    from sojourn.study.runner import OVER_TOTAL_ATTR, _over_total

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    for k in range(5):
        study.add_trial(optuna.trial.create_trial(params={"x": float(k)},
                                                  distributions={"x": optuna.distributions.FloatDistribution(0, 9)},
                                                  value=float(k)))
    first, second = study.ask(), study.ask()  # both RUNNING: two workers' trials for the 6th place
    _over_total(first, 6)  # 5 evaluated, none running ahead of it: it goes on
    with pytest.raises(optuna.TrialPruned):
        _over_total(second, 6)  # 5 evaluated + the first running: the total is reached
    assert study.trials[second.number].user_attrs.get(OVER_TOTAL_ATTR) is True
    _over_total(second, 7)  # with room for both, neither steps back


def test_a_waiting_trial_another_worker_told_first_is_left_to_it(tmp_path):
    """SQLite has no row locks: two workers can pop the same enqueued trial (a polish neighbour, a
    confirmation job, a trial the heartbeat re-queued). The second to finish must go on, not crash
    with Optuna's "Cannot tell a COMPLETE trial" (it did, in polish, on a two-worker overnight study)."""
    import optuna

    from sojourn.study.confirm import run_waiting

    url = f"sqlite:///{tmp_path / 'race.db'}"
    mine = optuna.create_study(study_name="race", storage=url)
    other = optuna.load_study(study_name="race", storage=url)  # the other worker's handle
    mine.enqueue_trial({"x": 1.0})
    mine.enqueue_trial({"x": 2.0})

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 10.0)
        if x == 1.0:  # the other worker finished this trial first
            other.tell(trial.number, 100.0)
        return x

    with pytest.raises(ValueError, match="Cannot tell a COMPLETE trial"):  # what Optuna does on its own
        mine.enqueue_trial({"x": 1.0})
        mine.optimize(objective, n_trials=1)
    run_waiting(mine, objective)  # the second waiting trial (x = 2): told here
    mine.enqueue_trial({"x": 1.0})
    run_waiting(mine, objective)  # the race again: left to the other worker, no error
    values = sorted(t.value for t in mine.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert values == [2.0, 100.0, 100.0]
    with pytest.raises(ValueError, match="boom"):  # any other error still propagates
        run_waiting(mine, lambda t: (_ for _ in ()).throw(ValueError("boom")))
