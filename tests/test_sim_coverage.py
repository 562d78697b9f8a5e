"""Gaps an audit found in the simulator's tests, each closed by a test that can fail.

- ``fair`` round-robin over batches, exactly, at fleet level (fixed service times);
- ``least_loaded`` routing picks the least loaded node (queued prompt blocks and KV in
  use on engines, busy slots and queued requests on generic servers);
- warm-up exclusion and no censoring, with exact counts;
- the ``empty`` rejection path (zero-length prompt or output) really taken;
- every discipline x every router x both deadline policies, deterministically, with the
  invariants checked at every event;
- the ``sojourn_note`` caution when many measured requests did not complete.

Deterministic scenarios replace the workload stream (``FleetSim._stream``) with a fixed
list of batches ``(time_s, prompts, outputs, sla_s)`` followed by arrivals far in the
future, so every count and sojourn below is known exactly.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sojourn.disciplines import DISCIPLINES
from sojourn.request import SOJOURN_NOTE_SHARE, simulate, summarise
from sojourn.scenario import scenario_from_dict
from sojourn.sim.fleet import CANCELLED, DONE, NODE, QUEUED, REJECTED, FleetSim, ReplicationStats
from sojourn.sim.workload import batch_stream
from test_sim_fleet import CheckedFleet, _update, engine_scenario

ROUTERS = ("pull", "round_robin", "least_loaded")
FAR = 1e7  # arrivals after every measured request has settled


# -- helpers ----------------------------------------------------------------------------


def generic(service: float = 1.0, nodes: int = 1, concurrency: int = 1, **updates) -> dict:
    """Generic servers with a fixed service time; warm-up 360 s, measured span [360, 720) s, SLA 180 s."""
    d = {
        "sla_hours": 0.05,
        "workload": {"batch_rate_per_hour": 60.0, "input_tokens": {"dist": "fixed", "value": 1},
                     "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": nodes, "server": {"kind": "generic", "service_time": {"dist": "fixed", "value": service},
                                             "concurrency": concurrency}},
        "simulation": {"horizon_hours": 0.1, "warmup_hours": 0.1, "replications": 2},
    }
    _update(d, updates)
    return d


def engine(kv_tokens: int | None = None, **updates) -> dict:
    """test_sim_fleet's small Llama-8B/H100 engine scenario, with a 180 s SLA and a 0.1 h span
    after 0.02 h of warm-up; ``kv_tokens`` shrinks the KV cache to about that size."""
    base = {"sla_hours": 0.05, "simulation.horizon_hours": 0.1, "simulation.warmup_hours": 0.02}
    return engine_scenario(kv_tokens, **{**base, **updates})


class Recording(FleetSim):
    """FleetSim that records every completion: (batch arrival, completion time, node)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.done: list[tuple[float, float, int]] = []

    def _complete(self, ev) -> None:
        r = ev.request
        if r.state == NODE:
            self.done.append((r.batch.arrival, ev.time, r.node))
        super()._complete(ev)


def fixed_run(d: dict, batches: list[tuple], cls=Recording, services: list[float] | None = None):
    """Run ``d`` on exactly ``batches`` (then nothing until FAR); ``services`` overrides generic service times."""
    sim = cls(scenario_from_dict(d), np.random.SeedSequence(0))
    tail = ((FAR + k, [1], [1], 180.0) for k in itertools.count())
    sim._stream = itertools.chain(batches, tail)
    if services is not None:
        sim._svc_buf, sim._svc_i = list(services) + [1.0] * 100, 0
    return sim, sim.run()


def by_batch(sim: Recording) -> dict[float, list[float]]:
    """Sojourns per batch (keyed by its arrival time), in completion order."""
    out: dict[float, list[float]] = {}
    for arrival, t, _ in sorted(sim.done, key=lambda x: x[1]):
        out.setdefault(arrival, []).append(t - arrival)
    return out


# -- 1. fair: round-robin over the queued batches -----------------------------------------


def test_fair_interleaves_batches_exactly_where_fifo_serves_them_in_turn():
    # One slot, 1 s per request. A batch of 20 at t0, a batch of 2 half a second later.
    # FIFO: the small batch waits for all 20 (done at t0 + 21, t0 + 22). Fair: one request
    # of each queued batch in turn, so after A1 (in service when B arrives) comes A2, B1,
    # A3, B2: B is done at t0 + 3 and t0 + 5, and A's last request at t0 + 22 either way.
    t0 = 400.0
    batches = [(t0, [1] * 20, [1] * 20, 180.0), (t0 + 0.5, [1] * 2, [1] * 2, 180.0)]
    soj = {}
    for disc in ("fifo", "fair"):
        sim, s = fixed_run(generic(**{"serving.discipline": disc}), batches)
        assert s.arrived == s.completed == 22
        soj[disc] = by_batch(sim)
    a_fifo, b_fifo = soj["fifo"][t0], soj["fifo"][t0 + 0.5]
    a_fair, b_fair = soj["fair"][t0], soj["fair"][t0 + 0.5]
    assert a_fifo == pytest.approx([float(k) for k in range(1, 21)])
    assert b_fifo == pytest.approx([20.5, 21.5])
    assert b_fair == pytest.approx([2.5, 4.5])
    assert a_fair == pytest.approx([1.0, 2.0, 4.0] + [float(k) for k in range(6, 23)])
    # The batch-completion property: under fair the small batch is done long before the large one.
    assert max(b_fair) + 0.5 < max(a_fair) / 4
    assert max(b_fifo) + 0.5 > max(a_fifo)


def test_fair_rotates_over_three_batches_in_arrival_order():
    # Three batches queued behind a long request: fair takes A, B, C, A, B, C, ... while FIFO
    # drains A first. Completion order of the 9 queued requests (batch letters) tells them apart.
    t0 = 400.0
    batches = [(t0, [1], [1], 180.0),  # occupies the slot for 10 s
               (t0 + 1, [1] * 3, [1] * 3, 180.0), (t0 + 2, [1] * 3, [1] * 3, 180.0), (t0 + 3, [1] * 3, [1] * 3, 180.0)]
    services = [10.0] + [1.0] * 9
    name = {t0 + 1: "A", t0 + 2: "B", t0 + 3: "C"}
    order = {}
    for disc in ("fifo", "fair"):
        sim, s = fixed_run(generic(**{"serving.discipline": disc}), batches, services=services)
        assert s.completed == 10
        done = sorted(sim.done, key=lambda x: x[1])[1:]
        order[disc] = "".join(name[a] for a, _, _ in done)
        assert [t for _, t, _ in done] == pytest.approx([t0 + 10 + k for k in range(1, 10)])
    assert order["fifo"] == "AAABBBCCC"
    assert order["fair"] == "ABCABCABC"


# -- 2. least_loaded routing ----------------------------------------------------------------


def test_least_loaded_on_generic_servers_avoids_the_busy_node_that_round_robin_picks():
    # Two single-slot nodes; service times 100, 1, 1, 1 s; single requests at t0, +10, +20, +30.
    # round_robin sends the third request to node 0, still busy with the first (it waits
    # until t0 + 100); least_loaded sends it to the idle node 1. Node of each and sojourns exact.
    t0 = 400.0
    batches = [(t0 + 10 * k, [1], [1], 180.0) for k in range(4)]
    services = [100.0, 1.0, 1.0, 1.0]
    got = {}
    for routing in ("round_robin", "least_loaded"):
        sim, s = fixed_run(generic(nodes=2, **{"fleet.routing": routing}), batches, services=services)
        assert s.completed == 4
        got[routing] = {a - t0: (round(t - a, 9), node) for a, t, node in sim.done}
    assert got["round_robin"] == {0: (100.0, 0), 10: (1.0, 1), 20: (81.0, 0), 30: (1.0, 1)}
    assert got["least_loaded"] == {0: (100.0, 0), 10: (1.0, 1), 20: (1.0, 1), 30: (1.0, 1)}


def _fresh(d: dict) -> FleetSim:
    return FleetSim(scenario_from_dict(d), np.random.SeedSequence(0))


def test_least_loaded_route_counts_busy_slots_plus_queued_on_generic_servers():
    sim = _fresh(generic(nodes=3, concurrency=4, **{"fleet.routing": "least_loaded"}))
    r = object()
    for busy, qload, want in [
        ([0, 0, 0], [0, 0, 0], 0),  # ties go to the lowest index
        ([3, 1, 2], [0, 0, 0], 1),
        ([3, 1, 2], [0, 2, 0], 2),  # node 1: 1 busy + 2 queued = 3 > node 2's 2
        ([0, 4, 4], [5, 0, 0], 1),  # queued requests count like busy slots
    ]:
        for node, b in zip(sim.nodes, busy):
            node.busy = b
        sim.qload[:] = qload
        assert sim._route(r) == want, (busy, qload)


def test_least_loaded_on_engines_weighs_queued_prompt_blocks():
    # Three idle engines (block size 16). One batch: a 1600-token prompt (100 blocks), then six
    # 16-token prompts (1 block each). Within the batch only the queued blocks differ: the
    # big prompt takes node 0, and the small ones alternate over nodes 1 and 2 (node 0 stays
    # at 100). round_robin cycles 0, 1, 2 regardless.
    prompts = [1600] + [16] * 6
    queue_of = {}
    for routing in ("round_robin", "least_loaded"):
        sim = _fresh(engine(**{"fleet.routing": routing, "fleet.nodes": 3, "serving.block_size": 16}))
        sim.now = 1.0
        sim._arrive(1.0, prompts, [10] * len(prompts), 180.0)
        (batch,) = sim._open[180.0]
        queue_of[routing] = [r.queue for r in batch.requests]
    assert queue_of["round_robin"] == [0, 1, 2, 0, 1, 2, 0]
    assert queue_of["least_loaded"] == [0, 1, 2, 1, 2, 1, 2]


def test_least_loaded_on_engines_counts_kv_blocks_in_use():
    # Node 0 has started a 1600-token prompt (its blocks are in use, nothing is queued for it);
    # least_loaded must still see it as loaded and send new work to nodes 1 and 2.
    sim = _fresh(engine(**{"fleet.routing": "least_loaded", "fleet.nodes": 3, "serving.block_size": 16}))
    sim.now = 1.0
    sim._arrive(1.0, [1600], [400], 180.0)
    assert sim.qload == [0, 0, 0]  # node 0 took it at once
    assert sim.nodes[0].used >= 100 and sim.nodes[1].used == sim.nodes[2].used == 0
    sim._arrive(1.0, [16, 16, 16, 16], [10] * 4, 180.0)
    second = sim._open[180.0][-1]
    assert [r.queue for r in second.requests] == [1, 2, 1, 2]


class RoutingChecked(FleetSim):
    """Checks every batch's least_loaded choices against the rule applied request by request:
    the node of least load (KV blocks in use plus queued prompt blocks; busy slots plus queued
    requests, generic), the lowest index on ties, its load raised by each request it gets."""

    batches_checked = 0

    def _arrive(self, t, prompts, outputs, sla):
        loads = self._loads()
        super()._arrive(t, prompts, outputs, sla)
        dq = self._open.get(sla)
        if not dq or dq[-1].arrival != t:
            return  # the batch is already settled (nothing of it was queued)
        for r in dq[-1].requests:
            if r.state == REJECTED:
                continue  # refused before routing
            want = loads.index(min(loads))
            assert r.queue == want, (loads, r.queue)
            loads[want] += 1 if self.generic else -(-r.prompt // self.bs)
        RoutingChecked.batches_checked += 1


@pytest.mark.parametrize("kind", ["engine", "generic"])
def test_least_loaded_routes_a_whole_batch_as_the_rule_does_request_by_request(kind):
    # _arrive routes a batch with one heap of node loads; a busy fleet of 5 nodes, random batches.
    if kind == "engine":
        d = engine(**{"fleet.routing": "least_loaded", "fleet.nodes": 5, "workload.batch_rate_per_hour": 3000.0,
                      "simulation.horizon_hours": 0.05, "simulation.warmup_hours": 0.0})
    else:
        d = generic(service=1.0, **{"fleet.routing": "least_loaded", "fleet.nodes": 5,
                                    "workload.batch_rate_per_hour": 1500.0,
                                    "workload.batch_size": {"dist": "geometric", "mean": 6},
                                    "simulation.horizon_hours": 0.05, "simulation.warmup_hours": 0.0})
    RoutingChecked.batches_checked = 0
    RoutingChecked(scenario_from_dict(d), np.random.SeedSequence(3)).run()
    assert RoutingChecked.batches_checked > 50


# -- 3. warm-up exclusion and no censoring ---------------------------------------------------


@pytest.mark.parametrize("on_deadline", ["cancel", "finish"])
def test_warmup_arrivals_are_not_counted_and_measured_ones_are_followed_past_the_horizon(on_deadline):
    # One slot, 10 s per request, FIFO. Warm-up [0, 360), measured span [360, 720).
    # Batches (time: size): 100: 3, 345: 3, 359.5: 1 (warm-up); 400: 3, 701: 3, 715: 3, 719.5: 1
    # (measured); 720: 1 and 722: 2 (after the horizon). Service is FIFO back to back.
    d = generic(service=10.0, **{"serving.on_deadline": on_deadline})
    batches = [(100.0, [1] * 3, [1] * 3, 180.0), (345.0, [1] * 3, [1] * 3, 180.0), (359.5, [1], [1], 180.0),
               (400.0, [1] * 3, [1] * 3, 180.0), (701.0, [1] * 3, [1] * 3, 180.0), (715.0, [1] * 3, [1] * 3, 180.0),
               (719.5, [1], [1], 180.0), (720.0, [1], [1], 180.0), (722.0, [1] * 2, [1] * 2, 180.0)]
    sim, s = fixed_run(d, batches)
    assert (sim.W, sim.WH) == (360.0, 720.0)
    assert s.arrived == 3 + 3 + 3 + 1 == 10 and s.batches == 4
    assert s.completed == 10
    assert s.rejected == s.cancelled == s.in_system == s.misses == 0
    # Ends (FIFO, one slot): 400 -> 410, 420, 430; 701 -> 711, 721, 731; 715 -> 741, 751, 761;
    # 719.5 -> 771. Six measured requests finish after the horizon's end at 720, and are counted.
    assert sorted(s.sojourn.tolist()) == pytest.approx(sorted([10, 20, 30, 10, 20, 30, 26, 36, 46, 51.5]))
    assert s.wait_sum == pytest.approx(0 + 10 + 20 + 0 + 10 + 20 + 16 + 26 + 36 + 41.5)
    # The 7 warm-up requests ran too (the 359.5 one finished at 385), uncounted.
    assert len(sim.done) == 7 + 10
    assert sorted({a for a, _, _ in sim.done}) == [100.0, 345.0, 359.5, 400.0, 701.0, 715.0, 719.5]
    # The run followed the last measured request to 771 and stopped (the 720 and 722 arrivals
    # wait behind it and need not finish).
    assert s.sim_end_s == pytest.approx(771.0)
    # Throughput counts every completion inside [360, 720): 365, 375, 385 (warm-up requests),
    # 410, 420, 430, 711.
    assert s.completions_in_horizon == 7
    # The slot was busy all of [360, 720) but for the idle gaps 385-400 and 430-701.
    assert s.busy_fraction == pytest.approx((360 - 15 - 271) / 360)


def test_warmup_exclusion_through_simulate_counts_only_measured_arrivals():
    # With the synthetic stream, replication i measures exactly the batches its own workload
    # stream (seed: SeedSequence(seed).spawn(R)[i], first child) puts in [W, W + H) = [360, 720).
    d = generic(service=0.5, **{"workload.batch_rate_per_hour": 360.0, "workload.batch_size":
                                {"dist": "geometric", "mean": 3}, "simulation.replications": 3})
    sc = scenario_from_dict(d)
    res = simulate(sc, keep_samples=True)
    for seed, rep in zip(np.random.SeedSequence(sc.simulation.seed).spawn(3), res.reps):
        wl_seed, _ = seed.spawn(2)
        want_req = want_batches = 0
        for t, prompts, _, _ in batch_stream(sc, wl_seed):
            if t >= 720.0:
                break
            if t >= 360.0:
                want_req += len(prompts)
                want_batches += 1
        assert (rep.arrived, rep.batches) == (want_req, want_batches)
        assert rep.completed == rep.arrived and len(rep.sojourn) == rep.arrived


# -- 4. the "empty" rejection -----------------------------------------------------------------


class CountingEmpty(FleetSim):
    """Counts the measured requests with a zero-length prompt or output as they arrive."""

    zero = 0

    def _arrive(self, t, prompts, outputs, sla) -> None:
        if self.W <= t < self.WH:
            self.zero += sum(p < 1 or o < 1 for p, o in zip(prompts, outputs))
        super()._arrive(t, prompts, outputs, sla)


def _trace_file(tmp_path: Path, fmt: str, rows: list[tuple[float, int, int]]) -> Path:
    if fmt == "azure":
        p = tmp_path / "trace.csv"
        lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
        for t, i, o in rows:
            lines.append(f"2024-01-01 00:{int(t) // 60:02d}:{t % 60:09.6f},{i},{o}")
        p.write_text("\n".join(lines) + "\n")
    else:
        p = tmp_path / "trace.jsonl"
        p.write_text("".join(json.dumps({"timestamp": t * 1000.0, "input_length": i, "output_length": o}) + "\n"
                             for t, i, o in rows))
    return p


@pytest.mark.parametrize("fmt", ["azure", "mooncake"])
def test_trace_rows_of_zero_length_are_rejected_as_empty(tmp_path, fmt):
    # A trace of 4 requests a second apart (cycle 4 s), two of them empty (no prompt; no output).
    rows = [(0.0, 200, 20), (1.0, 0, 20), (2.0, 150, 0), (3.0, 300, 30)]
    path = _trace_file(tmp_path, fmt, rows)
    d = engine(**{"workload": {"trace": str(path), "format": fmt, "batch_window_s": 0.0}})
    sim = CountingEmpty(scenario_from_dict(d), np.random.SeedSequence(3))
    s = sim.run()
    # Measured span 360 s at one request a second: about 180 empty ones.
    assert 170 <= sim.zero <= 190
    assert s.rejected_by == {"empty": sim.zero}
    assert s.rejected == sim.zero
    assert s.completed == s.arrived - sim.zero  # the rest is light load and completes
    assert s.arrived == s.completed + s.rejected + s.cancelled + s.in_system


def test_an_empirical_length_of_zero_is_rejected_as_empty():
    # Output lengths drawn from {0, 40}: about half the requests have no output at all.
    d = engine(**{"workload.output_tokens": {"dist": "empirical", "values": [0, 40]},
                  "workload.batch_rate_per_hour": 200.0})
    sim = CountingEmpty(scenario_from_dict(d), np.random.SeedSequence(1))
    s = sim.run()
    assert sim.zero > 50 and abs(sim.zero - s.arrived / 2) < 4 * math.sqrt(s.arrived / 4)
    assert s.rejected_by.get("empty") == sim.zero
    assert s.rejected == sim.zero  # nothing else is rejected here
    assert s.arrived == s.completed + s.rejected + s.cancelled + s.in_system


def test_generic_servers_do_not_reject_on_token_counts():
    # A generic server ignores token counts (its service time is its own): no "empty" there.
    sim, s = fixed_run(generic(), [(400.0, [0, 1], [1, 0], 180.0)])
    assert s.completed == 2 and s.rejected == 0


# -- 5. every discipline x router x deadline policy -------------------------------------------


class Checked(CheckedFleet):
    """test_sim_fleet's invariants after every event, and: time never runs backwards, the
    blocks a merged prefill step plans to leave fit, the peak of KV in use."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.last_t = 0.0
        self.kv_peak = 0

    def _check(self) -> None:
        super()._check()
        assert self.now >= self.last_t >= 0.0
        self.last_t = self.now
        for node in self.nodes:
            p = node.plan_
            if p.kind == "steprun":
                assert 0 <= p.used1 <= node.total_blocks
            self.kv_peak = max(self.kv_peak, node.used)
        # Measured requests not yet settled are exactly those of measured batches still pending.
        assert self.measured_open >= 0


@pytest.mark.parametrize("on_deadline", ["cancel", "finish"])
@pytest.mark.parametrize("routing", ROUTERS)
@pytest.mark.parametrize("discipline", sorted(DISCIPLINES))
def test_every_discipline_router_and_deadline_policy_conserves_requests(discipline, routing, on_deadline):
    d = engine(kv_tokens=3000, **{
        "serving.discipline": discipline, "fleet.routing": routing, "serving.on_deadline": on_deadline,
        "workload.batch_rate_per_hour": 8000.0,  # about 1.5x capacity: queues, deadlines, preemption
    })
    sim = Checked(scenario_from_dict(d), np.random.SeedSequence(7))
    s = sim.run()
    assert s.arrived > 100
    assert s.arrived == s.completed + s.rejected + s.cancelled + s.in_system
    assert s.completed == len(s.sojourn) > 0
    assert np.all(s.sojourn >= 0.0) and s.wait_sum >= 0.0 and s.sojourn_sum >= s.wait_sum
    assert sum(s.rejected_by.values()) == s.rejected
    assert sum(s.cancelled_by.values()) == s.cancelled
    assert s.misses <= s.arrived and 0 <= s.batches_missed <= s.batches
    assert s.preemptions > 0  # the small KV cache does force preemption
    assert sim.kv_peak <= sim.nodes[0].total_blocks
    assert 0.0 <= s.kv_utilization <= 1.0 and 0.0 <= s.busy_fraction <= 1.0 + 1e-9
    if on_deadline == "cancel":
        assert s.in_system == 0 and np.all(s.sojourn <= 180.0 + 1e-9)
        assert s.cancelled > 0  # overload: deadlines do cancel work
    else:
        assert s.cancelled == s.cancelled_by.get("triage", 0) == 0  # nothing is dropped when late work finishes
        # Late work is finished, or still in system when the run stops (lifo starves its oldest).
        assert np.any(s.sojourn > 180.0) or s.in_system > 0
        assert s.misses == np.count_nonzero(s.sojourn > 180.0) + s.in_system + s.rejected
    # Every request of every batch still known is in exactly one state, pending ones counted.
    for dq in sim._open.values():
        for b in dq:
            states = [r.state for r in b.requests]
            assert b.pending == sum(x in (QUEUED, NODE) for x in states)
            assert all(x in (QUEUED, NODE, DONE, REJECTED, CANCELLED) for x in states)


# -- 6. the sojourn caution ---------------------------------------------------------------------


def _rep(arrived: int, completed: int, in_system: int = 0, cancelled: int = 0, rejected: int = 0) -> ReplicationStats:
    return ReplicationStats(
        arrived=arrived, completed=completed, in_system=in_system, cancelled=cancelled, rejected=rejected,
        misses=arrived - completed, batches=arrived, batches_missed=arrived - completed,
        batch_size_sum=float(arrived), batch_size_sq=float(arrived), sojourn=np.full(completed, 5.0),
        sojourn_sum=5.0 * completed, wait_sum=1.0 * completed, completions_in_horizon=completed, horizon_s=3600.0,
        busy_fraction=0.5, kv_utilization=math.nan,
    )


def test_sojourn_note_threshold_on_pooled_counts():
    sc = scenario_from_dict(generic())
    n = 10_000
    below = int(n * SOJOURN_NOTE_SHARE) - 1  # unfinished requests per replication
    at = int(n * SOJOURN_NOTE_SHARE)
    quiet = summarise(sc, [_rep(n, n - below, in_system=below)] * 2, 1, 0.0, False)
    assert quiet.sojourn_note == "" and quiet.sojourn_unfinished_share == pytest.approx(below / n)
    loud = summarise(sc, [_rep(n, n - at, in_system=at), _rep(n, n - at, in_system=at)], 1, 0.0, False)
    assert loud.sojourn_unfinished_share == pytest.approx(at / n)
    assert "completed requests only" in loud.sojourn_note and f"{2 * at} still in system" in loud.sojourn_note
    # Cancelled and rejected requests are not in the mean either: they count toward the share.
    mixed = summarise(sc, [_rep(n, n - 3 * at, in_system=at, cancelled=at, rejected=at)] * 2, 1, 0.0, False)
    assert mixed.sojourn_unfinished_share == pytest.approx(3 * at / n)
    assert f"{2 * at} cancelled" in mixed.sojourn_note and f"{2 * at} rejected" in mixed.sojourn_note
    d = loud.to_dict()
    assert d["sojourn_note"] == loud.sojourn_note
    assert d["sojourn_unfinished_share"] == pytest.approx(at / n)
    all_done = summarise(sc, [_rep(n, n)] * 2, 1, 0.0, False)
    assert all_done.sojourn_note == "" and all_done.sojourn_unfinished_share == 0.0


def _overloaded_finish(rate_per_hour: float) -> dict:
    # One single-slot server, 4 s per request, SLA 180 s, late work finished: the run stops
    # 360 s after the horizon, so under overload many measured requests are still in system.
    return generic(service=4.0, **{"serving.on_deadline": "finish", "workload.batch_rate_per_hour": rate_per_hour,
                                   "simulation.horizon_hours": 0.2})


def test_sojourn_note_flags_many_unfinished_requests_under_finish():
    res = simulate(scenario_from_dict(_overloaded_finish(1800.0)))  # rho = 2
    assert res.requests_in_system > 0.2 * res.requests_arrived
    assert res.sojourn_unfinished_share == pytest.approx(
        1 - res.requests_completed / res.requests_arrived)
    assert res.sojourn_note and f"{res.requests_in_system} still in system" in res.sojourn_note
    # What the note warns about: the mean over completed requests sits below the median of all.
    assert res.sojourn_p50_s is not None and res.sojourn_mean_s < res.sojourn_p50_s
    light = simulate(scenario_from_dict(_overloaded_finish(90.0)))  # rho = 0.1
    assert light.requests_completed == light.requests_arrived
    assert light.sojourn_note == "" and light.sojourn_unfinished_share == 0.0


def test_cli_shows_the_sojourn_caution_and_keeps_every_json_key(tmp_path, capsys):
    from sojourn.cli import main

    p = tmp_path / "over.toml"
    p.write_text(
        'sla_hours = 0.05\n'
        '[workload]\nbatch_rate_per_hour = 1800\n'
        'input_tokens = { dist = "fixed", value = 1 }\noutput_tokens = { dist = "fixed", value = 1 }\n'
        '[fleet]\nserver = { kind = "generic", service_time = { dist = "fixed", value = 4.0 }, concurrency = 1 }\n'
        '[serving]\non_deadline = "finish"\n'
        '[simulation]\nhorizon_hours = 0.2\nwarmup_hours = 0.1\nreplications = 2\n'
    )
    assert main(["simulate", str(p), "--json", "-q"]) == 0
    d = json.loads(capsys.readouterr().out)
    before = {  # every key the request tier's JSON held before the note was added
        "batch_miss", "batch_miss_ci", "busy_fraction", "by_sla_class", "cancelled_by", "cost_per_hour",
        "fidelity", "fidelity_requested", "horizon_hours", "kv_utilization", "miss_episodes",
        "miss_episodes_effective", "p_miss", "p_miss_ci", "p_miss_note", "p_miss_upper", "preemptions",
        "rejected_by", "replications", "requests_arrived", "requests_cancelled", "requests_completed",
        "requests_in_system", "requests_rejected", "requests_simulated", "seed", "sla_hours", "sojourn_mean_ci",
        "sojourn_mean_s", "sojourn_p50_s", "sojourn_p90_s", "sojourn_p99_s", "throughput_rps", "wait_mean_ci",
        "wait_mean_s", "wall_s", "warmup_hours",
    }
    steady = {"steady_state", "steady_state_note", "load", "stable", "p_miss_unseen", "p_miss_oversize"}
    speed = {"calibrated", "calibration"}  # where the step times come from (a generic server: its own)
    assert before | {"sojourn_note", "sojourn_unfinished_share"} | steady | speed == set(d)
    assert d["sojourn_note"] and d["requests_in_system"] > 0
    assert main(["simulate", str(p), "-q"]) == 0
    table = capsys.readouterr().out
    assert "sojourn caution" in table and "completed requests only" in table
