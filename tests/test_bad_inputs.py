"""A catalogue of bad inputs across every command: each gets exit code 2, one line naming the field, no
traceback, and leaves what was already written (outputs, the study's storage) exactly as it was."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from _tiny_study import TINY_SCENARIO
from sojourn.cli import main

ROOT = Path(__file__).resolve().parents[1]

STUDY = """
[study]
name = "tiny"
scenario = "scenario.toml"
n_trials = 2
objectives_dir = "{objectives}"
{extra}
[space]
nodes = {nodes}
{space}
"""


def write_study(d: Path, name: str = "study.toml", extra: str = "", nodes: str = "[1, 2, 3]", space: str = "",
                objectives: Path | None = None) -> Path:
    """A study file; a key that ``extra`` sets replaces the template's (TOML refuses a key given twice)."""
    keys = {line.split("=")[0].strip() for line in extra.splitlines() if "=" in line}
    template = "\n".join(line for line in STUDY.splitlines() if line.split("=")[0].strip() not in keys)
    p = d / name
    p.write_text(textwrap.dedent(template.format(objectives=objectives or ROOT / "objectives", extra=extra,
                                                 nodes=nodes, space=space)))
    return p


def scenario_with(d: Path, name: str, old: str, new: str) -> Path:
    text = TINY_SCENARIO
    assert old in text, old
    p = d / name
    p.write_text(text.replace(old, new))
    return p


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder with a valid scenario, a study already run (its database and front.csv), and bad files."""
    d = tmp_path_factory.mktemp("bad")
    (d / "scenario.toml").write_text(TINY_SCENARIO)
    study = write_study(d)
    assert main(["study", "run", str(study), "--no-progress", "--no-confirm", "--no-polish"]) == 0
    (d / "folder.toml").mkdir()
    (d / "latin1.toml").write_bytes("sla_hours = 2 # caf\xe9\n".encode("latin-1"))
    (d / "dangling.toml").symlink_to(d / "nowhere.toml")
    (d / "steps_dir").mkdir()
    (d / "steps_latin1.csv").write_bytes("prefill_tokens,decode_seqs,context_tokens,step_ms\n1,2,3,4 \xe9\n"
                                         .encode("latin-1"))
    (d / "steps_newline.csv").write_text('prefill_tokens,decode_seqs,context_tokens,step_ms\n"1\n2",2,3,4\n')
    nan_dir = d / "nan_objectives"
    nan_dir.mkdir()
    (nan_dir / "sla_miss.py").write_text((ROOT / "objectives" / "sla_miss.py").read_text())
    (nan_dir / "cost_per_hour.py").write_text('direction = "minimize"\n\ndef objective(result, scenario, settings=None):'
                                              '\n    return float("nan")\n')
    for field, value in (("batch_rate_per_hour", "inf"), ("sla_hours", "inf"), ("batch_rate_per_hour", "1e300"),
                         ("batch_rate_per_hour", "nan")):
        old = "batch_rate_per_hour = 20.0" if field == "batch_rate_per_hour" else "sla_hours = 2.0"
        scenario_with(d, f"{field}_{value}.toml", old, f"{field} = {value}")
    for field, value in (("horizon_hours", "inf"), ("warmup_hours", "inf"), ("horizon_hours", "1e9")):
        old = "horizon_hours = 40" if field == "horizon_hours" else "warmup_hours = 4"
        scenario_with(d, f"{field}_{value}.toml", old, f"{field} = {value}")
    scenario_with(d, "huge_batch.toml", 'batch_size = { dist = "geometric", mean = 5 }',
                  'batch_size = { dist = "fixed", value = 1e12 }')
    scenario_with(d, "unknown_key.toml", "seed = 3", "seed = 3\nspeed = 9")
    write_study(d, "nodes_zero.toml", nodes="{ low = 0, high = 4 }")
    write_study(d, "bad_path.toml", space="serving.not_a_field = [1, 2]")
    write_study(d, "bad_gpu.toml", space='gpu = ["h100-sxm", "no-such-gpu"]')
    write_study(d, "bad_objective.toml", extra='objectives = ["sla_miss", "no_such_objective"]')
    write_study(d, "zero_trials.toml", extra="n_trials = 0")
    write_study(d, "negative_budget.toml", extra="budget_per_hour = -5")
    write_study(d, "zero_max_load.toml", extra="max_load = 0")
    write_study(d, "reordered.toml", extra='objectives = ["cost_per_hour", "sla_miss"]')
    write_study(d, "nan_objective.toml", objectives=nan_dir, extra='name = "nan"')
    write_study(d, "study_dir_scenario.toml", extra='scenario = "folder.toml"')
    write_study(d, "huge_confirmations.toml", extra="confirm_replications = 100000000")
    write_study(d, "literal_range.toml", space="block_size = { low = 8, high = 64 }")
    trace = TINY_SCENARIO.replace('batch_rate_per_hour = 20.0\nbatch_size = { dist = "geometric", mean = 5 }\n'
                                  'input_tokens = { dist = "fixed", value = 100 }\n'
                                  'output_tokens = { dist = "fixed", value = 100 }',
                                  'trace = "steps_dir"\nformat = "azure"')
    assert "trace" in trace
    (d / "trace_folder.toml").write_text(trace)
    return d


def snapshot(d: Path) -> dict[str, str]:
    """Hashes of everything a command could have written: the study's database and outputs."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and (p.suffix in (".db", ".csv", ".png", ".json", ".svg", ".html") or p.parent.name.endswith("-out")):
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


S = "{d}/scenario.toml"
ST = "{d}/study.toml"
CASES = [
    # files that are folders, not UTF-8, or missing
    ("simulate a folder", ["simulate", "{d}/folder.toml"], "scenario"),
    ("simulate latin-1", ["simulate", "{d}/latin1.toml"], "scenario"),
    ("simulate a dangling link", ["simulate", "{d}/dangling.toml"], "scenario"),
    ("study run a folder", ["study", "run", "{d}/folder.toml"], "study"),
    ("study run latin-1", ["study", "run", "{d}/latin1.toml"], "study"),
    ("study whose scenario is a folder", ["study", "run", "{d}/study_dir_scenario.toml"], "scenario"),
    ("calibrate steps folder", ["calibrate", "--steps", "{d}/steps_dir", "--model", "llama-3.1-8b", "--gpu",
                                "h100-sxm", "--out", "{d}/p.json"], "--steps"),
    ("calibrate steps latin-1", ["calibrate", "--steps", "{d}/steps_latin1.csv", "--model", "llama-3.1-8b", "--gpu",
                                 "h100-sxm", "--out", "{d}/p.json"], "--steps"),
    ("calibrate steps quoted newline", ["calibrate", "--steps", "{d}/steps_newline.csv", "--model", "llama-3.1-8b",
                                        "--gpu", "h100-sxm", "--out", "{d}/p.json"], "--steps"),
    # scenario numbers
    ("batch rate inf", ["simulate", "{d}/batch_rate_per_hour_inf.toml"], "batch_rate_per_hour"),
    ("batch rate 1e300", ["simulate", "{d}/batch_rate_per_hour_1e300.toml"], "batch_rate_per_hour"),
    ("batch rate nan", ["simulate", "{d}/batch_rate_per_hour_nan.toml"], "batch_rate_per_hour"),
    ("sla inf", ["simulate", "{d}/sla_hours_inf.toml"], "sla_hours"),
    ("horizon inf", ["simulate", "{d}/horizon_hours_inf.toml"], "horizon_hours"),
    ("warm-up inf", ["simulate", "{d}/warmup_hours_inf.toml"], "warmup_hours"),
    ("horizon 1e9 (too large to simulate)", ["simulate", "{d}/horizon_hours_1e9.toml"], "horizon_hours"),
    ("a batch of 1e12 requests", ["simulate", "{d}/huge_batch.toml", "--fidelity", "request"], "simulation"),
    ("unknown scenario key", ["simulate", "{d}/unknown_key.toml"], "speed"),
    # CLI numbers, by the rules of the scenario field they override
    ("seed -1", ["simulate", S, "--seed", "-1"], "seed"),
    ("replications 0", ["simulate", S, "--replications", "0"], "replications"),
    ("replications 1", ["simulate", S, "--replications", "1"], "replications"),
    ("n-jobs 0", ["simulate", S, "--n-jobs", "0"], "n-jobs"),
    ("n-jobs -2", ["simulate", S, "--n-jobs", "-2"], "n-jobs"),
    ("horizon nan", ["simulate", S, "--horizon-hours", "nan"], "horizon"),
    ("horizon -1", ["simulate", S, "--horizon-hours", "-1"], "horizon"),
    ("horizon 1e9", ["simulate", S, "--horizon-hours", "1e9"], "horizon"),
    ("study timeout nan", ["study", "run", ST, "--timeout", "nan"], "timeout"),
    ("study timeout -1", ["study", "run", ST, "--timeout", "-1"], "timeout"),
    ("study n-jobs 0", ["study", "run", ST, "--n-jobs", "0"], "n-jobs"),
    ("study n-trials -1", ["study", "run", ST, "--n-trials", "-1"], "n-trials"),
    ("study worker-id -1", ["study", "run", ST, "--worker-id", "-1"], "worker-id"),
    ("perf concurrency 1e12", ["perf", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--isl", "100", "--osl",
                               "100", "--concurrency", "1000000000000"], "concurrency"),
    ("perf block size 7", ["perf", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--block-size", "7"], "block"),
    ("perf batch 0", ["perf", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--batch", "0"], "batch"),
    ("perf tp 3", ["perf", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--tp", "0"], "tp"),
    ("perf unknown gpu", ["perf", "--model", "llama-3.1-8b", "--gpu", "no-such-gpu"], "gpu"),
    ("compare-hardware target 2", ["compare-hardware", ST, "--target-miss", "2"], "target-miss"),
    ("compare-hardware target nan", ["compare-hardware", ST, "--target-miss", "nan"], "target-miss"),
    # outputs
    ("front --out a folder", ["study", "front", ST, "--out", "{d}/steps_dir"], "--out"),
    ("plot --out a folder", ["study", "plot", ST, "--out", "{d}/steps_dir"], "--out"),
    ("plot --out .txt", ["study", "plot", ST, "--out", "{d}/front.txt"], "--out"),
    ("calibrate --out a folder", ["calibrate", "--steps", "{d}/steps_newline.csv", "--model", "llama-3.1-8b",
                                  "--gpu", "h100-sxm", "--out", "{d}/steps_dir"], "--"),
    # study files
    ("nodes low 0", ["study", "run", "{d}/nodes_zero.toml"], "nodes"),
    ("a space path that is no field", ["study", "run", "{d}/bad_path.toml"], "not_a_field"),
    ("a gpu that is not in the catalogue", ["study", "run", "{d}/bad_gpu.toml"], "no-such-gpu"),
    ("an objective that does not exist", ["study", "run", "{d}/bad_objective.toml"], "objectives"),
    ("n_trials 0", ["study", "run", "{d}/zero_trials.toml"], "n_trials"),
    ("negative budget", ["study", "run", "{d}/negative_budget.toml"], "budget_per_hour"),
    ("max_load 0", ["study", "run", "{d}/zero_max_load.toml"], "max_load"),
    ("objectives reordered after a run", ["study", "run", "{d}/reordered.toml"], "objectives"),
    ("an objective returning NaN", ["study", "run", "{d}/nan_objective.toml", "--no-confirm"], "cost_per_hour"),
    ("front of a study never run", ["study", "front", "{d}/zero_trials.toml"], "n_trials"),
    # more of the same kinds
    ("a trace that is a folder", ["simulate", "{d}/trace_folder.toml"], "workload.trace"),
    ("perf --profile a folder", ["perf", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--profile", "{d}/steps_dir"],
     "profile"),
    ("perf --gpu-memory-utilization nan", ["perf", "--model", "llama-3.1-8b", "--gpu", "h100-sxm",
                                           "--gpu-memory-utilization", "nan"], "gpu-memory-utilization"),
    ("simulate --max-requests 0", ["simulate", S, "--max-requests", "0"], "max-requests"),
    ("fast tier horizon 1e9 (too large to hold)", ["simulate", S, "--fidelity", "fast", "--horizon-hours", "1e9"],
     "max_batches"),
    ("compare-hardware replications 1", ["compare-hardware", ST, "--target-miss", "0.01", "--replications", "1"],
     "replications"),
    ("a study whose confirmations are too large", ["study", "run", "{d}/huge_confirmations.toml"], "max_requests"),
    ("a range over a setting of fixed values", ["study", "run", "{d}/literal_range.toml"], "block_size"),
]


@pytest.mark.parametrize(("name", "argv", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_exit_2_and_changes_nothing(world, capsys, name, argv, field):
    d = world
    before = snapshot(d)
    capsys.readouterr()
    code = main([a.format(d=d) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, (name, code, err)
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    assert field in lines[0], (field, lines[0])
    assert "Traceback" not in err
    assert snapshot(d) == before  # nothing overwritten, the study database untouched


def test_the_catalogue_is_large():
    assert len(CASES) >= 40
