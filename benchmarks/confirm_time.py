"""How long overnight-70b's front takes to confirm on the request tier: the Python fleet against the compiled one.

    PYTHONPATH=src .venv/bin/python benchmarks/confirm_time.py [--replications K] [--write]

studies/overnight-70b.toml confirms up to ``confirm_max`` (10) front points with 32 replications each, every
replication 48 h of warm-up and 336 h measured of a batch API for Llama-3.1-70B (~9,000 requests a batch, six
batches an hour with a daytime peak). The benchmark takes a configuration from the cheap end of such a front,
where planners buy: H100-SXM, fp8, TP 4, FIFO, the engine's defaults, and the fewest nodes whose fast-tier
P(miss) is at most 1e-3 (found here, on the fast tier). It then runs replications 0..K-1 of that point's
confirmation (the confirmation's own seeds and stationary starts, ``request.simulate_part``) in fresh processes,
once with the Python fleet (``SOJOURN_NO_NUMBA=1``) and once with the compiled one, timing each replication with
``time.process_time``, and checks that both give the same replication statistics. The confirmation's CPU time is
extrapolated from the mean CPU-seconds a replication: 32 replications a point, 10 points.
``--write`` replaces the ``## confirm_time`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "overnight-70b.toml"
SECTION = "## confirm_time"
TARGET = 1e-3  # fast-tier P(miss) of the chosen front point
#: The configuration, all but its node count (the cheap end of the front: fp8 on H100, TP 4, FIFO, defaults).
FIXED: dict[str, Any] = {"gpu": "h100-sxm", "precision": "fp8", "tp": 4, "discipline": "fifo",
                         "gpu_memory_utilization": 0.9, "max_num_batched_tokens": 8192, "max_num_seqs": 256}


def _runner() -> Any:
    from sojourn.study import load_study
    from sojourn.study.runner import StudyRunner

    return StudyRunner(load_study(STUDY))


def choose_nodes(runner: Any) -> tuple[int, float]:
    """The fewest nodes whose fast-tier P(miss) is at most TARGET (bisection: P(miss) falls with nodes)."""
    from sojourn.study.runner import evaluate

    def p(n: int) -> float:
        res = evaluate(runner.trial_scenario({**FIXED, "nodes": n}), "fast")
        return float(res["p_miss"])

    lo, hi = 1, 96
    while lo < hi:
        mid = (lo + hi) // 2
        if p(mid) <= TARGET:
            hi = mid
        else:
            lo = mid + 1
    return lo, p(lo)


def _child(nodes: int, replications: int, reps: int, out: str) -> None:
    """In a fresh process: run replications 0..reps-1 of the confirmation, each timed; write JSON to ``out``."""
    from sojourn.fast.start import plan_start
    from sojourn.request import simulate_part
    from sojourn.sim._stored import replication_to_json
    from sojourn.sim.fleet import run_replication

    runner = _runner()
    sc = runner.trial_scenario({**FIXED, "nodes": nodes})
    # Untimed: the node's capacity (the stationary start's law; measured once a process) and a short run that
    # loads the compiled kernels (numba's cache), so the timed replications are the simulation alone.
    plan_start(sc, None)
    short = sc.with_updates({"simulation.warmup_hours": 0.5, "simulation.horizon_hours": 1.0})
    run_replication(short, np.random.SeedSequence(0))
    rows: list[dict[str, Any]] = []
    last = [time.process_time()]

    def done(i: int, st: Any) -> None:
        now = time.process_time()
        stored = replication_to_json(st)
        stored.pop("wall_s", None)
        rows.append({"index": i, "cpu_s": now - last[0], "requests": st.requests_simulated, "stats": stored})
        last[0] = now

    simulate_part(sc, range(reps), replications=replications, on_replication=done)
    Path(out).write_text(json.dumps(rows))


def measure(nodes: int, replications: int, reps: int, python: bool) -> list[dict[str, Any]]:
    out = Path(f"/tmp/confirm_time_{os.getpid()}_{int(python)}.json")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    if python:
        env["SOJOURN_NO_NUMBA"] = "1"
    else:
        env.pop("SOJOURN_NO_NUMBA", None)
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import confirm_time; "
            f"confirm_time._child({nodes}, {replications}, {reps}, {str(out)!r})")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    rows: list[dict[str, Any]] = json.loads(out.read_text())
    out.unlink()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replications", type=int, default=1, help="replications timed on each fleet (default 1)")
    ap.add_argument("--nodes", type=int, default=None, help="the node count (default: chosen on the fast tier)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    runner = _runner()
    st = runner.cfg.study
    confirm_reps = st.confirm_replications or 2 * runner.base.simulation.replications
    points = st.confirm_max
    if args.nodes is None:
        nodes, p = choose_nodes(runner)
        chosen = f"{nodes} nodes, fast-tier P(miss) {p:.2g} (the fewest at or under {TARGET:g})"
    else:
        nodes, chosen = args.nodes, f"{args.nodes} nodes (given)"
    print(f"configuration: {FIXED}, {chosen}", flush=True)
    t0 = time.time()
    py = measure(nodes, confirm_reps, args.replications, python=True)
    kern = measure(nodes, confirm_reps, args.replications, python=False)
    same = all(a["stats"] == b["stats"] for a, b in zip(py, kern))
    rows = []
    for name, runs in (("Python fleet", py), ("compiled fleet", kern)):
        cpu = sum(r["cpu_s"] for r in runs) / len(runs)
        req = sum(r["requests"] for r in runs) / len(runs)
        rows.append((name, req, cpu, req / cpu, cpu * confirm_reps * points / 3600.0))
    ratio = rows[0][2] / rows[1][2]
    lines = [
        f"| fleet | requests a replication | CPU-s a replication | requests/CPU-s | confirmation, {points} points x "
        f"{confirm_reps} replications (CPU-h) |",
        "|---|---:|---:|---:|---:|",
        *(f"| {n} | {q:,.0f} | {c:,.1f} | {q / c:,.0f} | {h:,.1f} |" for n, q, c, _, h in rows),
    ]
    text = "\n".join(lines)
    print(text)
    print(f"compiled / Python: {ratio:.1f}x fewer CPU-seconds; identical replication statistics: {same}")
    if args.write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _results import write_section

        write_section(SECTION, f"""{SECTION}

Command: `PYTHONPATH=src .venv/bin/python benchmarks/confirm_time.py --replications {args.replications} --write`
(Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, {time.time() - t0:.0f} s wall,
{time.strftime('%Y-%m-%d', time.gmtime())}). studies/overnight-70b.toml's confirmation of one point from the cheap
end of its front ({FIXED['gpu']}, {FIXED['precision']}, TP {FIXED['tp']}, {FIXED['discipline']}, {chosen}):
replications 0..{args.replications - 1} of its {confirm_reps}, each {runner.base.simulation.warmup_hours:g} h of
warm-up and {runner.base.simulation.horizon_hours:g} h measured, timed in fresh processes with
`time.process_time` (the compile of numba's kernels excluded: cached beforehand by the first run).

{text}

The compiled fleet takes {ratio:.1f}x fewer CPU-seconds a replication; the two give identical replication
statistics: {same}. The confirmation's CPU time is extrapolated from the mean replication ({confirm_reps}
replications a point, {points} points); its wall time is that over the processes and machines that share it
(`study.confirm_chunk`, issue 16 item 4).
""")


if __name__ == "__main__":
    main()
