"""BNN software: folding, threshold folding, golden model == float model, image files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eie.sw.bnn.compile import binarize, compile_model, fold_thresholds
from eie.sw.bnn.float_model import (DEFAULT_EPS, float_forward, float_layers,
                                    load_model, random_model, save_model)
from eie.hw.bnn.folding import (LayerFold, analytic_ii, default_folding, make_folding,
                                parse_folding)
from eie.sw.bnn.golden import golden_forward, golden_layers
from eie.sw.bnn.image import random_image, read_image, write_image
from eie.hw.bnn.words import threshold_words, weight_words
from eie.common.errors import EieError


def sweep_inputs(w: np.ndarray) -> np.ndarray:
    """For every neuron k of bit matrix w (n_out, K) and every m in 0..K, an input with exactly
    m matches with neuron k's (original) weights."""
    n_out, k_in = w.shape
    rows = []
    for k in range(n_out):
        for m in range(k_in + 1):
            x = w[k].copy()
            x[m:] ^= 1
            rows.append(x)
    return np.array(rows, dtype=np.uint8)


# --- folding ------------------------------------------------------------------------------

def test_fold_counts_and_ii():
    f = LayerFold(784, 1024, 64, 32)
    assert (f.sf, f.nf, f.ii) == (13, 32, 416)
    folds = make_folding([784, 1024, 1024, 1024, 10], "64:32,32:64,64:32,8:16")
    # ceil(1024/64)*ceil(1024/32) = 16*32; 32*16 for the middle one too
    assert [x.ii for x in folds] == [13 * 32, 32 * 16, 16 * 32, 128 * 1]
    assert folds[-1].nf == 1  # 16 PEs on 10 classes: 6 padding lanes
    assert analytic_ii(folds) == 512


def test_default_folding_is_balanced():
    folds = default_folding([784, 64, 64, 10])
    assert (folds[0].simd, folds[0].pe) == (32, 16)
    first = folds[0].ii
    assert all(f.ii <= first for f in folds)
    assert analytic_ii(folds) == first


@pytest.mark.parametrize("text, message", [
    ("64:32,32", "folding entry 1"),
    ("a:b", "folding entry 0"),
    ("", "empty"),
])
def test_bad_folding_text(text, message):
    with pytest.raises(EieError, match=message):
        parse_folding(text)


@pytest.mark.parametrize("fold, message", [
    ("8:4,4:2", "has 2 SIMD:PE entries but the network has 3 layers"),
    ("17:4,4:2,2:2", "SIMD 17 does not fit a fan-in of 16"),
    ("8:9,4:2,2:2", "PE 9 does not fit 8 output neurons"),
    ("8:4,4:9,2:2", r"PE 9 does not fit 5 output neurons \(choose 1..8"),
    ("8:0,4:2,2:2", "PE 0"),
])
def test_folding_that_does_not_fit(fold, message):
    with pytest.raises(EieError, match=message):
        make_folding([16, 8, 5, 3], fold)


# --- threshold folding --------------------------------------------------------------------

def test_binarize_sign_zero_is_plus_one():
    assert binarize(np.array([-1.5, -0.0, 0.0, 2.0])).tolist() == [0, 1, 1, 1]


def test_thresholds_on_integers_exact():
    k_in = 9
    # dot == mean exactly when matches == m0: 0 >= 0 fires there.
    m0 = np.array([0, 3, 4, 9, 5, 5])
    gamma = np.array([1.0, 2.5, 0.7, 1.0, -1.0, -3.0])
    mean = 2.0 * m0 - k_in
    t, flip = fold_thresholds(gamma, np.zeros(6), mean, np.ones(6), 0.0, k_in)
    assert flip.tolist() == [False] * 4 + [True] * 2
    # gamma > 0: fires for m >= m0. gamma < 0: fires for m <= m0, i.e. m' = K - m >= K - m0.
    assert t.tolist() == [0, 3, 4, 9, k_in - 5, k_in - 5]


def test_zero_scale_is_constant():
    t, flip = fold_thresholds(np.array([0.0, 0.0, -0.0]), np.array([0.5, -0.5, 0.0]),
                              np.zeros(3), np.ones(3), DEFAULT_EPS, 12)
    assert t.tolist() == [0, 13, 0]       # beta >= 0: always 1; beta < 0: never
    assert not flip.any()


@pytest.mark.parametrize("seed", range(6))
def test_golden_equals_float_at_every_match_count(seed):
    """Every neuron of a hidden layer at every possible match count 0..K: bit for bit."""
    rng = np.random.default_rng(seed)
    k_in, n_out = int(rng.integers(1, 40)), int(rng.integers(1, 30))
    model = random_model([k_in, n_out, 3], rng)
    # near-integer thresholds: beta nudged by one ulp either way
    nudge = rng.integers(-1, 2, size=n_out)
    model.beta[0] = np.where(nudge == 0, model.beta[0],
                             np.nextafter(model.beta[0], np.where(nudge > 0, np.inf, -np.inf)))
    image = compile_model(model)
    x = sweep_inputs(binarize(model.weights[0]))
    assert np.array_equal(golden_layers(image, x)[0], float_layers(model, x)[0])
    # both outcomes occur on the sweep of a non-constant neuron
    assert golden_layers(image, x)[0].any()


@pytest.mark.parametrize("seed", range(4))
def test_golden_equals_float_random_networks(seed):
    rng = np.random.default_rng(100 + seed)
    depth = int(rng.integers(2, 6))
    shape = [int(v) for v in rng.integers(1, 70, size=depth + 1)]
    model = random_model(shape, rng)
    image = compile_model(model)
    stats = image.stats
    x = rng.integers(0, 2, size=(300, shape[0]), dtype=np.uint8)
    assert np.array_equal(golden_forward(image, x), float_forward(model, x))
    assert all(np.array_equal(g, f) for g, f in zip(golden_layers(image, x), float_layers(model, x)))
    assert sum(s.get("flipped_neurons", 0) for s in stats) + depth > 0


def test_golden_dot_by_hand():
    # one layer: K = 4, w = [1,0,1,1] (+,-,+,+), x = [1,1,0,1] (+,+,-,+): dot = 1-1-1+1 = 0
    image = random_image([LayerFold(4, 1, 4, 1)], np.random.default_rng(0))
    image.weights[0][:] = [[1, 0, 1, 1]]
    assert golden_forward(image, np.array([[1, 1, 0, 1]], dtype=np.uint8)).tolist() == [[0]]
    assert golden_forward(image, np.array([[1, 0, 1, 1]], dtype=np.uint8)).tolist() == [[4]]
    assert golden_forward(image, np.array([[0, 1, 0, 0]], dtype=np.uint8)).tolist() == [[-4]]


# --- model validation ---------------------------------------------------------------------

def _model():
    return random_model([6, 5, 3], np.random.default_rng(1))


def test_nan_parameter_is_rejected():
    m = _model()
    m.mean[0][2] = np.nan
    with pytest.raises(EieError, match=r"mean0\[2\] is nan"):
        compile_model(m)


def test_nan_weight_is_rejected():
    m = _model()
    m.weights[1][0, 1] = np.inf
    with pytest.raises(EieError, match=r"W1\[0, 1\] is inf"):
        compile_model(m)


def test_shapes_must_chain():
    m = _model()
    m.weights[1] = np.ones((3, 4))
    with pytest.raises(EieError, match="shapes don't chain: W1 has fan-in 4 but layer 0 has 5"):
        compile_model(m)


def test_negative_variance_is_rejected():
    m = _model()
    m.var[0][1] = -1.0
    with pytest.raises(EieError, match=r"var0\[1\] \+ eps"):
        compile_model(m)


def test_model_file_roundtrip_and_last_layer_bn(tmp_path):
    m = _model()
    save_model(m, tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz")
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, m.weights))
    data = dict(np.load(tmp_path / "m.npz"))
    data["gamma1"] = np.ones(3)
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(EieError, match="gamma1 but layer 1 is the last layer"):
        load_model(tmp_path / "bad.npz")
    del data["gamma1"], data["beta0"]
    np.savez(tmp_path / "bad2.npz", **data)
    with pytest.raises(EieError, match="lacks beta0"):
        load_model(tmp_path / "bad2.npz")


def test_bits_other_than_0_1_rejected():
    m = _model()
    with pytest.raises(EieError, match=r"input\[0, 3\] is 2; bits must be 0 or 1"):
        float_forward(m, np.array([[0, 1, 0, 2, 1, 1]]))


# --- image files --------------------------------------------------------------------------

def test_image_layout_by_definition(tmp_path):
    """Word nf*sf + sf_i of PE p holds neuron nf*PE+p's inputs sf_i*SIMD+b at bit b."""
    rng = np.random.default_rng(7)
    folds = make_folding([11, 7, 2], "4:3,7:2")
    image = random_image(folds, rng)
    write_image(image, tmp_path / "img")
    f = folds[0]
    w = image.weights[0]
    for p in range(f.pe):
        lines = (tmp_path / "img" / f"l0_pe{p}_w.hex").read_text().split()
        assert len(lines) == f.nf * f.sf == 3 * 3
        assert all(len(s) == 1 for s in lines)  # 4 bits: one hex digit
        for nfi in range(f.nf):
            for sfi in range(f.sf):
                word = int(lines[nfi * f.sf + sfi], 16)
                for b in range(f.simd):
                    n, i = nfi * f.pe + p, sfi * f.simd + b
                    want = int(w[n, i]) if n < f.n_out and i < f.n_in else 0
                    assert (word >> b) & 1 == want, (p, nfi, sfi, b)
        thr = [int(s, 16) for s in (tmp_path / "img" / f"l0_pe{p}_thr.hex").read_text().split()]
        for nfi in range(f.nf):
            n = nfi * f.pe + p
            assert thr[nfi] == (image.thresholds[0][n] if n < f.n_out else 0)
    manifest = json.loads((tmp_path / "img" / "manifest.json").read_text())
    assert manifest["format"] == "eie-bnn-image" and manifest["ii"] == 9
    back = read_image(tmp_path / "img")
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, image.weights))
    assert all(np.array_equal(a, b) for a, b in zip(back.thresholds, image.thresholds))


def test_image_read_rejects_truncated_file(tmp_path):
    image = random_image(make_folding([9, 4, 2], "3:2,4:1"), np.random.default_rng(0))
    write_image(image, tmp_path / "img")
    p = tmp_path / "img" / "l0_pe1_w.hex"
    p.write_text("\n".join(p.read_text().split()[:-1]) + "\n")
    with pytest.raises(EieError, match=r"l0_pe1_w.hex has 5 values but layer 0's folding 3:2 "
                                       r"needs nf \* sf = 6 \(the file ends early\)"):
        read_image(tmp_path / "img")


def test_image_hex_files_may_hold_comments_blank_lines_and_short_words(tmp_path):
    """The BNN reader takes what $readmemh takes (the EIE reader's rules, one implementation):
    `//` comments, blank lines, CRLF, upper case, words without their leading zeros."""
    image = random_image(make_folding([9, 4, 2], "3:2,4:1"), np.random.default_rng(0))
    write_image(image, tmp_path / "img")
    for p in (tmp_path / "img").glob("*.hex"):
        words = p.read_text().split()
        p.write_text("// " + p.name + "\r\n\r\n"
                     + "".join(f"{int(w, 16):X}  // word {i}\r\n" for i, w in enumerate(words)))
    back = read_image(tmp_path / "img")
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, image.weights))
    assert all(np.array_equal(a, b) for a, b in zip(back.thresholds, image.thresholds))


def test_image_write_is_unchanged(tmp_path):
    """The files `write_image` produces, byte for byte (the writer moved to eie.sw.imagefile)."""
    image = random_image(make_folding([9, 4, 2], "3:2,4:1"), np.random.default_rng(0))
    write_image(image, tmp_path / "img")
    f = image.folds[0]
    for p, words in enumerate(weight_words(f, image.weights[0])):
        assert (tmp_path / "img" / f"l0_pe{p}_w.hex").read_text() == \
            "".join(f"{w:01x}\n" for w in words)
    for p, words in enumerate(threshold_words(f, image.thresholds[0])):
        assert (tmp_path / "img" / f"l0_pe{p}_thr.hex").read_text() == \
            "".join(f"{w:01x}\n" for w in words)
    man = (tmp_path / "img" / "manifest.json").read_text()
    assert man.endswith("\n") and man == json.dumps(json.loads(man), indent=1) + "\n"


def test_failed_write_leaves_nothing(tmp_path):
    image = random_image(make_folding([9, 4, 2], "3:2,4:1"), np.random.default_rng(0))
    image.weights[1] = image.weights[1][:, :2]  # wrong shape: fails while writing
    with pytest.raises(Exception):
        write_image(image, tmp_path / "img")
    assert not (tmp_path / "img").exists()
    assert not list(tmp_path.iterdir())


def test_extreme_parameters_fold_exactly():
    """Huge and tiny scales, variances and means (overflow to inf included): golden == float."""
    rng = np.random.default_rng(99)
    k_in, n_out = 17, 40
    model = random_model([k_in, n_out, 2], rng)
    mag = 10.0 ** rng.integers(-300, 300, size=n_out)
    model.gamma[0] = rng.choice([-1.0, 1.0], size=n_out) * mag
    model.var[0] = 10.0 ** rng.integers(-300, 300, size=n_out)
    model.mean[0] = rng.normal(size=n_out) * 10.0 ** rng.integers(-5, 300, size=n_out)
    model.beta[0] = rng.normal(size=n_out) * 10.0 ** rng.integers(-300, 5, size=n_out)
    model.eps = 0.0
    image = compile_model(model)
    x = sweep_inputs(binarize(model.weights[0]))
    want = float_layers(model, x)[0]
    assert np.array_equal(golden_layers(image, x)[0], want)
