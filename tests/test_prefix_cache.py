"""Automatic prefix caching (``sojourn.sim.prefix``): exact cases on the cache, the engine, the fleet
and the fast tier's node capacity.

* the cache against a plain block-by-block model of vLLM's free block queue (every block an
  object, eviction by popping the queue's head) on random admissions, growths and releases;
* memory conservation on a running engine (blocks in use + plain free + cached = total, and
  ``used`` equal to the distinct blocks the running requests hold);
* one prefix shared by n requests on one node: n − 1 hits, each of floor(P/bs)·bs tokens;
* LRU under cyclic access: a cache too small for the prefixes hits nothing, a large one all
  after the first round;
* a prefill-only saturated node: its capacity with a cached prefix is the step-time model's
  prediction, with and without caching;
* a fleet: merged plans change nothing with caching on, and each node misses each group once;
* the workload's prefix draws (popularity, share) within their confidence intervals.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from _prefix_reference import BlockPrefixCache
from sojourn.fast.capacity import clear_capacity_cache, node_capacity
from sojourn.scenario import scenario_from_dict
from sojourn.sim.driver import drive
from sojourn.sim.engine import Engine, Request
from sojourn.sim.fleet import FleetSim, run_replication
from sojourn.sim.prefix import PrefixCache, block_hashes
from sojourn.sim.workload import batch_stream
from test_engine import PERF
from test_engine_merge import assert_same, fleet, run_both

BS = 16


def group(k: int, tokens: int) -> tuple:
    """A synthetic prefix: the first ``tokens`` tokens of group ``k``."""
    return ((k,), tokens, tokens)


def conversation(rng, tokens: int, seg: int = 2 * BS) -> tuple:
    """A trace-like prefix of segments of ``seg`` tokens, chained: one of 3 conversations, which
    branches into 3 after its first two segments (each id names its whole prefix)."""
    c, b = rng.randrange(3), 1 + rng.randrange(3)
    ids = tuple(10_000 + (c * 1000 + p if p < 2 else (c * 10 + b) * 100 + p) for p in range(-(-tokens // seg)))
    return (ids, seg, tokens)


def random_prefix(rng, tokens: int) -> tuple:
    if rng.random() < 0.5:
        return group(rng.randrange(5), rng.randrange(0, 10 * BS))
    return conversation(rng, rng.randrange(1, tokens + 1))


# -- the cache against a plain model of vLLM's free block queue ---------------------------------


class PlainBlocks:
    """Every block an object in one list; the free queue a list popped at its head (vLLM's order)."""

    def __init__(self, total: int) -> None:
        self.hash: list[int | None] = [None] * total
        self.ref = [0] * total
        self.queue = list(range(total))  # free blocks, least recently freed first
        self.where: dict[int, int] = {}  # hash -> block holding it
        self.owned: dict[object, list[int]] = {}
        self.hits = self.evictions = 0

    def _pop(self) -> int:
        b = self.queue.pop(0)
        h = self.hash[b]
        if h is not None:
            del self.where[h]
            self.hash[b] = None
            self.evictions += 1
        return b

    def admit(self, r: object, prefix: tuple, tokens: int) -> int:
        hashes = block_hashes(prefix, tokens, BS)
        blocks: list[int] = []
        hit = 0
        for h in hashes:  # the leading hit
            b = self.where.get(h)
            if b is None:
                break
            if self.ref[b] == 0:
                self.queue.remove(b)
            self.ref[b] += 1
            blocks.append(b)
            hit += 1
        for j in range(hit, -(-tokens // BS)):
            b = self._pop()
            self.ref[b] = 1
            h = hashes[j] if j < len(hashes) else None
            if h is not None and h not in self.where:
                self.hash[b] = h
                self.where[h] = b
            blocks.append(b)
        self.owned[r] = blocks
        self.hits += hit
        return hit

    def grow(self, r: object, n: int) -> None:
        for _ in range(n):
            b = self._pop()
            self.ref[b] = 1
            self.owned[r].append(b)

    def release(self, r: object) -> None:
        for b in reversed(self.owned.pop(r)):  # its last blocks first: they are evicted first
            self.ref[b] -= 1
            if self.ref[b] == 0:
                self.queue.append(b)

    def used(self) -> int:
        return sum(1 for c in self.ref if c)


class _R:
    """A request as the cache sees it."""

    def __init__(self, prefix: tuple) -> None:
        self.prefix = prefix


@pytest.mark.parametrize("seed", range(6))
def test_cache_matches_plain_block_model(seed):
    rng = random.Random(seed)
    total = rng.choice([40, 80, 200])
    cache, plain = PrefixCache(total, BS), PlainBlocks(total)
    used = 0
    live: list[tuple[_R, int]] = []
    for _ in range(400):
        op = rng.random()
        if op < 0.45:
            tokens = rng.randrange(1, 12 * BS)
            prefix = random_prefix(rng, tokens)
            r = _R(prefix)
            need = -(-tokens // BS) - cache.shared_in_use(prefix, tokens)
            if need > total - used:
                continue
            hit, shared = cache.admit(r, tokens, used)
            assert hit == plain.admit(r, prefix, tokens) * BS
            used += -(-tokens // BS) - shared
            live.append((r, -(-tokens // BS)))
        elif op < 0.7 and live:
            i = rng.randrange(len(live))
            r, n = live[i]
            g = min(rng.randrange(1, 4), total - used)
            plain.grow(r, g)
            used += g
            live[i] = (r, n + g)
        elif live:
            r, n = live.pop(rng.randrange(len(live)))
            used -= n - cache.release(r, n)
            plain.release(r)
        assert used == plain.used()
        cache.sync(used)
        assert cache.evictions == plain.evictions
        ref, cached = cache.blocks()
        assert cached == {h for b, h in enumerate(plain.hash) if h is not None and plain.ref[b] == 0}
        assert ref == {h: plain.ref[b] for b, h in enumerate(plain.hash) if h is not None and plain.ref[b]}
        # Conservation: blocks in use + free ones (plain or cached) = total.
        assert used + cache.queue_blocks() == total
    assert plain.hits > 20 and plain.evictions > 5  # the case exercises hits and evictions


def test_block_hashes_full_blocks_only_and_last_token_computed():
    assert block_hashes(group(3, 100), 200, 16) == [(3 << 20) | j for j in range(6)]  # 6 full blocks of 100
    assert len(block_hashes(group(3, 64), 64, 16)) == 3  # (64 - 1) // 16: the last token is computed
    assert block_hashes(group(3, 15), 200, 16) == []
    # A trace's segments of 512 tokens: the block's segment id, chained by position.
    h = block_hashes(((7, 9), 512, 600), 600, 16)
    assert len(h) == 37 and h[31] == (7 << 20) | 31 and h[32] == (9 << 20) | 32


# -- one engine -----------------------------------------------------------------------------------


def run_engine(reqs: list[Request], kv_blocks: int, max_seqs: int = 64, budget: int = 2048,
               arrivals: list[float] | None = None, check=None) -> Engine:
    """Run requests through one caching engine: all queued at time 0, or one per arrival time."""
    eng = Engine(PERF, kv_blocks, BS, max_seqs, budget, prefix_caching=True)
    todo = deque(reqs)
    done = []
    if arrivals is None:
        for r in reqs:
            eng.enqueue(r)
        todo.clear()

    def on_done(ev):
        done.append(ev.request)
        if check is not None:
            check(eng)

    drive(eng, lambda: len(done) < len(reqs), on_done, arrivals=list(arrivals or []),
          on_arrival=lambda t: eng.enqueue(todo.popleft()))
    return eng


def distinct_blocks_in_use(eng: Engine) -> int:
    """The blocks the running requests hold, each shared hashed block once."""
    c = eng.cache
    total = 0
    for r in eng.running:
        total += r.blocks if not r.decoding else -(-(r.enter_ctx + eng.step - r.enter_step) // eng.bs)
    return total - sum(n - 1 for n in c.blocks()[0].values())


def reference_run(spec: list, pre: list, arrivals: list, seed: int, reference: bool) -> tuple:
    """One engine's run of these requests, with the shipped cache or the block-by-block reference."""
    reqs = [Request(i, p, o, prefix=x) for i, ((p, o), x) in enumerate(zip(spec, pre))]
    done: dict[int, float] = {}
    eng = Engine(PERF, 250, BS, 48, 1024, prefix_caching=True)
    eng.merge_steps = bool(seed % 2)
    if reference:
        eng.cache = BlockPrefixCache(250, BS)  # type: ignore[assignment]
    todo = deque(reqs)
    drive(eng, lambda: len(done) < len(reqs), lambda ev: done.__setitem__(ev.request.rid, ev.time),
          arrivals=list(arrivals), on_arrival=lambda t: eng.enqueue(todo.popleft()))
    c = eng.cache
    return done, eng.preemptions, c.hit_tokens, c.hit_requests, c.evictions, c.queries


@pytest.mark.parametrize("seed", range(3))
def test_engine_matches_block_by_block_reference(seed):
    """The run-length cache and the block-by-block one (tests/_prefix_reference.py) give an engine the
    same trajectory: completion times, preemptions, hits and evictions, under memory pressure."""
    rng = random.Random(seed)
    spec = [(rng.randrange(50, 900), rng.randrange(5, 300)) for _ in range(250)]
    pre = [random_prefix(rng, p) for p, _ in spec]
    arrivals = sorted(rng.uniform(0, 30) for _ in spec)
    runs = [reference_run(spec, pre, arrivals, seed, reference) for reference in (False, True)]
    assert runs[0] == runs[1]
    assert runs[0][1] > 0 and runs[0][3] > 50 and runs[0][4] > 0


def test_engine_memory_is_conserved_under_preemption():
    rng = np.random.default_rng(5)
    reqs = [Request(i, int(rng.integers(100, 900)), int(rng.integers(20, 400)),
                    prefix=group(int(rng.integers(3)), int(rng.integers(0, 700)))) for i in range(300)]
    seen = []

    def check(eng):
        c = eng.cache
        c.sync(eng.used)
        assert eng.used + c.queue_blocks() == eng.total_blocks
        assert eng.used == distinct_blocks_in_use(eng)
        seen.append(c.cached_blocks)

    eng = run_engine(reqs, kv_blocks=300, check=check)
    assert eng.preemptions > 0 and max(seen) > 0 and eng.cache.hit_requests > 100
    assert eng.used == 0 and not eng.cache.blocks()[0] and not eng.cache.held
    eng.cache.sync(0)
    assert eng.cache.queue_blocks() == 300


@pytest.mark.parametrize("together", [True, False])
def test_one_shared_prefix_hits_all_but_the_first(together):
    n, prompt, prefix = 40, 1000, 700  # 43 full blocks of the prefix are shared
    reqs = [Request(i, prompt, 50, prefix=group(0, prefix)) for i in range(n)]
    peak = [0]

    def check(eng):
        peak[0] = max(peak[0], eng.used)

    eng = run_engine(reqs, kv_blocks=4000, arrivals=None if together else [10.0 * i for i in range(n)], check=check)
    c = eng.cache
    assert c.queries == n and c.hit_requests == n - 1  # request hit rate 1 - 1/n
    assert c.hit_tokens == (n - 1) * (prefix // BS) * BS
    assert c.hit_rate == pytest.approx((n - 1) * 688 / (n * prompt))
    assert c.evictions == 0
    if together:  # running at once, they share the prefix's 43 blocks: counted once, not n times
        assert 43 + 20 * (66 - 43) < peak[0] <= 43 + n * (66 - 43)


@pytest.mark.parametrize("kv_blocks", [5 * 11, 8 * 11 + 11])
def test_lru_cyclic_access(kv_blocks):
    """8 prefixes of 10 blocks, requests of 11 blocks and one token out, one at a time in turn. A
    cache of five requests' blocks evicts each prefix before it comes back: LRU hits nothing, and
    every prefix block but the last five requests' is evicted. One with room for all eight hits
    every request after the first round, and evicts nothing."""
    groups, rounds = 8, 5
    reqs = [Request(i, 11 * BS, 1, prefix=group(i % groups, 10 * BS)) for i in range(groups * rounds)]
    eng = run_engine(reqs, kv_blocks=kv_blocks, arrivals=[1.0 * i for i in range(len(reqs))])
    c = eng.cache
    c.sync(eng.used)
    if kv_blocks < groups * 11:
        assert c.hit_requests == 0 and c.hit_rate == 0.0
        assert c.cached_blocks == 50 and c.evictions == groups * rounds * 10 - 50
    else:
        assert c.hit_requests == groups * (rounds - 1) and c.evictions == 0 and c.cached_blocks == groups * 10


# -- the fast tier's capacity -----------------------------------------------------------------------


def prefill_only(prefix: dict | None, caching: bool = True) -> dict:
    d = {
        "workload": {"batch_rate_per_hour": 100.0, "input_tokens": {"dist": "fixed", "value": 1024},
                     "output_tokens": {"dist": "fixed", "value": 1}},
        "serving": {"max_num_batched_tokens": 8192, "max_num_seqs": 256, "prefix_caching": caching},
    }
    if prefix is not None:
        d["workload"]["prefix"] = prefix
    return d


def predicted_rps(k: int, computed: int, cached: int) -> float:
    """k prompts per step, each prefilling ``computed`` tokens after ``cached`` cached ones."""
    pairs = k * (computed * cached + 0.5 * computed * computed)
    return k / PERF.step_time(k * computed, 0, 0, pairs, k)


def test_capacity_with_a_cached_prefix_is_the_step_models_prediction():
    """Prompts of 1024 tokens and one output token (prefill only), a step budget of 8192: without
    caching 8 prompts fill each step; every prompt starting with the same 768-token prefix (48 full
    blocks, all cached once the node is warm), each computes 256 tokens and 32 fill each step."""
    clear_capacity_cache()
    shared = {"groups": 1, "tokens": {"dist": "fixed", "value": 768}}
    off = node_capacity(scenario_from_dict(prefill_only(shared, caching=False)), measure=20_000)
    on = node_capacity(scenario_from_dict(prefill_only(shared)), measure=20_000)
    none = node_capacity(scenario_from_dict(prefill_only(None)), measure=20_000)
    assert off.requests_per_s == none.requests_per_s  # caching off: exactly as without prefixes
    base, cached = predicted_rps(8, 1024, 0), predicted_rps(32, 256, 768)
    # Every step is alike once warm, so the measured rates are the predicted ones to rounding.
    assert off.requests_per_s == pytest.approx(base, rel=1e-9)
    assert on.requests_per_s == pytest.approx(cached, rel=1e-9)
    assert on.requests_per_s / off.requests_per_s == pytest.approx(cached / base, rel=1e-9)
    assert cached / base > 3.9  # the case is not trivial
    # The work measure follows: its mean is one over the throughput, and splits by prompt length.
    assert on.work_mean == pytest.approx(1.0 / on.requests_per_s, rel=1e-9)
    assert "75.0% of prompt tokens cached" in on.source


def test_prefix_too_short_for_a_block_changes_nothing():
    clear_capacity_cache()
    short = node_capacity(scenario_from_dict(prefill_only({"groups": 1, "tokens": {"dist": "fixed", "value": 15}})),
                          measure=5_000)
    none = node_capacity(scenario_from_dict(prefill_only(None)), measure=5_000)
    assert short.requests_per_s == pytest.approx(none.requests_per_s, rel=1e-12)


# -- fleets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("routing", ["pull", "round_robin", "least_loaded"])
def test_fleet_merged_plans_unchanged_with_caching(routing):
    d = fleet(**{"fleet.routing": routing, "fleet.nodes": 3, "workload.batch_rate_per_hour": 3000.0,
                 "workload.prefix": {"groups": 3, "popularity": "zipf", "tokens": {"dist": "uniform", "low": 0,
                                                                                   "high": 1200}}})
    off, on = run_both(d, 11)
    assert_same(off, on)
    a, b = off[0], on[0]
    assert [n.cache.hit_tokens for n in a.nodes] == [n.cache.hit_tokens for n in b.nodes]
    assert [n.cache.evictions for n in a.nodes] == [n.cache.evictions for n in b.nodes]
    assert sum(n.cache.hit_requests for n in b.nodes) > 100 and sum(n.cache.evictions for n in b.nodes) > 0
    assert off[1].preemptions > 0


@pytest.mark.parametrize("routing", ["pull", "round_robin"])
def test_fleet_each_node_misses_each_group_once(routing):
    groups, nodes = 4, 3
    d = {
        "sla_hours": 1.0,
        "workload": {"batch_rate_per_hour": 200.0, "batch_size": {"dist": "fixed", "value": 4},
                     "input_tokens": {"dist": "fixed", "value": 600}, "output_tokens": {"dist": "fixed", "value": 30},
                     "prefix": {"groups": groups, "tokens": {"dist": "fixed", "value": 512}}},
        "fleet": {"nodes": nodes, "routing": routing},
        "simulation": {"horizon_hours": 1.0, "warmup_hours": 0.0, "replications": 2, "start": "empty"},
    }
    sim = FleetSim(scenario_from_dict(d), np.random.SeedSequence(3))
    st = sim.run()
    misses = 0
    for node in sim.nodes:  # a node misses each group the first time it sees it, then always hits
        c = node.cache
        seen = {h >> 20 for h in itertools.chain(*c.blocks())}
        assert c.queries - c.hit_requests == len(seen) and c.evictions == 0
        assert c.hit_tokens == c.hit_requests * 512
        misses += len(seen)
    if routing == "round_robin":
        assert misses == groups * nodes
    p = st.prefix  # the measured span's counters: within the whole run's
    assert st.completed > 500 and p["lookups"] >= st.completed - 5
    assert p["lookups"] - p["hit_requests"] <= misses and p["hit_tokens"] == p["hit_requests"] * 512
    d["serving"] = {"prefix_caching": False}
    assert run_replication(scenario_from_dict(d), np.random.SeedSequence(3)).prefix is None


def test_caching_off_or_absent_gives_the_same_replication():
    base = {
        "sla_hours": 1.0,
        "workload": {"batch_rate_per_hour": 300.0, "batch_size": {"dist": "geometric", "mean": 4},
                     "input_tokens": {"dist": "lognormal", "median": 500, "sigma": 0.6, "max": 3000},
                     "output_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.6, "max": 1000}},
        "simulation": {"horizon_hours": 0.5, "warmup_hours": 0.1, "replications": 2},
    }
    off = dict(base, serving={"prefix_caching": False},
               workload=dict(base["workload"], prefix={"groups": 2, "share": {"dist": "uniform", "low": 0, "high": 1}}))
    a = run_replication(scenario_from_dict(base), np.random.SeedSequence(9))
    b = run_replication(scenario_from_dict(off), np.random.SeedSequence(9))
    assert np.array_equal(a.sojourn, b.sojourn) and a.completed == b.completed and b.prefix is None


# -- the workload's draws ---------------------------------------------------------------------------


def test_zipf_popularity_and_share_draws():
    groups, s = 5, 1.2
    sc = scenario_from_dict({"workload": {
        "batch_rate_per_hour": 100.0, "batch_size": {"dist": "fixed", "value": 10},
        "input_tokens": {"dist": "fixed", "value": 1000}, "output_tokens": {"dist": "fixed", "value": 10},
        "prefix": {"groups": groups, "popularity": "zipf", "zipf_exponent": s,
                   "share": {"dist": "uniform", "low": 0.25, "high": 0.75}}}})
    pre = [p for b in itertools.islice(batch_stream(sc, np.random.SeedSequence(1), prefixes=True), 4000)
           for p in b[4]]
    n = len(pre)
    w = np.arange(1, groups + 1) ** -s
    w /= w.sum()
    counts = np.bincount([p[0][0] for p in pre], minlength=groups)
    for k in range(groups):  # each group's share within 4.5 binomial standard errors
        assert abs(counts[k] / n - w[k]) < 4.5 * math.sqrt(w[k] * (1 - w[k]) / n)
    lengths = np.array([p[2] for p in pre], dtype=float)
    assert lengths.min() >= 250 and lengths.max() <= 750
    se = lengths.std() / math.sqrt(n)
    assert abs(lengths.mean() - 499.5) < 4.5 * se  # floor(U·1000), U uniform on [0.25, 0.75]


def test_mooncake_trace_prefixes_follow_its_hash_ids():
    sc = scenario_from_dict({"workload": {"trace": "../shared/data/mooncake_conversation_trace.jsonl",
                                          "format": "mooncake", "prefix": {"source": "trace"}}},
                            base_dir=str(Path(__file__).resolve().parents[1]))
    it = batch_stream(sc, np.random.SeedSequence(0), prefixes=True)
    for _t, prompts, _outputs, _sla, pre in itertools.islice(it, 200):
        for p, x in zip(prompts, pre):
            ids, seg, length = x
            assert seg == 512 and length == p and len(ids) == -(-p // 512)


def test_trace_hash_ids_must_be_chained(tmp_path):
    from sojourn._errors import ConfigError

    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [1, 2]}\n'
                    '{"timestamp": 5, "input_length": 1000, "output_length": 5, "hash_ids": [3, 2]}\n')
    sc = scenario_from_dict({"workload": {"trace": str(path), "format": "mooncake", "prefix": {"source": "trace"}}})
    with pytest.raises(ConfigError, match="workload.prefix.source.*chained"):
        next(batch_stream(sc, np.random.SeedSequence(0), prefixes=True))


def test_request_tier_hit_rate_interval_covers_the_exact_share():
    """One group, prefixes of floor(U·1600) tokens for U uniform on [0, 1), prompts of 1600 tokens, a
    roomy cache: once warm, the group's cached chain covers every prefix, so a request finds its own
    full blocks cached: floor(floor(1600·U)/16)·16 tokens, 16·E[floor(100·U)] = 792 on average, a
    share 0.495 of its prompt. The request tier's 95% interval over replications must cover it."""
    from sojourn.request import simulate

    d = {
        "sla_hours": 1.0,
        "workload": {"batch_rate_per_hour": 60.0, "batch_size": {"dist": "fixed", "value": 20},
                     "input_tokens": {"dist": "fixed", "value": 1600}, "output_tokens": {"dist": "fixed", "value": 20},
                     "prefix": {"groups": 1, "share": {"dist": "uniform", "low": 0.0, "high": 1.0}}},
        "fleet": {"nodes": 1},
        "simulation": {"horizon_hours": 1.0, "warmup_hours": 0.2, "replications": 6, "seed": 4},
    }
    res = simulate(scenario_from_dict(d)).to_result()
    pc = res["prefix_cache"]
    lo, hi = pc["hit_rate_ci"]
    assert lo <= 0.495 <= hi and hi - lo < 0.02
    # LRU may evict the chain's deepest blocks, which only the rare prefixes near 1600 tokens reach,
    # when the queue comes round to them: a few, at most the chain's 100.
    assert pc["lookups"] > 5000 and pc["evictions"] <= 100
    d["workload"].pop("prefix")
    assert "prefix_cache" not in simulate(scenario_from_dict(d)).to_result()


@pytest.mark.parametrize("prefix", [
    {"groups": 3, "popularity": "zipf", "share": {"dist": "uniform", "low": 0.3, "high": 0.9}},
    {"groups": 1, "tokens": {"dist": "fixed", "value": 256}},
])
def test_capacity_matches_a_saturated_request_level_fleet_with_caching(prefix):
    """As test_fast_capacity's check without caching: the caching node's measured capacity is what a
    saturated request-tier fleet of such nodes (pull routing: each node its own cache) serves."""
    from sojourn.request import simulate

    base = scenario_from_dict({
        "sla_hours": 5.0,
        "workload": {"batch_rate_per_hour": 100.0, "batch_size": {"dist": "geometric", "mean": 50},
                     "input_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.6},
                     "output_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.6}, "prefix": prefix},
        "fleet": {"nodes": 2},
        "serving": {"max_num_seqs": 64, "max_model_len": 8192, "on_deadline": "finish"},
        "simulation": {"horizon_hours": 0.15, "warmup_hours": 0.05, "replications": 2, "seed": 1},
    })
    cap = node_capacity(base)
    off = node_capacity(base.with_updates({"serving.prefix_caching": False}))
    assert cap.requests_per_s > 1.1 * off.requests_per_s
    rate = 1.5 * 2 * cap.requests_per_s * 3600.0 / base.workload.batch_size.int_mean
    r = simulate(base.with_updates({"workload.batch_rate_per_hour": rate}))
    assert r.busy_fraction == pytest.approx(1.0, abs=1e-6)
    assert r.throughput_rps == pytest.approx(2 * cap.requests_per_s, rel=0.03)
    assert r.prefix_cache["hit_rate"] == pytest.approx(cap.prefix_cached_share, abs=0.03)


SYNTH = {"batch_rate_per_hour": 10.0, "input_tokens": {"dist": "fixed", "value": 100},
         "output_tokens": {"dist": "fixed", "value": 10}}


@pytest.mark.parametrize(("workload", "field", "words"), [
    (dict(SYNTH, prefix={"tokens": {"dist": "fixed", "value": 50}}), "workload.prefix.groups", "required"),
    (dict(SYNTH, prefix={"groups": 2}), "workload.prefix.tokens", "exactly one of tokens"),
    (dict(SYNTH, prefix={"groups": 2, "tokens": {"dist": "fixed", "value": 5}, "share": {"dist": "fixed", "value": 0.5}}),
     "workload.prefix.tokens", "exactly one of tokens"),
    (dict(SYNTH, prefix={"groups": 2, "share": {"dist": "uniform", "low": 0.5, "high": 1.5}}),
     "workload.prefix.share", "reaches above 1"),
    (dict(SYNTH, prefix={"groups": 0, "tokens": {"dist": "fixed", "value": 5}}), "workload.prefix.groups", "1"),
    (dict(SYNTH, prefix={"groups": 2, "popularity": "pareto", "tokens": {"dist": "fixed", "value": 5}}),
     "workload.prefix.popularity", "allowed: 'uniform' or 'zipf'"),
    (dict(SYNTH, prefix={"groups": 2, "zipf_exponent": 2.0, "tokens": {"dist": "fixed", "value": 5}}),
     "workload.prefix.zipf_exponent", "only used with popularity = 'zipf'"),
    (dict(SYNTH, prefix={"source": "trace"}), "workload.prefix.source", "needs a replayed trace"),
    ({"trace": "t.csv", "format": "azure", "prefix": {"source": "trace"}}, "workload.prefix.source", "no hash_ids"),
    ({"trace": "t.jsonl", "format": "mooncake", "prefix": {"groups": 2, "tokens": {"dist": "fixed", "value": 5}}},
     "workload.prefix.source", "'trace' with a trace"),
    ({"trace": "t.jsonl", "format": "mooncake", "prefix": {"source": "trace", "groups": 3}},
     "workload.prefix.groups", "not used with source = 'trace'"),
    (dict(SYNTH, prefix={"groups": 2, "tokens": {"dist": "fixed", "value": 5}, "size": 3}),
     "workload.prefix.size", "unknown key"),
])
def test_bad_prefix_settings_name_their_field(workload, field, words):
    from sojourn._errors import ConfigError

    with pytest.raises(ConfigError) as err:
        scenario_from_dict({"workload": workload})
    assert err.value.field == field and words in err.value.message


def test_prefix_caching_must_be_a_boolean():
    from sojourn._errors import ConfigError

    with pytest.raises(ConfigError) as err:
        scenario_from_dict({"workload": SYNTH, "serving": {"prefix_caching": "yes please"}})
    assert err.value.field == "serving.prefix_caching"
