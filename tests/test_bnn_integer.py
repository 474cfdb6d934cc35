"""A BNN given as integers (bipolar weights, thresholds on the match count under a named rule),
a thresholded output layer, classes, FINN's padding, and `eie bnn` on them (issue 15).

The reference here is written from the definition (docs/ARCHITECTURE.md, BNN section), with
+1/-1 arithmetic and no code of :mod:`eie.sw.bnn`: a layer with fan-in ``K`` computes
``dot = sum(a * w)`` and ``matches = (dot + K) / 2``; a thresholded layer outputs ``+1`` where
``matches > T`` (rule ``gt``) or ``matches >= T`` (``ge``), else ``-1``; an unthresholded output
layer outputs ``dot``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.hw.bnn.folding import make_folding
from eie.sw.bnn.compile import compile_integer
from eie.sw.bnn.golden import BIT_RULES, CLASS_RULES, DOT_RULES, classify, golden_forward
from eie.sw.bnn.image import read_image, write_image
from eie.sw.bnn.params import (IntegerBnn, ge_thresholds, load_integer_npz, save_integer_npz,
                               strip_padding)

# ----------------------------------------------------------------------------- the reference


def numpy_forward(weights, thresholds, rule, x_bits):
    """The network by its definition, in +1/-1 arithmetic (float64 products of integers, exact).
    Returns uint8 bits (0 is -1) of a thresholded output layer, else int32 dots."""
    a = 2.0 * np.asarray(x_bits, dtype=np.float64) - 1.0
    for w, t in zip(weights, thresholds):
        w = np.asarray(w, dtype=np.float64)
        dot = a @ w.T
        if t is None:
            return np.rint(dot).astype(np.int32)
        m = (dot + w.shape[1]) / 2
        fire = m > t if rule == "gt" else m >= t
        a = np.where(fire, 1.0, -1.0)
    return (a > 0).astype(np.uint8)


def random_net(rng, shape, rule, *, last_thresholded=True, wild=True):
    """Random +1/-1 weights; thresholds around K/2, some far outside 0..K (constant neurons)."""
    weights, thresholds = [], []
    for l, (n_in, n_out) in enumerate(zip(shape[:-1], shape[1:])):
        weights.append(rng.choice(np.array([-1, 1], dtype=np.int8), size=(n_out, n_in)))
        t = np.round(n_in / 2 + rng.normal(size=n_out) * np.sqrt(n_in) / 2).astype(np.int64)
        if wild:
            pick = rng.random(n_out)
            t[pick < 0.08] = rng.choice([-32768, -5, -1, 0], size=int((pick < 0.08).sum()))
            t[pick > 0.92] = rng.choice([n_in, n_in + 1, n_in + 7, 32767],
                                        size=int((pick > 0.92).sum()))
        last = l == len(shape) - 2
        thresholds.append(t if (not last or last_thresholded) else None)
    return IntegerBnn(weights, thresholds, rule)


# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("k", [1, 2, 7, 64, 1023])
def test_rules_as_ge_at_every_match_count(k):
    """gt T == ge T+1 and ge T == ge T, at every match count 0..K, for thresholds in and far
    outside the range (FINN's 32767 padding, negatives): the converted threshold fires exactly
    where the named rule does."""
    rng = np.random.default_rng(k)
    t = np.concatenate([np.arange(-3, k + 4), rng.integers(-40000, 40000, size=50),
                        [-32768, 32767]]).astype(np.int64)
    m = np.arange(k + 1)[:, None]
    for rule, fires in (("gt", m > t), ("ge", m >= t)):
        g = ge_thresholds(t, rule, k)
        assert g.min() >= 0 and g.max() <= k + 1
        assert np.array_equal(m >= g, fires), rule
    # docs/bnn.md: a threshold tau on the dot (2m - K) as one on the match count
    tau = np.arange(-k - 3, k + 4)
    dot = 2 * m - k
    assert np.array_equal(m > np.floor_divide(tau + k, 2), dot > tau)           # gt
    assert np.array_equal(m >= -np.floor_divide(-(tau + k), 2), dot >= tau)     # ge, ceil


@pytest.mark.parametrize("rule", ["gt", "ge"])
def test_compiled_network_fires_as_the_rule_on_every_neuron_at_every_count(rule):
    """One thresholded layer whose neurons share a weight row: input ``x_m`` agrees with it in
    exactly ``m`` places, so every neuron sees every match count 0..K; the golden model of the
    compiled image fires exactly where ``m > T`` (gt) or ``m >= T`` (ge) does."""
    rng = np.random.default_rng(5)
    k = 37
    t = np.arange(-4, k + 5, dtype=np.int64)                  # every threshold, and beyond
    row = rng.choice(np.array([-1, 1], dtype=np.int8), size=k)
    net = IntegerBnn([np.tile(row, (t.size, 1))], [t], rule)
    image = compile_integer(net, [(8, 5)])
    bits = (row > 0).astype(np.uint8)
    x = np.array([np.where(np.arange(k) < m, bits, 1 - bits) for m in range(k + 1)],
                 dtype=np.uint8)
    m = np.arange(k + 1)[:, None]
    want = (m > t) if rule == "gt" else (m >= t)
    assert np.array_equal(golden_forward(image, x), want.astype(np.uint8))


# ----------------------------------------------------------------------------- golden model


@pytest.mark.parametrize("rule", ["gt", "ge"])
@pytest.mark.parametrize("last_thresholded", [True, False])
def test_golden_equals_numpy_forward(rule, last_thresholded):
    rng = np.random.default_rng(11 + last_thresholded)
    shape = [70, 33, 20, 41] if last_thresholded else [70, 33, 20, 9]
    net = random_net(rng, shape, rule, last_thresholded=last_thresholded)
    image = compile_integer(net, "9:4,7:5,3:8")
    x = rng.integers(0, 2, size=(200, shape[0]), dtype=np.uint8)
    y = golden_forward(image, x)
    want = numpy_forward(net.weights, net.thresholds, rule, x)
    assert y.dtype == want.dtype and np.array_equal(y, want)
    assert image.last_thresholded is last_thresholded
    if last_thresholded:
        assert 0 < y.mean() < 1                     # the outputs vary: a real comparison


def test_classes():
    bits = np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], dtype=np.uint8)
    assert classify(bits, "highest-bit").tolist() == [3, -1, 0, 2]
    assert classify(bits, "lowest-bit").tolist() == [1, -1, 0, 2]
    assert classify(bits, "one-hot").tolist() == [-1, -1, 0, 2]
    dots = np.array([[3, 5, 5, -1], [-2, -9, -2, -2]], dtype=np.int32)
    assert classify(dots, "argmax").tolist() == [1, 0]      # ties: the lowest index
    with pytest.raises(EieError, match="for dot outputs but these are bits"):
        classify(bits, "argmax")
    with pytest.raises(EieError, match="for bit outputs .* but these are dots"):
        classify(dots, "highest-bit")
    assert set(CLASS_RULES) == set(DOT_RULES) | set(BIT_RULES)
    from eie.app.cmd_bnn import CLASS_CHOICES

    assert set(CLASS_CHOICES) == set(CLASS_RULES)


# ----------------------------------------------------------------------------- image files


def test_image_versions(tmp_path):
    """A thresholded output layer is image version 2 (read back equal); an output layer of dots
    stays version 1, the format older eie versions read."""
    rng = np.random.default_rng(3)
    for thr, version in ((True, 2), (False, 1)):
        net = random_net(rng, [20, 9, 12], "gt", last_thresholded=thr)
        image = compile_integer(net, "6:4,3:5")
        d = write_image(image, tmp_path / f"img{version}")
        man = json.loads((d / "manifest.json").read_text())
        assert man["version"] == version
        assert ("thresholded" in man["layers"][-1]) is thr
        back = read_image(d)
        assert back.last_thresholded is thr
        assert all(np.array_equal(a, b) for a, b in zip(back.weights, image.weights))
        assert all(np.array_equal(a, b) for a, b in zip(back.thresholds, image.thresholds))
    # a thresholded output layer claimed by a version-1 manifest is refused, in one line
    d = tmp_path / "img2"
    man = json.loads((d / "manifest.json").read_text())
    man["version"] = 1
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(EieError, match=r"'layers\[1\].thresholded' is true but the image is "
                                       r"version 1"):
        read_image(d)


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    net = random_net(rng, [16, 7, 5], "gt")
    save_integer_npz(net, tmp_path / "net.npz")
    back = load_integer_npz(tmp_path / "net.npz")            # the file states its rule
    assert back.rule == "gt" and back.shape == net.shape
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, net.weights))
    assert all(np.array_equal(a, b) for a, b in zip(back.thresholds, net.thresholds))
    with pytest.raises(EieError, match="contradicts the model's own rule 'gt'"):
        load_integer_npz(tmp_path / "net.npz", "ge")


# ----------------------------------------------------------------------------- FINN padding

REAL = [784, 1024, 1024, 1024, 10]
PADDED = [832, 1024, 1024, 1024, 64]


def finn_style_lfc(rng, x_bits, real=REAL, padded=PADDED):
    """An LFC in the form BNN-PYNQ exports it: the input padded to ``padded[0]`` with 0 bits
    (-1), the padding weights +1, the output layer padded to ``padded[-1]`` neurons with the
    threshold 32767 (never), every layer thresholded under ``gt``. The thresholds sit at each
    neuron's median match count on ``x_bits`` (as batch norm centres them), a few far outside
    (constant neurons), so every layer's bits vary."""
    a = 2.0 * np.asarray(x_bits, dtype=np.float64) - 1.0
    a = np.concatenate([a, -np.ones((a.shape[0], padded[0] - real[0]))], axis=1)
    weights, thresholds = [], []
    for l in range(len(padded) - 1):
        n_in, n_out = padded[l], padded[l + 1]
        w = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n_out, n_in))
        if l == 0:
            w[:, real[0]:] = 1
        m = (a @ w.T.astype(np.float64) + n_in) / 2
        t = np.median(m, axis=0).astype(np.int64) - 1
        pick = rng.random(n_out)
        t[pick < 0.01] = 32767
        t[pick > 0.99] = -3
        if l == len(padded) - 2:
            t[real[-1]:] = 32767
        weights.append(w)
        thresholds.append(t)
        a = np.where(m > t, 1.0, -1.0)
    return IntegerBnn(weights, thresholds, "gt")


@pytest.fixture(scope="module")
def digits():
    from eie.sw.mnist import binarize_pixels, load_mnist

    d = load_mnist()
    pixels = np.concatenate([d.x_train, d.x_test]).astype(np.uint8)
    return pixels, binarize_pixels(pixels)


@pytest.fixture(scope="module")
def lfc(digits):
    return finn_style_lfc(np.random.default_rng(15), digits[1][:1000])


def test_finn_lfc_golden_equals_numpy_on_every_digit(lfc, digits):
    """The FINN-style LFC, padding stripped (784-1024-1024-1024-10, thresholded output layer)
    and compiled from its integer thresholds: the golden model equals the padded network's own
    forward pass (FINN's rule, padded inputs) on all 5,000 digits."""
    _, bits = digits
    net = strip_padding(lfc, REAL)
    assert net.shape == REAL and net.last_thresholded
    image = compile_integer(net, "64:4,32:8,32:8,8:1")
    y = golden_forward(image, bits)
    padded_x = np.concatenate([bits, np.zeros((bits.shape[0], PADDED[0] - REAL[0]), np.uint8)],
                              axis=1)
    want = numpy_forward(lfc.weights, lfc.thresholds, "gt", padded_x)[:, :REAL[-1]]
    assert y.shape == (5000, 10) and np.array_equal(y, want)
    assert 0.3 < y.mean() < 0.7
    # copying FINN's T as eie's >= (the mistake) flips bits: the rule matters
    wrong = compile_integer(IntegerBnn(net.weights, net.thresholds, "ge"), "64:4,32:8,32:8,8:1")
    assert not np.array_equal(golden_forward(wrong, bits[:200]), y[:200])


def test_strip_padding_moves_thresholds_by_what_the_padding_matched():
    """Padding that matches (inputs padded with the weights' own sign, a hidden padding neuron
    that always fires): the stripped network's bits still equal the padded network's."""
    rng = np.random.default_rng(21)
    real, padded = [13, 6, 5], [16, 8, 8]
    net = random_net(rng, padded, "gt", wild=False)
    net.weights[0][:, 13:] = rng.choice(np.array([-1, 1], dtype=np.int8), size=(8, 3))
    net.thresholds[0][6] = -1                # hidden padding neurons: always fires,
    net.thresholds[0][7] = 99                # never fires
    x = rng.integers(0, 2, size=(300, 13), dtype=np.uint8)
    pad_bit = 1
    xp = np.concatenate([x, np.full((300, 3), pad_bit, np.uint8)], axis=1)
    want = numpy_forward(net.weights, net.thresholds, "gt", xp)[:, :5]
    stripped = strip_padding(net, real, input_pad_bit=pad_bit)
    assert stripped.shape == real
    assert np.array_equal(numpy_forward(stripped.weights, stripped.thresholds, "gt", x), want)
    assert np.array_equal(golden_forward(compile_integer(stripped), x), want)
    net.thresholds[0][7] = 5                 # a padding neuron that depends on the input
    with pytest.raises(EieError, match="layer 0 neuron 7 is padding to strip but not constant"):
        strip_padding(net, real)


# ----------------------------------------------------------------------------- the CLI


def _one_line_error(r, message, d, absent):
    assert r.code == 2, r
    assert r.err.startswith("eie: error: ") and message in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert not (d / absent).exists()


def test_cli_compile_golden_classes(tmp_path, cli, lfc, digits):
    """The worked example of docs/bnn.md: FINN-style parameters with padding, stripped by
    `--strip-padding`, compiled with `--threshold-rule gt`; `golden` on pixels with `--binarize`
    saves the bits and, with `--classes highest-bit`, the classes."""
    pixels, bits = digits
    d = tmp_path
    np.savez(d / "lfc.npz", **{f"W{l}": w for l, w in enumerate(lfc.weights)},
             **{f"T{l}": t for l, t in enumerate(lfc.thresholds)})
    np.save(d / "pixels.npy", pixels[:500])
    r = cli(["bnn", "compile", d / "lfc.npz", "-o", d / "img", "--threshold-rule", "gt",
             "--strip-padding", "784,1024,1024,1024,10", "--fold", "64:4,32:8,32:8,8:1"])
    assert r.code == 0, r.err
    assert "II 4096 cycles" in r.out and "output layer thresholded" in r.out
    man = json.loads((d / "img" / "manifest.json").read_text())
    assert man["threshold_rule"] == "gt" and man["padded_shape"] == PADDED
    r = cli(["bnn", "golden", d / "img", "--input", d / "pixels.npy", "--binarize", "128",
             "-o", d / "y.npy", "--classes", "highest-bit"])
    assert r.code == 0, r.err
    y = np.load(d / "y.npy")
    padded_x = np.concatenate([bits[:500], np.zeros((500, 48), np.uint8)], axis=1)
    want = numpy_forward(lfc.weights, lfc.thresholds, "gt", padded_x)[:, :10]
    assert y.dtype == np.uint8 and np.array_equal(y, want)
    c = np.load(d / "y.classes.npy")
    on = want.astype(bool)
    assert np.array_equal(c, np.where(on.any(1), 9 - np.argmax(on[:, ::-1], axis=1), -1))


def test_cli_errors(tmp_path, cli):
    rng = np.random.default_rng(2)
    d = tmp_path
    net = random_net(rng, [12, 6, 4], "gt")
    good = {f"W{l}": w for l, w in enumerate(net.weights)}
    good.update({f"T{l}": t for l, t in enumerate(net.thresholds)})

    def compile_(name, arrays, *extra):
        np.savez(d / name, **arrays)
        return cli(["bnn", "compile", d / name, "-o", d / "img", *extra])

    bad = dict(good, W1=good["W1"].copy())
    bad["W1"][2, 3] = 0
    _one_line_error(compile_("zero.npz", bad, "--threshold-rule", "gt"),
                    "W1[2, 3] is 0; bipolar weights are -1 or +1", d, "img")
    _one_line_error(compile_("shape.npz", dict(good, T0=good["T0"][:5]), "--threshold-rule", "gt"),
                    "T0 has shape (5,); layer 0 has 6 neurons, expected (6,)", d, "img")
    _one_line_error(compile_("frac.npz", dict(good, T1=good["T1"] + 0.5), "--threshold-rule", "gt"),
                    "thresholds are integers", d, "img")
    _one_line_error(compile_("norule.npz", good),
                    "has integer thresholds but no comparison rule: give --threshold-rule gt", d,
                    "img")
    del_t0 = {k: v for k, v in good.items() if k != "T0"}
    _one_line_error(compile_("noT0.npz", del_t0, "--threshold-rule", "ge"),
                    "lacks T0: hidden layer 0 needs thresholds", d, "img")
    _one_line_error(compile_("mixed.npz", dict(good, gamma0=np.ones(6)), "--threshold-rule", "gt"),
                    "mixes integer thresholds (T0) with float batch-norm parameters (gamma0)", d,
                    "img")
    from eie.sw.bnn.float_model import random_model, save_model

    save_model(random_model([12, 6, 4], rng), d / "float.npz")
    r = cli(["bnn", "compile", d / "float.npz", "-o", d / "img", "--threshold-rule", "gt"])
    _one_line_error(r, "--threshold-rule is for an integer model", d, "img")
    r = cli(["bnn", "compile", d / "float.npz", "-o", d / "img", "--strip-padding", "12,6,4"])
    _one_line_error(r, "--strip-padding is for an integer model", d, "img")
    # a class rule that does not suit the outputs
    assert compile_("good.npz", good, "--threshold-rule", "gt").code == 0
    np.save(d / "x.npy", rng.integers(0, 2, size=(5, 12), dtype=np.uint8))
    r = cli(["bnn", "golden", d / "img", "--input", d / "x.npy", "-o", d / "y.npy",
             "--classes", "argmax"])
    _one_line_error(r, "--classes argmax: this image's output layer is thresholded", d, "y.npy")
    np.save(d / "xf.npy", np.full((5, 12), np.nan))
    r = cli(["bnn", "golden", d / "img", "--input", d / "xf.npy", "-o", d / "y.npy",
             "--binarize", "0"])
    _one_line_error(r, "every input must be finite", d, "y.npy")
    r = cli(["bnn", "golden", d / "img", "--input", d / "xf.npy", "-o", d / "y.npy"])
    _one_line_error(r, "bits are integers 0 or 1", d, "y.npy")


# ----------------------------------------------------------------------------- the host side


def test_host_program_refuses_a_core_of_the_other_kind_and_waits_by_the_folding():
    from eie.hw.bnn import host_program as hp
    from eie.hw.bnn.memory_map import BnnMemoryMap, config_crc
    from eie.hw.common.host import run_sync

    rng = np.random.default_rng(4)
    folds = make_folding([20, 9, 12], "6:4,3:5")
    image = compile_integer(random_net(rng, [20, 9, 12], "gt"), "6:4,3:5")
    dots = BnnMemoryMap(folds)
    bits = BnnMemoryMap(folds, last_thresholded=True)
    with pytest.raises(EieError, match="the image's output layer is thresholded .* but the core "
                                       "was built with an output layer of dots"):
        list(hp.load_ops(dots, image))
    # the thresholded core loads the output layer's thresholds too
    assert len(list(hp.load_ops(bits, image))) == (len(list(hp.load_ops(dots, _dots(image))))
                                                  + folds[1].nf * folds[1].pe)
    assert bits.out_words == 1 and dots.out_words == 12
    assert config_crc(folds) != config_crc(folds, True)
    assert "last_thresholded" not in dots.to_json() and bits.to_json()["last_thresholded"]

    class Stopped:          # a core that never takes a sample nor delivers a result
        reads = 0

        async def write(self, addr, data):
            pass

        async def read(self, addr):
            Stopped.reads += 1
            return 0

    with pytest.raises(RuntimeError, match=f"then {hp.wait_bound(bits)} status polls without "
                                           f"progress"):
        run_sync(hp.run_samples(Stopped(), bits, np.zeros((3, 20), np.uint8), preload=False))


def _dots(image):
    """``image`` with its output layer unthresholded (the same weights, dots out)."""
    from eie.sw.bnn.image import BnnImage

    return BnnImage(image.folds, image.weights, image.thresholds[:-1], image.stats)


# ----------------------------------------------------------------------------- the hardware


def _tiny_jobs(rng, folds, n=30):
    from eie.sim.bnn_run import BnnJob
    from eie.sw.bnn.image import random_image

    shape = [folds[0].n_in] + [f.n_out for f in folds]
    x = rng.integers(0, 2, size=(n, shape[0]), dtype=np.uint8)
    net = random_net(rng, shape, "gt")
    return [BnnJob(compile_integer(net, [(f.simd, f.pe) for f in folds]), x, preload=True),
            BnnJob(random_image(folds, rng, last_thresholded=True), x, preload=False,
                   backpressure=0.7, max_gap=60, seed=3)]


TINY = ([40, 9, 5, 37], "7:4,3:2,2:16")      # 37 output bits: two OUT_DATA words a result


@pytest.mark.rtl
def test_thresholded_output_layer_amaranth():
    """The every-count network of the rule test on the Amaranth-simulated core: the core's bits
    equal ``m > T`` itself (not only the golden model), and a random network streamed with
    back-pressure equals the golden model."""
    from eie.sim.bnn_run import BnnJob, run_amaranth

    k = 9
    t = np.arange(-2, k + 3, dtype=np.int64)
    row = np.array([1, -1, -1, 1, 1, 1, -1, 1, -1], dtype=np.int8)
    image = compile_integer(IntegerBnn([np.tile(row, (t.size, 1))], [t], "gt"), [(4, 3)])
    bits = (row > 0).astype(np.uint8)
    x = np.array([np.where(np.arange(k) < m, bits, 1 - bits) for m in range(k + 1)], np.uint8)
    job = BnnJob(image, x)
    run_amaranth(image.folds, [job], in_depth=2, out_depth=2)
    assert job.y.dtype == np.uint8
    assert np.array_equal(job.y, (np.arange(k + 1)[:, None] > t).astype(np.uint8))

    rng = np.random.default_rng(6)
    folds = make_folding(*TINY)
    jobs = _tiny_jobs(rng, folds, n=16)
    run_amaranth(folds, jobs, in_depth=3, out_depth=2)
    for job in jobs:
        assert np.array_equal(job.y, golden_forward(job.image, job.x))


@pytest.mark.rtl
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_thresholded_output_layer_rtl(sim, bnn_build_dir):
    from eie.sim.bnn_run import run_rtl

    rng = np.random.default_rng(7)
    folds = make_folding(*TINY)
    jobs = _tiny_jobs(rng, folds)
    with bnn_build_dir(sim, folds, "thresholded-output") as bdir:
        run_rtl(sim, folds, jobs, build_dir=bdir, in_depth=3, out_depth=2)
    for k, job in enumerate(jobs):
        want = golden_forward(job.image, job.x)
        assert job.y.dtype == np.uint8 and np.array_equal(job.y, want), f"job {k}"
        assert 0 < want.mean() < 1
        assert job.counters["samples_out"] == job.x.shape[0]
    assert jobs[1].counters["stall"] > 0


@pytest.mark.rtl
def test_cli_run_fold_classes_and_default_cache(tmp_path, cli, monkeypatch, build_cache):
    """`eie bnn run` with `--fold` (another folding of the image's shape) and `--classes` on
    Icarus; without `--build-dir` the build goes to the shared cache, nothing into the working
    directory."""
    rng = np.random.default_rng(9)
    net = random_net(rng, [30, 12, 8, 5], "gt")
    save_integer_npz(net, tmp_path / "net.npz")
    x = rng.integers(0, 2, size=(25, 30), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    monkeypatch.chdir(tmp_path)
    assert cli(["bnn", "compile", "net.npz", "-o", "img"]).code == 0
    r = cli(["bnn", "run", "img", "--input", "x.npy", "-o", "y.npy", "--sim", "icarus",
             "--fold", "30:2,12:8,8:1", "--classes", "lowest-bit", "--stats", "s.json"])
    assert r.code == 0, r.out + r.err
    assert "outputs equal the golden model" in r.out
    want = numpy_forward(net.weights, net.thresholds, "gt", x)
    assert np.array_equal(np.load("y.npy"), want)
    on = want.astype(bool)
    assert np.array_equal(np.load("y.classes.npy"), np.where(on.any(1), np.argmax(on, 1), -1))
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["outputs"] == "bits"
    assert stats["ii_analytic"] == 6 != read_image(tmp_path / "img").folds[0].ii   # the new folding
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "img", "net.npz", "s.json", "x.npy", "y.classes.npy", "y.npy"]


@pytest.mark.rtl
def test_generate_thresholded_output_layer(tmp_path, cli):
    r = cli(["bnn", "generate", "--shape", "100,24,40", "--fold", "32:8,8:16",
             "--last-thresholded", "-o", tmp_path / "bnn.v"])
    assert r.code == 0, r.err
    assert "bits out" in r.out
    mm = json.loads((tmp_path / "bnn.memmap.json").read_text())
    assert mm["last_thresholded"] is True and mm["out_words"] == 2
    assert mm["memory"]["layers"][1]["thresholds"]["depth"] == 3


@pytest.mark.rtl
@pytest.mark.slow
def test_finn_lfc_rtl_equals_golden_on_300_digits(lfc, digits):
    """The FINN-style LFC (784-1024-1024-1024-10, thresholded output layer, from integer
    thresholds) on Verilator at II 4096: the core's bits equal the golden model's on 300 real
    digits. The build goes to the shared cache, where `eie bnn run` on this design finds it."""
    from eie.sim.bnn_run import BnnJob, run_rtl

    _, bits = digits
    image = compile_integer(strip_padding(lfc, REAL), "64:4,32:8,32:8,8:1")
    x = bits[1000:1300]
    job = BnnJob(image, x, preload=True, poll_gap=1024)
    run_rtl("verilator", image.folds, [job])
    assert np.array_equal(job.y, golden_forward(image, x))
    assert job.counters["samples_out"] == 300 and job.counters["ii_min"] == 4096


@pytest.mark.rtl
def test_thresholded_image_through_the_simulated_board(tmp_path, cli):
    """`eie board run --simulate` builds and drives the core the image needs: its bits."""
    from eie.sw.bnn.image import random_image

    rng = np.random.default_rng(12)
    folds = make_folding([40, 12, 6], "8:4,4:2")
    image = random_image(folds, rng, last_thresholded=True)
    write_image(image, tmp_path / "bimg")
    x = rng.integers(0, 2, size=(3, 40)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    r = cli(["board", "run", tmp_path / "bimg", "--input", tmp_path / "x.npy",
             "-o", tmp_path / "y.npy", "--simulate"])
    assert r.code == 0, r.out + r.err
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.uint8 and np.array_equal(y, golden_forward(image, x))


@pytest.mark.slow
@pytest.mark.rtl
def test_bnn_run_2000_digits_at_ii_4096_completes(tmp_path, cli, lfc, digits):
    """Issue 15's long run, as a user types it: the FINN-style LFC compiled from its integer
    thresholds (`--threshold-rule gt --strip-padding`, folding II 4096), then `eie bnn run` of
    2,000 digit images with `--binarize 128` on Verilator: it completes (no poll limit cuts it
    short), its bits equal the golden model's, and its classes are saved. About 8 minutes here
    (the 98 s build included)."""
    pixels, bits = digits
    d = tmp_path
    np.savez(d / "lfc.npz", **{f"W{l}": w for l, w in enumerate(lfc.weights)},
             **{f"T{l}": t for l, t in enumerate(lfc.thresholds)})
    np.save(d / "px.npy", pixels[1000:3000])
    assert cli(["bnn", "compile", d / "lfc.npz", "-o", d / "img", "--threshold-rule", "gt",
                "--strip-padding", "784,1024,1024,1024,10",
                "--fold", "64:4,32:8,32:8,8:1"]).code == 0
    r = cli(["bnn", "run", d / "img", "--input", d / "px.npy", "--binarize", "128",
             "-o", d / "y.npy", "--sim", "verilator", "--classes", "highest-bit",
             "--stats", d / "s.json"])
    assert r.code == 0, r.out + r.err
    y = np.load(d / "y.npy")
    padded_x = np.concatenate([bits[1000:3000], np.zeros((2000, 48), np.uint8)], axis=1)
    assert np.array_equal(y, numpy_forward(lfc.weights, lfc.thresholds, "gt", padded_x)[:, :10])
    assert np.load(d / "y.classes.npy").shape == (2000,)
    stats = json.loads((d / "s.json").read_text())
    assert stats["ii_analytic"] == 4096 and stats["counters"]["ii_min"] == 4096
    assert stats["counters"]["samples_out"] == 2000 and stats["equal_golden"]
    print(f"2,000 digits: build {stats['build_seconds']:.0f} s, simulation "
          f"{stats['sim_seconds']:.0f} s")


# ----------------------------------------------------------------------------- huge thresholds

#: Thresholds far outside any match count, in dtypes whose naive int64 cast wraps or overflows
#: (audit: 1e30 and 1e19 became "always fires", int64 max + 1 overflowed under gt, uint64 max
#: became -1).
HUGE = [np.array(v, dtype=dt) for v, dt in (
    (1e30, np.float64), (-1e30, np.float64), (1e19, np.float64), (-1e19, np.float64),
    (3.0e38, np.float32), (2 ** 63 - 1, np.int64), (-2 ** 63, np.int64), (2 ** 64 - 1, np.uint64),
    (2 ** 63, np.uint64), (127, np.int8), (-128, np.int8), (255, np.uint8), (32767, np.int16),
    (65504, np.float16), (4, np.uint64), (5.0, np.float32), (-3, np.int16), (0, np.uint8))]


def _fires_by_definition(value, rule, k):
    """Whether each match count 0..k fires against ``value`` under ``rule``, in Python's exact
    integers (no NumPy cast)."""
    t = int(value.item()) if value.dtype.kind != "f" else int(float(value.item()))
    return np.array([(m > t) if rule == "gt" else (m >= t) for m in range(k + 1)])


@pytest.mark.parametrize("rule", ["ge", "gt"])
def test_thresholds_of_any_magnitude_and_dtype_clip(rule, tmp_path):
    """Every threshold, of any magnitude and dtype, gives the bit its rule defines at every
    match count (docs/bnn.md: clipped to K + 1, never, or the lower end, always): through
    ge_thresholds, the IntegerBnn, the .npz loader (no RuntimeWarning), save/load, the compiled
    image (its threshold files) and strip_padding."""
    import warnings

    k = 9
    m = np.arange(k + 1)
    for value in HUGE:
        want = _fires_by_definition(value, rule, k)
        g = ge_thresholds(np.full(3, value), rule, k)
        assert g.dtype == np.int64 and np.all((0 <= g) & (g <= k + 1)), (value, g)
        assert np.array_equal(m[:, None] >= g[None, :], np.repeat(want[:, None], 3, 1)), value
        rng = np.random.default_rng(0)
        w0 = rng.choice(np.array([-1, 1], np.int8), (4, k))
        w1 = rng.choice(np.array([-1, 1], np.int8), (3, 4))
        path = tmp_path / "huge.npz"
        np.savez(path, W0=w0, W1=w1, T0=np.full(4, value), rule=rule)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            net = load_integer_npz(path)
            image = compile_integer(net)
            write_image(image, tmp_path / "img")
        back = read_image(tmp_path / "img").thresholds[0]
        assert np.array_equal(m[:, None] >= back[None, :], np.repeat(want[:, None], 4, 1)), value
        save_integer_npz(net, tmp_path / "again.npz")
        again = compile_integer(load_integer_npz(tmp_path / "again.npz"))
        assert np.array_equal(again.thresholds[0], image.thresholds[0]), value
        # the padded network (2 padding inputs of bit 0 against +1 weights: they never match)
        padded = IntegerBnn([np.concatenate([w0, np.ones((4, 2), np.int8)], axis=1), w1],
                            [np.full(4, value), None], rule)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            stripped = strip_padding(padded, [k, 4, 3])
        t = stripped.ge_thresholds()[0]
        assert np.array_equal(m[:, None] >= t[None, :], np.repeat(want[:, None], 4, 1)), value


@pytest.mark.parametrize("rule", ["ge", "gt"])
def test_huge_thresholds_of_a_k_bit_layer_clip(rule):
    """The same on the dot of a layer fed by 2-bit activations (-K*L .. K*L) and on a 2-bit
    layer's three thresholds a neuron."""
    rng = np.random.default_rng(1)
    k, span = 5, 5 * 3
    w = [rng.choice(np.array([-1, 1], np.int8), shape) for shape in ((k, 6), (2, k), (2, 2))]
    acc = np.arange(-span, span + 1)
    for value in HUGE:
        t0 = np.stack([np.full(k, value)] * 3, axis=1)
        net = IntegerBnn(w, [t0, np.full(2, value), None], rule,
                         act_bits=[2, 1, 1])
        net.validate()
        g = net.ge_thresholds()
        t = int(value.item()) if value.dtype.kind != "f" else int(float(value.item()))
        want = acc > t if rule == "gt" else acc >= t
        assert np.all((-span <= g[1]) & (g[1] <= span + 1)), (value, g[1])
        assert np.array_equal(acc[:, None] >= g[1][None, :], np.repeat(want[:, None], 2, 1)), value
        m = np.arange(6 + 1)
        want0 = m > t if rule == "gt" else m >= t
        assert g[0].shape == (k, 3)
        assert np.array_equal(m[:, None] >= g[0][None, :, 0], np.repeat(want0[:, None], k, 1))


def test_threshold_errors_show_plain_values(tmp_path, cli):
    """Bad thresholds are named with plain values (3.5, True; not NumPy reprs), and thresholds
    of a k-bit layer's shape without act_bits say so."""
    rng = np.random.default_rng(3)
    d = tmp_path
    w0 = rng.choice(np.array([-1, 1], np.int8), (5, 9))
    w1 = rng.choice(np.array([-1, 1], np.int8), (3, 5))
    for name, t0, message in (
            ("frac.npz", np.full(5, 3.5), "T0[0] is 3.5 (dtype float64)"),
            ("nan.npz", np.array([1.0, np.nan, 2, 3, 4]), "T0[1] is nan"),
            ("bool.npz", np.ones(5, bool), "T0[0] is True (dtype bool)"),
            ("kbit.npz", np.zeros((5, 3), np.int64), "act_bits")):
        np.savez(d / name, W0=w0, W1=w1, T0=t0, rule="ge")
        r = cli(["bnn", "compile", d / name, "-o", d / "img"])
        _one_line_error(r, message, d, "img")
        assert "np." not in r.err, r.err
    assert "3 thresholds a neuron are a 2-bit (A2) layer" in r.err
