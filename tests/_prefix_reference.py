"""A reference for tests: ``sojourn.sim.prefix.PrefixCache`` block by block (one dict entry per
hashed block, one queue entry per cached block), as it was first written. The shipped cache keeps
runs of blocks instead; tests/test_prefix_cache.py runs engines on both and compares them."""

from __future__ import annotations

from collections import deque
from typing import Any

from sojourn.sim.prefix import block_hashes


class BlockPrefixCache:
    """Reference counts of the hashed blocks in use, and the LRU free block queue.

    The queue holds ints: ``-n`` for n plain free blocks, ``s >= 0`` for the cached block
    of stamp ``s`` (``_stamp_hash[s]`` is its hash while it is still there: taking a block
    back leaves a stale stamp, skipped when popped).
    """

    __slots__ = ("bs", "ref", "held", "cached", "_stamp_hash", "_queue", "_stamp", "popped", "taken", "freed",
                 "queries", "query_tokens", "hit_tokens", "hit_requests", "evictions", "_chains")

    def __init__(self, total_blocks: int, block_size: int) -> None:
        self.bs = block_size
        self.ref: dict[int, int] = {}  # hash -> running requests using it (> 0)
        self.held: dict[Any, list[int]] = {}  # running request -> the hashed blocks it uses, in order
        self.cached: dict[int, int] = {}  # hash -> stamp of a cached block in the free queue
        self._stamp_hash: dict[int, int] = {}
        self._queue: deque[int] = deque([-total_blocks]) if total_blocks else deque()
        self._stamp = 0
        self.popped = 0  # blocks allocated from the queue's head (cumulative)
        self.taken = 0  # cached blocks taken back by a hit (cumulative)
        self.freed = 0  # blocks returned to the queue (cumulative)
        # Statistics: admissions looked up, their prompt tokens, the tokens they found cached.
        self.queries = 0
        self.query_tokens = 0
        self.hit_tokens = 0
        self.hit_requests = 0
        self.evictions = 0
        self._chains: dict[Any, list[int]] = {}  # (prefix, tokens) -> block_hashes, for repeated prefixes

    def hashes(self, prefix: Any, tokens: int) -> list[int]:
        """``block_hashes`` of a request, remembered by value (a synthetic prefix group's recur)."""
        key = (prefix, tokens if tokens <= prefix[2] else -1)  # past its prefix, the length does not matter
        h = self._chains.get(key)
        if h is None:
            if len(self._chains) >= 65_536:
                self._chains.clear()
            h = self._chains[key] = block_hashes(prefix, tokens, self.bs)
        return h

    # -- the queue ------------------------------------------------------------------------

    def sync(self, used: int) -> None:
        """Pop the blocks the engine has allocated since the last call (``used``: its blocks in use,
        including any it has reserved for the coming step)."""
        n = used - self.taken + self.freed - self.popped
        if n <= 0:
            return
        self.popped += n
        q, stamps, cached = self._queue, self._stamp_hash, self.cached
        while n and q:
            e = q.popleft()
            if e < 0:
                if -e > n:
                    q.appendleft(e + n)
                    return
                n += e
            else:
                h = stamps.pop(e, None)
                if h is not None:
                    del cached[h]
                    self.evictions += 1
                    n -= 1

    # -- admission and release ----------------------------------------------------------------

    def shared_in_use(self, prefix: Any, tokens: int) -> int:
        """Blocks of a request's leading hit that other running requests already use (they need no
        free block): its prompt needs ``blocks − shared_in_use`` free blocks to be admitted."""
        if prefix is None:
            return 0
        ref = self.ref
        n = 0
        for h in self.hashes(prefix, tokens):
            if h not in ref:
                break
            n += 1
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
        hashes = self.hashes(prefix, tokens)
        ref, cached, stamps = self.ref, self.cached, self._stamp_hash
        get, pop = ref.get, cached.pop
        hit = shared = 0
        for h in hashes:  # the leading hit: blocks in use (shared), or cached (taken back)
            c = get(h)
            if c is not None:
                ref[h] = c + 1
                shared += 1
            else:
                s = pop(h, None)
                if s is None:
                    break
                del stamps[s]
                ref[h] = 1
            hit += 1
        self.taken += hit - shared
        held = hashes
        for j in range(hit, len(hashes)):  # computed by this request, findable from now on
            h = hashes[j]
            if h in cached or h in ref:  # cached past a miss: computed again into a plain block
                held = hashes[:j] + [x for x in hashes[j:] if x not in cached and x not in ref]
                for x in held[j:]:
                    ref[x] = 1
                break
            ref[h] = 1
        if held:
            self.held[r] = held
        if hit:
            self.hit_requests += 1
            self.hit_tokens += hit * self.bs
        return hit * self.bs, shared

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
        plain = blocks - len(held)
        if plain:
            q.append(-plain)
        ref, cached, stamps = self.ref, self.cached, self._stamp_hash
        kept = 0
        s = self._stamp
        for h in reversed(held):
            c = ref[h] - 1
            if c:
                ref[h] = c
                kept += 1
            else:
                del ref[h]
                stamps[s] = h
                cached[h] = s
                q.append(s)
                s += 1
        self._stamp = s
        self.freed += blocks - kept
        return kept

    # -- queries --------------------------------------------------------------------------------

    @property
    def cached_blocks(self) -> int:
        """Blocks of the free queue that still hold a cached prefix (as of the last ``sync``)."""
        return len(self.cached)

    def queue_blocks(self) -> int:
        """Blocks in the free queue (plain and cached), as of the last ``sync``."""
        return sum(-e for e in self._queue if e < 0) + len(self._stamp_hash)

    @property
    def hit_rate(self) -> float:
        """Share of the prompt tokens looked up at admission that were found cached."""
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0
