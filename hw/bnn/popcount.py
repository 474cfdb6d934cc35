"""Pipelined popcount: a balanced adder tree over ``width`` bits (or, with ``elem_bits = k``,
over ``width`` unsigned ``k``-bit elements: their sum, the popcount of ``k`` bit planes with
plane ``b`` weighted ``2**b``).

Per cycle with ``en`` high, the tree takes the bits on ``i`` (element ``j`` at bits
``[k*j + k - 1 : k*j]``) and shifts every partial sum one register stage on; the count of ones
(the sum of the elements) presented ``latency`` enabled cycles earlier is on ``o``. A register stage follows every ``levels_per_stage`` adder levels (and the last
level), so ``latency = ceil(levels / levels_per_stage)`` with ``levels = ceil(log2(width))``; a
1-bit tree has no adders and no latency. With ``en`` low nothing moves (the whole pipeline of
the caller stalls together).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PopCount"]


class PopCount(wiring.Component):
    """``o`` = number of ones in ``i`` (the sum of its ``elem_bits``-bit elements) as it was
    ``latency`` enabled cycles ago."""

    def __init__(self, width: int, *, levels_per_stage: int = 2, elem_bits: int = 1):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"popcount width must be a positive integer, not {width!r}")
        if not isinstance(levels_per_stage, int) or levels_per_stage < 1:
            raise ValueError(f"levels_per_stage must be a positive integer, not {levels_per_stage!r}")
        if not isinstance(elem_bits, int) or elem_bits < 1:
            raise ValueError(f"elem_bits must be a positive integer, not {elem_bits!r}")
        self._width = width
        self._elem_bits = elem_bits
        self._levels_per_stage = levels_per_stage
        levels = (width - 1).bit_length()
        self._latency = -(-levels // levels_per_stage)
        super().__init__({
            "i": In(width * elem_bits),
            "en": In(1),
            "o": Out(unsigned((width * ((1 << elem_bits) - 1)).bit_length())),
        })

    @property
    def width(self) -> int:
        return self._width

    @property
    def latency(self) -> int:
        return self._latency

    def elaborate(self, platform):
        m = Module()
        # Each node: (value, max count it can hold).
        eb = self._elem_bits
        top = (1 << eb) - 1
        nodes = [(self.i[k] if eb == 1 else self.i[k * eb:(k + 1) * eb], top)
                 for k in range(self._width)]
        level = 0
        while len(nodes) > 1:
            nxt = []
            for k in range(0, len(nodes) - 1, 2):
                (a, ma), (b, mb) = nodes[k], nodes[k + 1]
                nxt.append((a + b, ma + mb))
            if len(nodes) % 2:
                nxt.append(nodes[-1])
            level += 1
            if level % self._levels_per_stage == 0 or len(nxt) == 1:
                regs = []
                for k, (v, mx) in enumerate(nxt):
                    r = Signal(unsigned(mx.bit_length()), name=f"pc_l{level}_{k}")
                    with m.If(self.en):
                        m.d.sync += r.eq(v)
                    regs.append((r, mx))
                nxt = regs
            nodes = nxt
        m.d.comb += self.o.eq(nodes[0][0])
        return m
