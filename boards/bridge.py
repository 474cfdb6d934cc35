"""UART host bridge: framed, CRC-checked commands from a UART to the host bus of a core.

The frame format is in :mod:`eie.boards.protocol` and ``docs/boards.md``. The bridge is a bus
master (:class:`eie.hw.common.bus.BusSignature`); it owns a UART receiver and transmitter, two
CRC-16 registers and a burst buffer of ``max_burst`` 32-bit words.

Per cycle, the control FSM does at most one of: take one received byte (header, payload or CRC),
run one step of a bus transfer, or hand one response byte to the transmitter.

- A WRITE frame's payload goes into the burst buffer; only when the whole frame has arrived and
  its CRC checks are the words written to the bus (two cycles a word). The bus outputs are
  registered: a strobe reaches the core one cycle after the FSM issues it. A bad CRC, a frame that
  stops for longer than ``timeout`` cycles between two bytes, an unknown command or a count of 0
  or above ``max_burst``, or a burst that runs past the bus's last address is answered with an
  error status and touches nothing.
- WRITE_FIXED and READ_FIXED do the same at one address (a FIFO port).
- A READ frame, once its CRC checks, reads ``count`` words into the buffer (waiting for ``r_ack``
  at most 255 cycles each) and sends them back.
- A response's payload words leave the burst buffer through a register: each word waits two
  cycles for it (the UART takes a byte in ``10 * divisor`` cycles, so the link never sees the
  wait), and the block RAM's read does not reach the transmitter and its CRC in one cycle.
- The burst buffer has two halves: WRITE payloads go to one, READ results to the other, so a
  frame that arrives (whole, damaged or cut) after a READ never destroys that READ's answer.
- Retries are safe: a READ or WRITE with the same ``seq``, command, address and count as the last
  one that succeeded is not executed again; the bridge answers it again (a READ from its buffer),
  so a lost response never makes a FIFO push or pop happen twice.
- Sessions: OPEN carries a 32-bit token in its ``addr`` field. A token other than the current one
  starts a new session and forgets the last request, so a new client's first request is never
  taken for a retry of the previous client's last one; the same token again changes nothing
  (a retried OPEN). The answer is the four INFO words and the token. After reset the token is 0.
- Bytes outside a frame that are not the sync byte are ignored. After a BAD_COUNT on a WRITE the
  bridge ignores the line until it has been quiet for ``timeout`` cycles.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hw.common.bus import BusSignature
from .crc import CRC16
from .protocol import (OPEN_WORDS, PROTOCOL_VERSION, REQ_SYNC, RSP_SYNC, BridgeInfo, Cmd,
                       Design, Status)
from .uart import UARTRx, UARTTx

__all__ = ["UARTBridge", "BUS_READ_TIMEOUT"]

BUS_READ_TIMEOUT = 255


class UARTBridge(wiring.Component):
    """UART-to-bus bridge.

    Parameters: ``addr_width`` of the bus, ``divisor`` (clock cycles per UART bit),
    ``max_burst`` (words of the burst buffer, 1 to 65535), ``timeout`` (inter-byte timeout in
    clock cycles; default 64 byte times), ``clk_freq`` and ``design`` (reported by INFO).

    Ports: ``rx`` (in) and ``tx`` (out) UART lines, ``bus`` (bus master), ``activity`` (high
    while a frame is being received or answered, for an LED), ``errors`` (counts rejected frames,
    wraps at 2**16).
    """

    def __init__(self, *, addr_width: int, divisor: int, max_burst: int = 256,
                 timeout: int | None = None, clk_freq: int = 0, design: Design = Design.NONE):
        if not isinstance(max_burst, int) or not 1 <= max_burst <= 0xFFFF:
            raise ValueError(f"max_burst must be an integer from 1 to 65535 words, not {max_burst!r}")
        if timeout is None:
            timeout = 64 * 10 * divisor
        if not isinstance(timeout, int) or timeout < 12 * divisor:
            raise ValueError(f"inter-byte timeout must be at least 12 bit times "
                             f"({12 * divisor} cycles), not {timeout!r}")
        self._addr_width = addr_width
        self._divisor = divisor
        self._max_burst = max_burst
        self._timeout = timeout
        self._info = BridgeInfo(addr_width, PROTOCOL_VERSION, Design(design), max_burst,
                                int(clk_freq))
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "bus": Out(BusSignature(addr_width)),
            "activity": Out(1),
            "errors": Out(16),
        })

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def divisor(self) -> int:
        return self._divisor

    @property
    def max_burst(self) -> int:
        return self._max_burst

    @property
    def timeout(self) -> int:
        return self._timeout

    @property
    def info(self) -> BridgeInfo:
        return self._info

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UARTRx(self._divisor)
        m.submodules.utx = utx = UARTTx(self._divisor)
        m.submodules.rx_crc = rx_crc = CRC16()
        m.submodules.tx_crc = tx_crc = CRC16()
        # two halves of a power of two each: [0, half) WRITE payloads, [half, 2 half) READ data
        half_bits = (self._max_burst - 1).bit_length()
        m.submodules.buf = buf = Memory(shape=32, depth=2 << half_bits, init=[])
        buf_rd = buf.read_port()
        buf_wr = buf.write_port()
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]

        # --- received byte and the inter-byte timer -------------------------------------------
        byte = urx.o.payload
        take = Signal()                 # the FSM consumes the byte this cycle
        got = Signal()                  # a byte is consumed this cycle
        m.d.comb += [urx.o.ready.eq(take), got.eq(take & urx.o.valid)]
        idle = Signal(range(self._timeout + 1))
        # ``idle == timeout``, a register set with ``idle`` (a byte clears both, ``timeout`` is
        # at least 12 bit times; a step reaches it from ``timeout - 1``), so that the states'
        # decisions start at a flip-flop, not at the counter's comparison (its three LUTs in
        # front of the FSM's next state were the 16-PE EIE board build's critical path at
        # 100 MHz, seed 1 with the placer's timing weights)
        timed_out = Signal()
        with m.If(got):
            m.d.sync += [idle.eq(0), timed_out.eq(0)]
        with m.Elif(~timed_out):
            m.d.sync += [idle.eq(idle + 1), timed_out.eq(idle == self._timeout - 1)]
        m.d.comb += [rx_crc.valid.eq(got), rx_crc.data.eq(byte)]

        # --- request fields -------------------------------------------------------------------
        seq = Signal(8)
        cmd = Signal(8)
        addr = Signal(32)
        count = Signal(16)
        hdr_idx = Signal(range(8))
        word = Signal(32)
        byte_idx = Signal(2)
        widx = Signal(16)               # word index in the buffer
        # ``widx + 1``, a register kept beside it (set with it), so the bursts' "last word"
        # checks compare two registers, not an adder's sum (from ``widx`` through the adder and
        # the comparison into the bus handshake: the 1-PE EIE board build's path at 100 MHz)
        widx1 = Signal(17, init=1)
        widx_step = Signal(17)          # widx1 as widx steps on: (widx + 1, 16 bits) + 1
        m.d.comb += widx_step.eq((widx + 1)[:16] + 1)

        def widx_reset():
            """``widx`` back to 0, ``widx1`` with it."""
            return [widx.eq(0), widx1.eq(1)]

        def widx_next():
            """``widx`` on by one, ``widx1`` with it."""
            return [widx.eq(widx + 1), widx1.eq(widx_step)]
        crc_idx = Signal(1)
        status = Signal(8)
        rsp_count = Signal(16)
        cur_addr = Signal(self._addr_width)
        wait = Signal(range(BUS_READ_TIMEOUT + 1))

        # The last request that succeeded, for idempotent retries.
        last_valid = Signal()
        last_seq = Signal(8)
        last_cmd = Signal(8)
        last_addr = Signal(32)
        last_count = Signal(16)
        session = Signal(32)            # the token of the current session (OPEN)
        # a retry of the last request: registered, like ``addr_ok`` below (the header fields
        # and the last request's are stable for bytes before CHECK reads it), so that CHECK's
        # decisions do not start at a 64-bit comparison (from the registered address, its
        # LUT levels into the last request's enables were the 16-PE EIE board build's
        # critical path)
        is_repeat = Signal()
        repeat_r = Signal()
        m.d.sync += repeat_r.eq(last_valid & (last_seq == seq) & (last_cmd == cmd)
                                & (last_addr == addr) & (last_count == count))
        m.d.comb += is_repeat.eq(repeat_r)
        is_write = Signal()
        is_read = Signal()
        fixed = Signal()                # WRITE_FIXED / READ_FIXED: the address does not advance
        m.d.comb += [is_write.eq((cmd == Cmd.WRITE) | (cmd == Cmd.WRITE_FIXED)),
                     is_read.eq((cmd == Cmd.READ) | (cmd == Cmd.READ_FIXED)),
                     fixed.eq((cmd == Cmd.WRITE_FIXED) | (cmd == Cmd.READ_FIXED))]
        count_ok = Signal()
        m.d.comb += count_ok.eq((count != 0) & (count <= self._max_burst))
        # CHECK decides from registers of the request's decode, like ``repeat_r`` and
        # ``addr_ok`` (the header fields and the session are stable from the cycle after the
        # header's last byte, CHECK comes two cycles after it at the earliest): in front of its
        # enables stay the CRC's zero test and a priority over these flags. (From the FSM's
        # state through the command, count and session comparisons into the response's fields,
        # 7 LUTs, it was the 8-PE EIE board build's critical path at 100 MHz.)
        chk_info = Signal()             # an INFO request
        chk_open = Signal()             # an OPEN request
        chk_new_session = Signal()      # its token is not the current session's
        chk_count_ok = Signal()
        chk_read = Signal()
        chk_write = Signal()
        m.d.sync += [chk_info.eq(cmd == Cmd.INFO), chk_open.eq(cmd == Cmd.OPEN),
                     chk_new_session.eq(addr != session),
                     chk_count_ok.eq(count_ok), chk_read.eq(is_read), chk_write.eq(is_write)]
        # The burst's last address must exist on the bus (registered: addr and count are stable
        # from the end of the header to CHECK, bytes later): addr + (count - 1) < 2**addr_width
        # (addr alone for a fixed burst or a count of 0), computed as: addr's bits above the bus
        # are 0, and its low bits plus count (1 or more) reach at most 2**addr_width. One adder,
        # not a decrement feeding a 33-bit adder feeding a comparator (a critical path on ECP5),
        # and its sum registered before the comparisons (the adder behind ``count``'s route and
        # the comparisons in front of ``addr_ok`` were the 2-PE EIE board build's seed-1 path
        # at 100 MHz): the sum is up to date a cycle after the header, ``addr_ok`` two (the
        # first CRC byte comes a cycle after the header at the earliest, CHECK two).
        aw = self._addr_width
        addr_ok = Signal()
        addr_hi_ok = Signal()
        m.d.comb += addr_hi_ok.eq(addr[aw:] == 0 if aw < 32 else 1)
        span_end = Signal(max(aw, 16) + 1)      # addr's low bits + count: one past the burst
        m.d.sync += span_end.eq(addr[:aw] + count)
        span_fits = Signal()
        m.d.comb += span_fits.eq((span_end[aw:] == 0) | (span_end == (1 << aw)))
        m.d.sync += addr_ok.eq(addr_hi_ok & (fixed | (count == 0) | span_fits))

        read_half = Signal()            # the frame is a READ: its words live in the read half
        buf_addr = Signal(half_bits + 1)
        m.d.comb += buf_addr.eq(widx[:half_bits] | (read_half << half_bits))
        m.d.comb += [buf_wr.addr.eq(buf_addr), buf_wr.data.eq(word), buf_rd.addr.eq(buf_addr)]

        # --- response transmitter fields ------------------------------------------------------
        info_words = Array([*(Const(w, 32) for w in self._info.to_words()), session])
        rsp_info = Signal()             # payload comes from the INFO constants, not the buffer
        tx_idx = Signal(range(5))       # header byte index
        # The response word is registered: the burst buffer's read (a block RAM's slow
        # clock-to-output) does not sit on the same path as the byte mux and the transmit CRC.
        # It is word ``widx`` two cycles after ``widx`` changes (the RAM's read, then this
        # register); ``rsp_age`` counts those cycles and holds the payload back until then.
        rsp_word = Signal(32)
        rsp_age = Signal(range(3))
        m.d.sync += rsp_word.eq(Mux(rsp_info, info_words[widx[:3]], buf_rd.data))
        with m.If(rsp_age != 2):
            m.d.sync += rsp_age.eq(rsp_age + 1)
        tx_bytes = Array([Const(RSP_SYNC, 8), seq, status, rsp_count[:8], rsp_count[8:]])
        errors = Signal(16)
        m.d.comb += self.errors.eq(errors)

        def respond(code, n_words=0, info=False):
            stmts = [status.eq(code), rsp_count.eq(n_words), rsp_info.eq(int(info)),
                     tx_idx.eq(0), *widx_reset(), rsp_age.eq(0), byte_idx.eq(0), crc_idx.eq(0)]
            if code != Status.OK:
                stmts.append(errors.eq(errors + 1))
            return stmts

        # Bus outputs leave through registers (one cycle after the FSM decides), so the core's
        # address decoding does not sit on the same path as the FSM's next-state logic.
        bus_addr = Signal(self._addr_width)
        bus_w_data = Signal(32)
        bus_w_stb = Signal()
        bus_r_stb = Signal()
        m.d.sync += [self.bus.addr.eq(bus_addr), self.bus.w_data.eq(bus_w_data),
                     self.bus.w_stb.eq(bus_w_stb), self.bus.r_stb.eq(bus_r_stb)]

        with m.FSM(name="bridge") as fsm:
            with m.State("IDLE"):
                m.d.comb += [take.eq(1), rx_crc.clear.eq(1)]
                with m.If(got & (byte == REQ_SYNC)):
                    m.d.sync += [hdr_idx.eq(0), seq.eq(0)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += take.eq(1)
                with m.If(got):
                    m.d.sync += hdr_idx.eq(hdr_idx + 1)
                    with m.Switch(hdr_idx):
                        with m.Case(0):
                            m.d.sync += seq.eq(byte)
                        with m.Case(1):
                            m.d.sync += [cmd.eq(byte), read_half.eq((byte == Cmd.READ)
                                                                    | (byte == Cmd.READ_FIXED))]
                        with m.Case(2, 3, 4, 5):
                            m.d.sync += addr.eq(byte << 24 | addr >> 8)
                        with m.Case(6):
                            m.d.sync += count.eq(byte)
                        with m.Case(7):
                            m.d.sync += [count.eq(byte << 8 | count[:8]), *widx_reset(),
                                         byte_idx.eq(0), crc_idx.eq(0)]
                            with m.If(is_write):
                                m.next = "PAYLOAD"
                            with m.Else():
                                m.next = "CRC"
                with m.Elif(timed_out):
                    m.d.sync += respond(Status.TIMEOUT)
                    m.next = "TX"
                with m.If((hdr_idx == 7) & got & is_write):
                    # count is complete only now: check it before taking any payload
                    with m.If(((byte << 8 | count[:8]) == 0)
                              | ((byte << 8 | count[:8]) > self._max_burst)):
                        m.d.sync += respond(Status.BAD_COUNT)
                        m.next = "TX_THEN_DRAIN"

            with m.State("PAYLOAD"):
                m.d.comb += take.eq(1)
                with m.If(got):
                    m.d.sync += [word.eq(byte << 24 | word >> 8), byte_idx.eq(byte_idx + 1)]
                    with m.If(byte_idx == 3):
                        m.next = "PAYLOAD_STORE"
                with m.Elif(timed_out):
                    m.d.sync += respond(Status.TIMEOUT)
                    m.next = "TX"

            with m.State("PAYLOAD_STORE"):
                m.d.comb += buf_wr.en.eq(1)
                m.d.sync += widx_next()
                with m.If(widx1 == count):
                    m.next = "CRC"
                with m.Else():
                    m.next = "PAYLOAD"

            with m.State("CRC"):
                m.d.comb += take.eq(1)
                with m.If(got):
                    m.d.sync += crc_idx.eq(1)
                    with m.If(crc_idx == 1):
                        m.next = "CHECK"
                with m.Elif(timed_out):
                    m.d.sync += respond(Status.TIMEOUT)
                    m.next = "TX"

            with m.State("CHECK"):
                m.d.sync += [*widx_reset(), cur_addr.eq(addr)]
                with m.If(~rx_crc.zero):
                    m.d.sync += respond(Status.BAD_CRC)
                    m.next = "TX"
                with m.Elif(chk_info):
                    m.d.sync += respond(Status.OK, 4, info=True)
                    m.next = "TX"
                with m.Elif(chk_open):
                    with m.If(chk_new_session):     # a new session: no retry of an old one
                        m.d.sync += [session.eq(addr), last_valid.eq(0)]
                    m.d.sync += respond(Status.OK, OPEN_WORDS, info=True)
                    m.next = "TX"
                with m.Elif(~(chk_read | chk_write)):      # neither: BAD_CMD
                    m.d.sync += respond(Status.BAD_CMD)
                    m.next = "TX"
                with m.Elif(~chk_count_ok):
                    m.d.sync += respond(Status.BAD_COUNT)
                    m.next = "TX"
                with m.Elif(~addr_ok):
                    m.d.sync += respond(Status.BAD_ADDR)
                    m.next = "TX"
                with m.Elif(is_repeat):
                    with m.If(chk_read):
                        m.d.sync += respond(Status.OK, count)
                    with m.Else():
                        m.d.sync += respond(Status.OK)
                    m.next = "TX"
                with m.Else():
                    m.d.sync += [last_valid.eq(0), last_seq.eq(seq), last_cmd.eq(cmd),
                                 last_addr.eq(addr), last_count.eq(count)]
                    with m.If(chk_write):
                        m.next = "WR_FETCH"
                    with m.Else():
                        m.next = "RD_STROBE"

            with m.State("WR_FETCH"):       # buf_rd.addr = widx; data is there next cycle
                m.next = "WR_STROBE"

            with m.State("WR_STROBE"):
                m.d.comb += [bus_addr.eq(cur_addr), bus_w_data.eq(buf_rd.data), bus_w_stb.eq(1)]
                m.d.sync += [cur_addr.eq(cur_addr + ~fixed), *widx_next()]
                with m.If(widx1 == count):
                    m.d.sync += [respond(Status.OK), last_valid.eq(1)]
                    m.next = "TX"
                with m.Else():
                    m.next = "WR_FETCH"

            with m.State("RD_STROBE"):
                m.d.comb += [bus_addr.eq(cur_addr), bus_r_stb.eq(1)]
                m.d.sync += wait.eq(0)
                m.next = "RD_WAIT"

            with m.State("RD_WAIT"):
                m.d.comb += bus_addr.eq(cur_addr)
                m.d.sync += wait.eq(wait + 1)
                with m.If(self.bus.r_ack):
                    m.d.comb += [buf_wr.en.eq(1), buf_wr.data.eq(self.bus.r_data)]
                    m.d.sync += [cur_addr.eq(cur_addr + ~fixed), *widx_next()]
                    with m.If(widx1 == count):
                        m.d.sync += [respond(Status.OK, count), last_valid.eq(1)]
                        m.next = "TX"
                    with m.Else():
                        m.next = "RD_STROBE"
                with m.Elif(wait == BUS_READ_TIMEOUT):
                    m.d.sync += respond(Status.BUS_TIMEOUT)
                    m.next = "TX"

            # --- response: sync, seq, status, count, payload, crc ---------------------------
            for name, after in (("TX", "IDLE"), ("TX_THEN_DRAIN", "DRAIN")):
                with m.State(name):
                    m.d.comb += [utx.i.valid.eq(1), utx.i.payload.eq(tx_bytes[tx_idx])]
                    with m.If(utx.i.ready):
                        m.d.comb += [tx_crc.valid.eq(tx_idx != 0), tx_crc.data.eq(utx.i.payload),
                                     tx_crc.clear.eq(tx_idx == 0)]
                        m.d.sync += tx_idx.eq(tx_idx + 1)
                        with m.If(tx_idx == 4):
                            with m.If(rsp_count == 0):
                                m.next = f"{name}_CRC"
                            with m.Else():
                                m.next = f"{name}_PAYLOAD"
                with m.State(f"{name}_PAYLOAD"):
                    m.d.comb += [utx.i.valid.eq(rsp_age == 2),
                                 utx.i.payload.eq(rsp_word.word_select(byte_idx, 8))]
                    with m.If(utx.i.valid & utx.i.ready):
                        m.d.comb += [tx_crc.valid.eq(1), tx_crc.data.eq(utx.i.payload)]
                        m.d.sync += byte_idx.eq(byte_idx + 1)
                        with m.If(byte_idx == 3):
                            m.d.sync += [*widx_next(), rsp_age.eq(0)]
                            with m.If(widx1 == rsp_count):
                                m.next = f"{name}_CRC"
                with m.State(f"{name}_CRC"):
                    m.d.comb += [utx.i.valid.eq(1),
                                 utx.i.payload.eq(tx_crc.crc.word_select(~crc_idx, 8))]
                    with m.If(utx.i.ready):
                        m.d.sync += crc_idx.eq(crc_idx + 1)
                        with m.If(crc_idx == 1):
                            m.next = after

            with m.State("DRAIN"):
                m.d.comb += take.eq(1)
                with m.If(timed_out):
                    m.next = "IDLE"

            m.d.comb += self.activity.eq(~fsm.ongoing("IDLE"))
        return m
