"""Write-back arithmetic (combinational): accumulator -> int16 activation, the contract's rule.

``y = saturate16(round_half_even(acc / 2**w_frac))``, then ``max(y, 0)`` when ``relu``. ``acc`` is
a signed ``acc_bits`` value, ``w_frac`` a per-layer shift (0..30). Rounding: ``q = acc >> w_frac``
(arithmetic, i.e. floor), ``r = acc - q * 2**w_frac``; add 1 when ``r > 2**(w_frac-1)``, or when
``r == 2**(w_frac-1)`` and ``q`` is odd (ties to even). No rounding when ``w_frac == 0``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import W_FRAC_BITS

__all__ = ["Writeback", "INT16_MIN", "INT16_MAX"]

INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1


class Writeback(wiring.Component):
    """``acc``, ``w_frac``, ``relu`` in, ``y`` (int16) out, in the same cycle."""

    def __init__(self, acc_bits: int = 32):
        if not isinstance(acc_bits, int) or not 16 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be from 16 to 64, not {acc_bits!r}")
        self._acc_bits = acc_bits
        super().__init__({
            "acc": In(signed(acc_bits)),
            "w_frac": In(W_FRAC_BITS),
            "relu": In(1),
            "y": Out(signed(16)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._acc_bits
        q = Signal(signed(n))
        rem = Signal(unsigned(n))
        half = Signal(unsigned(n + 1))
        up = Signal()
        r = Signal(signed(n + 1))
        sat = Signal(signed(16))
        m.d.comb += [
            q.eq(self.acc >> self.w_frac),
            rem.eq(self.acc - (q << self.w_frac)),
            half.eq((1 << self.w_frac) >> 1),
            up.eq((self.w_frac != 0) & ((rem > half) | ((rem == half) & q[0]))),
            r.eq(q + up),
            sat.eq(Mux(r > INT16_MAX, INT16_MAX, Mux(r < INT16_MIN, INT16_MIN, r))),
            self.y.eq(Mux(self.relu & sat[15], 0, sat)),
        ]
        return m
