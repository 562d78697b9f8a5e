"""The fast tier: a batch-level fluid model of the fleet and FIFO tail analytics.

Each node serves at its saturation throughput for the workload mix (measured
once on the request-level engine and cached); the fleet is one server of that
capacity over batches; FIFO runs as a vectorised Lindley recursion and the other
orders as an event loop over batches; the Cramér–Lundberg and subexponential
asymptotics give P(miss) far below what sampling reaches. ``fast_simulate`` is
the entry point; its result has the request-level result's keys plus
``fidelity = "fast"``, ``load``, ``capacity_rps``, ``analytic_p_miss``,
``analytic_regime`` and ``tiers``.

Where it is approximate (measured in ``benchmarks/agreement.py``; RESULTS.md):

* Time resolution is one request latency. When the SLA is within some tens of
  latencies and batches hold only a few times the fleet's slots, a batch that
  finds idle nodes starts a cohort whose prefills crowd the first steps; the
  fluid uses the saturated latency law and runs optimistic (P(miss) 10-20% low
  there, inside the request-level interval on all but one of 23 scenarios).
* Push routing (``round_robin``, ``least_loaded``) is modelled as pull.
* ``fair`` and ``triage`` are not in the fast tier (ConfigError names the field).
* The asymptotics are for FIFO (and EDF with one deadline): with a rate profile
  they give an upper bound at the peak-hour rate; the subexponential one is an
  asymptotic, loose (x2 and more) at SLAs of a few batch drain times, which the
  result says (``agreement``).

No Optuna or joblib here: the search layer depends on this, never the reverse.
"""

from sojourn.fast.capacity import (
    LoadReport,
    NodeCapacity,
    analytic_node_throughput,
    clear_capacity_cache,
    load_report,
    node_capacity,
)
from sojourn.fast.lindley import lindley, lindley_capped
from sojourn.fast.simulate import (
    FAST_DISCIPLINES,
    FastResult,
    analytic_p_miss,
    fast_simulate,
    fluid_fleet,
    mixture_p_miss,
    nodes_up_law,
    offered_load,
)
from sojourn.fast.tails import FifoTail, adjustment_coefficient, batch_size_pgf, distribution_mgf, fifo_tail

__all__ = [
    "FAST_DISCIPLINES",
    "FastResult",
    "FifoTail",
    "LoadReport",
    "NodeCapacity",
    "adjustment_coefficient",
    "analytic_node_throughput",
    "analytic_p_miss",
    "batch_size_pgf",
    "clear_capacity_cache",
    "distribution_mgf",
    "fast_simulate",
    "fifo_tail",
    "fluid_fleet",
    "lindley",
    "lindley_capped",
    "load_report",
    "mixture_p_miss",
    "node_capacity",
    "nodes_up_law",
    "offered_load",
]
