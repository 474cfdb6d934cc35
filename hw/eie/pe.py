"""One EIE processing element (PE ``index`` of ``n_pe``).

Pipeline (one entry per cycle while the FIFO holds work; stage prefixes in the sub-blocks):

1. activation FIFO (``fifo_depth``, :class:`amaranth.lib.fifo.SyncFIFO`): takes the broadcast
   ``(j, a_j)`` in the cycle the controller broadcasts it (the controller only broadcasts when no
   PE's FIFO is full);
2. :class:`~eie.hw.eie.ptr_read.PtrRead` (``ptr_``): one column a cycle, ``p[j]`` and ``p[j+1]``
   from the even/odd banks (registered behind the RAMs); non-empty columns go into the pointer
   queue;
3. :class:`~eie.hw.eie.spmat_read.SpmatRead` (``spm_``): one entry a cycle from the queue head,
   across word and column boundaries (the entry byte registered behind the RAM);
4. :class:`~eie.hw.eie.arith.Arith` (``mul_``): row from the relative index, codebook, 16x16
   product;
5. :class:`~eie.hw.eie.accum.Accumulator` (``acc_``, ``wr_``): the row's word registered behind
   the RAM, then add and write, with a two-deep bypass.

Around it (in :class:`~eie.hw.eie.accum.Accumulator`): the two activation/accumulator files
(source and destination bank; the source is streamed to this PE's LNZD leaf through the
pipelined bias and write-back arithmetic, ``act_rd_*``, advancing with ``act_rd_en``; the
destination accumulates). Per-PE counters: ``busy`` (cycles the
entry stage issued an entry) and ``stall`` (cycles the controller held a nonzero back while this
PE's FIFO was full), per layer, stored in a small memory when the layer ends.

``idle`` is high when the FIFO is empty and no stage holds work except, possibly, the ``wr_``
stage, whose write lands at the end of the cycle (so the next layer may read the file in the
next cycle).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .accum import Accumulator
from .arith import Arith
from .config import EIEConfig, W_FRAC_BITS
from .memory_map import MemoryMap, Region
from .ptr_read import PtrRead
from .spmat_read import SpmatRead

__all__ = ["PE", "pe_signature"]


def pe_signature(config: EIEConfig) -> wiring.Signature:
    """The PE's ports for ``config`` (the same for every PE index; see :class:`PE`)."""
    c, mm = config, MemoryMap(config)
    pidx = max(1, (c.ptr_depth - 1).bit_length())
    bbits = max(1, (c.bias_depth - 1).bit_length())
    lbits = max(1, (c.max_layers - 1).bit_length())
    return wiring.Signature({
        "b_valid": In(1),
        "b_j": In(c.j_bits),
        "b_a": In(signed(16)),
        "fifo_full": Out(1),
        "ptr_base": In(pidx + 1),
        "entry_base": In(c.ptr_bits),
        "codebook": In(data.ArrayLayout(signed(16), 16)),
        "src_bank": In(1),
        "src_bias_base": In(bbits + 1),
        "src_has_bias": In(1),
        "src_w_frac": In(W_FRAC_BITS),
        "src_relu": In(1),
        "act_rd_en": In(1),
        "act_rd_addr": In(max(1, mm.act_bits)),
        "act_rd_data": Out(signed(16)),
        "layer_start": In(1),
        "layer_end": In(1),
        "layer_idx": In(lbits),
        "stall_probe": In(1),
        "idle": Out(1),
        "host_mode": In(1),
        "h_w_en": In(1),
        "h_w_region": In(3),
        "h_w_off": In(mm.off_bits),
        "h_w_data": In(32),
        "h_r_region": In(3),
        "h_r_off": In(mm.off_bits),
        "h_r_data": Out(32),
    })


class PE(wiring.Component):
    """Processing element ``index`` of ``config.n_pe``: FIFO -> pointer stage -> entry stage ->
    arith -> accumulate, one sparse-matrix entry a cycle (see the module docstring).

    Ports: the broadcast ``b_valid``/``b_j``/``b_a`` in, ``fifo_full`` (``level == fifo_depth``)
    out: the CCU broadcasts only while no FIFO is full, the only handshake; the layer's
    ``ptr_base``, ``entry_base``, ``codebook`` and source ``src_*``; the LNZD leaf's stream
    (``act_rd_en``, ``act_rd_addr`` -> ``act_rd_data``, :data:`ACT_READ_LATENCY` advancing
    cycles); ``layer_start``/``layer_end``/``layer_idx``/``stall_probe`` in, ``idle`` out; the
    host port (``host_mode``, ``h_w_*``, ``h_r_region``/``h_r_off`` -> ``h_r_data`` 2 cycles
    later; activation rows come out on ``act_rd_data``).

    Latency: a column broadcast in cycle ``t`` into an idle PE, with entries here, issues its
    first entry in ``t + 4`` and writes it into the accumulator file in ``t + 9``. Counts, per
    layer (cleared by ``layer_start``, stored at ``layer_idx`` on ``layer_end``): ``busy``, cycles
    an entry issued; ``stall``, cycles ``stall_probe`` was high while this FIFO was full.
    """

    def __init__(self, config: EIEConfig, index: int):
        if not isinstance(index, int) or not 0 <= index < config.n_pe:
            raise ValueError(f"PE index {index!r} out of range 0..{config.n_pe - 1}")
        self._config = c = config
        self._index = index
        self._map = MemoryMap(config)
        self._bcast_layout = data.StructLayout({"j": c.j_bits, "a": signed(16)})
        super().__init__(pe_signature(config))

    def elaborate(self, platform):
        m = Module()
        c = self._config
        mm = self._map
        ab = mm.act_bits

        m.submodules.fifo = fifo = SyncFIFO(width=self._bcast_layout.size, depth=c.fifo_depth)
        m.submodules.ptr = ptr = PtrRead(c)
        m.submodules.spm = spm = SpmatRead(c)
        m.submodules.arith = ar = Arith(c)
        m.submodules.accum = acc = Accumulator(c)
        m.submodules.counters = cnt = Memory(shape=64, depth=c.max_layers, init=[])
        cnt_w = cnt.write_port()
        cnt_r = cnt.read_port()

        # The wiring, in small modules: the Amaranth simulator re-evaluates a module's
        # combinational statements together whenever one of their inputs changes, so grouping
        # them by the stage they feed keeps each change local (about 30% fewer signal updates).
        def wires(name, stmts):
            g = Module()
            g.d.comb += stmts
            m.submodules[name] = g

        b_in = Signal(self._bcast_layout)
        b_out = Signal(self._bcast_layout)
        wires("w_fifo", [
            b_in.j.eq(self.b_j), b_in.a.eq(self.b_a),
            fifo.w_data.eq(b_in), fifo.w_en.eq(self.b_valid),
            self.fifo_full.eq(~fifo.w_rdy),
        ])
        wires("w_ptr", [
            b_out.eq(fifo.r_data),
            ptr.col_valid.eq(fifo.r_rdy), ptr.col_j.eq(b_out.j), ptr.col_a.eq(b_out.a),
            fifo.r_en.eq(ptr.col_pop),
            ptr.ptr_base.eq(self.ptr_base),
        ])
        wires("w_spm", [
            spm.q_valid.eq(ptr.q_valid), spm.q.eq(ptr.q), ptr.q_pop.eq(spm.q_pop),
            spm.entry_base.eq(self.entry_base),
        ])
        wires("w_arith", [
            ar.spm_valid.eq(spm.spm_valid), ar.spm_entry.eq(spm.spm_entry),
            ar.spm_first.eq(spm.spm_first), ar.spm_a.eq(spm.spm_a),
            ar.codebook.eq(self.codebook),
        ])
        wires("w_acc", [
            acc.mul_valid.eq(ar.mul_valid), acc.mul_row.eq(ar.mul_row),
            acc.acc_valid.eq(ar.acc_valid), acc.acc_row.eq(ar.acc_row),
            acc.acc_prod.eq(ar.acc_prod),
        ])
        wires("w_layer", [
            acc.src_bank.eq(self.src_bank), acc.layer_start.eq(self.layer_start),
            acc.src_bias_base.eq(self.src_bias_base), acc.src_has_bias.eq(self.src_has_bias),
            acc.src_w_frac.eq(self.src_w_frac), acc.src_relu.eq(self.src_relu),
        ])
        wires("w_leaf", [acc.rd_en.eq(self.act_rd_en), acc.rd_addr.eq(self.act_rd_addr),
                         self.act_rd_data.eq(acc.rd_data)])
        wires("w_idle", [
            self.idle.eq((fifo.level == 0) & ptr.idle & spm.idle & ~ar.mul_valid
                         & ~ar.acc_valid),
        ])

        # Counters.
        busy = Signal(32)
        stall = Signal(32)
        with m.If(self.layer_start):
            m.d.sync += [busy.eq(0), stall.eq(0)]
        with m.Else():
            with m.If(spm.issue):
                m.d.sync += busy.eq(busy + 1)
            with m.If(self.stall_probe & self.fifo_full):
                m.d.sync += stall.eq(stall + 1)
        m.d.comb += [cnt_w.addr.eq(self.layer_idx), cnt_w.data.eq(Cat(busy, stall)),
                     cnt_w.en.eq(self.layer_end)]

        # Host port: writes, and reads with two cycles of latency (``h_r_data``); activation
        # rows are read through the activation stream (``act_rd_data``, ACT_READ_LATENCY cycles).
        for blk, region in ((ptr, Region.PTR), (spm, Region.SPMAT), (acc, None)):
            stmts = [
                blk.host_mode.eq(self.host_mode),
                blk.h_w_addr.eq(self.h_w_off),
                blk.h_w_data.eq(self.h_w_data),
                blk.h_r_addr.eq(self.h_r_off),
            ]
            if region is not None:
                stmts.append(blk.h_w_en.eq(self.h_w_en & (self.h_w_region == region)))
            else:
                stmts += [
                    acc.h_bias_w_en.eq(self.h_w_en & (self.h_w_region == Region.BIAS)),
                    acc.h_act_w_en.eq(self.h_w_en & (self.h_w_region == Region.ACT)),
                    acc.h_r_bias.eq(self.h_r_region == Region.BIAS),
                ]
            wires(f"w_host_{type(blk).__name__.lower()}", stmts)
        wires("w_host_cnt", [cnt_r.addr.eq(self.h_r_off >> 1)])
        r_region = Signal(3)
        r_half = Signal()
        m.d.sync += [r_region.eq(self.h_r_region), r_half.eq(self.h_r_off[0])]
        # the memories answer in cycle 1; the selected word is registered (cycle 2)
        with m.Switch(r_region):
            with m.Case(Region.PTR):
                m.d.sync += self.h_r_data.eq(ptr.h_r_data)
            with m.Case(Region.SPMAT):
                m.d.sync += self.h_r_data.eq(spm.h_r_data)
            with m.Case(Region.BIAS):
                m.d.sync += self.h_r_data.eq(acc.h_bias_r_data)
            with m.Case(Region.PECNT):
                m.d.sync += self.h_r_data.eq(cnt_r.data.word_select(r_half, 32))
            with m.Default():
                m.d.sync += self.h_r_data.eq(0)
        return m


