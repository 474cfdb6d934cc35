"""A PE's activation FIFO and its side of the registered broadcast.

The controller (:class:`~eie.hw.eie.ccu.CCU`) decides a broadcast from registered state only, so
that no path runs from one PE's FIFO through the controller to every PE in one cycle:

* every PE registers its FIFO's fill, ``fill[i]`` = "the FIFO holds at least ``fifo_depth - i``
  entries", ``i = 0 .. BCAST_IN_FLIGHT`` (the register shows the level at the start of the
  cycle);
* the controller registers the OR of every PE's ``fill`` (one more cycle), and counts its own
  broadcasts that may not be in those levels yet: the ones it decided 1 and 2 cycles ago
  (``in_flight``, at most :data:`~eie.hw.eie.memory_map.BCAST_IN_FLIGHT`). It broadcasts only if
  no PE had ``fill[in_flight]`` set: every FIFO then had room for the broadcasts in flight and
  this one, whatever it popped since;
* the broadcast (``valid``, ``j``) is registered in the controller and written into every
  FIFO in the cycle after the decision; its value ``a`` a cycle later.

The values travel a cycle behind their columns: a second FIFO (``values``) repeats, a cycle
later, every write and pop of the column FIFO (``fifo``), taking ``bcast.a`` as it comes, so it
holds in each cycle what the column FIFO held in the cycle before; the value of the column taken
from ``o`` in one cycle shows on ``a`` in the next (the pointer stage needs it only then).

Per cycle: the FIFO takes ``bcast.valid``'s nonzero; it offers its head on ``o`` (an
:class:`amaranth.lib.stream.Signature` of :func:`~eie.hw.eie.signatures.nonzero_layout`), and
when it is empty, the arriving nonzero itself (bypass: taken in that cycle, it is not written);
``a`` shows the value of the nonzero taken in the previous cycle (the value FIFO's head, or,
if the nonzero was taken from the bypass, the value arriving now);
``fill`` takes the thresholds of the level after this cycle's write and pop. ``stalled`` is high
in the cycle after the controller held a nonzero back (``bcast.stall``, registered like the
broadcast) if this FIFO's ``fill`` that the controller decided with (``bcast.in_flight``, of
two cycles before) was set and the FIFO held an entry then (with ``fifo_depth <= i`` the flag
is set at any level): the PE counts it as a stall cycle. ``empty``: the FIFO is empty and
no broadcast arrives in this cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .config import EIEConfig
from .memory_map import BCAST_IN_FLIGHT
from .signatures import Broadcast, nonzero_layout

__all__ = ["ActFifo"]


class ActFifo(wiring.Component):
    """The activation FIFO of one PE (``config.fifo_depth`` entries) with its registered fill
    flags (see the module docstring).

    Ports: ``bcast`` (in, :class:`~eie.hw.eie.signatures.Broadcast` for one PE: ``valid``,
    ``j``, ``a``, ``stall``, ``in_flight`` in; ``fill`` out), ``o`` (out, the FIFO's head
    column), ``a`` (out, int16: the value of the column taken from ``o`` in the previous
    cycle), ``empty`` (out), ``stored_none`` (out: no column is stored, a broadcast arriving
    now aside: ``empty`` without the CCU's register), ``stalled`` (out). ``fifo`` is the column
    :class:`~amaranth.lib.fifo.SyncFIFO` inside (the formal harness reads its ports),
    ``values`` the value FIFO.

    ``mutant``: for the formal tests only; ``"fill_off_by_one"`` raises every fill flag one
    entry late (at ``fifo_depth - i + 1``), the broken design the proof must reject.
    """

    def __init__(self, config: EIEConfig, *, mutant: str | None = None):
        if mutant not in (None, "fill_off_by_one"):
            raise ValueError(f"unknown mutant {mutant!r}")
        self._config = c = config
        self._mutant = mutant
        self._layout = nonzero_layout(c.j_bits)
        self.fifo = SyncFIFO(width=self._layout.size, depth=c.fifo_depth)
        self.values = SyncFIFO(width=16, depth=c.fifo_depth)
        super().__init__({
            "bcast": In(Broadcast(c.j_bits)),
            "o": Out(stream.Signature(self._layout)),
            "a": Out(signed(16)),
            "empty": Out(1),
            "stored_none": Out(1),
            "stalled": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        D = c.fifo_depth
        bcast, fifo = self.bcast, self.fifo
        m.submodules.fifo = fifo
        m.submodules.values = values = self.values

        entry = Signal(self._layout)
        # Bypass: an empty FIFO offers the arriving broadcast in its own cycle; taken, it is
        # never written (so a PE with nothing queued starts a cycle sooner).
        bypass = Signal()
        m.d.comb += [
            entry.j.eq(bcast.j),
            bypass.eq(~fifo.r_rdy & bcast.valid),
            fifo.w_data.eq(entry), fifo.w_en.eq(bcast.valid & ~(bypass & self.o.ready)),
            self.o.valid.eq(fifo.r_rdy | bcast.valid),
            self.o.payload.eq(Mux(fifo.r_rdy, fifo.r_data, entry)),
            fifo.r_en.eq(self.o.ready & fifo.r_rdy),
            self.stored_none.eq(fifo.level == 0),
            self.empty.eq((fifo.level == 0) & ~bcast.valid),
        ]
        # the values: the column FIFO's writes and pops, a cycle later (the controller never
        # lets the column FIFO overflow, so neither does this one, whose level is the column
        # FIFO's of the cycle before)
        v_write, v_pop = Signal(), Signal()
        m.d.sync += [v_write.eq(fifo.w_en & fifo.w_rdy), v_pop.eq(fifo.r_en & fifo.r_rdy)]
        m.d.comb += [
            values.w_data.eq(bcast.a), values.w_en.eq(v_write), values.r_en.eq(v_pop),
            self.a.eq(Mux(values.r_rdy, values.r_data, bcast.a)),
        ]

        # the level after this cycle, and its thresholds, registered
        nxt = Signal(range(D + 2))
        m.d.comb += nxt.eq(fifo.level + (fifo.w_en & fifo.w_rdy) - (fifo.r_en & fifo.r_rdy))
        late = 1 if self._mutant == "fill_off_by_one" else 0
        fill_next = Cat(*(Const(1) if D - i + late <= 0 else (nxt >= D - i + late)
                          for i in range(BCAST_IN_FLIGHT + 1)))
        # from reset: an empty FIFO's (the flags that hold at level 0, if any, are set)
        fill = Signal(BCAST_IN_FLIGHT + 1,
                      init=sum(1 << i for i in range(BCAST_IN_FLIGHT + 1) if D - i + late <= 0))
        m.d.sync += fill.eq(fill_next)
        m.d.comb += bcast.fill.eq(fill)

        # the controller decides with the fill of two cycles before its stall shows here
        fill_d1 = Signal.like(fill)
        fill_d2 = Signal.like(fill)
        m.d.sync += [fill_d1.eq(fill), fill_d2.eq(fill_d1)]
        # (a flag that holds at level 0, fifo_depth <= i, says nothing about this FIFO: the
        # broadcasts in flight alone filled it; its stall is counted only if it held an entry)
        blame = Cat(*(fill_d2[min(i, D - 1)] for i in range(BCAST_IN_FLIGHT + 1)))
        m.d.comb += self.stalled.eq(bcast.stall & blame.bit_select(bcast.in_flight, 1))
        return m
