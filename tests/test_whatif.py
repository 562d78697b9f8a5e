"""What-ifs (sojourn.whatif): a scaled arrival rate and a replaced SLA, against exact results and reruns."""

from __future__ import annotations

import json
import math

import pytest

from sojourn import ConfigError
from sojourn.analytic import mmc_mean_sojourn, mmc_sojourn_sf
from sojourn.cli import main
from sojourn.evaluate import run_scenario
from sojourn.scenario import scenario_from_dict
from sojourn.whatif import WhatIf, apply_what_if, parse_what_if

#: Mean service time 1 s, SLA 3 s: P(miss) of an M/M/1 queue is exp(-(1 - lam) * 3).
SLA_S = 3.0


def mm1(lam: float, seed: int = 5, reps: int = 10, sla_classes: list | None = None) -> object:
    """An M/M/1 queue of generic requests at ``lam`` per second (service 1 s), nothing cancelled."""
    wl = {
        "batch_rate_per_hour": lam * 3600.0,
        "batch_size": {"dist": "fixed", "value": 1},
        "input_tokens": {"dist": "fixed", "value": 1},
        "output_tokens": {"dist": "fixed", "value": 1},
    }
    if sla_classes:
        wl["sla_classes"] = sla_classes
    return scenario_from_dict({
        "sla_hours": SLA_S / 3600.0,
        "workload": wl,
        "fleet": {"nodes": 1, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0},
                                         "concurrency": 1}},
        "serving": {"on_deadline": "finish"},
        "simulation": {"horizon_hours": 3.0, "warmup_hours": 0.25, "replications": reps, "seed": seed},
    })


def test_rate_scale_moves_an_mm1_queue_to_the_exact_values_at_the_scaled_rate():
    base = mm1(0.4)
    scaled, notes = apply_what_if(base, rate_scale=1.75)
    assert notes == [] and math.isclose(scaled.workload.batch_rate_per_hour, 0.7 * 3600.0)
    lam = 0.7
    res = run_scenario(scaled, fidelity="request")
    lo, hi = res.p_miss_ci
    exact = float(mmc_sojourn_sf(SLA_S, lam, 1.0, 1))  # exp(-(1 - 0.7) 3) = 0.407
    assert lo <= exact <= hi, f"P(miss) exact {exact:.4g} outside [{lo:.4g}, {hi:.4g}]"
    # Far from the baseline's exact value: the scaling did move it.
    assert not lo <= float(mmc_sojourn_sf(SLA_S, 0.4, 1.0, 1)) <= hi
    mean = mmc_mean_sojourn(lam, 1.0, 1)  # 1 / (1 - 0.7)
    lo, hi = res.sojourn_mean_ci
    assert lo <= mean <= hi, f"E[S] exact {mean:.4g} outside [{lo:.4g}, {hi:.4g}]"


def test_a_new_sla_equals_rerunning_with_that_sla():
    base = mm1(0.5, reps=3)
    changed, _ = WhatIf(sla_hours=5.0 / 3600.0).apply(base)
    rerun = base.with_updates({"sla_hours": 5.0 / 3600.0})
    a = run_scenario(changed, fidelity="request").to_dict()
    b = run_scenario(rerun, fidelity="request").to_dict()
    for key in ("wall_s", "requests_simulated"):
        a.pop(key, None), b.pop(key, None)
    assert a == b
    assert a["p_miss"] != run_scenario(base, fidelity="request")["p_miss"]


def test_a_new_sla_replaces_mixed_sla_classes_with_a_note():
    base = mm1(0.5, reps=3, sla_classes=[{"hours": 1.0, "weight": 1.0}, {"hours": 24.0, "weight": 3.0}])
    changed, notes = apply_what_if(base, sla_hours=12.0)
    assert changed.workload.sla_classes is None and changed.sla_hours == 12.0
    assert len(notes) == 1 and "2 SLA classes (1 h, 24 h)" in notes[0] and "12 h" in notes[0]


def test_a_trace_is_scaled_by_compressing_its_arrival_times(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:15:{i:02d}.0000000,100,10\n" for i in range(0, 40, 2)))
    sc = scenario_from_dict({"workload": {"trace": str(trace), "format": "azure", "rate_scale": 2.0},
                             "fleet": {"server": {"kind": "generic", "service_time": {"dist": "fixed", "value": 1.0}}}})
    scaled, _ = apply_what_if(sc, rate_scale=1.5)
    assert scaled.workload.rate_scale == 3.0 and scaled.workload.trace == sc.workload.trace
    assert scaled.workload.batch_rate_per_hour is None
    # The same requests arrive 1.5 times as densely: over the same span, 1.5 times as many.
    runs = [run_scenario(x.with_updates({"simulation.horizon_hours": 0.5, "simulation.warmup_hours": 0.0,
                                         "simulation.replications": 2}), fidelity="request")
            for x in (sc, scaled)]
    base, more = (r["requests_arrived"] for r in runs)
    assert base == pytest.approx(2 * 1800 / 2.0 * 2, rel=0.02)  # 2 replications, one request every 2 s / 2
    assert more == pytest.approx(1.5 * base, rel=0.02)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_bad_factors_are_one_error_naming_the_option_and_the_range(value):
    base = mm1(0.5, reps=2)
    with pytest.raises(ConfigError) as err:
        apply_what_if(base, rate_scale=value)
    assert err.value.field == "--rate-scale" and "> 0" in err.value.message
    with pytest.raises(ConfigError) as err:
        apply_what_if(base, sla_hours=value)
    assert err.value.field == "--sla-hours" and "hours > 0" in err.value.message


def test_a_rate_past_the_scenario_bound_names_the_option_and_the_field():
    with pytest.raises(ConfigError) as err:
        apply_what_if(mm1(0.5, reps=2), rate_scale=1e12)
    assert err.value.field == "--rate-scale" and "workload.batch_rate_per_hour" in err.value.message


def test_parse_what_if_reads_its_label_back_and_refuses_what_it_cannot_read():
    for text in ("baseline", "rate=1.5", "sla=12", "rate=2,sla=12"):
        w = parse_what_if(text)
        assert parse_what_if(w.label) == w and w.label == text
    assert parse_what_if(" RATE = 1.5 ").rate_scale == 1.5
    for bad, field in (("rate=0", "--what-if rate"), ("sla=nan", "--what-if sla"), ("speed=2", "--what-if"),
                       ("rate=2,rate=3", "--what-if"), ("rate", "--what-if"), ("rate=x", "--what-if rate")):
        with pytest.raises(ConfigError) as err:
            parse_what_if(bad)
        assert err.value.field == field, bad


def test_simulate_takes_the_what_if_options(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(
        'sla_hours = 0.001\n[workload]\nbatch_rate_per_hour = 1440.0\nbatch_size = { dist = "fixed", value = 1 }\n'
        'input_tokens = { dist = "fixed", value = 1 }\noutput_tokens = { dist = "fixed", value = 1 }\n'
        '[fleet]\nserver = { kind = "generic", service_time = { dist = "exponential", mean = 1.0 }, concurrency = 1 }\n'
        '[simulation]\nhorizon_hours = 1\nwarmup_hours = 0.1\nreplications = 2\n')
    assert main(["simulate", str(path), "--json", "-q", "--rate-scale", "1.5", "--sla-hours", "0.002"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["what_if"]["rate_scale"] == 1.5 and out["what_if"]["sla_hours"] == 0.002
    assert main(["simulate", str(path), "--json", "-q"]) == 0
    assert "what_if" not in json.loads(capsys.readouterr().out)  # a plain run's output is as it was
    for flag, value in (("--rate-scale", "0"), ("--rate-scale", "nan"), ("--sla-hours", "-3")):
        assert main(["simulate", str(path), "-q", flag, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"error: {flag}: allowed:" in err and "> 0" in err
