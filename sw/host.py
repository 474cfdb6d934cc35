"""Host driver for the UART bridge (:mod:`eie.boards.bridge`): transports, a retrying client,
and image runners for the EIE and BNN cores.

The same :class:`BridgeClient` drives a real board through :class:`SerialTransport` (pyserial)
and the board top in the Amaranth simulator through :class:`SimTransport`, whose testbench drives
the top's UART ``rx`` pin bit by bit and decodes its ``tx`` pin, so the bridge and this driver are
tested end to end without a board. :class:`NoisyTransport` wraps either to flip, drop or cut
bytes, for testing the retries.
"""

from __future__ import annotations

import collections
import os
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from ..boards.protocol import (RSP_HEADER_BYTES, RSP_SYNC, CRC_BYTES, BridgeInfo, Cmd, Status,
                               crc16, encode_request, request_length)
from .errors import EieError

__all__ = [
    "Transport", "SerialTransport", "SimTransport", "NoisyTransport", "BridgeClient",
    "BridgeError", "LinkError", "LinkStats",
]


class BridgeError(EieError):
    """The bridge rejected a request for a reason a retry does not fix (bad command or count,
    a bus read with no answer)."""


class LinkError(EieError):
    """No good response after all retries."""


class Transport(Protocol):
    """A byte pipe to a bridge. ``byte_time`` is the seconds one byte takes on the line,
    ``latency`` a fixed allowance for the host side (USB) in seconds."""

    byte_time: float
    latency: float

    def write(self, data: bytes) -> None: ...

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes; fewer when ``timeout`` seconds pass first."""

    def reset_input(self) -> None: ...

    def close(self) -> None: ...


class SerialTransport:
    """A serial port through pyserial (8N1)."""

    def __init__(self, port: str, baud: int = 115200, latency: float = 0.05):
        try:
            import serial
        except ImportError as exc:   # pragma: no cover - pyserial is in the boards extra
            raise EieError("talking to a board needs pyserial: pip install 'eie[boards]'") from exc
        try:
            self._port = serial.Serial(port, baud, timeout=0.1)
        except (serial.SerialException, OSError) as exc:
            raise EieError(f"cannot open serial port {port!r}: {exc} (check --port and that the "
                           f"board is plugged in)") from exc
        self.byte_time = 10.0 / baud
        self.latency = latency

    def write(self, data: bytes) -> None:
        self._port.write(data)
        self._port.flush()

    def read(self, n: int, timeout: float) -> bytes:
        self._port.timeout = timeout
        return self._port.read(n)

    def reset_input(self) -> None:
        self._port.reset_input_buffer()

    def close(self) -> None:
        self._port.close()


async def _ticks(ctx, n: int) -> None:
    for _ in range(n):
        await ctx.tick()


class SimTransport:
    """The board top in the Amaranth simulator, its UART pins driven bit by bit.

    ``dut`` has ``rx`` (input) and ``tx`` (output) ports; ``divisor`` is the UART's clock cycles
    per bit and ``clk_freq`` the nominal clock, which turns simulated cycles into the seconds that
    :meth:`read`'s timeout counts. Time passes only inside :meth:`read`. When the environment
    variable ``EIE_VCD`` names a file, the whole session is written there as a VCD.
    """

    def __init__(self, dut, *, divisor: int, clk_freq: float = 12e6):
        from amaranth.sim import Simulator

        self._dut = dut
        self._divisor = divisor
        self._period = 1.0 / clk_freq
        self.byte_time = 10 * divisor * self._period
        self.latency = 0.0
        self._to_dut: collections.deque[int] = collections.deque()
        self._from_dut = bytearray()
        self.cycles = 0
        self._sim = Simulator(dut)
        self._sim.add_clock(self._period)
        self._sim.add_testbench(self._drive_rx, background=True)
        self._sim.add_testbench(self._watch_tx, background=True)
        self._vcd = None
        vcd = os.environ.get("EIE_VCD")
        if vcd:
            self._vcd = self._sim.write_vcd(vcd)
            self._vcd.__enter__()

    def peek(self, value) -> int:
        """The current value of a signal (or memory element) of the design, for tests."""
        return self._ctx.get(value)

    async def _drive_rx(self, ctx):
        self._ctx = ctx
        rx, divisor = self._dut.rx, self._divisor
        ctx.set(rx, 1)
        while True:
            if not self._to_dut:
                await _ticks(ctx, divisor)
                continue
            byte = self._to_dut.popleft()
            for bit in (0, *((byte >> i) & 1 for i in range(8)), 1):
                ctx.set(rx, bit)
                await _ticks(ctx, divisor)

    async def _watch_tx(self, ctx):
        tx, divisor = self._dut.tx, self._divisor
        while True:
            await ctx.negedge(tx)
            await _ticks(ctx, divisor // 2)          # middle of the start bit
            byte = 0
            for i in range(8):
                await _ticks(ctx, divisor)
                byte |= ctx.get(tx) << i
            await _ticks(ctx, divisor)
            if ctx.get(tx):                                 # good stop bit
                self._from_dut.append(byte)

    def _run(self, cycles: int) -> None:
        self.cycles += cycles
        self._sim.run_until(self.cycles * self._period)

    def write(self, data: bytes) -> None:
        self._to_dut.extend(data)

    def read(self, n: int, timeout: float) -> bytes:
        budget = max(1, int(timeout / self._period))
        step = 10 * self._divisor
        while len(self._from_dut) < n and budget > 0:
            self._run(min(step, budget))
            budget -= step
        out = bytes(self._from_dut[:n])
        del self._from_dut[:n]
        return out

    def reset_input(self) -> None:
        self._from_dut.clear()

    def close(self) -> None:
        self._sim = None
        if self._vcd is not None:
            self._vcd.__exit__(None, None, None)
            self._vcd = None


class NoisyTransport:
    """Wraps a transport and damages frames: with probability ``p_flip`` a written or read chunk
    gets one bit flipped, with ``p_cut`` a written frame loses its tail. ``seed`` makes it
    repeatable; ``events`` counts what was done."""

    def __init__(self, inner: Transport, *, p_flip: float = 0.0, p_cut: float = 0.0,
                 seed: int = 0):
        self._inner = inner
        self._rng = random.Random(seed)
        self.p_flip, self.p_cut = p_flip, p_cut
        self.byte_time, self.latency = inner.byte_time, inner.latency
        self.events = collections.Counter()

    def _flip(self, data: bytes, what: str) -> bytes:
        if data and self._rng.random() < self.p_flip:
            data = bytearray(data)
            i = self._rng.randrange(len(data))
            data[i] ^= 1 << self._rng.randrange(8)
            self.events[f"flip_{what}"] += 1
        return bytes(data)

    def write(self, data: bytes) -> None:
        if len(data) > 1 and self._rng.random() < self.p_cut:
            data = data[:self._rng.randrange(1, len(data))]
            self.events["cut"] += 1
        self._inner.write(self._flip(data, "write"))

    def read(self, n: int, timeout: float) -> bytes:
        return self._flip(self._inner.read(n, timeout), "read")

    def reset_input(self) -> None:
        self._inner.reset_input()

    def close(self) -> None:
        self._inner.close()


@dataclass
class LinkStats:
    """What crossed the link: frames, payload and wire bytes, retries, rejected frames."""

    requests: int = 0
    retries: int = 0
    payload_bytes: int = 0
    wire_bytes: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)

    @property
    def overhead(self) -> float:
        """Wire bytes per payload byte."""
        return self.wire_bytes / self.payload_bytes if self.payload_bytes else float("nan")


class _Garbled(Exception):
    pass


class BridgeClient:
    """Reads and writes the memory map of the core behind a UART bridge.

    Every request is retried (same sequence number, so the bridge does not execute it twice) up
    to ``retries`` times when its response is missing, garbled, or says the request arrived
    damaged (BAD_CRC, TIMEOUT). Bursts are split to the bridge's buffer, which :meth:`info`
    reads on first use.
    """

    def __init__(self, transport: Transport, *, retries: int = 8):
        self.transport = transport
        self.retries = retries
        self.stats = LinkStats()
        self._seq = 0
        self._info: BridgeInfo | None = None

    # --- one request --------------------------------------------------------------------------
    def _timeout(self, n_req: int, n_rsp: int, bus_words: int = 0) -> float:
        t = self.transport
        clk = self._info.clk_freq if self._info and self._info.clk_freq else 1e6
        # the bridge answers a damaged frame after 64 quiet byte times; allow for that too
        return t.latency + (n_req + n_rsp + 80) * t.byte_time + bus_words * 300 / clk

    def _read_response(self, timeout: float, max_words: int):
        t = self.transport
        deadline = timeout
        # hunt for the sync byte
        while True:
            b = t.read(1, deadline)
            if not b:
                raise _Garbled("no response")
            if b[0] == RSP_SYNC:
                break
        head = t.read(RSP_HEADER_BYTES - 1, deadline)
        if len(head) != RSP_HEADER_BYTES - 1:
            raise _Garbled("response header cut short")
        seq, status, count = struct.unpack("<BBH", head)
        if count > max_words:
            raise _Garbled(f"response claims {count} words")
        rest = t.read(4 * count + CRC_BYTES, deadline)
        if len(rest) != 4 * count + CRC_BYTES:
            raise _Garbled("response cut short")
        if crc16(head + rest) != 0:
            raise _Garbled("response CRC")
        self.stats.wire_bytes += 1 + len(head) + len(rest)
        words = struct.unpack(f"<{count}I", rest[:4 * count])
        return seq, status, words

    def _drain(self) -> None:
        """Wait for the line to go quiet (the bridge may still answer a damaged frame)."""
        t = self.transport
        while t.read(4096, 80 * t.byte_time + t.latency):
            pass
        t.reset_input()

    def request(self, cmd: Cmd, addr: int = 0, count: int = 0, words: Sequence[int] = ()) -> tuple:
        """Send one request, retrying as needed; return the response's words."""
        seq = self._seq
        frame = encode_request(seq, cmd, addr, count, words)
        n_rsp_words = count if cmd in (Cmd.READ, Cmd.READ_FIXED) else (4 if cmd == Cmd.INFO else 0)
        timeout = self._timeout(len(frame), 7 + 4 * n_rsp_words,
                                0 if cmd == Cmd.INFO else count)
        self.stats.requests += 1
        last = "no response"
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self.transport.write(frame)
            self.stats.wire_bytes += len(frame)
            try:
                rseq, status, rwords = self._read_response(timeout, max(n_rsp_words, 4))
            except _Garbled as exc:
                last = str(exc)
                self._drain()
                continue
            if rseq != seq:
                last = f"response to sequence number {rseq}, expected {seq}"
                self._drain()
                continue
            if status in (Status.BAD_CRC, Status.TIMEOUT):
                self.stats.rejected[Status(status).name] += 1
                last = f"bridge reported {Status(status).name}"
                self._drain()
                continue
            if status != Status.OK:
                self._drain()
                name = Status(status).name if status in Status._value2member_map_ else status
                raise BridgeError(f"bridge rejected {Cmd(cmd).name} of {count} words at "
                                  f"{addr:#x}: {name}")
            if len(rwords) != n_rsp_words:
                last = f"response of {len(rwords)} words, expected {n_rsp_words}"
                self._drain()
                continue
            self._seq = (seq + 1) & 0xFF
            return rwords
        raise LinkError(f"no good answer from the board after {self.retries + 1} tries of "
                        f"{Cmd(cmd).name} at {addr:#x} ({last}); check the port, the baud rate "
                        f"and the cable")

    # --- operations ---------------------------------------------------------------------------
    def info(self) -> BridgeInfo:
        if self._info is None:
            words = self.request(Cmd.INFO)
            try:
                self._info = BridgeInfo.from_words(words)
            except ValueError as exc:
                raise EieError(f"the device on this link is not an eie board: {exc}") from exc
        return self._info

    def write(self, addr: int, words: Sequence[int], *, fixed: bool = False,
              progress: Callable[[int], None] | None = None) -> None:
        """Write ``words`` to consecutive addresses from ``addr`` (or all to ``addr`` when
        ``fixed``), in bursts of the bridge's buffer."""
        burst = self.info().max_burst
        words = [int(w) & 0xFFFFFFFF for w in words]
        cmd = Cmd.WRITE_FIXED if fixed else Cmd.WRITE
        for i in range(0, len(words), burst):
            chunk = words[i:i + burst]
            self.request(cmd, addr if fixed else addr + i, len(chunk), chunk)
            self.stats.payload_bytes += 4 * len(chunk)
            if progress is not None:
                progress(4 * len(chunk))

    def read(self, addr: int, count: int, *, fixed: bool = False) -> list[int]:
        """Read ``count`` words from consecutive addresses from ``addr`` (or all from ``addr``
        when ``fixed``)."""
        burst = self.info().max_burst
        cmd = Cmd.READ_FIXED if fixed else Cmd.READ
        out: list[int] = []
        for i in range(0, count, burst):
            n = min(burst, count - i)
            out.extend(self.request(cmd, addr if fixed else addr + i, n))
            self.stats.payload_bytes += 4 * n
        return out

    def read1(self, addr: int) -> int:
        return self.read(addr, 1)[0]

    def write1(self, addr: int, value: int) -> None:
        self.write(addr, [value])
