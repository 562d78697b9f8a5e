"""Sojourn samples in bounded memory: exact below the cap, a log histogram beyond, same answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sojourn.request as estimate
import sojourn.sim.fleet as fleet
from sojourn.request import simulate
from sojourn.scenario import scenario_from_dict
from sojourn.sim._sojourns import REL, LogHistogram, pooled_quantiles


def mm1(hours=1.0):
    # M/M/1 at load 0.8 with an SLA of 10 s: about 2,900 requests a replication-hour.
    return scenario_from_dict({
        "sla_hours": 10.0 / 3600.0,
        "workload": {"batch_rate_per_hour": 0.8 * 3600, "input_tokens": {"dist": "fixed", "value": 1},
                     "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": 1, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
        "serving": {"on_deadline": "finish"},
        "simulation": {"horizon_hours": hours, "warmup_hours": 0.2, "replications": 3, "seed": 11},
    })


def test_histogram_quantiles_are_within_half_a_bin_of_the_exact_ones():
    rng = np.random.default_rng(0)
    samples = [rng.lognormal(3.0, 1.5, size=n) for n in (5_000, 7_000, 1)]
    n_total = sum(len(s) for s in samples) + 40  # 40 unserved: at +inf
    qs = (0.01, 0.5, 0.9, 0.99, 0.997, 0.999)
    exact = pooled_quantiles(samples, [], n_total, qs)
    # Folded in any split: one replication as a histogram, the others exact, or all folded.
    for hists, rest in (([LogHistogram.of(samples[0])], samples[1:]),
                        ([LogHistogram.of(s) for s in samples], [])):
        approx = pooled_quantiles(rest, hists, n_total, qs)
        for q, e, a in zip(qs, exact, approx):
            if math.isinf(e):
                assert math.isinf(a), q
            else:
                assert abs(a / e - 1.0) <= REL / 2 * 1.0001, (q, e, a)
    assert math.isinf(exact[-1])  # the 0.999-quantile is among the unserved
    assert pooled_quantiles([], [], 0, (0.5,)) == [pytest.approx(math.nan, nan_ok=True)]


def test_merge_adds_counts_bin_by_bin():
    a = LogHistogram.of(np.array([1.0, 1.0, 2.0, 5e-9]))
    b = LogHistogram.of(np.array([2.0, 3.0]))
    m = a.merge(b)
    assert m.n == 6 and list(np.diff(m.index) > 0) == [True] * (len(m.index) - 1)
    assert m.value(0) == pytest.approx(1e-6, rel=REL)  # below the floor: the lowest bin
    assert m.value(5) == pytest.approx(3.0, rel=REL)


def test_a_run_past_the_caps_folds_its_samples_and_reports_the_same(monkeypatch):
    sc = mm1()
    exact = simulate(sc)
    assert exact.requests_completed > 3 * 500
    monkeypatch.setattr(fleet, "EXACT_CAP", 500)  # each replication folds several times
    monkeypatch.setattr(estimate, "POOL_CAP", 700)
    seen = []
    original = fleet.FleetSim._fold_sojourns

    def spy(self):
        original(self)
        seen.append(self.st.sojourn_hist.n)
        assert len(self._soj) == 0

    monkeypatch.setattr(fleet.FleetSim, "_fold_sojourns", spy)
    folded = simulate(sc)
    assert seen, "no replication folded its samples"
    a, b = exact.to_dict(), folded.to_dict()
    for k in ("sojourn_p50_s", "sojourn_p90_s", "sojourn_p99_s"):
        assert b[k] == pytest.approx(a[k], rel=REL / 2 * 1.0001), k
        assert b[k] != a[k]  # read from the histogram, not the samples
    same = {k for k in a if not k.startswith("sojourn_p") and k != "wall_s"}
    assert {k: a[k] for k in same} == {k: b[k] for k in same}


def test_samples_asked_for_are_never_folded(monkeypatch):
    monkeypatch.setattr(fleet, "EXACT_CAP", 100)
    monkeypatch.setattr(estimate, "POOL_CAP", 100)
    r = simulate(mm1(0.3), keep_samples=True)
    assert all(x.sojourn_hist is None and len(x.sojourn) == x.completed for x in r.reps)
    est, lo, hi = r.exceed(10.0)
    assert lo <= est <= hi and est == pytest.approx(r.p_miss)


def test_a_replication_keeps_at_most_the_cap_and_a_histogram_bounded_by_the_spread(monkeypatch):
    # Its size is set by the sojourns' spread (ln(max/min)/REL bins), not their number.
    monkeypatch.setattr(fleet, "EXACT_CAP", 256)
    seen = []
    original = fleet.FleetSim._fold_sojourns
    monkeypatch.setattr(fleet.FleetSim, "_fold_sojourns", lambda self: (seen.append(len(self._soj)), original(self)))
    st = fleet.run_replication(mm1(4.0), np.random.SeedSequence(3))
    assert max(seen) <= 256 and len(seen) > st.completed // 256
    h = st.sojourn_hist
    assert h is not None and len(st.sojourn) == 0 and h.n == st.completed
    lo, hi = h.value(0), h.value(h.n - 1)
    assert len(h.index) <= math.log(hi / lo) / math.log1p(REL) + 2


#: Two engines, two SLA classes, four short replications: a run stored replication by replication and resumed.
RESUMED = scenario_from_dict({
    "sla_hours": 0.05,
    "workload": {"batch_rate_per_hour": 400.0, "batch_size": {"dist": "geometric", "mean": 6},
                 "input_tokens": {"dist": "lognormal", "median": 800, "sigma": 0.8, "max": 4000},
                 "output_tokens": {"dist": "lognormal", "median": 150, "sigma": 0.7, "max": 1000},
                 "sla_classes": [{"hours": 0.05, "weight": 0.7}, {"hours": 0.2, "weight": 0.3}]},
    "fleet": {"nodes": 2},
    "serving": {"max_model_len": 8192},
    "simulation": {"horizon_hours": 0.3, "warmup_hours": 0.05, "replications": 4, "seed": 5},
})


def test_a_run_resumed_from_stored_replications_reports_what_an_uninterrupted_one_does():
    import json

    from sojourn.sim._stored import replication_from_json, replication_to_json

    sc = RESUMED
    stored: dict[int, str] = {}
    whole = simulate(sc, on_replication=lambda i, st: stored.__setitem__(i, json.dumps(replication_to_json(st))))
    assert sorted(stored) == [0, 1, 2, 3]
    # Stopped after replications 0 and 2 (workers finish out of order), through JSON as a store keeps them.
    resume = {i: replication_from_json(json.loads(stored[i])) for i in (0, 2)}
    ran = []
    resumed = simulate(sc, resume=resume, on_replication=lambda i, st: ran.append(i))
    assert ran == [1, 3]
    a, b = whole.to_dict(), resumed.to_dict()
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b and a["by_sla_class"] and a["miss_episodes"] >= 0
