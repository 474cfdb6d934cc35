"""UART transmitter and receiver, 8N1, with a fixed clock divisor (clock cycles per bit).

No parity, one stop bit, least significant bit first, line idle high. The divisor is
``round(clk_freq / baud)``; the baud error this leaves is reported by :func:`baud_error`.
Both blocks use :mod:`amaranth.lib.stream` for the bytes.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTTx", "UARTRx", "divisor_for", "baud_error"]


def divisor_for(clk_freq: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_freq``; raises if the error exceeds 2%."""
    if baud <= 0:
        raise ValueError(f"baud rate must be positive, not {baud!r}")
    divisor = round(clk_freq / baud)
    if divisor < 4:
        raise ValueError(f"baud rate {baud} needs {clk_freq / baud:.2f} clock cycles per bit at "
                         f"{clk_freq / 1e6:g} MHz; the UART needs at least 4 (lower the baud rate)")
    if baud_error(clk_freq, baud) > 0.02:
        raise ValueError(f"baud rate {baud} is {baud_error(clk_freq, baud):.1%} off at "
                         f"{clk_freq / 1e6:g} MHz with divisor {divisor}; the limit is 2%")
    return divisor


def baud_error(clk_freq: float, baud: int) -> float:
    """Relative error of the baud rate that the nearest divisor gives."""
    divisor = round(clk_freq / baud)
    return abs(clk_freq / divisor - baud) / baud


def _check_divisor(divisor: int) -> None:
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"UART divisor must be an integer of at least 4 clock cycles per bit, "
                         f"not {divisor!r}")


class UARTTx(wiring.Component):
    """8N1 transmitter.

    Per cycle: when idle and ``i.valid``, takes the byte (``i.ready`` is high only while idle) and
    shifts out start bit, 8 data bits LSB first, stop bit, each held ``divisor`` cycles on ``tx``.
    ``busy`` is high from the cycle after a byte is taken until its stop bit has been sent.
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1), "busy": Out(1)})

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        shreg = Signal(10, init=0x3FF)     # stop, d7..d0, start; bit 0 on the line
        bits = Signal(range(11))
        m.d.comb += [self.tx.eq(shreg[0]), self.busy.eq(bits != 0), self.i.ready.eq(bits == 0)]
        with m.If(bits == 0):
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq(self.i.payload << 1 | (1 << 9)), bits.eq(10),
                             timer.eq(self._divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq(shreg >> 1 | (1 << 9)), bits.eq(bits - 1),
                         timer.eq(self._divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """8N1 receiver.

    ``rx`` goes through a two-flop synchroniser. Per cycle: when idle, a low line starts a byte;
    the start bit is checked again half a bit later (a glitch shorter than that is ignored), then
    each data bit and the stop bit are sampled in their middle, ``divisor`` cycles apart. A byte
    with a good stop bit is presented on ``o`` (held until taken; a byte that arrives before the
    previous one was taken is dropped and ``overrun`` pulses); a low stop bit pulses
    ``frame_error`` and the byte is discarded.
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)),
                          "frame_error": Out(1), "overrun": Out(1)})

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self._divisor))
        shreg = Signal(8)
        bits = Signal(range(9))
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self._divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(self._divisor - 1), bits.eq(8)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(rx << 7 | shreg >> 1), timer.eq(self._divisor - 1),
                                 bits.eq(bits - 1)]
                    with m.If(bits == 1):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
        return m
