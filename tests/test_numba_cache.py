"""numba's cache is keyed by the content of a kernel's module and of the modules it takes helpers from.

numba alone reuses a cached kernel after a helper in another file changed (its docs, "Cache
Notes"), so a kernel would run the old helper. ``_numba.compile_kernel(depends=...)`` puts
the cache in a directory named by the sources' digest: two fresh processes, the helper edited
between them, must give the new helper's result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sojourn._numba import cache_dir
from sojourn.sim import _engine_kernel

needs_numba = pytest.mark.skipif(not _engine_kernel.available(), reason="numba not available or switched off")

HELPER = """
def step(x):
    return x + {inc}
"""
KERNEL = """
from sojourn._numba import compile_kernel
import helper_mod
from helper_mod import step


def _kernel(n):
    s = 0
    for i in range(n):
        s += step(i)
    return s


def compiled():
    helper_mod.step = compile_kernel(vars(helper_mod), (), kernel="step")
    globals()["step"] = helper_mod.step
    return compile_kernel(globals(), (), depends=(helper_mod.__file__,))
"""


def test_the_cache_directory_follows_every_source(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SOJOURN_NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 1\n")
    first = cache_dir([a, b])
    assert first.parent == tmp_path / "__pycache__" / "numba"
    assert cache_dir([a, b]) == first
    b.write_text("y = 2\n")
    assert cache_dir([a, b]) != first
    assert cache_dir([a]) != cache_dir([a, b])
    monkeypatch.setenv("SOJOURN_NUMBA_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache_dir([a, b]).parent == tmp_path / "elsewhere"


@needs_numba
def test_a_kernel_sees_its_helpers_new_code_in_the_next_process(tmp_path: Path):
    (tmp_path / "kernel_mod.py").write_text(textwrap.dedent(KERNEL))
    run = [sys.executable, "-c", "import kernel_mod; print(kernel_mod.compiled()(4))"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    env.pop("SOJOURN_NUMBA_CACHE_DIR", None)
    env.pop("NUMBA_CACHE_DIR", None)
    results = []
    for inc in (1, 10, 1):
        (tmp_path / "helper_mod.py").write_text(HELPER.format(inc=inc))
        out = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
        results.append(int(out.stdout.strip()))
    assert results == [0 + 1 + 2 + 3 + 4 * 1, 6 + 4 * 10, 6 + 4 * 1]
    cached = list((tmp_path / "__pycache__" / "numba").glob("*/*/kernel_mod._kernel*.nbi"))
    assert len(cached) == 2  # one per content of the helper's module (the third run found the first's)
