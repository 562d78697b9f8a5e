"""The Node protocol (``sojourn.sim.node.Node``): what the fleet may ask of a node, held to account.

Both node kinds are ``Node``s (structurally, checked with ``isinstance``), and each of the
questions the fleet asks answers what the node is doing: at a boundary or not, whether it
may take work, its next event, its load and its counters, on an engine through every kind
of plan (a prefill step, a decode run, a prefill step merged with the decode run after it)
and on a c-slot server. The engine driver (``sim.driver``) runs either kind alone, and the
engine's performance model is an ``EnginePerf`` whose package never imports the simulator.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from sojourn.scenario import scenario_from_dict
from sojourn.sim import EnginePerf, GenericNode, Node, PlanKind
from sojourn.sim.driver import Scheduler, drive, wake
from sojourn.sim.engine import Engine, Request
from test_sim_fleet import engine_scenario

PERF = scenario_from_dict(engine_scenario()).perf_model()
BS = 16


class Job(Request):
    __slots__ = ("service",)

    def __init__(self, rid: int, prompt: int, output: int, service: float = 1.0) -> None:
        super().__init__(rid, prompt, output)
        self.service = service


def engine(merge: bool = False, source=None) -> Engine:
    e = Engine(PERF, 200, BS, 8, 512, source=source)
    e.merge_steps = merge
    return e


@pytest.mark.parametrize("make", [engine, lambda: GenericNode(2)], ids=["engine", "generic"])
def test_both_kinds_are_nodes_and_idle_at_rest(make):
    node = make()
    assert isinstance(node, Node)
    assert node.at_boundary() and node.may_take(0.0) is True and node.next_event_time() == math.inf
    assert node.load(5.0) == 0 and node.counters(5.0) == (0.0, 0.0, 0)
    assert not node.cut_for_arrival(0.0)


def test_a_half_node_is_not_a_node():
    class Half:  # plans and fires, but answers none of the fleet's questions
        def plan(self) -> float:
            return math.inf

        def fire(self) -> list:
            return []

    assert not isinstance(Half(), Node)


def test_engine_prefill_step_then_decode_run():
    e = engine()
    e.enqueue(Job(0, 100, 40))
    end = e.plan()
    assert e.plan_.kind is PlanKind.STEP and e.plan_.kind == "step"  # a str: old comparisons hold
    assert not e.at_boundary() and e.next_event_time() == end > 0
    assert e.may_take(end / 2) is False  # a prefill step is never cut: its end pulls
    assert not wake(e, end / 2)  # and waking it does not stop it
    blocks = -(-100 // BS)
    assert e.load(end / 2) == blocks
    busy, kv, pre = e.counters(end / 2)
    assert busy == pytest.approx(end / 2) and kv == pytest.approx(blocks * end / 2) and pre == 0
    assert e.planned_chunks() and e.planned_chunks()[0][1] == 100
    e.fire()
    end2 = e.plan()
    assert e.plan_.kind is PlanKind.RUN and not e.planned_chunks()
    assert e.may_take(end + 1e-9) is None  # a decode run: it depends on the request
    assert e.can_admit(16) and not e.can_admit(16 * 500)
    assert wake(e, (end + end2) / 2) and e.at_boundary()  # a decode run stops at a boundary
    assert end <= e.now <= end2


def test_engine_merged_step_is_cut_back_for_an_arrival_its_end_could_take():
    e = engine(merge=True, source=lambda eng, free: None)  # a central queue with nothing queued
    e.enqueue(Job(0, 100, 40))
    end = e.plan()
    p = e.plan_
    assert p.kind is PlanKind.STEPRUN and p.open and p.mid < end
    early, late = p.mid / 2, (p.mid + end) / 2
    assert e.may_take(early) is False and e.may_take(late) is None
    assert e.load(early) == e.used and e.load(late) == p.used1 >= e.used
    busy, kv, _ = e.counters(late)
    assert busy == pytest.approx(late) and kv == pytest.approx(e.used * p.mid + p.used1 * (late - p.mid))
    assert not e.cut_for_arrival(late)  # past the prefill step: nothing to cut back to
    assert e.cut_for_arrival(early) and e.next_event_time() == p.mid and p.kind is PlanKind.STEP


def test_engine_merged_step_without_a_source_waiting_is_not_cut():
    e = engine(merge=True, source=lambda eng, free: None)
    e.enqueue(Job(0, 100, 40))
    e.plan()
    e.plan_.open = False  # its end could take nothing more
    assert not e.cut_for_arrival(e.plan_.mid / 2) and e.plan_.kind is PlanKind.STEPRUN


def test_generic_node_questions():
    g = GenericNode(2)
    g.enqueue(Job(0, 1, 1, service=3.0))
    assert g.plan() == g.next_event_time() == 3.0
    assert g.load(1.0) == 1 and g.may_take(1.0) is True and g.at_boundary()
    g.enqueue(Job(1, 1, 1, service=5.0))
    g.interrupt(1.0)
    g.plan()
    assert g.load(2.0) == 2 and g.may_take(2.0) is False and not g.can_admit(1)
    assert g.counters(2.0) == (pytest.approx((1.0 + 2.0 * 1.0) / 2), 0.0, 0)  # slot-seconds per slot
    g.fire()
    assert g.next_event_time() == 6.0 and g.load(3.0) == 1


@pytest.mark.parametrize("kind", ["engine", "generic"])
def test_the_driver_runs_either_kind_with_outside_arrivals(kind):
    node = engine() if kind == "engine" else GenericNode(1)
    jobs = [Job(i, 50, 10, service=1.0) for i in range(4)]
    done: list[tuple[int, float]] = []
    node.enqueue(jobs[0])
    arrivals = [0.25, 0.5, 5.0]
    drive(node, lambda: len(done) < 4, lambda ev: done.append((ev.request.rid, ev.time)),
          arrivals=arrivals, on_arrival=lambda t: node.enqueue(jobs[1 + [0.25, 0.5, 5.0].index(t)]))
    assert sorted(r for r, _ in done) == [0, 1, 2, 3] and arrivals == []
    times = [t for _, t in done]
    assert times == sorted(times) and times[-1] > 5.0  # the last arrived at 5 s and ran after it
    if kind == "generic":  # one slot, one second each, in arrival order
        assert done == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 6.0)]


def test_arrivals_during_a_step_that_is_never_cut_join_at_its_end_in_order():
    # A 500-token prefill step (never cut); two arrivals inside it and one after it. The two wait
    # for its end, join in their order as the next step is planned, and keep their own times.
    node = engine()
    node.enqueue(Job(0, 500, 4))
    end = node.plan()
    node.interrupt(0.0)  # drop the plan: drive plans from the boundary itself
    seen: list[tuple[float, float, bool]] = []  # (arrival, node clock, node at a boundary then)
    plans: list[tuple[float, float]] = []
    jobs = iter(Job(i, 20, 3) for i in range(1, 4))

    def arrive(t: float) -> None:
        seen.append((t, node.now, node.at_boundary()))
        node.enqueue(next(jobs))

    done: list[int] = []
    arrivals = [end / 3, end / 2, 2 * end]
    drive(node, lambda: len(done) < 4, lambda ev: done.append(ev.request.rid), arrivals=arrivals,
          on_arrival=arrive, on_plan=lambda n, e: plans.append((n.now, e)))
    assert arrivals == [] and sorted(done) == [0, 1, 2, 3]
    assert [t for t, _, _ in seen] == [end / 3, end / 2, 2 * end]
    assert seen[0][1] == seen[1][1] == pytest.approx(end) and all(b for _, _, b in seen)
    assert plans[0] == (0.0, pytest.approx(end))  # the prefill step fired whole, where it was planned
    assert all(e > t for t, e in plans) and [t for t, _ in plans] == sorted(t for t, _ in plans)


def test_a_scheduler_indexes_its_nodes_in_order():
    with pytest.raises(ValueError, match="index"):
        Scheduler([GenericNode(1, index=1)], lambda ev: None)
    s = Scheduler([GenericNode(1, index=0), GenericNode(1, index=1)], lambda ev: None)
    assert s.sched == [math.inf, math.inf] and not s.heap


def test_the_driver_stops_when_the_node_idles_with_work_expected():
    with pytest.raises(RuntimeError, match="idle"):
        drive(GenericNode(1), lambda: True, lambda ev: None)


def test_the_perf_model_is_what_the_engine_needs_and_perf_never_imports_the_simulator():
    assert isinstance(PERF, EnginePerf)
    assert not isinstance(object(), EnginePerf)
    code = ("import json, sys; import sojourn.perf, sojourn.perf._calibrate; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sojourn.sim'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
