"""The fast tier's node failures, spot reclaims and capacity schedule: a capacity process.

The number of nodes serving over time, C(t), is drawn from the same per-node processes as
the request tier's (``sim.availability.Availability``: alternating exponential up/repair
periods, spot notice and re-acquisition, the hourly schedule), from the replication's own
stream. The fluid fleet then drains the batch-level work at C(t) instead of a constant:

* Lindley's recursion takes, between arrivals n and n + 1, the work the fleet can do,
  Γ(t_{n+1}) − Γ(t_n), with Γ(t) = ∫_0^t C(u) du (exact for a work-conserving fluid);
* a request whose work ahead of it is x (``fluid``'s V + (j − 1)·w − D) starts at
  Γ⁻¹(Γ(t_n) + x) − t_n. A batch's run of starts is the chord between its first and
  last request's exact starts: exact at both ends, linear between (a capacity change in
  the middle of one batch's run bends it, and the chord straightens the bend);
* a failure takes a node's requests in service with it: with ``recompute`` their work
  done so far, on average concurrency x the residual work of a request in service
  (E[w²]/2E[w], as ``fluid``'s D), is done again: it is taken from the work the fleet
  can do in that interarrival gap (where the fleet is idle nothing is lost: the
  recursion's reflection at zero). A spot reclaim loses the same for the requests that
  outlive the notice: the share of in-service requests whose residual latency exceeds it.
* with ``on_failure = "lose"`` a failure drops the node's requests in service instead. The
  batch-level model cannot know which requests those were, so it takes their expected number:
  the node's share (1/nodes up) of the requests the fleet has in service, read off the work
  V(t−) the fleet holds just before the failure (``free_slots``' relation: (K − 1)·V/D of
  the K slots, at least one while V > 0, at most K, so at most the node's own slots,
  max_num_seqs-limited), and their remaining work, the node's share of min(V, D + w_e), is
  taken off the backlog (added to the work the fleet does in that gap; the reflection at
  zero keeps it within what is there). The work removed depends on V, which depends on the
  removals: two passes of the recursion, the first removing a full node's work, the second
  what the first's V says (a same-gap earlier failure's removal is not subtracted from the
  second's V(t−)). The lost requests are counted against the batch whose requests were
  starting at the failure (the latest first start before it), as started just then: the
  lost request would have been on time with probability F(T − (t − arrival)), its latency's
  cdf at the slack (``fast.simulate._summarise``). A spot reclaim still recomputes, as in the
  request tier.
* a mixed fleet's nodes (``fleet.pools``) fail at their own pool's rates (``sim.availability``);
  the fluid fleet reads them as ``fleet.nodes`` nodes of the mean speed (``fast.capacity``), so
  each node serving adds its pool's speed over the mean to C(t) (``capacity_path``'s weights),
  and what its failure redoes or drops is scaled alike.

Orders other than FIFO (and EDF with one deadline) and a queue limit are the request tier's
alone, since the priority orders' event loop serves at a constant capacity.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sojourn.fast.batches import Batches
from sojourn.fast.fluid import FluidFleet, fifo_runs
from sojourn.fast.outcomes import Latency, Runs
from sojourn.sim.availability import FAIL, OUT, RECLAIM, Availability

__all__ = ["CapacityPath", "Lost", "capacity_path", "fifo_runs_varying", "residual_beyond"]


@dataclass
class CapacityPath:
    """C(t): ``nodes[k]`` nodes serve on [time[k], time[k + 1]) (the last segment to infinity);
    ``lost_at``/``lost_work``: work (node-seconds) to be done again at those times; ``summary``
    the node-time integrals over the measured span (``Availability.summary``); ``drop_at``/
    ``drop_share``: failures whose requests in service are lost (``on_failure = "lose"``) and
    the failed node's share of the fleet's (1 / the nodes serving just before)."""

    time: NDArray[np.float64]
    nodes: NDArray[np.float64]
    lost_at: NDArray[np.float64]
    lost_work: NDArray[np.float64]
    summary: dict[str, float]
    drop_at: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    drop_share: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    #: The capacity serving just before each of ``drop_at`` (nodes, or mean-node units).
    drop_up: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))

    def nodes_at(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """C(t): the nodes serving at each time."""
        return self.nodes[np.clip(np.searchsorted(self.time, t, side="right") - 1, 0, len(self.time) - 1)]

    def gamma(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """Γ(t) = ∫_0^t C: node-seconds the fleet can do by t."""
        g = self._cum()
        k = np.clip(np.searchsorted(self.time, t, side="right") - 1, 0, len(self.time) - 1)
        return g[k] + self.nodes[k] * (t - self.time[k])

    def gamma_inv(self, g: NDArray[np.float64]) -> NDArray[np.float64]:
        """The last t with Γ(t) <= g: when the work g is done and the fleet serves (past a stretch
        with no node up, Γ flat at g, its end); inf where the capacity never gets there."""
        cum = self._cum()
        k = np.clip(np.searchsorted(cum, g, side="right") - 1, 0, len(cum) - 1)
        # Segment k is the one Γ rises through g in (cum[k] <= g < cum[k + 1]); the last runs forever.
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self.time[k] + (g - cum[k]) / self.nodes[k]
        return np.where(np.isfinite(t), t, math.inf)

    def _cum(self) -> NDArray[np.float64]:
        c = self.__dict__.get("_cum_")
        if c is None:
            c = np.concatenate(([0.0], np.cumsum(np.diff(self.time) * self.nodes[:-1])))
            self.__dict__["_cum_"] = c
        return c


@dataclass
class Lost:
    """Requests lost with failed nodes (``on_failure = "lose"``), per batch: ``count`` the expected
    number, ``age_sum`` their count x (failure time − the batch's arrival)."""

    count: NDArray[np.float64]
    age_sum: NDArray[np.float64]


def residual_beyond(lat: Latency, s: float) -> float:
    """P(R > s) for R the residual latency of a request in service (the equilibrium law of L):
    (E[L] − ∫_0^s (1 − F)) / E[L]."""
    if lat.mean <= 0:
        return 0.0
    x, f = lat.x, lat.f
    if s <= x[0]:
        int_f = 0.0
    elif s >= x[-1]:
        int_f = float(np.trapezoid(f, x)) + (s - x[-1])
    else:
        k = int(np.searchsorted(x, s)) + 1
        xs, fs = np.append(x[:k - 1], s), np.append(f[:k - 1], np.interp(s, x, f))
        int_f = float(np.trapezoid(fs, xs))
    return max(lat.mean - s + int_f, 0.0) / lat.mean


def capacity_path(realism: Any, rng: np.random.Generator, t_end: float, span: tuple[float, float],
                  lost_failure: float, lost_reclaim: float, on_failure: str = "recompute",
                  weights: Sequence[float] | None = None) -> CapacityPath:
    """One draw of C(t) on [0, t_end] from ``realism`` (a ``scenario.FleetRealism``), with the work
    to redo at each failure (``lost_failure``) and reclaim (``lost_reclaim``), node-seconds of a
    node. ``weights``: each node's capacity in the fluid fleet's units (a mixed fleet's pools: its
    pool's speed over the mean node's; None: 1 each), which C(t) sums over the nodes serving and
    which scales what a node's failure redoes or drops."""
    w = [1.0] * realism.nodes if weights is None else [float(x) for x in weights]
    heap: list[tuple[float, int, Any]] = []
    seq = [0]

    def push(t: float, arg: Any) -> None:
        seq[0] += 1
        heapq.heappush(heap, (t, seq[0], arg))

    av = Availability(realism, rng, span, push)
    av.start()
    times, nodes = [0.0], [float(sum(x for x, m in zip(w, av.mask) if m == 0))]
    lost_at: list[float] = []
    lost: list[float] = []
    drop_at: list[float] = []
    drop_share: list[float] = []
    drop_up: list[float] = []
    lose = on_failure == "lose"
    while heap and heap[0][0] < t_end:
        t, _, arg = heapq.heappop(heap)
        for i, old in av.event(t, arg):
            new = av.mask[i]
            if new & OUT and not old & OUT:
                failed = bool(new & ~old & FAIL)
                if failed and lose:
                    drop_at.append(t)
                    drop_share.append(min(w[i] / max(nodes[-1], 1e-12), 1.0))
                    drop_up.append(max(nodes[-1], w[i]))
                    continue
                amount = w[i] * (lost_failure if failed else lost_reclaim if new & ~old & RECLAIM else 0.0)
                if amount != 0:
                    lost_at.append(t)
                    lost.append(amount)
        up = float(sum(x for x, m in zip(w, av.mask) if m == 0))
        if up != nodes[-1]:
            times.append(t)
            nodes.append(up)
    # Past the end the fleet serves at full strength: only requests that have long missed start there.
    summary = av.summary(span[1])
    if nodes[-1] != sum(w):
        times.append(max(t_end, times[-1]))
        nodes.append(float(sum(w)))
    return CapacityPath(np.array(times), np.array(nodes), np.array(lost_at), np.array(lost), summary,
                        np.array(drop_at), np.array(drop_share), np.array(drop_up))


def fifo_runs_varying(b: Batches, fleet: FluidFleet, path: CapacityPath,
                      v0: float = 0.0) -> tuple[Runs, NDArray[np.int64], NDArray[np.float64], Lost | None]:
    """``fluid.fifo_runs`` with the fleet serving at C(t) (``path``): (runs, refused, work found,
    the requests lost with failed nodes per batch, None unless ``path`` drops some)."""
    n = len(b)
    gam = path.gamma(b.arrival)
    service = np.zeros(n)
    if n:
        service[:-1] = np.diff(gam)
        if len(path.lost_at):
            # Work to do again comes off the capacity of the gap it falls in.
            k = np.searchsorted(b.arrival, path.lost_at, side="right") - 1
            ok = (k >= 0) & (k < n - 1)
            np.subtract.at(service, k[ok], path.lost_work[ok])
    # The constant-capacity runs, then their starts moved onto the capacity process's clock.
    flat = FluidFleet(capacity=1.0, slots=fleet.slots, work_mean=fleet.work_mean,
                      in_service_work=fleet.in_service_work, cancel=fleet.cancel, max_queue=fleet.max_queue,
                      work_excess=fleet.work_excess)
    per_node = fleet.slots / fleet.capacity
    slots = path.nodes_at(b.arrival) * per_node

    def ahead(t: NDArray[np.float64], sla: NDArray[np.float64]) -> NDArray[np.float64]:
        return path.gamma(t + sla) - path.gamma(t)

    dropped: NDArray[np.float64] | None = None
    if n and len(path.drop_at):
        runs, refused, v, dropped = _runs_losing(b, flat, fleet, path, service, slots, v0, ahead)
    else:
        runs, refused, v = _runs_on_clock(b, flat, fleet, service, slots, v0, ahead)
    t0 = b.arrival[runs.batch]
    g0 = gam[runs.batch]
    x1 = runs.start  # work ahead of the first request (capacity 1: work = time)
    xl = x1 + runs.step * np.maximum(runs.count - 1, 0)
    C = fleet.capacity

    def when(x: NDArray[np.float64]) -> NDArray[np.float64]:
        # Negative work ahead (a free slot) keeps the constant-capacity meaning: it starts at once.
        return np.where(x >= 0, path.gamma_inv(g0 + np.maximum(x, 0.0)) - t0, x / C)

    s1, sl = when(x1), when(xl)
    multi = runs.count > 1
    step = np.where(multi, (sl - s1) / np.maximum(runs.count - 1, 1), runs.step / C)
    out = Runs(runs.batch, s1, step, runs.count)
    return out, refused, v, None if dropped is None else _attribute(b, out, path.drop_at, dropped)


def _runs_losing(b: Batches, flat: FluidFleet, fleet: FluidFleet, path: CapacityPath, service: NDArray[np.float64],
                 slots: NDArray[np.float64], v0: float,
                 ahead: Any) -> tuple[Runs, NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """The runs with each failure's requests in service dropped (module docstring): two passes, the
    removals of the second from the first's work; (runs, refused, V, the requests each failure
    is expected to lose)."""
    n = len(b)
    t, share = path.drop_at, path.drop_share
    k = np.searchsorted(b.arrival, t, side="right") - 1
    ok = (k >= 0) & (k < n - 1)
    # The slots and the work in service of the fleet just before each failure (the nodes serving then).
    k_up = fleet.slots / fleet.capacity * path.drop_up
    _, d_up = fleet.scaled_to(k_up)
    full = d_up + fleet.work_excess
    removal = share * full  # the first pass: a full node's work in service
    hold = ahead(b.arrival, b.sla) if fleet.cancel else np.full(n, math.inf)
    gam_t = path.gamma(t)
    kk = np.clip(k, 0, n - 1)
    gam_k = path.gamma(b.arrival[kk])
    for _ in range(2):
        svc = service.copy()
        np.add.at(svc, k[ok], removal[ok])
        runs, refused, v = _runs_on_clock(b, flat, fleet, svc, slots, v0, ahead)
        # V(t−): what batch k left, less what the fleet did since; before the first arrival, the start's.
        before = np.where(k >= 0, np.minimum(v[kk] + b.work[kk], hold[kk]) - (gam_t - gam_k), v0 - gam_t)
        before = np.maximum(before, 0.0)
        removal = share * np.minimum(before, full)
    with np.errstate(divide="ignore", invalid="ignore"):
        busy = np.where(d_up > 0, (k_up - 1.0) * before / np.where(d_up > 0, d_up, 1.0), k_up)
    busy = np.where(before > 0, np.clip(busy, np.minimum(1.0, k_up), k_up), 0.0)
    return runs, refused, v, share * busy


def _attribute(b: Batches, runs: Runs, t: NDArray[np.float64], count: NDArray[np.float64]) -> Lost:
    """Each failure's lost requests, counted against the batch whose requests were starting then
    (the latest first start at or before it), as started at the failure."""
    n = len(b)
    first = b.arrival[runs.batch] + np.maximum(runs.start, 0.0)
    order = np.argsort(first, kind="stable")
    idx = np.searchsorted(first[order], t, side="right") - 1
    use = (idx >= 0) & (count > 0) & (len(runs) > 0)
    batch = runs.batch[order[np.clip(idx[use], 0, None)]]
    c = count[use]
    age = t[use] - b.arrival[batch]
    return Lost(np.bincount(batch, weights=c, minlength=n).astype(np.float64),
                np.bincount(batch, weights=c * age, minlength=n).astype(np.float64))


def _runs_on_clock(b: Batches, flat: FluidFleet, fleet: FluidFleet, service: NDArray[np.float64],
                   slots: NDArray[np.float64], v0: float, gamma_ahead: Any) -> tuple[Runs, NDArray[np.int64], NDArray[np.float64]]:
    """``fifo_runs`` on a fleet of capacity 1 whose interarrival work is ``service``: its starts are
    then the work ahead of each run's first request and its step the work of one request."""
    shifted = Batches(b.arrival, b.size, b.accepted, b.work, b.sla * fleet.capacity)
    hold = None
    if fleet.cancel:
        # Cancellation at the deadline: a batch keeps the work the fleet can do before it, Γ(t + T) − Γ(t).
        hold = gamma_ahead(b.arrival, b.sla)
    return fifo_runs(shifted, flat, v0, service=service, slots=slots, hold=hold)
