"""Folding a prefill step into the decode run after it ("steprun") changes nothing simulated.

``Engine.merge_steps`` lets ``plan()`` fix one prefill step and the decode run that
follows it as one event when that is exact (sojourn.sim.engine's docstring). With it
on and off, the same arrivals must give the same trajectory: the same completion
and first-token times (to rounding), and the same preemptions, cancellations,
rejections and steps. Checked on the engine alone against the step-by-step reference
of test_engine.py, and on whole fleets: every router and discipline, a small KV cache
(preemption, head-of-line blocking), a small token budget (chunked prefill), short
deadlines (cancellation at the deadline, also of running requests).
"""

from __future__ import annotations

import math
from collections import Counter, deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sojourn.scenario import SCENARIO_DISCIPLINES, scenario_from_dict
from sojourn.sim.engine import Engine, Request
from sojourn.sim.fleet import FleetSim
from test_engine import PERF, reference, workload
from test_sim_fleet import ROUTERS, engine_scenario

# -- the engine alone -------------------------------------------------------------------------


def drive(arrivals, kv_blocks, bs, max_seqs, budget, merge, events=False):
    """test_engine.drive, with merging switched on or off; also counts fire() by plan kind.

    First-token times are read off the requests, or with ``events`` off the "first_token"
    events (a "steprun" reports them with the fire() that ends it, at their own times)."""
    eng = Engine(PERF, kv_blocks, bs, max_seqs, budget)
    eng.merge_steps = merge
    eng.first_token_events = events
    pending = deque(sorted(arrivals, key=lambda a: a[0]))
    reqs: dict[int, Request] = {}
    done: dict[int, float] = {}
    first: dict[int, float] = {}
    fires: Counter[str] = Counter()
    eng.plan()
    while pending or eng.next_event_time() < math.inf:
        e = eng.next_event_time()
        if pending and pending[0][0] < e:
            t, rid, p, o = pending.popleft()
            before = eng.plan_.kind
            eng.interrupt(t)
            fires["cut" if before == "steprun" and eng.plan_.kind == "step" else "interrupt"] += 1
            r = reqs[rid] = Request(rid, p, o)
            eng.enqueue(r)
            if eng.plan_.kind == "idle":
                eng.plan()
            continue
        fires[eng.plan_.kind] += 1
        for ev in eng.fire():
            if ev.kind == "done":
                done[ev.request.rid] = ev.time
            elif ev.kind == "first_token":
                first[ev.request.rid] = ev.time
        assert 0 <= eng.used <= eng.total_blocks
        while pending and pending[0][0] <= eng.now:
            t, rid, p, o = pending.popleft()
            r = reqs[rid] = Request(rid, p, o)
            eng.enqueue(r)
        eng.plan()
    if events:
        assert first == {rid: r.first_token_time for rid, r in reqs.items()}
    out = {rid: (first[rid] if events else r.first_token_time, done.get(rid, math.nan)) for rid, r in reqs.items()}
    return out, eng, fires


ENGINE_CASES = [
    (1, 40, 5.0, 600, 300, 10_000, 16, 256, 8192),  # roomy: no preemption
    (2, 60, 20.0, 2000, 400, 400, 16, 64, 512),  # chunked prefill, HOL blocking, preemption
    (3, 80, 50.0, 300, 200, 60, 8, 16, 256),  # very tight KV: many preemptions
    (4, 50, 2.0, 5000, 50, 2000, 16, 8, 1024),  # long prompts, short outputs, seq limit
    (5, 30, 100.0, 100, 150, 200, 1, 32, 64),  # block size 1
    (6, 200, 0.5, 800, 3000, 5000, 16, 4, 2048),  # long outputs, seq limit: long merged runs
    (7, 150, 3.0, 500, 800, 300, 16, 32, 256),  # long outputs on a tight cache
]


@pytest.mark.parametrize("seed, n, rate, pmax, omax, blocks, bs, seqs, budget", ENGINE_CASES)
def test_engine_merged_matches_reference_and_unmerged(seed, n, rate, pmax, omax, blocks, bs, seqs, budget):
    arr = workload(seed, n, rate, pmax, omax)
    arr = [a for a in arr if -(-(a[2] + a[3]) // bs) <= blocks]
    ref, ref_pre = reference(arr, blocks, bs, seqs, budget)
    off, e_off, f_off = drive(arr, blocks, bs, seqs, budget, merge=False)
    on, e_on, f_on = drive(arr, blocks, bs, seqs, budget, merge=True)
    ev, _, _ = drive(arr, blocks, bs, seqs, budget, merge=True, events=True)
    assert f_off["steprun"] == 0 and f_on["steprun"] > 0  # the merge does happen
    assert e_on.preemptions == e_off.preemptions == ref_pre
    assert e_on.steps_done == e_off.steps_done
    assert e_on.busy_time == pytest.approx(e_off.busy_time, rel=1e-12)
    assert e_on.kv_block_seconds == pytest.approx(e_off.kv_block_seconds, rel=1e-12)
    for rid, (ft, end) in ref.items():
        for got in (on, off, ev):
            assert got[rid][0] == pytest.approx(ft, rel=1e-9, abs=1e-9), rid
            assert got[rid][1] == pytest.approx(end, rel=1e-9, abs=1e-9), rid
    assert not any(math.isnan(v) for pair in on.values() for v in pair)
    # Fewer events: each merged plan stands for a prefill step and a decode run.
    assert sum(f_on[k] for k in ("step", "run", "steprun")) < sum(f_off[k] for k in ("step", "run"))


def _two_requests(merge):
    """Request 0 decoding, request 1 (a long prompt) admitted: its prefill step is planned."""
    eng = Engine(PERF, 10_000, 16, 8, 4096)
    eng.enqueue(Request(0, 100, 500))
    eng.plan()
    eng.fire()  # request 0 prefilled (unmerged: the run after it is planned on its own)
    eng.merge_steps = merge
    eng.plan()
    eng.interrupt(eng.now)  # drop that run: request 1 joins at this boundary
    eng.enqueue(Request(1, 3000, 400))
    eng.plan()
    return eng


def test_merged_engine_interrupted_in_either_part():
    # The prefill step of request 1 and the run after it merge; arrivals inside the
    # prefill part cut it back, inside the decode part stop the run, as unmerged.
    def run(merge, t_arrivals):
        eng = _two_requests(merge)
        assert eng.plan_.kind == ("steprun" if merge else "step")
        done = {}

        def fire():
            for ev in eng.fire():
                if ev.kind == "done":
                    done[ev.request.rid] = ev.time
            eng.plan()

        for i, t in enumerate(t_arrivals):
            while eng.next_event_time() <= t:
                fire()
            eng.interrupt(t)
            eng.enqueue(Request(2 + i, 50, 30))
            if eng.plan_.kind == "idle":
                eng.plan()
        while eng.next_event_time() < math.inf:
            fire()
        return eng, done

    p = _two_requests(True).plan_
    start, mid, end = p.start, p.mid, p.end
    assert p.steps > 100
    for ts in ([start + 0.5 * (mid - start)], [mid], [mid + 0.3 * (end - mid)],
               [start + 0.1 * (mid - start), mid + 0.01], [end + 1.0]):
        a, done_a = run(False, ts)
        b, done_b = run(True, ts)
        assert a.steps_done == b.steps_done and a.preemptions == b.preemptions, ts
        assert sorted(done_a) == sorted(done_b) == list(range(2 + len(ts)))
        for rid, t in done_a.items():
            assert done_b[rid] == pytest.approx(t, rel=1e-12), (ts, rid)
        assert b.busy_time == pytest.approx(a.busy_time, rel=1e-12)
        assert b.kv_block_seconds == pytest.approx(a.kv_block_seconds, rel=1e-12)


# -- whole fleets ---------------------------------------------------------------------------------


class Recorder(FleetSim):
    """A FleetSim that records every request's outcome, its fires by plan kind, pokes and HOL stops."""

    def __init__(self, scenario, seed, merge: bool) -> None:
        super().__init__(scenario, seed)
        for node in self.nodes:
            node.merge_steps = merge
        self.done: dict[int, float] = {}
        self.first: dict[int, float] = {}
        self.outcome: dict[int, str] = {}
        self.counts: Counter[str] = Counter()
        for node in self.nodes:
            src = node.source

            def counted(eng, free, src=src):
                r = src(eng, free)
                if r is False:
                    self.counts["hol"] += 1
                return r

            node.source = counted

    def _complete(self, r, t: float) -> None:
        self.done[r.rid] = t
        self.first[r.rid] = r.first_token_time
        super()._complete(r, t)

    def _cancel(self, r, reason: str) -> None:
        self.outcome[r.rid] = reason
        super()._cancel(r, reason)

    def _reject(self, r, reason: str) -> None:
        self.outcome[r.rid] = reason
        super()._reject(r, reason)

    def _fire(self, i: int) -> None:
        self.counts[self.nodes[i].plan_.kind] += 1
        super()._fire(i)

    def _resched(self, node) -> None:
        self.counts["cut"] += 1
        super()._resched(node)

    def _poke(self, node, t: float) -> None:
        p = node.plan_
        if p.kind == "steprun":
            self.counts["poke_in_prefill" if t < p.mid else "poke_in_run"] += 1
        super()._poke(node, t)


def run_both(d: dict, seed: int):
    sc = scenario_from_dict(d)
    out = []
    for merge in (False, True):
        sim = Recorder(sc, np.random.SeedSequence(seed), merge)
        st_ = sim.run()
        out.append((sim, st_))
    return out


def steps(off, on) -> tuple[int, int, int]:
    """Steps simulated, unmerged and merged, and how many may differ: a run stops at a step's
    end, where merged nodes may hold a "steprun" whose prefill step would have fired on its own."""
    in_flight = sum(n.plan_.kind == "steprun" for n in on.nodes)
    return sum(n.steps_done for n in off.nodes), sum(n.steps_done for n in on.nodes), in_flight


def assert_same(off, on) -> None:
    (a, sa), (b, sb) = off, on
    assert a.counts["steprun"] == 0
    assert sorted(a.done) == sorted(b.done)
    for rid, t in a.done.items():
        assert b.done[rid] == pytest.approx(t, rel=1e-9, abs=1e-9), rid
        assert b.first[rid] == pytest.approx(a.first[rid], rel=1e-9, abs=1e-9), rid
    assert a.outcome == b.outcome
    assert a.counts["hol"] == b.counts["hol"]
    for x in ("arrived", "completed", "rejected", "cancelled", "in_system", "misses", "batches_missed",
              "preemptions", "completions_in_horizon", "requests_simulated"):
        assert getattr(sa, x) == getattr(sb, x), x
    assert sa.rejected_by == sb.rejected_by and sa.cancelled_by == sb.cancelled_by
    n_off, n_on, slack = steps(a, b)
    assert n_on <= n_off <= n_on + slack
    assert sum(n.preemptions for n in a.nodes) == sum(n.preemptions for n in b.nodes)
    assert sb.busy_fraction == pytest.approx(sa.busy_fraction, rel=1e-9)
    assert sb.kv_utilization == pytest.approx(sa.kv_utilization, rel=1e-9)
    assert np.allclose(np.sort(sb.sojourn), np.sort(sa.sojourn), rtol=1e-9, atol=1e-9)


def fleet(**up) -> dict:
    base = {
        "serving.max_num_batched_tokens": 256,  # chunked prefill (prompts up to 1500)
        "workload.sla_classes": [{"hours": 0.02, "weight": 1.0}, {"hours": 0.3, "weight": 2.0}],
    }
    base.update(up)
    return engine_scenario(kv_tokens=3000, **base)  # small KV: preemption and HOL blocking


@pytest.mark.parametrize("routing", ROUTERS)
@pytest.mark.parametrize("on_deadline", ["cancel", "finish"])
@pytest.mark.parametrize("rate", [3000.0, 6000.0])  # busy; overloaded (HOL blocking, cancellations)
def test_fleet_trajectory_unchanged_by_merging(routing, on_deadline, rate):
    d = fleet(**{"fleet.routing": routing, "fleet.nodes": 3, "serving.on_deadline": on_deadline,
                 "workload.batch_rate_per_hour": rate})
    off, on = run_both(d, 11)
    assert_same(off, on)
    sim, s = on
    # The cases do exercise what the merge must respect.
    assert sim.counts["steprun"] > 0 and s.preemptions > 0 and sim.counts["hol"] > 0
    assert sim.counts["step"] + sim.counts["run"] + sim.counts["steprun"] < off[0].counts["step"] + off[0].counts["run"]
    if rate < 5000:
        assert sim.counts["cut"] > 0 and sim.counts["poke_in_run"] > 0
    elif on_deadline == "cancel":
        assert s.cancelled_by.get("deadline", 0) > 0


@pytest.mark.parametrize("routing", ROUTERS)
def test_fleet_long_outputs_roomy_cache(routing):
    # Long outputs, a roomy cache, few sequences: most events are merged ones.
    d = engine_scenario(**{
        "fleet.routing": routing,
        "workload.output_tokens": {"dist": "lognormal", "median": 800, "sigma": 0.8, "max": 1500},
        "workload.input_tokens": {"dist": "lognormal", "median": 200, "sigma": 0.8, "max": 500},
        "serving.max_num_seqs": 8,
        "serving.max_num_batched_tokens": 2048,
        "workload.batch_rate_per_hour": 60.0,  # arrivals often enough to cut runs (poke_in_run) under any profile
    })
    off, on = run_both(d, 3)
    assert_same(off, on)
    assert on[0].counts["steprun"] > 5 * on[0].counts["step"]
    assert on[0].counts["poke_in_run"] > 0


@pytest.mark.parametrize("routing", ROUTERS)
def test_fleet_deadlines_and_arrivals_inside_merged_plans(routing):
    # Long prompts (a long prefill step), short outputs, a 1.8 s SLA in overload: deadlines
    # and arrivals fall inside both parts of merged plans (cuts, stops, drops).
    d = engine_scenario(**{
        "fleet.routing": routing,
        "sla_hours": 0.0005,
        "workload.batch_size": {"dist": "geometric", "mean": 2},
        "workload.output_tokens": {"dist": "lognormal", "median": 60, "sigma": 0.8, "max": 200},
        "workload.input_tokens": {"dist": "uniform", "low": 1000, "high": 1800},
        "serving.max_num_seqs": 8,
        "serving.max_num_batched_tokens": 2048,
        "serving.on_deadline": "cancel",
        "workload.batch_rate_per_hour": 20000.0,
        "simulation.horizon_hours": 0.2,
    })
    off, on = run_both(d, 3)
    assert_same(off, on)
    sim, s = on
    for what in ("steprun", "cut", "poke_in_prefill", "poke_in_run"):
        assert sim.counts[what] > 0, what
    assert s.cancelled_by.get("deadline", 0) > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.fixed_dictionaries({
        "discipline": st.sampled_from(SCENARIO_DISCIPLINES),
        "routing": st.sampled_from(ROUTERS),
        "on_deadline": st.sampled_from(("cancel", "finish")),
        "max_queue": st.one_of(st.none(), st.integers(0, 40)),
        "nodes": st.integers(1, 3),
        "rate": st.floats(5.0, 60.0),
        "budget": st.sampled_from((64, 256, 2048)),
        "seqs": st.sampled_from((4, 16, 32)),
        "kv": st.sampled_from((2100, 3000, 20000)),
        "seed": st.integers(0, 2**16),
    })
)
def test_fleet_random_scenarios_unchanged_by_merging(k):
    up = {
        "serving.discipline": k["discipline"],
        "serving.on_deadline": k["on_deadline"],
        "fleet.routing": k["routing"],
        "fleet.nodes": k["nodes"],
        "workload.batch_rate_per_hour": k["rate"] * 30,
        "serving.max_num_batched_tokens": max(k["budget"], k["seqs"]),
        "serving.max_num_seqs": k["seqs"],
        "workload.sla_classes": [{"hours": 0.02, "weight": 1.0}, {"hours": 0.2, "weight": 2.0}],
    }
    if k["max_queue"] is not None:
        up["serving.max_queue"] = k["max_queue"]
    d = engine_scenario(kv_tokens=k["kv"], **up)
    off, on = run_both(d, k["seed"])
    assert_same(off, on)
