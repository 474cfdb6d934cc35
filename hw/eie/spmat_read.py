"""Entry stage of a PE: one sparse-matrix entry per cycle from the pointer queue.

The pointer queue's head is the current column ``[start, end)``, entry addresses in the
sparse-matrix SRAM (the pointer stage added the layer's ``entry_base``). Per cycle, if the head
is valid, the stage issues entry ``e`` (``start`` for the column's first entry, then the
register ``spm_e``): it reads the 32-bit half-word ``e >> 2`` of the sparse-matrix SRAM (every
cycle: a column straddling words, or the next column, needs no extra cycle; no adder between
the queue's head and the SRAM's address) and remembers the byte ``e & 3``. After the column's
last entry it pops the head, so the next column's first entry issues in the very next cycle.
One cycle later the half-word arrives from the block RAM and is registered whole, with the
byte's index (nothing but a flip-flop behind the RAM's slow clock-to-output: the byte select
there was the 4-PE core's and the 16-PE board build's critical path); so two cycles after the
issue (``spm_`` outputs) the entry byte ``(z << 4) | code`` comes out decoded, with ``first``
(first entry of its column) and the column's activation: every ``spm_`` output is a register
but ``spm_entry``, the 4:1 byte select of two registers (the row and weight stage's first
logic level). The SRAM holds the image's
64-bit words as two 32-bit halves, low half first (``2 * word + half``), the host's own
addressing.

``issue`` is high in every cycle an entry is issued (the PE's busy cycles).

Host port (``host``): 32-bit halves of words (``w_addr``/``r_addr`` ``= 2 * word + half``), read
latency 1.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import EIEConfig
from .memory_map import HOST_WRITTEN
from .ptr_read import column_layout
from .signatures import HostPort

__all__ = ["SpmatRead", "EntryLayout"]


class EntryLayout(data.StructLayout):
    """A sparse-matrix entry byte: ``code`` (bits 3:0) indexes the codebook, ``z`` (bits 7:4)
    counts zero rows skipped before it."""

    def __init__(self):
        super().__init__({"code": 4, "z": 4})


class SpmatRead(wiring.Component):
    """Entry stage: issues the pointer-queue head column's entries, one a cycle, and reads them
    from the sparse-matrix SRAM (``spmat_depth`` 64-bit words, 8 entries each, stored as
    ``2 * spmat_depth`` 32-bit halves).

    Ports: ``q`` (in, a stream of :func:`~eie.hw.eie.ptr_read.column_layout`: the pointer
    queue's head, entry addresses; ``q.ready`` pops it in the cycle its last entry issues),
    ``issue`` (an entry issued this cycle), the entry out (``spm_valid``,
    ``spm_entry`` as :class:`EntryLayout`, ``spm_first``, ``spm_a``; no handshake), ``idle``
    (neither stage holds an entry) and ``host`` (:class:`~eie.hw.eie.signatures.HostPort`,
    ``2 * word + half``; ``r_addr`` -> ``r_data`` one cycle later).

    Per cycle: an entry issues when ``q.valid`` (its word is read; the queue offers nothing in
    host mode, which the PE enters only with every stage idle, so ``host.mode`` stays out of
    the decision and selects only the RAM's address); one cycle later
    the word arrives and is registered with the byte's index; one more and it is on ``spm_*``
    (``spm_entry`` selected from those registers without a clock). So
    ``spm_*`` show an entry 2 cycles after its issue; nothing after this stage holds it back.
    Counts nothing itself; ``issue`` is what the PE counts as busy cycles.
    """

    def __init__(self, config: EIEConfig):
        self._config = c = config
        super().__init__({
            "q": In(stream.Signature(column_layout(c))),
            "issue": Out(1),
            "spm_valid": Out(1),
            "spm_entry": Out(EntryLayout()),
            "spm_first": Out(1),
            "spm_a": Out(signed(16)),
            "idle": Out(1),
            "idle_next": Out(1),
            "last_layer": In(1),
            "host": In(HostPort(c.spmat_half_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        m.submodules.mem = mem = Memory(shape=32, depth=2 * c.spmat_depth, init=[],
                                        attrs=HOST_WRITTEN)
        wp = mem.write_port()
        rp = mem.read_port()

        q, host = self.q, self.host
        spm_active = Signal()           # inside a column (the head), past its first entry
        spm_e = Signal(c.ptr_bits)      # next entry of the head column when active
        spm_end = Signal(c.ptr_bits)    # the head column's end when active
        spm_last = Signal()             # spm_e is the head column's last entry, when active
        e = Signal(c.ptr_bits)
        nxt = Signal(c.ptr_bits)
        finish = Signal()               # the entry issued now is its column's last
        m.d.comb += [
            e.eq(Mux(spm_active, spm_e, q.payload.start)),
            self.issue.eq(q.valid),
            nxt.eq(e + 1),
            # from registers and the head's flags only (no adder behind the queue's read)
            finish.eq(Mux(spm_active, spm_last, q.payload.single)),
        ]
        # the head is taken as its last entry issues: ``finish`` itself (an entry issues in
        # every cycle a column is offered, and inside a column one is always offered), so that
        # the queue's pop and store decisions do not also wait for the offer
        m.d.comb += q.ready.eq(finish)
        with m.If(self.issue):
            with m.If(finish):
                m.d.sync += spm_active.eq(0)
            with m.Else():
                m.d.sync += [spm_active.eq(1), spm_e.eq(nxt),
                             spm_last.eq(Mux(spm_active, spm_e + 2 == spm_end, q.payload.two))]
                with m.If(~spm_active):
                    m.d.sync += spm_end.eq(q.payload.end)

        spm_byte = Signal(2)
        spm_valid = Signal()
        with m.If(host.mode):
            m.d.comb += rp.addr.eq(host.r_addr)
        with m.Else():
            m.d.comb += rp.addr.eq(e >> 2)
        spm_first = Signal()
        spm_a = Signal(signed(16))
        m.d.sync += [
            spm_valid.eq(self.issue),
            spm_byte.eq(e[:2]),
            spm_first.eq(~spm_active),
            spm_a.eq(q.payload.a),
        ]
        # second stage: the RAM's half-word registered whole, with the byte's index; the byte
        # is selected from the two registers (a multiplexer in front of the next stage's logic,
        # not behind the RAM's output)
        spm_word = Signal(32)
        spm_word_byte = Signal(2)
        m.d.sync += [
            self.spm_valid.eq(spm_valid),
            spm_word.eq(rp.data),
            spm_word_byte.eq(spm_byte),
            self.spm_first.eq(spm_first),
            self.spm_a.eq(spm_a),
        ]
        m.d.comb += self.spm_entry.eq(spm_word.word_select(spm_word_byte, 8))
        m.d.comb += [self.idle.eq(~spm_valid & ~self.spm_valid),
                     # idle of the next cycle: no entry in the stage then, but inside a run one
                     # in the second register that is not its column's first (it writes a row
                     # >= 1, which the next layer reads no sooner than its second cycle, a cycle
                     # or less before that write lands: the read pipeline forwards it); the run's
                     # last layer drains the stage (no write after ``busy`` falls)
                     self.idle_next.eq(~self.issue
                                       & ~(spm_valid & (spm_first | self.last_layer)))]

        m.d.comb += [
            wp.addr.eq(host.w_addr),
            wp.data.eq(host.w_data),
            wp.en.eq(host.mode & host.w_en),
            host.r_data.eq(rp.data),
        ]
        return m

