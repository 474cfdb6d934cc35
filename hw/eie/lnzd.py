"""Leading-nonzero detection (LNZD): the quadtree that finds the next nonzero input activation.

Two blocks:

* :class:`LNZDNode` -- combinational: given 4 children, each with a ``valid`` flag and an index
  inside its subtree, outputs whether any child is valid and the index of the *lowest-numbered*
  valid child, prefixed by that child's number (``index = child << w | child_index``).
* :class:`LNZD` -- the whole detector for ``n`` PEs (any ``n`` from 1 to 256; the tree is padded
  with constant-invalid leaves up to the next power of 4). Leaf ``k`` belongs to PE ``k`` and holds
  one activation of that PE's source activation file.

Scan order (what comes out, and when). The layer's inputs are scanned in *rounds*: round ``t``
holds activation ``t`` of every PE's source file, i.e. the inputs ``j = t*n .. t*n + n-1``
(``x_j`` lives in PE ``j % n`` at local index ``j // n``). Per cycle:

* if the round still has a pending nonzero, the tree picks the lowest leaf ``k`` with one and
  offers ``(j = t*n + k, a_j)`` on ``o_*``; when the consumer takes it (``o_ready``), the leaf's
  flag clears;
* in the cycle where the round has no pending nonzero left (including the one taken this cycle),
  the next round is loaded: every leaf reads its PE's file at index ``t + 1`` (through ``rd_addr``
  / ``rd_data``, an asynchronous read) and flags its value if it is nonzero and ``j < n_in``.

So nonzeros come out in increasing ``j``, each exactly once; a round with ``m > 0`` nonzeros takes
``m`` cycles (plus any cycles the consumer is not ready), an all-zero round takes 1 cycle. Round
0 is loaded in the ``start`` cycle itself (``n_in`` and the source file must be valid then), so
the first nonzero can go out in the next cycle. ``done`` is high once every round has been
loaded and emptied, until the next ``start``: it rises in the cycle after the last nonzero is
taken, or, when the last round is all zero, in the cycle that round shows (so, counting the
``start`` cycle as 0, ``done`` rises in cycle ``sum over rounds of max(1, m) + (1 if the last
round has a nonzero else 0)`` with an always-ready consumer).
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["LNZDNode", "LNZD"]


class LNZDNode(wiring.Component):
    """4-way leading-nonzero node (combinational). Children carry ``w``-bit indices."""

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

    Ports: ``start`` (pulse: begin a layer; ``n_in`` must hold its value until ``done``),
    ``rd_addr``/``rd_data`` (index into every PE's source file, and the ``n`` values read there),
    ``o_valid``/``o_j``/``o_a``/``o_ready`` (the next nonzero), ``done``.
    """

    def __init__(self, n: int, j_bits: int, addr_depth: int):
        if not isinstance(n, int) or not 1 <= n <= 256:
            raise ValueError(f"LNZD leaf count must be from 1 to 256, not {n!r}")
        self._n = n
        self._j_bits = j_bits
        super().__init__({
            "start": In(1),
            "n_in": In(j_bits + 1),
            "rd_addr": Out(range(max(addr_depth, 2))),
            "rd_data": In(data.ArrayLayout(signed(16), n)),
            "o_valid": Out(1),
            "o_j": Out(j_bits),
            "o_a": Out(signed(16)),
            "o_ready": In(1),
            "done": Out(1),
        })

    @property
    def n(self) -> int:
        return self._n

    def elaborate(self, platform):
        m = Module()
        n = self._n

        pending = Signal(n)
        vals = Signal(data.ArrayLayout(signed(16), n))
        jbase = Signal(self._j_bits + 1)          # j of leaf 0 in the current round
        jbase_next = Signal(self._j_bits + 1)     # j of leaf 0 in the next round
        t_next = Signal.like(self.rd_addr)
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
        root_valid, root_index = levels[-1][0]
        sel = Signal(range(4 ** (w // 2)))
        m.d.comb += sel.eq(root_index)

        more = Signal()
        m.d.comb += more.eq(jbase_next < self.n_in)
        fire = Signal()
        m.d.comb += [
            self.o_valid.eq(running & root_valid),
            self.o_j.eq(jbase + sel),
            self.o_a.eq(Array(vals[k] for k in range(n))[sel] if n > 1 else vals[0]),
            fire.eq(self.o_valid & self.o_ready),
            self.rd_addr.eq(t_next),
            self.done.eq(running & ~root_valid & ~more),
        ]
        onehot = Signal(n)
        m.d.comb += onehot.eq(Const(1, n) << sel)
        rest = Signal(n)
        m.d.comb += rest.eq(pending & ~Mux(fire, onehot, 0))
        load = Signal()
        m.d.comb += load.eq(running & (rest == 0) & more)

        # The round being loaded: round 0 in the start cycle, else the next one.
        load_base = Signal.like(jbase_next)
        m.d.comb += load_base.eq(Mux(self.start, 0, jbase_next))
        with m.If(self.start):
            m.d.comb += self.rd_addr.eq(0)
        flags = Signal(n)
        for k in range(n):
            m.d.comb += flags[k].eq((self.rd_data[k] != 0) & (load_base + k < self.n_in))

        with m.If(self.start):
            m.d.sync += [running.eq(1), pending.eq(flags), vals.eq(self.rd_data), jbase.eq(0),
                         jbase_next.eq(n), t_next.eq(1)]
        with m.Elif(load):
            m.d.sync += [
                pending.eq(flags),
                vals.eq(self.rd_data),
                jbase.eq(jbase_next),
                jbase_next.eq(jbase_next + n),
                t_next.eq(t_next + 1),
            ]
        with m.Elif(fire):
            m.d.sync += pending.eq(rest)
        return m
