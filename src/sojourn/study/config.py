"""Study files: a base scenario, the search space, the objectives, the constraints, how to run.

The search space names scenario fields: the short names of the study example
(``gpu``, ``tp``, ``nodes``, ``gpu_memory_utilization``, ``max_num_batched_tokens``,
``max_num_seqs``, ``discipline``, ``routing``, ``precision``, ``model``,
``enable_expert_parallel``) or any dotted scenario path (``serving.block_size``); a mixed
fleet's pool by its index (``fleet.pools.1.nodes``, ``fleet.pools.1.gpu``, ``fleet.pools.1.tp``:
keep pool 0, the nodes already owned, and search what to add as pool 1).
A configuration that does not validate (a model that does not fit at that tp, expert
parallelism on a dense model) is an infeasible trial with its reason, not simulated. A list is a categorical choice; a table
``{ low, high, log, step }`` a range (integers when both bounds are integers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sojourn._errors import ConfigError
from sojourn.scenario import (
    FIDELITIES,
    Scenario,
    field_value,
    format_validation_error,
    load_scenario,
    load_toml,
    scenario_from_dict,
    setting_field,
)

__all__ = ["Costs", "Range", "StudyConfig", "StudySettings", "load_study", "SHORT_NAMES"]

#: Short parameter names of the search space and the scenario field each sets.
SHORT_NAMES = {
    "gpu": "fleet.gpu",
    "tp": "fleet.tp",
    "nodes": "fleet.nodes",
    "routing": "fleet.routing",
    "model": "model.name",
    "precision": "model.precision",
    "enable_expert_parallel": "serving.enable_expert_parallel",
    "data_parallel_size": "serving.data_parallel_size",
    "pipeline_parallel_size": "serving.pipeline_parallel_size",
    "gpu_memory_utilization": "serving.gpu_memory_utilization",
    "max_num_batched_tokens": "serving.max_num_batched_tokens",
    "max_num_seqs": "serving.max_num_seqs",
    "discipline": "serving.discipline",
    "max_queue": "serving.max_queue",
    "block_size": "serving.block_size",
}


class _Strict(BaseModel):
    # Every number of a study is finite: inf and nan are refused at the field that holds them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Range(_Strict):
    """A numeric range of the search space."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _order(self) -> Range:
        if not self.high >= self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("log ranges need low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna does not support it)")
        return self

    @property
    def is_int(self) -> bool:
        return float(self.low).is_integer() and float(self.high).is_integer() and (
            self.step is None or float(self.step).is_integer()
        )


class Costs(_Strict):
    """Own-and-operate cost assumptions for ``compare-hardware`` (rent prices come from the catalogue)."""

    years: float = Field(default=4.0, gt=0)  # amortisation period of the purchase
    power_usd_per_kwh: float = Field(default=0.12, ge=0)
    pue: float = Field(default=1.3, ge=1)  # data-centre power usage effectiveness
    #: Hosting (space, network, staff) per GPU-hour; a typical colocation figure, override it.
    hosting_usd_per_gpu_hour: float = Field(default=0.25, ge=0)
    #: Average power draw as a fraction of TDP.
    power_fraction_of_tdp: float = Field(default=0.75, gt=0, le=1)


class StudySettings(_Strict):
    name: str
    scenario: str | dict[str, Any]
    n_trials: int = Field(default=60, ge=1)
    objectives: list[str] = Field(default_factory=lambda: ["sla_miss", "cost_per_hour"], min_length=1)
    budget_per_hour: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0)
    #: The replications' seed of every trial (common random numbers); default: ``seed``.
    #: Set it to rerun a search with another sampler seed on the same traffic.
    simulation_seed: int | None = Field(default=None, ge=0)
    storage: str | None = None  # default: SQLite next to the study file
    sampler: Literal["nsga2", "tpe"] = "tpe"
    #: Replications per trial (default: the scenario's); the front is confirmed with more.
    replications: int | None = Field(default=None, ge=2)
    confirm_replications: int | None = Field(default=None, ge=2)
    #: At most this many front trials (spread over the cost range) are re-simulated.
    confirm_max: int = Field(default=10, ge=1)
    #: Replications per confirmation job: a request-tier confirmation is split into jobs of this many
    #: replications, which the machines sharing the study's storage take up one by one (each on its
    #: ``--n-jobs`` local processes); the result is the same for any split. Default: the worker's
    #: ``--n-jobs``, so one job keeps one machine's processes busy.
    confirm_chunk: int | None = Field(default=None, ge=1)
    #: Horizon per trial (default: the scenario's).
    horizon_hours: float | None = Field(default=None, gt=0)
    fidelity: Literal[FIDELITIES] | None = None  # type: ignore[valid-type]
    #: Which estimate of P(miss) the sla_miss objective uses.
    sla_miss_statistic: Literal["upper", "mean"] = "upper"
    #: The miss probabilities objectives (sla_miss, batch_miss) read below this count as this:
    #: the models are not trusted further out, and a front of ever-smaller probabilities at
    #: ever-higher cost helps nobody. The trial's attributes keep the value computed.
    p_miss_floor: float = Field(default=1e-6, ge=0, lt=1)
    timeout_s: float | None = Field(default=None, gt=0)
    #: Seconds between a running trial's heartbeats in a database storage: a worker killed
    #: mid-trial leaves its trial failed (and its configuration re-queued) after twice this,
    #: not RUNNING forever (``StudyRunner.storage``). None: no heartbeat.
    heartbeat_s: int | None = Field(default=60, ge=1)
    n_jobs: int = Field(default=1, ge=1)
    output_dir: str | None = None  # default: <study dir>/<name>-out
    objectives_dir: str | None = None
    #: Offered load above this fraction of the fleet's capacity is infeasible without simulating.
    #: ``auto``: 1/(1 + CV) of the work offered in one SLA window, at most 0.98 (a fleet
    #: that keeps up with a window one standard deviation busier than the mean, outside the
    #: capacity model's 2% error of overload: ``sojourn.steady.load_margin``).
    max_load: float | Literal["auto"] = "auto"
    #: Choose ``nodes`` from what the study knows of the rest of the configuration: the
    #: cheapest node count the measured load allows, then the neighbours of its front
    #: points (``sojourn.study.sampler.NodesAwareSampler``). False: the sampler alone.
    refine_nodes: bool = True
    #: After the search, evaluate the unevaluated neighbours of every front point (node count
    #: ±1..2, the other TP sizes, the other disciplines) until none is left
    #: (``sojourn.study.polish``). ``sojourn study run --no-polish`` skips it once.
    polish: bool = True

    @field_validator("max_load")
    @classmethod
    def _max_load(cls, v: Any) -> Any:
        if v != "auto" and not (isinstance(v, (int, float)) and 0 < v < float("inf")):
            raise ValueError("must be a positive finite number or 'auto'")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ "):
            raise ValueError("must be a non-empty name without spaces or slashes")
        return v


class StudyConfig(_Strict):
    study: StudySettings
    space: dict[str, list[Any] | Range] = Field(default_factory=dict)
    costs: Costs = Field(default_factory=Costs)
    base_dir: str = Field(default=".", exclude=True)

    @field_validator("space", mode="before")
    @classmethod
    def _dotted(cls, v: Any) -> Any:
        """TOML reads ``serving.block_size = [16, 32]`` (unquoted) as a table ``serving`` holding
        ``block_size``: that is the dotted path ``serving.block_size``."""
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}

        def walk(prefix: str, table: dict[str, Any]) -> None:
            for key, spec in table.items():
                name = f"{prefix}.{key}" if prefix else key
                if isinstance(spec, dict) and spec and not set(spec) & set(Range.model_fields):
                    walk(name, spec)
                else:
                    out[name] = spec

        walk("", v)
        return out

    @field_validator("space")
    @classmethod
    def _space(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, spec in v.items():
            if isinstance(spec, list) and not spec:
                raise ValueError(f"{name}: a choice needs at least one value")
            if name not in SHORT_NAMES and "." not in name:
                raise ValueError(
                    f"{name}: unknown parameter; allowed: {', '.join(SHORT_NAMES)} or a dotted scenario path"
                )
        return v

    # -- derived --------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return Path(self.base_dir)

    def path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.dir / q

    @property
    def storage_url(self) -> str:
        if self.study.storage:
            s = self.study.storage
            if s.startswith("sqlite:///") and not s.startswith("sqlite:////"):
                rel = s[len("sqlite:///") :]
                return f"sqlite:///{self.path(rel).resolve()}"
            return s
        return f"sqlite:///{(self.dir / (self.study.name + '.db')).resolve()}"

    @property
    def output_dir(self) -> Path:
        return self.path(self.study.output_dir) if self.study.output_dir else self.dir / f"{self.study.name}-out"

    def base_scenario(self) -> Scenario:
        sc = self.study.scenario
        if isinstance(sc, str):
            return load_scenario(self.path(sc))
        return scenario_from_dict(sc, base_dir=self.dir)

    def scenario_field(self, name: str) -> str:
        return SHORT_NAMES.get(name, name)

    def check_size(self, base: Scenario) -> None:
        """Refuse, before any trial, a study whose request-tier runs (its trials at ``request``
        fidelity, the front's confirmations unless the study runs ``fast``) would each simulate
        more than the scenario's ``simulation.max_requests`` (``Scenario.check_size``)."""
        st = self.study
        fidelity = st.fidelity or base.simulation.fidelity
        if fidelity == "fast":
            return
        sized = base if st.horizon_hours is None else base.with_updates({"simulation.horizon_hours": st.horizon_hours})
        runs = {"the front's confirmations (study.confirm_replications)":
                st.confirm_replications or 2 * base.simulation.replications}
        if fidelity == "request":
            runs["each trial (study.replications)"] = st.replications or base.simulation.replications
        what, reps = max(runs.items(), key=lambda kv: kv[1])  # the largest run
        try:
            sized.check_size(reps)
        except ConfigError as err:
            raise ConfigError(err.field, f"{what} on the request tier: {err.message}") from None

    def check_space(self, base: Scenario) -> None:
        """Every value the search space can give is one its scenario setting allows: a path that
        is no setting, a value out of the setting's bounds or choices, a GPU or model not in the
        catalogue is a ConfigError naming ``space.<name>``, before any trial runs."""
        for name, spec in self.space.items():
            field = f"space.{name}"
            path = self.scenario_field(name)
            try:
                target = setting_field(base, path)
            except ConfigError as err:
                raise ConfigError(field, err.message) from None
            if isinstance(spec, Range):
                values = [int(spec.low), int(spec.high)] if spec.is_int else [spec.low, spec.high]
            else:
                values = list(spec)
            if target is not None:
                model, leaf = target
                if isinstance(spec, Range) and _is_literal(model.model_fields[leaf].annotation):
                    raise ConfigError(field, f"{path} takes only certain values: give them as a list, not a range")
                for value in values:
                    try:
                        field_value(model, leaf, value)
                    except ValidationError as err:
                        e = err.errors(include_url=False)[0]
                        msg = e["msg"]
                        if e["type"] == "literal_error" and "ctx" in e:
                            msg = f"allowed: {e['ctx'].get('expected')}"
                        raise ConfigError(field, f"{value!r} is not a value of {path}: {msg}") from None
            pool_gpu = path.startswith("fleet.pools.") and path.endswith(".gpu")  # a pool's GPU type
            lookup = {"fleet.gpu": lambda v: base.catalogue_obj().gpu(v),
                      "model.name": lambda v: base.catalogue_obj().model(v, base_dir=base.base_dir)
                      }.get("fleet.gpu" if pool_gpu else path)
            if lookup is None:
                continue
            for value in values:
                try:
                    lookup(value)
                except ConfigError as err:
                    raise ConfigError(field, err.message) from None


def _is_literal(annotation: Any) -> bool:
    """A Literal type, or an optional one."""
    if get_origin(annotation) is Literal:
        return True
    return any(get_origin(a) is Literal for a in get_args(annotation))


def load_study(path: str | Path) -> StudyConfig:
    """Load and validate a study TOML file (and its base scenario)."""
    p = Path(path)
    data = load_toml(p, what="study")
    data["base_dir"] = str(p.resolve().parent)
    try:
        cfg = StudyConfig.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err) from None
    try:
        base = cfg.base_scenario()
    except ConfigError as err:
        raise ConfigError(f"study.scenario ({err.field})" if err.field else "study.scenario", err.message) from None
    cfg.check_space(base)
    cfg.check_size(base)
    from sojourn.study.objectives import check_objectives, find_objectives_dir, load_objectives

    objectives = load_objectives(cfg.study.objectives, find_objectives_dir(cfg.dir, cfg.study.objectives_dir))
    check_objectives(objectives, base, cfg.study)
    return cfg
