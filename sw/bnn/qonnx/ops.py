"""The QONNX custom ops' semantics (qonnx.custom_op.general, docs/qonnx-custom-ops/*.md):
BipolarQuant, Quant (IntQuant) with its integer ranges and rounding modes, and MultiThreshold, as
NumPy functions. The importer evaluates constant sub-graphs (quantized weights) and layer tables
with them.
"""

from __future__ import annotations

import numpy as np


def bipolar_quant(x: np.ndarray, scale) -> np.ndarray:
    """BipolarQuant: ``+1`` where ``x >= 0`` (so sign(0) = +1), else ``-1``, times ``scale``."""
    x = np.asarray(x)
    ones = np.ones(x.shape, dtype=x.dtype)
    return np.where(x >= 0, ones, -ones) * np.asarray(scale, dtype=x.dtype)


def int_range(signed: bool, narrow: bool, bits: int) -> tuple[int, int]:
    """The integers a ``bits``-wide Quant produces (Brevitas' ``min_int``/``max_int``)."""
    if signed:
        return (-(2 ** (bits - 1)) + (1 if narrow else 0), 2 ** (bits - 1) - 1)
    return 0, 2 ** bits - (2 if narrow else 1)


_ROUNDING = {
    "ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor, "DOWN": np.fix,
    "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)),
    "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5),
    "HALF_DOWN": lambda v: np.sign(v) * np.ceil(np.abs(v) - 0.5),
}


def int_quant(x, scale, zeropt, bits: int, signed: bool, narrow: bool, rounding: str) -> np.ndarray:
    """Quant (IntQuant): ``(round(clamp(x / scale + zeropt)) - zeropt) * scale``; a signed
    1-bit Quant is bipolar (``x / scale + zeropt >= 0`` gives +1, else -1)."""
    x = np.asarray(x)
    dt = x.dtype
    scale, zeropt = np.asarray(scale, dtype=dt), np.asarray(zeropt, dtype=dt)
    y = x / scale + zeropt
    if bits == 1 and signed:
        ones = np.ones(y.shape, dtype=dt)
        y = np.where(y >= 0, ones, -ones)
    else:
        lo, hi = int_range(signed, narrow, bits)
        y = np.where(y > hi, dt.type(hi), y)
        y = np.where(y < lo, dt.type(lo), y)
        y = _ROUNDING[rounding](y).astype(dt)
    return (y - zeropt) * scale


def multithreshold(x, thresholds, out_scale: float = 1.0, out_bias: float = 0.0,
                   channels_last: bool = False) -> np.ndarray:
    """MultiThreshold: per element, the number of its channel's thresholds ``t`` with
    ``x >= t``, times ``out_scale``, plus ``out_bias``. ``thresholds`` is ``(C, B)`` (or
    ``(1, B)`` for all channels); the channel axis is 1 (NC..), or the last (N..C)."""
    x = np.asarray(x)
    xm = x if channels_last else np.moveaxis(x, 1, -1)
    count = np.count_nonzero(xm[..., None] >= thresholds, axis=-1).astype(x.dtype)
    if not channels_last:
        count = np.moveaxis(count, -1, 1)
    return out_scale * count + out_bias
