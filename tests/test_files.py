"""Writes that matter are atomic and keep the umask's permissions (a service's group can read its outputs)."""

import os
import stat

import numpy as np
import pytest

from cinegen.io.files import atomic_write, current_umask


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_the_umask_gives(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    path = tmp_path / "sub" / "out.txt"
    atomic_write(path, lambda tmp: open(tmp, "w").write("hello"))
    assert path.read_text() == "hello" and stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]            # no temp file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def boom(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_videos_are_readable_by_the_group(tmp_path, umask):
    from cinegen.io.video import write_mp4
    umask(0o002)
    out = write_mp4(np.zeros((5, 16, 16, 3), np.uint8), tmp_path / "v.mp4", 8.0)
    assert stat.S_IMODE(out.stat().st_mode) == 0o664
