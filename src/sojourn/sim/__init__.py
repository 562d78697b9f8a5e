"""The request-level fleet simulator: every request through every node's scheduler.

``run_replication(scenario, seed)`` simulates one replication of a fleet. The node
engines (``engine``, ``generic``), the workload and the event
loop live in their own modules; the queue disciplines it runs are ``sojourn.disciplines``
(re-exported here), a layer below, where the scenario reads their names. Replications pooled into P(S > SLA) with its intervals
(``simulate``, ``SimResult``) are the request tier's estimate, ``sojourn.request``,
a layer above the fast tier whose stationary law starts them.
"""

from sojourn.disciplines import DISCIPLINES, Discipline
from sojourn.sim.closed_loop import ClosedLoopResult, closed_loop
from sojourn.sim.fleet import FleetSim, ReplicationStats, run_replication
from sojourn.sim.generic import GenericNode
from sojourn.sim.node import EnginePerf, Node, PlanKind

__all__ = [
    "ClosedLoopResult",
    "DISCIPLINES",
    "Discipline",
    "EnginePerf",
    "FleetSim",
    "GenericNode",
    "Node",
    "PlanKind",
    "ReplicationStats",
    "closed_loop",
    "run_replication",
]
