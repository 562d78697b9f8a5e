"""Memory of a long study: the resident set size of overnight-70b's search over many trials.

Runs studies/overnight-70b.toml (its own space and settings, a fresh SQLite storage in a
temporary folder, no polish or confirmation) for ``--trials`` trials and records the
process's resident set size after every trial; reports it at a few points and the
growth per trial over the second half (where caches are full). Issue 12 measured ~20 MB
a trial before the capacity cache was bounded in bytes.

    .venv/bin/python benchmarks/study_memory.py --trials 1000 [--write]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import optuna  # noqa: E402

from sojourn.study import StudyRunner, load_study  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--study", default=str(ROOT / "studies" / "overnight-70b.toml"))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the CLI's setting, for this script's output
    tmp = Path(tempfile.mkdtemp(prefix="sojourn-mem-"))
    src = Path(args.study)
    for f in src.parent.glob("*.toml"):
        shutil.copy(f, tmp / f.name)
    text = (tmp / src.name).read_text()
    text = text.replace("[study]", f'[study]\nstorage = "sqlite:///{tmp / "mem.db"}"\n'
                                   f'objectives_dir = "{ROOT / "objectives"}"\npolish = false', 1)
    (tmp / src.name).write_text(text)
    runner = StudyRunner(load_study(tmp / src.name))
    trace: list[tuple[int, float, float]] = []
    t0 = time.perf_counter()

    def record(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        trace.append((len(trace) + 1, rss_mb(), time.perf_counter() - t0))

    study = runner.load()
    study.optimize(runner.objective({}), n_trials=args.trials, callbacks=[record], catch=())
    n = len(trace)
    marks = sorted({m for m in (1, 10, 50, 100, 200, 500, 1000, n) if m <= n})
    print(f"{args.study}: {n} trials in {trace[-1][2]:.0f} s")
    for m in marks:
        _, rss, wall = trace[m - 1]
        print(f"  after trial {m:5d}: RSS {rss:7.0f} MB ({wall:6.0f} s)")
    half = trace[n // 2:]
    if len(half) > 1:
        slope = (half[-1][1] - half[0][1]) / (half[-1][0] - half[0][0])
        print(f"  growth over the second half: {slope:.3f} MB a trial; peak {max(r for _, r, _ in trace):.0f} MB")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
