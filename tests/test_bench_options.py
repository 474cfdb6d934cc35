"""The scripts of ``bench/`` check their options before any work: a bad value exits 2 with one
line saying what to give, no traceback, nothing written (``bench/bench_options.py`` holds the
checks several share; ``bench/real_layers.py`` and ``bench/layer_overhead.py`` are covered by
``tests/test_real_efficiency.py``).

Each script's work (building, simulating, training, synthesis, the first measured point) is
replaced by a function that fails the test, so a check that came after it would show. No
simulator, synthesis tool or training runs here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH_SCRIPTS = {p.stem for p in (Path(__file__).resolve().parents[1] / "bench").glob("*.py")}


@pytest.fixture(autouse=True)
def _forget_scripts_loaded_under_a_patch():
    """A script first imported while a test had replaced ``eie.sw.mnist.load_mnist`` (say,
    ``real_layers``, which ``real_lstm`` imports inside ``main``) would keep the replacement
    bound for the tests after this one: such modules are dropped when the test ends."""
    before = set(sys.modules)
    yield
    for name in (set(sys.modules) - before) & BENCH_SCRIPTS:
        del sys.modules[name]

#: what each script does first once its options pass (module attributes, or dotted paths of
#: what the script imports inside ``main``)
WORK = {
    "compress": ["numpy.random.default_rng", "compress_layer", "build_image"],
    "eie_efficiency": ["point"],
    "eie_fmax": ["measure"],
    "sim_speed": ["make_layer", "config_for_images"],
    "sweeps": ["main"],
    "table3": ["main"],
    "variant_matrix": ["matrix"],
    "bnn_ii": ["tempfile.mkdtemp", "measure"],
    "bnn_consume": ["synthesize"],
    "bnn_qnn_tfc": ["eie.sw.mnist.load_mnist", "eie.sw.bnn.train.train_bnn"],
    "congestion": ["heatmaps", "summarize"],
    "make_example_model": ["make_model", "save_model"],
    "real_lstm": ["eie.sw.mnist.load_mnist", "trained_lstm"],
    "uart_load": ["lenet_image"],
    "verilator_build": ["build"],
    "verilog_size": ["export", "verilator_build"],
}

#: ``(script, argv, part of the message)``; ``{tmp}`` is the test's folder, ``{file}`` a file
BAD = [
    ("compress", ["--small", "--n-in", "0"], "--n-in 0: give a layer size of at least 1"),
    ("compress", ["--density", "1.5"], "--density 1.5: give the fraction of weights kept"),
    ("compress", ["--pes", "300"], "--pes 300: the accelerator takes 1 to 256 PEs"),
    ("compress", ["--repeat", "0"], "--repeat 0: give how many runs to time"),
    ("eie_efficiency", ["--fifo", "0"], "--fifo 0: the FIFO depth must be 1 to 4096"),
    ("eie_efficiency", ["--ad", "0.5", "0"], "every density must be in (0, 1]"),
    ("eie_efficiency", ["--seeds", "0"], "--seeds 0: give at least 1 seed a point"),
    ("eie_fmax", ["--pes", "4,x"], "--pes '4,x': give integers separated by commas"),
    ("eie_fmax", ["--pes", "4,300"], "300 is out of range; PE counts are 1 to 256"),
    ("eie_fmax", ["--device", "99k"], "--device 99k: nextpnr-ecp5 has no such device"),
    ("eie_fmax", ["--pnr-minutes", "0"], "--pnr-minutes 0: give a time above 0"),
    ("eie_fmax", ["--json", "{tmp}/missing/f.json"], "does not exist (create it first)"),
    ("eie_fmax", ["--keep", "{file}"], "exists and is not a directory"),
    ("sim_speed", ["--sims", "amaranth,nosuch"], "unknown simulator 'nosuch'; choose from"),
    ("sim_speed", ["--loads", "bus,nosuch"], "unknown load 'nosuch'; choose from bus"),
    ("sim_speed", ["--sims", "amaranth", "--loads", "backdoor"], "loads over the bus only"),
    ("sim_speed", ["--fifo-depth", "0"], "--fifo-depth 0: the FIFO depth must be 1 to 4096"),
    ("sim_speed", ["--density", "2"], "--density 2.0: give the weight density in (0, 1]"),
    ("sim_speed", ["--build-dir", "{file}"], "exists and is not a directory"),
    # a width only the third sweep refuses: refused before the first sweep runs
    ("sweeps", ["--values", "12"], "SRAM word width 12 must be a multiple of 8"),
    ("sweeps", ["fifo", "pes", "--values", "300"], "--values (pes) 300 is out of range"),
    ("sweeps", ["fofo"], "unknown sweep 'fofo'; choose from fifo, pes, width"),
    # the PE-count sweep sets --pes, the FIFO sweep --fifo-depth: said before the first sweep
    ("sweeps", ["--pes", "8"], "--pes cannot be used with sweep pes"),
    ("sweeps", ["fifo", "width", "pes", "--fifo-depth", "4"],
     "--fifo-depth cannot be used with sweep fifo"),
    ("sweeps", ["fifo", "width", "--values", ""], "--values '' names no value"),
    ("variant_matrix", ["--fifo", "8,0"], "--fifo 0 is out of range"),
    ("variant_matrix", ["--queue", "4,100"], "--queue 100 is out of range"),
    ("variant_matrix", ["--fifo", ","], "--fifo ',' names no depth"),
    ("variant_matrix", ["--json", "{tmp}"], "is a directory; give a file name"),
    ("bnn_ii", ["--shapes", "TFC,tfc"], "unknown shape 'tfc'; choose from TFC, SFC, LFC"),
    ("bnn_ii", ["-n", "1"], "--samples 1: the II needs 2 or more samples"),
    ("bnn_ii", ["--json", "{tmp}/missing/ii.json"], "does not exist (create it first)"),
    ("bnn_ii", ["--build-dir", "{file}"], "exists and is not a directory"),
    ("bnn_consume", ["--simd", "8,x"], "--simd '8,x': give integers separated by commas"),
    ("bnn_consume", ["--k", "1"], "1 is out of range; activation widths k (bits) are 2 to 4"),
    ("bnn_consume", ["--pe", "65"], "65 is out of range; PE counts (64 neurons) are 1 to 64"),
    ("bnn_consume", ["--json", "{tmp}/missing/c.json"], "does not exist (create it first)"),
    ("bnn_qnn_tfc", ["--only", "W1A1,w2a2"], "unknown precision 'w2a2'; choose from W1A1"),
    ("bnn_qnn_tfc", ["--scaling", "none,nosuch"], "unknown scaling 'nosuch'"),
    ("bnn_qnn_tfc", ["--fold", "8:8"], "--fold 8:8: the folding has 1 SIMD:PE entries"),
    ("bnn_qnn_tfc", ["--samples", "1"], "--samples 1: the II needs 2 or more digits"),
    ("bnn_qnn_tfc", ["--digits", "-5"], "--digits -5: the test split has 1000 digits"),
    ("bnn_qnn_tfc", ["--json", "{tmp}/missing/q.json"], "does not exist (create it first)"),
    ("congestion", ["{tmp}/heat", "--top", "0"], "--top 0: give at least 1 row per table"),
    ("make_example_model", ["--seed", "-1"], "--seed -1: give a seed >= 0"),
    ("make_example_model", ["-o", "{tmp}"], "is a directory; give a file name"),
    ("real_lstm", ["--cache", "{file}"], "exists and is not a directory"),
    ("uart_load", ["--pes", "300"], "--pes 300: the accelerator takes 1 to 256 PEs"),
    ("uart_load", ["--baud", "115200", "0"], "--baud 0: give line rates above 0 baud"),
    ("uart_load", ["--bursts", "0"], "the bridge's bursts are 1 to 65535 words"),
    ("uart_load", ["--turnaround-ms", "-1"], "--turnaround-ms -1: give 0 or more"),
    ("verilator_build", ["--pes", "16,0"], "0 is out of range; PE counts are 1 to 256"),
    ("verilator_build", ["--mode", "runner,nosuch"], "unknown mode 'nosuch'; choose from"),
    ("verilator_build", ["--set", "nosuch=3"], "expected FIELD=VALUE with FIELD one of"),
    ("verilator_build", ["--set", "n_pe=3"], "the PE counts are --pes"),
    ("verilator_build", ["--set", "fifo_depth=0"], "activation-FIFO entries must be from 1"),
    ("verilator_build", ["--set", "ptr_queue_depth=1"],
     "--set ptr_queue_depth=1 is out of range: pointer-queue entries must be from 2 to 64"),
    ("verilator_build", ["--args", '"open'], "No closing quotation"),
    ("verilog_size", ["--pes", "4", "--verilator", "16"], "16 PEs is not exported"),
    ("verilog_size", ["--pes", ",", "--flat", ""], "name no PE count"),
    ("verilog_size", ["--flat", "0"], "0 is out of range; PE counts are 1 to 256"),
]

#: options that pass every check (the defaults where they need nothing outside the test)
GOOD = {
    "compress": ["--small"],
    "eie_efficiency": [],
    "eie_fmax": ["--pes", "4,16", "--json", "{tmp}/f.json", "--keep", "{tmp}/keep"],
    "sim_speed": ["--sims", "amaranth"],
    "variant_matrix": ["--json", "{tmp}/out/v.json"],
    "bnn_ii": ["--json", "{tmp}/ii.json"],
    "bnn_consume": ["--json", "{tmp}/c.json"],
    "bnn_qnn_tfc": ["--json", "{tmp}/q.json"],
    "congestion": ["{tmp}/heat"],
    "make_example_model": ["-o", "{tmp}/m.npz"],
    "real_lstm": ["--cache", "{tmp}/cache"],
    "uart_load": [],
    "verilator_build": ["--pes", "16,64", "--set", "fifo_depth=16"],
    "verilog_size": ["--pes", "4,16", "--flat", "4"],
}


class Started(Exception):
    """The script got past its checks to its work."""


def _fail(*a, **k):
    raise AssertionError("work started before the options were checked")


def _start(*a, **k):
    raise Started


def _quiet(*a, **k):
    pass


def _prepare(bench_module, monkeypatch, script, work):
    """The script's module with its work replaced by ``work``; the checks of installed tools
    (YoWASP, the RTL simulators) pass, so the test does not depend on them."""
    mod = bench_module(script)
    for target in WORK[script]:
        if "." in target:
            monkeypatch.setattr(target, work)
        else:
            monkeypatch.setattr(mod, target, work)
    options = bench_module("bench_options")
    monkeypatch.setattr(options, "tools", _quiet)
    monkeypatch.setattr(options, "simulator", _quiet)
    return mod


def _exit_code(fn, argv) -> int:
    try:
        return fn(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("script, argv, message", BAD,
                         ids=[f"{s}:{' '.join(a)}" for s, a, _ in BAD])
def test_a_bad_option_stops_before_any_work(bench_module, monkeypatch, capsys, tmp_path, script,
                                            argv, message):
    mod = _prepare(bench_module, monkeypatch, script, _fail)
    (tmp_path / "file").write_text("")
    argv = [a.format(tmp=tmp_path, file=tmp_path / "file") for a in argv]
    entry = mod.run if script in ("sweeps", "table3") else mod.main
    assert _exit_code(entry, argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]         # nothing written


@pytest.mark.parametrize("script", sorted(GOOD))
def test_good_options_pass_the_checks(bench_module, monkeypatch, tmp_path, script):
    """The defaults (and the documented forms) still reach the work: the checks refuse only
    what is wrong."""
    mod = _prepare(bench_module, monkeypatch, script, _start)
    argv = [a.format(tmp=tmp_path) for a in GOOD[script]]
    with pytest.raises(Started):
        mod.main(argv)


def test_table3_sim_without_its_value_is_eies_usage_error(bench_module, capsys, tmp_path):
    """``bench/table3.py --sim`` (the value forgotten) was an IndexError in the wrapper."""
    table3 = bench_module("table3")
    assert _exit_code(table3.run, ["--out", str(tmp_path), "--sim"]) == 2
    err = capsys.readouterr().err
    assert "argument --sim: expected one argument" in err and "Traceback" not in err


@pytest.mark.parametrize("script, argv, name", [
    ("table3", [], "table3.json"),
    ("sweeps", ["width"], "sweep_width.json"),
])
def test_the_default_out_folder_is_made(bench_module, monkeypatch, tmp_path, script, argv,
                                        name):
    """Without ``--out`` the outputs go to ``bench/out`` (ignored by git), made when missing:
    ``eie bench`` writes only into folders that exist, so a fresh checkout's default run
    stopped at "the directory bench/out does not exist"."""
    mod = bench_module(script)
    seen = []
    monkeypatch.setattr(mod, "OUT", tmp_path / "out")
    monkeypatch.setattr(mod, "main", lambda argv: seen.append(argv) or 0)
    assert mod.run(list(argv)) == 0
    assert (tmp_path / "out").is_dir()
    (cmd,) = seen
    assert cmd[cmd.index("--json") + 1] == str(tmp_path / "out" / name)


def test_sweeps_stop_at_the_first_bad_option(bench_module, monkeypatch, tmp_path):
    """A bad option is said once, and no later sweep runs (each sweep used to say it again)."""
    sweeps = bench_module("sweeps")
    seen = []
    monkeypatch.setattr(sweeps, "main", lambda argv: seen.append(argv[2]) or 2)
    assert sweeps.run(["--out", str(tmp_path), "--scale", "0"]) == 2
    assert seen == ["fifo"]
