"""Automatic prefix caching of one engine's KV cache, as vLLM V1 does it.

vLLM identifies each *full* block of a prompt by a hash chained on everything before
it, so equal hashes mean equal prefixes. A block holding computed KV is in one of
three states: in use (reference count > 0: running requests point at it, counted once
however many share it), cached (no request uses it, its hash is kept, and it sits in
the free block queue: a later request with the same prefix takes it back without
computing it again), or plain free. The free block queue is LRU: allocation pops
blocks from its head, evicting the hash of a cached block it pops; freed blocks are
appended at its tail, a request's blocks in reverse order (its last blocks are
evicted first). A request's cache hit is the longest run of its leading block hashes
that are in use or cached, at most ``(tokens - 1) // block_size`` blocks (vLLM always
computes the last prompt token); the hit's tokens skip prefill.

Here a block's identity is an int: ``segment id << 20 | block index``. A request's
``prefix`` is ``(ids, seg_tokens, length)``: its first ``length`` tokens are shared
content made of segments of ``seg_tokens`` tokens, the k-th named ``ids[k]``, and
block j's hash is that of the segment holding its first token with j itself
(``block_hashes``); a segment id stands for the whole prefix up to that segment (as a
Mooncake trace's ``hash_ids`` do, and as a synthetic prefix group's single id does), so
it always starts at the same block. Only the blocks of that shared part are hashed:
the request's own tokens after it, and its output, are cached by vLLM too, but no other
request can hit them; here they are freed as plain blocks (they still take their place
in the LRU order).

The cache keeps runs of blocks, not blocks (``_Segment``): a request holds the leading
blocks of each segment of its prefix, and frees them last to first, so within a segment
the blocks in use and the cached ones are each one range, and a segment's runs in the
free queue are ranges in decreasing order of age. An admission then costs one step per
segment (one for a synthetic prefix, one per 512 tokens of a trace's), not per block.
``tests/_prefix_reference.py`` keeps the block-by-block version the tests compare it with.

The engine keeps its own count of blocks in use (``Engine.used``); this cache follows
it lazily. Every block the engine allocates is popped from the queue's head: the
queue is FIFO, so the blocks popped by any sequence of allocations are those popped by
their total, in order, and the cache pops that total (``used − taken + freed``, since
``used`` = allocated + taken back from the queue − freed) when it is next asked,
before an admission. The engine's hot loop does not change: it only reports what a
completion frees (``release``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["PrefixCache", "block_hashes"]

#: Blocks a segment id is shifted by: a prompt has fewer than 2**20 blocks.
_SHIFT = 20


def block_hashes(prefix: Any, tokens: int, bs: int) -> list[int]:
    """The hashes of the blocks a request of ``tokens`` tokens may hit: its full blocks within
    the shared prefix, at most ``(tokens - 1) // bs`` of them (the last token is always computed)."""
    ids, seg, length = prefix
    n = min(length if length < tokens else tokens, tokens - 1) // bs
    if n <= 0:
        return []
    if seg >= n * bs:  # one segment (a synthetic prefix group)
        base = ids[0] << _SHIFT
        return [base | j for j in range(n)]
    return [(ids[(j * bs) // seg] << _SHIFT) | j for j in range(n)]


class _Segment:
    """The blocks of one segment id (its blocks ``j0`` on, at most ``cap`` of them, in the order of
    the prefix): in use ``[j0, u)``, cached ``[u, c)``. Both are prefix-closed, since a request holds
    its prefix's leading blocks and frees them last to first. ``ends`` counts the running requests
    holding ``[j0, e)`` by e; ``entries`` are its runs in the free queue, oldest (highest) first."""

    __slots__ = ("sid", "j0", "u", "c", "ends", "entries")

    def __init__(self, sid: int, j0: int) -> None:
        self.sid = sid
        self.j0 = self.u = self.c = j0
        self.ends: dict[int, int] = {}
        self.entries: deque[list[Any]] = deque()


class PrefixCache:
    """The hashed blocks as runs: per segment id, the blocks in use and cached (``_Segment``), and
    the LRU free queue of runs.

    The queue holds ``-n`` for n plain free blocks, or ``[segment, lo, hi]``: the cached blocks
    ``[lo, hi)`` of a segment, freed together and evicted top down (vLLM frees a request's blocks
    last to first, and pops the queue's head). A run taken back by a hit shrinks from below; an
    emptied run stays in the queue, skipped when popped.
    """

    __slots__ = ("bs", "segs", "held", "_queue", "popped", "taken", "freed",
                 "queries", "query_tokens", "hit_tokens", "hit_requests", "evictions", "_paths")

    def __init__(self, total_blocks: int, block_size: int) -> None:
        self.bs = block_size
        self.segs: dict[int, _Segment] = {}
        self.held: dict[Any, list[tuple[_Segment, int]]] = {}  # running request -> (segment, end) it holds
        self._queue: deque[Any] = deque([-total_blocks]) if total_blocks else deque()
        self.popped = 0  # blocks allocated from the queue's head (cumulative)
        self.taken = 0  # cached blocks taken back by a hit (cumulative)
        self.freed = 0  # blocks returned to the queue (cumulative)
        # Statistics: admissions looked up, their prompt tokens, the tokens they found cached.
        self.queries = 0
        self.query_tokens = 0
        self.hit_tokens = 0
        self.hit_requests = 0
        self.evictions = 0
        self._paths: dict[Any, list[tuple[int, int, int]]] = {}

    def path(self, prefix: Any, tokens: int) -> list[tuple[int, int, int]]:
        """The (segment id, first block, end block) runs of a request's hashable blocks
        (``block_hashes`` grouped by segment), remembered by value."""
        key = (prefix, tokens if tokens <= prefix[2] else -1)  # past its prefix, the length does not matter
        p = self._paths.get(key)
        if p is None:
            if len(self._paths) >= 65_536:
                self._paths.clear()
            ids, seg, length = prefix
            n = min(length if length < tokens else tokens, tokens - 1) // self.bs
            per = seg // self.bs if seg < n * self.bs else n  # blocks per segment
            p = [(ids[k], k * per, min((k + 1) * per, n)) for k in range(-(-n // per))] if n > 0 else []
            self._paths[key] = p
        return p

    # -- the queue ------------------------------------------------------------------------

    def sync(self, used: int) -> None:
        """Pop the blocks the engine has allocated since the last call (``used``: its blocks in use,
        including any it has reserved for the coming step)."""
        n = used - self.taken + self.freed - self.popped
        if n <= 0:
            return
        self.popped += n
        q = self._queue
        while n and q:
            e = q.popleft()
            if type(e) is int:
                if -e > n:
                    q.appendleft(e + n)
                    return
                n += e
                continue
            sg, lo, hi = e
            k = hi - lo
            if k <= 0:
                continue  # emptied by hits
            if k > n:
                k = n
                e[2] = hi - k
                q.appendleft(e)
            else:
                sg.entries.popleft()
            sg.c -= k  # the segment's oldest run: its top blocks
            self.evictions += k
            n -= k
            if sg.c == sg.j0 and not sg.ends:
                del self.segs[sg.sid]  # nothing left of it

    # -- admission and release ----------------------------------------------------------------

    def shared_in_use(self, prefix: Any, tokens: int) -> int:
        """Blocks of a request's leading hit that other running requests already use (they need no
        free block): its prompt needs ``blocks − shared_in_use`` free blocks to be admitted."""
        if prefix is None:
            return 0
        segs = self.segs
        n = 0
        for sid, j0, end in self.path(prefix, tokens):
            sg = segs.get(sid)
            if sg is None or sg.u <= j0:
                break
            if sg.u < end:
                return n + sg.u - j0
            n += end - j0
        return n

    def admit(self, r: Any, tokens: int, used: int) -> tuple[int, int]:
        """Look up and take the blocks of request ``r`` (``tokens`` to prefill) at admission.

        Returns (cached tokens, blocks shared with running requests): the engine skips the
        first's prefill and adds ``blocks − shared`` to its blocks in use. The request's hashed
        blocks past its hit are computed by it and become findable at once (vLLM caches a block
        from the step that computes it)."""
        self.sync(used)
        self.queries += 1
        self.query_tokens += tokens
        prefix = r.prefix
        if prefix is None:
            return 0, 0
        segs = self.segs
        hit = shared = 0
        held: list[tuple[_Segment, int]] = []
        hitting = True
        for sid, j0, end in self.path(prefix, tokens):
            sg = segs.get(sid)
            if sg is None:
                sg = segs[sid] = _Segment(sid, j0)
            elif not hitting and sg.c > j0:
                break  # cached past a miss: computed again into plain blocks
            if hitting:
                top = sg.c if sg.c < end else end  # the hit in this segment: [j0, top)
                inuse = sg.u if sg.u < top else top
                shared += inuse - j0
                if top > sg.u:
                    self._take(sg, top)
                hit += top - j0
                hitting = top == end
            if end > sg.u:  # the blocks it computes (a miss), or a hit above the blocks in use
                sg.u = end
                if end > sg.c:
                    sg.c = end
            sg.ends[end] = sg.ends.get(end, 0) + 1
            held.append((sg, end))
        if held:
            self.held[r] = held
        if hit:
            self.hit_requests += 1
            self.hit_tokens += hit * self.bs
        return hit * self.bs, shared

    def _take(self, sg: _Segment, top: int) -> None:
        """A hit takes the segment's cached blocks [u, top) back out of the queue (its newest runs)."""
        self.taken += top - sg.u
        ent = sg.entries
        while ent:
            e = ent[-1]
            if e[1] >= top:
                break
            if e[2] <= top:
                e[1] = e[2]  # emptied: skipped when popped
                ent.pop()
            else:
                e[1] = top
                break
        sg.u = top

    def release(self, r: Any, blocks: int) -> int:
        """Request ``r`` frees its ``blocks`` blocks (completion, preemption, cancellation). Its plain
        blocks, then its hashed ones last to first, go to the queue's tail, those still used by
        another request excepted: returns how many those are (not freed)."""
        held = self.held.pop(r, None)
        q = self._queue
        if held is None:
            if blocks:
                q.append(-blocks)
                self.freed += blocks
            return 0
        mine = sum(end - sg.j0 for sg, end in held)
        plain = blocks - mine
        if plain:
            q.append(-plain)
        freed = 0
        for sg, end in reversed(held):
            ends = sg.ends
            k = ends[end] - 1
            if k:
                ends[end] = k
                continue
            del ends[end]
            if end < sg.u:
                continue  # another request holds more of the segment
            u = max(ends) if ends else sg.j0
            if u < end:
                e = [sg, u, end]
                q.append(e)
                sg.entries.append(e)
                freed += end - u
            sg.u = u
        self.freed += plain + freed
        return mine - freed

    # -- queries --------------------------------------------------------------------------------

    @property
    def cached_blocks(self) -> int:
        """Blocks of the free queue that still hold a cached prefix (as of the last ``sync``)."""
        return sum(sg.c - sg.u for sg in self.segs.values())

    def queue_blocks(self) -> int:
        """Blocks in the free queue (plain and cached), as of the last ``sync``."""
        return sum(-e for e in self._queue if type(e) is int) + self.cached_blocks

    def blocks(self) -> tuple[dict[int, int], set[int]]:
        """(hash -> running requests using it, hashes cached in the free queue), block by block (for tests)."""
        ref: dict[int, int] = {}
        cached: set[int] = set()
        for sid, sg in self.segs.items():
            for j in range(sg.j0, sg.c):
                h = (sid << _SHIFT) | j
                if j < sg.u:
                    ref[h] = sum(k for e, k in sg.ends.items() if e > j)
                else:
                    cached.add(h)
        return ref, cached

    @property
    def hit_rate(self) -> float:
        """Share of the prompt tokens looked up at admission that were found cached."""
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0
