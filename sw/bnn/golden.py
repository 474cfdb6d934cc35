"""The bit-exact golden model of the BNN core: integer XNOR-popcount-threshold, batched.

For each layer with fan-in ``K`` and folded weight bits ``w``:
``matches = popcount(XNOR(x, w))`` over the ``K`` real inputs; a hidden layer outputs
``matches >= T`` per neuron; the last layer outputs ``dot = 2 * matches - K`` as int32, or, when
the image's output layer is thresholded (:attr:`BnnImage.last_thresholded`), ``matches >= T``
as uint8 bits like a hidden layer. Folding (SIMD, PE) does not change any result, so the golden
model ignores it.

A ternary (W2) layer (``image.masks[l]`` not None) counts ``matches = popcount(mask & XNOR(x,
w))`` and its dot is ``2 * matches - K'``, ``K'`` the neuron's nonzero weights
(docs/ARCHITECTURE.md).

:func:`classify` turns outputs into classes by a named rule (:data:`CLASS_RULES`). An image
with XNOR-Net output scales (:attr:`BnnImage.output_scale`) classifies by the argmax of its
logits ``output_scale * dot`` (:func:`golden_logits`), the float model's own expression.
"""

from __future__ import annotations

import numpy as np

from ...common.errors import EieError
from .float_model import check_bits, output_logits
from .image import BnnImage

__all__ = ["matches", "masked_matches", "plane_dot", "multi_threshold", "golden_forward",
           "golden_layers", "golden_logits", "classify", "CLASS_RULES", "DOT_RULES", "BIT_RULES"]

#: Class rules for dot outputs (an output layer without thresholds).
DOT_RULES = {
    "argmax": "the class with the largest dot; ties go to the lowest index (numpy's argmax)",
}
#: Class rules for bit outputs (a thresholded output layer); a row without a qualifying bit
#: gets class -1.
BIT_RULES = {
    "highest-bit": "the highest-numbered output bit that is 1 (BNN-PYNQ's host reads the LFC's "
                   "class as log2 of the output word); -1 when no bit is 1",
    "lowest-bit": "the lowest-numbered output bit that is 1; -1 when no bit is 1",
    "one-hot": "the output bit that is 1 when exactly one is; -1 otherwise (BNN-PYNQ's own "
               "accuracy test counts a digit right only when the output is exactly 1 << label)",
}
#: Every class rule by name, with what it does.
CLASS_RULES = {**DOT_RULES, **BIT_RULES}


def matches(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``popcount(XNOR(x, w))`` for bits ``x`` (batch, K) and ``w`` (n_out, K): (batch, n_out).

    ``#(x = w = 1) + #(x = w = 0) = K - sum(x) - sum(w) + 2 * x @ w``, the product in float64
    (BLAS): every partial sum is an integer below 2**53, so it is exact."""
    k = x.shape[1]
    xf = x.astype(np.float64)
    wf = w.astype(np.float64)
    both = np.rint(xf @ wf.T).astype(np.int64)
    return k - x.sum(axis=1, dtype=np.int64)[:, None] - w.sum(axis=1, dtype=np.int64)[None, :] \
        + 2 * both


def masked_matches(x: np.ndarray, w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``popcount(mask & XNOR(x, w))`` for bits ``x`` (batch, K), sign bits ``w`` and mask bits
    ``mask`` (n_out, K): (batch, n_out). With ``t = mask * (2w - 1)`` and ``s = 2x - 1``,
    ``s @ t.T = 2 * matches - K'`` (``K' = mask.sum(1)``), in float64: exact below 2**53."""
    s = x.astype(np.float64) * 2.0 - 1.0
    t = mask.astype(np.float64) * (w.astype(np.float64) * 2.0 - 1.0)
    dot = np.rint(s @ t.T).astype(np.int64)
    return (dot + mask.sum(axis=1, dtype=np.int64)[None, :]) // 2


def plane_dot(x: np.ndarray, w: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The exact integer ``dot = sum_i w_i * x_i`` of unsigned k-bit inputs ``x`` (batch, K)
    with weights of sign bits ``w`` and, for a ternary layer, mask bits ``mask`` (n_out, K):
    (batch, n_out) int64; float64 products, exact below 2**53."""
    t = w.astype(np.float64) * 2.0 - 1.0
    if mask is not None:
        t = t * mask.astype(np.float64)
    return np.rint(x.astype(np.float64) @ t.T).astype(np.int64)


def multi_threshold(acc: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The number of thresholds crossed, ``#{j : acc >= T_j}``: ``acc`` (batch, n_out),
    ``t`` (n_out, n) -> uint8 (batch, n_out)."""
    return (acc[:, :, None] >= np.asarray(t)[None, :, :]).sum(axis=2).astype(np.uint8)


def golden_layers(image: BnnImage, x) -> list[np.ndarray]:
    """Every layer's output: bits (uint8) for hidden layers, int32 ``dot`` for the last (bits
    too when it is thresholded); a hidden layer with k-bit activations outputs its levels
    ``0..2**k - 1`` (uint8)."""
    import os

    if isinstance(image, (str, bytes, os.PathLike)):
        raise EieError(f"image {image!r} is a path: read it first (eie.sw.bnn.image.read_image)")
    if not all(hasattr(image, k) for k in ("shape", "weights", "folds")):
        raise EieError(f"image is {type(image).__name__}, not a BNN image (eie.sw.bnn.image."
                       "read_image reads an image directory; compile_model(...) makes one)")
    a = check_bits(x, image.shape[0])
    outs = []
    n = len(image.weights)
    # anything with folds, weights and thresholds (the BnnWeights protocol) is an image here
    masks = getattr(image, "masks", None) or [None] * n
    for l, w in enumerate(image.weights):
        mask = masks[l]
        fold = image.folds[l]
        if fold.in_bits > 1 or fold.out_bits > 1:
            # k-bit activations (docs/ARCHITECTURE.md): the dot of the levels, or the match count
            if fold.in_bits > 1:
                acc = plane_dot(a, w, mask)
            else:
                acc = matches(a, w) if mask is None else masked_matches(a, w, mask)
            if l == n - 1 and not image.last_thresholded:
                if fold.in_bits == 1:
                    k = w.shape[1] if mask is None else mask.sum(axis=1, dtype=np.int64)[None, :]
                    acc = 2 * acc - k
                outs.append(acc.astype(np.int32))
            else:
                t = np.asarray(image.thresholds[l])
                a = multi_threshold(acc, t if t.ndim == 2 else t[:, None])
                outs.append(a)
            continue
        m = matches(a, w) if mask is None else masked_matches(a, w, mask)
        if l == n - 1 and not image.last_thresholded:
            k = w.shape[1] if mask is None else mask.sum(axis=1, dtype=np.int64)[None, :]
            outs.append((2 * m - k).astype(np.int32))
        else:
            a = (m >= image.thresholds[l][None, :]).astype(np.uint8)
            outs.append(a)
    return outs


def golden_forward(image: BnnImage, x) -> np.ndarray:
    """The last layer's output ``(batch, n_classes)``: int32 ``dot``, or uint8 bits when the
    output layer is thresholded."""
    return golden_layers(image, x)[-1]


def golden_logits(image: BnnImage, x) -> np.ndarray:
    """The logits (float64 ``(batch, n_classes)``) of an image whose output layer outputs dots:
    ``output_scale * dot`` (the dots themselves without an output scale)."""
    return output_logits(golden_forward(image, x), getattr(image, "output_scale", None))


def classify(y, rule: str, scale=None) -> np.ndarray:
    """Classes (int64 ``(batch,)``) of outputs ``y`` ``(batch, n_classes)`` by ``rule``: one of
    :data:`DOT_RULES` for int32 dots (argmax of the logits ``scale * y`` when a per-class
    ``scale`` is given, an image's :attr:`~BnnImage.output_scale`), of :data:`BIT_RULES` for
    uint8 bits. A rule of the other kind is an :class:`EieError` (the argmax of bits would
    silently pick the lowest set bit, or 0 when none is)."""
    y = np.asarray(y)
    bits = y.dtype == np.uint8
    if rule not in CLASS_RULES:
        raise EieError(f"class rule {rule!r} is not one of {', '.join(CLASS_RULES)}")
    if y.ndim != 2 or y.shape[1] == 0:
        raise EieError(f"outputs have shape {y.shape}; expected (batch, n_classes)")
    if bits and rule in DOT_RULES:
        raise EieError(f"class rule {rule!r} is for dot outputs but these are bits (a "
                       f"thresholded output layer); choose one of {', '.join(BIT_RULES)}")
    if not bits and rule in BIT_RULES:
        raise EieError(f"class rule {rule!r} is for bit outputs (a thresholded output layer) but "
                       f"these are dots; use argmax")
    if rule == "argmax":
        return np.argmax(y if scale is None else output_logits(y, scale), axis=1).astype(np.int64)
    on = y != 0
    any_on = on.any(axis=1)
    if rule == "lowest-bit":
        c = np.argmax(on, axis=1)
    elif rule == "highest-bit":
        c = y.shape[1] - 1 - np.argmax(on[:, ::-1], axis=1)
    else:                                                   # one-hot
        c = np.argmax(on, axis=1)
        any_on = on.sum(axis=1) == 1
    return np.where(any_on, c, -1).astype(np.int64)
