"""Search quality: how fast a study's sampler finds the exact Pareto front of a small space.

Every configuration of a small discrete space is evaluated (the same evaluation a
study trial runs: common random numbers make it deterministic), giving the exact
feasible front and its hypervolume. Then studies with several sampler seeds run
on the same space and we report the hypervolume ratio reached after N trials,
and the trials needed to reach 95% and 99%.

Hypervolume is computed in (log10 P(miss) upper bound, cost $/h), minimised both,
with P(miss) floored at 1e-6 and the reference point (0 = log10 1, budget): a
front that only improves misses from 1e-4 to 1e-5 matters to users, and the log
axis says so.

    .venv/bin/python benchmarks/search_quality.py [--seeds 5] [--fidelity fast]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import sojourn  # noqa: E402
from sojourn.study import StudyRunner, load_study  # noqa: E402
from sojourn.study.front import is_feasible  # noqa: E402

FLOOR = 1e-6

SPACES = {
    # 192 configurations: a front of 15 distinct points (x2: fifo and edf tie under one SLA).
    "small": {
        "gpu": ["a100-80gb", "h100-sxm", "h200"],
        "tp": [1, 2],
        "nodes": list(range(1, 17)),
        "discipline": ["fifo", "edf"],
    },
    # 1,152 configurations: the engine settings too, as a real study searches them.
    "large": {
        "gpu": ["a100-80gb", "h100-sxm", "h200"],
        "tp": [1, 2],
        "nodes": list(range(1, 17)),
        "max_num_seqs": [64, 128, 256],
        "max_num_batched_tokens": [2048, 8192],
        "discipline": ["fifo", "lifo"],
    },
}
SPACE = SPACES["small"]


def study_file(tmp: Path, name: str, seed: int, n_trials: int, fidelity: str, sampler: str,
               refine: bool = True) -> Path:
    scenario = (ROOT / "studies" / "quickstart-scenario.toml").read_text()
    (tmp / "scenario.toml").write_text(scenario)
    text = textwrap.dedent(
        f"""
        [study]
        name = "{name}"
        scenario = "scenario.toml"
        n_trials = {n_trials}
        objectives = ["sla_miss", "cost_per_hour"]
        budget_per_hour = 80
        seed = {seed}
        simulation_seed = 0
        sampler = "{sampler}"
        fidelity = "{fidelity}"
        refine_nodes = {str(refine).lower()}
        objectives_dir = "{ROOT / 'objectives'}"
        [space]
        """
    )
    for k, v in SPACE.items():
        text += f"{k} = {{ low = {v[0]}, high = {v[-1]} }}\n" if k == "nodes" else f"{k} = {v}\n"
    text = text.replace("'", '"')
    p = tmp / f"{name}.toml"
    p.write_text(text)
    return p


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """2-D hypervolume dominated by ``points`` (minimised) inside ``ref``."""
    pts = sorted((x, y) for x, y in points if x < ref[0] and y < ref[1])
    hv, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return hv


def transform(miss: float, cost: float) -> tuple[float, float]:
    return (math.log10(max(miss, FLOOR)), cost)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--fidelity", default="fast")
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--trials", type=int, default=None, help="trials per study (default: 30% of the space)")
    ap.add_argument("--no-refine", action="store_true", help="without the node-neighbour refinement")
    ap.add_argument("--space", choices=sorted(SPACES), default="small")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the exhaustive evaluation here and reuse it while the space and version match")
    args = ap.parse_args()
    global SPACE
    SPACE = SPACES[args.space]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="sojourn-search-"))
    runner = StudyRunner(load_study(study_file(tmp, "exhaustive", 0, 1, args.fidelity, args.sampler)))
    objective = runner.objective()
    budget = runner.cfg.study.budget_per_hour
    ref = (0.0, budget)
    t0 = time.perf_counter()
    configs = [dict(zip(SPACE, combo)) for combo in itertools.product(*SPACE.values())]
    key = json.dumps({"space": SPACE, "fidelity": args.fidelity, "sojourn": sojourn.__version__}, sort_keys=True)
    cached = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    if cached.get("key") == key:
        feasible_pts = [tuple(p) for p in cached["feasible"]]
    else:
        feasible_pts = []
        for params in configs:
            trial = optuna.trial.FixedTrial(params)
            miss, cost = objective(trial)
            if all(c <= 0 for c in trial.user_attrs["constraints"]):
                feasible_pts.append(transform(miss, cost))
        if args.cache:
            args.cache.write_text(json.dumps({"key": key, "feasible": feasible_pts}))
    n_front = len([p for p in feasible_pts if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in feasible_pts)])
    t_exh = time.perf_counter() - t0
    hv_exact = hypervolume(feasible_pts, ref)
    n_space = len(configs)
    n_trials = args.trials or math.ceil(0.3 * n_space)
    tenth = math.ceil(n_space / 10)
    print(f"space: {n_space} configurations, {len(feasible_pts)} feasible, {n_front} on the exact front; "
          f"exact hypervolume {hv_exact:.4f} "
          f"(evaluated in {t_exh:.1f} s, fidelity {args.fidelity})")
    rows = []
    for seed in range(args.seeds):
        path = study_file(tmp, f"s{seed}", seed, n_trials, args.fidelity, args.sampler, refine=not args.no_refine)
        r = StudyRunner(load_study(path))
        study = r.run()
        # Progress per configuration *evaluated*: a trial repeating a configuration reuses
        # its stored result (no simulation) and does not count.
        hist, pts = [], []
        for t in study.trials:
            if "duplicate_of" in t.user_attrs:
                continue
            if is_feasible(t):
                pts.append(transform(t.values[0], t.user_attrs["cost_per_hour"]))
            hist.append(hypervolume(pts, ref) / hv_exact if hv_exact > 0 else 1.0)
        hist += [hist[-1]] * max(0, tenth - len(hist))
        reach = {q: next((i + 1 for i, h in enumerate(hist) if h >= q - 1e-12), None) for q in (0.95, 0.99, 1.0)}
        rows.append((seed, hist[tenth - 1], hist[-1], reach))
        print(f"seed {seed}: {len(study.trials)} trials, {len(hist)} configurations evaluated; HV ratio after "
              f"{tenth} evaluations (a tenth of the space) {hist[tenth - 1]:.4f}, at the end {hist[-1]:.4f}; "
              f"evaluations to 95%: {reach[0.95]}, 99%: {reach[0.99]}, 100%: {reach[1.0]}")
    mean_tenth = sum(r[1] for r in rows) / len(rows)
    hit99 = sum(1 for r in rows if r[3][0.99] is not None and r[3][0.99] <= tenth)
    print(f"mean HV ratio after a tenth of the space ({tenth} trials): {mean_tenth:.4f}; "
          f"seeds reaching 99% within a tenth: {hit99}/{len(rows)}")


if __name__ == "__main__":
    main()
