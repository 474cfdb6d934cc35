"""Magnitude pruning: density and quality x std rules, masks for retraining."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from eie.common.errors import EieError
from eie.sw.prune import apply_mask, magnitude_threshold, prune, prune_to_density, std_threshold


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("density", [0.01, 0.04, 0.1, 0.5, 1.0])
def test_density_keeps_largest(density):
    w = _rand((300, 200))
    r = prune(w, density=density)
    k = max(1, round(density * w.size))
    # Continuous random values have no ties: exactly k kept, and they are the k largest.
    assert r.kept == k
    order = np.sort(np.abs(w).ravel())[::-1]
    assert np.abs(w[r.mask]).min() == order[k - 1]
    if k < w.size:
        assert np.abs(w[~r.mask]).max() == order[k]


def test_large_matrix_uses_band_and_matches_full_sort():
    # > 2**20 elements takes the sampled-band path of the threshold search.
    w = _rand((1100, 1000), seed=3)
    for d in (0.001, 0.04, 0.2):
        t = magnitude_threshold(w, d)
        k = round(d * w.size)
        assert t == np.sort(np.abs(w).ravel())[-k]


def test_ties_all_kept_and_zeros_never():
    w = np.array([[0.0, 1.0, -1.0, 1.0], [0.5, 0.0, 2.0, 0.0]])
    r = prune(w, density=0.25)  # k = 2: 2.0 and the three tied 1.0s
    assert r.threshold == 1.0
    assert r.mask.tolist() == [[False, True, True, True], [False, False, True, False]]
    full = prune(w, density=1.0)
    assert full.mask.tolist() == (w != 0).tolist()


def test_std_rule():
    w = _rand((400, 300), seed=1).astype(np.float64)
    r = prune(w, std_quality=1.5)
    t = 1.5 * w.std()
    assert r.threshold == pytest.approx(t, rel=1e-12)
    assert np.array_equal(r.mask, np.abs(w) >= r.threshold)
    # Gaussian: about 13.4% of weights lie beyond 1.5 sigma.
    assert 0.12 < r.density < 0.15
    assert std_threshold(np.zeros((2, 2)), 2.0) == 0.0


def test_mask_is_monotone_for_retraining():
    w = _rand((200, 150), seed=2)
    m1 = prune(w, density=0.5).mask
    # Training moves weights; pruned ones must stay pruned and the count follows the density.
    w2 = w + 0.3 * _rand(w.shape, seed=5)
    w2 = apply_mask(w2, m1)
    r2 = prune(w2, density=0.2, mask=m1)
    assert not np.any(r2.mask & ~m1)
    assert r2.kept == round(0.2 * w.size)
    # Asking for more than the mask keeps: everything the mask kept stays.
    r3 = prune(w2, density=0.9, mask=r2.mask)
    assert np.array_equal(r3.mask, r2.mask & (w2 != 0))
    t, m = prune_to_density(w2, 0.2, m1)
    assert t == r2.threshold and np.array_equal(m, r2.mask)


def test_apply_mask_in_place():
    w = _rand((5, 7))
    m = np.abs(w) > 0.5
    out = apply_mask(w, m, out=w)
    assert out is w
    assert np.all(w[~m] == 0) and np.all(w[m] != 0)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), float("inf")])
def test_bad_density(bad):
    with pytest.raises(EieError, match=r"outside \(0, 1\]"):
        prune(np.ones((2, 2)), density=bad)


def test_bad_arguments():
    with pytest.raises(EieError, match="exactly one"):
        prune(np.ones((2, 2)))
    with pytest.raises(EieError, match="exactly one"):
        prune(np.ones((2, 2)), density=0.5, std_quality=1.0)
    with pytest.raises(EieError, match="quality"):
        prune(np.ones((2, 2)), std_quality=-1.0)
    with pytest.raises(EieError, match="2-D"):
        prune(np.ones(4), density=0.5)
    with pytest.raises(EieError, match="mask has shape"):
        prune(np.ones((2, 2)), density=0.5, mask=np.ones((2, 3), bool))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.floats(0.01, 1.0), st.integers(0, 2**31))
def test_property_threshold_is_kth_magnitude(n_out, n_in, density, seed):
    w = np.round(_rand((n_out, n_in), seed), 1)  # rounding makes ties and zeros
    r = prune(w, density=density)
    k = max(1, round(density * w.size))
    mags = np.sort(np.abs(w).ravel())[::-1]
    nz = np.count_nonzero(w)
    if k <= nz:
        assert r.threshold == mags[k - 1]
    assert r.kept == np.count_nonzero((np.abs(w) >= r.threshold) & (w != 0))
    assert r.kept >= min(k, nz)
