"""Several workers on one study in a real PostgreSQL server (the multi-machine setup).

A throwaway PostgreSQL cluster is created (``initdb``) and started on a free port
for this module, and removed after. Skipped only where no PostgreSQL server
binaries are installed (CI has them: PostgreSQL 15 from Debian).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import optuna
import pytest

from _tiny_study import TINY_SCENARIO
from sojourn.study import StudyRunner, front_trials, load_study

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = TINY_SCENARIO


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg2")
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    home = Path(tempfile.mkdtemp(prefix="sojourn-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(home, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = home / "data"
    subprocess.run(as_user + [initdb, "-D", str(data), "-A", "trust", "-U", "sojourn", "--no-sync"],
                   check=True, capture_output=True)
    opts = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(as_user + [pg_ctl, "-D", str(data), "-o", opts, "-w", "-t", "60", "-l", str(home / "log"),
                              "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://sojourn@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_share_one_study(tmp_path, postgres_url):
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    path = tmp_path / "shared.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        name = "shared"
        scenario = "scenario.toml"
        n_trials = 6
        budget_per_hour = 30
        storage = "{postgres_url}"
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        gpu = ["h100-sxm", "a100-80gb"]
        nodes = {{ low = 1, high = 8 }}
        discipline = ["fifo", "edf"]
        """))
    cmd = [sys.executable, "-m", "sojourn.cli", "study", "run", str(path), "--no-progress", "--no-confirm", "--no-polish",
           "--n-trials", "6"]
    workers = [subprocess.Popen(cmd + ["--worker-id", str(k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for k in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
        assert "Traceback" not in err
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    evaluated = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == 12  # 6 each; repeats (of either worker's configurations) do not count
    # Each worker drew its own configurations (its own sampler seed), and the front reads the shared study.
    front = front_trials(StudyRunner(load_study(path)).load(create=False))
    assert front and all(t.user_attrs["cost_per_hour"] <= 30 for t in front)
    # A third worker resumes the same study.
    run = subprocess.run(cmd[:-1] + ["2", "--worker-id", "2"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    trials = optuna.load_study(study_name="shared", storage=postgres_url).trials
    assert sum(1 for t in trials if "duplicate_of" not in t.user_attrs) == 14


def test_workers_seed_differently(tmp_path):
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        name = "s"
        scenario = "scenario.toml"
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        gpu = ["h100-sxm", "a100-80gb"]
        nodes = {{ low = 1, high = 8 }}
        """))
    a, b = StudyRunner(load_study(path)), StudyRunner(load_study(path), worker_id=1)
    draws = [r.sampler().base._rng.rng.randint(1 << 30, size=4).tolist() for r in (a, b)]
    assert draws[0] != draws[1]


def test_a_storage_that_cannot_be_opened_is_one_clear_error(tmp_path, capsys):
    from sojourn.cli import main

    pytest.importorskip("psycopg2")
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        name = "s"
        scenario = "scenario.toml"
        storage = "postgresql+psycopg2://someone:secret@127.0.0.1:{port}/db"
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        nodes = {{ low = 1, high = 8 }}
        """))
    assert main(["study", "run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "study.storage" in err and "Traceback" not in err
    assert "secret" not in err and "***" in err


def test_sigkilled_worker_leaves_nothing_running_postgres(tmp_path, postgres_url):
    from _recovery import S, kill_mid_trial_and_restart

    ts = kill_mid_trial_and_restart(tmp_path, postgres_url, name="recover_pg")
    assert not any(t.state in (S.RUNNING, S.WAITING) for t in ts)
    (dead,) = [t for t in ts if t.state == S.FAIL]
    assert any(t.state == S.COMPLETE and t.params == dead.params for t in ts)


def test_three_workers_finish_exactly_n_trials_and_confirm_the_front_together(tmp_path, postgres_url):
    """Issue 12's multi-machine run: n_trials is the study's total, and the front's confirmations are shared."""
    from _recovery import slow_study

    name = "three_confirm"
    path = slow_study(tmp_path, postgres_url, name, n_trials=9)
    path.write_text(path.read_text().replace("heartbeat_s = 1", "heartbeat_s = 2\nconfirm_replications = 4"))
    cmd = [sys.executable, "-m", "sojourn.cli", "study", "run", str(path), "--quiet", "--no-polish"]
    workers = [subprocess.Popen(cmd + ["--worker-id", str(k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for k in range(3)]
    for w in workers:
        out, err = w.communicate(timeout=600)
        assert w.returncode == 0, err
        assert "Traceback" not in err
    S = optuna.trial.TrialState
    trials = optuna.load_study(study_name=name, storage=postgres_url).trials
    evaluated = [t for t in trials if t.state == S.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == 9
    assert not any(t.state in (S.RUNNING, S.WAITING) for t in trials)
    study = optuna.load_study(study_name=name, storage=postgres_url)
    front = front_trials(study)
    assert all(f"confirm:{t.number}" in study.user_attrs for t in front)
    queue = optuna.load_study(study_name=name + ":confirm", storage=postgres_url).trials
    ran = [(t.params["trial"], i) for t in queue if t.state == S.COMPLETE and "seconds" in t.user_attrs
           for i in t.user_attrs["simulated"]]
    # Each confirmation is split in jobs of one replication (study.confirm_chunk defaults to --n-jobs, 1):
    # every replication of every front point simulated once, by one worker, and the workers shared them.
    assert sorted(ran) == sorted((t.number, i) for t in front for i in range(4))
    assert all(study.user_attrs[f"confirm:{t.number}"]["replications"] == 4 for t in front)
    assert len({t.user_attrs["worker"] for t in queue if "seconds" in t.user_attrs}) >= 2
