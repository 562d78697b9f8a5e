"""Sizing studies: Optuna search over configurations, Pareto fronts, hardware comparison."""

from sojourn.study.config import StudyConfig, load_study
from sojourn.study.front import confirm_front, front_rows, front_trials, non_dominated
from sojourn.study.hardware import compare_hardware, own_cost_per_hour
from sojourn.study.runner import DUPLICATE_ATTR, StudyRunner, evaluate, suggest

__all__ = [
    "DUPLICATE_ATTR",
    "StudyConfig",
    "StudyRunner",
    "compare_hardware",
    "confirm_front",
    "evaluate",
    "front_rows",
    "front_trials",
    "load_study",
    "non_dominated",
    "own_cost_per_hour",
    "suggest",
]
