"""Engine performance model: KV memory, step times, profiles, calibration data.

This package never runs the simulator: the closed-loop prediction and the profile fit
that uses it live in the simulator package: ``sim/closed_loop.py``, ``sim/calibrate.py``.
"""

from sojourn.perf._calibrate import load_silicon, load_step_grid, load_steps
from sojourn.perf._model import (
    EXPERT_LOAD_IMBALANCE,
    GIB,
    KV_CACHE_DTYPES,
    PerfModel,
    build_perf_model,
    ep_busiest,
    expected_distinct_experts,
)
from sojourn.perf._profile import (
    CARRY_OVER,
    HOST_OVERLAP,
    OVERLAP_SEQ_STARTS,
    PRIOR,
    Calibration,
    Profile,
    calibration,
    calibration_of,
    default_profile,
    engine_prior,
    load_profile,
    resolve_profile,
    save_profile,
    scenario_calibration,
)

__all__ = [
    "CARRY_OVER",
    "Calibration",
    "EXPERT_LOAD_IMBALANCE",
    "GIB",
    "HOST_OVERLAP",
    "KV_CACHE_DTYPES",
    "OVERLAP_SEQ_STARTS",
    "PRIOR",
    "PerfModel",
    "Profile",
    "build_perf_model",
    "calibration",
    "calibration_of",
    "load_silicon",
    "load_step_grid",
    "load_steps",
    "default_profile",
    "engine_prior",
    "ep_busiest",
    "expected_distinct_experts",
    "load_profile",
    "resolve_profile",
    "save_profile",
    "scenario_calibration",
]
