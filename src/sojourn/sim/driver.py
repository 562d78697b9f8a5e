"""The one way a node is driven: wake it for outside work, and run it alone.

``wake(node, t)`` is how the outside world reaches a node (an arrival, a cancellation):
stop it at its first boundary at or after ``t`` and say whether it may plan there now.
The fleet (``fleet.FleetSim._poke``) and ``drive`` both use it.

``drive(node, ...)`` runs one node on its own, plan -> fire -> plan, letting timed
outside arrivals in as the fleet would: the closed-loop benchmark client
(``closed_loop``) and the saturated-node capacity measurement
(``sojourn.fast.capacity``) are this loop with their own callbacks. The fleet orders the
events of many nodes on one heap, so it runs their ``fire``/``plan`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sojourn.sim.engine import EngineEvent
from sojourn.sim.node import Node

__all__ = ["drive", "wake"]


def wake(node: Node, t: float) -> bool:
    """Stop ``node`` at its first boundary at or after ``t``; True when it is at a boundary
    now (it may ``plan()``), False while a step that cannot be cut is in flight (its
    ``fire()`` comes first, and plans from its end)."""
    node.interrupt(t)
    return node.at_boundary()


def drive(
    node: Node,
    more: Callable[[], bool],
    on_done: Callable[[EngineEvent], Any],
    arrivals: list[float] | None = None,
    on_arrival: Callable[[float], Any] | None = None,
    on_plan: Callable[[Node, float], Any] | None = None,
) -> None:
    """Run ``node`` alone while ``more()``: plan from its boundary, fire at the planned end,
    hand each "done" event to ``on_done`` (which may give the node more work).

    ``arrivals``: times (sorted; consumed) at which ``on_arrival(t)`` gives the node work
    from outside; each wakes the node first (``wake``), and one that finds a step in
    flight waits for its end. ``on_plan(node, end)`` sees every plan before it fires.
    Raises RuntimeError when the node has nothing planned while ``more()`` holds.
    """
    pending = arrivals if arrivals is not None else []
    while more():
        end = node.plan()
        while pending and pending[0] < end:
            if not wake(node, pending[0]):
                break  # inside a step that is never cut: the arrival joins after it
            on_arrival(pending.pop(0))  # type: ignore[misc]
            end = node.plan()
        if math.isinf(end):
            raise RuntimeError("the node went idle while work was expected")
        if on_plan is not None:
            on_plan(node, end)
        for ev in node.fire():
            if ev.kind == "done":
                on_done(ev)
