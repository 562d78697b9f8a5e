"""Replications split over machines and processes give the numbers one run gives (issue 16 item 4).

``request.simulate_part`` runs a share of a run's replications; ``simulate`` given every
share's replications, through JSON as a study's storage keeps them, must report exactly
what one uninterrupted run storing its replications reports (a confirmation's), whatever the split and however many processes ran
each share.
"""

from __future__ import annotations

import json

import pytest

from sojourn._errors import ConfigError
from sojourn.request import simulate, simulate_part
from sojourn.sim._stored import replication_from_json, replication_to_json
from test_sojourns_memory import RESUMED

#: test_sojourns_memory's resumed run's scenario (two engines, two SLA classes), with five replications.
SC = RESUMED.with_updates({"simulation.replications": 5, "simulation.seed": 11})


def _stored(part: dict) -> dict:
    """A part's replications as a storage gives them back (JSON)."""
    return {i: replication_from_json(json.loads(json.dumps(replication_to_json(st)))) for i, st in part.items()}


def _result(res) -> dict:
    d = res.to_dict()
    d.pop("wall_s")
    return d


@pytest.fixture(scope="module")
def whole():
    """One uninterrupted run storing its replications as they finish (so folded, as every stored one is)."""
    return _result(simulate(SC, on_replication=lambda i, st: None))


@pytest.mark.parametrize("split", [[[0, 1, 2, 3, 4]], [[0], [1], [2], [3], [4]], [[3, 1], [4, 0, 2]]])
def test_any_split_of_the_replications_pools_to_the_uninterrupted_run(whole, split):
    stored: dict = {}
    for share in split:
        seen: list[int] = []
        got = simulate_part(SC, share, on_replication=lambda i, st, seen=seen: seen.append(i))
        assert sorted(got) == sorted(share) and sorted(seen) == sorted(share)
        stored.update(_stored(got))
    ran: list[int] = []
    pooled = simulate(SC, resume=stored, on_replication=lambda i, st: ran.append(i))
    assert ran == []  # nothing left to simulate
    assert _result(pooled) == whole and whole["miss_episodes"] >= 0 and whole["by_sla_class"]


def test_a_share_run_on_worker_processes_is_the_share_run_here(whole):
    # Stored as JSON and read back for each pooling (pooling frees the samples of what it is given).
    here = {i: json.dumps(replication_to_json(st)) for i, st in simulate_part(SC, [1, 2, 3]).items()}
    there = {i: json.dumps(replication_to_json(st)) for i, st in simulate_part(SC, [1, 2, 3], n_jobs=2).items()}
    def content(stored: dict) -> dict:
        return {i: {k: v for k, v in json.loads(x).items() if k != "wall_s"} for i, x in stored.items()}

    assert content(here) == content(there)
    rest = _stored(simulate_part(SC, [0, 4]))
    assert _result(simulate(SC, resume={**{i: replication_from_json(json.loads(v)) for i, v in there.items()},
                                        **rest})) == whole


def test_a_share_resumes_from_what_is_stored():
    first = simulate_part(SC, [0, 1])
    ran: list[int] = []
    again = simulate_part(SC, [0, 1, 2], resume={0: first[0]}, on_replication=lambda i, st: ran.append(i))
    assert ran == [1, 2] and again[0] is first[0]


def test_an_index_outside_the_run_is_one_clear_error():
    with pytest.raises(ConfigError, match="indices.*0 to 4, got 5"):
        simulate_part(SC, [0, 5])
