"""One entry point for both tiers: run a scenario at the fidelity it (or the caller) asks for.

``request`` is the request-level simulator (ground truth); ``fast`` the batch-level
fluid model with tail analytics; ``auto`` takes the fast tier where it models the
scenario (its disciplines, pull routing) and the request tier otherwise. The result
always says which tier produced it (``fidelity``, and ``tiers`` per number).
"""

from __future__ import annotations

from typing import Any

from sojourn._errors import ConfigError
from sojourn.scenario import Scenario

__all__ = ["FIDELITIES", "fast_applies", "run_scenario"]

FIDELITIES = ("fast", "request", "auto")


def fast_applies(scenario: Scenario) -> str | None:
    """None when the fast tier models this scenario, else the reason it does not."""
    from sojourn.fast import FAST_DISCIPLINES

    if scenario.serving.discipline not in FAST_DISCIPLINES:
        return f"discipline {scenario.serving.discipline!r} (fast tier: {', '.join(FAST_DISCIPLINES)})"
    if scenario.fleet.routing != "pull":
        return f"routing {scenario.fleet.routing!r} (fast tier: pull)"
    return None


def run_scenario(
    scenario: Scenario,
    fidelity: str | None = None,
    replications: int | None = None,
    n_jobs: int = 1,
    seed: int | None = None,
    progress: bool = False,
    capacity: Any = None,
) -> dict[str, Any]:
    """Simulate at ``fidelity`` (default: the scenario's) and return the result as a dict.

    ``capacity`` (a ``sojourn.fast.NodeCapacity``) lets a caller that already measured
    the node's capacity — a study's cheap load check — hand it to the fast tier.
    """
    fid = fidelity or scenario.simulation.fidelity
    if fid not in FIDELITIES:
        raise ConfigError("fidelity", f"got {fid!r}; allowed: {', '.join(FIDELITIES)}")
    if fid in ("fast", "auto"):
        why_not = fast_applies(scenario)
        if why_not is None:
            from sojourn.fast import fast_simulate

            out = dict(fast_simulate(scenario, replications=replications, seed=seed, capacity=capacity))
            out["fidelity_requested"] = fid
            return out
        if fid == "fast":
            raise ConfigError("simulation.fidelity", f"the fast tier does not model {why_not}; use 'request' or 'auto'")
    from sojourn.sim import simulate

    out = simulate(scenario, replications=replications, n_jobs=n_jobs, seed=seed, progress=progress).to_dict()
    out["fidelity_requested"] = fid
    if fid == "auto":
        out["fidelity_note"] = f"request tier: the fast tier does not model {fast_applies(scenario)}"
    return out
