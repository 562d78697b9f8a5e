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
