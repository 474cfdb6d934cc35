"""A software model of the UART bridge, byte for byte: :class:`LoopbackTransport` answers the
host driver's frames from a Python dictionary of words, as the gateware answers them from the
core's bus (same statuses, same retry rule). Used by ``bench/uart_load.py`` to count what a load
costs on the wire without simulating, and by tests to check the driver alone.
"""

from __future__ import annotations

import struct

from .protocol import (HEADER_BYTES, PROTOCOL_VERSION, REQ_SYNC, BridgeInfo, Cmd, Design, Status,
                       crc16, encode_response)

__all__ = ["LoopbackTransport"]


class LoopbackTransport:
    """A transport whose far end is a bridge model over ``memory`` (``{addr: word}``, missing
    addresses read 0). ``baud`` only sets ``byte_time``; nothing waits."""

    def __init__(self, memory: dict | None = None, *, max_burst: int = 256, addr_width: int = 24,
                 baud: int = 115200, design: Design = Design.NONE, clk_freq: int = 0):
        self.memory = {} if memory is None else memory
        self.max_burst = max_burst
        self.info = BridgeInfo(addr_width, PROTOCOL_VERSION, design, max_burst, clk_freq)
        self.byte_time = 10.0 / baud
        self.latency = 0.0
        self.bus_writes = 0
        self._rx = bytearray()
        self._tx = bytearray()
        self._last = None

    def write(self, data: bytes) -> None:
        self._rx.extend(data)
        while self._frame():
            pass

    def _frame(self) -> bool:
        rx = self._rx
        while rx and rx[0] != REQ_SYNC:
            del rx[0]
        if len(rx) < HEADER_BYTES:
            return False
        seq, cmd, addr, count = struct.unpack_from("<BBIH", rx, 1)
        writes = cmd in (Cmd.WRITE, Cmd.WRITE_FIXED)
        if writes and not 1 <= count <= self.max_burst:
            self._tx += encode_response(seq, Status.BAD_COUNT)
            rx.clear()
            return False
        n = HEADER_BYTES + (4 * count if writes else 0) + 2
        if len(rx) < n:
            return False
        frame = bytes(rx[:n])
        del rx[:n]
        if crc16(frame[1:]) != 0:
            self._tx += encode_response(seq, Status.BAD_CRC)
            return True
        if cmd == Cmd.INFO:
            self._tx += encode_response(seq, Status.OK, self.info.to_words())
            return True
        if cmd not in (Cmd.WRITE, Cmd.WRITE_FIXED, Cmd.READ, Cmd.READ_FIXED):
            self._tx += encode_response(seq, Status.BAD_CMD)
            return True
        if not 1 <= count <= self.max_burst:
            self._tx += encode_response(seq, Status.BAD_COUNT)
            return True
        last = addr if cmd in (Cmd.WRITE_FIXED, Cmd.READ_FIXED) else addr + count - 1
        if last >= 1 << self.info.addr_width:
            self._tx += encode_response(seq, Status.BAD_ADDR)
            return True
        key = (seq, cmd, addr, count)
        fixed = cmd in (Cmd.WRITE_FIXED, Cmd.READ_FIXED)
        if writes:
            if key != self._last:
                words = struct.unpack_from(f"<{count}I", frame, HEADER_BYTES)
                for i, w in enumerate(words):
                    self.memory[addr if fixed else addr + i] = w
                self.bus_writes += count
                self._last = key
            self._tx += encode_response(seq, Status.OK)
        else:
            words = [self.memory.get(addr if fixed else addr + i, 0) for i in range(count)]
            self._last = key
            self._tx += encode_response(seq, Status.OK, words)
        return True

    def read(self, n: int, timeout: float) -> bytes:
        out = bytes(self._tx[:n])
        del self._tx[:n]
        return out

    def reset_input(self) -> None:
        self._tx.clear()

    def close(self) -> None:
        pass
