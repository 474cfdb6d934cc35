"""The CCU broadcasting into one activation FIFO a PE (:class:`BroadcastFifoHarness`, around
the configuration :func:`ccu_config`): no FIFO ever overflows or underflows, whatever the PEs'
consumption (proved by k-induction, with the invariants of the pipelined decision).

Gateware only (Amaranth and :mod:`eie.hw.eie`); the blocks are imported inside ``elaborate``.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Cat, Cover, Elaboratable, Module, Value
from amaranth.lib.wiring import In

from ..config import EIEConfig
from .common import fifo_properties, free, internals, port

__all__ = ["ccu_config", "BroadcastFifoHarness"]


def ccu_config(n_pe: int, fifo_depth: int, act_depth: int = 2) -> EIEConfig:
    """The smallest EIE configuration around a CCU with ``n_pe`` PEs and ``fifo_depth``-deep
    FIFOs (``act_depth`` rows a PE: at most ``n_pe * act_depth`` columns a layer)."""
    return EIEConfig(n_pe=n_pe, fifo_depth=fifo_depth, ptr_depth=2, spmat_depth=1,
                     act_depth=act_depth, acc_depth=1, bias_depth=1, max_layers=1)


class BroadcastFifoHarness(Elaboratable):
    """The CCU (with its LNZD) broadcasting into one activation FIFO a PE, each the PE's own
    :class:`~eie.hw.eie.act_fifo.ActFifo` (a :class:`amaranth.lib.fifo.SyncFIFO` of
    ``config.fifo_depth`` entries and its registered fill flags), wired as the top wires them
    (each group of PEs from its own copy of the broadcast's registers, ``CCU.bcast_copies``):
    no FIFO ever overflows or underflows (:func:`fifo_properties`), whatever the PEs'
    consumption.

    Free: every FIFO's read enable in every cycle (a PE's progress: any pattern of stalls and
    pops), the host's bus (any register and layer-table writes, any ``CTRL`` start, any time),
    the activations the LNZD reads (any values), the rest of a PE's idleness (``idle_all`` is
    "every FIFO empty, nothing arriving" and a free bit) and the reset.

    The properties read only the FIFOs' ports, so they hold wherever the decision is made.
    The decision is pipelined (registered fill flags in every PE, their OR registered in the
    CCU, the broadcast registered), so the CCU's state is not a function of the FIFOs' levels;
    :meth:`strengthen` adds the invariants with which k-induction closes: every PE's
    ``fill`` register shows its level's thresholds; the CCU's registered OR ``fill_any`` has
    bit ``i`` set if some FIFO, less the broadcast that landed in the last cycle (``valid_d``),
    holds ``fifo_depth - i`` or more; its two selections made a cycle ahead (``hold_if``) are
    ``fill_any``'s bits ``valid_d`` and ``valid_d + 1``; a broadcast arriving finds room in every
    FIFO; every copy of the broadcast's registers equals ``bcast``. (And every copy of the source
    bank equals ``layer.src.bank``: not needed by the FIFOs, checked here beside them.)

    ``mutant="ignore_full"``: the CCU is told no FIFO is ever filling (``fill`` all 0);
    ``mutant="fill_off_by_one"``: every PE raises its fill flags one entry late;
    ``mutant="copy_ignores_hold"``: the CCU's copies of the broadcast registers but the first
    (3 PEs or more) broadcast a nonzero it holds back.
    """

    #: the deliberately broken variants (``mutant=``)
    mutants = ("ignore_full", "fill_off_by_one", "copy_ignores_hold")

    def __init__(self, config: EIEConfig, *, mutant: str | None = None, invariants: bool = True):
        if mutant not in (None, *self.mutants):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.config = config
        self.mutant = mutant
        self.invariants = invariants

    def copies(self) -> int:
        """The copies of the broadcast's registers :class:`eie.hw.eie.top.EIETop` gives the
        CCU for this many PEs (one a group of PEs)."""
        from ..top import pe_groups

        return pe_groups(self.config.n_pe)

    def wire(self, m, ccu, fifos):
        """The broadcast as :class:`eie.hw.eie.top.EIETop` wires it: lane ``k`` of the CCU's
        ``bcast`` to PE ``k``'s FIFO block, from the copy of its group's registers. Returns the
        CCU inputs it drove."""
        from ..signatures import connect_lane
        from ..top import pe_group

        n = self.config.n_pe
        for k, f in enumerate(fifos):
            copy = port(ccu, "bcast_copies")[pe_group(n, k)] if self.copies() > 1 else None
            connect_lane(m, port(ccu, "bcast"), f.bcast, k, source=copy)
        fill = port(ccu, "bcast.fill")
        if self.mutant == "ignore_full":
            # the fill flags reach nothing: the CCU sees none set
            m.d.comb += fill.as_value().eq(0)
        return [fill]

    def strengthen(self, m, ccu, ccu_internal, fifos, fills):
        """The invariants of the pipelined decision (see the class docstring)."""
        from ..memory_map import BCAST_IN_FLIGHT

        D = self.config.fifo_depth
        if self.copies() > 1:
            bcast = port(ccu, "bcast")
            for g, copy in enumerate(port(ccu, "bcast_copies")):
                m.d.comb += Assert(Cat(*(getattr(copy, f) == getattr(bcast, f)
                                         for f in copy.shape().members)).all(),
                                   f"invariant: the CCU's broadcast copy {g} equals its bcast")
            for g, copy in enumerate(port(ccu, "bank_copies")):
                m.d.comb += Assert(copy == port(ccu, "layer.src.bank"),
                                   f"the CCU's copy {g} of the source bank equals its register")
            src = port(ccu, "layer.src")
            for g, copy in enumerate(port(ccu, "src_copies")):
                m.d.comb += Assert(Cat(*(getattr(copy, f) == getattr(src, f)
                                         for f in copy.shape().members)).all(),
                                   f"the CCU's copy {g} of the source's parameters equals them")
        fill_any, valid_d = ccu_internal["fill_any"], ccu_internal["valid_d"]
        hold_if = ccu_internal["hold_if"]
        for v in range(2):
            m.d.comb += Assert(hold_if[v] == fill_any.bit_select(valid_d + v, 1),
                               f"invariant: the CCU's hold_if[{v}] is fill_any[valid_d + {v}]")
        for k, (f, fill) in enumerate(zip(fifos, fills)):
            level = f.fifo.level
            for i in range(BCAST_IN_FLIGHT + 1):
                m.d.comb += [
                    Assert(fill[i] == (level >= D - i),
                           f"invariant: PE {k}'s fill[{i}] shows its level"),
                    Assert(~(level - valid_d >= D - i) | fill_any[i],
                           f"invariant: the CCU's fill_any[{i}] covers PE {k}'s level"),
                ]
            m.d.comb += Assert(~port(ccu, "bcast.valid") | (level < D),
                               f"invariant: a broadcast arriving finds room in PE {k}'s FIFO")

    def elaborate(self, platform):
        from ..act_fifo import ActFifo
        from ..ccu import CCU        # gateware imports inside: this module stays light

        m = Module()
        c = self.config
        n = c.n_pe
        ccu = CCU(c, bcast_copies=self.copies(),
                  mutant=self.mutant if self.mutant == "copy_ignores_hold" else None)
        fifo_mutant = "fill_off_by_one" if self.mutant == "fill_off_by_one" else None
        fifos = [ActFifo(c, mutant=fifo_mutant) for _ in range(n)]
        fills = []
        for k, f in enumerate(fifos):
            frag, regs = internals(f, ["fill"]) if self.invariants else (f, {"fill": None})
            m.submodules[f"fifo{k}"] = frag
            fills.append(regs["fill"])
            m.d.comb += f.o.ready.eq(free(m, 1, f"pe{k}_pop"))        # the PE's progress
        if self.invariants:
            ccu_frag, ccu_regs = internals(ccu, ["fill_any", "valid_d", "hold_if"])
            m.submodules.ccu = ccu_frag
        else:
            m.submodules.ccu = ccu
        idle_all = port(ccu, "idle_all")
        m.d.comb += idle_all.eq(Cat(*(f.empty for f in fifos)).all() & free(m, 1, "rest_idle"))
        driven = {id(idle_all), *(id(v) for v in self.wire(m, ccu, fifos))}
        # everything else the CCU takes in is free: the host bus (any write, any read, any
        # time), the activations its LNZD reads
        for path, member, value in ccu.signature.flatten(ccu):
            if member.flow == In and id(value) not in driven:
                name = "_".join(str(p) for p in path)
                m.d.comb += value.eq(free(m, len(Value.cast(value)), f"free_{name}"))
        for k, f in enumerate(fifos):
            fifo_properties(m, f.fifo, c.fifo_depth, f"PE {k}")
        if self.invariants:
            self.strengthen(m, ccu, ccu_regs, fifos, fills)
        # not vacuous: a FIFO fills, the CCU holds a nonzero back, a FIFO pops and takes at once
        last = fifos[-1].fifo
        m.d.comb += [
            Cover(last.level == c.fifo_depth, f"PE {n - 1}'s FIFO is full"),
            Cover(port(ccu, "bcast.stall"), "the CCU holds a nonzero back (a FIFO is filling)"),
            Cover(last.r_en & last.r_rdy & last.w_en,
                  f"PE {n - 1}'s FIFO takes a broadcast as it pops one"),
        ]
        return m
