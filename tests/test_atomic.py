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


@pytest.fixture(autouse=True)
def _python_sigint_handler():
    """Python's own SIGINT handler for each test, as in an interactive `eie` run: pytest-xdist
    workers (`make test` runs two) start with SIGINT ignored, and the tests below send it."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


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


# ----------------------------------------------------------------------------- eie build's work dir

def _fake_build(tmp_path, setattr_, synthesis, elaborate=None):
    """``eie.boards.build.build`` of the bridge-and-RAM design into ``tmp_path / "out"`` with a
    fake platform and fake tools: ``synthesis(work)`` plays Yosys and nextpnr (returns their exit
    code), ``elaborate()`` the platform's elaboration. Returns the call that runs the build."""
    import json
    from pathlib import Path

    from eie.boards import build as build_module
    from eie.boards import tops
    from eie.boards.platforms import Board

    class Plan:
        def extract(self, d):
            (Path(d) / "build_top.sh").write_text("exit 0\n")
            (Path(d) / "build_top.json").write_text(json.dumps({"commands": [["yosys"]]}))

    class Platform:
        default_clk_frequency = 12e6
        device = package = "fake"

        def prepare(self, top, name, **kw):
            if elaborate is not None:
                elaborate()
            return Plan()

    class FakeBoard(Board):
        def make_platform(self):
            return Platform()

    setattr_(build_module, "check_tools", lambda env, family: None)
    setattr_(build_module, "_run_stamped",
             lambda cmd, cwd, env, out, keep: (synthesis(Path(cwd)), 0.0, 0.0))
    setattr_(tops, "BoardTop", lambda *a, **k: object())
    spec = build_module.BuildSpec(board=FakeBoard("fake", "-", "-", "ice40", "true", "-", "bin"),
                                  design="ram", out=Path(tmp_path) / "out")
    return lambda: build_module.build(spec, log=lambda s: None)


def _synthesis_ok(work):
    for name in ("top.bin", "top.rpt", "top.tim"):
        (work / name).write_text("x\n")
    (work / "nextpnr-report.json").write_text("{}")
    return 0


def test_build_leaves_no_work_dir_on_success_and_keeps_it_on_failure(tmp_path, monkeypatch):
    run = _fake_build(tmp_path, monkeypatch.setattr, _synthesis_ok)
    report = run()
    assert report["bitstream"] == "top.bin"
    assert _names(tmp_path) == ["out"]
    assert sorted(os.listdir(tmp_path / "out")) == ["core.json", "logs", "report.json", "top.bin"]
    # a failed build keeps its logs, and says where (documented in eie.boards.build)
    run = _fake_build(tmp_path, monkeypatch.setattr, lambda work: 1)
    with pytest.raises(EieError, match=r"build failed \(exit 1\); logs kept in .*\.out\.build-"):
        run()
    kept = [n for n in _names(tmp_path) if n.startswith(".out.build-")]
    assert len(kept) == 1 and "build_top.sh" in os.listdir(tmp_path / kept[0])
    assert (tmp_path / "out" / "top.bin").read_text() == "x\n"        # the old output kept


@pytest.mark.parametrize("when", ["elaboration", "synthesis"])
def test_ctrl_c_during_a_build_leaves_no_work_dir(tmp_path, monkeypatch, when):
    """Issue 14: Ctrl-C while Yosys or nextpnr ran left ``.OUT.build-XXXX`` behind."""
    def interrupt(*a):
        raise KeyboardInterrupt

    run = _fake_build(tmp_path, monkeypatch.setattr,
                      interrupt if when == "synthesis" else _synthesis_ok,
                      elaborate=interrupt if when == "elaboration" else None)
    with pytest.raises(KeyboardInterrupt):
        run()
    assert _names(tmp_path) == []


def test_sigterm_during_a_build_leaves_no_work_dir(tmp_path):
    """SIGTERM with its default handler (a library caller): the build still cleans up (in a
    child process: a failure must not kill pytest)."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_atomic import _fake_build
        from eie.common.signals import Terminated
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        def synthesis(work):
            os.kill(os.getpid(), signal.SIGTERM)
            return 0
        run = _fake_build({str(tmp_path)!r}, setattr, synthesis)
        try:
            run()
        except Terminated:
            print(sorted(os.listdir({str(tmp_path)!r})))
        else:
            sys.exit("no Terminated")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("compressed", [False, True])
def test_a_signal_inside_an_npz_write_waits_for_the_whole_archive(tmp_path, monkeypatch,
                                                                 compressed):
    """SIGINT arriving while NumPy writes an archive's first member (where, unheld, it left a zip
    write handle open and a traceback from the ZipFile's finaliser) is raised only once every
    member is written: the archive loads whole, and the atomic writer then discards it."""
    import numpy as np
    from numpy.lib import format as npformat

    real = npformat.write_array
    calls = []

    def write_then_interrupt(fp, array, *args, **kwargs):
        calls.append(array.shape)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)
        return real(fp, array, *args, **kwargs)

    monkeypatch.setattr(npformat, "write_array", write_then_interrupt)
    arrays = {"a": np.arange(10), "b": np.ones((3, 4)), "c": np.array([True, False])}
    whole = tmp_path / "whole.npz"
    with pytest.raises(KeyboardInterrupt):
        atomic.save_npz(whole, arrays, compressed=compressed)
    assert len(calls) == 3
    with np.load(whole) as z:
        assert sorted(z.files) == ["a", "b", "c"]
        for k, v in arrays.items():
            np.testing.assert_array_equal(z[k], v)

    kept = tmp_path / "kept.npz"
    kept.write_bytes(b"old")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(kept, "wb") as f:
            atomic.save_npz(f, arrays, compressed=compressed)
    assert kept.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["kept.npz", "whole.npz"]
