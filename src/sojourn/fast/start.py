"""The request tier's stationary start, planned from the fast tier's law (``sojourn.steady`` says why).

A replication that starts empty reads low until its queue relaxes; one that starts from
the fleet's stationary workload (``fast.stationary``) is unbiased from time 0. The plan
needs the node's capacity and the fluid fleet's law, both the fast tier's: it lives here,
and the request tier's estimator (``sojourn.request``), a layer above, asks for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["START_CAPACITY_MEASURE", "START_KEY", "StartPlan", "plan_start"]


#: The request tier measures a node's capacity for its stationary start with this many
#: completions (the study screen's figure: ~0.5% error, 5x cheaper than the fast tier's default).
START_CAPACITY_MEASURE = 20_000
@dataclass
class StartPlan:
    """How the request tier starts a scenario's replications (``plan_start``)."""

    start: str
    relax_s: float = math.nan
    rho: float = math.nan
    law: Any = None
    #: The most work (fleet-seconds) the fleet holds: the deadline's under cancellation, the queue limit's.
    hold_s: float = math.inf
    #: Requests the whole fleet serves in one SLA: larger batches miss in part whatever the state.
    oversize: float = math.inf
    capacity: Any = None
    reason: str = ""

    def draw(self, seed: np.random.SeedSequence) -> float:
        """The replication's backlog at time 0 (fleet-seconds), from its own stream; 0 when starting empty."""
        if self.law is None:
            return 0.0
        rng = np.random.default_rng(np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key + (START_KEY,)))
        return float(self.law.sample(rng, 1, cap=self.hold_s)[0])


#: Spawn-key suffix of a replication's stationary-start stream (apart from its traffic's).
START_KEY = 0x57A7


def plan_start(scenario: Any, capacity: Any = None) -> StartPlan:
    """The stationary start of a scenario's request-tier replications, or why it starts empty.

    A stationary start needs the node's capacity (measured on the saturated engine,
    ``START_CAPACITY_MEASURE`` completions, cached) and the fluid fleet's stationary
    workload law (``fast.stationary``). An engine scenario whose queue relaxes within a
    twentieth of its warm-up by the step-time model's own throughput (no engine run)
    starts empty: its warm-up suffices. So do trace replays and rate profiles, which
    have no stationary law (a profile's steady state is periodic); their note says
    when the warm-up is short of the relaxation time.
    """
    from sojourn._errors import ConfigError
    from sojourn.fast.capacity import load_report, node_capacity
    from sojourn.fast.simulate import _law_upto, fluid_fleet, fluid_law
    from sojourn.fast.stationary import WorkloadLaw, batch_work_moments, relaxation_time

    wl = scenario.workload
    if wl.trace is not None:
        return StartPlan("empty", reason="trace replay: no stationary law")
    warm = scenario.simulation.warmup_hours * 3600.0
    rate = wl.batch_rate_per_hour / 3600.0 * (1.0 if wl.rate_profile is None else sum(wl.rate_profile) / 24.0)
    if capacity is None and scenario.fleet.server is None:
        est = _model_relaxation(scenario, rate)
        if est is not None and est[1] < 0.5 and est[0] < 0.05 * warm:
            return StartPlan("empty", relax_s=est[0], reason="relaxes within the warm-up")
    try:
        cap = capacity if capacity is not None else node_capacity(scenario, measure=START_CAPACITY_MEASURE)
    except ConfigError as err:
        return StartPlan("empty", reason=f"no node capacity: {err}")
    fleet = fluid_fleet(scenario, cap)
    C = fleet.capacity
    bw = batch_work_moments(wl.batch_size, 1.0 - cap.reject_fraction, cap.work_mean, cap.work_var, C, rate)
    load = load_report(scenario, cap)
    classes = [c.hours * 3600.0 for c in wl.sla_classes] if wl.sla_classes else [scenario.sla_seconds]
    hold = fleet.queue_cap / C
    if fleet.cancel:
        hold = min(hold, max(classes))
    plan = StartPlan("empty", relax_s=relaxation_time(bw, hold), rho=load.rho, capacity=cap,
                     oversize=C / cap.work_mean * min(classes))
    if wl.rate_profile is not None:
        plan.reason = "rate profile: the steady state is periodic"
        return plan
    if not bw.rho < 1.0:
        plan.reason = f"unstable: rho = {bw.rho:.4g}"
        return plan
    law = fluid_law(scenario, cap, rate, _law_upto(scenario, fleet, bw))
    if not isinstance(law, WorkloadLaw):
        plan.reason = law
        return plan
    plan.start, plan.law, plan.hold_s = "stationary", law, hold
    return plan


def _model_relaxation(scenario: Any, rate: float) -> tuple[float, float] | None:
    """(relaxation time, load) by the step-time model's saturated throughput: no engine run."""
    from sojourn.fast.capacity import analytic_node_throughput
    from sojourn.fast.stationary import batch_work_moments, relaxation_time

    wl = scenario.workload
    if wl.input_tokens is None or wl.output_tokens is None:
        return None
    try:
        perf = scenario.perf_model()
        rng = np.random.default_rng(0x5A7)
        inp, out = wl.input_tokens.sample_int(rng, 4096), wl.output_tokens.sample_int(rng, 4096)
        rps = analytic_node_throughput(perf, inp, out, scenario.serving.max_num_seqs)
    except Exception:  # noqa: BLE001 - only a shortcut: the full path reports real errors
        return None
    if not (rps > 0 and math.isfinite(rps)):
        return None
    w = 1.0 / rps
    bw = batch_work_moments(wl.batch_size, 1.0, w, w * w, float(scenario.fleet.nodes), rate)
    cap = scenario.sla_seconds if scenario.serving.on_deadline == "cancel" and not wl.sla_classes else math.inf
    return relaxation_time(bw, cap), bw.rho
