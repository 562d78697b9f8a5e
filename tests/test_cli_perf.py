"""`sojourn perf`: the JSON contract and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sojourn.cli import main


def run_json(capsys, *args):
    assert main(["perf", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_perf_json_keys_and_shapes(capsys):
    out = run_json(capsys, "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--batch", "1,8,64", "--context", "1024,4096")
    for key in ("kv_capacity_tokens", "weights_bytes", "alpha_s_per_token", "decode_step_s", "sources"):
        assert key in out
    d = out["decode_step_s"]
    assert d["batch"] == [1, 8, 64] and d["context"] == [1024, 4096]
    assert len(d["seconds"]) == 3 and all(len(row) == 2 for row in d["seconds"])
    assert d["seconds"][2][1] > d["seconds"][0][0] > 0
    assert out["weights_bytes"] == pytest.approx(8.03e9 * 2, rel=0.01)
    assert out["kv_capacity_tokens"] % 16 == 0
    for key in ("weights_bytes", "kv_capacity_tokens", "alpha_s_per_token", "decode_step_s"):
        assert out["sources"][key]


def test_perf_closed_loop_keys(capsys):
    out = run_json(capsys, "--model", "qwen3-32b", "--gpu", "h100-sxm", "--tp", "2",
                   "--isl", "1024", "--osl", "128", "--concurrency", "16")
    assert out["ttft_s"] > 0 and out["tpot_s"] > 0
    # TPOT at concurrency includes other requests' prefill stalls: above the bare decode step.
    assert out["tpot_s"] > out["decode_step_s"]["seconds"][0][0]


def test_unmeasured_gpu_says_where_its_factors_come_from(capsys):
    out = run_json(capsys, "--model", "llama-3.1-8b", "--gpu", "mi300x")
    assert out["profile"]["carried_from"]
    assert "carried over" in out["warning"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "llama-3.1-8b", "--gpu", "h999"], "--gpu"),
        (["--model", "nope", "--gpu", "h100-sxm"], "model.name"),
        (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--tp", "3"], "fleet.tp"),
        (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--batch", "1,x"], "--batch"),
        (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--isl", "100"], "--isl/--osl/--concurrency"),
        (["--model", "llama-3.1-8b", "--gpu", "a100-80gb", "--precision", "fp8"], "model.precision"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle):
    proc = subprocess.run([sys.executable, "-m", "sojourn.cli", "perf", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle.split("-")[-1] in lines[0]
