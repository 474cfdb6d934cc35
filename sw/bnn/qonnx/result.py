"""What the import returns: :class:`QonnxImport`, the :class:`~eie.sw.bnn.params.IntegerBnn`
and how the graph's input and output map onto it (the input path as eie's input bits, or as a
rule per input bit an image can record; the output layer's values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ....common.errors import EieError
from ..params import IntegerBnn


@dataclass
class QonnxImport:
    """An imported graph: the :class:`IntegerBnn` and how the graph's input and output map onto
    it.

    - ``input_levels``: the two values the graph's input quantizer produces, ``(bit 0, bit 1)``;
      :meth:`input_bits` runs the graph's input nodes and gives bit 1 where the quantized input
      is the higher level (``+1`` for a BipolarQuant of scale 1);
    - ``output_levels`` (thresholded last layer): the graph's output value for bit 0 and bit 1;
    - ``output_table`` (unthresholded last layer): ``(2 * D + 1, n_out)``, row ``dot + D`` the
      graph's output value of every class at eie's output ``dot`` (of the flipped weights; NaN
      where the class cannot reach that dot), ``D = output_dot_max``; the same strictly
      increasing function of the dot in every class, so the argmax of the dots is the graph's;
    - ``act_levels``: per hidden layer, ``(a, b)``: its activation ``q`` (a bit, or a k-bit
      level ``0..2**k - 1``) stands for the graph's value ``a + b * q``.
    """

    net: IntegerBnn
    input_shape: tuple[int, ...]
    input_levels: tuple[float, float]
    output_levels: tuple[float, float] | None = None
    output_table: np.ndarray | None = None
    output_dot_max: int = 0
    act_levels: list[tuple[float, float]] = field(default_factory=list)
    _input_ops: list[Callable[[np.ndarray], np.ndarray]] = field(default_factory=list, repr=False)
    input_name: str = ""
    #: the two values of an input annotated BIPOLAR/BINARY (no quantizer on the input path)
    input_annotation: tuple[float, float] | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample of the graph input: its shape without the batch dimension (a 1-D input
        has none)."""
        return tuple(self.input_shape) if len(self.input_shape) == 1 \
            else tuple(self.input_shape[1:])

    def input_bits(self, x) -> np.ndarray:
        """The graph input (a batch ``(B, *input_shape[1:])``, or one sample) as eie's input
        bits, uint8 ``(B, n_in)``."""
        x = np.asarray(x, dtype=np.float32)
        per = self.sample_shape
        size = int(np.prod(per))
        if x.shape == per or x.shape == (size,):
            x = x.reshape((1,) + per)
        elif x.ndim >= 1 and (x.shape[1:] == per or x.shape[1:] == (size,)):
            x = x.reshape((x.shape[0],) + per)
        else:
            raise EieError(f"input has shape {x.shape}; the graph takes {self.input_shape} "
                           f"(a batch of {per} or of {size} values)")
        if len(self.input_shape) == 1:         # a 1-D graph input: its ops saw (n,), not (1, n)
            x = x.reshape(x.shape[0], -1)
        for op in self._input_ops:
            x = op(x)
        x = x.reshape(x.shape[0], -1)
        v0, v1 = (np.float32(v) for v in self.input_levels)
        bad = (x != v0) & (x != v1)
        if np.any(bad):
            b, i = np.argwhere(bad)[0]
            raise EieError(f"input {b} element {i} quantizes to {float(x[b, i]):g}, neither level "
                           f"({float(v0):g}, {float(v1):g}); ONNX Sign(0) is 0: use BipolarQuant on the input")
        return (x == v1).astype(np.uint8)

    def outputs(self, y) -> np.ndarray:
        """The graph's outputs from the IntegerBnn's: output bits (thresholded last layer) or
        dots (unthresholded), ``(B, n_out)``."""
        y = np.asarray(y)
        if self.output_table is None:
            assert self.output_levels is not None
            return np.where(y != 0, np.float32(self.output_levels[1]),
                            np.float32(self.output_levels[0]))
        return self.output_table[y.astype(np.int64) + self.output_dot_max,
                                 np.arange(self.output_table.shape[1])]

    def input_conversion(self):
        """``(InputConversion, "")``: :meth:`input_bits` as a rule per input bit that an image
        can record (element ``order[i]`` of a sample against a float32 threshold, or the two
        values of an annotated input), equal to :meth:`input_bits` on every finite input; or
        ``(None, why)`` when the graph's input path is not such a rule."""
        from ..image import InputConversion

        per, n = self.sample_shape, self.net.shape[0]
        size = int(np.prod(per))
        if size != n:
            return None, f"a sample of the graph input has {size} values for {n} input bits"
        for op in self._input_ops:
            bad = getattr(op, "nonmonotone", None)
            if bad:
                return None, (f"{bad} on the input path is not a threshold per element "
                              f"(Sign(0) is 0, c / x is not monotone)")
        idx = np.arange(size, dtype=np.float64).reshape((1,) + per)
        if len(self.input_shape) == 1:
            idx = idx.reshape(1, -1)
        for op in self._input_ops:
            if getattr(op, "relayout", False):
                idx = op(idx)
        order = idx.reshape(-1).astype(np.int64)
        if not np.array_equal(np.sort(order), np.arange(n)):
            return None, "the input path does not move every element to one input bit"
        source = f"the QONNX graph's input '{self.input_name}'"

        def probe(v):                               # v: (n,) float32, one value per bit
            x = np.empty(n, dtype=np.float32)
            x[order] = v
            return self.input_bits(x.reshape((1,) + per))[0].astype(bool)

        try:
            with np.errstate(all="ignore"):     # the graph's float32 overflows near the ends
                return self._conversion(per, n, order, probe, source, InputConversion)
        except EieError as exc:
            return None, str(exc)

    def _conversion(self, per, n, order, probe, source, InputConversion):
        """input_conversion()'s rule: the annotated levels, or a threshold per element found by
        bisection over the float32 values in order, then checked against input_bits."""
        if self.input_annotation is not None:
            lo, hi = self.input_annotation
            b_hi = probe(np.full(n, hi, np.float32))
            b_lo = probe(np.full(n, lo, np.float32))
            if np.any(b_hi == b_lo):
                return None, "an annotated input level does not decide its bit"
            conv = InputConversion(per, order, None, ~b_hi, (lo, hi), source)
            return conv, ""
        big = np.float32(np.finfo(np.float32).max)
        g_lo, g_hi = probe(np.full(n, -big)), probe(np.full(n, big))
        falling = g_lo & ~g_hi
        const = g_lo == g_hi
        a, b = _f32_key(np.full(n, -big)), _f32_key(np.full(n, big))
        b = np.where(const, a + 1, b)
        # h(k) = bit (rising) or not bit (falling): 0 at a, 1 at b; the first k with h = 1
        while np.any(b - a > 1):
            m = (a + b) // 2
            h = probe(_f32_from_key(m)) != falling
            b, a = np.where(h, m, b), np.where(h, a, m)
        threshold = np.where(const, -big, _f32_from_key(b)).astype(np.float32)
        threshold[threshold == 0] = 0.0                     # -0.0: the same comparisons
        invert = np.where(const, ~g_lo, falling)
        conv = InputConversion(per, order, threshold, invert, None, source)
        # a check on values around every threshold and across the range
        rng = np.random.default_rng(0)
        samples = [np.nextafter(threshold, np.float32(-np.inf)), threshold,
                   np.nextafter(threshold, np.float32(np.inf)), np.zeros(n, np.float32),
                   np.full(n, -0.0, np.float32)]
        samples += [rng.normal(0, s, n).astype(np.float32) for s in (1, 100, 1e6)]
        samples += [rng.integers(0, 256, n).astype(np.float32), np.full(n, big),
                    np.full(n, -big)]
        x = np.empty((len(samples), n), dtype=np.float32)
        for r, v in enumerate(samples):
            x[r, order] = v
        if not np.array_equal(conv.bits(x), self.input_bits(x.reshape((-1,) + per))):
            return None, "the input path is not a threshold per element (not monotone)"
        return conv, ""


def _f32_key(v: np.ndarray) -> np.ndarray:
    """Finite float32 values as int64 keys in the same order (-0.0 just below +0.0)."""
    u = np.asarray(v, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(u >= 0, u, -(u & 0x7FFFFFFF) - 1)


def _f32_from_key(k: np.ndarray) -> np.ndarray:
    """The inverse of :func:`_f32_key`."""
    k = np.asarray(k, dtype=np.int64)
    u = np.where(k >= 0, k, (-(k + 1)) | 0x80000000)
    return u.astype(np.uint32).view(np.float32)
