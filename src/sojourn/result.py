"""``Result``: what a scenario run found, one type for every tier; ``to_dict`` is its one serialiser.

A result holds the JSON-ready values (a number that is not finite, such as a p99 beyond
every served request, is None), typed, with the keys of its tier in the order the CLI
prints them. Three tiers build one:

* ``request`` (``request.SimResult.to_result``) and ``fast`` (``fast.FastResult.to_result``)
  share ``COMMON_KEYS``; each adds its own (``REQUEST_ONLY``, ``FAST_ONLY``). Both are
  ``Estimate``s: the fields they share are declared once there, and so is how they become
  JSON-ready (``Estimate.result``); each tier adds its own fields and values, and its key
  order (``REQUEST_ORDER``, ``FAST_ORDER``);
* ``check``: a configuration a study settled without simulating (every request misses,
  ``study.runner.pessimistic_result``) has ``CHECK_KEYS`` only, and its infinities are
  exact, so they stay ``inf`` rather than None.

A field a tier does not produce is absent, not None: ``"load" in result`` says whether
the run reported it. ``Result`` is also a read-only ``Mapping`` over ``to_dict()``'s keys,
so ``result["p_miss"]`` and ``result.get("stable")`` work as on the dict the CLI prints
(objective plug-ins read results that way); new code reads attributes.

``from_dict`` reads back what ``to_dict`` wrote, what the CLI printed, or what a study
stored (``storable``: ``inf`` as the string "inf"), keeping keys it does not know in
``extra``, so that ``Result.from_dict(d).to_dict() == d`` for any JSON object ``d``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

__all__ = [
    "CHECK_KEYS",
    "COMMON_KEYS",
    "FAST_ONLY",
    "FAST_ORDER",
    "FIDELITIES",
    "REQUEST_ONLY",
    "REQUEST_ORDER",
    "Estimate",
    "Result",
    "finite",
    "storable",
]

#: The fidelity tiers a run may ask for (``scenario``'s ``simulation.fidelity``, ``evaluate``, the CLI's
#: ``--fidelity``): the one list of them. Here, in the base layer, so that the CLI's parser reads it
#: without importing the scenario schema; a result's ``fidelity`` is the tier that ran ("fast",
#: "request") or "check".
FIDELITIES = ("fast", "request", "auto")

#: A 95% interval, ends None where not finite.
Interval = tuple[float | None, float | None]


def finite(x: Any) -> float | None:
    """A number as JSON holds it: None when missing or not finite, else a float."""
    return None if x is None or not math.isfinite(x) else float(x)


def storable(v: Any) -> Any:
    """A value as a study stores it (Optuna's JSON attributes): ``inf`` as "inf"/"-inf", NaN as None.

    Lists, tuples and dicts are converted item by item, numpy scalars to Python's.
    """
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (list, tuple)):
        return [storable(x) for x in v]
    if isinstance(v, dict):
        return {k: storable(x) for k, x in v.items()}
    if hasattr(v, "item"):
        return storable(v.item())
    return v


@dataclass(frozen=True, eq=False)
class Result(Mapping[str, Any]):
    """One scenario run's result (see the module docstring); build one with ``build`` or ``from_dict``.

    Every field defaults to None; which ones the result has is ``keys()`` (``order``).
    Two results are equal when their ``to_dict()`` are (the ``Mapping`` equality).
    """

    # -- every tier (the check tier has these only) ------------------------------
    fidelity: str | None = None  # "request", "fast" or "check"
    p_miss: float | None = None
    p_miss_ci: Interval | None = None
    p_miss_upper: float | None = None
    batch_miss: float | None = None
    sojourn_mean_s: float | None = None
    sojourn_p50_s: float | None = None
    sojourn_p99_s: float | None = None
    throughput_rps: float | None = None
    cost_per_hour: float | None = None
    # -- both simulating tiers (COMMON_KEYS) ---------------------------------------
    miss_episodes: int | None = None
    miss_episodes_effective: float | None = None
    p_miss_note: str | None = None
    p_miss_unseen: float | None = None
    p_miss_oversize: float | None = None
    sojourn_mean_ci: Interval | None = None
    sojourn_p90_s: float | None = None
    wait_mean_s: float | None = None
    wait_mean_ci: Interval | None = None
    requests_arrived: int | None = None
    requests_completed: int | None = None
    requests_rejected: int | None = None
    requests_cancelled: int | None = None
    requests_in_system: int | None = None
    replications: int | None = None
    horizon_hours: float | None = None
    load: float | None = None
    stable: bool | None = None
    steady_state: dict[str, Any] | None = None
    steady_state_note: str | None = None
    wall_s: float | None = None
    # -- the request tier's own (REQUEST_ONLY) -------------------------------------
    batch_miss_ci: Interval | None = None
    sojourn_unfinished_share: float | None = None
    sojourn_note: str | None = None
    rejected_by: dict[str, int] | None = None
    cancelled_by: dict[str, int] | None = None
    preemptions: int | None = None
    kv_utilization: float | None = None
    busy_fraction: float | None = None
    sla_hours: float | None = None
    seed: int | None = None
    warmup_hours: float | None = None
    requests_simulated: int | None = None
    by_sla_class: list[dict[str, Any]] | None = None
    # -- the fast tier's own (FAST_ONLY) -------------------------------------------
    p_miss_best: float | None = None
    p_miss_upper_sampled: float | None = None
    p_miss_oversize_floor: float | None = None
    p_miss_fragility: float | None = None
    fragile: bool | None = None
    batches_measured: int | None = None
    load_peak: float | None = None
    capacity_rps: float | None = None
    node_capacity: dict[str, Any] | None = None
    analytic_p_miss: float | None = None
    analytic_regime: str | None = None
    analytic_p_miss_upper: float | None = None
    analytic_asymptotic: float | None = None
    analytic_agrees: bool | None = None
    agreement: str | None = None
    tiers: dict[str, str] | None = None
    # -- set by evaluate.run_scenario ----------------------------------------------
    fidelity_requested: str | None = None
    fidelity_note: str | None = None
    # -- the request tier's, only where prefix caching acts (request.SimResult) ----------
    prefix_cache: dict[str, Any] | None = None
    # -- either simulating tier's, only with node failures, spot nodes or a capacity schedule ----
    fleet_realism: dict[str, Any] | None = None
    # -- the request tier's, where engines serve tokens (request.SimResult): TTFT and TPOT --------
    token_latency: dict[str, Any] | None = None
    # -- bookkeeping -----------------------------------------------------------------
    #: Keys outside the fields above (``from_dict`` of a dict that has them).
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The keys this result has, in their serialised order.
    order: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [k for k in self.order if k not in _FIELDS and k not in self.extra]
        if unknown or len(set(self.order)) != len(self.order):
            raise ValueError(f"Result keys {unknown or list(self.order)}: unknown or repeated")
        if set(self.extra) & set(_FIELDS) or not set(self.extra) <= set(self.order):
            raise ValueError(f"Result extra keys {sorted(self.extra)}: a field's name, or not in order")

    # -- building -------------------------------------------------------------------

    @classmethod
    def build(cls, **values: Any) -> Result:
        """A result with these fields, serialised in the order given (a tier's builder calls this)."""
        return cls(**values, order=tuple(values))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Result:
        """The result ``d`` serialises: ``to_dict()``'s output, the CLI's JSON or a study's stored attributes.

        Intervals become tuples and, in number fields, the storage's strings "inf",
        "-inf" and "nan" become floats; any other value is kept as it is (nothing is
        validated: an objective decides what a value it cannot read means).
        """
        if isinstance(d, Result):
            return d
        known = {k: _decode(k, v) for k, v in d.items() if k in _FIELDS}
        extra = {k: v for k, v in d.items() if k not in _FIELDS}
        return cls(**known, extra=extra, order=tuple(d))

    def with_values(self, **values: Any) -> Result:
        """This result with fields set: those it has keep their place, new ones go last."""
        order = self.order + tuple(k for k in values if k not in self.order)
        return dataclasses.replace(self, **values, order=order)

    # -- serialising ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON-ready dict (a fresh copy): intervals as lists, keys in the tier's order."""
        out: dict[str, Any] = _plain(self._view)
        return out

    def to_json(self, **kwargs: Any) -> str:
        """``json.dumps(self.to_dict(), **kwargs)``."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_storage(self) -> dict[str, Any]:
        """What a study stores of it, key by key (``storable``)."""
        return {k: storable(v) for k, v in self._view.items()}

    @cached_property
    def _view(self) -> dict[str, Any]:
        return {k: _plain(self.extra[k] if k in self.extra else getattr(self, k)) for k in self.order}

    # -- the read-only Mapping over to_dict()'s keys ------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._view[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view)

    def __len__(self) -> int:
        return len(self._view)

    def __repr__(self) -> str:
        return f"Result({', '.join(f'{k}={v!r}' for k, v in self._view.items())})"


#: The schema's field names (``extra`` and ``order`` are bookkeeping).
_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Result) if f.name not in ("extra", "order"))
#: Number fields (annotation names a float) and interval fields, for ``from_dict``'s decoding.
_NUMBERS = frozenset(f.name for f in dataclasses.fields(Result) if str(f.type).startswith("float"))
_INTERVALS = frozenset(f.name for f in dataclasses.fields(Result) if str(f.type).startswith("Interval"))

#: Keys of the configuration settled without simulating (``fidelity`` "check").
CHECK_KEYS = ("p_miss", "p_miss_ci", "p_miss_upper", "batch_miss", "sojourn_mean_s", "sojourn_p50_s",
              "sojourn_p99_s", "throughput_rps", "cost_per_hour", "fidelity")
#: Keys both simulating tiers produce (``fidelity`` "request" and "fast"): CHECK_KEYS and these.
COMMON_KEYS = CHECK_KEYS + tuple(_FIELDS[_FIELDS.index("miss_episodes"):_FIELDS.index("batch_miss_ci")])
#: The request tier's own keys...
REQUEST_ONLY = _FIELDS[_FIELDS.index("batch_miss_ci"):_FIELDS.index("p_miss_best")]
#: ...and the fast tier's.
FAST_ONLY = _FIELDS[_FIELDS.index("p_miss_best"):_FIELDS.index("fidelity_requested")]


def _decode(key: str, v: Any) -> Any:
    if key in _INTERVALS and isinstance(v, (list, tuple)):
        return tuple(_number(x) for x in v)
    return _number(v) if key in _NUMBERS else v


def _number(v: Any) -> Any:
    return float(v) if isinstance(v, str) and v in ("inf", "-inf", "nan") else v


def _plain(v: Any) -> Any:
    """A fresh JSON-shaped copy: tuples as lists, containers copied item by item."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v

#: The request tier's keys in the order the CLI prints them (``request.SimResult``)...
REQUEST_ORDER: tuple[str, ...] = tuple("""
    fidelity p_miss p_miss_ci p_miss_upper miss_episodes miss_episodes_effective p_miss_note batch_miss batch_miss_ci
    sojourn_mean_s sojourn_mean_ci sojourn_p50_s sojourn_p90_s sojourn_p99_s sojourn_unfinished_share sojourn_note
    wait_mean_s wait_mean_ci throughput_rps requests_arrived requests_completed requests_rejected requests_cancelled
    requests_in_system rejected_by cancelled_by preemptions kv_utilization busy_fraction cost_per_hour sla_hours
    replications seed horizon_hours warmup_hours requests_simulated wall_s load stable p_miss_unseen p_miss_oversize
    steady_state steady_state_note by_sla_class
""".split())
#: ...and the fast tier's (``fast.FastResult``).
FAST_ORDER: tuple[str, ...] = tuple("""
    p_miss p_miss_ci p_miss_upper p_miss_best p_miss_upper_sampled p_miss_unseen p_miss_oversize p_miss_oversize_floor
    p_miss_fragility fragile miss_episodes miss_episodes_effective p_miss_note batch_miss sojourn_mean_s
    sojourn_mean_ci sojourn_p50_s sojourn_p90_s sojourn_p99_s wait_mean_s wait_mean_ci throughput_rps
    requests_arrived requests_completed requests_rejected requests_cancelled requests_in_system batches_measured
    replications horizon_hours cost_per_hour fidelity load load_peak stable capacity_rps node_capacity
    analytic_p_miss analytic_regime analytic_p_miss_upper analytic_asymptotic analytic_agrees steady_state
    steady_state_note agreement tiers wall_s
""".split())


def _interval(ci: tuple[float, float]) -> Interval:
    return (finite(ci[0]), finite(ci[1]))


@dataclass(kw_only=True)
class Estimate:
    """What both simulating tiers estimate, declared once: ``request.SimResult`` and
    ``fast.FastResult`` are ``Estimate``s with fields of their own.

    Counts are over the measured requests of all replications; a non-finite number
    becomes None in the ``Result`` (``result``). ``steady_state`` is a
    ``sojourn.steady.SteadyState`` (its ``to_dict()`` and ``note``), or None.
    """

    p_miss: float
    p_miss_ci: tuple[float, float]
    p_miss_upper: float
    batch_miss: float
    sojourn_mean_s: float
    sojourn_mean_ci: tuple[float, float]
    sojourn_p50_s: float
    sojourn_p90_s: float
    sojourn_p99_s: float
    wait_mean_s: float
    wait_mean_ci: tuple[float, float]
    throughput_rps: float
    requests_arrived: int
    requests_completed: int
    requests_rejected: int
    requests_cancelled: int
    replications: int
    horizon_hours: float
    cost_per_hour: float
    wall_s: float
    #: Congestion episodes the misses came in, and their effective number (Σm)²/Σm².
    miss_episodes: int = 0
    miss_episodes_effective: float = 0.0
    #: Set when the interval cannot be trusted at its nominal 95% (too few episodes).
    p_miss_note: str = ""
    #: How the run reached steady state, and whether its output says it did (``sojourn.steady``).
    steady_state: Any = None
    #: Share of requests in batches larger than any the sample holds (added to ``p_miss_upper``).
    p_miss_unseen: float = 0.0
    #: Misses of batches larger than the fleet serves in one SLA, over all requests (nan: unknown).
    p_miss_oversize: float = math.nan

    def result(self, order: tuple[str, ...], *, fin: tuple[str, ...] = (), copy: tuple[str, ...] = (),
               **own: Any) -> Result:
        """The ``Result``: the shared fields JSON-ready, then the tier's: its attributes named in
        ``fin`` (through ``finite``) and in ``copy`` (as they are), and its ``own`` values; keys in
        ``order``, which must name exactly those."""
        values = self._shared()
        values.update({k: finite(getattr(self, k)) for k in fin})
        values.update({k: getattr(self, k) for k in copy})
        values.update(own)
        if set(values) != set(order) or len(order) != len(values):
            raise ValueError(f"Result keys {sorted(set(values) ^ set(order))}: not both in the values and the order")
        return Result.build(**{k: values[k] for k in order})

    def _shared(self) -> dict[str, Any]:
        """The shared fields' JSON-ready values."""
        fin = finite
        ss = self.steady_state
        return {
            "p_miss": fin(self.p_miss), "p_miss_ci": _interval(self.p_miss_ci), "p_miss_upper": fin(self.p_miss_upper),
            "p_miss_unseen": fin(self.p_miss_unseen), "p_miss_oversize": fin(self.p_miss_oversize),
            "miss_episodes": self.miss_episodes, "miss_episodes_effective": fin(self.miss_episodes_effective),
            "p_miss_note": self.p_miss_note, "batch_miss": fin(self.batch_miss),
            "sojourn_mean_s": fin(self.sojourn_mean_s), "sojourn_mean_ci": _interval(self.sojourn_mean_ci),
            "sojourn_p50_s": fin(self.sojourn_p50_s), "sojourn_p90_s": fin(self.sojourn_p90_s),
            "sojourn_p99_s": fin(self.sojourn_p99_s),
            "wait_mean_s": fin(self.wait_mean_s), "wait_mean_ci": _interval(self.wait_mean_ci),
            "throughput_rps": fin(self.throughput_rps),
            "requests_arrived": self.requests_arrived, "requests_completed": self.requests_completed,
            "requests_rejected": self.requests_rejected, "requests_cancelled": self.requests_cancelled,
            "replications": self.replications, "horizon_hours": self.horizon_hours,
            "cost_per_hour": fin(self.cost_per_hour), "wall_s": self.wall_s,
            "steady_state": ss.to_dict() if ss else None, "steady_state_note": ss.note if ss else "",
        }
