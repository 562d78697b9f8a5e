"""Workload distributions (batch sizes, token counts, service times), parsed from config.

Each distribution is a frozen pydantic model tagged by ``dist``, so a TOML inline
table such as ``{ dist = "lognormal", median = 2000, sigma = 1.0 }`` parses through
``DistributionSpec``. Like a frozen ``scipy.stats`` distribution it has exact
``mean``, ``var``, ``sf``, ``cdf`` and ``ppf``, and ``sample(rng, size)`` is
vectorised and draws only from the caller's ``numpy.random.Generator``.

Clipping: ``max`` is an explicit clip written by the user, a draw is
``min(x, max)``. Nothing is ever clipped silently, and when ``max`` is set every
exact quantity above (and ``int_mean``) is that of the clipped variable.

Integer rule: token counts and batch sizes come from ``sample_int``, which rounds
**up**, x -> ceil(x). Every positive draw so gives at least 1 token or request,
and integer-valued distributions (integer ``fixed``, ``geometric``, integer
empirical data) are unchanged. A draw of exactly 0 (possible only with
``uniform`` low = 0 or an empirical 0) stays 0: the caller decides what it means.
``int_mean`` is the exact E[ceil(X)], the mean of what ``sample_int`` returns.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)
from scipy import special, stats

from sojourn._cache import register

__all__ = [
    "DISTRIBUTIONS",
    "Distribution",
    "DistributionSpec",
    "Empirical",
    "Exponential",
    "Fixed",
    "Gamma",
    "Geometric",
    "Lognormal",
    "Pareto",
    "Uniform",
    "parse_distribution",
    "read_csv_column",
]

#: The generic ``int_mean`` sums P(X > k) over at most this many integers k; the
#: rest of the sum is bounded, and the error is at most P(X > K) / 2 (see below).
_INT_MEAN_TERMS = 2**22
#: ...and stops earlier, where all but this much probability lies below k.
_INT_MEAN_TAIL = 1e-13


@functools.lru_cache(maxsize=1024)
def _cached_law(dist: Distribution) -> Any:
    return dist._frozen()


register("distribution laws", _cached_law.cache_clear)


class Distribution(BaseModel):
    """A non-negative random quantity, optionally clipped at ``max``, with exact moments."""

    # serialize_by_alias: families whose TOML key is ``mean`` store it as
    # ``unclipped_mean`` (``mean`` is the property below), and a dump must parse back.
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    #: The discriminator; each family narrows it to its own Literal.
    dist: str
    max: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    # --- What each family provides, all for the unclipped variable X. ---

    def _frozen(self) -> Any:
        """X as an object with the sf/cdf/ppf interface of a frozen scipy.stats distribution."""
        raise NotImplementedError

    def _frozen_once(self) -> Any:
        """``_frozen()``, built once per distinct distribution.

        Freezing a scipy.stats law costs ~0.5 ms (it builds docstrings), more than
        the fast tier's whole recursion; the tail analytics ask for sf/cdf hundreds
        of times per call. Frozen pydantic models are hashable by value, so equal
        distributions share one law.
        """
        return _cached_law(self)

    def _draw(self, rng: np.random.Generator, size: int) -> NDArray[Any]:
        """``size`` draws of X from ``rng``."""
        raise NotImplementedError

    def _raw_mean(self) -> float:
        raise NotImplementedError

    def _raw_var(self) -> float:
        raise NotImplementedError

    def _partial_moment(self, k: int, m: float) -> float:
        """E[X^k; X <= m], the part of the k-th moment below m (closed form per family)."""
        raise NotImplementedError

    def _limited_moment(self, k: int, m: float) -> float:
        """E[min(X, m)^k]: the k-th moment of X clipped at m."""
        return self._partial_moment(k, m) + m**k * float(self._frozen_once().sf(m))

    def _check_fields(self, context: Mapping[str, Any]) -> None:
        """Cross-field checks (and, for empirical files, loading) of one family."""

    def _params(self) -> list[str]:
        """``name=value`` of the family's parameters, for ``describe``."""
        return [
            f"{field.alias or name}={_fmt(getattr(self, name))}"
            for name, field in type(self).model_fields.items()
            if name not in ("dist", "max") and getattr(self, name) is not None
        ]

    # --- The common interface. ---

    @model_validator(mode="after")
    def _validate(self, info: ValidationInfo) -> Self:
        # One validator for every family, so the family's own checks (which may load
        # data) always run before the check of max, which needs that data.
        self._check_fields(info.context or {})
        if self.max is not None and float(self._frozen_once().cdf(self.max)) == 0.0:
            raise ValueError(
                f"max={_fmt(self.max)} is at or below every value of "
                f"{self.dist}({', '.join(self._params())}): every draw would be clipped to max"
            )
        return self

    @property
    def mean(self) -> float:
        """E[Y], Y = min(X, max); ``math.inf`` where it does not exist."""
        if self.max is None:
            return float(self._raw_mean())
        return float(self._limited_moment(1, self.max))

    @property
    def var(self) -> float:
        """Var[Y], Y = min(X, max); ``math.inf`` where it does not exist."""
        if self.max is None:
            return float(self._raw_var())
        m1 = self.mean
        return max(float(self._limited_moment(2, self.max)) - m1 * m1, 0.0)

    @property
    def int_mean(self) -> float:
        """E[ceil(Y)] = sum over k >= 0 of P(Y > k): the mean of ``sample_int``."""
        return _summed_int_mean(self)

    @property
    def is_heavy_tailed(self) -> bool:
        """True for an unclipped subexponential law (tail asymptotics pick their formula by it)."""
        return False

    def sf(self, x: ArrayLike) -> Any:
        """P(Y > x), vectorised; 0 from ``max`` on."""
        x = np.asarray(x, dtype=np.float64)
        out = np.asarray(self._frozen_once().sf(x), dtype=np.float64)
        if self.max is not None:
            out = np.where(x >= self.max, 0.0, out)
        return out[()]

    def cdf(self, x: ArrayLike) -> Any:
        """P(Y <= x), vectorised; 1 from ``max`` on."""
        x = np.asarray(x, dtype=np.float64)
        out = np.asarray(self._frozen_once().cdf(x), dtype=np.float64)
        if self.max is not None:
            out = np.where(x >= self.max, 1.0, out)
        return out[()]

    def ppf(self, q: ArrayLike) -> Any:
        """The q-quantile of Y, vectorised: min(ppf of X, max); nan outside [0, 1]."""
        out = np.asarray(self._frozen_once().ppf(np.asarray(q, dtype=np.float64)), dtype=np.float64)
        if self.max is not None:
            out = np.minimum(out, self.max)  # nan stays nan
        return out[()]

    def sample(self, rng: np.random.Generator, size: int) -> NDArray[np.float64]:
        """``size`` independent draws of Y as float64, from ``rng`` only."""
        if not isinstance(rng, np.random.Generator):
            # Rejecting RandomState/None keeps the global numpy state out of every run.
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        x = np.asarray(self._draw(rng, size), dtype=np.float64)
        if self.max is not None:
            np.minimum(x, self.max, out=x)
        return x

    def sample_int(self, rng: np.random.Generator, size: int) -> NDArray[np.int64]:
        """``size`` draws rounded up to integers (the module's ceil rule), as int64."""
        x = np.ceil(self.sample(rng, size))
        if x.size and not x.max() < 2.0**63:
            raise OverflowError(
                f"{self.describe()} drew {x.max():g}, beyond int64; set max to clip it explicitly"
            )
        return x.astype(np.int64)

    def describe(self) -> str:
        """A short human label, e.g. ``lognormal(median=2000, sigma=1)``."""
        parts = self._params()
        if self.max is not None:
            parts.append(f"max={_fmt(self.max)}")
        return f"{self.dist}({', '.join(parts)})"


@functools.lru_cache(maxsize=256)
def _summed_int_mean(d: Distribution) -> float:
    """E[ceil(Y)] summed over the integers; cached per (hashable, frozen) distribution."""
    mean = d.mean
    if math.isinf(mean):
        return math.inf
    # sum_{k<K} P(Y > k) with K past all but 1e-13 of the mass, the clip, or the cap.
    top = float(d.ppf(1.0 - _INT_MEAN_TAIL))
    terms = min(math.ceil(top), _INT_MEAN_TERMS)
    head = float(np.sum(d.sf(np.arange(terms, dtype=np.float64))))
    beyond = float(d.sf(terms))
    if beyond == 0.0:
        return head
    # The remainder sum_{k>=K} P(Y > k) = E[(ceil(Y) - K)+] lies between
    # E[(Y - K)+] and E[(Y - K)+] + P(Y > K), as ceil(Y) - Y is in [0, 1):
    # take the midpoint, so the error is at most P(Y > K) / 2.
    clip = float(terms) if d.max is None else min(float(terms), d.max)
    excess = max(mean - d._limited_moment(1, clip), 0.0)
    return head + excess + 0.5 * beyond


register("distribution integer means", _summed_int_mean.cache_clear)


class Fixed(Distribution):
    """A constant: every draw is ``value`` (a fixed batch size or prompt length)."""

    dist: Literal["fixed"] = "fixed"
    value: float = Field(gt=0, allow_inf_nan=False)

    def _frozen(self) -> _PointMass:
        return _PointMass(self.value)

    def _draw(self, rng: np.random.Generator, size: int) -> NDArray[Any]:
        return np.full(size, self.value)

    def _raw_mean(self) -> float:
        return self.value

    def _raw_var(self) -> float:
        return 0.0

    def _partial_moment(self, k: int, m: float) -> float:
        return self.value**k if self.value <= m else 0.0

    @property
    def int_mean(self) -> float:
        return float(math.ceil(self.mean))


class Exponential(Distribution):
    """Exponential with the given ``mean``: memoryless gaps (Poisson arrivals) or sizes."""

    dist: Literal["exponential"] = "exponential"
    unclipped_mean: float = Field(alias="mean", gt=0, allow_inf_nan=False)

    def _frozen(self) -> Any:
        return stats.expon(scale=self.unclipped_mean)

    def _draw(self, rng: np.random.Generator, size: int) -> NDArray[Any]:
        return rng.exponential(self.unclipped_mean, size)

    def _raw_mean(self) -> float:
        return self.unclipped_mean

    def _raw_var(self) -> float:
        return self.unclipped_mean**2

    def _partial_moment(self, k: int, m: float) -> float:
        return _gamma_partial_moment(1.0, self.unclipped_mean, k, m)

    @property
    def int_mean(self) -> float:
        # P(Y > k) = exp(-k/mean) for the integers k < max: a geometric series.
        ratio = -math.expm1(-1.0 / self.unclipped_mean)
        if self.max is None:
            return 1.0 / ratio
        return -math.expm1(-math.ceil(self.max) / self.unclipped_mean) / ratio


class Geometric(Distribution):
    """Integers 1, 2, ... with P(k) = p(1-p)^(k-1), p = 1/``mean``: memoryless batch sizes."""

    dist: Literal["geometric"] = "geometric"
    unclipped_mean: float = Field(alias="mean", ge=1, allow_inf_nan=False)

    @property
    def _p(self) -> float:
        return 1.0 / self.unclipped_mean

    def _frozen(self) -> Any:
        # scipy's geom(1) works but warns (log1p(-1)); mean = 1 is the constant 1.
        return _PointMass(1.0) if self._p == 1.0 else stats.geom(self._p)

    def _draw(self, rng: np.random.Generator, size: int) -> NDArray[Any]:
        return rng.geometric(self._p, size)

    def _raw_mean(self) -> float:
        return self.unclipped_mean

    def _raw_var(self) -> float:
        return (1.0 - self._p) / self._p**2

    def _survivals(self, n: int) -> tuple[float, float]:
        """(P(X > n), P(X <= n)) = (q^n, 1 - q^n), the second without cancellation."""
        if self._p == 1.0:
            return (1.0, 0.0) if n <= 0 else (0.0, 1.0)
        log_q = math.log1p(-self._p)
        return math.exp(n * log_q), -math.expm1(n * log_q)

    def _limited_moment(self, k: int, m: float) -> float:
        # X is an integer, so min(X, m) depends on n = floor(m), and given X > n,
        # X = n + X' with X' geometric again (memorylessness): both moments close.
        p, n = self._p, math.floor(m)
        above, below = self._survivals(n)
        if k == 1:
            return below / p + (m - n) * above
        if k == 2:
            return (2.0 - p) / p**2 * below - 2.0 * n / p * above + (m * m - n * n) * above
        raise NotImplementedError("geometric clipped moments are implemented for k = 1, 2")

    @property
    def int_mean(self) -> float:
        # X is an integer, so ceil(min(X, max)) = min(X, ceil(max)).
        if self.max is None:
            return self.unclipped_mean
        return self._survivals(math.ceil(self.max))[1] / self._p


class Lognormal(Distribution):
    """exp(N(ln ``median``, ``sigma``^2)): the usual fit of prompt and output lengths."""

    dist: Literal["lognormal"] = "lognormal"
    median: float = Field(gt=0, allow_inf_nan=False)
    sigma: float = Field(ge=0, allow_inf_nan=False)

    def _frozen(self) -> Any:
        # scipy's lognorm needs s > 0; sigma = 0 is the point mass at the median.
        if self.sigma == 0.0:
            return _PointMass(self.median)
        return stats.lognorm(s=self.sigma, scale=self.median)

    def _draw(self, rng: np.random.Generator, size: int) -> NDArray[Any]:
        if self.sigma == 0.0:
            return np.full(size, self.median)
        return rng.lognormal(math.log(self.median), self.sigma, size)

    def _raw_mean(self) -> float:
        return self.median * _exp(self.sigma**2 / 2.0)

    def _raw_var(self) -> float:
        s2 = self.sigma**2
        return self.median**2 * math.expm1(s2) * _exp(s2) if s2 < 700.0 else math.inf

    def _partial_moment(self, k: int, m: float) -> float:
        if self.sigma == 0.0:
            return self.median**k if self.median <= m else 0.0
        if m <= 0.0:
            return 0.0
        # E[X^k; X <= m] = exp(k mu + k^2 s^2 / 2) Phi((ln m - mu - k s^2) / s), in log
        # space so that a huge sigma gives a finite clipped moment, not inf * 0.
        mu, s = math.log(self.median), self.sigma
        z = (math.log(m) - mu - k * s * s) / s
        return _exp(k * mu + (k * s) ** 2 / 2.0 + float(special.log_ndtr(z)))

    @property
    def is_heavy_tailed(self) -> bool:
        return self.max is None and self.sigma > 0.0


class Gamma(Distribution):
    """Gamma with the given ``mean`` and coefficient of variation ``cv`` (shape 1/cv^2)."""

    dist: Literal["gamma"] = "gamma"
    unclipped_mean: float = Field(alias="mean", gt=0, allow_inf_nan=False)
    cv: float = Field(gt=0, allow_inf_nan=False)

    @property
    def _shape(self) -> float:
        return 1.0 / self.cv**2

    @property
    def _scale(self) -> float:
        return self.unclipped_mean * self.cv**2

    def _frozen(self) -> Any:
        return stats.gamma(a=self._shape, scale=self._scale)

    def _draw(self, rng: np.random.Generator, size: int) -> NDArray[Any]:
        return rng.gamma(self._shape, self._scale, size)

    def _raw_mean(self) -> float:
        return self.unclipped_mean

    def _raw_var(self) -> float:
        return (self.unclipped_mean * self.cv) ** 2

    def _partial_moment(self, k: int, m: float) -> float:
        return _gamma_partial_moment(self._shape, self._scale, k, m)


class Pareto(Distribution):
    """Classical Pareto (type I, not Lomax): sf(x) = (``scale``/x)^``shape`` for x >= scale."""

    dist: Literal["pareto"] = "pareto"
    shape: float = Field(gt=0, allow_inf_nan=False)
    scale: float = Field(gt=0, allow_inf_nan=False)

    def _frozen(self) -> Any:
        return stats.pareto(b=self.shape, scale=self.scale)

    def _draw(self, rng: np.random.Generator, size: int) -> NDArray[Any]:
        # numpy's Generator.pareto is the Lomax (type II) law on [0, inf): shift by 1.
        return self.scale * (1.0 + rng.pareto(self.shape, size))

    def _raw_mean(self) -> float:
        a = self.shape
        return math.inf if a <= 1.0 else a * self.scale / (a - 1.0)

    def _raw_var(self) -> float:
        a = self.shape
        return math.inf if a <= 2.0 else self.scale**2 * a / ((a - 1.0) ** 2 * (a - 2.0))

    def _partial_moment(self, k: int, m: float) -> float:
        if m <= self.scale:
            return 0.0
        # shape * scale^k * ((m/scale)^(k-shape) - 1) / (k - shape), via expm1 so
        # that k near shape (the log case) stays accurate.
        r, d = math.log(m / self.scale), k - self.shape
        return self.shape * self.scale**k * (r if d == 0.0 else math.expm1(d * r) / d)

    @property
    def is_heavy_tailed(self) -> bool:
        return self.max is None


class Uniform(Distribution):
    """Uniform on [``low``, ``high``]: a flat range of lengths or sizes."""

    dist: Literal["uniform"] = "uniform"
    low: float = Field(ge=0, allow_inf_nan=False)
    high: float = Field(gt=0, allow_inf_nan=False)

    def _check_fields(self, context: Mapping[str, Any]) -> None:
        if not self.high > self.low:
            raise ValueError(
                f"uniform needs high > low, got low={_fmt(self.low)}, high={_fmt(self.high)}"
            )

    def _frozen(self) -> Any:
        return stats.uniform(loc=self.low, scale=self.high - self.low)

    def _draw(self, rng: np.random.Generator, size: int) -> NDArray[Any]:
        return rng.uniform(self.low, self.high, size)

    def _raw_mean(self) -> float:
        return (self.low + self.high) / 2.0

    def _raw_var(self) -> float:
        return (self.high - self.low) ** 2 / 12.0

    def _partial_moment(self, k: int, m: float) -> float:
        c = min(max(m, self.low), self.high)
        return (c ** (k + 1) - self.low ** (k + 1)) / ((k + 1) * (self.high - self.low))


_NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Empirical(Distribution):
    """Observed values, resampled uniformly with replacement: inline, or a CSV file's column."""

    dist: Literal["empirical"] = "empirical"
    values: Annotated[tuple[_NonNegative, ...], Field(min_length=1)] | None = None
    file: Path | None = None
    column: str | None = None
    # The values sampled, inline or read once at validation: sampling never reads the disk.
    _law: _EmpiricalLaw | None = PrivateAttr(default=None)

    def _check_fields(self, context: Mapping[str, Any]) -> None:
        if (self.values is None) == (self.file is None):
            raise ValueError(
                "empirical takes exactly one of values = [...] or file = ... with column = ..."
            )
        if self.values is not None:
            if self.column is not None:
                raise ValueError("empirical column goes with file, not with values")
            self._law = _EmpiricalLaw(self.values)
            return
        if self.column is None:
            raise ValueError("empirical file needs column = the name of the CSV column to use")
        assert self.file is not None  # exactly one of values and file (checked above)
        base_dir = Path(context.get("base_dir") or ".")
        self._law = _EmpiricalLaw(read_csv_column(base_dir / self.file, self.column))

    def _frozen_once(self) -> _EmpiricalLaw:
        # Already built once, at validation; hashing the values would cost more.
        return self._frozen()

    def _frozen(self) -> _EmpiricalLaw:
        if self._law is None:
            raise RuntimeError("Empirical was built without validation (model_construct?)")
        return self._law

    def _draw(self, rng: np.random.Generator, size: int) -> NDArray[Any]:
        return rng.choice(self._frozen().values, size=size)

    def _clipped(self) -> NDArray[np.float64]:
        v = self._frozen().values
        return v if self.max is None else np.minimum(v, self.max)

    def _raw_mean(self) -> float:
        return float(np.mean(self._frozen().values))

    def _raw_var(self) -> float:
        return float(np.var(self._frozen().values))

    def _limited_moment(self, k: int, m: float) -> float:
        return float(np.mean(np.minimum(self._frozen().values, m) ** k))

    @property
    def int_mean(self) -> float:
        return float(np.mean(np.ceil(self._clipped())))

    def _params(self) -> list[str]:
        n = len(self._frozen().values)
        if self.file is not None:
            return [f"file={self.file}", f"column={self.column}", f"n={n}"]
        if n <= 5:
            return [f"values=[{', '.join(_fmt(v) for v in self.values or ())}]"]
        return [f"n={n}"]


DistributionSpec = Annotated[
    Fixed | Exponential | Geometric | Lognormal | Gamma | Pareto | Uniform | Empirical,
    Field(discriminator="dist"),
]
"""The type of a distribution-valued field in other pydantic models."""

#: Every distribution by its tag (``dist = "..."``), read off the ``DistributionSpec`` union:
#: a family added there is known everywhere a list of the names is needed.
DISTRIBUTIONS: dict[str, type[Distribution]] = {
    cls.model_fields["dist"].default: cls for cls in get_args(get_args(DistributionSpec)[0])
}

# The title names the thing in a ValidationError instead of pydantic's union repr.
_ADAPTER: TypeAdapter[Distribution] = TypeAdapter(
    DistributionSpec, config=ConfigDict(title="distribution")
)


def parse_distribution(data: Mapping[str, Any], base_dir: str | Path | None = None) -> Distribution:
    """Validate one distribution table; ``base_dir`` anchors a relative empirical ``file``."""
    return _ADAPTER.validate_python(data, context={"base_dir": base_dir})


# --- Helpers. ---


class _PointMass:
    """The constant v with scipy's frozen sf/cdf/ppf interface (fixed, lognormal sigma = 0)."""

    def __init__(self, v: float) -> None:
        self.v = v

    def sf(self, x: ArrayLike) -> NDArray[np.float64]:
        return np.where(np.asarray(x) < self.v, 1.0, 0.0)

    def cdf(self, x: ArrayLike) -> NDArray[np.float64]:
        return np.where(np.asarray(x) < self.v, 0.0, 1.0)

    def ppf(self, q: ArrayLike) -> NDArray[np.float64]:
        q = np.asarray(q, dtype=np.float64)
        return np.where((q >= 0.0) & (q <= 1.0), self.v, np.nan)


class _EmpiricalLaw:
    """Mass 1/n on each stored value, with scipy's frozen sf/cdf/ppf interface."""

    def __init__(self, values: ArrayLike) -> None:
        self.values = np.sort(np.asarray(values, dtype=np.float64))
        self.values.setflags(write=False)
        n = len(self.values)
        self._levels = np.arange(1, n + 1, dtype=np.float64) / n  # cdf just at each value

    # pydantic compares private attributes in ==: compare the numbers, not array truth.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, _EmpiricalLaw) and np.array_equal(self.values, other.values)

    __hash__ = None  # type: ignore[assignment]

    def cdf(self, x: ArrayLike) -> NDArray[np.float64]:
        return np.searchsorted(self.values, x, side="right") / len(self.values)

    def sf(self, x: ArrayLike) -> NDArray[np.float64]:
        n = len(self.values)
        return (n - np.searchsorted(self.values, x, side="right")) / n

    def ppf(self, q: ArrayLike) -> NDArray[np.float64]:
        # The smallest value whose cdf reaches q, on the same i/n grid that cdf uses.
        q = np.asarray(q, dtype=np.float64)
        i = np.minimum(np.searchsorted(self._levels, q, side="left"), len(self.values) - 1)
        return np.where((q >= 0.0) & (q <= 1.0), self.values[i], np.nan)


def read_csv_column(path: Path, column: str, what: str = "empirical file") -> list[float]:
    """One numeric column of a CSV file with a header row; every cell finite and >= 0. ``what`` names
    the file in errors (e.g. "empirical file", "capacity schedule trace")."""
    values: list[float] = []
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file")
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise ValueError(
                    f"{what} {path} has no column {column!r}; "
                    f"columns: {list(reader.fieldnames or [])}"
                )
            for row in reader:
                cell = row[column]
                try:
                    x = float(cell)
                except (TypeError, ValueError):
                    x = math.nan
                if not (math.isfinite(x) and x >= 0.0):
                    raise ValueError(
                        f"{what} {path}, line {reader.line_num}: column {column!r} "
                        f"holds {cell!r}; values must be finite numbers >= 0"
                    )
                values.append(x)
    except OSError as err:
        raise ValueError(f"{what} {path} cannot be read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None
    except csv.Error as err:
        raise ValueError(f"{what} {path} is not CSV: {err}") from None
    if not values:
        raise ValueError(f"{what} {path} has no data rows")
    return values


def _gamma_partial_moment(shape: float, scale: float, k: int, m: float) -> float:
    """E[X^k; X <= m] for X ~ Gamma(shape, scale): scale^k (shape)_k P(shape + k, m/scale)."""
    if m <= 0.0:
        return 0.0
    return scale**k * float(special.poch(shape, k)) * float(special.gammainc(shape + k, m / scale))


def _exp(x: float) -> float:
    """exp that overflows to inf instead of raising (huge-sigma lognormal moments)."""
    return math.exp(x) if x < 709.0 else math.inf


def _fmt(v: Any) -> str:
    """A number as written in config: 2000 not 2000.0, otherwise the shortest repr."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)
