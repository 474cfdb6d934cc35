"""A software model of the UART bridge, byte for byte: :class:`LoopbackTransport` answers the
host driver's frames from a Python dictionary of words, as the gateware answers them from the
core's bus (same statuses, same retry rule, same sessions). Used by ``bench/uart_load.py`` to
count what a load costs on the wire without simulating, and by tests to check the driver alone.

Time: nothing waits. A :meth:`LoopbackTransport.read` that finds fewer bytes than it asks for
and whose timeout is at least the bridge's inter-byte timeout (``timeout_bytes`` byte times)
stands for a quiet line: a frame left incomplete is answered TIMEOUT and dropped, and the
"ignore the line until quiet" state after a BAD_COUNT on a WRITE ends. (The gateware also drops
bytes that arrive while it is answering; the model takes them. Well-formed exchanges, where the
host waits for each answer, are byte-identical.)
"""

from __future__ import annotations

import struct

from .protocol import (CRC_BYTES, HEADER_BYTES, PROTOCOL_VERSION, REQ_SYNC, BridgeInfo, Cmd,
                       Design, Status, crc16, encode_response)

__all__ = ["LoopbackTransport"]

_WRITES = (Cmd.WRITE, Cmd.WRITE_FIXED)
_READS = (Cmd.READ, Cmd.READ_FIXED)
_FIXED = (Cmd.WRITE_FIXED, Cmd.READ_FIXED)


class LoopbackTransport:
    """A transport whose far end is a bridge model over ``memory`` (``{addr: word}``, missing
    addresses read 0). ``baud`` only sets ``byte_time``; nothing waits.

    ``bus_writes`` and ``bus_reads`` count bus strobes (words written and read); ``executed``
    lists every request that reached the bus as ``(seq, cmd, addr, count)``. ``version=1``
    models a bridge of protocol version 1 (no OPEN: BAD_CMD), to test the driver against it.
    """

    def __init__(self, memory: dict | None = None, *, max_burst: int = 256, addr_width: int = 24,
                 baud: int = 115200, design: Design = Design.NONE, clk_freq: int = 0,
                 timeout_bytes: float = 64, version: int = PROTOCOL_VERSION):
        self.memory = {} if memory is None else memory
        self.max_burst = max_burst
        self.version = version
        self.info = BridgeInfo(addr_width, version, design, max_burst, clk_freq)
        self.byte_time = 10.0 / baud
        self.timeout_bytes = timeout_bytes
        self.latency = 0.0
        self.bus_writes = 0
        self.bus_reads = 0
        self.executed: list[tuple[int, int, int, int]] = []
        self._rx = bytearray()
        self._tx = bytearray()
        self._draining = False
        # the retry state: the session token, the last request that succeeded and the words
        # its READ answered (the gateware's read half of the burst buffer)
        self.session = 0
        self._last: tuple | None = None
        self._last_words: list[int] = []

    def write(self, data: bytes) -> None:
        if self._draining:          # ignoring the line until it is quiet
            return
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
        writes = cmd in _WRITES
        if writes and not 1 <= count <= self.max_burst:
            # the frame's length is unknown: ignore the line until it is quiet
            self._tx += encode_response(seq, Status.BAD_COUNT)
            rx.clear()
            self._draining = True
            return False
        n = HEADER_BYTES + (4 * count if writes else 0) + CRC_BYTES
        if len(rx) < n:
            return False
        frame = bytes(rx[:n])
        del rx[:n]
        self._tx += encode_response(seq, *self._execute(frame, seq, cmd, addr, count))
        return True

    def _execute(self, frame: bytes, seq: int, cmd: int, addr: int, count: int):
        """(status, words) for one whole frame; does what the bridge does on the bus."""
        if crc16(frame[1:]) != 0:
            return Status.BAD_CRC, ()
        if cmd == Cmd.INFO:
            return Status.OK, self.info.to_words()
        if cmd == Cmd.OPEN and self.version >= 2:
            if addr != self.session:        # a new session: forget the last request
                self.session = addr
                self._last = None
            return Status.OK, (*self.info.to_words(), self.session)
        if cmd not in _WRITES and cmd not in _READS:
            return Status.BAD_CMD, ()
        if not 1 <= count <= self.max_burst:
            return Status.BAD_COUNT, ()
        fixed = cmd in _FIXED
        if (addr if fixed else addr + count - 1) >= 1 << self.info.addr_width:
            return Status.BAD_ADDR, ()
        key = (seq, cmd, addr, count)
        if key == self._last:               # a retry: answer again, do nothing
            return Status.OK, (self._last_words if cmd in _READS else ())
        self.executed.append(key)
        if cmd in _WRITES:
            words = struct.unpack_from(f"<{count}I", frame, HEADER_BYTES)
            for i, w in enumerate(words):
                self.memory[addr if fixed else addr + i] = w
            self.bus_writes += count
            self._last = key
            return Status.OK, ()
        words = [self.memory.get(addr if fixed else addr + i, 0) for i in range(count)]
        self.bus_reads += count
        self._last, self._last_words = key, words
        return Status.OK, words

    def quiet(self) -> None:
        """The line has been quiet for the bridge's inter-byte timeout."""
        self._draining = False
        if self._rx:                        # an incomplete frame (it starts with the sync byte)
            seq = self._rx[1] if len(self._rx) > 1 else 0
            self._rx.clear()
            self._tx += encode_response(seq, Status.TIMEOUT)

    def read(self, n: int, timeout: float) -> bytes:
        if len(self._tx) < n and timeout >= self.timeout_bytes * self.byte_time:
            self.quiet()
        out = bytes(self._tx[:n])
        del self._tx[:n]
        return out

    def reset_input(self) -> None:
        self._tx.clear()

    def close(self) -> None:
        pass
