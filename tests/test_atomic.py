"""Atomic outputs: nothing half-written, the usual file modes, and (issue 14) SIGINT/SIGTERM at
the worst moments: the old output or the new one, never debris."""

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from eie.common import atomic
from eie.common.atomic import atomic_dir, atomic_file
from eie.common.errors import EieError
from eie.common.signals import InterruptGuard, Terminated, deferred


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


# ----------------------------------------------------------------------------- issue 14:
# signals at the worst moments, links, full disks, the journal

def _names(d):
    return sorted(p.name for p in d.iterdir())


def _signal_during(monkeypatch, module, name, signum=signal.SIGINT, nth=1):
    """Make the ``nth`` call of ``module.name`` send this process ``signum`` just before it
    does its work (so the signal lands inside the writer's critical step)."""
    real = getattr(module, name)
    calls = [0]

    def wrapper(*a, **k):
        calls[0] += 1
        if calls[0] == nth:
            signal.raise_signal(signum)
        return real(*a, **k)

    monkeypatch.setattr(module, name, wrapper)


def test_sigint_inside_the_file_rename_leaves_the_new_file(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("old")
    _signal_during(monkeypatch, os, "replace")
    atomic.reset_journal()
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "a.txt") as f:
            f.write("new")
    assert (tmp_path / "a.txt").read_text() == "new"       # held until the rename was done
    assert _names(tmp_path) == ["a.txt"]
    assert [w.state for w in atomic.journal()] == [atomic.COMPLETE]


@pytest.mark.parametrize("nth", [1, 2])   # moving the old image aside, putting the new in place
def test_sigint_inside_the_dir_replacement_leaves_the_new_dir(tmp_path, monkeypatch, nth):
    d = tmp_path / "img"
    d.mkdir()
    (d / "manifest.json").write_text("old")
    _signal_during(monkeypatch, os, "replace", nth=nth)
    atomic.reset_journal()
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(d) as t:
            (t / "manifest.json").write_text("new")
    assert (d / "manifest.json").read_text() == "new"
    assert _names(tmp_path) == ["img"]                     # no .old, no .tmp
    assert [w.state for w in atomic.journal()] == [atomic.COMPLETE]


def test_sigint_while_removing_the_old_dir_leaves_no_old(tmp_path, monkeypatch):
    d = tmp_path / "img"
    d.mkdir()
    (d / "f").write_text("old")
    _signal_during(monkeypatch, atomic.shutil, "rmtree", signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(d) as t:
            (t / "f").write_text("new")
    assert (d / "f").read_text() == "new"
    assert _names(tmp_path) == ["img"]


def test_sigint_while_creating_the_temporary_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("old")
    _signal_during(monkeypatch, atomic.tempfile, "mkstemp")
    atomic.reset_journal()
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "a.txt") as f:
            f.write("new")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert _names(tmp_path) == ["a.txt"]
    assert [w.state for w in atomic.journal()] == [atomic.KEPT]


def test_second_sigint_during_cleanup_cannot_leave_the_temporary(tmp_path, monkeypatch):
    d = tmp_path / "img"
    _signal_during(monkeypatch, atomic.shutil, "rmtree")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(d) as t:
            (t / "big").write_bytes(b"x" * 1000)
            raise KeyboardInterrupt          # the first Ctrl-C, in the middle of writing
    assert _names(tmp_path) == []
    assert [w.state for w in atomic.journal()][-1] == atomic.ABSENT


def test_sigterm_with_the_default_handler_still_cleans_up(tmp_path):
    """SIGTERM's default action kills at once and skips every ``finally``; the writers turn it
    into an exception while they run (in a child process: a failure must not kill pytest)."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from eie.common.atomic import atomic_dir, atomic_file
        from eie.common.signals import Terminated
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        d = Path({str(tmp_path)!r})
        for writer, target in ((atomic_dir, d / "img"), (atomic_file, d / "a.txt")):
            try:
                with writer(target) as t:
                    os.kill(os.getpid(), signal.SIGTERM)
            except Terminated:
                pass
            else:
                sys.exit("no Terminated")
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL    # put back
        print(sorted(os.listdir(d)))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_symlink_targets_are_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep").write_text("k")
    (tmp_path / "link").symlink_to(real)
    (tmp_path / "flink").symlink_to(real / "keep")
    with pytest.raises(EieError, match="symbolic link"):
        with atomic_dir(tmp_path / "link"):
            pass
    with pytest.raises(EieError, match="symbolic link"):
        with atomic_file(tmp_path / "flink"):
            pass
    assert (tmp_path / "link").is_symlink() and (real / "keep").read_text() == "k"
    assert _names(tmp_path) == ["flink", "link", "real"]


def test_a_full_disk_is_a_user_error_and_keeps_the_old_file(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(EieError, match="No space left.*old output is kept"):
        with atomic_file(tmp_path / "a.txt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert (tmp_path / "a.txt").read_text() == "old"
    assert _names(tmp_path) == ["a.txt"]


def test_an_unwritable_directory_is_a_user_error(tmp_path):
    with pytest.raises(EieError, match="cannot write"):
        with atomic_file("/proc/eie-test/a.txt"):
            pass


def test_abandon_all_cleans_a_suspended_writer(tmp_path):
    atomic.reset_journal()
    cm = atomic_file(tmp_path / "a.txt")
    cm.__enter__().write("half")
    assert len(_names(tmp_path)) == 1                    # the temporary
    atomic.abandon_all()
    assert _names(tmp_path) == []
    assert [w.state for w in atomic.journal()] == [atomic.ABSENT]
    del cm


def test_deferred_holds_signals_until_the_block_ends():
    seen = []
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            signal.raise_signal(signal.SIGINT)
            seen.append("after the signal, inside the block")
    assert seen == ["after the signal, inside the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_interrupt_guard_raises_once_then_stays_quiet():
    guard = InterruptGuard().install()
    try:
        with pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)
        assert guard.signum == signal.SIGTERM
        signal.raise_signal(signal.SIGINT)                # the cleanup is not cut short
        signal.raise_signal(signal.SIGTERM)
    finally:
        guard.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_parents_made_for_an_abandoned_write_are_removed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "out" / "demo") as t:
            (t / "report.json").write_text("{}")
            raise KeyboardInterrupt
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "a" / "b" / "c.txt") as f:
            f.write("x")
            raise RuntimeError("boom")
    assert _names(tmp_path) == []
    with atomic_file(tmp_path / "a" / "b" / "c.txt") as f:        # kept on success
        f.write("x")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "x"
