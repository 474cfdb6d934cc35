"""Leading-nonzero detection (LNZD): the quadtree that finds the next nonzero input activation.

Two blocks:

* :class:`LNZDNode` -- combinational: given 4 children, each with a ``valid`` flag and an index
  inside its subtree, outputs whether any child is valid and the index of the
  *lowest-numbered* valid child, prefixed by that child's number
  (``index = child << w | child_index``).
* :class:`LNZD` -- the whole detector for ``n`` PEs (any ``n`` from 1 to 256; the tree is padded
  with constant-invalid leaves up to the next power of 4). Leaf ``k`` belongs to PE ``k`` and holds
  one activation of that PE's source activation file.

Reading the activations. Every PE streams its source file to its leaf through a read pipeline
of ``latency`` stages (``latency`` >= 1), the ``rd`` port (:class:`~eie.hw.eie.signatures.ActRead`,
one lane per leaf). The pipelines advance in every cycle (no enable), so
``rd.data`` shows the values of the address presented on ``rd.addr`` ``latency`` cycles earlier.
The address is a register (``t_issue``) and nothing the LNZD decides in a cycle reaches a PE in
that cycle: the LNZD addresses rounds ahead of the one it scans, counted by credits, and keeps
the rounds that arrive before it needs them in a *round buffer* of ``latency + 1`` entries
in a ring of ``latency + 2`` slots: the scanned round stays in its slot while its nonzeros go
out (a pointer to it is taken, not a copy: every arriving round is written into a slot, also
one taken as it arrives). The LNZD holds the slots' nonzero flags (computed as the round
arrives) and pointers; the values are in the PEs, each lane's in a
:class:`~eie.hw.eie.round_slots.RoundSlots` of its PE, written as the LNZD says (``rd.slot_we``,
a cycle ahead), read at the scanned slot (``rd.scan``) into a register (``rd.held``).

* Addressing: round 0 in the ``start`` cycle; after it, the next round of the layer (while
  ``jbase < n_in`` for it) in every cycle in which fewer than ``latency + 1`` rounds are
  addressed and not yet taken (a registered count: the rounds in flight and in the buffer).
* Arriving: the round addressed ``latency`` cycles earlier is written into the next slot.
* Taking a round: from the buffer's head, or, when the buffer is empty, the round arriving in
  that cycle (it is there: the credits make every round arrive by the cycle it can be taken,
  so the timing below is that of a read pipeline kept ``latency`` rounds ahead, cycle for
  cycle; the formal proof checks it).

Scan order (what comes out, and when). The layer's inputs are scanned in *rounds*: round ``t``
holds activation ``t`` of every PE's source file, i.e. the inputs ``j = t*n .. t*n + n-1``
(``x_j`` lives in PE ``j % n`` at local index ``j // n``). Per cycle:

* ``start`` cycle and the ``latency - 1`` cycles after it (priming): rounds are addressed;
* cycle ``latency`` after ``start``: round 0 arrives and is taken: every leaf takes its value and
  is flagged if it is nonzero and ``j < n_in``;
* then, if the round still has a pending nonzero, the tree picks the lowest leaf ``k`` with one
  and offers ``j = t*n + k`` on the ``o`` stream; when the consumer takes it (``o.ready``),
  the leaf's flag clears; its value ``a_j`` shows on ``a`` in the next cycle (the pick and the
  scanned slot are registered, and the value is selected from the slot then: the route from
  the tree to the slots' value multiplexers is not on the path of the decision);
* in the cycle where the round has no pending nonzero left (including the one taken this cycle),
  the next round is taken the same way (registered "none" and "exactly one" flags of the
  round's pending nonzeros say whether a taken nonzero was the round's last: the load starts
  from flip-flops, not from the tree, and reaches only the LNZD's own registers; a taken
  round's two flags come from its nonzero flags through ORs and ANDs, and after a nonzero
  goes out "exactly one" is whether exactly two were pending, from the pending flags: no
  count, whose adders sat behind the route from every PE's lane).

So nonzeros come out in increasing ``j``, each exactly once; a round with ``m > 0`` nonzeros takes
``m`` cycles (plus any cycles the consumer is not ready), an all-zero round takes 1 cycle. The
first nonzero can go out in cycle ``latency + 1`` after ``start``. ``done`` is high once every
round has been loaded and emptied, until the next ``start``: it rises in the cycle after the
last nonzero is taken, or, when the last round is all zero, in the cycle that round shows (so,
counting the ``start`` cycle as 0, ``done`` rises in cycle ``latency + sum over rounds of
max(1, m) + (1 if the last round has a nonzero else 0)`` with an always-ready consumer).
``n_in`` must be valid from the ``start`` cycle until ``done``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import index_bits
from .signatures import ActRead, nonzero_layout

__all__ = ["LNZDNode", "LNZD"]


def _at_least(m: Module, bits, k: int, name: str) -> list:
    """``[bits has >= 1 one, >= 2 ones, ..., >= k ones]``, as a balanced tree of ORs and ANDs
    (a count saturating at ``k``, without adders: a few LUT levels where a count and its
    comparisons take more). Each node's ``k`` thresholds are signals of ``m`` (named
    ``{name}_l{level}_{node}``): a node's are read by up to ``k`` entries of its parent, and
    as expressions the Verilog would restate a subtree at every reading, ``k`` times a level
    (at 256 PEs the LNZD's Verilog was 3.4 MB, most of it these restatements)."""
    zero = Const(0, 1)
    terms = [[bits[i]] + [zero] * (k - 1) for i in range(len(bits))]
    level = 0
    while len(terms) > 1:
        level += 1
        nxt = []
        for i in range(0, len(terms), 2):
            if i + 1 == len(terms):
                nxt.append(terms[i])
                continue
            a, b = terms[i], terms[i + 1]
            node = Signal(k, name=f"{name}_l{level}_{i // 2}")
            # entry t: >= t + 1 ones in both halves: in one of them, or >= u in a and
            # >= t + 1 - u in b
            m.d.comb += node.eq(Cat(*(a[t] | b[t] | _or(a[u - 1] & b[t - u]
                                                         for u in range(1, t + 1))
                                      for t in range(k))))
            nxt.append([node[t] for t in range(k)])
        terms = nxt
    return terms[0]


def _or(values):
    out = Const(0, 1)
    for v in values:
        out = out | v
    return out


class LNZDNode(wiring.Component):
    """4-way leading-nonzero node, combinational (the same cycle): children ``c_valid`` and
    ``c_index`` (``w``-bit indices) in; ``valid`` (any child valid) and ``index`` (``child << w | child's index`` of the
    lowest-numbered valid child) out."""

    def __init__(self, w: int):
        if not isinstance(w, int) or w < 0:
            raise ValueError(f"child index width must be a non-negative integer, not {w!r}")
        self._w = w
        super().__init__({
            "c_valid": In(4),
            "c_index": In(data.ArrayLayout(max(w, 1), 4)),
            "valid": Out(1),
            "index": Out(w + 2),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._w
        m.d.comb += self.valid.eq(self.c_valid.any())
        # Priority: child 0 first.
        for c in reversed(range(4)):
            with m.If(self.c_valid[c]):
                sub = self.c_index[c][:w] if w else Const(0, 0)
                m.d.comb += self.index.eq(Const(c, 2) << w | sub)
        return m


class LNZD(wiring.Component):
    """Round-by-round scanner with a quadtree of :class:`LNZDNode` (see the module docstring).

    Ports: ``start`` (pulse: begin a layer; after reset or after ``done``, but not in the cycle
    ``done`` rises: the read address returns to 0 only at the end of that cycle, so a start then
    reads round 0 from a stale row; the CCU's ``DRAIN`` lasts at least a cycle, and
    ``tests/test_formal.py`` keeps the counterexample), ``n_in`` (valid from the ``start``
    cycle until ``done``), ``rd``
    (out, :class:`~eie.hw.eie.signatures.ActRead` with ``n`` lanes: the read pipelines into
    every PE's source file, ``latency`` stages, and the ``n`` values they deliver), ``o`` (out,
    an :class:`amaranth.lib.stream.Signature` of :func:`~eie.hw.eie.signatures.nonzero_layout`:
    the next nonzero's ``j``; ``o.valid`` does not depend on ``o.ready``), ``a`` (out, int16:
    the value of the nonzero offered on ``o`` in the previous cycle), ``done``.

    Per cycle: a round is addressed if the layer has one left and a credit is free (registers
    only); the round addressed ``latency`` cycles ago arrives into the round buffer; if the
    scanned round has a pending nonzero, the lowest one is offered on ``o`` (its value on ``a``
    in the next cycle) and its flag clears when ``o.ready``; when the round has none left after
    this cycle, the next round is taken from the buffer (or as it arrives, if the buffer is
    empty).
    """

    def __init__(self, n: int, j_bits: int, addr_depth: int, latency: int = 1):
        if not isinstance(n, int) or not 1 <= n <= 256:
            raise ValueError(f"LNZD leaf count must be from 1 to 256, not {n!r}")
        if not isinstance(latency, int) or not 1 <= latency <= 16:
            raise ValueError(f"LNZD read latency must be from 1 to 16 (the read pipeline's "
                             f"registers), not {latency!r}")
        self._n = n
        self._j_bits = j_bits
        self._latency = latency
        super().__init__({
            "start": In(1),
            "n_in": In(j_bits + 1),
            "rd": Out(ActRead(index_bits(addr_depth), lanes=n, slots=latency + 2)),
            "o": Out(stream.Signature(nonzero_layout(j_bits))),
            "a": Out(signed(16)),
            "done": Out(1),
        })

    @property
    def n(self) -> int:
        return self._n

    @property
    def latency(self) -> int:
        return self._latency

    @property
    def buffer_depth(self) -> int:
        """Rounds the round buffer holds: ``latency + 1`` (the credits that let a round be
        addressed in every cycle while one is taken in every cycle)."""
        return self._latency + 1

    @property
    def slots(self) -> int:
        """Round slots (registers): the buffer's ``buffer_depth`` rounds and the scanned
        one, which stays in its slot while its nonzeros go out."""
        return self.buffer_depth + 1

    def elaborate(self, platform):
        m = Module()
        n = self._n
        L = self._latency
        D = self.buffer_depth

        pending = Signal(n)
        jbase = Signal(self._j_bits + 1)          # j of leaf 0 in the current round
        jbase_next = Signal(self._j_bits + 1)     # j of leaf 0 in the next round
        rd, o = self.rd, self.o
        # the next address into the read pipelines; named ``fanout_*`` like the top's copies of
        # it (a register a group of PEs, set from the same ``rd.addr_next``), so that a board
        # build keeps it apart from them: merged into one, the LNZD's own addressing read a
        # copy placed beside its group of PEs (eie.boards.build.KEEP_FANOUT)
        t_issue = Signal.like(rd.addr, name="fanout_t_issue")
        running = Signal()

        # The quadtree over the pending flags.
        levels: list[list[tuple]] = [[(pending[k], None) for k in range(n)]]
        w = 0
        while len(levels[-1]) > 1 or w == 0:
            cur = levels[-1]
            nxt = []
            for g in range(0, len(cur), 4):
                node = LNZDNode(w)
                m.submodules[f"node_w{w}_{g // 4}"] = node
                for c in range(4):
                    if g + c < len(cur):
                        v, idx = cur[g + c]
                        m.d.comb += node.c_valid[c].eq(v)
                        if idx is not None:
                            m.d.comb += node.c_index[c].eq(idx)
                nxt.append((node.valid, node.index))
            levels.append(nxt)
            w += 2
        _, root_index = levels[-1][0]
        sel = Signal(range(4 ** (w // 2)))
        m.d.comb += sel.eq(root_index)
        # Two registered flags of the pending flags (none, exactly one), so that the offer and
        # the next round's load start from flip-flops instead of the tree over ``pending``.
        none = Signal(init=1)
        one = Signal()
        root_valid, root_multi = Signal(), Signal()
        m.d.comb += [root_valid.eq(~none), root_multi.eq(~none & ~one)]

        # Round 0 arrives and is taken `first`: `latency` cycles after start.
        first = Signal()
        priming = Signal()
        pcount = Signal(range(L))
        m.d.comb += first.eq(priming & (pcount == 0))
        with m.If(self.start):
            m.d.sync += [priming.eq(1), pcount.eq(L - 1)]
        with m.Elif(first):
            m.d.sync += priming.eq(0)
        with m.Elif(priming):
            m.d.sync += pcount.eq(pcount - 1)

        # a register: is there a round after this one (jbase_next < n_in), set with jbase_next
        more = Signal()
        fire = Signal()
        m.d.comb += [
            o.valid.eq(running & root_valid),
            o.payload.j.eq(jbase + sel),
            fire.eq(o.valid & o.ready),
            self.done.eq(running & ~root_valid & ~more),
        ]
        # the flag a taken nonzero clears is the lowest pending one: ``pending & (pending - 1)``
        # clears it with one carry chain beside the tree, not through the tree's encoded pick
        # and its decode (whose LUT sits with ``j``'s register, pulled towards the PEs: the
        # 16-PE core's critical path ran pending -> tree -> ``j`` -> pending)
        rest = Signal(n)
        m.d.comb += rest.eq(Mux(fire, pending & (pending - 1), pending))
        # The round has nothing left after this cycle: it had nothing, or only the one taken.
        load = Signal()
        m.d.comb += load.eq(running & more & (~root_valid | (~root_multi & fire)))
        take = Signal()                           # a round becomes the scanned one
        m.d.comb += take.eq(first | load)

        # ---- addressing: one round a cycle while the layer has one and a credit is free ----
        issue_jbase = Signal(self._j_bits + 1)    # j of leaf 0 in the round addressed next
        # a register: that round is in the layer (issue_jbase < n_in), set with issue_jbase
        # (so that no path runs from n_in through a comparison to the address's enable)
        issue_more = Signal()
        outstanding = Signal(range(D + 1))        # rounds addressed and not yet taken
        arr = Signal(L)                           # arr[i]: a round was addressed i + 1 cycles ago
        issue = Signal()
        # the next address is shown a cycle ahead too (``rd.addr_next``): each PE reads at its
        # own register of it, so the one register here does not drive every PE's read logic
        # across the chip (the 16-PE core's critical path: ``rd.addr`` -> a PE's valid bits)
        t_issue_next = Signal.like(t_issue)
        m.d.comb += [
            issue.eq(self.start | ((priming | running) & issue_more & (outstanding < D))),
            t_issue_next.eq(Mux(issue, t_issue + 1, Mux(self.done, 0, t_issue))),
            rd.addr.eq(t_issue),
            rd.addr_next.eq(t_issue_next),
        ]
        m.d.sync += t_issue.eq(t_issue_next)

        # ---- arriving: the round addressed `latency` cycles ago, into the round buffer ----
        arrival = Signal()
        m.d.comb += arrival.eq(arr[L - 1])
        arr_jbase = Signal(self._j_bits + 1)      # j of leaf 0 in the arriving round
        # which leaves of the arriving round are inputs of the layer (j < n_in): with a read
        # latency of 2 or more, a register computed in the cycle before (from the next
        # arrival's base), so that no path runs from n_in through a comparison to the round's
        # flags; n_in is valid from the start cycle and round 0 arrives `latency` cycles
        # after it, so the register is right by then. With latency 1, the comparisons
        # themselves.
        in_layer = Signal(n)
        if L >= 2:
            # the next arrival's base: 0 after a start, else this one's (or the one after it).
            # The inputs of the layer from the next arrival's base on, ``n_in - arr_jbase - n``,
            # are a register (``left_nxt``: set at the start, moved on by ``n`` at each
            # arrival), so the flags take one comparison of a register, not an adder, a subtraction and a comparison
            # in series (the 4-PE core's critical path); the start picks ``n_in > k`` in front
            # of the register (it is the CCU's state decode: no adder)
            left_nxt = Signal(signed(self._j_bits + 3))
            with m.If(self.start):
                m.d.sync += left_nxt.eq(self.n_in - n)
            with m.Elif(arrival):
                m.d.sync += left_nxt.eq(left_nxt - n)
            # ``in_layer[k]`` is ``left_nxt + n > k`` (k < n_in - base, for a base past n_in too:
            # the difference is negative), so it keeps its value but at an arrival, where it
            # takes ``left_nxt > k``: the comparisons start from the register, the arrival
            # selects behind them (with the select in front, the 2-PE board build's seed-2
            # path at 100 MHz: ``arrival`` -> the select -> a comparison -> ``in_layer``)
            for k in range(n):
                with m.If(self.start):
                    m.d.sync += in_layer[k].eq(self.n_in > k)
                with m.Elif(arrival):
                    m.d.sync += in_layer[k].eq(left_nxt > k)
        else:
            for k in range(n):
                m.d.comb += in_layer[k].eq(arr_jbase + k < self.n_in)
        flags_in = Signal(n)
        for k in range(n):
            m.d.comb += flags_in[k].eq(rd.nz[k] & in_layer[k])
        # The slots: the buffer's rounds and the scanned one, which stays in its slot
        # (`cur_onehot`, the slot before the buffer's head) while its nonzeros go out (the
        # credits keep at most D rounds after it, so the D + 1 slots never overwrite it); no
        # copy of a round is made when it is taken. The rounds' nonzero flags are here; their
        # values are in the PEs, each lane's in its own PE (RoundSlots), written with the
        # flags.
        S = self.slots
        slot_flags = [Signal(n, name=f"slot{i}_flags") for i in range(S)]
        # and the flags' "any" and "two or more", computed as the round arrives (for the
        # bypass's take anyway) and kept beside them: a round taken from the buffer gives its
        # "none" and "exactly one" through a multiplexer of the slots, not through the tree of
        # ORs and ANDs behind it (16 PEs: the slot multiplexer -> that tree -> the ``one``
        # register was the board build's path at 86 MHz)
        slot_any = [Signal(name=f"slot{i}_any") for i in range(S)]
        slot_several = [Signal(name=f"slot{i}_several") for i in range(S)]
        rptr = Signal(range(S))                   # the buffer's head
        wptr = Signal(range(S))                   # where the next arrival goes
        occ = Signal(range(D + 1))                # rounds in the buffer
        cur_onehot = Signal(S)                    # the slot of the scanned round, one-hot
        # shown a cycle ahead too (``rd.scan_next``), like the address: the top gives each
        # group of PEs a register of its own of it (the 16-PE board build's path at 100 MHz:
        # this register -> 8.2 ns of route -> PE 9's slot select, 90.7 MHz)
        scan_next = Signal(S)
        m.d.comb += [rd.scan.eq(cur_onehot), rd.scan_next.eq(scan_next),
                     scan_next.eq(Mux(take, 1 << rptr, cur_onehot))]
        m.d.sync += cur_onehot.eq(scan_next)
        # The value offered, a cycle later: every PE registers its lane's value in the
        # scanned slot (`rd.held`; the slot keeps its round in the next cycle too: an arrival
        # goes into a free slot, and a slot freed by a take is written at the end of the next
        # cycle at the earliest); the pick is registered here and selects the lane.
        a_pick = Signal.like(sel)
        m.d.sync += a_pick.eq(sel)
        m.d.comb += self.a.eq(rd.held.as_value().word_select(a_pick, 16) if n > 1
                              else rd.held[0])

        def succ(ptr):
            return Mux(ptr == S - 1, 0, ptr + 1)

        # Every arrival is written (write enables from registers only); a round taken while
        # the buffer is empty is the one arriving, written and read in the same cycle. The
        # PEs write their values with a register of the enables, shown a cycle ahead.
        in_any, in_several = _at_least(m, flags_in, 2, "arriving_count")
        with m.If(arrival):
            for i in range(S):
                with m.If(wptr == i):
                    m.d.sync += [slot_flags[i].eq(flags_in), slot_any[i].eq(in_any),
                                 slot_several[i].eq(in_several)]
        arr_next = Signal(L)                      # arr in the next cycle
        m.d.comb += arr_next.eq(Mux(self.start, 1, Cat(issue, arr[:L - 1]) if L > 1 else issue))
        wptr_next = Signal.like(wptr)
        m.d.comb += wptr_next.eq(Mux(self.start, 0, Mux(arrival, succ(wptr), wptr)))
        for i in range(S):
            m.d.comb += rd.slot_we[i].eq(arr_next[L - 1] & (wptr_next == i))
        buffered = Signal()
        m.d.comb += buffered.eq(occ != 0)
        take_flags = Signal(n)
        # the taken round's "none" and "exactly one" from its flags by ORs and ANDs, not from
        # a count (the arriving round's flags come from every PE's lane: a count's adders
        # and comparisons behind that route were the 16-PE core's critical path)
        take_any, take_several = Signal(), Signal()
        head_flags = Signal(n)
        m.d.comb += head_flags.eq(Array(slot_flags)[rptr])
        head_any, head_several = Array(slot_any)[rptr], Array(slot_several)[rptr]
        # exactly two pending (from the pending register: a few LUT levels, all in the LNZD)
        two_pending = Signal()
        at_least = _at_least(m, pending, 3, "pending_count")
        m.d.comb += two_pending.eq(at_least[1] & ~at_least[2])
        with m.If(buffered):
            m.d.comb += [take_flags.eq(head_flags),
                         take_any.eq(head_any), take_several.eq(head_several)]
        with m.Else():
            m.d.comb += [take_flags.eq(flags_in),
                         take_any.eq(in_any), take_several.eq(in_several)]

        with m.If(self.start):
            m.d.sync += [issue_jbase.eq(n), issue_more.eq(n < self.n_in),
                         outstanding.eq(1), arr.eq(1), arr_jbase.eq(0),
                         rptr.eq(0), wptr.eq(0), occ.eq(0)]
        with m.Else():
            m.d.sync += [arr.eq(arr_next),
                         outstanding.eq(outstanding + issue - take),
                         occ.eq(occ + arrival - take)]
            with m.If(issue):
                m.d.sync += [issue_jbase.eq(issue_jbase + n),
                             issue_more.eq(issue_jbase + n < self.n_in)]
            with m.If(arrival):
                m.d.sync += arr_jbase.eq(arr_jbase + n)
            m.d.sync += wptr.eq(wptr_next)
            with m.If(take):
                m.d.sync += rptr.eq(succ(rptr))

        def set_pending(value, value_any, value_several):
            return [pending.eq(value), none.eq(~value_any),
                    one.eq(value_any & ~value_several)]

        with m.If(first):
            m.d.sync += [running.eq(1), jbase.eq(0),
                         jbase_next.eq(n), more.eq(n < self.n_in)]
            m.d.sync += set_pending(take_flags, take_any, take_several)
        with m.Elif(self.start):
            m.d.sync += [running.eq(0)] + set_pending(0, 0, 0)
        with m.Elif(load):
            m.d.sync += [
                jbase.eq(jbase_next),
                jbase_next.eq(jbase_next + n),
                more.eq(jbase_next + n < self.n_in),
            ]
            m.d.sync += set_pending(take_flags, take_any, take_several)
        with m.Elif(fire):
            # one flag goes: one is left iff exactly two were pending
            m.d.sync += [pending.eq(rest), none.eq(one), one.eq(two_pending)]
        return m
