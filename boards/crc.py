"""CRC-16/CCITT-FALSE, in software and as a one-byte-a-cycle gateware block.

Parameters (the catalogue's CRC-16/CCITT-FALSE, also called CRC-16/IBM-3740): polynomial
``0x1021``, initial value ``0xFFFF``, no reflection, no final XOR; ``crc16(b"123456789") == 0x29B1``.
The bridge sends the CRC high byte first, so running the CRC over a whole frame *including* its
two CRC bytes leaves ``0`` -- that is how both ends check a frame.
"""


from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .protocol import CRC16_INIT, CRC16_POLY, crc16, crc16_update

__all__ = ["CRC16_POLY", "CRC16_INIT", "crc16", "crc16_update", "CRC16"]

class CRC16(wiring.Component):
    """CRC-16/CCITT-FALSE register, one byte a cycle.

    Per cycle: ``clear`` high loads ``0xFFFF``; otherwise ``valid`` high folds ``data`` into the
    register (the eight shift steps unrolled into XORs). ``crc`` is the register; ``zero`` is high
    when it equals 0, i.e. when a frame followed by its own CRC (high byte first) checks.
    """

    clear: In(1)
    valid: In(1)
    data: In(8)
    crc: Out(16)
    zero: Out(1)

    def elaborate(self, platform):
        m = Module()
        reg = Signal(16, init=CRC16_INIT)
        nxt = reg
        for i in range(8):                  # one shift step per data bit, MSB first
            step = Signal(16, name=f"step{i}")
            bit = nxt[15] ^ self.data[7 - i]
            m.d.comb += step.eq((nxt << 1)[:16] ^ (bit.replicate(16) & CRC16_POLY))
            nxt = step
        with m.If(self.clear):
            m.d.sync += reg.eq(CRC16_INIT)
        with m.Elif(self.valid):
            m.d.sync += reg.eq(nxt)
        m.d.comb += [self.crc.eq(reg), self.zero.eq(reg == 0)]
        return m
