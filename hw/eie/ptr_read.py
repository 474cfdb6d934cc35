"""Pointer stage of a PE: turns a column ``(j, a_j)`` into the entry range ``[p[j], p[j+1])``.

The pointer SRAM is split into an even bank (pointers ``0, 2, 4, ...``) and an odd bank
(``1, 3, 5, ...``), so ``p[P]`` and ``p[P+1]`` (``P = ptr_base + j``) are always in different
banks and come out of one read: the even bank reads ``(P+1) >> 1``, the odd bank ``P >> 1``, and
``P``'s parity says which is the start.

A pointer memory word is not the bare pointer: it holds ``P``'s absolute entry address (the
image's pointer plus its layer's ``entry_base``) and three flags of the column starting at
``P`` -- ``nonempty``, ``single`` (one entry), ``two`` -- which the host computes as it loads
(:func:`eie.hw.eie.memory_map.pointer_words`, :func:`ptr_word_layout`), so nothing but a
multiplexer and a register lies between the block RAMs and the pointer queue.

Per cycle: if a column waits (``col.valid``) and the pointer queue will have room for it
(entries in the queue + the three columns in flight <= ``ptr_queue_depth + 1``; the queue
stores two more, for the columns arriving as the limit is reached), the column is taken
(``col.ready``) and registered (``ptr0``, so nothing but a register follows the FIFO's head or
the broadcast it bypasses); in the next cycle both banks are read at ``ptr_base + j`` (``ptr_``
stage); one cycle later the pair of words arrives from the block RAMs and is registered
(``ptr1`` -> ``ptr2``, so nothing but the start/end multiplexer follows the RAMs' slow
clock-to-output) with the column's value ``a`` (it comes on ``col_a`` a cycle after its ``j``,
registered in ``ptr1``): ``(start, end, a)`` with the start word's ``single``/``two``, and
whether the column has entries in this PE (its ``nonempty``, with the stage's valid flag); in
the next cycle a column with entries is pushed into the pointer queue. An empty column is
dropped at ``ptr2``, so it never costs the entry stage a cycle. The queue head (``q``, a
stream; a register in front of a FIFO of the columns behind it) is taken by the entry stage
with ``q.ready``; an empty queue offers the column being
pushed in the same cycle (bypass: the entry stage issues its first entry then, and a column it
finishes in that cycle, a ``single``-entry one, is never stored; the entry stage issues in
every cycle a column is offered (none is in host mode), and finishes a fresh column in its first
cycle exactly when it is ``single``, so the queue's write enable is decided from the pushed
item's flag, not from ``q.ready``). Every decision of the entry stage starts from flip-flops:
the queue's or ``ptr2``'s.

Host port (``host``, while ``host.mode``): writes pointer ``w_addr``; reads pointer ``r_addr``
with one cycle of latency (``r_data``). ``host.mode`` is high only while the stage is idle and no
column is offered (the PE's contract: the controller hands the memories to the host between
runs, with every PE idle); the queue's store decision relies on it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import EIEConfig
from .memory_map import HOST_WRITTEN, PTR_FLAGS
from .signatures import HostPort, nonzero_layout

__all__ = ["PtrRead", "column_layout", "ptr_word_layout"]


def ptr_word_layout(config: EIEConfig) -> data.StructLayout:
    """A word of the pointer memory (``config.ptr_word_bits``; the host makes them with
    :func:`eie.hw.eie.memory_map.pointer_words`): pointer ``P`` as an absolute entry address
    (``addr``) and the flags of the column that starts at ``P``: ``nonempty``, ``single`` (one
    entry), ``two`` (two entries)."""
    return data.StructLayout({"addr": config.ptr_bits, **{name: 1 for name in PTR_FLAGS}})


def column_layout(config: EIEConfig) -> data.StructLayout:
    """A pointer-queue item: the column's entry range (addresses in the PE's sparse-matrix
    SRAM, as the pointer memory holds them) and its activation, with two flags from the
    pointer memory (so the entry stage's decisions start from them, not from an adder behind
    the queue's read): ``single`` (one entry: ``end == start + 1``) and ``two`` (``end ==
    start + 2``)."""
    return data.StructLayout({"start": config.ptr_bits, "end": config.ptr_bits, "a": signed(16),
                              "single": 1, "two": 1})


class PtrRead(wiring.Component):
    """Pointer stage: turns the FIFO's head column ``(j, a_j)`` into ``(start, end, a)`` on the
    pointer queue, one column a cycle.

    Ports: ``col`` (in, a stream of :func:`~eie.hw.eie.signatures.nonzero_layout`: the FIFO's
    head column; ``col.ready`` is the FIFO's read enable), ``col_a`` (in, int16: the value of
    the column taken in the previous cycle), ``ptr_base`` (the layer's first pointer;
    it must have been stable for a cycle when a column comes: ``ptr_base + 1`` is registered),
    ``q`` (out, a stream of :func:`column_layout`: the queue head, taken by the entry stage),
    ``idle`` (no read in flight, queue empty), ``idle_next`` (what ``idle`` shows in the next
    cycle if no column is taken in this one) and ``host``
    (:class:`~eie.hw.eie.signatures.HostPort` of pointer indices: ``r_addr`` -> ``r_data`` one
    cycle later).

    Per cycle: a column is taken when ``col.ready = col.valid & (queue level + columns in
    flight <= ptr_queue_depth + 1)`` (no column is offered in host mode) and registered
    (``ptr0``, with its value from ``col_a`` a cycle later); one cycle later both banks are
    read; one more and the pair of words is registered with the start word's flags (``ptr2``);
    one more and the column is pushed if it has entries (an empty one is dropped). So a column
    taken in cycle ``t`` is pushed in ``t + 3`` and heads the queue from ``t + 4`` at the
    earliest. Counts nothing.
    """

    def __init__(self, config: EIEConfig):
        self._config = c = config
        self._bank_depth = (c.ptr_depth + 1) // 2
        super().__init__({
            "col": In(stream.Signature(nonzero_layout(c.j_bits))),
            "col_a": In(signed(16)),
            "ptr_base": In(c.ptr_base_bits),
            "q": Out(stream.Signature(column_layout(c))),
            "idle": Out(1),
            "idle_next": Out(1),
            "host": In(HostPort(c.ptr_index_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._config
        word = ptr_word_layout(c)
        m.submodules.even = even = Memory(shape=word, depth=self._bank_depth, init=[],
                                          attrs=HOST_WRITTEN)
        m.submodules.odd = odd = Memory(shape=word, depth=self._bank_depth, init=[],
                                        attrs=HOST_WRITTEN)
        ew, ow = even.write_port(), odd.write_port()
        er, orr = even.read_port(), odd.read_port()
        # the queue stores two columns more than ptr_queue_depth: the columns taken while one
        # more than the limit is in the stage (see ``ptr_take``). Its head is a register
        # (``head``), the rest a FIFO behind it (``rest``), so that the entry stage's address
        # starts from flip-flops, not from the queue's level and LUT-RAM read (the 4-PE core's
        # seed-2 path); ``q_level`` counts both, as one FIFO's level would.
        m.submodules.rest = rest = SyncFIFO(width=column_layout(c).size,
                                            depth=c.ptr_queue_depth + 1)
        head = Signal(column_layout(c))
        head_valid = Signal(name="fanout_head_valid")     # == (q_level != 0)
        # a copy of it (kept apart by the board build) selects the wide part of the offered
        # column (its addresses and value, for the entry stage's address adder and RAM); the
        # register itself the flags and the queue's decisions: its route to the offered
        # ``single`` flag, shared with some fifty multiplexers, was the 8-PE board build's
        # critical path at 100 MHz (``head_valid`` -> ``single`` -> the entry stage's finish ->
        # the pop -> the store into ``rest``, 89.0 MHz)
        # (both named ``fanout_*``: the build keeps each, else one is merged into the other)
        head_sel = Signal(name="fanout_head_sel")
        q_level = Signal(range(c.ptr_queue_depth + 3))
        q_w_en = Signal()                           # the column pushed is stored
        q_r_en = Signal()                           # the head is popped

        ptr_P = Signal(len(self.ptr_base) + 1)      # P = ptr_base + j: p[P] and p[P+1]
        ptr_P1 = Signal(len(self.ptr_base) + 1)     # P + 1, from its own adder
        base1 = Signal(len(self.ptr_base) + 1)      # ptr_base + 1 (the layer's, registered)
        ptr_take = Signal()
        ptr0_valid = Signal()                       # the column taken, registered
        ptr0_j = Signal.like(self.col.payload.j)
        ptr1_valid = Signal()
        ptr1_a = Signal(signed(16))
        ptr1_odd = Signal()
        ptr2_valid = Signal()                       # a column (with entries here or not)
        # the columns in the stage and the queue, ``q_level + ptr0_valid + ... + ptr2_valid``,
        # kept in a register of its own (moved by what enters and leaves), so that the take
        # compares one register with the limit: the sum's adders sat between the stage's
        # valid flags and the FIFO's level (the 2-PE board build's seed-1 path at 100 MHz:
        # ``ptr3_valid`` -> the sum -> the take -> the FIFO's level -> its fill flags, when
        # the stage had a fourth register)
        occupancy = Signal(range(c.ptr_queue_depth + 6))
        host = self.host
        # ptr0: the column taken is registered first, so nothing but a register follows the
        # FIFO's head (or the broadcast it bypasses). The two bank addresses come from two
        # adders side by side, not one behind the other: ptr_base changes only as a layer
        # starts, at least ACT_READ_LATENCY cycles before its first column, so ptr_base + 1 is
        # a register.
        m.d.sync += base1.eq(self.ptr_base + 1)
        m.d.comb += [
            ptr_P.eq(self.ptr_base + ptr0_j),
            ptr_P1.eq(base1 + ptr0_j),
            # (no ``host.mode`` term: no column is offered in host mode, the PE's contract)
            ptr_take.eq(self.col.valid & (occupancy <= c.ptr_queue_depth + 1)),
            self.col.ready.eq(ptr_take),
        ]
        m.d.sync += ptr0_valid.eq(ptr_take)
        with m.If(ptr_take):
            m.d.sync += ptr0_j.eq(self.col.payload.j)
        # a host read of pointer p takes bank p & 1 at p >> 1 (the other bank's word is not
        # used): no adder on the host's address (``(p + 1) >> 1`` for the even bank was the
        # 8-PE board build's critical path at 100 MHz, 97.6 MHz)
        with m.If(host.mode):
            m.d.comb += [er.addr.eq(host.r_addr >> 1), orr.addr.eq(host.r_addr >> 1)]
        with m.Else():
            m.d.comb += [er.addr.eq(ptr_P1 >> 1), orr.addr.eq(ptr_P >> 1)]
        m.d.sync += [ptr1_valid.eq(ptr0_valid), ptr1_odd.eq(self.ptr_base[0] ^ ptr0_j[0]),
                     ptr1_a.eq(self.col_a)]

        # Host writes and reads (pointer p lives in bank p & 1 at p >> 1).
        m.d.comb += [
            ew.addr.eq(host.w_addr >> 1), ow.addr.eq(host.w_addr >> 1),
            ew.data.eq(host.w_data), ow.data.eq(host.w_data),
            ew.en.eq(host.mode & host.w_en & ~host.w_addr[0]),
            ow.en.eq(host.mode & host.w_en & host.w_addr[0]),
        ]
        h_r_odd = Signal()
        m.d.sync += h_r_odd.eq(host.r_addr[0])
        m.d.comb += host.r_data.eq(Mux(h_r_odd, orr.data.as_value(), er.data.as_value()))

        # ptr2: the pair of words registered as it arrives, with the start word's flags (the
        # start/end multiplexer, one LUT, is all that lies behind the RAMs): the column as the
        # queue and the entry stage take it, so their decisions start from flip-flops even for
        # the column the queue bypasses; and whether it has entries here (``ptr2_push``, the
        # stage's valid flag in the same LUT: no subtractor or comparison of the pointers, which
        # the host did as it loaded them)
        item = Signal(column_layout(c))
        push = Signal()
        ptr2_push = Signal()                        # ptr2 holds a column with entries
        start_w = Signal(word)
        end_w = Signal(word)
        m.d.comb += [
            start_w.eq(Mux(ptr1_odd, orr.data.as_value(), er.data.as_value())),
            end_w.eq(Mux(ptr1_odd, er.data.as_value(), orr.data.as_value())),
        ]
        m.d.sync += [
            ptr2_valid.eq(ptr1_valid), ptr2_push.eq(ptr1_valid & start_w.nonempty),
            item.start.eq(start_w.addr), item.end.eq(end_w.addr), item.a.eq(ptr1_a),
            item.single.eq(start_w.single), item.two.eq(start_w.two),
        ]
        m.d.comb += [
            push.eq(ptr2_push),
            # bypass: an empty queue offers the column being pushed; a column the entry stage
            # finishes in this cycle (a single entry: the entry stage issues whenever a column
            # is offered, and nothing is pushed in host mode, which the PE enters only with
            # every stage idle) is not stored. (``host.mode`` stays out of
            # this: it was the 16-PE board build's critical path, from PE 1's ``mode`` register
            # through the store decision to the queue's head register, 35 rows away)
            self.q.valid.eq(head_valid | push),
            self.q.payload.eq(Mux(head_sel, head, item)),
            self.q.payload.single.eq(Mux(head_valid, head.single, item.single)),
            q_w_en.eq(push & ~(~head_valid & item.single)),
            q_r_en.eq(self.q.ready & head_valid),
            self.idle.eq(~ptr0_valid & ~ptr1_valid & ~ptr2_valid & (q_level == 0)),
        ]
        # the queue: a column stored goes into the head register when the queue is empty or
        # its only column is popped, else behind it; a popped head is replaced by the first
        # column behind it (``rest`` is empty whenever the head register is)
        # (with a head, a column pushed is stored and the pop is the entry stage's ready: the
        # store into ``rest`` written with those, not through ``q_w_en`` and ``q_r_en``)
        m.d.comb += [rest.w_data.eq(item),
                     rest.w_en.eq(push & head_valid & ~(self.q.ready & ~rest.r_rdy)),
                     rest.r_en.eq(q_r_en)]
        with m.If(q_r_en & rest.r_rdy):
            m.d.sync += head.eq(rest.r_data)
        with m.Elif(q_w_en & (~head_valid | q_r_en)):
            m.d.sync += [head.eq(item), head_valid.eq(1), head_sel.eq(1)]
        with m.Elif(q_r_en):
            m.d.sync += [head_valid.eq(0), head_sel.eq(0)]
        m.d.sync += q_level.eq(q_level + q_w_en - q_r_en)
        # a column enters at the take; it leaves as an empty column at ptr2, as one finished
        # as it is pushed (not stored), or as the queue's head popped
        m.d.sync += occupancy.eq(occupancy + ptr_take - (ptr2_valid & ~ptr2_push)
                                 - (push & ~q_w_en) - q_r_en)
        # ``idle`` of the next cycle (from this cycle's next state) if no column is taken now,
        # for the PE's idle register (which adds the take from its FIFO itself)
        # The queue is empty in the next cycle when no column is stored now and it holds none,
        # or holds one and pops it (``q_r_en`` needs the head, so a level of 0 pops none): the
        # level's next value without its adder (the 16-PE board build's critical path ran
        # through it into the group's idle register)
        q_empty_next = Signal()
        m.d.comb += [
            q_empty_next.eq(~q_w_en & ((q_level == 0) | ((q_level == 1) & q_r_en))),
            # (ptr2 holds in the next cycle what ptr1 holds now, with entries here or not: its
            # flag comes from the RAM, too late for this)
            self.idle_next.eq(~ptr0_valid & ~ptr1_valid & q_empty_next),
        ]
        return m
