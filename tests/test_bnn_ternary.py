"""Ternary weights (W2) with 1-bit activations, per layer (issue 16, first slice): the contract
(docs/ARCHITECTURE.md, BNN section "Ternary weights"), the compiler, the golden model against a
plain NumPy float reference, the image format, the core on the Amaranth simulator, Verilator
and Icarus, the CLI, TWN training; and W1A1 staying byte for byte what it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.hw.bnn.folding import analytic_ii, make_folding
from eie.hw.bnn.memory_map import BnnMemoryMap, config_crc
from eie.sim.bnn_run import BnnJob, run_amaranth, run_rtl
from eie.sw.bnn.compile import compile_integer, compile_model, fold_ternary_thresholds
from eie.sw.bnn.float_model import (FloatBnn, float_forward, float_layers, load_model,
                                    random_model, save_model, ternarize)
from eie.sw.bnn.golden import golden_forward, golden_layers
from eie.sw.bnn.image import BnnImage, random_image, read_image, write_image
from eie.sw.bnn.params import IntegerBnn, load_integer_npz, save_integer_npz


# --- the reference: the contract written out in plain NumPy -------------------------------

def ref_ternarize(w):
    absw = np.abs(np.asarray(w, dtype=np.float64))
    keep = absw > 0.7 * absw.mean()
    q = np.where(keep, np.sign(w), 0.0)
    return q, (absw[keep].mean() if keep.any() else 1.0)


def ref_forward(model: FloatBnn, bits, x):
    """Every layer's output of the float model of the contract, from its definition."""
    h = np.where(np.asarray(x) > 0, 1.0, -1.0)
    outs = []
    for l, w in enumerate(model.weights):
        if bits[l] == 2:
            q, a = ref_ternarize(w)
        else:
            q, a = np.where(w >= 0, 1.0, -1.0), None
        dot = h @ q.T
        if l == len(model.weights) - 1:
            outs.append(dot.astype(np.int32))
            break
        z = dot if a is None else a * dot
        pre = model.gamma[l] * (z - model.mean[l]) / np.sqrt(model.var[l] + model.eps) \
            + model.beta[l]
        outs.append((pre >= 0).astype(np.uint8))
        h = np.where(pre >= 0, 1.0, -1.0)
    return outs


def ref_integer_forward(weights, thresholds, rule, x):
    """An integer network of -1/0/+1 weights: matches = inputs that agree with a nonzero
    weight, thresholds on the match count under ``rule``, dots for an unthresholded last layer."""
    h = np.where(np.asarray(x) > 0, 1, -1).astype(np.int64)
    for l, (w, t) in enumerate(zip(weights, thresholds)):
        w = np.asarray(w, dtype=np.int64)
        dot = h @ w.T
        nz = (w != 0).sum(axis=1)
        m = (dot + nz) // 2
        if t is None:
            return dot.astype(np.int32)
        fire = m > t if rule == "gt" else m >= t
        if l == len(weights) - 1:
            return fire.astype(np.uint8)
        h = np.where(fire, 1, -1)


def _bits(rng, n):
    return [int(b) for b in rng.integers(1, 3, size=n)]


# --- the quantizer and the threshold folding ----------------------------------------------

def test_ternarize_is_twn():
    w = np.array([[0.9, -0.1, 0.0, -0.5], [0.05, 0.3, -0.8, 0.2]])
    t, a = ternarize(w)
    delta = 0.7 * np.abs(w).mean()                  # 0.7 * 0.35625 = 0.249375
    assert delta == pytest.approx(0.249375)
    assert t.tolist() == [[1, 0, 0, -1], [0, 1, -1, 0]]
    assert a == pytest.approx((0.9 + 0.5 + 0.3 + 0.8) / 4)
    t, a = ternarize(np.zeros((2, 3)))
    assert not t.any() and a == 1.0


def test_folding_on_exact_values():
    """Thresholds that fall exactly on a reachable scaled dot: ``a*dot == mean`` fires (>= 0)."""
    k_in, a = 9, 0.37
    nz = np.array([9, 5, 0, 3, 5, 4])
    m0 = np.array([4, 2, 0, 3, 1, 0])               # the count at which a*dot == mean
    gamma = np.array([1.0, 2.0, 1.0, 0.5, -1.0, -2.0])
    mean = a * (2.0 * m0 - nz)
    t, flip = fold_ternary_thresholds(gamma, np.zeros(6), mean, np.ones(6), 0.0, a, nz, k_in)
    assert flip.tolist() == [False] * 4 + [True] * 2
    # gamma > 0: fires from m0 on; gamma < 0: fires for m <= m0, i.e. m' = K' - m >= K' - m0
    assert t.tolist() == [4, 2, 0, 3, 5 - 1, 4 - 0]
    # a neuron that never fires is K + 1 (not K' + 1); gamma 0 is constant
    t, _ = fold_ternary_thresholds(np.array([1.0, 0.0, 0.0]), np.array([-100.0, 1.0, -1.0]),
                                   np.zeros(3), np.ones(3), 0.0, a, np.array([3, 2, 2]), k_in)
    assert t.tolist() == [k_in + 1, 0, k_in + 1]


def _sweep(sign, mask, rng):
    """For every neuron and every count m in 0..K', an input with exactly m masked matches (the
    inputs under a zero weight random)."""
    rows = []
    for s, z in zip(sign, mask):
        nzpos = np.flatnonzero(z)
        for m in range(len(nzpos) + 1):
            x = rng.integers(0, 2, size=len(s)).astype(np.uint8)
            x[nzpos] = s[nzpos]
            x[nzpos[m:]] ^= 1
            rows.append(x)
    return np.array(rows, dtype=np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_golden_equals_float_at_every_match_count(seed):
    """Every neuron of a ternary hidden layer at every reachable count 0..K', beta nudged one
    ulp either way: the folded thresholds give the float model's bit."""
    rng = np.random.default_rng(seed)
    k_in, n_out = int(rng.integers(2, 40)), int(rng.integers(2, 30))
    model = random_model([k_in, n_out, 3], rng, weight_bits=[2, 1])
    nudge = rng.integers(-1, 2, size=n_out)
    model.beta[0] = np.where(nudge == 0, model.beta[0],
                             np.nextafter(model.beta[0], np.where(nudge > 0, np.inf, -np.inf)))
    image = compile_model(model)
    t, _ = ternarize(model.weights[0])
    x = _sweep((t > 0).astype(np.uint8), (t != 0).astype(np.uint8), rng)
    gold = golden_layers(image, x)[0]
    assert np.array_equal(gold, float_layers(model, x)[0])
    assert np.array_equal(gold, ref_forward(model, [2, 1], x)[0])
    assert gold.any() and not gold.all()


@pytest.mark.parametrize("seed", range(8))
def test_golden_equals_float_reference_random_networks(seed):
    """Random W1/W2-mixed networks (zero weights, negative and zero BN scales, thresholds on
    exact values, a neuron without nonzero weights): golden == eie's float model == the plain
    NumPy reference, every layer."""
    rng = np.random.default_rng(200 + seed)
    depth = int(rng.integers(2, 5))
    shape = [int(v) for v in rng.integers(2, 60, size=depth + 1)]
    bits = _bits(rng, depth)
    bits[seed % depth] = 2
    model = random_model(shape, rng, weight_bits=bits)
    image = compile_model(model)
    assert image.weight_bits == bits and image.version == 3
    x = rng.integers(0, 2, size=(300, shape[0]), dtype=np.uint8)
    gold, flt, ref = golden_layers(image, x), float_layers(model, x), ref_forward(model, bits, x)
    for l, (g, f, r) in enumerate(zip(gold, flt, ref)):
        assert np.array_equal(g, f) and np.array_equal(g, r), f"layer {l}"
    assert np.array_equal(np.argmax(gold[-1], axis=1), np.argmax(ref[-1], axis=1))


def test_last_layer_dot_and_argmax():
    """A W2 output layer outputs the dot of its ternary weights, 2*matches - K'; its argmax is
    the float logits' a * dot argmax."""
    rng = np.random.default_rng(7)
    model = random_model([30, 12, 10], rng, weight_bits=[1, 2])
    image = compile_model(model)
    x = rng.integers(0, 2, size=(500, 30), dtype=np.uint8)
    y = golden_forward(image, x)
    t, a = ternarize(model.weights[1])
    h = np.where(float_layers(model, x)[0] > 0, 1.0, -1.0)
    assert np.array_equal(y, (h @ t.T).astype(np.int32))
    assert np.array_equal(np.argmax(y, axis=1), np.argmax(a * (h @ t.T), axis=1))
    nz = (t != 0).sum(axis=1)
    assert np.all(np.abs(y) <= nz) and np.all((y + nz) % 2 == 0)


def test_integer_network_with_ternary_layers(tmp_path):
    rng = np.random.default_rng(3)
    shape = [25, 14, 9, 6]
    for rule in ("ge", "gt"):
        for last in (False, True):
            w = [rng.integers(-1, 2, size=(b, a)).astype(np.int8) for a, b in zip(shape, shape[1:])]
            w[1] = np.where(w[1] == 0, 1, w[1]).astype(np.int8)     # layer 1 binary
            t = [rng.integers(-3, a + 4, size=b) for a, b in zip(shape, shape[1:])]
            if not last:
                t[-1] = None
            net = IntegerBnn(w, t, rule, [2, 1, 2])
            save_integer_npz(net, tmp_path / "n.npz")
            back = load_integer_npz(tmp_path / "n.npz")
            assert back.layer_bits == [2, 1, 2]
            image = compile_integer(back, "5:3,7:2,2:4")
            x = rng.integers(0, 2, size=(200, shape[0]), dtype=np.uint8)
            want = ref_integer_forward(w, t, rule, x)
            assert np.array_equal(golden_forward(image, x), want)
            write_image(image, tmp_path / "img")
            assert np.array_equal(golden_forward(read_image(tmp_path / "img"), x), want)


def test_integer_weight_errors(tmp_path):
    rng = np.random.default_rng(4)
    w = [rng.integers(-1, 2, size=(5, 8)).astype(np.int8), np.ones((3, 5), np.int8)]
    t = [np.zeros(5, np.int64), None]
    bad = [w[0].copy(), w[1]]
    bad[0][1, 2] = 2
    with pytest.raises(EieError, match=r"W0\[1, 2\] is 2; ternary weights \(weight_bits\[0\] = 2\)"
                                        r" are -1, 0 or \+1"):
        IntegerBnn(bad, t, "ge", [2, 1]).validate()
    zero = [w[0], w[1].copy()]
    zero[1][0, 0] = 0
    with pytest.raises(EieError, match=r"W1\[0, 0\] is 0; bipolar weights are -1 or \+1.*"
                                        r"needs weight_bits\[1\] = 2"):
        IntegerBnn(zero, t, "ge", [2, 1]).validate()
    with pytest.raises(EieError, match=r"weight_bits\[1\] is 3; a layer's weight precision is 1"):
        IntegerBnn(w, t, "ge", [2, 3]).validate()
    np.savez(tmp_path / "len.npz", W0=w[0], W1=w[1], T0=t[0], rule="ge", weight_bits=[2])
    with pytest.raises(EieError, match=r"weight_bits in .*len.npz has shape \(1,\); expected \(2,\)"):
        load_integer_npz(tmp_path / "len.npz")


# --- the image ------------------------------------------------------------------------------

def _dir_digest(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(d).iterdir()):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def test_w1a1_is_byte_identical(tmp_path):
    """A fixed W1A1 network's image, memory map and CONFIG_CRC are what eie wrote before ternary
    weights existed (digests taken from the tree before this change, 6dbc401)."""
    rng = np.random.default_rng(101)
    shape, fold = [40, 9, 5, 3], "7:4,3:2,2:3"
    model = random_model(shape, rng)
    image = compile_model(model, fold)
    write_image(image, tmp_path / "img", extra={"source": "m.npz", "eps": model.eps})
    assert _dir_digest(tmp_path / "img") == \
        "ca481e77cf947121fb4072f13910826425c839fd8767a5428538eeb21616fc90"
    mm = BnnMemoryMap(image.folds)
    assert hashlib.sha256(mm.to_json_text().encode()).hexdigest() == \
        "cdb90e53e520e4478c8a234bef3852cbce36a6ad494c3b620d40b48c09469061"
    assert config_crc(image.folds) == 3072163670
    assert config_crc(image.folds, True) == 2500012925
    assert config_crc(image.folds, False, (1, 1, 1)) == 3072163670
    # the thresholded-output integer image of the same session (version 2)
    w = [np.where(rng.random((b, a)) < 0.5, -1, 1).astype(np.int8) for a, b in zip(shape, shape[1:])]
    t = [rng.integers(-2, a + 3, size=b) for a, b in zip(shape, shape[1:])]
    image2 = compile_integer(IntegerBnn(w, t, "gt"), fold)
    write_image(image2, tmp_path / "imgT", extra={"source": "i.npz", "threshold_rule": "gt"})
    assert _dir_digest(tmp_path / "imgT") == \
        "dd678b111521d76ed0cfbda2d0290c36610cd2d96f4883b01afeb910cb03eb11"
    mm = BnnMemoryMap(image2.folds, last_thresholded=True)
    assert hashlib.sha256(mm.to_json_text().encode()).hexdigest() == \
        "2ade65368618ef2c25fa0b890191287a77bb511de8226b783f56eeecd5be32d2"


def test_w1_model_file_unchanged(tmp_path):
    m = random_model([12, 6, 4], np.random.default_rng(0))
    save_model(m, tmp_path / "m.npz")
    assert "weight_bits" not in np.load(tmp_path / "m.npz").files
    m2 = random_model([12, 6, 4], np.random.default_rng(0), weight_bits=[2, 1])
    save_model(m2, tmp_path / "m2.npz")
    assert np.load(tmp_path / "m2.npz")["weight_bits"].tolist() == [2, 1]
    assert load_model(tmp_path / "m2.npz").layer_bits == [2, 1]


def test_image_round_trip_and_version(tmp_path):
    rng = np.random.default_rng(5)
    folds = make_folding([23, 17, 9, 6], "5:4,8:3,3:2")
    for last in (False, True):
        image = random_image(folds, rng, weight_bits=[2, 1, 2], last_thresholded=last)
        write_image(image, tmp_path / "img")
        man = json.loads((tmp_path / "img" / "manifest.json").read_text())
        assert man["version"] == 3
        assert [ly["weight_bits"] for ly in man["layers"]] == [2, 1, 2]
        assert man["layers"][0]["mask_files"] == [f"l0_pe{p}_mask.hex" for p in range(4)]
        assert "mask_files" not in man["layers"][1]
        back = read_image(tmp_path / "img")
        assert back.weight_bits == [2, 1, 2] and back.last_thresholded == last
        for a, b in zip(back.masks, image.masks):
            assert (a is None and b is None) or np.array_equal(a, b)
        for a, b in zip(back.weights, image.weights):
            assert np.array_equal(a, b)
        x = rng.integers(0, 2, size=(50, 23), dtype=np.uint8)
        assert np.array_equal(golden_forward(back, x), golden_forward(image, x))


def test_image_errors(tmp_path):
    rng = np.random.default_rng(6)
    folds = make_folding([12, 7, 4], "4:3,7:2")
    image = random_image(folds, rng, weight_bits=[2, 1])
    d = tmp_path / "img"
    write_image(image, d)
    man = json.loads((d / "manifest.json").read_text())

    def broken(change) -> str:
        m = json.loads(json.dumps(man))
        change(m)
        (d / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(EieError) as e:
            read_image(d)
        (d / "manifest.json").write_text(json.dumps(man))
        assert len(str(e.value).splitlines()) == 1
        return str(e.value)

    assert "is 2 (ternary) but the image is version 2; ternary layers need version 3" in \
        broken(lambda m: m.update(version=2))
    assert "lists 0 files but layer 0 is ternary (weight_bits 2) with 3 PEs" in \
        broken(lambda m: m["layers"][0].pop("mask_files"))
    assert "layer 1 is binary (weight_bits 1), which has no masks" in \
        broken(lambda m: m["layers"][1].update(mask_files=["l0_pe0_mask.hex"]))
    assert "weight_bits" in broken(lambda m: m["layers"][1].update(weight_bits=3))
    # a sign bit under a zero mask is ignored (the hardware never sees it)
    (d / "l0_pe0_w.hex").write_text("f\n" * (folds[0].nf * folds[0].sf))
    back = read_image(d)
    assert not np.any(back.weights[0] & (1 - back.masks[0]))


# --- the hardware ---------------------------------------------------------------------------

def test_memory_map_of_a_ternary_core():
    folds = make_folding([40, 9, 5, 3], "7:4,3:2,2:3")
    w1 = BnnMemoryMap(folds)
    w2 = BnnMemoryMap(folds, weight_bits=(2, 1, 2))
    assert w1.kind_bits == 1 and w2.kind_bits == 2 and w2.kinds == (0, 1, 2)
    assert w2.layer_shift == w2.kind_shift + 2
    assert (w2.depth(0, 2), w2.width(0, 2)) == (folds[0].nf * folds[0].sf, 7)
    assert w2.depth(1, 2) == 0
    assert w2.depth(2, 1) == folds[2].nf and w2.nonzero_counts(2)     # K' of the dot layer
    assert w1.depth(2, 1) == 0
    doc = w2.to_json()
    assert doc["weight_bits"] == [2, 1, 2] and doc["memory"]["kinds"]["masks"] == 2
    assert doc["memory"]["layers"][2]["thresholds"]["holds"] == "nonzero counts"
    assert doc["config_crc"] != w1.to_json()["config_crc"]
    assert "weight_bits" not in w1.to_json()
    with pytest.raises(EieError, match="give 1 .binary. or 2 .ternary. per layer"):
        BnnMemoryMap(folds, weight_bits=(2, 3, 1))


AMARANTH_CASES = [
    # shape, folding, weight bits, thresholded output layer
    ([20, 9, 7, 5], "7:4,3:2,2:3", [2, 1, 2], False),
    ([20, 9, 7, 5], "20:9,9:7,7:5", [2, 2, 1], True),
    ([33, 12, 6], "1:1,5:2", [1, 2], False),
    ([16, 8, 4], "16:1,8:4", [2, 2], False),
    ([12, 6, 3], "3:2,1:3", [2, 2], False),          # SIMD 1: no popcount stage
]


@pytest.mark.rtl
@pytest.mark.parametrize("shape, fold, bits, last", AMARANTH_CASES)
def test_amaranth_equals_golden(shape, fold, bits, last):
    rng = np.random.default_rng(sum(shape))
    folds = make_folding(shape, fold)
    x = rng.integers(0, 2, size=(8, shape[0]), dtype=np.uint8)
    jobs = [BnnJob(random_image(folds, rng, weight_bits=bits, last_thresholded=last), x)]
    if not last:
        model = random_model(shape, rng, weight_bits=bits)
        jobs.append(BnnJob(compile_model(model, fold), x))
    run_amaranth(folds, jobs)
    for job in jobs:
        assert np.array_equal(job.y, golden_forward(job.image, x))
        assert job.counters["ii_min"] == analytic_ii(folds)      # the mask costs no cycle
    if not last:
        assert np.array_equal(jobs[1].y, float_forward(model, x))


def test_ternary_image_on_a_binary_core_is_refused():
    from eie.hw.bnn.host_program import load_ops

    folds = make_folding([20, 9, 5], "7:4,3:2")
    image = random_image(folds, np.random.default_rng(0), weight_bits=[1, 2])
    with pytest.raises(EieError, match=r"^the image's layer 1 has ternary \(W2\) weights but the "
                                        r"core was built with binary \(W1\) weights there"):
        list(load_ops(BnnMemoryMap(folds), image))
    w1 = random_image(folds, np.random.default_rng(0))
    with pytest.raises(EieError, match=r"layer 0 has binary \(W1\) weights but the core was "
                                        r"built with ternary \(W2\)"):
        list(load_ops(BnnMemoryMap(folds, weight_bits=(2, 2)), w1))
    with pytest.raises(EieError, match="job 0's image has weight precisions W1,W2 but the core "
                                       "is built for W1,W1"):
        run_amaranth(folds, [BnnJob(image, np.zeros((1, 20), np.uint8))], weight_bits=(1, 1))


def test_binary_core_is_unchanged_by_the_ternary_option():
    """weight_bits all 1 elaborates exactly the binary core (same Verilog text)."""
    from eie.sim.bnn_run import build_top_verilog
    import tempfile

    folds = make_folding([20, 9, 5], "7:4,3:2")
    with tempfile.TemporaryDirectory() as d:
        a = build_top_verilog(folds, Path(d) / "a.v").read_text()
        b = build_top_verilog(folds, Path(d) / "b.v", weight_bits=(1, 1)).read_text()
        c = build_top_verilog(folds, Path(d) / "c.v", weight_bits=(2, 1)).read_text()
    assert a == b and a != c and "mmem0" in c and "mmem0" not in a


def _rtl_jobs(shape, fold, bits, last, seed, n=20):
    rng = np.random.default_rng(seed)
    folds = make_folding(shape, fold)
    x = rng.integers(0, 2, size=(n, shape[0]), dtype=np.uint8)
    ii = analytic_ii(folds)
    jobs = [BnnJob(random_image(folds, rng, weight_bits=bits, last_thresholded=last), x),
            BnnJob(random_image(folds, rng, weight_bits=bits, last_thresholded=last), x,
                   preload=False, backpressure=0.7, max_gap=3 * ii + 8, seed=seed)]
    model = None
    if not last:
        model = random_model(shape, rng, weight_bits=bits)
        jobs.insert(1, BnnJob(compile_model(model, fold), x))
    return folds, x, jobs, model


RTL_CASES = [
    ([40, 9, 5, 3], "7:4,3:2,2:3", [2, 1, 2], False),     # no fold divides its layer
    ([24, 13, 7], "24:2,4:7", [1, 2], True),
    ([30, 16, 10], "8:4,16:5", [2, 2], False),
]


def _check_rtl(simulator, case, bnn_build_dir, seed):
    shape, fold, bits, last = case
    folds, x, jobs, model = _rtl_jobs(shape, fold, bits, last, seed)
    with bnn_build_dir(simulator, folds, 4, 2, tuple(bits), last) as bdir:
        run_rtl(simulator, folds, jobs, build_dir=bdir, in_depth=4, out_depth=2)
    for k, job in enumerate(jobs):
        assert np.array_equal(job.y, golden_forward(job.image, x)), f"job {k}"
        assert job.counters["samples_out"] == len(x)
    assert jobs[0].counters["ii_min"] == analytic_ii(folds)
    assert jobs[-1].counters["stall"] > 0, "back-pressure never reached the network"
    if model is not None:
        assert np.array_equal(jobs[1].y, float_forward(model, x))


@pytest.mark.rtl
@pytest.mark.parametrize("case", RTL_CASES[:2], ids=["w2w1w2", "w1w2-bits"])
def test_icarus_equals_golden(case, bnn_build_dir):
    _check_rtl("icarus", case, bnn_build_dir, seed=31)


@pytest.mark.rtl
@pytest.mark.parametrize("case", RTL_CASES[:1], ids=["w2w1w2"])
def test_verilator_equals_golden(case, bnn_build_dir):
    _check_rtl("verilator", case, bnn_build_dir, seed=32)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("simulator, case", [("icarus", RTL_CASES[2]),
                                             ("verilator", RTL_CASES[1]),
                                             ("verilator", RTL_CASES[2])],
                         ids=["icarus-w2w2", "verilator-w1w2-bits", "verilator-w2w2"])
def test_more_rtl_equals_golden(simulator, case, bnn_build_dir):
    _check_rtl(simulator, case, bnn_build_dir, seed=33)


# --- the command line -----------------------------------------------------------------------

@pytest.mark.rtl
def test_cli_compile_golden_run_amaranth(tmp_path, cli):
    rng = np.random.default_rng(8)
    model = random_model([30, 12, 9, 6], rng, weight_bits=[2, 1, 2])
    save_model(model, tmp_path / "m.npz")
    x = rng.integers(0, 2, size=(12, 30), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    r = cli(["bnn", "compile", tmp_path / "m.npz", "-o", tmp_path / "img", "--fold",
             "7:4,5:3,9:2"])
    assert r.code == 0, r.err
    assert "weights W2,W1,W2 (ternary:" in r.out
    r = cli(["bnn", "golden", tmp_path / "img", "--input", tmp_path / "x.npy", "-o",
             tmp_path / "g.npy", "--classes", "argmax"])
    assert r.code == 0, r.err
    assert np.array_equal(np.load(tmp_path / "g.npy"), float_forward(model, x))
    r = cli(["bnn", "run", tmp_path / "img", "--input", tmp_path / "x.npy", "-o",
             tmp_path / "y.npy", "--sim", "amaranth", "--stats", tmp_path / "s.json"])
    assert r.code == 0, r.out + r.err
    assert "outputs equal the golden model" in r.out
    assert json.loads((tmp_path / "s.json").read_text())["weight_bits"] == [2, 1, 2]
    r = cli(["bnn", "generate", tmp_path / "img", "-o", tmp_path / "b.v"])
    assert r.code == 0 and "weights W2,W1,W2" in r.out, r.err
    assert json.loads((tmp_path / "b.memmap.json").read_text())["weight_bits"] == [2, 1, 2]
    r = cli(["bnn", "generate", "--shape", "30,12,6", "--weights", "W1,W2", "-o",
             tmp_path / "s.v"])
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "s.memmap.json").read_text())["weight_bits"] == [1, 2]
    cli(["bnn", "generate", "--shape", "30,12,6", "--weights", "W1,W3", "-o",
         tmp_path / "t.v"]).assert_clean_error("'W3' is not a weight precision")
    cli(["bnn", "generate", "--shape", "30,12,6", "--weights", "W1,W2,W2", "-o",
         tmp_path / "t.v"]).assert_clean_error("gives 3 precisions but the network has 2 layers")
    cli(["bnn", "generate", tmp_path / "img", "--weights", "W2", "-o",
         tmp_path / "t.v"]).assert_clean_error("--weights is for --shape")


def test_cli_bad_weights(tmp_path, cli):
    rng = np.random.default_rng(9)
    w0 = rng.integers(-1, 2, size=(6, 10)).astype(np.int8)
    w0[0, 0] = 2
    np.savez(tmp_path / "bad.npz", W0=w0, W1=np.ones((3, 6), np.int8), T0=np.zeros(6, int),
             rule="ge", weight_bits=np.array([2, 1]))
    cli(["bnn", "compile", tmp_path / "bad.npz", "-o", tmp_path / "img"]).assert_clean_error(
        "W0[0, 0] is 2; ternary weights (weight_bits[0] = 2) are -1, 0 or +1")
    assert not (tmp_path / "img").exists()
    m = random_model([10, 6, 3], rng)
    save_model(m, tmp_path / "f.npz")
    d = dict(np.load(tmp_path / "f.npz"))
    np.savez(tmp_path / "f2.npz", **d, weight_bits=np.array([2, 5]))
    cli(["bnn", "compile", tmp_path / "f2.npz", "-o", tmp_path / "img"]).assert_clean_error(
        "weight_bits in")


@pytest.mark.rtl
def test_cli_run_icarus(tmp_path, cli, bnn_build_dir):
    rng = np.random.default_rng(10)
    model = random_model([30, 12, 6], rng, weight_bits=[2, 2])
    save_model(model, tmp_path / "m.npz")
    x = rng.integers(0, 2, size=(16, 30), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    assert cli(["bnn", "compile", tmp_path / "m.npz", "-o", tmp_path / "img", "--fold",
                "8:4,4:3"]).code == 0
    with bnn_build_dir("cli-ternary", "icarus") as build:
        r = cli(["bnn", "run", tmp_path / "img", "--input", tmp_path / "x.npy", "-o",
                 tmp_path / "y.npy", "--sim", "icarus", "--build-dir", build])
    assert r.code == 0, r.out + r.err
    assert np.array_equal(np.load(tmp_path / "y.npy"), float_forward(model, x))


# --- training --------------------------------------------------------------------------------

def test_twn_training_learns_and_compiles_exactly(tmp_path):
    from eie.sw.bnn.train import BinaryMLP, BnnTrainConfig, bnn_accuracy, train_bnn

    rng = np.random.default_rng(0)
    protos = rng.integers(0, 2, (4, 48))
    y = rng.integers(0, 4, 600)
    x = (protos[y] ^ (rng.random((600, 48)) < 0.1)).astype(np.uint8)
    a = BinaryMLP.init((48, 32, 24, 4), seed=0, weight_bits=[2, 1, 2])
    b = BinaryMLP.init((48, 32, 24, 4), seed=0, weight_bits=[2, 1, 2])
    cfg = BnnTrainConfig(epochs=5, batch_size=50, seed=3)
    hist = train_bnn(a, x, y, cfg)
    train_bnn(b, x, y, cfg)
    assert hist[-1] < hist[0] and bnn_accuracy(a, x, y) > 0.9
    for pa, pb in zip(a.weights + a.mean, b.weights + b.mean):
        np.testing.assert_array_equal(pa, pb)
    path = tmp_path / "w2.npz"
    np.savez(path, **a.to_npz_dict())
    loaded = load_model(path)
    assert loaded.layer_bits == [2, 1, 2]
    ours = a.forward(x)
    np.testing.assert_array_equal(float_forward(loaded, x), ours)
    image = compile_model(loaded, "16:8,8:4,8:4")
    np.testing.assert_array_equal(golden_forward(image, x), ours)
    assert image.stats[0]["zero_weights"] > 0
    with pytest.raises(EieError, match=r"weight_bits\[0\] is 4"):
        BinaryMLP.init((8, 4, 2), weight_bits=[4, 1])


def test_cli_train(tmp_path, cli):
    pytest.importorskip("mlxtend")
    r = cli(["bnn", "train", "-o", tmp_path / "m.npz", "--weights", "W2,W1,W1,W2",
             "--epochs", "1", "--save-test", tmp_path / "t"])
    assert r.code == 0, r.err
    assert "784,64,64,64,10 W2,W1,W1,W2, 1 epoch on" in r.out
    assert load_model(tmp_path / "m.npz").layer_bits == [2, 1, 1, 2]
    assert np.load(tmp_path / "t" / "x_test_bits.npy").shape == (1000, 784)
    cli(["bnn", "train", "-o", tmp_path / "n.npz", "--weights", "W1,W2"]).assert_clean_error(
        "gives 2 precisions but the network has 4 layers")
