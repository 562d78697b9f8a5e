"""Output files: atomic, with the user's umask, and one clear error for a path that cannot be a file."""

from __future__ import annotations

import os
import stat

import pytest

from sojourn import ConfigError
from sojourn._io import atomic_path, write_atomic


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_the_mode_the_umask_gives(tmp_path, mask):
    old = os.umask(mask)
    try:
        p = write_atomic(tmp_path / "front.csv", "a,b\n")
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
        with atomic_path(tmp_path / "front.png") as tmp:
            tmp.write_bytes(b"png")
        assert stat.S_IMODE((tmp_path / "front.png").stat().st_mode) == 0o666 & ~mask
    finally:
        os.umask(old)


def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "front.csv"
    p.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert p.read_text() == "old\n"
    assert [q.name for q in tmp_path.iterdir()] == ["front.csv"]


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        write_atomic(tmp_path, "x", field="--out")
    assert err.value.field == "--out" and "folder" in str(err.value)
