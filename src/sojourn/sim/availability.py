"""Which nodes of a fleet are up: failures, spot reclaims and a capacity schedule, as events.

Each node carries a mask of the reasons it is out of service:

* ``FAIL``: failed, until repaired (an alternating exponential up/down process: up for
  the node's MTBF on average, down for the repair time);
* ``NOTICE`` then ``RECLAIM``: a spot node reclaimed by its provider: on notice it stops
  admitting, ``notice_s`` later it is gone (``RECLAIM``) until a replacement is acquired
  (exponential, ``reacquire_h`` on average);
* ``DRAIN``: taken away by the capacity schedule (the highest-numbered nodes first): it
  admits nothing more, and finishes what it runs.

A node admits work only with an empty mask, and has an engine at all only without
``FAIL`` or ``RECLAIM`` (``OUT``): when one of those is set, the fleet takes the node
out with its requests (``FleetSim``). The processes start in their stationary laws
(a node is failed at time 0 with probability MTTR/(MTBF + MTTR), with an exponential
residual repair; likewise a spot node's phase), so availability holds from the first
instant. Each node's processes are independent of each other and of the traffic (their
own random stream), so a node's long-run share of time not failed is MTBF/(MTBF + MTTR)
exactly; ``Availability`` integrates the node-time in each state over the measured span.
A mixed fleet's nodes (``FleetRealism.pools``, in pool order) fail and are repaired at their
own pool's rates and are paid at its price x tp; the failed node-time is also kept per pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DRAIN", "FAIL", "NOTICE", "OUT", "RECLAIM", "Availability", "realism_report"]

FAIL, RECLAIM, NOTICE, DRAIN = 1, 2, 4, 8
OUT = FAIL | RECLAIM

# What an event does to a node (its ``arg``: (node, change)).
_FAIL, _REPAIR, _NOTICE, _RECLAIM, _REACQUIRE, _HOUR = range(6)


class Availability:
    """The node masks of one replication and their events (``push(t, (node, change))``).

    ``realism`` is a ``scenario.FleetRealism``; ``span`` the measured interval [start, end) over
    which node-time is integrated: ``serving`` (empty mask), ``failed``, ``held`` (paid:
    scheduled and, spot, not reclaimed) and its dollars ``cost`` (per-GPU prices x tp).
    """

    def __init__(self, realism: Any, rng: np.random.Generator, span: tuple[float, float],
                 push: Callable[[float, tuple[int, int]], None]) -> None:
        self.r = realism
        n = realism.nodes
        self.n = n
        self.rng = rng
        self.push = push
        self.mask = [0] * n
        self.first_spot = n - realism.spot_nodes
        # Each node's pool, MTBF and repair (s), and rent ($/h: price x tp) from its pool's settings.
        pools = realism.node_pools()
        self.pool_of = [k for k, p in enumerate(pools) for _ in range(p.nodes)]
        self.n_pools = len(pools)
        self._mtbf = [None if p.mtbf_node_h is None else p.mtbf_node_h * 3600.0 for p in pools]
        self._repair = [p.repair_h * 3600.0 for p in pools]
        self._rent = [(p.price * p.tp, realism.spot_price * p.tp) for p in pools]
        self.failed_by_pool = [0.0] * len(pools)
        self.span = span
        self._last = span[0]
        self.serving_s = self.failed_s = self.held_s = self.cost_usd = 0.0
        self.failures = self.reclaims = 0  # events inside the measured span

    # -- the initial state and the next events -----------------------------------------

    def start(self) -> None:
        """Draw every node's stationary state at time 0 and push its first events."""
        r, rng = self.r, self.rng
        for i in range(self.n):
            m = self._mtbf[self.pool_of[i]]
            if m is not None:
                d = self._repair[self.pool_of[i]]
                if rng.random() < d / (m + d):
                    self.mask[i] |= FAIL
                    self.push(rng.exponential(d), (i, _REPAIR))
                else:
                    self.push(rng.exponential(m), (i, _FAIL))
            if i >= self.first_spot and r.reclaim_per_h > 0:
                self._spot_start(i)
        if r.schedule is not None:
            self._apply_hour(0)
            self.push(3600.0, (-1, _HOUR))

    def _spot_start(self, i: int) -> None:
        r, rng = self.r, self.rng
        up, notice, down = 3600.0 / r.reclaim_per_h, r.notice_s, r.reacquire_h * 3600.0
        u = rng.random() * (up + notice + down)
        if u < up:
            self.push(rng.exponential(up), (i, _NOTICE))
        elif u < up + notice:
            self.mask[i] |= NOTICE
            self.push(rng.random() * notice, (i, _RECLAIM))
        else:
            self.mask[i] |= RECLAIM
            self.push(rng.exponential(down), (i, _REACQUIRE))

    def _apply_hour(self, hour: int) -> list[int]:
        """Set the schedule's DRAIN bits for this hour; the nodes whose bit changed."""
        k = self.r.scheduled(hour)
        changed = []
        for i in range(self.n):
            want = DRAIN if i >= k else 0
            if self.mask[i] & DRAIN != want:
                self.mask[i] ^= DRAIN
                changed.append(i)
        return changed

    def event(self, t: float, arg: tuple[int, int]) -> list[tuple[int, int]]:
        """Apply one event at ``t``: [(node, its mask before)] for each node it changed."""
        self.accrue(t)
        i, what = arg
        r, rng = self.r, self.rng
        if what == _HOUR:
            hour = int(round(t / 3600.0))
            before = list(self.mask)
            self.push(t + 3600.0, (-1, _HOUR))
            return [(j, before[j]) for j in self._apply_hour(hour)]
        old = self.mask[i]
        measured = self.span[0] <= t < self.span[1]
        if what == _FAIL:
            self.mask[i] |= FAIL
            self.failures += measured
            self.push(t + rng.exponential(self._repair[self.pool_of[i]]), (i, _REPAIR))
        elif what == _REPAIR:
            self.mask[i] &= ~FAIL
            m = self._mtbf[self.pool_of[i]]
            assert m is not None
            self.push(t + rng.exponential(m), (i, _FAIL))
        elif what == _NOTICE:
            self.mask[i] |= NOTICE
            self.push(t + r.notice_s, (i, _RECLAIM))
        elif what == _RECLAIM:
            self.mask[i] = (self.mask[i] & ~NOTICE) | RECLAIM
            self.reclaims += measured
            self.push(t + rng.exponential(r.reacquire_h * 3600.0), (i, _REACQUIRE))
        else:  # _REACQUIRE
            self.mask[i] &= ~RECLAIM
            self.push(t + rng.exponential(3600.0 / r.reclaim_per_h), (i, _NOTICE))
        return [(i, old)]

    # -- node-time over the measured span ------------------------------------------------

    def accrue(self, t: float) -> None:
        """Add the node-time since the last change, within the measured span, to the integrals."""
        a, b = self.span
        lo, hi = max(self._last, a), min(t, b)
        if hi > lo:
            dt = hi - lo
            serving = failed = 0
            cost = held = 0.0
            pool_of, rent, by_pool = self.pool_of, self._rent, self.failed_by_pool
            for i, m in enumerate(self.mask):
                serving += m == 0
                if m & FAIL:
                    failed += 1
                    by_pool[pool_of[i]] += dt
                if not m & (DRAIN | RECLAIM):
                    held += 1
                    cost += rent[pool_of[i]][i >= self.first_spot]
            self.serving_s += serving * dt
            self.failed_s += failed * dt
            self.held_s += held * dt
            self.cost_usd += cost * dt / 3600.0
        self._last = max(self._last, t)

    def summary(self, end: float) -> dict[str, float]:
        """The integrals over the measured span (``accrue`` up to its end first)."""
        self.accrue(end)
        out = {"serving_node_s": self.serving_s, "failed_node_s": self.failed_s, "held_node_s": self.held_s,
               "cost_usd": self.cost_usd, "failures": float(self.failures), "reclaims": float(self.reclaims)}
        if self.n_pools > 1:  # a mixed fleet: each pool's failed node-time too
            out.update({f"failed_node_s:{k}": v for k, v in enumerate(self.failed_by_pool)})
        return out


def realism_report(realism: Any, *, serving: float, failed: float, node_hours: float, cost: float,
                   failures: float, reclaims: float, recomputed: int, lost: int) -> dict[str, Any]:
    """A result's ``fleet_realism``: the settings as resolved, and what a run measured beside what
    they imply (shares of the nominal node-hours: ``serving``, admitting work; ``failed``).
    ``node_hours``: node-hours paid per replication's measured span; ``cost``: the rent paid, $/h."""
    return {
        "mtbf_node_hours": realism.mtbf_node_h,
        "repair_hours": realism.repair_h if realism.mtbf_node_h is not None else None,
        "on_failure": realism.on_failure if realism.mtbf_node_h is not None else None,
        "spot_nodes": realism.spot_nodes,
        "spot_price_usd_per_gpu_hour": realism.spot_price if realism.spot_nodes else None,
        "capacity_schedule": list(realism.schedule) if realism.schedule is not None else None,
        "node_availability": realism.availability,
        **({"pools": [{"nodes": p.nodes, "tp": p.tp, "mtbf_node_hours": p.mtbf_node_h, "repair_hours": p.repair_h,
                       "node_availability": p.availability} for p in realism.pools]}
           if getattr(realism, "pools", None) is not None else {}),
        "failed_share": failed,
        "serving_share": serving,
        "serving_share_expected": realism.serving_share(),
        "node_hours_paid": node_hours,
        "cost_per_hour_measured": cost,
        "failures": int(failures),
        "reclaims": int(reclaims),
        "requests_recomputed": recomputed,
        "requests_lost": lost,
    }
