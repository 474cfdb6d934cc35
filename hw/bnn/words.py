"""The BNN core's memory words: how a layer's weight bits and thresholds lie in each PE's memories.

This is the hardware's own layout (the image files hold the same words, one a line), so the
compiler's image writer, the core's baked-in initial values and the host program all take it
from here. Plain Python and NumPy: no Amaranth.

- Weights: PE ``p`` of a layer folded ``SIMD:PE`` holds ``nf * sf`` words of ``simd`` bits; word
  ``nf_i * sf + sf_i`` holds neuron ``nf_i * pe + p``'s weights for inputs ``sf_i * simd + b`` at
  bit ``b`` (1 means +1). Padding inputs and padding neurons are 0.
- Thresholds: PE ``p`` holds ``nf`` thresholds; word ``nf_i`` is neuron ``nf_i * pe + p``'s.
- Masks (ternary, W2 layers only): PE ``p`` holds ``nf * sf`` words laid out as the weights; bit
  1 means the weight is nonzero (the weight word then holds its sign). A W2 output layer of dots
  holds each neuron's nonzero count ``K'`` (:func:`nonzero_counts`) where thresholds would be.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from .folding import LayerFold

__all__ = ["BnnWeights", "any_ternary", "weight_words", "threshold_words", "image_last_thresholded",
           "resolve_last_thresholded", "WEIGHT_BITS", "image_weight_bits", "resolve_weight_bits",
           "nonzero_counts", "weight_bits_text", "threshold_fields", "act_bits_text",
           "resolve_act_bits"]

#: The weight precisions a layer may have: 1 (binary, +-1) and 2 (ternary, -1/0/+1).
WEIGHT_BITS = (1, 2)


class BnnWeights(Protocol):
    """What the core needs of a compiled network (``eie.sw.bnn.image.BnnImage`` is one): the
    folding, the folded weight bits ``(n_out, n_in)`` per layer and the integer thresholds per
    hidden layer, and for the output layer too when it is thresholded (``thresholds`` then has
    one entry a layer). Optionally ``masks``: per layer ``None`` (W1) or the nonzero-mask bits
    ``(n_out, n_in)`` of a ternary (W2) layer, whose ``weights`` are then the sign bits."""

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
    """Per PE, the ``nf`` thresholds (padding neurons 0). A layer with k-bit inputs stores its
    thresholds (on the signed dot) biased by ``fold.threshold_bias``; a layer with k-bit outputs
    has ``fold.n_thresholds`` a neuron, ``t`` of shape ``(n_out, n_thresholds)``, packed into
    one word, threshold ``j`` at bits ``[w*(j+1)-1 : w*j]`` (``w = fold.threshold_width``)."""
    t = np.asarray(t, dtype=np.int64)
    if fold.in_bits == 1 and fold.out_bits == 1:
        pad = np.zeros(fold.nf * fold.pe, dtype=np.int64)
        pad[:fold.n_out] = t
        return [[int(v) for v in pad[p::fold.pe]] for p in range(fold.pe)]
    t = t.reshape(fold.n_out, fold.n_thresholds) + fold.threshold_bias
    pad = np.zeros((fold.nf * fold.pe, fold.n_thresholds), dtype=object)
    pad[:fold.n_out] = t.astype(object)
    shifts = np.array([1 << (fold.threshold_width * j) for j in range(fold.n_thresholds)],
                      dtype=object)
    words = pad @ shifts
    return [[int(v) for v in words[p::fold.pe]] for p in range(fold.pe)]


def threshold_fields(fold: LayerFold, word: int) -> list[int]:
    """The stored (biased) thresholds of one threshold word, ``fold.n_thresholds`` of them."""
    w = fold.threshold_width
    return [(word >> (w * j)) & ((1 << w) - 1) for j in range(fold.n_thresholds)]


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


def image_weight_bits(image: BnnWeights) -> list[int]:
    """Per layer 1 (binary) or 2 (ternary: the image has a mask for it)."""
    masks = getattr(image, "masks", None) or [None] * len(image.weights)
    return [1 if m is None else 2 for m in masks]


def resolve_weight_bits(n_layers: int, image: BnnWeights | None,
                        weight_bits: Sequence[int] | None) -> tuple[int, ...]:
    """The core's per-layer weight precision: as given, else the baked image's, else all 1; a
    value that is not 1 or 2, a wrong length or one that contradicts the image is a
    ``ValueError``."""
    own = None if image is None else tuple(image_weight_bits(image))
    if weight_bits is None:
        return own if own is not None else (1,) * n_layers
    bits = tuple(int(b) for b in weight_bits)
    if len(bits) != n_layers:
        raise ValueError(f"weight_bits {list(bits)} has {len(bits)} entries for {n_layers} layers")
    bad = [b for b in bits if b not in WEIGHT_BITS]
    if bad:
        raise ValueError(f"weight_bits {list(bits)}: {bad[0]} is not a weight precision "
                         f"(1: binary, 2: ternary)")
    if own is not None and own != bits:
        raise ValueError(f"weight_bits {list(bits)} but the image's layers have {list(own)}")
    return bits


def any_ternary(bits: Sequence[int] | None) -> bool:
    """Whether any layer of these weight precisions is ternary (W2): then the core has mask
    memories (and its own CONFIG_CRC)."""
    return any(b == 2 for b in (bits or ()))


def weight_bits_text(bits: Sequence[int]) -> str:
    """``"W1,W2,..."``: how docs, errors and the CLI name the precisions."""
    return ",".join(f"W{b}" for b in bits)


def nonzero_counts(mask: np.ndarray) -> np.ndarray:
    """Per neuron, ``K' = popcount(mask)``: the nonzero weights of a ternary layer's neurons
    (int64 ``(n_out,)``); a W2 output layer's dot is ``2 * matches - K'``."""
    return np.asarray(mask, dtype=np.int64).sum(axis=1)


def act_bits_text(bits: Sequence[int]) -> str:
    """``"A1,A2,..."``: how docs, errors and the CLI name the activation precisions."""
    return ",".join(f"A{b}" for b in bits)


def resolve_act_bits(folds: Sequence[LayerFold], image: BnnWeights | None,
                     act_bits: Sequence[int] | None) -> list[LayerFold]:
    """The core's folds with their activation precisions: ``act_bits`` as given, else the baked
    image's (its folds carry them), else those ``folds`` carry, and their consumption modes
    (:func:`~eie.hw.bnn.folding.carry_precisions`); a contradiction with the
    image, a wrong length, a precision outside 1..4 or an output layer that is not A1 is a
    ``ValueError``."""
    from .folding import ACT_BITS, carry_precisions, fold_act_bits

    folds = list(folds)
    own = None if image is None else fold_act_bits(image.folds)
    if act_bits is None:
        bits = own if own is not None else fold_act_bits(folds)
    else:
        bits = [int(b) for b in act_bits]
        if len(bits) != len(folds):
            raise ValueError(f"act_bits {bits} has {len(bits)} entries for {len(folds)} layers")
        if own is not None and own != bits:
            raise ValueError(f"act_bits {bits} but the image's layers have {own}")
    bad = [b for b in bits if b not in ACT_BITS]
    if bad:
        raise ValueError(f"act_bits {bits}: {bad[0]} is not an activation precision (1..4)")
    if bits[-1] != 1:
        raise ValueError(f"act_bits {bits}: the output layer's precision must be 1 (it outputs "
                         f"dots or bits)")
    try:
        return carry_precisions(folds, bits, None if image is None else image.folds)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(str(exc)) from None
