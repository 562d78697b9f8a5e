"""Progress bars on a terminal, silence off one and with --quiet (issue 12): the CLI run on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import pytest

from test_study import write_study


def _run_on_a_terminal(argv: list[str], cwd) -> tuple[int, str]:
    """Run the CLI with its stderr on a pseudo-terminal 120 columns wide; return (exit code, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "sojourn.cli", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")


@pytest.fixture
def tiny(tmp_path):
    return write_study(tmp_path, n_trials=6)


def test_study_run_shows_bars_with_an_eta_on_a_terminal(tiny, tmp_path):
    code, tty = _run_on_a_terminal(["study", "run", str(tiny), "--no-polish"], tmp_path)
    assert code == 0, tty
    assert "tiny: search" in tty and "6/6" in tty and ("config/s" in tty or "s/config" in tty)
    assert "tiny: confirm" in tty and "point" in tty
    assert "<" in tty  # tqdm's elapsed<remaining: the ETA


def test_quiet_and_off_a_terminal_there_is_no_bar(tiny, tmp_path):
    code, tty = _run_on_a_terminal(["study", "run", str(tiny), "--no-polish", "--quiet"], tmp_path)
    assert code == 0, tty
    assert "%|" not in tty and "confirming" in tty  # the phase's one-line summaries stay
    piped = subprocess.run([sys.executable, "-m", "sojourn.cli", "study", "run", str(tiny), "--n-trials", "2"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "%|" not in piped.stderr
