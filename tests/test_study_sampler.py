"""The nodes-aware sampler and the P(miss) floor of studies."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from _tiny_study import TINY_SCENARIO
from sojourn.cli import main
from sojourn.study import StudyRunner, load_study
from sojourn.study.sampler import NodesAwareSampler

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = TINY_SCENARIO

NODES = IntDistribution(1, 8)
DISTS = {"gpu": CategoricalDistribution(["h100-sxm", "a100-80gb"]), "discipline": CategoricalDistribution(["fifo", "edf"]),
         "nodes": NODES}


def study_file(tmp_path: Path, extra: str = "", budget: float = 30.0) -> Path:
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(f"""
        [study]
        name = "s"
        scenario = "scenario.toml"
        n_trials = 10
        budget_per_hour = {budget}
        objectives_dir = "{ROOT / 'objectives'}"
        {extra}
        [space]
        gpu = ["h100-sxm", "a100-80gb"]
        nodes = {{ low = 1, high = 8 }}
        discipline = ["fifo", "edf"]
        """))
    return p


def add(study: optuna.Study, runner: StudyRunner, gpu: str, nodes: int, miss: float, load: float,
        feasible: bool = True) -> None:
    params = {"gpu": gpu, "discipline": "fifo", "nodes": nodes}
    cost = runner._cost_of(params)
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=DISTS, values=[miss, cost],
        user_attrs={"load": load, "constraints": [0.0, 0.0 if feasible else 1.0], "cost_per_hour": cost}))


@pytest.fixture
def setup(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    sampler = runner.sampler()
    assert isinstance(sampler, NodesAwareSampler)
    study = optuna.create_study(directions=runner.directions, sampler=sampler)
    return runner, sampler, study


def test_overloaded_rest_jumps_to_the_cheapest_node_count_its_load_allows(setup):
    runner, sampler, study = setup
    rest = {"gpu": "h100-sxm", "discipline": "fifo"}
    assert sampler.choose_nodes(study, rest, NODES) is None  # nothing known: the base sampler chooses
    add(study, runner, "h100-sxm", 2, 1.0, load=1.6, feasible=False)  # work = 3.2 node-loads
    assert sampler.choose_nodes(study, rest, NODES) == 4
    # Another rest (edf) knows nothing yet.
    assert sampler.choose_nodes(study, {"gpu": "h100-sxm", "discipline": "edf"}, NODES) is None


def test_max_load_moves_the_cheapest_count(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path, extra="max_load = 0.5")))
    sampler = runner.sampler()
    study = optuna.create_study(directions=runner.directions, sampler=sampler)
    add(study, runner, "h100-sxm", 2, 1.0, load=1.6, feasible=False)
    assert sampler.choose_nodes(study, {"gpu": "h100-sxm", "discipline": "fifo"}, NODES) == 7  # 3.2 / 7 < 0.5


def test_front_points_are_walked_to_their_neighbours(setup):
    runner, sampler, study = setup
    rest = {"gpu": "h100-sxm", "discipline": "fifo"}
    add(study, runner, "h100-sxm", 4, 0.10, load=0.75)  # work 3.0: 3 nodes would be at load 1
    add(study, runner, "h100-sxm", 5, 0.05, load=0.60)
    # 3 is overloaded, so the walk goes up from the front's expensive end.
    assert sampler.choose_nodes(study, rest, NODES) == 6
    add(study, runner, "h100-sxm", 6, 0.02, load=0.50)
    assert sampler.choose_nodes(study, rest, NODES) == 7
    # A cheaper configuration that beats all of them ends the walk; what is left to try of
    # this rest is its lowest P(miss), the most nodes the space and budget allow (8), then nothing.
    add(study, runner, "a100-80gb", 1, 0.001, load=0.10)
    assert sampler.choose_nodes(study, rest, NODES) == 8
    add(study, runner, "h100-sxm", 8, 0.002, load=0.37)
    assert sampler.choose_nodes(study, rest, NODES) is None


def test_the_walk_stays_within_the_budget(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path)))
    price = runner._cost_of({"gpu": "h100-sxm", "nodes": 1, "discipline": "fifo"})
    runner = StudyRunner(load_study(study_file(tmp_path, budget=5.5 * price)))
    sampler = runner.sampler()
    study = optuna.create_study(directions=runner.directions, sampler=sampler)
    add(study, runner, "h100-sxm", 4, 0.10, load=0.75)
    add(study, runner, "h100-sxm", 5, 0.05, load=0.60)
    assert sampler.choose_nodes(study, {"gpu": "h100-sxm", "discipline": "fifo"}, NODES) is None
    # Dominated everywhere: the most nodes within the budget is 5, already tried.
    add(study, runner, "a100-80gb", 1, 0.001, load=0.10)
    assert sampler.choose_nodes(study, {"gpu": "h100-sxm", "discipline": "fifo"}, NODES) is None
    add(study, runner, "h100-sxm", 2, 1.0, load=1.5, feasible=False)
    assert sampler.choose_nodes(study, {"gpu": "h100-sxm", "discipline": "fifo"}, NODES) is None


def test_nodes_is_left_out_of_the_base_samplers_joint_space(setup):
    runner, sampler, study = setup
    add(study, runner, "h100-sxm", 4, 0.10, load=0.75)
    trial = study.ask()
    assert "nodes" not in sampler.infer_relative_search_space(study, study._storage.get_trial(trial._trial_id))


def test_refine_nodes_false_gives_the_plain_sampler(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path, extra="refine_nodes = false")))
    assert isinstance(runner.sampler(), optuna.samplers.TPESampler)


def test_studies_with_the_sampler_are_reproducible(tmp_path):
    out = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        StudyRunner(load_study(study_file(tmp_path / d))).run()
        study = StudyRunner(load_study(tmp_path / d / "s.toml")).load(create=False)
        out.append([(t.params, t.values) for t in study.trials])
    assert out[0] == out[1] and len(out[0]) >= 10


def test_p_miss_floor(tmp_path):
    params = {"gpu": "h100-sxm", "nodes": 8, "discipline": "fifo"}
    runner = StudyRunner(load_study(study_file(tmp_path)))
    trial = optuna.trial.FixedTrial(params)
    miss, _ = runner.objective()(trial)
    assert miss == pytest.approx(max(trial.user_attrs["p_miss_upper"], 1e-6))
    floored = StudyRunner(load_study(study_file(tmp_path, extra="p_miss_floor = 0.9")))
    trial = optuna.trial.FixedTrial(params)
    miss, _ = floored.objective()(trial)
    assert trial.user_attrs["p_miss_upper"] < 0.9 and miss == 0.9  # the attribute keeps the value computed


def test_compare_hardware_refuses_a_target_below_the_floor(tmp_path, capsys):
    path = study_file(tmp_path, extra="p_miss_floor = 0.01")
    assert main(["compare-hardware", str(path), "--target-miss", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "--target-miss" in err and "p_miss_floor" in err and "Traceback" not in err


def test_simulation_seed_separates_the_traffic_from_the_sampler(tmp_path):
    params = {"gpu": "h100-sxm", "nodes": 8, "discipline": "fifo"}
    plain = StudyRunner(load_study(study_file(tmp_path, extra="seed = 7")))
    assert plain.trial_scenario(params).simulation.seed == 7
    split = StudyRunner(load_study(study_file(tmp_path, extra="seed = 7\nsimulation_seed = 11")))
    assert split.trial_scenario(params).simulation.seed == 11


def test_continuous_parameters_do_not_split_a_rest(setup):
    from optuna.distributions import FloatDistribution

    runner, sampler, study = setup
    dists = {**DISTS, "gpu_memory_utilization": FloatDistribution(0.8, 0.95)}
    params = {"gpu": "h100-sxm", "discipline": "fifo", "gpu_memory_utilization": 0.91, "nodes": 2}
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=dists, values=[1.0, runner._cost_of(params)],
        user_attrs={"load": 1.6, "constraints": [0.0, 1.0]}))
    rest = {"gpu": "h100-sxm", "discipline": "fifo", "gpu_memory_utilization": 0.83}
    assert sampler.choose_nodes(study, rest, NODES) is None  # matched exactly: a new rest
    assert sampler.choose_nodes(study, rest, NODES, continuous={"gpu_memory_utilization"}) == 4


def test_nsga2_runs_under_the_nodes_aware_sampler(tmp_path):
    runner = StudyRunner(load_study(study_file(tmp_path, extra='sampler = "nsga2"')))
    assert isinstance(runner.sampler().base, optuna.samplers.NSGAIISampler)
    study = runner.run(n_trials=12)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sum(1 for t in done if "duplicate_of" not in t.user_attrs) == 12
    assert all("nodes" in t.params for t in done)
