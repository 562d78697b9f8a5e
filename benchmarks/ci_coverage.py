"""How often the request tier's 95% P(miss) interval covers the truth, by congestion episodes.

    .venv/bin/python benchmarks/ci_coverage.py [--runs 100] [--truth P] [--truth-hours H] [--case few|many]

An M^X/M/8 generic server (geometric batches, exponential service of 1 s, FIFO,
deadline cancellation, rho 0.9) is simulated ``--runs`` times as a user would run
it (5 replications of 3 h, ~400 batches each), each run on its own seed; the
truth is one long run (8 replications of 600 h, ~8 min; pass ``--truth`` to reuse
it). Misses arrive in congestion episodes, and a run that holds few of them gives
a skewed estimate, usually low, with a narrow interval. Printed: the coverage of
the interval over all runs, over the runs the result flags (``p_miss_note``:
fewer than ``MIN_EPISODES`` effective episodes) and over the others.

Cases: ``few`` (mean batch 200, SLA 500 s: P(miss) ~1.5e-2 in ~5 episodes a
run) and ``many`` (mean batch 50, SLA 60 s: ~5.8e-2 in ~100 episodes a run).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from sojourn.request import MIN_EPISODES, simulate
from sojourn.scenario import scenario_from_dict

CASES = {"few": (200, 500.0), "many": (50, 60.0)}  # mean batch, SLA seconds


def scenario(mean_batch: int, sla: float, hours: float, reps: int, seed: int):
    conc, rho = 8, 0.9
    return scenario_from_dict({
        "sla_hours": sla / 3600.0,
        "workload": {"batch_rate_per_hour": rho * conc / mean_batch * 3600.0,
                     "batch_size": {"dist": "geometric", "mean": mean_batch},
                     "input_tokens": {"dist": "fixed", "value": 1}, "output_tokens": {"dist": "fixed", "value": 1}},
        "fleet": {"nodes": 1, "server": {"kind": "generic", "service_time": {"dist": "exponential", "mean": 1.0},
                                         "concurrency": conc}},
        "serving": {"discipline": "fifo", "on_deadline": "cancel"},
        "simulation": {"horizon_hours": hours, "warmup_hours": 0.2, "replications": reps, "seed": seed},
    })


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--truth", type=float)
    ap.add_argument("--case", choices=sorted(CASES), default="few")
    ap.add_argument("--truth-hours", type=float, default=600.0, help="span of each of the truth run's 8 replications")
    args = ap.parse_args(argv)
    mb, sla = CASES[args.case]
    t0 = time.perf_counter()
    truth = args.truth
    if truth is None:
        long = simulate(scenario(mb, sla, args.truth_hours, 8, 4242), n_jobs=2)
        truth = long.p_miss
        print(f"truth {truth:.4g} [{long.p_miss_ci[0]:.4g}, {long.p_miss_ci[1]:.4g}] "
              f"({long.requests_arrived} requests, {time.perf_counter() - t0:.0f} s)")
    rows = []
    for k in range(args.runs):
        r = simulate(scenario(mb, sla, 3.0, 5, 10 + k), n_jobs=1)
        lo, hi = r.p_miss_ci
        rows.append((lo <= truth <= hi, bool(r.p_miss_note), r.miss_episodes_effective, truth <= r.p_miss_upper))
    cov = np.array([c for c, *_ in rows])
    flag = np.array([f for _, f, *_ in rows])
    keff = np.array([k for _, _, k, _ in rows])
    up = np.array([u for *_, u in rows])

    def share(mask: np.ndarray) -> str:
        return f"{cov[mask].mean():.2f} of {mask.sum()}" if mask.any() else "-"

    print(f"case {args.case}: truth {truth:.4g}; {args.runs} runs of 5 x 3 h; effective episodes a run: median "
          f"{np.median(keff):.1f} ({np.quantile(keff, 0.1):.1f}-{np.quantile(keff, 0.9):.1f}, 10-90%)")
    print(f"  interval covers the truth: all runs {share(np.ones(len(rows), bool))}; flagged (< {MIN_EPISODES} "
          f"effective episodes) {share(flag)}; not flagged {share(~flag)}; one-sided, truth <= p_miss_upper "
          f"{up.mean():.2f} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
