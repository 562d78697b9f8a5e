"""Every front row and point says whether its GPU's speed is fitted on its own measurements or carried over.

One judgement (``sojourn.perf.calibration_of``) of the profile the perf model really runs
with; then a real study over H100 SXM (measured) and H200 (carried over from it) through
the CLI: front.csv, the table and its legend, the plot, and compare-hardware.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from sojourn.catalogue import default_catalogue
from sojourn.cli import main
from sojourn.perf import PerfModel, calibration, default_profile, scenario_calibration
from sojourn.perf._profile import shipped_profiles
from sojourn.scenario import scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
CAT = default_catalogue()

#: A Llama-3.1-8B batch workload that loads one H100 node to about 0.7: P(miss) differs by GPU and node count.
ENGINE = """
sla_hours = 1.0
[workload]
batch_rate_per_hour = 40.0
batch_size = { dist = "lognormal", median = 1000, sigma = 1.0, max = 20000 }
input_tokens = { dist = "lognormal", median = 500, sigma = 0.5, max = 4000 }
output_tokens = { dist = "lognormal", median = 200, sigma = 0.5, max = 2000 }
[model]
name = "llama-3.1-8b"
[fleet]
gpu = "h100-sxm"
nodes = 1
[simulation]
fidelity = "fast"
replications = 2
horizon_hours = 200
warmup_hours = 10
"""


def engine(gpu: str, **serving):
    d = tomllib.loads(ENGINE)
    return scenario_from_dict({**d, "fleet": {**d["fleet"], "gpu": gpu}, "serving": serving})


# -- the judgement ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["vllm", "sglang", "trtllm"])
@pytest.mark.parametrize("gpu", sorted(CAT.gpus))
def test_every_catalogue_gpu_and_engine_says_where_its_speed_comes_from(gpu, backend):
    c = calibration(gpu, backend)
    prof = default_profile(gpu, backend)
    # Calibrated exactly where a shipped profile was fitted on this GPU with this engine.
    assert c.calibrated is ((gpu, backend) in shipped_profiles())
    if c.calibrated:
        assert c.source.startswith(f"fitted on {prof.fit['rows_used']} {gpu} ")
    else:
        assert prof.carried_from and c.source.startswith(f"carried over from {prof.carried_from} ")
        assert f"no {gpu} measurements" in c.source


@pytest.mark.parametrize("gpu", ["h100-sxm", "h200", "H200", "H100-SXM", "mi300x", "a100-80gb"])
def test_the_profile_judged_is_the_one_the_perf_model_runs(gpu):
    sc = engine(gpu)
    pm = sc.perf_model()
    assert scenario_calibration(sc) == pm.calibration
    # GPU ids are case-insensitive: "H200" runs H100 factors and says so (not "uncalibrated prior").
    carried = pm.gpu.id not in ("h100-sxm", "a100-80gb")
    assert pm.calibration.calibrated is not carried
    if carried:
        assert pm.calibration.source.startswith(f"carried over from {pm.profile.carried_from} ")


def test_a_profile_named_in_the_scenario_is_judged_against_the_fleets_gpu_and_engine():
    assert scenario_calibration(engine("h100-sxm", profile="h100-sxm-vllm")).calibrated
    on_h200 = scenario_calibration(engine("h200", profile="h100-sxm-vllm"))
    assert not on_h200.calibrated and on_h200.source.startswith("carried over from h100-sxm ")
    other_engine = scenario_calibration(engine("h100-sxm", profile="h100-sxm-vllm", backend="sglang"))
    assert not other_engine.calibrated and "no h100-sxm sglang measurements" in other_engine.source


def test_a_users_own_measurements_make_a_gpu_calibrated(tmp_path, capsys):
    # Step times "measured" on an H200 (its roofline with 10% more overhead), fitted by `sojourn calibrate`.
    truth = replace(default_profile("h200"), step_overhead_s=1.1 * default_profile("h200").step_overhead_s)
    pm = PerfModel(CAT.model("llama-3.1-8b"), CAT.gpu("h200"), 1, "bf16", truth)
    shapes = [(p, 0, 0) for p in (256, 1024, 4096, 8192)] + [(0, b, b * c) for b in (1, 16, 128) for c in (512, 4096)]
    lines = ["prefill_tokens,decode_seqs,context_tokens,step_ms"]
    lines += [f"{p},{b},{ctx},{pm.step_time(p, b, ctx, prefill_done=1 if p else 0) * 1e3!r}" for p, b, ctx in shapes]
    (tmp_path / "steps.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "my-h200.json"
    assert main(["calibrate", "--steps", str(tmp_path / "steps.csv"), "--model", "llama-3.1-8b", "--gpu", "h200",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    mine = scenario_calibration(engine("h200", profile=str(out)))
    assert mine.calibrated and mine.source.startswith(f"fitted on {len(shapes)} h200 step times")
    elsewhere = scenario_calibration(engine("h100-sxm", profile=str(out)))
    assert not elsewhere.calibrated and elsewhere.source.startswith("carried over from h200 ")


def test_no_measurements_anywhere_and_generic_servers():
    prior = calibration("my-own-gpu")  # in no profile and no carry-over chain: the uncalibrated prior
    assert not prior.calibrated and prior.source.startswith("uncalibrated prior")
    generic = scenario_from_dict({
        "workload": {"batch_rate_per_hour": 1, "input_tokens": {"dist": "fixed", "value": 1},
                     "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"gpu": "h200", "server": {"kind": "generic", "service_time": {"dist": "fixed", "value": 1.0}}}})
    # A generic server's speed is the service time the user gave, whatever GPU prices it.
    assert scenario_calibration(generic).calibrated and "generic" in scenario_calibration(generic).source


# -- a real study: front.csv, the table, the plot, compare-hardware ----------------------------


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    (d / "scenario.toml").write_text(ENGINE)
    (d / "s.toml").write_text(textwrap.dedent(f"""
        [study]
        name = "calib"
        scenario = "scenario.toml"
        n_trials = 4
        p_miss_floor = 0.0
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        gpu = ["h100-sxm", "h200"]
        nodes = [1, 2]
        """))
    return d


@pytest.fixture(scope="module")
def study_run(study_dir):
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["study", "run", str(study_dir / "s.toml"), "--no-polish", "--no-progress"])
    assert code == 0
    return buf.getvalue()


def test_front_csv_says_which_gpus_are_measured(study_dir, study_run):
    rows = list(csv.DictReader((study_dir / "calib-out" / "front.csv").open()))
    assert {r["gpu"] for r in rows} == {"h100-sxm", "h200"}  # the front has both, so both marks are checked
    for r in rows:
        assert r["calibrated"] == str(r["gpu"] == "h100-sxm"), r
        expected = "fitted on " if r["gpu"] == "h100-sxm" else "carried over from h100-sxm "
        assert r["calibration"].startswith(expected), r


def test_the_table_has_a_calib_column_and_a_legend_for_it(study_run):
    lines = study_run.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("trial"))
    end = lines[head].index("calib") + len("calib")
    rows = lines[head + 1:lines.index(next(line for line in lines if line.startswith("  $/hour:")))]
    assert rows
    for line in rows:
        gpu = "h200" if " h200 " in line else "h100-sxm"
        assert line[end - 7:end].strip() == ("yes" if gpu == "h100-sxm" else "carried"), line
    legend = next(line for line in lines if line.startswith("  calib:"))
    assert "yes =" in legend and "carried =" in legend and "own measurements" in legend
    # and from which GPU each carried-over one is taken (h100-sxm is measured: not named)
    assert next(line for line in lines if line.startswith("  carried:")) == "  carried:  h200 from h100-sxm"


def test_the_plot_draws_carried_over_points_hollow_with_a_legend_entry(study_dir, study_run, capsys):
    assert (study_dir / "calib-out" / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = study_dir / "front.svg"
    assert main(["study", "plot", str(study_dir / "s.toml"), "--out", str(svg)]) == 0
    capsys.readouterr()
    carried = sum(r["gpu"] == "h200" for r in csv.DictReader((study_dir / "calib-out" / "front.csv").open()))
    assert f"GPU speed carried over: not measured on it ({carried})" in svg.read_text()
    assert "(h200 from h100-sxm)" in svg.read_text() and "h100-sxm from" not in svg.read_text()


def test_an_old_study_gets_the_columns_from_its_parameters(study_dir, study_run, capsys):
    # Nothing about calibration is stored with the trials: `study front` works it out again.
    assert main(["study", "front", str(study_dir / "s.toml"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["calibrated"] is (r["gpu"] == "h100-sxm") for r in rows)


def test_compare_hardware_says_it_for_each_gpu(study_dir, study_run, capsys):
    assert main(["compare-hardware", str(study_dir / "s.toml"), "--target-miss", "0.001"]) == 0
    out = capsys.readouterr().out
    rows = {r["gpu"]: r for r in csv.DictReader((study_dir / "calib-out" / "hardware.csv").open())}
    assert rows["h100-sxm"]["calibrated"] == "True" and rows["h200"]["calibrated"] == "False"
    assert rows["h200"]["calibration"].startswith("carried over from h100-sxm ")
    table = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in rows}
    assert "measured" in table["h100-sxm"] and "carried over" not in table["h100-sxm"]
    assert "carried over from h100-sxm" in table["h200"]
    assert "  speed: measured = " in out
    assert (study_dir / "calib-out" / "hardware.png").is_file()
