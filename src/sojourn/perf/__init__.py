"""Engine performance model: KV memory, step times, profiles, calibration."""

from sojourn.perf._model import GIB, PerfModel, build_perf_model
from sojourn.perf._profile import CARRY_OVER, PRIOR, Profile, default_profile, load_profile, save_profile

__all__ = [
    "CARRY_OVER",
    "GIB",
    "PRIOR",
    "PerfModel",
    "Profile",
    "build_perf_model",
    "default_profile",
    "load_profile",
    "save_profile",
]
