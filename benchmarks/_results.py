"""Shared by the benchmarks: replace one ``## section`` of benchmarks/RESULTS.md, atomically."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
FRESH = "# Benchmark results\n\nEach section is written by its benchmark.\n"


def write_section(section: str, text: str, results: Path = RESULTS) -> None:
    """Replace the section whose heading line is ``section`` (or append it), leaving the others."""
    from sojourn._cli._common import write_atomic

    old = results.read_text() if results.exists() else FRESH
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == section), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    write_atomic(results, new)
