"""The long phases end to end, as a user runs them: a hardware-purchase study, then compare-hardware stopped and resumed.

Issue 12 found `compare-hardware studies/hardware-purchase.toml --target-miss 0.001` silent for
36 minutes, keeping nothing when stopped. This runs the shipped study in a work folder (its
search on the fast tier, then polish; no confirmation), then compare-hardware, which confirms
the cheapest candidate of each GPU type on the request tier (24 replications x 384 h each);
after ``--interrupt-after`` confirmations are stored it sends Ctrl-C (SIGINT) and measures how
long the process takes to stop; then it runs the same command again, which resumes, until it
finishes or ``--budget-s`` runs out (then Ctrl-C again). Reports each phase's wall time and
peak resident memory, each confirmation's seconds, what the resumed run reused.

    .venv/bin/python benchmarks/long_jobs.py --workdir /tmp/hp [--search-trials 600] [--interrupt-after 1]
        [--budget-s 3600]

A work folder that already holds the study's database goes on from it (the search resumes,
stored confirmations are reused): the study is resumable, and so is this benchmark.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import optuna  # noqa: E402

NAME = "hardware-purchase"


def run(cmd: list[str], cwd: Path, stop_when=None, budget_s: float | None = None) -> dict:
    """Run ``cmd``; SIGINT it when ``stop_when()`` holds or after ``budget_s``. Wall time, peak RSS, exit code."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C as at a terminal
    stopped_at = None
    while proc.poll() is None:
        late = budget_s is not None and time.monotonic() - t0 > budget_s
        if stopped_at is None and (late or (stop_when is not None and stop_when())):
            stopped_at = time.monotonic()
            proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
    out, err = proc.communicate()
    end = time.monotonic()
    peak = _peak_rss_mb(proc.pid)
    return {"rc": proc.returncode, "wall_s": end - t0, "stop_s": None if stopped_at is None else end - stopped_at,
            "out": out, "err": err, "peak_mb": peak}


def _peak_rss_mb(pid: int) -> float | None:
    import resource

    # The largest child reaped so far: each phase runs one process at a time, and they grow.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def queue(storage: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=NAME + ":confirm", storage=storage).trials
    except KeyError:
        return []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--search-trials", type=int, default=None, help="the study's n_trials (default: the file's 600)")
    ap.add_argument("--target-miss", default="0.001")
    ap.add_argument("--interrupt-after", type=int, default=1, help="confirmations stored before the Ctrl-C")
    ap.add_argument("--budget-s", type=float, default=None, help="stop the resumed compare-hardware after this")
    ap.add_argument("--interrupt-after-s", type=float, default=None,
                    help="Ctrl-C the first compare-hardware after this many seconds instead (a confirmation of this "
                         "study takes over an hour on 2 CPUs)")
    ap.add_argument("--interrupt-after-replications", type=int, default=None,
                    help="Ctrl-C the first compare-hardware once its running confirmation stored this many "
                         "replications (the resumed run must start from them)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    study = wd / f"{NAME}.toml"
    if not study.exists():
        shutil.copy(ROOT / "studies" / f"{NAME}-scenario.toml", wd)
        text = (ROOT / "studies" / f"{NAME}.toml").read_text()
        text = text.replace("[study]\n", f'[study]\nobjectives_dir = "{ROOT / "objectives"}"\n', 1)
        if args.search_trials is not None:
            text = text.replace("n_trials = 600", f"n_trials = {args.search_trials}")
        study.write_text(text)
    storage = f"sqlite:///{wd / (NAME + '.db')}"
    cli = [sys.executable, "-m", "sojourn.cli"]

    search = run(cli + ["study", "run", str(study), "--no-confirm", "--quiet"], wd)
    n = len(optuna.load_study(study_name=NAME, storage=storage).trials)
    print(f"search + polish: {n} trials in the study, {search['wall_s']:.0f} s, peak RSS {search['peak_mb']:.0f} MB, "
          f"exit {search['rc']}", flush=True)
    if search["rc"] != 0:
        print(search["err"][-2000:])
        return 1

    def done() -> int:
        return sum(1 for t in queue(storage) if t.state.name == "COMPLETE" and "seconds" in t.user_attrs)

    before = done()
    ch = cli + ["compare-hardware", str(study), "--target-miss", args.target_miss, "--quiet"]
    def replications_stored() -> int:
        return max((sum(k.startswith("replication:") for k in t.user_attrs) for t in queue(storage)
                    if t.state.name == "RUNNING"), default=0)

    if args.interrupt_after_replications is not None:
        first = run(ch, wd, stop_when=lambda: replications_stored() >= args.interrupt_after_replications)
        when = f"{args.interrupt_after_replications} replication(s) of the running confirmation"
    elif args.interrupt_after_s is not None:
        first = run(ch, wd, budget_s=args.interrupt_after_s)
        when = f"{args.interrupt_after_s:g} s"
    else:
        first = run(ch, wd, stop_when=lambda: done() >= before + args.interrupt_after)
        when = f"{args.interrupt_after} new confirmation(s)"
    print(f"compare-hardware, Ctrl-C after {when}: exit {first['rc']} after "
          f"{first['wall_s']:.0f} s; stopped {first['stop_s']:.2f} s after the Ctrl-C; "
          f"{done()} confirmation(s) stored; peak RSS {first['peak_mb']:.0f} MB", flush=True)
    print("  " + first["err"].strip().splitlines()[-1], flush=True)
    kept = done()
    second = run(ch, wd, budget_s=args.budget_s)
    finished = second["rc"] == 0
    print(f"compare-hardware resumed: exit {second['rc']} after {second['wall_s']:.0f} s "
          f"({'finished' if finished else 'stopped at the budget'}); {kept} confirmation(s) reused, "
          f"{done() - kept} simulated; peak RSS {second['peak_mb']:.0f} MB", flush=True)
    for t in queue(storage):
        if "resumed_replications" in t.user_attrs:
            stored = sum(k.startswith("replication:") for k in t.user_attrs)
            print(f"  job {t.number} (trial {t.params.get('trial')}): {t.state.name}, started from "
                  f"{t.user_attrs['resumed_replications']} stored replication(s), stored {stored} itself")
    secs = [(t.params["trial"], t.user_attrs["seconds"]) for t in queue(storage) if "seconds" in t.user_attrs]
    print("confirmations (trial: seconds): " + ", ".join(f"{k}: {s:.0f}" for k, s in secs))
    if finished:
        print(second["out"])
    else:
        print(second["err"][-1500:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
