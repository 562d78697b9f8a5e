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
    nice -n 10 .venv/bin/python benchmarks/search_quality.py --quickstart --cache /tmp/sojourn-qs.json

``--quickstart``: the quickstart study's own space (studies/quickstart.toml), exhaustive over its
discrete part with gpu_memory_utilization at 0.95 (see ``QS_GMU``), then the study as shipped
(search + polish) for several sampler seeds, and the same with gpu_memory_utilization fixed at
0.95 (so the exhaustive pass is exactly its space): hypervolume ratio, and front points that a
configuration the study never evaluated dominates (target 0), before and after polish; after polish
each such point is listed with the configurations that dominate it. For the shipped variant the
rivals are at 0.95, so the figure in brackets counts only rivals whose discrete settings the study
never tried at any gpu_memory_utilization. A configuration whose evaluation raises is listed (it is
never on a front), and a search that such a trial stops is run again, as a user would, and counted.
On 2 shared CPUs: ~15 minutes with the cache of the exhaustive pass, ~30 without.
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


# --- the quickstart's own space ----------------------------------------------------------

#: gpu_memory_utilization, continuous (0.80-0.95) in the quickstart, is fixed at the top of its
#: range for the exhaustive pass: more KV memory never lowers a node's capacity (checked below on
#: every engine configuration at ``QS_GMU_CHECK``), so the front at 0.95 bounds the front of the
#: whole range.
QS_GMU = 0.95
QS_GMU_CHECK = (0.80, 0.875, 0.95)


def _qs_study(tmp: Path, name: str, seed: int, gmu_fixed: bool) -> Path:
    """studies/quickstart.toml with another sampler seed (traffic: the shipped seed 7), optionally gmu fixed."""
    import tomllib

    base = tomllib.loads((ROOT / "studies" / "quickstart.toml").read_text())
    (tmp / base["study"]["scenario"]).write_text((ROOT / "studies" / base["study"]["scenario"]).read_text())
    st = {**base["study"], "name": name, "seed": seed, "simulation_seed": base["study"]["seed"],
          "objectives_dir": str(ROOT / "objectives")}
    space = dict(base["space"])
    if gmu_fixed:
        space["gpu_memory_utilization"] = [QS_GMU]
    lines = ["[study]"] + [f"{k} = {json.dumps(v)}" for k, v in st.items()] + ["[space]"]
    for k, v in space.items():
        if isinstance(v, dict):
            v = "{ " + ", ".join(f"{a} = {json.dumps(b)}" for a, b in v.items()) + " }"
            lines.append(f"{k} = {v}")
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    p = tmp / f"{name}.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


#: Files of the package that do not take part in a trial's values: the command line, progress
#: bars, and what happens after the search (polish, confirmation, the front's rows and plot, the
#: hardware comparison). The exhaustive pass caches trial values only, so a change to these leaves
#: the cache valid; polish and the search themselves always run afresh. (_io.py stays in: the
#: scenario and profile files are read through it.)
QS_NOT_IN_VALUES = ("_cli", "cli.py", "_progress.py", "study/polish.py", "study/confirm.py",
                    "study/front.py", "study/plot.py", "study/hardware.py")


def _model_hash(objectives: list[str]) -> str:
    """What a trial's values depend on: the package less ``QS_NOT_IN_VALUES``, the study's own
    objective modules (``objectives``, not the others in objectives/), and the study files.

    A change anywhere else (the runner, the fast tier, the perf model, the catalogue...) gives
    another hash, and the exhaustive pass is recomputed. ``--qs-recheck`` re-evaluates a few
    cached engine configurations on every run as well, and stops at the first value that differs.
    """
    import hashlib

    pkg = ROOT / "src" / "sojourn"

    def in_values(p: Path) -> bool:
        rel = p.relative_to(pkg).as_posix()
        return not any(rel == x or rel.startswith(x + "/") for x in QS_NOT_IN_VALUES)

    h = hashlib.sha1()
    files = sorted(p for p in pkg.rglob("*") if p.suffix in (".py", ".toml", ".json")
                   and "__pycache__" not in p.parts and in_values(p))
    files += [ROOT / "objectives" / f"{name}.py" for name in objectives]
    files += [ROOT / "studies" / "quickstart.toml", ROOT / "studies" / "quickstart-scenario.toml"]
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


_RUNNERS: dict[str, StudyRunner] = {}


def _qs_walk(path: str, engine: dict, disciplines: list[str], low: int, high: int) -> list[list]:
    """One engine configuration, every discipline, node counts upwards from ``low`` (a joblib task).

    A walk stops at the first count over the budget (every larger one is too), or once more nodes
    cannot lower P(miss) as the study optimises it: at the floor, or, where the sample saw no miss,
    when the next count gives the same value (the bound of a miss-free sample of the same traffic).
    Every larger count then has that value at a higher cost: dominated, so never on a front.
    Rows: [params, P(miss), cost, feasible, offered load]; a configuration whose evaluation raises
    (a study trial would fail) gets P(miss) None and the error as a sixth item.
    """
    from sojourn.fast.capacity import clear_capacity_cache

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runner = _RUNNERS.get(path) or _RUNNERS.setdefault(path, StudyRunner(load_study(path)))
    objective = runner.objective()
    floor, budget = runner.cfg.study.p_miss_floor, runner.cfg.study.budget_per_hour
    out = []
    for disc in disciplines:
        prev = None
        for n in range(low, high + 1):
            params = {**engine, "discipline": disc, "nodes": n}
            if runner._cost_of(params) > budget:
                break
            trial = optuna.trial.FixedTrial(params)
            try:
                miss, cost = objective(trial)
            except Exception as err:  # noqa: BLE001 - a study trial would fail here: listed, never on a front
                out.append([sorted(params.items()), None, runner._cost_of(params), False, trial.user_attrs.get("load"),
                            f"{type(err).__name__}: {err}"])
                prev = None
                continue
            ok = all(c <= 0 for c in trial.user_attrs["constraints"])
            seen_none = trial.user_attrs.get("p_miss") == 0
            out.append([sorted(params.items()), miss, cost, ok, trial.user_attrs.get("load")])
            if ok and (miss <= floor or (seen_none and prev == miss)):
                break
            prev = miss if ok and seen_none else None
    clear_capacity_cache()  # the next engine configuration measures its own
    return out


def _qs_task(e: dict, engine: dict, path: str, disciplines: list[str], low: int, high: int) -> tuple[dict, list]:
    return e, _qs_walk(path, engine, disciplines, low, high)


def _params_str(k: tuple) -> str:
    d = dict(k)
    return (f"{d['gpu']} tp{d['tp']} x{d['nodes']} mnbt {d['max_num_batched_tokens']} seqs {d['max_num_seqs']} "
            f"{d['discipline']}" + (f" gmu {d['gpu_memory_utilization']:.4g}" if "gpu_memory_utilization" in d else ""))


def quickstart(args: argparse.Namespace) -> None:
    """The quickstart study as shipped (search, then polish) against the exact front of its own space."""
    from joblib import Parallel, delayed

    from sojourn.fast.capacity import clear_capacity_cache
    from sojourn.study.front import front_trials
    from sojourn.study.polish import POLISH_ATTR, polish_front
    from sojourn.study.runner import DUPLICATE_ATTR, screen_capacity

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="sojourn-quickstart-"))
    exh_path = _qs_study(tmp, "exhaustive", 0, gmu_fixed=True)
    runner = StudyRunner(load_study(exh_path))
    space = runner.cfg.space
    nodes = space["nodes"]
    low, high = int(nodes.low), int(nodes.high)
    engine_keys = ["gpu", "tp", "max_num_batched_tokens", "max_num_seqs"]
    engines = [dict(zip(engine_keys, c)) for c in itertools.product(*[space[k] for k in engine_keys])]
    discs = list(space["discipline"])
    budget = runner.cfg.study.budget_per_hour
    key = json.dumps({"model": _model_hash(list(runner.cfg.study.objectives)), "gmu": QS_GMU}, sort_keys=True)
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    if cache.get("key") != key:
        if cache:
            print(f"cache {args.cache}: made for {cache.get('key')}, not {key}: recomputed", flush=True)
        cache = {"key": key, "engines": {}, "gmu_check": {}}
    print(f"model hash {json.loads(key)['model']} (what trial values depend on: see _model_hash); "
          f"cache {args.cache or '(none)'}: {len(cache['engines'])}/{len(engines)} engine configurations", flush=True)

    def save() -> None:
        if args.cache:
            args.cache.write_text(json.dumps(cache))

    # Cached walks re-evaluated: the hash covers files, this covers what they compute.
    t0 = time.perf_counter()
    cached = sorted(cache["engines"])
    picks = [cached[round(i * (len(cached) - 1) / max(1, args.qs_recheck - 1))] for i in range(args.qs_recheck)] \
        if cached and args.qs_recheck > 0 else []
    for ek in dict.fromkeys(picks):
        e = json.loads(ek)
        rows = json.loads(json.dumps(_qs_walk(str(exh_path), {**e, "gpu_memory_utilization": QS_GMU}, discs, low, high)))
        if rows != cache["engines"][ek]:
            diff = next((a, b) for a, b in itertools.zip_longest(cache["engines"][ek], rows) if a != b)
            sys.exit(f"cache {args.cache}: {ek} re-evaluated differs (cached {diff[0]}, now {diff[1]}); "
                     "delete the cache, or find what changed the values")
    if picks:
        print(f"re-evaluated {len(set(picks))} cached engine configurations: identical "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

    # Capacity against gpu_memory_utilization, per engine configuration (cheap: 20k completions each).
    t0 = time.perf_counter()
    for e in engines:
        ek = json.dumps(e, sort_keys=True)
        if ek not in cache["gmu_check"]:
            caps = []
            for g in QS_GMU_CHECK:
                cap = screen_capacity(runner.trial_scenario({**e, "gpu_memory_utilization": g,
                                                             "discipline": "fifo", "nodes": 1}))
                caps.append(None if cap is None else cap.requests_per_s)
                clear_capacity_cache()
            cache["gmu_check"][ek] = caps
    checks = list(cache["gmu_check"].values())
    rising = sum(1 for c in checks if None not in c and all(a <= b for a, b in zip(c, c[1:])))
    gain = [c[-1] / c[0] - 1 for c in checks if None not in c]
    print(f"node capacity non-decreasing in gpu_memory_utilization {QS_GMU_CHECK}: {rising}/{len(engines)} "
          f"engine configurations; 0.80 -> 0.95 gains {100 * min(gain):.2f}-{100 * max(gain):.2f}% "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    save()

    # The exhaustive pass over the discrete part, one joblib task per engine configuration.
    t0 = time.perf_counter()
    todo = [e for e in engines if json.dumps(e, sort_keys=True) not in cache["engines"]]
    jobs = Parallel(n_jobs=args.jobs, return_as="generator_unordered")(
        delayed(_qs_task)(e, {**e, "gpu_memory_utilization": QS_GMU}, str(exh_path), discs, low, high) for e in todo)
    for i, (e, rows) in enumerate(jobs, 1):
        cache["engines"][json.dumps(e, sort_keys=True)] = rows
        save()
        if i % 12 == 0 or i == len(todo):
            print(f"  {i}/{len(todo)} engine configurations ({time.perf_counter() - t0:.0f} s)", flush=True)
    results = {tuple(tuple(kv) for kv in r[0]): (r[1], r[2], r[3]) for rows in cache["engines"].values() for r in rows}
    errors = [r for rows in cache["engines"].values() for r in rows if len(r) > 5]
    for r in errors:
        print(f"  evaluation raised: {_params_str(tuple(tuple(kv) for kv in r[0]))} (offered load {r[4]}): {r[5]}")
    feas = {k: (m, c) for k, (m, c, ok) in results.items() if ok}
    ref = (0.0, budget)
    hv_exact = hypervolume([transform(m, c) for m, c in feas.values()], ref)

    def dominators(m: float, c: float) -> list[tuple]:
        return [k for k, (m2, c2) in feas.items() if m2 <= m and c2 <= c and (m2, c2) != (m, c)]

    exact_front = {k: v for k, v in feas.items() if not dominators(*v)}
    n_space = len(engines) * len(discs) * (high - low + 1)
    print(f"quickstart space, gpu_memory_utilization {QS_GMU}: {n_space} configurations; {len(results)} evaluated "
          f"({len(todo)} engine configurations new, {time.perf_counter() - t0:.0f} s; the others are dominated, "
          f"see _qs_walk), {len(errors)} raised, {len(feas)} feasible; exact front {len(exact_front)} configurations, "
          f"{len(set(exact_front.values()))} distinct points; hypervolume {hv_exact:.4f}", flush=True)
    for k, (m, c) in sorted(exact_front.items(), key=lambda kv: (kv[1][1], kv[1][0], kv[0])):
        print(f"  front: {c:7.2f} $/h  P(miss) {m:.4g}  {_params_str(k)}")

    def measure(study: optuna.Study, upto_polish: bool) -> dict:
        """Front, hypervolume ratio and dominated points, from the search's trials (+ polish's)."""
        keep = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if DUPLICATE_ATTR not in t.user_attrs and (upto_polish or not t.user_attrs.get(POLISH_ATTR))]
        sub = optuna.create_study(directions=study.directions)
        sub.add_trials(keep)
        front = front_trials(sub)

        def discrete(k: tuple) -> tuple:
            return tuple(kv for kv in k if kv[0] != "gpu_memory_utilization")

        tried = {tuple(sorted(t.params.items())) for t in keep}
        tried_discrete = {discrete(k) for k in tried}
        beaten, beaten_discrete = [], []
        for t in front:
            rivals = dominators(*t.values)
            by = [k for k in rivals if k not in tried]
            by_discrete = [k for k in rivals if discrete(k) not in tried_discrete]
            if by:
                beaten.append((t, by))
            if by_discrete:
                beaten_discrete.append((t, by_discrete))
        # The same configuration evaluated by the study and by the exhaustive pass: the same values.
        mism = sum(1 for t in keep if tuple(sorted(t.params.items())) in results
                   and (t.values[0], t.values[1]) != results[tuple(sorted(t.params.items()))][:2])
        hv = hypervolume([transform(*t.values) for t in front], ref)
        return {"front": len(front), "beaten": beaten, "beaten_discrete": beaten_discrete,
                "hv": hv / hv_exact, "mismatch": mism, "configs": len(keep)}

    def show_beaten(label: str, beaten: list) -> None:
        for t, by in beaten:
            best = sorted(by, key=lambda k: (feas[k][1], feas[k][0]))
            print(f"    {label}: front point {t.values[1]:.2f} $/h P(miss) {t.values[0]:.4g} "
                  f"({_params_str(tuple(sorted(t.params.items())))}) dominated by {len(by)} unevaluated, e.g. "
                  + "; ".join(f"{_params_str(k)} ({feas[k][1]:.2f} $/h, {feas[k][0]:.4g})" for k in best[:3]))

    rows = []
    for variant in ("gmu-fixed", "shipped"):
        for seed in args.qs_seeds:
            path = _qs_study(tmp, f"{variant}-{seed}", seed, gmu_fixed=variant == "gmu-fixed")
            r = StudyRunner(load_study(path))
            clear_capacity_cache()
            t1 = time.perf_counter()
            crashes = []
            while True:
                # A trial whose evaluation raises stops ``sojourn study run`` (catch=()): say so,
                # and go on as a user running the same command again would (the run resumes).
                try:
                    study = r.run()
                    break
                except Exception as err:  # noqa: BLE001
                    failed = r.load().get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
                    where = _params_str(tuple(sorted(failed[-1].params.items()))) if failed else "?"
                    crashes.append(where)
                    print(f"{variant} seed {seed}: the search stopped: {type(err).__name__}: {err} ({where})",
                          flush=True)
                    if len(crashes) >= 5:
                        raise
            t_search = time.perf_counter() - t1
            report = polish_front(r, study)
            t_polish = time.perf_counter() - t1 - t_search
            before, after = measure(study, False), measure(study, True)
            before["crashes"] = len(crashes)
            rows.append((variant, seed, before, after, report))
            print(f"{variant} seed {seed}: search {before['configs']} configurations ({t_search:.0f} s"
                  + (f", stopped {len(crashes)} times by an error and run again" if crashes else "") + "): front "
                  f"{before['front']}, HV ratio {before['hv']:.4f}, {len(before['beaten'])} front points dominated by "
                  f"an unevaluated configuration ({len(before['beaten_discrete'])} by unevaluated discrete settings); "
                  f"polish +{report.evaluated} in {report.rounds} rounds ({t_polish:.0f} s, "
                  f"{'converged' if report.converged else 'NOT converged'}): front {after['front']}, HV ratio "
                  f"{after['hv']:.4f}, {len(after['beaten'])} dominated ({len(after['beaten_discrete'])} by "
                  f"unevaluated discrete settings); values differing from the exhaustive pass: {after['mismatch']}",
                  flush=True)
            # gmu-fixed: any unevaluated rival counts. shipped: the rivals are at gpu_memory_utilization
            # 0.95, so a point is listed where the rival's discrete settings were never tried at any value.
            show_beaten("after polish", after["beaten"] if variant == "gmu-fixed" else after["beaten_discrete"])
    print("| variant | sampler seed | search: configs | front | HV ratio | dominated by unevaluated | polish: configs "
          "| rounds | front | HV ratio | dominated by unevaluated |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for variant, seed, b, a, rep in rows:
        def dom(d: dict, variant: str = variant) -> str:
            return f"{len(d['beaten'])}" + (f" ({len(d['beaten_discrete'])})" if variant == "shipped" else "")

        stops = f" ({b['crashes']} stops)" if b["crashes"] else ""
        print(f"| {variant} | {seed} | {b['configs']}{stops} | {b['front']} | {b['hv']:.4f} | {dom(b)} | {rep.evaluated} "
              f"| {rep.rounds} | {a['front']} | {a['hv']:.4f} | {dom(a)} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quickstart", action="store_true",
                    help="the shipped quickstart study against its exact front (search, then polish)")
    ap.add_argument("--qs-seeds", type=lambda v: [int(x) for x in v.split(",")], default=[7, 8, 9],
                    help="sampler seeds of the quickstart studies (7: as shipped); comma-separated")
    ap.add_argument("--jobs", type=int, default=2, help="processes for the quickstart's exhaustive pass")
    ap.add_argument("--qs-recheck", type=int, default=2,
                    help="cached engine configurations of the quickstart's exhaustive pass re-evaluated and compared")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--fidelity", default="fast")
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--trials", type=int, default=None, help="trials per study (default: 30%% of the space)")
    ap.add_argument("--no-refine", action="store_true", help="without the node-neighbour refinement")
    ap.add_argument("--space", choices=sorted(SPACES), default="small")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the exhaustive evaluation here and reuse it while the space and version match")
    args = ap.parse_args()
    if args.quickstart:
        quickstart(args)
        return
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
