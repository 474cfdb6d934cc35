"""The bus-mapped BNN top for boards and RTL simulation: host bus in, nothing else out.

Around a :class:`BnnNetwork`: an input FIFO of words (``in_depth`` samples; 32 bits a word, or
the first layer's SIMD rounded up to 32-bit multiples, bus words staged into it; block RAM; the
network converts them to its first layer's SIMD words), an output FIFO of results (each class's
``dot`` stored in just the bits its range needs) the host drains as one sign-extended 32-bit
``dot`` per read (with ``last_thresholded``: the output bits, 32 a read), the weight/threshold
memories (written through the bus; ternary layers' masks too, ``weight_bits``), control and
counters. The address map is
:class:`eie.hw.bnn.memory_map.BnnMemoryMap` (also documented in ``docs/bnn.md``).

Per cycle: at most one bus access (a write takes effect at the clock edge; a read answers one
cycle later with ``r_ack``); an IN_DATA write pushes its word into the input FIFO (unless its
sample was dropped for want of a free slot); the input FIFO hands a word to the network
whenever RUN is set and the network can take one; the network's results enter the output FIFO
(when it is full the network stalls, counted in STALL); the counters update from the network's stream handshakes.
"""

from __future__ import annotations

from typing import Sequence

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In

from .folding import LayerFold, analytic_ii
from .words import BnnWeights, resolve_act_bits, resolve_last_thresholded, resolve_weight_bits
from ..common.bus import BusSignature
from .memory_map import CTRL, ERRORS, ID_VALUE, READ_LATENCY, STATUS, BnnMemoryMap, config_crc
from .network import BnnNetwork
from .threshold import dot_width

__all__ = ["BnnTop"]


class BnnTop(wiring.Component):
    """A BNN core behind the host bus. ``image`` bakes weights in (they stay loadable)."""

    def __init__(self, folds: Sequence[LayerFold], *, in_depth: int = 4, out_depth: int = 4,
                 image: BnnWeights | None = None, levels_per_stage: int = 2,
                 last_thresholded: bool | None = None,
                 weight_bits: Sequence[int] | None = None,
                 act_bits: Sequence[int] | None = None):
        thresholded = resolve_last_thresholded(image, last_thresholded)
        bits = resolve_weight_bits(len(folds), image, weight_bits)
        folds = resolve_act_bits(folds, image, act_bits)
        self._map = BnnMemoryMap(list(folds), in_depth=in_depth, out_depth=out_depth,
                                 last_thresholded=thresholded, weight_bits=bits)
        self._image = image
        self._levels_per_stage = levels_per_stage
        super().__init__({"bus": In(BusSignature(self._map.addr_width))})

    @property
    def memory_map(self) -> BnnMemoryMap:
        return self._map

    def elaborate(self, platform):
        m = Module()
        mm = self._map
        bus = self.bus
        # Input FIFO words: at least the first layer's SIMD bits, so its input buffer fills at
        # SIMD bits a cycle (sf cycles a sample, within its nf * sf cycles of work).
        per = -(-mm.folds[0].simd // 32)            # bus words per FIFO word
        fifo_width = 32 * per
        fifo_words = -(-mm.n_in // fifo_width)      # FIFO words per sample
        net = m.submodules.network = BnnNetwork(mm.folds, image=self._image, in_width=fifo_width,
                                                levels_per_stage=self._levels_per_stage,
                                                last_thresholded=mm.last_thresholded,
                                                weight_bits=mm.weight_bits)
        # One word more than the sample slots hold: SyncFIFOBuffered(depth=D) takes a write only
        # while its inner memory (D - 1 words ahead of the output register) has room, and the
        # IN_DATA writes below are posted (no w_rdy). With D = in_depth * fifo_words = 2, a word
        # written right after another into the empty FIFO was lost and the core hung; with one
        # word more the inner memory alone holds every word the slots let in.
        in_fifo = m.submodules.in_fifo = fifo.SyncFIFOBuffered(width=fifo_width,
                                                               depth=mm.in_depth * fifo_words + 1)
        dw = mm.folds[-1].dot_width                 # dots stored this narrow, read as int32
        out_width = mm.n_classes if mm.last_thresholded else dw * mm.n_classes
        out_fifo = m.submodules.out_fifo = fifo.SyncFIFOBuffered(width=out_width,
                                                                 depth=mm.out_depth)
        regs = mm.registers
        is_mem = bus.addr[mm.mem_bit]
        wr = bus.w_stb & ~is_mem
        rd = bus.r_stb & ~is_mem

        # --- control ------------------------------------------------------------------------
        run = Signal(init=1)
        clear = Signal()
        err_overflow = Signal()
        err_underflow = Signal()
        ctrl_w = CTRL.view(bus.w_data)
        with m.If(wr & (bus.addr == regs["CTRL"])):
            m.d.sync += run.eq(ctrl_w.run)
            m.d.comb += clear.eq(ctrl_w.clear)

        # --- input: 32-bit writes into a FIFO of words, counted in whole-sample slots -----
        # A sample takes a slot from its first IN_DATA write until the network has read its
        # last word out of the FIFO; a sample whose first word finds no free slot is dropped
        # whole (ERRORS bit 0). The FIFO holds in_depth samples of fifo_words words (block
        # RAM); with SIMD > 32, `per` bus words are staged into one FIFO word.
        in_words = mm.in_words
        w_idx = Signal(range(max(in_words, 2)))     # bus word of the sample being written
        w_sub = Signal(range(max(per, 2)))          # its place in the FIFO word
        r_idx = Signal(range(max(fifo_words, 2)))   # FIFO word of the sample being read out
        slots = Signal(range(mm.in_depth + 1))      # samples in the FIFO (or being written)
        dropping = Signal()
        in_write = wr & (bus.addr == regs["IN_DATA"])
        w_first = w_idx == 0
        w_last = w_idx == in_words - 1
        slot_free = slots != mm.in_depth
        reserve = Signal()
        keep = in_write & Mux(w_first, slot_free, ~dropping)
        with m.If(in_write):
            m.d.sync += w_idx.eq(Mux(w_last, 0, w_idx + 1))
            with m.If(w_first):
                m.d.sync += dropping.eq(~slot_free)
                m.d.comb += reserve.eq(slot_free)
                with m.If(~slot_free):
                    m.d.sync += err_overflow.eq(1)
        if per == 1:
            m.d.comb += [in_fifo.w_data.eq(bus.w_data), in_fifo.w_en.eq(keep)]
        else:
            stage = Signal(32 * (per - 1))
            push = w_last | (w_sub == per - 1)
            with m.If(in_write):
                m.d.sync += w_sub.eq(Mux(push, 0, w_sub + 1))
            with m.If(keep & ~push):
                m.d.sync += stage.word_select(w_sub, 32).eq(bus.w_data)
            with m.Switch(w_sub):
                for c in range(per):
                    with m.Case(c):
                        m.d.comb += in_fifo.w_data.eq(Cat(stage[:32 * c], bus.w_data))
            m.d.comb += in_fifo.w_en.eq(keep & push)

        # --- network between the FIFOs ------------------------------------------------------
        m.d.comb += [net.i.payload.eq(in_fifo.r_data), net.i.valid.eq(in_fifo.r_rdy & run),
                     in_fifo.r_en.eq(net.i.ready & run),
                     out_fifo.w_data.eq(net.o.payload if mm.last_thresholded
                                        else net.o.payload.as_value()),
                     out_fifo.w_en.eq(net.o.valid),
                     net.o.ready.eq(out_fifo.w_rdy)]
        word_fire = net.i.valid & net.i.ready
        r_last = r_idx == fifo_words - 1
        with m.If(word_fire):
            m.d.sync += r_idx.eq(Mux(r_last, 0, r_idx + 1))
        m.d.sync += slots.eq(slots + reserve - (word_fire & r_last))

        # --- output: the oldest result read 32 bits at a time -------------------------------
        out_idx = Signal(range(max(mm.out_words, 2)))
        out_word = Signal(32)
        if mm.last_thresholded:
            # output bits, 32 a read (the last read's high bits 0)
            bits = Cat(out_fifo.r_data, Const(0, 32 * mm.out_words - mm.n_classes))
            m.d.comb += out_word.eq(bits.word_select(out_idx, 32) if mm.out_words > 1
                                    else bits[:32])
        else:
            dot = Signal(signed(dw))
            m.d.comb += [dot.eq(out_fifo.r_data.word_select(out_idx, dw)
                                if mm.out_words > 1 else out_fifo.r_data[:dw]),
                         out_word.eq(dot)]              # sign extension to 32 bits
        out_read = rd & (bus.addr == regs["OUT_DATA"])
        with m.If(out_read):
            with m.If(~out_fifo.r_rdy):
                m.d.sync += err_underflow.eq(1)
            with m.Elif(out_idx == mm.out_words - 1):
                m.d.comb += out_fifo.r_en.eq(1)
                m.d.sync += out_idx.eq(0)
            with m.Else():
                m.d.sync += out_idx.eq(out_idx + 1)

        # --- memories: chunks staged, the last chunk of a word commits it -------------------
        max_chunks = max(mm.chunks(l, k) for l in range(mm.n_layers) for k in mm.kinds)
        chunk = bus.addr[:mm.chunk_bits] if mm.chunk_bits else Const(0, 1)
        layer = bus.addr[mm.layer_shift:mm.mem_bit]
        kind = bus.addr[mm.kind_shift] if mm.kind_bits == 1 else bus.addr[mm.kind_shift:mm.layer_shift]
        m.d.comb += [net.ld_layer.eq(layer), net.ld_kind.eq(kind),
                     net.ld_pe.eq(bus.addr[mm.pe_shift:mm.kind_shift]),
                     net.ld_addr.eq(bus.addr[mm.entry_shift:mm.pe_shift])]
        mem_wr = bus.w_stb & is_mem
        entry = bus.addr[mm.entry_shift:mm.pe_shift]
        pe = bus.addr[mm.pe_shift:mm.kind_shift]
        last_chunk = Signal(range(max_chunks))
        mem_ok = Signal()      # the address names a real word of a real memory
        with m.Switch(Cat(kind, layer)):
            for l in range(mm.n_layers):
                for k in mm.kinds:
                    if mm.depth(l, k) == 0:
                        continue  # the output layer has no thresholds, a W1 layer no masks
                    with m.Case((l << mm.kind_bits) | k):
                        m.d.comb += [last_chunk.eq(mm.chunks(l, k) - 1),
                                     mem_ok.eq((entry < mm.depth(l, k)) & (pe < mm.folds[l].pe)
                                               & (chunk < mm.chunks(l, k)))]
        if max_chunks > 1:
            stage = Signal(32 * (max_chunks - 1))
            with m.If(mem_wr & mem_ok & (chunk < last_chunk)):
                m.d.sync += stage.word_select(chunk, 32).eq(bus.w_data)
            with m.Switch(chunk):
                for c in range(max_chunks):
                    with m.Case(c):
                        m.d.comb += net.ld_data.eq(Cat(stage[:32 * c], bus.w_data))
        else:
            m.d.comb += net.ld_data.eq(bus.w_data)
        m.d.comb += net.ld_en.eq(mem_wr & mem_ok & (chunk == last_chunk))

        # --- counters -----------------------------------------------------------------------
        c = {name: Signal(32, name=f"cnt_{name.lower()}") for name in
             ("CYCLES", "SAMPLES_IN", "SAMPLES_OUT", "LATENCY", "II_LAST", "STALL",
              "T_FIRST_OUT", "T_LAST_OUT")}
        c["II_MIN"] = Signal(32, init=0xFFFFFFFF, name="cnt_ii_min")
        for l in range(mm.n_layers):
            c[f"STALL_L{l}"] = Signal(32, name=f"cnt_stall_l{l}")
        lat_run = Signal()
        lat_start = Signal(32)
        in_fire = word_fire & (r_idx == 0)           # the network starts taking a sample
        out_fire = net.o.valid & net.o.ready
        interval = c["CYCLES"] - c["T_LAST_OUT"]
        with m.If(clear):
            m.d.sync += [s.eq(s.init) for s in c.values()]
            m.d.sync += [lat_run.eq(0), err_overflow.eq(0), err_underflow.eq(0)]
        with m.Else():
            m.d.sync += c["CYCLES"].eq(c["CYCLES"] + 1)
            with m.If(net.o.valid & ~net.o.ready):
                m.d.sync += c["STALL"].eq(c["STALL"] + 1)
            for l in range(mm.n_layers):
                with m.If(net.stalls[l]):
                    m.d.sync += c[f"STALL_L{l}"].eq(c[f"STALL_L{l}"] + 1)
            with m.If(in_fire):
                m.d.sync += c["SAMPLES_IN"].eq(c["SAMPLES_IN"] + 1)
                with m.If((c["SAMPLES_IN"] == c["SAMPLES_OUT"]) & ~lat_run):
                    m.d.sync += [lat_run.eq(1), lat_start.eq(c["CYCLES"])]
            with m.If(out_fire):
                m.d.sync += [c["SAMPLES_OUT"].eq(c["SAMPLES_OUT"] + 1),
                             c["T_LAST_OUT"].eq(c["CYCLES"])]
                with m.If(c["SAMPLES_OUT"] == 0):
                    m.d.sync += c["T_FIRST_OUT"].eq(c["CYCLES"])
                with m.Else():
                    m.d.sync += c["II_LAST"].eq(interval)
                    with m.If(interval < c["II_MIN"]):
                        m.d.sync += c["II_MIN"].eq(interval)
                with m.If(lat_run):
                    m.d.sync += [lat_run.eq(0), c["LATENCY"].eq(c["CYCLES"] - lat_start)]

        # --- register reads (READ_LATENCY: one cycle) -------------------------------------
        assert READ_LATENCY == 1
        ctrl_r = Signal(CTRL.layout)
        status = Signal(STATUS.layout)
        errors = Signal(ERRORS.layout)
        m.d.comb += [ctrl_r.run.eq(run),
                     status.in_free.eq(mm.in_depth - slots), status.out_count.eq(out_fifo.level),
                     errors.overflow.eq(err_overflow), errors.underflow.eq(err_underflow)]
        readable = {
            "ID": ID_VALUE, "CTRL": ctrl_r, "STATUS": status,
            "OUT_DATA": Mux(out_fifo.r_rdy, out_word, 0), "ERRORS": errors,
            "N_IN": mm.n_in, "N_CLASSES": mm.n_classes, "N_LAYERS": mm.n_layers,
            "II_ANALYTIC": analytic_ii(mm.folds), "IN_DEPTH": mm.in_depth,
            "OUT_DEPTH": mm.out_depth,
            "CONFIG_CRC": config_crc(mm.folds, mm.last_thresholded, mm.weight_bits),
            **c,
        }
        m.d.sync += [bus.r_ack.eq(bus.r_stb), bus.r_data.eq(0)]
        with m.If(rd):
            with m.Switch(bus.addr):
                for name, value in readable.items():
                    with m.Case(regs[name]):
                        m.d.sync += bus.r_data.eq(value)
        return m
