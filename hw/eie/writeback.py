"""Write-back arithmetic, pipelined: accumulator -> int16 activation, the contract's rule.

``y = saturate16(round_half_even(acc / 2**w_frac))``, then ``max(y, 0)`` when ``relu``. ``acc`` is
a signed ``acc_bits`` value, ``w_frac`` a per-layer shift (0..30).

Two register stages, both advancing only in cycles where ``en`` is high (so a consumer that
stalls holds the whole pipeline, as :class:`~eie.hw.eie.accum.Accumulator` does):

* stage 1 (``en`` cycle 1): one arithmetic shift of ``acc`` with a zero bit appended below it
  gives ``q = acc >> w_frac`` (floor) and the round bit ``acc[w_frac - 1]`` (0 when
  ``w_frac == 0``); the sticky bit is the OR of ``acc``'s bits below the round bit (a mask from
  ``w_frac``). ``up = round & (sticky | q odd)`` is round-half-even. Registered: ``q``, ``up``,
  ``relu``.
* stage 2 (``en`` cycle 2): saturation from ``q`` alone (``q >= 32767`` gives ``INT16_MAX``:
  ``q + up`` is then ``32767`` or ``32768``; ``q < -32768`` gives ``INT16_MIN``: ``q + up <=
  -32768``), else the 16-bit sum ``q + up``, which cannot overflow there; then ReLU.
  Registered: ``y``.

So ``y`` shows the result for the ``acc`` that was presented 2 ``en`` cycles earlier
(:data:`WRITEBACK_LATENCY`). Neither stage has a carry chain wider than 16 bits.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import W_FRAC_BITS

__all__ = ["Writeback", "INT16_MIN", "INT16_MAX", "WRITEBACK_LATENCY"]

INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1
WRITEBACK_LATENCY = 2


class Writeback(wiring.Component):
    """``acc``, ``w_frac``, ``relu`` in; ``y`` (int16) and ``nz`` (``y != 0``, a register of
    its own, so that a reader's nonzero flags start from flip-flops) out
    :data:`WRITEBACK_LATENCY` ``en`` cycles later.

    Per cycle with ``en`` high: stage 1 registers the shifted ``acc`` with its round-half-even
    increment and ``relu``; stage 2 registers the saturated, rounded, rectified ``y``. With
    ``en`` low both stages hold. No handshake; counts nothing.
    """

    def __init__(self, acc_bits: int = 32):
        if not isinstance(acc_bits, int) or not 16 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be from 16 to 64, not {acc_bits!r}")
        self._acc_bits = acc_bits
        super().__init__({
            "en": In(1),
            "acc": In(signed(acc_bits)),
            "w_frac": In(W_FRAC_BITS),
            "relu": In(1),
            "y": Out(signed(16)),
            "nz": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._acc_bits

        # ---- stage 1: shift, round bit, sticky bit ------------------------------------------
        sh = Signal(signed(n + 1))
        m.d.comb += sh.eq(Cat(Const(0, 1), self.acc).as_signed() >> self.w_frac)
        # bits strictly below the round bit, w_frac - 1 of them (none for w_frac 0, whose round
        # bit is the appended zero): the complement of all ones shifted left by w_frac, shifted
        # right by one: each mask bit a small function of w_frac's bits, not a subtraction (a
        # carry chain behind w_frac was the 1-PE core's critical path)
        below = Signal(unsigned(n))
        ones = Const((1 << (n + 1)) - 1, n + 1)
        m.d.comb += below.eq((~(ones << self.w_frac))[:n + 1] >> 1)
        sticky = Signal()
        m.d.comb += sticky.eq((self.acc.as_unsigned() & below).any())
        q = Signal(signed(n))
        up = Signal()
        relu = Signal()
        with m.If(self.en):
            m.d.sync += [
                q.eq(sh[1:]),
                up.eq(sh[0] & (sticky | sh[1])),
                relu.eq(self.relu),
            ]

        # ---- stage 2: saturate, add the rounding, ReLU --------------------------------------
        hi = Signal()
        lo = Signal()
        upper = q[15:]                       # bits 15 .. n-1: all equal iff q fits in int16
        m.d.comb += [
            hi.eq(~q[n - 1] & (upper.any() | (q[:15] == (1 << 15) - 1))),
            lo.eq(q[n - 1] & ~upper.all()),
        ]
        s16 = Signal(signed(16))
        m.d.comb += s16.eq(q[:16] + up)
        sat = Signal(signed(16))
        m.d.comb += sat.eq(Mux(hi, INT16_MAX, Mux(lo, INT16_MIN, s16)))
        y = Signal(signed(16))
        m.d.comb += y.eq(Mux(relu & sat[15], 0, sat))
        with m.If(self.en):
            m.d.sync += [self.y.eq(y), self.nz.eq(y != 0)]
        return m
