"""Central control unit (CCU): the layer sequencer, the broadcast, the layer table and counters.

States and what happens in each cycle:

* ``IDLE`` -- the host owns the memories. A write of 1 to ``CTRL`` starts a run of ``N_LAYERS``
  layers with bank 0 as the source activation file (``busy`` rises, ``done`` clears).
* ``LSTART`` (1 cycle) -- the descriptor of the current layer (bases, flags) is latched from
  the layer table (the PEs keep the codebooks: ``layer.idx`` selects theirs; its ``n_in`` is
  latched as ``LSTART`` is entered, so the LNZD has it from its start); the
  LNZD restarts and starts filling the PEs' activation read pipelines (``act``); the PEs'
  per-layer counters restart and the destination bank's valid bits clear (``layer.start``).
* ``BCAST`` -- for the first ``ACT_READ_LATENCY`` cycles the read pipelines fill and nothing is
  offered (in the last of them the LNZD loads round 0); then the LNZD (the root of the quadtree
  is here) offers the next nonzero ``j`` (its value ``a_j`` in the cycle after);
  it is taken in this cycle unless the registered fill flags of some PE say its FIFO may have
  no room for it and the broadcasts still in flight (:mod:`eie.hw.eie.act_fifo`), and then
  written into every PE's FIFO in the next cycle (``bcast.valid`` and ``j``, registered; its
  value ``bcast.a`` a cycle later); otherwise held
  (``bcast.stall`` in the next cycle: every PE whose flag was set counts a stall cycle).
  Leaves when the LNZD is done.
* ``DRAIN`` -- waits until every PE is idle (FIFO empty, no broadcast arriving, nothing in the
  pointer and entry stages but, inside a run, an entry that is not its column's first in the
  entry stage's second register: it writes a row >= 1 three cycles later, which the next layer
  reads no sooner than its second cycle; the run's last layer, ``layer.last``, drains it; entries
  in ``mul_``, ``acc_`` and ``wr_`` land their writes within 2 cycles, into
  their own bank, and the PEs' read pipelines forward them to the next layer's first reads);
  at least 1 cycle. In
  the cycle every PE is idle the layer ends: its counters are stored, the source and destination
  banks swap (no host action) and the finished layer's write-back parameters (``w_frac``, ReLU,
  has bias) become the source's (``layer.src``), through which the next layer's LNZD leaves read
  it (its ``bias_base`` already as ``DRAIN`` is entered: the layer's inputs have all been read
  then, and each PE registers its copy before the next layer's first read);
  then the next layer's ``LSTART``, or ``IDLE`` with ``done`` set after the last layer.

There is no write-back phase: outputs stay raw in the destination bank and are shifted, rounded,
saturated, rectified and biased when read (see :mod:`eie.hw.eie.accum`).

Counters: per layer, total cycles (``LSTART`` to the end of ``DRAIN``, inclusive) and broadcasts;
``CYCLES`` counts the whole run (every busy cycle).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib.memory import Memory
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import EIEConfig, index_bits
from .lnzd import LNZD
from .memory_map import (ACT_READ_LATENCY, BCAST_IN_FLIGHT, CODEBOOK_OFFSET, CONFIG0, CONFIG1,
                         EIE_ID, LAYER_COUNTERS, LAYER_FIELDS, LAYER_FLAGS, LAYER_STRIDE,
                         REGS, ROUND_SLOTS, STATUS, MemoryMap)
from .signatures import (ActRead, Broadcast, HostPort, LayerParams, broadcast_copy_layout,
                         source_copy_layout)

__all__ = ["CCU"]


class CCU(wiring.Component):
    """Central control unit: runs ``N_LAYERS`` layers per start (``IDLE`` -> per layer
    ``LSTART`` -> ``BCAST`` -> ``DRAIN``, see the module docstring), with the LNZD inside.

    Ports (:mod:`eie.hw.eie.signatures`): ``host`` (in, a :class:`HostPort` of the global
    region without ``mode``: writes in effect at the end of the cycle, layer-table writes only
    while not ``busy``; ``r_addr`` -> ``r_data`` 2 cycles later); ``start_w`` (in: the request
    on ``host`` is a write of ``CTRL`` with ``start`` set, decoded from the address and the
    data by the top before its request register: it starts a run); ``tbl_w`` (in: the request
    is a write inside the layer table, decoded by the top alike); ``busy``, ``done``,
    ``starting`` (a run starts: ``busy`` rises at the end of this cycle); ``bcast``
    (out, a :class:`Broadcast` with one set of ``fill`` flags per PE) and ``idle_all`` (in:
    every PE is idle, the broadcasts arriving in this cycle and the one before aside: the CCU
    adds ``~bcast.valid`` and ``~valid_d`` itself); ``act`` (out, the :class:`ActRead` stream
    of the LNZD, one ``data`` lane per PE);
    ``layer`` (out, :class:`LayerParams`: the layer's ``ptr_base``, source
    ``src`` and ``start``/``end``/``idx``; the host's codebook writes for the PEs' copies,
    ``cbk_w_*``, a cycle after the table's); with ``bcast_copies > 1``, ``bcast_copies``
    (out, an array of that many :func:`~eie.hw.eie.signatures.broadcast_copy_layout`): copies
    of ``bcast``'s outgoing registers, each a register of its own set from the same inputs in
    the same cycle (equal to ``bcast``'s in every cycle), for the top to feed a group of PEs
    from each: a register per group placed near it instead of one net to every PE across the
    chip (a board build keeps them apart: ``eie.boards.build``); ``bank_copies`` (out, a bit
    a copy): copies of ``layer.src.bank`` alike; ``src_copies`` (out, an array of
    :func:`source_copy_layout`): copies of the rest of ``layer.src`` (``bias_base``,
    ``has_bias``, ``w_frac``, ``relu``) alike.

    Handshake (``BCAST``): the LNZD's nonzero is taken (``o.ready``) unless ``hold``: the
    registered OR of every PE's ``fill`` flags, at bit ``in_flight`` (the broadcasts decided 1
    and 2 cycles ago); ``bcast.valid``/``j`` show it in the next cycle (``bcast.a`` in the
    one after), else
    ``bcast.stall`` and ``bcast.in_flight`` say it was held. Latency: ``LSTART`` follows the
    start's cycle; descriptor latched at its end (``n_in`` at its beginning); first nonzero
    taken
    ``ACT_READ_LATENCY + 1`` cycles after ``LSTART``, in the FIFOs a cycle later. Counts: ``CYCLES``
    (busy cycles of a run); per layer its cycles (``LSTART`` to the end of ``DRAIN``) and
    broadcasts, stored at its end.

    ``mutant``: for the formal tests only; ``"copy_ignores_hold"``: every copy of the broadcast's
    registers but the first shows the nonzero offered as broadcast even when it is held back.
    """

    def __init__(self, config: EIEConfig, *, bcast_copies: int = 1, mutant: str | None = None):
        if not isinstance(bcast_copies, int) or bcast_copies < 1:
            raise ValueError(f"bcast_copies must be a positive int, not {bcast_copies!r}")
        if mutant not in (None, "copy_ignores_hold"):
            raise ValueError(f"unknown mutant {mutant!r}")
        self._copies = bcast_copies
        self._mutant = mutant
        self._config = c = config
        self._map = mm = MemoryMap(config)
        n = c.n_pe
        self._w = dict(n_in=c.size_bits, n_out=c.size_bits, ptr_base=c.ptr_base_bits,
                       entry_base=c.ptr_bits, bias_base=c.bias_base_bits, flags=LAYER_FLAGS.size)
        super().__init__({
            # the global region's offset: the PE and offset fields of a host address
            "host": In(HostPort(mm.pe_bits + mm.off_bits, mode=False)),
            "start_w": In(1),
            "tbl_w": In(1),
            "busy": Out(1),
            "starting": Out(1),
            "done": Out(1),
            "bcast": Out(Broadcast(c.j_bits, lanes=n)),
            "idle_all": In(1),
            "act": Out(ActRead(c.act_addr_bits, lanes=n, slots=ROUND_SLOTS)),
            "layer": Out(LayerParams(c)),
            **({"bcast_copies": Out(data.ArrayLayout(broadcast_copy_layout(c.j_bits),
                                                     bcast_copies)),
                "bank_copies": Out(bcast_copies),
                "src_copies": Out(data.ArrayLayout(source_copy_layout(c), bcast_copies))}
               if bcast_copies > 1 else {}),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        mm = self._map
        n = c.n_pe
        L = c.max_layers
        host, bcast, layer_out = self.host, self.bcast, self.layer

        # ---- layer table and registers ----------------------------------------------------
        # Descriptor fields in flip-flops (the datapath's copy), and a read-back copy of every
        # table word in a memory, so host reads need no wide multiplexer. The codebooks are
        # kept by the PEs, each its own copy (Arith), written through layer.cbk_w_*.
        tbl = {f: [Signal(w, name=f"tbl{l}_{f}") for l in range(L)] for f, w in self._w.items()}
        span = LAYER_STRIDE * L
        m.submodules.tbl_rb = tbl_rb = Memory(shape=32, depth=span, init=[],
                                                attrs={"ram_style": "block"})
        rb_w, rb_r = tbl_rb.write_port(), tbl_rb.read_port()
        m.submodules.lcnt = lcnt = Memory(shape=64, depth=L, init=[])
        lcnt_w, lcnt_r = lcnt.write_port(), lcnt.read_port()
        n_layers = Signal(8)
        done = Signal()
        err = Signal()
        run_cycles = Signal(32)

        def table_index(off):
            """(in the table, layer, word in the descriptor) of a global offset."""
            rel = Signal(range(span))
            inside = Signal()
            m.d.comb += [rel.eq(off - mm.layer_base),
                         inside.eq((off >= mm.layer_base) & (off < mm.layer_base + span))]
            return inside, rel // LAYER_STRIDE if L > 1 else 0, rel % LAYER_STRIDE

        # N_LAYERS is allowed (1 .. max_layers): a register set with it, so that the start's
        # check begins at a flip-flop too
        n_ok = Signal()
        with m.If(host.w_en & (host.w_addr == REGS["N_LAYERS"][0])):
            m.d.sync += [n_layers.eq(host.w_data),
                         n_ok.eq((host.w_data[:8] != 0) & (host.w_data[:8] <= L))]
        # a write inside the table: ``tbl_w``, decoded by the top before its request register
        # (from the address comparisons, three LUT levels and their routes were the 4-PE
        # core's critical path into every table word's enable)
        _, w_layer, w_word = table_index(host.w_addr)
        w_tbl = Signal()
        m.d.comb += w_tbl.eq(self.tbl_w & ~self.busy)
        rb_data = Signal(32)            # what a read-back returns: the bits the table holds
        w_cb = Signal()                 # the word written is a codebook entry
        with m.Switch(w_word):
            for f, (off, _) in LAYER_FIELDS.items():
                with m.Case(off):
                    m.d.comb += rb_data.eq(host.w_data[:self._w[f]])
                    for l in range(L):
                        with m.If(w_tbl & (w_layer == l)):
                            m.d.sync += tbl[f][l].eq(host.w_data)
            with m.Case(*range(CODEBOOK_OFFSET, CODEBOOK_OFFSET + 16)):
                m.d.comb += [rb_data.eq(host.w_data[:16].as_signed()), w_cb.eq(1)]
        m.d.comb += [
            rb_w.addr.eq(w_layer * LAYER_STRIDE + w_word), rb_w.data.eq(rb_data),
            rb_w.en.eq(w_tbl),
        ]
        # A codebook entry goes on to every PE's copy, registered (a narrow bus to the PEs, not
        # the 256-bit codebook: that broadcast and its multiplexers were 63% of the 16-PE
        # build's routing congestion, docs/eie-hardware.md).
        cb_entry = w_word - CODEBOOK_OFFSET
        m.d.sync += [
            layer_out.cbk_w_en.eq(w_tbl & w_cb),
            layer_out.cbk_w_addr.eq(w_layer * 16 + cb_entry[:4]),
            layer_out.cbk_w_data.eq(host.w_data[:16]),
        ]

        # Reads: the address in cycle 0, the registers (through a register) and the memories
        # (table, counters) answer in cycle 1, host.r_data is registered (cycle 2).
        r_in, r_layer, r_word = table_index(host.r_addr)
        m.d.comb += rb_r.addr.eq(r_layer * LAYER_STRIDE + r_word)
        c_rel = Signal(index_bits(len(LAYER_COUNTERS) * L))
        c_in = Signal()
        m.d.comb += [
            c_rel.eq(host.r_addr - mm.counter_base),
            c_in.eq((host.r_addr >= mm.counter_base)
                    & (host.r_addr < mm.counter_base + len(LAYER_COUNTERS) * L)),
            lcnt_r.addr.eq(c_rel >> 1),
        ]
        reg_word = Signal(32)
        status = Signal(STATUS.layout)
        m.d.comb += [status.busy.eq(self.busy), status.done.eq(done),
                     status.bank.eq(layer_out.src.bank), status.error.eq(err)]
        # The register block's word by the address's low bits alone (a multiplexer of eight),
        # and whether the address is in the block at all, registered apart and combined a cycle
        # later (the full address's decode -> six LUTs -> ``r1_reg`` was a 16-PE board build's
        # critical path at 100 MHz)
        reg_bits = index_bits(max(off for off, _, _ in REGS.values()) + 1)
        r_isreg = Signal()
        m.d.comb += r_isreg.eq(host.r_addr[reg_bits:] == 0)
        with m.Switch(host.r_addr[:reg_bits]):
            with m.Case(REGS["ID"][0]):
                m.d.comb += reg_word.eq(EIE_ID)
            with m.Case(REGS["CONFIG0"][0]):
                m.d.comb += reg_word.eq(CONFIG0.const(n_pe=n, fifo_depth=c.fifo_depth))
            with m.Case(REGS["CONFIG1"][0]):
                m.d.comb += reg_word.eq(CONFIG1.const(max_layers=L, acc_bits=c.acc_bits,
                                                      act_frac=c.act_frac))
            with m.Case(REGS["N_LAYERS"][0]):
                m.d.comb += reg_word.eq(n_layers)
            with m.Case(REGS["STATUS"][0]):
                m.d.comb += reg_word.eq(status)
            with m.Case(REGS["CYCLES"][0]):
                m.d.comb += reg_word.eq(run_cycles)
        r1_reg = Signal(32)
        r1_tbl = Signal()
        r1_cnt = Signal()
        r1_half = Signal()
        r1_isreg = Signal()
        m.d.sync += [r1_reg.eq(reg_word), r1_tbl.eq(r_in), r1_cnt.eq(c_in), r1_half.eq(c_rel[0]),
                     r1_isreg.eq(r_isreg)]
        with m.If(r1_tbl):
            m.d.sync += host.r_data.eq(rb_r.data)
        with m.Elif(r1_cnt):
            m.d.sync += host.r_data.eq(lcnt_r.data.word_select(r1_half, 32))
        with m.Elif(r1_isreg):
            m.d.sync += host.r_data.eq(r1_reg)
        with m.Else():
            m.d.sync += host.r_data.eq(0)

        # ---- current layer ----------------------------------------------------------------
        layer = Signal(c.layer_bits)
        n_in = Signal(c.j_bits + 1)
        flags = Signal(LAYER_FLAGS.layout)
        bias_base = Signal(self._w["bias_base"])
        # The source bank: 0 as a run starts, the other one as a layer ends; its register and a
        # copy a group of PEs (``bank_copies``), set from the same next value: the PEs' file
        # addresses use it without a register of their own (a net from here to every PE's
        # file address was the 16-PE board build's critical path, 12 ns of route)
        bank_clear = Signal()
        bank_toggle = Signal()
        bank_next = Signal()
        # The controller's own registers of what it copies for the groups are named
        # ``fanout_*`` like the copies (the bank, the source's parameters, the broadcast), so
        # that a board build keeps them apart: set from the same next value, Yosys merged each
        # into one of its copies, which the placer puts beside that copy's group of PEs, and
        # the controller's own logic (the broadcast decision among it) read it from there
        # (eie.boards.build.KEEP_FANOUT)
        bank = Signal(name="fanout_bank")
        m.d.comb += [bank_next.eq(Mux(bank_clear, 0, bank ^ bank_toggle)),
                     layer_out.src.bank.eq(bank)]
        m.d.sync += bank.eq(bank_next)
        if self._copies > 1:
            for g in range(self._copies):
                copy = Signal(name=f"fanout_bank{g}")
                m.d.sync += copy.eq(bank_next)
                m.d.comb += self.bank_copies[g].eq(copy)
        # the write-back of the layer that produced the source bank (0: the host's inputs)
        src_own = Signal(source_copy_layout(c), name="fanout_src")
        # the rest of the source's parameters a copy a group of PEs too (``src_copies``), set
        # with ``src_own`` (each PE registers its own from its group's:
        # the CCU's ``w_frac`` register to PE 11's was the 16-PE board build's critical path
        # at 100 MHz, 11.8 ns of route, 81.2 MHz)
        src_copies = [Signal(source_copy_layout(c), name=f"fanout_src{g}")
                      for g in range(self._copies if self._copies > 1 else 0)]
        for g, copy in enumerate(src_copies):
            m.d.comb += self.src_copies[g].eq(copy)

        def set_flags(value=None):
            """``src_own``'s flags and its copies' take ``value`` (a ``LAYER_FLAGS`` view; 0 if
            none)."""
            names = ("w_frac", "relu", "has_bias")
            return [getattr(reg, name).eq(0 if value is None else getattr(value, name))
                    for reg in [src_own, *src_copies] for name in names]

        m.d.comb += [layer_out.idx.eq(layer)] + [
            getattr(layer_out.src, name).eq(getattr(src_own, name))
            for name in ("w_frac", "relu", "has_bias", "bias_base")]

        def pick(f, idx=layer):
            """Field ``f`` of layer ``idx``'s descriptor (the current layer's by default; a
            multiplexer tree)."""
            return Cat(*tbl[f]).word_select(idx, self._w[f]) if L > 1 else tbl[f][0]

        m.submodules.lnzd = lnzd = LNZD(n, c.j_bits, c.act_depth, latency=ACT_READ_LATENCY)
        wiring.connect(m, lnzd.rd, wiring.flipped(self.act))
        m.d.comb += lnzd.n_in.eq(n_in)
        # The registered broadcast (see eie.hw.eie.act_fifo): every PE's FIFO fill, OR'ed over
        # the PEs into a register; the broadcasts decided 1 and 2 cycles ago may not be in it.
        # (from reset: empty FIFOs', like the PEs' own fill registers). The decision reads two
        # bits of it selected a cycle ahead (``hold_if``, below); ``fill_any`` itself stays as
        # the reference the FIFO proof's invariants name (synthesis drops it).
        fill_any = Signal(BCAST_IN_FLIGHT + 1, init=sum(
            1 << i for i in range(BCAST_IN_FLIGHT + 1) if c.fifo_depth - i <= 0))
        fill_or = Signal.like(fill_any)
        m.d.comb += fill_or.eq(Cat(*(Cat(*(bcast.fill[k][i] for k in range(n))).any()
                                     for i in range(BCAST_IN_FLIGHT + 1))))
        m.d.sync += fill_any.eq(fill_or)
        valid_d = Signal()                  # the broadcast decided 2 cycles ago
        m.d.sync += valid_d.eq(bcast.valid)
        in_flight = Signal(range(BCAST_IN_FLIGHT + 1))
        m.d.comb += in_flight.eq(bcast.valid + valid_d)
        # hold = fill_any[in_flight], selected a cycle ahead for both values of the broadcast
        # being decided now (``bcast.valid`` of the next cycle), so that the decision loop
        # (decide -> bcast.valid -> hold -> decide) has one multiplexer, not the in-flight sum
        # and the fill select: hold_if[v] is fill_any[valid_d + v] of the next cycle
        hold_if = Signal(2, init=fill_any.init & 0b11)      # (from reset: valid_d is 0)
        m.d.sync += hold_if.eq(Cat(fill_or.bit_select(bcast.valid, 1),
                                   fill_or.bit_select(bcast.valid + 1, 1)))
        hold = Signal()
        m.d.comb += hold.eq(hold_if.bit_select(bcast.valid, 1))
        decide = Signal()                   # the nonzero offered goes out (next cycle)
        held = Signal()                     # ... is held back
        nxt = {"valid": decide, "stall": held, "in_flight": in_flight,
               "j": lnzd.o.payload.j,
               "a": lnzd.a}                 # the LNZD's value comes a cycle after its j
        own = Signal(broadcast_copy_layout(c.j_bits), name="fanout_bcast")
        m.d.sync += [getattr(own, name).eq(value) for name, value in nxt.items()]
        m.d.comb += [getattr(bcast, name).eq(getattr(own, name)) for name in nxt]
        if self._copies > 1:
            # one register each, named ``fanout_*`` (a board build keeps those from being
            # merged: eie.boards.build.KEEP_FANOUT)
            for g in range(self._copies):
                copy = Signal(broadcast_copy_layout(c.j_bits), name=f"fanout_bcast{g}")
                mine = dict(nxt)
                if self._mutant == "copy_ignores_hold" and g > 0:
                    mine["valid"] = decide | held
                m.d.sync += [getattr(copy, name).eq(value) for name, value in mine.items()]
                m.d.comb += self.bcast_copies[g].eq(copy)

        lcyc = Signal(32)
        bcnt = Signal(32)
        # In DRAIN, no broadcast arriving now or in the cycle before: the layer end's condition
        # but for the PEs' idle flags, a register set a cycle ahead (no broadcast taken or
        # arriving then, in BCAST's last cycle or in DRAIN), so that the layer end is the AND
        # of the groups' idle registers and this one, not of those and the broadcast's
        # registers (the groups' idle registers -> 3 LUTs -> the layer end -> ``busy`` was the
        # 16-PE board build's critical path at 100 MHz, seed 1: 94.6 MHz)
        quiet = Signal()
        m.d.sync += quiet.eq(0)
        # In LSTART: a register set as the FSM enters it, so that the LNZD's start (its first
        # read address, then a copy a group of PEs) begins at a flip-flop, not at a decode of
        # the FSM's state (the FSM's state -> ``layer.start`` -> the LNZD's ``issue`` -> the
        # next read address -> 3.4 ns of route -> group 0's copy was the 16-PE board build's
        # critical path at 100 MHz, seed 1: 98.7 MHz)
        lstart = Signal()
        m.d.sync += lstart.eq(0)
        # The running layer is the run's last: a register of the comparison (``layer`` is set
        # at a layer end and DRAIN comes at least two cycles later; the host writes
        # ``n_layers`` before a start: a write during a run, which no host program makes and
        # the contract leaves undefined, counts from the cycle after it), so that ``busy``'s
        # clear is the layer end and one flip-flop, not the end and an adder's comparison
        is_last = Signal()
        m.d.sync += is_last.eq(layer + 1 == n_layers)
        # the PEs end a layer with its last entry still in the entry stage only inside a run: the
        # run's last layer drains that stage, so that no write lands after ``busy`` falls
        m.d.comb += layer_out.last.eq(is_last)
        m.d.comb += [lnzd.start.eq(lstart), layer_out.start.eq(lstart)]

        with m.If(self.busy):
            m.d.sync += [run_cycles.eq(run_cycles + 1), lcyc.eq(lcyc + 1)]

        with m.FSM():
            with m.State("IDLE"):
                # a start: ``start_w``, a write of CTRL with ``start`` set, decoded by the top
                # before its request register, so the start, ``starting`` and every PE's host
                # mode behind it begin at a flip-flop, not at an address comparison or a data bit
                with m.If(self.start_w):
                    with m.If(~n_ok):
                        m.d.sync += [err.eq(1), done.eq(0)]
                    with m.Else():
                        m.d.comb += [self.starting.eq(1), bank_clear.eq(1)]
                        m.d.sync += [err.eq(0), done.eq(0), self.busy.eq(1), run_cycles.eq(0),
                                     layer.eq(0), *set_flags(),
                                     n_in.eq(tbl["n_in"][0])]
                        m.d.sync += lstart.eq(1)
                        m.next = "LSTART"
            with m.State("LSTART"):
                m.d.sync += [
                    layer_out.ptr_base.eq(pick("ptr_base")),
                    bias_base.eq(pick("bias_base")),
                    flags.eq(pick("flags")),
                    lcyc.eq(1), bcnt.eq(0),
                ]
                m.next = "BCAST"
            with m.State("BCAST"):
                m.d.comb += [
                    lnzd.o.ready.eq(~hold),
                    decide.eq(lnzd.o.valid & ~hold),
                    held.eq(lnzd.o.valid & hold),
                ]
                with m.If(decide):
                    m.d.sync += bcnt.eq(bcnt + 1)
                with m.If(lnzd.done):
                    m.d.sync += quiet.eq(~decide & ~bcast.valid)
                    # every input of the layer has been read (its bias slot looked up): the
                    # PEs' bias slot adders take the next source's base from here on, a cycle
                    # ahead of the layer end, so that each PE registers its own copy in time
                    # for the next layer's first read (LSTART)
                    m.d.sync += [reg.bias_base.eq(bias_base) for reg in [src_own, *src_copies]]
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                # every PE idle, and no broadcast arriving now or in the cycle before (the
                # CCU's own registers: ``quiet``)
                m.d.sync += quiet.eq(~bcast.valid)
                with m.If(self.idle_all & quiet):
                    m.d.comb += [layer_out.end.eq(1), bank_toggle.eq(1)]
                    m.d.comb += [lcnt_w.addr.eq(layer), lcnt_w.data.eq(Cat((lcyc + 1)[:32], bcnt)),
                                 lcnt_w.en.eq(1)]
                    m.d.sync += [
                        *set_flags(flags),
                        layer.eq(layer + 1),
                    ]
                    with m.If(is_last):
                        m.d.sync += [self.busy.eq(0), done.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [n_in.eq(pick("n_in", layer + 1)), lstart.eq(1)]
                        m.next = "LSTART"
        m.d.comb += self.done.eq(done)
        return m
