"""The compression pipeline: prune -> share -> fixed point -> image, and its storage accounting."""

import numpy as np
import pytest

from eie.sw.compress import CompressConfig, compress_layer, compress_model, storage_report
from eie.common.errors import EieError
from eie.sw.golden import golden_forward
from eie.sw.model_io import FloatLayer
from eie.sw.prune import prune
from eie.sw.share import share


def _layers(sizes=(50, 40, 30, 10), seed=0, bias=True):
    rng = np.random.default_rng(seed)
    return [FloatLayer(weight=(rng.standard_normal((o, i)) * np.sqrt(2 / i)).astype(np.float32),
                       bias=(0.1 * rng.standard_normal(o)).astype(np.float32) if bias else None,
                       relu=l < len(sizes) - 2)
            for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]


def test_compress_layer_matches_its_stages():
    layer = _layers()[0]
    lc = compress_layer(layer.weight, layer.bias, True, density=0.2)
    mask = prune(layer.weight, density=0.2).mask
    sh = share(layer.weight, mask)
    assert np.array_equal(lc.quant.codes, sh.codes)
    k = sh.centroids.size
    f = lc.quant.w_frac
    # Codebook: round-half-even of centroid * 2**w_frac, entry 0 zero, unused entries zero.
    expect = [0] + [int(np.rint(c * 2.0 ** f)) for c in sh.centroids] + [0] * (15 - k)
    assert lc.quant.codebook.tolist() == expect
    # w_frac is the most precision that fits int16 and a 32-bit accumulator's limit (15): one
    # more bit would overflow some entry, or pass the limit.
    assert max(abs(v) for v in expect) <= 32767
    assert f == 15 or max(abs(np.rint(c * 2.0 ** (f + 1))) for c in sh.centroids) > 32767 \
        or min(np.rint(c * 2.0 ** (f + 1)) for c in sh.centroids) < -32768
    assert lc.quant.bias.tolist() == [int(np.rint(b * 256)) for b in layer.bias.astype(np.float64)]
    assert lc.info["kept_weights"] == int(mask.sum()) and lc.info["centroids"] == k
    assert lc.info["codebook_max_error"] <= 2.0 ** -(f + 1)


def test_bias_saturation_counted():
    w = np.ones((3, 2), np.float32)
    lc = compress_layer(w, np.array([200.0, -200.0, 1.0]), False, act_frac=8)
    assert lc.quant.bias.tolist() == [32767, -32768, 256]
    assert lc.info["bias_saturated"] == 2


def test_prune_rules_in_model():
    layers = _layers()
    per = compress_model(layers, CompressConfig(n_pe=4, density=[0.5, 0.25, 1.0]))
    kept = [d.stats["compression"]["kept_weights"] for d in per.image.layers]
    assert kept == [round(0.5 * 2000), round(0.25 * 1200), 300]
    std = compress_model(layers, CompressConfig(n_pe=4, prune_std=1.0))
    for d, layer in zip(std.image.layers, layers):
        w = layer.weight.astype(np.float64)
        assert d.stats["compression"]["kept_weights"] == int(np.sum(np.abs(w) >= w.std()))
    # Neither rule: every nonzero weight is kept (a model pruned before).
    pre = [FloatLayer(np.where(np.abs(l.weight) > 0.3, l.weight, 0), l.bias, l.relu) for l in layers]
    none = compress_model(pre, CompressConfig(n_pe=2))
    for d, layer in zip(none.image.layers, pre):
        assert d.stats["compression"]["kept_weights"] == int(np.count_nonzero(layer.weight))
        assert d.stats["compression"]["prune_rule"] == "nonzero"


def test_golden_tracks_float_model():
    # The fixed-point image computes the shared float model up to rounding: compare the golden
    # model with a float64 forward pass of the dequantised codebooks and biases.
    layers = _layers(seed=4)
    res = compress_model(layers, CompressConfig(n_pe=3, density=0.3))
    x = np.random.default_rng(1).uniform(-2, 2, (16, 50))
    xq = np.rint(x * 256).astype(np.int16)
    y = golden_forward(res.image, xq).outputs.astype(np.float64) / 256
    h = xq / 256.0
    for lc, layer in zip(res.layers, layers):
        q = lc.quant
        w = q.codebook.astype(np.float64)[q.codes] / 2.0 ** q.w_frac
        h = h @ w.T + q.bias / 256.0
        h = np.maximum(h, 0) if q.relu else h
    assert np.abs(y - h).max() < 8 / 256
    # And the float shared model, before fixed point, within the quantisation error.
    ff = x
    for lc, layer in zip(res.layers, layers):
        book = np.concatenate([[0.0], lc.centroids])
        ff = ff @ book[lc.quant.codes].T + layer.bias
        ff = np.maximum(ff, 0) if layer.relu else ff
    assert np.abs(y - ff).max() < 0.1


def test_storage_report_by_hand():
    # PE 0: codes [1, 2, 0(pad), 3] with z [2, 0, 15, 2]; PE 1: code 1, z 0.
    pe0 = np.array([0x21, 0x02, 0xF0, 0x23], np.uint8)
    pe1 = np.array([0x01], np.uint8)
    s = storage_report(n_in=2, n_out=46, n_pe=2, entries_per_pe=[pe0, pe1])
    assert s["entries"] == 5
    assert s["code_bits"] == 20 and s["index_bits"] == 20
    assert s["pointer_bits_each"] == 3 and s["pointer_bits"] == 2 * 3 * 3
    assert s["total_bits"] == 20 + 20 + 18 + 256
    # Optimal codes: code counts {1: 2, 0: 1, 2: 1, 3: 1} -> 10 bits; z counts {2: 2, 0: 2,
    # 15: 1} -> 8 bits; two tables of 16 x 4 bits.
    assert s["huffman_code_bits"] == 10 and s["huffman_index_bits"] == 8
    assert s["total_bits_huffman"] == 10 + 8 + 128 + 18 + 256
    assert s["dense_bits"] == 46 * 2 * 32
    assert s["ratio"] == pytest.approx(2944 / 314)
    assert s["ratio_huffman"] == pytest.approx(2944 / 420)


def test_totals_and_lenet_shape():
    # LeNet-300-100 shaped, Deep Compression's per-layer densities.
    rng = np.random.default_rng(0)
    sizes = (784, 300, 100, 10)
    layers = [FloatLayer(rng.standard_normal((o, i)).astype(np.float32), None, l < 2)
              for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    res = compress_model(layers, CompressConfig(n_pe=1, density=[0.08, 0.09, 0.26]))
    t = res.totals
    assert t["weights"] == 784 * 300 + 300 * 100 + 100 * 10
    assert t["dense_bits"] == 32 * t["weights"]
    assert t["total_bits"] == sum(d.stats["storage"]["total_bits"] for d in res.image.layers)
    assert t["nonzeros"] == sum(int(np.count_nonzero(lc.quant.codes)) for lc in res.layers)
    assert 0.08 < t["density"] < 0.09
    # One PE is plain CSC: 8% kept at 8 bits an entry plus padding and pointers. Deep Compression
    # reports 32x without and 40x with Huffman coding for LeNet-300-100 (6-bit weights, trained).
    expect = 8 * t["entries"] + 3 * 256 + sum(
        (d.n_in + 1) * max(1, int(d.stats["storage"]["entries"]).bit_length())
        for d in res.image.layers)
    assert t["total_bits"] == expect
    assert 25 < t["ratio"] < 45 and t["ratio_huffman"] > t["ratio"]
    # Interleaving over 64 PEs costs 64 pointer arrays: the ratio drops.
    wide = compress_model(layers, CompressConfig(n_pe=64, density=[0.08, 0.09, 0.26]))
    assert wide.totals["pointer_bits"] > 10 * t["pointer_bits"]
    assert wide.totals["ratio"] < t["ratio"]


def test_config_errors():
    with pytest.raises(EieError, match="at most one of --density and --prune-std"):
        CompressConfig(n_pe=2, density=0.5, prune_std=1.0)
    with pytest.raises(EieError, match="PEs 0"):
        CompressConfig(n_pe=0)
    with pytest.raises(EieError, match="outside 1..15"):
        CompressConfig(n_pe=1, n_centroids=16)
    with pytest.raises(EieError, match="act_frac 16"):
        CompressConfig(n_pe=1, act_frac=16)
    with pytest.raises(EieError, match="acc_bits 8"):
        CompressConfig(n_pe=1, acc_bits=8)
    with pytest.raises(EieError, match="prune quality -1"):
        CompressConfig(n_pe=1, prune_std=-1.0)
    with pytest.raises(EieError, match="has no layers"):
        compress_model([], CompressConfig(n_pe=1))


def test_weight_shift_leaves_the_accumulator_room_for_twice_the_output_range():
    # small weights used to take the most fraction bits int16 allows (|w| < 0.06: w_frac 18),
    # and a 32-bit accumulator then wrapped outputs from +-32 on (a sum of 38.7 came out as
    # -24.95); now w_frac <= acc_bits - 17, so every output whose exact value lies within twice
    # the int16 range is right: within the int16 range as the float layer gives it (to the
    # weights' quantisation), beyond it saturated
    from eie.sw.fixedpoint import acc_w_frac_limit, choose_w_frac

    assert [acc_w_frac_limit(b) for b in (16, 17, 24, 32, 40, 47, 48, 64)] == \
        [0, 0, 7, 15, 23, 30, 30, 30]
    rng = np.random.default_rng(5)
    w = np.abs(rng.normal(0, 0.02, (16, 64)))
    b = np.full(16, 0.5)
    for acc_bits in (32, 40):
        res = compress_model([FloatLayer(w, b, False)], CompressConfig(n_pe=2, acc_bits=acc_bits))
        q = res.layers[0].quant
        free = choose_w_frac(res.layers[0].centroids)    # what int16 alone allows: 18
        assert free == 18 and q.w_frac == min(free, acc_w_frac_limit(acc_bits))
        deq = q.codebook[q.codes].astype(np.float64) / 2.0 ** q.w_frac      # the stored weights
        for level in (40.0, 80.0, 110.0):       # exact outputs about 38, 77, 106 ... up to 250
            x = np.full((1, 64), level)
            xq = np.rint(x * 256) / 256
            exact = deq @ xq[0] + np.rint(b * 256) / 256
            assert np.abs(exact).max() < 256
            y = golden_forward(res.image, np.rint(x * 256).astype(np.int16)).outputs[0] / 256
            want = np.clip(exact, -128, 32767 / 256)
            assert np.abs(y - want).max() <= 1 / 256, (acc_bits, level, y, want)


def test_a_layer_without_weights_outputs_its_bias():
    # no weight kept (all zero, or pruned away): the outputs are the biases (bias << w_frac used
    # to wrap away with w_frac 30)
    b = np.array([1.0, -2.0, 0.5, 3.0])
    res = compress_model([FloatLayer(np.zeros((4, 3)), b, False)], CompressConfig(n_pe=2))
    y = golden_forward(res.image, np.full((1, 3), 256, np.int16)).outputs[0]
    assert y.tolist() == (b * 256).astype(int).tolist()
