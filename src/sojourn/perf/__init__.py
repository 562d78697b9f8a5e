"""Engine performance model: KV memory, step times, profiles, calibration."""

from sojourn.perf._calibrate import fit_profile, load_silicon, load_step_grid, load_steps
from sojourn.perf._closed_loop import ClosedLoopResult, closed_loop
from sojourn.perf._model import GIB, PerfModel, build_perf_model
from sojourn.perf._profile import (
    CARRY_OVER,
    PRIOR,
    Calibration,
    Profile,
    calibration,
    calibration_of,
    default_profile,
    load_profile,
    resolve_profile,
    save_profile,
    scenario_calibration,
)

__all__ = [
    "CARRY_OVER",
    "Calibration",
    "ClosedLoopResult",
    "GIB",
    "PRIOR",
    "PerfModel",
    "Profile",
    "build_perf_model",
    "calibration",
    "calibration_of",
    "closed_loop",
    "fit_profile",
    "load_silicon",
    "load_step_grid",
    "load_steps",
    "default_profile",
    "load_profile",
    "resolve_profile",
    "save_profile",
    "scenario_calibration",
]
