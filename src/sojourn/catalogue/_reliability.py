"""Node reliability and spot-market defaults by GPU (``reliability.toml``, every number with its source)."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources

from sojourn._errors import ConfigError

__all__ = ["Reliability", "reliability"]


@dataclass(frozen=True)
class Reliability:
    """A GPU's defaults for ``fleet.failures`` and ``fleet.spot`` (see ``reliability.toml`` for the sources)."""

    mtbf_hours_per_gpu: float
    repair_hours: float
    spot_discount: float
    spot_reclaims_per_hour: float
    spot_notice_s: float
    spot_reacquire_hours: float


@functools.cache
def _table() -> dict[str, dict[str, float]]:
    text = resources.files("sojourn.catalogue").joinpath("reliability.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return {"default": data["default"], **data.get("gpus", {})}


def reliability(gpu_id: str) -> Reliability:
    """The defaults for ``gpu_id`` (the ``[default]`` table, with the GPU's own table over it)."""
    t = _table()
    values = {**t["default"], **t.get(gpu_id, {})}
    try:
        return Reliability(**{k: float(v) for k, v in values.items()})
    except TypeError as err:  # pragma: no cover - the shipped file is tested
        raise ConfigError("catalogue reliability.toml", str(err)) from None
