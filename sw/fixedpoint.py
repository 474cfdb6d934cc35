"""Fixed-point arithmetic of the EIE datapath, exactly as the contract fixes it.

Activations are signed 16-bit two's complement with ``act_frac`` fraction bits; weights are signed
16-bit codebook entries with ``w_frac`` fraction bits; the accumulator is ``acc_bits`` wide and wraps
around. Every function here works on integer NumPy arrays (int64 inside) and is exact: no float is
involved anywhere except in :func:`quantize`, :func:`dequantize` and :func:`choose_w_frac`, which
convert between real numbers and the integer formats.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import EieError

__all__ = [
    "wrap",
    "saturate",
    "round_half_even_shift",
    "quantize",
    "dequantize",
    "choose_w_frac",
    "writeback",
    "INT16_MIN",
    "INT16_MAX",
    "MAX_W_FRAC",
    "ACC_HEADROOM_BITS",
    "acc_w_frac_limit",
]

INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1
#: The largest weight shift :func:`choose_w_frac` returns (and the image format accepts).
MAX_W_FRAC = 30

#: Bits the accumulator keeps above a layer's output range (:func:`acc_w_frac_limit`): the
#: exact sum of an output may reach ``2**ACC_HEADROOM_BITS`` times the int16 range and still
#: saturate as it should.
ACC_HEADROOM_BITS = 1


def acc_w_frac_limit(acc_bits: int) -> int:
    """The largest weight shift an ``acc_bits`` accumulator leaves room for: ``acc_bits - 16 -``
    :data:`ACC_HEADROOM_BITS` (at least 0, at most :data:`MAX_W_FRAC`).

    The accumulator wraps (the contract's modular sum) and the write-back shifts it right by
    ``w_frac`` and saturates to int16, so an output saturates correctly only while its exact
    sum, ``2**w_frac`` times the output in activation units, fits the accumulator. With this
    shift every output whose exact value lies within twice the int16 range (``|y| < 2**16``
    activation steps, +-256 at ``act_frac`` 8) comes out right, and ``bias << w_frac`` always
    fits; a larger shift would buy weight precision far below the 4-bit codebook's own error
    and wrap outputs that fit int16 (a layer of weights below 0.06 took ``w_frac`` 18: its
    outputs wrapped from +-32 on with a 32-bit accumulator)."""
    return max(0, min(MAX_W_FRAC, int(acc_bits) - 16 - ACC_HEADROOM_BITS))


def _as_int64(x: np.ndarray, name: str = "x") -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iub":
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has values above the int64 range")
    return a.astype(np.int64, copy=False)


def _check_bits(bits: int, lo: int = 1, hi: int = 64) -> int:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not lo <= bits <= hi:
        raise ValueError(f"bits must be an integer in [{lo}, {hi}], got {bits!r}")
    return int(bits)


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap-around of integers to ``bits`` bits (what a ``bits``-wide register
    keeps): the result is congruent to ``x`` modulo ``2**bits`` and lies in
    ``[-2**(bits-1), 2**(bits-1) - 1]``. int64 in and out."""
    bits = _check_bits(bits)
    a = _as_int64(x)
    if bits == 64:
        return a.copy()
    low = a & np.int64((1 << bits) - 1)         # two's-complement AND: 0 .. 2**bits - 1
    sign = (low >> (bits - 1)) & 1
    # sign-extend: set every bit above the field (-(2**bits) fits int64 up to bits = 63)
    return np.where(sign == 1, low | np.int64(-(1 << bits)), low).astype(np.int64)


def saturate(x: np.ndarray, bits: int = 16) -> np.ndarray:
    """Clamp integers to the signed ``bits``-bit range ``[-2**(bits-1), 2**(bits-1) - 1]``
    (int64 out)."""
    bits = _check_bits(bits)
    a = _as_int64(x)
    if bits == 64:
        return a.copy()
    return np.clip(a, -(1 << (bits - 1)), (1 << (bits - 1)) - 1).astype(np.int64)


def round_half_even_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """Exact ``round(x / 2**shift)`` of integers, ties to even (banker's rounding), int64 out.

    ``shift`` >= 0; ``shift == 0`` returns ``x``. Works for negative ``x``:
    ``-3 / 2 = -1.5 -> -2``, ``-1 / 2 = -0.5 -> 0``, ``5 / 2 = 2.5 -> 2``.
    """
    if not isinstance(shift, (int, np.integer)) or isinstance(shift, bool) or not 0 <= shift <= 62:
        raise ValueError(f"shift must be an integer in [0, 62], got {shift!r}")
    shift = int(shift)
    a = _as_int64(x)
    if shift == 0:
        return a.copy()
    q = a >> shift                              # floor division (arithmetic shift)
    r = a - (q << shift)                        # remainder in [0, 2**shift)
    half = np.int64(1 << (shift - 1))
    up = (r > half) | ((r == half) & ((q & 1) == 1))
    return (q + up.astype(np.int64)).astype(np.int64)


def quantize(x: np.ndarray, frac: int, bits: int = 16) -> np.ndarray:
    """Real numbers to signed fixed point with ``frac`` fraction bits: ``round(x * 2**frac)`` with
    ties to even, saturated to ``bits`` bits. int16 out for ``bits <= 16``, int64 otherwise.

    NaN or infinite inputs raise :class:`EieError` (they have no fixed-point value).
    """
    bits = _check_bits(bits, 2, 63)
    if not isinstance(frac, (int, np.integer)) or isinstance(frac, bool) or not -64 <= frac <= 64:
        raise ValueError(f"frac must be an integer in [-64, 64], got {frac!r}")
    a = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise EieError(
            f"cannot quantize a non-finite value ({a[idx]} at index {idx}); "
            "fix the weights or inputs first"
        )
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    scaled = np.rint(np.ldexp(a, int(frac)))    # exact scaling, round half to even
    q = np.clip(scaled, lo, hi).astype(np.int64)
    return q.astype(np.int16) if bits <= 16 else q


def dequantize(q: np.ndarray, frac: int) -> np.ndarray:
    """Fixed point with ``frac`` fraction bits back to real numbers (float64): ``q / 2**frac``."""
    return np.ldexp(np.asarray(q, dtype=np.float64), -int(frac))


def choose_w_frac(values: np.ndarray, bits: int = 16) -> int:
    """The largest fraction width ``frac`` in ``[0, MAX_W_FRAC]`` such that every
    ``round(v * 2**frac)`` (ties to even) fits the signed ``bits``-bit range.

    This is the per-layer weight shift: the most precision that does not saturate any codebook
    entry. Returns 0 when even ``frac = 0`` overflows (the values then saturate), ``MAX_W_FRAC``
    for an empty or all-zero array. NaN or infinite values raise :class:`EieError`.
    """
    bits = _check_bits(bits, 2, 63)
    a = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(a)):
        raise EieError("cannot choose a weight shift for non-finite values; fix the weights first")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    for frac in range(MAX_W_FRAC, -1, -1):
        scaled = np.rint(np.ldexp(a, frac))
        if a.size == 0 or (scaled.min() >= lo and scaled.max() <= hi):
            return frac
    return 0


def writeback(acc: np.ndarray, w_frac: int, relu: bool) -> np.ndarray:
    """The contract's write-back of accumulators to activations:
    ``y = saturate16(round_half_even(acc / 2**w_frac))``, then ``max(y, 0)`` if ``relu``.
    ``acc`` is the (already wrapped) accumulator value as integers; int16 out."""
    y = saturate(round_half_even_shift(acc, w_frac), 16)
    if relu:
        y = np.maximum(y, 0)
    return y.astype(np.int16)
