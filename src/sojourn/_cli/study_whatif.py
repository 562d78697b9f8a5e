"""``sojourn study sweep`` and ``sojourn study report``: a study's front under what-ifs, and the
page a manager reads (subcommands of ``sojourn study``, added by ``sojourn._cli.study``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sojourn._cli._common import add_what_if_options, check_field, check_n_jobs, check_out, what_if_of, write_atomic
from sojourn._errors import ConfigError

__all__ = ["add_parser", "run"]

#: The tiers a sweep reruns at.
SWEEP_FIDELITIES = ("fast", "request", "auto")


def add_parser(ss: Any, name: str = "sweep") -> None:
    """The ``sweep`` and ``report`` actions on ``sojourn study``'s subparsers ``ss``."""
    w = ss.add_parser("sweep", help="rerun the front under what-ifs: the cheapest configuration per P(miss) target",
                      description="Rerun the configurations of a study's front under each what-if (traffic "
                                  "scaled, SLA replaced) and print, per what-if and P(miss) target, the cheapest "
                                  "configuration that meets it; writes the table as CSV too.")
    w.add_argument("study", help="study TOML file (run it first)")
    _what_if_arguments(w)
    w.add_argument("--fidelity", choices=SWEEP_FIDELITIES, default="fast",
                   help="tier of the reruns (default fast; auto: fast where it models the configuration)")
    w.add_argument("--replications", type=int, default=None, help="replications per rerun (default: the study's)")
    w.add_argument("--configs", choices=("front", "feasible"), default="front",
                   help="rerun the front's configurations (default) or every feasible one the study evaluated")
    w.add_argument("--n-jobs", type=int, default=1, help="processes for a request-tier rerun's replications")
    w.add_argument("--out", default=None, help="the CSV (default: <output dir>/sweep.csv); written atomically")
    w.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    r = ss.add_parser("report", help="one HTML page (and Markdown) a manager reads: the front, the cheapest "
                                     "configuration per target, the assumptions",
                      description="Write a self-contained HTML page (an interactive plot that works offline) and "
                                  "the same content as Markdown, from a study's storage.")
    r.add_argument("study", help="study TOML file (run it first)")
    r.add_argument("--out", default=None, help="the HTML page (default: <output dir>/report.html); the Markdown "
                                               "and front.png go beside it")
    _what_if_arguments(r, report=True)
    r.add_argument("--fidelity", choices=SWEEP_FIDELITIES, default="fast", help="tier of the what-ifs' reruns")
    r.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")


def _what_if_arguments(p: argparse.ArgumentParser, report: bool = False) -> None:
    p.add_argument("--what-if", action="append", default=[], metavar="SPEC",
                   help="a what-if: rate=X (X times the arrival rate), sla=H (an SLA of H hours), both "
                        "(rate=1.5,sla=12) or baseline; repeat it for several"
                        + ("; with none, the report has no what-if section" if report else
                           " (the baseline is always included)"))
    add_what_if_options(p)
    p.add_argument("--targets", default=None, metavar="P,P,...",
                   help="P(miss) targets (default 1e-2,1e-3,1e-4); each in (p_miss_floor, 1)")


def what_ifs_of(args: argparse.Namespace, always_baseline: bool = True) -> list[Any]:
    """The what-ifs asked, the baseline first (when ``always_baseline`` or any is asked), each once."""
    from sojourn.whatif import WhatIf, parse_what_if

    asked = [parse_what_if(text) for text in args.what_if]
    one = what_if_of(args)
    if one is not None:
        asked.append(one)
    out: list[Any] = [WhatIf()] if (always_baseline or asked) else []
    for w in asked:
        if w not in out:
            out.append(w)
    return out


def targets_of(text: str | None, floor: float) -> list[float]:
    """The P(miss) targets of ``--targets``: each a number in (floor, 1), named on error."""
    from sojourn.study.sweep import DEFAULT_TARGETS

    if text is None:
        return [t for t in DEFAULT_TARGETS if t > floor]
    out = []
    for part in text.split(","):
        try:
            x = float(part)
        except ValueError:
            raise ConfigError("--targets", f"cannot read {part.strip()!r}; allowed: comma-separated numbers in "
                                           f"({floor:g}, 1), e.g. 1e-2,1e-3") from None
        if not floor < x < 1:
            why = " (the study's p_miss_floor: below it the study tells no configurations apart)" if x <= floor else ""
            raise ConfigError("--targets", f"{part.strip()} is outside ({floor:g}, 1){why}")
        out.append(x)
    return out


def run(args: argparse.Namespace) -> int:
    if args.study_command == "sweep":
        return _run_sweep(args)
    return _run_report(args)


def _sweep(args: argparse.Namespace, runner: Any, study: Any, what_ifs: list[Any], configs: str = "front",
           replications: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The reruns of a sweep, with a progress bar: (rows, configurations rerun)."""
    from sojourn._progress import bar, wanted
    from sojourn.study.sweep import rerun_front, sweep_trials

    trials = sweep_trials(study, configs)
    n = len(trials) * len(what_ifs)
    print(f"study {runner.cfg.study.name}: rerunning {len(trials)} configurations under {len(what_ifs)} what-ifs "
          f"({', '.join(w.label for w in what_ifs)}) on the {args.fidelity} tier", file=sys.stderr)
    with bar(n, f"{runner.cfg.study.name}: sweep", unit="run", enabled=wanted(args.quiet)) as pbar:
        rows = rerun_front(runner, study, what_ifs, fidelity=args.fidelity, replications=replications, bar=pbar,
                           trials=trials)
    return rows, len(trials)


def _run_sweep(args: argparse.Namespace) -> int:
    from sojourn._cli._common import study_runner
    from sojourn.study import load_study
    from sojourn.study.config import StudySettings
    from sojourn.study.sweep import cheapest_per_target, format_sweep, sweep_csv

    check_n_jobs(args.n_jobs, all_cpus=True)
    check_field(StudySettings, "replications", args.replications, "--replications", "study.replications")
    check_out(args.out, suffixes=(".csv",))
    what_ifs = what_ifs_of(args)
    runner = study_runner(load_study(args.study), n_jobs=args.n_jobs)
    targets = targets_of(args.targets, runner.cfg.study.p_miss_floor)
    study = runner.load(create=False)
    rows, n = _sweep(args, runner, study, what_ifs, args.configs, args.replications)
    table = cheapest_per_target(rows, targets, [w.label for w in what_ifs])
    out = Path(args.out) if args.out else runner.cfg.output_dir / "sweep.csv"
    write_atomic(out, sweep_csv(table, list(runner.cfg.space)))
    print(format_sweep(table, n, args.fidelity, args.configs))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from sojourn._cli._common import study_runner
    from sojourn.study import load_study
    from sojourn.study.report import write_report
    from sojourn.study.sweep import cheapest_per_target

    check_out(args.out, suffixes=(".html",))
    what_ifs = what_ifs_of(args, always_baseline=False)
    runner = study_runner(load_study(args.study))
    targets = targets_of(args.targets, runner.cfg.study.p_miss_floor)
    study = runner.load(create=False)
    sweep = None
    if what_ifs:
        rows, n = _sweep(args, runner, study, what_ifs)
        sweep = {"table": cheapest_per_target(rows, targets, [w.label for w in what_ifs]), "configs": n,
                 "fidelity": args.fidelity, "what_ifs": {w.label: w.describe() for w in what_ifs}}
    out = Path(args.out) if args.out else runner.cfg.output_dir / "report.html"
    paths = write_report(runner, study, out, targets=targets, sweep=sweep)
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
