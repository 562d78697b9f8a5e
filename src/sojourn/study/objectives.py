"""Objectives are small user-editable modules in an ``objectives/`` folder, loaded by name."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sojourn._errors import ConfigError
from sojourn.result import Result

__all__ = ["Objective", "check_objectives", "find_objectives_dir", "load_objectives"]


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Literal["minimize", "maximize"]
    fn: Callable[[Result, Any, Any], float]  # objective(result, scenario, settings)
    doc: str

    def __call__(self, result: Mapping[str, Any], scenario: Any, settings: Any = None) -> float:
        """The objective's value: a number (+-inf allowed); NaN, which no sampler can rank, stops
        the study with a ConfigError naming the objective.

        The module's function receives a ``sojourn.result.Result`` (a plain dict, such as a
        stored trial's attributes, is read with ``Result.from_dict``): typed attributes, and
        the read-only mapping ``result["p_miss"]``, ``result.get("stable")`` of the JSON keys.
        """
        value = float(self.fn(Result.from_dict(result), scenario, settings))
        if math.isnan(value):
            raise ConfigError("study.objectives", f"{self.name} returned NaN, which no sampler can rank; an "
                                                  "objective must return a number (inf is allowed)")
        return value


def find_objectives_dir(study_dir: Path, explicit: str | None = None) -> Path:
    """The objectives folder: explicit, else next to the study, one level up, or the working directory."""
    if explicit:
        p = Path(explicit).expanduser()
        p = p if p.is_absolute() else study_dir / p
        if not p.is_dir():
            raise ConfigError("study.objectives_dir", f"{p} is not a folder")
        return p
    for cand in (study_dir / "objectives", study_dir.parent / "objectives", Path.cwd() / "objectives"):
        if cand.is_dir():
            return cand
    raise ConfigError(
        "study.objectives",
        f"no objectives/ folder next to {study_dir}, above it, or in the working directory; "
        "set study.objectives_dir",
    )


def _load_one(path: Path, name: str) -> Objective:
    spec = importlib.util.spec_from_file_location(f"sojourn_objective_{name}", path)
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ConfigError("study.objectives", f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as err:  # a user's file: report, don't crash with a traceback
        raise ConfigError("study.objectives", f"{path} failed to import: {type(err).__name__}: {err}") from None
    direction = getattr(mod, "direction", None)
    fn = getattr(mod, "objective", None)
    if direction not in ("minimize", "maximize"):
        raise ConfigError("study.objectives", f"{path}: direction must be 'minimize' or 'maximize', got {direction!r}")
    if not callable(fn):
        raise ConfigError("study.objectives", f"{path}: defines no function objective(result, scenario, settings)")
    return Objective(name, direction, fn, (mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else "")


def load_objectives(names: list[str], directory: Path) -> list[Objective]:
    available = sorted(p.stem for p in directory.glob("*.py") if not p.stem.startswith("_"))
    out = []
    for name in names:
        path = directory / f"{name}.py"
        if not path.is_file():
            raise ConfigError(
                "study.objectives",
                f"no objective {name!r} in {directory}; available: {', '.join(available) or 'none'}",
            )
        out.append(_load_one(path, name))
    if len({o.name for o in out}) != len(out):
        raise ConfigError("study.objectives", "an objective is named twice")
    return out


def check_objectives(objectives: list[Objective], scenario: Any, settings: Any = None) -> None:
    """Each objective gives a number for the result an infeasible configuration gets (every
    request misses: ``sojourn.study.runner.pessimistic_result``), as every study needs it to:
    one that raises or returns NaN there is a ConfigError naming it, before any trial runs."""
    from sojourn.study.runner import pessimistic_result

    result = pessimistic_result(float(scenario.cost_per_hour))
    for o in objectives:
        try:
            o(result, scenario, settings)
        except ConfigError:
            raise
        except Exception as err:  # a user's file: report, don't crash with a traceback
            raise ConfigError("study.objectives", f"{o.name} fails on an infeasible configuration's result "
                                                  f"(every request misses): {type(err).__name__}: {err}") from None
