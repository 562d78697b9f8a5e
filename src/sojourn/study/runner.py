"""Running a sizing study: Optuna proposes configurations, simulation scores them.

Every trial simulates the same traffic (common random numbers: the study seed is
every trial's replication seed), so two configurations are compared on the same
batches. Configurations that cannot work — the model does not fit, the offered
load exceeds the fleet's capacity — are settled by a cheap check and recorded as
infeasible (with the reason) without simulating. The study lives in an Optuna
storage (SQLite next to the study file by default), so it resumes after a crash
or Ctrl-C with every finished trial intact.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna

from sojourn._errors import ConfigError
from sojourn._interrupt import in_stoppable, stoppable
from sojourn.result import Result, storable
from sojourn.scenario import Scenario
from sojourn.study.config import Range, StudyConfig
from sojourn.study.objectives import Objective, find_objectives_dir, load_objectives

__all__ = [
    "INFEASIBLE_ATTR",
    "count_trials",
    "StudyRunner",
    "evaluate",
    "pessimistic_result",
    "suggest",
    "told_elsewhere",
]

#: User attribute holding the constraint values (<= 0 is feasible): [cost - budget, infeasible].
CONSTRAINTS_ATTR = "constraints"
INFEASIBLE_ATTR = "infeasible_reason"
#: User attribute of a trial that repeated an evaluated configuration: that trial's number.
DUPLICATE_ATTR = "duplicate_of"
#: A trial that stepped back because others had reached the study's total (pruned, not counted).
OVER_TOTAL_ATTR = "over_total"
#: Study attribute holding what its results depend on (``StudyRunner.fingerprint``).
FINGERPRINT_ATTR = "fingerprint"
#: Times a configuration whose worker died is enqueued again (``RetryHeartbeatStaleTrialCallback``).
RETRIES = 3


def suggest(trial: optuna.trial.BaseTrial, space: dict[str, Any]) -> dict[str, Any]:
    """Draw one configuration from the search space (works with FixedTrial too)."""
    params: dict[str, Any] = {}
    # nodes last: a sampler choosing it (NodesAwareSampler) sees the rest of the configuration.
    for name, spec in sorted(space.items(), key=lambda kv: kv[0] == "nodes"):
        if isinstance(spec, Range):
            if spec.is_int:
                step = int(spec.step) if spec.step else 1
                params[name] = trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log)
            else:
                params[name] = trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)
        else:
            params[name] = trial.suggest_categorical(name, list(spec))
    return params


def pessimistic_result(scenario_cost: float) -> Result:
    """The result assigned to a configuration that cannot work: every request misses.

    Its fidelity is "check" (settled without simulating) and its infinities are exact,
    so they stay ``inf`` (a study stores them as "inf").
    """
    return Result.build(
        p_miss=1.0,
        p_miss_ci=(1.0, 1.0),
        p_miss_upper=1.0,
        batch_miss=1.0,
        sojourn_mean_s=math.inf,
        sojourn_p50_s=math.inf,
        sojourn_p99_s=math.inf,
        throughput_rps=0.0,
        cost_per_hour=scenario_cost,
        fidelity="check",
    )


#: Completions timed on a saturated node for a trial's capacity (the fast tier's default
#: is 100,000, ~0.2% error); 20,000 (~0.5%) is enough to screen, and 5x cheaper.
SCREEN_CAPACITY_MEASURE = 20_000


def screen_capacity(scenario: Scenario) -> Any:
    """The node capacity used to screen a trial, or None when it cannot be had."""
    from sojourn.fast import node_capacity

    try:
        return node_capacity(scenario, measure=SCREEN_CAPACITY_MEASURE)
    except ConfigError:
        return None


def offered_load(scenario: Scenario, capacity: Any = None) -> float | None:
    """Offered work over fleet capacity (fast tier), or None when it cannot be computed."""
    from sojourn.fast import offered_load as _load

    if capacity is None:
        return None
    try:
        return float(_load(scenario, capacity))
    except ConfigError:
        return None


def evaluate(
    scenario: Scenario,
    fidelity: str = "request",
    replications: int | None = None,
    n_jobs: int = 1,
    capacity: Any = None,
    progress: Any = False,
    resume: Any = None,
    on_replication: Any = None,
) -> Result:
    """Simulate a scenario at the given fidelity and return its ``Result`` (``progress``, ``resume``,
    ``on_replication``: ``request.simulate``'s)."""
    from sojourn.evaluate import run_scenario

    return run_scenario(scenario, fidelity=fidelity, replications=replications, n_jobs=n_jobs, capacity=capacity,
                        progress=progress, resume=resume, on_replication=on_replication)


#: The study's storage form of a value (``sojourn.result.storable``; confirm.py imports this name).
_jsonable = storable


@dataclass
class StudyRunner:
    """Everything a study needs: config, objectives, the Optuna study."""

    cfg: StudyConfig
    n_jobs: int = 1
    progress: bool = False
    interrupted: bool = False
    #: Several workers on one shared storage: each needs its own sampler seed.
    worker_id: int = 0

    def __post_init__(self) -> None:
        self.objectives: list[Objective] = load_objectives(
            self.cfg.study.objectives, find_objectives_dir(self.cfg.dir, self.cfg.study.objectives_dir)
        )
        self.base = self.cfg.base_scenario()
        # The load above which a trial is not simulated (``sojourn.steady.load_margin`` for "auto").
        if self.cfg.study.max_load == "auto":
            from sojourn.steady import load_margin

            self.max_load, self.max_load_reason = load_margin(self.base)
        else:
            self.max_load, self.max_load_reason = float(self.cfg.study.max_load), "study.max_load"
        # Trials run at this fidelity ("auto": the fast tier where it applies); the front
        # is always confirmed at request level.
        self.fidelity = self.cfg.study.fidelity or self.base.simulation.fidelity
        self.trial_fidelity = self.fidelity
        self.confirm_fidelity = "fast" if self.fidelity == "fast" else "request"

    def request_tier_choices(self) -> list[str]:
        """The disciplines and routings a trial may take that the fast tier does not model.

        Under ``fidelity = "auto"`` those trials run the request tier in full, which for a
        large workload is orders of magnitude slower than a fast trial; ``study run`` says so.
        """
        from sojourn.fast import FAST_DISCIPLINES
        from sojourn.study.config import SHORT_NAMES

        values: dict[str, set[Any]] = {
            "serving.discipline": {self.base.serving.discipline},
            "fleet.routing": {self.base.fleet.routing},
        }
        for name, dom in self.cfg.space.items():
            path = SHORT_NAMES.get(name, name)
            if path in values and isinstance(dom, list):
                values[path] = set(dom)
        slow = [f"discipline {d}" for d in sorted(values["serving.discipline"]) if d not in FAST_DISCIPLINES]
        slow += [f"routing {r}" for r in sorted(values["fleet.routing"]) if r != "pull"]
        return slow

    # -- Optuna objects --------------------------------------------------------

    @property
    def shared_storage(self) -> bool:
        """A database server that several workers may share (anything but SQLite and memory)."""
        url = self.cfg.storage_url
        return not (url.startswith("sqlite:") or url.startswith("memory"))

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        return [o.direction for o in self.objectives]

    def sampler(self, offset: int = 0) -> optuna.samplers.BaseSampler:
        seed = self.cfg.study.seed + offset + 1_000_003 * self.worker_id
        base: optuna.samplers.BaseSampler
        if self.cfg.study.sampler == "nsga2":
            pop = max(8, min(50, self.cfg.study.n_trials // 5))
            base = optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)
        else:
            base = optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                              n_startup_trials=max(5, min(20, self.cfg.study.n_trials // 4)))
        spec = self.cfg.space.get("nodes")
        if self.cfg.study.refine_nodes and isinstance(spec, Range) and spec.is_int:
            from sojourn.study.sampler import NodesAwareSampler

            return NodesAwareSampler(base, self)
        return base

    def load(self, create: bool = True) -> optuna.Study:
        """The study in its storage (created when absent, unless ``create`` is False).

        Workers started together on a new database race to create its tables and the
        study: the loser's error is retried (a few times, with a short random pause).
        A storage that cannot be opened is a ConfigError naming ``study.storage``.
        """
        import random
        import time

        from sqlalchemy.exc import SQLAlchemyError

        for attempt in range(6):
            try:
                return self._load(create)
            except SQLAlchemyError as err:
                reason = str(err).splitlines()[0]
                race = any(m in reason for m in ("already exists", "duplicate key", "UniqueViolation",
                                                  "UNIQUE constraint failed", "database is locked"))
                if attempt == 5 or not race:
                    raise ConfigError("study.storage", f"cannot open {self.display_url()}: {reason}") from None
                time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
            except (ImportError, ModuleNotFoundError) as err:
                raise ConfigError("study.storage", f"cannot open {self.display_url()}: {err} "
                                  "(for PostgreSQL: pip install 'sojourn[postgres]')") from None
        raise AssertionError("unreachable")

    def display_url(self) -> str:
        """The storage URL without its password."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        url = self.cfg.storage_url
        try:
            return make_url(url).render_as_string(hide_password=True)
        except ArgumentError:  # not a database URL (e.g. "memory")
            return url

    def storage(self) -> Any:
        """The study's storage: for a database, Optuna's RDBStorage with a heartbeat.

        Each running trial beats every ``heartbeat_s`` seconds; a trial whose worker died
        (SIGKILL, a lost machine) stops beating, and after twice that the next trial any
        worker starts fails it (Optuna's ``fail_stale_trials``) and
        ``RetryHeartbeatStaleTrialCallback`` enqueues its configuration again, so nothing stays
        RUNNING and no configuration is lost. One storage object per runner.
        """
        if getattr(self, "_storage", None) is not None:
            return self._storage
        url = self.cfg.storage_url
        beat = self.cfg.study.heartbeat_s
        if url.startswith("memory") or beat is None:
            self._storage: Any = url  # the URL (Optuna builds its storage) or an RDBStorage
            return url
        import warnings

        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            self._storage = RDBStorage(
                url, heartbeat_interval=int(beat), grace_period=int(max(2 * beat, beat + 1)),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=RETRIES))
        return self._storage

    def fingerprint(self) -> dict[str, Any]:
        """What a study's stored results depend on: a study file that changes any of it is a new study."""
        import hashlib

        st = self.cfg.study
        scenario = json.dumps(self.base.model_dump(mode="json"), sort_keys=True, default=str)
        return {
            "objectives": [o.name for o in self.objectives],
            "space": {k: (v.model_dump() if isinstance(v, Range) else list(v)) for k, v in sorted(self.cfg.space.items())},
            "scenario_sha256": hashlib.sha256(scenario.encode()).hexdigest()[:16],
            "sla_miss_statistic": st.sla_miss_statistic,
            "p_miss_floor": st.p_miss_floor,
            "budget_per_hour": st.budget_per_hour,
            "simulation_seed": st.seed if st.simulation_seed is None else st.simulation_seed,
            "replications": st.replications,
            "horizon_hours": st.horizon_hours,
            "fidelity": self.fidelity,
        }

    def _check_fingerprint(self, study: optuna.Study) -> None:
        """Refuse a study file whose objectives or result-changing settings differ from the stored study's."""
        now = json.loads(json.dumps(self.fingerprint(), default=str))
        stored = study.user_attrs.get(FINGERPRINT_ATTR)
        if stored is None:
            names = study.user_attrs.get("objectives")
            if names is not None and list(names) != now["objectives"]:
                stored = {"objectives": list(names)}
            elif study.trials:
                return  # a study made before fingerprints: nothing to compare but the objectives
        if stored is not None:
            diff = [k for k in now if k in stored and stored[k] != now[k]]
            if diff:
                what = "; ".join(f"{k}: stored {stored[k]!r}, file {now[k]!r}" for k in diff)
                raise ConfigError(
                    f"study.{diff[0]}" if diff[0] in type(self.cfg.study).model_fields else "study",
                    f"the study {self.cfg.study.name!r} in its storage was run with other settings ({what}): its "
                    "stored results would be mixed with new ones. Give the study a new name (study.name), or "
                    "restore the settings")
        study.set_user_attr(FINGERPRINT_ATTR, now)

    def _load(self, create: bool) -> optuna.Study:
        text = self.cfg.storage_url
        if not create:
            db = text[len("sqlite:///"):] if text.startswith("sqlite:///") else None
            if db is not None and not Path(db).exists():  # don't leave an empty database behind
                raise ConfigError("study.name", f"no study {self.cfg.study.name!r}: {db} does not exist; "
                                  "run `sojourn study run` first")
        url = self.storage()
        if not create:
            try:
                study = optuna.load_study(study_name=self.cfg.study.name, storage=url)
            except KeyError:
                raise ConfigError("study.name", f"no study {self.cfg.study.name!r} in {self.display_url()}; "
                                  "run `sojourn study run` first") from None
            return study
        existing = 0
        try:
            existing = len(optuna.load_study(study_name=self.cfg.study.name, storage=url).trials)
        except KeyError:
            pass
        study = optuna.create_study(
            study_name=self.cfg.study.name,
            storage=url,
            directions=self.directions,
            sampler=self.sampler(offset=existing),
            load_if_exists=True,
        )
        if list(study.directions) != [optuna.study.StudyDirection.MINIMIZE if d == "minimize" else optuna.study.StudyDirection.MAXIMIZE for d in self.directions]:
            raise ConfigError("study.objectives", "the stored study has other objectives; use a new study name")
        self._check_fingerprint(study)
        study.set_user_attr("objectives", [o.name for o in self.objectives])
        study.set_user_attr("budget_per_hour", self.cfg.study.budget_per_hour)
        return study

    # -- one trial -------------------------------------------------------------

    def trial_scenario(self, params: dict[str, Any]) -> Scenario:
        updates = {self.cfg.scenario_field(k): v for k, v in params.items()}
        # Common random numbers across trials.
        sim_seed = self.cfg.study.simulation_seed
        updates["simulation.seed"] = self.cfg.study.seed if sim_seed is None else sim_seed
        if self.cfg.study.replications:
            updates["simulation.replications"] = self.cfg.study.replications
        if self.cfg.study.horizon_hours:
            updates["simulation.horizon_hours"] = self.cfg.study.horizon_hours
        return self.base.with_updates(updates)

    def _cost_of(self, params: dict[str, Any]) -> float:
        """Rent cost even for a configuration that does not validate (the GPU still has a price)."""
        fleet = self.base.fleet
        if fleet.pools is not None:  # a mixed fleet: the rent of its pools not owned, the trial's pool values set
            cat = self.base.catalogue_obj()
            total = 0.0
            for i, pool in enumerate(fleet.pools):
                p = {**pool.model_dump(), **{k.rsplit(".", 1)[1]: v for k, v in params.items()
                                             if k.startswith(f"fleet.pools.{i}.")}}
                if not p["owned"]:
                    price = p["price_usd_per_gpu_hour"]
                    price = cat.gpu(p["gpu"]).price_usd_per_gpu_hour if price is None else price
                    total += float(price) * int(p["tp"]) * int(p["nodes"])
            return total
        gpu = params.get("gpu", fleet.gpu)
        tp = params.get("tp", fleet.tp)
        nodes = params.get("nodes", fleet.nodes)
        price = fleet.price_usd_per_gpu_hour
        if price is None:
            price = self.base.catalogue_obj().gpu(gpu).price_usd_per_gpu_hour
        return float(price) * int(tp) * int(nodes)

    def objective(
        self, seen: dict[tuple, optuna.trial.FrozenTrial] | None = None, total: int | None = None
    ) -> Callable[[optuna.trial.BaseTrial], tuple[float, ...]]:
        """The trial function. ``seen`` maps configurations already evaluated to their trial:
        a sampler that proposes one again (frequent in discrete spaces) gets the stored
        result instead of a second, identical simulation (common random numbers make it so).
        ``total``: the study's total of configurations, which a trial started by several
        workers at once must not overshoot (``_over_total``)."""
        budget = self.cfg.study.budget_per_hour

        def fn(trial: optuna.trial.BaseTrial) -> tuple[float, ...]:
            if total is not None and isinstance(trial, optuna.Trial):
                _over_total(trial, total)
            params = suggest(trial, self.cfg.space)
            key = tuple(sorted(params.items()))
            if seen is not None and key not in seen and isinstance(trial, optuna.Trial) and self.shared_storage:
                # Another worker may have evaluated it since this one started.
                for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                    if DUPLICATE_ATTR not in t.user_attrs:
                        seen.setdefault(tuple(sorted(t.params.items())), t)
            if seen is not None and key in seen:
                prev = seen[key]
                for k, v in prev.user_attrs.items():
                    trial.set_user_attr(k, v)
                trial.set_user_attr(DUPLICATE_ATTR, prev.number)
                for k, v in prev.constraints.items():
                    trial.set_constraint(k, v)
                return tuple(prev.values)
            reason = None
            scenario = None
            try:
                scenario = self.trial_scenario(params)
                cost = scenario.cost_per_hour
            except ConfigError as err:
                reason = str(err)
                cost = self._cost_of(params)
            if reason is None and budget is not None and cost > budget:
                # Cannot be on the front within budget: not worth a simulation.
                reason = f"cost {cost:.2f} $/h above the budget {budget:g} $/h"
            cap = None
            if reason is None and scenario is not None and self.trial_fidelity == "fast":
                from sojourn.evaluate import fast_applies

                why_not = fast_applies(scenario)
                if why_not is not None:
                    reason = f"not modelled by the fast tier this study runs at: {why_not}"
            if reason is None and scenario is not None:
                cap = screen_capacity(scenario)
                load = offered_load(scenario, cap)
                if load is not None:
                    trial.set_user_attr("load", load)
                    if load >= self.max_load:
                        reason = f"offered load {load:.3f} of capacity >= max_load {self.max_load:.3f} ({self.max_load_reason})"
            if reason is not None:
                result = pessimistic_result(cost)
                trial.set_user_attr(INFEASIBLE_ATTR, reason)
                values_scenario: Any = scenario if scenario is not None else _CostOnly(cost)
            else:
                assert scenario is not None  # a scenario that could not be built gave a reason
                with stoppable():  # a second Ctrl-C aborts the simulation, never Optuna's bookkeeping
                    result = Result.from_dict(evaluate(scenario, self.trial_fidelity, n_jobs=self.n_jobs,
                                                       capacity=cap))
                values_scenario = scenario
            for k, v in result.to_storage().items():
                trial.set_user_attr(k, v)
            trial.set_user_attr("cost_per_hour", cost)
            # Constraints (<= 0 is feasible), seen by the samplers; also a user attribute for the dashboard.
            over = cost - budget if budget is not None else 0.0
            trial.set_constraint("over_budget", over)
            trial.set_constraint("infeasible", 1.0 if reason else 0.0)
            trial.set_user_attr(CONSTRAINTS_ATTR, [over, 1.0 if reason else 0.0])
            return tuple(o(result, values_scenario, self.cfg.study) for o in self.objectives)

        return fn

    # -- the whole run -----------------------------------------------------------

    def run(self, n_trials: int | None = None, timeout: float | None = None) -> optuna.Study:
        """Run trials: ``n_trials`` more, or up to the study file's total when None.

        The first Ctrl-C lets the running trial finish and stops (``interrupted`` is
        then True); a second one aborts the running trial. Finished trials are always
        in the storage, so running again resumes.
        """
        self.interrupted = False
        return self.guarded(lambda: self._run(n_trials, timeout))

    def guarded(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` with Ctrl-C turned into ``interrupted`` (the running trial finishes; twice aborts it)."""
        handler = None
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:

            def on_sigint(signum: int, frame: Any) -> None:
                if self.interrupted:
                    if in_stoppable():  # within a simulation; elsewhere the trial is ending anyway
                        raise KeyboardInterrupt
                    return
                self.interrupted = True
                print("stopping after the running trial (Ctrl-C again to abort it)", file=sys.stderr)

            handler = signal.signal(signal.SIGINT, on_sigint)
        try:
            return fn()
        finally:
            if handler is not None:
                signal.signal(signal.SIGINT, handler)

    def _run(self, n_trials: int | None, timeout: float | None) -> optuna.Study:
        """Evaluate configurations up to the study file's ``n_trials`` in all, or ``n_trials`` more.

        Without ``n_trials`` the file's ``n_trials`` is the study's total, whatever the
        number of workers sharing its storage: each worker stops once the configurations
        evaluated in the storage, with those other workers are evaluating now, reach it
        (a restarted worker goes on from the count stored). A trial that repeats an
        evaluated configuration is answered from the stored result (``duplicate_of``) and
        does not count, nor does a failed one: ``n_trials`` means configurations
        evaluated. A space with fewer new configurations than asked ends the run after
        ``10 x n + 100`` trials in all.
        """
        import time

        study = self.load()
        total = n_trials is None
        done = count_trials(study)["evaluated"]
        todo = max(0, self.cfg.study.n_trials - done) if n_trials is None else n_trials
        if todo <= 0:
            return study
        seen = {
            tuple(sorted(t.params.items())): t
            for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE and DUPLICATE_ATTR not in t.user_attrs
        }
        count = [0]
        mine = [0]  # this worker's trials, for the attempts limit
        from sojourn._progress import bar as progress_bar

        pbar = progress_bar(todo, f"{self.cfg.study.name}: search", unit="config", enabled=self.progress)

        def remember(st: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
            mine[0] += 1
            if t.state == optuna.trial.TrialState.COMPLETE and DUPLICATE_ATTR not in t.user_attrs:
                seen.setdefault(tuple(sorted(t.params.items())), t)
                if not total:
                    count[0] += 1
            if total:
                c = count_trials(st)
                # Trials other workers run now will count when they finish: do not start one more.
                count[0] = c["evaluated"] + c["running"] - done
            if pbar.n != min(count[0], todo):
                pbar.n = min(count[0], todo)
                pbar.refresh()
            if count[0] >= todo:
                st.stop()

        def stop_if_asked(st: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
            if self.interrupted:
                st.stop()

        limit = timeout or self.cfg.study.timeout_s
        deadline = None if limit is None else time.monotonic() + limit
        attempts = 10 * todo + 100
        with pbar:
            while count[0] < todo and mine[0] < attempts and not self.interrupted:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                n = min(todo - count[0], attempts - mine[0])
                try:
                    study.optimize(self.objective(seen, self.cfg.study.n_trials if total else None),
                                   callbacks=[remember, stop_if_asked], n_trials=n, timeout=left,
                                   catch=())
                except ValueError as err:  # a retried trial two workers popped at once: the other told it
                    if not told_elsewhere(err):
                        raise
        return study


def told_elsewhere(err: ValueError) -> bool:
    """Whether ``err`` is Optuna refusing to tell a trial another worker has told already.

    SQLite has no row locks: two workers sharing a study can pop the same waiting trial (one
    enqueued: polish's neighbours, a confirmation job, a trial the heartbeat re-queued), and
    the second to finish finds it told. The first one's result is stored; the second goes on
    (the trial cost twice the time, never a wrong result).
    """
    return str(err).startswith("Cannot tell a")


def _over_total(trial: optuna.Trial, total: int) -> None:
    """Step back (pruned, not counted) when the trials before this one already make the study's total.

    Workers check the count between trials, so two can start the last one at once. Each
    started trial is in the storage before it runs: the one numbered later sees the other
    RUNNING and yields. Trials that end as repeats or failures leave the count short; the
    workers' loops then start more.
    """
    S = optuna.trial.TrialState
    ahead = 0
    for t in trial.study.get_trials(deepcopy=False, states=(S.COMPLETE, S.RUNNING)):
        if t.state == S.COMPLETE and DUPLICATE_ATTR not in t.user_attrs:
            ahead += 1
        elif t.state == S.RUNNING and t.number < trial.number:
            ahead += 1
    if ahead >= total:
        trial.set_user_attr(OVER_TOTAL_ATTR, True)
        raise optuna.TrialPruned(f"the study's total of {total} is reached by trials other workers run")


def count_trials(study: optuna.Study) -> dict[str, int]:
    """The study's trials by what they mean: configurations evaluated, repeats, failed, running, waiting.

    ``evaluated`` counts complete trials that are not repeats (``duplicate_of``): what
    ``n_trials`` counts. Failed trials (an error, a double Ctrl-C, a worker that died and
    whose configuration was re-queued) and repeats are counted apart.
    """
    c = {"evaluated": 0, "repeats": 0, "failed": 0, "running": 0, "waiting": 0, "pruned": 0}
    S = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False):
        if t.state == S.COMPLETE:
            c["repeats" if DUPLICATE_ATTR in t.user_attrs else "evaluated"] += 1
        elif t.state == S.FAIL:
            c["failed"] += 1
        elif t.state == S.RUNNING:
            c["running"] += 1
        elif t.state == S.WAITING:
            c["waiting"] += 1
        else:
            c["pruned"] += 1
    return c


def _feasible(t: optuna.trial.FrozenTrial) -> bool:
    return all(c <= 0 for c in t.user_attrs.get(CONSTRAINTS_ATTR, [0.0]))


def _dominates(a: Any, b: Any, signs: Sequence[int]) -> bool:
    """a dominates b: no worse in every objective, better in one (signs: +1 minimise, -1 maximise)."""
    pairs = [(s * x, s * y) for x, y, s in zip(a, b, signs)]
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


class _CostOnly:
    """Stands in for a scenario that did not validate: objectives may still ask its cost."""

    def __init__(self, cost: float) -> None:
        self.cost_per_hour = cost
