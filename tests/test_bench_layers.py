"""Synthetic Table III layers: shapes, densities, determinism, and equality with the dense
Deep Compression pipeline (prune -> k-means share -> quantise) they shortcut."""

import numpy as np
import pytest

from eie.app.bench_layers import (TABLE3, LayerSpec, gaussian_weights, layer_seeds,
                                 parse_layer_spec, parse_layers, scale_spec, synth_input,
                                 synth_layer, synth_weights)
from eie.sw.compress import compress_layer
from eie.common.errors import EieError


def test_table3_layers_as_published():
    names = [s.name for s in TABLE3]
    assert names == ["Alex-6", "Alex-7", "Alex-8", "VGG-6", "VGG-7", "VGG-8",
                     "NT-We", "NT-Wd", "NT-LSTM"]
    ratios = {s.name: s.eie_actual_us / s.eie_theoretical_us for s in TABLE3}
    # The issue text: EIE's actual/theoretical ratio runs from 1.04 (Alex-7) to 1.54 (NT-We).
    assert min(ratios, key=ratios.get) == "Alex-7" and round(ratios["Alex-7"], 2) == 1.04
    assert max(ratios, key=ratios.get) == "NT-We" and round(ratios["NT-We"], 2) == 1.54
    vgg6 = parse_layer_spec("vgg-6")
    assert (vgg6.n_in, vgg6.n_out, vgg6.weight_density, vgg6.act_density) == \
        (25088, 4096, 0.04, 0.183)
    assert vgg6.eie_actual_cycles == pytest.approx(34.4 * 800)


@pytest.mark.parametrize("text", ["tiny:300x200:0.1:0.5", "d:40x30:1.0:1.0:signed",
                                  "s:250x70:0.02:0.05:norelu"])
def test_sparse_path_equals_dense_compress(text):
    spec = parse_layer_spec(text)
    for seed in (0, 7):
        q = synth_weights(spec, seed)
        ref = compress_layer(gaussian_weights(spec, seed), density=spec.weight_density,
                             relu=spec.relu).quant
        np.testing.assert_array_equal(q.codes, ref.codes)
        np.testing.assert_array_equal(q.codebook, ref.codebook)
        assert q.w_frac == ref.w_frac and q.relu == spec.relu and q.bias is None


@pytest.mark.parametrize("spec", [scale_spec(s, 0.05) for s in TABLE3], ids=lambda s: s.name)
def test_shapes_and_densities(spec):
    L = synth_layer(spec, seed=3)
    assert L.quant.codes.shape == (spec.n_out, spec.n_in)
    assert L.x.shape == (spec.n_in,) and L.x.dtype == np.int16
    n = spec.n_in * spec.n_out
    # round(d * n) weights kept (ties at the threshold could add a few: allow 0.5%)
    assert abs(L.quant.nonzeros - round(spec.weight_density * n)) <= max(1, 0.005 * n * spec.weight_density)
    assert np.count_nonzero(L.x) == max(1, round(spec.act_density * spec.n_in))
    nz = L.x[L.x != 0].astype(np.int64)
    if spec.signed_input:
        assert (nz < 0).any() and (nz > 0).any()
    else:
        assert (nz > 0).all()
    used = np.unique(L.quant.codes)
    assert used[0] == 0 and used.max() <= 15 and L.quant.codebook[0] == 0
    assert np.all(L.quant.codebook[used[1:]] != 0)      # every used code is a learned centroid


def test_deterministic_by_seed_and_independent_of_selection():
    spec = scale_spec(TABLE3[0], 0.04)
    a, b, c = synth_layer(spec, 5), synth_layer(spec, 5), synth_layer(spec, 6)
    np.testing.assert_array_equal(a.quant.codes, b.quant.codes)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.quant.codes, c.quant.codes)
    assert not np.array_equal(a.x, c.x)
    # a layer's data depends on its name and the seed only
    other = LayerSpec("other", spec.n_in, spec.n_out, spec.weight_density, spec.act_density)
    assert not np.array_equal(synth_input(other, 5), a.x)
    w1, x1 = layer_seeds("Alex-6", 5)
    w2, x2 = layer_seeds("Alex-6", 5)
    assert w1.generate_state(2).tolist() == w2.generate_state(2).tolist()
    assert w1.generate_state(2).tolist() != x1.generate_state(2).tolist()


def test_full_size_nt_we():
    spec = parse_layer_spec("NT-We")
    L = synth_layer(spec, 0)
    assert L.quant.codes.shape == (600, 4096)
    assert L.quant.nonzeros == round(0.10 * 600 * 4096)
    assert np.count_nonzero(L.x) == 4096


def test_parse_and_scale():
    s = parse_layer_spec("t1:64x32:0.25:0.5:2.0:1.5:signed:norelu")
    assert (s.n_in, s.n_out, s.weight_density, s.act_density) == (64, 32, 0.25, 0.5)
    assert s.eie_actual_us == 2.0 and s.eie_theoretical_us == 1.5 and s.signed_input and not s.relu
    assert s.eie_actual_cycles == 1600.0 and s.eie_theoretical_cycles == 1200.0
    assert [x.name for x in parse_layers(["Alex-6,nt-we", "t:8x8:1:1"])] == ["Alex-6", "NT-We", "t"]
    assert len(parse_layers(None)) == 9 and len(parse_layers("all")) == 9
    small = scale_spec(TABLE3[3], 0.01)
    assert (small.n_in, small.n_out) == (251, 41) and not small.has_eie
    assert scale_spec(TABLE3[3], 1.0) is TABLE3[3]


@pytest.mark.parametrize("bad", ["nope", "t:0x5:0.1:0.1", "t:5x5:0:0.1", "t:5x5:0.1:1.5",
                                 "t:5x5:0.1:0.1:-1:2", "t:5x5:0.1:0.1:weird", "t:5x5:a:0.1"])
def test_bad_layer_specs(bad):
    with pytest.raises(EieError):
        parse_layer_spec(bad)


def test_bad_scale_and_duplicates():
    for scale in (0, -0.5, 1.5):
        with pytest.raises(EieError, match="scale"):
            scale_spec(TABLE3[0], scale)
    with pytest.raises(EieError, match="twice"):
        parse_layers("Alex-6,alex-6")
    with pytest.raises(EieError, match="seed"):
        layer_seeds("a", -1)
