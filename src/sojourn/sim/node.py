"""What the fleet may ask of a node, and what the engine asks of a performance model.

``Node`` is the protocol of a node kind (the LLM engine ``engine.Engine``, the c-slot
server ``generic.GenericNode``): the engine driver (``driver.Scheduler``, which runs the
fleet and a node alone) and the routers use nothing else of a node. A new node kind implements it, goes
beside the others in ``sojourn.sim``, and joins the contract suite
(tests/test_node_kinds_contract.py, tests/test_node_protocol.py).

``EnginePerf`` is what the engine needs of a performance model (``sojourn.perf.PerfModel``
implements it): step times only, so the simulator depends on this protocol and the perf
package never needs the simulator.

``PlanKind`` names what an engine has planned from its last step boundary.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sojourn.sim.engine import EngineEvent

__all__ = ["EnginePerf", "Node", "PlanKind"]


class PlanKind(enum.StrEnum):
    """What ``Engine.plan()`` fixed (a ``str``: equal to, and hashed as, its value)."""

    IDLE = "idle"  #: nothing planned: the node is at a step boundary
    STEP = "step"  #: one step with prefill chunks
    RUN = "run"  #: k >= 1 decode-only steps, to the next completion or failing block allocation
    STEPRUN = "steprun"  #: one step with prefill, then k >= 1 decode-only steps, as one event


@runtime_checkable
class Node(Protocol):
    """A node as the fleet drives it: advanced event by event, fed from a queue.

    Driving: ``plan()`` at a boundary fixes the next step and returns its end (``inf``:
    nothing to do); ``fire()`` applies it at that end and returns its events (``"done"``
    ones complete requests); ``interrupt(t)`` stops the node at its first boundary at or
    after ``t``, after which ``at_boundary()`` says whether it may plan again now (False:
    a step that cannot be cut is in flight, and its ``fire()`` comes first).
    ``source(node, free)`` is the queue it pulls from: the next request if it fits in
    ``free`` (units of the node's own load), else None (nothing queued) or False (the
    head does not fit). ``enqueue``/``remove`` manage its local queue and cancellations.

    Questions the fleet asks between events, none of which changes what the node does:
    ``may_take(t)``, ``can_admit(prompt)``, ``load(t)``, ``next_event_time()``,
    ``counters(t)``. ``cut_for_arrival(t)`` is the one that may: it shortens a plan whose
    end could take newly arrived work (then ``next_event_time()`` moves earlier).
    """

    index: int
    now: float
    source: Callable[[Any, int], Any] | None
    busy_time: float
    kv_block_seconds: float
    preemptions: int

    def plan(self) -> float: ...

    def fire(self) -> list[EngineEvent]: ...

    def interrupt(self, t: float) -> float: ...

    def enqueue(self, req: Any, front: bool = False) -> None: ...

    def remove(self, req: Any) -> bool: ...

    def at_boundary(self) -> bool:
        """Nothing planned: the node may ``plan()`` now."""
        ...

    def next_event_time(self) -> float:
        """The end of what is planned (``inf`` when nothing is)."""
        ...

    def may_take(self, t: float) -> bool | None:
        """Whether waking the node at ``t`` could start new work: True or False, or None
        when that depends on the request (ask ``can_admit`` with the queue's head)."""
        ...

    def can_admit(self, tokens: int) -> bool:
        """Whether a request of ``tokens`` prompt tokens would be admitted at the next boundary."""
        ...

    def cut_for_arrival(self, t: float) -> bool:
        """Shorten the plan to a boundary before its end that could take work arriving at
        ``t``, if there is one; True when it did (``next_event_time()`` moved earlier)."""
        ...

    def load(self, t: float) -> int:
        """The node's load at ``t`` as a router weighs it (KV blocks in use; busy slots)."""
        ...

    def counters(self, t: float) -> tuple[float, float, int]:
        """(busy seconds per unit of capacity, KV block-seconds, preemptions) up to ``t``,
        to within one step."""
        ...


@runtime_checkable
class EnginePerf(Protocol):
    """What ``engine.Engine`` asks of a performance model: the time of its steps."""

    @property
    def seconds_per_context_token(self) -> float:
        """Decode-step seconds per token of context read (linear in context)."""
        ...

    def step_time(
        self,
        prefill_tokens: float,
        decode_seqs: float,
        decode_context: float,
        prefill_pairs: float | None = None,
        prefill_done: int = 0,
    ) -> float:
        """Seconds of one step: prefill chunks plus one token for each decoding sequence."""
        ...

    def decode_run_time(self, seqs: int, context0: float, steps: int) -> float:
        """Exact seconds of ``steps`` decode-only steps of ``seqs`` sequences from ``context0``."""
        ...

    def decode_step_fixed(self, seqs: int) -> float:
        """The part of a decode step's time that does not depend on the context."""
        ...
