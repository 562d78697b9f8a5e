"""The one engine driver: node step ends on an event heap, for the fleet and for one node alone.

``Scheduler`` is the single piece of code that schedules nodes. It keeps each node's
planned step end on one heap ``(time, kind, counter, arg, version)`` (kind ``FIRE``; a
node's version number makes its superseded entries stale), and does everything the
outside world does to a node:

* ``poke(node, t)``: new work or a removal at ``t``: ``wake`` the node (stop it at its
  first boundary at or after ``t``) and plan again there; a "steprun" cut back to its
  prefill step is rescheduled; a step that cannot be cut is left to end, and its end plans.
* ``replan(node)``, ``resched(node)``: plan from a boundary; move a step end that came earlier.
* ``fire(i)``: node ``i``'s step ends: its "done" events go to ``on_done``, the removals
  waiting for a boundary (``pend``) are applied, and its next step is planned and
  scheduled (unless the run is over: ``stopped``).
* ``run(other)``: the event loop: pop in time order, fire node step ends, hand every other
  event (the caller's kinds, above ``FIRE``) to ``other(t, kind, arg, version)``; stop at
  ``cap``, when the heap is empty, or once ``stopped`` is set.

Users: the fleet (``fleet.FleetSim``) puts its arrivals, deadlines and measurement
marks on the same heap and runs its loop here; ``drive(node, ...)`` runs one node alone
with timed outside arrivals (the closed-loop benchmark client, ``closed_loop``, and the
saturated-node capacity measurement, ``sojourn.fast.capacity``). There is one loop and
one set of scheduling rules for both; what differs is only what the caller's events do.
The loop stays thin on purpose (``fire`` is the hot path of every replication: bound
methods and locals, no per-event hook unless a caller passes its own ``fire``).

At equal times, node step ends come before anything else (the caller's kinds order the
rest), and ties keep insertion order, so runs are deterministic.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from typing import Any

from sojourn.sim.engine import EngineEvent
from sojourn.sim.node import Node

__all__ = ["FIRE", "Scheduler", "drive", "wake"]

#: The heap kind of a node's step end (its ``arg`` the node's index, its version the node's).
FIRE = 0
# drive()'s own kinds: an arrival that waited for a step's end comes right after that end,
# before any arrival at the same instant.
_LATE, _ARRIVAL = 1, 2


def wake(node: Node, t: float) -> bool:
    """Stop ``node`` at its first boundary at or after ``t``; True when it is at a boundary
    now (it may ``plan()``), False while a step that cannot be cut is in flight (its
    ``fire()`` comes first, and plans from its end)."""
    node.interrupt(t)
    return node.at_boundary()


class Scheduler:
    """The step ends of ``nodes`` (``node.index`` their position) on one event heap (module docstring).

    ``on_done(event)`` receives every "done" event a node's ``fire()`` returns. ``pend[i]``
    holds requests to ``remove`` from node ``i`` at its next boundary (cancelled while a step
    was in flight). ``now`` is the time of the event being handled.
    """

    def __init__(self, nodes: Sequence[Node], on_done: Callable[[EngineEvent], Any]) -> None:
        n = len(nodes)
        if any(node.index != i for i, node in enumerate(nodes)):
            raise ValueError("a Scheduler's nodes are indexed 0, 1, ... in order (node.index)")
        self.nodes = nodes
        self.on_done = on_done
        self.heap: list[tuple[float, int, int, Any, int]] = []
        self.count = 0  # entries ever pushed (the heap's tie-break, and a count of events)
        self.sched = [math.inf] * n  # each node's scheduled step end
        self.version = [0] * n  # each node's live entry; older ones are stale
        self.pend: list[list[Any]] = [[] for _ in range(n)]
        self.now = 0.0
        self.stopped = False  # set by a caller: no more plans, and the loop ends

    def push(self, t: float, kind: int, arg: Any = None, version: int = 0) -> None:
        """Put an event of the caller's on the heap (``kind`` > ``FIRE``)."""
        self.count += 1
        heapq.heappush(self.heap, (t, kind, self.count, arg, version))

    def replan(self, node: Node) -> None:
        """Plan the node's next step from its boundary; schedule its end if it moved."""
        end = node.plan()
        i = node.index
        if end != self.sched[i]:
            self.sched[i] = end
            self.version[i] += 1
            if end < math.inf:
                self.push(end, FIRE, i, self.version[i])

    def resched(self, node: Node) -> None:
        """The node's plan ends earlier than scheduled (a "steprun" cut back to its prefill step)."""
        i = node.index
        end = self.sched[i] = node.next_event_time()
        self.version[i] += 1
        self.push(end, FIRE, i, self.version[i])

    def poke(self, node: Node, t: float, let_in: Callable[[], Any] | None = None) -> bool:
        """New work or a removal at ``t``: stop the node at its first boundary and replan there.

        ``let_in()``, when given, runs once the node is at a boundary, before it plans (it
        gives the node the new work). Returns whether the node was at a boundary; if not, a
        step that cannot be cut is in flight and its end plans (a "steprun" cut back to its
        prefill step is rescheduled to that step's end).
        """
        if wake(node, t):
            if let_in is not None:
                let_in()
            if self.pend[node.index]:
                self.purge(node)
            self.replan(node)
            return True
        if node.next_event_time() != self.sched[node.index]:
            self.resched(node)
        return False

    def purge(self, node: Node) -> None:
        """Remove from the node (at a boundary) the requests waiting in ``pend``."""
        pend = self.pend[node.index]
        for r in pend:
            node.remove(r)
        pend.clear()

    def fire(self, i: int) -> None:
        """Node ``i``'s step or run ends: its completions, its removals, then its next step."""
        node = self.nodes[i]
        on_done = self.on_done
        for ev in node.fire():
            if ev.kind == "done":
                on_done(ev)
        if self.pend[i]:
            self.purge(node)
        if self.stopped:
            return
        end = node.plan()
        self.sched[i] = end
        if end < math.inf:
            v = self.version[i] = self.version[i] + 1
            self.count += 1
            heapq.heappush(self.heap, (end, FIRE, self.count, i, v))

    def run(self, other: Callable[[float, int, Any, int], Any], cap: float = math.inf,
            fire: Callable[[int], Any] | None = None) -> None:
        """Handle events in time order until ``cap``, an empty heap or ``stopped``: live step
        ends by ``fire`` (default ``self.fire``), the caller's events by ``other``."""
        heap, pop = self.heap, heapq.heappop
        version = self.version
        fire_ = self.fire if fire is None else fire
        while heap and not self.stopped:
            t, kind, _, arg, ver = pop(heap)
            if t > cap:
                break
            self.now = t
            if kind == FIRE:
                if ver == version[arg]:
                    fire_(arg)
            else:
                other(t, kind, arg, ver)


def drive(
    node: Node,
    more: Callable[[], bool],
    on_done: Callable[[EngineEvent], Any],
    arrivals: list[float] | None = None,
    on_arrival: Callable[[float], Any] | None = None,
    on_plan: Callable[[Node, float], Any] | None = None,
) -> None:
    """Run ``node`` alone on a ``Scheduler`` while ``more()``: plan from its boundary, fire at
    the planned end, hand each "done" event to ``on_done`` (which may give the node more work).

    ``more()`` is asked at the start and after each completion; once False, the node plans no
    more and the run ends. ``arrivals``: times (sorted; consumed) at which ``on_arrival(t)``
    gives the node work from outside; each pokes the node first, and one that finds a step
    that cannot be cut waits for its end (with those after it), then joins as the next step
    is planned. ``on_plan(node, end)`` sees each plan just before it fires.
    Raises RuntimeError when the node has nothing planned while ``more()`` holds.
    """
    if not more():
        return
    pending = arrivals if arrivals is not None else []
    s: Scheduler

    def done(ev: EngineEvent) -> None:
        on_done(ev)
        if not more():
            s.stopped = True

    s = Scheduler([node], done)  # node.index must be 0

    def let_in() -> None:
        on_arrival(pending.pop(0))  # type: ignore[misc]

    def arrive(t: float, kind: int, arg: Any, ver: int) -> None:
        if s.poke(node, pending[0], let_in):
            if pending:
                s.push(pending[0], _ARRIVAL)
        else:  # a step that is never cut: the arrival, and those after it, wait for its end
            s.push(node.next_event_time(), _LATE)

    def fire(i: int) -> None:
        on_plan(node, s.now)  # type: ignore[misc]
        s.fire(i)

    s.replan(node)
    if pending:
        s.push(pending[0], _ARRIVAL)
    s.run(arrive, fire=None if on_plan is None else fire)
    if not s.stopped:
        raise RuntimeError("the node went idle while work was expected")
