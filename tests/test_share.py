"""Weight sharing: 1-D k-means against a plain Lloyd loop, determinism, zero, fine-tuning."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from eie.common.errors import EieError
from eie.sw.prune import prune
from eie.sw.share import (
    MAX_CENTROIDS, assign_codes, centroid_gradients, cluster_gradients, fine_tune_centroids,
    kmeans_1d, reconstruct, share,
)


def _pruned(shape=(120, 90), density=0.1, seed=0):
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return w, prune(w, density=density).mask


def _lloyd_reference(values, centroids, iters):
    """Textbook Lloyd: assign each value to its nearest centroid (ties to the upper one), move
    every non-empty centroid to the mean of its values. Plain loops."""
    c = [float(x) for x in centroids]
    vals = [float(v) for v in values]
    for _ in range(iters):
        groups = [[] for _ in c]
        for v in vals:
            best = 0
            for i in range(1, len(c)):
                if abs(v - c[i]) <= abs(v - c[best]):
                    best = i
            groups[best].append(v)
        c = [sum(g) / len(g) if g else c[i] for i, g in enumerate(groups)]
    return c, [len(g) for g in groups]


def test_kmeans_matches_plain_lloyd():
    rng = np.random.default_rng(4)
    vals = np.concatenate([rng.normal(-1, 0.2, 200), rng.normal(0.7, 0.3, 300)])
    k = 6
    init = np.linspace(vals.min(), vals.max(), k)
    for iters in (1, 3, 10):
        c, b, it = kmeans_1d(vals, k, max_iter=iters, tol=0.0)
        assert it == iters
        ref, counts = _lloyd_reference(vals, init, iters)
        ref_nonempty = [x for x, n in zip(ref, counts) if n]
        np.testing.assert_allclose(c, ref_nonempty, rtol=0, atol=1e-12)


def test_share_properties():
    w, mask = _pruned()
    s = share(w, mask)
    assert 1 <= s.centroids.size <= MAX_CENTROIDS
    assert np.all(np.diff(s.centroids) > 0), "centroids sorted and distinct"
    assert s.codes.dtype == np.uint8 and s.codes.shape == w.shape
    # Zero stays zero: pruned weights have code 0, kept weights a code 1..k.
    assert np.all(s.codes[~mask] == 0)
    assert np.all(s.codes[mask] >= 1) and s.codes.max() <= s.centroids.size
    # Every code in use, and each weight sits with its nearest centroid.
    assert set(np.unique(s.codes[mask]).tolist()) == set(range(1, s.centroids.size + 1))
    dist = np.abs(w[mask][:, None].astype(np.float64) - s.centroids[None, :])
    assert np.all(dist[np.arange(dist.shape[0]), s.codes[mask] - 1] <= dist.min(axis=1) + 1e-12)
    # Each centroid is (at convergence) the mean of its cluster.
    for c in range(1, s.centroids.size + 1):
        assert s.centroids[c - 1] == pytest.approx(float(np.mean(w[s.codes == c], dtype=np.float64)),
                                                   abs=1e-6)
    recon = s.weights()
    assert np.all(recon[~mask] == 0)
    # Lloyd never increases the distortion: better than the linear initial centroids.
    v = w[mask].astype(np.float64)
    init = np.linspace(v.min(), v.max(), MAX_CENTROIDS)
    init_err = np.sum(np.min((v[:, None] - init[None, :]) ** 2, axis=1))
    assert np.sum((recon[mask] - v) ** 2) < init_err


def test_share_deterministic_and_inits():
    w, mask = _pruned(seed=7)
    a, b = share(w, mask), share(w.copy(), mask.copy())
    assert np.array_equal(a.centroids, b.centroids) and np.array_equal(a.codes, b.codes)
    for init in ("linear", "density", "random"):
        x, y = share(w, mask, init=init, seed=3), share(w, mask, init=init, seed=3)
        assert np.array_equal(x.centroids, y.centroids) and np.array_equal(x.codes, y.codes)
        assert np.all(np.diff(x.centroids) > 0)
    # Linear init reaches the extremes better than density init (Deep Compression's argument).
    lin, den = share(w, mask, init="linear"), share(w, mask, init="density")
    assert abs(lin.centroids[-1]) >= abs(den.centroids[-1]) - 1e-9


def test_few_distinct_values_and_mask_none():
    w = np.array([[0.0, 0.5, 0.5, -2.0], [0.5, 0.0, -2.0, 3.0]], dtype=np.float32)
    s = share(w)  # no mask: every nonzero is kept
    assert s.centroids.tolist() == [-2.0, 0.5, 3.0]
    assert np.array_equal(s.weights(), w)
    s1 = share(w, n_centroids=1)
    assert s1.centroids.size == 1 and s1.centroids[0] == pytest.approx(w[w != 0].mean())
    empty = share(np.zeros((3, 3)))
    assert empty.centroids.size == 0 and not empty.codes.any()


def test_assign_codes_agrees_with_share():
    w, mask = _pruned(seed=11)
    s = share(w, mask)
    bounds = (s.centroids[:-1] + s.centroids[1:]) / 2
    assert np.array_equal(assign_codes(w, mask, bounds), s.codes)


def test_fine_tune_sums_cluster_gradients():
    codes = np.array([[0, 1, 2], [2, 1, 0], [3, 3, 3]], dtype=np.uint8)
    grads = np.arange(9, dtype=np.float64).reshape(3, 3)
    # Sums by hand: code 1 -> 1 + 4, code 2 -> 2 + 3, code 3 -> 6 + 7 + 8.
    assert cluster_gradients(codes, grads, 3).tolist() == [5.0, 5.0, 21.0]
    assert centroid_gradients(grads, codes, 4).tolist() == [0.0 + 5.0, 5.0, 5.0, 21.0]
    c = np.array([-1.0, 0.5, 2.0])
    new = fine_tune_centroids(c, codes, grads, lr=0.1)
    np.testing.assert_allclose(new, [-1.5, 0.0, -0.1])
    assert np.array_equal(reconstruct(new, codes)[codes == 0], [0.0, 0.0])
    with pytest.raises(EieError, match="shape"):
        cluster_gradients(codes, grads[:2], 3)


def test_fine_tune_lowers_reconstruction_loss():
    # Gradient of 0.5 * ||W_shared - W||^2 w.r.t. W_shared is (W_shared - W): one step of
    # centroid fine-tuning with a small lr lowers the loss.
    w, mask = _pruned(seed=5)
    s = share(w, mask, max_iter=1)  # not converged, room to improve
    loss = lambda c: 0.5 * np.sum((reconstruct(c, s.codes) - w * mask) ** 2)
    grads = reconstruct(s.centroids, s.codes) - w * mask
    new = fine_tune_centroids(s.centroids, s.codes, grads, lr=1e-3)
    assert loss(new) < loss(s.centroids)


def test_bad_inputs():
    with pytest.raises(EieError, match="outside 1..15"):
        share(np.ones((2, 2)), n_centroids=16)
    with pytest.raises(EieError, match="NaN"):
        share(np.array([[1.0, np.nan]]))
    with pytest.raises(EieError, match="init"):
        share(np.ones((2, 2)), init="kmeans++")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 15), st.integers(0, 2**31))
def test_property_sorted_zero_nearest(n_out, n_in, k, seed):
    rng = np.random.default_rng(seed)
    w = np.round(rng.standard_normal((n_out, n_in)), 2)
    s = share(w, n_centroids=k)
    assert s.centroids.size <= k
    assert np.all(np.diff(s.centroids) > 0)
    assert np.all((s.codes == 0) == (w == 0))
    if s.centroids.size:
        v = w[w != 0]
        d = np.abs(v[:, None] - s.centroids[None, :])
        assert np.all(d[np.arange(v.size), s.codes[w != 0] - 1] <= d.min(axis=1) + 1e-12)


def test_already_shared_model_is_reproduced_exactly():
    # 15 distinct values, bunched unevenly: linear-initialised Lloyd would merge some of them;
    # an already weight-shared (fine-tuned) layer must keep its exact codebook.
    book = np.array([-1.0, -0.99, -0.98, -0.5, -0.1, 0.1, 0.11, 0.12, 0.13, 0.5, 0.51, 0.9, 1.5,
                     2.0, 2.01])
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 16, (30, 40))
    w = np.concatenate([[0.0], book])[codes]
    s = share(w)
    assert s.centroids.tolist() == sorted(set(w[w != 0].tolist()))
    assert np.array_equal(s.weights(), w)
    assert s.iterations == 0
