"""The streaming BNN: one :class:`Mvtu` per layer, chained by ``amaranth.lib.stream`` interfaces.

Per cycle every layer works on its own sample (a dataflow pipeline, FINN's streaming
architecture): stream ``i`` takes input words of ``in_width`` bits (default ``n_in``: a whole
input vector a word; the bus-mapped top uses 32: ``ceil(n_in / 32)`` words a sample; element
``k`` at bit ``k % in_width`` of word ``k // in_width``); a :class:`WidthConverter` turns them
into the first layer's ``SIMD``-bit words, written into its input buffer. Each hidden layer hands
its ``n_out``-bit output vector, through a converter (a multiplexer, no storage) that presents it
``SIMD`` bits at a time, to the next layer's input buffer, with valid/ready back-pressure; stream
``o`` carries the last layer's ``dot`` per class (signed, ``D = dot_width(K)`` bits, just the
range ``-K .. K``; class ``k`` at bits ``[D*k+D-1:D*k]``; the bus top sign-extends to int32), or,
with ``last_thresholded``, the last layer's ``n_out`` output bits (``matches >= T`` per neuron,
output ``k`` at bit ``k``: the last MVTU is built like a hidden layer's). In steady state the
network accepts one sample every ``max(nf * sf)`` cycles (and not faster than
``ceil(n_in / in_width)`` cycles, one input word a cycle).

Weights and thresholds are written one memory word per cycle through the ``ld_`` port:
``ld_layer``, ``ld_kind`` (0 weights, 1 thresholds), ``ld_pe``, ``ld_addr`` (the word's index in
that PE's memory, as in the image files) and ``ld_data``, with ``ld_en``. Loading while samples
are in flight gives undefined results for those samples; load first, then stream.

``weight_bits`` (per layer 1 or 2; default the baked image's, else all 1): a ternary (W2)
layer's MVTU has a mask plane (``ld_kind`` 2, which is then 2 bits wide) and, as the output
layer of dots, its neurons' nonzero counts in the threshold memory (``ld_kind`` 1). A network
without a W2 layer is exactly the binary one.

``act_bits`` (per layer 1..4, the output layer 1; default the baked image's, else what the
folds carry): a hidden layer of ``k``-bit activations hands ``n_out * k`` bits to the next
layer's converter, which presents them ``SIMD * k`` bits (``SIMD`` elements) at a time; the next
layer consumes them bit-serially or all planes at once, as its fold's ``consume`` says
(:class:`Mvtu`; the words are the same either way). A network of A1 layers is exactly the one
above.
"""

from __future__ import annotations

from typing import Sequence

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .folding import LayerFold
from .words import (BnnWeights, nonzero_counts, resolve_act_bits, resolve_last_thresholded,
                    resolve_weight_bits, threshold_words, weight_words)
from .mvtu import Mvtu
from .width_converter import WidthConverter
from .threshold import dot_width

__all__ = ["BnnNetwork", "KIND_WEIGHTS", "KIND_THRESHOLDS", "KIND_MASKS"]

KIND_WEIGHTS = 0
KIND_THRESHOLDS = 1
KIND_MASKS = 2


class BnnNetwork(wiring.Component):
    """A chain of folded BNN layers; ``image`` (optional) bakes weights in as initial values."""

    def __init__(self, folds: Sequence[LayerFold], *, image: BnnWeights | None = None,
                 levels_per_stage: int = 2, in_width: int | None = None,
                 last_thresholded: bool | None = None,
                 weight_bits: Sequence[int] | None = None,
                 act_bits: Sequence[int] | None = None):
        folds = list(folds)
        if not folds:
            raise ValueError("a BNN needs at least one layer")
        for a, b in zip(folds, folds[1:]):
            if a.n_out != b.n_in:
                raise ValueError(f"layers don't chain: {a} outputs {a.n_out} bits, {b} takes {b.n_in}")
        if image is not None and image.shape != [folds[0].n_in] + [f.n_out for f in folds]:
            raise ValueError(f"image shape {image.shape} does not match the folding's")
        folds = resolve_act_bits(folds, image, act_bits)
        self._folds = folds
        self._image = image
        self._last_thresholded = resolve_last_thresholded(image, last_thresholded)
        self._weight_bits = resolve_weight_bits(len(folds), image, weight_bits)
        ternary = any(b == 2 for b in self._weight_bits)
        self._levels_per_stage = levels_per_stage
        self._in_width = in_width or folds[0].n_in
        if not isinstance(self._in_width, int) or self._in_width < 1:
            raise ValueError(f"in_width must be a positive integer, not {in_width!r}")
        self._ld_width = max(max(f.simd, f.threshold_width if f.out_bits == 1
                                 else f.threshold_word_width) for f in folds)
        max_depth = max(f.nf * f.sf for f in folds)
        out_shape = (unsigned(folds[-1].n_out) if self._last_thresholded else
                     data.ArrayLayout(signed(folds[-1].dot_width), folds[-1].n_out))
        super().__init__({
            "i": In(stream.Signature(unsigned(self._in_width))),
            "o": Out(stream.Signature(out_shape)),
            "ld_en": In(1),
            "ld_layer": In(range(max(len(folds), 2))),
            "ld_kind": In(2 if ternary else 1),
            "ld_pe": In(range(max(max(f.pe for f in folds), 2))),
            "ld_addr": In(range(max(max_depth, 2))),
            "ld_data": In(self._ld_width),
            "stalls": Out(len(folds)),
        })

    @property
    def folds(self) -> list[LayerFold]:
        return list(self._folds)

    @property
    def last_thresholded(self) -> bool:
        return self._last_thresholded

    @property
    def weight_bits(self) -> tuple[int, ...]:
        return self._weight_bits

    @property
    def in_width(self) -> int:
        return self._in_width

    @property
    def in_words(self) -> int:
        """Input words a sample."""
        return -(-self._folds[0].n_in // self._in_width)

    def elaborate(self, platform):
        m = Module()
        n = len(self._folds)
        units = []
        for l, f in enumerate(self._folds):
            hidden = l < n - 1 or self._last_thresholded     # has thresholds, outputs bits
            ternary = self._weight_bits[l] == 2
            winit = tinit = minit = None
            if self._image is not None:
                winit = weight_words(f, self._image.weights[l])
                if hidden:
                    tinit = threshold_words(f, self._image.thresholds[l])
                if ternary:
                    mask = self._image.masks[l]
                    minit = weight_words(f, mask)
                    if not hidden and f.in_bits == 1:
                        tinit = threshold_words(f, nonzero_counts(mask))
            u = Mvtu(f, hidden=hidden, weight_init=winit, threshold_init=tinit,
                     levels_per_stage=self._levels_per_stage, ld_data_width=self._ld_width,
                     ternary=ternary, mask_init=minit)
            m.submodules[f"layer{l}"] = u
            sel = self.ld_en & (self.ld_layer == l)
            m.d.comb += [u.ld_w_en.eq(sel & (self.ld_kind == KIND_WEIGHTS)),
                         u.ld_t_en.eq(sel & (self.ld_kind == KIND_THRESHOLDS)),
                         u.ld_pe.eq(self.ld_pe), u.ld_addr.eq(self.ld_addr),
                         u.ld_data.eq(self.ld_data), self.stalls[l].eq(u.stall)]
            if ternary:
                m.d.comb += u.ld_m_en.eq(sel & (self.ld_kind == KIND_MASKS))
            units.append(u)
        conv = WidthConverter(self._folds[0].n_in, self._in_width, self._folds[0].simd)
        m.submodules.in_conv = conv
        wiring.connect(m, wiring.flipped(self.i), conv.i)
        wiring.connect(m, conv.o, units[0].i)
        for l, (a, b) in enumerate(zip(units, units[1:])):
            f = self._folds[l]
            k = f.out_bits                  # bits an element (k-bit activations)
            conv = WidthConverter(f.n_out * k, f.n_out * k, self._folds[l + 1].simd * k)
            m.submodules[f"conv{l + 1}"] = conv
            wiring.connect(m, a.o, conv.i)
            wiring.connect(m, conv.o, b.i)
        wiring.connect(m, units[-1].o, wiring.flipped(self.o))
        return m
