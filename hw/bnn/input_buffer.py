"""Double-buffered input buffer of an MVTU: two banks of ``sf`` words of ``simd`` bits in a memory.

FINN's MVTU keeps its input vector in such a buffer and reads one ``SIMD``-bit word a cycle as
the fold walks it, so a wide input (784 bits for MNIST) lives in block RAM, not in flip-flops.

Write side, stream ``i``: a sample arrives as ``sf`` words in order (synapse fold 0 first). A word
is taken (``i.ready``) whenever the write bank is empty; it is written at ``word index`` of that
bank; the last word marks the bank full and moves writing to the other bank.

Read side: ``valid`` says a full bank is waiting at the read bank, counting a bank whose last word
is written in this very cycle (so a sample written just in time starts without a bubble; its
words can be read from the next cycle on). The
consumer sets ``rd_en`` with ``rd_index`` (a synapse fold) to read that word of the read bank; the
word is on ``rd_data`` the next cycle (a synchronous block-RAM read; with ``rd_en`` low the read
port and ``rd_data`` hold). ``valid_other`` is the same for the other bank: the sample that
follows the one being read. ``release`` (with the read of the sample's last word, or later) empties
the read bank and moves reading to the other bank.

Per cycle: at most one word written, one word read, one release. Addresses are ``bank`` on top of
the word index (``2 * 2**ceil(log2(sf))`` words; a 98-word TFC sample of 8-bit words takes 256
words of one iCE40 block RAM).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .bram import bram_memory, bram_read

__all__ = ["InputBuffer"]


class InputBuffer(wiring.Component):
    """Two banks of ``sf`` ``simd``-bit words: a sample written word by word on ``i`` while the
    previous one is read word by word through ``rd_*``."""

    def __init__(self, sf: int, simd: int):
        for name, v in (("sf", sf), ("simd", simd)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._sf, self._simd = sf, simd
        super().__init__({
            "i": In(stream.Signature(unsigned(simd))),
            "valid": Out(1),
            "valid_other": Out(1),
            "rd_en": In(1),
            "rd_index": In(range(max(sf, 2))),
            "rd_data": Out(simd),
            "release": In(1),
        })

    @property
    def sf(self) -> int:
        return self._sf

    @property
    def depth(self) -> int:
        """Memory words: two banks of ``sf`` words rounded up to a power of two."""
        return 2 << (self._sf - 1).bit_length()

    def elaborate(self, platform):
        m = Module()
        sf = self._sf
        ibits = (sf - 1).bit_length()
        # The writer only writes a bank that is not full and the reader only reads a full one:
        # never the same word in one cycle, so the read needs no collision logic (bram_read).
        mem = m.submodules.mem = bram_memory(shape=unsigned(self._simd), depth=self.depth)
        wr = mem.write_port()

        full = Signal(2)              # bank holds a complete sample not yet released
        w_bank = Signal()
        w_idx = Signal(range(max(sf, 2)))
        r_bank = Signal()
        w_last = w_idx == sf - 1
        w_fire = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(~full.bit_select(w_bank, 1)),
                     wr.addr.eq(Cat(w_idx[:ibits], w_bank) if ibits else w_bank),
                     wr.data.eq(self.i.payload), wr.en.eq(w_fire)]
        completing = Signal(2)        # the bank whose last word is written this cycle
        with m.If(w_fire):
            with m.If(w_last):
                m.d.sync += [w_idx.eq(0), w_bank.eq(~w_bank)]
                m.d.comb += completing.bit_select(w_bank, 1).eq(1)
            with m.Else():
                m.d.sync += w_idx.eq(w_idx + 1)
        released = Signal(2)
        with m.If(self.release):
            m.d.sync += r_bank.eq(~r_bank)
            m.d.comb += released.bit_select(r_bank, 1).eq(1)
        m.d.sync += full.eq((full | completing) & ~released)
        ready_banks = full | completing
        m.d.comb += [self.valid.eq(ready_banks.bit_select(r_bank, 1)),
                     self.valid_other.eq(ready_banks.bit_select(~r_bank, 1))]

        rd_addr = Cat(self.rd_index[:ibits], r_bank) if ibits else r_bank
        m.d.comb += self.rd_data.eq(bram_read(m, mem, addr=rd_addr, en=self.rd_en, name="rd_word"))
        return m
