"""The golden model against an independent, per-element reading of the contract.

``ref_forward_from_files`` reads an image directory with plain Python (json, int(line, 16)) and
runs the contract's formulas one multiply-accumulate at a time, with Python integers. It shares
no code with ``eie.sw``.
"""

from __future__ import annotations

import json
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from eie.sw.encode import QuantLayer, build_image
from eie.common.errors import EieError
from eie.sw.fixedpoint import choose_w_frac, dequantize, quantize
from eie.sw.golden import golden_forward, golden_forward_layers
from eie.sw.image import write_image


# --------------------------------------------------------------------- the reference

def ref_forward_from_files(d: Path, x: list[int]) -> list[list[int]]:
    man = json.loads((d / "manifest.json").read_text())
    n = man["n_pe"]
    acc_bits = man["acc_bits"]

    def hex_file(name: str) -> list[int]:
        return [int(s, 16) for s in (d / name).read_text().split()]

    ptr = [hex_file(f"pe{k}_ptr.hex") for k in range(n)]
    words = [hex_file(f"pe{k}_spmat.hex") for k in range(n)]
    bias = None
    if any(lj["has_bias"] for lj in man["layers"]):
        bias = [[v - 0x10000 if v >= 0x8000 else v for v in hex_file(f"pe{k}_bias.hex")]
                for k in range(n)]
    a = list(x)
    per_layer = []
    for lj in man["layers"]:
        n_in, n_out, w_frac = lj["n_in"], lj["n_out"], lj["w_frac"]
        cb = lj["codebook"]
        acc = [0] * n_out
        if lj["has_bias"]:
            for i in range(n_out):
                acc[i] = bias[i % n][lj["bias_base"] + i // n] * 2 ** w_frac
        for k in range(n):
            for j in range(n_in):
                p0 = ptr[k][lj["ptr_base"] + j]
                p1 = ptr[k][lj["ptr_base"] + j + 1]
                row = -1
                for e in range(p0, p1):
                    idx = lj["entry_base"] + e
                    byte = (words[k][idx // 8] >> (8 * (idx % 8))) & 0xFF
                    code, z = byte & 0xF, byte >> 4
                    row += z + 1
                    i = k + n * row
                    assert i < n_out
                    acc[i] += a[j] * cb[code]
        y = []
        for v in acc:
            m = v % 2 ** acc_bits                       # acc_bits-wide register
            if m >= 2 ** (acc_bits - 1):
                m -= 2 ** acc_bits
            r = round(Fraction(m, 2 ** w_frac))         # Python rounds ties to even
            r = max(-32768, min(32767, r))
            if lj["relu"]:
                r = max(r, 0)
            y.append(r)
        per_layer.append(y)
        a = y
    return per_layer


def random_layers(rng: np.random.Generator, sizes: list[int], density: float, cb_scale: int,
                  bias_mask: list[bool], relu_mask: list[bool]) -> list[QuantLayer]:
    layers = []
    for l in range(len(sizes) - 1):
        n_in, n_out = sizes[l], sizes[l + 1]
        codes = np.where(rng.random((n_out, n_in)) < density, rng.integers(1, 16, (n_out, n_in)), 0)
        cb = np.concatenate([[0], rng.integers(-cb_scale, cb_scale + 1, 15)])
        bias = rng.integers(-32768, 32768, n_out) if bias_mask[l] else None
        layers.append(QuantLayer(codes=codes.astype(np.uint8), codebook=cb,
                                 w_frac=int(rng.integers(0, 16)), bias=bias, relu=relu_mask[l]))
    return layers


def check_against_reference(layers, n_pe, x, acc_bits=32):
    img = build_image(layers, n_pe, acc_bits=acc_bits)
    res = golden_forward(img, x)
    with tempfile.TemporaryDirectory() as td:
        write_image(img, Path(td) / "img")
        for b in range(x.shape[0]):
            want = ref_forward_from_files(Path(td) / "img", [int(v) for v in x[b]])
            for l, y in enumerate(want):
                assert res.layer_outputs[l][b].tolist() == y, (l, b)
    assert res.outputs.dtype == np.int16
    np.testing.assert_array_equal(res.outputs, res.layer_outputs[-1])
    np.testing.assert_array_equal(golden_forward_layers(layers, x, acc_bits), res.outputs)
    return res


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(1, 24), min_size=2, max_size=4),
    n_pe=st.integers(1, 6),
    density=st.sampled_from([0.02, 0.2, 0.6, 1.0]),
    cb_scale=st.sampled_from([3, 300, 32768 - 1]),
    acc_bits=st.sampled_from([16, 20, 32, 48]),
    flags=st.integers(0, 255),
)
def test_matches_reference(seed, sizes, n_pe, density, cb_scale, acc_bits, flags):
    rng = np.random.default_rng(seed)
    n_layers = len(sizes) - 1
    bias_mask = [bool(flags >> l & 1) for l in range(n_layers)]
    relu_mask = [bool(flags >> (4 + l) & 1) for l in range(n_layers)]
    layers = random_layers(rng, sizes, density, cb_scale, bias_mask, relu_mask)
    x = rng.integers(-32768, 32768, (2, sizes[0])).astype(np.int16)
    x[:, rng.random(sizes[0]) < 0.3] = 0
    check_against_reference(layers, n_pe, x, acc_bits)


def test_matches_reference_long_gaps():
    """Tall sparse layer: zero runs of 15, 16, 31, 32 and more rows in a PE's column."""
    n_out, n_in, n_pe = 150, 6, 2
    codes = np.zeros((n_out, n_in), np.uint8)
    for j, locals_ in enumerate([[15], [16], [0, 32], [31, 63, 74], [], list(range(75))]):
        for r in locals_:
            codes[n_pe * r + j % 2, j] = 1 + (r + j) % 15
    q = QuantLayer(codes=codes, codebook=np.arange(16) * 97 - 300 * (np.arange(16) > 0),
                   w_frac=3, bias=np.arange(n_out) - 75, relu=False)
    x = np.array([[1000, -2000, 3000, -4000, 5000, -6000], [0, 7, 0, -7, 0, 32767]], np.int16)
    res = check_against_reference([q], n_pe, x)
    assert res.stats[0].padding_per_pe.sum() > 0


# --------------------------------------------------------------------- hand-derived cases

def one_weight_layer(weight_code_value: int, w_frac: int, n_in: int = 1, relu=False, bias=None,
                     n_out: int = 1) -> QuantLayer:
    cb = np.zeros(16, dtype=np.int64)
    cb[1] = weight_code_value
    return QuantLayer(codes=np.ones((n_out, n_in), np.uint8), codebook=cb, w_frac=w_frac,
                      bias=bias, relu=relu)


def run(layers, x, n_pe=1, acc_bits=32):
    img = build_image(layers, n_pe, acc_bits=acc_bits)
    return golden_forward(img, np.asarray(x, dtype=np.int16)).outputs


def test_rounding_ties_to_even_both_signs():
    # weight 1 with w_frac 1 is 0.5: y = round(a / 2)
    q = one_weight_layer(1, 1)
    xs = [[1], [3], [5], [7], [-1], [-3], [-5], [-7], [2], [-2]]
    #      0.5  1.5  2.5  3.5  -0.5  -1.5  -2.5  -3.5   1    -1
    assert run([q], xs)[:, 0].tolist() == [0, 2, 2, 4, 0, -2, -2, -4, 1, -1]
    # w_frac 2, weight 1: a / 4; 6/4 = 1.5 -> 2, 10/4 = 2.5 -> 2, 9/4 -> 2, 11/4 -> 3
    q = one_weight_layer(1, 2)
    assert run([q], [[6], [10], [9], [11], [-6], [-10], [-9], [-11]])[:, 0].tolist() == \
        [2, 2, 2, 3, -2, -2, -2, -3]


def test_saturation_both_ends():
    q = one_weight_layer(2, 0)                       # y = 2a, saturating
    assert run([q], [[20000], [-20000], [16383], [-16384]])[:, 0].tolist() == \
        [32767, -32768, 32766, -32768]
    q = one_weight_layer(-32768, 0)
    assert run([q], [[-32768], [1]])[:, 0].tolist() == [32767, -32768]


def test_accumulator_wraps():
    # 4 inputs of 10000 with weight 1: acc = 40000. 16-bit: 40000 - 65536 = -25536.
    q = one_weight_layer(1, 0, n_in=4)
    x = [[10000, 10000, 10000, 10000]]
    assert run([q], x, acc_bits=16)[0, 0] == -25536
    assert run([q], x, acc_bits=17)[0, 0] == 32767   # fits 17 bits, then saturates to int16
    # wrap back into range: 7 * 10000 = 70000 -> 70000 - 65536 = 4464 with 16 bits
    q7 = one_weight_layer(1, 0, n_in=7)
    assert run([q7], [[10000] * 7], acc_bits=16)[0, 0] == 4464
    # the wrap happens before the shift: acc = 3 * 16384 * 2 = 98304, which as a signed 17-bit
    # value is 98304 - 131072 = -32768; / 2**1 -> -16384
    q3 = one_weight_layer(2, 1, n_in=3)
    assert run([q3], [[16384] * 3], acc_bits=17)[0, 0] == -16384


def test_bias_and_relu():
    # acc = (bias << w_frac) + a * w; w_frac = 4, weight 16 = 1.0
    q = one_weight_layer(16, 4, bias=np.array([-100], np.int16))
    assert run([q], [[30], [130], [100]])[:, 0].tolist() == [-70, 30, 0]
    q = one_weight_layer(16, 4, bias=np.array([-100], np.int16), relu=True)
    assert run([q], [[30], [130]])[:, 0].tolist() == [0, 30]
    # bias shifted by a large w_frac: 1 << 30 = 2**30 in a 32-bit acc, / 2**30 = 1
    q = one_weight_layer(0, 30, bias=np.array([1], np.int16))
    assert run([q], [[5]])[0, 0] == 1
    # ... and 2 << 30 wraps to -2**31 in 32 bits
    q = one_weight_layer(0, 30, bias=np.array([2], np.int16))
    assert run([q], [[5]])[0, 0] == -2
    assert run([q], [[5]], acc_bits=33)[0, 0] == 2


def test_interleaving_and_stats():
    # 4 outputs on 2 PEs; hand-computed y = W @ x
    cb = np.array([0, 1, 2, 3, -1] + [0] * 11)
    codes = np.array([[1, 0, 2], [0, 3, 0], [4, 4, 0], [0, 0, 0]], np.uint8)
    q = QuantLayer(codes=codes, codebook=cb, w_frac=0, relu=False)
    x = np.array([[5, 7, 11], [0, 7, 0], [0, 0, 0]], np.int16)
    res = golden_forward(build_image([q], 2), x)
    # W = [[1,0,2],[0,3,0],[-1,-1,0],[0,0,0]]
    assert res.outputs.tolist() == [[27, 21, -12, 0], [0, 21, -7, 0], [0, 0, 0, 0]]
    s = res.stats[0]
    # PE 0 rows 0, 2: col0 2 entries, col1 1 entry, col2 1 entry; PE 1 rows 1, 3: col1 1 entry
    assert s.entries_per_pe.tolist() == [4, 1]
    assert s.padding_per_pe.tolist() == [0, 0]
    assert s.nonzero_inputs.tolist() == [3, 1, 0]
    assert s.work_per_pe.tolist() == [[4, 1], [1, 1], [0, 0]]
    assert s.work_entries.tolist() == [5, 2, 0]
    assert s.bound.tolist() == [3, 1, 0]        # max(3, ceil(5/2)), max(1, 1), 0


def test_bound_counts_padding():
    # one PE, column 0 has one nonzero after 40 zero rows: 2 padding entries + 1
    codes = np.zeros((41, 2), np.uint8)
    codes[40, 0] = 1
    q = QuantLayer(codes=codes, codebook=np.arange(16), w_frac=0, relu=False)
    res = golden_forward(build_image([q], 1), np.array([[3, 0], [0, 3]], np.int16))
    s = res.stats[0]
    assert s.padding_per_pe.tolist() == [2]
    assert s.work_entries.tolist() == [3, 0]
    assert s.bound.tolist() == [3, 1]
    assert res.outputs[0, 40] == 3


def test_vector_input_is_batch_of_one():
    q = one_weight_layer(3, 0, n_in=2, n_out=2)
    res = golden_forward(build_image([q], 2), np.array([1, 2], np.int16))
    assert res.outputs.shape == (1, 2) and res.outputs.tolist() == [[9, 9]]


@pytest.mark.parametrize("x,match", [
    (np.zeros((1, 3), np.int16), r"shape \(1, 3\) but the first layer takes 2 inputs "
                                 r"\(expected \(batch, 2\)\)"),
    (np.zeros((1, 2), np.float32), "dtype float32"),
    (np.array([[40000, 0]]), "int16"),
    (np.zeros((1, 1, 2), np.int16), "shape"),
])
def test_input_errors(x, match):
    q = one_weight_layer(3, 0, n_in=2)
    with pytest.raises(EieError, match=match):
        golden_forward(build_image([q], 1), x)
    with pytest.raises(EieError, match=match):
        golden_forward_layers([q], x)


def test_decodes_from_image():
    """The golden model reads the entries: corrupting a word changes the output."""
    q = one_weight_layer(5, 0, n_in=1, n_out=1)
    img = build_image([q], 1)
    assert golden_forward(img, np.array([[2]], np.int16)).outputs[0, 0] == 10
    img.spmat[0][0] = np.uint64(0x03)                # code 3 (weight 0) instead of code 1
    assert golden_forward(img, np.array([[2]], np.int16)).outputs[0, 0] == 0


# --------------------------------------------------------------------- against floating point

@pytest.mark.parametrize("seed", range(4))
def test_close_to_float_forward(seed):
    rng = np.random.default_rng(seed)
    act_frac = 8
    n_in, n_out, n_pe = 40, 33, 4
    w_float = rng.normal(0, 0.2, (n_out, n_in)) * (rng.random((n_out, n_in)) < 0.3)
    centroids = np.sort(rng.normal(0, 0.2, 15))
    w_frac = choose_w_frac(centroids)
    cb_q = np.concatenate([[0], quantize(centroids, w_frac).astype(np.int64)])
    # nearest centroid for each nonzero
    codes = np.where(w_float != 0,
                     1 + np.argmin(np.abs(w_float[..., None] - centroids), axis=-1), 0)
    bias_f = rng.normal(0, 0.5, n_out)
    q = QuantLayer(codes=codes.astype(np.uint8), codebook=cb_q, w_frac=w_frac,
                   bias=quantize(bias_f, act_frac), relu=False)
    x_f = rng.normal(0, 1, (8, n_in))
    x_q = quantize(x_f, act_frac)
    y_q = golden_forward(build_image([q], n_pe, act_frac=act_frac), x_q).outputs
    y = dequantize(y_q, act_frac)
    # 1) exact up to the final rounding against the dequantised weights, inputs and bias
    w_deq = dequantize(cb_q, w_frac)[codes]
    y_exact = dequantize(x_q, act_frac) @ w_deq.T + dequantize(q.bias, act_frac)
    assert np.all(np.abs(y - y_exact) <= 2.0 ** -(act_frac + 1))
    # 2) against the float model of the shared weights, within the quantisation error bound
    w_shared = np.where(codes > 0, centroids[np.maximum(codes, 1) - 1], 0.0)
    y_float = x_f @ w_shared.T + bias_f
    bound = (2.0 ** -(act_frac + 1)                                  # output rounding
             + 2.0 ** -(act_frac + 1)                                # bias rounding
             + 2.0 ** -(w_frac + 1) * np.abs(x_f) @ (codes > 0).T    # weight rounding
             + 2.0 ** -(act_frac + 1) * (np.abs(w_deq).sum(axis=1)))  # input rounding
    assert np.all(np.abs(y - y_float) <= bound + 1e-12)
    assert np.abs(y - y_float).max() < 0.05


def test_golden_forward_layers_relu_chain():
    rng = np.random.default_rng(7)
    layers = random_layers(rng, [9, 8, 7], 0.5, 200, [True, True], [True, False])
    x = rng.integers(-1000, 1000, (5, 9)).astype(np.int16)
    y = golden_forward_layers(layers, x)
    # hand-rolled numpy chain with Python-int writeback
    a = x.astype(object)
    for q in layers:
        acc = a.dot(q.weights().astype(object).T) + np.array(
            [int(b) << q.w_frac for b in q.bias], dtype=object)
        out = np.vectorize(lambda v: max(-32768, min(32767, round(Fraction(
            (v + 2**31) % 2**32 - 2**31, 2 ** q.w_frac)))))(acc)
        a = np.maximum(out, 0) if q.relu else out
    assert y.tolist() == a.tolist()
    assert np.all(golden_forward_layers(layers[:1], x) >= 0)


def test_documented_example():
    """docs/image-format.md: x = [1.0, 2.0, -1.0] gives [257, 0, 3, 1020, 5, 122] (by hand)."""
    codes = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 0], [3, 0, 4], [0, 0, 0], [0, 5, 0]], np.uint8)
    cb = np.array([0, 64, -32, 128, -128, 16] + [0] * 10)
    q = QuantLayer(codes, cb, 6, np.array([1, -2, 3, -4, 5, -6]), True)
    assert run([q], [[256, 512, -256]], n_pe=2)[0].tolist() == [257, 0, 3, 1020, 5, 122]
