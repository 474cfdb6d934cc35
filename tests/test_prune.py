"""Magnitude pruning: density and quality x std rules, masks for retraining."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from eie.common.errors import EieError
from eie.sw.prune import (
    apply_mask, balanced_counts, column_shares, magnitude_threshold, prune, prune_balanced,
    prune_column_balanced, prune_to_density, std_threshold,
)


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


# ----------------------------------------------------------------------------- load-balance-aware
# (ESE) pruning: row i belongs to PE i % N, every PE keeps the same number of weights


def _reference_balanced(w, density, n_pe, mask=None):
    """Plain per-PE reference, written independently of the library: shares handed out one by
    one round-robin (PE 0 first) to the PEs that still have candidates, then per PE an argsort by
    magnitude (largest first, earlier row-major position first among equals)."""
    w = np.asarray(w)
    cand = w != 0
    if mask is not None:
        cand &= mask
    k = max(1, round(density * w.size))
    caps = [int(cand[p::n_pe].sum()) for p in range(n_pe)]
    counts = [0] * n_pe
    left = min(k, sum(caps))
    while left:
        for p in range(n_pe):
            if left and counts[p] < caps[p]:
                counts[p] += 1
                left -= 1
    keep = np.zeros(w.shape, dtype=bool)
    for p in range(n_pe):
        rows = np.arange(p, w.shape[0], n_pe)
        if rows.size == 0:
            continue
        mags = np.abs(w[rows]).ravel()
        ok = cand[rows].ravel()
        pos = np.arange(mags.size)
        order = np.lexsort((pos, -mags))          # magnitude descending, then position
        order = order[ok[order]][:counts[p]]
        sub = np.zeros(mags.size, dtype=bool)
        sub[order] = True
        keep[rows] = sub.reshape(rows.size, w.shape[1])
    return keep, counts


def _pe_counts(mask, n_pe):
    return [int(mask[p::n_pe].sum()) for p in range(n_pe)]


@pytest.mark.parametrize("n_pe", [1, 4, 16, 64])
@pytest.mark.parametrize("density", [0.01, 0.04, 0.1, 0.5, 0.75])
def test_balanced_equal_counts_and_remainder(n_pe, density):
    # 300 rows: with 16 or 64 PEs the rows do not divide (PEs with fewer rows have less room;
    # up to 0.75 every PE has room for its share: see test_balanced_respects_mask_and_capacity)
    w = _rand((300, 200), seed=4)
    pruned, mask = prune_balanced(w, density, n_pe)
    k = max(1, round(density * w.size))
    base, rem = divmod(k, n_pe)
    # exact: the first k % N PEs hold one more, the others the base count
    assert _pe_counts(mask, n_pe) == [base + (p < rem) for p in range(n_pe)]
    assert int(mask.sum()) == k
    np.testing.assert_array_equal(pruned, w * mask)
    assert pruned.dtype == w.dtype and mask.dtype == bool


@pytest.mark.parametrize("shape,n_pe", [((300, 200), 16), ((37, 11), 5), ((10, 100), 16),
                                        ((1, 50), 3), ((64, 64), 64), ((50, 40), 1)])
@pytest.mark.parametrize("density", [0.03, 0.26, 0.9])
def test_balanced_keeps_largest_per_pe(shape, n_pe, density):
    w = _rand(shape, seed=7)
    _, mask = prune_balanced(w, density, n_pe)
    ref, counts = _reference_balanced(w, density, n_pe)
    np.testing.assert_array_equal(mask, ref)
    assert _pe_counts(mask, n_pe) == counts
    # per PE: every kept magnitude >= every dropped one
    for p in range(n_pe):
        m, a = mask[p::n_pe], np.abs(w[p::n_pe])
        if m.any() and (~m).any():
            assert a[m].min() >= a[~m].max()


def test_balanced_more_pes_than_rows():
    # LeNet's last layer on 16 PEs: 10 rows, PEs 10..15 have nothing; the 10 others share
    w = _rand((10, 100), seed=1)
    _, mask = prune_balanced(w, 0.26, 16)
    assert _pe_counts(mask, 16) == [26] * 10 + [0] * 6


def test_balanced_one_pe_is_plain_pruning():
    w = _rand((120, 90), seed=2)        # continuous values: no ties
    for d in (0.05, 0.3):
        _, plain = prune_to_density(w, d)
        _, bal = prune_balanced(w, d, 1)
        np.testing.assert_array_equal(bal, plain)


def test_balanced_evens_out_a_skewed_layer():
    # PE 0's rows hold much larger weights: plain pruning gives PE 0 most of the kept weights
    w = _rand((64, 128), seed=3)
    w[0::4] *= 5.0
    _, plain = prune_to_density(w, 0.1)
    _, bal = prune_balanced(w, 0.1, 4)
    assert max(_pe_counts(plain, 4)) > 2 * min(_pe_counts(plain, 4))
    k = round(0.1 * w.size)
    assert _pe_counts(bal, 4) == [k // 4 + (p < k % 4) for p in range(4)]


def test_balanced_respects_mask_and_capacity():
    w = _rand((40, 30), seed=5)
    rng = np.random.default_rng(0)
    old = rng.random(w.shape) < 0.6
    old[2::4] = False                   # PE 2 (of 4) keeps only three weights
    old[2, :3] = True
    w = apply_mask(w, old)
    pruned, mask = prune_balanced(w, 0.2, 4, mask=old)
    assert not np.any(mask & ~old)      # a pruned weight stays pruned
    assert np.all(pruned[~old] == 0)
    ref, counts = _reference_balanced(w, 0.2, 4, mask=old)
    np.testing.assert_array_equal(mask, ref)
    k = round(0.2 * w.size)             # 240: PE 2 keeps its 3, the others share 237
    assert _pe_counts(mask, 4) == [79, 79, 3, 79] == counts
    # the mask also excludes weights that are nonzero but were pruned before
    w2 = _rand((40, 30), seed=6)        # dense weights, old mask still applies
    _, m2 = prune_balanced(w2, 0.2, 4, mask=old)
    assert not np.any(m2 & ~old)
    np.testing.assert_array_equal(m2, _reference_balanced(w2, 0.2, 4, mask=old)[0])
    # asking for more than the mask holds keeps exactly what the mask kept (zeros excluded)
    _, m3 = prune_balanced(w, 1.0, 4, mask=old)
    np.testing.assert_array_equal(m3, old & (w != 0))
    # iterative pruning shrinks the mask monotonically and stays balanced
    m = None
    for d in (0.5, 0.25, 0.1):
        _, m_new = prune_balanced(w2, d, 4, mask=m)
        if m is not None:
            assert not np.any(m_new & ~m)
        k = round(d * w2.size)
        assert _pe_counts(m_new, 4) == [k // 4 + (p < k % 4) for p in range(4)]
        m = m_new


def test_balanced_ties_and_zeros():
    w = np.ones((8, 5))
    w[1, 0] = 0.0                       # a zero is never kept, even at density 1
    _, mask = prune_balanced(w, 0.25, 2)    # k = 10: 5 per PE, ties broken by position
    assert _pe_counts(mask, 2) == [5, 5]
    assert mask[0].all() and mask[1, 1:].all() and mask[3, 0]
    assert not mask[1, 0] and mask.sum() == 10
    np.testing.assert_array_equal(mask, _reference_balanced(w, 0.25, 2)[0])
    _, full = prune_balanced(w, 1.0, 3)
    np.testing.assert_array_equal(full, w != 0)
    # an all-zero layer keeps nothing
    _, none = prune_balanced(np.zeros((4, 4)), 0.5, 2)
    assert not none.any()


def test_balanced_does_not_modify_input():
    w = _rand((30, 20), seed=8)
    before = w.copy()
    old = np.ones(w.shape, bool)
    pruned, mask = prune_balanced(w, 0.3, 4, mask=old)
    np.testing.assert_array_equal(w, before)
    assert old.all() and pruned is not w


def test_balanced_counts():
    assert balanced_counts(np.array([100] * 4), 10).tolist() == [3, 3, 2, 2]
    assert balanced_counts(np.array([1, 100, 0, 100]), 10).tolist() == [1, 5, 0, 4]
    assert balanced_counts(np.array([2, 2]), 10).tolist() == [2, 2]
    assert balanced_counts(np.array([5, 5, 5]), 0).tolist() == [0, 0, 0]


def test_balanced_large_matrix_is_fast():
    import time

    w = _rand((4096, 4096), seed=9)
    t0 = time.perf_counter()
    pruned, mask = prune_balanced(w, 0.04, 64)
    took = time.perf_counter() - t0
    k = round(0.04 * w.size)
    assert _pe_counts(mask, 64) == [k // 64 + (p < k % 64) for p in range(64)]
    for p in range(0, 64, 9):
        a, m = np.abs(w[p::64]), mask[p::64]
        assert a[m].min() > a[~m].max()
    # 0.1-0.2 s on the development machine; generous for a loaded CI runner
    assert took < 5.0, took


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), "x"])
def test_balanced_bad_density(bad):
    with pytest.raises(EieError, match=r"outside \(0, 1\]|not a number"):
        prune_balanced(np.ones((4, 4)), bad, 2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4", None])
def test_balanced_bad_n_pe(bad):
    with pytest.raises(EieError, match="number of PEs"):
        prune_balanced(np.ones((4, 4)), 0.5, bad)


def test_balanced_bad_arguments():
    with pytest.raises(EieError, match="2-D"):
        prune_balanced(np.ones(4), 0.5, 2)
    with pytest.raises(EieError, match="mask has shape"):
        prune_balanced(np.ones((2, 2)), 0.5, 2, mask=np.ones((2, 3), bool))
    for v in (np.nan, np.inf):
        w = np.ones((3, 3))
        w[1, 1] = v
        with pytest.raises(EieError, match="NaN or infinite"):
            prune_balanced(w, 0.5, 2)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 25), st.integers(1, 25), st.integers(1, 12), st.floats(0.01, 1.0),
       st.booleans(), st.integers(0, 2**31))
def test_property_balanced_matches_reference(n_out, n_in, n_pe, density, use_mask, seed):
    w = np.round(_rand((n_out, n_in), seed), 1)   # rounding makes ties and zeros
    mask = np.random.default_rng(seed + 1).random(w.shape) < 0.7 if use_mask else None
    pruned, got = prune_balanced(w, density, n_pe, mask=mask)
    ref, counts = _reference_balanced(w, density, n_pe, mask=mask)
    np.testing.assert_array_equal(got, ref)
    assert _pe_counts(got, n_pe) == counts
    np.testing.assert_array_equal(pruned, w * got)
    # a PE that could have kept more holds at most one less than any other PE
    cand = (w != 0) if mask is None else (w != 0) & mask
    room = [c for p, c in enumerate(counts) if c < int(cand[p::n_pe].sum())]
    if room:
        assert max(counts) - min(room) <= 1
    assert sum(counts) == min(max(1, round(density * w.size)), int(cand.sum()))


# ---- column-balanced pruning -----------------------------------------------------------------

def _pe_column_counts(mask, n_pe):
    """(PEs that own rows, n_in): each PE's kept weights in every column."""
    return np.array([mask[p::n_pe].sum(axis=0) for p in range(min(n_pe, mask.shape[0]))])


def test_column_shares_by_hand():
    # ideal 2.6, 1.2, 0.2 of total 4: floors 2, 1, 0; the one left goes to the largest
    # remainder (column 0: 0.6)
    assert column_shares([2.6, 1.2, 0.2], [9, 9, 9], 4).tolist() == [3, 1, 0]
    # a cap moves the share on: column 0 can take 1, the rest follows the remainders
    assert column_shares([2.6, 1.2, 0.2], [1, 9, 9], 4).tolist() == [1, 2, 1]
    # ideal counts are scaled to the total first; ties go to the lower column
    assert column_shares([1, 1, 1, 1], [5, 5, 5, 5], 6).tolist() == [2, 2, 1, 1]
    # never more than the caps allow in all
    assert column_shares([5, 5], [1, 2], 10).tolist() == [1, 2]
    assert column_shares([0, 0], [3, 3], 0).tolist() == [0, 0]


@pytest.mark.parametrize("shape,n_pe", [((1024, 300), 64), ((300, 200), 16), ((37, 11), 5),
                                        ((10, 100), 16), ((64, 64), 64), ((50, 40), 1)])
@pytest.mark.parametrize("density", [0.03, 0.1, 0.26, 0.9])
def test_column_balanced_same_count_per_pe_and_column(shape, n_pe, density):
    w = _rand(shape, seed=11)
    pruned, mask = prune_column_balanced(w, density, n_pe)
    per = _pe_column_counts(mask, n_pe)
    # every PE that owns rows keeps exactly the same number in every column
    assert (per == per[0][None, :]).all()
    n_own = min(n_pe, shape[0])
    k = max(1, round(density * w.size))
    # the total is the per-column shares times the PEs: round(k / PEs) a PE, unless the PE
    # with the fewest rows cannot hold that much in every column
    fewest_rows = shape[0] // n_pe if shape[0] >= n_pe else 1
    assert int(mask.sum()) == n_own * int(per[0].sum())
    assert int(per[0].sum()) == min(max(1, round(k / n_own)), fewest_rows * shape[1])
    np.testing.assert_array_equal(pruned, w * mask)
    # each PE keeps its largest in every column
    a = np.abs(w)
    for p in range(n_own):
        for c in range(shape[1]):
            m, v = mask[p::n_pe, c], a[p::n_pe, c]
            if m.any() and (~m).any():
                assert v[m].min() >= v[~m].max()


def test_column_balanced_follows_plain_column_counts():
    # columns of very different scale: plain pruning keeps many in the loud columns; so does
    # the balanced one (in proportion, per PE)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((256, 8)) * np.array([4, 4, 1, 1, 0.5, 0.5, 0.1, 0.1])
    _, plain = prune_to_density(w, 0.2)
    _, bal = prune_column_balanced(w, 0.2, 16)
    per_plain, per_bal = plain.sum(axis=0) / 16, _pe_column_counts(bal, 16)[0]
    assert np.abs(per_bal - per_plain).max() <= 1.0
    assert int(bal.sum()) == 16 * round(round(0.2 * w.size) / 16)


def test_column_balanced_divisor_pe_counts_are_balanced_too():
    # balanced over 64 PEs is balanced over 32, 16, 8: a PE of 16 owns four PEs' rows of 64
    w = _rand((1024, 200), seed=5)
    _, mask = prune_column_balanced(w, 0.1, 64)
    for n in (32, 16, 8, 1):
        per = _pe_column_counts(mask, n)
        assert (per == per[0][None, :]).all(), n


def test_column_balanced_respects_mask_and_zeros():
    w = np.round(_rand((96, 30), seed=6), 1)       # rounding makes zeros and ties
    old = np.random.default_rng(7).random(w.shape) < 0.6
    pruned, mask = prune_column_balanced(w, 0.2, 8, mask=old)
    assert not (mask & ~old).any()                 # a pruned weight stays pruned
    assert not (mask & (w == 0)).any()             # a zero weight is never kept
    per = _pe_column_counts(mask, 8)
    assert (per == per[0][None, :]).all()
    # iterating keeps the mask shrinking and balanced
    _, m2 = prune_column_balanced(w, 0.1, 8, mask=mask)
    assert not (m2 & ~mask).any()
    per2 = _pe_column_counts(m2, 8)
    assert (per2 == per2[0][None, :]).all()


def test_column_balanced_bad_arguments():
    with pytest.raises(EieError, match="2-D"):
        prune_column_balanced(np.ones(4), 0.5, 2)
    with pytest.raises(EieError, match="mask has shape"):
        prune_column_balanced(np.ones((2, 2)), 0.5, 2, mask=np.ones((2, 3), bool))
    with pytest.raises(EieError, match="number of PEs"):
        prune_column_balanced(np.ones((4, 4)), 0.5, 0)
    with pytest.raises(EieError, match=r"outside \(0, 1\]|not a number"):
        prune_column_balanced(np.ones((4, 4)), 1.5, 2)
    w = np.ones((3, 3))
    w[1, 1] = np.nan
    with pytest.raises(EieError, match="NaN or infinite"):
        prune_column_balanced(w, 0.5, 2)


def test_column_balanced_work_is_equal_on_any_input():
    # what the placement and the EIE see: every PE the same work on every input
    w = _rand((512, 64), seed=8)
    _, mask = prune_column_balanced(w, 0.1, 16)
    x = np.random.default_rng(9).random((50, 64)) < 0.3      # which inputs are nonzero
    work = np.stack([mask[p::16].astype(int) @ x.T.astype(int) for p in range(16)]).sum(axis=1)
    assert (work == work[0][None, :]).all()
