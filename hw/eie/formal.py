"""Formal harnesses of the EIE's control: the properties, the free environment around each block,
and the strengthening invariants that make the properties inductive.

Each harness is an Amaranth elaboratable with no ports: its block(s), free inputs
(``AnyConst``/``AnySeq``: the solver picks them, every cycle for ``AnySeq``), ``Assume``
statements for the block's input contract, ``Assert`` statements (the properties, then the
invariants) and ``Cover`` statements (to show the properties are not vacuous). The runner,
:func:`eie.sim.formal.prove`, hands one to SymbiYosys; docs/formal.md says what is proved for
which configurations, and how long it takes.

* :class:`BroadcastFifoHarness` -- the CCU with one activation FIFO per PE, the PEs'
  consumption free: no FIFO ever overflows or underflows.
* :class:`LNZDHarness` -- the LNZD over a model of the activation files: every nonzero
  activation goes out exactly once, in increasing index, and nothing else does.
* :class:`AccumulatorHarness` -- the accumulator with its bypass: every write and every read
  of a row gives the sum of every product accumulated into it (bounded).
* :class:`PtrReadHarness` -- a PE's pointer stage with its queue: the queue never overflows,
  holds exactly its columns, and the take's ``occupancy`` register equals the columns it counts.

Every harness takes ``mutant=`` (a deliberately broken variant, :data:`MUTANTS`, for the tests
that show the proof can fail); the two proved by induction take ``invariants=`` (``False``
leaves out the strengthening invariants: enough for a bounded check, and then a broken variant
fails on the property itself rather than on an invariant).

Gateware only (Amaranth and :mod:`eie.hw.eie`); the blocks are imported inside ``elaborate``.
The invariants read internal signals of a block (its registers), found by name in its
elaborated fragment (:func:`internals`); a block that renames one makes the harness raise a
``LookupError`` naming it, rather than prove something else. The ports are found through
:data:`PORTS`.
"""

from __future__ import annotations

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import (Array, Assert, Assume, Cat, Const, Cover, Elaboratable, Fragment, Module,
                          Mux, Signal, Value, signed)
from amaranth.lib.wiring import In

from .config import EIEConfig

__all__ = ["PORTS", "port", "internals", "free", "fifo_properties", "BroadcastFifoHarness",
           "LNZDHarness", "AccumulatorHarness", "PtrReadHarness", "ccu_config", "ptr_config",
           "MUTANTS"]

#: the deliberately broken variants of each harness
MUTANTS = {
    "BroadcastFifoHarness": ("ignore_full", "fill_off_by_one", "copy_ignores_hold"),
    "LNZDHarness": ("blind_leaf",),
    "AccumulatorHarness": ("no_bypass1", "no_bypass2", "no_forward1", "no_forward2"),
    "PtrReadHarness": ("limit_plus_one", "uncounted_drop"),
}


def internals(block, names, platform="formal"):
    """Elaborate ``block`` and find its internal signals ``names`` (signals its own module
    assigns, not its sub-modules'). Returns ``(fragment, {name: Signal})``; add the fragment as
    the submodule in place of the block. Raises ``LookupError`` naming the missing ones."""
    frag = Fragment.get(block, platform)
    found = {}
    for stmts in frag.statements.values():
        for stmt in stmts:
            for sig in stmt._lhs_signals():
                found.setdefault(sig.name, sig)
    missing = [n for n in names if n not in found]
    if missing:
        raise LookupError(f"{type(block).__name__} has no internal signal {', '.join(missing)} any "
                          f"more: the formal invariants of eie.hw.eie.formal read it; update "
                          f"them to the new design")
    return frag, {n: found[n] for n in names}


#: where each port the harnesses use lives in the blocks' signatures
#: (:mod:`eie.hw.eie.signatures`)
PORTS = {
    "rd.addr": "rd.addr",
    "rd.addr_next": "rd.addr_next",
    "rd.data": "rd.data",
    "rd.nz": "rd.nz",
    "rd.slot_we": "rd.slot_we",
    "rd.scan": "rd.scan",
    "rd.scan_next": "rd.scan_next",
    "rd.held": "rd.held",
    "o.valid": "o.valid",
    "o.ready": "o.ready",
    "o.j": "o.payload.j",
    "a": "a",
    "bcast.valid": "bcast.valid",
    "bcast": "bcast",
    "bcast.fill": "bcast.fill",
    "bcast.stall": "bcast.stall",
    "bcast_copies": "bcast_copies",
    "bank_copies": "bank_copies",
    "src_copies": "src_copies",
    "layer.src": "layer.src",
    "layer.src.bank": "layer.src.bank",
    "idle_all": "idle_all",
}


def port(block, what):
    """``block``'s port ``what`` (a key of :data:`PORTS`)."""
    obj = block
    try:
        for name in PORTS[what].split("."):
            obj = getattr(obj, name)
    except AttributeError:
        raise AttributeError(f"{type(block).__name__} has no port {PORTS[what]}: update "
                             f"eie.hw.eie.formal.PORTS") from None
    return obj


def free(m, shape, name, const=False):
    """A named signal driven by a free value (``AnyConst`` if ``const``, else ``AnySeq``)."""
    s = Signal(shape, name=name)
    m.d.comb += s.eq(AnyConst(shape) if const else AnySeq(shape))
    return s


# ----------------------------------------------------------------------------- FIFOs

def fifo_properties(m, fifo, depth, label):
    """The FIFO properties at ``fifo``'s ports (``w_en``/``w_rdy``, ``r_en``/``r_rdy``,
    ``level``), whatever drives them. ``owed`` counts the entries the PE is owed: every write
    presented (accepted or not) minus every entry it took (``r_en & r_rdy``); it saturates one
    above ``depth``, so an overflow stays visible.

    * overflow: no write is presented while the FIFO is full, and the PE is never owed more
      than the FIFO holds;
    * underflow: the FIFO offers an entry (``r_rdy``) only when the PE is owed one, and holds
      exactly the entries the PE is owed (none lost, none made up).

    Returns ``owed``."""
    owed = Signal(range(depth + 2), name=f"owed_{label.replace(' ', '')}")
    push = fifo.w_en
    pop = fifo.r_en & fifo.r_rdy
    nxt = Signal(range(-1, depth + 3), name=f"owed_next_{label.replace(' ', '')}")
    m.d.comb += nxt.eq(owed + push - pop)
    m.d.sync += owed.eq(Mux(nxt > depth + 1, depth + 1, Mux(nxt < 0, 0, nxt)))
    m.d.comb += [
        Assert(~(fifo.w_en & ~fifo.w_rdy), f"{label}: no broadcast reaches a full FIFO (overflow)"),
        Assert(owed <= depth, f"{label}: never owed more than the FIFO holds (overflow)"),
        Assert(~fifo.r_rdy | (owed != 0), f"{label}: no entry offered from an empty FIFO "
               f"(underflow)"),
        Assert(fifo.level == owed, f"{label}: the FIFO holds exactly the broadcasts not yet "
               f"taken"),
    ]
    return owed


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

    def __init__(self, config: EIEConfig, *, mutant: str | None = None, invariants: bool = True):
        if mutant not in (None, *MUTANTS["BroadcastFifoHarness"]):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.config = config
        self.mutant = mutant
        self.invariants = invariants

    def copies(self) -> int:
        """The copies of the broadcast's registers :class:`eie.hw.eie.top.EIETop` gives the
        CCU for this many PEs (one a group of PEs)."""
        from .top import pe_groups

        return pe_groups(self.config.n_pe)

    def wire(self, m, ccu, fifos):
        """The broadcast as :class:`eie.hw.eie.top.EIETop` wires it: lane ``k`` of the CCU's
        ``bcast`` to PE ``k``'s FIFO block, from the copy of its group's registers. Returns the
        CCU inputs it drove."""
        from .signatures import connect_lane
        from .top import pe_group

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
        from .memory_map import BCAST_IN_FLIGHT

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
        from .act_fifo import ActFifo
        from .ccu import CCU        # gateware imports inside: this module stays light

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
        owed = [fifo_properties(m, f.fifo, c.fifo_depth, f"PE {k}") for k, f in enumerate(fifos)]
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


# ----------------------------------------------------------------------------- LNZD

class LNZDHarness(Elaboratable):
    """The LNZD (``n`` leaves, read ``latency``) over a model of the PEs' activation files:
    every nonzero activation ``x_j`` with ``j < n_in`` goes out (``o.valid & o.ready``) exactly
    once, in increasing ``j``, with its value, and nothing else does; ``done`` rises only when
    they all went out.

    Free: the activation files (``act_depth`` rows a PE, any values, fixed), each layer's
    ``n_in`` (``0 .. n * act_depth``, fixed from its ``start`` cycle on), the consumer's
    ``o_ready`` in every cycle, when each layer starts (any cycle the contract allows: after
    reset, or once ``done`` has been high for a cycle, as the CCU's ``DRAIN`` ensures), the
    reset. The read pipelines are modelled as the contract says: ``rd.data`` shows the rows
    addressed ``latency`` cycles earlier (they advance in every cycle).

    The properties, on every ``o_valid & o_ready`` (with ``last`` the ``j`` of the layer's last
    broadcast): ``j < n_in``; ``j > last``; no nonzero between ``last`` and ``j``; in the
    next cycle, ``a == x_j != 0``. On ``done``: no nonzero after ``last``. Whenever the LNZD
    takes a round, it is in the round buffer or arriving. The strengthening invariants tie the
    LNZD's registers to the model: the rounds addressed (``t_issue``) are the taken ones, the
    buffered ones and the ones in flight, in order, each in-flight stage carrying its round's
    row; every buffer slot holds its round's flags, and every PE's slot (the PEs' own
    :class:`~eie.hw.eie.round_slots.RoundSlots`, modelled here) its round's value; each PE's
    registered write enables are the arriving round's slot; while priming a round is addressed in
    every cycle; while scanning, every round in flight is at least as far behind the held one
    as it has stages left to go (so it arrives by the cycle it can be taken) and the next
    ``latency`` rounds are addressed; the held round's slot is the one before the buffer's head
    and holds its values; the pending flags are exactly the held round's nonzeros not yet
    sent, and every nonzero of the earlier rounds went out.

    ``mutant="blind_leaf"``: the LNZD's last leaf reads zeros (a detector that skips a leaf).
    ``contract=False`` also lets a layer start in the very cycle ``done`` rises: the LNZD then
    reads round 0 from a stale address (its address returns to 0 only at the end of that
    cycle), so the properties fail; the contract it needs is the one above.
    """

    def __init__(self, n: int, act_depth: int = 2, latency: int = 1, *,
                 mutant: str | None = None, invariants: bool = True, contract: bool = True):
        if mutant not in (None, *MUTANTS["LNZDHarness"]):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.contract = contract
        self.n = n
        self.act_depth = act_depth
        self.latency = latency
        self.mutant = mutant
        self.invariants = invariants

    def elaborate(self, platform):
        from .lnzd import LNZD
        from .round_slots import RoundSlots

        m = Module()
        n, L, rows = self.n, self.latency, self.act_depth
        n_max = n * rows
        j_bits = max(1, (n_max - 1).bit_length())          # as EIEConfig.j_bits
        lnzd = LNZD(n, j_bits, rows, latency=L)
        names = ["running", "fanout_t_issue", "jbase", "jbase_next", "more", "pending", "first",
                 "load", "none", "one", "priming", "pcount", "issue", "issue_jbase",
                 "issue_more", "outstanding", "arr", "arrival", "arr_jbase", "take", "rptr",
                 "wptr", "occ", "cur_onehot"]
        names += [f"slot{q}_{what}" for q in range(lnzd.slots)
                  for what in ("flags", "any", "several")]
        names += ["in_layer"] + (["left_nxt"] if L >= 2 else [])
        frag, s = internals(lnzd, names, platform)
        s["t_issue"] = s["fanout_t_issue"]
        m.submodules.lnzd = frag

        # ---- the activation files: PE k's row t holds x_{t*n+k}; rows past act_depth too
        rd_addr, rd_data, rd_nz = (port(lnzd, f"rd.{x}") for x in ("addr", "data", "nz"))
        rd_addr_next = port(lnzd, "rd.addr_next")
        o_valid, o_ready, o_j = (port(lnzd, f"o.{x}") for x in ("valid", "ready", "j"))
        o_a = port(lnzd, "a")
        a_bits = len(rd_addr)
        mem = [[free(m, signed(16), f"x_pe{k}_row{t}", const=True) for t in range(1 << a_bits)]
               for k in range(n)]
        x = [mem[j % n][j // n] for j in range(n_max)]
        # the read pipelines: the address of each stage, advancing in every cycle, from each
        # PE's register of ``rd.addr_next`` (as the PE reads it: ``rd.addr`` in every cycle)
        pe_addr = Signal(a_bits, name="pe_addr")
        m.d.sync += pe_addr.eq(rd_addr_next)
        addr = [Signal(a_bits, name=f"pipe{i}") for i in range(L)]
        for i in range(L):
            m.d.sync += addr[i].eq(pe_addr if i == 0 else addr[i - 1])
        shown = addr[-1]
        for k in range(n):
            value = Array(mem[k])[shown]
            blind = self.mutant == "blind_leaf" and k == n - 1
            m.d.comb += [rd_data[k].eq(0 if blind else value),
                         rd_nz[k].eq(0 if blind else value != 0)]
        # every PE's round slots (the PE's own block), between its lane and the LNZD; the
        # scanned slot from a register of ``rd.scan_next`` (as the top shows a group of PEs
        # ``scan``)
        pe_scan = Signal(lnzd.slots, name="pe_scan")
        m.d.sync += pe_scan.eq(port(lnzd, "rd.scan_next"))
        lanes = []
        for k in range(n):
            slots = RoundSlots(lnzd.slots)
            frag_k, regs = internals(slots, ["we_r"] + [f"slot{q}" for q in range(lnzd.slots)],
                                     platform)
            m.submodules[f"round_slots{k}"] = frag_k
            m.d.comb += [slots.data.eq(rd_data[k]), slots.we.eq(port(lnzd, "rd.slot_we")),
                         slots.scan.eq(pe_scan),
                         port(lnzd, "rd.held")[k].eq(slots.held)]
            lanes.append(regs)

        # ---- layers: start when the contract allows (after reset, or once done has been
        # high for a cycle), n_in fixed from the start cycle on (as the CCU latches it when it
        # enters LSTART)
        busy = Signal()                 # a layer started and not yet done
        fin = Signal()                  # done was high in an earlier cycle of this layer
        start = Signal()
        allowed = (~busy | fin) if self.contract else (~busy | lnzd.done)
        m.d.comb += [start.eq(free(m, 1, "start_req") & allowed), lnzd.start.eq(start)]
        with m.If(start):
            m.d.sync += [fin.eq(0), busy.eq(1)]
        with m.Elif(lnzd.done):
            m.d.sync += [fin.eq(1), busy.eq(0)]
        fresh = free(m, j_bits + 1, "n_in_fresh")
        n_in_r = Signal(j_bits + 1)
        n_in = Signal(j_bits + 1)
        m.d.comb += [Assume(fresh <= n_max), lnzd.n_in.eq(n_in),
                     n_in.eq(Mux(start, fresh, n_in_r))]
        with m.If(start):
            m.d.sync += n_in_r.eq(fresh)
        m.d.comb += o_ready.eq(free(m, 1, "o_ready"))

        # ---- the checker
        seen = Signal()                 # a nonzero went out in this layer
        last = Signal(j_bits)           # the j of the last one
        fire = Signal()
        m.d.comb += fire.eq(o_valid & o_ready)
        fired = Signal()                # a nonzero went out in the previous cycle (its j: last)
        m.d.sync += fired.eq(fire)
        with m.If(start):
            m.d.sync += seen.eq(0)
        with m.Elif(fire):
            m.d.sync += [seen.eq(1), last.eq(o_j)]

        def pending_nonzero(j, lo_seen, lo, hi=None):
            """x_j is a nonzero of the layer after ``lo`` (if ``lo_seen``) and before ``hi``."""
            cond = (x[j] != 0) & (j < n_in) & (~lo_seen | (j > lo))
            return cond & (j < hi) if hi is not None else cond

        x_last = Array(x)[last]
        skipped = Cat(*(pending_nonzero(j, seen, last, o_j) for j in range(n_max))).any()
        left = Cat(*(pending_nonzero(j, seen, last) for j in range(n_max))).any()
        with m.If(fire):
            m.d.comb += [
                Assert(o_j < n_in, "a broadcast is an input of the layer (j < n_in)"),
                Assert(~seen | (o_j > last), "broadcasts go out in increasing j (each once)"),
                Assert(~skipped, "no nonzero is skipped (none between two broadcasts)"),
            ]
        with m.If(fired):
            m.d.comb += Assert((o_a == x_last) & (o_a != 0),
                               "a broadcast's value, in the next cycle, is its activation, "
                               "a nonzero")
        m.d.comb += [
            Assert(~s["take"] | (s["occ"] != 0) | s["arrival"],
                   "a round is in the buffer or arriving when the LNZD takes one"),
            Assert(~o_valid | busy, "nothing is offered outside a layer"),
            Assert(~(lnzd.done & busy) | ~left, "done only when every nonzero went out"),
        ]

        # ---- strengthening invariants
        if self.invariants:
            self._invariants(m, s, lanes, pe_scan, lnzd, mem, x, addr, busy, fin, seen,
                             last, n_in, n_in_r)

        count = Signal(range(n_max + 2))
        with m.If(start):
            m.d.sync += count.eq(0)
        with m.Elif(fire & (count <= n_max)):
            m.d.sync += count.eq(count + 1)
        m.d.comb += [
            Cover(lnzd.done & busy & (count == min(2, n_max)) & (n_in == n_max),
                  "a whole layer with two nonzeros goes out"),
            Cover(fire & (o_j == n_max - 1), "the last input goes out"),
        ]
        return m

    def _invariants(self, m, s, lanes, pe_scan, lnzd, mem, x, addr, busy, fin, seen, last, n_in,
                    n_in_r):
        n, L, rows = self.n, self.latency, self.act_depth
        D = lnzd.buffer_depth
        S = lnzd.slots
        n_max = n * rows
        a_bits = len(port(lnzd, "rd.addr"))
        rnd = Signal(range(rows + 2))       # the round the LNZD holds
        with m.If(s["first"]):
            m.d.sync += rnd.eq(0)
        with m.Elif(s["load"]):
            m.d.sync += rnd.eq(rnd + 1)
        issued = Signal(range(rows + 2))    # rounds addressed in this layer (not wrapped)
        with m.If(lnzd.start):
            m.d.sync += issued.eq(1)
        with m.Elif(s["issue"] & (issued <= rows)):
            m.d.sync += issued.eq(issued + 1)

        def wrap(v):
            return Const(v % (1 << a_bits), a_bits) if isinstance(v, int) else v[:a_bits]

        running, t_issue = s["running"], s["t_issue"]
        jbase, jbase_next, pending = s["jbase"], s["jbase_next"], s["pending"]
        priming, pcount = s["priming"], s["pcount"]
        arr, occ, rptr, wptr = s["arr"], s["occ"], s["rptr"], s["wptr"]
        scanning = Signal()
        m.d.comb += scanning.eq(running & ~fin)
        active = Signal()                   # priming or scanning a layer
        m.d.comb += active.eq(priming | scanning)
        taken = Signal(range(rows + 2))     # rounds taken so far
        m.d.comb += taken.eq(Mux(scanning, rnd + 1, 0))
        # rounds in flight, and the round each in-flight stage carries (newest at stage 0)
        flying = [Signal(range(L + 1), name=f"inv_flying{i}") for i in range(L)]
        for i in range(L):
            m.d.comb += flying[i].eq(sum(arr[q] for q in range(i + 1)))
        # the layer has a round after the first `r` ones
        def exists(r):
            return r * n < n_in

        ok = []
        # idle since reset: nothing started
        ok.append((~running & ~priming,
                   ~busy & (pending == 0) & (t_issue == 0) & ~fin & (arr == 0) & (occ == 0)
                   & (s["outstanding"] == 0),
                   "idle since reset"))
        # addressing: what is addressed, in flight, buffered and taken add up
        ok.append((active,
                   busy & (t_issue == wrap(issued)) & (s["issue_jbase"] == issued * n)
                   & (issued >= 1) & ((issued == 1) | exists(issued - 1))
                   & (issued == taken + occ + flying[-1])
                   & (s["outstanding"] == occ + flying[-1]) & (s["outstanding"] <= D)
                   & (s["arr_jbase"] == (taken + occ) * n)
                   & (wptr == Mux(rptr + occ >= S, rptr + occ - S, rptr + occ)) & (rptr < S)
                   & (s["issue_more"] == (s["issue_jbase"] < n_in)),
                   "addressed rounds = taken + buffered + in flight"))
        for i in range(L):
            ok.append((active & arr[i], addr[i] == wrap(issued - flying[i]),
                       f"the round in flight at stage {i} is read from its row"))
        # the round buffer holds the rounds after the taken ones, with their flags
        for q in range(S):
            d = Signal(range(S), name=f"inv_slot{q}_d")     # slot q is the d-th buffered round
            m.d.comb += d.eq(Mux(rptr <= q, q - rptr, q + S - rptr))
            r = Signal(range(rows + D + 2), name=f"inv_slot{q}_round")
            m.d.comb += r.eq(taken + d)
            holds = active & (d < occ)
            flags = s[f"slot{q}_flags"]
            n_flags = sum(flags[k] for k in range(n))
            ok.append((Const(1), (s[f"slot{q}_any"] == (n_flags >= 1))
                       & (s[f"slot{q}_several"] == (n_flags >= 2)),
                       f"buffer slot {q}: its 'any' and 'two or more' are its flags'"))
            for k in range(n):
                row = Array(mem[k])[wrap(r)]
                j = Signal(len(r) + 8, name=f"inv_slot{q}_j{k}")
                m.d.comb += j.eq(r * n + k)
                ok.append((holds, (lanes[k][f"slot{q}"] == row)
                           & (flags[k] == ((row != 0) & (j < n_in))),
                           f"buffer slot {q}, leaf {k}: its round's value and flag"))
        # which leaves of the arriving round are inputs: a register, computed from the start
        # cycle on (n_in is valid from then)
        if L >= 2:
            for k in range(n):
                j = Signal(len(s["arr_jbase"]) + 1, name=f"inv_arr_j{k}")
                m.d.comb += j.eq(s["arr_jbase"] + k)
                ok.append((active,
                           s["in_layer"][k] == (j < n_in),
                           f"leaf {k} of the arriving round is an input iff its j < n_in"))
            ok.append((active,
                       s["left_nxt"] == n_in - s["arr_jbase"] - n,
                       "the inputs left from the next arriving round's base"))
        # priming, c cycles after start: rounds 0 .. min(c, rounds) - 1 addressed, one a
        # cycle, none arrived yet
        c = Signal(range(L + 1))
        m.d.comb += c.eq(L - pcount)
        ok.append((priming, ~running & ~seen & ~fin & (pcount < L) & (pending == 0) & (occ == 0)
                   & (issued <= c) & ((issued == c) | ~exists(issued)),
                   "priming: a round addressed in every cycle the layer has one"))
        for i in range(L):
            ok.append((priming, arr[i] == ((i < c) & (i + issued >= c)),
                       f"priming: stage {i} carries the round addressed {i + 1} cycles ago"))
        # scanning: every round after the held one arrives by the cycle it can be taken
        scanned = Signal(range(S))          # the scanned round's slot: the one before the head
        m.d.comb += scanned.eq(Mux(rptr == 0, S - 1, rptr - 1))
        ok.append((scanning, s["cur_onehot"] == (1 << scanned)[:S],
                   "scanning: the scanned round's slot is the one before the buffer's head"))
        ok.append((scanning, busy & (rnd < rows) & (jbase == rnd * n) & (jbase_next == jbase + n)
                   & ((issued >= rnd + 1 + L) | ~exists(issued)),
                   "scanning: round and bases agree; the next rounds are addressed"))
        for i in range(L):
            ok.append((scanning & arr[i], issued - flying[i] >= rnd + L - i,
                       f"scanning: the round at stage {i} is at least {L - i} after the held one"))
        for k in range(n):
            row = Array(mem[k])[rnd]
            j = Signal(len(jbase) + 1, name=f"inv_j{k}")
            m.d.comb += j.eq(jbase + k)
            nz = (row != 0) & (j < n_in) & (~seen | (j > last))
            val = Array(lanes[k][f"slot{q}"] for q in range(S))[scanned]
            ok.append((scanning, (pending[k] == nz) & (val == row),
                       f"scanning: leaf {k} is pending iff its nonzero has not gone out"))
        earlier = Cat(*((x[j] != 0) & (j < n_in) & (j < jbase) & (~seen | (j > last))
                        for j in range(n_max))).any()
        ok.append((scanning, ~earlier & (~seen | (last < jbase + n)),
                   "scanning: every nonzero of the earlier rounds went out"))
        ok.append((scanning, s["more"] == (jbase_next < n_in),
                   "scanning: the registered 'more' says whether a round follows"))
        # done: nothing pending, nothing addressed, the address back at 0
        ok.append((running & fin & ~lnzd.start,
                   (pending == 0) & (t_issue == 0) & (jbase_next >= n_in) & ~s["more"]
                   & (arr == 0) & (occ == 0) & (s["outstanding"] == 0)
                   & (s["issue_jbase"] >= n_in) & ~s["issue_more"],
                   "done: nothing pending"))
        ok.append((None, n_in_r <= n_max, "n_in is at most n * act_depth"))
        for k in range(n):
            ok.append((None, lanes[k]["we_r"] == Mux(s["arrival"], (1 << wptr)[:S], 0),
                       f"PE {k}'s slot write enables are the arriving round's slot"))
        ok.append((None, pe_scan == s["cur_onehot"],
                   "the PEs' register of the scanned slot is the LNZD's"))
        n_pending = Signal(range(n + 1))
        m.d.comb += n_pending.eq(sum(pending[k] for k in range(n)))
        ok.append((None, (s["none"] == (n_pending == 0)) & (s["one"] == (n_pending == 1)),
                   "the registered none/one flags are the pending flags'"))
        for cond, inv, text in ok:
            m.d.comb += Assert(inv if cond is None else ~cond | inv, f"invariant: {text}")


# ----------------------------------------------------------------------------- accumulator

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

    def __init__(self, config: EIEConfig, *, writes: bool = True, readback: bool = False,
                 mutant: str | None = None):
        if mutant not in (None, *MUTANTS["AccumulatorHarness"]):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.mutant = mutant
        if not (writes or readback):
            raise ValueError("nothing to check: ask for writes, readback or both")
        self.config = config
        self.writes = writes
        self.readback = readback

    def elaborate(self, platform):
        from .accum import Accumulator
        from .memory_map import ACT_READ_LATENCY

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


# ----------------------------------------------------------------------------- pointer stage

def ptr_config(queue_depth: int, ptr_depth: int = 4) -> EIEConfig:
    """The smallest EIE configuration around a pointer stage with a ``queue_depth``-column
    pointer queue (``ptr_depth`` pointers: two banks of ``ptr_depth / 2`` words)."""
    return EIEConfig(n_pe=1, fifo_depth=1, ptr_depth=ptr_depth, spmat_depth=8, act_depth=2,
                     acc_depth=1, bias_depth=1, max_layers=1, ptr_queue_depth=queue_depth)


class PtrReadHarness(Elaboratable):
    """A PE's pointer stage (:class:`~eie.hw.eie.ptr_read.PtrRead`) with its pointer queue: the
    queue never overflows and holds exactly the columns stored in it, and the stage's
    ``occupancy`` register (the count its take compares with the limit, kept in a register of
    its own for timing) always equals what it stands for: the columns in the three stage
    registers plus those in the queue. And ``idle_next`` tells the next cycle's ``idle``.

    The properties: a column offered through the bypass (the queue empty) is finished at once
    or stored; no column is written into the queue's FIFO (``rest``) while it is full;
    the queue's level ``q_level`` is its head register's flag plus the FIFO's level, and the
    FIFO is empty whenever the head register is; ``occupancy == q_level + ptr0_valid +
    ptr1_valid + ptr2_valid``; if no column was taken in the last cycle, ``idle`` is what
    ``idle_next`` said.

    Free: when a column is offered and its index ``j`` (``col``), its value (``col_a``), the
    layer's ``ptr_base`` (fixed), the entry stage's ``q.ready`` in every
    cycle (it may finish the head column whenever it likes; a column offered through the
    bypass, the queue empty, it finishes exactly when the column is ``single`` and the host
    does not own the memories, as the entry stage issues at once outside host mode), host
    mode with any pointer writes and reads (the pointer banks' contents: the columns'
    ranges and flags, not necessarily consistent), the reset. The PE's contract is assumed:
    host mode only while the stage is idle and no column is offered (without it, a
    single-entry column pushed in host mode would be neither stored nor finished: the store
    decision leaves ``host.mode`` out for timing).

    ``mutant="limit_plus_one"``: the take allows one column more than the queue has room for;
    ``mutant="uncounted_drop"``: ``occupancy`` misses an empty column dropped at ``ptr2``.
    ``contract=False`` lets host mode come at any time, columns in the stage: a single-entry
    column pushed then is lost (the store decision leaves ``host.mode`` out).
    """

    def __init__(self, config: EIEConfig, *, mutant: str | None = None, contract: bool = True):
        if mutant not in (None, *MUTANTS["PtrReadHarness"]):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.config = config
        self.mutant = mutant
        self.contract = contract

    def elaborate(self, platform):
        from .ptr_read import PtrRead, column_layout

        m = Module()
        c = self.config
        ptr = PtrRead(c)
        stages = [f"ptr{k}_valid" for k in range(3)]
        frag, s = internals(ptr, ["occupancy", "q_level", "fanout_head_valid", "fanout_head_sel",
                                  "item", "ptr_take", "ptr2_push", "push", "q_w_en", "q_r_en",
                                  *stages], platform)
        rest = next((sub.origins[0] for sub, name, _ in frag.subfragments if name == "rest"),
                    None)
        if rest is None:
            raise LookupError("PtrRead has no pointer-queue FIFO named rest any more: the "
                              "formal harness reads its level; update it to the new design")
        s["head_valid"] = s["fanout_head_valid"]
        occ = s["occupancy"]
        item = column_layout(c)(s["item"])          # the column registered in ptr2
        if self.mutant == "limit_plus_one":
            # the last assignment wins: the take's limit one column higher
            frag.add_statements("comb", s["ptr_take"].eq(
                ptr.col.valid & (occ <= c.ptr_queue_depth + 2)))
        elif self.mutant == "uncounted_drop":
            frag.add_statements("sync", occ.eq(occ + s["ptr_take"] - (s["push"] & ~s["q_w_en"])
                                               - s["q_r_en"]))
        m.submodules.ptr = frag

        # the environment
        mode = ptr.host.mode
        m.d.comb += [
            ptr.col.valid.eq(free(m, 1, "col_valid")),
            ptr.col.payload.j.eq(free(m, len(ptr.col.payload.j), "col_j")),
            ptr.col_a.eq(free(m, 16, "col_a")),
            ptr.ptr_base.eq(free(m, len(ptr.ptr_base), "ptr_base", const=True)),
            ptr.q.ready.eq(free(m, 1, "q_ready")),
            mode.eq(free(m, 1, "host_mode")),
            ptr.host.w_en.eq(free(m, 1, "host_w_en")),
            ptr.host.w_addr.eq(free(m, len(ptr.host.w_addr), "host_w_addr")),
            ptr.host.w_data.eq(free(m, len(ptr.host.w_data), "host_w_data")),
            ptr.host.r_addr.eq(free(m, len(ptr.host.r_addr), "host_r_addr")),
            # the entry stage issues whenever a column is offered outside host mode, so one
            # offered through the bypass is finished at once exactly when it is single
            Assume(~(ptr.q.valid & ~s["head_valid"]) | (ptr.q.ready == (item.single & ~mode))),
        ]
        if self.contract:
            # the PE's contract: the host owns the memories only with the stage idle, nothing
            # offered
            m.d.comb += Assume(~mode | (ptr.idle & ~ptr.col.valid))

        # the properties
        in_stage = sum(s[name] for name in stages)
        said_idle, took = Signal(init=1), Signal()     # (the reset leaves the stage idle)
        m.d.sync += [said_idle.eq(ptr.idle_next), took.eq(ptr.col.ready)]
        m.d.comb += [
            Assert(~(ptr.q.valid & ~s["head_valid"]) | ptr.q.ready | s["q_w_en"],
                   "a column offered through the bypass is finished at once or stored (none "
                   "lost)"),
            Assert(~(rest.w_en & ~rest.w_rdy),
                   "no column is stored into a full pointer queue (overflow)"),
            Assert(s["q_level"] == s["head_valid"] + rest.level,
                   "the queue's level is its head register plus the columns behind it"),
            Assert(s["fanout_head_sel"] == s["head_valid"],
                   "the head's select copy equals its valid register"),
            Assert(~s["ptr2_push"] | s["ptr2_valid"], "ptr2 pushes only a column it holds"),
            Assert(s["head_valid"] | (rest.level == 0),
                   "no column waits behind an empty head register"),
            Assert(occ == s["q_level"] + in_stage,
                   "occupancy counts the columns in the stage and in the queue"),
            Assert(took | (ptr.idle == said_idle), "idle_next told the next cycle's idle"),
            Cover(s["q_level"] == c.ptr_queue_depth + 2, "the pointer queue is full"),
            Cover(s["push"] & ~s["head_valid"] & item.single,
                  "a column bypasses the queue and is finished as it is pushed"),
            Cover(s["ptr2_valid"] & ~s["ptr2_push"], "an empty column is dropped"),
        ]
        return m
