"""Scenario files: one validated description of a sizing problem.

A scenario is TOML (see ``examples/``) or built from Python; pydantic validates
each field once, at the boundary, and the cross-field hardware checks (the model
fits, ``tp`` divides the heads, one ``max_model_len`` request fits in the KV
cache) run when the scenario is built, so a bad file fails with one message
that names the field and what is allowed.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from sojourn._cache import file_stamp, register
from sojourn._errors import ConfigError
from sojourn._io import read_text
from sojourn.disciplines import DISCIPLINES
from sojourn.distributions import DISTRIBUTIONS, DistributionSpec, Fixed
from sojourn.perf import KV_CACHE_DTYPES, PerfModel
from sojourn.result import FIDELITIES  # the one list of them, re-exported: the schema's vocabulary

__all__ = [
    "CatalogueOverrides",
    "CapacitySchedule",
    "Fleet",
    "FleetPool",
    "FleetRealism",
    "NodeFailures",
    "PoolRealism",
    "SpotNodes",
    "GenericServer",
    "ModelConfig",
    "PrefixSharing",
    "FIDELITIES",
    "ROUTERS",
    "SCENARIO_DISCIPLINES",
    "Scenario",
    "Serving",
    "SimulationSettings",
    "SlaClass",
    "Workload",
    "load_scenario",
    "scenario_from_dict",
    "field_value",
    "format_validation_error",
    "setting_field",
    "load_toml",
]

#: Defaults of the size limits (``simulation.max_requests``, ``simulation.max_batches``): a run
#: larger than these is refused up front. The request tier simulates ~200,000 requests a
#: CPU-second and keeps ~8 bytes of each: 10^9 is about 1.5 CPU-hours and 8 GB (the largest
#: shipped run, overnight-70b's confirmations, 32 replications of 384 h, is ~6.4e8). The fast
#: tier holds one replication's batches at once, ~320 bytes each: 2e7 is about 6 GB (its own
#: spans stay below 10^6 batches a replication).
DEFAULT_MAX_REQUESTS = 1_000_000_000
DEFAULT_MAX_BATCHES = 20_000_000

#: Queue disciplines the simulator implements: the names of the registry ``sojourn.disciplines.DISCIPLINES``,
#: read off it (the disciplines sit a layer below the scenario, as the distributions do).
SCENARIO_DISCIPLINES: tuple[str, ...] = tuple(DISCIPLINES)
#: How a fleet routes requests to its nodes (``fleet.routing``; each is a branch of
#: ``sojourn.sim.fleet.FleetSim``, and tests/test_routers_contract.py runs over these).
ROUTERS = ("pull", "round_robin", "least_loaded")
#: vLLM's engine defaults, written once, on the performance model one layer down (the
#: scenario may import it, not the other way round): ``Serving`` takes its defaults from there.
_ENGINE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(PerfModel)}


class _Strict(BaseModel):
    # Every number of a scenario is finite: inf and nan are refused at the field that holds them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class SlaClass(_Strict):
    """A deadline class for mixed-SLA workloads: a batch gets ``hours`` with probability ``weight``."""

    hours: float = Field(gt=0)
    weight: float = Field(default=1.0, gt=0)
    name: str | None = None


class PrefixSharing(_Strict):
    """Prompts that start with a prefix shared with other requests (system prompts, documents), for
    the engine's automatic prefix caching (``serving.prefix_caching``; docs/model.md).

    ``source = "synthetic"``: each request draws one of ``groups`` distinct prefixes by
    ``popularity`` (uniform, or Zipf: group k of 1..groups with weight k^-zipf_exponent) and
    starts with its first ``tokens`` tokens (a draw, clipped to the prompt) or its first
    ``share`` x prompt tokens (a share of the prompt, a law on [0, 1]); two requests of one
    group share the shorter one's prefix. ``source = "trace"``: a Mooncake trace's own
    ``hash_ids`` (one per 512-token block, chained on the prefix) say what each prompt shares.
    """

    source: Literal["synthetic", "trace"] = "synthetic"
    groups: int | None = Field(default=None, ge=1, le=10_000_000)
    popularity: Literal["uniform", "zipf"] = "uniform"
    zipf_exponent: float = Field(default=1.0, gt=0, le=10)
    tokens: DistributionSpec | None = None
    share: DistributionSpec | None = None

    @model_validator(mode="after")
    def _form(self) -> PrefixSharing:
        given = [n for n in ("groups", "tokens", "share") if getattr(self, n) is not None]
        if self.source == "trace":
            if given:
                raise ConfigError(f"workload.prefix.{given[0]}",
                                  "not used with source = 'trace' (the trace's hash_ids say what is shared); remove it")
            return self
        if self.groups is None:
            raise ConfigError("workload.prefix.groups", "required with source = 'synthetic': the number of distinct "
                                                        "shared prefixes (allowed: an integer >= 1)")
        if (self.tokens is None) == (self.share is None):
            raise ConfigError("workload.prefix.tokens", "give exactly one of tokens (the prefix length, a token "
                                                        "distribution) and share (its share of the prompt, a law on [0, 1])")
        if self.share is not None and not float(self.share.ppf(1.0)) <= 1.0:
            raise ConfigError("workload.prefix.share", f"{self.share.describe()} reaches above 1; allowed: a law on "
                                                       "[0, 1] (e.g. uniform with high <= 1, or set max = 1)")
        if self.zipf_exponent != 1.0 and self.popularity != "zipf":  # its default passes: with_updates writes it
            raise ConfigError("workload.prefix.zipf_exponent", "only used with popularity = 'zipf'; remove it")
        return self


class Workload(_Strict):
    """What arrives: M^X batches with random request sizes, or a replayed trace."""

    #: At most 10^12 batches an hour: far above any real workload, and low enough that the
    #: arithmetic on it (requests, work offered) stays finite.
    batch_rate_per_hour: float | None = Field(default=None, gt=0, le=1e12)
    batch_size: DistributionSpec = Field(default_factory=lambda: Fixed(dist="fixed", value=1))
    input_tokens: DistributionSpec | None = None
    output_tokens: DistributionSpec | None = None
    #: 24 hourly multipliers of the batch rate (non-homogeneous Poisson arrivals).
    rate_profile: list[Annotated[float, Field(ge=0)]] | None = None
    #: Trace replay: the file's own arrival times and lengths are used, so batch_rate_per_hour,
    #: rate_profile, batch_size, input_tokens and output_tokens must be left out; rate_scale
    #: and batch_window_s apply to a trace only.
    trace: str | None = None
    format: Literal["azure", "mooncake"] | None = None
    rate_scale: float = Field(default=1.0, gt=0)
    batch_window_s: float = Field(default=0.0, ge=0)
    #: Mixed SLAs: each batch draws one class; absent means every batch has ``sla_hours``.
    sla_classes: list[SlaClass] | None = None
    #: Shared prompt prefixes, for prefix caching; absent: no prompt shares anything.
    prefix: PrefixSharing | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_prefix(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # Absent, the key is left out, so a scenario without it serialises (and fingerprints) as
        # before prefix caching existed.
        data = handler(self)
        if self.prefix is None and isinstance(data, dict):
            data.pop("prefix", None)
        return data

    @field_validator("rate_profile")
    @classmethod
    def _profile_shape(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if len(v) != 24:
                raise ValueError(f"must hold 24 hourly multipliers, got {len(v)}")
            if sum(v) <= 0:
                raise ValueError("must have at least one positive multiplier")
        return v

    @model_validator(mode="after")
    def _source(self) -> Workload:
        if self.prefix is not None and (self.prefix.source == "trace") != (self.trace is not None):
            raise ConfigError("workload.prefix.source",
                              "'trace' needs a replayed trace (workload.trace), and a trace replay takes what its "
                              "prompts share from the trace: allowed: 'trace' with a trace, 'synthetic' without")
        if self.trace is not None:
            if self.format is None:
                raise ValueError("format: required with trace; allowed: 'azure', 'mooncake'")
            if self.prefix is not None and self.format != "mooncake":
                raise ConfigError("workload.prefix.source", f"{self.format!r} traces have no hash_ids; allowed: "
                                                            "source = 'trace' with format = 'mooncake'")
            # What the replay takes from the trace itself (sla_classes, rate_scale and
            # batch_window_s still apply): a key set here would be silently unused.
            self._reject_unused(
                "not used when a trace is replayed",
                "remove it",
                {
                    "batch_rate_per_hour": "the trace's own arrival times set the rate; scale them with rate_scale",
                    "rate_profile": "the trace's own arrival times set the rate over the day",
                    "batch_size": "the trace's arrivals form the batches; group them with batch_window_s",
                    "input_tokens": "the trace gives each request's prompt length",
                    "output_tokens": "the trace gives each request's output length",
                },
            )
            return self
        self._reject_unused(
            "only used when a trace is replayed",
            "remove it, or set trace",
            {
                "format": "it is the trace file's format",
                "rate_scale": "it divides the trace's arrival times; a synthetic rate is batch_rate_per_hour",
                "batch_window_s": "it groups the trace's arrivals into batches; synthetic batches take batch_size",
            },
        )
        missing = [
            name
            for name in ("batch_rate_per_hour", "input_tokens", "output_tokens")
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(f"{', '.join(missing)}: required unless a trace is given")
        return self

    def _reject_unused(self, what: str, fix: str, reasons: dict[str, str]) -> None:
        """ConfigError naming the first key of ``reasons`` the user set that this source does not use.

        Only keys written explicitly count (``model_fields_set``), and a key written at its
        default value is let through: it changes nothing, and ``Scenario.with_updates``
        writes every default back when it revalidates.
        """
        fields = type(self).model_fields
        unused = [
            name
            for name in reasons
            if name in self.model_fields_set
            and getattr(self, name) != fields[name].get_default(call_default_factory=True)
        ]
        if unused:
            first, *others = unused
            also = f" (likewise: {', '.join(others)})" if others else ""
            raise ConfigError(f"workload.{first}", f"{what} ({reasons[first]}); {fix}{also}")

    @property
    def mean_requests_per_hour(self) -> float:
        """Offered requests per hour of the synthetic workload (profile-averaged)."""
        if self.batch_rate_per_hour is None:
            raise ConfigError("workload.batch_rate_per_hour", "not set (trace workloads have no rate)")
        mult = 1.0 if self.rate_profile is None else sum(self.rate_profile) / 24.0
        return self.batch_rate_per_hour * mult * self.batch_size.int_mean


class ModelConfig(_Strict):
    """The served model: a catalogue name or a path to a HF config.json."""

    name: str = "llama-3.1-8b"
    precision: Literal["bf16", "fp8", "fp4"] = "bf16"


class GenericServer(_Strict):
    """A plain c-server node for validation: each request holds a slot for its own service time."""

    kind: Literal["generic"] = "generic"
    service_time: DistributionSpec
    concurrency: int = Field(default=1, ge=1)


class NodeFailures(_Strict):
    """Node failures (``[fleet.failures]``; absent: nodes never fail, and results are as before).

    Each node alternates between up, for an exponential time of mean ``mtbf_hours_per_gpu / tp``
    (a replica fails when any of its GPUs does), and down for an exponential repair of mean
    ``repair_hours``; unset, both come from the catalogue (``sojourn.catalogue.reliability``, with
    sources). A failure takes the node's running and node-queued requests with it: ``recompute``
    sends them back to the fleet queue to start again from scratch (their arrival time and
    deadline kept), ``lose`` counts them as misses (cancelled, reason ``node_failure``).
    """

    mtbf_hours_per_gpu: float | None = Field(default=None, gt=0)
    repair_hours: float | None = Field(default=None, gt=0)
    on_failure: Literal["recompute", "lose"] = "recompute"


class SpotNodes(_Strict):
    """Spot (preemptible) nodes (``[fleet.spot]``; absent: every node is on demand).

    ``share`` of the fleet's nodes (rounded to the nearest node, the highest-numbered ones) are
    spot nodes, paid at ``price_usd_per_gpu_hour`` (unset: the on-demand price less the
    catalogue's spot discount) while held. Each is reclaimed at ``reclaims_per_hour`` (a constant
    hazard); on notice it stops admitting, and ``notice_s`` later its remaining requests go back to
    the fleet queue and the node is gone (unpaid) until a replacement comes back after an
    exponential time of mean ``reacquire_hours``. Unset values come from the catalogue.
    """

    share: float = Field(ge=0, le=1)
    price_usd_per_gpu_hour: float | None = Field(default=None, ge=0)
    reclaims_per_hour: float | None = Field(default=None, ge=0)
    notice_s: float | None = Field(default=None, ge=0)
    reacquire_hours: float | None = Field(default=None, gt=0)

    def nodes_of(self, fleet_nodes: int) -> int:
        """How many of ``fleet_nodes`` nodes are spot nodes: ``share`` of them, to the nearest node."""
        return math.floor(self.share * fleet_nodes + 0.5)


class CapacitySchedule(_Strict):
    """The nodes available by hour (``[fleet.capacity_schedule]``), for a batch tier on the capacity
    an online tier leaves free: ``nodes_by_hour`` (24 counts, at most ``fleet.nodes``) or
    ``share_by_hour`` (24 shares of ``fleet.nodes``, rounded to the nearest node), repeated every
    day; or ``trace``, a CSV file with one row per hour (its ``column``, "nodes" by default, holds
    node counts, or shares of ``fleet.nodes`` with ``unit = "share"``), repeated with the trace's own
    period (168 rows: a week as it was recorded). Hour 0 starts at time 0, as the workload's
    ``rate_profile`` does. A node taken away drains: it admits nothing more and finishes the
    requests it runs (they are not moved); cost counts the scheduled node-hours, not the nominal
    fleet. The trace is read once, when the scenario is loaded.
    """

    nodes_by_hour: list[Annotated[int, Field(ge=0)]] | None = None
    share_by_hour: list[Annotated[float, Field(ge=0, le=1)]] | None = None
    trace: str | None = Field(default=None, exclude_if=lambda v: v is None)
    column: str = Field(default="nodes", exclude_if=lambda v: v == "nodes")
    unit: Literal["nodes", "share"] = Field(default="nodes", exclude_if=lambda v: v == "nodes")
    _trace_values: tuple[float, ...] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one(self, info: ValidationInfo) -> CapacitySchedule:
        where = "fleet.capacity_schedule"
        given = [n for n in ("nodes_by_hour", "share_by_hour", "trace") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ConfigError(where, "give exactly one of nodes_by_hour (24 node counts), share_by_hour (24 "
                                     "shares of fleet.nodes in [0, 1]) and trace (a CSV file, one row per hour)")
        if given[0] != "trace":
            if len(getattr(self, given[0])) != 24:
                raise ConfigError(f"{where}.{given[0]}", f"must hold 24 hourly values, got {len(getattr(self, given[0]))}")
            return self
        from sojourn.distributions import read_csv_column

        base = Path((info.context or {}).get("base_dir") or ".")
        try:
            values = read_csv_column(base / str(self.trace), self.column, what="capacity schedule trace")
        except ValueError as err:
            raise ConfigError(f"{where}.trace", str(err)) from None
        if self.unit == "nodes" and any(v != int(v) for v in values):
            raise ConfigError(f"{where}.trace", f"column {self.column!r} holds node counts (unit = 'nodes'), "
                                                "which must be whole numbers; allowed: integers >= 0, or unit = 'share'")
        if self.unit == "share" and max(values) > 1.0:
            raise ConfigError(f"{where}.trace", f"column {self.column!r} holds shares (unit = 'share'), up to "
                                                f"{max(values):g}; allowed: 0..1")
        self._trace_values = tuple(values)
        return self

    def nodes(self, fleet_nodes: int) -> tuple[int, ...]:
        """The node count of each hour of the schedule's period (24 hours, or the trace's rows)."""
        if self.nodes_by_hour is not None:
            return tuple(self.nodes_by_hour)
        if self.trace is not None and self.unit == "nodes":
            return tuple(int(v) for v in self._trace_values or ())
        shares = self.share_by_hour if self.share_by_hour is not None else self._trace_values or ()
        return tuple(math.floor(x * fleet_nodes + 0.5) for x in shares)


@dataclass(frozen=True)
class PoolRealism:
    """One node pool's share of a mixed fleet's ``FleetRealism``: its nodes (consecutive, in pool
    order), tp, price per GPU-hour, and its nodes' MTBF and repair time (hours)."""

    nodes: int
    tp: int
    price: float
    mtbf_node_h: float | None
    repair_h: float

    @property
    def availability(self) -> float:
        """Long-run share of time one of its nodes is not failed: MTBF / (MTBF + MTTR)."""
        m = self.mtbf_node_h
        return 1.0 if m is None else m / (m + self.repair_h)


@dataclass(frozen=True)
class FleetRealism:
    """A scenario's node failures, spot nodes and capacity schedule, resolved (catalogue defaults
    filled in; ``Scenario.fleet_realism``). Times in hours unless named ``_s``; prices per GPU-hour.

    ``mtbf_node_h`` is None when failures are off; ``spot_nodes`` 0 without spot nodes;
    ``schedule`` None without a capacity schedule, else the node counts of each hour of its period.
    ``pools``: a mixed fleet's pools (``PoolRealism``, failures only: each pool's own MTBF, repair
    time, tp and price), None for one pool; then ``mtbf_node_h`` is the fleet's mean node failure
    rate's inverse, ``repair_h`` the first pool's, and ``availability`` the node-weighted mean.
    """

    nodes: int
    tp: int
    price: float
    mtbf_node_h: float | None
    repair_h: float
    on_failure: str
    spot_nodes: int
    spot_price: float
    reclaim_per_h: float
    notice_s: float
    reacquire_h: float
    schedule: tuple[int, ...] | None
    pools: tuple[PoolRealism, ...] | None = None

    @property
    def availability(self) -> float:
        """Long-run share of time a node is not failed: MTBF / (MTBF + MTTR) (a mixed fleet: the
        pools' values weighted by their nodes)."""
        if self.pools is not None:
            return sum(p.nodes * p.availability for p in self.pools) / self.nodes
        m = self.mtbf_node_h
        return 1.0 if m is None else m / (m + self.repair_h)

    def node_pools(self) -> tuple[PoolRealism, ...]:
        """The pools node by node's settings come from (one pool: the fleet's own values)."""
        if self.pools is not None:
            return self.pools
        return (PoolRealism(self.nodes, self.tp, self.price, self.mtbf_node_h, self.repair_h),)

    def spot_shares(self) -> tuple[float, float]:
        """A spot node's long-run shares of time (serving, held): up / cycle and (up + notice) / cycle,
        the cycle being up (mean 1/rate), notice, then re-acquiring."""
        r = self.reclaim_per_h
        if r <= 0:
            return 1.0, 1.0
        up, notice = 1.0 / r, self.notice_s / 3600.0
        cycle = up + notice + self.reacquire_h
        return up / cycle, (up + notice) / cycle

    def scheduled(self, hour: int) -> int:
        """Nodes scheduled at this hour (all of them without a schedule); the schedule repeats."""
        return self.nodes if self.schedule is None else self.schedule[hour % len(self.schedule)]

    @property
    def period_hours(self) -> int:
        """Hours after which the schedule repeats (24 without one: a day)."""
        return 24 if self.schedule is None else len(self.schedule)

    def cost_per_hour(self) -> float:
        """Expected rent per hour: on-demand nodes at the on-demand price while scheduled, spot
        nodes at the spot price while scheduled and held (a failed node is still paid)."""
        od = self.nodes - self.spot_nodes
        _, held = self.spot_shares()
        total = 0.0
        period = self.period_hours
        for h in range(period):
            k = self.scheduled(h)  # the lowest-numbered k nodes are in: on-demand ones first
            total += self.price * min(k, od) + self.spot_price * held * max(k - od, 0)
        return total / period * self.tp

    def serving_share(self) -> float:
        """Expected share of the nominal node-hours that serve (up, held, scheduled, not on notice)."""
        od = self.nodes - self.spot_nodes
        serving, _ = self.spot_shares()
        period = self.period_hours
        s = sum(min(self.scheduled(h), od) + serving * max(self.scheduled(h) - od, 0) for h in range(period))
        return self.availability * s / (period * self.nodes)


class FleetPool(_Strict):
    """One node pool of a mixed fleet (``[[fleet.pools]]``): ``nodes`` replicas of ``tp`` GPUs of type ``gpu``.

    The engine settings given here replace the ``[serving]`` ones on this pool's nodes (unset: the
    scenario's), and ``precision`` the model's; ``price_usd_per_gpu_hour`` the catalogue's rent.
    ``owned = true``: nodes already bought. They serve like any other, but cost nothing in
    ``Scenario.cost_per_hour`` (the rent the plan adds); ``Scenario.owned_cost_per_hour`` values
    them at their rent, and the two add up to the whole fleet's. ``speed`` (generic servers only):
    this pool's servers serve ``speed`` times faster than ``fleet.server.service_time`` says.
    ``nodes = 0`` is allowed (a study may add none of a type), as long as the fleet has a node.
    """

    gpu: str = "h100-sxm"
    nodes: int = Field(default=1, ge=0)
    tp: int = Field(default=1, ge=1)
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    precision: Literal["bf16", "fp8", "fp4"] | None = None
    price_usd_per_gpu_hour: float | None = Field(default=None, ge=0)
    owned: bool = False
    speed: float | None = Field(default=None, gt=0)


#: The pool settings that replace a scenario setting on that pool's nodes (``Scenario.pool_scenarios``).
_POOL_SETTINGS = {"gpu": "fleet.gpu", "nodes": "fleet.nodes", "tp": "fleet.tp",
                  "price_usd_per_gpu_hour": "fleet.price_usd_per_gpu_hour", "precision": "model.precision",
                  "max_num_seqs": "serving.max_num_seqs", "max_num_batched_tokens": "serving.max_num_batched_tokens"}


class Fleet(_Strict):
    """The hardware: ``nodes`` engine replicas of ``tp`` GPUs each, or several node pools (``pools``).

    With ``pools``, ``gpu``, ``nodes`` and ``tp`` are read off them (the first pool's GPU and tp,
    every pool's nodes), so code that reads a fleet's node count sees the whole fleet's.
    """

    gpu: str = "h100-sxm"
    nodes: int = Field(default=1, ge=1)
    tp: int = Field(default=1, ge=1)
    routing: Literal[ROUTERS] = "pull"  # type: ignore[valid-type]
    server: GenericServer | None = None
    #: Overrides the catalogue's rent price for this scenario.
    price_usd_per_gpu_hour: float | None = Field(default=None, ge=0)
    #: Node failures, spot nodes and a capacity schedule (``FleetRealism``): each absent by default
    #: and then left out of the serialised form, so scenarios (and studies' fingerprints) without
    #: them read as before. They need ``routing = "pull"`` (the push routers do not route around
    #: a node that is out).
    failures: NodeFailures | None = Field(default=None, exclude_if=lambda v: v is None)
    spot: SpotNodes | None = Field(default=None, exclude_if=lambda v: v is None)
    capacity_schedule: CapacitySchedule | None = Field(default=None, exclude_if=lambda v: v is None)
    #: Node pools of a mixed fleet (``FleetPool``); absent, the fleet is one pool (gpu, nodes, tp),
    #: and the key is left out of the serialised form, so such scenarios read as before.
    pools: list[FleetPool] | None = Field(default=None, min_length=1, exclude_if=lambda v: v is None)

    @model_serializer(mode="wrap")
    def _pools_only(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # With pools, the fleet's gpu, nodes and tp are read off them: the pools alone are written.
        data = handler(self)
        if self.pools is not None and isinstance(data, dict):
            for key in ("gpu", "nodes", "tp"):
                data.pop(key, None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _from_pools(cls, data: Any) -> Any:
        """With pools, the fleet's gpu, nodes and tp are the pools' (a value given for them must agree)."""
        if not isinstance(data, dict) or not data.get("pools"):
            return data
        pools = [p if isinstance(p, dict) else p.model_dump() for p in data["pools"]]
        try:
            nodes = sum(int(p.get("nodes", 1)) for p in pools)
        except (TypeError, ValueError):
            return data  # the pool's own field check names it
        derived = {"gpu": pools[0].get("gpu", "h100-sxm"), "tp": pools[0].get("tp", 1), "nodes": nodes}
        for key, value in derived.items():
            if key in data and data[key] != value:
                raise ConfigError(f"fleet.{key}", f"{data[key]!r} disagrees with fleet.pools ({value!r}); with pools, "
                                                  f"set each pool's {key} (fleet.pools[i].{key}) and leave fleet.{key} out")
        if "price_usd_per_gpu_hour" in data and data["price_usd_per_gpu_hour"] is not None:
            raise ConfigError("fleet.price_usd_per_gpu_hour", "not used with fleet.pools; set each pool's "
                                                              "price_usd_per_gpu_hour (fleet.pools[i].price_usd_per_gpu_hour)")
        if nodes < 1:
            raise ConfigError("fleet.pools", "no node in any pool; allowed: nodes >= 1 in at least one pool")
        return {**data, **derived}

    @model_validator(mode="after")
    def _realism(self) -> Fleet:
        if self.pools is not None:
            on = [n for n in ("spot", "capacity_schedule") if getattr(self, n) is not None]
            if on:
                raise ConfigError(f"fleet.{on[0]}", "not modelled with fleet.pools yet (mixed fleets; fleet.failures "
                                                    "is); remove one of them")
            generic = self.server is not None
            for i, p in enumerate(self.pools):
                if p.speed is not None and not generic:
                    raise ConfigError(f"fleet.pools[{i}].speed", "only for generic servers (fleet.server); an "
                                                                 "engine pool's speed comes from its GPU, tp and settings")
        on = [n for n in ("failures", "spot", "capacity_schedule") if getattr(self, n) is not None]
        if on and self.routing != "pull":
            raise ConfigError("fleet.routing", f"{self.routing!r} with fleet.{on[0]}: the push routers do not route "
                                               "around a node that is out; allowed: 'pull'")
        cs = self.capacity_schedule
        if cs is not None and max(cs.nodes(self.nodes)) > self.nodes:
            field = "nodes_by_hour" if cs.nodes_by_hour is not None else "trace"
            raise ConfigError(f"fleet.capacity_schedule.{field}",
                              f"{max(cs.nodes(self.nodes))} nodes exceeds fleet.nodes = {self.nodes}; "
                              f"allowed: 0..{self.nodes}")
        return self


class Serving(_Strict):
    """Engine and queue settings, with vLLM's names where vLLM has one."""

    gpu_memory_utilization: float = Field(default=_ENGINE_DEFAULTS["gpu_memory_utilization"], gt=0, le=1)
    #: At least 1, and, for an engine, at least max_num_seqs (``check_engine``).
    max_num_batched_tokens: int = Field(default=_ENGINE_DEFAULTS["max_num_batched_tokens"], ge=1)
    max_num_seqs: int = Field(default=_ENGINE_DEFAULTS["max_num_seqs"], ge=1)
    max_model_len: int = Field(default=32768, ge=1)
    block_size: Literal[1, 8, 16, 32, 64, 128] = _ENGINE_DEFAULTS["block_size"]
    #: KV-cache element type (vLLM's --kv-cache-dtype); unset: fp8 with fp8/fp4 weights, else bf16.
    kv_cache_dtype: Literal[KV_CACHE_DTYPES] | None = _ENGINE_DEFAULTS["kv_cache_dtype"]  # type: ignore[valid-type]
    #: vLLM's --enable-expert-parallel: a mixture-of-experts model's experts spread whole over the
    #: replica's tp GPUs (expert-parallel size = tp) instead of each sliced tp ways; attention stays
    #: tensor-parallel. MoE models and tp > 1 only (``sojourn.perf.PerfModel.ep``). Left out of the
    #: serialised form while false, so scenarios (and studies' fingerprints) without it read as before.
    enable_expert_parallel: bool = Field(default=False, exclude_if=lambda v: v is False)
    #: vLLM's --pipeline-parallel-size: the node's fleet.tp GPUs run as this many pipeline stages of
    #: fleet.tp / pipeline_parallel_size tensor-parallel GPUs each (e.g. fleet.tp = 8 with 2: TP4 x PP2).
    #: Must divide fleet.tp; dense full-attention models only (``sojourn.perf.PerfModel.pp``). Left out of
    #: the serialised form at 1, so scenarios (and studies' fingerprints) without it read as before.
    pipeline_parallel_size: int = Field(default=1, ge=1, exclude_if=lambda v: v == 1)
    #: vLLM's --data-parallel-size for a mixture-of-experts model (SGLang's and TensorRT-LLM's attention DP): the
    #: node's fleet.tp GPUs run as this many attention ranks of fleet.tp / data_parallel_size tensor-parallel GPUs
    #: each, every rank with its own sequences and its own max_num_seqs and max_num_batched_tokens, the experts
    #: over all fleet.tp GPUs (expert-parallel with enable_expert_parallel). Must divide fleet.tp; MoE models
    #: only (``sojourn.perf.PerfModel.dp``). Left out of the serialised form at 1.
    data_parallel_size: int = Field(default=1, ge=1, exclude_if=lambda v: v == 1)
    discipline: Literal[SCENARIO_DISCIPLINES] = "fifo"  # type: ignore[valid-type]
    #: Requests waiting beyond this many in the central queue are rejected (None: unbounded).
    max_queue: int | None = Field(default=None, ge=0)
    #: A per-request work forecast for ``sjf_work`` and ``triage``: its error, the standard
    #: deviation of log(forecast / truth) of the output length (engine) or of the service
    #: time (generic server); 0 is an oracle. Unset: no per-request forecast, the scheduler
    #: knows only the distribution (its median for triage, its mean for sjf_work).
    forecast_sigma: float | None = Field(default=None, ge=0, le=10)
    #: What happens to unfinished work at its deadline: dropped (as batch APIs do) or finished late.
    on_deadline: Literal["cancel", "finish"] = "cancel"
    #: Performance profile: a shipped profile name or a path to a profile file from ``sojourn calibrate``.
    profile: str | None = None
    backend: Literal["vllm", "sglang", "trtllm"] = "vllm"
    #: Automatic prefix caching (vLLM's --enable-prefix-caching, on by default in V1). It acts only
    #: on a workload with shared prefixes (``workload.prefix``); None means on.
    prefix_caching: bool | None = None

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # Unset, the key is left out, so a scenario serialises (and fingerprints) as before it existed.
        data = handler(self)
        if self.prefix_caching is None and isinstance(data, dict):
            data.pop("prefix_caching", None)
        return data

    def check_engine(self) -> None:
        """The rule between settings that an engine replica needs (a generic server reads none of
        them): vLLM refuses a step budget below the sequence limit, as every running sequence
        needs a token of each step. A ConfigError naming ``serving.max_num_batched_tokens``."""
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ConfigError(
                "serving.max_num_batched_tokens",
                f"{self.max_num_batched_tokens} is below max_num_seqs={self.max_num_seqs}; allowed: >= max_num_seqs",
            )


class SimulationSettings(_Strict):
    horizon_hours: float = Field(default=168, gt=0)
    warmup_hours: float = Field(default=24, ge=0)
    replications: int = Field(default=8, ge=2)
    seed: int = Field(default=1, ge=0)
    fidelity: Literal[FIDELITIES] = "request"  # type: ignore[valid-type]
    #: Size limits, so a run that would take hours or exhaust memory is refused up front with
    #: its estimate: the requests the request tier is expected to simulate, all replications
    #: together (``Scenario.expected_requests``), and the batches the fast tier holds in one
    #: replication. ``sojourn simulate --max-requests/--max-batches`` override them. They change
    #: no result, so they are left out of the scenario's serialised form (a study's
    #: fingerprint); ``with_updates`` keeps them.
    max_requests: int = Field(default=DEFAULT_MAX_REQUESTS, ge=1, exclude=True)
    max_batches: int = Field(default=DEFAULT_MAX_BATCHES, ge=1, exclude=True)
    #: How replications begin: ``stationary`` with the work in system drawn from the fleet's
    #: stationary law (where it has one: not for traces or rate profiles), so a run near full
    #: load is not a transient; ``empty`` with an empty fleet (then warm-up must cover several
    #: relaxation times, and the result says when it does not). See ``sojourn.steady``.
    start: Literal["stationary", "empty"] = "stationary"


#: Catalogues built from a scenario's overrides, by content (``sojourn._cache``): a study
#: builds one per trial otherwise, reading and validating the override file each time.
_CATALOGUES: OrderedDict[tuple[Any, str], Any] = OrderedDict()
CATALOGUE_CACHE = 16
register("catalogue", _CATALOGUES.clear)


class CatalogueOverrides(_Strict):
    """Extra or overridden GPUs and models: from a file, or inline tables."""

    file: str | None = None
    gpus: dict[str, dict[str, Any]] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Scenario(_Strict):
    """A complete sizing problem: workload, model, fleet, serving, simulation settings."""

    sla_hours: float = Field(default=24, gt=0)
    workload: Workload
    model: ModelConfig = Field(default_factory=ModelConfig)
    fleet: Fleet = Field(default_factory=Fleet)
    serving: Serving = Field(default_factory=Serving)
    simulation: SimulationSettings = Field(default_factory=SimulationSettings)
    catalogue: CatalogueOverrides | None = None
    #: Directory that relative paths (traces, config.json, profiles) are resolved against.
    base_dir: str = Field(default=".", exclude=True)
    #: The pools' one-pool scenarios (``pool_scenarios``), built once.
    _pool_cache: list[tuple[FleetPool, Scenario]] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _hardware_fits(self) -> Scenario:
        # Generic servers stand for no real engine: only the GPU (for cost) must exist.
        if self.fleet.pools is not None:
            self.pool_scenarios()  # each pool validated as a one-pool scenario: its errors name the pool's field
            return self
        self.gpu_spec()
        if self.fleet.server is None:
            sv = self.serving
            sv.check_engine()
            limit = self.model_spec().max_position_embeddings
            if sv.max_model_len > limit:
                raise ConfigError(
                    "serving.max_model_len",
                    f"{sv.max_model_len} exceeds {self.model.name}'s max_position_embeddings={limit}; "
                    f"allowed: 1..{limit}",
                )
            self.perf_model()  # raises ConfigError naming the field when it does not fit
        return self

    # -- resolved objects ---------------------------------------------------

    def path(self, p: str) -> Path:
        """Resolve a path from the scenario file's directory."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else Path(self.base_dir) / q

    def catalogue_obj(self):
        """The catalogue this scenario reads: the built-in one with its overrides (cached by content)."""
        from sojourn.catalogue import default_catalogue

        if self.catalogue is None:
            return default_catalogue()
        file = str(self.path(self.catalogue.file)) if self.catalogue.file else None
        key = (file_stamp(file) if file else None,
               json.dumps([self.catalogue.gpus, self.catalogue.models], sort_keys=True, default=str))
        cat = _CATALOGUES.get(key)
        if cat is None:
            from sojourn.catalogue import Catalogue

            cat = default_catalogue()
            if file:
                cat = Catalogue.from_file(file, base=cat)
            if self.catalogue.gpus or self.catalogue.models:
                cat = cat.with_overrides(gpus=self.catalogue.gpus, models=self.catalogue.models)
            _CATALOGUES[key] = cat
            while len(_CATALOGUES) > CATALOGUE_CACHE:
                _CATALOGUES.popitem(last=False)
        else:
            _CATALOGUES.move_to_end(key)
        return cat

    def gpu_spec(self):
        return self.catalogue_obj().gpu(self.fleet.gpu)

    def model_spec(self):
        return self.catalogue_obj().model(self.model.name, base_dir=self.base_dir)

    def pool_scenarios(self) -> list[tuple[FleetPool, Scenario]]:
        """Each node pool with the one-pool scenario its nodes run (gpu, tp, its engine settings and
        price; ``fleet.nodes`` the pool's, at least 1 so a pool of none still validates). Without
        pools: the fleet as its one pool and this scenario itself. A pool's bad setting is a
        ConfigError naming it (``fleet.pools[1].tp``)."""
        fl = self.fleet
        if fl.pools is None:
            return [(FleetPool(gpu=fl.gpu, nodes=fl.nodes, tp=fl.tp,
                               price_usd_per_gpu_hour=fl.price_usd_per_gpu_hour), self)]
        if self._pool_cache is not None:
            return self._pool_cache
        out = []
        for i, pool in enumerate(fl.pools):
            updates = {"fleet.pools": None, **{_POOL_SETTINGS[k]: v for k, v in pool.model_dump(exclude_none=True).items()
                                               if k in _POOL_SETTINGS}}
            updates["fleet.nodes"] = max(pool.nodes, 1)
            try:
                sc = self.with_updates(updates)
            except ConfigError as err:
                field = _pool_field(err.field, i, pool)
                where = "" if field.startswith("fleet.pools") else f"on fleet.pools[{i}]'s nodes: "
                raise ConfigError(field, where + err.message) from None
            out.append((pool, sc))
        self._pool_cache = out
        return out

    def perf_model(self):
        """The engine performance model of one replica (validates that the model fits); with pools,
        the first pool's."""
        from sojourn.perf import build_perf_model

        if self.fleet.pools is not None:
            return self.pool_scenarios()[0][1].perf_model()

        return build_perf_model(
            model=self.model_spec(),
            gpu=self.gpu_spec(),
            tp=self.fleet.tp,
            precision=self.model.precision,
            profile=self.serving.profile,
            backend=self.serving.backend,
            serving=self.serving,
            base_dir=self.base_dir,
        )

    def calibration(self) -> tuple[bool, str]:
        """Whether this fleet's step-time factors are fitted on its own GPU's measurements, and how
        (``sojourn.perf.scenario_calibration``)."""
        from sojourn.perf import scenario_calibration

        c = scenario_calibration(self)  # a mixed fleet: calibrated when every pool's GPU is
        return c.calibrated, c.source

    @property
    def price_per_gpu_hour(self) -> float:
        if self.fleet.price_usd_per_gpu_hour is not None:
            return self.fleet.price_usd_per_gpu_hour
        return self.gpu_spec().price_usd_per_gpu_hour

    @property
    def cost_per_hour(self) -> float:
        """Rent cost of the fleet in $/hour (expected, with spot nodes and a capacity schedule:
        ``FleetRealism.cost_per_hour``)."""
        if self.fleet.pools is not None:  # the rent the plan adds: owned pools cost nothing more
            return sum(sc.price_per_gpu_hour * p.tp * p.nodes for p, sc in self.pool_scenarios() if not p.owned)
        realism = self.fleet_realism()
        if realism is not None:
            return realism.cost_per_hour()
        return self.price_per_gpu_hour * self.fleet.tp * self.fleet.nodes

    @property
    def owned_cost_per_hour(self) -> float:
        """The rent value of the owned pools' nodes (``fleet.pools[i].owned``; 0 without them): with
        ``cost_per_hour``, the rent of the whole fleet."""
        return sum(sc.price_per_gpu_hour * p.tp * p.nodes for p, sc in self.pool_scenarios() if p.owned)

    def fleet_realism(self) -> FleetRealism | None:
        """The fleet's failures, spot nodes and capacity schedule with the catalogue's defaults
        filled in (``sojourn.catalogue.reliability``), or None when none is set."""
        fl = self.fleet
        if fl.failures is None and fl.spot is None and fl.capacity_schedule is None:
            return None
        from sojourn.catalogue import reliability

        rel = reliability(fl.gpu)
        fa, sp, cs = fl.failures, fl.spot, fl.capacity_schedule
        if fl.pools is not None:
            return self._pools_realism()
        price = self.price_per_gpu_hour
        mtbf = None if fa is None else (fa.mtbf_hours_per_gpu or rel.mtbf_hours_per_gpu) / fl.tp
        schedule = None if cs is None else cs.nodes(fl.nodes)

        def pick(value: float | None, default: float) -> float:
            return default if value is None else value

        return FleetRealism(
            nodes=fl.nodes, tp=fl.tp, price=price, mtbf_node_h=mtbf,
            repair_h=pick(None if fa is None else fa.repair_hours, rel.repair_hours),
            on_failure="recompute" if fa is None else fa.on_failure,
            spot_nodes=0 if sp is None else sp.nodes_of(fl.nodes),
            spot_price=pick(None if sp is None else sp.price_usd_per_gpu_hour, price * (1.0 - rel.spot_discount)),
            reclaim_per_h=pick(None if sp is None else sp.reclaims_per_hour, rel.spot_reclaims_per_hour),
            notice_s=pick(None if sp is None else sp.notice_s, rel.spot_notice_s),
            reacquire_h=pick(None if sp is None else sp.reacquire_hours, rel.spot_reacquire_hours),
            schedule=schedule,
        )

    def _pools_realism(self) -> FleetRealism:
        """A mixed fleet's failures (spot nodes and a schedule are refused with pools): each pool's
        nodes fail at its own GPU's catalogue MTBF per GPU (or ``fleet.failures``' override) / its
        tp, and are repaired in its GPU's repair time (or the override)."""
        from sojourn.catalogue import reliability

        fa = self.fleet.failures
        assert fa is not None
        pools = []
        for p, sc in self.pool_scenarios():
            if p.nodes == 0:
                continue  # no node of it runs (``FleetSim`` builds the pools with nodes)
            rel = reliability(p.gpu)
            pools.append(PoolRealism(nodes=p.nodes, tp=p.tp, price=sc.price_per_gpu_hour,
                                     mtbf_node_h=(fa.mtbf_hours_per_gpu or rel.mtbf_hours_per_gpu) / p.tp,
                                     repair_h=fa.repair_hours if fa.repair_hours is not None else rel.repair_hours))
        rate = sum(p.nodes / p.mtbf_node_h for p in pools if p.mtbf_node_h is not None) / self.fleet.nodes
        rel0 = reliability(self.fleet.gpu)
        return FleetRealism(
            nodes=self.fleet.nodes, tp=pools[0].tp, price=pools[0].price, mtbf_node_h=1.0 / rate,
            repair_h=pools[0].repair_h, on_failure=fa.on_failure, spot_nodes=0, spot_price=pools[0].price,
            reclaim_per_h=rel0.spot_reclaims_per_hour, notice_s=rel0.spot_notice_s,
            reacquire_h=rel0.spot_reacquire_hours, schedule=None, pools=tuple(pools),
        )

    @property
    def prefix_caching(self) -> bool:
        """Whether the engines cache prefixes: a workload with shared prefixes, and caching not turned off."""
        return self.workload.prefix is not None and self.serving.prefix_caching is not False

    @property
    def sla_seconds(self) -> float:
        return self.sla_hours * 3600.0

    def expected_requests(self, replications: int | None = None) -> float | None:
        """Requests a request-tier run is expected to simulate: arrivals over warm-up and horizon,
        all replications (None for a trace replay, whose file bounds it)."""
        wl, sim = self.workload, self.simulation
        if wl.trace is not None or wl.batch_rate_per_hour is None:
            return None
        R = sim.replications if replications is None else replications
        return wl.mean_requests_per_hour * (sim.warmup_hours + sim.horizon_hours) * R

    def check_size(self, replications: int | None = None) -> None:
        """Refuse up front a request-tier run expected to simulate more requests than
        ``simulation.max_requests`` (a ConfigError with the estimate and how to raise the limit)."""
        wl, sim = self.workload, self.simulation
        n = self.expected_requests(replications)
        if n is None or not n > sim.max_requests:
            return
        if math.isinf(wl.batch_size.int_mean):
            raise ConfigError("workload.batch_size", "its mean is infinite (a pareto shape <= 1 without max), so a "
                                                     "run's size has no bound; set workload.batch_size.max")
        R = sim.replications if replications is None else replications
        profile = "" if wl.rate_profile is None else f" x rate_profile mean {sum(wl.rate_profile) / 24:.3g}"
        raise ConfigError(
            "simulation.max_requests",
            f"this run would simulate about {n:.3g} requests (workload.batch_rate_per_hour "
            f"{wl.batch_rate_per_hour:.6g}{profile} x mean batch_size {wl.batch_size.int_mean:.6g} x (warmup_hours "
            f"{sim.warmup_hours:.6g} + horizon_hours {sim.horizon_hours:.6g}) x {R} replications; about "
            f"{n / 2e5 / 3600:.3g} CPU-hours), above the limit of {sim.max_requests:.3g}; shorten "
            "simulation.horizon_hours, use fewer replications or the fast tier, or raise the limit "
            "(simulation.max_requests, or sojourn simulate --max-requests)",
        )

    def check_batches(self, batches: float, how: str) -> None:
        """Refuse up front a fast-tier replication of more than ``simulation.max_batches`` batches
        (``how``: where the count comes from)."""
        limit = self.simulation.max_batches
        if not batches > limit:
            return
        raise ConfigError(
            "simulation.max_batches",
            f"the fast tier would hold about {batches:.3g} batches in one replication ({how}; about "
            f"{batches * 320 / 2**30:.3g} GiB of memory), above the limit of {limit:.3g}; shorten "
            "simulation.horizon_hours, or raise the limit (simulation.max_batches, or sojourn simulate --max-batches)",
        )

    def with_updates(self, updates: dict[str, Any]) -> Scenario:
        """A copy with dotted-path updates (``{"fleet.nodes": 8}``), validated again."""
        data = self.model_dump(mode="json", exclude_none=True)
        for name in ("max_requests", "max_batches"):  # excluded from the dump: carry them over
            data.setdefault("simulation", {})[name] = getattr(self.simulation, name)
        for key, value in updates.items():
            node = data
            *parents, leaf = key.split(".")
            for part in parents:  # a list (fleet.pools) is indexed by number: fleet.pools.1.nodes
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            if isinstance(node, list):
                node[int(leaf)] = value
            else:
                node[leaf] = value
        return scenario_from_dict(data, base_dir=self.base_dir)


def _pool_field(field: str, i: int, pool: FleetPool) -> str:
    """The field of pool ``i`` an error of its one-pool scenario names (``fleet.tp`` -> ``fleet.pools[i].tp``;
    an engine setting the pool gives, too), else the scenario's own field."""
    given = pool.model_dump(exclude_none=True)
    for key, path in _POOL_SETTINGS.items():
        if field == path and (key in given or path.startswith("fleet.")):
            return f"fleet.pools[{i}].{key}"
    return field


#: The distribution tags pydantic puts in an error's path (derived from the union's registry).
_DIST_TAGS = frozenset(DISTRIBUTIONS)


def format_validation_error(err: ValidationError, prefix: str = "") -> ConfigError:
    """One ConfigError from a pydantic ValidationError: field path and allowed values, no traceback."""
    lines = []
    first_field = ""
    for e in err.errors(include_url=False):
        # Drop validator names and discriminated-union tags (e.g. 'lognormal') that pydantic
        # inserts in the path: the user wrote workload.batch_size.sigma, not ...lognormal.sigma.
        loc = [str(p) for p in e["loc"] if not str(p).startswith("function-") and str(p) not in _DIST_TAGS]
        field = ".".join(([prefix] if prefix else []) + loc)
        msg = e["msg"]
        inner = (e.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):  # raised by a cross-field check: it names its own field
            field, msg = inner.field, inner.message
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a setting of this section)"
        elif e["type"] == "literal_error" and "ctx" in e:
            msg = f"got {e.get('input')!r}; allowed: {e['ctx'].get('expected')}"
        elif e["type"] == "union_tag_invalid" and "ctx" in e:
            msg = f"unknown distribution {e['ctx'].get('tag')!r}; allowed: {e['ctx'].get('expected_tags')}"
        elif "input" in e and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        first_field = first_field or field
        lines.append(f"{field}: {msg}" if field else msg)
    if len(lines) == 1:
        return ConfigError(first_field, lines[0].split(": ", 1)[1] if first_field else lines[0])
    return ConfigError(first_field, "invalid settings:\n  " + "\n  ".join(lines))


def field_value(model: type[BaseModel], name: str, value: Any) -> Any:
    """``value`` validated by the rules of ``model``'s field ``name`` alone (its type, bounds, allowed
    values; finite numbers where the model says so), without the model's cross-field checks:
    how a command-line option or a study's search space is held to the setting it stands for.
    Raises pydantic's ValidationError."""
    info = model.model_fields[name]
    kind: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    config = ConfigDict(allow_inf_nan=model.model_config.get("allow_inf_nan", True))
    return TypeAdapter(kind, config=config).validate_python(value)


def setting_field(scenario: BaseModel, path: str) -> tuple[type[BaseModel], str] | None:
    """The model class and field name a dotted scenario path (``serving.block_size``) sets, or None
    where the path goes through a value that is not a section (unset, a table of free keys).
    A name that is no setting of its section is a ConfigError naming the path."""
    *parents, leaf = path.split(".")
    node: Any = scenario
    for i, part in enumerate(parents + [leaf]):
        fields = {n: f for n, f in type(node).model_fields.items() if n != "base_dir"}
        by_alias = {(f.alias or n): n for n, f in fields.items()}
        name = by_alias.get(part) or (part if part in fields else None)
        if name is None:
            where = ".".join(path.split(".")[:i]) or "the scenario"
            known = ", ".join(by_alias)
            raise ConfigError(path, f"not a scenario setting ({where} has: {known})")
        if i == len(parents):
            return type(node), name
        node = getattr(node, name)
        if isinstance(node, list) and i < len(parents):  # a list of sections (fleet.pools): indexed by number
            k = parents[i + 1] if i + 1 < len(parents) else leaf
            if not k.isdigit() or int(k) >= len(node):
                raise ConfigError(path, f"{'.'.join(path.split('.')[:i + 1])} has {len(node)} entries; "
                                        f"allowed: an index 0..{len(node) - 1} after it")
            if i + 1 == len(parents):
                return None
            try:
                return setting_field(node[int(k)], ".".join(path.split(".")[i + 2:]))
            except ConfigError as err:
                where = ".".join(path.split(".")[:i + 2])
                raise ConfigError(path, err.message.replace("the scenario has", f"{where} has")) from None
        if not isinstance(node, BaseModel):
            return None
    return None  # pragma: no cover


def scenario_from_dict(data: dict[str, Any], base_dir: str | Path = ".") -> Scenario:
    """Build and validate a Scenario from plain data (e.g. parsed TOML)."""
    payload = dict(data)
    payload["base_dir"] = str(base_dir)
    try:
        return Scenario.model_validate(payload, context={"base_dir": str(base_dir)})
    except ValidationError as err:
        raise format_validation_error(err) from None


def load_toml(path: str | Path, what: str = "scenario") -> dict[str, Any]:
    """Read a TOML file; a file that is missing, a folder, unreadable or not UTF-8, or a syntax
    error, is one ConfigError naming ``what`` (``sojourn._io.read_text``), not a traceback."""
    p = Path(path)
    text = read_text(p, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(what, f"{p} is not valid TOML: {err}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario TOML file; relative paths resolve from its directory."""
    p = Path(path)
    return scenario_from_dict(load_toml(p), base_dir=p.resolve().parent)

