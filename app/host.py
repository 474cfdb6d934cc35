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
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from ..boards.protocol import (RSP_HEADER_BYTES, RSP_SYNC, CRC_BYTES, OPEN_WORDS,
                               PROTOCOL_VERSION, BridgeInfo, Cmd, Status, crc16, encode_request)
from ..common.errors import EieError
from ..common.outputs import env_waveform
from ..common.progress import progress_bar

__all__ = [
    "Transport", "SerialTransport", "SimTransport", "NoisyTransport", "BridgeClient",
    "BridgeError", "LinkError", "LinkStats", "BridgeBus", "BoardRun", "execute_ops", "run_eie",
    "run_bnn",
    "image_kind", "simulated_board", "burst_friendly", "bnn_core_variant", "core_mismatch",
    "SIM_DIVISOR", "SIM_CLK",
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
        self._port.reset_input_buffer()      # whatever the board sent before we listened
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
    variable ``EIE_VCD`` names a file, the whole session is written there as a VCD
    (``EIE_VCD=1``: ``board_sim.vcd`` in the working directory).
    """

    def __init__(self, dut, *, divisor: int, clk_freq: float = 12e6):
        from amaranth.sim import Simulator

        vcd = env_waveform("board_sim.vcd")     # first: a bad EIE_VCD stops nothing begun
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

    On first use the client opens a session (OPEN with a random nonzero 32-bit ``session``
    token; its answer also carries the INFO words), so that the bridge does not take this
    client's first request for a retry of an earlier client's last one. A bridge of protocol
    version 1 (no sessions) is refused with an error that says to rebuild the bitstream.
    """

    def __init__(self, transport: Transport, *, retries: int = 8, session: int | None = None):
        self.transport = transport
        self.retries = retries
        self.stats = LinkStats()
        self._seq = 0
        self._info: BridgeInfo | None = None
        if session is None:
            session = 1 + random.SystemRandom().randrange(0xFFFFFFFF)
        if not 1 <= session <= 0xFFFFFFFF:
            raise ValueError(f"a session token is 1 to 2**32 - 1, not {session!r}")
        self.session = session

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
        if self._info is None and cmd not in (Cmd.INFO, Cmd.OPEN):
            self.info()                     # open the session first
        seq = self._seq
        frame = encode_request(seq, cmd, addr, count, words)
        n_rsp_words = (count if cmd in (Cmd.READ, Cmd.READ_FIXED)
                       else 4 if cmd == Cmd.INFO else OPEN_WORDS if cmd == Cmd.OPEN else 0)
        timeout = self._timeout(len(frame), 7 + 4 * n_rsp_words,
                                0 if cmd in (Cmd.INFO, Cmd.OPEN) else count)
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
            # A WRITE's count is checked before its CRC (the bridge must know the length), so a
            # BAD_COUNT to a count we know to be valid means the count byte was corrupted.
            valid_count = self._info is not None and 1 <= count <= self._info.max_burst
            if status in (Status.BAD_CRC, Status.TIMEOUT) or (
                    status == Status.BAD_COUNT and valid_count):
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
        what = Cmd(cmd).name if cmd in (Cmd.INFO, Cmd.OPEN) else f"{Cmd(cmd).name} at {addr:#x}"
        raise LinkError(f"no good answer from the board after {self.retries + 1} tries of "
                        f"{what} ({last}); check the port, the baud rate and the cable")

    # --- operations ---------------------------------------------------------------------------
    def info(self) -> BridgeInfo:
        """The bridge's INFO; the first call opens this client's session."""
        if self._info is None:
            self._info = self._open()
        return self._info

    def _open(self) -> BridgeInfo:
        try:
            words = self.request(Cmd.OPEN, self.session, 0)
        except BridgeError:
            # a bridge that does not know OPEN: say which version it speaks, if it is ours
            self._check_version(self._parse_info(self.request(Cmd.INFO)))
            raise EieError("the bridge on this link rejects OPEN (protocol version 2 sessions): "
                           "rebuild and load its bitstream with this eie") from None
        info = self._parse_info(words[:4])
        self._check_version(info)
        if words[4] != self.session:
            raise LinkError(f"the bridge opened session {words[4]:#010x}, not this client's "
                            f"{self.session:#010x}: another program is using the link")
        return info

    @staticmethod
    def _parse_info(words) -> BridgeInfo:
        try:
            return BridgeInfo.from_words(words)
        except ValueError as exc:
            raise EieError(f"the device on this link is not an eie board: {exc}") from exc

    @staticmethod
    def _check_version(info: BridgeInfo) -> None:
        if info.version < PROTOCOL_VERSION:
            raise EieError(f"the bridge on this board speaks protocol version {info.version}, "
                           f"this eie needs version {PROTOCOL_VERSION} (sessions, so a retry is "
                           f"never confused with a new request): rebuild and load the bitstream "
                           f"with this eie (eie build ... --program)")
        if info.version > PROTOCOL_VERSION:
            raise EieError(f"the bridge on this board speaks protocol version {info.version}, "
                           f"newer than this eie's {PROTOCOL_VERSION}: update eie")

    def _check_span(self, addr: int, n: int) -> None:
        top = 1 << self.info().addr_width
        if addr < 0 or addr + max(n, 1) > top:
            raise EieError(f"bus words {addr:#x}..{addr + max(n, 1) - 1:#x} are beyond the board's "
                           f"{self.info().addr_width}-bit bus (last address {top - 1:#x}): the "
                           f"bitstream on the board does not match this image or program")

    def write(self, addr: int, words: Sequence[int], *, fixed: bool = False,
              progress: Callable[[int], None] | None = None) -> None:
        """Write ``words`` to consecutive addresses from ``addr`` (or all to ``addr`` when
        ``fixed``), in bursts of the bridge's buffer."""
        burst = self.info().max_burst
        words = [int(w) & 0xFFFFFFFF for w in words]
        self._check_span(addr, 1 if fixed else len(words))
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
        self._check_span(addr, 1 if fixed else count)
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


# --- running programs of bus operations over the link -------------------------------------------

def _runs(addrs: Sequence[int]):
    """Group consecutive addresses that go up by one (or stay the same) into runs: yields
    (first address, fixed, start index, end index)."""
    start, fixed = 0, False
    for k in range(1, len(addrs) + 1):
        if k < len(addrs):
            step = addrs[k] - addrs[k - 1]
            if (k - start == 1 and step in (0, 1)) or (k - start > 1 and step == (0 if fixed else 1)):
                fixed = step == 0
                continue
        yield addrs[start], fixed, start, k
        start, fixed = k, False


class BridgeBus:
    """The host-bus driver (:class:`eie.hw.common.host.HostBus`) over a :class:`BridgeClient`,
    for both cores' host programs (run with :func:`eie.hw.common.host.run_sync`: its methods
    block on the link and never suspend). Writes are held back and sent, merged into bursts (one
    address for a FIFO port), before the next read or on :meth:`flush`, so their order on the
    core's bus is the program's; consecutive reads (``read_many``) go as bursts too. The bridge
    itself waits for each read's ``r_ack``. ``progress(n)`` counts the bytes written."""

    def __init__(self, client: BridgeClient, progress: Callable[[int], None] | None = None):
        self.client = client
        self.progress = progress
        self._addrs: list[int] = []
        self._data: list[int] = []

    async def write(self, addr: int, data: int) -> None:
        self._addrs.append(addr)
        self._data.append(data)

    async def read(self, addr: int) -> int:
        self.flush()
        return self.client.read1(addr)

    async def read_many(self, addrs: Sequence[int]) -> list[int]:
        self.flush()
        out: list[int] = []
        for addr, fixed, a, b in _runs(addrs):
            out.extend(self.client.read(addr, b - a, fixed=fixed))
        return out

    async def idle(self, cycles: int) -> None:   # the link is slower than any back-pressure
        self.flush()

    def flush(self) -> None:
        addrs, data = self._addrs, self._data
        self._addrs, self._data = [], []
        for addr, fixed, a, b in _runs(addrs):
            self.client.write(addr, data[a:b], fixed=fixed, progress=self.progress)


def execute_ops(client: BridgeClient, ops, progress: Callable[[int], None] | None = None) -> dict:
    """Run a host program (:mod:`eie.hw.common.host` ``Write``/``Read``/``Poll``: an EIE
    :class:`~eie.hw.eie.host_program.HostProgram`'s) over the link with the one executor, in
    program order, consecutive writes (and reads) merged into bursts (:class:`BridgeBus`).
    Returns ``{key: value}`` of the reads."""
    from ..hw.common.host import execute, run_sync

    bus = BridgeBus(client, progress)
    try:
        values = run_sync(execute(bus, ops))
    except TimeoutError as exc:
        raise LinkError(f"the core did not finish: {exc}") from None
    except RuntimeError as exc:
        raise EieError(f"the core refused the request: {exc}") from None
    bus.flush()
    return values


def burst_friendly(ops, is_memory: Callable[[int], bool]) -> list:
    """``ops`` reordered so that more of them merge into bursts, with the same effect: within a
    run of writes, the writes to plain memories (``is_memory(addr)``) between two register
    writes are sorted by address (a register write stays where it is, a barrier); a run of
    reads is sorted by address when every read in it is of a memory or a counter (no read
    side effects). Polls stay in place."""
    from ..hw.common.host import Read, Write

    out: list = []
    i = 0
    while i < len(ops):
        j = i
        while j < len(ops) and type(ops[j]) is type(ops[i]):
            j += 1
        seg = list(ops[i:j])
        if isinstance(ops[i], Write):
            chunk: list = []
            for op in seg:
                if is_memory(op.addr):
                    chunk.append(op)
                else:
                    out.extend(sorted(chunk, key=lambda o: o.addr))
                    chunk = []
                    out.append(op)
            out.extend(sorted(chunk, key=lambda o: o.addr))
        elif isinstance(ops[i], Read):
            out.extend(sorted(seg, key=lambda o: o.addr))
        else:
            out.extend(seg)
        i = j
    return out


class _Bar:
    """A tqdm progress bar over bytes when asked for, else nothing; when asked for, it follows
    :func:`eie.common.progress.progress_bar`'s rule (on stderr, drawn on a terminal only)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = None
        if enabled:
            self._bar = progress_bar(total, desc=desc, unit="B", unit_scale=True)

    def __call__(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class BoardRun:
    """What one image run on a board (or its simulation) gave."""

    outputs: "object"                      # np.ndarray
    counters: list
    load_seconds: float
    load_bytes: int
    link: LinkStats
    extra: dict = field(default_factory=dict)


def run_eie(client: BridgeClient, config, image, xq, *, progress: bool = False) -> BoardRun:
    """Load an EIE image (``config`` is the core's :class:`~eie.hw.eie.config.EIEConfig`), run
    every row of the int16 batch ``xq``, read outputs and counters."""
    import numpy as np

    from ..hw.common.host import run_sync
    from ..hw.eie.host_program import HostProgram, Write, check_config
    from ..hw.eie.memory_map import MemoryMap

    mm = MemoryMap(config)
    run_sync(check_config(BridgeBus(client), config,
                          hint="pass the --build directory of the bitstream on the board"))
    hp = HostProgram(config, image)
    load = hp.load()
    n_bytes = 4 * sum(isinstance(op, Write) for op in load)
    bar = _Bar(n_bytes, "loading image", progress)
    t0 = time.monotonic()
    try:
        execute_ops(client, load, bar)
    finally:
        bar.close()
    load_seconds = time.monotonic() - t0
    ys, counters = [], []
    region_shift = mm.pe_bits + mm.off_bits          # the region field tops every address

    def is_memory(addr: int) -> bool:               # anything outside the global registers
        return (addr >> region_shift) != 0

    for row in np.asarray(xq):
        # the inputs go to every PE's activation file interleaved (x_j to PE j % N): sorted,
        # they are N bursts instead of n_in single-word frames; all reads here are side-effect free
        values = execute_ops(client, burst_friendly(hp.run(row) + hp.collect(), is_memory))
        y, c = hp.decode(values)
        ys.append(y)
        counters.append({"layers": c, "run_cycles": int(values[("run_cycles",)])})
    y = np.stack(ys) if ys else np.zeros((0, image.n_out), dtype=np.int16)
    return BoardRun(y, counters, load_seconds, n_bytes, client.stats)


def run_bnn(client: BridgeClient, image, x, *, progress: bool = False) -> BoardRun:
    """Check the BNN core's topology, folding, weight precisions and output layer (a core
    built for this topology and folding with other precisions is named in one line: see
    :func:`bnn_core_variant`), load the image's weights and thresholds (and a ternary layer's
    masks), stream the bit rows of ``x`` through it; return the results and the counters."""
    from ..hw.bnn.host_program import check_config, load_image, load_ops, run_samples
    from ..hw.common.host import run_sync
    from ..hw.bnn.memory_map import ID_VALUE, REGISTERS, BnnMemoryMap

    in_depth = client.read1(REGISTERS["IN_DEPTH"])
    out_depth = client.read1(REGISTERS["OUT_DEPTH"])
    try:
        mm = BnnMemoryMap(list(image.folds), in_depth=max(1, in_depth), out_depth=max(1, out_depth),
                          last_thresholded=image.last_thresholded,
                          weight_bits=tuple(image.weight_bits))
    except (ValueError, EieError) as exc:
        raise EieError(f"the BNN core reports input/output FIFO depths {in_depth}/{out_depth} "
                       f"that do not go with this image: {exc}") from None
    bus = BridgeBus(client)

    async def main():
        try:
            await check_config(bus, mm)
        except (LinkError, BridgeError):
            raise                       # the link failed: no second look at the core
        except EieError:
            # the same topology and folding built for other weight precisions (or the other
            # kind of output layer) says so in its own words; anything else as check_config does
            ident = await bus.read(mm.reg("ID"))
            crc = await bus.read(mm.reg("CONFIG_CRC"))
            other = bnn_core_variant(mm.folds, crc) if ident == ID_VALUE else None
            if other is None:
                raise
            raise EieError(core_mismatch(mm.weight_bits, mm.last_thresholded, *other,
                                         where="the bitstream on the board")) from None
        n_bytes = 4 * sum(1 for _ in load_ops(mm, image))
        bar = _Bar(n_bytes, "loading image", progress)
        bus.progress = bar
        t0 = time.monotonic()
        try:
            await load_image(bus, mm, image)
            bus.flush()
        finally:
            bar.close()
        bus.progress = None
        load_seconds = time.monotonic() - t0
        y, counters = await run_samples(bus, mm, x)
        return BoardRun(y, [counters], load_seconds, n_bytes, client.stats)

    try:
        return run_sync(main())
    except RuntimeError as exc:
        raise LinkError(f"the BNN core stopped: {exc}") from None


#: Layers up to which :func:`bnn_core_variant` tries every combination of weight precisions.
_VARIANT_LAYERS = 10


def bnn_core_variant(folds, crc: int) -> tuple[tuple[int, ...], bool] | None:
    """``(weight_bits, last_thresholded)`` of the core of this topology and folding whose
    CONFIG_CRC is ``crc``, or None when none is (another topology or folding). Tries every
    combination of W1/W2 layers (networks of up to :data:`_VARIANT_LAYERS` layers; all W1 or
    all W2 beyond) and both kinds of output layer."""
    import itertools

    from ..hw.bnn.memory_map import config_crc

    n = len(folds)
    combos = (itertools.product((1, 2), repeat=n) if n <= _VARIANT_LAYERS
              else ((1,) * n, (2,) * n))
    for bits in combos:
        for thresholded in (False, True):
            if config_crc(folds, thresholded, bits) == crc:
                return tuple(bits), thresholded
    return None


def core_mismatch(image_bits, image_thresholded: bool, core_bits, core_thresholded: bool, *,
                  where: str) -> str:
    """One line: the BNN core (``where``) was built for other weight precisions or another kind
    of output layer than the image needs, and how to build one for the image."""
    from ..hw.bnn.words import weight_bits_text

    parts = []
    if tuple(core_bits) != tuple(image_bits):
        parts.append(f"weights {weight_bits_text(core_bits)} but the image has "
                     f"{weight_bits_text(image_bits)}")
    if bool(core_thresholded) != bool(image_thresholded):
        kind = {True: "a thresholded output layer (bits)", False: "an output layer of dots"}
        parts.append(f"{kind[bool(core_thresholded)]} but the image has "
                     f"{kind[bool(image_thresholded)]}")
    return (f"{where} was built for this topology and folding with {'; and '.join(parts)}: "
            f"build one for the image (eie build --design bnn --image IMAGE_DIR) and load it")


SIM_DIVISOR = 4          # UART clock cycles per bit in simulation (the smallest the UART takes)
SIM_CLK = 12_000_000     # nominal clock of the simulated board (turns timeouts into cycles)


def image_kind(image_dir) -> str:
    """``"eie"`` or ``"bnn"``, from the ``format`` in the image's ``manifest.json``, read with the
    images' own strict rules (:func:`eie.sw.imagefile.manifest_format`: a missing, damaged, too
    deeply nested or non-UTF-8 manifest is a one-line :class:`EieError`)."""
    from ..sw.bnn.image import FORMAT as BNN_FORMAT
    from ..sw.image import FORMAT_NAME as EIE_FORMAT
    from ..sw.imagefile import MANIFEST, manifest_format

    fmt = manifest_format(image_dir)
    if fmt == BNN_FORMAT:
        return "bnn"
    if fmt in (EIE_FORMAT, None):
        return "eie"
    raise EieError(f"{image_dir}/{MANIFEST}: unknown image format {fmt!r} (expected "
                   f"{EIE_FORMAT} or {BNN_FORMAT})")


def simulated_board(core, design, *, max_burst: int = 256) -> tuple[BridgeClient, SimTransport]:
    """A :class:`BridgeClient` talking to ``core`` behind the UART bridge in the Amaranth
    simulator (UART divisor :data:`SIM_DIVISOR`, nominal clock :data:`SIM_CLK`)."""
    from ..boards.tops import BridgedCore

    top = BridgedCore(core, divisor=SIM_DIVISOR, clk_freq=SIM_CLK, design=design,
                      max_burst=max_burst)
    transport = SimTransport(top, divisor=SIM_DIVISOR, clk_freq=SIM_CLK)
    return BridgeClient(transport), transport
