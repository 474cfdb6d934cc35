"""The UART bridge's wire protocol: constants, CRC-16/CCITT-FALSE, frame encoding and decoding.

Pure Python (no Amaranth), shared by the gateware (:mod:`eie.boards.bridge`) and the host driver
(:mod:`eie.app.host`). The format is documented in ``docs/boards.md``:

Request (host to board)::

    A5 | seq | cmd | addr (4 bytes, little-endian) | count (2 bytes, LE) | payload | crc16 (hi, lo)

Response (board to host)::

    5A | seq | status | count (2 bytes, LE) | payload | crc16 (hi, lo)

The CRC covers every byte after the sync byte up to the CRC. ``count`` is in 32-bit words; a
WRITE request carries ``4 * count`` payload bytes (words little-endian), a READ response likewise.

Sessions (protocol version 2): a client starts with OPEN, whose ``addr`` field is a random nonzero
32-bit session token. A token other than the bridge's current one forgets the last executed
request, so no request of the new session can be taken as a retry of one of an earlier session;
the same token again (a retried OPEN) changes nothing. The response carries the four INFO words
and the token. A version-1 bridge answers OPEN with BAD_CMD.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "REQ_SYNC", "RSP_SYNC", "INFO_MAGIC", "PROTOCOL_VERSION", "Cmd", "Status", "Design",
    "crc16", "crc16_update", "encode_request", "encode_open", "request_length",
    "response_length", "encode_response", "Response", "parse_response", "BridgeInfo",
    "OPEN_WORDS",
]

REQ_SYNC = 0xA5
RSP_SYNC = 0x5A
INFO_MAGIC = 0x31454945      # "EIE1" read as little-endian bytes
PROTOCOL_VERSION = 2         # 2: sessions (OPEN); 1: no sessions
HEADER_BYTES = 9             # sync, seq, cmd, addr[4], count[2]
RSP_HEADER_BYTES = 5         # sync, seq, status, count[2]
CRC_BYTES = 2
CRC16_POLY = 0x1021
CRC16_INIT = 0xFFFF
OPEN_WORDS = 5               # an OPEN response: the 4 INFO words, then the session token


class Cmd(enum.IntEnum):
    WRITE = 0x01   # write ``count`` words from ``addr`` on; payload = the words
    READ = 0x02    # read ``count`` words from ``addr`` on; response payload = the words
    INFO = 0x03    # identify the bridge; response payload = 4 words (see BridgeInfo)
    WRITE_FIXED = 0x04   # as WRITE, every word to the same ``addr`` (a FIFO port)
    READ_FIXED = 0x05    # as READ, every word from the same ``addr`` (a FIFO port)
    OPEN = 0x06          # start a session: ``addr`` = token; response = INFO's 4 words + token


class Status(enum.IntEnum):
    OK = 0
    BAD_CRC = 1        # the frame's CRC does not check (a corrupted byte); nothing was done
    TIMEOUT = 2        # the frame stopped before its end (inter-byte timeout); nothing was done
    BAD_CMD = 3        # unknown command byte; nothing was done
    BAD_COUNT = 4      # count is 0 or above the bridge's burst buffer; nothing was done
    BUS_TIMEOUT = 5    # the core did not answer a read (no r_ack); the response has no data
    BAD_ADDR = 6       # the burst reaches beyond the bus's address space; nothing was done


class Design(enum.IntEnum):
    NONE = 0
    EIE = 1
    BNN = 2
    RAM = 3            # a plain RAM behind the bridge (tests)


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC16_POLY) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
        table.append(crc)
    return table


_TABLE = _make_table()


def crc16_update(crc: int, data: bytes | bytearray | memoryview) -> int:
    """Continue a CRC-16/CCITT-FALSE over ``data``."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR)."""
    return crc16_update(CRC16_INIT, data)


def _words_to_bytes(words) -> bytes:
    return b"".join(struct.pack("<I", int(w) & 0xFFFFFFFF) for w in words)


def encode_request(seq: int, cmd: int, addr: int = 0, count: int = 0, words=()) -> bytes:
    """One request frame. For WRITE, ``words`` are the ``count`` words to write."""
    words = list(words)
    if cmd in (Cmd.WRITE, Cmd.WRITE_FIXED) and len(words) != count:
        raise ValueError(f"a WRITE of count {count} needs {count} words, got {len(words)}")
    body = struct.pack("<BBIH", seq & 0xFF, cmd & 0xFF, addr & 0xFFFFFFFF, count & 0xFFFF)
    body += _words_to_bytes(words)
    return bytes([REQ_SYNC]) + body + struct.pack(">H", crc16(body))


def encode_open(seq: int, token: int) -> bytes:
    """The OPEN request of the session ``token`` (nonzero, 32 bits)."""
    return encode_request(seq, Cmd.OPEN, token, 0)


def request_length(cmd: int, count: int) -> int:
    """Bytes on the wire for a request."""
    return HEADER_BYTES + (4 * count if cmd in (Cmd.WRITE, Cmd.WRITE_FIXED) else 0) + CRC_BYTES


def response_length(cmd: int, count: int) -> int:
    """Bytes on the wire for a successful response."""
    n = (count if cmd in (Cmd.READ, Cmd.READ_FIXED)
         else 4 if cmd == Cmd.INFO else OPEN_WORDS if cmd == Cmd.OPEN else 0)
    return RSP_HEADER_BYTES + 4 * n + CRC_BYTES


def encode_response(seq: int, status: int, words=()) -> bytes:
    """One response frame (what the bridge sends; used by tests and software models)."""
    words = list(words)
    body = struct.pack("<BBH", seq & 0xFF, status & 0xFF, len(words)) + _words_to_bytes(words)
    return bytes([RSP_SYNC]) + body + struct.pack(">H", crc16(body))


@dataclass(frozen=True)
class Response:
    seq: int
    status: int
    words: tuple[int, ...]


def parse_response(frame: bytes) -> Response:
    """Check and decode one whole response frame; ``ValueError`` when it is malformed."""
    if len(frame) < RSP_HEADER_BYTES + CRC_BYTES:
        raise ValueError(f"response of {len(frame)} bytes is shorter than the minimum 7")
    if frame[0] != RSP_SYNC:
        raise ValueError(f"response starts with {frame[0]:#04x}, not the sync byte {RSP_SYNC:#04x}")
    seq, status, count = struct.unpack_from("<BBH", frame, 1)
    want = RSP_HEADER_BYTES + 4 * count + CRC_BYTES
    if len(frame) != want:
        raise ValueError(f"response says {count} words ({want} bytes) but has {len(frame)} bytes")
    if crc16(frame[1:]) != 0:
        raise ValueError("response CRC does not check")
    words = struct.unpack_from(f"<{count}I", frame, RSP_HEADER_BYTES)
    return Response(seq, status, tuple(words))


@dataclass(frozen=True)
class BridgeInfo:
    """What an INFO request returns: word 0 the magic ``"EIE1"``, word 1
    ``addr_width | version << 8 | design << 16``, word 2 the burst buffer in words, word 3 the
    bridge's clock frequency in Hz."""

    addr_width: int
    version: int
    design: Design
    max_burst: int
    clk_freq: int

    @classmethod
    def from_words(cls, words) -> "BridgeInfo":
        if len(words) != 4 or words[0] != INFO_MAGIC:
            raise ValueError(f"INFO answered {[hex(w) for w in words]}, not an EIE bridge")
        w1 = words[1]
        return cls(w1 & 0xFF, (w1 >> 8) & 0xFF, Design((w1 >> 16) & 0xFF), words[2], words[3])

    def to_words(self) -> tuple[int, int, int, int]:
        return (INFO_MAGIC, self.addr_width | self.version << 8 | int(self.design) << 16,
                self.max_burst, self.clk_freq)
