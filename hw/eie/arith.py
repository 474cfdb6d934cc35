"""Row, weight and product stages of a PE.

Per cycle, for the entry that comes out of the entry stage (``spm_*``):

* ``mul_`` stage (registered): the local row, from the relative index -- the first entry of a
  column stands on row ``z``, every later one on ``previous row + z + 1`` (a padding entry
  ``(code 0, z 15)`` stands on a row like any other and adds 0); the weight ``codebook[code]``
  from the PE's own copy of the layer's codebook (registers written from the controller's
  codebook stream, ``cb_*``); the activation.
* ``acc_`` stage inputs (registered): the row and the full 32-bit signed product ``a * w``.

``mul_valid``/``mul_row`` are exposed so the accumulator file can be read one cycle ahead.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import EIEConfig
from .signatures import CODEBOOK_WORDS
from .spmat_read import EntryLayout

__all__ = ["Arith"]


class Arith(wiring.Component):
    """Row, weight and product of each entry from the entry stage, one entry a cycle.

    Ports: the entry in (``spm_valid``, ``spm_entry``, ``spm_first``, ``spm_a``); the layer's
    codebook stream (``cb_valid``, ``cb_word``, ``cb_data``: :class:`~eie.hw.eie.signatures.
    LayerParams`), kept in ``codebook`` (16 int16 registers; a word is written in the cycle
    after it shows, and entries index it by ``code`` in their ``spm_`` cycle); the
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
            "cb_valid": In(1),
            "cb_word": In(range(CODEBOOK_WORDS)),
            "cb_data": In(data.ArrayLayout(signed(16), 16 // CODEBOOK_WORDS)),
            "mul_valid": Out(1),
            "mul_row": Out(rbits),
            "acc_valid": Out(1),
            "acc_row": Out(rbits),
            "acc_prod": Out(signed(32)),
            "idle": Out(1),
        })
        #: the layer's codebook, as the stream wrote it
        self.codebook = Signal(data.ArrayLayout(signed(16), 16))

    def elaborate(self, platform):
        m = Module()
        row = Signal.like(self.mul_row)
        prev_row = Signal.like(self.mul_row)
        mul_w = Signal(signed(16))
        mul_a = Signal(signed(16))
        codebook = self.codebook
        wbits = len(self.cb_data.as_value())
        with m.If(self.cb_valid):
            m.d.sync += codebook.as_value().word_select(self.cb_word, wbits).eq(self.cb_data)
        z = self.spm_entry.z
        m.d.comb += row.eq(Mux(self.spm_first, z, prev_row + z + 1))
        m.d.sync += self.mul_valid.eq(self.spm_valid)
        with m.If(self.spm_valid):
            m.d.sync += [
                prev_row.eq(row),
                self.mul_row.eq(row),
                # a 16:1 multiplexer tree (an Array would become a one-hot parallel mux)
                mul_w.eq(codebook.as_value().word_select(self.spm_entry.code, 16)),
                mul_a.eq(self.spm_a),
            ]
        m.d.sync += [
            self.acc_valid.eq(self.mul_valid),
            self.acc_row.eq(self.mul_row),
            self.acc_prod.eq(mul_a * mul_w),
        ]
        m.d.comb += self.idle.eq(~self.mul_valid & ~self.acc_valid)
        return m


