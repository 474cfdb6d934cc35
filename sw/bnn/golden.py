"""The bit-exact golden model of the BNN core: integer XNOR-popcount-threshold, batched.

For each layer with fan-in ``K`` and folded weight bits ``w``:
``matches = popcount(XNOR(x, w))`` over the ``K`` real inputs; a hidden layer outputs
``matches >= T`` per neuron; the last layer outputs ``dot = 2 * matches - K`` as int32.
Folding (SIMD, PE) does not change any result, so the golden model ignores it.
"""

from __future__ import annotations

import numpy as np

from .float_model import check_bits
from .image import BnnImage

__all__ = ["matches", "golden_forward", "golden_layers"]


def matches(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``popcount(XNOR(x, w))`` for bits ``x`` (batch, K) and ``w`` (n_out, K): (batch, n_out)."""
    x = x.astype(np.int64)
    w = w.astype(np.int64)
    return x @ w.T + (1 - x) @ (1 - w).T


def golden_layers(image: BnnImage, x) -> list[np.ndarray]:
    """Every layer's output: bits (uint8) for hidden layers, int32 ``dot`` for the last."""
    a = check_bits(x, image.shape[0])
    outs = []
    n = len(image.weights)
    for l, w in enumerate(image.weights):
        m = matches(a, w)
        if l == n - 1:
            outs.append((2 * m - w.shape[1]).astype(np.int32))
        else:
            a = (m >= image.thresholds[l][None, :]).astype(np.uint8)
            outs.append(a)
    return outs


def golden_forward(image: BnnImage, x) -> np.ndarray:
    """int32 ``dot`` (batch, n_classes) of the last layer."""
    return golden_layers(image, x)[-1]
