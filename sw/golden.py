"""The bit-exact EIE golden model: what the hardware must compute, for any batch.

Per layer and sample (the contract's numeric semantics):

* ``acc[i] = bias[i] << w_frac`` (0 without bias);
* ``acc[i] += a[j] * w[i, j]`` for every stored weight, full 32-bit products;
* the accumulator is ``acc_bits`` wide and wraps around (two's complement), so the order of
  accumulation does not matter: the sum is computed exactly in int64 and wrapped once;
* ``y[i] = saturate16(round_half_even(acc[i] / 2**w_frac))``, then ``max(y, 0)`` with ReLU.

:func:`golden_forward` decodes the weights from an :class:`~eie.sw.image.Image` (so it also checks
the encoding) and reports, per layer, the work statistics behind the contract's ideal cycle bound
(:func:`eie.sw.bound.layer_stats`).
:func:`golden_forward_layers` runs the same arithmetic on :class:`~eie.sw.encode.QuantLayer` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .bound import LayerStats, layer_stats
from .encode import QuantLayer
from ..common.errors import EieError
from .fixedpoint import wrap, writeback
from .image import Image
from .inputs import check_activations

__all__ = ["LayerStats", "GoldenResult", "layer_forward", "quant_layer_forward",
           "golden_forward", "golden_forward_layers", "check_input"]


@dataclass(eq=False)
class GoldenResult:
    outputs: np.ndarray             # int16 (batch, n_out of the last layer), the model's order
    layer_outputs: list[np.ndarray] # int16 (batch, n_out) per layer, in hardware positions
    stats: list[LayerStats]
    inputs: np.ndarray              # int64 (batch, n_in): the first layer's, in input positions

    @property
    def layer_inputs(self) -> list[np.ndarray]:
        """Each layer's input in hardware positions (what the cycle model steps through)."""
        return [self.inputs] + [np.asarray(o) for o in self.layer_outputs[:-1]]


def check_input(x: np.ndarray, n_in: int) -> np.ndarray:
    """Validate activations (:func:`eie.sw.inputs.check_activations`: integers within int16,
    shape ``(n_in,)`` or ``(batch, n_in)``). Returns int64 ``(batch, n_in)``; raises
    :class:`EieError` otherwise."""
    return check_activations(x, n_in)


def layer_forward(weights: np.ndarray, bias: np.ndarray | None, w_frac: int, relu: bool,
                  x: np.ndarray, acc_bits: int = 32) -> np.ndarray:
    """One layer's arithmetic: integer-valued ``weights`` (n_out, n_in; int64, or float64 holding
    int16 values), int16 ``bias`` or None, int activations ``x`` (batch, n_in) -> int16
    (batch, n_out)."""
    w = np.asarray(weights)
    xa = np.asarray(x, dtype=np.int64)
    # |a * w| <= 2**30. Every partial sum is an integer below n_in * 2**30, exact in float64
    # (53-bit mantissa) whatever order BLAS adds in while n_in <= 2**22; beyond, use int64.
    if w.shape[1] <= (1 << 22):
        acc = np.rint(xa.astype(np.float64) @ w.astype(np.float64, copy=False).T).astype(np.int64)
    else:
        acc = xa @ w.astype(np.int64, copy=False).T
    if bias is not None:
        acc = acc + (np.asarray(bias, dtype=np.int64) << w_frac)[None, :]
    return writeback(wrap(acc, acc_bits), w_frac, relu)


def _float_weights(q: QuantLayer) -> np.ndarray:
    """``codebook[codes]`` as float64 (exact: int16 values), without an int64 copy."""
    return q.codebook.astype(np.float64)[q.codes]


def quant_layer_forward(q: QuantLayer, x: np.ndarray, acc_bits: int = 32) -> np.ndarray:
    """One :class:`QuantLayer` on int activations ``x`` (batch, n_in) -> int16 (batch, n_out)."""
    return layer_forward(_float_weights(q), q.bias, q.w_frac, q.relu, x, acc_bits)


def golden_forward_layers(layers: Sequence[QuantLayer], x: np.ndarray, acc_bits: int = 32) -> np.ndarray:
    """Run ``layers`` back to back on int16 activations ``x`` (``(batch, n_in)`` or a vector, a
    batch of 1), straight from the :class:`QuantLayer` objects. int16 ``(batch, n_out)`` out."""
    layers = list(layers)
    if not layers:
        raise EieError("golden_forward_layers needs at least one layer")
    if not isinstance(acc_bits, (int, np.integer)) or isinstance(acc_bits, bool) \
            or not 16 <= acc_bits <= 64:
        raise EieError(f"acc_bits must be an integer in [16, 64], got {acc_bits!r}")
    acc_bits = int(acc_bits)
    a = check_input(x, layers[0].n_in)
    for l, layer in enumerate(layers):
        if a.shape[1] != layer.n_in:
            raise EieError(f"layer {l} takes {layer.n_in} inputs but gets {a.shape[1]}")
        a = quant_layer_forward(layer, a, acc_bits)
    return a


def check_image_object(image) -> None:
    """An :class:`EieError` unless ``image`` is an image object (a path is the likely mistake:
    the command line takes paths, the library takes what :func:`eie.sw.image.read_image`
    returns)."""
    import os

    if isinstance(image, (str, bytes, os.PathLike)):
        raise EieError(f"image {image!r} is a path: read it first (eie.sw.image.read_image)")
    if not isinstance(image, Image):
        raise EieError(f"image is {type(image).__name__}, not an eie.sw.image.Image (read_image "
                       "reads an image directory; compress_model(...).image is one)")


def golden_forward(image: Image, x: np.ndarray) -> GoldenResult:
    """Run every layer of ``image`` on int16 activations ``x`` (``(batch, n_in)``, or a vector as
    a batch of 1). Weights are decoded from the image's entries, so a wrong encoding shows up
    here. Returns outputs (in the model's order: a balanced image's placement undone), each
    layer's outputs (in hardware positions, as the next layer reads them), each layer's work
    statistics and the first layer's inputs in input positions (``x`` as the host writes it)."""
    check_image_object(image)
    a = image.to_positions(check_input(x, image.n_in))
    first = a
    outs: list[np.ndarray] = []
    stats: list[LayerStats] = []
    for l in range(len(image.layers)):
        q = image.quant_layer(l)
        stats.append(layer_stats(image, l, a))
        y = quant_layer_forward(q, a, image.acc_bits)
        outs.append(y)
        a = y.astype(np.int64)
    return GoldenResult(outputs=image.to_model_order(outs[-1]), layer_outputs=outs, stats=stats,
                        inputs=first)
