"""Width converter: frames of ``n_bits`` bits from ``in_width``-bit words to ``out_width``-bit words.

A frame (one sample's vector) arrives as ``ceil(n_bits / in_width)`` words on stream ``i`` (frame
bit ``k`` at bit ``k % in_width`` of word ``k // in_width``; bits beyond ``n_bits`` in the last
word are ignored) and leaves as ``ceil(n_bits / out_width)`` words on stream ``o`` (frame bit
``k`` at bit ``k % out_width`` of word ``k // out_width``; bits beyond ``n_bits`` in the last word
are 0). FINN calls this a data-width converter; here it feeds an MVTU's ``SIMD``-bit input.

Two implementations, chosen by the widths:

- one input word a frame (``in_width >= n_bits``, e.g. a hidden layer's whole output vector):
  no storage. Per cycle ``o`` shows slice ``k`` of the input word (the producer holds it while
  ``i.valid``), ``k`` advances on each ``o`` handshake and the input word is taken (``i.ready``)
  with the last slice.
- several input words a frame (e.g. 32-bit bus words into 8-bit SIMD words): a gearbox. A
  register holds the bits taken but not yet sent (``count`` of them, from bit 0). Per cycle: if
  ``count`` covers the next output word, ``o`` is valid and a handshake shifts that word out; if
  what remains after this cycle's handshake does not cover the next output word (the frame then
  always has input words left: a complete frame's bits form whole output words), ``i`` is ready
  and a handshake appends the input word's frame bits above the remaining ones. Input is taken only when needed, so the bit offsets at which words
  are appended are fixed by the widths (computed at elaboration; the shifter has only those
  cases), and a frame's last input word is never mixed with the next frame's.

Throughput: one output word a cycle while input keeps up, one input word a cycle while
output keeps up (whichever side is narrower sets the pace).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WidthConverter", "gearbox_offsets"]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def gearbox_offsets(n_bits: int, in_width: int, out_width: int) -> tuple[list[int], int]:
    """(bit offsets at which the gearbox appends each input word of a frame, register width).

    Replays the gearbox's rule (append only when the remaining bits do not cover the next
    output word; send every word the bits cover) over one frame."""
    n_in, n_out = _ceil_div(n_bits, in_width), _ceil_div(n_bits, out_width)
    offsets, width, count, k = [], 1, 0, 0
    for j in range(n_in):
        offsets.append(count)
        count += min(in_width, n_bits - j * in_width)
        width = max(width, count)
        while k < n_out and count >= min(out_width, n_bits - k * out_width):
            count -= min(out_width, n_bits - k * out_width)
            k += 1
    assert count == 0 and k == n_out, (n_bits, in_width, out_width)
    return offsets, width


class WidthConverter(wiring.Component):
    """Frames of ``n_bits`` bits: stream ``i`` of ``in_width``-bit words to stream ``o`` of
    ``out_width``-bit words, both little-endian, padding ignored on the way in and 0 on the way out."""

    def __init__(self, n_bits: int, in_width: int, out_width: int):
        for name, v in (("n_bits", n_bits), ("in_width", in_width), ("out_width", out_width)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._n_bits, self._in_width, self._out_width = n_bits, in_width, out_width
        super().__init__({
            "i": In(stream.Signature(unsigned(in_width))),
            "o": Out(stream.Signature(unsigned(out_width))),
        })

    @property
    def in_words(self) -> int:
        """Input words a frame."""
        return _ceil_div(self._n_bits, self._in_width)

    @property
    def out_words(self) -> int:
        """Output words a frame."""
        return _ceil_div(self._n_bits, self._out_width)

    def elaborate(self, platform):
        m = Module()
        N, I, O = self._n_bits, self._in_width, self._out_width
        n_in, n_out = self.in_words, self.out_words
        tail_out = N - (n_out - 1) * O       # bits of the last output word
        k = Signal(range(max(n_out, 2)))     # output word of the frame
        k_last = k == n_out - 1
        o_fire = self.o.valid & self.o.ready
        with m.If(o_fire):
            m.d.sync += k.eq(Mux(k_last, 0, k + 1))

        if n_in == 1:
            # --- serializer: slices of the held input word ---------------------------------
            padded = Cat(self.i.payload[:N], Const(0, n_out * O - N))
            m.d.comb += [self.o.payload.eq(padded.word_select(k, O) if n_out > 1 else padded),
                         self.o.valid.eq(self.i.valid),
                         self.i.ready.eq(self.o.ready & k_last)]
            return m

        # --- gearbox --------------------------------------------------------------------------
        offsets, width = gearbox_offsets(N, I, O)
        tail_in = N - (n_in - 1) * I         # frame bits of the last input word
        buf = Signal(width)
        count = Signal(range(width + 1))
        j = Signal(range(max(n_in, 2)))      # input word of the frame
        j_last = j == n_in - 1
        need = Mux(k_last, tail_out, O)      # bits of the next output word
        m.d.comb += [self.o.valid.eq(count >= need),
                     self.o.payload.eq(Mux(k_last, buf[:tail_out], buf[:min(O, width)]))]
        # what remains after this cycle's output handshake, and what the next word needs
        rest = Signal(width)
        rest_count = Signal(range(width + 1))
        next_need = Signal(range(O + 1))
        first_need = tail_out if n_out == 1 else O
        with m.If(o_fire):
            m.d.comb += [rest.eq(Mux(k_last, buf >> tail_out, buf >> O)),
                         rest_count.eq(count - need)]
            if n_out > 1:
                m.d.comb += next_need.eq(Mux(k_last, first_need, Mux(k == n_out - 2, tail_out, O)))
            else:
                m.d.comb += next_need.eq(first_need)
        with m.Else():
            m.d.comb += [rest.eq(buf), rest_count.eq(count), next_need.eq(need)]
        # Input only when the rest cannot make the next word: then the frame still has input
        # words (its remaining bits always form whole words), and ``rest_count`` is the
        # replayed offset of input word ``j``.
        i_fire = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(rest_count < next_need)
        appended = Signal(width)
        with m.Switch(j):
            for idx in range(n_in):
                with m.Case(idx):
                    bits = min(I, N - idx * I)
                    m.d.comb += appended.eq(rest | (self.i.payload[:bits] << offsets[idx]))
        with m.If(i_fire):
            m.d.sync += [buf.eq(appended), count.eq(rest_count + Mux(j_last, tail_in, I)),
                         j.eq(Mux(j_last, 0, j + 1))]
        with m.Else():
            m.d.sync += [buf.eq(rest), count.eq(rest_count)]
        return m
