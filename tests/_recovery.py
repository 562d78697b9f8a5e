"""A worker killed with SIGKILL mid-trial, then a restart: the scenario the recovery tests share (SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
from sqlalchemy.exc import SQLAlchemyError

from _tiny_study import TINY_SCENARIO

ROOT = Path(__file__).resolve().parents[1]
S = optuna.trial.TrialState


def slow_study(tmp_path: Path, storage: str, name: str = "recover", n_trials: int = 4) -> Path:
    """A study whose request-tier trials take a few seconds each, with a 1 s heartbeat."""
    (tmp_path / "scenario.toml").write_text(TINY_SCENARIO)
    p = tmp_path / f"{name}.toml"
    p.write_text(textwrap.dedent(f"""
        [study]
        name = "{name}"
        scenario = "scenario.toml"
        storage = "{storage}"
        n_trials = {n_trials}
        fidelity = "request"
        horizon_hours = 3000
        replications = 2
        heartbeat_s = 1
        refine_nodes = false
        seed = 3
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        nodes = {{ low = 1, high = 12 }}
        """))
    return p


def worker(path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sojourn.cli", "study", "run", str(path), "--no-polish",
                             "--no-confirm", "--no-progress", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    except (KeyError, SQLAlchemyError):  # not created yet
        return []


def kill_mid_trial_and_restart(tmp_path: Path, storage: str, name: str = "recover") -> list[optuna.trial.FrozenTrial]:
    """Run a worker until a trial is running after one finished, SIGKILL it, restart; return the trials.

    Checks on the way that the killed worker left its trial RUNNING (what a restart must clean up).
    """
    path = slow_study(tmp_path, storage, name)
    proc = worker(path)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ts = trials(storage, name)
        if any(t.state == S.COMPLETE for t in ts) and any(t.state == S.RUNNING for t in ts):
            break
        time.sleep(0.2)
    else:  # pragma: no cover - a machine too slow for the test
        proc.kill()
        raise AssertionError(f"no trial running after one finished: {proc.communicate()}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = trials(storage, name)
    assert any(t.state == S.RUNNING for t in before), "the killed trial should be left RUNNING"
    time.sleep(2.5)  # past the grace period (twice the 1 s heartbeat)
    again = worker(path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "Traceback" not in err
    after = trials(storage, name)
    # Nothing finished before the kill was lost.
    done_before = {t.number for t in before if t.state == S.COMPLETE}
    assert done_before <= {t.number for t in after if t.state == S.COMPLETE}
    return after
