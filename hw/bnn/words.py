"""The BNN core's memory words: how a layer's weight bits and thresholds lie in each PE's memories.

This is the hardware's own layout (the image files hold the same words, one a line), so the
compiler's image writer, the core's baked-in initial values and the host program all take it
from here. Plain Python and NumPy: no Amaranth.

- Weights: PE ``p`` of a layer folded ``SIMD:PE`` holds ``nf * sf`` words of ``simd`` bits; word
  ``nf_i * sf + sf_i`` holds neuron ``nf_i * pe + p``'s weights for inputs ``sf_i * simd + b`` at
  bit ``b`` (1 means +1). Padding inputs and padding neurons are 0.
- Thresholds: PE ``p`` holds ``nf`` thresholds; word ``nf_i`` is neuron ``nf_i * pe + p``'s.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from .folding import LayerFold

__all__ = ["BnnWeights", "weight_words", "threshold_words", "image_last_thresholded",
           "resolve_last_thresholded"]


class BnnWeights(Protocol):
    """What the core needs of a compiled network (``eie.sw.bnn.image.BnnImage`` is one): the
    folding, the folded weight bits ``(n_out, n_in)`` per layer and the integer thresholds per
    hidden layer, and for the output layer too when it is thresholded (``thresholds`` then has
    one entry a layer)."""

    folds: list[LayerFold]
    weights: Sequence[np.ndarray]
    thresholds: Sequence[np.ndarray]

    @property
    def shape(self) -> list[int]: ...


def weight_words(fold: LayerFold, w: np.ndarray) -> list[list[int]]:
    """Per PE, the ``nf * sf`` weight words (ints of ``simd`` bits) of bit matrix ``w``."""
    pad = np.zeros((fold.nf * fold.pe, fold.sf * fold.simd), dtype=np.uint8)
    pad[:fold.n_out, :fold.n_in] = w
    # (nf, pe, sf, simd) -> per pe, (nf, sf) words
    blocks = pad.reshape(fold.nf, fold.pe, fold.sf, fold.simd)
    weights = (1 << np.arange(fold.simd, dtype=object))
    out = []
    for p in range(fold.pe):
        words = blocks[:, p].reshape(fold.nf * fold.sf, fold.simd).astype(object) @ weights
        out.append([int(v) for v in words])
    return out


def threshold_words(fold: LayerFold, t: np.ndarray) -> list[list[int]]:
    """Per PE, the ``nf`` thresholds (padding neurons 0)."""
    pad = np.zeros(fold.nf * fold.pe, dtype=np.int64)
    pad[:fold.n_out] = t
    return [[int(v) for v in pad[p::fold.pe]] for p in range(fold.pe)]


def image_last_thresholded(image: BnnWeights) -> bool:
    """Whether ``image``'s output layer has thresholds (one threshold array a layer)."""
    return len(image.thresholds) == len(image.weights)


def resolve_last_thresholded(image: BnnWeights | None, last_thresholded: bool | None) -> bool:
    """The core's ``last_thresholded`` parameter: as given, else the baked image's, else False
    (an output layer of dots); a value that contradicts the image is a ``ValueError``."""
    if image is None:
        return bool(last_thresholded)
    own = image_last_thresholded(image)
    if last_thresholded is not None and bool(last_thresholded) != own:
        raise ValueError(f"last_thresholded={last_thresholded} but the image's output layer "
                         f"{'has' if own else 'has no'} thresholds")
    return own
