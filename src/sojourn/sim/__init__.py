"""The request-level fleet simulator: every request through every node's scheduler.

``simulate(scenario)`` runs independent replications and returns a ``SimResult``
with P(S > SLA), its confidence interval and upper bound, and the sojourn,
throughput and utilisation statistics. The node engines (``engine``, ``generic``),
the queue disciplines, the workload and the event loop live in their own modules.
"""

from sojourn.sim.closed_loop import ClosedLoopResult, closed_loop
from sojourn.sim.disciplines import DISCIPLINES, Discipline
from sojourn.sim.estimate import SimResult, simulate
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
    "SimResult",
    "closed_loop",
    "run_replication",
    "simulate",
]
