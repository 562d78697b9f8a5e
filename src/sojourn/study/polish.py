"""Polish: after the search, evaluate the neighbours of every front point until none is left unevaluated.

A sampler (TPE, NSGA-II, even ``NodesAwareSampler``) stops with configurations next to
the front it never tried, and some of them dominate front points: the quickstart ended
with 5 of its 16 points beaten by untried tp1 x 10 and x 12 fleets. The neighbours of a
point are what a planner would try next by hand:

* the node count ±1 and ±2 (within the space);
* each other tensor-parallel size, at the same node count and at the same GPU count;
* each other discipline;

every other setting unchanged. They are evaluated as ordinary trials of the study
(``Study.enqueue_trial``: the sampler is bypassed, the storage keeps them, a rerun
resumes), marked ``polish``. The front is recomputed and its new points' neighbours
follow, round after round, until every front point's neighbours are evaluated (the
front has *converged*: no neighbour can dominate it unseen) or a limit is reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from sojourn.study.config import Range
from sojourn.study.front import front_trials
from sojourn.study.runner import DUPLICATE_ATTR, StudyRunner

__all__ = ["POLISH_ATTR", "PolishReport", "neighbours", "polish_front"]

#: User attribute of a trial that polish evaluated.
POLISH_ATTR = "polish"


@dataclass
class PolishReport:
    """What polish did: rounds, configurations it evaluated, and whether the front converged."""

    rounds: int = 0
    evaluated: int = 0
    front_before: int = 0
    front_after: int = 0
    #: Neighbours of the final front still unevaluated (0 when converged).
    unevaluated: int = 0
    interrupted: bool = False

    @property
    def converged(self) -> bool:
        return self.unevaluated == 0 and not self.interrupted

    def describe(self) -> str:
        tail = ("every front point's neighbours are evaluated" if self.converged else
                f"{self.unevaluated} neighbours of the front left unevaluated"
                + (" (interrupted)" if self.interrupted else " (limit reached; run again to go on)"))
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
                for n in {math.floor(same_gpus), math.ceil(same_gpus)}:
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


def polish_front(runner: StudyRunner, study: optuna.Study, max_rounds: int = 10,
                 max_trials: int | None = None) -> PolishReport:
    """Evaluate the front's unevaluated neighbours, round after round (module docstring)."""
    space = runner.cfg.space
    budget = runner.cfg.study.budget_per_hour
    limit = max_trials if max_trials is not None else max(60, 3 * runner.cfg.study.n_trials)
    rep = PolishReport(front_before=len(front_trials(study)))
    runner.interrupted = False

    def todo() -> list[dict[str, Any]]:
        tried = {_key(t.params) for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        want: list[dict[str, Any]] = []
        for t in front_trials(study):
            for p in neighbours(dict(t.params), space):
                if _key(p) in tried or p in want:
                    continue
                if budget is not None and runner._cost_of(p) > budget:
                    continue  # cannot be on the front within budget
                want.append(p)
        return want

    def run_round(batch: list[dict[str, Any]]) -> None:
        seen = {_key(t.params): t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE and DUPLICATE_ATTR not in t.user_attrs}
        for p in batch:
            study.enqueue_trial(p, user_attrs={POLISH_ATTR: True}, skip_if_exists=True)

        def stop_if_asked(st: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
            if runner.interrupted:
                st.stop()

        study.optimize(runner.objective(seen), n_trials=len(batch), callbacks=[stop_if_asked], catch=())

    def body() -> None:
        while rep.rounds < max_rounds and rep.evaluated < limit:
            batch = todo()[: limit - rep.evaluated]
            if not batch:
                break
            before = sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished())
            run_round(batch)
            rep.rounds += 1
            rep.evaluated += sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished()) - before
            if runner.interrupted:
                rep.interrupted = True
                break

    runner.guarded(body)
    rep.front_after = len(front_trials(study))
    rep.unevaluated = len(todo())
    return rep
