"""Accumulate popcounts over the synapse folds and apply the threshold (or emit ``dot``).

``pe`` lanes. Per cycle with ``en`` and ``i_valid`` high, each lane adds ``i_count[p]`` (the
matches of one synapse fold) to its accumulator, restarting from it when ``i_first`` is high.
When ``i_last`` is high the lane's full ``matches`` is ready: a hidden layer compares
``matches >= i_thr[p]`` into ``o_bits[p]``; the output layer computes
``o_dots[p] = 2 * matches - n_in`` (signed, :func:`dot_width` bits: exactly the range
``-n_in .. n_in``; the contract's int32 is a sign extension of it, done where results leave the
core). With ``offsets`` (the output layer of a ternary, W2, layer) the dot is
``2 * matches - i_off[p]``, ``i_off`` the neuron's nonzero count ``K'`` (``-K' .. K'``, within
the same width). Results are registered: they appear with
``o_valid`` high for one enabled cycle after the ``i_last`` item, and hold while ``en`` is low.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AccThreshold", "DOT_WIDTH", "dot_width"]

#: Width of the output layer's ``dot`` values on the host side (contract: signed int32).
DOT_WIDTH = 32


def dot_width(n_in: int) -> int:
    """Bits of a signed ``dot = 2 * matches - n_in`` in ``-n_in .. n_in``."""
    return n_in.bit_length() + 1


class AccThreshold(wiring.Component):
    """Accumulator and threshold comparator of ``pe`` neurons with fan-in ``n_in``."""

    def __init__(self, pe: int, n_in: int, count_width: int, *, hidden: bool = True,
                 offsets: bool = False, in_bits: int = 1, out_bits: int = 1,
                 bit_serial: bool = True):
        if not isinstance(pe, int) or pe < 1:
            raise ValueError(f"pe must be a positive integer, not {pe!r}")
        if not isinstance(n_in, int) or n_in < 1:
            raise ValueError(f"n_in must be a positive integer, not {n_in!r}")
        if offsets and hidden:
            raise ValueError("offsets (nonzero counts) are for an output layer of dots, not a "
                             "thresholded one")
        self._pe, self._n_in, self._hidden, self._offsets = pe, n_in, hidden, offsets
        self._in_bits, self._out_bits = in_bits, out_bits
        self._bit_serial = bit_serial
        self._acc_width = n_in.bit_length()
        self._thr_width = (n_in + 1).bit_length()
        if in_bits != 1 or out_bits != 1:
            self._init_qnn(count_width)
            return
        members = {
            "en": In(1),
            "i_valid": In(1),
            "i_first": In(1),
            "i_last": In(1),
            "i_count": In(data.ArrayLayout(unsigned(count_width), pe)),
            "o_valid": Out(1),
        }
        if hidden:
            members["i_thr"] = In(data.ArrayLayout(unsigned(self._thr_width), pe))
            members["o_bits"] = Out(pe)
        else:
            members["o_dots"] = Out(data.ArrayLayout(signed(dot_width(n_in)), pe))
            if offsets:
                members["i_off"] = In(data.ArrayLayout(unsigned(self._thr_width), pe))
        super().__init__(members)

    def _init_qnn(self, count_width: int) -> None:
        """k-bit activations (docs/ARCHITECTURE.md): with ``in_bits > 1`` the items are signed
        bit-plane dots ``2*P - Q`` (``i_count``, ``count_width + 1`` bits signed) of plane
        ``i_plane``, accumulated as ``acc += i_count << i_plane`` into the signed dot (without
        ``bit_serial`` each item is already the dot of all planes of its synapse fold and is
        added as it is: ``acc += i_count``, no ``i_plane``); with
        ``out_bits > 1`` each neuron has ``2**out_bits - 1`` thresholds side by side in
        ``i_thr`` and outputs the number crossed (``out_bits`` bits a lane in ``o_bits``)."""
        from .folding import LayerFold

        pe, n_in, kin, kout = self._pe, self._n_in, self._in_bits, self._out_bits
        if self._offsets and kin > 1:
            raise ValueError("a layer fed by k-bit activations needs no nonzero counts")
        self._fold = LayerFold(n_in, 1, 1, 1, kin, kout)
        if kin > 1:
            self._acc_width = self._fold.dot_width
        self._thr_width = self._fold.threshold_width
        members = {
            "en": In(1),
            "i_valid": In(1),
            "i_first": In(1),
            "i_last": In(1),
            "i_count": In(data.ArrayLayout(signed(count_width + 1) if kin > 1
                                           else unsigned(count_width), pe)),
            "o_valid": Out(1),
        }
        if kin > 1 and self._bit_serial:
            members["i_plane"] = In(range(max(kin, 2)))
        if self._hidden:
            members["i_thr"] = In(data.ArrayLayout(unsigned(self._fold.threshold_word_width), pe))
            members["o_bits"] = Out(pe * kout)
        else:
            members["o_dots"] = Out(data.ArrayLayout(signed(self._fold.dot_width), pe))
            if self._offsets:
                members["i_off"] = In(data.ArrayLayout(unsigned(self._thr_width), pe))
        wiring.Component.__init__(self, members)

    def _elaborate_qnn(self):
        m = Module()
        f = self._fold
        kin, kout, tw = self._in_bits, self._out_bits, self._thr_width
        with m.If(self.en):
            m.d.sync += self.o_valid.eq(self.i_valid & self.i_last)
        for p in range(self._pe):
            if kin > 1:
                acc = Signal(signed(self._acc_width), name=f"acc{p}")
                acc_next = Signal(signed(self._acc_width), name=f"acc_next{p}")
                contrib = Signal(signed(self._acc_width), name=f"plane_dot{p}")
                m.d.comb += contrib.eq(self.i_count[p] << self.i_plane if self._bit_serial
                                       else self.i_count[p])
                value = Signal(unsigned(tw), name=f"biased{p}")    # acc + K*L, 0 .. 2*K*L
                m.d.comb += value.eq(acc_next + f.threshold_bias)
            else:
                acc = Signal(unsigned(self._acc_width), name=f"acc{p}")
                acc_next = Signal(unsigned(self._acc_width), name=f"acc_next{p}")
                contrib = self.i_count[p]
                value = acc_next
            with m.If(self.i_first):
                m.d.comb += acc_next.eq(contrib)
            with m.Else():
                m.d.comb += acc_next.eq(acc + contrib)
            with m.If(self.en & self.i_valid):
                m.d.sync += acc.eq(acc_next)
                with m.If(self.i_last):
                    if self._hidden:
                        word = self.i_thr[p]
                        crossed = [value >= word[j * tw:(j + 1) * tw] for j in range(f.n_thresholds)]
                        total = crossed[0]
                        for c in crossed[1:]:
                            total = total + c
                        m.d.sync += self.o_bits[p * kout:(p + 1) * kout].eq(total)
                    else:
                        m.d.sync += self.o_dots[p].eq(acc_next)
        return m

    @property
    def pe(self) -> int:
        return self._pe

    @property
    def hidden(self) -> bool:
        return self._hidden

    @property
    def threshold_width(self) -> int:
        return self._thr_width

    def elaborate(self, platform):
        if self._in_bits != 1 or self._out_bits != 1:
            return self._elaborate_qnn()
        m = Module()
        with m.If(self.en):
            m.d.sync += self.o_valid.eq(self.i_valid & self.i_last)
        for p in range(self._pe):
            acc = Signal(unsigned(self._acc_width), name=f"acc{p}")
            acc_next = Signal(unsigned(self._acc_width), name=f"acc_next{p}")
            with m.If(self.i_first):
                m.d.comb += acc_next.eq(self.i_count[p])
            with m.Else():
                m.d.comb += acc_next.eq(acc + self.i_count[p])
            with m.If(self.en & self.i_valid):
                m.d.sync += acc.eq(acc_next)
                with m.If(self.i_last):
                    if self._hidden:
                        m.d.sync += self.o_bits[p].eq(acc_next >= self.i_thr[p])
                    else:
                        twice = Signal(signed(dot_width(self._n_in)), name=f"twice{p}")
                        m.d.comb += twice.eq(acc_next * 2)  # zero-extended: matches >= 0
                        off = self.i_off[p] if self._offsets else self._n_in
                        m.d.sync += self.o_dots[p].eq(twice - off)
        return m
