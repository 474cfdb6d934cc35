"""The host driver alone, against the Python model of the bridge (no simulator): bursts,
retries on a noisy link, and the reordering that merges an EIE program into bursts."""

import random

import pytest

from eie.boards.model import LoopbackTransport
from eie.boards.protocol import (OPEN_WORDS, Cmd, Status, encode_open, encode_request,
                                 encode_response, parse_response)
from eie.hw.eie.host_program import Poll, Read, Write
from eie.common.errors import EieError
from eie.app.host import (BridgeClient, LinkError, NoisyTransport, burst_friendly, execute_ops)


def test_frames_round_trip():
    frame = encode_response(9, Status.OK, [1, 0xFFFFFFFF])
    rsp = parse_response(frame)
    assert (rsp.seq, rsp.status, rsp.words) == (9, 0, (1, 0xFFFFFFFF))
    bad = bytearray(frame)
    bad[6] ^= 4
    with pytest.raises(ValueError, match="CRC"):
        parse_response(bytes(bad))
    with pytest.raises(ValueError, match="needs 2 words"):
        encode_request(0, Cmd.WRITE, 0, 2, [1])


def test_bursts_are_split_to_the_buffer():
    lb = LoopbackTransport(max_burst=7)
    client = BridgeClient(lb)
    data = list(range(1000, 1030))
    client.write(100, data)
    assert [lb.memory[100 + i] for i in range(30)] == data
    assert client.read(100, 30) == data
    # 1 OPEN (which answers the INFO words too) + 5 writes of <= 7 words + 5 reads
    assert client.stats.requests == 11


@pytest.mark.parametrize("seed", range(4))
def test_noisy_link_every_word_written_once(seed):
    rng = random.Random(seed)
    lb = LoopbackTransport(max_burst=16)
    client = BridgeClient(NoisyTransport(lb, p_flip=0.3, p_cut=0.1, seed=seed), retries=30)
    data = [rng.getrandbits(32) for _ in range(200)]
    client.write(0, data)
    assert client.read(0, 200) == data
    assert lb.bus_writes == 200
    assert client.stats.retries > 0


def test_dead_link_gives_up_with_a_clear_error():
    class Dead:
        byte_time, latency = 1e-6, 0.0

        def write(self, data):
            pass

        def read(self, n, timeout):
            return b""

        def reset_input(self):
            pass

        def close(self):
            pass

    with pytest.raises(LinkError, match="after 3 tries of OPEN .*baud"):
        BridgeClient(Dead(), retries=2).info()


def test_burst_friendly_keeps_register_writes_as_barriers():
    mem = lambda a: a >= 0x100                       # noqa: E731  registers below 0x100
    ops = [Write(0x105, 1), Write(0x103, 2), Write(0x3, 9), Write(0x102, 3), Write(0x101, 4),
           Poll(0x5, 1, 1), Read(0x201, "b"), Read(0x200, "a"), Read(0x10, "c")]
    out = burst_friendly(ops, mem)
    assert out == [Write(0x103, 2), Write(0x105, 1), Write(0x3, 9), Write(0x101, 4),
                   Write(0x102, 3), Poll(0x5, 1, 1), Read(0x10, "c"), Read(0x200, "a"),
                   Read(0x201, "b")]
    # executing either order leaves the same memory and reads
    results = []
    for program in (ops, out):
        lb = LoopbackTransport({0x5: 1, 0x200: 7, 0x201: 8, 0x10: 5})
        values = execute_ops(BridgeClient(lb), program)
        results.append((dict(lb.memory), values))
    assert results[0] == results[1]
    assert results[0][1] == {"a": 7, "b": 8, "c": 5}


def test_poll_that_never_finishes():
    lb = LoopbackTransport({0x5: 0})
    with pytest.raises(LinkError, match="did not finish"):
        execute_ops(BridgeClient(lb), [Poll(0x5, 2, 2, max_polls=3)])


def test_addresses_beyond_the_bus_are_refused_before_sending():
    lb = LoopbackTransport(addr_width=8)
    client = BridgeClient(lb)
    client.write(250, [1] * 6)                               # 250..255: fine
    with pytest.raises(EieError, match="0xfe..0x100 are beyond the board's 8-bit bus"):
        client.write(254, [1, 2, 3])
    with pytest.raises(EieError, match="beyond"):
        client.read(256, 1)
    assert lb.bus_writes == 6


# --- sessions (issue 14) ----------------------------------------------------------------------

def test_a_new_client_is_not_taken_for_a_retry_of_the_old_one():
    lb = LoopbackTransport({3: 111}, max_burst=16)
    assert BridgeClient(lb).read(3, 1) == [111]          # OPEN, then READ with seq 1
    lb.memory[3] = 222                                    # the core changed it since
    assert BridgeClient(lb).read(3, 1) == [222]          # the same READ, seq 1: not stale
    for n in range(1, 4):
        BridgeClient(lb).write(3, [5])                    # the same WRITE each time
        assert lb.bus_writes == n
    assert lb.bus_reads == 2


def test_each_client_opens_its_own_session():
    lb = LoopbackTransport()
    a, b = BridgeClient(lb), BridgeClient(lb)
    assert a.session != b.session and 0 not in (a.session, b.session)
    a.info()
    assert lb.session == a.session
    b.info()
    assert lb.session == b.session
    assert a.stats.requests == b.stats.requests == 1     # OPEN brings the INFO words
    with pytest.raises(ValueError, match="session token"):
        BridgeClient(lb, session=0)


def test_a_retried_open_keeps_the_session():
    lb = LoopbackTransport()

    def send(frame, words=0):
        lb.write(frame)
        return parse_response(lb.read(7 + 4 * words, 1.0))

    assert send(encode_open(0, 77), OPEN_WORDS).words[4] == 77
    write = encode_request(1, Cmd.WRITE, 4, 1, [9])
    assert send(write).status == Status.OK and lb.bus_writes == 1
    assert send(encode_open(0, 77), OPEN_WORDS).status == Status.OK   # a retried OPEN
    assert send(write).status == Status.OK and lb.bus_writes == 1    # still a retry
    assert send(encode_open(0, 78), OPEN_WORDS).status == Status.OK   # a new session
    assert send(write).status == Status.OK and lb.bus_writes == 2


@pytest.mark.parametrize("version, message", [
    (1, "speaks protocol version 1, this eie needs version 2.*rebuild and load the bitstream"),
    (3, "speaks protocol version 3, newer than this eie's 2: update eie"),
])
def test_a_bridge_of_another_protocol_version_is_refused(version, message):
    lb = LoopbackTransport(version=version)
    client = BridgeClient(lb)
    with pytest.raises(EieError, match=message):
        client.write(0, [1, 2, 3])
    assert lb.bus_writes == 0 and lb.memory == {}


@pytest.mark.parametrize("seed", range(3))
def test_clients_one_after_another_on_a_noisy_link(seed):
    # every client sends the same requests (OPEN, WRITE seq 1, READ seq 2) over a link that
    # damages frames: each WRITE runs exactly once, each READ sees the newest value
    lb = LoopbackTransport(max_burst=16)
    for n in range(1, 21):
        client = BridgeClient(NoisyTransport(lb, p_flip=0.3, p_cut=0.1, seed=seed * 100 + n),
                              retries=40)
        client.write(0, [n])
        assert client.read(0, 1) == [n]
        lb.memory[0] = 1000 + n                           # changed behind the bridge's back
        assert lb.bus_writes == n
