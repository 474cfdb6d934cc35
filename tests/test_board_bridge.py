"""The UART bridge end to end in the Amaranth simulator: the host driver's frames go in on the
``rx`` pin bit by bit, a bus-slave RAM sits behind the bridge, responses come back on ``tx``.

Every rejected frame is checked against the RAM itself (contents and its count of bus write
strobes): nothing may be written.
"""

import random
import struct

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from eie.boards.protocol import (OPEN_WORDS, PROTOCOL_VERSION, BridgeInfo, Cmd, Design, Status,
                                 crc16, encode_open, encode_request, parse_response)
from eie.boards.ram import BusRAM
from eie.boards.tops import BridgedCore
from eie.app.host import BridgeClient, BridgeError, NoisyTransport, SimTransport
from eie.hw.common.bus import BusSignature

DIVISOR = 4
CLK = 1_000_000
DEPTH = 64
BURST = 16


def make(latency=0, init=None, timeout=None):
    ram = BusRAM(addr_width=10, depth=DEPTH, latency=latency,
                 init=init if init is not None else [0] * DEPTH)
    dut = BridgedCore(ram, divisor=DIVISOR, clk_freq=CLK, design=Design.RAM, max_burst=BURST,
                      timeout=timeout)
    return ram, dut, SimTransport(dut, divisor=DIVISOR, clk_freq=CLK)


def ram_words(tr, ram):
    return [tr.peek(ram.mem.data[i]) for i in range(DEPTH)]


def exchange(tr, frame, max_words=BURST):
    """Send raw bytes, return the parsed response (waits up to 200 byte times)."""
    tr.write(frame)
    head = tr.read(5, 200 * tr.byte_time)
    assert len(head) == 5, f"no response header, got {head!r}"
    count = struct.unpack_from("<H", head, 3)[0]
    assert count <= max_words
    rest = tr.read(4 * count + 2, 200 * tr.byte_time)
    return parse_response(head + rest)


def test_crc_reference_value():
    # the catalogue check value of CRC-16/CCITT-FALSE
    assert crc16(b"123456789") == 0x29B1


def test_info_identifies_the_bridge():
    _, _, tr = make()
    info = BridgeClient(tr).info()
    assert info == BridgeInfo(addr_width=10, version=PROTOCOL_VERSION, design=Design.RAM,
                              max_burst=BURST, clk_freq=CLK)


@pytest.mark.parametrize("latency", [0, 3])
def test_burst_write_read_round_trip(latency):
    rng = random.Random(latency)
    init = [rng.getrandbits(32) for _ in range(DEPTH)]
    ram, _, tr = make(latency, init)
    client = BridgeClient(tr)
    data = [rng.getrandbits(32) for _ in range(40)]          # three bursts of at most 16
    client.write(5, data)
    expect = init[:5] + data + init[45:]
    assert ram_words(tr, ram) == expect
    assert tr.peek(ram.writes) == 40
    assert client.read(0, DEPTH) == expect
    assert client.stats.retries == 0


def test_fixed_address_commands():
    ram, _, tr = make()
    client = BridgeClient(tr)
    client.write(7, [11, 22, 33], fixed=True)
    words = ram_words(tr, ram)
    assert words[7] == 33 and words[6] == 0 and words[8] == 0
    assert tr.peek(ram.writes) == 3
    assert client.read(7, 3, fixed=True) == [33, 33, 33]


def _write_frame(seq=1, addr=2, words=(0x11111111, 0x22222222, 0x33333333)):
    return bytearray(encode_request(seq, Cmd.WRITE, addr, len(words), words))


def _assert_untouched(tr, ram, init):
    assert ram_words(tr, ram) == init
    assert tr.peek(ram.writes) == 0


def test_wrong_crc_rejected_nothing_written():
    init = list(range(100, 100 + DEPTH))
    ram, dut, tr = make(init=init)
    frame = _write_frame()
    frame[-1] ^= 0x01
    rsp = exchange(tr, bytes(frame))
    assert rsp.status == Status.BAD_CRC and rsp.words == ()
    _assert_untouched(tr, ram, init)
    assert tr.peek(dut.errors) == 1


@pytest.mark.parametrize("where", ["cmd", "addr", "payload"])
def test_corrupted_byte_rejected_nothing_written(where):
    init = list(range(DEPTH))
    ram, _, tr = make(init=init)
    frame = _write_frame()
    index = {"cmd": 2, "addr": 3, "payload": 12}[where]
    frame[index] ^= 0x40
    rsp = exchange(tr, bytes(frame))
    assert rsp.status == Status.BAD_CRC
    _assert_untouched(tr, ram, init)


def test_corrupted_count_rejected_nothing_written():
    # a count that grew: the bridge waits for bytes that never come, then times out
    init = list(range(DEPTH))
    ram, _, tr = make(init=init)
    frame = _write_frame()
    frame[7] = 5
    rsp = exchange(tr, bytes(frame))
    assert rsp.status == Status.TIMEOUT
    _assert_untouched(tr, ram, init)


@pytest.mark.parametrize("cut", [1, 6, 10, 14, 22])
def test_truncated_frame_rejected_nothing_written(cut):
    init = list(range(DEPTH))
    ram, dut, tr = make(init=init)
    frame = _write_frame()
    rsp = exchange(tr, bytes(frame[:cut]))
    assert rsp.status == Status.TIMEOUT
    _assert_untouched(tr, ram, init)
    # the bridge is back in sync: the whole frame now goes through
    assert exchange(tr, bytes(_write_frame(seq=2))).status == Status.OK
    assert ram_words(tr, ram)[2:5] == [0x11111111, 0x22222222, 0x33333333]


def test_bad_count_and_bad_command():
    init = list(range(DEPTH))
    ram, _, tr = make(init=init)
    words = list(range(BURST + 1))
    rsp = exchange(tr, encode_request(1, Cmd.WRITE, 0, BURST + 1, words))
    assert rsp.status == Status.BAD_COUNT
    # the bridge cannot know where that frame ends: it ignores the line until it is quiet
    assert tr.read(1, 160 * tr.byte_time) == b""
    rsp = exchange(tr, encode_request(2, Cmd.READ, 0, 0))
    assert rsp.status == Status.BAD_COUNT
    rsp = exchange(tr, encode_request(3, 0x7E, 0, 1))
    assert rsp.status == Status.BAD_CMD
    _assert_untouched(tr, ram, init)
    with pytest.raises(BridgeError, match="BAD_COUNT"):
        BridgeClient(tr).request(Cmd.READ, 0, BURST + 1)


def test_noise_before_sync_is_ignored():
    ram, _, tr = make()
    frame = bytes([0x00, 0xFF, 0x5A, 0x13]) + bytes(_write_frame(seq=9))
    rsp = exchange(tr, frame)
    assert rsp.status == Status.OK and rsp.seq == 9
    assert ram_words(tr, ram)[2:5] == [0x11111111, 0x22222222, 0x33333333]


def test_repeated_sequence_number_is_not_executed_twice():
    ram, _, tr = make()
    frame = bytes(_write_frame(seq=7))
    assert exchange(tr, frame).status == Status.OK
    assert tr.peek(ram.writes) == 3
    # the host lost the response and sends the same frame again: acknowledged, not re-executed
    assert exchange(tr, frame).status == Status.OK
    assert tr.peek(ram.writes) == 3
    # a READ retry is answered from the bridge's buffer, equal to the first answer
    read = encode_request(8, Cmd.READ, 2, 3)
    first = exchange(tr, read)
    assert first.words == (0x11111111, 0x22222222, 0x33333333)
    assert exchange(tr, read).words == first.words
    # a new sequence number executes again
    assert exchange(tr, bytes(_write_frame(seq=9))).status == Status.OK
    assert tr.peek(ram.writes) == 6


@pytest.mark.rtl         # a long Amaranth simulation: every byte bit by bit, retried
def test_noisy_link_retries_to_the_right_result():
    rng = random.Random(5)
    ram, _, tr = make()
    noisy = NoisyTransport(tr, p_flip=0.25, p_cut=0.1, seed=3)
    client = BridgeClient(noisy, retries=20)
    data = [rng.getrandbits(32) for _ in range(16)]
    client.write(8, data)
    assert client.read(8, 16) == data
    assert ram_words(tr, ram)[8:24] == data
    assert tr.peek(ram.writes) == 16           # every word written exactly once
    assert client.stats.retries > 0
    assert sum(noisy.events.values()) > 0


def test_bus_read_without_ack_is_reported():
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In

    from eie.hw.common.bus import BusSignature

    class Deaf(wiring.Component):
        bus: In(BusSignature(8))

        def elaborate(self, platform):
            return Module()

    dut = BridgedCore(Deaf(), divisor=DIVISOR, clk_freq=CLK, design=Design.NONE, max_burst=4)
    tr = SimTransport(dut, divisor=DIVISOR, clk_freq=CLK)
    rsp = exchange(tr, encode_request(1, Cmd.READ, 3, 2))
    assert rsp.status == Status.BUS_TIMEOUT and rsp.words == ()


def test_burst_past_the_last_address_is_rejected():
    init = list(range(DEPTH))
    ram, _, tr = make(init=init)                       # a 10-bit bus: addresses 0..1023
    assert exchange(tr, encode_request(1, Cmd.WRITE, 1022, 3, [7, 8, 9])).status == Status.BAD_ADDR
    assert exchange(tr, encode_request(2, Cmd.READ, 1 << 10, 1)).status == Status.BAD_ADDR
    assert exchange(tr, encode_request(3, Cmd.WRITE_FIXED, 1023, 3, [7, 8, 9])).status == Status.OK
    assert exchange(tr, encode_request(4, Cmd.WRITE, 0x40000000, 1, [5])).status == Status.BAD_ADDR
    assert ram_words(tr, ram) == init
    assert tr.peek(ram.writes) == 3                    # only the fixed-address burst at 1023


# --- sessions ---------------------------------------------------------------------------------

class PopCounter(wiring.Component):
    """A FIFO-like bus slave: every read strobe pops the next number (0, 1, 2, ...); ``pops``
    counts them."""

    bus: In(BusSignature(4))
    pops: Out(32)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.bus.r_ack.eq(self.bus.r_stb)
        m.d.comb += self.bus.r_data.eq(self.pops - 1)
        with m.If(self.bus.r_stb):
            m.d.sync += self.pops.eq(self.pops + 1)
        return m


def make_pop():
    core = PopCounter()
    dut = BridgedCore(core, divisor=DIVISOR, clk_freq=CLK, design=Design.NONE, max_burst=BURST)
    return core, SimTransport(dut, divisor=DIVISOR, clk_freq=CLK)


def test_a_new_client_runs_the_request_an_old_one_ended_with():
    # issue 14: the execute-once key survived reconnects, so a new client whose first request
    # equalled the previous client's last one got OK without it being executed
    ram, _, tr = make()
    for n in range(1, 4):
        BridgeClient(tr).write(5, [0x1234])               # every client: OPEN, then seq 1
        assert tr.peek(ram.writes) == n
    core, tr = make_pop()
    assert [BridgeClient(tr).read(0, 1) for _ in range(3)] == [[0], [1], [2]]   # not stale
    assert tr.peek(core.pops) == 3


def test_open_starts_a_session_and_a_retried_open_does_not():
    ram, dut, tr = make()
    info = dut.bridge.info
    rsp = exchange(tr, encode_open(0, 0xC0FFEE01), OPEN_WORDS)
    assert rsp.status == Status.OK and rsp.words == (*info.to_words(), 0xC0FFEE01)
    write = bytes(_write_frame(seq=1))
    assert exchange(tr, write).status == Status.OK
    assert tr.peek(ram.writes) == 3
    # the same OPEN again (its answer was lost): still the same session, the WRITE a retry
    assert exchange(tr, encode_open(0, 0xC0FFEE01), OPEN_WORDS).words[4] == 0xC0FFEE01
    assert exchange(tr, write).status == Status.OK
    assert tr.peek(ram.writes) == 3
    # another token: a new session, the same frame is a new request
    assert exchange(tr, encode_open(0, 0xC0FFEE02), OPEN_WORDS).status == Status.OK
    assert exchange(tr, write).status == Status.OK
    assert tr.peek(ram.writes) == 6
    assert exchange(tr, write).status == Status.OK
    assert tr.peek(ram.writes) == 6


@pytest.mark.parametrize("cmd", [Cmd.READ, Cmd.READ_FIXED])
def test_a_damaged_write_between_a_read_and_its_retry_changes_nothing(cmd):
    # WRITE payloads and READ answers live in separate halves of the burst buffer: before,
    # a WRITE header after a READ made the READ's retry pop again (READ) or answer with the
    # damaged frame's payload (READ_FIXED)
    core, tr = make_pop()
    read = encode_request(5, cmd, 0, 2)
    first = exchange(tr, read)
    assert first.words == (0, 1) and tr.peek(core.pops) == 2
    bad = bytearray(encode_request(6, Cmd.WRITE, 0, 2, [0xDEAD, 0xBEEF]))
    bad[-1] ^= 1
    assert exchange(tr, bytes(bad)).status == Status.BAD_CRC
    assert exchange(tr, read).words == (0, 1)              # the retry: answered, not popped
    assert tr.peek(core.pops) == 2


def test_responses_are_right_with_a_transmitter_that_takes_a_byte_every_cycle():
    # The response word leaves the burst buffer through a register, two cycles after its index
    # moves; the real UART takes a byte every 10 * divisor cycles, so it never sees that wait.
    # Here the transmitter is taken out and takes a byte whenever one is offered (and bytes
    # come in as fast as the bridge takes them): every answer must still be whole and right.
    from amaranth.sim import Simulator

    from eie.boards.bridge import UARTBridge
    from eie.hw.common.formal import elaborate, remove_subfragment

    br = UARTBridge(addr_width=10, divisor=DIVISOR, max_burst=BURST, clk_freq=CLK,
                    design=Design.RAM)
    frag = elaborate(br, None)
    urx = remove_subfragment(frag, "urx")
    utx = remove_subfragment(frag, "utx")
    ram = BusRAM(addr_width=10, depth=DEPTH, latency=1, init=[0] * DEPTH)
    m = Module()
    m.submodules.bridge = frag
    m.submodules.ram = ram
    wiring.connect(m, br.bus, ram.bus)
    rng = random.Random(7)
    data = [rng.getrandbits(32) for _ in range(BURST)]
    info = BridgeInfo(addr_width=10, version=PROTOCOL_VERSION, design=Design.RAM,
                      max_burst=BURST, clk_freq=CLK)
    frames = [(encode_request(1, Cmd.WRITE, 3, BURST, data), ()),
              (encode_request(2, Cmd.READ, 3, BURST), tuple(data)),
              (encode_request(3, Cmd.READ, 2, 3), (0, *data[:2])),
              (encode_request(4, Cmd.INFO), info.to_words()),
              (encode_open(5, 0xC0FFEE01), (*info.to_words(), 0xC0FFEE01)),
              (encode_request(6, Cmd.READ_FIXED, 3 + BURST - 1, 2), (data[-1],) * 2)]
    answers = []

    async def bench(ctx):
        ctx.set(utx.i.ready, 1)
        for frame, _ in frames:
            for byte in frame:                      # a byte offered every cycle until taken
                ctx.set(urx.o.payload, byte)
                ctx.set(urx.o.valid, 1)
                await ctx.tick().until(urx.o.ready)
            ctx.set(urx.o.valid, 0)
            got = bytearray()
            for _ in range(10_000):
                if ctx.get(utx.i.valid):
                    got.append(ctx.get(utx.i.payload))
                await ctx.tick()
                if len(got) >= 7 and len(got) == 7 + 4 * struct.unpack_from("<H", got, 3)[0]:
                    break
            answers.append(parse_response(bytes(got)))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for (frame, words), rsp in zip(frames, answers, strict=True):
        assert rsp.seq == frame[1] and rsp.status == Status.OK and rsp.words == words
