"""Property test of the UART bridge's execute-once rule under random frame damage.

A host written here (not :class:`BridgeClient`: an independent one) runs random programs of
WRITE, WRITE_FIXED, READ and READ_FIXED requests, some deliberately bad ones (BAD_COUNT,
BAD_ADDR, BAD_CMD), new sessions (OPEN with a new token, whose first request is sometimes the
previous session's last one, byte for byte) and replays (the last frame again, the session's
OPEN again). Each request is sent until it is acknowledged; most sends are damaged on the way:
flipped bits, replaced, dropped or inserted bytes, a broken sync, sequence, command, count or CRC
field, a truncated frame, noise before it, the frame twice back to back, or two or three of these
at once; some responses are lost.

Checked after every request, against a reference computed here from the program alone (each
request applied exactly once, in order): the bus write- and read-strobe counts, the memory, and
every READ's answer. So nothing ran twice (a count would be high), nothing was acknowledged
without running (a count would be low, or a READ answer stale) and no damaged frame reached the
bus. The program runs on the Python model (``boards/model.py``: 4 seeds of 5,000 damaged frames,
about 1 s each) and on the gateware in the Amaranth simulator (150 damaged frames, about 20 s of
CPU; 1,000 under ``-m slow``). Four deliberately broken models show that it catches what it
should: an OPEN that keeps the last request (issue 14), no retry rule, one buffer for WRITE
payloads and READ answers, and the version-1 gateware's "a WRITE header forgets the READ".

Damage is never allowed to make a *different* frame with a good CRC (CRC-16 misses 1 in 65,536
random damages; that is a limit of the frame check, not of the retry rule): such a damaged send
is drawn again, and counted as an ``alias``.
"""

from __future__ import annotations

import collections
import random
import struct
import time

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from eie.boards.model import LoopbackTransport
from eie.boards.protocol import (HEADER_BYTES, OPEN_WORDS, REQ_SYNC, RSP_HEADER_BYTES, RSP_SYNC,
                                 BridgeInfo, Cmd, Design, Status, crc16, encode_open,
                                 encode_request, request_length)
from eie.boards.ram import BusRAM
from eie.boards.tops import BridgedCore
from eie.hw.common.bus import BusSignature

AW = 10                 # bus address bits: 0..1023
DEPTH = 64              # words of RAM; every good request stays below
MODEL_FRAMES = 5000     # damaged frames per model seed (4 seeds: >= 20,000)
WRITES = (Cmd.WRITE, Cmd.WRITE_FIXED)
READS = (Cmd.READ, Cmd.READ_FIXED)


# --- damage -----------------------------------------------------------------------------------

def _rand_byte(rng, avoid=None):
    while True:
        b = REQ_SYNC if rng.random() < 0.2 else rng.randrange(256)   # syncs: resynchronisation
        if b != avoid:
            return b


def _damage_once(rng, f: bytearray, burst: int) -> tuple[str, bytearray]:
    kind = rng.choice(["flip", "replace", "drop", "insert", "truncate", "sync", "seq", "cmd",
                       "count", "crc", "noise", "twice"])
    n = len(f)
    if (kind in ("seq", "cmd", "count") and n < HEADER_BYTES) or (kind == "crc" and n < 2) or (
            kind in ("drop", "truncate") and n < 2):
        kind = "flip"                   # a frame already cut too short for that field
    if kind == "flip":
        for _ in range(rng.randint(1, 3)):
            f[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == "replace":
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(n)
            f[i] = _rand_byte(rng, f[i])
    elif kind == "drop":
        for _ in range(min(rng.randint(1, 3), n - 1)):
            del f[rng.randrange(len(f))]
    elif kind == "insert":
        for _ in range(rng.randint(1, 3)):
            f.insert(rng.randrange(len(f) + 1), _rand_byte(rng))
    elif kind == "truncate":
        f = f[:rng.randrange(1, n)]
    elif kind == "sync":
        if rng.random() < 0.5:
            f[0] = _rand_byte(rng, REQ_SYNC)
        else:
            del f[0]
    elif kind == "seq":
        f[1] = _rand_byte(rng, f[1])
    elif kind == "cmd":                 # often another command: a READ turned into a WRITE
        f[2] = rng.choice([*(c for c in Cmd if c != f[2]), _rand_byte(rng, f[2])])
    elif kind == "count":
        i = rng.choice([7, 8])
        f[i] = rng.choice([0, 1, burst, burst + 1, 0xFF, rng.randrange(256)])
    elif kind == "crc":
        if rng.random() < 0.5:
            f[-1], f[-2] = f[-2], f[-1]
        else:
            i = rng.choice([-1, -2])
            f[i] = _rand_byte(rng, f[i])
    elif kind == "noise":
        f[0:0] = bytes(_rand_byte(rng) for _ in range(rng.randint(1, 5)))
    elif kind == "twice":
        f = f + f
    return kind, f


def accepted(data: bytes, burst: int) -> list[bytes]:
    """Every request frame with a good CRC that starts at a sync byte of ``data``: the most a
    bridge could take from these bytes (it only ever parses from a sync byte on)."""
    out = []
    for i in range(len(data)):
        if data[i] != REQ_SYNC or len(data) - i < HEADER_BYTES:
            continue
        _, cmd, _, count = struct.unpack_from("<BBIH", data, i + 1)
        if cmd in WRITES and not 1 <= count <= burst:
            continue                                   # BAD_COUNT before the CRC: no frame
        n = request_length(cmd, count)
        if len(data) - i >= n and crc16(data[i + 1:i + n]) == 0:
            out.append(bytes(data[i:i + n]))
    return out


def damage(rng, frame: bytes, stats, burst: int) -> bytes:
    """``frame`` damaged in one to three ways, never into another frame with a good CRC."""
    while True:
        f = bytearray(frame)
        kinds = []
        for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
            kind, f = _damage_once(rng, f, burst)
            kinds.append(kind)
            if not f:
                break
        f = bytes(f)
        if f == frame:
            continue
        if any(a != frame for a in accepted(f, burst)):
            stats["alias"] += 1                        # a CRC collision: not this test's subject
            continue
        stats[f"damage {kinds[0] if len(kinds) == 1 else 'combined'}"] += 1
        return f


# --- responses --------------------------------------------------------------------------------

def parse_responses(data: bytes) -> list[tuple[int, int, tuple[int, ...]]]:
    """The bridge's responses in ``data`` (never damaged here), as (seq, status, words)."""
    out, i = [], 0
    while i < len(data):
        if data[i] != RSP_SYNC or len(data) - i < RSP_HEADER_BYTES + 2:
            i += 1
            continue
        seq, status, count = struct.unpack_from("<BBH", data, i + 1)
        n = RSP_HEADER_BYTES + 4 * count + 2
        if len(data) - i >= n and crc16(data[i + 1:i + n]) == 0:
            out.append((seq, status, struct.unpack_from(f"<{count}I", data, i + RSP_HEADER_BYTES)))
            i += n
        else:
            i += 1
    return out


# --- the two bridges --------------------------------------------------------------------------

class ModelLink:
    burst = 8

    def __init__(self, model=LoopbackTransport):
        self.lb = model(max_burst=self.burst, addr_width=AW, design=Design.RAM)
        self.info = self.lb.info

    def exchange(self, data: bytes) -> bytes:
        self.lb.write(data)
        return self.lb.read(1 << 20, 1.0)              # waits: the line goes quiet

    def counts(self) -> tuple[int, int]:
        return self.lb.bus_writes, self.lb.bus_reads

    def memory(self) -> list[int]:
        assert all(a < DEPTH for a in self.lb.memory)
        return [self.lb.memory.get(a, 0) for a in range(DEPTH)]


class CountingRAM(wiring.Component):
    """A :class:`BusRAM` that also counts bus read strobes."""

    def __init__(self, ram):
        self.ram = ram
        super().__init__({"bus": In(BusSignature(AW)), "reads": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = self.ram
        wiring.connect(m, wiring.flipped(self.bus), self.ram.bus)
        with m.If(self.bus.r_stb):
            m.d.sync += self.reads.eq(self.reads + 1)
        return m


DIVISOR = 4
PERIOD = 1e-6
BIT = DIVISOR * PERIOD
BYTE = 10 * BIT
BRIDGE_TIMEOUT = 16 * DIVISOR     # inter-byte timeout, 1.6 byte times (bytes go back to back)
QUIET = BRIDGE_TIMEOUT * PERIOD + 2 * BYTE    # longer than any silence inside an answer


class GatewareLink:
    """The bridge (``BridgedCore`` over a :class:`CountingRAM`) in the Amaranth simulator, its
    UART pins driven and decoded here bit by bit. Like ``SimTransport``, but the testbenches
    wake once a bit (``ctx.delay``), not once a cycle: about twice as fast."""

    burst = 4

    def __init__(self):
        from amaranth.sim import Simulator

        self.ram = BusRAM(addr_width=AW, depth=DEPTH, latency=1, init=[0] * DEPTH)
        self.core = CountingRAM(self.ram)
        self.dut = dut = BridgedCore(self.core, divisor=DIVISOR, clk_freq=round(1 / PERIOD),
                                     design=Design.RAM, max_burst=self.burst,
                                     timeout=BRIDGE_TIMEOUT)
        self.info = dut.bridge.info
        self._to_dut = collections.deque()
        self._from_dut = bytearray()
        self._now = 0.0
        self._ctx = None
        self._sim = Simulator(dut)
        self._sim.add_clock(PERIOD)
        self._sim.add_testbench(self._drive_rx, background=True)
        self._sim.add_testbench(self._watch_tx, background=True)

    async def _drive_rx(self, ctx):
        self._ctx = ctx
        ctx.set(self.dut.rx, 1)
        await ctx.delay(PERIOD / 2)            # edges of rx fall between clock edges
        while True:
            if not self._to_dut:
                await ctx.delay(BIT)
                continue
            byte = self._to_dut.popleft()
            for bit in (0, *((byte >> i) & 1 for i in range(8)), 1):
                ctx.set(self.dut.rx, bit)
                await ctx.delay(BIT)

    async def _watch_tx(self, ctx):
        tx = self.dut.tx
        while True:
            await ctx.negedge(tx)
            await ctx.delay(BIT / 2)           # the middle of the start bit
            byte = 0
            for i in range(8):
                await ctx.delay(BIT)
                byte |= ctx.get(tx) << i
            await ctx.delay(BIT)
            if ctx.get(tx):
                self._from_dut.append(byte)

    def _run(self, seconds: float) -> bytes:
        self._now += seconds
        self._sim.run_until(self._now)
        out = bytes(self._from_dut)
        self._from_dut.clear()
        return out

    def exchange(self, data: bytes) -> bytes:
        """Send ``data``, then collect what comes back until the line is quiet."""
        self._to_dut.extend(data)
        out = self._run((len(data) + 1) * BYTE)
        while True:
            more = self._run(QUIET)
            if not more:
                return out
            out += more

    def counts(self) -> tuple[int, int]:
        return self._ctx.get(self.ram.writes), self._ctx.get(self.core.reads)

    def memory(self) -> list[int]:
        return [self._ctx.get(self.ram.mem.data[i]) for i in range(DEPTH)]


# --- the host and its reference ---------------------------------------------------------------

Request = collections.namedtuple("Request", "seq cmd addr count words expect")


class Host:
    """Sends each request until it is answered, damaging most sends; keeps the reference."""

    def __init__(self, link, rng, *, p_clean=0.3, p_lose=0.15):
        self.link, self.rng, self.burst = link, rng, link.burst
        self.p_clean, self.p_lose = p_clean, p_lose
        self.stats = collections.Counter()
        self.ref_mem = [0] * DEPTH
        self.ref_writes = self.ref_reads = 0
        self.token = 0
        self.seq = 0
        self.last: Request | None = None        # this session's last request that ran
        self.ran: list[tuple] = []               # (seq, cmd, addr, count) of each that ran
        self.last_frame = b""
        self.last_answer = None
        self.open_frame = b""

    # one request, sent until its answer comes
    def send(self, frame: bytes, seq: int, want_status: int, n_words: int):
        for attempt in range(80):
            r = self.rng.random()
            if r < self.p_clean:
                data = frame
            else:
                data = damage(self.rng, frame, self.stats, self.burst)
                self.stats["damaged frames"] += 1
            self.stats["sends"] += 1
            answers = parse_responses(self.link.exchange(data))
            if self.rng.random() < self.p_lose:
                self.stats["lost responses"] += 1
                continue
            mine = [(s, w) for q, s, w in answers if q == seq]
            done = [(s, w) for s, w in mine if s == want_status]
            others = {s for s, _ in mine} - {want_status, Status.BAD_CRC, Status.TIMEOUT,
                                              Status.BAD_COUNT}
            assert not others, f"send {data.hex()} of {frame.hex()} answered {mine}"
            if done:
                assert all(d == done[0] for d in done), f"two different answers: {done}"
                assert len(done[0][1]) == n_words, done
                return done[0][1]
        raise AssertionError(f"no answer after 80 sends of {frame.hex()}")

    def check(self):
        assert self.link.counts() == (self.ref_writes, self.ref_reads), \
            f"bus strobes {self.link.counts()}, reference {(self.ref_writes, self.ref_reads)}"
        assert self.link.memory() == self.ref_mem, "the memory differs from the reference"

    def run(self, req: Request) -> None:
        frame = encode_request(req.seq, req.cmd, req.addr, req.count, req.words)
        words = self.send(frame, req.seq, req.expect, req.count if req.cmd in READS
                          and req.expect == Status.OK else 0)
        if req.expect == Status.OK:          # the reference: run it once
            fixed = req.cmd in (Cmd.WRITE_FIXED, Cmd.READ_FIXED)
            if req.cmd in WRITES:
                for i, w in enumerate(req.words):
                    self.ref_mem[req.addr if fixed else req.addr + i] = w
                self.ref_writes += req.count
            else:
                want = [self.ref_mem[req.addr if fixed else req.addr + i] for i in range(req.count)]
                assert list(words) == want, f"READ {req} answered {words}, memory holds {want}"
                self.ref_reads += req.count
            self.last, self.last_frame, self.last_answer = req, frame, words
            self.ran.append((req.seq, req.cmd, req.addr, req.count))
        self.stats[f"{'ok' if req.expect == Status.OK else 'refused'} requests"] += 1
        self.check()

    def open(self, token: int) -> None:
        self.token = token
        self.last = None
        self.open_frame = encode_open(self.seq, token)
        words = self.send(self.open_frame, self.seq, Status.OK, OPEN_WORDS)
        assert BridgeInfo.from_words(words[:4]) == self.link.info and words[4] == token
        self.seq = (self.seq + 1) & 0xFF
        self.stats["sessions"] += 1
        self.check()

    def replay_last(self) -> None:
        """The last request that ran, again (a duplicate on the line): answered, not run."""
        if self.last is not None:
            again = self.send(self.last_frame, self.last.seq, Status.OK, len(self.last_answer))
            assert again == self.last_answer, f"a replay answered {again}, first {self.last_answer}"
            self.stats["replays"] += 1
            self.check()

    def replay_open(self) -> None:
        """This session's OPEN again: changes nothing, the last request is still a retry."""
        words = self.send(self.open_frame, self.open_frame[1], Status.OK, OPEN_WORDS)
        assert words[4] == self.token
        self.stats["open replays"] += 1
        self.check()
        self.replay_last()

    def random_request(self) -> Request:
        rng, seq, burst = self.rng, self.seq, self.burst
        self.seq = (self.seq + 1) & 0xFF
        if rng.random() < 0.06:                         # refused, nothing runs
            bad = rng.choice(["read0", "readbig", "writebig", "addr", "cmd"])
            if bad == "read0":
                return Request(seq, Cmd.READ, rng.randrange(DEPTH), 0, (), Status.BAD_COUNT)
            if bad == "readbig":
                return Request(seq, Cmd.READ_FIXED, 0, burst + 1, (), Status.BAD_COUNT)
            if bad == "writebig":
                return Request(seq, Cmd.WRITE, 0, burst + 1,
                               tuple(rng.getrandbits(32) for _ in range(burst + 1)),
                               Status.BAD_COUNT)
            if bad == "addr":
                return Request(seq, Cmd.WRITE, (1 << AW) - 2, 3, (1, 2, 3), Status.BAD_ADDR)
            return Request(seq, 0x7E, 0, 1, (), Status.BAD_CMD)
        cmd = rng.choice([Cmd.WRITE, Cmd.WRITE, Cmd.WRITE_FIXED, Cmd.READ, Cmd.READ,
                          Cmd.READ_FIXED])
        count = rng.randint(1, burst)
        fixed = cmd in (Cmd.WRITE_FIXED, Cmd.READ_FIXED)
        addr = rng.randrange(DEPTH if fixed else DEPTH - count + 1)
        words = tuple(rng.getrandbits(32) for _ in range(count)) if cmd in WRITES else ()
        return Request(seq, cmd, addr, count, words, Status.OK)

    def program(self, damaged_frames: int) -> None:
        """Random requests, sessions and replays until ``damaged_frames`` damaged sends."""
        rng = self.rng
        self.open(rng.randrange(1, 1 << 32))
        while self.stats["damaged frames"] < damaged_frames:
            r = rng.random()
            if r < 0.05:                                # a new client
                token = rng.randrange(1, 1 << 32)
                if token == self.token:
                    continue
                old = self.last
                self.seq = rng.choice([0, rng.randrange(256)])
                self.open(token)
                if old is not None and rng.random() < 0.6:
                    # its first request is the old session's last one, byte for byte: it runs
                    self.stats["first request = old last"] += 1
                    self.run(old)
                    self.seq = (old.seq + 1) & 0xFF
            elif r < 0.12:
                self.replay_last()
            elif r < 0.14:
                self.replay_open()
            else:
                self.run(self.random_request())


def _report(what, host, seconds):
    s = host.stats
    kinds = ", ".join(f"{k[7:]} {v}" for k, v in sorted(s.items()) if k.startswith("damage "))
    print(f"\n{what}: {s['damaged frames']} damaged frames of {s['sends']} sends, "
          f"{s['lost responses']} lost responses; {s['ok requests']} requests run, "
          f"{s['refused requests']} refused; {s['sessions']} sessions "
          f"({s['first request = old last']} starting with the old last request), "
          f"{s['replays']} replays, {s['open replays']} OPEN replays; {s['alias']} CRC aliases "
          f"redrawn; {seconds:.1f} s\n  damage: {kinds}")


@pytest.mark.parametrize("seed", range(4))
def test_model_executes_each_request_once_under_damage(seed):
    t0 = time.monotonic()
    host = Host(ModelLink(), random.Random(1000 + seed))
    host.program(MODEL_FRAMES)
    # and the model's own log: the requests that ran are the reference's, once each, in order
    assert host.link.lb.executed == host.ran
    assert host.stats["damaged frames"] >= MODEL_FRAMES
    assert host.stats["first request = old last"] > 0 and host.stats["open replays"] > 0
    _report(f"model seed {seed}", host, time.monotonic() - t0)


class _KeepsOldSessions(LoopbackTransport):
    """The bug of issue 14: OPEN answers, but the last request survives it."""

    def _execute(self, frame, seq, cmd, addr, count):
        if cmd == Cmd.OPEN and crc16(frame[1:]) == 0:
            return Status.OK, (*self.info.to_words(), addr)
        return super()._execute(frame, seq, cmd, addr, count)


class _ForgetsRetries(LoopbackTransport):
    """No execute-once rule: every good frame runs."""

    def _execute(self, *args):
        self._last = None
        return super()._execute(*args)


class _StaleReadAfterWrite(LoopbackTransport):
    """One burst buffer for both directions: a WRITE's payload (even a damaged frame's)
    overwrites the words a READ retry is answered with."""

    def write(self, data):
        if (not self._draining and len(data) > 13 and data[0] == 0xA5 and data[2] in WRITES
                and self._last_words):
            self._last_words = list(struct.unpack_from("<I", data, 9)) * len(self._last_words)
        super().write(data)


class _ForgetsReadOnWriteHeader(LoopbackTransport):
    """The gateware before sessions: a WRITE header (even a damaged frame's) after a READ
    forgets the READ, so its retry runs again."""

    def _frame(self):
        rx = self._rx
        while rx and rx[0] != REQ_SYNC:
            del rx[0]
        if len(rx) >= HEADER_BYTES and self._last is not None and self._last[1] in READS:
            _, cmd, _, count = struct.unpack_from("<BBIH", rx, 1)
            if cmd in WRITES and 1 <= count <= self.max_burst:
                self._last = None
        return super()._frame()


@pytest.mark.parametrize("bug", [_KeepsOldSessions, _ForgetsRetries, _StaleReadAfterWrite,
                                 _ForgetsReadOnWriteHeader])
def test_the_property_catches_a_broken_bridge(bug):
    """The same program against deliberately broken models: each is caught."""
    with pytest.raises(AssertionError, match="bus strobes|answered|memory"):
        Host(ModelLink(bug), random.Random(1000)).program(MODEL_FRAMES)


@pytest.mark.rtl        # a long Amaranth simulation: every byte bit by bit
@pytest.mark.parametrize("frames", [150, pytest.param(1000, marks=pytest.mark.slow)])
def test_gateware_executes_each_request_once_under_damage(frames):
    t0 = time.monotonic()
    host = Host(GatewareLink(), random.Random(7), p_clean=0.2, p_lose=0.1)
    host.program(frames)
    assert host.stats["damaged frames"] >= frames
    assert host.stats["first request = old last"] > 0 and host.stats["replays"] > 0
    _report(f"gateware, {time.process_time():.0f} s of CPU in this process", host,
            time.monotonic() - t0)
