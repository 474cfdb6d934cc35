"""A PE's accumulator with its same-row bypass (:class:`AccumulatorHarness`): every write and
every read of a row gives the sum of every product accumulated into it (bounded: the file's
words live in a memory no invariant can name).

Gateware only (Amaranth and :mod:`eie.hw.eie`); the blocks are imported inside ``elaborate``.
"""

from __future__ import annotations

from amaranth.hdl import (Array, Assert, Assume, Cat, Const, Cover, Elaboratable, Module, Mux,
                          Signal, signed)
from amaranth.lib.wiring import In

from ..config import EIEConfig
from .common import free, internals

__all__ = ["AccumulatorHarness"]


class AccumulatorHarness(Elaboratable):
    """A PE's accumulator with its two-deep same-row bypass: every read of a row returns the sum
    of all earlier writes to it (of the products accumulated into it in the layer). Two checks:

    * ``writes``: every write into the file (the ``wr_`` stage) holds the sum of every product
      accumulated into its row so far in the layer, its own included: the bypass where it acts
      (internal signals ``wr_valid``, ``wr_row``, ``acc_sum``), against a model
      of one sum a row;
    * ``readback``: after the layer (the banks swap at its last cycle, as the CCU's ``DRAIN``
      ends, with up to two entries still in flight in ``mul_`` and ``acc_``, plus the one in
      ``wr_``; the next layer's ``layer_start`` in the cycle after), a row read through the
      activation stream (:data:`ACT_READ_LATENCY` cycles: the pipeline advances in every
      cycle; write-back with ``w_frac`` 0, no bias, no ReLU) is that sum saturated to int16; a
      row that took no product reads 0. So the read pipeline's forwarding of the last writes is
      checked, end to end, through the ports only.

    Free: in every cycle, an entry or not, its row (any of the ``acc_depth`` accumulator rows)
    and its product (any 32-bit value), so any pattern of back-to-back, interleaved and gapped
    entries to the same and to other rows; a new layer (``layer_start``, in a cycle with no
    entry in flight, as in ``LSTART``: the model's sums restart at 0); when the entries stop;
    the row read back (``AnyConst``). The entries arrive
    as the arithmetic stage delivers them: ``mul_row`` in one cycle, ``acc_valid``/
    ``acc_row``/``acc_prod`` the next.

    Bounded (``bmc``), not by induction: the file's words live in a memory, which a property
    cannot name, so no invariant can tie them to the model's sums. The depth is justified by
    the bypass's reach: what an entry writes depends only on its product, on the row's word
    read from the file two cycles before the write, and on the two writes just before it
    (``l1``, ``l2``); the word is stale exactly when one of those two wrote the same row. So
    every way the bypass can go wrong (a same-row entry 1 or 2 cycles ahead, the older of two
    same-row entries taken for the newer, a gap that moves a same-row entry out of the window,
    a row's first write of a layer reading a stale word) shows within 3 consecutive entry
    cycles after the row holds a nonzero sum, i.e. within about 6 cycles of reset. ``writes``
    at depth 12 checks every entry pattern of 10 cycles; ``readback`` at depth 10 every
    pattern of up to 4 entry cycles ending in the layer's last cycle (so entries still in
    ``mul_``, ``acc_`` and ``wr_`` as the banks swap), the swap and the read in every one of the
    cycles after it (depth 13, 6 minutes here, passes too).

    ``mutant="no_bypass1"`` / ``"no_bypass2"``: the bypass from the write 1 / 2 cycles ahead
    is never taken (its match register held at 0); ``"no_forward1"`` / ``"no_forward2"``: the
    read pipeline's forwarding of the last write into stage 1 / stage 2 is never taken: the
    broken designs.
    """

    #: the deliberately broken variants (``mutant=``)
    mutants = ("no_bypass1", "no_bypass2", "no_forward1", "no_forward2")

    def __init__(self, config: EIEConfig, *, writes: bool = True, readback: bool = False,
                 mutant: str | None = None):
        if mutant not in (None, *self.mutants):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.mutant = mutant
        if not (writes or readback):
            raise ValueError("nothing to check: ask for writes, readback or both")
        self.config = config
        self.writes = writes
        self.readback = readback

    def elaborate(self, platform):
        from ..accum import Accumulator
        from ..memory_map import ACT_READ_LATENCY

        m = Module()
        c = self.config
        rows = c.acc_depth
        acc = Accumulator(c)
        frag, s = internals(acc, ["fanout_wr_valid", "wr_row", "acc_sum", "fwd1", "fwd2", "hit1",
                                  "hit2"],
                            platform)
        s["wr_valid"] = s["fanout_wr_valid"]
        if self.mutant in ("no_forward1", "no_forward2"):
            # the last assignment wins: the forwarding never takes the written sum (fwd1 is
            # combinational, fwd2 a register)
            if self.mutant == "no_forward1":
                frag.add_statements("comb", s["fwd1"].eq(0))
            else:
                frag.add_statements("sync", s["fwd2"].eq(0))
        elif self.mutant:
            # the broken design: one of the bypass's two match registers (the write 1 / 2
            # cycles ahead) never matches; the last assignment wins, so this overrides the
            # block's own
            frag.add_statements("sync", s["hit1" if self.mutant == "no_bypass1"
                                          else "hit2"].eq(0))
        m.submodules.acc = frag
        driven = set()

        def drive(target, value):
            m.d.comb += target.eq(value)
            driven.add(id(target))

        # phases: 0 accumulate; ``stop`` marks the layer's last cycle (entries may still enter
        # mul_ in it); 2 the banks have swapped and the destination is read back
        phase = Signal(2)
        stop = free(m, 1, "stop") if self.readback else Const(0)
        with m.If((phase == 0) & stop):
            m.d.sync += phase.eq(2)
        # the next layer's start a cycle after the banks swap (the first cycle of phase 2, the
        # controller's LSTART): the earliest the accumulator allows (the PE's copy of the
        # start comes two cycles after LSTART)
        swapped = Signal()
        swap_d = Signal(2)
        m.d.sync += swap_d.eq(Cat((phase == 0) & stop, swap_d[0]))
        m.d.comb += swapped.eq(swap_d[1])

        # the entries: mul_ stage (row), then the acc_ stage (row, product) a cycle later
        e_valid = Signal()
        e_row = free(m, len(acc.mul_row), "e_row")
        a_valid, a_valid2 = Signal(), Signal()
        a_row = Signal.like(acc.acc_row)
        prod = free(m, signed(32), "prod")
        # a new layer: only with no entry in flight (the CCU's LSTART)
        new_layer = Signal()
        m.d.comb += [
            new_layer.eq(free(m, 1, "layer_start") & (phase == 0) & ~a_valid & ~a_valid2),
            e_valid.eq(free(m, 1, "e_valid") & (phase == 0) & ~new_layer),
            Assume(e_row < rows),
        ]
        m.d.sync += [a_valid.eq(e_valid), a_row.eq(e_row), a_valid2.eq(a_valid)]
        drive(acc.layer_start, new_layer | swapped)
        drive(acc.mul_valid, e_valid)
        drive(acc.mul_row, e_row)
        drive(acc.acc_valid, a_valid)
        drive(acc.acc_row, a_row)
        drive(acc.acc_prod, prod)
        # source bank 0 while accumulating (the destination is bank 1), then bank 1 is read
        drive(acc.src.bank, phase == 2)

        # the model: one sum a row, of every product into it, wrapping at acc_bits
        sums = [Signal(signed(c.acc_bits), name=f"sum_row{r}") for r in range(rows)]
        for r, total in enumerate(sums):
            with m.If(new_layer):
                m.d.sync += total.eq(0)
            with m.Elif(a_valid & (a_row == r)):
                m.d.sync += total.eq(total + prod)

        if self.writes:
            # the model took the entry's product in the cycle before its write
            with m.If(s["wr_valid"]):
                m.d.comb += Assert(s["acc_sum"] == Array(sums)[s["wr_row"]],
                                   "every write holds the sum of all products into its row "
                                   "so far")

        # read row R back through the activation stream
        r = free(m, len(acc.acc_row), "row_read", const=True)
        drive(acc.act.addr, r)
        for path, member, value in acc.signature.flatten(acc):
            if member.flow == In and id(value) not in driven:
                m.d.comb += value.eq(0)         # no host, no bias, w_frac 0, no ReLU
        if self.readback:
            m.d.comb += Assume(r < rows)
            shown = Signal(range(ACT_READ_LATENCY + 1))
            with m.If((phase == 2) & (shown < ACT_READ_LATENCY)):
                m.d.sync += shown.eq(shown + 1)
            total = Array(sums)[r]
            sat = Signal(signed(16))
            m.d.comb += sat.eq(Mux(total > 32767, 32767, Mux(total < -32768, -32768, total)))
            ready = (phase == 2) & (shown == ACT_READ_LATENCY)
            m.d.comb += [
                Assert(~ready | (acc.act.data == sat),
                       "a row read back holds the sum of every product accumulated into it"),
                Cover(ready & (total != 0), "a row with products is read back"),
            ]
        m.d.comb += Cover(a_valid & (a_row == e_row) & e_valid & a_valid2,
                          "three entries back to back, the last two to the same row")
        return m
