"""Polish: after the search, evaluate the neighbours of every front point until none is left unevaluated.

A sampler (TPE, NSGA-II, even ``NodesAwareSampler``) stops with configurations next to
the front it never tried, and some of them dominate front points: the quickstart ended
with 5 of its 16 points beaten by untried tp1 x 10 and x 12 fleets. The neighbours of a
point are what a planner would try next by hand:

* the node count ±1 and ±2 (within the space);
* each other tensor-parallel size, at the same node count and at the same GPU count;
* each other discipline;

every other setting unchanged (a continuous one such as ``gpu_memory_utilization``
keeps the point's value). They are evaluated as ordinary trials of the study
(``Study.enqueue_trial``: fixed parameters bypass the sampler, ``NodesAwareSampler``
included; the storage keeps them, a rerun resumes), marked ``polish``. The front is
recomputed and its new points' neighbours follow, round after round, until every front
point's neighbours are evaluated (the front has *converged*: no neighbour can dominate
it unseen) or a limit is reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sojourn.study.config import Range
from sojourn.study.confirm import run_waiting
from sojourn.study.front import front_trials
from sojourn.study.runner import DUPLICATE_ATTR, StudyRunner, _dominates, _feasible

__all__ = ["POLISH_ATTR", "POLISH_ERROR_ATTR", "PolishReport", "neighbours", "polish_front"]

#: User attribute of a trial that polish evaluated.
POLISH_ATTR = "polish"
#: User attribute of a polish trial whose evaluation raised: the error (it is not tried again).
POLISH_ERROR_ATTR = "polish_error"


@dataclass
class PolishReport:
    """What polish did: rounds, configurations it evaluated, and whether the front converged."""

    rounds: int = 0
    evaluated: int = 0
    front_before: int = 0
    front_after: int = 0
    #: Neighbours of the final front still unevaluated (0 when converged), and the front points they belong to.
    unevaluated: int = 0
    open_points: int = 0
    #: Final front points that an evaluated neighbour dominates. The front is non-dominated among
    #: all evaluated trials, so this is 0 by construction; it is counted, not assumed.
    dominated: int = 0
    #: Neighbours of the final front whose evaluation raised (``POLISH_ERROR_ATTR``): "params: error".
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def converged(self) -> bool:
        return self.unevaluated == 0 and not self.failed and not self.interrupted

    def describe(self) -> str:
        if self.converged:
            tail = "converged: every front point's neighbours are evaluated"
        else:
            why = []
            if self.unevaluated:
                why.append(f"{self.unevaluated} neighbours of {self.open_points} front points left unevaluated ("
                           + ("interrupted" if self.interrupted else "limit reached") + "; run the same command to go on)")
            elif self.interrupted:
                why.append("interrupted")
            if self.failed:
                why.append(f"{len(self.failed)} neighbours failed to evaluate (first: {self.failed[0]})")
            tail = "not converged: " + "; ".join(why)
        return (f"polish: {self.evaluated} configurations evaluated in {self.rounds} rounds, front "
                f"{self.front_before} -> {self.front_after} points; {tail}")


def _values(spec: Any) -> list[Any] | None:
    return list(spec) if isinstance(spec, list) else None


def neighbours(params: dict[str, Any], space: dict[str, Any]) -> list[dict[str, Any]]:
    """The configurations next to ``params`` in ``space`` (module docstring), without ``params`` itself."""
    out: list[dict[str, Any]] = []

    def add(**change: Any) -> None:
        p = {**params, **change}
        if p != params and p not in out and all(_inside(space[k], v) for k, v in change.items() if k in space):
            out.append(p)

    nodes = params.get("nodes")
    if "nodes" in space and isinstance(nodes, int):
        for d in (-2, -1, 1, 2):
            add(nodes=nodes + d)
    tps = _values(space.get("tp"))
    if tps and "tp" in params:
        for tp in tps:
            if tp == params["tp"]:
                continue
            add(tp=tp)
            if isinstance(nodes, int) and "nodes" in space:
                same_gpus = nodes * params["tp"] / tp
                for n in sorted({math.floor(same_gpus), math.ceil(same_gpus)}):
                    if n >= 1:
                        add(tp=tp, nodes=int(n))
    discs = _values(space.get("discipline"))
    if discs and "discipline" in params:
        for d in discs:
            add(discipline=d)
    return out


def _inside(spec: Any, v: Any) -> bool:
    if isinstance(spec, Range):
        if not spec.low <= v <= spec.high:
            return False
        if spec.step and spec.is_int:
            return (v - spec.low) % spec.step == 0
        return True
    return v in spec


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


def _evaluated(study: optuna.Study) -> dict[tuple, FrozenTrial]:
    """Configurations with a result: complete trials that are not repeats."""
    return {_key(t.params): t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if DUPLICATE_ATTR not in t.user_attrs}


def _failed(study: optuna.Study) -> dict[tuple, str]:
    """Configurations polish tried whose evaluation raised (not those a Ctrl-C aborted: they are retried)."""
    return {_key(t.system_attrs.get("fixed_params", t.params)): t.user_attrs[POLISH_ERROR_ATTR]
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if POLISH_ERROR_ATTR in t.user_attrs}


def polish_front(runner: StudyRunner, study: optuna.Study, max_rounds: int = 10,
                 max_trials: int | None = None) -> PolishReport:
    """Evaluate the front's unevaluated neighbours, round after round (module docstring).

    Neighbours above ``budget_per_hour`` are skipped (they cannot be on the front). At most
    ``max_trials`` configurations (default: 3 x the study's ``n_trials``, at least 60) in
    ``max_rounds`` rounds. Ctrl-C stops after the running trial, as in ``StudyRunner.run``
    (``interrupted``); a trial a second Ctrl-C aborted counts as unevaluated, so a rerun
    evaluates exactly what is missing. A neighbour whose evaluation raises is recorded
    (``POLISH_ERROR_ATTR``), reported, and not tried again; polish goes on without it.
    """
    limit = max_trials if max_trials is not None else max(60, 3 * runner.cfg.study.n_trials)
    rep = PolishReport(front_before=len(front_trials(study)))
    runner.interrupted = False

    def body() -> None:
        while rep.rounds < max_rounds and rep.evaluated < limit:
            done = _evaluated(study)
            batch = _unevaluated(runner, study, done)[0][: limit - rep.evaluated]
            if not batch:
                break
            _polish_round(runner, study, batch, done, pbar)
            rep.rounds += 1
            rep.evaluated += len(_evaluated(study)) - len(done)
            if runner.interrupted:
                rep.interrupted = True
                break

    from sojourn._progress import bar

    with bar(None, f"{runner.cfg.study.name}: polish", unit="config", enabled=runner.progress) as pbar:
        runner.guarded(body)
    _tally(runner, study, rep)
    return rep


def _unevaluated(runner: StudyRunner, study: optuna.Study,
                 done: dict[tuple, FrozenTrial]) -> tuple[list[dict[str, Any]], int]:
    """The front's neighbours neither evaluated nor failed, within budget; how many front points have one."""
    budget = runner.cfg.study.budget_per_hour
    want: list[dict[str, Any]] = []
    points = 0
    failed = _failed(study)
    for t in front_trials(study):
        missing = 0
        for p in neighbours(dict(t.params), runner.cfg.space):
            if _key(p) in done or _key(p) in failed:
                continue
            if budget is not None and runner._cost_of(p) > budget:
                continue  # cannot be on the front within budget
            missing += 1
            if p not in want:
                want.append(p)
        points += missing > 0
    return want, points


def _polish_round(runner: StudyRunner, study: optuna.Study, batch: list[dict[str, Any]],
                  done: dict[tuple, FrozenTrial], pbar: Any) -> None:
    """Enqueue ``batch`` (what is not already waiting) and evaluate every waiting trial."""
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    queued = {_key(t.system_attrs.get("fixed_params", {})) for t in waiting}
    for p in batch:  # left waiting by an interrupted run: not enqueued twice
        if _key(p) not in queued:
            study.enqueue_trial(p, user_attrs={POLISH_ATTR: True})
    objective = runner.objective(dict(done))

    def only_enqueued(trial: optuna.trial.Trial) -> tuple[float, ...]:
        # Every waiting trial is popped first; should another process take them, the
        # study would fall back on its sampler: polish evaluates nothing it did not choose.
        if not trial.user_attrs.get(POLISH_ATTR):
            raise optuna.TrialPruned("polish evaluates only the neighbours it enqueued")
        try:
            return objective(trial)
        except Exception as err:
            trial.set_user_attr(POLISH_ERROR_ATTR, f"{type(err).__name__}: {err}")
            raise

    def stop_if_asked(st: optuna.Study, t: FrozenTrial) -> None:
        if runner.interrupted:
            st.stop()

    def advance(st: optuna.Study, t: FrozenTrial) -> None:
        pbar.update(1)

    n = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    pbar.total = pbar.n + n
    pbar.refresh()
    for _ in range(n):  # one at a time: a trial another worker popped at once is left to it (run_waiting)
        if runner.interrupted:
            break
        run_waiting(study, only_enqueued, callbacks=[stop_if_asked, advance], catch=(Exception,))


def _tally(runner: StudyRunner, study: optuna.Study, rep: PolishReport) -> None:
    """After polish: the front, what of it is still unevaluated, dominated by a neighbour, or failed."""
    signs = [1 if d == optuna.study.StudyDirection.MINIMIZE else -1 for d in study.directions]
    front = front_trials(study)
    rep.front_after = len(front)
    done = _evaluated(study)
    want, rep.open_points = _unevaluated(runner, study, done)
    rep.unevaluated = len(want)
    failed = _failed(study)
    for f in front:
        near = neighbours(dict(f.params), runner.cfg.space)
        rivals = (done.get(_key(p)) for p in near)
        rep.dominated += any(r is not None and _feasible(r) and _dominates(r.values, f.values, signs) for r in rivals)
        for p in near:
            why = failed.get(_key(p))
            if why is not None and f"{p}: {why}" not in rep.failed:
                rep.failed.append(f"{p}: {why}")
