"""Activation/accumulator files of a PE, with the bias SRAM, the same-row bypass and the
pipelined write-back on read.

The PE has two files (banks) of ``act_depth`` rows of ``acc_bits`` each, one memory addressed
``bank << act_bits | row``, plus one valid bit per accumulator row (flip-flops; rows at or
past ``acc_depth`` are never outputs, only host-written inputs, and count as valid). A layer
reads its inputs from the source bank and accumulates its outputs, raw, into the destination bank; the next
layer swaps them. The bias and the contract's write-back (shift, round-half-even, saturation,
ReLU) are applied when a row is *read* as an activation, by the LNZD leaf or the host:
``value = (valid ? row : 0) + (bias << w_frac)`` (modulo ``2**acc_bits``, which equals starting
the accumulation at ``bias << w_frac`` because the accumulator wraps), then
:class:`~eie.hw.eie.writeback.Writeback` with the producing layer's ``w_frac``/``relu``
(``src`` ports). So no cycle is spent initialising or writing back rows, and
``layer_start`` clears the destination bank's valid bits in one cycle. Host-written inputs are
raw values with the identity transform (``w_frac`` 0, no ReLU, no bias) that the controller
selects for bank 0 at the start of a run.

Every memory read is synchronous, so the file is two block RAMs (one per read port, each
with the write port) and nothing is replicated into LUT RAM.

Accumulate, per cycle (three stages, one entry a cycle): in the ``mul_`` stage the entry's row
is read (file word and valid bit); in the ``acc_`` stage the word arrives from the block RAM and
is registered with the product (0 for a row not yet written in this layer); in the ``wr_``
stage the product is added (two's complement, wrapping at ``acc_bits``) and the row is written
back, valid. **Bypass:** the two entries ahead of this one wrote in the cycle of its read and
the cycle after, so its RAM word may be stale: if the previous entry wrote the same row, its
sum is taken, else if the one before it did, that sum, else the RAM word. Nothing but a
register follows a RAM's output (the ECP5 block RAM's clock-to-output is over 5 ns).

Read as activation (the ``act`` stream, for the LNZD leaf and the host): in every cycle the
read pipeline advances by one: the address is ``act.addr`` (a row of the source bank; in host
mode the full ``host.r_addr``), stage 1 holds the file word, its valid bit and the bias (the RAM
outputs), stage 2 registers them, stage 3 the biased sum, stages 4 and 5 the write-back.
``act.data`` shows the int16 activation of the address presented :data:`ACT_READ_LATENCY` cycles
earlier. The source bank does not change during a layer, so a consumer that keeps the read
address ``ACT_READ_LATENCY`` rows ahead sees a new row in every cycle.

Host port (``host``, with regions): bias slots (region ``BIAS``: int16, sign-extended on read,
read latency 1 on ``host.r_data``: the bias memory's single read port takes ``host.r_addr``
while ``host.r_region`` is ``BIAS``) and file rows (region ``ACT``: writes set the row to the
sign-extended int16 and its valid bit; reads are the stream above). ``w_en`` may be high only
in host mode (the PE gates its request register with the mode): a file row's write is taken
without another look at ``mode``, which reaches every address multiplexer of the PE.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from .config import EIEConfig
from .memory_map import ACT_READ_LATENCY, HOST_WRITTEN, Region
from .signatures import ActRead, HostPort, SourceParams
from .writeback import WRITEBACK_LATENCY, Writeback

__all__ = ["Accumulator", "ACT_READ_LATENCY"]

# Advancing cycles from an activation read address to its int16 value on ``rd_data``:
# the memory read, the bias addition, and the write-back stages.
assert ACT_READ_LATENCY == 3 + WRITEBACK_LATENCY


class Accumulator(wiring.Component):
    """A PE's two activation/accumulator files (one memory, ``bank << act_bits | row``), the
    accumulator rows' valid bits, the bias SRAM and the pipelined write-back on read.

    Ports: ``src`` (:class:`~eie.hw.eie.signatures.SourceParams`: the source bank, the
    destination is the other one, and the write-back of the layer that produced it: ``bank``
    acts on reads in the cycle it changes and as the destination from the cycle after
    (registered here: no entry may enter ``mul_`` in the cycle it changes), ``bias_base``,
    ``has_bias``, ``w_frac``, ``relu`` from the cycle after, registered here; the read
    pipeline needs the last three two cycles after a read starts, and the controller changes
    ``bias_base`` at least a cycle before the first read that needs it);
    ``layer_start`` (clears the destination's valid bits; at least a cycle after the banks
    swap: the PE's comes two cycles after the controller's ``LSTART``, which follows the
    swap); the accumulate inputs (``mul_row``,
    read in its cycle, then ``acc_valid``/``acc_row``/``acc_prod`` one cycle later;
    ``mul_valid`` is unused: the file is read every cycle); ``act``
    (:class:`~eie.hw.eie.signatures.ActRead`, the activation stream); ``host``
    (:class:`~eie.hw.eie.signatures.HostPort` with regions: ``BIAS`` and ``ACT`` writes,
    ``BIAS`` reads on ``r_data``).

    Per cycle: the row on ``mul_row`` is read (word and valid bit); the entry on ``acc_*`` is
    registered with the word that arrived; the entry registered a cycle earlier is added and
    written back (so an entry is written in the cycle after its ``acc_valid``, two after its
    ``mul_row``); the read pipeline advances, so ``act.data`` is the biased, written-back int16
    of the row addressed :data:`ACT_READ_LATENCY` cycles earlier; a bias read takes 1 cycle.
    No handshake: it takes an entry every cycle, never stalls. Counts nothing.
    """

    def __init__(self, config: EIEConfig):
        self._config = c = config
        super().__init__({
            "src": In(SourceParams(c)),
            "layer_start": In(1),
            "mul_valid": In(1),
            "mul_row": In(c.row_bits),
            "acc_valid": In(1),
            "acc_row": In(c.row_bits),
            "acc_prod": In(signed(32)),
            "act": In(ActRead(c.act_addr_bits)),
            "host": In(HostPort(max(c.bias_slot_bits, c.act_file_bits), regions=True)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        ab = c.act_index_bits
        src, act, host = self.src, self.act, self.host
        n_rows = 2 << ab
        m.submodules.file = mem = Memory(shape=signed(c.acc_bits), depth=n_rows, init=[])
        fw, fr, fa = mem.write_port(), mem.read_port(), mem.read_port()
        m.submodules.bias = bias = Memory(shape=signed(16), depth=c.bias_depth, init=[],
                                          attrs=HOST_WRITTEN)
        bw, ba = bias.write_port(), bias.read_port()
        m.submodules.wb = wb = Writeback(c.acc_bits)

        # the destination bank, a register of this PE's own (the source bank comes from its
        # group's copy in the CCU; its route to the valid bits' clear was the 16-PE board
        # build's critical path at 100 MHz, 9.2 ns of it, 81.8 MHz): the accumulate stages and
        # the clear take it a cycle after the banks swap. No entry enters ``mul_`` in that
        # cycle, and ``layer_start`` comes later (see the class docstring); the entries still
        # in flight carry their bank (below).
        dst = Signal(init=1)              # (from reset: the source bank's reset value is 0)
        m.d.sync += dst.eq(~src.bank)

        # One valid bit per accumulator row (rows < acc_depth of each bank, bank-major); a row
        # at or past acc_depth is never an output, only a host-written input: always valid.
        nv = c.acc_depth
        valid = Signal(2 * nv)

        def valid_of(bank, row):
            v = Signal()
            r = Signal(c.act_addr_bits)
            m.d.comb += r.eq(row)
            idx = Signal(range(2 * nv))
            m.d.comb += idx.eq(bank * nv + r)
            m.d.comb += v.eq(Mux(r < nv, valid.bit_select(idx, 1), 1))
            return v

        def file_addr(bank, row):
            r = Signal(c.act_addr_bits)
            m.d.comb += r.eq(row)
            return Cat(r[:ab], bank) if ab else bank

        # ---- accumulate: mul_ stage reads, acc_ stage registers, wr_ stage adds and writes --
        mul_addr = Signal(ab + 1)
        m.d.comb += [mul_addr.eq(file_addr(dst, self.mul_row)), fr.addr.eq(mul_addr)]
        mul_row_valid = Signal()          # the valid bit, read with the file word
        m.d.sync += mul_row_valid.eq(valid_of(dst, self.mul_row))
        # acc_ stage: the word arrives from the RAM and is registered with the product
        # Each entry carries its destination bank from its mul_ cycle on, so the entries still
        # in flight when a layer ends (mul_, acc_, wr_) write into that layer's destination
        # after the banks swap.
        acc_bank = Signal()
        m.d.sync += acc_bank.eq(dst)
        # the wr_ stage's valid flag, and a copy of it for the host write's priority (both
        # ``fanout_*``: kept apart by the board build). The flag selects the file's write port
        # (some forty multiplexers); its route from there to the host's write gate and the
        # valid bits was the 8-PE board build's critical path at 100 MHz (91.7 MHz)
        wr_valid = Signal(name="fanout_wr_valid")
        wr_valid_h = Signal(name="fanout_wr_valid_h")
        wr_row = Signal.like(self.acc_row)
        wr_bank = Signal()
        wr_prod = Signal(signed(32))
        wr_old = Signal(signed(c.acc_bits))
        m.d.sync += [wr_valid.eq(self.acc_valid), wr_valid_h.eq(self.acc_valid),
                     wr_row.eq(self.acc_row), wr_bank.eq(acc_bank),
                     wr_prod.eq(self.acc_prod), wr_old.eq(Mux(mul_row_valid, fr.data, 0))]
        # wr_ stage: the two previous entries' writes were not yet in the RAM when this entry
        # read it (in cycles t and t + 1 of its read in t): take the newer of them on a match.
        l1_valid = Signal()
        l1_row = Signal.like(self.acc_row)
        l1_sum, l2_sum = Signal(signed(c.acc_bits)), Signal(signed(c.acc_bits))
        wr_cur = Signal(signed(c.acc_bits))
        acc_sum = Signal(signed(c.acc_bits))
        # the matches are compared a cycle ahead, as the entry is registered into wr_ (with the
        # entries then in wr_ and l1, which move to l1 and l2): the sum's multiplexer starts
        # from two flip-flops, not from the row comparisons (1-PE core's critical path)
        hit1, hit2 = Signal(name="hit1"), Signal(name="hit2")
        m.d.sync += [hit1.eq(wr_valid & (wr_row == self.acc_row)),
                     hit2.eq(l1_valid & (l1_row == self.acc_row))]
        with m.If(hit1):
            m.d.comb += wr_cur.eq(l1_sum)
        with m.Elif(hit2):
            m.d.comb += wr_cur.eq(l2_sum)
        with m.Else():
            m.d.comb += wr_cur.eq(wr_old)
        m.d.comb += acc_sum.eq(wr_cur + wr_prod)
        m.d.sync += [l1_valid.eq(wr_valid), l1_row.eq(wr_row), l1_sum.eq(acc_sum),
                     l2_sum.eq(l1_sum)]
        acc_addr = Signal(ab + 1)
        m.d.comb += acc_addr.eq(file_addr(wr_bank, wr_row))
        l1_addr = Signal(ab + 1)          # the file address the write of the last cycle went to
        m.d.sync += l1_addr.eq(acc_addr)

        # ---- writes: the acc_ stage, or the host ------------------------------------------
        h_bias_w_en = Signal()
        h_act_w_en = Signal()
        h_r_bias = Signal()
        m.d.comb += [h_bias_w_en.eq(host.w_en & (host.w_region == Region.BIAS)),
                     h_act_w_en.eq(host.w_en & (host.w_region == Region.ACT)),
                     h_r_bias.eq(host.r_region == Region.BIAS)]
        h_row = Signal(ab + 1)
        m.d.comb += h_row.eq(host.w_addr)
        h_set = Signal()                  # the host's write of a file row is taken
        # (``host.w_en`` only in host mode: the PE's request register is gated with it)
        m.d.comb += h_set.eq(h_act_w_en & ~wr_valid_h)
        with m.If(wr_valid):
            m.d.comb += [fw.addr.eq(acc_addr), fw.data.eq(acc_sum), fw.en.eq(1)]
        with m.Elif(h_set):
            m.d.comb += [fw.addr.eq(h_row), fw.data.eq(host.w_data[:16].as_signed()),
                         fw.en.eq(1)]
        # Valid bits: one LUT a bit (keep, clear with layer_start, set by a write), the row of
        # each writer (the wr_ stage's, the host's) decoded from its own registers: no
        # multiplexer between the writers before the decode (the host's write enable, through
        # the host-mode gate and the wr_ stage's priority, was the 2-PE core's critical path);
        # the wr_ stage's decode is itself registered
        def decode(row):
            """``(hi, lo)``: one-hot of the row's high bits per bank, and of its low bits."""
            r = row[:ab] if ab else Const(0, 1)
            lo_n = min(4, 1 << len(r))
            lo_bits = (lo_n - 1).bit_length()
            lo = Signal(lo_n)
            hi = Signal(2 * (-(-nv // lo_n)))
            for i in range(lo_n):
                m.d.comb += lo[i].eq(r[:lo_bits] == i if lo_bits else 1)
            for bk in range(2):
                for h in range(len(hi) // 2):
                    m.d.comb += hi[bk * (len(hi) // 2) + h].eq(
                        (row[ab] == bk) & ((r >> lo_bits) == h))
            return hi, lo, lo_n

        # the wr_ stage's row decoded a cycle ahead, from the acc_ stage's, and registered with it
        # (zero when the stage writes nothing: its valid flag is not behind the register)
        hi_a_next, lo_a_next, lo_n = decode(file_addr(acc_bank, self.acc_row))
        hi_a, lo_a = Signal.like(hi_a_next), Signal.like(lo_a_next)
        m.d.sync += [hi_a.eq(Mux(self.acc_valid, hi_a_next, 0)),
                     lo_a.eq(Mux(self.acc_valid, lo_a_next, 0))]
        hi_h, lo_h, _ = decode(h_row)
        # the two writers never set a bit in one cycle (the host's write is taken only without
        # a wr_ stage write), so their decodes merge into one (hi, lo) pair before the bits:
        # one LUT a bit, as with one writer
        hi = Signal.like(hi_a)
        lo = Signal.like(lo_a)
        m.d.comb += [hi.eq(hi_a | Mux(h_set, hi_h, 0)),
                     lo.eq(lo_a | Mux(h_set, lo_h, 0))]
        for b in range(2):
            clr = self.layer_start & (dst == b)
            for r in range(nv):
                bit = valid[b * nv + r]
                h = b * (len(hi) // 2) + r // lo_n
                m.d.sync += bit.eq((bit & ~clr) | (hi[h] & lo[r % lo_n]))

        # ---- read as activation: a pipeline that advances in every cycle -------------------
        rd_full = Signal(ab + 1)
        with m.If(host.mode):
            m.d.comb += rd_full.eq(host.r_addr)
        with m.Else():
            m.d.comb += rd_full.eq(file_addr(src.bank, act.addr))
        # the bias slot of the row read: an adder for each source, the host-mode multiplexer
        # behind them (``host.mode`` reaches every address multiplexer of the PE: no adder
        # after it on the way to the bias RAM)
        # ``bias_base`` is this PE's registered copy: the controller's register reaches every
        # PE, and its route in front of the adder and the bias RAM's read was the 4-PE core's
        # critical path (the controller changes it as the producing layer enters DRAIN, so the
        # copy is in time for the next layer's first read, LSTART)
        bias_base = Signal.like(src.bias_base)
        m.d.sync += bias_base.eq(src.bias_base)
        if ab:
            bias_row_act = bias_base + act.addr[:ab]
            bias_row_host = bias_base + host.r_addr[:ab]
        else:
            bias_row_act = bias_row_host = bias_base
        with m.If(host.mode):
            m.d.comb += ba.addr.eq(Mux(h_r_bias, host.r_addr, bias_row_host))
        with m.Else():
            m.d.comb += ba.addr.eq(bias_row_act)
        m.d.comb += fa.addr.eq(rd_full)
        # Forwarding: a row written in the cycle it is read (the RAM returns the old word) or
        # in the cycle after takes the written sum (``l2``, ``l1``: registered) in stage 3. So
        # the writes of a finished layer's last entries (at most 2 cycles behind its end) reach
        # the next layer's first reads (the pipeline advances in every cycle).
        s1_valid = Signal()
        s1_addr = Signal(ab + 1)
        s2_addr = Signal(ab + 1)
        fwd1 = Signal()
        fwd2 = Signal()
        m.d.comb += fwd1.eq(l1_valid & (l1_addr == s1_addr))
        # stage 2's match compared a cycle ahead, registered: the write then in wr_ (l1 in the
        # next cycle) against the row then in stage 1 (stage 2 in the next cycle), so that the
        # biased sum's multiplexer starts from a flip-flop (the 2-PE core's critical path:
        # l1_valid -> the address comparison -> the select -> the stage-3 adder)
        m.d.sync += fwd2.eq(wr_valid & (acc_addr == s1_addr))
        # stage 1: file word and bias slot (the memories' outputs), and the row's valid bit,
        # looked up now from the registered address (not in the read's cycle, behind the read
        # address's route from its group's register: the 8-PE board build's critical path at
        # 100 MHz, 88.4 MHz, through the four levels of the bit's multiplexer). The bits now
        # differ from those of the read's cycle only at a row set in that cycle: by the wr_
        # stage (then ``fwd1`` takes the written sum instead) or by the host (which writes and
        # reads a row at the same offset from its request, and never both in one: not the
        # row it reads); a clear (``layer_start``) is of the destination bank, never read.
        m.d.sync += [s1_addr.eq(rd_full), s2_addr.eq(s1_addr)]
        m.d.comb += s1_valid.eq(valid_of(s1_addr[ab], s1_addr[:ab] if ab else Const(0, 1)))
        # The write-back parameters of the source, registered here (the CCU's copy reaches every
        # PE, and the shifts behind it were the 4-PE core's critical path): they change only
        # as a layer starts (LSTART) and the new layer's first row reaches stage 2 a cycle
        # after it, so the copy, a cycle behind, is in time.
        w_frac = Signal.like(src.w_frac)
        relu = Signal()
        has_bias = Signal()
        m.d.sync += [w_frac.eq(src.w_frac), relu.eq(src.relu), has_bias.eq(src.has_bias)]
        # ``bias << w_frac`` in two steps, one a stage: by ``w_frac``'s multiple of 8 in stage 2
        # (a 4:1 multiplexer behind the bias RAM), by the rest in stage 3 (in front of the
        # adder), so that neither stage has the whole shift in series with what it follows (the
        # 2-PE board build's critical path at 100 MHz: ``w_frac`` -> the five-level shift -> the
        # stage-3 adder). Exact modulo ``2**acc_bits``: a left shift's low bits do not depend
        # on the bits it drops.
        coarse = Cat(Const(0, 3), w_frac[3:])   # 0, 8, 16 or 24
        fine = w_frac[:3]
        # stage 2: registered right behind the RAMs (their clock-to-output is slow)
        s2_raw = Signal(signed(c.acc_bits))
        # the row's valid bit masks the word in stage 3, in the adder's input multiplexer (with
        # the two forwardings'), not behind the RAM in stage 2: the bit's multiplexer from the
        # registered address and the RAM's word then meet only at that register (stage 1 was
        # the 8-PE board build's critical path at 100 MHz, 91.3 MHz: the address register ->
        # the bit's four levels -> the word's mask -> ``s2_raw``)
        s2_valid = Signal()
        s2_bias = Signal(signed(c.acc_bits))
        # and the forwarding of a row written in its read's cycle alike: ``fwd1`` registered, the
        # written sum then in ``l2_sum``, taken in stage 3 (the comparison's select of 32
        # multiplexers behind the RAM was the 16-PE board build's critical path at 100 MHz,
        # 87.9 MHz: ``s1_addr`` -> the row comparison -> ``s2_raw``); the RAM's word is
        # registered as it comes
        fwd1_d = Signal()
        m.d.sync += [s2_raw.eq(fa.data), s2_valid.eq(s1_valid), fwd1_d.eq(fwd1),
                     s2_bias.eq(Mux(has_bias, ba.data.as_signed() << coarse, 0))]
        # stage 3: raw + (bias << w_frac), wrapping at acc_bits
        s3_sum = Signal(signed(c.acc_bits))
        s3_bias = Signal(signed(c.acc_bits))
        m.d.comb += s3_bias.eq(s2_bias << fine)
        m.d.sync += s3_sum.eq(Mux(fwd2, l1_sum, Mux(fwd1_d, l2_sum, Mux(s2_valid, s2_raw, 0)))
                              + s3_bias)
        # stages 4 and 5: the write-back
        m.d.comb += [
            wb.en.eq(1),
            wb.acc.eq(s3_sum),
            wb.w_frac.eq(w_frac),
            wb.relu.eq(relu),
            act.data.eq(wb.y),
            act.nz.eq(wb.nz),
        ]

        # ---- host bias port -------------------------------------------------------------------
        m.d.comb += [
            bw.addr.eq(host.w_addr), bw.data.eq(host.w_data[:16]),
            bw.en.eq(host.mode & h_bias_w_en),
            host.r_data.eq(ba.data),
        ]
        return m
