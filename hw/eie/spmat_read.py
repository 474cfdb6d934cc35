"""Entry stage of a PE: one sparse-matrix entry per cycle from the pointer queue.

The pointer queue's head is the current column ``[start, end)``. Per cycle, if the head is
valid, the stage issues entry ``e`` (``start`` for the column's first entry, then the register
``spm_e``): it reads 64-bit word ``(entry_base + e) >> 3`` of the sparse-matrix SRAM (every
cycle, a whole word: a column straddling words, or the next column, needs no extra cycle) and
remembers the byte ``(entry_base + e) & 7``. After the column's last entry it pops the head, so
the next column's first entry issues in the very next cycle. One cycle later the word arrives
from the block RAM and the byte is selected and registered; so two cycles after the issue
(``spm_`` outputs, registered) the entry byte ``(z << 4) | code`` comes out decoded, with
``first`` (first entry of its column) and the column's activation.

``issue`` is high in every cycle an entry is issued (the PE's busy cycles).

Host port: 32-bit halves of words (``h_*_addr = 2 * word + half``), read latency 1.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import EIEConfig
from .ptr_read import column_layout

__all__ = ["SpmatRead", "EntryLayout"]


class EntryLayout(data.StructLayout):
    """A sparse-matrix entry byte: ``code`` (bits 3:0) indexes the codebook, ``z`` (bits 7:4)
    counts zero rows skipped before it."""

    def __init__(self):
        super().__init__({"code": 4, "z": 4})


class SpmatRead(wiring.Component):
    """Entry stage: issues the pointer-queue head column's entries, one a cycle, and reads them
    from the sparse-matrix SRAM (``spmat_depth`` 64-bit words, 8 entries each).

    Ports: the queue head in (``q_valid``/``q``; ``q_pop`` pops it in the cycle its last entry
    issues), ``entry_base`` (the layer's first entry), ``issue`` (an entry issued this cycle),
    the entry out (``spm_valid``, ``spm_entry`` as :class:`EntryLayout`, ``spm_first``,
    ``spm_a``), ``idle`` (neither stage holds an entry) and the host port (``h_*_addr = 2 *
    word + half``, ``h_r_addr`` -> ``h_r_data`` one cycle later).

    Handshake: an entry issues in every cycle with ``q_valid & ~host_mode``; nothing after this
    stage holds it back. Latency: ``spm_*`` show an entry 2 cycles after its issue. Counts
    nothing itself; ``issue`` is what the PE counts as busy cycles.
    """

    def __init__(self, config: EIEConfig):
        self._config = c = config
        waddr = max(1, (c.spmat_depth - 1).bit_length())
        super().__init__({
            "q_valid": In(1),
            "q": In(column_layout(c)),
            "q_pop": Out(1),
            "entry_base": In(c.ptr_bits),
            "issue": Out(1),
            "spm_valid": Out(1),
            "spm_entry": Out(EntryLayout()),
            "spm_first": Out(1),
            "spm_a": Out(signed(16)),
            "idle": Out(1),
            "host_mode": In(1),
            "h_w_en": In(1),
            "h_w_addr": In(waddr + 1),
            "h_w_data": In(32),
            "h_r_addr": In(waddr + 1),
            "h_r_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        m.submodules.mem = mem = Memory(shape=64, depth=c.spmat_depth, init=[])
        wp = mem.write_port(granularity=32)
        rp = mem.read_port()

        spm_active = Signal()           # inside a column (the head), past its first entry
        spm_e = Signal(c.ptr_bits)      # next entry of the head column when active
        e = Signal(c.ptr_bits)
        nxt = Signal(c.ptr_bits)
        E = Signal(c.ptr_bits + 1)
        m.d.comb += [
            e.eq(Mux(spm_active, spm_e, self.q.start)),
            self.issue.eq(~self.host_mode & self.q_valid),
            nxt.eq(e + 1),
            E.eq(self.entry_base + e),
        ]
        with m.If(self.issue):
            with m.If(nxt == self.q.end):
                m.d.comb += self.q_pop.eq(1)
                m.d.sync += spm_active.eq(0)
            with m.Else():
                m.d.sync += [spm_active.eq(1), spm_e.eq(nxt)]

        spm_byte = Signal(3)
        spm_valid = Signal()
        with m.If(self.host_mode):
            m.d.comb += rp.addr.eq(self.h_r_addr >> 1)
        with m.Else():
            m.d.comb += rp.addr.eq(E >> 3)
        spm_first = Signal()
        spm_a = Signal(signed(16))
        m.d.sync += [
            spm_valid.eq(self.issue),
            spm_byte.eq(E[:3]),
            spm_first.eq(~spm_active),
            spm_a.eq(self.q.a),
        ]
        # second stage: the byte out of the RAM word, registered
        m.d.sync += [
            self.spm_valid.eq(spm_valid),
            self.spm_entry.eq(rp.data.word_select(spm_byte, 8)),
            self.spm_first.eq(spm_first),
            self.spm_a.eq(spm_a),
        ]
        m.d.comb += self.idle.eq(~spm_valid & ~self.spm_valid)

        h_r_half = Signal()
        m.d.sync += h_r_half.eq(self.h_r_addr[0])
        m.d.comb += [
            wp.addr.eq(self.h_w_addr >> 1),
            wp.data.eq(self.h_w_data.replicate(2)),
            wp.en.eq(Mux(self.host_mode & self.h_w_en, Mux(self.h_w_addr[0], 0b10, 0b01), 0)),
            self.h_r_data.eq(rp.data.word_select(h_r_half, 32)),
        ]
        return m

