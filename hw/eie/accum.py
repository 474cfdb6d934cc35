"""Activation/accumulator files of a PE, with the bias SRAM, the same-row bypass and the
write-back on read.

The PE has two files (banks) of ``act_depth`` rows of ``acc_bits`` each, one memory addressed
``bank << act_bits | row``, plus one valid bit per row (flip-flops). A layer reads its inputs
from the source bank and accumulates its outputs, raw, into the destination bank; the next
layer swaps them. The contract's write-back (shift, round-half-even, saturation, ReLU) and the
bias are applied when a row is *read* as an activation, by the LNZD leaf or the host:
``value = valid ? row : bias << w_frac`` (0 without bias), then
:class:`~eie.hw.eie.writeback.Writeback` with the producing layer's ``w_frac``/``relu``
(``src_*`` ports). So no cycle is spent initialising or writing back: a layer's first update of a
row starts from the bias, and ``layer_start`` clears the destination bank's valid bits in one
cycle. Host-written inputs are raw values with the identity transform (``w_frac`` 0, no ReLU,
no bias) that the controller selects for bank 0 at the start of a run.

Accumulate, per cycle: the row of the entry in the ``mul_`` stage is read (file and bias SRAM,
one cycle of latency); in the ``acc_`` stage the entry adds its product to that value (two's
complement, wrapping at ``acc_bits``) and writes the row back, valid. **Bypass:** if the previous
cycle wrote the very row this entry read (the last entry of a column and the first of the next
on the same row), the read value is stale, and the stage takes the value written in the
previous cycle instead.

Read as activation (asynchronous, for the LNZD leaf; the host's reads go through the same path
while idle): ``rd_addr`` (a row of the source bank) -> ``rd_data`` (int16).

Host port: bias slots (int16, sign-extended on read, read latency 1) and file rows (writes set
the row to the sign-extended int16 and its valid bit).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import EIEConfig, W_FRAC_BITS
from .memory_map import MemoryMap
from .writeback import Writeback

__all__ = ["Accumulator"]


class Accumulator(wiring.Component):
    def __init__(self, config: EIEConfig):
        self._config = c = config
        self._ab = ab = MemoryMap(config).act_bits
        rbits = max(1, (c.acc_depth - 1).bit_length())
        bbits = max(1, (c.bias_depth - 1).bit_length())
        super().__init__({
            "src_bank": In(1),
            "layer_start": In(1),
            "mul_valid": In(1),
            "mul_row": In(rbits),
            "acc_valid": In(1),
            "acc_row": In(rbits),
            "acc_prod": In(signed(32)),
            "bias_base": In(bbits + 1),
            "has_bias": In(1),
            "w_frac": In(W_FRAC_BITS),
            "src_bias_base": In(bbits + 1),
            "src_has_bias": In(1),
            "src_w_frac": In(W_FRAC_BITS),
            "src_relu": In(1),
            "rd_addr": In(max(1, ab)),
            "rd_data": Out(signed(16)),
            "host_mode": In(1),
            "h_bias_w_en": In(1),
            "h_act_w_en": In(1),
            "h_w_addr": In(max(bbits, ab + 1)),
            "h_w_data": In(32),
            "h_r_addr": In(max(bbits, ab + 1)),
            "h_bias_r_data": Out(32),
            "h_act_r_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        ab = self._ab
        n_rows = 2 << ab
        m.submodules.file = mem = Memory(shape=signed(c.acc_bits), depth=n_rows, init=[])
        fw, fr, fa = mem.write_port(), mem.read_port(), mem.read_port(domain="comb")
        m.submodules.bias = bias = Memory(shape=signed(16), depth=c.bias_depth, init=[])
        bw, br, ba = bias.write_port(), bias.read_port(), bias.read_port(domain="comb")
        m.submodules.wb = wb = Writeback(c.acc_bits)
        valid = Signal(n_rows)

        dst = Signal()
        m.d.comb += dst.eq(~self.src_bank)

        def file_addr(bank, row):
            r = Signal(max(1, ab))
            m.d.comb += r.eq(row)
            return Cat(r[:ab], bank) if ab else bank

        # ---- accumulate (mul_ stage reads, acc_ stage writes) -----------------------------
        mul_addr = file_addr(dst, self.mul_row)
        acc_addr = Signal(ab + 1)
        m.d.comb += acc_addr.eq(file_addr(dst, self.acc_row))
        m.d.comb += [fr.addr.eq(mul_addr), br.addr.eq(self.bias_base + self.mul_row)]

        init = Signal(signed(c.acc_bits))
        m.d.comb += init.eq(Mux(self.has_bias, br.data << self.w_frac, 0))
        acc_last_valid = Signal()
        acc_last_row = Signal.like(self.acc_row)
        acc_last = Signal(signed(c.acc_bits))
        acc_bypass = Signal()
        acc_cur = Signal(signed(c.acc_bits))
        acc_row_valid = Signal()
        acc_sum = Signal(signed(c.acc_bits))
        m.d.comb += [
            acc_bypass.eq(acc_last_valid & (acc_last_row == self.acc_row)),
            acc_row_valid.eq(valid.bit_select(acc_addr, 1)),
            acc_cur.eq(Mux(acc_bypass, acc_last, Mux(acc_row_valid, fr.data, init))),
            acc_sum.eq(acc_cur + self.acc_prod),
        ]
        m.d.sync += [acc_last_valid.eq(self.acc_valid), acc_last_row.eq(self.acc_row),
                     acc_last.eq(acc_sum)]

        # ---- writes: the acc_ stage, or the host ------------------------------------------
        h_row = Signal(ab + 1)
        m.d.comb += h_row.eq(self.h_w_addr)
        set_bit = Signal(ab + 1)
        do_set = Signal()
        with m.If(self.acc_valid):
            m.d.comb += [fw.addr.eq(acc_addr), fw.data.eq(acc_sum), fw.en.eq(1),
                         set_bit.eq(acc_addr), do_set.eq(1)]
        with m.Elif(self.host_mode & self.h_act_w_en):
            m.d.comb += [fw.addr.eq(h_row), fw.data.eq(self.h_w_data[:16].as_signed()),
                         fw.en.eq(1), set_bit.eq(h_row), do_set.eq(1)]
        clear_mask = Signal(n_rows)
        half = n_rows // 2
        with m.If(self.layer_start):
            m.d.comb += clear_mask.eq(Mux(dst, ((1 << half) - 1) << half, (1 << half) - 1))
        m.d.sync += valid.eq((valid & ~clear_mask) | Mux(do_set, Const(1, n_rows) << set_bit, 0))

        # ---- read as activation: the LNZD leaf, or the host ---------------------------------
        rd_full = Signal(ab + 1)
        with m.If(self.host_mode):
            m.d.comb += rd_full.eq(self.h_r_addr)
        with m.Else():
            m.d.comb += rd_full.eq(file_addr(self.src_bank, self.rd_addr))
        m.d.comb += [
            fa.addr.eq(rd_full),
            ba.addr.eq(self.src_bias_base + rd_full[:ab] if ab else self.src_bias_base),
            wb.acc.eq(Mux(valid.bit_select(rd_full, 1), fa.data,
                          Mux(self.src_has_bias, ba.data << self.src_w_frac, 0))),
            wb.w_frac.eq(self.src_w_frac),
            wb.relu.eq(self.src_relu),
            self.rd_data.eq(wb.y),
        ]
        h_act = Signal(signed(16))
        m.d.sync += h_act.eq(wb.y)
        m.d.comb += self.h_act_r_data.eq(h_act)

        # ---- host bias port -------------------------------------------------------------------
        m.d.comb += [
            bw.addr.eq(self.h_w_addr), bw.data.eq(self.h_w_data[:16]),
            bw.en.eq(self.host_mode & self.h_bias_w_en),
        ]
        with m.If(self.host_mode):
            m.d.comb += br.addr.eq(self.h_r_addr)
        m.d.comb += self.h_bias_r_data.eq(br.data)
        return m
