"""Fixed-point helpers against Python's exact integer / Fraction arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from eie.common.errors import EieError
from eie.sw.fixedpoint import (choose_w_frac, dequantize, quantize, round_half_even_shift,
                               saturate, wrap, writeback)


def ref_round_half_even(n: int, shift: int) -> int:
    """round(n / 2**shift), ties to even, via Fractions (Python's round is half-even)."""
    return round(Fraction(n, 1 << shift))


def ref_wrap(n: int, bits: int) -> int:
    m = n % (1 << bits)
    return m - (1 << bits) if m >= (1 << (bits - 1)) else m


@pytest.mark.parametrize("x,shift,want", [
    (5, 1, 2), (7, 1, 4), (-5, 1, -2), (-7, 1, -4),      # x.5 ties to even, both signs
    (-1, 1, 0), (1, 1, 0), (3, 1, 2), (-3, 1, -2),
    (6, 2, 2), (-6, 2, -2), (10, 2, 2), (-10, 2, -2),    # 1.5 -> 2, 2.5 -> 2
    (11, 2, 3), (-11, 2, -3), (9, 2, 2), (-9, 2, -2),    # not ties
    (123, 0, 123), (-123, 0, -123),
])
def test_round_half_even_table(x, shift, want):
    assert int(round_half_even_shift(np.array([x]), shift)[0]) == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(1 << 50), 1 << 50), min_size=1, max_size=20), st.integers(0, 40))
def test_round_half_even_matches_fraction(xs, shift):
    got = round_half_even_shift(np.array(xs, dtype=np.int64), shift)
    assert got.tolist() == [ref_round_half_even(x, shift) for x in xs]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(1 << 62), (1 << 62)), min_size=1, max_size=20), st.integers(1, 63))
def test_wrap_matches_modulo(xs, bits):
    got = wrap(np.array(xs, dtype=np.int64), bits)
    assert got.tolist() == [ref_wrap(x, bits) for x in xs]


def test_wrap_edges():
    assert wrap(np.array([32768, -32769, 65535, 32767]), 16).tolist() == [-32768, 32767, -1, 32767]
    assert wrap(np.array([1 << 31]), 32).tolist() == [-(1 << 31)]


def test_saturate_both_ends():
    x = np.array([-40000, -32769, -32768, 0, 32767, 32768, 10**12])
    assert saturate(x).tolist() == [-32768, -32768, -32768, 0, 32767, 32767, 32767]
    assert saturate(np.array([-200, 200]), 8).tolist() == [-128, 127]


def test_writeback_contract():
    # acc / 2**4: 8/16 = 0.5 -> 0, 24/16 = 1.5 -> 2, -8/16 -> 0, -24/16 -> -2
    acc = np.array([8, 24, -8, -24, 40, -40, (1 << 30), -(1 << 30)])
    got = writeback(acc, 4, relu=False)
    assert got.dtype == np.int16
    assert got.tolist() == [0, 2, 0, -2, 2, -2, 32767, -32768]
    assert writeback(acc, 4, relu=True).tolist() == [0, 2, 0, 0, 2, 0, 32767, 0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=10), st.integers(0, 30),
       st.booleans())
def test_writeback_matches_reference(accs, w_frac, relu):
    want = []
    for a in accs:
        y = max(-32768, min(32767, ref_round_half_even(a, w_frac)))
        want.append(max(y, 0) if relu else y)
    assert writeback(np.array(accs, dtype=np.int64), w_frac, relu).tolist() == want


def test_quantize_ties_saturation_and_roundtrip():
    # 0.5 * 2 = 1.0 exactly; 0.25 * 2 = 0.5 -> 0; 0.75 * 2 = 1.5 -> 2; -0.75 * 2 -> -2
    assert quantize(np.array([0.5, 0.25, 0.75, -0.25, -0.75]), 1).tolist() == [1, 0, 2, 0, -2]
    q = quantize(np.array([1e9, -1e9, 127.99]), 8)
    assert q.dtype == np.int16 and q.tolist() == [32767, -32768, 32765]
    x = np.linspace(-10, 10, 101)
    assert np.all(np.abs(dequantize(quantize(x, 8), 8) - x) <= 2 ** -9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_rejects_non_finite(bad):
    with pytest.raises(EieError, match="non-finite"):
        quantize(np.array([0.0, bad]), 8)
    with pytest.raises(EieError):
        choose_w_frac(np.array([1.0, bad]))


def test_choose_w_frac():
    assert choose_w_frac(np.array([0.0])) == 30
    assert choose_w_frac(np.array([])) == 30
    assert choose_w_frac(np.array([1.0])) == 14          # 1 * 2**14 = 16384 fits, 2**15 does not
    assert choose_w_frac(np.array([-1.0])) == 15         # -32768 fits
    assert choose_w_frac(np.array([1e6])) == 0           # nothing fits: clamp to 0
    assert choose_w_frac(np.array([3e-6])) == 30


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=16))
def test_choose_w_frac_is_largest(vals):
    v = np.array(vals)
    f = choose_w_frac(v)

    def fits(fr):
        return all(-32768 <= round(Fraction(x) * (Fraction(2) ** fr)) <= 32767 for x in vals)

    if f > 0 or fits(0):
        assert fits(f)
    if f < 30:
        assert not fits(f + 1)
