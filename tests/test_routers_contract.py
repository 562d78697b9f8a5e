"""Contract suite: every router (``fleet.routing``) on every node kind, and each against its exact queue.

The routers are read from the scenario's own ``fleet.routing`` values, so a router added
there is held to this contract, and ``test_every_router_has_an_exact_reference`` fails until
it is given one. An audited ``FleetSim`` records every routing decision, every pull from a
queue and every outcome, and checks after every event that no node with room is left idle
while a queue it serves holds work. Then, on generic exponential servers fed single requests
at Poisson times (nothing cancelled, late work finished), each router is the queue of its
textbook: ``pull`` one central queue, M/M/c; ``round_robin`` every n-th arrival to a node,
so each node an E_n/M/1 queue; ``least_loaded`` join-the-shortest-queue, whose mean
sojourn is that of a small Markov chain solved here exactly. Those checks use intervals at a
Bonferroni level, so that all of them together hold at 99% (family-wise) for a correct
simulator, whatever the (fixed) seed.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import optimize

from sojourn import ConfigError
from sojourn.analytic import mmc_mean_sojourn, mmc_sojourn_sf
from sojourn.request import simulate
from sojourn.scenario import Fleet, scenario_from_dict
from sojourn.sim.fleet import NODE, FleetSim, run_replication
from sojourn.stats import ratio_ci
from test_sim_fleet import engine_scenario, generic_scenario

#: The routers the scenario format accepts: the registry this suite is run over.
ROUTERS = typing.get_args(Fleet.model_fields["routing"].annotation)
NODE_KINDS = ("generic", "engine")
#: Exact checks in this file, and the level each is made at so that together they hold at 99%.
EXACT_CHECKS = 5
LEVEL = 1.0 - 0.01 / EXACT_CHECKS


# --- an audited fleet ----------------------------------------------------------------------


class Audited(FleetSim):
    """FleetSim recording what it decides and checking, after every event, that it wastes no node."""

    def __init__(self, scenario, seed) -> None:
        self.outcome: dict[int, str] = {}  # rid -> "done" | "rejected" | "cancelled", set once
        self.measured: dict[int, bool] = {}  # rid -> arrived in the measured span
        self.pulled: dict[int, tuple[int, int]] = {}  # rid -> (queue, node) it was taken from / by
        self.routed: list[tuple[int, int]] = []  # (rid, queue) in routing order (push routers)
        self.idle_with_work: list[tuple[float, int]] = []
        self.least_loaded_errors: list[tuple[float, list[float], int]] = []
        super().__init__(scenario, seed)
        for qi, q in enumerate(self.queues):
            q.push = self._recording_push(q.push, qi)
        fire = self.sched.fire  # a node's step end, fired by the driver: audited after it

        def audited_fire(i):
            fire(i)
            self._audit()

        self.sched.fire = audited_fire

    def _recording_push(self, push, qi):
        def recorded(r):
            self.routed.append((r.rid, qi))
            push(r)

        return recorded

    def _make_source(self, qi):
        inner = super()._make_source(qi)

        def source(node, free):
            r = inner(node, free)
            if r:
                assert r.rid not in self.pulled, f"request {r.rid} taken from a queue twice"
                self.pulled[r.rid] = (qi, node.index)
            return r

        return source

    def _settle(self, r, what: str) -> None:
        assert r.rid not in self.outcome, f"request {r.rid} {what} after being {self.outcome.get(r.rid)}"
        self.outcome[r.rid] = what

    def _complete(self, ev):
        if ev.request.state == NODE:  # else cancelled while its last step ran: the fleet ignores it
            self._settle(ev.request, "done")
        super()._complete(ev)

    def _reject(self, r, reason):
        self._settle(r, "rejected")
        super()._reject(r, reason)

    def _cancel(self, r, reason):
        self._settle(r, "cancelled")
        super()._cancel(r, reason)

    def _arrive(self, t, prompts, outputs, sla):
        rid0, n0 = self.rid, len(self.routed)
        loads = None
        if self.routing == "least_loaded":
            # A generic node's load is its busy slots plus its queue, read here from the nodes and
            # queues themselves; an engine's is the KV blocks it holds plus those queued for it.
            loads = ([node.busy + len(q) for node, q in zip(self.nodes, self.queues, strict=True)]
                     if self.generic else self._loads())
        super()._arrive(t, prompts, outputs, sla)
        for rid in range(rid0, self.rid):
            self.measured[rid] = self.W <= t < self.WH
        if loads is not None:
            # The batch's requests in order, each to the least loaded queue (lowest index on a tie),
            # the load of each counted as the fleet counts it: one request, or its prompt's blocks.
            by_rid = {rid: (p, i) for i, (rid, p) in enumerate(zip(range(rid0, self.rid), prompts))}
            for rid, qi in self.routed[n0:]:
                best = min(range(len(loads)), key=lambda i: (loads[i], i))
                if qi != best:
                    self.least_loaded_errors.append((t, list(loads), qi))
                loads[qi] += 1 if self.generic else -(-by_rid[rid][0] // self.bs)
        self._audit()

    def _expire(self, t):
        super()._expire(t)
        self._audit()

    def _audit(self) -> None:
        if self.now < self.busy_until or self.sched.stopped:
            return  # the backlog's span; or the run is over (its last step end plans no more)
        for i, node in enumerate(self.nodes):
            q = self.queues[i if self.push_routing else 0]
            room = node.busy < node.c if self.generic else node.plan_.kind == "idle"
            if room and len(q):
                self.idle_with_work.append((self.now, i))
        if self.generic:  # the load a push router reads is the queue's length (one per request)
            assert self.qload == [len(q) for q in self.queues]


def busy_scenario(kind: str, routing: str, on_deadline: str, **extra):
    """Three nodes, overloaded in bursts, mixed SLAs (short ones cancel), an admission cap, and for
    the engine a small KV cache and requests longer than max_model_len."""
    common = {
        "fleet.routing": routing,
        "fleet.nodes": 3,
        "serving.on_deadline": on_deadline,
        "workload.sla_classes": [{"hours": 0.003, "weight": 1.0}, {"hours": 0.2, "weight": 2.0}],
        "simulation.horizon_hours": 0.3,
        **extra,
    }
    if kind == "generic":
        return scenario_from_dict(generic_scenario(**{
            "workload.batch_rate_per_hour": 2400.0, "serving.max_queue": 40, **common}))
    return scenario_from_dict(engine_scenario(kv_tokens=3000, **{
        "workload.batch_rate_per_hour": 2000.0,
        "serving.max_queue": 60,
        "workload.output_tokens": {"dist": "lognormal", "median": 120, "sigma": 1.0, "max": 900},
        **common,
    }))


def run_audited(sc, seed: int = 0) -> tuple[Audited, typing.Any]:
    sim = Audited(sc, np.random.SeedSequence(seed))
    return sim, sim.run()


# --- the registry ----------------------------------------------------------------------------


def test_the_routers_are_the_scenarios_and_nothing_else_is_accepted():
    assert set(ROUTERS) == {"pull", "round_robin", "least_loaded"}
    with pytest.raises(ConfigError) as e:
        scenario_from_dict(generic_scenario(**{"fleet.routing": "random"}))
    assert e.value.field == "fleet.routing"


def test_every_router_has_an_exact_reference():
    assert set(EXACT_MEAN) == set(ROUTERS)


# --- what every router guarantees, on every node kind -------------------------------------------


@pytest.mark.parametrize("on_deadline", ["cancel", "finish"])
@pytest.mark.parametrize("kind", NODE_KINDS)
@pytest.mark.parametrize("routing", ROUTERS)
class TestRouterContract:
    def test_every_request_is_settled_once_and_counted_once(self, routing, kind, on_deadline):
        sim, s = run_audited(busy_scenario(kind, routing, on_deadline), seed=1)
        measured = [rid for rid, m in sim.measured.items() if m]
        assert len(measured) == s.arrived > 100
        outcomes = [sim.outcome.get(rid) for rid in measured]
        assert outcomes.count("done") == s.completed == len(s.sojourn)
        assert outcomes.count("rejected") == s.rejected
        assert outcomes.count("cancelled") == s.cancelled
        assert outcomes.count(None) == s.in_system
        assert s.arrived == s.completed + s.rejected + s.cancelled + s.in_system
        # The scenario exercises what it is meant to: losses of every kind it allows.
        assert s.completed > 0 and s.rejected_by.get("queue_full", 0) > 0
        if kind == "engine":
            assert s.rejected_by.get("max_model_len", 0) > 0
        if on_deadline == "cancel":
            assert s.cancelled_by.get("deadline", 0) > 0 and s.in_system == 0
        else:
            assert s.cancelled == 0
        # Every completed request was taken from a queue once (asserted as it happens), and
        # nothing that was never queued was served.
        done = [rid for rid, o in sim.outcome.items() if o == "done"]
        assert set(done) <= set(sim.pulled)

    @pytest.mark.parametrize("discipline", ["fifo", "triage"])
    def test_no_node_is_left_idle_while_a_queue_it_serves_holds_work(self, routing, kind, on_deadline, discipline):
        # Triage drops hopeless requests as a node asks for work: a node must then take the next one.
        sim, s = run_audited(busy_scenario(kind, routing, on_deadline, **{"serving.discipline": discipline}), seed=2)
        assert s.completed > 0
        if discipline == "triage" and on_deadline == "cancel" and kind == "generic":
            assert s.cancelled_by.get("triage", 0) > 0
        assert sim.idle_with_work == []

    def test_requests_go_where_the_router_says(self, routing, kind, on_deadline):
        sim, _ = run_audited(busy_scenario(kind, routing, on_deadline), seed=3)
        n = len(sim.nodes)
        assert len(sim.queues) == (1 if routing == "pull" else n)
        # A node takes work only from its own queue (or the one central queue).
        assert all(qi == (0 if routing == "pull" else node) for qi, node in sim.pulled.values())
        assert {node for _, node in sim.pulled.values()} == set(range(n))  # every node serves
        if routing == "pull":
            assert all(qi == 0 for _, qi in sim.routed)  # one central queue
        elif routing == "round_robin":
            assert [qi for _, qi in sim.routed] == [k % n for k in range(len(sim.routed))]
        else:
            assert len(sim.routed) > 100 and sim.least_loaded_errors == []

    def test_a_seed_fixes_the_run_and_another_changes_it(self, routing, kind, on_deadline):
        sc = busy_scenario(kind, routing, on_deadline, **{"simulation.horizon_hours": 0.1})
        a, b, c = (run_replication(sc, np.random.SeedSequence(s)) for s in (5, 5, 6))
        assert _comparable(a) == _comparable(b)
        assert np.array_equal(a.sojourn, b.sojourn)
        assert not np.array_equal(a.sojourn, c.sojourn)


def _comparable(st) -> dict:
    d = dataclasses.asdict(st)
    d.pop("wall_s")

    def plain(v):  # arrays, also inside the histograms (token latencies, folded sojourns), as lists
        if isinstance(v, np.ndarray):
            return v.tolist()
        return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else v

    return plain(d)


@pytest.mark.parametrize("routing", ROUTERS)
def test_the_result_does_not_depend_on_the_number_of_workers(routing):
    for kind in NODE_KINDS:
        sc = busy_scenario(kind, routing, "cancel", **{"simulation.horizon_hours": 0.1})
        a = simulate(sc, replications=2, n_jobs=1, keep_samples=True)
        b = simulate(sc, replications=2, n_jobs=2, keep_samples=True)
        strip = lambda d: {k: v for k, v in d.items() if k != "wall_s"}  # noqa: E731
        assert strip(a.to_dict()) == strip(b.to_dict()), kind
        for ra, rb in zip(a.reps, b.reps, strict=True):
            assert np.array_equal(ra.sojourn, rb.sojourn)


# --- each router is its textbook queue ---------------------------------------------------------

LAM, NODES = 1.0, 2  # requests a second onto two exponential servers of mean 1 s: load 0.5


def erlang_gm1_sigma(lam: float, mu: float, k: int) -> float:
    """GI/M/1 with Erlang-k gaps of rate ``lam`` a stage: the root in (0, 1) of σ = A*(μ(1 − σ))."""
    return optimize.brentq(lambda s: s - (lam / (lam + mu * (1.0 - s))) ** k, 0.0, 1.0 - 1e-9, xtol=1e-15)


def jsq_mean_sojourn(lam: float, mu: float, cap: int = 60) -> float:
    """Join-the-shortest-queue on two exponential servers (ties to the first): E[S] by Little's law
    from the stationary law of the chain (n1, n2), truncated where its mass is below 1e-30."""
    size = cap + 1
    idx = np.arange(size * size).reshape(size, size)
    rows, cols, rates = [], [], []
    for a in range(size):
        for b in range(size):
            to = (a + 1, b) if a <= b else (a, b + 1)
            if max(to) <= cap:
                rows.append(idx[a, b]), cols.append(idx[to]), rates.append(lam)
            if a:
                rows.append(idx[a, b]), cols.append(idx[a - 1, b]), rates.append(mu)
            if b:
                rows.append(idx[a, b]), cols.append(idx[a, b - 1]), rates.append(mu)
    q = sp.csr_matrix((rates, (rows, cols)), shape=(size * size,) * 2)
    q = q - sp.diags(np.asarray(q.sum(axis=1)).ravel())
    m = q.T.tolil()
    m[0, :] = 1.0  # replace one balance equation by the normalisation
    rhs = np.zeros(size * size)
    rhs[0] = 1.0
    pi = spla.spsolve(m.tocsc(), rhs).reshape(size, size)
    assert pi[-5:, :].sum() + pi[:, -5:].sum() < 1e-12  # the truncation changes nothing (solver noise is ~1e-16)
    n = np.add.outer(np.arange(size), np.arange(size))
    return float((pi * n).sum()) / lam


_SIGMA = erlang_gm1_sigma(LAM, 1.0, NODES)
EXACT_MEAN = {
    "pull": mmc_mean_sojourn(LAM, 1.0, NODES),
    "round_robin": 1.0 / (1.0 - _SIGMA),
    "least_loaded": jsq_mean_sojourn(LAM, 1.0),
}
#: P(S > t): M/M/c's, and E_n/M/1's, whose sojourn is exponential with rate μ(1 − σ).
EXACT_SF = {
    "pull": lambda t: float(mmc_sojourn_sf(t, LAM, 1.0, NODES)),
    "round_robin": lambda t: math.exp(-(1.0 - _SIGMA) * t),
}


def test_the_exact_references_are_what_they_say():
    # E_1/M/1 is M/M/1 (σ = ρ); E_2/M/1's σ solves σ = (λ/(λ + 1 − σ))², by hand here.
    assert erlang_gm1_sigma(0.5, 1.0, 1) == pytest.approx(0.5, abs=1e-12)
    s = _SIGMA
    assert s == pytest.approx((LAM / (LAM + 1.0 - s)) ** 2, abs=1e-12) and 0 < s < 1
    # The three routers rank as theory says: pooling beats JSQ beats the blind cycle.
    assert EXACT_MEAN["pull"] < EXACT_MEAN["least_loaded"] < EXACT_MEAN["round_robin"]
    # JSQ at a tiny load: almost never a queue, E[S] -> 1/μ.
    assert jsq_mean_sojourn(0.01, 1.0, cap=8) == pytest.approx(1.0, abs=1e-3)


def textbook(routing: str):
    return scenario_from_dict({
        "sla_hours": 0.5,  # late work is finished: the SLA only caps the run (so a broken node cannot hang it)
        "workload": {"batch_rate_per_hour": LAM * 3600.0, "batch_size": {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": NODES, "routing": routing,
                  "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0}}},
        "serving": {"on_deadline": "finish"},
        "simulation": {"horizon_hours": 3.0, "warmup_hours": 0.1, "replications": 12, "seed": 1, "start": "empty"},
    })


@pytest.mark.parametrize("routing", ROUTERS)
def test_on_exponential_servers_each_router_is_its_textbook_queue(routing):
    res = simulate(textbook(routing), keep_samples=True)
    assert res.requests_completed == res.requests_arrived > 50_000  # nothing lost: the queue is the textbook's
    reps = res.reps
    est, lo, hi = ratio_ci([r.sojourn_sum for r in reps], [r.completed for r in reps], level=LEVEL)
    exact = EXACT_MEAN[routing]
    assert lo <= exact <= hi, (routing, exact, est, lo, hi)
    # Each interval excludes the other routers' values: the check tells the routers apart.
    others = [v for k, v in EXACT_MEAN.items() if k != routing]
    assert not any(lo <= v <= hi for v in others), (routing, EXACT_MEAN, lo, hi)
    if routing in EXACT_SF:
        t = 3.0
        num = [np.count_nonzero(r.sojourn > t) for r in reps]
        p, plo, phi = ratio_ci(num, [r.arrived for r in reps], level=LEVEL)
        assert plo <= EXACT_SF[routing](t) <= phi, (routing, EXACT_SF[routing](t), p, plo, phi)
