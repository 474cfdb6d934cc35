"""Atomic outputs: nothing half-written, and the usual file modes."""

import os
import stat

import pytest

from eie.common.atomic import atomic_dir, atomic_file


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "a.txt") as f:
            f.write("x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("y")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / "d") == 0o755


def test_failure_leaves_old_content(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "a.txt") as f:
            f.write("new")
            raise RuntimeError("boom")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_dir_failure_keeps_old_dir(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    (d / "manifest.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as t:
            (t / "manifest.json").write_text("new")
            raise RuntimeError("boom")
    assert (d / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]
