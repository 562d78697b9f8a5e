"""The compiled fleet (``sim._fleet_kernel``) against ``FleetSim``, its reference, field by field.

Randomized scenarios (seeded numpy: 1-4 nodes, the three routings, the four queue disciplines the
kernel has (FIFO, LIFO, SJF, EDF), KV caches small enough to preempt, block sizes, max_num_seqs, token budgets, batch-size laws down to single arrivals, finish and
cancel at the deadline, max_queue, mixed SLA classes, rate profiles, warm-up, a stationary
start's backlog, oversize batches, a replayed trace with windows and empty requests) must
give the same ReplicationStats: every count exact, every float to 1e-9, the same
histograms; also with a tiny sojourn cap (folding) and as plain Python (numba off). The
array stream the kernel reads (``workload.batch_chunks``) must be ``batch_stream``'s batches.
What the kernel does not cover falls back to FleetSim.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from sojourn.scenario import scenario_from_dict
from sojourn.sim import _fleet_kernel
from sojourn.sim._engine_kernel import Q_HEAD, Q_TAIL
from sojourn.sim._sojourns import LogHistogram
from sojourn.sim.fleet import FleetSim, run_replication
from sojourn.sim.workload import batch_chunks, batch_stream
from test_sim_fleet import engine_scenario

#: The disciplines the kernel runs; the others stay on FleetSim.
KERNEL_DISCIPLINES = ("fifo", "lifo", "sjf", "edf")
#: Two SLA classes: a later batch of the first may be due before an earlier one of the second.
MIXED = [{"hours": 0.02, "weight": 1.0}, {"hours": 0.2, "weight": 2.0}]

needs_numba = pytest.mark.skipif(_fleet_kernel.fleet_kernel() is None, reason="numba not available or switched off")


def random_scenario(seed: int) -> dict:
    """A random small engine fleet, loaded from light to overloaded."""
    rng = np.random.default_rng(seed)
    seqs = int(rng.integers(1, 48))
    up = {
        "fleet.nodes": int(rng.integers(1, 5)),
        "serving.block_size": int(rng.choice([1, 8, 16, 32])),
        "serving.max_num_seqs": seqs,
        "serving.max_num_batched_tokens": int(rng.integers(max(seqs, 16), 2048)),
        "serving.on_deadline": str(rng.choice(["finish", "cancel"])),
        "sla_hours": float(rng.choice([0.002, 0.01, 0.05])),
        "simulation.horizon_hours": 0.1,
        "simulation.warmup_hours": float(rng.choice([0.0, 0.05])),
        "workload.batch_rate_per_hour": float(rng.uniform(100, 3000)),
        "fleet.routing": str(rng.choice(["pull", "round_robin", "least_loaded"])),
    }
    if rng.random() < 0.3:
        up["workload.batch_size"] = {"dist": "fixed", "value": 1}
        up["workload.batch_rate_per_hour"] *= 8
    elif rng.random() < 0.5:
        up["workload.batch_size"] = {"dist": "geometric", "mean": float(rng.uniform(1.5, 20))}
    if rng.random() < 0.3:
        up["serving.max_queue"] = int(rng.integers(0, 40))
    if rng.random() < 0.3:
        up["workload.sla_classes"] = MIXED
    if rng.random() < 0.2:
        up["workload.rate_profile"] = rng.uniform(0.2, 1.0, 24).tolist()
    if rng.random() < 0.5:  # long outputs: overload, deadlines, requests longer than max_model_len
        up["workload.output_tokens"] = {"dist": "lognormal", "median": float(rng.uniform(100, 600)), "sigma": 0.8,
                                        "max": 1500}
    up["serving.discipline"] = str(rng.choice(KERNEL_DISCIPLINES))
    if seed % 4 == 3:  # TensorRT-LLM's profile: max(host, GPU) steps and the GEMM fill
        up["serving.backend"] = "trtllm"
    if up["serving.discipline"] == "edf" and "workload.sla_classes" not in up and rng.random() < 0.7:
        up["workload.sla_classes"] = MIXED  # deadlines out of arrival order
    return engine_scenario(kv_tokens=int(rng.integers(2100, 12000)), **up)


def assert_same_stats(ref, got) -> None:
    """Every field of two ReplicationStats: counts exact, floats to 1e-9 relative, histograms equal."""
    for f in fields(ref):
        x, y = getattr(ref, f.name), getattr(got, f.name)
        if f.name == "wall_s":
            continue
        if isinstance(x, np.ndarray):
            assert x.shape == y.shape, f.name
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=0, err_msg=f.name)
        elif isinstance(x, float):
            assert (math.isnan(x) and math.isnan(y)) or y == pytest.approx(x, rel=1e-9, abs=0), f.name
        elif isinstance(x, tuple):
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=0, err_msg=f.name)
        elif f.name.endswith("_hist"):
            assert (x is None) == (y is None), f.name
            if x is not None:
                np.testing.assert_array_equal(y.index, x.index)
                np.testing.assert_array_equal(y.count, x.count)
        else:
            assert x == y, f.name


def both(d: dict, seed: int, cap: float | None = None, **kw):
    """(FleetSim's stats, the kernel's stats, progress calls of each) of one replication."""
    sc = scenario_from_dict(d)
    assert _fleet_kernel.supported(sc)
    sims = [FleetSim(sc, np.random.SeedSequence(seed), **kw) for _ in range(2)]
    calls: list[list[float]] = [[], []]
    for sim, c in zip(sims, calls):
        if cap is not None:
            sim.sojourn_cap = cap
        sim.on_progress = c.append
    return sims[0].run(), _fleet_kernel.run(sims[1]), calls


@needs_numba
def test_compiled_fleet_matches_fleetsim_on_random_scenarios():
    seen = {"preemptions": 0, "cancelled": 0, "queue_full": 0, "max_model_len": 0, "in_system": 0, "misses": 0,
            "round_robin": 0, "least_loaded": 0, "lifo": 0, "sjf": 0, "edf": 0, "edf, mixed SLAs": 0,
            "lifo, sjf or edf, cancelled": 0, "lifo, sjf or edf, queue_full": 0, "lifo, sjf or edf, pushed": 0}
    for seed in range(60):
        busy = (0.0, 30.0, 200.0)[seed % 3]
        oversize = (math.inf, 5.0)[seed % 2]
        d = random_scenario(seed)
        ref, got, calls = both(d, seed, start_busy_s=busy, oversize=oversize)
        assert_same_stats(ref, got)
        assert calls[0] == calls[1] and len(calls[0]) == 9
        seen["preemptions"] += ref.preemptions > 0
        seen["cancelled"] += ref.cancelled > 0
        seen["queue_full"] += "queue_full" in ref.rejected_by
        seen["max_model_len"] += "max_model_len" in ref.rejected_by
        seen["in_system"] += ref.in_system > 0
        seen["misses"] += ref.misses > 0
        seen[d["fleet"]["routing"]] = seen.get(d["fleet"]["routing"], 0) + 1
        disc = d["serving"]["discipline"]
        seen[disc] = seen.get(disc, 0) + 1
        if disc != "fifo":
            seen["edf, mixed SLAs"] += disc == "edf" and "sla_classes" in d["workload"]
            seen["lifo, sjf or edf, cancelled"] += ref.cancelled > 0
            seen["lifo, sjf or edf, queue_full"] += "queue_full" in ref.rejected_by
            seen["lifo, sjf or edf, pushed"] += d["fleet"]["routing"] != "pull" and d["fleet"]["nodes"] > 1
    assert min(seen.values()) >= 3, seen  # the scenarios exercise each rule


@needs_numba
def test_compiled_fleet_folds_exactly_when_fleetsim_does(monkeypatch):
    monkeypatch.setattr(_fleet_kernel, "_INITIAL", 1)  # buffers that grow up to the cap
    d = random_scenario(3)
    served = both(d, 3)[0].completed
    for cap in (served - 1, served, served + 1):  # FleetSim folds once it holds cap samples
        ref, got, _ = both(d, 3, cap=cap)
        assert (ref.sojourn_hist is None) == (cap > served)
        assert_same_stats(ref, got)


@needs_numba
def test_compiled_fleet_grows_its_arrays_mid_run_with_the_same_results(monkeypatch):
    monkeypatch.setattr(_fleet_kernel, "_INITIAL", 8)  # every table, ring, heap and buffer grows, repeatedly
    dropped: list[int] = []
    real = _fleet_kernel._Run.queues

    def queues(run, size):  # counts the stale entries a stack's or a heap's new layout drops
        held = run.S[8][:, Q_TAIL] - run.S[8][:, Q_HEAD]
        real(run, size)
        dropped.append(int((held - (run.S[8][:, Q_TAIL] - run.S[8][:, Q_HEAD])).sum()))

    monkeypatch.setattr(_fleet_kernel._Run, "queues", queues)
    for seed, disc in ((0, None), (7, None), (18, None), (27, None), (37, "lifo"), (27, "sjf"), (27, "edf")):
        d = random_scenario(seed)
        if disc is not None:
            d["serving"]["discipline"] = disc
            d["workload"]["sla_classes"] = MIXED
        dropped.clear()
        ref, got, _ = both(d, seed)
        assert_same_stats(ref, got)
        assert disc is None or sum(dropped) > 0, disc


@needs_numba
def test_compiled_fleet_folds_sojourns_as_fleetsim_does():
    folded = 0
    for seed in range(8):
        ref, got, _ = both(random_scenario(seed), seed, cap=7)
        assert_same_stats(ref, got)
        folded += ref.sojourn_hist is not None
    assert folded >= 4


def _trace(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0.0, 600.0, 300))
    t[10] = t[11]  # two requests at the same instant
    p = rng.integers(1, 1500, 300)
    p[::37] = 0  # a few empty prompts: rejected as "empty"
    o = rng.integers(1, 400, 300)
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for ti, pi, oi in zip(t, p, o):
        lines.append(f"{np.datetime64('2024-01-01T00:00:00') + np.timedelta64(int(ti * 1e6), 'us')},{pi},{oi}")
    path = tmp_path / "trace.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _trace_scenario(path: Path, window: float, **up) -> dict:
    d = engine_scenario(kv_tokens=6000, **up)
    d["workload"] = {"trace": str(path), "format": "azure", "rate_scale": 3.0, "batch_window_s": window}
    return d


@needs_numba
@pytest.mark.parametrize("window", [0.0, 7.0])
def test_compiled_fleet_matches_fleetsim_on_a_trace(tmp_path, window):
    path = _trace(tmp_path)
    for seed, deadline in ((1, "cancel"), (2, "finish")):
        d = _trace_scenario(path, window, **{"serving.on_deadline": deadline, "sla_hours": 0.01})
        ref, got, _ = both(d, seed)
        assert_same_stats(ref, got)
        assert ref.rejected_by.get("empty", 0) > 0


def _batches(it, n: int) -> list:
    return [next(it) for _ in range(n)]


def _chunk_batches(it, n: int) -> list:
    out: list = []
    for t, sizes, p, o, sla in it:
        a = 0
        for ti, k, s in zip(t.tolist(), sizes.tolist(), sla.tolist()):
            out.append((ti, p[a:a + k].tolist(), o[a:a + k].tolist(), s))
            a += k
        if len(out) >= n:
            return out[:n]
    raise AssertionError("the stream ended")  # pragma: no cover


@pytest.mark.parametrize("updates", [
    {},
    {"workload.rate_profile": [0.1 + 0.9 * (h % 5) / 4 for h in range(24)]},
    {"workload.sla_classes": [{"hours": 0.02, "weight": 1.0}, {"hours": 0.2, "weight": 2.0}],
     "workload.batch_size": {"dist": "fixed", "value": 1}},
])
def test_batch_chunks_are_batch_streams_batches(updates):
    sc = scenario_from_dict(engine_scenario(**{"workload.batch_rate_per_hour": 5000.0, **updates}))
    ref = _batches(batch_stream(sc, np.random.SeedSequence(4)), 1500)
    assert _chunk_batches(batch_chunks(sc, np.random.SeedSequence(4)), 1500) == ref


@pytest.mark.parametrize("window", [0.0, 7.0, 400.0])
def test_batch_chunks_replay_a_trace_as_batch_stream_does(tmp_path, window):
    d = _trace_scenario(_trace(tmp_path), window)
    d["workload"]["sla_classes"] = [{"hours": 0.02, "weight": 1.0}, {"hours": 0.2, "weight": 2.0}]
    sc = scenario_from_dict(d)
    n = 700 if window < 100 else 40  # several cycles of the trace
    ref = _batches(batch_stream(sc, np.random.SeedSequence(6)), n)
    assert _chunk_batches(batch_chunks(sc, np.random.SeedSequence(6)), n) == ref


_PURE = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_fleet_kernel import random_scenario
from sojourn.scenario import scenario_from_dict
from sojourn.sim import _fleet_kernel
from sojourn.sim._sojourns import LogHistogram
from sojourn.sim.fleet import FleetSim
assert _fleet_kernel.fleet_kernel() is None
sim = FleetSim(scenario_from_dict(random_scenario({seed})), np.random.SeedSequence({seed}), 30.0)
st = _fleet_kernel.run(sim, _fleet_kernel._kernel)
print(json.dumps([st.sojourn.tolist(), st.preemptions, st.arrived, st.misses, st.cancelled, st.busy_fraction]))
"""


def test_the_fleet_kernel_as_plain_python_matches_fleetsim():
    seed = 7  # small, with preemptions
    env = dict(os.environ, SOJOURN_NO_NUMBA="1")
    code = _PURE.format(tests=str(Path(__file__).parent), seed=seed)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    soj, pre, arrived, misses, cancelled, busy = json.loads(out.stdout)
    ref = FleetSim(scenario_from_dict(random_scenario(seed)), np.random.SeedSequence(seed), 30.0).run()
    np.testing.assert_allclose(soj, ref.sojourn, rtol=1e-9, atol=0)
    assert (pre, arrived, misses, cancelled) == (ref.preemptions, ref.arrived, ref.misses, ref.cancelled)
    assert ref.preemptions > 0
    assert busy == pytest.approx(ref.busy_fraction, rel=1e-9)


@needs_numba
def test_each_discipline_orders_the_queue_its_own_way_in_the_kernel_as_in_fleetsim():
    """One overloaded fleet with an admission cap, cancelling at the deadline, two SLA classes: each
    discipline gives other sojourns (so agreeing with FleetSim says something about the order), and the
    kernel gives FleetSim's, under a central queue and under a queue per node."""
    outcomes, cancelled = [], 0
    for disc in KERNEL_DISCIPLINES:
        for routing in ("pull", "least_loaded"):
            d = engine_scenario(kv_tokens=4000, **{
                "fleet.nodes": 2, "fleet.routing": routing, "serving.discipline": disc,
                "serving.on_deadline": "cancel", "serving.max_queue": 150, "workload.sla_classes": MIXED,
                "workload.batch_size": {"dist": "geometric", "mean": 6.0}, "workload.batch_rate_per_hour": 6000.0,
                "simulation.horizon_hours": 0.1, "simulation.warmup_hours": 0.0})
            ref, got, _ = both(d, 11)
            assert_same_stats(ref, got)
            assert ref.rejected_by.get("queue_full", 0) > 0
            cancelled += ref.cancelled
            if routing == "pull":
                outcomes.append((ref.completed, ref.misses, tuple(ref.sojourn.tolist())))
    assert len(set(outcomes)) == len(KERNEL_DISCIPLINES)
    assert cancelled > 0


@pytest.mark.parametrize("disc", ["fifo", "lifo", "sjf", "edf", "sjf_work", "fair", "triage"])
def test_the_kernel_covers_the_disciplines_it_has(disc):
    sc = scenario_from_dict(engine_scenario(**{"serving.discipline": disc}))
    assert _fleet_kernel.supported(sc) == (disc in KERNEL_DISCIPLINES)


@pytest.mark.parametrize("updates", [
    {"serving.discipline": "sjf_work"},
    {"serving.discipline": "fair"},
    {"serving.discipline": "triage"},
    {"workload.prefix": {"groups": 4, "tokens": {"dist": "fixed", "value": 128}}},
    {"serving.forecast_sigma": 0.5},
    {"fleet.server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 4.0}, "concurrency": 2}},
])
def test_what_the_kernel_does_not_cover_runs_in_fleetsim(updates):
    sc = scenario_from_dict(engine_scenario(**updates))
    assert not _fleet_kernel.supported(sc)
    got = run_replication(sc, np.random.SeedSequence(3))
    assert_same_stats(FleetSim(sc, np.random.SeedSequence(3)).run(), got)


@needs_numba
def test_run_replication_uses_the_kernel_with_the_same_results(monkeypatch):
    sc = scenario_from_dict(random_scenario(4))
    used: list[bool] = []
    real = _fleet_kernel.run
    monkeypatch.setattr(_fleet_kernel, "run", lambda sim: used.append(True) or real(sim))
    got = run_replication(sc, np.random.SeedSequence(4), keep_samples=True)
    assert used == [True]
    assert_same_stats(FleetSim(sc, np.random.SeedSequence(4)).run(), got)


def test_the_kernels_histogram_is_log_histogram_of():
    rng = np.random.default_rng(2)
    for x in (rng.lognormal(3.0, 2.0, 5000), np.array([0.0, 1e-9, 1e-6, 2.5, 2.5, 1e7]), np.empty(0)):
        got, ref = _fleet_kernel._log_histogram(x), LogHistogram.of(x)
        np.testing.assert_array_equal(got.index, ref.index)
        np.testing.assert_array_equal(got.count, ref.count)
