"""Batch arrivals: M^X batches (optionally non-homogeneous over the day) or a replayed trace.

A stream yields batches ``(time_s, prompts, outputs, sla_s)`` in time order, drawn
lazily in fixed-size chunks from its own random streams (gaps, sizes, input
tokens, output tokens, SLA classes), so the traffic of a replication depends on
its seed only, never on the fleet or on how far the simulation runs: two
configurations see the same traffic (common random numbers).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sojourn._cache import file_stamp, register
from sojourn._errors import ConfigError
from sojourn._io import check_input_file, not_utf8

__all__ = ["BatchTuple", "ChunkTuple", "MOONCAKE_BLOCK", "batch_chunks", "batch_stream", "load_hash_ids", "load_trace", "mean_tokens",
           "prefix_sampler"]

#: One batch: arrival time (s), prompt and output token counts of its requests, SLA (s).
BatchTuple = tuple[float, list[int], list[int], float]
#: Draws the SLAs (seconds) of the next n batches.
SlaSampler = Callable[[int], list[float]]
#: The shared prefixes of requests of these prompt lengths (``sim.prefix``'s ``(ids, seg_tokens, length)``).
PrefixSampler = Callable[[list[int]], list[Any]]
T = TypeVar("T")
#: Tokens per hash id of a Mooncake trace.
MOONCAKE_BLOCK = 512

#: Batches drawn per chunk of a synthetic stream; fixed, so a seed fixes the traffic.
_CHUNK = 256


def batch_stream(scenario: Any, seed: np.random.SeedSequence, prefixes: bool = False) -> Iterator[Any]:
    """The scenario's batches, forever, in time order (empty batches are skipped).

    With ``prefixes`` (a workload with ``prefix``), each batch has a fifth item: the shared
    prefix of each request (``sim.prefix``), drawn from a sixth stream of the seed, so the
    other five, and the batches, are those drawn without it.
    """
    wl = scenario.workload
    gaps, sizes, ins, outs, classes = (np.random.default_rng(s) for s in seed.spawn(5))
    sla = _sla_sampler(scenario, classes)
    if wl.trace is not None:
        return _trace_batches(scenario, gaps, sla, prefixes)
    draw = prefix_sampler(wl.prefix, np.random.default_rng(seed.spawn(1)[0])) if prefixes else None
    return _synthetic_batches(wl, gaps, sizes, ins, outs, sla, draw)


def prefix_sampler(spec: Any, rng: np.random.Generator) -> PrefixSampler:
    """Draws the shared prefixes of requests of given prompt lengths, for a synthetic ``workload.prefix``:
    a group by popularity, and the prefix's length (its tokens, or its share of the prompt, within it)."""
    groups = int(spec.groups)
    cdf = None
    if spec.popularity == "zipf" and groups > 1:
        w = np.arange(1, groups + 1, dtype=np.float64) ** -float(spec.zipf_exponent)
        cdf = np.cumsum(w)
        cdf /= cdf[-1]

    def draw(prompts: list[int]) -> list[Any]:
        n = len(prompts)
        if cdf is None:
            g = rng.integers(0, groups, n)
        else:
            g = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), groups - 1)
        p = np.asarray(prompts, dtype=np.int64)
        if spec.tokens is not None:
            length = np.minimum(spec.tokens.sample_int(rng, n), p)
        else:
            length = np.floor(np.clip(spec.share.sample(rng, n), 0.0, 1.0) * p).astype(np.int64)
        return [((k,), m, m) for k, m in zip(g.tolist(), length.tolist())]

    return draw


def _sla_sampler(scenario: Any, rng: np.random.Generator) -> SlaSampler:
    """Draws the SLA (seconds) of ``n`` batches: one class per batch, by weight."""
    classes = scenario.workload.sla_classes
    if not classes:
        sla = scenario.sla_seconds
        return lambda n: [sla] * n
    hours = np.array([c.hours for c in classes]) * 3600.0
    w = np.array([c.weight for c in classes])
    p = w / w.sum()
    buf: list[float] = []

    def draw(n: int) -> list[float]:
        nonlocal buf
        while len(buf) < n:  # drawn in chunks: the same sequence however it is asked for
            buf += hours[rng.choice(len(hours), size=_CHUNK, p=p)].tolist()
        out, buf = buf[:n], buf[n:]
        return out

    return draw


def _synthetic_draws(wl: Any, gaps: np.random.Generator, sizes: np.random.Generator, ins: np.random.Generator,
                     outs: np.random.Generator, sla: SlaSampler) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                  np.ndarray, list[float]]]:
    """Poisson batch arrivals, thinned by the hourly profile when one is given: per chunk of ``_CHUNK``
    candidates, (times, batch sizes, prompts, outputs, SLAs), empty batches included."""
    rate = wl.batch_rate_per_hour / 3600.0
    accept = None
    if wl.rate_profile is not None:
        prof = np.asarray(wl.rate_profile, dtype=np.float64)
        rate *= prof.max()
        accept = prof / prof.max()  # thinning: keep a candidate at hour h with prob. profile[h]/max
    t = 0.0
    while True:
        cand = t + np.cumsum(gaps.exponential(1.0 / rate, _CHUNK))
        t = float(cand[-1])
        if accept is not None:
            hour = (cand // 3600.0).astype(np.int64) % 24
            cand = cand[gaps.random(_CHUNK) < accept[hour]]
        n = len(cand)
        if n == 0:
            continue
        size = wl.batch_size.sample_int(sizes, n)
        total = int(size.sum())
        prompts = wl.input_tokens.sample_int(ins, total)
        outputs = wl.output_tokens.sample_int(outs, total)
        yield cand, size, prompts, outputs, sla(n)


def _synthetic_batches(wl: Any, gaps: np.random.Generator, sizes: np.random.Generator, ins: np.random.Generator,
                       outs: np.random.Generator, sla: SlaSampler, draw: PrefixSampler | None) -> Iterator[Any]:
    """Poisson batch arrivals, thinned by the hourly profile when one is given, batch by batch."""
    for cand, size, p, o, slas in _synthetic_draws(wl, gaps, sizes, ins, outs, sla):
        n = len(cand)
        prompts = p.tolist()
        outputs = o.tolist()
        ends = np.cumsum(size).tolist()
        times = cand.tolist()
        a = 0
        if draw is not None:
            pre = draw(prompts)
            for i in range(n):
                b = ends[i]
                if b > a:
                    yield times[i], prompts[a:b], outputs[a:b], slas[i], pre[a:b]
                a = b
            continue
        for i in range(n):
            b = ends[i]
            if b > a:
                yield times[i], prompts[a:b], outputs[a:b], slas[i]
            a = b


#: One chunk of an array stream (``batch_chunks``): batch times, their sizes (>= 1), the requests'
#: prompts and outputs (the batches' in order, ``sizes.sum()`` of each), the batches' SLAs (s).
ChunkTuple = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def batch_chunks(scenario: Any, seed: np.random.SeedSequence) -> Iterator[ChunkTuple]:
    """``batch_stream`` (without prefixes) as arrays, chunk by chunk: the same draws, the same batches.

    For the compiled fleet (``sim._fleet_kernel``), which reads a chunk's batches from arrays.
    A synthetic chunk is one of the stream's chunks of candidates (empty batches dropped); a
    trace's, one cycle of the trace (with windows: the batches that cycle closes).
    """
    wl = scenario.workload
    gaps, sizes, ins, outs, classes = (np.random.default_rng(s) for s in seed.spawn(5))
    sla = _sla_sampler(scenario, classes)
    if wl.trace is not None:
        yield from _trace_chunks(scenario, gaps, sla)
        return
    for cand, size, p, o, slas in _synthetic_draws(wl, gaps, sizes, ins, outs, sla):
        keep = size > 0
        yield (cand[keep], size[keep].astype(np.int64), p.astype(np.int64), o.astype(np.int64),
               np.asarray(slas, dtype=np.float64)[keep])


def _trace_chunks(scenario: Any, gaps: np.random.Generator, sla: SlaSampler) -> Iterator[ChunkTuple]:
    """``_trace_batches`` (no prefixes) as arrays, one cycle of the trace a chunk."""
    wl = scenario.workload
    times, prompts, outputs, period, phase = _trace_cycle(scenario, gaps)
    w = wl.batch_window_s
    prompts = prompts.astype(np.int64)
    outputs = outputs.astype(np.int64)
    # The open window carried from one cycle to the next: its index and its requests' lengths.
    cur_k = -1
    cur_p = np.zeros(0, np.int64)
    cur_o = np.zeros(0, np.int64)
    k = 0
    while True:
        t = times + (k * period - phase)
        k += 1
        keep = t >= 0.0
        t, p, o = t[keep], prompts[keep], outputs[keep]
        if w <= 0.0:
            m = len(t)
            if m:
                yield t, np.ones(m, np.int64), p, o, np.asarray(sla(m), dtype=np.float64)
            continue
        win = np.floor_divide(t, w).astype(np.int64)
        if not len(win):
            continue
        wins = np.concatenate([np.full(len(cur_p), cur_k, np.int64), win])
        p = np.concatenate([cur_p, p])
        o = np.concatenate([cur_o, o])
        starts = np.flatnonzero(np.concatenate([[True], wins[1:] != wins[:-1]]))
        # Every window but the last is closed by the one after it; the last stays open.
        closed = starts[1:]
        if len(closed):
            bt = (wins[starts[:-1]] + 1) * w
            yield (bt.astype(np.float64), np.diff(starts).astype(np.int64), p[: closed[-1]], o[: closed[-1]],
                   np.asarray(sla(len(bt)), dtype=np.float64))
        last = starts[-1]
        cur_k, cur_p, cur_o = int(wins[last]), p[last:], o[last:]


def _trace_cycle(scenario: Any, gaps: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """A trace's (times from its first arrival, over ``rate_scale``; prompts; outputs), its period (span plus a
    mean gap; > 0, as load_trace refuses a zero span) and this replication's random phase in it."""
    wl = scenario.workload
    times, prompts, outputs = load_trace(scenario.path(wl.trace), wl.format)
    times = times / wl.rate_scale
    n = len(times)
    period = float(times[-1] - times[0]) * n / (n - 1)
    times = times - times[0]
    return times, prompts, outputs, period, float(gaps.uniform(0.0, period))


def _trace_batches(scenario: Any, gaps: np.random.Generator, sla: SlaSampler, prefixes: bool = False
                   ) -> Iterator[Any]:
    """A trace replayed cyclically from a random phase, arrivals grouped into windows.

    Time is divided by ``rate_scale``. The trace repeats with period span + mean gap,
    starting at a uniformly random point of the cycle (drawn per replication, so
    replications differ); lengths are used as given. With ``batch_window_s = w > 0``
    the requests arriving in each window [k·w, (k+1)·w) form one batch, submitted at
    the window's end; with w = 0 every request is its own batch. With ``prefixes``, a
    fifth item gives each request's shared prefix from the trace's ``hash_ids``, offset by
    cycle (a repeated trace shares nothing with its earlier cycles).
    """
    if prefixes:
        yield from _trace_batches_prefixed(scenario, gaps, sla)
        return
    wl = scenario.workload
    times, prompts, outputs, period, phase = _trace_cycle(scenario, gaps)
    n = len(times)
    w = wl.batch_window_s
    plist, olist = prompts.tolist(), outputs.tolist()
    # Pending requests of the current window: (prompts, outputs), its window index.
    cur_p: list[int] = []
    cur_o: list[int] = []
    cur_k = -1
    k = 0
    while True:
        t = (times + (k * period - phase)).tolist()
        k += 1
        for i in range(n):
            ti = t[i]
            if ti < 0.0:
                continue
            if w <= 0.0:
                yield ti, [plist[i]], [olist[i]], sla(1)[0]
                continue
            win = int(ti // w)
            if win != cur_k:
                if cur_p:
                    yield (cur_k + 1) * w, cur_p, cur_o, sla(1)[0]
                cur_p, cur_o, cur_k = [], [], win
            cur_p.append(plist[i])
            cur_o.append(olist[i])


def _trace_batches_prefixed(scenario: Any, gaps: np.random.Generator, sla: SlaSampler) -> Iterator[Any]:
    """``_trace_batches`` with each request's shared prefix: its trace hash_ids, offset by cycle."""
    wl = scenario.workload
    times, prompts, outputs, period, phase = _trace_cycle(scenario, gaps)
    ids, stride = load_hash_ids(scenario.path(wl.trace))
    n = len(times)
    w = wl.batch_window_s
    plist, olist = prompts.tolist(), outputs.tolist()
    cur: list[tuple[int, int]] = []  # (trace index, cycle) of the current window's requests
    cur_k = -1
    k = 0

    def batch(idx: list[tuple[int, int]]) -> tuple[list[int], list[int], list[Any]]:
        pre = [(tuple(h + c * stride for h in ids[i]) if c else ids[i], MOONCAKE_BLOCK, plist[i]) for i, c in idx]
        return [plist[i] for i, _ in idx], [olist[i] for i, _ in idx], pre

    while True:
        t = (times + (k * period - phase)).tolist()
        for i in range(n):
            ti = t[i]
            if ti < 0.0:
                continue
            if w <= 0.0:
                p, o, pre = batch([(i, k)])
                yield ti, p, o, sla(1)[0], pre
                continue
            win = int(ti // w)
            if win != cur_k:
                if cur:
                    p, o, pre = batch(cur)
                    yield (cur_k + 1) * w, p, o, sla(1)[0], pre
                cur, cur_k = [], win
            cur.append((i, k))
        k += 1


def load_hash_ids(path: str | Path) -> tuple[list[tuple[int, ...]], int]:
    """A Mooncake trace's ``hash_ids`` per request, in the order of ``load_trace`` (by time), and one
    more than the largest id (the offset of a repeated cycle). ConfigError naming ``workload.prefix``
    when a record has none."""
    p = check_input_file(path, "workload.trace")
    return _load_hash_ids_cached(file_stamp(p))


@functools.lru_cache(maxsize=4)
def _load_hash_ids_cached(stamp: tuple[str, int, int]) -> tuple[list[tuple[int, ...]], int]:
    p = Path(stamp[0])
    recs = _jsonl(p, lambda rec: (float(rec["timestamp"]), tuple(int(h) for h in rec["hash_ids"])),
                  "workload.prefix.source", "no usable hash_ids",
                  "; source = 'trace' needs a mooncake trace with hash_ids")
    t = [r[0] for r in recs]
    ids = [r[1] for r in recs]
    where: dict[int, tuple[int, int]] = {}  # id -> (position, the id before it): one of each when chained
    for line_no, r in enumerate(ids, start=1):
        for j, h in enumerate(r):
            if h < 0:
                raise ConfigError("workload.prefix.source", f"{p}: a hash id is negative; allowed: integers >= 0")
            if where.setdefault(h, (j, r[j - 1] if j else -1)) != (j, r[j - 1] if j else -1):
                raise ConfigError("workload.prefix.source", f"{p}: hash id {h} (record {line_no}) follows another "
                                  "prefix than before: a trace's hash_ids must be chained on the prefix")
    order = np.argsort(np.array(t), kind="stable").tolist()
    stride = 1 + max((max(r) for r in ids if r), default=0)
    return [ids[i] for i in order], stride


register("trace hash ids", _load_hash_ids_cached.cache_clear)


@functools.lru_cache(maxsize=8)
def _load_trace_cached(stamp: tuple[str, int, int], fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = Path(stamp[0])
    try:
        if fmt == "azure":
            t, i, o = _read_azure(p)
        elif fmt == "mooncake":
            t, i, o = _read_mooncake(p)
        else:
            raise ConfigError("workload.format", f"got {fmt!r}; allowed: 'azure', 'mooncake'")
    except UnicodeDecodeError as err:
        raise not_utf8(p, "workload.trace", err) from None
    except OSError as err:
        raise ConfigError("workload.trace", f"cannot read {p}: {err.strerror or err}") from None
    if len(t) < 2:
        raise ConfigError("workload.trace", f"{p} holds {len(t)} requests; a replay needs at least 2")
    if not np.all(np.isfinite(t)):
        raise ConfigError("workload.trace", f"{p}: a timestamp is not a finite number")
    if not t.max() > t.min():
        # The replay repeats the trace with period span·n/(n−1): a span of zero gives no
        # period and no arrival rate, and any one invented would set the load on its own.
        raise ConfigError(
            "workload.trace",
            f"{p}: all {len(t)} requests have the same timestamp, so the trace spans zero time "
            "and no arrival rate can be derived from it; a replay needs arrivals at two or more "
            "distinct times (for one burst of requests, use a synthetic workload with a fixed batch_size)",
        )
    order = np.argsort(t, kind="stable")
    out = (t[order] - t[order][0], i[order], o[order])
    for a in out:
        a.setflags(write=False)
    return out


def load_trace(path: str | Path, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival seconds from the first, input tokens, output tokens) of a trace file, sorted by time.

    ConfigError (field ``workload.trace``) for a missing or unreadable file, fewer than 2
    requests, or timestamps that are all equal (a span of zero time has no arrival rate).
    """
    p = check_input_file(path, "workload.trace")  # a folder, a dangling link: one clear error
    stamp = file_stamp(p)  # cached by content: path, modification time and size
    if stamp[1] < 0:
        raise ConfigError("workload.trace", f"file not found: {p}")
    return _load_trace_cached(stamp, fmt)


register("trace", _load_trace_cached.cache_clear)


def _read_azure(p: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Azure LLM inference trace CSV: ``TIMESTAMP,ContextTokens,GeneratedTokens``."""
    stamps, ins, outs = [], [], []
    with p.open(encoding="utf-8-sig") as fh:
        header = fh.readline().strip().split(",")
        want = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
        if header[:3] != want:
            raise ConfigError("workload.trace", f"{p} is not an azure trace: header {header}, expected {want}")
        for line_no, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            try:
                ts, a, b = line.strip().split(",")[:3]
                stamps.append(ts.replace(" ", "T"))
                ins.append(int(a))
                outs.append(int(b))
            except ValueError:
                raise ConfigError("workload.trace", f"{p}, line {line_no}: cannot read {line.strip()!r}") from None
    try:
        ns = np.array(stamps, dtype="datetime64[ns]").astype(np.int64)
    except ValueError as err:
        raise ConfigError("workload.trace", f"{p}: bad TIMESTAMP ({err})") from None
    t = (ns - ns.min()).astype(np.float64) / 1e9
    return t, np.array(ins, dtype=np.int64), np.array(outs, dtype=np.int64)


def _read_mooncake(p: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mooncake trace JSONL: ``timestamp`` (ms), ``input_length``, ``output_length`` per line."""
    recs = _jsonl(p, lambda rec: (float(rec["timestamp"]) / 1000.0, int(rec["input_length"]),
                                  int(rec["output_length"])), "workload.trace", "not a mooncake record")
    t, ins, outs = (list(c) for c in zip(*recs)) if recs else ([], [], [])
    return np.array(t), np.array(ins, dtype=np.int64), np.array(outs, dtype=np.int64)


def _jsonl(p: Path, parse: Callable[[Any], T], field: str, what: str, hint: str = "") -> list[T]:
    """``parse`` of each non-blank line's JSON object of a JSONL file; a line it cannot parse is one
    ConfigError naming ``field``, the file and the line: "<what> (<the error>)<hint>"."""
    out = []
    with p.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.append(parse(json.loads(line)))
            except (ValueError, KeyError, TypeError) as err:
                raise ConfigError(field, f"{p}, line {line_no}: {what} ({err}){hint}") from None
    return out


def mean_tokens(scenario: Any) -> tuple[float, float]:
    """Mean (input, output) tokens per request: of the distributions, or of the trace."""
    wl = scenario.workload
    if wl.trace is not None:
        _, i, o = load_trace(scenario.path(wl.trace), wl.format)
        return float(i.mean()), float(o.mean())
    return float(wl.input_tokens.int_mean), float(wl.output_tokens.int_mean)
