"""``sojourn study``: run a sizing study, export its Pareto front, plot it, rerun it under what-ifs
(``sweep``) and write the page a manager reads (``report``)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from sojourn._cli._common import write_atomic
from sojourn._errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="run a sizing study; export and plot its Pareto front", description=__doc__)
    ss = p.add_subparsers(dest="study_command", metavar="ACTION", parser_class=type(p))
    ss.required = True
    r = ss.add_parser("run", help="run (or resume) the study, confirm and print the front")
    r.add_argument("study", help="study TOML file")
    r.add_argument("--n-trials", type=int, default=None, help="trials to add (default: up to the file's n_trials)")
    r.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    r.add_argument("--n-jobs", type=int, default=1, help="processes for the replications of each simulation")
    r.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars (there are none off a terminal either)")
    r.add_argument("--no-confirm", action="store_true", help="skip re-simulating the front")
    r.add_argument("--no-polish", action="store_true",
                   help="skip evaluating the front points' neighbours after the search (study.polish)")
    r.add_argument("--worker-id", type=int, default=0,
                   help="this worker's number when several run one study on a shared storage "
                        "(PostgreSQL, MySQL): each gets its own sampler seed (default 0)")
    f = ss.add_parser("front", help="the feasible non-dominated trials")
    f.add_argument("study")
    f.add_argument("--format", choices=["csv", "json"], default="csv")
    f.add_argument("--out", default=None, help="write here (atomically) instead of stdout")
    g = ss.add_parser("plot", help="plot cost against P(miss)")
    g.add_argument("study")
    g.add_argument("--out", default=None, help="front.png, front.svg or front.html (default: <output dir>/front.png)")
    from sojourn._cli import study_whatif

    study_whatif.add_parser(ss)  # sweep and report
    return p


def _runner(args: argparse.Namespace, n_jobs: int = 1, progress: bool = False):
    from sojourn._cli._common import study_runner
    from sojourn.study import load_study

    return study_runner(load_study(args.study), n_jobs=n_jobs, progress=progress)


#: The words under the front's table: what each column and mark means to a capacity planner.
FRONT_LEGEND = """\
  $/hour:   rent of the fleet (GPUs x $/GPU-hour, catalogue prices or yours).
  P(miss):  the share of requests that finish after their SLA, as the study optimised it: the
            upper end of what the runs support (or the exact analytic value where there is one),
            floored at p_miss_floor. sampled and 95% CI: what the simulation saw; analytic: the
            queueing-theory value (FIFO). docs/model.md, "Which P(miss) a study optimises".
  load:     offered work over the fleet's capacity; near 1 the fleet has no slack.
  calib:    yes = the GPU's speed is fitted on its own measurements; carried = there are none: it is
            taken from another GPU (less certain; `sojourn calibrate` fixes it); no = fitted on nothing.
  notes:    fragile = 2% less node capacity would move P(miss) more than 2x: buy with margin;
            caution = the run says its steady state or its interval is not to be trusted (front.csv
            has the reason); unconfirmed = not re-simulated with more replications."""


def format_front(rows: list[dict[str, Any]], space: list[str]) -> str:
    if not rows:
        return "no feasible trial yet: widen the space, raise the budget, or run more trials"
    head = (f"{'trial':>5} {'$/hour':>9} {'P(miss)':>10}  {'sampled':>9} {'95% CI':>21} {'analytic':>9} {'load':>6} "
            f"{'calib':>7}  " + "  ".join(space) + "  notes")
    lines = [head]
    for r in rows:
        ci = f"[{_g(r['p_miss_ci_lo'])}, {_g(r['p_miss_ci_hi'])}]"
        params = "  ".join(_g(r.get(k)) for k in space)
        notes = []
        if r.get("fragile"):
            notes.append("fragile")
        if r.get("steady_state_note") or r.get("p_miss_note"):
            notes.append("caution")
        if not r["confirmed"]:
            notes.append("unconfirmed")
        load = r.get("load")
        cal = r.get("calibrated")
        calib = "-" if cal is None else "yes" if cal else "carried" if _carried(r.get("calibration")) else "no"
        lines.append(
            f"{r['trial']:>5} {r['cost_per_hour']:>9.2f} {_g(r.get('p_miss_objective')):>10}  {_g(r['p_miss']):>9} "
            f"{ci:>21} {_g(r.get('p_miss_analytic')):>9} {(f'{load:.3f}' if isinstance(load, float) else '-'):>6} "
            f"{calib:>7}  {params}  {', '.join(notes) or '-'}"
        )
    lines.append(FRONT_LEGEND)
    origins = _carried_pairs(rows)
    if origins:
        lines.append(f"  carried:  {'; '.join(origins)}")
    return "\n".join(lines)


def _carried_pairs(rows: list[dict[str, Any]]) -> list[str]:
    """"<gpu> from <gpu measured>" for each front GPU whose speed is carried over, in row order, once each."""
    from sojourn.perf._profile import carried_origin

    out: list[str] = []
    for r in rows:
        origin = carried_origin(r.get("calibration"))
        if origin:
            pair = f"{r.get('gpu') or 'the scenario GPU'} from {origin}"
            if pair not in out:
                out.append(pair)
    return out


def _carried(source: Any) -> bool:
    """Not calibrated because the speed comes from another GPU or engine (``sojourn.perf.calibration_of``)."""
    return isinstance(source, str) and source.startswith("carried over")


def _g(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.3g}"
    return str(v)


def _split(runner: Any, reps: int) -> str:
    """How a confirmation is split into jobs the workers sharing the study take up (``study.confirm_chunk``)."""
    from sojourn.study.confirm import confirm_parts

    parts = confirm_parts(runner, reps)
    return f", in {parts} jobs that workers sharing the study take up" if parts > 1 else ""


def _confirm(runner: Any, study: Any) -> bool:
    """Confirm the front (resumable, shared jobs) with a progress bar; False when interrupted."""
    from sojourn._progress import bar
    from sojourn.study.confirm import interrupt_at_once, stored_confirmation, wait_for_other_workers
    from sojourn.study.front import confirm_front, confirm_replications, front_trials, spread

    cfg = runner.cfg.study
    wait_for_other_workers(runner, study)
    reps = confirm_replications(runner)
    chosen = spread(front_trials(study), cfg.confirm_max)
    attrs = study.user_attrs
    done = sum(stored_confirmation(study, t.number, reps, attrs) is not None for t in chosen)
    if chosen:
        print(f"study {cfg.name}: confirming {len(chosen)} front points on the {runner.confirm_fidelity} tier, "
              f"{reps} replications each" + _split(runner, reps) + (f" ({done} stored already)" if done else "")
              + "; Ctrl-C stops at once and a rerun resumes", file=sys.stderr)
    try:
        with interrupt_at_once(), bar(len(chosen), f"{cfg.name}: confirm", unit="point",
                                      enabled=runner.progress) as pbar:
            confirm_front(runner, study, trials=chosen, bar=pbar)
    except KeyboardInterrupt:
        attrs = study.user_attrs
        done = sum(stored_confirmation(study, t.number, reps, attrs) is not None for t in chosen)
        print(f"interrupted: {done} of {len(chosen)} confirmations stored; run the same command to resume",
              file=sys.stderr)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from sojourn.study.front import front_rows, rows_to_csv, rows_to_json
    from sojourn.study.plot import plot_front

    if args.study_command == "run":
        return _run_study(args)
    if args.study_command in ("sweep", "report"):
        from sojourn._cli import study_whatif

        return study_whatif.run(args)
    runner = _runner(args)
    study = runner.load(create=False)
    if args.study_command == "front":
        rows = front_rows(study, list(runner.cfg.space), runner)
        text = rows_to_csv(rows, list(runner.cfg.space)) if args.format == "csv" else rows_to_json(rows)
        if args.out:
            write_atomic(args.out, text)
        else:
            sys.stdout.write(text)
        return 0
    out = args.out or str(runner.cfg.output_dir / "front.png")
    path = plot_front(study, out, budget=runner.cfg.study.budget_per_hour, runner=runner)
    print(f"wrote {path}", file=sys.stderr)
    return 0


#: What an interrupted search or polish says (the exit status is 130).
_INTERRUPTED = "interrupted: every finished trial is saved; run the same command to resume"


def _run_study(args: argparse.Namespace) -> int:
    """``sojourn study run``: the search, polish, confirmation, and the front written out."""
    _check_run_args(args)
    from sojourn._progress import wanted

    runner = _runner(args, n_jobs=args.n_jobs, progress=wanted(args.quiet))
    runner.worker_id = args.worker_id
    cfg = runner.cfg
    print(f"study {cfg.study.name}: storage {runner.display_url()}", file=sys.stderr)
    slow = runner.request_tier_choices() if runner.trial_fidelity == "auto" else []
    if slow:
        print(f"study {cfg.study.name}: the fast tier does not model {', '.join(slow)}: trials with "
              "them run the request tier in full, far slower than the fast tier's trials", file=sys.stderr)
    try:
        study = runner.run(n_trials=args.n_trials, timeout=args.timeout)
    except KeyboardInterrupt:
        print(_INTERRUPTED, file=sys.stderr)
        return 130
    if runner.interrupted:
        done = sum(1 for t in study.trials if t.state.is_finished())
        print(f"interrupted after {done} trials, all saved; run the same command to resume", file=sys.stderr)
        return 130
    _report_trials(study)
    from sojourn.study.confirm import wait_for_other_workers

    if cfg.study.polish and not args.no_polish:
        from sojourn.study.polish import polish_front

        wait_for_other_workers(runner, study)

        try:
            report = polish_front(runner, study)
        except KeyboardInterrupt:  # the second Ctrl-C: the aborted trial is polished again next time
            print(_INTERRUPTED, file=sys.stderr)
            return 130
        print(report.describe(), file=sys.stderr)
        if report.interrupted:
            print(_INTERRUPTED, file=sys.stderr)
            return 130
    if not args.no_confirm and not _confirm(runner, study):
        return 130
    _write_front(runner, study)
    return 0


def _check_run_args(args: argparse.Namespace) -> None:
    """``study run``'s own options, refused as the study file's fields would be (ConfigError)."""
    if args.n_trials is not None and args.n_trials < 0:
        raise ConfigError("--n-trials", f"must be >= 0, got {args.n_trials}")
    from sojourn._cli._common import check_field
    from sojourn.study.config import StudySettings

    check_field(StudySettings, "n_jobs", args.n_jobs, "--n-jobs", "study.n_jobs")
    check_field(StudySettings, "timeout_s", args.timeout, "--timeout", "study.timeout_s")
    if args.worker_id < 0:
        raise ConfigError("--worker-id", f"must be >= 0, got {args.worker_id}")


def _report_trials(study: Any) -> None:
    """How many trials the study holds, and what they were: evaluated, repeats, failed, unfinished."""
    n = len(study.trials)
    from sojourn.study import DUPLICATE_ATTR
    from sojourn.study.runner import count_trials

    c = count_trials(study)
    polished = sum(1 for t in study.trials if t.state.name == "COMPLETE"
                   and t.user_attrs.get("polish") and DUPLICATE_ATTR not in t.user_attrs)
    print(f"{n} trials in the study: {c['evaluated']} configurations evaluated"
          + (f" ({c['evaluated'] - polished} by the search, {polished} by polish)" if polished else "")
          + (f", {c['repeats']} repeats answered from the stored results" if c["repeats"] else "")
          + (f", {c['failed']} failed (not counted; a worker that died has its configuration re-queued)"
             if c["failed"] else "")
          + (f", {c['running'] + c['waiting']} unfinished" if c["running"] + c["waiting"] else ""),
          file=sys.stderr)


def _write_front(runner: Any, study: Any) -> None:
    """The front's table and plot in the study's output folder, and the table on stdout."""
    from sojourn.study.front import front_rows, rows_to_csv
    from sojourn.study.plot import plot_front

    cfg = runner.cfg
    space = list(cfg.space)
    rows = front_rows(study, space, runner)
    out = cfg.output_dir
    write_atomic(out / "front.csv", rows_to_csv(rows, space))
    plot_front(study, out / "front.png", budget=cfg.study.budget_per_hour, runner=runner)
    print(format_front(rows, space))
    print(f"wrote {out / 'front.csv'} and {out / 'front.png'}", file=sys.stderr)
