"""The fast tier's Lindley recursions and fluid model against exact queueing results.

Statistical tests with fixed seeds: an exact value must lie inside the fast
path's 95% replication interval (the interval ``fast_simulate`` reports).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sojourn.analytic import md1_mean_wait, mmc_sojourn_sf, mxm1_geometric_mean_wait
from sojourn.fast import fast_simulate, lindley, lindley_capped
from sojourn.fast.batches import Batches
from sojourn.fast.fluid import FluidFleet, Segments, fifo_runs, priority_runs
from sojourn.fast.outcomes import Latency, run_stats
from sojourn.scenario import scenario_from_dict


def _reference(w, a, cap, v0=0.0):
    """The recursion one step at a time: V_{n+1} = max(0, min(V_n + W_n, cap) − A_n)."""
    v = np.empty(len(w))
    x = v0
    for i in range(len(w)):
        v[i] = x
        x = max(0.0, min(x + w[i], cap) - a[i])
    return v


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 1000, 4097])
@pytest.mark.parametrize("cap", [math.inf, 3.0, 0.5])
@pytest.mark.parametrize("v0", [0.0, 0.3])
def test_recursions_match_the_step_by_step_reference(n, cap, v0):
    rng = np.random.default_rng(n)
    w = rng.exponential(1.0, n)
    a = rng.exponential(1.2, n)
    got = lindley(w, a, v0) if math.isinf(cap) else lindley_capped(w, a, cap, v0)
    np.testing.assert_allclose(got, _reference(w, a, cap, v0), atol=1e-9)


def test_capped_recursion_block_size_does_not_matter():
    rng = np.random.default_rng(5)
    w, a = rng.exponential(1.0, 10_000), rng.exponential(1.02, 10_000)
    ref = lindley_capped(w, a, 4.0, block=64)
    for block in (7, 100, 999):
        np.testing.assert_allclose(lindley_capped(w, a, 4.0, block=block), ref, atol=1e-9)


def generic(rate_per_s, service, sla_s, *, batch=None, nodes=1, concurrency=1, discipline="fifo",
            on_deadline="finish", max_queue=None, seed=3, reps=8, classes=None):
    d = {
        "sla_hours": sla_s / 3600.0,
        "workload": {
            "batch_rate_per_hour": rate_per_s * 3600.0,
            "batch_size": batch or {"dist": "fixed", "value": 1},
            "input_tokens": {"dist": "fixed", "value": 1},
            "output_tokens": {"dist": "fixed", "value": 1},
        },
        "fleet": {"nodes": nodes, "server": {"kind": "generic", "service_time": service, "concurrency": concurrency}},
        "serving": {"discipline": discipline, "on_deadline": on_deadline, "max_queue": max_queue},
        "simulation": {"horizon_hours": 10.0, "warmup_hours": 0.5, "replications": reps, "seed": seed},
    }
    if classes:
        d["workload"]["sla_classes"] = classes
    return scenario_from_dict(d)


def inside(x, ci):
    return ci[0] <= x <= ci[1]


@pytest.mark.parametrize("t", [2.0, 8.0, 20.0])
def test_mm1_sojourn_tail_is_exact(t):
    # M/M/1, lam = 0.75, mu = 1: P(S > t) = exp(−(mu − lam) t).
    sc = generic(0.75, {"dist": "exponential", "mean": 1.0}, t)
    r = fast_simulate(sc, min_batches=800_000)
    exact = float(mmc_sojourn_sf(t, 0.75, 1.0, 1))
    assert inside(exact, r.p_miss_ci), (exact, r.p_miss_ci)
    assert r.load.rho == pytest.approx(0.75)


def test_mm1_mean_sojourn_and_wait_are_exact():
    sc = generic(0.8, {"dist": "exponential", "mean": 1.0}, 60.0)
    r = fast_simulate(sc, min_batches=800_000)
    assert inside(1.0 / 0.2, r.sojourn_mean_ci), r.sojourn_mean_ci
    assert inside(0.8 / 0.2, r.wait_mean_ci), r.wait_mean_ci


def test_md1_mean_wait_is_pollaczek_khinchine():
    sc = generic(0.7, {"dist": "fixed", "value": 1.0}, 60.0)
    r = fast_simulate(sc, min_batches=800_000)
    assert inside(md1_mean_wait(0.7, 1.0), r.wait_mean_ci), (md1_mean_wait(0.7, 1.0), r.wait_mean_ci)


@pytest.mark.parametrize("mean_batch", [2.0, 5.0])
def test_mx_m1_geometric_batches_mean_wait_of_a_random_customer(mean_batch):
    lam = 0.7 / mean_batch  # rho = 0.7 with mu = 1
    sc = generic(lam, {"dist": "exponential", "mean": 1.0}, 600.0, batch={"dist": "geometric", "mean": mean_batch})
    r = fast_simulate(sc, min_batches=800_000)
    exact = mxm1_geometric_mean_wait(lam, mean_batch, 1.0)
    assert inside(exact, r.wait_mean_ci), (exact, r.wait_mean_ci)


def test_cancellation_matches_the_finite_dam_formula():
    # M/M/1 whose unfinished work is dropped at T: the capped workload's law is the
    # uncapped one on [0, T] renormalised, which the analytic tier applies exactly.
    sc = generic(0.9, {"dist": "exponential", "mean": 1.0}, 10.0, on_deadline="cancel")
    r = fast_simulate(sc, min_batches=800_000)
    # The exact stationary law (numeric) where it resolves P(miss); the Cramér–Lundberg
    # asymptotic beside it agrees (the capped formula applied to both).
    assert r.analytic_regime.startswith("numeric")
    assert r.analytic_asymptotic == pytest.approx(r.analytic_p_miss, rel=0.05)
    assert inside(r.analytic_p_miss, r.p_miss_ci), (r.analytic_p_miss, r.p_miss_ci)
    # Cancelling bounds the queue: fewer misses than finishing late work.
    late = fast_simulate(generic(0.9, {"dist": "exponential", "mean": 1.0}, 10.0), min_batches=800_000)
    assert r.p_miss_ci[1] < late.p_miss_ci[0]


def test_vectorised_fifo_equals_the_event_loop():
    rng = np.random.default_rng(3)
    n = 20_000
    a = np.cumsum(rng.exponential(1.0, n))
    x = rng.geometric(0.3, n)
    w = rng.gamma(x, 0.25)
    lat = Latency.from_distribution(scenario_from_dict({
        "workload": {"batch_rate_per_hour": 1, "input_tokens": {"dist": "fixed", "value": 1},
                     "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 0.25}}},
    }).fleet.server.service_time)
    for cancel in (False, True):
        b = Batches(a, x, x, w, np.full(n, 5.0))
        fl = FluidFleet(1.0, 1.0, 0.25, 0.0, cancel)
        r1, _, _ = fifo_runs(b, fl)
        r2, _ = priority_runs(b, Segments.whole(b), fl, "fifo")
        s1 = run_stats(r1, b.sla[r1.batch], lat)
        s2 = run_stats(r2, b.sla[r2.batch], lat)
        # Equal up to the midpoint rule over runs split differently (a piece ends at each event).
        assert s1.on_time.sum() == pytest.approx(s2.on_time.sum(), rel=1e-4)
        assert s1.on_time_sojourn.sum() == pytest.approx(s2.on_time_sojourn.sum(), rel=2e-3)


def test_lifo_beats_fifo_under_overload_with_cancellation():
    # As in the request-level tier: FIFO serves requests with no slack left; LIFO the fresh ones.
    fifo = fast_simulate(generic(1.3, {"dist": "fixed", "value": 1.0}, 60.0, on_deadline="cancel"), min_batches=50_000)
    lifo = fast_simulate(generic(1.3, {"dist": "fixed", "value": 1.0}, 60.0, on_deadline="cancel", discipline="lifo"),
                         min_batches=50_000)
    assert lifo.p_miss_ci[1] < fifo.p_miss_ci[0]
    assert not fifo.load.stable


def test_edf_honours_per_batch_deadlines():
    classes = [{"hours": 20 / 3600, "weight": 1}, {"hours": 200 / 3600, "weight": 1}]
    edf = fast_simulate(generic(0.95, {"dist": "exponential", "mean": 1.0}, 60.0, discipline="edf",
                                on_deadline="cancel", classes=classes), min_batches=100_000)
    fifo = fast_simulate(generic(0.95, {"dist": "exponential", "mean": 1.0}, 60.0, discipline="fifo",
                                 on_deadline="cancel", classes=classes), min_batches=100_000)
    assert edf.p_miss_ci[1] < fifo.p_miss_ci[0]


def test_max_queue_is_mm1k_blocking():
    # M/M/1 with at most 50 waiting (51 in system): blocking rho^K (1 − rho) / (1 − rho^{K+1}), K = 51.
    sc = generic(0.95, {"dist": "exponential", "mean": 1.0}, 1e4, max_queue=50, reps=8)
    r = fast_simulate(sc, min_batches=1_000_000)
    k = 51
    blocking = 0.95**k * 0.05 / (1 - 0.95 ** (k + 1))
    assert inside(blocking, r.p_miss_ci), (blocking, r.p_miss_ci)
    assert r.requests_rejected / r.requests_arrived == pytest.approx(r.p_miss, rel=1e-9)
