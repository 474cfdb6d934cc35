"""The LNZD over a model of the PEs' activation files (:class:`LNZDHarness`): every nonzero
activation goes out exactly once, in increasing index, with its value, and nothing else does
(proved by k-induction, with the invariants that tie the LNZD's registers to the model).

Gateware only (Amaranth and :mod:`eie.hw.eie`); the blocks are imported inside ``elaborate``.
"""

from __future__ import annotations

from amaranth.hdl import (Array, Assert, Assume, Cat, Const, Cover, Elaboratable, Module, Mux,
                          Signal, signed)

from .common import free, internals, port

__all__ = ["LNZDHarness"]


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

    #: the deliberately broken variants (``mutant=``)
    mutants = ("blind_leaf",)

    def __init__(self, n: int, act_depth: int = 2, latency: int = 1, *,
                 mutant: str | None = None, invariants: bool = True, contract: bool = True):
        if mutant not in (None, *self.mutants):
            raise ValueError(f"unknown mutant {mutant!r}")
        self.contract = contract
        self.n = n
        self.act_depth = act_depth
        self.latency = latency
        self.mutant = mutant
        self.invariants = invariants

    def elaborate(self, platform):
        from ..lnzd import LNZD
        from ..round_slots import RoundSlots

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
