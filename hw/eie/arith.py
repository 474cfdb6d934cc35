"""Row, weight and product stages of a PE.

Per cycle, for the entry that comes out of the entry stage (``spm_*``):

* ``mul_`` stage (registered): the local row, from the relative index -- the first entry of a
  column stands on row ``z``, every later one on ``previous row + z + 1`` (a padding entry
  ``(code 0, z 15)`` stands on a row like any other and adds 0); the weight ``codebook[code]``
  from the PE's own copy of every layer's codebook (a small distributed RAM the host writes
  through the controller, ``cbk_w_*``, read at ``(layer_idx, code)``); the activation.
* ``acc_`` stage inputs (registered): the row and the full 32-bit signed product ``a * w``.

``mul_valid``/``mul_row`` are exposed so the accumulator file can be read one cycle ahead.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import EIEConfig
from .spmat_read import EntryLayout

__all__ = ["Arith"]


class Arith(wiring.Component):
    """Row, weight and product of each entry from the entry stage, one entry a cycle.

    Ports: the entry in (``spm_valid``, ``spm_entry``, ``spm_first``, ``spm_a``); the codebook
    writes (``cbk_w_en``, ``cbk_w_addr`` = ``16 * layer + code``, ``cbk_w_data``: see
    :class:`~eie.hw.eie.signatures.LayerParams`) into ``codebook``, the PE's own copy of every
    layer's codebook (``max_layers * 16`` int16 words, read without a clock at ``(layer_idx,
    code)`` in the entry's ``spm_`` cycle: distributed RAM beside the multiplier); the
    ``mul_`` stage out (``mul_valid``, ``mul_row``: the row, ``z`` for a column's first entry,
    else previous row ``+ z + 1``; the accumulator file is read with it); the ``acc_`` stage
    out (``acc_valid``, ``acc_row``, ``acc_prod``: the 32-bit signed ``a * w``); ``idle``
    (neither stage holds an entry).

    Per cycle: an entry on ``spm_*`` gets its row and weight (registered: ``mul_*``); the entry
    in ``mul_`` gets its product (registered: ``acc_*``). So ``mul_*`` show an entry 1 cycle and
    ``acc_*`` 2 cycles after its ``spm_valid``. No handshake (it never stalls); the row, weight
    and activation registers hold in cycles without an entry. Counts nothing.
    """

    def __init__(self, config: EIEConfig):
        self._config = c = config
        rbits = c.row_bits
        super().__init__({
            "spm_valid": In(1),
            "spm_entry": In(EntryLayout()),
            "spm_first": In(1),
            "spm_a": In(signed(16)),
            "cbk_w_en": In(1),
            "cbk_w_addr": In(range(16 * c.max_layers)),
            "cbk_w_data": In(signed(16)),
            "layer_idx": In(c.layer_bits),
            "mul_valid": Out(1),
            "mul_row": Out(rbits),
            "acc_valid": Out(1),
            "acc_row": Out(rbits),
            "acc_prod": Out(signed(32)),
            "idle": Out(1),
        })
        #: every layer's codebook, entry ``c`` of layer ``l`` at ``16 * l + c``
        self.codebook = Memory(shape=signed(16), depth=16 * c.max_layers, init=[])

    def elaborate(self, platform):
        m = Module()
        row = Signal.like(self.mul_row)
        prev_row = Signal.like(self.mul_row)
        mul_w = Signal(signed(16))
        mul_a = Signal(signed(16))
        m.submodules.codebook = self.codebook
        cbk_w, cbk_r = self.codebook.write_port(), self.codebook.read_port(domain="comb")
        m.d.comb += [cbk_w.en.eq(self.cbk_w_en), cbk_w.addr.eq(self.cbk_w_addr),
                     cbk_w.data.eq(self.cbk_w_data),
                     cbk_r.addr.eq(Cat(self.spm_entry.code, self.layer_idx))]
        z = self.spm_entry.z
        m.d.comb += row.eq(Mux(self.spm_first, z, prev_row + z + 1))
        m.d.sync += self.mul_valid.eq(self.spm_valid)
        with m.If(self.spm_valid):
            m.d.sync += [
                prev_row.eq(row),
                self.mul_row.eq(row),
                mul_w.eq(cbk_r.data),
                mul_a.eq(self.spm_a),
            ]
        m.d.sync += [
            self.acc_valid.eq(self.mul_valid),
            self.acc_row.eq(self.mul_row),
            self.acc_prod.eq(mul_a * mul_w),
        ]
        m.d.comb += self.idle.eq(~self.mul_valid & ~self.acc_valid)
        return m


