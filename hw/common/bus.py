"""The host bus: a simple memory-mapped port shared by every core and by the UART bridge.

Signals (direction as seen from the master, the host or a bridge):

- ``addr``   (``addr_width``) word address; words are ``data_width`` bits (32).
- ``w_data`` (``data_width``) write data.
- ``w_stb``  (1) write strobe: the word at ``addr`` takes ``w_data`` at this clock edge. A write
  always completes in that one cycle; there is no acknowledge.
- ``r_stb``  (1) read strobe: request the word at ``addr``. The master holds nothing afterwards.
- ``r_data`` (``data_width``) read data, valid while ``r_ack`` is high.
- ``r_ack``  (1) high for exactly one cycle, some fixed number of cycles (>= 1, the slave's read
  latency) after ``r_stb``.

Rules: ``w_stb`` and ``r_stb`` are never high together; after ``r_stb`` the master issues nothing
until ``r_ack``. Reading an unmapped address answers 0; writing one does nothing. Wider fields
(the 64-bit sparse-matrix words) take two consecutive word addresses, low half first.

The read rule, for every core and every master: a master waits for ``r_ack``, it never counts
cycles; each core's memory map states its latency (``READ_LATENCY``: EIE 9, BNN 1). The host
side (the bus-driver protocol, the operations, the one executor) is :mod:`eie.hw.common.host`;
packed register fields are :mod:`eie.hw.common.regs`.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BusSignature"]


class BusSignature(wiring.Signature):
    """Signature of the host bus, master side (``flip()`` it for a slave)."""

    def __init__(self, addr_width: int, data_width: int = 32):
        if not isinstance(addr_width, int) or not 1 <= addr_width <= 32:
            raise ValueError(f"bus address width must be an integer from 1 to 32, not {addr_width!r}")
        if not isinstance(data_width, int) or data_width not in (8, 16, 32, 64):
            raise ValueError(f"bus data width must be 8, 16, 32 or 64, not {data_width!r}")
        self._addr_width = addr_width
        self._data_width = data_width
        super().__init__({
            "addr": Out(addr_width),
            "w_data": Out(data_width),
            "w_stb": Out(1),
            "r_stb": Out(1),
            "r_data": In(data_width),
            "r_ack": In(1),
        })

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def data_width(self) -> int:
        return self._data_width

    def __eq__(self, other):
        return (isinstance(other, BusSignature) and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __repr__(self):
        return f"BusSignature(addr_width={self.addr_width}, data_width={self.data_width})"
