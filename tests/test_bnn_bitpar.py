"""Bit-serial and bit-parallel consumption of k-bit activations (issue 16, item 1): the
``auto`` rule, the analytic II, the image and CONFIG_CRC, the CLI's ``--consume``, and the core
in parallel and mixed modes on the Amaranth simulator, Icarus and Verilator (RTL == golden,
measured II == analytic, no bubbles)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.hw.bnn.folding import (LayerFold, analytic_ii, fold_consume, make_folding,
                                resolve_consume, with_act_bits, with_consume)
from eie.hw.bnn.memory_map import BnnMemoryMap, config_crc
from eie.sim.bnn_run import BnnJob, run_amaranth
from eie.sw.bnn.compile import compile_model
from eie.sw.bnn.float_model import float_forward, random_model, save_model
from eie.sw.bnn.golden import golden_forward
from eie.sw.bnn.image import random_image, read_image, write_image

TFC = [784, 64, 64, 64, 10]


def rule(folds):
    """The documented rule, written out: serial unless nf*sf*k exceeds max(nf*sf)."""
    bottleneck = max(f.nf * f.sf for f in folds)
    return ["serial" if f.in_bits == 1 or f.nf * f.sf * f.in_bits <= bottleneck else "parallel"
            for f in folds]


# --- the rule and the II ------------------------------------------------------------------

@pytest.mark.parametrize("fold, acts, want, ii", [
    # TFC's default A2 folding: every A2 layer fits serially under layer 0's 100 cycles
    ("32:16,64:2,64:2,16:1", [2, 2, 2, 1], ["serial"] * 4, 100),
    # the A1 default folding: 64, 64 and 80 cycles, doubled they exceed 100: parallel
    ("32:16,64:1,64:1,8:1", [2, 2, 2, 1], ["serial", "parallel", "parallel", "parallel"], 100),
    # the iCEBreaker's 8:1 x4: layer 0's 6,272 cycles leave room for 4 planes of 512
    ("8:1,8:1,8:1,8:1", [4, 4, 4, 1], ["serial"] * 4, 6272),
    # mixed, layer 0's 13 x 8 = 104 cycles the bottleneck: the A3-fed layer 1 (64 x 3 = 192)
    # goes parallel, the A2-fed layer 3 (10 x 2 = 20) stays serial, layer 2 is A1-fed
    ("64:8,64:1,16:4,64:1", [3, 1, 2, 1], ["serial", "parallel", "serial", "serial"], 104),
])
def test_auto_rule(fold, acts, want, ii):
    folds = make_folding(TFC, fold, acts)
    assert fold_consume(folds) == want == rule(folds)
    assert analytic_ii(folds) == ii == max(f.nf * f.sf for f in folds)
    assert [f.ii for f in folds] == [f.nf * f.sf * (f.in_bits if c == "serial" else 1)
                                     for f, c in zip(folds, want)]


def test_explicit_modes_and_errors():
    folds = with_act_bits(make_folding(TFC, "32:16,64:1,64:1,8:1"), [2, 2, 2, 1],
                          ["auto", "serial", "parallel", "auto"])
    assert fold_consume(folds) == ["serial", "serial", "parallel", "parallel"]
    assert [f.ii for f in folds] == [100, 128, 64, 80] and analytic_ii(folds) == 128
    # the modes stay with the folds when the precisions do not change
    assert with_act_bits(folds, [2, 2, 2, 1]) == folds
    assert fold_consume(with_consume(folds)) == ["serial", "parallel", "parallel", "parallel"]
    with pytest.raises(EieError, match="consume mode 'fast' is not one of serial, parallel, auto"):
        resolve_consume(folds, ["auto", "fast", "auto", "auto"])
    with pytest.raises(EieError, match="consume 'parallel' for layer 0, which is fed by 1-bit"):
        resolve_consume(folds, ["parallel", "auto", "auto", "auto"])
    with pytest.raises(EieError, match="gives 2 modes for 4 layers"):
        resolve_consume(folds, ["auto", "auto"])
    with pytest.raises(ValueError, match="consume 'parallel' is for a layer fed by k-bit"):
        LayerFold(8, 4, 8, 4, consume="parallel")
    with pytest.raises(ValueError, match="consume 'bitwise' is not one of serial, parallel"):
        LayerFold(8, 4, 8, 4, 2, consume="bitwise")


# --- image, memory map, CONFIG_CRC ----------------------------------------------------------

def test_image_round_trip_and_crc(tmp_path):
    rng = np.random.default_rng(5)
    par = make_folding([20, 9, 7, 5], "7:4,3:2,2:3", [2, 2, 1])
    assert fold_consume(par) == ["serial", "parallel", "parallel"]
    ser = with_consume(par, ["auto", "serial", "serial"])
    image = random_image(par, rng, weight_bits=[2, 1, 2], act_bits=[2, 2, 1])
    assert fold_consume(image.folds) == fold_consume(par)
    write_image(image, tmp_path / "p")
    man = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert man["ii"] == 12 and [ly.get("consume") for ly in man["layers"]] == \
        [None, "parallel", "parallel"]
    back = read_image(tmp_path / "p")
    assert back.folds == image.folds
    # the same network served serially: the same weight and threshold files
    write_image(image.refold(image.folds, ["auto", "serial", "serial"]), tmp_path / "s")
    man_s = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert man_s["ii"] == 24 and all("consume" not in ly for ly in man_s["layers"])
    for f in sorted((tmp_path / "p").glob("*.hex")):
        assert f.read_bytes() == (tmp_path / "s" / f.name).read_bytes(), f.name
    # CONFIG_CRC: an all-serial core's is the one it always was; parallel layers change it
    assert config_crc(ser) != config_crc(par)
    a = BnnMemoryMap(par).to_json()
    assert a["memory"]["layers"][1]["consume"] == "parallel"
    assert "consume" not in json.dumps(BnnMemoryMap(ser).to_json())
    # a manifest that asks for parallel on a 1-bit-fed layer, or an unknown mode, is refused
    for layer, value, message in ((0, "parallel", "layer 0's inputs are 1 bit"),
                                  (1, "both", "is 'both'; a layer consumes its bit planes")):
        bad = json.loads(json.dumps(man))
        bad["layers"][layer]["consume"] = value
        (tmp_path / "p" / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(EieError, match=message):
            read_image(tmp_path / "p")


# --- the core on the Amaranth simulator -----------------------------------------------------

AMARANTH_CASES = [
    # shape, folding, weight bits, activation bits, consumption requests (None: auto)
    ([20, 9, 7, 5], "20:9,9:7,7:5", [2, 2, 2], [4, 3, 1], None),         # SIMD = the whole row
    ([20, 9, 7, 5], "7:4,1:2,2:3", [2, 1, 2], [3, 2, 1],
     ["auto", "parallel", "serial"]),                                     # SIMD 1, mixed
    pytest.param([20, 9, 7, 5], "7:4,3:2,2:3", [1, 1, 1], [2, 2, 1],
                 ["auto", "parallel", "parallel"], marks=pytest.mark.slow),
    pytest.param([33, 12, 6, 4], "11:3,5:2,6:4", [1, 2, 1], [4, 2, 1],
                 ["auto", "serial", "parallel"], marks=pytest.mark.slow),
]


@pytest.mark.rtl
@pytest.mark.parametrize("shape, fold, wb, ab, consume", AMARANTH_CASES)
def test_amaranth_equals_golden(shape, fold, wb, ab, consume):
    """A random image preloaded (eight samples, input and output FIFOs of eight: measured II =
    analytic, no bubbles, even at II 1, faster than the host drains results), a compiled float
    model, and the random image again with a slow host and an output FIFO of one (output
    back-pressure): every result equals golden."""
    rng = np.random.default_rng(sum(shape) + sum(ab))
    folds = make_folding(shape, fold, ab, consume)
    assert "parallel" in fold_consume(folds)
    x = rng.integers(0, 2, size=(8, shape[0]), dtype=np.uint8)
    image = random_image(folds, rng, weight_bits=wb, act_bits=ab)
    model = random_model(shape, rng, weight_bits=wb, act_bits=ab)
    compiled = compile_model(model, fold).refold(folds, consume)
    ii = analytic_ii(folds)
    jobs = [BnnJob(image, x), BnnJob(compiled, x)]
    run_amaranth(folds, jobs, in_depth=8, out_depth=8)
    slow = BnnJob(image, x, backpressure=0.8, max_gap=2 * ii + 8, seed=3)
    run_amaranth(folds, [slow], in_depth=8, out_depth=1)
    for k, job in enumerate([*jobs, slow]):
        assert np.array_equal(job.y, golden_forward(job.image, x)), f"job {k}"
    c = jobs[0].counters
    assert c["ii_min"] == ii and c["t_last_out"] - c["t_first_out"] == (len(x) - 1) * ii
    assert np.array_equal(jobs[1].y, float_forward(model, x))
    assert slow.counters["stall"] > 0, "back-pressure never reached the network"


@pytest.mark.rtl
def test_both_modes_run_at_their_ii():
    """The same network and folding, every k-bit-fed layer serial, then parallel: equal results,
    measured II = analytic (serial 2 x, then 1 x the A2-fed layer's nf * sf), no bubbles."""
    rng = np.random.default_rng(17)
    shape, fold = [16, 24, 6], "16:4,8:2"
    x = rng.integers(0, 2, size=(6, 16), dtype=np.uint8)
    results = {}
    for mode, want in (("serial", 18), ("parallel", 9)):
        folds = make_folding(shape, fold, [2, 1], ["auto", mode])
        image = random_image(folds, np.random.default_rng(1), act_bits=[2, 1])
        job = BnnJob(image, x)
        run_amaranth(folds, [job], in_depth=6)
        c = job.counters
        assert analytic_ii(folds) == want == c["ii_min"], mode
        assert c["t_last_out"] - c["t_first_out"] == 5 * want, mode
        results[mode] = job.y
    assert np.array_equal(results["serial"], results["parallel"])
    assert np.array_equal(results["serial"], golden_forward(image, x))


# --- Icarus and Verilator --------------------------------------------------------------------

RTL_CASES = {
    "icarus": ([40, 9, 5, 3], "7:4,3:2,2:3", [2, 1, 2], [3, 2, 1], ["auto", "parallel", "serial"]),
    "verilator": ([24, 13, 7], "6:4,13:7", [1, 2], [4, 1], ["auto", "parallel"]),
}


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["verilator",
                                       pytest.param("icarus", marks=pytest.mark.slow)])
def test_rtl_equals_golden(simulator, bnn_build_dir):
    """A random image preloaded (measured II = analytic, no bubbles) and another with a slow
    host and an output FIFO of two (back-pressure reaches the network): both equal golden.
    (test_bnn_qnn.py's default Icarus case runs a bit-parallel layer too: auto picks it.)"""
    from eie.sim.bnn_run import run_rtl

    shape, fold, wb, ab, consume = RTL_CASES[simulator]
    rng = np.random.default_rng(len(simulator))
    folds = make_folding(shape, fold, ab, consume)
    x = rng.integers(0, 2, size=(8, shape[0]), dtype=np.uint8)
    ii = analytic_ii(folds)
    jobs = [BnnJob(random_image(folds, rng, weight_bits=wb, act_bits=ab), x),
            BnnJob(random_image(folds, rng, weight_bits=wb, act_bits=ab), x, preload=False,
                   backpressure=0.7, max_gap=3 * ii + 8, seed=5)]
    with bnn_build_dir(simulator, folds, 4, 2, tuple(wb), tuple(ab)) as bdir:
        run_rtl(simulator, folds, jobs, build_dir=bdir, in_depth=4, out_depth=2)
    for k, job in enumerate(jobs):
        assert np.array_equal(job.y, golden_forward(job.image, x)), f"job {k}"
    c = jobs[0].counters
    assert c["ii_min"] == ii and c["t_last_out"] - c["t_first_out"] == (len(x) - 1) * ii
    assert jobs[1].counters["stall"] > 0


# --- the command line -----------------------------------------------------------------------

@pytest.mark.rtl
def test_cli_consume(tmp_path, cli):
    rng = np.random.default_rng(8)
    model = random_model([30, 12, 9, 6], rng, weight_bits=[2, 1, 2], act_bits=[2, 3, 1])
    save_model(model, tmp_path / "m.npz")
    x = rng.integers(0, 2, size=(5, 30), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    # every layer 3 x 3 folds; auto: the A2- and A3-fed layers (18, 27 serially) in parallel
    r = cli(["bnn", "compile", tmp_path / "m.npz", "-o", tmp_path / "img", "--fold",
             "10:4,4:3,3:2", "--consume", "auto,auto,serial"])
    assert r.code == 0, r.err
    assert "bit planes serial,parallel,serial" in r.out and "II 27 cycles" in r.out
    assert [f.consume for f in read_image(tmp_path / "img").folds] == \
        ["serial", "parallel", "serial"]
    r = cli(["bnn", "run", tmp_path / "img", "--input", tmp_path / "x.npy", "-o",
             tmp_path / "y.npy", "--sim", "amaranth", "--stats", tmp_path / "s.json",
             "--consume", "parallel"])
    assert r.code == 0, r.err
    assert np.array_equal(np.load(tmp_path / "y.npy"), float_forward(model, x))
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["ii_analytic"] == 9 == stats["counters"]["ii_min"]
    assert stats["consume"] == ["serial", "parallel", "parallel"]
    r = cli(["bnn", "generate", "--shape", "30,12,9,6", "--fold", "10:4,4:3,3:2", "--acts",
             "A2,A3,A1", "--consume", "serial", "-o", tmp_path / "g.v"])
    assert r.code == 0, r.err
    assert "II 27 cycles" in r.out and "bit planes" not in r.out
    for bad, message in (("fast", "'fast' is not a consumption mode"),
                         ("parallel,auto,auto", "layer 0 is fed by 1-bit activations"),
                         ("auto,auto", "gives 2 modes but the network has 3 layers")):
        cli(["bnn", "generate", "--shape", "30,12,9,6", "--acts", "A2,A3,A1",
             "--consume", bad, "-o", tmp_path / "h.v"]).assert_clean_error(message)
    cli(["bnn", "generate", "--shape", "30,12,9,6", "--consume", "parallel", "-o",
         tmp_path / "h.v"]).assert_clean_error(
        "no layer of this network is fed by k-bit activations")


# --- boards ------------------------------------------------------------------------------------

def test_board_build_keeps_the_image_modes(tmp_path):
    """`eie build --design bnn --image` builds the image's modes (an explicit serial layer where
    auto would take parallel) and core.json records them; `eie board run --build` refuses, in
    one line, an image whose layers consume their planes otherwise than the bitstream."""
    from eie.app.cmd_board import _check_bnn_build
    from eie.boards.build import BuildSpec, make_core_factory
    from eie.boards.platforms import board_by_name
    from pathlib import Path

    folds = make_folding([40, 12, 9, 6], "8:4,4:3,3:2", [2, 3, 1], ["auto", "serial", "auto"])
    assert fold_consume(folds) == ["serial", "serial", "parallel"]
    spec = BuildSpec(board_by_name("ulx3s-85f"), "bnn", Path("unused"), bnn_shape=(40, 12, 9, 6),
                     bnn_fold="8:4,4:3,3:2", bnn_act_bits=(2, 3, 1),
                     bnn_consume=tuple(fold_consume(folds)))
    make_core, _, core = make_core_factory(spec)
    assert core["consume"] == ["serial", "serial", "parallel"]
    assert make_core().memory_map.folds == folds
    image = random_image(folds, np.random.default_rng(0), act_bits=[2, 3, 1])
    _check_bnn_build(tmp_path, core, image)                       # the same modes: accepted
    auto = image.refold(image.folds, ["auto"] * 3)
    assert fold_consume(auto.folds) == ["serial", "parallel", "parallel"]
    with pytest.raises(EieError, match="the bitstream takes the layers' bit planes serial,serial,"
                                       "parallel but the image's layers consume them serial,"
                                       "parallel,parallel"):
        _check_bnn_build(tmp_path, core, auto)
    spec.bnn_consume = None                                        # auto; all serial: no key
    spec.bnn_fold = "1:1,4:3,3:2"                               # layer 0 the slowest
    assert "consume" not in make_core_factory(spec)[2]
