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


# --- one validation: the options build the scenario's own models -----------------------------------

BASE = ["--model", "llama-3.1-8b", "--gpu", "h100-sxm"]
#: A bad value of each option that stands for a scenario setting, and that setting.
BAD = {
    "--tp": ("0", "fleet", "tp", 0),
    "--precision": ("int4", "model", "precision", "int4"),
    "--backend": ("tgi", "serving", "backend", "tgi"),
    "--gpu-memory-utilization": ("1.5", "serving", "gpu_memory_utilization", 1.5),
    "--max-num-batched-tokens": ("0", "serving", "max_num_batched_tokens", 0),
    "--max-num-seqs": ("0", "serving", "max_num_seqs", 0),
    "--block-size": ("7", "serving", "block_size", 7),
    "--kv-cache-dtype": ("fp4", "serving", "kv_cache_dtype", "fp4"),
    "--pipeline-parallel-size": ("0", "serving", "pipeline_parallel_size", 0),
    "--data-parallel-size": ("0", "serving", "data_parallel_size", 0),
}


def test_every_setting_option_is_checked_here():
    from sojourn._cli.perf import SETTINGS

    # Every option standing for a setting with a rule (not the free names model, gpu, profile).
    assert {f"--{d.replace('_', '-')}" for d in SETTINGS} - {"--model", "--gpu", "--profile"} == set(BAD)


@pytest.mark.parametrize("flag", BAD)
def test_a_bad_option_is_refused_by_the_scenario_rule_of_its_setting(flag, capsys):
    from sojourn import ConfigError
    from sojourn.scenario import scenario_from_dict

    text, section, field, value = BAD[flag]
    assert main(["perf", *BASE, flag, text]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sojourn perf: error: {flag}: ") and f"(the rule of {section}.{field})" in err
    # The scenario refuses the same value naming the same setting, with the same rule.
    wl = {"batch_rate_per_hour": 1.0, "input_tokens": {"dist": "fixed", "value": 1},
          "output_tokens": {"dist": "fixed", "value": 1}}
    with pytest.raises(ConfigError) as scen:
        scenario_from_dict({"workload": wl, section: {field: value}})
    assert scen.value.field == f"{section}.{field}"
    rule = scen.value.message.split("; allowed: ")[-1] if "allowed" in scen.value.message else scen.value.message
    assert rule.split(" (got")[0] in err, (rule, err)


def test_the_engine_rule_between_settings_is_the_scenario_s(capsys):
    from sojourn import ConfigError
    from sojourn.scenario import Serving

    args = ["--max-num-batched-tokens", "100", "--max-num-seqs", "128"]
    assert main(["perf", *BASE, *args]) == 2
    err = capsys.readouterr().err
    with pytest.raises(ConfigError) as scen:
        Serving(max_num_batched_tokens=100, max_num_seqs=128).check_engine()
    assert f"--max-num-batched-tokens: {scen.value.message} (the rule of {scen.value.field})" in err
    assert main(["perf", *BASE, "--max-num-batched-tokens", "128", "--max-num-seqs", "128", "--json"]) == 0


def test_the_defaults_are_the_scenario_s(capsys):
    from sojourn.scenario import Serving, scenario_from_dict

    out = run_json(capsys, *BASE)
    wl = {"batch_rate_per_hour": 1.0, "input_tokens": {"dist": "fixed", "value": 1},
          "output_tokens": {"dist": "fixed", "value": 1}}
    pm = scenario_from_dict({"workload": wl}).perf_model()  # every setting at its default
    assert out["kv_capacity_tokens"] == pm.kv_capacity_tokens and out["alpha_chunk_tokens"] == pm.max_num_batched_tokens
    assert (out["tp"], out["precision"], out["backend"]) == (1, "bf16", Serving().backend)
    assert out["alpha_s_per_token"] == pm.alpha()
    # And the perf model's own defaults are the scenario's: written once.
    from sojourn.perf import PerfModel

    for name in ("gpu_memory_utilization", "max_num_batched_tokens", "max_num_seqs", "block_size", "kv_cache_dtype"):
        assert PerfModel.__dataclass_fields__[name].default == Serving.model_fields[name].default, name


def test_help_names_each_setting_and_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["perf", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "scenario setting serving.max_num_seqs; default 256" in text
    assert "scenario setting fleet.tp; default 1" in text
    assert "scenario setting serving.backend; allowed: vllm | sglang | trtllm; default vllm" in text
    assert "scenario setting serving.kv_cache_dtype; allowed: bf16 | fp8; default unset" in text
