"""The generic c-server node: each request holds one slot for its own service time.

It is a ``sim.node.Node``, as the engine is, so the fleet runs it with the same
disciplines, routing and statistics: with Poisson arrivals the fleet is an M^X/G/(nodes·c) queue, the
reference the simulator is checked against. Every instant is a boundary here,
so ``interrupt`` is exact and the node never lags the fleet clock.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from sojourn.sim.engine import EngineEvent

__all__ = ["GenericNode"]


class GenericNode:
    """``concurrency`` slots; a request's service time is ``req.service / speed`` seconds."""

    def __init__(
        self,
        concurrency: int,
        source: Callable[[GenericNode, int], Any] | None = None,
        index: int = 0,
        speed: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.c = int(concurrency)
        #: A request takes ``req.service / speed`` seconds here (a mixed fleet's faster pool: speed > 1).
        self.speed = float(speed)
        self.source = source
        self.index = index
        self.now = 0.0
        self.busy = 0  # slots in use
        self.heap: list[tuple[float, int, Any]] = []  # (end, seq, request); removed ones stay, dead
        self.waiting: deque[Any] = deque()  # local queue (requests pushed to this node)
        self._seq = 0
        self._last = 0.0
        # Statistics, as the engine keeps them (slot-seconds busy; no KV, no preemption).
        self.busy_time = 0.0
        self.kv_block_seconds = 0.0
        self.preemptions = 0
        self.used = 0
        self.total_blocks = 0

    def busy_time_at(self, t: float) -> float:
        """Slot-seconds busy up to ``t`` (``t`` at or after the last event)."""
        return self.busy_time + self.busy * (t - self._last)

    # -- the Node protocol's questions (sim.node.Node): every instant is a boundary ------

    def at_boundary(self) -> bool:
        return True

    def next_event_time(self) -> float:
        h = self.heap
        while h and not h[0][2].alive:
            heapq.heappop(h)
        return h[0][0] if h else math.inf

    def may_take(self, t: float) -> bool | None:
        return self.busy < self.c

    def can_admit(self, tokens: int) -> bool:
        return not self.waiting and self.busy < self.c

    def cut_for_arrival(self, t: float) -> bool:
        return False

    def load(self, t: float) -> int:
        """Busy slots."""
        return self.busy

    def counters(self, t: float) -> tuple[float, float, int]:
        """(busy seconds per slot, 0 KV block-seconds, 0 preemptions) up to ``t``."""
        return self.busy_time_at(t) / self.c, self.kv_block_seconds, self.preemptions

    def _advance(self, t: float) -> None:
        if t > self._last:
            self.busy_time += self.busy * (t - self._last)
            self._last = t
        if t > self.now:
            self.now = t

    def interrupt(self, t: float) -> float:
        self._advance(t)
        return self.now

    def enqueue(self, req: Any, front: bool = False) -> None:
        req.node = self.index
        if front:
            self.waiting.appendleft(req)
        else:
            self.waiting.append(req)

    def remove(self, req: Any) -> bool:
        """Free a request's slot (its heap entry is dropped lazily), or drop it from the local queue."""
        if req.alive and req.node == self.index:
            req.alive = False
            self.busy -= 1
            return True
        try:
            self.waiting.remove(req)
            return True
        except ValueError:
            return False

    def plan(self) -> float:
        """Fill free slots at ``now``; return the time of the next completion (inf when idle)."""
        now = self.now
        while self.busy < self.c:
            if self.waiting:
                r = self.waiting.popleft()
            elif self.source is not None:
                r = self.source(self, self.c - self.busy)
                if r is None:
                    break
            else:
                break
            r.alive = True
            r.node = self.index
            self.busy += 1
            self._seq += 1
            heapq.heappush(self.heap, (now + r.service / self.speed, self._seq, r))
        h = self.heap
        while h and not h[0][2].alive:
            heapq.heappop(h)
        return h[0][0] if h else math.inf

    def fire(self) -> list[EngineEvent]:
        """Complete every request whose service ends at the next completion time."""
        h = self.heap
        while h and not h[0][2].alive:
            heapq.heappop(h)
        if not h:
            return []
        t = h[0][0]
        self._advance(t)
        events = []
        while h and h[0][0] <= t:
            r = heapq.heappop(h)[2]
            if r.alive:
                r.alive = False
                self.busy -= 1
                events.append(EngineEvent("done", r, t))
        return events
