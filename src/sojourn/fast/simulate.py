"""``fast_simulate``: the fast tier's answer for a scenario, with the same keys as the request-level result.

Three tiers feed it, and ``tiers`` in the result names the one behind each number:

* ``engine``: one node's saturation throughput for the workload mix (``capacity``);
* ``fluid``: replications of the batch-level fluid model (``fluid``), sampled like
  the request-level simulator (same warm-up, a measured span of arrivals, each
  followed to the end) but over a far longer span, as it costs little;
* ``analytic``: the FIFO tail asymptotics (``tails``), which reach probabilities no
  sample sees, with their regime named, and checked against the sample where both apply.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, KeysView
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sojourn._errors import ConfigError
from sojourn.fast.availability import CapacityPath, Lost, capacity_path, fifo_runs_varying, residual_beyond
from sojourn.fast.batches import Batches, generate_batches, trace_batches, trace_rate
from sojourn.fast.capacity import LoadReport, NodeCapacity, load_report, node_capacity
from sojourn.fast.fluid import FluidFleet, Segments, fifo_runs, priority_runs, split_by_key
from sojourn.fast.lindley import lindley, lindley_capped
from sojourn.fast.outcomes import Latency, Runs, run_stats, sample_sojourns
from sojourn.fast.stationary import (
    RESOLUTION,
    BatchWork,
    WorkloadLaw,
    batch_work_moments,
    relaxation_time,
    workload_law,
)
from sojourn.fast.tails import fifo_tail, tail_p_miss
from sojourn.result import FAST_ORDER, Estimate, Result
from sojourn.sim.availability import realism_report
from sojourn.stats import (
    MIN_EPISODES,
    best_p_miss,
    clopper_pearson_upper,
    effective_episodes,
    episode_sizes,
    episodes_note,
    excess_mean,
    kish,
    ratio_ci,
    unseen_share,
)
from sojourn.steady import SPAN_RELAXATIONS, SteadyState, binned_means

__all__ = [
    "FAST_DISCIPLINES",
    "FRAGILITY_CAPACITY_ERROR",
    "FRAGILITY_LIMIT",
    "FRAGILITY_RELEVANT",
    "FastResult",
    "analytic_p_miss",
    "fast_simulate",
    "fluid_fleet",
    "fluid_law",
    "mixture_p_miss",
    "nodes_up_law",
    "offered_load",
]

#: Disciplines the fluid model implements.
FAST_DISCIPLINES = ("fifo", "lifo", "sjf", "sjf_work", "edf")
#: Sojourns sampled (over all replications) for the quantiles.
_QUANTILE_SAMPLE = 50_000


@dataclass(kw_only=True)
class FastResult(Estimate):
    """What ``fast_simulate`` found; ``to_dict`` has the request-level result's keys plus the fast tier's own.

    The fields both tiers share are ``Estimate``'s (``sojourn.result``); these are the fast tier's.
    """

    batches_measured: int
    load: LoadReport
    capacity: NodeCapacity
    analytic_p_miss: float
    analytic_regime: str
    agreement: str
    tiers: dict[str, str]
    per_replication: list[float] = field(default_factory=list, repr=False)
    #: The numeric law's upper bracket of the analytic value (the asymptotic's value otherwise).
    analytic_p_miss_upper: float = math.nan
    #: The tail asymptotic's value beside the numeric one (to see how far off it is).
    analytic_asymptotic: float = math.nan
    #: Whether the sample agrees with the analytic value (None: no analytic value).
    analytic_agrees: bool | None = None
    #: The best estimate of P(miss) (``best_p_miss``: the rule the sla_miss objective uses).
    p_miss_best_value: float = math.nan
    #: The sampled one-sided bound alone (``p_miss_upper`` is never below the analytic value).
    p_miss_upper_sampled: float = math.nan
    #: The part of the oversize misses (``p_miss_oversize``) no fleet state avoids: E[(X' − c)+]/E[X'],
    #: c one SLA's capacity.
    p_miss_oversize_floor: float = math.nan
    #: Analytic P(miss) with 2% less capacity over P(miss): above 2, the estimate is fragile.
    p_miss_fragility: float = math.nan
    #: Node failures, spot nodes, a capacity schedule (``fast.availability``), else None (and absent).
    fleet_realism: dict[str, Any] | None = None
    #: Requests cancelled by reason, with ``on_failure = "lose"`` only (``node_failure``: lost with a
    #: failed node, expected counts rounded), else None (and absent).
    cancelled_by: dict[str, int] | None = None

    # A read-only mapping over ``to_result()``: ``dict(result)`` and ``result["p_miss"]`` work
    # as they do on a ``Result``. The Result is built once, and again after a field is set.
    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.pop("_result", None)
        super().__setattr__(name, value)

    def keys(self) -> KeysView[str]:
        return self.to_result().keys()

    def __getitem__(self, key: str) -> Any:
        return self.to_result()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_result())

    def __len__(self) -> int:
        return len(self.to_result())

    @property
    def p_miss_best(self) -> float:
        """The best estimate of P(miss): ``best_p_miss``'s rule (the analytic value where it applies)."""
        return self.p_miss_best_value

    @property
    def fragile(self) -> bool:
        """A 2% capacity error moves P(miss) more than 2x (``FRAGILITY_LIMIT``)."""
        r = self.p_miss_fragility
        if math.isnan(r) or not r > FRAGILITY_LIMIT:
            return False
        # Moves that stay below what any study resolves do not matter (1e-20 -> 1e-15 is not fragile).
        return r * self.analytic_p_miss >= FRAGILITY_RELEVANT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values; a non-finite number (a quantile beyond every served request) is None."""
        return self.to_result().to_dict()

    def to_result(self) -> Result:
        """The tier-independent ``Result`` (``fidelity`` "fast"), built once (``__setattr__`` drops it)."""
        if "_result" not in self.__dict__:
            self.__dict__["_result"] = self._build_result()
        result: Result = self.__dict__["_result"]
        return result

    def _build_result(self) -> Result:
        res = self._base_result()
        if self.cancelled_by is not None:
            res = res.with_values(cancelled_by=dict(self.cancelled_by))
        return res if self.fleet_realism is None else res.with_values(fleet_realism=self.fleet_realism)

    def _base_result(self) -> Result:
        return self.result(
            FAST_ORDER,
            fin=("p_miss_best", "p_miss_upper_sampled", "p_miss_oversize_floor", "p_miss_fragility", "analytic_p_miss",
                 "analytic_p_miss_upper", "analytic_asymptotic"),
            copy=("batches_measured", "analytic_regime", "analytic_agrees", "agreement"),
            fidelity="fast",
            fragile=bool(self.fragile),
            requests_in_system=0,
            load=self.load.rho,
            load_peak=self.load.rho_peak,
            stable=self.load.stable,
            capacity_rps=self.load.capacity_rps,
            node_capacity=self.capacity.to_dict(),
            tiers=dict(self.tiers),
        )


def offered_load(scenario: Any, capacity: NodeCapacity | None = None) -> float:
    """rho: offered work over the fleet's capacity (engine-measured, cached). ConfigError if it cannot be had."""
    cap = capacity if capacity is not None else node_capacity(scenario)
    if scenario.workload.trace is not None:
        rps, _ = trace_rate(scenario)
        return load_report(scenario, cap, offered_rps=rps, peak_factor=1.0).rho
    return load_report(scenario, cap).rho


def fluid_fleet(scenario: Any, cap: NodeCapacity) -> FluidFleet:
    n = scenario.fleet.nodes
    return FluidFleet(
        capacity=float(n),
        slots=n * cap.concurrency,
        work_mean=cap.work_mean,
        in_service_work=cap.fleet_in_service(n),
        work_excess=cap.work_excess_mean,
        cancel=scenario.serving.on_deadline == "cancel",
        max_queue=scenario.serving.max_queue,
    )


def fast_simulate(
    scenario: Any,
    replications: int | None = None,
    seed: int | None = None,
    *,
    horizon_hours: float | None = None,
    min_batches: int = 100_000,
    capacity: NodeCapacity | None = None,
    analytic: bool = True,
    n_jobs: int = 1,
) -> FastResult:
    """Estimate P(miss) and the sojourn distribution with the batch-level fluid model.

    The measured span is the scenario's ``horizon_hours`` after ``warmup_hours``,
    stretched (to whole days under a rate profile) until the replications hold
    ``min_batches`` batches in all (not for trace replays, which go through the
    request-level tier's per-request stream). ``capacity`` overrides the cached
    node capacity. ``n_jobs`` is accepted for symmetry with ``request.simulate`` (so a
    caller can pass the same arguments to either tier); the fast tier runs in one
    process, in milliseconds.
    """
    del n_jobs
    t0 = time.perf_counter()
    reps = _replications(scenario, replications)
    root = scenario.simulation.seed if seed is None else seed
    cap = capacity if capacity is not None else node_capacity(scenario)
    # Sampling tier: set the run up, size its warm-up and span, then replicate it.
    run = _set_up(scenario, cap, reps, horizon_hours)
    _plan_warmup(scenario, run)
    _plan_span(scenario, run, min_batches)
    _check_memory(scenario, run)
    per = _replicate(scenario, cap, run, root)
    wl = scenario.workload
    x_max = max(p["size_max"] for p in per)
    res = _combine(per, run.span_s, unseen_share(wl.batch_size, x_max) if wl.trace is None else 0.0)
    # Analytic tier.
    an = Analytic(math.nan, "none: not requested")
    if run.realism is not None:
        an = Analytic(math.nan, "none: a capacity schedule (fleet.capacity_schedule): the fluid sample only")
        if run.realism.pools is not None:
            an = Analytic(math.nan, "none: a mixed fleet's failures (fleet.pools; the mixture is over identical "
                                    "nodes): the fluid sample only")
        elif analytic and run.realism.schedule is None:
            an = mixture_p_miss(scenario, cap, run.realism)
    elif analytic:
        an = analytic_p_miss(scenario, cap, run.load, law=run.law if wl.rate_profile is None else None)
    agreement, agrees = _agreement(res, an.p, an.regime)
    sampled_upper = _bound_by_analytic(res, an)
    fragility = _fragility(scenario, cap, an) if analytic and run.realism is None else math.nan
    out = _fast_result(scenario, cap, run, res, an, agreement, agrees, sampled_upper, fragility, t0)
    if run.realism is not None:
        out.fleet_realism = _realism_summary(run, per)
        if run.realism.mtbf_node_h is not None and run.realism.on_failure == "lose":
            out.cancelled_by = _cancelled_by(per, run.fleet.cancel)
    return out


def _cancelled_by(per: list[dict[str, Any]], cancel: bool) -> dict[str, int]:
    """The fast tier's cancellations by reason under ``on_failure = "lose"``: node_failure, the
    requests lost with failed nodes, and (with cancellation) deadline, the rest."""
    lost = sum(p["lost"] for p in per)
    out = {"node_failure": int(round(lost))}
    if cancel:
        out["deadline"] = max(int(round(sum(p["cancelled"] for p in per) - lost)), 0)
    return out


@dataclass
class _Run:
    """How a fast run is set up: the fluid fleet, the arrival rate, each replication's start and span."""

    disc: str
    reps: int
    load: LoadReport
    #: Batches an hour (the day's mean under a rate profile).
    rate_h: float
    fleet: FluidFleet
    #: The longest deadline (s).
    max_sla: float
    #: Whether the vectorised FIFO recursion serves the discipline (else the event loop).
    fifo_vector: bool
    #: The stationary law a replication starts from (or why there is none; None: not sought).
    law: WorkloadLaw | str | None
    #: The work (node-seconds) the fleet can hold: the deadline's (cancellation) or the queue limit's.
    hold: float
    #: The queue's relaxation time (s; nan where unknown).
    relax_s: float
    stationary: bool
    steady: SteadyState
    warm_s: float
    hours: float
    #: The longest a replication may run (s): MAX_BATCHES batches, warm-up and span together.
    max_s: float
    #: Node failures, spot nodes, a capacity schedule (``scenario.FleetRealism``), or None.
    realism: Any = None
    #: Work done again after a failure and after a spot reclaim (node-seconds; ``fast.availability``).
    lost_failure: float = 0.0
    lost_reclaim: float = 0.0
    #: Each replication's capacity process, as drawn.
    paths: list[CapacityPath] = field(default_factory=list)
    #: Each node's capacity in mean-node units (a mixed fleet's pools, ``node_weights``), else None.
    weights: list[float] | None = None

    @property
    def span_s(self) -> float:
        return self.hours * 3600.0

    @property
    def t_end(self) -> float:
        """When a replication's arrivals end: later ones do not touch earlier FIFO batches; other
        orders need them until the deadlines."""
        return self.warm_s + self.span_s + (0.0 if self.fifo_vector else 2.0 * self.max_sla)


def _replications(scenario: Any, replications: int | None) -> int:
    """The replication count, after checking the fast tier serves the scenario's discipline."""
    disc = scenario.serving.discipline
    if disc not in FAST_DISCIPLINES:
        raise ConfigError("serving.discipline", f"{disc!r} is not in the fast tier; allowed: {', '.join(FAST_DISCIPLINES)}")
    reps = int(replications or scenario.simulation.replications)
    if reps < 1:
        raise ConfigError("replications", f"{reps}: must be >= 1")
    return reps


def _offered(scenario: Any, cap: NodeCapacity) -> tuple[LoadReport, float]:
    """The load report and the mean batch rate (an hour): the trace's, or the workload's over a day."""
    wl = scenario.workload
    if wl.trace is not None:
        rps, bps = trace_rate(scenario)
        return load_report(scenario, cap, offered_rps=rps, peak_factor=1.0), bps * 3600.0
    load = load_report(scenario, cap)
    return load, wl.batch_rate_per_hour * (1.0 if wl.rate_profile is None else sum(wl.rate_profile) / 24.0)


def _set_up(scenario: Any, cap: NodeCapacity, reps: int, horizon_hours: float | None) -> _Run:
    """The fluid fleet, its arrival rate, the recursion that serves it, and its steady state."""
    sim = scenario.simulation
    wl = scenario.workload
    disc = scenario.serving.discipline
    load, rate_h = _offered(scenario, cap)
    fleet = fluid_fleet(scenario, cap)
    C = fleet.capacity
    max_sla = scenario.sla_seconds if not wl.sla_classes else max(c.hours for c in wl.sla_classes) * 3600.0
    one_deadline = not wl.sla_classes or len({c.hours for c in wl.sla_classes}) == 1
    # EDF with one deadline for all is FIFO. A queue limit refuses whole requests, which
    # the capped recursion (it drops work, not requests) only approximates: event loop.
    fifo_vector = (
        ((disc == "fifo" and (not fleet.cancel or one_deadline)) or (disc == "edf" and one_deadline))
        and fleet.max_queue is None
    )
    # Steady state: the queue's relaxation time, and its stationary law to start from.
    law: WorkloadLaw | str | None = None
    bw = None
    realism = _check_realism(scenario, fifo_vector)
    if wl.trace is None:
        bw = batch_work_moments(wl.batch_size, 1.0 - cap.reject_fraction, cap.work_mean, cap.work_var, C,
                                rate_h / 3600.0)
        if realism is not None:
            law = "the node capacity varies (fleet.failures, fleet.spot or fleet.capacity_schedule)"
        elif wl.rate_profile is None:
            law = fluid_law(scenario, cap, bw.lam, _law_upto(scenario, fleet, bw)) if bw.rho < 1.0 else "unstable"
    hold = fleet.queue_cap
    if fleet.cancel:
        hold = min(hold, max_sla * C)
    relax_s = relaxation_time(bw, hold / C) if bw is not None else math.nan
    stationary = isinstance(law, WorkloadLaw) and sim.start == "stationary"
    hours = float(horizon_hours if horizon_hours is not None else sim.horizon_hours)
    steady = SteadyState(start="stationary" if stationary else "empty", warmup_hours=sim.warmup_hours,
                         span_hours=hours, relaxation_hours=relax_s / 3600.0)
    run = _Run(disc=disc, reps=reps, load=load, rate_h=rate_h, fleet=fleet, max_sla=max_sla,
               fifo_vector=fifo_vector, law=law, hold=hold, relax_s=relax_s, stationary=stationary,
               steady=steady, warm_s=sim.warmup_hours * 3600.0, hours=hours,
               max_s=MAX_BATCHES / rate_h * 3600.0 if wl.trace is None else math.inf, realism=realism)
    if realism is not None:
        # A node's requests in service have done, on average, the residual work of one each (E[w²]/2E[w]),
        # which an engine does again; a generic server draws a new service time instead (the request
        # tier's repeat-different), so the work changes by E[w] − E[w²]/2E[w] (0 for exponential).
        lat = cap.latency if cap.latency is not None else Latency.constant(cap.latency_s)
        redo = cap.work_excess_mean if scenario.fleet.server is None else cap.work_mean - cap.work_excess_mean
        run.lost_failure = cap.concurrency * redo
        run.lost_reclaim = run.lost_failure * residual_beyond(lat, realism.notice_s)
        run.weights = node_weights(scenario) if realism.pools is not None else None
    return run


def node_weights(scenario: Any) -> list[float]:
    """Each node's capacity in the fast tier's mean-node units, in pool order: its pool's node
    capacity (``node_capacity`` of the pool's scenario, cached; a generic pool's ``speed`` applied)
    over the fleet's mean (``fast.capacity``'s reading of a mixed fleet); they add up to its nodes."""
    pools = [(p, sc) for p, sc in scenario.pool_scenarios() if p.nodes > 0]
    rps = [node_capacity(sc).requests_per_s * (p.speed or 1.0) for p, sc in pools]
    mean = sum(p.nodes * r for (p, _), r in zip(pools, rps)) / scenario.fleet.nodes
    return [r / mean for (p, _), r in zip(pools, rps) for _ in range(p.nodes)]


def _check_realism(scenario: Any, fifo_vector: bool) -> Any:
    """The scenario's ``FleetRealism`` (None without one), after checking the fast tier models it."""
    realism = scenario.fleet_realism() if hasattr(scenario, "fleet_realism") else None
    if realism is None:
        return None
    if not fifo_vector:
        raise ConfigError("serving.discipline", "with node failures, spot nodes or a capacity schedule the fast tier "
                                                "serves FIFO (or EDF with one deadline) without max_queue only; "
                                                "use simulation.fidelity = 'request' for the others")
    return realism


def _plan_warmup(scenario: Any, run: _Run) -> None:
    """Stretch the warm-up to the relaxation times a start needs (the batch budget allowing)."""
    wl = scenario.workload
    relax_s, steady = run.relax_s, run.steady
    if wl.trace is None and math.isfinite(relax_s):
        # A stationary start leaves only the order of the queued work to settle (priority orders).
        want = 0.0 if (run.stationary and run.fifo_vector) else (
            WARMUP_RELAXATIONS_BLOB if run.stationary else WARMUP_RELAXATIONS_EMPTY) * relax_s
        if want > run.warm_s:
            got = min(want, 0.5 * run.max_s)
            if wl.rate_profile is not None:
                got = 86400.0 * math.ceil(got / 86400.0)
            if got > run.warm_s:
                steady.adjusted.append(f"warm-up {run.warm_s / 3600:.3g} -> {got / 3600:.3g} h")
                run.warm_s = got
            if got < want and not run.stationary:
                steady.notes.append(
                    f"started empty with {run.warm_s / 3600:.3g} h of warm-up against a relaxation time of "
                    f"{relax_s / 3600:.3g} h: the estimate reads low")
    elif wl.trace is None and not run.stationary and run.load.rho_peak >= 1.0 and not run.fleet.cancel:
        steady.notes.append(f"unstable (rho = {run.load.rho:.4g}): the queue grows without bound, no steady state")


def _plan_span(scenario: Any, run: _Run, min_batches: int) -> None:
    """The measured span: long enough for min_batches batches over all replications and,
    where the batch budget allows, SPAN_RELAXATIONS relaxation times (not for trace
    replays, which go through the request-level tier's per-request stream)."""
    wl = scenario.workload
    relax_s, steady, reps, rate_h = run.relax_s, run.steady, run.reps, run.rate_h
    hours = run.hours
    need = min_batches / (reps * rate_h) if wl.trace is None else 0.0
    if wl.trace is None and math.isfinite(relax_s):
        need = max(need, SPAN_RELAXATIONS * relax_s / 3600.0)
        room = max(run.max_s - run.warm_s, 0.0) / 3600.0
        if need > room:
            need = max(room, min_batches / (reps * rate_h))
            steady.notes.append(
                f"the measured span covers {need * 3600 / relax_s:.2g} relaxation times per replication "
                f"({relax_s / 3600:.3g} h each; at least {SPAN_RELAXATIONS:g} are needed for the interval to hold)")
    if hours < need:
        steady.adjusted.append(f"span {hours:.3g} -> {need:.3g} h")
        hours = need
        if wl.rate_profile is not None:
            hours = 24.0 * math.ceil(hours / 24.0)
    steady.warmup_hours = run.warm_s / 3600.0
    steady.span_hours = hours
    run.hours = hours


def _check_memory(scenario: Any, run: _Run) -> None:
    """Refuse a run whose batches would not fit, before any memory is used (``check_batches``)."""
    if scenario.workload.trace is None and hasattr(scenario, "check_batches"):
        rate_h, warm_s = run.rate_h, run.warm_s
        drain = "" if run.fifo_vector else f" + {2 * run.max_sla / 3600:.6g} h to the last deadline"
        scenario.check_batches(rate_h * run.t_end / 3600.0, f"{rate_h:.6g} batches an hour x ({warm_s / 3600:.6g} h of "
                                                            f"warm-up + {run.hours:.6g} h measured{drain})")


def _replicate(scenario: Any, cap: NodeCapacity, run: _Run, root: int) -> list[dict[str, Any]]:
    """Each replication's sums over its measured batches, with its sojourn sample; checks the steady state."""
    warm_s, span_s = run.warm_s, run.span_s
    seqs = np.random.SeedSequence(root).spawn(run.reps)
    lat = cap.latency if cap.latency is not None else Latency.constant(cap.latency_s)
    per = []
    series = []
    halves: tuple[list[float], list[float]] = ([], [])
    for r in range(run.reps):
        b, runs, refused, v, lost = _replication(scenario, cap, run, seqs[r])
        series.append(binned_means(b.arrival, v, warm_s + span_s))
        mid = warm_s + 0.5 * span_s
        halves[0].append(_mean_or_nan(v[(b.arrival >= warm_s) & (b.arrival < mid)]))
        halves[1].append(_mean_or_nan(v[(b.arrival >= mid) & (b.arrival < warm_s + span_s)]))
        per.append(_summarise(b, runs, refused, run.fleet, lat, warm_s, span_s, lost))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-empty bin
        run.steady.check(np.nanmean(np.vstack(series), axis=0), (warm_s + span_s) / 3600.0, *halves)
    _sample_quantiles(per, lat, run.fleet.cancel, seqs)
    return per


def _replication(scenario: Any, cap: NodeCapacity, run: _Run,
                 seq: np.random.SeedSequence) -> tuple[Batches, Runs, np.ndarray, np.ndarray, Lost | None]:
    """One replication: its batches, their runs, the requests refused, the work each batch finds, and
    the requests lost with failed nodes (``on_failure = "lose"``; else None)."""
    fleet = run.fleet
    C = fleet.capacity
    rng = np.random.default_rng(seq)
    if scenario.workload.trace is not None:
        b = trace_batches(scenario, cap, seq, run.t_end)
    else:
        b = generate_batches(scenario, cap, rng, run.t_end)
    v0 = 0.0
    lost = None
    if run.stationary and len(b):
        # Its own stream (the traffic's draws stay as they were): one uniform through the law.
        start_rng = np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=seq.spawn_key + (_START_KEY,)))
        assert isinstance(run.law, WorkloadLaw)
        v0 = float(run.law.sample(start_rng, 1, cap=run.hold / C)[0]) * C
    if run.realism is not None:
        path = _path(run, seq)
        runs, refused, v, lost = fifo_runs_varying(b, fleet, path, v0)
        run.paths.append(path)
    elif run.fifo_vector:
        runs, refused, v = fifo_runs(b, fleet, v0)
    else:
        if v0 > 0:
            b = _with_backlog(b, v0, cap.work_mean, C)
        runs, refused = _priority(b, fleet, run.disc, cap, rng, scenario.serving.forecast_sigma)
        v = _work_found(b, fleet, run.hold)
    return b, runs, refused, v, lost


#: Spawn-key suffix of a replication's capacity-process stream (apart from its traffic's).
_AVAIL_KEY = 0xA7A1


def _path(run: _Run, seq: np.random.SeedSequence) -> CapacityPath:
    """One replication's capacity process, from its own stream (the traffic's draws stay as they were)."""
    rng = np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=seq.spawn_key + (_AVAIL_KEY,)))
    # Drawn past the last arrival, for the starts of the last batches (to their deadlines, within a day or a span).
    end = run.t_end + min(2.0 * run.max_sla, max(run.span_s, 86400.0))
    return capacity_path(run.realism, rng, end, (run.warm_s, run.warm_s + run.span_s), run.lost_failure,
                         run.lost_reclaim, run.realism.on_failure, run.weights)


def _realism_summary(run: _Run, per: list[dict[str, Any]]) -> dict[str, Any]:
    """``fleet_realism`` of the fast result: the node-time its capacity processes held over the measured spans."""
    tot = {k: sum(p.summary[k] for p in run.paths) for k in run.paths[0].summary}
    node_s = run.realism.nodes * run.span_s * len(run.paths)
    hours = run.span_s * len(run.paths) / 3600.0
    out = realism_report(run.realism, serving=tot["serving_node_s"] / node_s, failed=tot["failed_node_s"] / node_s,
                         node_hours=tot["held_node_s"] / 3600.0 / len(run.paths), cost=tot["cost_usd"] / hours,
                         failures=tot["failures"], reclaims=tot["reclaims"], recomputed=0,
                         lost=int(round(sum(p["lost"] for p in per))))
    # The fluid model redoes work, not requests: it has no count of the requests recomputed.
    out["requests_recomputed"] = None
    out["load_effective"] = run.load.rho / out["serving_share"] if out["serving_share"] > 0 else math.inf
    return out


def _bound_by_analytic(res: dict[str, Any], an: Analytic) -> float:
    """Raise the sampled bound to the analytic one beside it (a bound never lies below it); the sampled bound."""
    sampled_upper: float = res["upper"]
    if math.isfinite(an.upper):
        res["upper"] = max(res["upper"], an.upper)
        if res["ci"][0] == 0.0:
            res["ci"] = (0.0, max(res["ci"][1], an.upper))
    return sampled_upper


def _fragility(scenario: Any, cap: NodeCapacity, an: Analytic) -> float:
    """How fragile the estimate is: the analytic P(miss) with 2% less capacity, over P(miss)."""
    if math.isfinite(an.p) and an.p > 0 and scenario.workload.trace is None:
        cap98 = cap.scaled(1.0 - FRAGILITY_CAPACITY_ERROR)
        an98 = analytic_p_miss(scenario, cap98, load_report(scenario, cap98))
        return an98.p / an.p if math.isfinite(an98.p) else math.inf
    return math.nan


def _fast_result(scenario: Any, cap: NodeCapacity, run: _Run, res: dict[str, Any], an: Analytic, agreement: str,
                 agrees: bool | None, sampled_upper: float, fragility: float, t0: float) -> FastResult:
    """The ``FastResult`` of the sampled sums ``res`` and the analytic value ``an``, each number's tier named."""
    p_best, best_src = best_p_miss(res["p_miss"], res["upper"], res["ci"][0] if agrees is not None else math.nan,
                                   an.p, an.upper, "mean")
    tiers = {
        "capacity_rps": cap.source,
        "load": "engine capacity x offered load",
        "p_miss": "fluid (sampled)",
        "p_miss_ci": "fluid (replications)",
        "p_miss_upper": "fluid (replications)",
        "batch_miss": "fluid (sampled)",
        "sojourn": "fluid (sampled)",
        "throughput_rps": "fluid (sampled)",
        "analytic_p_miss": f"analytic ({an.regime})",
        "p_miss_best": best_src,
    }
    return FastResult(
        p_miss=res["p_miss"],
        p_miss_ci=res["ci"],
        p_miss_upper=res["upper"],
        batch_miss=res["batch_miss"],
        sojourn_mean_s=res["soj_mean"],
        sojourn_mean_ci=res["soj_ci"],
        sojourn_p50_s=res["q"][0],
        sojourn_p90_s=res["q"][1],
        sojourn_p99_s=res["q"][2],
        wait_mean_s=res["wait_mean"],
        wait_mean_ci=res["wait_ci"],
        throughput_rps=res["throughput"],
        requests_arrived=res["arrived"],
        requests_completed=res["completed"],
        requests_rejected=res["rejected"],
        requests_cancelled=res["cancelled"],
        batches_measured=res["batches"],
        replications=run.reps,
        horizon_hours=run.hours,
        cost_per_hour=scenario.cost_per_hour,
        load=run.load,
        capacity=cap,
        analytic_p_miss=an.p,
        analytic_regime=an.regime,
        agreement=agreement,
        tiers=tiers,
        wall_s=time.perf_counter() - t0,
        per_replication=res["per_rep"],
        analytic_p_miss_upper=an.upper,
        analytic_asymptotic=an.asymptotic,
        analytic_agrees=None if agrees is None else bool(agrees),
        steady_state=run.steady,
        p_miss_best_value=p_best,
        p_miss_upper_sampled=sampled_upper,
        p_miss_unseen=res["unseen"],
        p_miss_oversize=res["oversize"],
        p_miss_oversize_floor=oversize_floor(scenario, cap) if scenario.workload.trace is None else math.nan,
        p_miss_fragility=fragility,
        miss_episodes=res["episodes"],
        miss_episodes_effective=res["episodes_effective"],
        p_miss_note=episodes_note(res["episodes"], res["episodes_effective"]),
    )


#: Spawn-key suffix of a replication's stationary-start stream (apart from its traffic's).
_START_KEY = 0x57A7
#: Relaxation times of warm-up for a run that starts with only the stationary total work
#: (priority orders: the order of the queued work still has to settle)...
WARMUP_RELAXATIONS_BLOB = 1.0
#: ...and for one that starts empty (no stationary law: a rate profile).
WARMUP_RELAXATIONS_EMPTY = 3.0
#: Batches a replication simulates at most (warm-up and span together): bounds memory and time.
MAX_BATCHES = 1_000_000


def _mean_or_nan(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else math.nan


def _with_backlog(b: Batches, v0: float, work_mean: float, capacity: float) -> Batches:
    """``b`` behind a first batch that holds the stationary start's work ``v0`` (node-seconds).

    It arrives just before the first batch (so is never measured, being older than any
    measured one) and is served by the discipline like any batch: first under FIFO,
    last under LIFO.
    """
    # At time -0 with what the fleet will have done by the first arrival added, so that the
    # first batch finds v0 (PASTA: the stationary law of the work an arrival finds).
    w = v0 + capacity * max(float(b.arrival[0]), 0.0)
    n = max(1, int(round(w / work_mean)))
    return Batches(np.concatenate(([-1e-9], b.arrival)), np.concatenate(([n], b.size)),
                   np.concatenate(([n], b.accepted)), np.concatenate(([w], b.work)),
                   np.concatenate(([b.sla[0] if len(b) else 0.0], b.sla)))


def _work_found(b: Batches, fleet: FluidFleet, hold: float) -> np.ndarray:
    """Work (node-seconds) each batch finds, as a work-conserving fleet would hold it (the MSER series)."""
    service = np.empty(len(b))
    if len(b):
        service[:-1] = np.diff(b.arrival) * fleet.capacity
        service[-1] = 0.0
    return lindley_capped(b.work, service, hold) if math.isfinite(hold) else lindley(b.work, service)


def _priority(b: Batches, fleet: FluidFleet, disc: str, cap: NodeCapacity, rng: np.random.Generator,
              forecast_sigma: float | None = None) -> tuple[Runs, np.ndarray]:
    if disc == "sjf_work" and forecast_sigma is not None:
        # Least predicted work first, the prediction a forecast (serving.forecast_sigma).
        seg = split_by_key(b, cap.forecast_key(forecast_sigma), cap.works, rng)
        return priority_runs(b, seg, fleet, "key")
    if disc == "sjf_work" and cap.work_coef is None:
        # The request-level tier predicts a generic request's service by the mean: all tie, FIFO.
        return priority_runs(b, Segments.whole(b), fleet, "fifo")
    if disc in ("sjf", "sjf_work"):
        # Shortest prompt first (on an engine the predicted work orders as the prompt does).
        # A generic server's prompts are drawn independently of its service times.
        seg = split_by_key(b, cap.inputs, cap.works, rng)
        return priority_runs(b, seg, fleet, "key")
    order = {"fifo": "fifo", "lifo": "lifo", "edf": "edf"}[disc]
    return priority_runs(b, Segments.whole(b), fleet, order)


def _measured(b: Batches, warm_s: float, span_s: float) -> np.ndarray:
    return (b.arrival >= warm_s) & (b.arrival < warm_s + span_s)


def _summarise(b: Batches, runs: Runs, refused: np.ndarray, fleet: FluidFleet, lat: Latency, warm_s: float,
               span_s: float, lost: Lost | None = None) -> dict[str, Any]:
    """One replication's sums over its measured batches (expectations over the latencies); ``lost``:
    the requests lost with failed nodes (``fast.availability``), taken out as ``_drop_lost`` says."""
    meas = _measured(b, warm_s, span_s)
    runs = runs.take(meas[runs.batch])
    sla = b.sla[runs.batch]
    rs = run_stats(runs, sla, lat)
    n = len(b)
    on_b = np.bincount(runs.batch, weights=rs.on_time, minlength=n)[meas]
    log_b = np.bincount(runs.batch, weights=rs.log_all_on_time, minlength=n)[meas]
    inrun_b = np.bincount(runs.batch, weights=runs.count, minlength=n)[meas]
    size = b.size[meas]
    # A batch is on time when every request is in a run and each run's requests all finish in time.
    with np.errstate(over="ignore"):
        p_ok = np.where(inrun_b >= size, np.exp(log_b), 0.0)
    in_runs = float(runs.count.sum())
    if fleet.cancel:
        completed = float(rs.on_time.sum())
        soj = float(rs.on_time_sojourn.sum())
        wait = float(rs.on_time_wait.sum())
    else:
        completed = in_runs
        wait = float(rs.start_sum.sum())
        soj = wait + in_runs * lat.mean
    n_lost = 0.0
    if lost is not None:
        n_lost, d = _drop_lost(lost, meas, inrun_b, b.sla[meas], lat, fleet.cancel)
        on_b = np.maximum(on_b - d["on"], 0.0)
        p_ok = p_ok * d["keep"]
        completed -= d["completed"]
        soj -= d["sojourn"]
        wait -= d["wait"]
        in_runs -= n_lost
    cancelled = float((b.accepted[meas] - refused[meas]).sum()) - completed if fleet.cancel else n_lost
    arrived = float(size.sum())
    miss_b = size - on_b
    # Batches larger than the fleet serves in one SLA (at its capacity C/w̄ requests a second).
    oversize = size > fleet.capacity / fleet.work_mean * b.sla[meas]
    hit = miss_b >= 0.5  # a batch expected to miss at least half a request: an episode's member
    return {
        "arrived": arrived,
        "misses": arrived - float(on_b.sum()),
        "oversize_misses": float(miss_b[oversize].sum()),
        "size_sum": arrived,
        "size_sq": float((size.astype(np.float64) ** 2).sum()),
        "size_max": float(size.max()) if len(size) else 0.0,
        "episodes": episode_sizes(b.arrival[meas][hit], miss_b[hit], b.sla[meas][hit]),
        "batches": float(meas.sum()),
        "batch_misses": float(np.sum(1.0 - p_ok[size > 0])),
        "completed": completed,
        "rejected": float((b.size[meas] - b.accepted[meas]).sum() + refused[meas].sum()),
        "cancelled": cancelled,
        "soj_sum": soj,
        "wait_sum": wait,
        "in_runs": in_runs,
        "lost": n_lost,
        "runs": runs,
        "sla": sla,
    }


def _drop_lost(lost: Lost, meas: NDArray[np.bool_], inrun_b: NDArray[np.float64], sla: NDArray[np.float64],
               lat: Latency, cancel: bool) -> tuple[float, dict[str, Any]]:
    """What the requests lost with failed nodes take from a replication's measured batches: (their
    number, {on: each batch's on-time requests lost, keep: its chance of losing none, completed,
    sojourn, wait: the sums' shares}). A lost request started at the failure, age a after its batch
    arrived: it would have been on time with probability F(T − a), its sojourn a + L."""
    n = np.minimum(lost.count[meas], inrun_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        age = np.where(n > 0, lost.age_sum[meas] / np.where(lost.count[meas] > 0, lost.count[meas], 1.0), 0.0)
    slack = sla - age
    f = lat.cdf(slack)
    on = n * f
    if cancel:
        done, soj, wait = on.sum(), (n * (age * f + lat.partial_mean(slack))).sum(), (on * age).sum()
    else:
        done, soj, wait = n.sum(), (n * (age + lat.mean)).sum(), (n * age).sum()
    out = {"on": on, "keep": np.clip(1.0 - n, 0.0, 1.0), "completed": float(done), "sojourn": float(soj),
           "wait": float(wait)}
    return float(n.sum()), out


def _sample_quantiles(per: list[dict[str, Any]], lat: Latency, cancel: bool,
                      seqs: list[np.random.SeedSequence]) -> None:
    """Draw the replications' sojourn samples in proportion to their requests (equal weights)."""
    total = sum(p["in_runs"] for p in per)
    for p, ss in zip(per, seqs):
        n = int(round(_QUANTILE_SAMPLE * p["in_runs"] / total)) if total else 0
        rng = np.random.default_rng(ss.spawn(1)[0])
        p["sample"] = sample_sojourns(rng, p.pop("runs"), p.pop("sla"), lat, n, cancel) if n else np.empty(0)


def _quantiles(per: list[dict[str, Any]], qs: list[float]) -> list[float]:
    """Quantiles of S over all measured requests (samples drawn in proportion to each replication).

    Requests outside every run (refused, or never started before their deadline) and
    those cancelled are +inf, as in the request-level result.
    """
    smp = np.concatenate([p["sample"] for p in per])
    in_runs = sum(p["in_runs"] for p in per)
    arrived = sum(p["arrived"] for p in per)
    if smp.size == 0:
        return [math.inf if arrived > 0 else math.nan] * len(qs)
    share = in_runs / arrived if arrived else 1.0  # the sample stands for this share of all requests
    levels = [q / share for q in qs]
    inside = [qq for qq in levels if qq <= 1.0]
    vals = iter(np.quantile(smp, inside, method="inverted_cdf").tolist() if inside else [])
    return [next(vals) if qq <= 1.0 else math.inf for qq in levels]


def _combine(per: list[dict[str, Any]], span_s: float, unseen: float = 0.0) -> dict[str, Any]:
    keys = [k for k in per[0] if k not in ("sample", "runs", "sla", "episodes", "size_max")]
    tot = {k: sum(p[k] for p in per) for k in keys}
    r = len(per)
    arrived = np.array([p["arrived"] for p in per])
    misses = np.array([p["misses"] for p in per])
    p, lo, hi = ratio_ci(misses, arrived)
    # The request tier's bound (``sojourn.stats``): Clopper–Pearson over Kish's effective batches,
    # never below the interval's end, plus the requests of batches larger than any seen.
    n_eff = kish(tot["size_sum"], tot["size_sq"])
    upper = clopper_pearson_upper((p if math.isfinite(p) else 0.0) * n_eff, n_eff)
    if math.isfinite(hi):
        upper = max(upper, hi)
    upper = min(1.0, upper + unseen)
    if math.isfinite(lo) and hi > lo:
        ci = (max(lo, 0.0), min(hi, 1.0))
    else:  # no miss, or all replications alike: one-sided
        ci = (0.0, upper)
    episodes = [m for q in per for m in q["episodes"]]
    bm, _, _ = ratio_ci(np.array([q["batch_misses"] for q in per]), np.array([q["batches"] for q in per]))
    comp = tot["completed"]
    comp_r = np.array([q["completed"] for q in per])
    _, s_lo, s_hi = ratio_ci(np.array([q["soj_sum"] for q in per]), comp_r)
    _, w_lo, w_hi = ratio_ci(np.array([q["wait_sum"] for q in per]), comp_r)
    return {
        "p_miss": p,
        "ci": ci,
        "upper": upper,
        "unseen": unseen,
        "misses": tot["misses"],
        "oversize": tot["oversize_misses"] / tot["arrived"] if tot["arrived"] else math.nan,
        "episodes": len(episodes),
        "episodes_effective": effective_episodes(episodes),
        "size_max": max(q["size_max"] for q in per),
        "batch_miss": bm,
        "soj_mean": tot["soj_sum"] / comp if comp else math.nan,
        "wait_mean": tot["wait_sum"] / comp if comp else math.nan,
        "soj_ci": (s_lo, s_hi),
        "wait_ci": (w_lo, w_hi),
        "q": _quantiles(per, [0.5, 0.9, 0.99]),
        "throughput": comp / (span_s * r),
        "arrived": int(round(tot["arrived"])),
        "completed": int(round(comp)),
        "rejected": int(round(tot["rejected"])),
        "cancelled": int(round(tot["cancelled"])),
        "batches": int(tot["batches"]),
        "per_rep": (misses / np.maximum(arrived, 1)).tolist(),
    }


@dataclass(frozen=True)
class Analytic:
    """The analytic P(miss) of a scenario and where it comes from.

    ``p`` is the best analytic value (nan when there is none): the fluid fleet's exact
    stationary FIFO law (``stationary``, regime ``numeric``) where it resolves the
    value, else the tail asymptotic (``tails``), whose regime is named; ``upper`` the
    numeric law's upper bracket (``p`` itself for an asymptotic); ``asymptotic`` the
    asymptotic's value beside it (nan when none), so a reader sees how far it is off.
    """

    p: float
    regime: str
    upper: float = math.nan
    asymptotic: float = math.nan
    law: WorkloadLaw | None = None
    work: BatchWork | None = None


def _classes(scenario: Any) -> list[tuple[float, float]]:
    wl = scenario.workload
    return [(c.hours * 3600.0, c.weight) for c in wl.sla_classes] if wl.sla_classes else [(scenario.sla_seconds, 1.0)]


def fluid_law(scenario: Any, cap: NodeCapacity, rate_per_s: float, upto: float) -> WorkloadLaw | str:
    """The fluid fleet's stationary workload law on [0, upto) (``stationary``), or why there is none."""
    srv = scenario.fleet.server
    if srv is not None and srv.service_time.is_heavy_tailed:
        return "heavy-tailed service time (the lattice needs a bounded request work)"
    if not math.isfinite(cap.work_var):
        return "request work of infinite variance"
    return workload_law(scenario.workload.batch_size, 1.0 - cap.reject_fraction, cap.work_quantiles, cap.work_mean,
                        cap.work_var, float(scenario.fleet.nodes), rate_per_s, upto)


def _law_upto(scenario: Any, fleet: FluidFleet, bw: BatchWork) -> float:
    """How far the law is needed: every deadline plus the work in service, and the stationary draws' range."""
    C = fleet.capacity
    taus = [sla + fleet.in_service / C for sla, _ in _classes(scenario)]
    qcap = fleet.queue_cap / C
    need = max(taus)
    if fleet.cancel:
        need = max(need, min(max(sla for sla, _ in _classes(scenario)), qcap))
    elif math.isfinite(qcap):
        need = max(need, qcap)
    else:
        # Stationary draws: far enough that P(V > upto) is negligible (30 heavy-traffic means).
        need = max(need, min(30.0 * bw.mean_wait, 20.0 * need))
    return need


def analytic_p_miss(scenario: Any, cap: NodeCapacity | None = None, load: LoadReport | None = None,
                    *, law: WorkloadLaw | str | None = None) -> Analytic:
    """P(miss) from the fluid fleet's stationary FIFO law, or its tail asymptotics; the regime that gave it."""
    cap = cap if cap is not None else node_capacity(scenario)
    load = load if load is not None else load_report(scenario, cap)
    wl = scenario.workload
    sv = scenario.serving
    if sv.discipline not in ("fifo", "edf") or (sv.discipline == "edf" and wl.sla_classes):
        return Analytic(math.nan, f"none: discipline {sv.discipline} (the analytic law is for FIFO)")
    if wl.trace is not None:
        return Analytic(math.nan, "none: trace workload")
    fleet = fluid_fleet(scenario, cap)
    prefix = ""
    rate = wl.batch_rate_per_hour / 3600.0
    if wl.rate_profile is not None:
        # Thinning a peak-rate stream gives the profiled one, and FIFO waits only shrink: a bound.
        rate *= max(wl.rate_profile)
        prefix = "upper bound at the peak-hour rate: "
    C = fleet.capacity
    q = 1.0 - cap.reject_fraction
    bw = batch_work_moments(wl.batch_size, q, cap.work_mean, cap.work_var, C, rate)
    lat = cap.latency if cap.latency is not None else Latency.constant(cap.latency_s)
    classes = _classes(scenario)
    wsum = sum(w for _, w in classes)
    qcap = fleet.queue_cap / C

    def p_with(tail: Any) -> float:
        p = 0.0
        for sla, w in classes:
            cap_s = min(sla, qcap) if fleet.cancel else qcap
            pm = tail_p_miss(scenario, cap, tail, sla, fleet.in_service / C, cap_s, qcap, lat)
            p += w / wsum * pm
        return cap.reject_fraction + (1.0 - cap.reject_fraction) * p

    tail = fifo_tail(scenario, cap, rate)
    asym = p_with(tail) if tail.regime != "none" else math.nan
    asym_name = tail.regime + (f" ({tail.reason})" if tail.reason else "")
    if law is None:
        law = fluid_law(scenario, cap, rate, _law_upto(scenario, fleet, bw)) if bw.rho < 1.0 else "unstable"
    mixed = "; mixed deadlines: each class's cap applied to the whole stream (approximate)" if (
        len(classes) > 1 and fleet.cancel) else ""
    if isinstance(law, WorkloadLaw):
        p_mid, p_hi = p_with(law.at("mid")), p_with(law.at("upper"))
        if p_hi >= 10.0 * RESOLUTION:
            name = f"numeric (the fluid fleet's stationary FIFO law, lattice {law.h:.3g} s)"
            if math.isfinite(asym) and not 0.5 <= asym / max(p_mid, 1e-300) <= 2.0:
                name += (f"; the {tail.regime} asymptotic gives {asym:.3g}: heavy traffic (mean work found "
                         f"{bw.mean_wait / 3600.0:.3g} h), outside its regime")
            return Analytic(p_mid, prefix + name + mixed, upper=p_hi, asymptotic=asym, law=law, work=bw)
        if math.isfinite(asym):
            return Analytic(asym, prefix + asym_name + " (below the numeric law's resolution)" + mixed,
                            upper=asym, asymptotic=asym, law=law, work=bw)
        return Analytic(p_hi, prefix + f"numeric: below its resolution ({RESOLUTION:g})" + mixed,
                        upper=p_hi, law=law, work=bw)
    if not math.isfinite(asym):
        why = tail.reason if tail.regime == "none" else asym_name
        return Analytic(math.nan, f"none: {why}", work=bw)
    if bw.mean_wait > 0.1 * min(sla for sla, _ in classes):
        asym_name += (f"; heavy traffic (mean work found {bw.mean_wait / 3600.0:.3g} h) where the asymptotic "
                      f"may be far off, and the numeric law is unavailable: {law}")
    return Analytic(asym, prefix + asym_name + mixed, upper=asym, asymptotic=asym, law=None, work=bw)


#: Probability of a number of nodes up below which the mixture counts the state as all missing.
_MIXTURE_FLOOR = 1e-12


def nodes_up_law(realism: Any) -> NDArray[np.float64]:
    """P(k nodes serve), k = 0..nodes, in the long run: each on-demand node serves with probability
    A (not failed), each spot node with A x its serving share, all independently."""
    a = realism.availability
    spot_serving, _ = realism.spot_shares()
    pmf = np.ones(1)
    for i in range(realism.nodes):
        p = a * (spot_serving if i >= realism.nodes - realism.spot_nodes else 1.0)
        pmf = np.convolve(pmf, [1.0 - p, p])
    return pmf


def _state_exit_rate(realism: Any) -> tuple[float, float]:
    """(rate at which a node up goes out, rate at which a node out comes back), per hour: the up
    rate averaged over the fleet's nodes; the return rate that of the slowest kind of outage
    (a repair, or a reclaim's notice and re-acquiring), so overload states last their longest."""
    n, sp = realism.nodes, realism.spot_nodes
    lf = 0.0 if realism.mtbf_node_h is None else 1.0 / realism.mtbf_node_h
    r = realism.reclaim_per_h
    up = (n * lf + sp * r) / n
    away = max(realism.repair_h if lf > 0 else 0.0,
               realism.notice_s / 3600.0 + realism.reacquire_h if sp and r > 0 else 0.0)
    return up, 1.0 / away if away > 0 else math.inf


def _overload_share(sla_s: float, rho_k: float, k: int, n: int, up_rate: float, back_rate: float) -> float:
    """Share of the requests arriving while only k nodes serve, overloaded (rho_k >= 1), that miss.

    A backlog grows at (rho_k − 1) of the k nodes' capacity from the state's start, so an arrival
    τ into it waits about (rho_k − 1)·τ and misses once τ > SLA/(rho_k − 1). The state lasts an
    exponential time of mean 1/(k·up + (n − k)·back), and an arrival's age in it has that law:
    exp(−SLA / ((rho_k − 1)·mean)). (The backlog left when the state ends is not counted.)
    """
    rate_s = (k * up_rate + (n - k) * back_rate) / 3600.0
    if rho_k <= 1.0 or rate_s <= 0.0:
        return 1.0 if rate_s <= 0.0 else 0.0
    return math.exp(-sla_s * rate_s / (rho_k - 1.0))


def mixture_p_miss(scenario: Any, cap: NodeCapacity, realism: Any) -> Analytic:
    """P(miss) under failures and spot reclaims as a quasi-static mixture: Σ_k P(k up) p_k, p_k the
    analytic P(miss) of a fleet of k nodes where it is stable, else the share of an overload
    state's arrivals that wait past the SLA (``_overload_share``); where no node serves, the share
    whose wait for the first node back exceeds the SLA; 1 for the states rarer than
    ``_MIXTURE_FLOOR`` together.

    A stable state's stationary law is right when repairs and reclaims last long against the
    relaxation time; where they are short, the states average out and the mixture overstates
    P(miss); the backlog an overload state leaves behind is not counted, so it may read low where
    the load on the nodes up nears 1 on average (and there is no value at or above 1). Checked
    against the fluid sample in tests/test_failures.py (within 3x); a study takes the larger of
    the two where they disagree. With ``on_failure = "lose"`` it adds the loss rate
    (``_loss_share``: failures an hour x requests in service on a node / requests an hour; the
    lost requests that would have missed anyway are counted twice, an overstatement of at most
    the loss rate times the mixture's value).
    """
    rho_up = load_report(scenario, cap).rho / realism.serving_share()
    if rho_up >= 1.0:
        return Analytic(math.nan, f"none: the nodes up serve less than the offered load on average (load {rho_up:.4g} "
                                  "on them): backlogs carry from state to state, the fluid sample only")
    pmf = nodes_up_law(realism)
    up_rate, back_rate = _state_exit_rate(realism)
    sla_s = min(sla for sla, _ in _classes(scenario))
    p = hi = 0.0
    rest = 1.0
    regimes = set()
    for k in range(realism.nodes, 0, -1):
        w = float(pmf[k])
        if w < _MIXTURE_FLOOR:
            continue
        sk = scenario if k == scenario.fleet.nodes else scenario.with_updates({"fleet.nodes": k})
        load = load_report(sk, cap)
        if load.rho < 1.0:
            an = analytic_p_miss(sk, cap, load)
        else:
            share = _overload_share(sla_s, load.rho, k, realism.nodes, up_rate, back_rate)
            an = Analytic(share, "overload", upper=share)
        if not math.isfinite(an.p):
            return Analytic(math.nan, f"none: {k} nodes up: {an.regime}")
        p += w * an.p
        hi += w * (an.upper if math.isfinite(an.upper) else an.p)
        rest -= w
        regimes.add(an.regime.split(" ")[0])
    if pmf[0] >= _MIXTURE_FLOOR:
        # No node serves: an arrival waits at least the rest of the state (exponential, all n to come back).
        w = float(pmf[0])
        share = math.exp(-sla_s * realism.nodes * back_rate / 3600.0) if math.isfinite(back_rate) else 0.0
        p += w * share
        hi += w * share
        rest -= w
    rest = max(rest, 0.0)
    name = (f"quasi-static mixture over the nodes up (node availability {realism.availability:.6g}, load "
            f"{rho_up:.4g} on the nodes up; each state's {'/'.join(sorted(regimes))} FIFO value)")
    if realism.mtbf_node_h is not None and realism.on_failure == "lose":
        loss = _loss_share(cap, realism)
        p, hi = p + loss, hi + loss
        name += f"; plus the loss rate of on_failure = 'lose', {loss:.3g} of the requests"
    if rho_up > 0.9:
        name += ("; near the capacity that serves on average, where the backlog an overload leaves behind (not "
                 "counted) matters: it may read low")
    return Analytic(min(p + rest, 1.0), name, upper=min(hi + rest, 1.0))


def _loss_share(cap: NodeCapacity, realism: Any) -> float:
    """Share of the requests lost with failed nodes (``on_failure = "lose"``), by Little's law: the
    nodes up fail at 1/MTBF each, and each holds concurrency x (its load) requests in service. Over
    the requests an hour, ρ·nodes·(a node's rate): A·concurrency / (MTBF · rate · serving share)."""
    assert realism.mtbf_node_h is not None
    share = realism.availability * cap.concurrency / (realism.mtbf_node_h * 3600.0 * cap.requests_per_s
                                                      * realism.serving_share())
    return min(float(share), 1.0)


def _agreement(res: dict[str, Any], a_p: float, regime: str) -> tuple[str, bool | None]:
    """Where sampling and the analytic value both speak, whether they agree (``stats.best_p_miss``'s test)."""
    if not math.isfinite(a_p):
        return "analytic not applicable", None
    lo, hi = res["ci"]
    if res["misses"] < 0.5:
        return f"sampling saw no miss (upper bound {res['upper']:.3g}); analytic {a_p:.3g}", True
    if a_p < lo:
        what = "an upper bound" if regime.startswith("upper bound") else "the analytic value"
        return (f"DISAGREE: {what} {a_p:.3g} is below the sampled interval [{lo:.3g}, {hi:.3g}] "
                "(the larger is used)"), False
    if a_p <= hi:
        return "analytic inside the sampled interval", True
    few = res["episodes_effective"] < MIN_EPISODES
    return (f"analytic {a_p:.3g} above the sampled interval [{lo:.3g}, {hi:.3g}]"
            + (f" of {res['episodes']} congestion episodes (effective {res['episodes_effective']:.1f}): "
               "a short sample sees fewer misses than the long run" if few else "")), True


def oversize_floor(scenario: Any, cap: NodeCapacity) -> float:
    """E[(X' − c)+]/E[X']: requests beyond what the whole fleet serves in one SLA, c = its capacity × SLA.

    No fleet state avoids these misses (weighted over the SLA classes); X' = ceil(qY).
    """
    q = 1.0 - cap.reject_fraction
    xd = scenario.workload.batch_size
    ex = q * float(xd.int_mean)
    rate = scenario.fleet.nodes * cap.requests_per_s
    out = 0.0
    classes = _classes(scenario)
    wsum = sum(w for _, w in classes)
    for sla, w in classes:
        c = rate * sla
        out += w / wsum * q * float(excess_mean(xd, c / q, integer=True)) / ex
    return min(out, 1.0)


#: The capacity error a fragile estimate is judged against (a node's measured throughput is
#: known to about this: benchmarks/RESULTS.md, perf_accuracy)...
FRAGILITY_CAPACITY_ERROR = 0.02
#: ...and the factor on P(miss) past which the estimate is fragile...
FRAGILITY_LIMIT = 2.0
#: ...where the moved P(miss) reaches this (the default p_miss_floor: below it no model is trusted).
FRAGILITY_RELEVANT = 1e-6
