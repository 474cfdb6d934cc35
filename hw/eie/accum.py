"""Accumulator file of a PE, with its bias SRAM, the same-row bypass and the write-back read.

Each accumulator row holds a valid bit and an ``acc_bits`` value. A row whose valid bit is
clear holds the layer's initial value ``bias << w_frac`` (0 without bias), so no cycle is spent
initialising the file: the first update of a row starts from the bias, later ones from the row.

Accumulate, per cycle: the row of the entry in the ``mul_`` stage is read (accumulator and bias
SRAMs, one cycle of latency); in the ``acc_`` stage the entry adds its product to that value
(two's complement, wrapping at ``acc_bits``) and writes the row back, valid. **Bypass:** if the
previous cycle wrote the very row this entry read (the last entry of a column and the first of
the next one on the same row), the read value is stale, and the stage takes the value written
in the previous cycle instead.

Write-back, per cycle (``wb_issue``, driven by the controller after the PE has drained): row
``wb_row`` is read; one cycle later its value (or the initial value if never updated) goes
through :class:`~eie.hw.eie.writeback.Writeback` and comes out on ``wb_y``/``wb_we``/``wb_addr``
for the destination activation file, and the row is cleared (valid bit 0) for the next layer.

Host port: bias slots (int16, sign-extended on read), read latency 1.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import EIEConfig, W_FRAC_BITS
from .writeback import Writeback

__all__ = ["Accumulator"]


class Accumulator(wiring.Component):
    def __init__(self, config: EIEConfig):
        self._config = c = config
        rbits = max(1, (c.acc_depth - 1).bit_length())
        bbits = max(1, (c.bias_depth - 1).bit_length())
        self._row_layout = data.StructLayout({"value": signed(c.acc_bits), "valid": 1})
        super().__init__({
            "mul_valid": In(1),
            "mul_row": In(rbits),
            "acc_valid": In(1),
            "acc_row": In(rbits),
            "acc_prod": In(signed(32)),
            "bias_base": In(bbits + 1),
            "has_bias": In(1),
            "w_frac": In(W_FRAC_BITS),
            "relu": In(1),
            "wb_issue": In(1),
            "wb_row": In(rbits),
            "wb_row_en": In(1),
            "wb_we": Out(1),
            "wb_addr": Out(rbits),
            "wb_y": Out(signed(16)),
            "host_mode": In(1),
            "h_w_en": In(1),
            "h_w_addr": In(bbits),
            "h_w_data": In(32),
            "h_r_addr": In(bbits),
            "h_r_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        row_layout = self._row_layout
        m.submodules.acc = acc = Memory(shape=row_layout, depth=c.acc_depth, init=[])
        m.submodules.bias = bias = Memory(shape=signed(16), depth=c.bias_depth, init=[])
        aw, ar = acc.write_port(), acc.read_port()
        bw, br = bias.write_port(), bias.read_port()
        m.submodules.wb = wb = Writeback(c.acc_bits)

        # Read addresses: the mul_ stage's row, or the write-back row, or the host's slot.
        rd_row = Signal.like(self.mul_row)
        m.d.comb += rd_row.eq(Mux(self.wb_issue, self.wb_row, self.mul_row))
        m.d.comb += ar.addr.eq(rd_row)
        with m.If(self.host_mode & ~self.wb_issue):
            m.d.comb += br.addr.eq(self.h_r_addr)
        with m.Else():
            m.d.comb += br.addr.eq(self.bias_base + rd_row)
        m.d.comb += [
            bw.addr.eq(self.h_w_addr), bw.data.eq(self.h_w_data[:16]),
            bw.en.eq(self.host_mode & self.h_w_en),
            self.h_r_data.eq(br.data.as_signed()),
        ]

        init = Signal(signed(c.acc_bits))
        m.d.comb += init.eq(Mux(self.has_bias, br.data << self.w_frac, 0))

        # acc_ stage with the bypass.
        acc_last_valid = Signal()
        acc_last_row = Signal.like(self.acc_row)
        acc_last = Signal(row_layout)
        acc_cur = Signal(row_layout)
        acc_base = Signal(signed(c.acc_bits))
        acc_sum = Signal(signed(c.acc_bits))
        acc_bypass = Signal()
        m.d.comb += [
            acc_bypass.eq(acc_last_valid & (acc_last_row == self.acc_row)),
            acc_cur.eq(Mux(acc_bypass, acc_last, ar.data)),
            acc_base.eq(Mux(acc_cur.valid, acc_cur.value, init)),
            acc_sum.eq(acc_base + self.acc_prod),
        ]
        new = Signal(row_layout)
        m.d.comb += [new.value.eq(acc_sum), new.valid.eq(1)]
        m.d.sync += [acc_last_valid.eq(self.acc_valid), acc_last_row.eq(self.acc_row),
                     acc_last.eq(new)]

        # Write-back: read issued in wb_issue, result one cycle later.
        wb1_valid = Signal()
        wb1_en = Signal()
        wb1_row = Signal.like(self.wb_row)
        m.d.sync += [wb1_valid.eq(self.wb_issue), wb1_en.eq(self.wb_row_en), wb1_row.eq(self.wb_row)]
        rd = Signal(row_layout)
        m.d.comb += [
            rd.eq(ar.data),
            wb.acc.eq(Mux(rd.valid, rd.value, init)),
            wb.w_frac.eq(self.w_frac),
            wb.relu.eq(self.relu),
            self.wb_y.eq(wb.y),
            self.wb_we.eq(wb1_valid & wb1_en),
            self.wb_addr.eq(wb1_row),
        ]

        with m.If(self.acc_valid):
            m.d.comb += [aw.addr.eq(self.acc_row), aw.data.eq(new), aw.en.eq(1)]
        with m.Elif(wb1_valid):
            m.d.comb += [aw.addr.eq(wb1_row), aw.data.eq(0), aw.en.eq(1)]
        return m
