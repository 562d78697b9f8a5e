"""Tests of sojourn.distributions.

Exact quantities are checked against scipy.stats laws built here from the
documented parametrisations (an independent reference), and sampling against the
exact values through confidence intervals at a fixed seed: each statistical check
has a two-sided false-alarm rate of about 7e-6 (Z = 4.5).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError
from scipy import special, stats

from sojourn.distributions import (
    Distribution,
    DistributionSpec,
    Empirical,
    Exponential,
    Fixed,
    Gamma,
    Geometric,
    Lognormal,
    Pareto,
    Uniform,
    parse_distribution,
)

N = 200_000
Z = 4.5
SEED = 12345
#: Agreement of two exact computations (closed form vs scipy's numerical
#: integration, whose default relative tolerance is 1.5e-8): not a statistical check.
NUMERIC_RTOL = 1e-7

EMPIRICAL_VALUES = [0.0, 1.5, 3.0, 3.0, 10.0]

# (distribution, reference): the reference is a scipy law of the unclipped X built
# from the documented parametrisation, or an array of equally likely values.
CASES = [
    pytest.param(Fixed(value=3.5), np.array([3.5]), id="fixed"),
    pytest.param(Fixed(value=4, max=4), np.array([4.0]), id="fixed-max"),
    pytest.param(Exponential(mean=10), stats.expon(scale=10), id="exponential"),
    pytest.param(Exponential(mean=10, max=15.5), stats.expon(scale=10), id="exponential-max"),
    pytest.param(Geometric(mean=4), stats.geom(0.25), id="geometric"),
    pytest.param(Geometric(mean=4, max=6.5), stats.geom(0.25), id="geometric-max"),
    pytest.param(Lognormal(median=2000, sigma=1), stats.lognorm(s=1, scale=2000), id="lognormal"),
    pytest.param(
        Lognormal(median=2000, sigma=1, max=8000),
        stats.lognorm(s=1, scale=2000),
        id="lognormal-max",
    ),
    pytest.param(Lognormal(median=5, sigma=0), np.array([5.0]), id="lognormal-sigma0"),
    pytest.param(Gamma(mean=100, cv=0.5), stats.gamma(a=4, scale=25), id="gamma"),
    pytest.param(Gamma(mean=100, cv=2, max=300), stats.gamma(a=0.25, scale=400), id="gamma-max"),
    pytest.param(Pareto(shape=4.5, scale=10), stats.pareto(b=4.5, scale=10), id="pareto"),
    pytest.param(Pareto(shape=1.5, scale=10), stats.pareto(b=1.5, scale=10), id="pareto-infvar"),
    pytest.param(
        Pareto(shape=1.5, scale=10, max=1000), stats.pareto(b=1.5, scale=10), id="pareto-max"
    ),
    pytest.param(Pareto(shape=0.8, scale=1), stats.pareto(b=0.8, scale=1), id="pareto-infmean"),
    pytest.param(
        Pareto(shape=0.8, scale=1, max=50), stats.pareto(b=0.8, scale=1), id="pareto-infmean-max"
    ),
    pytest.param(Uniform(low=0, high=10), stats.uniform(loc=0, scale=10), id="uniform"),
    pytest.param(Uniform(low=2, high=10, max=7), stats.uniform(loc=2, scale=8), id="uniform-max"),
    pytest.param(Empirical(values=EMPIRICAL_VALUES), np.array(EMPIRICAL_VALUES), id="empirical"),
    pytest.param(
        Empirical(values=EMPIRICAL_VALUES, max=5), np.array(EMPIRICAL_VALUES), id="empirical-max"
    ),
]


def clip(d: Distribution) -> float:
    return math.inf if d.max is None else d.max


def exact_moment(ref, k: int, m: float = math.inf) -> float:
    """E[min(X, m)^k] from the reference law, independently of the module."""
    if isinstance(ref, np.ndarray):
        return float(np.mean(np.minimum(ref, m) ** k))
    if math.isinf(m):
        if ref.dist.name == "pareto" and k >= ref.kwds["b"]:
            return math.inf  # scipy integrates this divergent moment numerically
        return float(ref.moment(k))
    # scipy's discrete expect rounds a fractional ub up: sum over the integers <= m.
    ub = math.floor(m) if isinstance(ref.dist, stats.rv_discrete) else m
    return float(ref.expect(lambda x: x**k, ub=ub)) + m**k * float(ref.sf(m))


def reference_sf(ref, x: np.ndarray, m: float) -> np.ndarray:
    if isinstance(ref, np.ndarray):
        raw = np.mean(ref[None, :] > x[:, None], axis=1)
    else:
        raw = ref.sf(x)
    return np.where(x >= m, 0.0, raw)


def reference_ppf(ref, q: np.ndarray, m: float) -> np.ndarray:
    if isinstance(ref, np.ndarray):
        raw = np.quantile(ref, q, method="inverted_cdf")
    else:
        raw = ref.ppf(q)
    return np.minimum(raw, m)


def exact_central_moments(d: Distribution, ref) -> tuple[float, float, float]:
    """(mean, variance, fourth central moment) of the clipped variable, from the reference."""
    m1, m2, m3, m4 = (exact_moment(ref, k, clip(d)) for k in (1, 2, 3, 4))
    if math.isinf(m4):
        return m1, m2 - m1 * m1, math.inf
    mu4 = m4 - 4 * m3 * m1 + 6 * m2 * m1**2 - 3 * m1**4
    return m1, m2 - m1 * m1, mu4


# --- Exact quantities. ---


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_mean_and_var_match_reference(d: Distribution, ref) -> None:
    mean, var = exact_moment(ref, 1, clip(d)), exact_moment(ref, 2, clip(d))
    var = var - mean * mean if math.isfinite(var) else math.inf
    assert d.mean == pytest.approx(mean, rel=NUMERIC_RTOL)
    if math.isinf(var):
        assert d.var == math.inf
    else:
        assert d.var == pytest.approx(var, rel=NUMERIC_RTOL, abs=NUMERIC_RTOL * mean**2)
    assert isinstance(d.mean, float) and isinstance(d.var, float)


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_sf_cdf_ppf_match_reference(d: Distribution, ref) -> None:
    q = np.array([0.0, 0.01, 0.1, 0.3, 0.5, 0.9, 0.99, 1.0])
    np.testing.assert_allclose(d.ppf(q), reference_ppf(ref, q, clip(d)), rtol=1e-12)
    x = np.concatenate([[-1.0, 0.0], reference_ppf(ref, q[1:-1], clip(d)), [clip(d) * 1.5]])
    x = x[np.isfinite(x)]
    np.testing.assert_allclose(d.sf(x), reference_sf(ref, x, clip(d)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d.cdf(x) + d.sf(x), 1.0, rtol=1e-12)
    assert np.isnan(d.ppf(1.5))


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_int_mean_brackets(d: Distribution, ref) -> None:
    # ceil(Y) - Y lies in [0, 1), so E[ceil(Y)] lies in [E[Y], E[Y] + 1).
    if math.isinf(d.mean):
        assert d.int_mean == math.inf
    else:
        assert d.mean <= d.int_mean < d.mean + 1


@pytest.mark.parametrize(("d", "ref"), [c for c in CASES if c.values[0].max is not None])
def test_int_mean_of_clipped_is_a_finite_sum(d: Distribution, ref) -> None:
    # With a clip, E[ceil(Y)] = sum_{k < max} P(X > k) exactly: a finite reference sum.
    k = np.arange(math.ceil(d.max), dtype=float)
    assert d.int_mean == pytest.approx(reference_sf(ref, k, d.max).sum(), rel=1e-12)


def test_int_mean_closed_forms() -> None:
    assert Geometric(mean=4).int_mean == 4.0
    assert Fixed(value=3).int_mean == 3.0
    assert Fixed(value=2.2).int_mean == 3.0
    k = np.arange(2000)
    assert Exponential(mean=10).int_mean == pytest.approx(np.exp(-k / 10).sum(), rel=1e-12)


def test_int_mean_unclipped_against_exact_sums() -> None:
    # E[ceil(X)] = sum_{k >= 0} P(X > k), summed here by brute force or in closed form.
    k = np.arange(100_000, dtype=float)
    g = Gamma(mean=100, cv=0.5)
    assert g.int_mean == pytest.approx(stats.gamma(a=4, scale=25).sf(k).sum(), rel=1e-12)
    u = Uniform(low=0.5, high=10.25)
    assert u.int_mean == pytest.approx(stats.uniform(0.5, 9.75).sf(k).sum(), rel=1e-12)
    for shape in (4.5, 1.5):
        # P(X > k) = 1 for k = 0..10, then (10/k)^shape: a Hurwitz zeta tail.
        exact = 11 + 10**shape * special.zeta(shape, 11)
        d = Pareto(shape=shape, scale=10)
        # The module documents its error as at most P(X > 2^22) / 2.
        assert abs(d.int_mean - exact) <= 0.5 * d.sf(2.0**22) + 1e-12 * exact


def test_infinite_moments() -> None:
    assert Pareto(shape=0.8, scale=1).mean == math.inf
    assert Pareto(shape=1.5, scale=10).var == math.inf
    assert math.isfinite(Pareto(shape=1.5, scale=10).mean)
    assert math.isfinite(Pareto(shape=0.8, scale=1, max=50).var)


def test_pareto_is_type_one_not_lomax() -> None:
    d = Pareto(shape=2, scale=3)
    assert d.sf(6.0) == pytest.approx(0.25, rel=1e-15)
    assert d.sf(2.9) == 1.0
    assert d.sample(np.random.default_rng(SEED), N).min() >= 3.0


# --- Sampling against the exact values. ---


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_sample_mean_within_ci(d: Distribution, ref) -> None:
    if not math.isfinite(d.var):
        pytest.skip("no CLT for the mean without a finite variance; see the sf test")
    x = d.sample(np.random.default_rng(SEED), N)
    assert abs(x.mean() - d.mean) <= Z * math.sqrt(d.var / N)


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_sample_var_within_ci(d: Distribution, ref) -> None:
    # s^2 is asymptotically normal with variance (mu4 - sigma^4) / n when mu4 is finite.
    _, var, mu4 = exact_central_moments(d, ref)
    if not math.isfinite(mu4):
        pytest.skip("no finite fourth moment")
    x = d.sample(np.random.default_rng(SEED), N)
    assert abs(x.var() - d.var) <= Z * math.sqrt(max(mu4 - var**2, 0.0) / N)


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_sampled_sf_within_binomial_ci(d: Distribution, ref) -> None:
    # Works for every case, infinite moments included.
    x = d.sample(np.random.default_rng(SEED), N)
    for point in np.unique(d.ppf([0.1, 0.5, 0.9, 0.99])):
        p = float(d.sf(point))
        assert abs(np.mean(x > point) - p) <= Z * math.sqrt(p * (1 - p) / N)


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_int_mean_matches_sample_int(d: Distribution, ref) -> None:
    if not math.isfinite(d.var):
        pytest.skip("no finite variance")
    n = d.sample_int(np.random.default_rng(SEED), N)
    # ceil(Y) = Y + D with D in [0, 1), so sd(ceil(Y)) <= sd(Y) + 1/2.
    assert abs(n.mean() - d.int_mean) <= Z * (math.sqrt(d.var) + 0.5) / math.sqrt(N)


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_sample_types_and_clip(d: Distribution, ref) -> None:
    x = d.sample(np.random.default_rng(SEED), 1000)
    n = d.sample_int(np.random.default_rng(SEED), 1000)
    assert x.dtype == np.float64 and x.shape == (1000,)
    assert n.dtype == np.int64
    np.testing.assert_array_equal(n, np.ceil(x))  # the ceil rule
    if d.max is not None:
        assert x.max() <= d.max
        assert d.sf(d.max) == 0.0 and d.cdf(d.max) == 1.0 and d.ppf(1.0) == d.max


def test_clip_is_reached_and_lowers_the_mean() -> None:
    d = Lognormal(median=2000, sigma=1, max=8000)
    x = d.sample(np.random.default_rng(SEED), N)
    assert np.mean(x == 8000) > 0
    assert d.mean < Lognormal(median=2000, sigma=1).mean


def test_geometric_draws_are_integers_from_one() -> None:
    d = Geometric(mean=4)
    x = d.sample(np.random.default_rng(SEED), N)
    assert x.min() >= 1
    np.testing.assert_array_equal(x, np.round(x))
    np.testing.assert_array_equal(d.sample_int(np.random.default_rng(SEED), N), x)


def test_zero_draws_stay_zero() -> None:
    n = Empirical(values=[0, 2]).sample_int(np.random.default_rng(SEED), 1000)
    assert set(np.unique(n)) == {0, 2}


# --- Reproducibility and the caller's generator. ---


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_same_seed_same_draws(d: Distribution, ref) -> None:
    a = d.sample(np.random.default_rng(SEED), 1000)
    b = d.sample(np.random.default_rng(SEED), 1000)
    np.testing.assert_array_equal(a, b)
    if d.var > 0:
        assert not np.array_equal(a, d.sample(np.random.default_rng(SEED + 1), 1000))


def test_sampling_leaves_global_numpy_state_alone() -> None:
    np.random.seed(7)
    before = np.random.get_state()
    for param in CASES:
        d = param.values[0]
        d.sample(np.random.default_rng(SEED), 100)
        d.sample_int(np.random.default_rng(SEED), 100)
    after = np.random.get_state()
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])


def test_sample_rejects_anything_but_a_generator() -> None:
    with pytest.raises(TypeError, match="Generator"):
        Exponential(mean=1).sample(np.random.RandomState(0), 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Generator"):
        Exponential(mean=1).sample(None, 10)  # type: ignore[arg-type]


# --- Empirical. ---


def write_csv(path: Path) -> list[float]:
    path.parent.mkdir(parents=True, exist_ok=True)
    outputs = [12.0, 250.0, 3.0, 3.0, 800.0, 41.5]
    rows = ["input_tokens,output_tokens"] + [f"{100 + i},{v}" for i, v in enumerate(outputs)]
    path.write_text("\n".join(rows) + "\n")
    return outputs


def test_empirical_inline_draws_stored_values() -> None:
    x = Empirical(values=EMPIRICAL_VALUES).sample(np.random.default_rng(SEED), 1000)
    assert set(np.unique(x)) == set(EMPIRICAL_VALUES)


def test_empirical_csv_relative_to_base_dir(tmp_path: Path) -> None:
    outputs = write_csv(tmp_path / "data" / "lengths.csv")
    table = {"dist": "empirical", "file": "data/lengths.csv", "column": "output_tokens"}
    d = parse_distribution(table, base_dir=tmp_path)
    assert isinstance(d, Empirical)
    assert d.mean == pytest.approx(np.mean(outputs), rel=1e-15)
    assert d.int_mean == pytest.approx(np.mean(np.ceil(outputs)), rel=1e-15)
    (tmp_path / "data" / "lengths.csv").unlink()  # sampling must never read the disk again
    x = d.sample(np.random.default_rng(SEED), 1000)
    assert set(np.unique(x)) == set(outputs)
    assert d.describe() == "empirical(file=data/lengths.csv, column=output_tokens, n=6)"


def test_empirical_csv_default_base_dir_is_cwd(tmp_path: Path, monkeypatch) -> None:
    outputs = write_csv(tmp_path / "lengths.csv")
    monkeypatch.chdir(tmp_path)
    d = parse_distribution({"dist": "empirical", "file": "lengths.csv", "column": "output_tokens"})
    assert d.mean == pytest.approx(np.mean(outputs), rel=1e-15)


def test_empirical_csv_through_a_parent_model(tmp_path: Path) -> None:
    class Workload(BaseModel):
        output_tokens: DistributionSpec

    outputs = write_csv(tmp_path / "lengths.csv")
    w = Workload.model_validate(
        {"output_tokens": {"dist": "empirical", "file": "lengths.csv", "column": "output_tokens"}},
        context={"base_dir": str(tmp_path)},
    )
    assert w.output_tokens.mean == pytest.approx(np.mean(outputs), rel=1e-15)


@pytest.mark.parametrize(
    ("content", "column", "words"),
    [
        ("a,b\n1,2\n", "c", ["no column 'c'", "'a'", "'b'"]),
        ("a\n1\nx\n", "a", ["line 3", "'x'"]),
        ("a\n1\n-2\n", "a", ["line 3", ">= 0"]),
        ("a\n1\nnan\n", "a", ["line 3", "finite"]),
        ("a\n", "a", ["no data rows"]),
    ],
)
def test_empirical_csv_errors_name_the_problem(
    tmp_path: Path, content: str, column: str, words: list[str]
) -> None:
    (tmp_path / "f.csv").write_text(content)
    with pytest.raises(ValidationError) as err:
        parse_distribution({"dist": "empirical", "file": "f.csv", "column": column}, tmp_path)
    for word in words:
        assert word in str(err.value)


def test_empirical_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot be read"):
        parse_distribution({"dist": "empirical", "file": "absent.csv", "column": "a"}, tmp_path)


# --- Parsing. ---


def test_parse_dict_through_the_union() -> None:
    d = parse_distribution({"dist": "lognormal", "median": 2000, "sigma": 1.0})
    assert d == Lognormal(median=2000, sigma=1)
    assert d.mean == pytest.approx(2000 * math.exp(0.5), rel=1e-15)


def test_parse_toml_inline_table() -> None:
    doc = tomllib.loads(
        'batch = { dist = "geometric", mean = 8 }\n'
        'tokens = { dist = "gamma", mean = 500, cv = 0.5, max = 2048 }\n'
    )
    assert parse_distribution(doc["batch"]) == Geometric(mean=8)
    tokens = parse_distribution(doc["tokens"])
    assert isinstance(tokens, Gamma) and tokens.max == 2048


@pytest.mark.parametrize(("d", "ref"), CASES)
def test_dump_parses_back(d: Distribution, ref) -> None:
    assert parse_distribution(d.model_dump()) == d
    assert parse_distribution(d.model_dump(mode="json")) == d


def test_describe() -> None:
    assert Lognormal(median=2000, sigma=1).describe() == "lognormal(median=2000, sigma=1)"
    assert Exponential(mean=2.5, max=10).describe() == "exponential(mean=2.5, max=10)"
    assert Empirical(values=[1, 2]).describe() == "empirical(values=[1, 2])"


def test_heavy_tails() -> None:
    assert Lognormal(median=1, sigma=1).is_heavy_tailed
    assert Pareto(shape=2, scale=1).is_heavy_tailed
    # A clip bounds the tail, and sigma = 0 is a constant: no subexponential asymptotics.
    assert not Lognormal(median=1, sigma=1, max=100).is_heavy_tailed
    assert not Pareto(shape=2, scale=1, max=100).is_heavy_tailed
    assert not Lognormal(median=1, sigma=0).is_heavy_tailed
    for d in (Fixed(value=1), Exponential(mean=1), Geometric(mean=2), Gamma(mean=1, cv=3)):
        assert not d.is_heavy_tailed
    assert not Uniform(low=0, high=1).is_heavy_tailed
    assert not Empirical(values=[1e9]).is_heavy_tailed


# --- Validation errors name the field. ---


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"dist": "lognormal", "median": 1, "sigma": -1}, ["sigma", "greater than or equal to 0"]),
        ({"dist": "lognormal", "median": 0, "sigma": 1}, ["median", "greater than 0"]),
        ({"dist": "geometric", "mean": 0.5}, ["mean", "greater than or equal to 1"]),
        ({"dist": "gamma", "mean": 1, "cv": 0}, ["cv", "greater than 0"]),
        ({"dist": "fixed", "value": math.inf}, ["value", "finite"]),
        ({"dist": "exponential", "mean": 1, "max": 0}, ["max", "greater than 0"]),
        ({"dist": "fixed", "value": 1, "scale": 2}, ["scale", "Extra inputs are not permitted"]),
        ({"dist": "uniform", "low": 5, "high": 5}, ["high", "low"]),
        ({"dist": "uniform", "low": -1, "high": 5}, ["low", "greater than or equal to 0"]),
        ({"dist": "pareto", "shape": 1.5, "scale": 10, "max": 10}, ["max", "scale"]),
        ({"dist": "pareto", "shape": 0, "scale": 10}, ["shape", "greater than 0"]),
        ({"dist": "empirical"}, ["values", "file"]),
        ({"dist": "empirical", "values": [1], "file": "x.csv", "column": "a"}, ["values", "file"]),
        ({"dist": "empirical", "file": "x.csv"}, ["file", "column"]),
        ({"dist": "empirical", "values": [1], "column": "a"}, ["column", "values"]),
        ({"dist": "empirical", "values": []}, ["values", "at least 1"]),
        ({"dist": "empirical", "values": [1, -2]}, ["values.1", "greater than or equal to 0"]),
        ({"dist": "empirical", "values": [1, math.nan]}, ["values.1", "finite"]),
    ],
)
def test_validation_errors_name_the_field(table: dict, words: list[str]) -> None:
    with pytest.raises(ValidationError) as err:
        parse_distribution(table)
    for word in words:
        assert word in str(err.value)


def test_unknown_dist_lists_the_allowed_values() -> None:
    with pytest.raises(ValidationError) as err:
        parse_distribution({"dist": "weibull", "shape": 2})
    tags = ["fixed", "exponential", "geometric", "lognormal"]
    tags += ["gamma", "pareto", "uniform", "empirical"]
    for tag in tags:
        assert f"'{tag}'" in str(err.value)


def test_models_are_frozen() -> None:
    d = Lognormal(median=2000, sigma=1)
    with pytest.raises(ValidationError):
        d.sigma = 2  # type: ignore[misc]


def test_every_registered_distribution_is_tested_here():
    # The registry is read off the DistributionSpec union: a family added there fails here
    # until CASES holds it (and its scipy reference).
    from sojourn.distributions import DISTRIBUTIONS

    assert {type(c.values[0]).model_fields["dist"].default for c in CASES} == set(DISTRIBUTIONS)
    for tag, cls in DISTRIBUTIONS.items():
        assert cls.model_fields["dist"].default == tag and issubclass(cls, Distribution)


def test_a_scenario_error_names_the_field_as_written_for_every_family():
    # pydantic puts the union's tag in an error's path (workload.input_tokens.lognormal.bogus);
    # the scenario drops every registered tag, so the user reads the key they wrote.
    from sojourn import ConfigError
    from sojourn.distributions import DISTRIBUTIONS
    from sojourn.scenario import scenario_from_dict

    for tag in DISTRIBUTIONS:
        wl = {"batch_rate_per_hour": 1.0, "input_tokens": {"dist": tag, "bogus": 1},
              "output_tokens": {"dist": "fixed", "value": 1}}
        with pytest.raises(ConfigError) as err:
            scenario_from_dict({"workload": wl})
        text = str(err.value)  # with the family's required keys missing too
        assert "workload.input_tokens.bogus: unknown key" in text and f".{tag}." not in text, (tag, text)
