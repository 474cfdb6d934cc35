"""Encoding to the contract's sparse format: the worked example, gaps, round trips, words, bases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from eie.sw.encode import QuantLayer, build_image, encode_layer
from eie.sw.sram import (PADDING_BYTE, decode_layer, encode_column_entries, pack_words,
                         unpack_words)
from eie.common.errors import EieError

CODEBOOK = np.array([0] + [(-1) ** i * 37 * i for i in range(1, 16)], dtype=np.int16)


def layer_of(codes, **kw) -> QuantLayer:
    return QuantLayer(codes=np.asarray(codes, dtype=np.uint8), codebook=CODEBOOK,
                      w_frac=kw.pop("w_frac", 8), **kw)


def ref_decode_column(codes, zs) -> dict[int, int]:
    """Walk entries the way the hardware does: row advances by z + 1 each entry."""
    row, out = -1, {}
    for c, z in zip(codes, zs):
        row += int(z) + 1
        if c:
            out[row] = int(c)
    return out


# --------------------------------------------------------------------- the contract's example

def test_contract_worked_example():
    column = [0, 0, 1, 2] + [0] * 18 + [3]
    rows = [i for i, v in enumerate(column) if v]
    codes, zs = encode_column_entries(rows, [column[r] for r in rows])
    assert codes.tolist() == [1, 2, 0, 3]
    assert zs.tolist() == [2, 0, 15, 2]


@pytest.mark.parametrize("gap,n_pad,last_z", [
    (0, 0, 0), (1, 0, 1), (15, 0, 15), (16, 1, 0), (17, 1, 1), (31, 1, 15), (32, 2, 0),
    (33, 2, 1), (47, 2, 15), (48, 3, 0), (100, 6, 4),
])
def test_gap_lengths(gap, n_pad, last_z):
    # one nonzero after `gap` zero rows (from row 0)
    codes, zs = encode_column_entries([gap], [7])
    assert codes.tolist() == [0] * n_pad + [7]
    assert zs.tolist() == [15] * n_pad + [last_z]
    assert ref_decode_column(codes, zs) == {gap: 7}
    # and between two nonzeros
    codes, zs = encode_column_entries([3, 3 + gap + 1], [5, 9])
    assert codes.tolist() == [5] + [0] * n_pad + [9]
    assert zs.tolist() == [3] + [15] * n_pad + [last_z]


def test_empty_and_full_columns():
    codes, zs = encode_column_entries([], [])
    assert codes.size == 0 and zs.size == 0
    full = list(range(40))
    codes, zs = encode_column_entries(full, [1 + r % 15 for r in full])
    assert codes.tolist() == [1 + r % 15 for r in full] and zs.tolist() == [0] * 40


def test_column_entry_errors():
    with pytest.raises(ValueError):
        encode_column_entries([3, 2], [1, 1])
    with pytest.raises(ValueError):
        encode_column_entries([1], [0])
    with pytest.raises(ValueError):
        encode_column_entries([1], [16])


# --------------------------------------------------------------------- layer round trips

def sparse_codes(draw_shape=st.tuples(st.integers(1, 70), st.integers(1, 12))):
    """Code matrices with long zero runs: a few nonzeros placed anywhere."""
    @st.composite
    def strat(draw):
        n_out, n_in = draw(draw_shape)
        density = draw(st.sampled_from([0.0, 0.01, 0.05, 0.3, 1.0]))
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        codes = np.where(rng.random((n_out, n_in)) < density,
                         rng.integers(1, 16, (n_out, n_in)), 0)
        return codes.astype(np.uint8)
    return strat()


@settings(max_examples=150, deadline=None)
@given(sparse_codes(st.tuples(st.integers(1, 300), st.integers(1, 6))) | sparse_codes(),
       st.integers(1, 9))
def test_layer_round_trip(codes, n_pe):
    layer = layer_of(codes)
    enc = encode_layer(layer, n_pe)
    assert len(enc) == n_pe
    got = decode_layer([e.entries for e in enc], [e.pointers for e in enc],
                       layer.n_in, layer.n_out, n_pe)
    np.testing.assert_array_equal(got, codes)
    for k, e in enumerate(enc):
        assert e.pointers.dtype == np.uint32 and e.pointers[0] == 0
        assert e.pointers[-1] == e.entries.size
        assert e.n_padding == int(np.count_nonzero(e.entries == PADDING_BYTE))
        # each column equals the one-column reference encoder (independent of the vectoriser)
        sub = codes[k::n_pe]
        for j in range(layer.n_in):
            rows = np.flatnonzero(sub[:, j])
            c, z = encode_column_entries(rows, sub[rows, j])
            col = e.entries[e.pointers[j]:e.pointers[j + 1]]
            assert col.tolist() == ((z.astype(int) << 4) | c).tolist()


def test_long_gaps_in_layer():
    # N = 2: PE 0 owns even rows. Put nonzeros at local rows 0, 16, 32+16+1 (gaps 15, 32)
    n_out = 2 * 60
    codes = np.zeros((n_out, 3), dtype=np.uint8)
    for local, c in ((0, 1), (16, 2), (49, 3)):
        codes[2 * local, 1] = c
    codes[2 * 59 + 1, 2] = 15                        # PE 1, last local row: gap 59
    enc = encode_layer(layer_of(codes), 2)
    e0 = enc[0]
    # gap 15 (rows 1..15) needs no padding; gap 32 (rows 17..48) needs two
    assert e0.pointers.tolist() == [0, 0, 5, 5]
    assert [(b & 15, b >> 4) for b in e0.entries.tolist()] == [(1, 0), (2, 15), (0, 15), (0, 15),
                                                               (3, 0)]
    e1 = enc[1]
    assert e1.pointers.tolist() == [0, 0, 0, 4]
    assert [(b & 15, b >> 4) for b in e1.entries.tolist()] == [(0, 15)] * 3 + [(15, 11)]


def test_more_pes_than_rows():
    codes = np.array([[1, 0, 2]], dtype=np.uint8)
    enc = encode_layer(layer_of(codes), 4)
    assert [e.entries.size for e in enc] == [2, 0, 0, 0]
    np.testing.assert_array_equal(
        decode_layer([e.entries for e in enc], [e.pointers for e in enc], 3, 1, 4), codes)


def test_decode_rejects_bad_input():
    codes = np.zeros((4, 2), dtype=np.uint8)
    codes[1, 0] = 3
    enc = encode_layer(layer_of(codes), 1)
    ent, ptr = enc[0].entries, enc[0].pointers
    with pytest.raises(EieError, match="local row 4"):
        decode_layer([np.array([0x43], np.uint8)], [np.array([0, 1, 1])], 2, 4, 1)
    with pytest.raises(EieError, match="first pointer"):
        decode_layer([ent], [np.array([1, 1, 1])], 2, 4, 1)
    with pytest.raises(EieError, match="decrease"):
        decode_layer([ent], [np.array([0, 1, 0])], 2, 4, 1)
    with pytest.raises(EieError, match="only 1 entries"):
        decode_layer([ent], [np.array([0, 1, 2])], 2, 4, 1)
    with pytest.raises(EieError, match="pointers"):
        decode_layer([ent], [ptr[:-1]], 2, 4, 1)


# --------------------------------------------------------------------- QuantLayer validation

@pytest.mark.parametrize("kw,match", [
    (dict(codes=np.full((2, 2), 16)), "0..15"),
    (dict(codes=np.zeros(3)), "2-D"),
    (dict(codes=np.zeros((2, 2)) + 0.5), "integers"),
    (dict(codebook=np.arange(1, 17)), r"codebook\[0\]"),
    (dict(codebook=np.zeros(15, dtype=int)), "16 integers"),
    (dict(codebook=np.array([0] + [40000] * 15)), "int16"),
    (dict(w_frac=31), "w_frac"),
    (dict(w_frac=-1), "w_frac"),
    (dict(bias=np.zeros(3, dtype=int)), "bias"),
    (dict(bias=np.full(2, 1 << 15)), "int16"),
])
def test_quantlayer_validation(kw, match):
    args = dict(codes=np.zeros((2, 2), dtype=np.uint8), codebook=CODEBOOK, w_frac=8, bias=None,
                relu=True)
    args.update(kw)
    with pytest.raises(EieError, match=match):
        QuantLayer(**args)


def test_quantlayer_properties():
    q = layer_of([[0, 1, 2], [3, 0, 0]])
    assert (q.n_out, q.n_in, q.nonzeros) == (2, 3, 3)
    assert q.weights().tolist() == [[0, int(CODEBOOK[1]), int(CODEBOOK[2])],
                                    [int(CODEBOOK[3]), 0, 0]]
    assert q.weights().dtype == np.int64


# --------------------------------------------------------------------- words

def test_pack_words_bit_positions():
    words = pack_words(np.arange(1, 11, dtype=np.uint8))
    assert words.dtype == np.uint64 and words.size == 2
    assert int(words[0]) == sum((e + 1) << (8 * e) for e in range(8))
    assert int(words[1]) == 9 | (10 << 8)           # zero-padded
    assert pack_words(np.zeros(0, np.uint8)).size == 0
    assert int(pack_words(np.array([0xF0] * 8, np.uint8))[0]) == 0xF0F0F0F0F0F0F0F0


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.uint8, st.integers(0, 50)))
def test_pack_unpack_round_trip(entries):
    words = pack_words(entries)
    assert words.size == -(-entries.size // 8)
    np.testing.assert_array_equal(unpack_words(words, entries.size), entries)
    for e, b in enumerate(entries.tolist()):       # the contract's bit positions, plain Python
        assert (int(words[e // 8]) >> (8 * (e % 8))) & 0xFF == b


def test_unpack_too_many():
    with pytest.raises(ValueError):
        unpack_words(np.zeros(1, np.uint64), 9)


# --------------------------------------------------------------------- build_image bases

def test_bases_and_straddling_columns():
    rng = np.random.default_rng(3)
    c0 = np.where(rng.random((13, 7)) < 0.5, rng.integers(1, 16, (13, 7)), 0)
    c1 = np.where(rng.random((5, 13)) < 0.7, rng.integers(1, 16, (5, 13)), 0)
    c2 = np.where(rng.random((9, 5)) < 0.9, rng.integers(1, 16, (9, 5)), 0)
    layers = [layer_of(c0, bias=np.arange(13, dtype=np.int16)), layer_of(c1, relu=False),
              layer_of(c2, bias=-np.arange(9, dtype=np.int16))]
    n_pe = 3
    img = build_image(layers, n_pe)
    enc = [encode_layer(q, n_pe) for q in layers]
    assert [d.ptr_base for d in img.layers] == [0, 8, 8 + 14]
    e0 = max(e.n_entries for e in enc[0])
    e1 = -(-e0 // 8) * 8 + max(e.n_entries for e in enc[1])
    assert [d.entry_base for d in img.layers] == [0, -(-e0 // 8) * 8, -(-e1 // 8) * 8]
    assert all(d.entry_base % 8 == 0 for d in img.layers)
    assert [d.bias_base for d in img.layers] == [0, 5, 5]
    assert [d.has_bias for d in img.layers] == [True, False, True]
    assert all(b.size == 5 + 3 for b in img.bias)
    # some column must straddle a word boundary for this test to mean something
    straddles = any(p[j] // 8 != (p[j + 1] - 1) // 8 for es in enc for e in es
                    for p in [e.pointers.astype(int)] for j in range(p.size - 1) if p[j + 1] > p[j])
    assert straddles
    for l, q in enumerate(layers):
        np.testing.assert_array_equal(img.layer_codes(l), q.codes)
        for k in range(n_pe):
            np.testing.assert_array_equal(img.layer_entries(l, k), enc[l][k].entries)
            np.testing.assert_array_equal(img.layer_pointers(l, k), enc[l][k].pointers)
    np.testing.assert_array_equal(img.layer_bias(0), layers[0].bias)
    assert img.layer_bias(1) is None
    np.testing.assert_array_equal(img.layer_bias(2), layers[2].bias)
    # layer 0 (13 outputs, 5 slots): PE 0 owns 0,3,6,9,12; PEs 1 and 2 own 4 rows each
    assert img.bias[0][:5].tolist() == [0, 3, 6, 9, 12]
    assert img.bias[1][:5].tolist() == [1, 4, 7, 10, 0]      # unused slot is 0
    assert img.bias[2][:5].tolist() == [2, 5, 8, 11, 0]
    # layer 2 (9 outputs, 3 slots from bias_base 5): PE 1 owns 1, 4, 7
    assert img.bias[1][5:].tolist() == [-1, -4, -7]


def test_build_image_checks():
    q = layer_of(np.ones((40, 10)))
    with pytest.raises(EieError, match="layer 1 takes 10 inputs but layer 0 gives 40 outputs"):
        build_image([q, q], 2)
    with pytest.raises(EieError, match=r"layer 0 needs 200 sparse-matrix entries in PE 0 but the "
                                       r"SRAM holds 192 \(24 words; raise --spmat-depth or add PEs\)"):
        build_image([q], 2, spmat_depth=24)
    build_image([q], 2, spmat_depth=25)
    with pytest.raises(EieError, match="pointer SRAM holds 10"):
        build_image([q], 2, ptr_depth=10)
    with pytest.raises(EieError, match=r"activation SRAM holds 19 per PE \(raise --act-depth"):
        build_image([q], 2, act_depth=19)
    qb = layer_of(np.ones((40, 10)), bias=np.ones(40, dtype=np.int16))
    with pytest.raises(EieError, match="bias SRAM holds 19"):
        build_image([qb], 2, bias_depth=19)
    with pytest.raises(EieError, match="number of PEs"):
        build_image([q], 0)
    with pytest.raises(EieError, match="acc_bits"):
        build_image([q], 1, acc_bits=8)
    with pytest.raises(EieError, match="at least one layer"):
        build_image([], 1)


def test_second_layer_capacity_message():
    q0 = layer_of(np.ones((16, 8)))                 # 16 entries per column, 1 PE -> 128 entries
    q1 = layer_of(np.ones((4, 16)))                 # 64 entries
    build_image([q0, q1], 1, spmat_depth=24)
    with pytest.raises(EieError, match=r"layer 1 needs 192 sparse-matrix entries in PE 0 "
                                       r"\(its own 64 from entry 128\)"):
        build_image([q0, q1], 1, spmat_depth=23)


def test_empty_layers_and_exact_word_boundaries():
    q0 = layer_of(np.ones((16, 8)))                  # 1 PE: 128 entries = exactly 16 words
    qz = layer_of(np.zeros((5, 16)))                 # all-zero layer: no entries
    q2 = layer_of(np.eye(3, 5))                      # 3 entries
    img = build_image([q0, qz, q2], 1)
    assert [d.entry_base for d in img.layers] == [0, 128, 128]
    assert img.spmat_words == 17
    np.testing.assert_array_equal(img.layer_codes(1), np.zeros((5, 16)))
    np.testing.assert_array_equal(img.layer_codes(2), q2.codes)
    only_zero = build_image([qz], 3)
    assert only_zero.spmat_words == 0 and only_zero.layers[0].stats["entries"] == 0
