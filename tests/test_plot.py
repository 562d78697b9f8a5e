"""The static front plot (``front.png``): a log cost axis, a plain y-label, each front point labelled."""

from __future__ import annotations

import textwrap
from pathlib import Path

from _tiny_study import TINY_SCENARIO
from sojourn.study import StudyRunner, front_trials, load_study
from sojourn.study.plot import Y_LABEL, front_figure, plot_front

ROOT = Path(__file__).resolve().parents[1]


def test_the_front_plot_reads_without_jargon(tmp_path):
    (tmp_path / "scenario.toml").write_text(TINY_SCENARIO)
    path = tmp_path / "p.toml"
    path.write_text(textwrap.dedent(f"""
        [study]
        name = "p"
        scenario = "scenario.toml"
        n_trials = 10
        budget_per_hour = 40.0
        fidelity = "fast"
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        gpu = ["h100-sxm", "a100-80gb"]
        nodes = {{ low = 6, high = 16 }}
        """))
    runner = StudyRunner(load_study(path))
    study = runner.run()
    front = front_trials(study)
    assert len(front) >= 2
    fig = front_figure(study, budget=40.0, runner=runner)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_ylabel() == Y_LABEL == "share of requests that miss the SLA"
    assert "log" in ax.get_xlabel() and "$/hour" in ax.get_xlabel()
    labels = [a.get_text() for a in ax.texts]
    # Each front point labelled once with its fleet, at its own coordinates.
    assert labels == [f"{t.params['nodes']}×{t.params['gpu']} tp1" for t in front]
    assert [a.xy[0] for a in ax.texts] == [t.user_attrs["cost_per_hour"] for t in front]
    out = plot_front(study, tmp_path / "front.png", budget=40.0, runner=runner)
    assert out.stat().st_size > 1000
