"""Import time of sojourn's packages: each import in a fresh interpreter, the median of a few.

Times ``import sojourn.sim``, ``import sojourn.fast``, ``import sojourn.study`` and
``import sojourn.cli``, each in its own new process (``time.perf_counter`` around the
import statement alone, so interpreter start-up is not counted), after one untimed run
that leaves the bytecode compiled. With ``--importtime`` it also runs each once under
``python -X importtime`` and lists what the time goes to: the third-party packages
sojourn imports directly, by their cumulative time. Issue 13 wants ``import sojourn.sim``
under 0.5 s.

    .venv/bin/python benchmarks/import_time.py [--repeat 5] [--importtime] [--src DIR] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

MODULES = ("sojourn.sim", "sojourn.fast", "sojourn.study", "sojourn.cli")
#: Issue 13: ``import sojourn.sim`` under this many seconds.
TARGET = {"sojourn.sim": 0.5}
_TIMED = "import sys, time; t = time.perf_counter(); import {m}; print(time.perf_counter() - t)"
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")


def _env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def time_import(module: str, src: Path, repeat: int) -> list[float]:
    code = _TIMED.format(m=module)
    subprocess.run([sys.executable, "-c", code], env=_env(src), check=True, capture_output=True)  # compile .pyc
    out = []
    for _ in range(repeat):
        run = subprocess.run([sys.executable, "-c", code], env=_env(src), check=True, capture_output=True, text=True)
        out.append(float(run.stdout.strip().splitlines()[-1]))
    return out


def direct_imports(module: str, src: Path) -> list[tuple[str, float]]:
    """("package (by sojourn.module)", seconds): the cumulative import time of the third-party packages
    sojourn's modules import themselves, by the module that imports each first."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], env=_env(src), check=True,
                         capture_output=True, text=True)
    rows = []  # (depth, name, cumulative us), in the order printed: children before their parent
    for line in run.stderr.splitlines():
        m = _LINE.match(line)
        if m:
            rows.append(((len(m.group(3)) - 1) // 2, m.group(4), int(m.group(2))))
    by_pkg: dict[str, float] = defaultdict(float)
    for i, (depth, name, cum) in enumerate(rows):
        parent = next((n for d, n, _ in rows[i + 1:] if d < depth), None)
        top = name.split(".")[0]
        if parent and parent.startswith("sojourn") and top != "sojourn" and top not in sys.stdlib_module_names \
                and cum >= 5000:
            by_pkg[f"{top} (by {parent})"] += cum / 1e6
    return sorted(by_pkg.items(), key=lambda kv: -kv[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--src", default=str(ROOT / "src"), help="the source tree to import sojourn from")
    ap.add_argument("--importtime", action="store_true", help="also break each import down with -X importtime")
    ap.add_argument("--label", default="sojourn from the working tree", help="what was measured, for RESULTS.md")
    ap.add_argument("--write", action="store_true", help="replace the import_time section of benchmarks/RESULTS.md")
    args = ap.parse_args()
    src = Path(args.src).resolve()
    t0 = time.perf_counter()
    lines = ["| import | median (s) | min (s) | max (s) | target |", "|---|---|---|---|---|"]
    details = []
    ok = True
    for module in MODULES:
        ts = time_import(module, src, args.repeat)
        med = statistics.median(ts)
        target = TARGET.get(module)
        verdict = "" if target is None else (f"< {target:g} s: {'met' if med < target else 'NOT met'}")
        ok = ok and (target is None or med < target)
        lines.append(f"| `import {module}` | {med:.3f} | {min(ts):.3f} | {max(ts):.3f} | {verdict} |")
        print(lines[-1], flush=True)
        if args.importtime:
            top = direct_imports(module, src)[:6]
            details.append(f"- `import {module}`: " + (", ".join(f"{p} {s:.2f} s" for p, s in top) or "nothing"))
            print(details[-1], flush=True)
    wall = time.perf_counter() - t0
    cmd = shlex.join([".venv/bin/python", "benchmarks/import_time.py", *sys.argv[1:]])
    text = (
        "## import_time\n\n"
        f"Command: `{cmd}` ({args.label}, "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs shared with other work, "
        f"{wall:.0f} s wall). Each import in a fresh interpreter, `time.perf_counter` around the import alone "
        f"(start-up not counted), after one untimed run; the median of {args.repeat}.\n\n"
        + "\n".join(lines) + "\n"
    )
    if details:
        text += ("\nWhere it goes (`python -X importtime`, one run each): the third-party packages sojourn's "
                 "modules import directly, by cumulative time:\n\n" + "\n".join(details) + "\n")
    if args.write:
        from _results import write_section

        sys.path.insert(0, str(src))
        write_section("## import_time", text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
