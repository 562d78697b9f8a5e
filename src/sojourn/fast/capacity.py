"""What one node sustains for the workload mix, and the work measure the fast path runs on.

The fast path treats the fleet as one server of capacity ``nodes`` node-seconds per
second. A request's *work* is the node-seconds it takes out of a saturated node:

    w(I, O) = a·share(I, O) + c_tok·I + c_pair·I²/2 + c_ctx·((O − 1)·I + O(O − 1)/2)

each term of ``PerfModel.step_time`` charged to the request that causes it:

* prefill attention pairs (I²/2 whatever the chunking) and the KV its decode steps
  read (context I + g at its g-th step), exactly, at the model's own rates;
* prefill tokens at their marginal cost in the steps that carried them
  (``c_tok``: what they added to those steps on the saturated run, attention
  aside; nearly nothing while steps are bound by weight reads, the GEMM cost per
  token once prefill makes them compute-bound);
* the rest of each step (fixed overhead, weight reads, decode GEMMs, all-reduces)
  to the resource that limits how many requests run at once: a sequence slot
  held for O steps (share = O) when ``max_num_seqs`` binds, or the KV tokens held
  over those steps (share = O·I + O(O + 1)/2) when the cache fills first. Its rate
  ``a`` is set so that the works of the requests the saturated node completed add
  up to the time they took.

So the mean work is 1/throughput and the fast path's throughput agrees with the
engine by construction; and the split agrees with the engine on sub-mixes too
(e.g. the quartiles of the Azure conversation trace by prompt length, each run
saturated on its own: within 3%, where charging every token alike was off by 20%).
That matters when batches are small and for shortest-first orders.

The saturated node is the request-level engine itself (``sojourn.sim.engine``) fed
from an endless queue of requests drawn from the scenario's distributions with a
fixed seed, FIFO with head-of-line blocking as the fleet's central queue does; its
throughput is cached per node configuration. A generic c-server node needs no run:
it serves c/E[S] requests per second and a request's work is S/c.
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sojourn._cache import file_stamp, register
from sojourn._errors import ConfigError
from sojourn.fast.outcomes import Latency, Sampler

__all__ = [
    "LoadReport",
    "NodeCapacity",
    "analytic_node_throughput",
    "clear_capacity_cache",
    "load_report",
    "node_capacity",
]

#: Seed of the request mix the saturated node runs on: fixed, so capacity is a
#: deterministic function of the configuration (and cacheable).
MIX_SEED = 0x5A7_0C0DE
#: Requests drawn for the mix's moments (and the bootstrap pool of request works).
MIX_SIZE = 1 << 20


@dataclass(frozen=True, eq=False)
class NodeCapacity:
    """Sustained throughput of one node at saturation for the workload mix, and the request work law.

    Work is in node-seconds (a node serves 1 node-second per second). ``works`` is a
    fixed sample of accepted requests' works (the bootstrap pool for batches of few
    requests); ``reject_fraction`` is the share of requests the engine refuses
    (prompt + output beyond ``max_model_len``), which never reach a node.
    """

    requests_per_s: float
    input_tokens_per_s: float
    output_tokens_per_s: float
    #: Mean number of requests in service at saturation (Little: throughput × latency).
    concurrency: float
    #: Mean latency of a request in a saturated node (admission to completion).
    latency_s: float
    work_mean: float
    work_var: float
    reject_fraction: float
    source: str
    analytic_requests_per_s: float = math.nan
    measured_requests: int = 0
    preemptions: int = 0
    wall_s: float = 0.0
    works: NDArray[np.float64] = field(default_factory=lambda: np.empty(0), repr=False)
    #: Input tokens of the pool requests (the key of shortest-prompt-first), aligned with ``works``.
    inputs: NDArray[np.float64] = field(default_factory=lambda: np.empty(0), repr=False)
    #: Draws fresh request works (generic servers); None means bootstrap from ``works``.
    sampler: Sampler | None = field(default=None, repr=False)
    #: Law of a request's latency in service (admission to completion) on a saturated node.
    latency: Latency | None = field(default=None, repr=False)
    #: Work (node-seconds) the other requests in service still hold when one starts; nan: from the law.
    in_service_work: float = math.nan
    #: (a, c_tok, c_pair, c_ctx, kv_bound) of the work measure (module docstring); None for generic nodes.
    work_coef: tuple[float, float, float, float, bool] | None = None
    #: Output tokens of the pool requests, aligned with ``works`` (engine nodes).
    outputs: NDArray[np.float64] = field(default_factory=lambda: np.empty(0), repr=False)
    #: Share of the prompt tokens the saturated node found in its prefix cache (nan: no caching).
    prefix_cached_share: float = math.nan
    _forecast_keys: dict[float, NDArray[np.float64]] = field(default_factory=dict, repr=False)

    def forecast_key(self, sigma: float) -> NDArray[np.float64]:
        """The pool requests' predicted works under a forecast of log-error ``sigma`` (sjf_work's key).

        As the request tier's ``serving.forecast_sigma``: the output length (engine) or
        the service time (generic node) times a lognormal error, from a fixed seed.
        """
        key = self._forecast_keys.get(sigma)
        if key is None:
            err = np.exp(sigma * np.random.default_rng((MIX_SEED, 7)).standard_normal(len(self.works)))
            key = self.works * err if self.work_coef is None else _work(self.inputs, self.outputs * err, self.work_coef)
            self._forecast_keys[sigma] = key
        return key

    @functools.cached_property
    def work_quantiles(self) -> NDArray[np.float64]:
        """16,384 evenly spaced order statistics of the work pool (its law, compressed; for m.g.f.s)."""
        w = np.sort(self.works)
        if len(w) <= 16_384:
            return w
        return w[np.linspace(0, len(w) - 1, 16_384).round().astype(np.int64)]

    @property
    def tokens_per_s(self) -> float:
        return self.input_tokens_per_s + self.output_tokens_per_s

    @property
    def work_second_moment(self) -> float:
        return self.work_var + self.work_mean**2

    @property
    def work_excess_mean(self) -> float:
        """Mean residual work of a request in service, E[w²] / (2 E[w])."""
        return self.work_second_moment / (2.0 * self.work_mean)

    def fleet_in_service(self, nodes: int) -> float:
        """D: the work the other requests in service hold when a request starts, fleet-wide.

        Measured on the saturated engine (per node, times the nodes); for a generic
        node, the nodes·c − 1 other slots each hold a residual E[w²]/2E[w].
        """
        if math.isfinite(self.in_service_work):
            return nodes * self.in_service_work
        return max(nodes * self.concurrency - 1.0, 0.0) * self.work_excess_mean

    def work_of(self, inp: NDArray[Any], out: NDArray[Any], rng: np.random.Generator | None = None
                ) -> NDArray[np.float64]:
        """Works of requests of these sizes (a generic node ignores sizes: fresh service draws)."""
        if self.work_coef is None:
            return self.sample_work(rng if rng is not None else np.random.default_rng(MIX_SEED), len(inp))
        return _work(np.asarray(inp), np.asarray(out), self.work_coef)

    def sample_work(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """``n`` request works (node-seconds) of accepted requests."""
        if self.sampler is not None:
            return self.sampler(rng, n)
        works: NDArray[np.float64] = rng.choice(self.works, size=n)
        return works

    @property
    def nbytes(self) -> int:
        """Bytes its arrays hold (the request pool, its latency law, cached keys): what caching it costs."""
        arrays = [self.works, self.inputs, self.outputs, *self._forecast_keys.values()]
        if "work_quantiles" in self.__dict__:
            arrays.append(self.__dict__["work_quantiles"])
        n = sum(int(a.nbytes) for a in arrays)
        if self.latency is not None:
            n += sum(int(v.nbytes) for v in vars(self.latency).values() if isinstance(v, np.ndarray))
        return n

    def scaled(self, factor: float) -> NodeCapacity:
        """This node with ``factor`` times its capacity: every request takes 1/factor the node-seconds.

        For sensitivity: ``scaled(0.98)`` is the node if its measured throughput were 2% optimistic.
        """
        import dataclasses

        f = float(factor)
        lat = self.latency
        coef = self.work_coef
        new = dataclasses.replace(
            self,
            requests_per_s=self.requests_per_s * f,
            input_tokens_per_s=self.input_tokens_per_s * f,
            output_tokens_per_s=self.output_tokens_per_s * f,
            latency_s=self.latency_s / f,
            work_mean=self.work_mean / f,
            work_var=self.work_var / (f * f),
            works=self.works / f,
            sampler=None if self.sampler is None else _scaled_sampler(self.sampler, f),
            latency=None if lat is None else Latency(lat.x / f, lat.f),
            in_service_work=self.in_service_work / f,
            work_coef=None if coef is None else (coef[0] / f, coef[1] / f, coef[2] / f, coef[3] / f, coef[4]),
            source=f"{self.source}, scaled x{f:g}",
            _forecast_keys={},
        )
        if f > 0:  # the order statistics of works / f are those of works over f: no second sort of the pool
            new.__dict__["work_quantiles"] = self.work_quantiles / f
        return new

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests_per_s": self.requests_per_s,
            "tokens_per_s": self.tokens_per_s,
            "input_tokens_per_s": self.input_tokens_per_s,
            "output_tokens_per_s": self.output_tokens_per_s,
            "concurrency": self.concurrency,
            "latency_s": self.latency_s,
            "reject_fraction": self.reject_fraction,
            "source": self.source,
            "analytic_requests_per_s": self.analytic_requests_per_s,
            "measured_requests": self.measured_requests,
            "preemptions": self.preemptions,
            "wall_s": self.wall_s,
        } | ({} if math.isnan(self.prefix_cached_share) else {"prefix_cached_share": self.prefix_cached_share})


# --- the cache -------------------------------------------------------------------

_CACHE: OrderedDict[str, NodeCapacity] = OrderedDict()
#: The cache holds at most this many bytes of capacities (an engine's is ~30 MB: its request
#: pool's works and token counts, and its latency law). A study whose space has a continuous
#: engine setting (gpu_memory_utilization) measures a new capacity every trial: counted in
#: entries, the cache grew ~20 MB a trial to 7.8 GB by trial 361 (issue 12). The
#: environment variable SOJOURN_CAPACITY_CACHE_MB sets another bound.
_CACHE_BYTES = int(float(os.environ.get("SOJOURN_CAPACITY_CACHE_MB", "512")) * 2**20)
_LOCK = threading.Lock()


def clear_capacity_cache() -> None:
    with _LOCK:
        _CACHE.clear()


register("node capacity", clear_capacity_cache)


def _cache_key(scenario: Any, measure: int) -> str:
    """Everything a node's saturated throughput depends on, and nothing else (not the node count)."""
    sv = scenario.serving
    wl = scenario.workload
    data = {
        "model": scenario.model.model_dump(mode="json"),
        "gpu": scenario.fleet.gpu,
        "tp": scenario.fleet.tp,
        "server": None if scenario.fleet.server is None else scenario.fleet.server.model_dump(mode="json"),
        "serving": sv.model_dump(mode="json", exclude={"discipline", "max_queue", "on_deadline", "forecast_sigma"}),
        "input": None if wl.input_tokens is None else wl.input_tokens.model_dump(mode="json"),
        "output": None if wl.output_tokens is None else wl.output_tokens.model_dump(mode="json"),
        "trace": None if wl.trace is None else [file_stamp(scenario.path(wl.trace)), wl.format],
        # Prefix caching: what the prompts share, when the engine caches it (absent otherwise, as before it).
        **({"prefix": wl.prefix.model_dump(mode="json")} if scenario.prefix_caching else {}),
        "catalogue": None if scenario.catalogue is None else scenario.catalogue.model_dump(mode="json"),
        "catalogue_file": (file_stamp(scenario.path(scenario.catalogue.file))
                           if scenario.catalogue is not None and scenario.catalogue.file else None),
        "base_dir": scenario.base_dir,
        "measure": measure,
    }
    return json.dumps(data, sort_keys=True, default=str)


def node_capacity(scenario: Any, *, measure: int = 100_000, mix: tuple[Any, Any] | None = None) -> NodeCapacity:
    """One node's saturation throughput for the scenario's request mix (cached per node configuration).

    ``measure`` completions are timed on the saturated engine after a warm-up
    (1-3 s, once per node configuration); the rate's statistical error is about
    CV(work)/sqrt(measure), some 0.2% by default. A load within a few 0.1% of 1
    needs more: P(miss) there moves with 1/(1 − rho).
    A trace workload's mix is the trace's own (input, output) pairs; ``mix`` gives
    the token arrays directly instead (not cached).
    """
    if scenario.fleet.pools is not None:
        return _pool_capacity(scenario, measure, mix)
    key = _cache_key(scenario, measure) if mix is None else None
    if key is not None:
        with _LOCK:
            hit = _CACHE.get(key)
            if hit is not None:
                _CACHE.move_to_end(key)
                return hit
    t0 = time.perf_counter()
    if scenario.fleet.server is not None:
        cap = _generic_capacity(scenario)
    else:
        cap = _engine_capacity(scenario, measure, mix)
    cap = _with_wall(cap, time.perf_counter() - t0)
    if key is not None:
        with _LOCK:
            _CACHE[key] = cap
            total = sum(c.nbytes for c in _CACHE.values())
            while len(_CACHE) > 1 and total > _CACHE_BYTES:
                _, old = _CACHE.popitem(last=False)
                total -= old.nbytes
    return cap


def _pool_capacity(scenario: Any, measure: int, mix: tuple[Any, Any] | None) -> NodeCapacity:
    """The mean node of a mixed fleet (``fleet.pools``): each pool's node capacity measured on its
    own engine (cached per pool), the fleet's capacity their sum, shared evenly by its nodes.

    The fast tier reads a fleet as ``fleet.nodes`` identical nodes. A mixed fleet is read as that
    many nodes of its mean speed, each request's work the first pool's law scaled to it, the
    requests in service and the work they hold the pools' node-weighted means. What that leaves
    out: a request's work depends on the node that serves it (one slow node holds a long request
    longer than the mean node would), and a pool's share of each request kind (prefill-heavy or
    decode-heavy) is not its share of the capacity; the request tier models both. Agreement is
    tested on a two-pool fleet (tests/test_mixed_fleet.py). A one-pool list is its pool's capacity.
    """
    import dataclasses

    pools = [(p, sc) for p, sc in scenario.pool_scenarios() if p.nodes > 0]
    caps = []
    for p, sc in pools:
        cap = node_capacity(sc, measure=measure, mix=mix)
        caps.append(cap if p.speed is None else cap.scaled(p.speed))  # a generic pool's faster servers
    if len(caps) == 1:
        return caps[0]
    counts = [p.nodes for p, _ in pools]
    n = sum(counts)
    rps = sum(k * c.requests_per_s for k, c in zip(counts, caps)) / n
    ref = caps[0]
    # A pool-p node-second is rps_p / rps mean-node seconds of work.
    held = sum(k * c.in_service_work * c.requests_per_s / rps for k, c in zip(counts, caps)) / n
    mean = ref.scaled(rps / ref.requests_per_s)
    # A request's time in service is its pool's (real seconds, not work): the pools' laws mixed
    # by the share of the requests each serves at saturation.
    share = [k * c.requests_per_s / (n * rps) for k, c in zip(counts, caps)]
    latency = mean.latency
    if all(c.latency is not None for c in caps):
        knots = np.unique(np.concatenate([c.latency.x for c in caps if c.latency is not None]))
        mixed = sum(w * np.interp(knots, c.latency.x, c.latency.f, left=0.0, right=1.0)
                    for w, c in zip(share, caps) if c.latency is not None)
        latency = Latency(knots, np.asarray(mixed))
    return dataclasses.replace(
        mean,
        latency=latency,
        latency_s=sum(w * c.latency_s for w, c in zip(share, caps)),
        concurrency=sum(k * c.concurrency for k, c in zip(counts, caps)) / n,
        in_service_work=held,
        reject_fraction=max(c.reject_fraction for c in caps),
        measured_requests=sum(c.measured_requests for c in caps),
        preemptions=sum(c.preemptions for c in caps),
        source="mixed fleet, the mean of its nodes: " + "; ".join(
            f"{k} x {sc.fleet.gpu} tp{sc.fleet.tp} at {c.requests_per_s:.4g} req/s ({c.source})"
            for k, (_, sc), c in zip(counts, pools, caps)),
        _forecast_keys={},
    )


def _with_wall(cap: NodeCapacity, wall: float) -> NodeCapacity:
    object.__setattr__(cap, "wall_s", wall)
    return cap


# --- generic c-server nodes -----------------------------------------------------------


def _scaled_sampler(sampler: Sampler, f: float) -> Sampler:
    """Draws of ``sampler`` divided by ``f``."""
    return lambda rng, n: sampler(rng, n) / f


def _generic_capacity(scenario: Any) -> NodeCapacity:
    srv = scenario.fleet.server
    dist, c = srv.service_time, srv.concurrency
    mean, var = float(dist.mean), float(dist.var)
    if not (math.isfinite(mean) and mean > 0):
        raise ConfigError("fleet.server.service_time", f"mean is {mean}; the fast path needs a finite positive mean")

    def sampler(rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        works: NDArray[np.float64] = dist.sample(rng, n) / c
        return works

    rps = c / mean
    return NodeCapacity(
        requests_per_s=rps,
        input_tokens_per_s=0.0,
        output_tokens_per_s=0.0,
        concurrency=float(c),
        latency_s=mean,
        work_mean=mean / c,
        work_var=var / (c * c) if math.isfinite(var) else math.inf,
        reject_fraction=0.0,
        source="generic server: concurrency / E[service_time]",
        analytic_requests_per_s=rps,
        works=sampler(np.random.default_rng(MIX_SEED), 1 << 16),
        # Prompt lengths (the key of shortest-prompt-first), independent of a generic service time.
        inputs=_generic_prompts(scenario, 1 << 16),
        sampler=sampler,
        latency=Latency.from_distribution(dist),
    )


def _generic_prompts(scenario: Any, n: int) -> NDArray[np.float64]:
    """Prompt lengths for shortest-prompt-first on generic nodes: the trace's, or the distribution's."""
    wl = scenario.workload
    rng = np.random.default_rng(MIX_SEED + 1)
    if wl.trace is not None:
        from sojourn.sim.workload import load_trace

        _, inp, _ = load_trace(scenario.path(wl.trace), wl.format)
        return rng.choice(inp, n).astype(np.float64)
    if wl.input_tokens is None:
        return np.ones(n)
    tokens: NDArray[np.float64] = wl.input_tokens.sample_int(rng, n).astype(np.float64)
    return tokens


# --- LLM engine nodes --------------------------------------------------------------------


def _mix_tokens(scenario: Any, n: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    wl = scenario.workload
    if wl.input_tokens is None or wl.output_tokens is None:
        raise ConfigError("workload", "the fast path needs input_tokens and output_tokens (or a trace mix)")
    rng = np.random.default_rng(MIX_SEED)
    return wl.input_tokens.sample_int(rng, n), wl.output_tokens.sample_int(rng, n)


def _accepted(scenario: Any, perf: Any, inp: NDArray[Any], out: NDArray[Any]) -> NDArray[np.bool_]:
    """Requests the engine takes: positive sizes, prompt + output within max_model_len and the KV cache."""
    total = inp + out
    limit = min(scenario.serving.max_model_len, perf.kv_capacity_tokens)
    ok: NDArray[np.bool_] = (inp >= 1) & (out >= 1) & (total <= limit)
    return ok


class _Saturated:
    """The saturated node's run: an endless FIFO queue cycling through the accepted pool
    (131k requests by default), so the measured requests are a plain iid sample of the
    accepted mix; what the measured span records (after ``warm`` completions)."""

    def __init__(self, inp: NDArray[Any], out: NDArray[Any], warm: int, total: int, step_time: Any,
                 prefixes: _Prefixes | None = None) -> None:
        self.inp, self.out, self.warm, self.total, self.step_time = inp, out, warm, total, step_time
        self.prefixes = prefixes
        self.cache_at_warm = (0, 0)  # the engine's prefix-cache (lookup, hit) tokens when measuring starts
        self.n_pool = len(inp)
        self.next_idx = 0
        self.admitted_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.spans: list[tuple[float, float, int]] = []  # (admitted, done, rid) of the measured requests
        self.done = 0
        self.t_start = math.nan
        self.meas_in: list[int] = []
        self.meas_out: list[int] = []
        self.busy_seqs = 0.0  # time integral of the number of running requests over the measured span
        self.tok_cost = self.tok_n = 0.0  # marginal step time of the prefill tokens, and their number

    def source(self, engine: Any, free: int) -> Any:
        from sojourn.sim.engine import Request

        k = self.next_idx % self.n_pool
        if self.prefixes is not None:
            r = Request(self.next_idx, int(self.inp[k]), int(self.out[k]),
                        prefix=self.prefixes.of(k, self.next_idx // self.n_pool))
            if engine.admit_need(r) > free:
                return None
        elif engine.blocks_for(int(self.inp[k])) > free:
            return None  # head-of-line blocking, as the central FIFO queue does
        else:
            r = Request(self.next_idx, int(self.inp[k]), int(self.out[k]))
        self.admitted_at[self.next_idx] = engine.now
        self.next_idx += 1
        return r

    def more(self) -> bool:
        return self.done < self.total

    def on_plan(self, eng: Any, end: float) -> None:
        if self.done < self.warm:
            return
        self.busy_seqs += eng.n_running * (end - eng.now)
        chunks = eng.planned_chunks()  # a prefill step's (this run never merges it with a decode run)
        if chunks:
            step_time = self.step_time
            ptok = sum(m for _, m in chunks)
            fin = sum(1 for r, m in chunks if r.computed + m >= r.target)
            dec, cx = eng.dec_n, eng.context_sum()
            # What the prefill tokens add to this step, attention pairs aside (charged exactly).
            self.tok_cost += step_time(ptok, dec, cx, 0.0, fin) - step_time(0, dec, cx, 0.0, 0)
            self.tok_n += ptok

    def on_done(self, ev: Any) -> None:
        self.done += 1
        r = ev.request
        started = self.admitted_at.pop(r.rid)
        if self.done == self.warm:
            self.t_start = ev.time
            if self.prefixes is not None:
                self.cache_at_warm = self.prefixes.counters()
        elif self.done > self.warm:
            self.latencies.append(ev.time - started)
            self.spans.append((started, ev.time, r.rid))
            self.meas_in.append(r.prompt)
            self.meas_out.append(r.output)


class _Prefixes:
    """The shared prefixes of the pool's requests (``sim.prefix``): drawn once for a synthetic
    ``workload.prefix`` with a fixed seed, or a trace's hash_ids (offset by each pass through the
    pool, which shares nothing with the last); and the engine whose cache they fill."""

    def __init__(self, pool: list[Any], stride: int) -> None:
        self.pool, self.stride = pool, stride
        self.engine: Any = None

    def of(self, k: int, cycle: int) -> Any:
        p = self.pool[k]
        if not cycle or not self.stride:
            return p
        off = cycle * self.stride
        return (tuple(h + off for h in p[0]), p[1], p[2])

    def counters(self) -> tuple[int, int]:
        c = self.engine.cache
        return c.query_tokens, c.hit_tokens


def _pool_prefixes(scenario: Any, inp: NDArray[Any], ok: NDArray[np.bool_]) -> _Prefixes | None:
    """The prefixes of the accepted pool (``ok`` of the mix), or None without prefix caching."""
    if not scenario.prefix_caching:
        return None
    from sojourn.sim.workload import MOONCAKE_BLOCK, load_hash_ids, prefix_sampler

    wl = scenario.workload
    if wl.prefix.source == "trace":
        ids, stride = load_hash_ids(scenario.path(wl.trace))
        keep = np.flatnonzero(ok).tolist()
        return _Prefixes([(ids[i], MOONCAKE_BLOCK, int(inp[i])) for i in keep], stride)
    draw = prefix_sampler(wl.prefix, np.random.default_rng((MIX_SEED, 11)))
    return _Prefixes(draw(inp[ok].tolist()), 0)


def _engine_mix(scenario: Any, mix: tuple[Any, Any] | None) -> tuple[NDArray[Any], NDArray[Any]]:
    """The (input, output) tokens of the workload mix: given, the trace's, or drawn."""
    if mix is None and scenario.workload.trace is not None:
        from sojourn.sim.workload import load_trace

        _, inp_all, out_all = load_trace(scenario.path(scenario.workload.trace), scenario.workload.format)
        return inp_all, out_all
    if mix is None:
        return _mix_tokens(scenario, MIX_SIZE)
    inp_all, out_all = (np.asarray(m, dtype=np.int64) for m in mix)
    return inp_all, out_all


def _engine_capacity(scenario: Any, measure: int, mix: tuple[Any, Any] | None) -> NodeCapacity:
    from sojourn.sim import _engine_kernel
    from sojourn.sim.driver import drive
    from sojourn.sim.engine import Engine

    perf = scenario.perf_model()
    sv = scenario.serving
    inp_all, out_all = _engine_mix(scenario, mix)
    ok = _accepted(scenario, perf, inp_all, out_all)
    reject = 1.0 - float(ok.mean())
    if not ok.any():
        raise ConfigError(
            "serving.max_model_len",
            f"no request of the mix fits: every prompt + output exceeds {sv.max_model_len} tokens or the KV cache",
        )
    inp, out = inp_all[ok], out_all[ok]
    warm = max(2_000, 3 * sv.max_num_seqs)
    prefixes = _pool_prefixes(scenario, inp_all, ok) if mix is None else None
    run = _Saturated(inp, out, warm, warm + measure, perf.step_time, prefixes)
    if prefixes is None and _engine_kernel.supported(perf) and _engine_kernel.available():
        return _capacity_from_run(scenario, perf, _run_compiled(run, perf, sv), run, inp, out, reject)
    eng = Engine(perf, perf.kv_capacity_blocks, perf.block_size, sv.max_num_seqs, sv.max_num_batched_tokens,
                 source=run.source, prefix_caching=prefixes is not None)
    if prefixes is not None:
        prefixes.engine = eng
    drive(eng, run.more, run.on_done, on_plan=run.on_plan)
    return _capacity_from_run(scenario, perf, eng, run, inp, out, reject)


def _run_compiled(run: _Saturated, perf: Any, sv: Any) -> Any:
    """The saturated run in the compiled engine kernel (``sim._engine_kernel``): ``run`` filled as its
    ``on_done`` and ``on_plan`` would fill it; returns what ``_capacity_from_run`` reads of the engine."""
    from sojourn.sim import _engine_kernel

    res = _engine_kernel.run_node(perf, perf.kv_capacity_blocks, perf.block_size, sv.max_num_seqs,
                                  sv.max_num_batched_tokens, pool=np.stack([run.inp, run.out], axis=1),
                                  until_done=run.total, warm=run.warm)
    run.busy_seqs, run.tok_cost, run.tok_n, run.t_start = res.busy_seqs, res.tok_cost, res.tok_n, res.t_start
    order = res.order
    run.done = len(order)
    meas = order[run.warm:]
    started, ended = res.entered[meas], res.done[meas]
    run.latencies = (ended - started).tolist()
    run.spans = list(zip(started.tolist(), ended.tolist(), meas.tolist(), strict=True))
    run.meas_in = res.prompt[meas].tolist()
    run.meas_out = res.output[meas].tolist()
    return SimpleNamespace(now=res.now, preemptions=res.preemptions)


def _capacity_from_run(scenario: Any, perf: Any, eng: Any, run: _Saturated, inp: NDArray[Any], out: NDArray[Any],
                       reject: float) -> NodeCapacity:
    """The node's capacity from the saturated run: each request's work, fitted so that the
    measured requests' works add up to the time they took."""
    sv = scenario.serving
    step_time = perf.step_time
    done, warm, t_start, busy_seqs = run.done, run.warm, run.t_start, run.busy_seqs
    tok_cost, tok_n, meas_in, meas_out = run.tok_cost, run.tok_n, run.meas_in, run.meas_out
    latencies, spans, n_pool = run.latencies, run.spans, run.n_pool
    span = eng.now - t_start
    n = done - warm
    concurrency = busy_seqs / span
    c_pair = (step_time(1, 0, 0, 1e6) - step_time(1, 0, 0, 0.0)) / 1e6  # per attention pair (exact: linear)
    c_ctx = perf.seconds_per_context_token
    c_tok = tok_cost / tok_n if tok_n else 0.0
    # Prefix caching: a share phi of the prompt tokens was found cached over the measured span, so a
    # request of I tokens prefills (1 - phi)·I of them after phi·I cached ones: its tokens cost
    # c_tok·(1 - phi)·I and its attention pairs (1 - phi)·I·phi·I + ((1 - phi)·I)²/2 = (1 - phi²)·I²/2.
    phi = _cached_share(run)
    c_tok *= 1.0 - phi
    c_pair *= 1.0 - phi * phi
    # The shared cost of a step (overhead, weight reads, decode GEMMs) goes to the resource
    # that limits how many requests run: sequence slots, or KV tokens when the cache is full first.
    kv_bound = concurrency < 0.95 * sv.max_num_seqs
    mi, mo = np.asarray(meas_in), np.asarray(meas_out)
    base = _work(mi, mo, (0.0, c_tok, c_pair, c_ctx, kv_bound))
    share = _share(mi, mo, kv_bound)
    # The rate such that the measured requests' works add up to the time they took.
    a = max(span - float(base.sum()), 0.0) / float(share.sum())
    coef = (a, c_tok, c_pair, c_ctx, kv_bound)
    works = _work(inp, out, coef)
    # Throughput = 1 / mean work over the whole pool rather than n / span: the works of
    # the measured requests sum to the span, so this corrects n / span for the measured
    # requests being a little heavier or lighter than the mix. (The two agree within
    # their noise; most of the noise is the engine's own slow fluctuation.)
    rps = 1.0 / float(works.mean())
    # Work still to do in service: the prefill part is spent in the first steps after admission.
    decode_part = works - (c_tok * inp + c_pair * 0.5 * inp.astype(np.float64) ** 2)
    d_node = _in_service_at_admission(spans, decode_part, n_pool)
    return NodeCapacity(
        requests_per_s=rps,
        input_tokens_per_s=rps * float(inp.mean()),
        output_tokens_per_s=rps * float(out.mean()),
        concurrency=concurrency,
        latency_s=concurrency / rps,  # Little's law
        work_mean=float(works.mean()),
        work_var=float(works.var()),
        reject_fraction=reject,
        source=f"engine: saturated node, {n} completions of the workload mix"
               + (f", prefix caching: {phi:.1%} of prompt tokens cached" if run.prefixes is not None else ""),
        analytic_requests_per_s=analytic_node_throughput(perf, inp, out, sv.max_num_seqs, phi),
        measured_requests=n,
        preemptions=eng.preemptions,
        works=works,
        inputs=inp.astype(np.float64),
        outputs=out.astype(np.float64),
        latency=Latency.from_sample(latencies),
        in_service_work=d_node,
        work_coef=coef,
        prefix_cached_share=phi if run.prefixes is not None else math.nan,
    )


def _cached_share(run: _Saturated) -> float:
    """Share of the prompt tokens looked up over the measured span that were found cached (0 without caching)."""
    if run.prefixes is None:
        return 0.0
    q0, h0 = run.cache_at_warm
    q1, h1 = run.prefixes.counters()
    return (h1 - h0) / (q1 - q0) if q1 > q0 else 0.0


def _in_service_at_admission(spans: list[tuple[float, float, int]], works: NDArray[np.float64], n_pool: int) -> float:
    """Mean remaining work in service at the moment a request is admitted, on the saturated node.

    ``works`` is the part of each request's work spent over its decode steps, taken
    as spent evenly over its latency (its prefill part is done when it starts); the
    mean is over the admissions of the middle half of the measured requests (so the
    requests in service around each are all measured).

    The work in service at t is Σ r_i (c_i − t) over the requests with a_i < t < c_i
    (r_i = w_i / (c_i − a_i)): the sum over a_i < t minus the sum over c_i <= t,
    each a prefix sum of a sorted order, so every admission costs two binary searches.
    """
    a = np.array([s[0] for s in spans])
    c = np.array([s[1] for s in spans])
    w = works[np.array([s[2] for s in spans]) % n_pool]
    n = len(a)
    if n // 4 >= 3 * n // 4:
        return math.nan
    lat = np.maximum(c - a, 1e-12)
    c = a + lat
    r = w / lat
    order_a = np.argsort(a, kind="stable")
    order_c = np.argsort(c, kind="stable")
    a_sorted, c_sorted = a[order_a], c[order_c]

    def prefix(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.concatenate(([0.0], np.cumsum(x)))

    rc_a, r_a = prefix((r * c)[order_a]), prefix(r[order_a])
    rc_c, r_c = prefix((r * c)[order_c]), prefix(r[order_c])
    t = a_sorted[n // 4 : 3 * n // 4]
    ia = np.searchsorted(a_sorted, t, side="left")
    ic = np.searchsorted(c_sorted, t, side="right")
    live = (rc_a[ia] - t * r_a[ia]) - (rc_c[ic] - t * r_c[ic])
    return float(np.mean(np.maximum(live, 0.0)))


def _work(inp: NDArray[Any], out: NDArray[Any], coef: tuple[float, float, float, float, bool]) -> NDArray[np.float64]:
    """w = a·share + c_tok·I + c_pair·I²/2 + c_ctx·((O − 1)·I + O(O − 1)/2), node-seconds."""
    a, c_tok, c_pair, c_ctx, kv_bound = coef
    i = np.asarray(inp, dtype=np.float64)
    o = np.asarray(out, dtype=np.float64)
    w = c_tok * i + c_pair * 0.5 * i * i + c_ctx * ((o - 1.0) * i + 0.5 * o * (o - 1.0))
    if a:
        w = w + a * _share(i, o, kv_bound)
    return w


def _share(inp: NDArray[Any], out: NDArray[Any], kv_bound: bool) -> NDArray[np.float64]:
    """What a request holds of the binding resource over its life: slot-steps (O), or KV token-steps."""
    i = np.asarray(inp, dtype=np.float64)
    o = np.asarray(out, dtype=np.float64)
    if kv_bound:
        return o * i + 0.5 * o * (o + 1.0)
    return o


def analytic_node_throughput(perf: Any, inp: NDArray[Any], out: NDArray[Any], max_num_seqs: int,
                             cached_share: float = 0.0) -> float:
    """Steady-state requests/s of a saturated node from the step-time model alone (a cross-check).

    N sequences run (max_num_seqs, or fewer when their KV does not fit: a running
    request holds I + O/2 tokens on average over its O steps, weighted by O);
    each step decodes N tokens and prefills the prompts of the N/E[O] requests that
    complete per step. Throughput = (N/E[O]) / step time. Ignores block rounding,
    preemption and the jitter of the step composition. With prefix caching, a share
    ``cached_share`` (phi) of each prompt is found cached: (1 - phi)·I tokens are prefilled,
    with (1 - phi²)·I²/2 attention pairs; the KV that running requests share is still
    counted once per request (a lower bound on N).
    """
    phi = float(cached_share)
    i = np.asarray(inp, dtype=np.float64)
    o = np.asarray(out, dtype=np.float64)
    eo = float(o.mean())
    held = float(np.mean(o * (i + 0.5 * o))) / eo  # time-averaged KV tokens of a running request
    n = min(float(max_num_seqs), perf.kv_capacity_tokens / held)
    per_step = n / eo
    step = perf.step_time(
        per_step * float(i.mean()) * (1.0 - phi),
        n,
        n * held,
        per_step * 0.5 * float(np.mean(i * i)) * (1.0 - phi * phi),
        prefill_done=int(round(per_step)),
    )
    throughput: float = per_step / step
    return throughput


# --- load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadReport:
    """Offered work against capacity: rho < 1 is needed for stability (rho_peak for each hour)."""

    offered_rps: float
    capacity_rps: float
    rho: float
    rho_peak: float
    nodes: int
    reject_fraction: float

    @property
    def stable(self) -> bool:
        return self.rho < 1.0

    def describe(self) -> str:
        s = f"load rho = {self.rho:.4g} ({self.offered_rps:.4g} offered vs {self.capacity_rps:.4g} req/s capacity)"
        if self.rho_peak > self.rho * (1 + 1e-12):
            s += f", peak hour rho = {self.rho_peak:.4g}"
        if not self.stable:
            s += ": UNSTABLE, the queue grows without bound (deadline cancellation bounds it)"
        elif self.rho_peak >= 1.0:
            s += ": overloaded in the peak hours"
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "offered_rps": self.offered_rps,
            "capacity_rps": self.capacity_rps,
            "rho": self.rho,
            "rho_peak": self.rho_peak,
            "nodes": self.nodes,
            "stable": self.stable,
            "reject_fraction": self.reject_fraction,
        }


def load_report(scenario: Any, cap: NodeCapacity | None = None, *, offered_rps: float | None = None,
                peak_factor: float | None = None) -> LoadReport:
    """rho = accepted request rate × mean work / fleet capacity (requests refused outright are not load)."""
    cap = cap if cap is not None else node_capacity(scenario)
    n = scenario.fleet.nodes
    wl = scenario.workload
    if offered_rps is None:
        offered_rps = wl.mean_requests_per_hour / 3600.0
    if peak_factor is None:
        prof = wl.rate_profile
        peak_factor = 1.0 if prof is None else max(prof) / (sum(prof) / 24.0)
    capacity = n * cap.requests_per_s
    rho = offered_rps * (1.0 - cap.reject_fraction) / capacity
    return LoadReport(
        offered_rps=offered_rps,
        capacity_rps=capacity,
        rho=rho,
        rho_peak=rho * peak_factor,
        nodes=n,
        reject_fraction=cap.reject_fraction,
    )
