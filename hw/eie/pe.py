"""One EIE processing element (PE ``index`` of ``n_pe``).

Pipeline (one entry per cycle while the FIFO holds work; stage prefixes in the sub-blocks):

1. activation FIFO (:class:`~eie.hw.eie.act_fifo.ActFifo`, ``fifo_depth`` entries): takes the
   broadcast ``j`` in the cycle ``bcast.valid`` shows it (the controller decided it a cycle
   earlier, from the PEs' registered fill flags ``bcast.fill``: the back-pressure) and its
   value ``a_j`` in the next (the values travel a cycle behind their columns, up to the
   pointer stage's second cycle); an empty FIFO hands the column to the pointer stage in that
   cycle (bypass);
2. :class:`~eie.hw.eie.ptr_read.PtrRead` (``ptr_``): one column a cycle, registered as it is
   taken, then ``p[j]`` and ``p[j+1]`` from the even/odd banks (registered behind the RAMs);
   non-empty columns go into the pointer queue;
3. :class:`~eie.hw.eie.spmat_read.SpmatRead` (``spm_``): one entry a cycle from the queue head,
   across word and column boundaries (the RAM's word registered whole behind it, the entry's
   byte selected from that register);
4. :class:`~eie.hw.eie.arith.Arith` (``mul_``): row from the relative index, codebook, 16x16
   product;
5. :class:`~eie.hw.eie.accum.Accumulator` (``acc_``, ``wr_``): the row's word registered behind
   the RAM, then add and write, with a two-deep bypass.

Around it (in :class:`~eie.hw.eie.accum.Accumulator`): the two activation/accumulator files
(source and destination bank; the source is streamed to this PE's LNZD leaf through the
pipelined bias and write-back arithmetic, ``act``, advancing in every cycle; the
destination accumulates), and the PE's lane of the LNZD's round slots
(:class:`~eie.hw.eie.round_slots.RoundSlots`: the streamed values of the rounds the LNZD holds,
written and scanned as it says, the scanned one registered back to it). Per-PE counters:
``busy`` (cycles the entry stage issued an entry) and ``stall`` (cycles the controller held a
nonzero back because this PE's fill flag was set), per layer, stored in a small memory when the
layer ends.

``idle_next`` is high when the PE will be idle in the next cycle: the FIFO empty (the
broadcasts arriving in this cycle and the next aside: the CCU, which sent them, adds those) and
neither the pointer stage nor the entry stage holding work (the top registers the AND of a
group's PEs' and the CCU ANDs the groups'): entries may still be in ``mul_``, ``acc_`` and
``wr_``. Their writes land within 2 cycles,
into the bank they started in, and the accumulator's read pipeline forwards them, so the next
layer may start reading the file in the next cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .accum import Accumulator
from .act_fifo import ActFifo
from .arith import Arith
from .config import EIEConfig
from .memory_map import ROUND_SLOTS, MemoryMap, Region
from .ptr_read import PtrRead
from .round_slots import RoundSlots
from .signatures import ActRead, Broadcast, HostPort, LayerParams
from .spmat_read import SpmatRead

__all__ = ["PE", "pe_signature", "REGISTERED_LAYER"]

#: The members of the PE's ``layer`` port that reach it through a register of the top's (a
#: register a group of PEs) and one of its own; ``src`` goes straight to the accumulator.
REGISTERED_LAYER = ("start", "end", "idx", "ptr_base", "last",
                    "cbk_w_en", "cbk_w_addr", "cbk_w_data")


def pe_signature(config: EIEConfig) -> wiring.Signature:
    """The PE's ports for ``config`` (the same for every PE index; see :class:`PE`): the groups
    of :mod:`eie.hw.eie.signatures`, seen from the PE."""
    c = config
    return wiring.Signature({
        "bcast": In(Broadcast(c.j_bits)),
        "layer": In(LayerParams(c)),
        "act": In(ActRead(c.act_addr_bits, slots=ROUND_SLOTS)),
        "host": In(HostPort(MemoryMap(c).off_bits, regions=True)),
        "idle_next": Out(1),
    })


class PE(wiring.Component):
    """Processing element ``index`` of ``config.n_pe``: FIFO -> pointer stage -> entry stage ->
    arith -> accumulate, one sparse-matrix entry a cycle (see the module docstring).

    Ports (:func:`pe_signature`, groups of :mod:`eie.hw.eie.signatures`):

    * ``bcast`` (in, :class:`~eie.hw.eie.signatures.Broadcast`): ``valid``/``j`` are
      written into the FIFO in the cycle ``valid`` is high, ``a`` in the next; ``fill`` (out,
      registered) are the FIFO's fill flags, the back-pressure; ``stall``/``in_flight``: the CCU
      held a nonzero back in the previous cycle (see :class:`~eie.hw.eie.act_fifo.ActFifo`);
    * ``layer`` (in, :class:`~eie.hw.eie.signatures.LayerParams`): ``ptr_base`` (the
      pointer memory holds absolute entry addresses: no ``entry_base``), the codebook writes
      ``cbk_w_*`` (to Arith's copy, read at ``idx``), the
      source ``src`` (to the accumulator files, in the cycle it changes), ``start``/``end``/
      ``idx`` (:data:`REGISTERED_LAYER`, all but ``src``: the top shows the CCU's a cycle late,
      from a register a group of PEs, and they are registered here again: each acts a cycle
      after the port shows it, two after the CCU's);
    * ``act`` (in, :class:`~eie.hw.eie.signatures.ActRead` with the round slots): the LNZD
      leaf's stream, ``addr`` -> ``data`` :data:`ACT_READ_LATENCY` cycles later (the top shows
      ``addr`` from its group's register of the LNZD's ``addr_next``);
      ``slot_we``/``scan`` -> ``held`` through the PE's round slots;
    * ``host`` (in, :class:`~eie.hw.eie.signatures.HostPort` with regions, offsets of
      ``MemoryMap.off_bits``): the request is registered here (a write lands, and a read's
      address reaches the memories, a cycle after the port shows it); writes to the PE's
      memories, taken if ``mode`` was high in the cycle before the port showed them;
      ``r_region``/``r_addr`` -> ``r_data`` 4 cycles later (activation rows come out on
      ``act.data`` ``ACT_READ_LATENCY + 1`` cycles later); ``mode`` takes effect in the next
      cycle (registered here: the controller's state reaches every PE's memory-address
      multiplexers through a register of the PE's own);
    * ``idle_next`` (out): the PE is idle in the next cycle (see the module docstring; the
      broadcasts arriving in this cycle and the next aside).

    Per cycle: the FIFO takes the broadcast; the pointer stage takes the FIFO's head column
    (the FIFO-to-pointer-stage and pointer-queue-to-entry-stage links are
    :class:`amaranth.lib.stream` handshakes); the entry stage issues one entry of the queue's
    head; the entries already in flight advance through Arith and the accumulator; the host
    port and the activation stream are served. Latency: a column broadcast in cycle ``t`` into
    an idle PE, with entries here, issues its first entry in ``t + 4`` and writes it into the
    accumulator file in ``t + 9`` (through both bypasses: the FIFO's and the pointer queue's).
    Counts, per layer (cleared a cycle after the port's ``layer.start``, stored at
    ``layer.idx`` a cycle after its ``layer.end``: 2 cycles after the CCU's): ``busy``, cycles
    an entry issued; ``stall``, cycles the controller held a nonzero back because of this PE's
    fill flag (``ActFifo.stalled``).
    """

    def __init__(self, config: EIEConfig, index: int):
        if not isinstance(index, int) or not 0 <= index < config.n_pe:
            raise ValueError(f"PE index {index!r} out of range 0..{config.n_pe - 1}")
        self._config = c = config
        self._index = index
        self._map = MemoryMap(config)
        super().__init__(pe_signature(config))

    def elaborate(self, platform):
        m = Module()
        c = self._config
        bcast, layer, host = self.bcast, self.layer, self.host

        m.submodules.fifo = fifo = ActFifo(c)
        m.submodules.ptr = ptr = PtrRead(c)
        m.submodules.spm = spm = SpmatRead(c)
        m.submodules.arith = ar = Arith(c)
        m.submodules.accum = acc = Accumulator(c)
        m.submodules.slots = slots = RoundSlots(ROUND_SLOTS)
        m.submodules.counters = cnt = Memory(shape=64, depth=c.max_layers, init=[])
        cnt_w = cnt.write_port()
        cnt_r = cnt.read_port()

        # The wiring, in small modules: the Amaranth simulator re-evaluates a module's
        # combinational statements together whenever one of their inputs changes, so grouping
        # them by the stage they feed keeps each change local (about 30% fewer signal updates).
        def wires(name, stmts=(), connect=()):
            g = Module()
            g.d.comb += stmts
            for ports in connect:
                wiring.connect(g, *ports)
            m.submodules[name] = g

        # The layer's parameters that change only between layers (``idx``, the bases), its
        # ``start``/``end`` pulses and the host's codebook writes (:data:`REGISTERED_LAYER`)
        # come registered: the top registers the controller's once a group of PEs (a register
        # of the group's own, which the placer puts between the controller and the group:
        # ``eie.hw.eie.top``), and they are registered again here, on a net of this PE's own,
        # beside its logic, which starts from them (the codebook read and write, the pointer
        # and entry address adders, the counters' write). (The 16-PE core's critical paths
        # were the CCU's ``start`` into a PE's register, a codebook pulled 50 columns from its
        # PE, and the PEs' idle flags -> the CCU's layer end -> a PE's register.) Each is in
        # time two cycles late: the bases and ``idx`` are set
        # in ``LSTART`` (``idx`` as it is entered) and first read for the layer's first
        # broadcast, which reaches the PE ``ACT_READ_LATENCY + 2`` cycles after ``LSTART``;
        # ``start`` clears the counters and the destination's valid bits 2 cycles after
        # ``LSTART``, before any entry of the layer lands; ``end`` stores the counters in the
        # cycle after the next layer's ``LSTART`` (no entry issues or stall counts from
        # ``DRAIN``'s last cycle until the layer's first broadcast, and the clear comes a cycle
        # later), at the copy of ``idx``, which is then still the finished layer's; a codebook
        # write lands 2 cycles later (no run reads it before the host's start, a later bus
        # cycle).
        lr = {}
        for name in REGISTERED_LAYER:
            lr[name] = Signal.like(getattr(layer, name), name=f"layer_{name}")
            m.d.sync += lr[name].eq(getattr(layer, name))

        wires("w_fifo", connect=[(wiring.flipped(bcast), fifo.bcast)])
        wires("w_ptr", [
            ptr.col.valid.eq(fifo.o.valid), ptr.col.payload.eq(fifo.o.payload),
            fifo.o.ready.eq(ptr.col.ready), ptr.col_a.eq(fifo.a),
            ptr.ptr_base.eq(lr["ptr_base"]),
        ])
        wires("w_spm", [spm.last_layer.eq(lr["last"])], connect=[(ptr.q, spm.q)])
        wires("w_arith", [
            ar.spm_valid.eq(spm.spm_valid), ar.spm_entry.eq(spm.spm_entry),
            ar.spm_first.eq(spm.spm_first), ar.spm_a.eq(spm.spm_a),
            ar.cbk_w_en.eq(lr["cbk_w_en"]), ar.cbk_w_addr.eq(lr["cbk_w_addr"]),
            ar.cbk_w_data.eq(lr["cbk_w_data"]), ar.layer_idx.eq(lr["idx"]),
        ])
        wires("w_acc", [
            acc.mul_valid.eq(ar.mul_valid), acc.mul_row.eq(ar.mul_row),
            acc.acc_valid.eq(ar.acc_valid), acc.acc_row.eq(ar.acc_row),
            acc.acc_prod.eq(ar.acc_prod),
        ])
        wires("w_layer", [acc.layer_start.eq(lr["start"])],
              connect=[(wiring.flipped(layer.src), acc.src)])
        act = self.act
        # the file is read at ``act.addr``: the top shows it from its group's register of the
        # LNZD's ``addr_next`` (equal to the LNZD's address register in every cycle), not from
        # the LNZD's register across the chip
        wires("w_leaf", [
            acc.act.addr.eq(act.addr),
            act.data.eq(acc.act.data), act.nz.eq(acc.act.nz),
            slots.data.eq(acc.act.data), slots.we.eq(act.slot_we), slots.scan.eq(act.scan),
            act.held.eq(slots.held),
        ])
        # idle = fifo.empty & ptr.idle & spm.idle but for the broadcasts arriving now and in
        # the cycle before, a cycle ahead (``idle_next``): from the stages' next state as if no
        # broadcast arrived (no column stored, so none taken from the FIFO; the pointer and
        # entry stages idle in the next cycle without a take). The top registers the AND of
        # a group's PEs' (a register of the group's own), so that the AND over every PE into
        # the CCU's layer end starts from a register a group and no path runs from the CCU's
        # ``bcast.valid`` into it. Those two broadcasts are the CCU's own registers
        # (``bcast.valid`` and ``valid_d``), and the CCU adds them there (not through every PE
        # and back: the board build's critical path, ``bcast.valid`` -> each PE's idle -> the
        # AND -> the layer end; and the 16-PE core's, each PE's idle register -> the AND over
        # the die -> the layer end -> the PEs' registers of it). A broadcast that arrived in
        # the cycle before is in the FIFO or the pointer stage now, so the layer end is the
        # same cycle as with it counted here.
        wires("w_idle", [self.idle_next.eq(fifo.stored_none & ptr.idle_next & spm.idle_next)])

        # Counters.
        busy = Signal(32)
        stall = Signal(32)
        with m.If(lr["start"]):
            m.d.sync += [busy.eq(0), stall.eq(0)]
        with m.Else():
            with m.If(spm.issue):
                m.d.sync += busy.eq(busy + 1)
            with m.If(fifo.stalled):
                m.d.sync += stall.eq(stall + 1)
        m.d.comb += [cnt_w.addr.eq(lr["idx"]), cnt_w.data.eq(Cat(busy, stall)),
                     cnt_w.en.eq(lr["end"])]

        # Host port: writes, and reads with four cycles of latency (``host.r_data``); activation
        # rows are read through the activation stream (``act.data``, ACT_READ_LATENCY cycles
        # after the registered request). The request is registered here first (the top's
        # request register reaches every PE: only route between the two, and the PE's address
        # multiplexers start from a flip-flop of their own); a write is taken if the host owned
        # the memories in the cycle it came and in the cycle before (``host.mode`` and
        # ``mode``: the blocks' own gate, ``mode`` in the cycle after, is then in the
        # register already, so the accumulator's file write need not wait for it: PE 8's
        # ``mode`` -> 4.2 ns of route -> its write gate -> the valid bits was a 16-PE board
        # build's critical path at 100 MHz, 90.8 MHz).
        # The pointer and sparse-matrix stages see their region's writes; the accumulator
        # decodes its two regions (bias, activations) itself.
        mode = Signal()                 # host.mode, a cycle later
        m.d.sync += mode.eq(host.mode)
        req = {name: Signal.like(getattr(host, name), name=f"host_req_{name}")
               for name in ("w_en", "w_region", "w_addr", "w_data", "r_region", "r_addr")}
        m.d.sync += [req[name].eq(getattr(host, name)) for name in req if name != "w_en"]
        m.d.sync += req["w_en"].eq(host.w_en & mode & host.mode)
        for blk, region in ((ptr, Region.PTR), (spm, Region.SPMAT), (acc, None)):
            stmts = [blk.host.mode.eq(mode)]
            stmts += [getattr(blk.host, name).eq(req[name])
                      for name in ("w_addr", "w_data", "r_addr")]
            if region is not None:
                stmts.append(blk.host.w_en.eq(req["w_en"] & (req["w_region"] == region)))
            else:
                stmts += [getattr(blk.host, name).eq(req[name])
                          for name in ("w_en", "w_region", "r_region")]
            wires(f"w_host_{type(blk).__name__.lower()}", stmts)
        wires("w_host_cnt", [cnt_r.addr.eq(req["r_addr"] >> 1)])
        r_region, r2_region = Signal(3), Signal(3)
        r_half = Signal()
        m.d.sync += [r_region.eq(req["r_region"]), r_half.eq(req["r_addr"][0]),
                     r2_region.eq(r_region)]
        # the memories answer in cycle 1 and each block's word is registered as it comes (cycle
        # 2: nothing but a block's own half/bank select follows a block RAM's slow output); the
        # region's word is selected and registered in cycle 3
        words = {"ptr": (Region.PTR, ptr.host.r_data), "spmat": (Region.SPMAT, spm.host.r_data),
                 "bias": (Region.BIAS, acc.host.r_data),
                 "pecnt": (Region.PECNT, cnt_r.data.word_select(r_half, 32))}
        held = {}
        for name, (region, word) in words.items():
            held[region] = Signal(32, name=f"host_word_{name}")
            m.d.sync += held[region].eq(word)
        with m.Switch(r2_region):
            for region, word in held.items():
                with m.Case(region):
                    m.d.sync += host.r_data.eq(word)
            with m.Default():
                m.d.sync += host.r_data.eq(0)
        return m


