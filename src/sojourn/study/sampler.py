"""A sampler wrapper that chooses the node count from what the study already knows.

With every other parameter fixed (the GPU, TP, the engine and queue settings: call
them the *rest*), adding nodes never raises P(miss) and raises the cost linearly,
and the offered load scales as 1/nodes. So each rest contributes a contiguous run
of node counts to the Pareto front, starting near the cheapest count whose load is
below ``max_load``. A general-purpose sampler (TPE, NSGA-II) knows none of this and
spends most trials on node counts that are overloaded or far too large.

``NodesAwareSampler`` lets the base sampler choose the rest (``nodes`` is kept out
of its joint, relative search space) and then picks ``nodes`` itself when the
study has evaluated the same rest before:

1. if none of those trials was feasible but one measured its load, the cheapest
   node count that load allows (the load at n nodes is load_1/n);
2. else, a node count next to one of the rest's trials on the current feasible
   front and not yet evaluated (within the budget, below ``max_load``);
3. else, when every feasible trial of the rest is dominated, the most nodes the
   budget allows (the rest's lowest P(miss), which may still extend the front);
4. else the base sampler's choice.

Rule 2 walks each promising rest along its part of the front; the base sampler
decides which rests are promising, as it learns from every trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

__all__ = ["NodesAwareSampler"]

NODES = "nodes"


class NodesAwareSampler(BaseSampler):
    """Wraps ``base``; only the choice of the ``nodes`` parameter changes."""

    def __init__(self, base: BaseSampler, runner: Any) -> None:
        self.base = base
        self.runner = runner

    # -- delegated -----------------------------------------------------------------

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = dict(self.base.infer_relative_search_space(study, trial))
        space.pop(NODES, None)
        return space

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.base.sample_relative(study, trial, search_space)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if param_name == NODES and isinstance(param_distribution, IntDistribution):
            continuous = {k for k, d in trial.distributions.items() if isinstance(d, FloatDistribution)}
            n = self.choose_nodes(study, trial.params, param_distribution, continuous)
            if n is not None:
                return n
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    # -- the choice of nodes ---------------------------------------------------------

    def choose_nodes(self, study: optuna.Study, params: dict[str, Any], dist: IntDistribution,
                     continuous: set[str] = frozenset()) -> int | None:  # type: ignore[assignment]
        """The node count for a trial whose other parameters are ``params``, or None to let the base choose.

        The rest is matched on its discrete parameters only (``continuous`` names the
        others, e.g. gpu_memory_utilization): a continuous parameter is almost never
        drawn twice, and moves the capacity only a little.
        """
        from sojourn.study.runner import DUPLICATE_ATTR, _dominates, _feasible

        def rest_of(p: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in p.items() if k != NODES and k not in continuous}

        rest = rest_of(params)
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if NODES in t.params and DUPLICATE_ATTR not in t.user_attrs]
        siblings = [t for t in done if rest_of(t.params) == rest]
        if not siblings:
            return None
        cfg = self.runner.cfg.study
        tried = {int(t.params[NODES]) for t in siblings}
        step = dist.step
        grid = range(dist.low, dist.high + 1, step)
        # Offered work in node-units: load at n nodes = work / n.
        works = [float(t.user_attrs["load"]) * int(t.params[NODES]) for t in siblings
                 if isinstance(t.user_attrs.get("load"), (int, float)) and math.isfinite(t.user_attrs["load"])]
        work = max(works) if works else None

        def allowed(n: int) -> bool:
            if n not in grid or n in tried:
                return False
            if cfg.budget_per_hour is not None and self.runner._cost_of({**params, NODES: n}) > cfg.budget_per_hour:
                return False
            return work is None or work / n < self.runner.max_load

        feasible = [t for t in siblings if _feasible(t)]
        if not feasible:
            if work is None:
                return None
            n_min = max(dist.low, math.floor(work / self.runner.max_load) + 1)
            n_min = dist.low + math.ceil((n_min - dist.low) / step) * step
            return n_min if allowed(n_min) else None
        signs = [1 if d == optuna.study.StudyDirection.MINIMIZE else -1 for d in study.directions]
        pool = [t for t in done if _feasible(t)]
        front = sorted(
            (int(t.params[NODES]) for t in feasible
             if not any(_dominates(u.values, t.values, signs) for u in pool)),
        )
        if not front:
            # Every point of this rest is dominated where it was tried; its most reliable
            # point, the most nodes the budget allows, may still extend the front's low end.
            top = max((n for n in grid if cfg.budget_per_hour is None
                       or self.runner._cost_of({**params, NODES: n}) <= cfg.budget_per_hour), default=None)
            return top if top is not None and allowed(top) else None
        # The cheap end first (it moves the front most), then the other end, then gaps.
        for n in [front[0] - step, front[-1] + step] + [m + d for m in front for d in (-step, step)]:
            if allowed(n):
                return n
        return None
