"""``sojourn compare-hardware``: the cheapest confirmed configuration per GPU type, rent against own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sojourn._cli._common import write_atomic
from sojourn._errors import ConfigError

__all__ = ["add_parser", "run"]

COLUMNS = ["gpu", "nodes", "tp", "gpus", "p_miss_used", "p_miss", "p_miss_upper", "rent_usd_per_hour", "own_usd_per_hour",
           "capex_usd_per_hour", "power_usd_per_hour", "hosting_usd_per_hour", "purchase_usd", "trial", "calibrated",
           "calibration", "fragile", "note"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="cheapest configuration per GPU type meeting a P(miss) target",
                       description=__doc__)
    p.add_argument("study", help="study TOML file (run it first)")
    p.add_argument("--target-miss", type=float, required=True, help="P(sojourn > SLA) to meet, e.g. 0.001")
    p.add_argument("--replications", type=int, default=None, help="replications of the confirming simulation")
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--out", default=None, help="folder for hardware.csv and hardware.png (default: study output)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none off a terminal either)")
    p.add_argument("--addition", action="store_true",
                   help="the cheapest addition to the current fleet instead: per GPU type, the fewest nodes to add "
                        "to the study's base fleet (its owned pools) to meet the target; needs no study run")
    p.add_argument("--gpus", default=None,
                   help="with --addition: GPU types to add, comma-separated (default: the study space's GPUs)")
    return p


def run(args: argparse.Namespace) -> int:
    import csv
    import io

    from sojourn._cli._common import study_runner
    from sojourn.study import compare_hardware, load_study
    from sojourn.study.plot import plot_hardware

    if not 0 < args.target_miss < 1:
        raise ConfigError("--target-miss", f"must be in (0, 1), got {args.target_miss}")
    from sojourn._cli._common import check_field
    from sojourn.study.config import StudySettings

    check_field(StudySettings, "confirm_replications", args.replications, "--replications",
                "study.confirm_replications")
    check_field(StudySettings, "n_jobs", args.n_jobs, "--n-jobs", "study.n_jobs")
    runner = study_runner(load_study(args.study), n_jobs=args.n_jobs)
    floor = runner.cfg.study.p_miss_floor
    if args.target_miss < floor:
        raise ConfigError("--target-miss", f"{args.target_miss:g} is below the study's p_miss_floor {floor:g}, "
                          "where the study stops telling configurations apart; lower study.p_miss_floor")
    if args.addition:
        return _addition(args, runner)
    study = runner.load(create=False)
    from sojourn._progress import bar, wanted
    from sojourn.study.confirm import interrupt_at_once
    from sojourn.study.front import confirm_replications

    reps = confirm_replications(runner, args.replications)
    print(f"compare-hardware: confirming the cheapest candidate of each GPU type on the {runner.confirm_fidelity} "
          f"tier, {reps} replications each (stored in the study as they finish; Ctrl-C stops at once and a rerun "
          "resumes)", file=sys.stderr)
    try:
        with interrupt_at_once(), bar(None, "compare-hardware", unit="config", enabled=wanted(args.quiet)) as pbar:
            rows = compare_hardware(runner, study, args.target_miss, replications=args.replications, bar=pbar)
    except KeyboardInterrupt:
        print("interrupted: every finished confirmation is stored in the study; run the same command to resume",
              file=sys.stderr)
        return 130
    out = Path(args.out) if args.out else runner.cfg.output_dir
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_atomic(out / "hardware.csv", buf.getvalue())
    plot_hardware(rows, out / "hardware.png", args.target_miss)
    print(f"{'gpu':<10} {'config':>12} {'P(miss)':>14} {'rent $/h':>10} {'own $/h':>10}  speed")
    for r in rows:
        speed = _speed(r)
        if r.get("rent_usd_per_hour") is None:
            print(f"{r['gpu']:<10} {'-':>12} {'-':>14} {'-':>10} {'-':>10}  {speed}  {r.get('note', '')}")
        else:
            cfgs = f"{r['nodes']}x tp{r['tp']}"
            print(f"{r['gpu']:<10} {cfgs:>12} {r['p_miss_used']:>14.3g} {r['rent_usd_per_hour']:>10.2f} "
                  f"{r['own_usd_per_hour']:>10.2f}  {speed}" + ("  fragile" if r.get("fragile") else ""))
    print("  speed: measured = the GPU's step times are fitted on its own measurements; carried over = there are "
          "none, they are taken from another GPU (its row is less certain; `sojourn calibrate` with your "
          "measurements fixes it); not measured = fitted on nothing (typical efficiencies)")
    print(f"wrote {out / 'hardware.csv'} and {out / 'hardware.png'}", file=sys.stderr)
    return 0


def _speed(row: dict[str, Any]) -> str:
    """Where the row's GPU speed comes from, in a few words (``sojourn.perf.calibration_of``)."""
    from sojourn._cli._common import speed_word

    return speed_word(row.get("calibrated"), row.get("calibration"))


ADDITION_COLUMNS = ["gpu", "tp", "nodes_added", "gpus_added", "p_miss_used", "p_miss_current", "added_usd_per_hour",
                    "owned_usd_per_hour", "total_usd_per_hour", "evaluated", "note"]


def _addition(args: argparse.Namespace, runner: Any) -> int:
    """``--addition``: ``sojourn.study.hardware.cheapest_addition`` on the study's base scenario (its
    seed, replications and horizon), P(miss) as the study's sla_miss objective reads it."""
    import csv
    import io

    from sojourn.study.hardware import cheapest_addition, study_p_miss

    space = runner.cfg.space
    gpus = ([g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else
            sorted({g for k, v in space.items() if (k == "gpu" or (k.startswith("fleet.pools.") and k.endswith(".gpu")))
                    and isinstance(v, list) for g in v}))
    if not gpus:
        raise ConfigError("--gpus", "no GPU type to add: the study's space has none; give --gpus a100-80gb,h100-sxm,...")
    base = runner.trial_scenario({})

    print(f"compare-hardware --addition: the fewest nodes of each GPU type to add for P(miss) <= {args.target_miss:g} "
          f"({runner.fidelity} tier)", file=sys.stderr)
    rows = cheapest_addition(base, gpus, args.target_miss, study_p_miss(runner, args.n_jobs))
    out = Path(args.out) if args.out else runner.cfg.output_dir
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ADDITION_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_atomic(out / "addition.csv", buf.getvalue())
    print(f"current fleet: P(miss) {rows[0]['p_miss_current']:.3g}")
    print(f"{'gpu':<10} {'add':>10} {'P(miss)':>10} {'added $/h':>10} {'total $/h':>10}")
    for r in rows:
        if r.get("nodes_added") is None:
            print(f"{r['gpu']:<10} {'-':>10} {'-':>10} {'-':>10} {'-':>10}  {r.get('note', '')}")
        else:
            add = f"{r['nodes_added']}x tp{r['tp']}"
            print(f"{r['gpu']:<10} {add:>10} {r['p_miss_used']:>10.3g} {r['added_usd_per_hour']:>10.2f} "
                  f"{r['total_usd_per_hour']:>10.2f}")
    print("  added $/h: rent of the nodes added; total $/h: with the current (owned) nodes at their rent")
    print(f"wrote {out / 'addition.csv'}", file=sys.stderr)
    return 0
