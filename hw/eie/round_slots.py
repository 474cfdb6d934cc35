"""A PE's share of the LNZD's round buffer: its own lane's activation in every round slot.

The LNZD (:mod:`eie.hw.eie.lnzd`) keeps the rounds it has read ahead in a ring of slots; a
round's value of leaf ``k`` comes from PE ``k``'s read pipeline, so each PE keeps its lane's
values itself, next to the register they come from, and only the scanned slot's value crosses
the chip, registered, to the LNZD's value multiplexer. The LNZD keeps the rounds' nonzero flags
and the slot pointers; it tells the PE which slot an arriving value goes into (a cycle ahead)
and which slot it scans.

Per cycle: the write enables the LNZD showed in the previous cycle (``we``, registered here, so
each PE drives its slots' enables from a register of its own) write this cycle's ``data`` into
those slots; ``held`` takes the value of the slot ``scan`` selects (one-hot), shown in the next
cycle.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RoundSlots"]


class RoundSlots(wiring.Component):
    """``slots`` registers of int16, one per round slot of the LNZD (see the module docstring).

    Ports: ``data`` (in, int16: the PE's activation read, as the LNZD's lane shows it), ``we``
    (in, ``slots`` bits, one-hot or zero: ``data`` of the next cycle goes into that slot),
    ``scan`` (in, one-hot: the slot the LNZD scans), ``held`` (out, int16: the value of the slot
    ``scan`` selected in the previous cycle, registered)."""

    def __init__(self, slots: int):
        if not isinstance(slots, int) or slots < 1:
            raise ValueError(f"round slot count must be a positive integer, not {slots!r}")
        self._slots = slots
        super().__init__({
            "data": In(signed(16)),
            "we": In(slots),
            "scan": In(slots),
            "held": Out(signed(16)),
        })

    def elaborate(self, platform):
        m = Module()
        S = self._slots
        we_r = Signal(S)                # the slots written in this cycle (a register of this PE)
        m.d.sync += we_r.eq(self.we)
        vals = [Signal(signed(16), name=f"slot{i}") for i in range(S)]
        picked = Const(0, 16)
        for i, v in enumerate(vals):
            with m.If(we_r[i]):
                m.d.sync += v.eq(self.data)
            picked = picked | Mux(self.scan[i], v, 0)
        m.d.sync += self.held.eq(picked)
        return m
