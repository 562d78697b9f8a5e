"""One replication of the fleet: a discrete-event loop over nodes fed from a queue.

The loop and the nodes' step ends are the one engine driver's (``driver.Scheduler``);
the fleet adds its own events to that heap, keyed ``(time, kind, counter)`` as in
SimPy: at equal times node steps come before arrivals, arrivals before deadlines (a
request finishing exactly at its deadline meets it), and ties keep insertion order,
so runs are deterministic. Only a handful of events are pending at once: each node's
next step end, the next batch arrival, the next deadline and the measurement marks.

Routing ``pull`` keeps one central queue that every node draws from when it has
room (the engine's ``source`` callback); the push routers (``round_robin``,
``least_loaded``) give each node its own queue with the same discipline and pick
the node when a request arrives. A node is woken (``interrupt``) when new work
could start on it or when a deadline removes work from it; a node whose prefill
step was planned together with the decode run after it (the engine's "steprun")
is cut back to that step when new work arrives that the step's end could take.

Measurement: batches arriving in [warm-up, warm-up + horizon) are measured; each of
their requests is followed until it completes, is rejected, or is cancelled at its
deadline, while arrivals go on. With ``on_deadline = "finish"`` the run stops at
the latest twice the longest SLA after the horizon; requests still unfinished then
are ``in_system``, past their deadline, so counted as misses.
"""

from __future__ import annotations

import functools
import heapq
import math
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sojourn.disciplines import Fifo, QueueContext, make_discipline
from sojourn.sim import _fleet_kernel
from sojourn.sim._sojourns import EXACT_CAP, LogHistogram
from sojourn.sim.availability import FAIL, OUT, Availability
from sojourn.sim.driver import FIRE, Scheduler
from sojourn.sim.engine import Engine, Request
from sojourn.sim.generic import GenericNode
from sojourn.sim.node import Node
from sojourn.sim.workload import batch_stream, load_trace, mean_tokens
from sojourn.steady import BINS

__all__ = ["Batch", "FleetSim", "ReplicationStats", "SimRequest", "check_scenario", "run_replication"]

# Request states.
QUEUED, NODE, DONE, REJECTED, CANCELLED = 1, 2, 3, 4, 5
# Event kinds, also their priority at equal times (node step ends, the driver's FIRE, first).
_ARRIVAL, _DEADLINE, _MARK, _NODE = FIRE + 1, FIRE + 2, FIRE + 3, FIRE + 4


class SimRequest(Request):
    """A request with what the fleet tracks: its batch, state, start of service, queue, and
    ``w``, its weight in its queue's load (its prompt's KV blocks; one, on a generic node)."""

    __slots__ = ("batch", "state", "start", "service", "deadline", "queue", "inq", "fc", "w")
    batch: Batch
    state: int  # QUEUED, NODE, DONE, REJECTED or CANCELLED
    start: float
    service: float
    deadline: float
    queue: int
    inq: bool
    fc: float
    w: int


class Batch:
    """A batch of requests sharing one arrival time and deadline."""

    __slots__ = ("arrival", "deadline", "sla", "measured", "requests", "pending", "missed", "nmiss", "size")

    def __init__(self, arrival: float, sla: float, measured: bool) -> None:
        self.arrival = arrival
        self.sla = sla
        self.deadline = arrival + sla
        self.measured = measured
        self.requests: list[SimRequest] = []
        self.pending = 0  # requests not yet completed, rejected or cancelled
        self.missed = False
        self.nmiss = 0  # its requests that missed
        self.size = 0


@dataclass
class ReplicationStats:
    """What one replication measured (counts over measured requests, rates over the horizon)."""

    arrived: int = 0
    completed: int = 0
    rejected: int = 0
    cancelled: int = 0
    in_system: int = 0
    rejected_by: dict[str, int] = field(default_factory=dict)
    cancelled_by: dict[str, int] = field(default_factory=dict)
    misses: int = 0  # requests not completed within their own batch's SLA
    #: Per SLA (seconds): [requests arrived, misses], for mixed-SLA workloads.
    by_sla: dict[float, list[int]] = field(default_factory=dict)
    batches: int = 0
    batches_missed: int = 0
    #: Misses per congestion episode: measured batches with a miss, each arriving within its
    #: SLA of the previous one, grouped (see ``FleetSim._episodes``).
    miss_episodes: list[int] = field(default_factory=list)
    batch_size_sum: float = 0.0
    batch_size_sq: float = 0.0
    sojourn: np.ndarray = field(default_factory=lambda: np.empty(0))  # completed requests
    #: The sojourns folded into a log histogram once there were more than ``sojourn_cap``
    #: (``_sojourns``); ``sojourn`` is then empty.
    sojourn_hist: LogHistogram | None = None
    sojourn_sum: float = 0.0
    wait_sum: float = 0.0
    completions_in_horizon: int = 0  # of any request, for throughput
    horizon_s: float = 0.0
    busy_fraction: float = math.nan
    kv_utilization: float = math.nan
    preemptions: int = 0
    sim_end_s: float = 0.0
    requests_simulated: int = 0
    wall_s: float = 0.0
    #: The largest measured batch (for the bound on batches larger than any seen).
    size_max: int = 0
    #: Misses in measured batches larger than the fleet serves in one SLA (when that size is known).
    oversize_misses: int = 0
    #: Requests queued at batch arrivals: sums and counts in ``steady.BINS`` time bins over
    #: [0, warm-up + horizon), and the means over the measured span's two halves (steady state).
    queue_bins: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    queue_bins_n: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    queue_halves: tuple[float, float] = (math.nan, math.nan)
    #: Prefix caching over the measured span, summed over the nodes (``sim.prefix``): admissions
    #: looked up, their prompt tokens, those with a hit, the tokens found cached, cached blocks
    #: evicted. None where prefix caching does not act.
    prefix: dict[str, int] | None = None
    #: Node failures, spot reclaims and a capacity schedule over the measured span (``sim.availability``):
    #: node-seconds serving, failed and held (paid), the rent paid, failure and reclaim events, and the
    #: measured requests sent back to the queue (``requeued``) or lost to failures. None without them.
    realism: dict[str, float] | None = None
    #: Token latencies of the measured requests an engine completed (``sim.engine``; absent on generic
    #: servers): time to first token from the request's arrival (its batch's) and time per output
    #: token after the first, (completion - first token) / (output - 1), for outputs over one token;
    #: sums and log histograms (``_sojourns``: quantiles within 0.005%), bounded in memory.
    ttft_sum: float = 0.0
    ttft_hist: LogHistogram | None = None
    tpot_sum: float = 0.0
    tpot_hist: LogHistogram | None = None


class FleetSim:
    """One replication of a scenario's fleet, driven by its own seed.

    ``start_busy_s``: a stationary start (``sojourn.steady``): the work the fleet holds
    at time 0, drawn from its stationary law, in seconds of the whole fleet; every node
    serves that backlog first (ahead of any arrival, as under FIFO), so none takes work
    before then. ``oversize``: the batch size one SLA's fleet capacity serves, to count
    the misses of larger batches apart.
    """

    _wall0: float  # wall clock at the start of run(), for progress lines
    _last_report: float  # wall clock of the last progress line

    def __init__(self, scenario: Any, seed: np.random.SeedSequence, start_busy_s: float = 0.0,
                 oversize: float = math.inf) -> None:
        sc = scenario
        # A third child for the work forecasts: spawn(3)'s first two are spawn(2)'s, so the
        # traffic and service draws are the same with or without a forecast.
        wl_seed, srv_seed, fc_seed = seed.spawn(3)
        sigma = sc.serving.forecast_sigma
        self._fc_sigma = sigma
        self._fc_rng = np.random.default_rng(fc_seed) if sigma is not None else None
        self._asking: Any = None  # the node whose request for work a discipline is answering
        #: Whether the engines cache prefixes (then each batch carries its requests' prefixes).
        self.caching = sc.fleet.server is None and sc.prefix_caching
        self._stream = batch_stream(sc, wl_seed, self.caching)
        #: The scenario and its traffic's seed, for the fleet kernel (``_fleet_kernel.run``, which draws the
        #: same traffic as arrays), and the SLAs (seconds) its batches may carry, in the classes' order.
        self.scenario, self.wl_seed = sc, wl_seed
        sim = sc.simulation
        self.W = sim.warmup_hours * 3600.0
        self.H = sim.horizon_hours * 3600.0
        self.WH = self.W + self.H
        self.cancel = sc.serving.on_deadline == "cancel"
        classes = sc.workload.sla_classes
        sla_max = max(c.hours for c in classes) * 3600.0 if classes else sc.sla_seconds
        self.scenario_classes: list[float] = (
            (np.array([c.hours for c in classes]) * 3600.0).tolist() if classes else [sc.sla_seconds])
        self.cap = self.WH + sla_max * (1.0 if self.cancel else 2.0) + 1.0
        self.max_queue = sc.serving.max_queue
        self.max_model_len = sc.serving.max_model_len
        n = sc.fleet.nodes
        predict, estimate = self._build_nodes(sc, srv_seed, sigma)
        self.push_routing = sc.fleet.routing != "pull"
        self.routing = sc.fleet.routing
        nq = n if self.push_routing else 1
        ctx = QueueContext(predict=predict, drop=self._triage_drop, late_ok=not self.cancel, estimate=estimate)
        self.queues = [make_discipline(sc.serving.discipline, ctx) for _ in range(nq)]
        self.qload = [0] * nq  # queued load per queue: prompt blocks (engine) or requests (generic)
        self._sources = [self._make_source(i if self.push_routing else 0) for i in range(len(self.nodes))]
        for node, src in zip(self.nodes, self._sources):
            node.source = src
        # The nodes' step ends and the event loop; cancelled requests wait in its ``pend`` for a boundary.
        self.sched = Scheduler(self.nodes, self._complete)
        self._rr = 0
        # Time order of the open batches, one deque per SLA (each is then in deadline order).
        self._open: dict[float, deque[Batch]] = {}
        self._timer = math.inf
        self._timer_v = 0
        self.n_waiting = 0  # requests queued and never started (for max_queue)
        self.rid = 0
        self.measured_open = 0
        self.marked_end = False
        self.st = ReplicationStats(horizon_s=self.H)
        self._soj = array("d")  # 8 bytes a served request, folded into a histogram past the cap
        self._ttft = array("d")  # token latencies of served engine requests, folded likewise
        self._tpot = array("d")
        self.sojourn_cap: float = EXACT_CAP  # inf: every sojourn kept exact
        self._marks: dict[str, tuple[float, float, int, int]] = {}
        self._pmarks: dict[str, tuple[int, ...]] = {}  # prefix-cache counters at the marks
        self.completions = 0
        self._missed: list[Batch] = []  # measured batches with a miss, for the episodes
        self.busy_until = float(start_busy_s)
        self.oversize = oversize
        self._bin_w = self.WH / BINS if self.WH > 0 else 1.0
        self._qsum = np.zeros(BINS)
        self._qn = np.zeros(BINS)
        self._half = [0.0, 0.0, 0, 0]  # queued-sum and count, first and second half of the span
        self._set_up_realism(sc, seed)

    def _set_up_realism(self, sc: Any, seed: np.random.SeedSequence) -> None:
        """Failures, spot nodes and a capacity schedule (``sim.availability``), when the scenario has them.

        Their draws come from a fourth child of the seed (the traffic's and service's stay as
        they were). ``closed[i]``: node i admits nothing (None when every node always admits).
        """
        realism = sc.fleet_realism()
        self.avail: Availability | None = None
        self.closed: list[bool] | None = None
        self._retired = [0.0, 0.0, 0.0]  # the counters of nodes taken out: busy s, KV block-s, preemptions
        self._retired_prefix = [0] * 5
        self._requeued = self._lost = 0
        if realism is None:
            return
        rng = np.random.default_rng(seed.spawn(1)[0])
        self.lose = realism.on_failure == "lose"
        self.avail = Availability(realism, rng, (self.W, self.WH), lambda t, arg: self.sched.push(t, _NODE, arg))
        self.closed = [False] * len(self.nodes)

    def _build_nodes(self, sc: Any, srv_seed: np.random.SeedSequence, sigma: float | None) -> tuple[Any, Any]:
        """The fleet's nodes (generic servers or engines); return the disciplines' (predict, estimate)."""
        n = sc.fleet.nodes
        srv = sc.fleet.server
        self.generic = srv is not None
        pools = [(p, s) for p, s in sc.pool_scenarios() if p.nodes > 0]
        #: Each node's pool (index into ``pools``), in pool order, and least_loaded's divisor: 1 for
        #: every node of a one-pool fleet (so its loads stay the plain integers), else its speed.
        self.pool_of = [k for k, (p, _) in enumerate(pools) for _ in range(p.nodes)]
        self._inv_speed: list[Any] = [1] * n
        if self.generic:
            speeds = [p.speed or 1.0 for p, _ in pools]
            self._new_node: Callable[[int], Any] = lambda i: GenericNode(srv.concurrency, index=i,
                                                                         speed=speeds[self.pool_of[i]])
            self.nodes: list[Any] = [self._new_node(i) for i in range(n)]
            self._set_speeds([srv.concurrency * x for x in speeds])
            self._svc_dist = srv.service_time
            self._svc_rng = np.random.default_rng(srv_seed)
            self._svc_buf: list[float] = []
            self._svc_i = 0
            predict, estimate = _generic_predictors(srv.service_time, sigma is not None)
            self.bs = 1
        else:
            check_scenario(sc)
            self.bs = sc.serving.block_size
            # Each pool's engine: its own performance model, KV capacity and engine settings.
            built = [(s.perf_model(), s.serving) for _, s in pools]

            def engine(i: int) -> Engine:
                perf, sv = built[self.pool_of[i]]
                node = Engine(perf, perf.kv_capacity_blocks, sv.block_size, sv.max_num_seqs,
                              sv.max_num_batched_tokens, index=i, prefix_caching=self.caching)
                node.first_token_events = False  # the fleet only reads completions
                node.merge_steps = True  # prefill step + decode run as one event (the driver's poke, _can_take)
                return node

            self._new_node = engine
            self.nodes = [engine(i) for i in range(n)]
            if len(pools) > 1:
                self._set_speeds([_engine_speed(s, perf) for (_, s), (perf, _) in zip(pools, built)])
            predict, estimate = _engine_predictors(pools[0][1], built[0][0], self)
        return predict, estimate

    def _set_speeds(self, speeds: list[float]) -> None:
        """least_loaded's divisors: a node's load counts as load / its pool's speed (relative to the
        fastest), so the router sends work where it is expected to finish first. Equal speeds leave
        the integer loads as they are."""
        if len(set(speeds)) > 1:
            top = max(speeds)
            self._inv_speed = [top / speeds[k] for k in self.pool_of]

    @property
    def now(self) -> float:
        """The time of the event being handled (the driver's clock)."""
        return self.sched.now

    @now.setter
    def now(self, t: float) -> None:
        self.sched.now = t

    # -- queues and nodes -------------------------------------------------------------

    def _make_source(self, qi: int) -> Callable[[Any, int], SimRequest | None | bool]:
        q = self.queues[qi]
        qload = self.qload

        peek, take = q.peek, q.take
        caching = self.caching

        def source(node: Any, free: int) -> SimRequest | None | bool:
            now = node.now
            self._asking = node
            r: SimRequest | None = peek(now)
            if r is None:
                return None
            w = r.w
            if (node.admit_need(r) if caching else w) > free:  # caching: less a prefix other requests there use
                return False  # head-of-line blocking (None would say the queue is empty)
            qload[qi] -= w
            take(r)
            r.state = NODE
            r.start = now
            self.n_waiting -= 1
            return r

        return source

    def _can_take(self, node: Node, q: Any, t: float) -> bool:
        """Whether waking the node now could start the queue's head on it.

        A node in a step that cannot be cut is not woken (its end comes soon and pulls);
        when a shorter plan would take the work (an engine's "steprun" whose prefill step's
        end could pull), the node cuts its plan and its new end is scheduled here.
        """
        ok = node.may_take(t)
        if ok is None:
            self._asking = node
            head = q.peek(t)
            if self.caching and head is not None:
                eng: Any = node  # an engine: a caching node needs the blocks its cached prefix does not cover
                return node.can_admit(eng.admit_need(head) * self.bs)
            return head is not None and node.can_admit(head.prompt)
        if not ok and node.cut_for_arrival(t):
            self.sched.resched(node)
        return ok

    def _offer(self, qi: int, candidates: Any, t: float) -> None:
        if t < self.busy_until:
            return  # every node is serving the stationary start's backlog
        q = self.queues[qi]
        nodes = self.nodes
        closed = self.closed
        for i in candidates:
            if not q.n:
                return
            if closed is not None and closed[i]:
                continue  # out, on notice or drained: it admits nothing
            node = nodes[i]
            if self._can_take(node, q, t):
                self.sched.poke(node, t)

    def _route(self, r: SimRequest) -> int:
        if self.routing == "round_robin":
            i = self._rr
            self._rr = (i + 1) % len(self.nodes)
            return i
        loads = self._loads()
        return loads.index(min(loads))

    def _loads(self) -> list[Any]:
        """least_loaded's measure of each node now: its load (KV blocks in use; busy slots,
        generic) plus the load queued for it, over its speed in a mixed fleet (expected work:
        ``_set_speeds``)."""
        t, qload, inv = self.now, self.qload, self._inv_speed
        return [(node.load(t) + qload[i]) * inv[i] for i, node in enumerate(self.nodes)]

    # -- request outcomes ---------------------------------------------------------------

    def _resolve(self, r: SimRequest) -> Batch:
        b = r.batch
        b.pending -= 1
        if b.measured:
            self.measured_open -= 1
            if not self.measured_open and self.marked_end:
                self.sched.stopped = True  # every measured request is settled: the run is over
        if not b.pending:
            b.requests = []  # settled: nothing reads them again, and refcounting frees them
        return b

    def _reject(self, r: SimRequest, reason: str) -> None:
        r.state = REJECTED
        b = self._resolve(r)
        if b.measured:
            st = self.st
            st.rejected += 1
            st.rejected_by[reason] = st.rejected_by.get(reason, 0) + 1
            self._miss(b)

    def _cancel(self, r: SimRequest, reason: str) -> None:
        r.state = CANCELLED
        b = self._resolve(r)
        if b.measured:
            st = self.st
            st.cancelled += 1
            st.cancelled_by[reason] = st.cancelled_by.get(reason, 0) + 1
            self._miss(b)

    def _miss(self, b: Batch) -> None:
        self.st.misses += 1
        if b.size > self.oversize:
            self.st.oversize_misses += 1
        self.st.by_sla[b.sla][1] += 1
        b.nmiss += 1
        if not b.missed:
            b.missed = True
            self.st.batches_missed += 1
            self._missed.append(b)

    def _episodes(self) -> list[int]:
        """Misses per congestion episode: missed batches grouped while each arrives within its SLA of the last.

        Misses come in episodes (a huge batch, a run of arrivals), and one episode's
        misses are correlated across its batches. Their count, not the requests', is
        how many independent observations of the tail a replication holds
        (``estimate``: the interval is reliable only with enough of them).
        """
        sizes: list[int] = []
        last = -math.inf
        for b in sorted(self._missed, key=lambda b: b.arrival):
            if b.arrival - last > b.sla or not sizes:
                sizes.append(b.nmiss)
            else:
                sizes[-1] += b.nmiss
            last = b.arrival
        return sizes

    def _complete(self, ev: Any) -> None:
        """A node's "done" event: its request completes, unless it was cancelled meanwhile."""
        r = ev.request
        if r.state != NODE:
            return
        t = ev.time
        r.state = DONE
        self.completions += 1
        b = r.batch
        b.pending -= 1
        if not b.pending:
            b.requests = []  # as in _resolve
        if b.measured:
            self.measured_open -= 1
            if not self.measured_open and self.marked_end:
                self.sched.stopped = True  # as in _resolve
            s = t - b.arrival
            st = self.st
            st.completed += 1
            st.sojourn_sum += s
            st.wait_sum += r.start - b.arrival
            soj = self._soj
            soj.append(s)
            ft = r.first_token_time
            if ft == ft:  # an engine's request (a generic server's has no tokens: nan)
                x = ft - b.arrival
                self._ttft.append(x)
                st.ttft_sum += x  # summed as they come (as the sojourns), whatever the folds
                if r.output > 1:
                    x = (t - ft) / (r.output - 1)
                    self._tpot.append(x)
                    st.tpot_sum += x
            if len(soj) >= self.sojourn_cap:  # the latencies, at most one per sojourn, fold with them
                self._fold_sojourns()
                self._fold_latencies()
            if s > b.sla:
                self._miss(b)

    def _fold_sojourns(self) -> None:
        """Move the exact sojourns into the replication's histogram (bounded memory)."""
        h = LogHistogram.of(np.frombuffer(self._soj, dtype=np.float64))
        st = self.st
        st.sojourn_hist = h if st.sojourn_hist is None else st.sojourn_hist.merge(h)
        self._soj = array("d")

    def _fold_latencies(self) -> None:
        """Move the token latencies into the replication's histograms (bounded memory; their sums are kept as
        each request completes)."""
        st = self.st
        for name in ("ttft", "tpot"):
            a = np.frombuffer(getattr(self, f"_{name}"), dtype=np.float64)
            if len(a):
                h = LogHistogram.of(a)
                old = getattr(st, f"{name}_hist")
                setattr(st, f"{name}_hist", h if old is None else old.merge(h))
            setattr(self, f"_{name}", array("d"))

    def _triage_drop(self, r: SimRequest, now: float) -> None:
        """A discipline gave up on a queued request (it cannot make its deadline); it left the queue."""
        self.n_waiting -= 1
        self.qload[r.queue] -= r.w
        self._cancel(r, "triage")

    def _unqueue(self, r: SimRequest) -> None:
        self.queues[r.queue].discard(r)
        self.n_waiting -= 1
        self.qload[r.queue] -= r.w

    # -- events ---------------------------------------------------------------------------

    def _next_arrival(self) -> None:
        if self.caching:  # (t, prompts, outputs, sla, the prompts' prefixes)
            b = next(self._stream)
            self.sched.push(b[0], _ARRIVAL, b[1:])
            return
        t, prompts, outputs, sla = next(self._stream)
        self.sched.push(t, _ARRIVAL, (prompts, outputs, sla))

    def _service_time(self) -> float:
        if self._svc_i >= len(self._svc_buf):
            self._svc_buf = self._svc_dist.sample(self._svc_rng, 8192).tolist()
            self._svc_i = 0
        x = self._svc_buf[self._svc_i]
        self._svc_i += 1
        return x

    def _arrive(self, t: float, prompts: list[int], outputs: list[int], sla: float, prefixes: Any = None) -> None:
        measured = self.W <= t < self.WH
        b = Batch(t, sla, measured)
        size = len(prompts)
        self._count_arrival(t, size, sla, measured)
        b.pending = size
        b.size = size
        reqs = b.requests
        generic, push = self.generic, self.push_routing
        mml, bs = self.max_model_len, self.bs
        queues, qload = self.queues, self.qload
        deadline = b.deadline
        touched: set[int] = set()
        joined: list[SimRequest] = []
        rid = self.rid
        load = 0  # pull routing: the batch joins the one queue at once, in order
        nan = math.nan
        # Work forecasts: the truth times a lognormal error, drawn before anything is queued.
        fc = None if self._fc_sigma is None or self._fc_rng is None else iter(np.exp(self._fc_sigma * self._fc_rng.standard_normal(size)).tolist())
        # least_loaded: nothing but the queued load changes while a batch is routed, so one
        # heap of (load, node) per batch picks as _route would (least load, then lowest index)
        # in O(log nodes) a request instead of O(nodes).
        least = None
        inv = self._inv_speed
        if push and self.routing == "least_loaded":
            least = [(x, i) for i, x in enumerate(self._loads())]
            heapq.heapify(least)
        for p, o in zip(prompts, outputs):
            r = SimRequest(rid, p, o)
            rid += 1
            r.batch = b
            r.deadline = deadline
            r.start = nan
            r.inq = False
            reqs.append(r)
            if generic:
                r.service = self._service_time()
            elif p < 1 or o < 1:
                self._reject(r, "empty")
                continue
            elif p + o > mml:
                self._reject(r, "max_model_len")
                continue
            if fc is not None:
                r.fc = next(fc) * (r.service if generic else o)
            r.state = QUEUED
            joined.append(r)
            w = r.w = 1 if generic else -(-p // bs)
            if push:
                if least is not None:
                    x, qi = least[0]
                    heapq.heapreplace(least, (x + w * inv[qi], qi))
                else:
                    qi = self._route(r)
                r.queue = qi
                queues[qi].push(r)
                qload[qi] += w
                self.n_waiting += 1
                touched.add(qi)
            else:
                r.queue = 0
                load += w
        if prefixes is not None:
            for r, x in zip(reqs, prefixes):
                r.prefix = x
        if not push and joined:
            queues[0].extend(joined)
            qload[0] += load
            self.n_waiting += len(joined)
        self.rid = rid
        self._arrived(b, joined, touched, t)

    def _count_arrival(self, t: float, size: int, sla: float, measured: bool) -> None:
        """A batch of ``size`` arrives: the steady-state series (requests queued as it arrives)
        and, measured, the arrival counts."""
        if t < self.WH:
            k = min(int(t / self._bin_w), BINS - 1)
            self._qsum[k] += self.n_waiting
            self._qn[k] += 1
            if measured:
                h = 2 * int(t >= self.W + 0.5 * self.H)
                self._half[h // 2] += self.n_waiting
                self._half[2 + h // 2] += 1
        if measured:
            st = self.st
            if size > st.size_max:
                st.size_max = size
            st.arrived += size
            cls = st.by_sla.get(sla)
            if cls is None:
                cls = st.by_sla[sla] = [0, 0]
            cls[0] += size
            st.batches += 1
            st.batch_size_sum += size
            st.batch_size_sq += size * size
            self.measured_open += size

    def _arrived(self, b: Batch, joined: list[SimRequest], touched: set[int], t: float) -> None:
        """The batch's requests are queued (``joined``; in the push queues ``touched``): open
        it for its deadline, offer the work to the nodes, then apply the admission cap."""
        if b.pending:
            sla, deadline = b.sla, b.deadline
            dq = self._open.get(sla)
            if dq is None:
                dq = self._open[sla] = deque()
            while dq and dq[0].pending == 0:
                dq.popleft()
            dq.append(b)
            if self.cancel and deadline < self._timer:
                self._set_timer(deadline)
        if self.push_routing:
            for qi in sorted(touched):
                self._offer(qi, (qi,), t)
        else:
            self._offer(0, range(len(self.nodes)), t)
        mq = self.max_queue
        if mq is not None and self.n_waiting > mq:
            # Admission: what cannot start and finds the queue full is rejected, the batch's last first.
            for r in reversed(joined):
                if self.n_waiting <= mq:
                    break
                if r.state == QUEUED:
                    self._unqueue(r)
                    self._reject(r, "queue_full")

    def _expire(self, t: float) -> None:
        """Cancel the unfinished work of every batch whose deadline has come."""
        touched: set[int] = set()
        pend = self.sched.pend  # removed from their nodes at the next boundary (the driver's poke)
        for dq in self._open.values():
            while dq and (dq[0].pending == 0 or dq[0].deadline <= t):
                b = dq.popleft()
                if b.pending == 0:
                    continue
                for r in b.requests:
                    s = r.state
                    if s == QUEUED:
                        self._unqueue(r)
                        self._cancel(r, "deadline")
                    elif s == NODE:
                        self._cancel(r, "deadline")
                        pend[r.node].append(r)
                        touched.add(r.node)
                b.requests = []
        for i in sorted(touched):
            self.sched.poke(self.nodes[i], t)
        nxt = min((dq[0].deadline for dq in self._open.values() if dq), default=math.inf)
        if nxt < math.inf:
            self._set_timer(nxt)

    def _set_timer(self, t: float) -> None:
        # Only the latest timer is live (its version), and it is always the earliest deadline.
        self._timer = t
        self._timer_v += 1
        self.sched.push(t, _DEADLINE, None, self._timer_v)

    def _counters(self, t: float) -> tuple[float, float, int, int]:
        """(busy seconds, KV block-seconds, preemptions, completions) up to ``t``, to within one step."""
        busy, kv = self._retired[0], self._retired[1]
        pre = int(self._retired[2])
        for node in self.nodes:
            b, k, n = node.counters(t)
            busy += b
            kv += k
            pre += n
        return busy, kv, pre, self.completions

    def _prefix_counters(self) -> tuple[int, ...]:
        """The nodes' prefix-cache counters, summed (``ReplicationStats.prefix``)."""
        keys = ("queries", "query_tokens", "hit_requests", "hit_tokens", "evictions")
        return tuple(sum(getattr(node.cache, k) for node in self.nodes) + x for k, x in zip(keys, self._retired_prefix))

    #: When set, a long replication reports its progress on stderr under this label.
    progress_label: str | None = None
    #: When set, called with the share of the measured span simulated, every 10% (a progress bar).
    on_progress: Callable[[float], None] | None = None

    def _mark(self, name: str) -> None:
        if name == "release":  # the backlog is done: every node may take work
            for qi in range(len(self.queues)):
                self._offer(qi, (qi,) if self.push_routing else range(len(self.nodes)), self.now)
            return
        if name.startswith("progress:"):
            if self.on_progress is not None:
                self.on_progress(int(name[9:]) / 100.0)
                return
            now = time.perf_counter()
            if now - self._last_report >= 5.0:  # at most one line per 5 s; short runs stay quiet
                self._last_report = now
                print(f"{self.progress_label}: {name[9:]}% of the measured span simulated "
                      f"({now - self._wall0:.0f} s)", file=sys.stderr, flush=True)
            return
        self._marks[name] = self._counters(self.now)
        if self.caching:
            self._pmarks[name] = self._prefix_counters()
        if name == "end":
            self.marked_end = True
            if not self.measured_open:
                self.sched.stopped = True

    # -- nodes out and back (``sim.availability``) ----------------------------------------

    def _node_changed(self, i: int, old: int, t: float) -> None:
        """Node i's mask went from ``old`` to its present value at ``t``: take it out with its
        requests (failed or reclaimed), let it admit again, or stop it admitting."""
        assert self.avail is not None and self.closed is not None
        new = self.avail.mask[i]
        if new & OUT and not old & OUT:
            self._take_out(i, t, lose=bool(self.lose and new & ~old & FAIL))  # a failure, not a reclaim
        closed = new != 0
        node = self.nodes[i]
        if closed == self.closed[i]:
            return
        self.closed[i] = closed
        node.source = _nothing if closed else self._sources[i]
        if not closed:
            self._offer(0, (i,), t)

    def _take_out(self, i: int, t: float, lose: bool) -> None:
        """Node i fails or is reclaimed at ``t``: its step end is dropped, a fresh (empty, not
        admitting) node stands in its place for when it returns, and its requests are lost
        (counted as misses) or sent back to the queue to start again from scratch."""
        sched, node = self.sched, self.nodes[i]
        b, k, p = node.counters(t)
        ret = self._retired
        ret[0] += b
        ret[1] += k
        ret[2] += p
        if self.caching:
            keys = ("queries", "query_tokens", "hit_requests", "hit_tokens", "evictions")
            for j, key in enumerate(keys):
                self._retired_prefix[j] += getattr(node.cache, key)
        if self.generic:
            held = [r for _, _, r in node.heap if r.alive] + list(node.waiting)
        else:
            held = list(node.running) + list(node.waiting)
        held = sorted((r for r in held if r.state == NODE), key=lambda r: r.rid)
        sched.version[i] += 1  # its planned step end is stale
        sched.sched[i] = math.inf
        sched.pend[i].clear()
        fresh = self._new_node(i)
        fresh.now = t
        if self.generic:
            fresh._last = t
        fresh.source = _nothing
        self.nodes[i] = fresh  # the scheduler's list too
        if lose:
            for r in held:
                if r.batch.measured:
                    self._lost += 1
                self._cancel(r, "node_failure")
            return
        self._requeue(held, t)

    def _requeue(self, held: list[SimRequest], t: float) -> None:
        """Requests of a node taken out go back to the central queue, to start again from scratch
        (their batch, arrival and deadline kept); under FIFO at its head, in arrival order, as the
        oldest work there is. A generic server draws each a new service time (repeat-different:
        for exponential service, the same as resuming)."""
        q = self.queues[0]
        for r in held:
            Request.__init__(r, r.rid, r.prompt, r.output, r.payload, r.prefix)
            r.state = QUEUED
            r.start = math.nan
            if self.generic:
                r.service = self._service_time()
            self.qload[0] += r.w
            self.n_waiting += 1
            if r.batch.measured:
                self._requeued += 1
        if isinstance(q, Fifo):
            for r in held:
                r.inq = True
            q.n += len(held)
            q.q.extendleft(reversed(held))
        else:
            for r in held:
                q.push(r)
        self._offer(0, range(len(self.nodes)), t)

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> ReplicationStats:
        """The replication: the driver's loop (``Scheduler.run``) over the nodes and the fleet's
        events, until every measured request is settled (``stopped``) or the cap."""
        wall = time.perf_counter()
        self._wall0 = wall
        self._last_report = wall
        push = self.sched.push
        if self.busy_until > 0:
            push(self.busy_until, _MARK, "release")
        push(self.W, _MARK, "start")
        push(self.WH, _MARK, "end")
        if self.progress_label or self.on_progress is not None:
            for k in range(1, 10):
                push(self.W + self.H * k / 10, _MARK, f"progress:{10 * k}")
        self._next_arrival()
        if self.avail is not None:
            self.avail.start()
            for i, m in enumerate(self.avail.mask):
                if m:
                    self._node_changed(i, 0, 0.0)
        self.sched.run(self._event, self.cap)
        if not self.marked_end:  # pragma: no cover - the end mark precedes the cap
            self._mark("end")
        return self._finish(wall)

    def _event(self, t: float, kind: int, arg: Any, ver: int) -> None:
        """One of the fleet's own events (the driver fires the nodes' step ends itself)."""
        if kind == _ARRIVAL:
            self._arrive(t, *arg)
            self._next_arrival()
        elif kind == _NODE:
            assert self.avail is not None
            for i, old in self.avail.event(t, arg):
                self._node_changed(i, old, t)
        elif kind == _DEADLINE:
            if ver != self._timer_v:
                return  # superseded: only the latest timer is live
            self._timer = math.inf
            self._expire(t)
        else:
            self._mark(arg)

    def _finish(self, wall: float) -> ReplicationStats:
        st = self.st
        # Measured requests still unresolved (only with on_deadline = "finish"): past deadline.
        for dq in self._open.values():
            for b in dq:
                if b.measured and b.pending:
                    for r in b.requests:
                        if r.state in (QUEUED, NODE):
                            st.in_system += 1
                            self._miss(b)
        if st.sojourn_hist is not None:
            self._fold_sojourns()
        st.sojourn = np.array(self._soj, dtype=np.float64)
        self._fold_latencies()
        st.miss_episodes = self._episodes()
        st.queue_bins, st.queue_bins_n = self._qsum, self._qn
        hs = self._half
        st.queue_halves = (hs[0] / hs[2] if hs[2] else math.nan, hs[1] / hs[3] if hs[3] else math.nan)
        b0, k0, p0, c0 = self._marks["start"]
        b1, k1, p1, c1 = self._marks["end"]
        n, H = len(self.nodes), self.H
        st.busy_fraction = (b1 - b0) / (n * H)
        if self.nodes[0].total_blocks:  # a node with a KV cache
            st.kv_utilization = (k1 - k0) / (sum(node.total_blocks for node in self.nodes) * H)
        st.preemptions = p1 - p0
        if self.caching:
            keys = ("lookups", "lookup_tokens", "hit_requests", "hit_tokens", "evictions")
            st.prefix = {k: y - x for k, x, y in zip(keys, self._pmarks["start"], self._pmarks["end"])}
        st.completions_in_horizon = c1 - c0
        if self.avail is not None:
            st.realism = {**self.avail.summary(self.WH), "requeued": float(self._requeued), "lost": float(self._lost)}
        st.sim_end_s = self.now
        st.requests_simulated = self.rid
        st.wall_s = time.perf_counter() - wall
        return st


def _nothing(node: Any, free: int) -> None:
    """The source of a node that admits nothing (out, on notice or drained): an empty queue."""
    return None


def _engine_speed(scenario: Any, perf: Any) -> float:
    """A pool's node speed for least_loaded: requests a second its engine decodes at the batch a
    saturated node runs (``_engine_predictors``' batch: KV- or max_num_seqs-limited), on the
    workload's mean request. A ranking of the pools, not the fast tier's measured capacity."""
    mean_in, mean_out = mean_tokens(scenario)
    ctx = mean_in + mean_out / 2.0
    batch = max(1, min(scenario.serving.max_num_seqs, int(perf.kv_capacity_tokens // max(ctx, 1.0))))
    return float(batch / (perf.alpha() * mean_in * batch + mean_out * perf.beta(batch, ctx)))


def _median_output(scenario: Any) -> float:
    wl = scenario.workload
    if wl.trace is not None:
        _, _, o = load_trace(scenario.path(wl.trace), wl.format)
        return float(np.median(o))
    return float(math.ceil(wl.output_tokens.ppf(0.5)))  # outputs are drawn rounded up


def _engine_predictors(scenario: Any, perf: Any, fleet: FleetSim) -> tuple[Any, Any]:
    """A request's predicted work (``predict``) and its service estimate (``estimate``) on an engine.

    Both are prefill at the full-chunk rate plus the output length in decode steps, at a
    typical context (the mean prompt plus half the mean output); neither counts
    further waiting or preemption. ``predict``, a fixed ordering key, takes the mean
    output (or the request's forecast) at the batch a saturated engine runs (KV- or
    ``max_num_seqs``-limited). ``estimate``, for triage's "would it more likely miss",
    takes the median output (or the forecast) at the batch of the node asking for
    work with the request added, so an idle node predicts a lone request's time and a
    full one a full batch's.
    """
    mean_in, mean_out = mean_tokens(scenario)
    ctx = mean_in + mean_out / 2.0
    max_seqs = scenario.serving.max_num_seqs
    batch = max(1, min(max_seqs, int(perf.kv_capacity_tokens // max(ctx, 1.0))))
    alpha: float = perf.alpha()
    beta_sat: float = perf.beta(batch, ctx)
    beta = functools.lru_cache(maxsize=None)(lambda b: perf.beta(b, ctx))  # a decode step of b sequences
    forecast = fleet._fc_sigma is not None
    med_out = _median_output(scenario) if not forecast else 0.0

    def predict(r: SimRequest) -> float:
        return alpha * r.prompt + (r.fc if forecast else mean_out) * beta_sat

    def estimate(r: SimRequest) -> float:
        node = fleet._asking
        b = batch if node is None else min(len(node.running) + 1, max_seqs)
        step: float = beta(b)
        return alpha * r.prompt + (r.fc if forecast else med_out) * step

    return predict, estimate


def _generic_predictors(service: Any, forecast: bool) -> tuple[Any, Any]:
    """``predict`` and ``estimate`` on a generic server: the forecast, else the mean and the median."""
    if forecast:
        fc = lambda r: r.fc  # noqa: E731
        return fc, fc
    mean, median = float(service.mean), float(service.ppf(0.5))
    return (lambda r: mean), (lambda r: median)


def check_scenario(scenario: Any) -> None:
    """What the simulator needs beyond the scenario's own validation; raises ConfigError."""
    if scenario.fleet.server is None:
        scenario.serving.check_engine()  # the rule stated once, in the schema (a trial's copy skips validation)
    if scenario.workload.trace is not None:
        mean_tokens(scenario)  # reads (and caches) the trace: a bad file fails here, once


def run_replication(scenario: Any, seed: np.random.SeedSequence, progress_label: str | None = None,
                    start_busy_s: float = 0.0, oversize: float = math.inf,
                    on_progress: Callable[[float], None] | None = None,
                    keep_samples: bool = False) -> ReplicationStats:
    """Simulate one replication of ``scenario`` from ``seed`` (reporting progress under a label, or to
    ``on_progress`` with the share of the measured span done). ``keep_samples``: every sojourn
    exact, however many (otherwise folded into a histogram past ``_sojourns.EXACT_CAP``). Runs in the
    compiled fleet kernel where it covers the scenario (``_fleet_kernel.supported``: same results) and
    numba is in use, else in ``FleetSim``."""
    sim = FleetSim(scenario, seed, start_busy_s, oversize)
    if keep_samples:
        sim.sojourn_cap = math.inf
    sim.progress_label = progress_label
    sim.on_progress = on_progress
    if _fleet_kernel.fleet_kernel() is not None and _fleet_kernel.supported(scenario):
        return _fleet_kernel.run(sim)
    return sim.run()
