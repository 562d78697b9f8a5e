"""``sojourn simulate``: the JSON keys, the human table, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sojourn.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

KEYS = {
    "p_miss", "p_miss_ci", "p_miss_upper", "batch_miss", "sojourn_mean_s", "sojourn_p50_s", "sojourn_p90_s",
    "sojourn_p99_s", "wait_mean_s", "throughput_rps", "requests_arrived", "requests_completed",
    "requests_rejected", "requests_cancelled", "requests_in_system", "preemptions", "kv_utilization",
    "busy_fraction", "cost_per_hour", "fidelity", "sojourn_mean_ci", "wait_mean_ci",
}


def small_generic(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "s.toml"
    p.write_text(
        'sla_hours = 0.01\n'
        '[workload]\nbatch_rate_per_hour = 1800\n'
        'input_tokens = { dist = "fixed", value = 1 }\noutput_tokens = { dist = "fixed", value = 1 }\n'
        '[fleet]\nserver = { kind = "generic", service_time = { dist = "exponential", mean = 1.0 }, concurrency = 1 }\n'
        '[simulation]\nhorizon_hours = 0.2\nwarmup_hours = 0.05\nreplications = 2\n' + extra
    )
    return p


def test_json_has_the_documented_keys(tmp_path, capsys):
    assert main(["simulate", str(small_generic(tmp_path)), "--json", "--replications", "3", "--seed", "4"]) == 0
    out, err = capsys.readouterr()
    d = json.loads(out)
    assert KEYS <= set(d)
    assert d["replications"] == 3 and d["seed"] == 4
    assert len(d["p_miss_ci"]) == 2
    assert "replication" not in err and "%|" not in err  # off a terminal: no progress bar, no progress lines


def test_horizon_option_overrides_the_scenario(tmp_path, capsys):
    assert main(["simulate", str(small_generic(tmp_path)), "--json", "-q", "--horizon-hours", "0.1"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["horizon_hours"] == 0.1
    assert err == ""


def test_table_for_people(tmp_path, capsys):
    assert main(["simulate", str(small_generic(tmp_path)), "-q"]) == 0
    out = capsys.readouterr().out
    assert "P(S > SLA)" in out and "sojourn" in out and "throughput" in out


def test_same_json_with_two_jobs(tmp_path, capsys):
    path = str(small_generic(tmp_path))
    main(["simulate", path, "--json", "-q"])
    a = json.loads(capsys.readouterr().out)
    main(["simulate", path, "--json", "-q", "--n-jobs", "2"])
    b = json.loads(capsys.readouterr().out)
    a.pop("wall_s")
    b.pop("wall_s")
    assert a == b


@pytest.mark.parametrize(
    ("extra", "args", "field"),
    [
        ('[serving]\ndiscipline = "random"\n', [], "serving.discipline"),
        ('[serving]\nrouting = "pull"\n', [], "serving.routing"),
        ("", ["--replications", "1"], "replications"),
        ("", ["--horizon-hours", "-2"], "--horizon-hours"),
        ("", ["--n-jobs", "0"], "--n-jobs"),  # the option, as for --horizon-hours
    ],
)
def test_bad_input_is_one_line_naming_the_field(tmp_path, capsys, extra, args, field):
    rc = main(["simulate", str(small_generic(tmp_path, extra)), "--json", "-q", *args])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in err


def test_missing_file_is_exit_2(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nope.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_generic_example_runs(capsys):
    assert main(["simulate", str(EXAMPLES / "generic-mmc.toml"), "--json", "-q", "--horizon-hours", "0.2",
                 "--replications", "2"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kv_utilization"] is None and 0.7 < d["busy_fraction"] < 0.9


@pytest.mark.parametrize(
    ("workload", "message"),
    [
        # A synthetic key next to a trace would be silently unused.
        ('trace = "t.csv"\nformat = "azure"\nbatch_rate_per_hour = 1800\n',
         "workload.batch_rate_per_hour: not used when a trace is replayed (the trace's own arrival times set "
         "the rate; scale them with rate_scale); remove it"),
        # A trace-only key without a trace likewise.
        ('batch_rate_per_hour = 1800\nbatch_window_s = 30\n'
         'input_tokens = { dist = "fixed", value = 1 }\noutput_tokens = { dist = "fixed", value = 1 }\n',
         "workload.batch_window_s: only used when a trace is replayed (it groups the trace's arrivals into "
         "batches; synthetic batches take batch_size); remove it, or set trace"),
    ],
)
def test_unused_workload_key_is_one_line_exit_2(tmp_path, capsys, workload, message):
    p = tmp_path / "s.toml"
    p.write_text(
        "sla_hours = 0.01\n[workload]\n" + workload
        + '[fleet]\nserver = { kind = "generic", service_time = { dist = "fixed", value = 1.0 } }\n'
    )
    rc = main(["simulate", str(p), "--json", "-q"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert err == f"sojourn simulate: error: {message}\n"
