"""The exact queueing formulas (sojourn.analytic) against published numbers and each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from sojourn.analytic import (
    erlang_b,
    erlang_c,
    md1_mean_wait,
    mdc_mean_wait,
    mdc_number_distribution,
    mdc_wait_sf,
    mg1_mean_wait,
    mmc_mean_sojourn,
    mmc_mean_wait,
    mmc_sojourn_sf,
    mmc_wait_sf,
    mxg1_mean_wait,
    mxm1_geometric_mean_wait,
)

# --- Erlang B and C -----------------------------------------------------------


def test_erlang_c_published_two_servers():
    # c = 2, a = 1.6 erlangs (rho = 0.8): C = 2 rho^2 / (1 + rho) = 32/45 = 0.7111...
    assert erlang_c(1.6, 1.0, 2) == pytest.approx(32 / 45, rel=1e-14)
    assert erlang_c(1.6, 1.0, 2) == pytest.approx(0.711111, abs=1e-6)


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.8, 0.99])
def test_erlang_c_closed_forms_for_one_and_two_servers(rho):
    assert erlang_c(rho, 1.0, 1) == pytest.approx(rho, rel=1e-14)
    assert erlang_c(2 * rho, 1.0, 2) == pytest.approx(2 * rho**2 / (1 + rho), rel=1e-13)


def test_erlang_b_published_values():
    assert erlang_b(2, 1.0) == pytest.approx(0.2, rel=1e-14)  # (1/2) / (1 + 1 + 1/2)
    assert erlang_b(10, 5.0) == pytest.approx(0.018385, abs=5e-7)  # standard Erlang B table


@pytest.mark.parametrize("c,a", [(1, 0.5), (3, 2.2), (10, 8.0), (50, 45.0)])
def test_erlang_c_matches_the_factorial_form(c, a):
    terms = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) / (1 - a / c)
    assert erlang_c(a, 1.0, c) == pytest.approx(top / (terms + top), rel=1e-12)


def test_erlang_c_many_servers_matches_the_log_space_factorial_form():
    # The factorial form overflows here (600!); the Erlang B recursion does not.
    c, a = 600, 500.0
    k = np.arange(c)
    log_terms = k * math.log(a) - special.gammaln(k + 1)
    log_top = c * math.log(a) - special.gammaln(c + 1) - math.log(1 - a / c)
    expected = 1.0 / (1.0 + math.exp(special.logsumexp(log_terms) - log_top))
    assert erlang_c(a, 1.0, c) == pytest.approx(expected, rel=1e-10)
    assert 1e-7 < expected < 1e-4


# --- M/M/c -------------------------------------------------------------------


@pytest.mark.parametrize("lam,mu", [(0.3, 1.0), (0.8, 1.0), (4.0, 5.0)])
def test_mm1_textbook_expressions(lam, mu):
    rho = lam / mu
    assert mmc_mean_wait(lam, mu, 1) == pytest.approx(rho / (mu - lam), rel=1e-13)
    assert mmc_mean_sojourn(lam, mu, 1) == pytest.approx(1 / (mu - lam), rel=1e-13)
    t = np.array([0.0, 0.5, 2.0, 10.0])
    # M/M/1: S is exponential with rate mu - lam; W has an atom 1 - rho at 0.
    np.testing.assert_allclose(mmc_sojourn_sf(t, lam, mu, 1), np.exp(-(mu - lam) * t), rtol=1e-12)
    np.testing.assert_allclose(mmc_wait_sf(t, lam, mu, 1), rho * np.exp(-(mu - lam) * t), rtol=1e-12)


def test_mmc_sojourn_sf_special_case_c_mu_minus_lam_equals_mu():
    # c = 2, lam = mu = 1: theta = c mu - lam = mu, the sum of two exponentials is Erlang-2.
    t = np.array([0.0, 0.3, 1.0, 4.0, 20.0])
    pc = erlang_c(1.0, 1.0, 2)
    assert pc == pytest.approx(1 / 3, rel=1e-14)
    expected = (1 - pc) * np.exp(-t) + pc * (1 + t) * np.exp(-t)
    np.testing.assert_allclose(mmc_sojourn_sf(t, 1.0, 1.0, 2), expected, rtol=1e-13)
    # ...and it is the limit of the general case on either side.
    for lam in (1.0 - 1e-7, 1.0 + 1e-7):
        np.testing.assert_allclose(mmc_sojourn_sf(t, lam, 1.0, 2), expected, rtol=1e-5)


@pytest.mark.parametrize("lam,mu,c", [(1.6, 1.0, 2), (2.5, 1.0, 3), (7.0, 0.9, 10), (0.5, 2.0, 4)])
def test_mmc_sojourn_sf_agrees_with_its_mean_and_its_parts(lam, mu, c):
    assert mmc_sojourn_sf(0.0, lam, mu, c) == pytest.approx(1.0, abs=1e-15)
    assert mmc_sojourn_sf(-1.0, lam, mu, c) == 1.0
    assert mmc_wait_sf(0.0, lam, mu, c) == pytest.approx(erlang_c(lam, mu, c), rel=1e-14)
    mean = integrate.quad(lambda t: mmc_sojourn_sf(t, lam, mu, c), 0, np.inf)[0]
    assert mean == pytest.approx(mmc_mean_sojourn(lam, mu, c), rel=1e-8)
    wait = integrate.quad(lambda t: mmc_wait_sf(t, lam, mu, c), 0, np.inf)[0]
    assert wait == pytest.approx(mmc_mean_wait(lam, mu, c), rel=1e-8)
    t = np.linspace(0, 20 / mu, 400)
    s = mmc_sojourn_sf(t, lam, mu, c)
    assert np.all(np.diff(s) <= 0) and np.all(s >= 0)
    # The sojourn exceeds the wait and the service time, each on its own.
    assert np.all(s >= mmc_wait_sf(t, lam, mu, c) - 1e-15)
    assert np.all(s >= np.exp(-mu * t) - 1e-15)


def test_mmc_sf_keeps_the_shape_of_t():
    t = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert mmc_sojourn_sf(t, 1.6, 1.0, 2).shape == (2, 2)
    assert isinstance(mmc_sojourn_sf(1.0, 1.6, 1.0, 2), float)


def test_mmc_mean_wait_grows_with_load():
    waits = [mmc_mean_wait(lam, 1.0, 4) for lam in np.linspace(0.2, 3.9, 30)]
    assert np.all(np.diff(waits) > 0)


# --- M/G/1 (Pollaczek-Khinchine), M/D/1, M^X/G/1 -------------------------------


@pytest.mark.parametrize("lam,mu", [(0.5, 1.0), (0.9, 1.0), (3.0, 4.0)])
def test_pk_with_exponential_service_is_mm1(lam, mu):
    assert mg1_mean_wait(lam, 1 / mu, 2 / mu**2) == pytest.approx(mmc_mean_wait(lam, mu, 1), rel=1e-13)


def test_md1_published_and_half_of_mm1():
    # M/D/1, rho = 0.5, d = 1: W = rho d / (2 (1 - rho)) = 0.5.
    assert md1_mean_wait(0.5, 1.0) == pytest.approx(0.5, rel=1e-14)
    for rho in (0.2, 0.7, 0.95):
        assert md1_mean_wait(rho, 1.0) == pytest.approx(mmc_mean_wait(rho, 1.0, 1) / 2, rel=1e-13)


def test_pk_gamma_service():
    # Gamma service, mean 1, cv 0.5: E[S^2] = 1.25; rho = 0.8 gives 0.8 * 1.25 / 0.4 = 2.5.
    assert mg1_mean_wait(0.8, 1.0, 1.25) == pytest.approx(2.5, rel=1e-14)


def test_batch_of_one_is_pk():
    assert mxg1_mean_wait(0.7, 1.0, 1.0, 1.0, 1.25) == pytest.approx(mg1_mean_wait(0.7, 1.0, 1.25), rel=1e-14)


@pytest.mark.parametrize("lam,m,mu", [(0.2, 3.0, 1.0), (0.1, 5.0, 1.0), (0.05, 1.0, 0.5)])
def test_mxm1_geometric_closed_form_and_littles_law(lam, m, mu):
    rho = lam * m / mu
    w = mxm1_geometric_mean_wait(lam, m, mu)
    assert w == pytest.approx((rho + m - 1) / (mu * (1 - rho)), rel=1e-13)
    # Bulk-input M^X/M/1 (Gross et al., ch. 3): L = rho (E[X] + E[X^2]) / (2 E[X] (1 - rho)) = rho m / (1 - rho).
    L = lam * m * (w + 1 / mu)
    assert L == pytest.approx(rho * m / (1 - rho), rel=1e-13)


def test_mxg1_fixed_batches_by_hand():
    # Batches of exactly 4 at rate 0.1, service exactly 1 (rho = 0.4): the batch waits as M/D/1 with
    # service 4 (P-K: 0.1 * 16 / (2 * 0.6)), and a random member waits 1.5 more on average.
    w = mxg1_mean_wait(0.1, 4.0, 16.0, 1.0, 1.0)
    assert w == pytest.approx(0.1 * 16 / 1.2 + 1.5, rel=1e-14)


# --- M/D/c (Crommelin) -----------------------------------------------------------


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99])
def test_mdc_one_server_is_md1(rho):
    assert mdc_mean_wait(rho / 2.0, 2.0, 1) == pytest.approx(md1_mean_wait(rho / 2.0, 2.0), rel=1e-12)


@pytest.mark.parametrize("c", [2, 3, 5, 10, 20])
@pytest.mark.parametrize("rho", [0.3, 0.7, 0.95])
def test_mdc_roots_agree_with_the_direct_chain_solve(c, rho):
    # Two independent routes: Crommelin's root formula, and solving the embedded chain.
    lam, d = rho * c / 3.0, 3.0
    pi = mdc_number_distribution(lam, d, c)
    n = np.arange(pi.size)
    assert pi.sum() == pytest.approx(1.0, abs=1e-14)
    # Every customer is served: mean busy servers = offered load a = lam d.
    assert np.sum(np.minimum(n, c) * pi) == pytest.approx(lam * d, rel=1e-10)
    lq = np.sum(np.maximum(n - c, 0) * pi)
    assert mdc_mean_wait(lam, d, c) == pytest.approx(lq / lam, rel=1e-8)


@pytest.mark.parametrize("c,rho", [(1, 0.8), (2, 0.8), (4, 0.9), (8, 0.6)])
def test_mdc_wait_sf_integrates_to_the_mean(c, rho):
    lam, d = rho * c, 1.0
    f = lambda t: mdc_wait_sf(t, lam, d, c)  # noqa: E731
    mean = integrate.quad(f, 0, 400, limit=1000, points=list(range(1, 100)))[0]
    assert mean == pytest.approx(mdc_mean_wait(lam, d, c), rel=1e-7)
    # P(W > 0) = P(an arrival finds all c servers busy) = P(N >= c) (PASTA).
    pi = mdc_number_distribution(lam, d, c)
    assert f(0.0) == pytest.approx(pi[c:].sum(), rel=1e-12)
    t = np.linspace(0, 10, 301)
    s = f(t)
    assert np.all(np.diff(s) <= 1e-15) and s[-1] >= 0
    assert f(-0.5) == 1.0


def test_md1_wait_sf_by_hand_below_one_service_time():
    # M/D/1, t < d: P(W <= t) = (1 - rho) e^{lam t} (Erlang's formula, first piece).
    lam, d = 0.6, 1.0
    t = np.array([0.0, 0.25, 0.5, 0.9])
    np.testing.assert_allclose(mdc_wait_sf(t, lam, d, 1), 1 - (1 - lam * d) * np.exp(lam * t), rtol=1e-10)


def test_mdc_sits_between_mm_c_halved_and_mm_c():
    # A sanity bracket for these loads, not a theorem: deterministic service halves the M/M/1 wait
    # and a bit less than halves M/M/c (Cosmetatos 1975 corrects the half upwards).
    for c in (2, 4, 8):
        for rho in (0.5, 0.8, 0.95):
            w, w_m = mdc_mean_wait(rho * c, 1.0, c), mmc_mean_wait(rho * c, 1.0, c)
            assert 0.5 * w_m < w < w_m


def test_mdc_light_load_many_servers_is_tiny_not_negative():
    w = mdc_mean_wait(15.0, 1.0, 50)
    assert 0.0 <= w < 1e-10


# --- argument checks -----------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: erlang_c(2.4, 1.0, 2), r"rho = 1\.2 >= 1: the queue is unstable"),
        (lambda: mmc_mean_wait(-1.0, 1.0, 2), r"lam = -1\.0: must be a finite number > 0"),
        (lambda: mmc_mean_sojourn(1.0, 0.0, 2), r"mu = 0\.0"),
        (lambda: mmc_sojourn_sf(1.0, 1.0, 1.0, 0), r"c = 0: must be an integer >= 1"),
        (lambda: mmc_wait_sf(1.0, 1.0, 1.0, 2.5), r"c = 2\.5"),
        (lambda: mmc_wait_sf(float("nan"), 1.0, 2.0, 1), r"t: must not be NaN"),
        (lambda: mg1_mean_wait(1.0, 1.0, 2.0), r"rho = 1 >= 1"),
        (lambda: mg1_mean_wait(0.5, 1.0, 0.5), r"service time second moment = 0\.5: must be finite and >= mean\^2"),
        (lambda: md1_mean_wait(0.5, float("inf")), r"d = inf"),
        (lambda: mxg1_mean_wait(0.1, 0.5, 0.25, 1.0, 1.0), r"batch size mean = 0\.5: must be >= 1"),
        (lambda: mxm1_geometric_mean_wait(0.3, 4.0, 1.0), r"rho = 1\.2 >= 1"),
        (lambda: mxm1_geometric_mean_wait(0.1, 0.5, 1.0), r"mean_batch = 0\.5"),
        (lambda: mdc_mean_wait(3.0, 1.0, 3), r"rho = 1 >= 1"),
        (lambda: mdc_number_distribution(1.0, 1.0, 2, tail=0.5), r"tail = 0\.5"),
        (lambda: mdc_number_distribution(0.99999 * 2, 1.0, 2), r"more than 4000 for a direct solve"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_range(call, match):
    with pytest.raises(ValueError, match=match):
        call()
