"""The EIE accelerator top level: ``n_pe`` PEs, the CCU, and the host bus slave.

Ports: ``bus`` (a slave :class:`eie.hw.common.bus.BusSignature` of
``MemoryMap(config).addr_width`` address bits, 32-bit data), ``busy``, ``done``.

Host bus, per cycle: the request (address, data, strobes) is registered, a write's target
decoded on the way (one registered write enable a PE and one for the CCU, and whether it
writes ``CTRL`` with ``start`` set: the CCU's start begins at a flip-flop); one cycle later a
write (``w_stb``) goes to the CCU (global region) or to the addressed PE, which registers it and
writes its memory a cycle later (if the controller was idle in the request's cycle: a PE
follows ``busy`` a cycle late). A read
(``r_stb``) presents the address to every PE's memories, its activation read pipeline and the
CCU's register file; the CCU registers its answer (cycle 2), the PEs each memory's word and then
the region's (cycle 4: each PE registers the request first), where the addressed word is
selected and held; an activation comes out of the addressed PE's pipeline
``ACT_READ_LATENCY + 1`` cycles after ``r_stb`` and is registered; ``r_data`` is registered and
``r_ack`` rises :data:`READ_LATENCY` (9) cycles after ``r_stb``
for every address. Unmapped addresses (a PE number
``>= n_pe``, an offset past a memory's depth, regions 6 and 7, unused global offsets) read 0 and
ignore writes.

Groups of PEs: the PEs come in groups of ``ceil(sqrt(n_pe))`` (:func:`pe_group`; the board
floorplan puts a group in a row). Each group takes the broadcast from a copy of the CCU's
broadcast registers (``CCU.bcast_copies``) and of the source bank (``CCU.bank_copies``), and the
layer's parameters (``REGISTERED_LAYER``), the host's registered request and the LNZD's read
address from registers of its own, and its PEs' ``idle_next`` flags are ANDed into a register of its
own that the CCU's layer end reads: the cycles are those of one register for all PEs, but each
register drives (or collects) one group, and the placer puts it between the CCU and the group
instead of running one net from the CCU to every PE across the chip.
"""

from __future__ import annotations

import functools
import math
import operator
from types import SimpleNamespace

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, ResetSignal, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from eie.hw.common.bus import BusSignature

from .ccu import CCU
from .config import VERILOG_IDENTIFIER, EIEConfig
from .memory_map import ACT_READ_LATENCY, CTRL, READ_LATENCY, REGS, MemoryMap, Region
from .pe import PE, REGISTERED_LAYER, pe_signature
from .signatures import connect_lane

__all__ = ["EIETop", "READ_LATENCY", "PE_MODULE", "pe_definition", "pe_group_size",
           "pe_group", "pe_groups"]

#: The Verilog module name of the PE when the top instantiates one definition ``n_pe`` times.
PE_MODULE = "eie_top_pe"


def pe_group_size(n_pe: int) -> int:
    """PEs a group: ``ceil(sqrt(n_pe))``, a square of PEs (the board floorplan's PEs a row,
    ``eie.boards.floorplan``). Each group takes the controller's registers from copies of its
    own (see the module docstring)."""
    return math.isqrt(n_pe - 1) + 1 if n_pe > 1 else 1


def pe_group(n_pe: int, k: int) -> int:
    """The group of PE ``k``: PEs ``0 .. size-1`` are group 0, and so on."""
    return k // pe_group_size(n_pe)


def pe_groups(n_pe: int) -> int:
    """How many groups ``n_pe`` PEs make (the copies of each register)."""
    return pe_group(n_pe, n_pe - 1) + 1


def pe_definition(config: EIEConfig) -> PE:
    """The PE that the instances of ``EIETop(config, pe_module=...)`` stand for (any index: the
    PE ignores it)."""
    return PE(config, 0)


class EIETop(wiring.Component):
    """The accelerator for one :class:`EIEConfig`; ``memory_map`` describes its address space.

    ``pe_module``: ``None`` (the default) elaborates the ``n_pe`` PEs as Amaranth submodules (the
    Amaranth simulator needs that); a module name (e.g. :data:`PE_MODULE`) instantiates that
    Verilog module ``n_pe`` times instead, whose one definition is :meth:`pe_definition`. The PE
    does not depend on its index (the top does the per-PE address decode), so the two are the
    same circuit; the second makes the Verilog, Verilator's model and Yosys's work grow with
    ``n_pe`` only in the top.
    """

    def __init__(self, config: EIEConfig, *, pe_module: str | None = None):
        if not isinstance(config, EIEConfig):
            raise TypeError(f"config must be an EIEConfig, not {config!r}")
        if pe_module is not None and not (isinstance(pe_module, str)
                                          and VERILOG_IDENTIFIER.fullmatch(pe_module)):
            raise ValueError(f"pe_module must be a Verilog identifier, not {pe_module!r}")
        self._config = config
        self._map = MemoryMap(config)
        self._pe_module = pe_module
        super().__init__({
            "bus": In(BusSignature(self._map.addr_width)),
            "busy": Out(1),
            "done": Out(1),
        })

    @property
    def config(self) -> EIEConfig:
        return self._config

    @property
    def memory_map(self) -> MemoryMap:
        return self._map

    @property
    def pe_module(self) -> str | None:
        return self._pe_module

    def pe_definition(self) -> PE:
        """The PE the instances of ``pe_module`` stand for (:func:`pe_definition`)."""
        return pe_definition(self._config)

    def _pe_instance(self, m: Module, k: int):
        """Instance ``k`` of ``pe_module``, and an interface of the PE's signature wired to it
        (port ``i_``/``o_`` + the member's path joined with ``__``, e.g. ``i_layer__src__bank``:
        the names Amaranth gives the PE definition's ports)."""
        sig = pe_signature(self._config)
        intf = sig.create(path=(f"pe{k}",))
        ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for path, member, value in sig.flatten(intf):
            prefix = "i_" if member.flow == wiring.In else "o_"
            ports[prefix + "__".join(map(str, path))] = Value.cast(value)
        m.submodules[f"pe{k}"] = Instance(self._pe_module, **ports)
        return intf

    def elaborate(self, platform):
        m = Module()
        c = self._config
        mm = self._map
        n = c.n_pe
        # the broadcast's registers once a group of PEs (the CCU sets them all alike)
        copies = pe_groups(n)
        m.submodules.ccu = ccu = CCU(c, bcast_copies=copies)
        # the layer's parameters that the PEs register (``REGISTERED_LAYER``), registered here
        # first, once a group of PEs (the register the PE had for it, shared by the group: a
        # register between the CCU and the group, not a net from the CCU to every PE)
        group_layer = [{name: Signal.like(getattr(ccu.layer, name), name=f"fanout_layer{g}_{name}")
                        for name in REGISTERED_LAYER} for g in range(copies)]
        for regs in group_layer:
            m.d.sync += [reg.eq(getattr(ccu.layer, name)) for name, reg in regs.items()]
        if self._pe_module is None:
            pes = [PE(c, k) for k in range(n)]
            for k, pe in enumerate(pes):
                m.submodules[f"pe{k}"] = pe
        else:
            pes = [self._pe_instance(m, k) for k in range(n)]

        ob, pb = mm.off_bits, mm.pe_bits
        # The request is registered first (a posted write lands one cycle later; reads are
        # delayed alike, so they still see every earlier write): the address decode that fans
        # out to every PE starts from flip-flops.
        # (named ``fanout_*`` like their copies a group of PEs, below, so that a board build
        # keeps them apart: merged into one, the controller's decode read a copy placed beside
        # a group: eie.boards.build.KEEP_FANOUT)
        addr = Signal.like(self.bus.addr, name="fanout_host_addr")
        w_data = Signal.like(self.bus.w_data, name="fanout_host_w_data")
        r_stb = Signal()
        m.d.sync += [addr.eq(self.bus.addr), w_data.eq(self.bus.w_data),
                     r_stb.eq(self.bus.r_stb)]
        region = addr[ob + pb: ob + pb + 3]
        pe_sel = addr[ob: ob + pb] if pb else 0
        off = addr[:ob]
        goff = addr[:ob + pb]

        # An offset inside the addressed PE region's memory (the bus contract: unmapped addresses
        # read 0 and ignore writes, so nothing aliases).
        ab = c.act_index_bits

        def inside(region, off, name):
            """Whether ``off`` lies inside ``region``'s memory of a PE."""
            ok = Signal(name=name)
            with m.Switch(region):
                with m.Case(Region.PTR):
                    m.d.comb += ok.eq(off < c.ptr_depth)
                with m.Case(Region.SPMAT):
                    m.d.comb += ok.eq(off < 2 * c.spmat_depth)
                with m.Case(Region.BIAS):
                    m.d.comb += ok.eq(off < c.bias_depth)
                with m.Case(Region.ACT):
                    m.d.comb += ok.eq((off < (2 << ab)) & ((off & ((1 << ab) - 1)) < c.act_depth))
                with m.Case(Region.PECNT):
                    m.d.comb += ok.eq(off < 2 * c.max_layers)
            return ok

        in_range = inside(region, off, "in_range")
        pe_ok = (pe_sel < n) if pb else 1
        # The registered request and the LNZD's read address once more a group of PEs (the
        # same registers: a copy of each near its group; the top's own serve the CCU and the
        # read pipeline): each PE registers the request again and reads its activation file
        # at the address
        if copies > 1:
            group_req = [(Signal.like(self.bus.addr, name=f"fanout_host{g}_addr"),
                          Signal.like(self.bus.w_data, name=f"fanout_host{g}_w_data"))
                         for g in range(copies)]
            for g_addr, g_w_data in group_req:
                m.d.sync += [g_addr.eq(self.bus.addr), g_w_data.eq(self.bus.w_data)]
        else:
            group_req = [(addr, w_data)]
        group_act_addr = [Signal.like(ccu.act.addr, name=f"fanout_act{g}_addr")
                          for g in range(copies)]
        m.d.sync += [reg.eq(ccu.act.addr_next) for reg in group_act_addr]
        # and the scanned round slot, one register a group too (from the LNZD's ``scan_next``)
        group_scan = [Signal.like(ccu.act.scan, name=f"fanout_act{g}_scan")
                      for g in range(copies)]
        m.d.sync += [reg.eq(ccu.act.scan_next) for reg in group_scan]
        # Every PE of a group idle: a register a group, of its PEs' ``idle_next`` (what each
        # PE's own idle register was), near the group; the CCU ANDs the groups'.
        group_idle = [Signal(init=1, name=f"group_idle{g}") for g in range(copies)]
        for g, reg in enumerate(group_idle):
            m.d.sync += reg.eq(Cat(*(pe.idle_next for k, pe in enumerate(pes)
                                     if pe_group(n, k) == g)).all())
        # Writes are decoded before the request register, into one registered enable a PE (and
        # one for the CCU), so that no write path runs from the address decode into every PE.
        bus_addr = self.bus.addr
        bus_region = bus_addr[ob + pb: ob + pb + 3]
        bus_pe = bus_addr[ob: ob + pb] if pb else 0
        bus_in = inside(bus_region, bus_addr[:ob], "bus_in_range")
        w_pe = Signal(n)
        w_ccu = Signal()
        # a write of CTRL with ``start`` set (the data bit decoded here too): the CCU's start,
        # ``starting`` and every PE's host mode behind it from one flip-flop (with the bit
        # after the request register, its decode and route to PE 15's mode register were the
        # 16-PE build's critical path at 100 MHz, seed 1: 75.0 MHz)
        w_start = Signal()
        w_tbl = Signal()            # a write inside the layer table: its enables, from one too
        bus_goff = bus_addr[:ob + pb]
        w_global = self.bus.w_stb & (bus_region == Region.GLOBAL)
        m.d.sync += [w_pe.eq(Cat(*(self.bus.w_stb & bus_in & (bus_pe == k) for k in range(n)))),
                     w_ccu.eq(w_global),
                     w_start.eq(w_global & (bus_goff == REGS["CTRL"][0])
                                & CTRL.view(self.bus.w_data).start),
                     w_tbl.eq(w_global & (bus_goff >= mm.layer_base)
                              & (bus_goff < mm.global_span))]

        m.d.comb += [
            self.busy.eq(ccu.busy),
            self.done.eq(ccu.done),
            ccu.host.w_en.eq(w_ccu),
            ccu.start_w.eq(w_start),
            ccu.tbl_w.eq(w_tbl),
            ccu.host.w_addr.eq(goff),
            ccu.host.w_data.eq(w_data),
            ccu.host.r_addr.eq(goff),
            ccu.idle_all.eq(Cat(*group_idle).all()),
        ]
        # What every PE's host port shows (its w_en is its own). A PE takes ``mode`` a cycle
        # later: it leaves host mode as busy rises (``starting`` a cycle ahead) and enters it a
        # cycle after busy falls, so a request the bus made while busy is ignored. (A register
        # a group instead of the PE's own, tried: the group's register, placed among four PEs,
        # was both seeds' critical path into a PE's accumulator, 71.0 / 78.4 MHz.)
        pe_mode = ~(ccu.busy | ccu.starting)
        for k, pe in enumerate(pes):
            # Each PE's wiring in its own module for the Amaranth simulator (it re-evaluates a
            # module's combinational statements together, so this keeps one PE's change local);
            # in the top itself for Verilog (a glue module would take the whole N-wide
            # act_rd_data array as a port: Verilog quadratic in n_pe).
            if self._pe_module is None:
                glue = Module()
                m.submodules[f"glue{k}"] = glue
            else:
                glue = m
            # the broadcast (from its group's copy of the registers) and the activation stream:
            # lane k of the CCU's (its fifo full bit, its activations; the read address from
            # the group's register); the layer's parameters: the group's registers of them
            # (``src`` straight from the CCU, its ``bank`` from the group's copy)
            g = pe_group(n, k)
            connect_lane(glue, ccu.bcast, pe.bcast, k,
                         source=ccu.bcast_copies[g] if copies > 1 else None)
            connect_lane(glue, ccu.act, pe.act, k, source=SimpleNamespace(
                addr=group_act_addr[g], slot_we=ccu.act.slot_we, scan=group_scan[g]))
            for path, member, value in pe.layer.signature.flatten(pe.layer):
                if path[0] in group_layer[g]:
                    src = group_layer[g][path[0]]
                elif path == ("src", "bank") and copies > 1:
                    src = ccu.bank_copies[g]
                elif path[0] == "src" and copies > 1:
                    src = getattr(ccu.src_copies[g], path[1])
                else:
                    src = functools.reduce(getattr, path, ccu.layer)
                glue.d.comb += value.eq(src)
            g_addr, g_w_data = group_req[g]
            g_region, g_off = g_addr[ob + pb: ob + pb + 3], g_addr[:ob]
            pe_host = {"mode": pe_mode, "w_region": g_region, "w_addr": g_off,
                       "w_data": g_w_data, "r_region": g_region, "r_addr": g_off}
            glue.d.comb += [getattr(pe.host, name).eq(value) for name, value in pe_host.items()]
            glue.d.comb += pe.host.w_en.eq(w_pe[k])

        # Read pipeline (cycles counted from the registered request): address in cycle 0; the
        # CCU answers and its word is registered (cycle 2, then held two cycles more); each PE
        # registers the request (cycle 1), its memories answer in cycle 2, its word is
        # registered in cycle 4; the addressed PE's word is registered in its group in cycle
        # 4 and taken from the group's register in cycle 5; the activation stream answers in
        # cycle ACT_READ_LATENCY + 1 and the addressed PE's value is registered; r_ack (and
        # r_data) one cycle after that, READ_LATENCY cycles after the bus's r_stb.
        r_region = [region] + [Signal(3, name=f"r{i}_region") for i in range(1, 6)]
        r_pe = [pe_sel] + [Signal(c.pe_index_bits, name=f"r{i}_pe") for i in range(1, 5)]
        r_mapped = [in_range & pe_ok] + [Signal(name=f"r{i}_mapped") for i in range(1, 6)]
        for i in range(1, 6):
            m.d.sync += [r_region[i].eq(r_region[i - 1]), r_mapped[i].eq(r_mapped[i - 1])]
        for i in range(1, 5):
            m.d.sync += r_pe[i].eq(r_pe[i - 1])
        r4_region, r4_pe, r4_mapped = r_region[4], r_pe[4], r_mapped[4]
        r_pipe = Signal(READ_LATENCY)       # r_stb delayed by 1 .. READ_LATENCY cycles
        m.d.sync += r_pipe.eq((r_pipe << 1) | r_stb)
        pe_act = Cat(*(pe.act.data for pe in pes))
        ccu_word = Signal(32)           # the CCU answers in cycle 2 (held to 5), the PEs in 4
        ccu_word2 = Signal(32)
        ccu_word3 = Signal(32)
        m.d.sync += [ccu_word.eq(ccu.host.r_data), ccu_word2.eq(ccu_word),
                     ccu_word3.eq(ccu_word2)]
        # The PEs' words in two steps, a register between: in cycle 4 each group's register
        # takes the word of its PE the request addressed (one-hot flags registered from
        # ``r3_pe``; 0 if it addressed none of the group's), in cycle 5 the top ORs the
        # groups'. (A 16-way select from every PE across the die into one register, in one
        # cycle, was the 16-PE board build's critical path.)
        pe_hit = Signal(n)              # cycle 4: PE k is the one addressed
        m.d.sync += pe_hit.eq(Cat(*(r_pe[3] == k for k in range(n))))
        group_word = [Signal(32, name=f"group_word{g}") for g in range(copies)]
        for g, reg in enumerate(group_word):
            m.d.sync += reg.eq(functools.reduce(
                operator.or_, (pes[k].host.r_data & pe_hit[k].replicate(32)
                               for k in range(n) if pe_group(n, k) == g)))
        word = Signal(32)               # cycle 5: a register, a layer-table entry or a memory
        with m.If(r_region[5] == Region.GLOBAL):
            m.d.comb += word.eq(ccu_word3)
        with m.Elif(r_mapped[5]):
            m.d.comb += word.eq(functools.reduce(operator.or_, group_word))
        held = Signal(32)
        held_act = Signal()
        held_pe = Signal(c.pe_index_bits)
        with m.If(r_pipe[3]):
            m.d.sync += [held_pe.eq(r4_pe), held_act.eq(r4_mapped & (r4_region == Region.ACT))]
        with m.If(r_pipe[4]):
            m.d.sync += held.eq(word)
        # the addressed PE's activation, out of its stream in cycle ACT_READ_LATENCY + 1,
        # registered
        act = Signal(signed(16))
        m.d.sync += act.eq(pe_act.word_select(held_pe, 16) if pb else pes[0].act.data)
        m.d.sync += [
            self.bus.r_ack.eq(r_pipe[READ_LATENCY - 3]),
            self.bus.r_data.eq(Mux(held_act, act, held)),
        ]
        return m


