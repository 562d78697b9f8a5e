"""Batch arrivals: M^X rates and sizes, the 24-hour profile, trace replay, SLA classes.

Statistical checks use a fixed seed and compare with exact values through a
normal interval at about 4.4 standard errors (false alarm ~1e-5), not hand-picked tolerances.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sojourn._errors import ConfigError
from sojourn.scenario import scenario_from_dict
from sojourn.sim.workload import batch_stream, load_trace, mean_tokens

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AZURE = DATA / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE = DATA / "mooncake_conversation_trace.jsonl"
Z = 4.4


def scenario(**wl):
    w = {
        "batch_rate_per_hour": 60.0,
        "batch_size": {"dist": "geometric", "mean": 5},
        "input_tokens": {"dist": "lognormal", "median": 500, "sigma": 0.5},
        "output_tokens": {"dist": "fixed", "value": 50},
    }
    w.update(wl)
    return scenario_from_dict({"workload": w, "fleet": {"server": {"kind": "generic", "service_time": {"dist": "fixed", "value": 1}}}})


def take_until(stream, t_end):
    out = []
    for b in stream:
        if b[0] >= t_end:
            return out
        out.append(b)


def within(x, mean, sd):
    return abs(x - mean) <= Z * sd


def test_poisson_batches_have_the_rate_and_sizes():
    sc = scenario()
    T = 2000 * 3600.0
    batches = take_until(batch_stream(sc, np.random.SeedSequence(1)), T)
    n = len(batches)
    assert within(n, 60 * 2000, math.sqrt(60 * 2000))
    times = np.array([b[0] for b in batches])
    assert np.all(np.diff(times) > 0)
    sizes = np.array([len(b[1]) for b in batches])
    assert within(sizes.mean(), 5.0, math.sqrt(20.0 / n))  # geometric mean 5, var (1-p)/p^2 = 20
    assert all(len(b[1]) == len(b[2]) for b in batches)
    assert all(b[3] == 24 * 3600.0 for b in batches)
    prompts = np.concatenate([b[1] for b in batches])
    assert prompts.dtype.kind == "i" and prompts.min() >= 1
    assert set(np.concatenate([b[2] for b in batches]).tolist()) == {50}


def test_rate_profile_thins_by_hour():
    profile = [1.0] * 12 + [3.0] * 12
    sc = scenario(rate_profile=profile)
    days = 50
    batches = take_until(batch_stream(sc, np.random.SeedSequence(2)), days * 86400.0)
    hours = (np.array([b[0] for b in batches]) // 3600).astype(int) % 24
    low, high = np.sum(hours < 12), np.sum(hours >= 12)
    assert within(low, 60 * 12 * days, math.sqrt(60 * 12 * days))
    assert within(high, 180 * 12 * days, math.sqrt(180 * 12 * days))
    assert sc.workload.mean_requests_per_hour == pytest.approx(60 * 2 * 5)


def test_same_seed_same_traffic_different_seed_different():
    sc = scenario()
    a = list(itertools.islice(batch_stream(sc, np.random.SeedSequence(7)), 300))
    b = list(itertools.islice(batch_stream(sc, np.random.SeedSequence(7)), 300))
    c = list(itertools.islice(batch_stream(sc, np.random.SeedSequence(8)), 300))
    assert a == b
    assert a != c


def test_traffic_does_not_depend_on_the_service_settings():
    # Common random numbers: the arrival times stay when the sizes' distribution changes.
    a = list(itertools.islice(batch_stream(scenario(), np.random.SeedSequence(3)), 100))
    b = list(itertools.islice(batch_stream(scenario(input_tokens={"dist": "fixed", "value": 7}),
                                           np.random.SeedSequence(3)), 100))
    assert [x[0] for x in a] == [x[0] for x in b]
    assert [len(x[1]) for x in a] == [len(x[1]) for x in b]


def test_sla_classes_are_drawn_by_weight():
    sc = scenario(sla_classes=[{"hours": 1.0, "weight": 1.0}, {"hours": 12.0, "weight": 3.0}])
    batches = list(itertools.islice(batch_stream(sc, np.random.SeedSequence(4)), 20000))
    slas = np.array([b[3] for b in batches])
    assert set(slas.tolist()) == {3600.0, 43200.0}
    frac = np.mean(slas == 3600.0)
    assert within(frac, 0.25, math.sqrt(0.25 * 0.75 / len(slas)))


def test_empty_batches_are_skipped():
    sc = scenario(batch_size={"dist": "empirical", "values": [0, 2]})
    batches = list(itertools.islice(batch_stream(sc, np.random.SeedSequence(5)), 200))
    assert all(len(b[1]) == 2 for b in batches)


# -- traces -----------------------------------------------------------------------


def trace_scenario(path, fmt, **wl):
    w = {"trace": str(path), "format": fmt}
    w.update(wl)
    return scenario_from_dict({"workload": w, "fleet": {"server": {"kind": "generic", "service_time": {"dist": "fixed", "value": 1}}}})


@pytest.mark.skipif(not AZURE.exists(), reason="shared data not present")
def test_azure_trace_replays_lengths_as_given():
    t, i, o = load_trace(AZURE, "azure")
    assert len(t) == 19366 and t[0] == 0.0 and np.all(np.diff(t) >= 0)
    assert i.mean() == pytest.approx(1155, rel=0.01) and o.mean() == pytest.approx(211, rel=0.01)
    sc = trace_scenario(AZURE, "azure")
    period = t[-1] * len(t) / (len(t) - 1)
    batches = take_until(batch_stream(sc, np.random.SeedSequence(0)), 3 * period)
    assert all(len(b[1]) == 1 for b in batches)
    # Over whole cycles every request of the trace appears once per cycle, lengths unchanged.
    first = [b for b in batches if period <= b[0] < 2 * period]
    pairs = sorted((b[1][0], b[2][0]) for b in first)
    assert pairs == sorted(zip(i.tolist(), o.tolist()))
    assert mean_tokens(sc) == pytest.approx((i.mean(), o.mean()))


@pytest.mark.skipif(not AZURE.exists(), reason="shared data not present")
def test_rate_scale_speeds_the_trace_up():
    slow = take_until(batch_stream(trace_scenario(AZURE, "azure"), np.random.SeedSequence(0)), 7200.0)
    fast = take_until(batch_stream(trace_scenario(AZURE, "azure", rate_scale=2.0), np.random.SeedSequence(0)), 7200.0)
    assert len(fast) == pytest.approx(2 * len(slow), rel=0.02)


@pytest.mark.skipif(not AZURE.exists(), reason="shared data not present")
def test_batch_window_groups_arrivals():
    w = 600.0
    sc = trace_scenario(AZURE, "azure", batch_window_s=w)
    batches = take_until(batch_stream(sc, np.random.SeedSequence(1)), 10 * 3600.0)
    times = np.array([b[0] for b in batches])
    assert np.allclose(times / w, np.round(times / w))  # submitted at window ends
    assert np.all(np.diff(times) > 0)
    sizes = np.array([len(b[1]) for b in batches])
    assert sizes.mean() == pytest.approx(19366 / 3431 * w, rel=0.25)  # ~5.6 requests/s in the trace


@pytest.mark.skipif(not MOONCAKE.exists(), reason="shared data not present")
def test_mooncake_trace_is_read_in_milliseconds():
    t, i, o = load_trace(MOONCAKE, "mooncake")
    assert len(t) == 12031
    with MOONCAKE.open() as fh:
        last = json.loads(fh.readlines()[-1])
    assert t[-1] == pytest.approx(last["timestamp"] / 1000.0)
    assert i.mean() == pytest.approx(12035, rel=0.01)


def test_bad_trace_files_name_the_field(tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ConfigError, match="workload.trace"):
        load_trace(bad, "azure")
    with pytest.raises(ConfigError, match="workload.trace"):
        load_trace(tmp_path / "missing.csv", "azure")
    one = tmp_path / "one.jsonl"
    one.write_text('{"timestamp": 0, "input_length": 5, "output_length": 5}\n')
    with pytest.raises(ConfigError, match="at least 2"):
        load_trace(one, "mooncake")


@pytest.mark.parametrize(
    "name, text, fmt",
    [
        ("same.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
         + "2023-11-16 18:15:46.6805900,100,10\n" * 3, "azure"),
        ("same.jsonl", '{"timestamp": 5000, "input_length": 100, "output_length": 10}\n' * 4, "mooncake"),
    ],
)
def test_trace_with_all_timestamps_equal_is_refused(tmp_path, name, text, fmt):
    # A zero span gives no replay period and no arrival rate: refused, not given an invented 1 s period.
    path = tmp_path / name
    path.write_text(text)
    n = text.count("\n") - (fmt == "azure")
    with pytest.raises(ConfigError) as e:
        load_trace(path, fmt)
    assert e.value.field == "workload.trace"
    assert str(e.value) == (
        f"workload.trace: {path}: all {n} requests have the same timestamp, so the trace spans zero time "
        "and no arrival rate can be derived from it; a replay needs arrivals at two or more distinct times "
        "(for one burst of requests, use a synthetic workload with a fixed batch_size)"
    )
    # Every consumer of the trace gets the same error (the fast tier divided by the zero period).
    from sojourn.fast.batches import trace_rate
    from sojourn.sim.fleet import check_scenario

    sc = trace_scenario(path, fmt)
    for use in (lambda: next(batch_stream(sc, np.random.SeedSequence(0))), lambda: mean_tokens(sc),
                lambda: check_scenario(sc), lambda: trace_rate(sc)):
        with pytest.raises(ConfigError, match="spans zero time"):
            use()


def test_two_distinct_timestamps_are_a_replayable_trace(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 7, "output_length": 3}\n'
                    '{"timestamp": 0, "input_length": 8, "output_length": 4}\n'
                    '{"timestamp": 2000, "input_length": 9, "output_length": 5}\n')
    t, _, _ = load_trace(path, "mooncake")
    assert t.tolist() == [0.0, 0.0, 2.0]
    # Period = span·n/(n−1) = 3 s: three requests every 3 s.
    batches = take_until(batch_stream(trace_scenario(path, "mooncake"), np.random.SeedSequence(0)), 3000.0)
    assert len(batches) == pytest.approx(3000, abs=3)


def test_trace_with_a_non_finite_timestamp_is_refused(tmp_path):
    path = tmp_path / "nan.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 7, "output_length": 3}\n'
                    '{"timestamp": NaN, "input_length": 8, "output_length": 4}\n')
    with pytest.raises(ConfigError, match="workload.trace: .* a timestamp is not a finite number"):
        load_trace(path, "mooncake")
