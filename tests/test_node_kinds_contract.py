"""Contract suite: every node kind the fleet runs, driven through the protocol the fleet uses.

The kinds are the LLM engine (``sojourn.sim.engine.Engine``; as the closed-loop predictor
runs it, and with ``merge_steps`` as the fleet runs it) and every ``fleet.server`` kind
(today ``generic``: ``GenericNode``, a c-slot server). ``test_the_suite_covers_every_kind``
fails when a server kind is added to the scenario without being added here.

Each kind is driven alone, as the fleet drives it (``interrupt`` on every arrival, ``plan``
at a boundary, ``fire`` at the planned end, work pulled from a FIFO source), and held to
what the fleet relies on: every request completes once and no sooner than it would alone;
a lone request takes exactly its service time (for the engine: its prefill chunks and decode
steps summed from ``PerfModel.step_time``, independently of the engine's event jumps); room
is never exceeded and never left unused while work waits; interruptions without new work
change nothing; a removed request never completes and gives its room back; busy time is
the work done. Then each kind in a fleet: requests that never meet take their lone time,
and generic exponential slots are M/M/c however they are split into nodes (the exact value
inside an interval at a Bonferroni level: both checks together hold at 99%).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from sojourn.analytic import mmc_mean_sojourn
from sojourn.request import simulate
from sojourn.scenario import GenericServer, scenario_from_dict
from sojourn.sim.engine import Engine, Request
from sojourn.sim.fleet import FleetSim
from sojourn.sim.generic import GenericNode
from sojourn.sim.node import Node
from sojourn.stats import ratio_ci
from test_sim_fleet import engine_scenario, generic_scenario

PERF = scenario_from_dict(engine_scenario()).perf_model()
BUDGET, MAX_SEQS, KV_BLOCKS, BS = 512, 8, 200, 16  # a small engine: chunked prefill, preemption
SLOTS = 3
EXACT_CHECKS = 2
LEVEL = 1.0 - 0.01 / EXACT_CHECKS


class Req(Request):
    """A request either kind can serve: the engine reads its tokens, the generic node its service."""

    __slots__ = ("service", "arrival")

    def __init__(self, rid: int, prompt: int, output: int, service: float, arrival: float = 0.0) -> None:
        super().__init__(rid, prompt, output)
        self.service = service
        self.arrival = arrival


def engine_lone_time(perf, budget: int, prompt: int, output: int) -> float:
    """Seconds one request takes alone on an idle engine, step by step from the documented rules:
    its prompt in chunks of at most ``budget`` tokens (the last one samples its first token),
    then ``output - 1`` decode steps reading a context of prompt, prompt + 1, ... tokens."""
    t, done = 0.0, 0
    while done < prompt:
        n = min(budget, prompt - done)
        t += perf.step_time(n, 0, 0, n * (done + 0.5 * n), 1 if done + n >= prompt else 0)
        done += n
    for k in range(output - 1):
        t += perf.step_time(0, 1, prompt + k)
    return t


@dataclass(frozen=True)
class Kind:
    make: Callable[[], typing.Any]
    #: Whether the node could take this request now, ``free`` being what its source is told is free.
    fits: Callable[[typing.Any, Req, int], bool]
    #: Whether the node has room it is not using (then nothing may be waiting for it).
    room: Callable[[typing.Any], bool]
    #: Whether the node holds no request and no reserved capacity.
    empty: Callable[[typing.Any], bool]
    #: Whether its capacity limits hold.
    within: Callable[[typing.Any], bool]
    lone_time: Callable[[Req], float]
    exact_lone: bool  # the lone time is the service itself (no rounding at all)


def _engine(merge: bool) -> Callable[[], Engine]:
    def make() -> Engine:
        e = Engine(PERF, KV_BLOCKS, BS, MAX_SEQS, BUDGET)
        e.merge_steps = merge
        e.first_token_events = not merge  # as the fleet runs it when merged
        return e

    return make


_ENGINE = dict(
    fits=lambda n, r, free: -(-r.target // n.bs) <= free,
    room=lambda n: n.at_boundary(),
    empty=lambda n: n.used == 0 and not n.running and not n.waiting and n.at_boundary(),
    within=lambda n: 0 <= n.used <= n.total_blocks and len(n.running) <= n.max_num_seqs,
    lone_time=lambda r: engine_lone_time(PERF, BUDGET, r.prompt, r.output),
    exact_lone=False,
)
KINDS = {
    "engine": Kind(make=_engine(False), **_ENGINE),
    "engine, merged steps": Kind(make=_engine(True), **_ENGINE),
    "generic": Kind(
        make=lambda: GenericNode(SLOTS),
        fits=lambda n, r, free: free >= 1,
        room=lambda n: n.busy < n.c,
        empty=lambda n: n.busy == 0 and not n.waiting,
        within=lambda n: 0 <= n.busy <= n.c,
        lone_time=lambda r: r.service,
        exact_lone=True,
    ),
}


def requests(n: int, seed: int, rate: float) -> list[Req]:
    """Poisson arrivals at ``rate`` a second; prompts 1-1500 tokens (chunked beyond 512), outputs
    1-300, service times exponential of mean 2 s."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    return [Req(i, int(rng.integers(1, 1501)), int(rng.integers(1, 301)), float(rng.exponential(2.0)), float(t[i]))
            for i in range(n)]


@dataclass
class Trace:
    done: list[tuple[int, float]]  # (rid, time) in the order fire() returned them
    pulled: list[int]
    idle_with_work: list[float]
    over_capacity: list[float]
    clock: list[float]
    node: typing.Any


def drive(kind: Kind, reqs: list[Req], pokes: typing.Iterable[float] = (),
          remove_at: dict[int, list[int]] | None = None) -> Trace:
    """Run one node as the fleet does: on an arrival or a poke at t, ``interrupt(t)`` then ``plan()``
    if the node is at a boundary; at the planned end, ``fire()`` then ``plan()``. Completions come
    before arrivals at equal times. ``remove_at``: after the k-th ``fire()``, remove those rids."""
    node = kind.make()
    queue: deque[Req] = deque()
    tr = Trace([], [], [], [], [], node)
    by_rid = {r.rid: r for r in reqs}

    def source(n, free):
        if not queue:
            return None
        if not kind.fits(n, queue[0], free):
            return False
        r = queue.popleft()
        tr.pulled.append(r.rid)
        return r

    node.source = source
    items = sorted([(r.arrival, 0, r) for r in reqs] + [(t, 1, None) for t in pokes], key=lambda x: (x[0], x[1]))
    end, i, fires = node.plan(), 0, 0
    while True:
        nxt = items[i][0] if i < len(items) else math.inf
        if end < math.inf and end <= nxt:
            tr.done += [(ev.request.rid, ev.time) for ev in node.fire() if ev.kind == "done"]
            fires += 1
            for rid in (remove_at or {}).get(fires, ()):
                r = by_rid[rid]
                if node.remove(r):
                    assert not node.remove(r)  # once removed, it is no longer there
            end = node.plan()
        elif nxt < math.inf:
            t, _, r = items[i]
            i += 1
            if r is not None:
                queue.append(r)
            node.interrupt(t)
            end = node.plan() if node.at_boundary() else node.next_event_time()
        else:
            break
        tr.clock.append(node.now)
        if kind.room(node) and queue:
            tr.idle_with_work.append(node.now)
        if not kind.within(node):
            tr.over_capacity.append(node.now)
    return tr


def test_the_suite_covers_every_kind():
    server_kinds = set(typing.get_args(GenericServer.model_fields["kind"].annotation))
    assert server_kinds | {"engine"} <= {k.split(",")[0] for k in KINDS}
    # And the fleet builds each kind from its scenario, as run here.
    gen = FleetSim(scenario_from_dict(generic_scenario()), np.random.SeedSequence(0))
    assert all(type(n) is GenericNode for n in gen.nodes)
    eng = FleetSim(scenario_from_dict(engine_scenario()), np.random.SeedSequence(0))
    assert all(type(n) is Engine and n.merge_steps for n in eng.nodes)


@pytest.mark.parametrize("name", KINDS)
class TestNodeKindContract:
    def test_speaks_the_protocol_the_fleet_uses(self, name):
        node = KINDS[name].make()
        for method in ("plan", "fire", "interrupt", "enqueue", "remove"):
            assert callable(getattr(node, method)), method
        assert isinstance(node, Node)  # the fleet asks nothing else (test_node_protocol.py)
        for attr in ("index", "now", "busy_time", "kv_block_seconds", "preemptions", "used",
                     "total_blocks", "source"):
            assert hasattr(node, attr), attr
        assert node.at_boundary() and node.plan() == math.inf  # nothing to do: idle, no event
        assert node.fire() == [] and KINDS[name].empty(node)

    def test_every_request_completes_once_and_never_sooner_than_alone(self, name):
        kind = KINDS[name]
        reqs = requests(120, seed=1, rate=20.0)  # more than either kind serves: queues build
        tr = drive(kind, reqs)
        rids = [rid for rid, _ in tr.done]
        assert sorted(rids) == list(range(len(reqs)))  # each once
        assert sorted(tr.pulled) == list(range(len(reqs))) and len(set(tr.pulled)) == len(reqs)
        times = [t for _, t in tr.done]
        assert times == sorted(times)
        assert tr.clock == sorted(tr.clock)  # the node's clock never goes back
        by_rid = {r.rid: r for r in reqs}
        for rid, t in tr.done:
            r = by_rid[rid]
            assert t >= r.arrival + kind.lone_time(r) * (1 - 1e-12), (rid, t, r.arrival, kind.lone_time(r))
        assert kind.empty(tr.node) and tr.node.at_boundary() and tr.node.next_event_time() == math.inf
        if name.startswith("engine"):
            assert tr.node.preemptions > 0  # the small cache was under pressure
        assert max(t - by_rid[rid].arrival - kind.lone_time(by_rid[rid]) for rid, t in tr.done) > 5.0

    @pytest.mark.parametrize("shape", [(1, 1), (100, 1), (1, 50), (100, 200), (512, 3), (513, 17), (1337, 64),
                                       (16, 17), (31, 300)])
    def test_a_lone_request_takes_exactly_its_service_time(self, name, shape):
        kind = KINDS[name]
        prompt, output = shape
        r = Req(0, prompt, output, service=0.5 + prompt / 1000.0, arrival=3.0)
        tr = drive(kind, [r])
        ((rid, t),) = tr.done
        expected = 3.0 + kind.lone_time(r)
        if kind.exact_lone:
            assert t == expected
        else:
            assert t == pytest.approx(expected, rel=1e-12)
        assert tr.node.busy_time == pytest.approx(kind.lone_time(r), rel=1e-12)

    def test_room_is_never_exceeded_and_never_left_unused_while_work_waits(self, name):
        tr = drive(KINDS[name], requests(150, seed=2, rate=20.0))
        assert tr.over_capacity == []
        assert tr.idle_with_work == []

    def test_interruptions_without_new_work_change_nothing(self, name):
        kind = KINDS[name]
        reqs = requests(60, seed=3, rate=1.0)
        plain = drive(kind, reqs)
        end = plain.done[-1][1]
        pokes = np.random.default_rng(4).uniform(0.0, end, 400).tolist()
        poked = drive(kind, requests(60, seed=3, rate=1.0), pokes=pokes)
        assert [rid for rid, _ in poked.done] == [rid for rid, _ in plain.done]
        a, b = np.array([t for _, t in plain.done]), np.array([t for _, t in poked.done])
        if kind.exact_lone:
            assert np.array_equal(a, b)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-9)

    def test_removed_requests_never_complete_and_give_their_room_back(self, name):
        kind = KINDS[name]
        reqs = requests(80, seed=5, rate=2.0)
        # After the 5th, 10th, ... boundary, remove every request with rid % 4 == 1 (those not there: no-op).
        doomed = [r.rid for r in reqs if r.rid % 4 == 1]
        tr = drive(kind, reqs, remove_at={k: doomed for k in range(5, 400, 5)})
        done = {rid for rid, _ in tr.done}
        assert len(done) == len(tr.done)  # each once
        removed = set(tr.pulled) - done
        assert removed and removed <= set(doomed)  # only removed ones are missing, and some were removed
        assert set(range(len(reqs))) - set(doomed) <= done  # the others all completed
        assert kind.empty(tr.node)  # what the removed ones held was given back

    def test_same_input_same_output(self, name):
        a = drive(KINDS[name], requests(80, seed=6, rate=2.0))
        b = drive(KINDS[name], requests(80, seed=6, rate=2.0))
        assert a.done == b.done and a.pulled == b.pulled
        assert a.node.busy_time == b.node.busy_time and a.node.preemptions == b.node.preemptions

    def test_busy_time_is_the_work_done(self, name):
        kind = KINDS[name]
        reqs = requests(50, seed=7, rate=1e9)  # all at once: never idle until the last completes
        for r in reqs:
            r.arrival = 0.0
        tr = drive(kind, reqs)
        makespan = tr.done[-1][1]
        node = tr.node
        if isinstance(node, GenericNode):
            # Slot-seconds: the services summed, all of them, and at most every slot the whole time.
            assert node.busy_time_at(makespan) == pytest.approx(sum(r.service for r in reqs), rel=1e-12)
            assert node.busy_time_at(makespan) <= node.c * makespan
        else:
            assert node.busy_time == pytest.approx(makespan, rel=1e-12)
            # With gaps, busy time is less than the span, and at least the longest lone request.
            spread = drive(kind, requests(50, seed=7, rate=0.05))
            span = spread.done[-1][1]
            assert max(kind.lone_time(r) for r in reqs) <= spread.node.busy_time < span

    def test_a_single_slot_serves_in_the_order_it_pulls(self, name):
        # One request at a time (one slot, one sequence): nothing overtakes, the node is a FIFO server.
        kind = KINDS[name]
        make = (lambda: GenericNode(1)) if name == "generic" else (lambda: _one_seq(kind.make()))
        tr = drive(dataclasses.replace(kind, make=make), requests(40, seed=8, rate=5.0))
        assert [rid for rid, _ in tr.done] == tr.pulled == list(range(40))


def _one_seq(e: Engine) -> Engine:
    e.max_num_seqs = 1
    return e


# --- each kind in a fleet ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["engine", "generic"])
def test_in_a_fleet_requests_that_never_meet_take_their_lone_time(kind):
    # One request every 100 s on two nodes: each finds the fleet empty, so its sojourn is its
    # lone time exactly (the engine as the fleet runs it: merged steps, pull routing).
    prompt, output, svc = 700, 150, 4.0
    if kind == "engine":
        sc = scenario_from_dict(engine_scenario(**{"serving.max_num_batched_tokens": BUDGET}))
        lone = engine_lone_time(sc.perf_model(), BUDGET, prompt, output)
    else:
        sc = scenario_from_dict(generic_scenario(**{
            "fleet.server": {"kind": "generic", "service_time": {"dist": "fixed", "value": svc}, "concurrency": 2}}))
        lone = svc
    sim = FleetSim(sc, np.random.SeedSequence(0))
    sim._stream = ((100.0 * k, [prompt], [output], 3600.0) for k in itertools.count(1))
    s = sim.run()
    assert s.completed == s.arrived > 15 and s.wait_sum == 0.0
    np.testing.assert_allclose(s.sojourn, lone, rtol=1e-12)
    assert 1.0 < lone < 100.0


def mmc_scenario(nodes: int, slots: int, lam: float):
    return scenario_from_dict({
        "sla_hours": 0.5,  # late work is finished: the SLA only caps the run (so a broken node cannot hang it)
        "workload": {"batch_rate_per_hour": lam * 3600.0, "batch_size": {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": nodes, "server": {"kind": "generic", "concurrency": slots,
                                             "service_time": {"dist": "exponential", "mean": 1.0}}},
        "serving": {"on_deadline": "finish"},
        "simulation": {"horizon_hours": 2.0, "warmup_hours": 0.1, "replications": 12, "seed": 3, "start": "empty"},
    })


@pytest.mark.parametrize(("nodes", "slots"), [(1, 3), (3, 1)])
def test_generic_slots_are_mmc_however_they_are_split_into_nodes(nodes, slots):
    # Three exponential slots behind one (pull) queue: M/M/3, one node of three slots or three of one.
    lam = 0.6 * 3
    res = simulate(mmc_scenario(nodes, slots, lam), keep_samples=True)
    assert res.requests_completed == res.requests_arrived > 40_000
    est, lo, hi = ratio_ci([r.sojourn_sum for r in res.reps], [r.completed for r in res.reps], level=LEVEL)
    exact = mmc_mean_sojourn(lam, 1.0, 3)
    assert lo <= exact <= hi, (exact, est, lo, hi)
    # Not M/M/1 at the same load, nor three separate M/M/1 queues: the check tells them apart.
    assert hi < 1.0 / (1.0 - 0.6)
