"""The fluid fleet's stationary workload law against exact queueing results, and its uses.

Exact laws: M/M/1 (ψ(x) = ρe^{−(μ−λ)x}), M^X/M/1 with geometric batches (a geometric
sum of exponential works is exponential: ψ(x) = ρe^{−(μp−λ)x}), M/D/1 (Erlang's
formula), and for any M/G/1 the Pollaczek–Khinchine mean λE[B²]/2(1 − ρ).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sojourn.distributions import parse_distribution
from sojourn.fast import fast_simulate, node_capacity
from sojourn.fast.simulate import analytic_p_miss
from sojourn.fast.stationary import batch_work_moments, relaxation_time, workload_law
from sojourn.fast.tails import fifo_tail
from sojourn.scenario import scenario_from_dict

ONE = parse_distribution({"dist": "fixed", "value": 1})
#: Exp(1) works as 65,536 evenly spaced quantiles.
EXP = -np.log1p(-(np.arange(1 << 16) + 0.5) / (1 << 16))
EXP /= EXP.mean()


def law_of(xdist, works, lam, upto, var=None):
    works = np.asarray(works, dtype=np.float64)
    v = float(works.var()) if var is None else var
    law = workload_law(xdist, 1.0, works, float(works.mean()), v, 1.0, lam, upto)
    assert not isinstance(law, str), law
    return law


@pytest.mark.parametrize("rho", [0.5, 0.9, 0.98])
def test_mm1_law_is_bracketed_and_its_midpoint_is_close(rho):
    law = law_of(ONE, EXP, rho, 40.0 / (1.0 - rho))
    for x in (0.0, 1.0, 5.0, 0.5 / (1 - rho), 3.0 / (1 - rho), 10.0 / (1 - rho)):
        exact = rho * math.exp(-(1.0 - rho) * x)
        assert law.sf(x, "lower") <= exact * (1 + 1e-9) + 1e-12, (x, law.sf(x, "lower"), exact)
        assert law.sf(x, "upper") >= exact * (1 - 1e-9) - 1e-12, (x, law.sf(x, "upper"), exact)
        assert law.sf(x, "mid") == pytest.approx(exact, rel=0.05, abs=1e-11)
    assert law.mean == pytest.approx(rho / (1.0 - rho), rel=0.01)


def test_geometric_batches_of_exponential_work_are_an_mm1_workload():
    p, rho = 0.25, 0.9
    lam = rho * p
    law = law_of(parse_distribution({"dist": "geometric", "mean": 1 / p}), EXP, lam, 600.0)
    for x in (0.0, 10.0, 40.0, 100.0, 200.0):
        exact = rho * math.exp(-(p - lam) * x)
        assert law.sf(x, "lower") <= exact + 1e-12 <= law.sf(x, "upper") + 2e-12, x
        assert law.sf(x, "mid") == pytest.approx(exact, rel=0.06)


def _md1_sf(x: float, lam: float) -> float:
    """P(V > x) of M/D/1 with D = 1 (Erlang 1909): 1 − (1 − ρ) Σ_k (λ(k − x))^k/k! e^{−λ(k − x)}."""
    s = sum((lam * (k - x)) ** k / math.factorial(k) * math.exp(-lam * (k - x)) for k in range(int(x) + 1))
    return 1.0 - (1.0 - lam) * s


def test_md1_law_brackets_erlangs_formula():
    law = law_of(ONE, np.ones(64), 0.8, 60.0, var=0.0)
    for x in (0.5, 2.0, 5.0, 10.0, 20.0):
        exact = _md1_sf(x, 0.8)
        assert law.sf(x, "lower") <= exact <= law.sf(x, "upper"), (x, law.sf(x, "lower"), exact, law.sf(x, "upper"))


def test_heavy_traffic_capped_lognormal_matches_pollaczek_khinchine_and_cramer_lundberg():
    # Batch-API sizes (lognormal, median 4,000, sigma 1.5, capped at 100,000) at rho = 0.975.
    xd = parse_distribution({"dist": "lognormal", "median": 4000, "sigma": 1.5, "max": 100_000})
    u = 0.975 * 120.0 / xd.int_mean
    law = workload_law(xd, 1.0, np.array([u]), u, 0.0, 1.0, 1 / 120, 40 * 3600.0)
    bw = batch_work_moments(xd, 1.0, u, 0.0, 1.0, 1 / 120)
    assert law.mean == pytest.approx(bw.mean_wait, rel=0.01)
    # Far out, the Cramér–Lundberg asymptotic of the same queue (computed independently from the
    # batch work's m.g.f.) holds: within 15% at 16 h and 20 h.
    sc = scenario_from_dict({
        "sla_hours": 24, "workload": {"batch_rate_per_hour": 30, "batch_size": xd.model_dump(by_alias=True),
                                      "input_tokens": {"dist": "fixed", "value": 1},
                                      "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": {"dist": "fixed", "value": u}}},
    })
    tail = fifo_tail(sc, node_capacity(sc), 1 / 120)
    assert tail.regime == "cramer-lundberg"
    for h in (16, 20):
        assert law.sf(h * 3600.0, "mid") == pytest.approx(tail.sf(h * 3600.0), rel=0.15)


def test_lindley_sample_of_the_same_queue_agrees():
    # rho = 0.9, where a few million batches resolve the law well.
    xd = parse_distribution({"dist": "lognormal", "median": 30, "sigma": 1.0, "max": 1000})
    lam = 1.0
    u = 0.9 / xd.int_mean
    law = workload_law(xd, 1.0, np.array([u]), u, 0.0, 1.0, lam, 200.0)
    rng = np.random.default_rng(11)
    from sojourn.fast.lindley import lindley

    n = 4_000_000
    b = xd.sample_int(rng, n) * u
    v = lindley(b, rng.exponential(1.0 / lam, n))
    for x in (2.0, 10.0, 25.0):
        assert float(np.mean(v > x)) == pytest.approx(law.sf(x, "mid"), rel=0.1), x


def test_stationary_draws_follow_the_law_and_respect_a_cap():
    rho = 0.9
    law = law_of(ONE, EXP, rho, 400.0)
    rng = np.random.default_rng(5)
    v = law.sample(rng, 200_000)
    assert float(np.mean(v == 0.0)) == pytest.approx(1 - rho, abs=0.005)  # the atom: P(V = 0) = 1 − ρ
    assert float(np.mean(v)) == pytest.approx(rho / (1 - rho), rel=0.02)
    capped = law.sample(rng, 50_000, cap=5.0)
    assert capped.max() <= 5.0
    # The capped law is the uncapped one restricted to [0, 5] and renormalised.
    k = law.sf(5.0, "mid")
    assert float(np.mean(capped > 2.0)) == pytest.approx((law.sf(2.0, "mid") - k) / (1 - k), abs=0.01)


def test_relaxation_time_is_morses_for_mm1_in_heavy_traffic():
    for rho in (0.99, 0.995):
        bw = batch_work_moments(ONE, 1.0, 1.0, 1.0, 1.0, rho)
        morse = 1.0 / (1.0 - math.sqrt(rho)) ** 2
        assert relaxation_time(bw) == pytest.approx(morse, rel=0.02)
    assert relaxation_time(batch_work_moments(ONE, 1.0, 1.0, 1.0, 1.0, 1.0)) == math.inf


def test_unstable_fleet_has_no_law():
    assert isinstance(workload_law(ONE, 1.0, EXP, 1.0, 1.0, 1.0, 1.01, 100.0), str)


def generic(rate, service, sla_s, batch=None, on_deadline="finish", **sim):
    return scenario_from_dict({
        "sla_hours": sla_s / 3600.0,
        "workload": {"batch_rate_per_hour": rate * 3600.0, "batch_size": batch or {"dist": "fixed", "value": 1},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"server": {"kind": "generic", "service_time": service}},
        "serving": {"on_deadline": on_deadline},
        "simulation": {"horizon_hours": 2.0, "warmup_hours": 0.1, "replications": 4, "seed": 3, **sim},
    })


def test_heavy_traffic_analytic_is_the_numeric_law_and_names_the_asymptotic_it_replaces():
    # M^X/M/1 with lognormal batches (heavy-tailed: the subexponential asymptotic applies in
    # principle) at rho = 0.97 with an SLA of a few mean waits: heavy traffic.
    batch = {"dist": "lognormal", "median": 20, "sigma": 1.2}
    xd = parse_distribution(batch)
    rate = 0.97 / xd.int_mean
    sc = generic(rate, {"dist": "exponential", "mean": 1.0}, 3000.0, batch=batch)
    an = analytic_p_miss(sc)
    assert an.regime.startswith("numeric")
    assert "outside its regime" in an.regime and math.isfinite(an.asymptotic)
    assert an.asymptotic < an.p / 2  # the asymptotic is far too optimistic here
    # The fast tier's long sample (stationary start) agrees with the numeric value, not the asymptotic.
    r = fast_simulate(sc.with_updates({"simulation.horizon_hours": 400.0}), replications=8)
    assert r.p_miss_ci[0] <= an.p <= r.p_miss_ci[1] or r.p_miss == pytest.approx(an.p, rel=0.3)
    assert not r.p_miss_ci[0] <= an.asymptotic <= r.p_miss_ci[1]


def test_relaxation_time_of_a_capped_workload():
    # Held within K (cancellation): the two-barrier reflected motion's gap adds pi^2 sigma^2 / 2K^2.
    bw = batch_work_moments(ONE, 1.0, 1.0, 1.0, 1.0, 0.95)
    free = relaxation_time(bw)
    assert relaxation_time(bw, 1e9) == pytest.approx(free, rel=1e-6)
    k = 50.0
    var = 0.95 * 2.0
    assert relaxation_time(bw, k) == pytest.approx(1.0 / ((0.05**2) / (2 * var) + math.pi**2 * var / (2 * k * k)))
    assert relaxation_time(bw, k) < free / 5
    over = batch_work_moments(ONE, 1.0, 1.0, 1.0, 1.0, 1.2)
    assert math.isfinite(relaxation_time(over, k)) and relaxation_time(over) == math.inf
