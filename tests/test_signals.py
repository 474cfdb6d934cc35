"""Issue 14, class 5: SIGINT and SIGTERM at random moments during `eie compress` and `eie bnn
compile` of models big enough that writing the image takes a while (a hundred files and more),
many times, as real processes. After each: nothing beside the output but the output (no
``.img.XXXX.tmp``, no ``.old``), the output either the old image untouched or the new one
complete and loadable, one line on stderr that says which, and never a traceback.

A signal in the last instants of the exit, after Python has put back its default handlers,
kills the process (exit -2 or -15) after everything was written: the new image, no message.

Each signal comes a random delay after one of three moments, so that every phase is hit whatever
the machine's load: the process has its signal handlers (the kernel's caught-signal mask in
``/proc/PID/status``; before that, Python itself is still starting, ``site``, and a signal acts
as on any Python program, before anything can be written), the temporary image ``.img.*.tmp``
appeared (writing), or it was renamed into place (the old image being removed, the exit).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from eie.app.cli import main

RUNS_PER_COMMAND = 16
PARALLEL = 2

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="needs /proc to see when the handlers are installed")


def _eie_argv() -> list[str]:
    exe = Path(sys.executable).parent / "eie"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "eie.app.cli"]


def _caught(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return int(line.split()[1], 16)
    except (FileNotFoundError, ProcessLookupError):
        return None
    return 0


def _wait_for_handlers(p: subprocess.Popen) -> None:
    """Until SIGTERM is caught (Python never catches it by itself: the eie handlers are in)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        mask = _caught(p.pid)
        if mask is None or mask & (1 << (signal.SIGTERM - 1)) or p.poll() is not None:
            return
        time.sleep(0.002)


def _tree(d: Path) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(d):
        for name in files:
            p = Path(root) / name
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------- the two commands

def _eie_arrays(d: Path):
    from eie.sw.image import read_image

    im = read_image(d)
    return im.n_pe, [np.asarray(a) for a in (*im.ptr, *im.spmat)]


def _bnn_arrays(d: Path):
    from eie.sw.bnn.image import read_image

    im = read_image(d)
    return list(im.shape), [np.asarray(a) for a in (*im.weights, *im.thresholds)]


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """Per command: argv (output ``img`` in the working directory), the old image, a loader."""
    d = tmp_path_factory.mktemp("signals")
    rng = np.random.default_rng(0)
    np.savez(d / "m.npz", W0=(0.05 * rng.standard_normal((256, 512))).astype(np.float32),
             W1=(0.05 * rng.standard_normal((128, 256))).astype(np.float32))
    from eie.sw.bnn.float_model import random_model, save_model

    save_model(random_model([784, 768, 768, 10], rng), d / "b.npz")
    save_model(random_model([784, 64, 10], rng), d / "b_old.npz")
    old_eie, old_bnn = d / "old_eie", d / "old_bnn"
    old_eie.mkdir()
    old_bnn.mkdir()
    assert main(["compress", str(d / "m.npz"), "-o", str(old_eie / "img"), "--pes", "4",
                 "--density", "0.1"]) == 0
    assert main(["bnn", "compile", str(d / "b_old.npz"), "-o", str(old_bnn / "img")]) == 0
    return {
        "compress": (["compress", str(d / "m.npz"), "-o", "img", "--pes", "64"], old_eie,
                     _eie_arrays),
        "bnn compile": (["bnn", "compile", str(d / "b.npz"), "-o", "img"], old_bnn, _bnn_arrays),
    }


def _calibrate(argv, old: Path, work: Path):
    """One run without a signal: the new image, and when (after the handlers) the writing
    starts and the process ends."""
    shutil.copytree(old, work)
    p = subprocess.Popen(_eie_argv() + argv, cwd=work, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    _wait_for_handlers(p)
    t0 = time.monotonic()
    write_start = None
    while p.poll() is None:
        if write_start is None and any(n.startswith(".img.") for n in os.listdir(work)):
            write_start = time.monotonic() - t0
        time.sleep(0.002)
    end = time.monotonic() - t0
    assert p.returncode == 0, p.stderr.read()
    return work / "img", (write_start if write_start is not None else 0.5 * end), end


def _temporaries(work: Path) -> list[str]:
    try:
        return [n for n in os.listdir(work) if n.startswith(".img.")]
    except FileNotFoundError:
        return []


def _wait_until(p: subprocess.Popen, cond) -> None:
    deadline = time.monotonic() + 60
    while p.poll() is None and not cond() and time.monotonic() < deadline:
        time.sleep(0.001)


def _one_run(argv, old: Path, old_tree, new_arrays, load, work: Path, signum: int,
             phase: str, delay: float) -> str:
    """One process, one signal: ``phase`` "start" (``delay`` after the handlers: imports,
    reading, compressing), "write" (``delay`` after the temporary image appeared) or "commit"
    (``delay`` after it was renamed into place)."""
    shutil.copytree(old, work)
    p = subprocess.Popen(_eie_argv() + argv, cwd=work, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    _wait_for_handlers(p)
    if phase in ("write", "commit"):
        _wait_until(p, lambda: _temporaries(work))
    if phase == "commit":
        _wait_until(p, lambda: not _temporaries(work))
    time.sleep(delay)
    try:
        p.send_signal(signum)
    except ProcessLookupError:
        pass
    _, err = p.communicate(timeout=120)
    where = f"signal {signum} {delay:.3f} s after {phase}: exit {p.returncode}, stderr {err!r}"
    assert "Traceback" not in err, where
    assert sorted(os.listdir(work)) == ["img"], f"debris: {sorted(os.listdir(work))}; {where}"
    lines = err.strip().splitlines()
    if p.returncode in (0, -signum):
        # done before the signal, or it came while Python was finishing its exit (after it
        # put back the default handlers): the new image is complete, nothing to say
        state = "new"
        assert lines == [], where
    else:
        assert p.returncode == (143 if signum == signal.SIGTERM else 130), where
        word = "terminated" if signum == signal.SIGTERM else "interrupted"
        assert len(lines) == 1 and lines[0].startswith(f"eie: {word}; "), where
        said = lines[0].split("; ", 1)[1]
        state = {"img: new output complete": "new", "img: old output kept": "old",
                 "nothing written": "old"}.get(said)
        assert state is not None, where
    if state == "old":
        assert _tree(work / "img") == old_tree, f"the old image changed; {where}"
    else:
        shape, arrays = load(work / "img")              # complete and loadable
        assert shape == new_arrays[0] and len(arrays) == len(new_arrays[1]), where
        assert all(np.array_equal(a, b) for a, b in zip(arrays, new_arrays[1])), where
    shutil.rmtree(work)
    return state if p.returncode > 0 else "finished"


@pytest.mark.parametrize("command", ["compress", "bnn compile"])
def test_random_signals_leave_old_or_new_never_debris(setups, tmp_path, command):
    argv, old, load = setups[command]
    old_tree = _tree(old / "img")
    new, write_start, end = _calibrate(argv, old, tmp_path / "calibrate")
    new_arrays = load(new)
    rng = random.Random(hash(command) & 0xFFFF)
    plans = []
    for k in range(RUNS_PER_COMMAND):
        signum = (signal.SIGINT, signal.SIGTERM)[k % 2]
        phase = ("start", "write", "write", "commit")[k % 4]
        delay = {"start": rng.uniform(0, write_start),          # imports, reading, compressing
                 "write": rng.uniform(0, 1.2 * (end - write_start)),   # writing, renaming
                 "commit": rng.uniform(0, 0.02)}[phase]         # removing the old one, exiting
        plans.append((signum, phase, delay, tmp_path / f"run{k}"))
    with ThreadPoolExecutor(PARALLEL) as pool:
        states = list(pool.map(lambda a: _one_run(argv, old, old_tree, new_arrays, load, a[3],
                                                  a[0], a[1], a[2]), plans))
    # the signals landed on both sides of the replacement
    assert "old" in states and ("new" in states or "finished" in states), states


def test_signals_while_loading_give_one_line_not_a_traceback(setups, tmp_path):
    """The first second: the sub-command modules are still being imported (Amaranth, NumPy...)
    when the signal comes."""
    argv, old, _ = setups["compress"]
    shutil.copytree(old, tmp_path / "w")

    def run(k: int):
        signum = (signal.SIGINT, signal.SIGTERM)[k % 2]
        p = subprocess.Popen(_eie_argv() + ["inspect", "img"], cwd=tmp_path / "w",
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _wait_for_handlers(p)
        time.sleep(0.04 * k)
        try:
            p.send_signal(signum)
        except ProcessLookupError:
            pass
        _, err = p.communicate(timeout=60)
        return signum, p.returncode, err

    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(run, range(10)))
    for signum, code, err in results:
        assert "Traceback" not in err, err
        if code in (0, -signum):                        # done before the signal
            continue
        word = "terminated" if signum == signal.SIGTERM else "interrupted"
        assert code == 128 + signum and err.strip().splitlines() == [f"eie: {word}; nothing "
                                                                    "written"], (code, err)
    assert any(code == 128 + s for s, code, _ in results), results
    assert sorted(os.listdir(tmp_path / "w")) == ["img"]
