"""Queue disciplines: one contract test class run against every discipline, then each one's order."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest

from sojourn.disciplines import DISCIPLINES, Discipline, QueueContext, make_discipline
from sojourn.fast import FAST_DISCIPLINES
from sojourn.scenario import SCENARIO_DISCIPLINES


class Req:
    """The fields a discipline may read."""

    def __init__(self, rid, prompt=100, deadline=1e9, batch=0):
        self.rid, self.prompt, self.deadline, self.batch = rid, prompt, deadline, batch
        self.inq = False

    def __repr__(self):  # pragma: no cover - debugging aid
        return f"Req({self.rid})"


def random_requests(n, seed=0, far=True):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        deadline = 1e9 + rng.uniform(0, 1e6) if far else rng.uniform(0, 100)
        out.append(Req(i, int(rng.integers(1, 1000)), deadline, int(rng.integers(0, 5))))
    return out


def ctx(**kw):
    return QueueContext(predict=lambda r: 0.01 * r.prompt, **kw)


def _concrete(cls):
    """The public disciplines below ``cls`` (a private one, such as ``_Keyed``, is a shared base)."""
    for sub in cls.__subclasses__():
        if not inspect.isabstract(sub) and not sub.__name__.startswith("_"):
            yield sub
        yield from _concrete(sub)


def test_every_discipline_is_registered_and_offered_by_the_schema():
    """A ``Discipline`` subclass left out of ``DISCIPLINES`` would be unreachable; the schema and
    the fast tier read their names off the registry (the fast tier a subset, by hand)."""
    classes = set(_concrete(Discipline))
    assert classes == set(DISCIPLINES.values())
    assert all(DISCIPLINES[cls.name] is cls for cls in classes)
    assert SCENARIO_DISCIPLINES == tuple(DISCIPLINES)
    assert set(FAST_DISCIPLINES) < set(DISCIPLINES)


@pytest.mark.parametrize("name", sorted(DISCIPLINES))
class TestDisciplineContract:
    """What every discipline guarantees, whatever its order (deadlines far away: nothing is hopeless)."""

    def test_is_a_discipline_with_its_name(self, name):
        q = make_discipline(name, ctx())
        assert isinstance(q, Discipline) and q.name == name

    def test_empty_queue(self, name):
        q = make_discipline(name, ctx())
        assert len(q) == 0 and q.peek(0.0) is None and q.pop(0.0) is None

    def test_every_request_comes_out_exactly_once(self, name):
        q = make_discipline(name, ctx())
        reqs = random_requests(200)
        for r in reqs:
            q.push(r)
        assert len(q) == 200
        out = []
        while len(q):
            head = q.peek(0.0)
            got = q.pop(0.0)
            assert got is head and not got.inq
            out.append(got.rid)
        assert sorted(out) == list(range(200))
        assert q.pop(0.0) is None

    def test_discarded_requests_never_come_out(self, name):
        q = make_discipline(name, ctx())
        reqs = random_requests(100, seed=1)
        for r in reqs:
            q.push(r)
        gone = {r.rid for r in reqs[::3]}
        for r in reqs[::3]:
            q.discard(r)
            q.discard(r)  # twice: a no-op
        assert len(q) == 100 - len(gone)
        out = [q.pop(0.0).rid for _ in range(len(q))]
        assert set(out) == set(range(100)) - gone
        assert len(q) == 0 and q.peek(0.0) is None

    def test_interleaved_pushes_and_pops_keep_the_count(self, name):
        q = make_discipline(name, ctx())
        rng = np.random.default_rng(2)
        reqs = iter(random_requests(500, seed=2))
        inside, seen = 0, set()
        for _ in range(800):
            if rng.random() < 0.6:
                r = next(reqs, None)
                if r is not None:
                    q.push(r)
                    inside += 1
            else:
                r = q.pop(0.0)
                if r is not None:
                    assert r.rid not in seen
                    seen.add(r.rid)
                    inside -= 1
            assert len(q) == inside

    def test_same_pushes_same_order(self, name):
        runs = []
        for _ in range(2):
            q = make_discipline(name, ctx())
            for r in random_requests(50, seed=3):
                q.push(r)
            runs.append([q.pop(0.0).rid for _ in range(50)])
        assert runs[0] == runs[1]

    def test_take_after_peek_is_pop(self, name):
        a, b = make_discipline(name, ctx()), make_discipline(name, ctx())
        for q in (a, b):
            for r in random_requests(60, seed=4):
                q.push(r)
        popped, taken = [], []
        while len(a):
            popped.append(a.pop(0.0).rid)
            head = b.peek(0.0)
            b.take(head)
            assert not head.inq
            taken.append(head.rid)
        assert taken == popped and len(b) == 0

    def test_extend_is_push_one_by_one(self, name):
        a, b = make_discipline(name, ctx()), make_discipline(name, ctx())
        for r in random_requests(40, seed=5):
            a.push(r)
        b.extend(random_requests(40, seed=5))
        assert len(a) == len(b) == 40
        assert [a.pop(0.0).rid for _ in range(40)] == [b.pop(0.0).rid for _ in range(40)]

    def test_with_near_deadlines_every_request_is_popped_or_dropped_once(self, name):
        # Deadlines in [0, 100] s, the clock advancing 0.5 s a pop, a service estimate of
        # 1-10 s: only triage gives up on requests (through ctx.drop), each exactly once,
        # never one it also hands out, and never one that could still make it.
        dropped, when = [], {}
        q = make_discipline(name, ctx(drop=lambda r, now: (dropped.append(r.rid), when.update({r.rid: now}))))
        reqs = random_requests(200, seed=6, far=False)
        by_rid = {r.rid: r for r in reqs}
        for r in reqs:
            q.push(r)
        out, now = [], 0.0
        while len(q):
            now += 0.5
            got = q.pop(now)
            if got is not None:
                out.append(got.rid)
                if name == "triage":
                    assert now + 0.01 * got.prompt <= got.deadline
            assert len(q) == 200 - len(out) - len(dropped)
        assert q.peek(now) is None
        assert sorted(out + dropped) == list(range(200)) and not set(out) & set(dropped)
        if name == "triage":
            assert dropped and all(when[i] + 0.01 * by_rid[i].prompt > by_rid[i].deadline for i in dropped)
        else:
            assert not dropped

    def test_peek_does_not_remove(self, name):
        q = make_discipline(name, ctx())
        for r in random_requests(5):
            q.push(r)
        a, b = q.peek(0.0), q.peek(0.0)
        assert a is b and len(q) == 5 and a.inq


def _order(name, reqs, **kw):
    q = make_discipline(name, ctx(**kw))
    for r in reqs:
        q.push(r)
    return [q.pop(0.0).rid for _ in range(len(reqs))]


def test_fifo_is_arrival_order():
    assert _order("fifo", random_requests(30)) == list(range(30))


def test_lifo_is_reverse_arrival_order():
    assert _order("lifo", random_requests(30)) == list(range(29, -1, -1))


def test_sjf_is_shortest_prompt_first_ties_by_arrival():
    reqs = random_requests(60)
    assert _order("sjf", reqs) == [r.rid for r in sorted(reqs, key=lambda r: (r.prompt, r.rid))]


def test_sjf_work_is_least_predicted_work_first():
    reqs = random_requests(60)
    q = make_discipline("sjf_work", QueueContext(predict=lambda r: -r.prompt))  # a predictor that reverses sjf
    for r in reqs:
        q.push(r)
    got = [q.pop(0.0).rid for _ in reqs]
    assert got == [r.rid for r in sorted(reqs, key=lambda r: (-r.prompt, r.rid))]


def test_edf_is_earliest_deadline_first():
    reqs = random_requests(60)
    assert _order("edf", reqs) == [r.rid for r in sorted(reqs, key=lambda r: (r.deadline, r.rid))]


def test_fair_takes_batches_in_turn():
    reqs = [Req(i, batch=b) for i, b in enumerate([0, 0, 0, 0, 1, 1, 2])]
    assert _order("fair", reqs) == [0, 4, 6, 1, 5, 2, 3]


def test_fair_skips_a_batch_whose_requests_were_all_discarded():
    reqs = [Req(i, batch=b) for i, b in enumerate([0, 1, 1, 2])]
    q = make_discipline("fair", ctx())
    for r in reqs:
        q.push(r)
    q.discard(reqs[0])
    assert [q.pop(0.0).rid for _ in range(3)] == [1, 3, 2]


def test_triage_drops_requests_that_cannot_make_their_deadline():
    dropped = []
    q = make_discipline("triage", QueueContext(predict=lambda r: 10.0, drop=lambda r, now: dropped.append((r.rid, now))))
    for i, d in enumerate([5.0, 15.0, 50.0, 8.0]):
        q.push(Req(i, deadline=d))
    # At t = 0 the deadlines 5 and 8 are hopeless (0 + 10 > deadline): dropped, never started.
    assert q.pop(0.0).rid == 1
    assert dropped == [(0, 0.0), (3, 0.0)]
    assert len(q) == 1
    # At t = 45 the last one can no longer make it either.
    assert q.pop(45.0) is None and len(q) == 0
    assert dropped[-1] == (2, 45.0)


def test_triage_keeps_late_work_for_last_when_late_work_is_finished():
    q = make_discipline("triage", QueueContext(predict=lambda r: 10.0, late_ok=True))
    for i, d in enumerate([5.0, 15.0, 8.0, 30.0]):
        q.push(Req(i, deadline=d))
    got = [q.pop(0.0).rid for _ in range(4)]
    assert got == [1, 3, 0, 2]  # feasible by deadline, then the late ones by deadline
    assert len(q) == 0


def test_triage_without_hopeless_requests_is_edf():
    reqs = random_requests(40, seed=9)
    assert _order("triage", reqs) == _order("edf", reqs)


def test_unknown_discipline_names_the_field():
    from sojourn._errors import ConfigError

    with pytest.raises(ConfigError, match="serving.discipline"):
        make_discipline("random")


def test_disciplines_are_all_distinct_on_a_mixed_queue():
    reqs = [Req(i, prompt=p, deadline=d, batch=i // 4)
            for i, (p, d) in enumerate(itertools.product([300, 100, 200, 50], [2e9, 1e9]))]
    orders = {name: tuple(_order(name, [Req(r.rid, r.prompt, r.deadline, r.batch) for r in reqs]))
              for name in ("fifo", "lifo", "sjf", "edf", "fair")}
    assert len(set(orders.values())) == len(orders)
