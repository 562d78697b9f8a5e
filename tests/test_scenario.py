"""Scenario files: the documented shape loads, and every bad input gets one message naming its field."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from sojourn import ConfigError
from sojourn.distributions import Lognormal
from sojourn.scenario import Scenario, Workload, load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "llama8b-h100.toml"


def base() -> dict:
    with EXAMPLE.open("rb") as fh:
        return tomllib.load(fh)


def with_(updates: dict) -> dict:
    d = copy.deepcopy(base())
    for key, value in updates.items():
        node = d
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if value is _DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return d


_DELETE = object()


def test_documented_example_loads():
    s = load_scenario(EXAMPLE)
    assert s.sla_hours == 24
    assert s.workload.batch_size.median == 2000
    assert s.fleet.nodes == 4 and s.fleet.tp == 1
    assert s.serving.max_num_batched_tokens == 8192
    assert s.simulation.replications == 8
    assert s.cost_per_hour == pytest.approx(4 * s.gpu_spec().price_usd_per_gpu_hour)
    assert s.perf_model().kv_capacity_tokens > 32768


def test_constructible_from_python():
    s = Scenario(
        workload=Workload(
            batch_rate_per_hour=1.0,
            batch_size=Lognormal(dist="lognormal", median=100, sigma=0.5),
            input_tokens={"dist": "fixed", "value": 512},
            output_tokens={"dist": "geometric", "mean": 200},
        ),
    )
    assert s.fleet.gpu == "h100-sxm" and s.serving.discipline == "fifo"
    assert s.workload.mean_requests_per_hour == pytest.approx(s.workload.batch_size.int_mean)


def test_with_updates_revalidates():
    s = load_scenario(EXAMPLE)
    t = s.with_updates({"fleet.nodes": 9, "serving.discipline": "edf"})
    assert t.fleet.nodes == 9 and t.serving.discipline == "edf" and s.fleet.nodes == 4
    with pytest.raises(ConfigError) as e:
        s.with_updates({"fleet.tp": 5})
    assert e.value.field == "fleet.tp"


@pytest.mark.parametrize(
    "updates, field, needle",
    [
        ({"workload.bogus": 1}, "workload.bogus", "unknown key"),
        ({"fleet.colour": "red"}, "fleet.colour", "unknown key"),
        ({"fleet.nodes": "four"}, "fleet.nodes", "integer"),
        ({"fleet.nodes": 0}, "fleet.nodes", "greater than or equal to 1"),
        ({"workload.batch_rate_per_hour": 0}, "workload.batch_rate_per_hour", "greater than 0"),
        ({"workload.batch_rate_per_hour": -2.0}, "workload.batch_rate_per_hour", "greater than 0"),
        ({"sla_hours": 0}, "sla_hours", "greater than 0"),
        ({"workload.batch_size": {"dist": "lognormal", "median": 5, "sigma": -1}}, "workload.batch_size.sigma", "greater than or equal to 0"),
        ({"workload.input_tokens": {"dist": "zipf", "a": 2}}, "workload.input_tokens", "allowed"),
        ({"workload.rate_profile": [1.0] * 23}, "workload.rate_profile", "24"),
        ({"workload.input_tokens": _DELETE}, "workload", "input_tokens"),
        ({"workload.trace": "t.csv"}, "workload", "format"),
        ({"fleet.gpu": "h900"}, "fleet.gpu", "known: a100-40gb"),
        ({"model.name": "llama-9"}, "model.name", "known: llama-3.1-8b"),
        ({"model.precision": "int3"}, "model.precision", "allowed"),
        ({"model.precision": "fp8", "fleet.gpu": "a100-80gb"}, "model.precision", "bf16"),
        ({"fleet.tp": 3}, "fleet.tp", "allowed: 1, 2, 4, 8, 16, 32"),
        ({"model.name": "llama-3.1-405b", "fleet.tp": 2}, "fleet.tp", "weights need"),
        ({"serving.max_model_len": 131072, "fleet.gpu": "l4", "model.name": "llama-3.1-8b"}, "serving.max_model_len", "KV cache holds"),
        ({"serving.max_model_len": 10**6}, "serving.max_model_len", "max_position_embeddings"),
        ({"serving.discipline": "random"}, "serving.discipline", "allowed"),
        ({"serving.gpu_memory_utilization": 1.5}, "serving.gpu_memory_utilization", "less than or equal to 1"),
        ({"serving.block_size": 12}, "serving.block_size", "allowed"),
        ({"serving.max_num_batched_tokens": 64}, "serving.max_num_batched_tokens", "max_num_seqs"),
        ({"serving.on_deadline": "panic"}, "serving.on_deadline", "allowed"),
        ({"fleet.routing": "random"}, "fleet.routing", "allowed"),
        ({"simulation.replications": 1}, "simulation.replications", "greater than or equal to 2"),
    ],
)
def test_bad_input_names_the_field(updates, field, needle):
    with pytest.raises(ConfigError) as e:
        scenario_from_dict(with_(updates))
    assert e.value.field == field, str(e.value)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)  # one line


def test_generic_server_skips_engine_checks():
    d = with_({"fleet.server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 2.0}, "concurrency": 3}})
    d["model"]["name"] = "llama-3.1-405b"  # would not fit an H100: irrelevant for a generic server
    s = scenario_from_dict(d)
    assert s.fleet.server.concurrency == 3


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("sla_hours = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(bad)


def test_relative_paths_resolve_from_the_scenario_file(tmp_path):
    (tmp_path / "sizes.csv").write_text("tokens\n100\n200\n300\n")
    text = EXAMPLE.read_text().replace(
        'input_tokens  = { dist = "lognormal", median = 900,  sigma = 0.8 }',
        'input_tokens  = { dist = "empirical", file = "sizes.csv", column = "tokens" }',
    )
    (tmp_path / "s.toml").write_text(text)
    s = load_scenario(tmp_path / "s.toml")
    assert s.workload.input_tokens.mean == pytest.approx(200.0)


# -- a trace replaces the synthetic workload: keys one source ignores are errors --------------

_GENERIC = {"server": {"kind": "generic", "service_time": {"dist": "fixed", "value": 1}}}
_SYNTHETIC = {
    "batch_rate_per_hour": 10.0,
    "input_tokens": {"dist": "fixed", "value": 100},
    "output_tokens": {"dist": "fixed", "value": 10},
}
_TRACE = {"trace": "t.csv", "format": "azure"}  # validation does not read the file


def _workload(wl: dict) -> Scenario:
    return scenario_from_dict({"workload": wl, "fleet": _GENERIC})


@pytest.mark.parametrize(
    "extra, field, reason",
    [
        ({"batch_rate_per_hour": 10.0}, "workload.batch_rate_per_hour",
         "the trace's own arrival times set the rate; scale them with rate_scale"),
        ({"rate_profile": [1.0] * 24}, "workload.rate_profile", "the trace's own arrival times set the rate over the day"),
        ({"batch_size": {"dist": "geometric", "mean": 4}}, "workload.batch_size",
         "the trace's arrivals form the batches; group them with batch_window_s"),
        ({"input_tokens": {"dist": "fixed", "value": 100}}, "workload.input_tokens",
         "the trace gives each request's prompt length"),
        ({"output_tokens": {"dist": "fixed", "value": 10}}, "workload.output_tokens",
         "the trace gives each request's output length"),
    ],
)
def test_trace_refuses_the_synthetic_keys_it_replaces(extra, field, reason):
    with pytest.raises(ConfigError) as e:
        _workload({**_TRACE, **extra})
    assert e.value.field == field, str(e.value)
    assert str(e.value) == f"{field}: not used when a trace is replayed ({reason}); remove it"


def test_trace_error_lists_every_unused_key():
    with pytest.raises(ConfigError) as e:
        _workload({**_TRACE, **_SYNTHETIC})
    assert e.value.field == "workload.batch_rate_per_hour"
    assert e.value.message.endswith("remove it (likewise: input_tokens, output_tokens)")


@pytest.mark.parametrize(
    "extra, field, reason",
    [
        ({"rate_scale": 2.0}, "workload.rate_scale",
         "it divides the trace's arrival times; a synthetic rate is batch_rate_per_hour"),
        ({"batch_window_s": 60.0}, "workload.batch_window_s",
         "it groups the trace's arrivals into batches; synthetic batches take batch_size"),
        ({"format": "azure"}, "workload.format", "it is the trace file's format"),
    ],
)
def test_trace_only_keys_without_a_trace_are_refused(extra, field, reason):
    with pytest.raises(ConfigError) as e:
        _workload({**_SYNTHETIC, **extra})
    assert e.value.field == field, str(e.value)
    assert str(e.value) == f"{field}: only used when a trace is replayed ({reason}); remove it, or set trace"


def test_trace_only_key_is_named_before_the_missing_synthetic_keys():
    # rate_scale without a trace most likely means the trace was forgotten: say so first.
    with pytest.raises(ConfigError) as e:
        _workload({"rate_scale": 2.0})
    assert e.value.field == "workload.rate_scale"


def test_trace_keeps_the_keys_that_apply_to_it():
    s = _workload({**_TRACE, "rate_scale": 2.0, "batch_window_s": 30.0,
                   "sla_classes": [{"hours": 1.0}, {"hours": 6.0, "weight": 2.0}]})
    assert s.workload.rate_scale == 2.0 and s.workload.batch_window_s == 30.0
    assert [c.hours for c in s.workload.sla_classes] == [1.0, 6.0]


def test_keys_at_their_defaults_and_revalidation_are_accepted():
    # A default written out changes nothing; with_updates writes every default back.
    syn = _workload({**_SYNTHETIC, "rate_scale": 1.0, "batch_window_s": 0.0})
    assert syn.with_updates({"fleet.nodes": 2}).fleet.nodes == 2
    tr = _workload({**_TRACE, "batch_size": {"dist": "fixed", "value": 1}})
    assert tr.with_updates({"workload.rate_scale": 3.0}).workload.rate_scale == 3.0
    with pytest.raises(ConfigError) as e:
        tr.with_updates({"workload.batch_rate_per_hour": 5.0})
    assert e.value.field == "workload.batch_rate_per_hour"
    with pytest.raises(ConfigError) as e:
        syn.with_updates({"workload.batch_window_s": 5.0})
    assert e.value.field == "workload.batch_window_s"


def test_unused_keys_are_refused_from_python_too():
    with pytest.raises(ValueError, match="workload.rate_profile: not used when a trace is replayed"):
        Workload(trace="t.csv", format="mooncake", rate_profile=[1.0] * 24)
    with pytest.raises(ValueError, match="workload.rate_scale: only used when a trace is replayed"):
        Workload(**_SYNTHETIC, rate_scale=0.5)
