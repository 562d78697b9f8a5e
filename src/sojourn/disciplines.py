"""Queue disciplines: the order of a waiting queue and which request a node takes next.

Each discipline is a small plug-in with one contract (``Discipline``): ``push`` a
request (``extend`` several), ``peek(now)`` at the one a node would take next,
``pop(now)`` it (or ``take`` the one just peeked at), ``discard`` one that left
(cancelled at its deadline), ``len`` of the live requests. Removal is lazy (a
request's ``inq`` flag), so no operation scans the queue. Requests are
duck-typed: ``rid`` (arrival order), ``prompt``, ``deadline`` (absolute seconds),
``batch``, ``inq``.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "DISCIPLINES",
    "Discipline",
    "Edf",
    "Fair",
    "Fifo",
    "Lifo",
    "QueueContext",
    "Sjf",
    "SjfWork",
    "Triage",
    "make_discipline",
]


def _no_drop(req: Any, now: float) -> None:
    raise RuntimeError("a discipline dropped a request but no drop handler was given")


@dataclass(frozen=True)
class QueueContext:
    """What a discipline may know besides the requests themselves.

    ``predict(req)`` is the request's predicted work in seconds, a fixed key for
    ordering (``sjf_work``): its forecast where the scenario has one
    (``serving.forecast_sigma``), else the mean. ``estimate(req)`` is its predicted
    service time if it started now on the node asking for work, that node's load
    included, a median rather than a mean (``triage``: "more likely to miss than to
    make it"); unset, ``predict`` stands in. ``drop(req, now)`` is called when a
    discipline gives up on a request; ``late_ok`` means late work is finished
    (``on_deadline = "finish"``), so nothing may be dropped.
    """

    predict: Callable[[Any], float] = lambda req: 0.0
    drop: Callable[[Any, float], None] = _no_drop
    late_ok: bool = False
    estimate: Callable[[Any], float] | None = None


class Discipline(ABC):
    """The contract every discipline implements (see the module docstring)."""

    name: ClassVar[str]

    def __init__(self, ctx: QueueContext | None = None) -> None:
        self.ctx = ctx or QueueContext()
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def push(self, req: Any) -> None:
        req.inq = True
        self.n += 1
        self._push(req)

    def peek(self, now: float) -> Any | None:
        """The request a node would take next at ``now`` (None: the queue is empty)."""
        return self._head(now) if self.n else None

    def pop(self, now: float) -> Any | None:
        """Take the request ``peek(now)`` names."""
        req = self.peek(now)
        if req is not None:
            self._remove_head(req)
            req.inq = False
            self.n -= 1
        return req

    def take(self, req: Any) -> None:
        """Remove ``req``, the request ``peek(now)`` has just named (nothing pushed or popped since).

        The same as ``pop(now)`` without looking for the head a second time.
        """
        self._remove_head(req)
        req.inq = False
        self.n -= 1

    def extend(self, reqs: Any) -> None:
        """Push requests in order (as ``push`` one by one)."""
        for req in reqs:
            self.push(req)

    def discard(self, req: Any) -> None:
        """A queued request leaves (cancelled); its entry is dropped lazily."""
        if req.inq:
            req.inq = False
            self.n -= 1

    @abstractmethod
    def _push(self, req: Any) -> None: ...

    @abstractmethod
    def _head(self, now: float) -> Any | None:
        """The live head (stale entries cleaned off); only called when n > 0."""

    @abstractmethod
    def _remove_head(self, req: Any) -> None: ...


class Fifo(Discipline):
    """Batch arrival order, requests of a batch in order."""

    name = "fifo"

    def __init__(self, ctx: QueueContext | None = None) -> None:
        super().__init__(ctx)
        self.q: deque[Any] = deque()

    def _push(self, req: Any) -> None:
        self.q.append(req)

    def extend(self, reqs: Any) -> None:
        for req in reqs:
            req.inq = True
        self.n += len(reqs)
        self.q.extend(reqs)

    def peek(self, now: float) -> Any | None:
        if not self.n:
            return None
        q = self.q
        while not q[0].inq:
            q.popleft()
        return q[0]

    def _head(self, now: float) -> Any | None:
        q = self.q
        while not q[0].inq:
            q.popleft()
        return q[0]

    def _remove_head(self, req: Any) -> None:
        self.q.popleft()

    def take(self, req: Any) -> None:
        self.q.popleft()
        req.inq = False
        self.n -= 1


class Lifo(Discipline):
    """The newest request first (a stack): old work waits, fresh work meets its deadline."""

    name = "lifo"

    def __init__(self, ctx: QueueContext | None = None) -> None:
        super().__init__(ctx)
        self.q: list[Any] = []

    def _push(self, req: Any) -> None:
        self.q.append(req)

    def _head(self, now: float) -> Any | None:
        q = self.q
        while not q[-1].inq:
            q.pop()
        return q[-1]

    def _remove_head(self, req: Any) -> None:
        self.q.pop()


class _Keyed(Discipline):
    """A heap on ``key(req)``, ties in arrival order."""

    def __init__(self, ctx: QueueContext | None = None) -> None:
        super().__init__(ctx)
        self.h: list[tuple[float, int, Any]] = []

    def key(self, req: Any) -> float:
        raise NotImplementedError

    def _push(self, req: Any) -> None:
        heapq.heappush(self.h, (self.key(req), req.rid, req))

    def _head(self, now: float) -> Any | None:
        h = self.h
        while not h[0][2].inq:
            heapq.heappop(h)
        return h[0][2]

    def _remove_head(self, req: Any) -> None:
        heapq.heappop(self.h)


class Sjf(_Keyed):
    """Shortest prompt first: what a scheduler can see without knowing the output length."""

    name = "sjf"

    def key(self, req: Any) -> float:
        prompt: float = req.prompt
        return prompt


class SjfWork(_Keyed):
    """Least predicted work first: prefill of the prompt plus decode of the forecast output.

    The forecast is ``serving.forecast_sigma``'s: the true output length (or, on a
    generic server, service time) times a lognormal error, 0 an oracle. Without one
    every request's output is predicted as the mean, so this orders as ``sjf`` does on
    an engine (and as ``fifo`` on a generic server).
    """

    name = "sjf_work"

    def key(self, req: Any) -> float:
        return self.ctx.predict(req)


class Edf(_Keyed):
    """Earliest deadline first (per-batch SLA classes)."""

    name = "edf"

    def key(self, req: Any) -> float:
        deadline: float = req.deadline
        return deadline


class Fair(Discipline):
    """Round-robin over the queued batches: one request of each batch in turn."""

    name = "fair"

    def __init__(self, ctx: QueueContext | None = None) -> None:
        super().__init__(ctx)
        self.turns: deque[tuple[Any, deque[Any]]] = deque()  # (batch, its own FIFO) in turn order
        self.of: dict[Any, deque[Any]] = {}

    def _push(self, req: Any) -> None:
        q = self.of.get(req.batch)
        if q is None:
            q = self.of[req.batch] = deque()
            self.turns.append((req.batch, q))
        q.append(req)

    def _head(self, now: float) -> Any | None:
        turns = self.turns
        while True:
            batch, q = turns[0]
            while q and not q[0].inq:
                q.popleft()
            if q:
                return q[0]
            turns.popleft()
            del self.of[batch]

    def _remove_head(self, req: Any) -> None:
        turn = self.turns.popleft()
        q = turn[1]
        q.popleft()
        if q:
            self.turns.append(turn)
        else:
            del self.of[turn[0]]


class Triage(Discipline):
    """Earliest deadline first, but never starts a request that can no longer make it.

    A request is hopeless when ``now + estimate(req)`` is past its deadline: started
    now on the node that asks for work, it would more likely miss than make it (the
    estimate is a median service time on that node as loaded now, no further waiting;
    see ``QueueContext``). Hopeless requests are dropped (``ctx.drop``: a miss,
    counted as cancelled) so capacity goes to requests that can still make it; when
    late work is finished (``late_ok``) they wait in a late queue served only when no
    request can make it.
    """

    name = "triage"

    def __init__(self, ctx: QueueContext | None = None) -> None:
        super().__init__(ctx)
        self.h: list[tuple[float, int, Any]] = []
        self.late: deque[Any] = deque()  # already in deadline order (moved off the heap's top)
        self._from_late = False
        self._estimate = self.ctx.estimate or self.ctx.predict

    def _push(self, req: Any) -> None:
        heapq.heappush(self.h, (req.deadline, req.rid, req))

    def _head(self, now: float) -> Any | None:
        h = self.h
        estimate = self._estimate
        while h:
            deadline, _, req = h[0]
            if not req.inq:
                heapq.heappop(h)
            elif now + estimate(req) > deadline:
                heapq.heappop(h)
                if self.ctx.late_ok:
                    self.late.append(req)
                else:
                    req.inq = False
                    self.n -= 1
                    self.ctx.drop(req, now)
            else:
                self._from_late = False
                return req
        late = self.late
        while late and not late[0].inq:
            late.popleft()
        if late:
            self._from_late = True
            return late[0]
        return None

    def _remove_head(self, req: Any) -> None:
        if self._from_late:
            self.late.popleft()
        else:
            heapq.heappop(self.h)


#: Every discipline by its scenario name (``serving.discipline``).
DISCIPLINES: dict[str, type[Discipline]] = {
    cls.name: cls for cls in (Fifo, Lifo, Sjf, SjfWork, Edf, Fair, Triage)
}


def make_discipline(name: str, ctx: QueueContext | None = None) -> Discipline:
    try:
        cls = DISCIPLINES[name]
    except KeyError:
        from sojourn._errors import ConfigError

        raise ConfigError("serving.discipline", f"got {name!r}; allowed: {', '.join(DISCIPLINES)}") from None
    return cls(ctx)
