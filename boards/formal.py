"""Formal harness of the UART bridge's frame layer (:class:`eie.boards.bridge.UARTBridge`): no
frame with a bad CRC, a bad length or count, or a repeated request causes a bus cycle, and a
request is carried out once, across retries and sessions.

In the style of :mod:`eie.hw.eie.formal` and :mod:`eie.hw.bnn.formal`: an Amaranth elaboratable
with no ports, the real bridge with free inputs, ``Assert`` properties, strengthening
invariants, ``Cover`` statements, ``mutant=`` for the broken variants (:data:`MUTANTS`). The
runner is :func:`eie.sim.formal.prove`; docs/formal.md says what is proved.

What is abstracted (the harness takes three sub-blocks out of the bridge's elaborated fragment
and drives their signals itself):

* the UART receiver: the bytes reach the bridge's FSM as a free byte stream (any byte, any
  time; a byte moves when the FSM takes it), so the proof is about the frame layer, not about
  sampling the line (the UART has its own tests);
* the UART transmitter: it takes a response byte whenever a free ``ready`` says so (any
  response speed);
* the burst buffer (an Amaranth ``Memory``): replaced by registers with the same behaviour (a
  synchronous write port; a synchronous, non-transparent read port, always enabled, not reset),
  so that an invariant can name its words.
"""

from __future__ import annotations

from amaranth.hdl import (Array, Assert, Assume, Cat, Const, Cover, Elaboratable, Module, Mux,
                          ResetSignal, Signal)

from ..hw.common.formal import (elaborate, free, fsm_state, remove_subfragment, signals,
                                subfragment)

__all__ = ["BridgeHarness", "MUTANTS"]

#: the deliberately broken variants
MUTANTS = {
    "BridgeHarness": ("skip_crc", "no_count_check", "no_dedup", "dedup_seq_only",
                      "keep_last_on_open"),
}

_STATES = ("IDLE", "HEADER", "PAYLOAD", "PAYLOAD_STORE", "CRC", "CHECK", "WR_FETCH", "WR_STROBE",
           "RD_STROBE", "RD_WAIT", "TX", "TX_PAYLOAD", "TX_CRC", "TX_THEN_DRAIN",
           "TX_THEN_DRAIN_PAYLOAD", "TX_THEN_DRAIN_CRC", "DRAIN")


def _bits(n: int) -> int:
    """Index bits of an ``n``-entry array (at least 1)."""
    return max(1, (n - 1).bit_length())


class BridgeHarness(Elaboratable):
    """The bridge (``addr_width``, ``max_burst``, UART ``divisor``, inter-byte ``timeout``)
    between a free byte stream and a bus slave, watched by a monitor that parses the bytes the
    bridge takes by the protocol of docs/boards.md, on its own: a frame starts with the sync byte
    taken while the bridge is idle (its ``activity`` port low); 8 header bytes (``seq``, ``cmd``,
    ``addr``, ``count``), for a WRITE ``4 * count`` payload bytes, 2 CRC bytes; a WRITE whose
    count is 0 or above ``max_burst`` ends with its header; a frame ends early when no byte comes
    for ``timeout`` cycles. The monitor's own CRC is table-driven (from
    :func:`eie.boards.protocol.crc16_update`), the bridge's is bit-serial. A whole frame is a
    *good new request* when its CRC checks, it is a READ, WRITE, READ_FIXED or WRITE_FIXED, its
    count is 1 to ``max_burst``, its burst lies inside the bus, and it is not the last request
    carried out in the session (same ``seq``, command, address and count); an OPEN with its CRC
    good and a new token starts a new session, which has no last request. Asserted:

    * no bus cycle but for a good new request: every write strobe is the request's next word at
      its next address, every read strobe its next address (none for a bad CRC, a bad count or
      length, a burst off the bus, an unknown command, an INFO or OPEN, a retry);
    * a good new request is carried out in full (every word, once) before the bridge takes
      another byte; so execute-once holds across retries, and a new session's first request
      runs even when it equals the last session's last;
    * the bus rule: no strobe while a read is outstanding.

    Free: the bytes and when they come, the transmitter's pace, the read data, each read's
    latency (1 to ``read_latency`` cycles), the reset. k-induction, with invariants tying the
    monitor to the bridge's registers (FSM state, header fields, word and byte indices, CRC
    register, timer, burst buffer, last request, session, bus registers).

    ``mutant=``: ``"skip_crc"`` (the CRC checker always says the frame checks),
    ``"no_count_check"`` (a READ's count is not checked against ``max_burst``), ``"no_dedup"``
    (a retry is never recognised), ``"dedup_seq_only"`` (a request counts as a retry when its
    ``seq`` alone matches), ``"keep_last_on_open"`` (a new session keeps the last request:
    execute-once across sessions broken).
    """

    def __init__(self, *, addr_width: int = 8, max_burst: int = 2, divisor: int = 4,
                 timeout: int | None = None, read_latency: int = 2, mutant: str | None = None,
                 invariants: bool = True, prelude: bytes = b"", covers: str = "shallow"):
        if mutant not in (None, *MUTANTS["BridgeHarness"]):
            raise ValueError(f"unknown mutant {mutant!r}")
        if read_latency < 1:
            raise ValueError("a read takes at least one cycle")
        self.addr_width, self.max_burst, self.divisor = addr_width, max_burst, divisor
        self.timeout = timeout if timeout is not None else 12 * divisor
        self.read_latency = read_latency
        self.mutant = mutant
        self.invariants = invariants
        self.prelude = bytes(prelude)
        if covers not in ("shallow", "deep"):
            raise ValueError(f"covers must be 'shallow' or 'deep', not {covers!r}")
        self.covers = covers

    def elaborate(self, platform):
        from .bridge import UARTBridge
        from .protocol import CRC16_INIT, REQ_SYNC, Cmd, crc16_update

        m = Module()
        AW, MB, T = self.addr_width, self.max_burst, self.timeout
        br = UARTBridge(addr_width=AW, divisor=self.divisor, max_burst=MB, timeout=T)
        frag = elaborate(br, platform)
        urx = remove_subfragment(frag, "urx")
        utx = remove_subfragment(frag, "utx")
        mem = remove_subfragment(frag, "buf")
        crc_frag, rx_crc = subfragment(frag, "rx_crc")
        b = signals(frag, ["bridge_state", "seq", "cmd", "addr", "count", "word", "hdr_idx",
                           "byte_idx", "widx", "widx1", "crc_idx", "idle", "timed_out", "addr_ok", "span_end",
                           "read_half",
                           "cur_addr", "wait", "last_valid", "last_seq", "last_cmd", "last_addr",
                           "last_count", "session", "is_repeat", "repeat_r", "count_ok",
                           "chk_info", "chk_open", "chk_new_session",
                           "chk_count_ok", "chk_read", "chk_write"],
                  where="UARTBridge")
        crc_reg = signals(crc_frag, ["reg"], where="CRC16")["reg"]
        state = b["bridge_state"]
        enc = {name: fsm_state(state, name) for name in _STATES}

        def st(*names):
            return Cat(*(state == enc[n] for n in names)).any()

        self._patch(frag, crc_frag, rx_crc, b, st)
        m.submodules.bridge = frag

        # ---- the environment: bytes, the transmitter's pace, the burst buffer, the bus slave
        byte = urx.o.payload
        got = Signal()
        fixed_in = Const(0)
        if self.prelude:
            # a fixed start: these bytes, back to back as the bridge takes them, responses sent
            # at full speed, reads answered in a cycle, no reset; then everything is free
            pi = Signal(range(len(self.prelude) + 1), name="prelude_index")
            fixed_in = pi < len(self.prelude)
            with m.If(fixed_in & got):
                m.d.sync += pi.eq(pi + 1)
            m.d.comb += Assume(~fixed_in | ~ResetSignal())
        prelude_byte = Array(Const(x, 8) for x in self.prelude or b"\0")[pi if self.prelude else 0]
        m.d.comb += [urx.o.valid.eq(fixed_in | free(m, 1, "byte_valid")),
                     byte.eq(Mux(fixed_in, prelude_byte, free(m, 8, "byte"))),
                     utx.i.ready.eq(fixed_in | free(m, 1, "tx_ready")), br.rx.eq(1),
                     got.eq(urx.o.valid & urx.o.ready)]
        (wr,), (rd,) = mem._write_ports, mem._read_ports
        buf = [Signal(32, name=f"buf{x}") for x in range(mem.depth)]
        rd_data = Signal(32, name="buf_rd_data", reset_less=True)
        with m.If(wr.en):
            m.d.sync += Array(buf)[wr.addr].eq(wr.data)
        with m.If(rd.en):
            m.d.sync += rd_data.eq(Array(buf)[rd.addr])
        m.d.comb += rd.data.eq(rd_data)

        bus = br.bus
        out = Signal(name="read_outstanding")
        age = Signal(range(self.read_latency + 1), name="read_age")
        m.d.comb += [bus.r_ack.eq(out & (fixed_in | free(m, 1, "ack_now")
                                         | (age == self.read_latency - 1))),
                     bus.r_data.eq(free(m, 32, "r_data"))]
        with m.If(bus.r_ack):
            m.d.sync += out.eq(0)
        with m.Elif(bus.r_stb):
            m.d.sync += [out.eq(1), age.eq(0)]
        with m.Elif(out):
            m.d.sync += age.eq(age + 1)

        # ---- the monitor: the protocol, parsed from the bytes the bridge takes
        idle_m = Signal(range(T + 1), name="m_idle")    # cycles since the last byte taken
        quiet = idle_m == T
        with m.If(got):
            m.d.sync += idle_m.eq(0)
        with m.Elif(~quiet):
            m.d.sync += idle_m.eq(idle_m + 1)
        last_pos = 8 + 4 * MB + 1
        open_ = Signal(name="m_open")                   # inside a frame
        pos = Signal(range(last_pos + 1), name="m_pos")  # the index of the next byte after sync
        seq_m = Signal(8, name="m_seq")
        cmd_m = Signal(8, name="m_cmd")
        addr_m = Signal(32, name="m_addr")
        count_m = Signal(16, name="m_count")
        word_m = Signal(32, name="m_word")
        words_m = [Signal(32, name=f"m_word{x}") for x in range(MB)]
        crc_m = Signal(16, init=CRC16_INIT, name="m_crc")
        table = Array(Const(crc16_update(x << 8, b"\0"), 16) for x in range(256))
        crc_next = Signal(16, name="m_crc_next")
        m.d.comb += crc_next.eq((crc_m << 8)[:16] ^ table[(crc_m >> 8) ^ byte])

        def is_w(c):
            return (c == Cmd.WRITE) | (c == Cmd.WRITE_FIXED)

        def is_r(c):
            return (c == Cmd.READ) | (c == Cmd.READ_FIXED)

        def fixed(c):
            return (c == Cmd.WRITE_FIXED) | (c == Cmd.READ_FIXED)

        def count_good(c):
            return (c != 0) & (c <= MB)

        new_count = Cat(count_m[:8], byte)
        frame_end = Signal()
        m.d.comb += frame_end.eq(pos == Mux(is_w(cmd_m), 9 + 4 * count_m, 9))
        complete = Signal(name="m_complete")            # the last byte came in the cycle before
        m.d.sync += complete.eq(0)
        with m.If(got):
            with m.If(~open_):
                with m.If(~br.activity & (byte == REQ_SYNC)):
                    m.d.sync += [open_.eq(1), pos.eq(0), seq_m.eq(0), crc_m.eq(CRC16_INIT)]
            with m.Else():
                m.d.sync += [pos.eq(pos + 1), crc_m.eq(crc_next)]
                with m.Switch(pos):
                    with m.Case(0):
                        m.d.sync += seq_m.eq(byte)
                    with m.Case(1):
                        m.d.sync += cmd_m.eq(byte)
                    with m.Case(2, 3, 4, 5):
                        m.d.sync += addr_m.eq(Cat(addr_m[8:], byte))
                    with m.Case(6):
                        m.d.sync += count_m.eq(byte)
                    with m.Case(7):
                        m.d.sync += count_m.eq(new_count)
                        with m.If(is_w(cmd_m) & ~count_good(new_count)):
                            m.d.sync += open_.eq(0)     # BAD_COUNT: its length is unknown
                    for k in range(MB):
                        for x in range(4):
                            with m.Case(8 + 4 * k + x):
                                with m.If(is_w(cmd_m) & (count_m > k)):
                                    m.d.sync += word_m.eq(Cat(word_m[8:], byte))
                                    if x == 3:
                                        m.d.sync += words_m[k].eq(Cat(word_m[8:], byte))
                with m.If(frame_end):
                    m.d.sync += [open_.eq(0), complete.eq(1)]
        with m.Elif(open_ & quiet):
            m.d.sync += open_.eq(0)                     # the frame stopped: dropped

        # the verdict, in the cycle after the frame's last byte
        session_m = Signal(32, name="m_session")
        last_valid_m = Signal(name="m_last_valid")
        last_m = [Signal(8, name="m_last_seq"), Signal(8, name="m_last_cmd"),
                  Signal(32, name="m_last_addr"), Signal(16, name="m_last_count")]
        key = [seq_m, cmd_m, addr_m, count_m]
        crc_ok = crc_m == 0
        span = Signal(33, name="m_span_end")
        m.d.comb += span.eq(addr_m + Mux(fixed(cmd_m), 0, count_m - 1))
        retry = Signal(name="m_retry")
        m.d.comb += retry.eq(last_valid_m & Cat(*(a == k for a, k in zip(last_m, key))).all())
        good_new = Signal(name="m_good_new")
        m.d.comb += good_new.eq(crc_ok & (is_w(cmd_m) | is_r(cmd_m)) & count_good(count_m)
                                & (span < (1 << AW)) & ~retry)
        busy = Signal(name="m_executing")               # a good new request is being carried out
        writing = Signal(name="m_writing")
        done = Signal(16, name="m_done")                # its words written, or read and answered
        issued = Signal(16, name="m_issued")            # its read strobes
        finished = Signal()
        with m.If(complete):
            with m.If(crc_ok & (cmd_m == Cmd.OPEN) & (addr_m != session_m)):
                m.d.sync += [session_m.eq(addr_m), last_valid_m.eq(0)]
            with m.If(good_new):
                m.d.sync += [busy.eq(1), writing.eq(is_w(cmd_m)), done.eq(0), issued.eq(0)]
        with m.If(busy & ((writing & bus.w_stb) | (~writing & bus.r_ack))):
            m.d.sync += done.eq(done + 1)
            with m.If(done + 1 == count_m):
                m.d.comb += finished.eq(1)
                m.d.sync += [busy.eq(0), last_valid_m.eq(1),
                             *(a.eq(k) for a, k in zip(last_m, key))]
        with m.If(bus.r_stb):
            m.d.sync += issued.eq(issued + 1)

        def at(k):
            return (addr_m + Mux(fixed(cmd_m), 0, k))[:AW]

        m.d.comb += [
            Assert(~bus.w_stb | (busy & writing & (done < count_m) & (bus.addr == at(done))
                                 & (bus.w_data == Array(words_m)[done[:_bits(MB)]])),
                   "no bus write but for a good new WRITE frame (CRC checks, count 1..max_burst, "
                   "burst on the bus, not a retry of the session's last request): its next word "
                   "at its next address"),
            Assert(~bus.r_stb | (busy & ~writing & (issued < count_m) & (bus.addr == at(issued))),
                   "no bus read but for a good new READ frame: its next address"),
            Assert(~got | ~busy, "a good new request is carried out in full (every word, once) "
                   "before the next byte is taken"),
            Assert(~(bus.w_stb | bus.r_stb) | ~out,
                   "bus rule: no strobe while a read is outstanding"),
        ]

        if self.invariants:
            self._invariants(m, b, st, crc_reg, buf, rd_data, bus, out, age, dict(
                idle=idle_m, open=open_, pos=pos, seq=seq_m, cmd=cmd_m, addr=addr_m,
                count=count_m, word=word_m, words=words_m, crc=crc_m, complete=complete,
                session=session_m, last_valid=last_valid_m, last=last_m, busy=busy,
                writing=writing, done=done, issued=issued, at=at, is_w=is_w, is_r=is_r,
                fixed=fixed, count_good=count_good))

        # not vacuous: requests are carried out (the solver finds good frames, CRC and all), a
        # retry is recognised, a session follows a request
        covers = {
            "shallow": [(finished & ~writing, "a READ is carried out"),
                        (finished & writing & (count_m == MB) & ~fixed(cmd_m),
                         f"a {MB}-word WRITE is carried out")],
            "deep": [(complete & crc_ok & retry, "a retry is recognised (not carried out again)"),
                     (complete & crc_ok & (cmd_m == Cmd.OPEN) & (addr_m != session_m)
                      & last_valid_m, "a new session starts after a request was carried out")],
        }
        for cond, text in covers[self.covers]:
            m.d.comb += Cover(cond, text)
        return m

    def _patch(self, frag, crc_frag, rx_crc, b, st):
        from .protocol import Cmd

        mu = self.mutant
        if mu == "skip_crc":
            crc_frag.add_statements("comb", rx_crc.zero.eq(1))
        elif mu == "no_count_check":
            frag.add_statements("comb", b["count_ok"].eq(b["count"] != 0))
        elif mu == "no_dedup":
            frag.add_statements("comb", b["is_repeat"].eq(0))
        elif mu == "dedup_seq_only":
            frag.add_statements("comb", b["is_repeat"].eq(b["last_valid"]
                                                          & (b["last_seq"] == b["seq"])))
        elif mu == "keep_last_on_open":
            patch = Module()
            with patch.If(st("CHECK") & rx_crc.zero & (b["cmd"] == Cmd.OPEN)):
                patch.d.sync += b["last_valid"].eq(b["last_valid"])
            for domain, stmts in elaborate(patch).statements.items():
                frag.add_statements(domain, stmts)

    def _invariants(self, m, b, st, crc_reg, buf, rd_data, bus, out, age, mon):
        from .protocol import Cmd

        AW, MB = self.addr_width, self.max_burst
        is_w, count_good, at = mon["is_w"], mon["count_good"], mon["at"]
        cmd, count, widx = b["cmd"], b["count"], b["widx"]
        executing = st("WR_FETCH", "WR_STROBE", "RD_STROBE", "RD_WAIT")
        last_strobe = st("TX") & bus.w_stb             # the last write, seen on the bus now
        span = Signal(33)
        m.d.comb += span.eq(b["addr"] + Mux(mon["fixed"](cmd) | (count == 0), 0, count - 1))
        ok = [
            (b["widx1"] == widx + 1, "widx1 is widx + 1"),
            (mon["idle"] == b["idle"], "the monitor's quiet timer is the bridge's"),
            (b["timed_out"] == (b["idle"] == self.timeout), "the timeout flag is the timer's"),
            ((mon["seq"] == b["seq"]) & (mon["cmd"] == cmd) & (mon["addr"] == b["addr"])
             & (mon["count"] == count) & (mon["word"] == b["word"]),
             "the header fields and the word being received are the monitor's"),
            (b["read_half"] == mon["is_r"](cmd), "a READ's words go to the read half"),
            (mon["complete"] == st("CHECK"), "the bridge checks a frame right after its end"),
            (mon["open"] == st("HEADER", "PAYLOAD", "PAYLOAD_STORE", "CRC"),
             "the bridge is inside a frame when the monitor is"),
            (~st("HEADER") | (mon["pos"] == b["hdr_idx"]), "header: the byte index"),
            (~st("PAYLOAD_STORE") | (b["idle"] == 0), "a word is stored right after its byte"),
            (~st("PAYLOAD", "PAYLOAD_STORE") | (b["crc_idx"] == 0), "payload: no CRC byte yet"),
            (~st("PAYLOAD") | (is_w(cmd) & count_good(count) & (widx < count)
                               & (mon["pos"] == 8 + 4 * widx + b["byte_idx"])),
             "payload: the byte index"),
            (~st("PAYLOAD_STORE") | (is_w(cmd) & count_good(count) & (widx < count)
                                     & (b["byte_idx"] == 0) & (mon["pos"] == 12 + 4 * widx)
                                     & (b["word"] == Array(mon["words"])[widx])),
             "payload: the word stored is the monitor's"),
            (~st("CRC") | ((mon["pos"] == 8 + Mux(is_w(cmd), 4 * count, 0) + b["crc_idx"])
                           & (~is_w(cmd) | (count_good(count) & (widx == count)))),
             "CRC: the byte index"),
            (st("IDLE", "DRAIN") | (crc_reg == mon["crc"]),
             "the bridge's CRC register is the monitor's CRC of the frame"),
            (~(st("CHECK") | st("CRC") & b["crc_idx"])
             | (b["span_end"] == b["addr"][:AW] + count),
             "the address check's sum is up to date from the frame's second CRC byte"),
            (~st("CHECK") | (b["addr_ok"] == (span < (1 << AW))),
             "the address check is up to date at the frame's end"),
            (~(st("CHECK") | st("CRC") & b["crc_idx"])
             | (b["repeat_r"] == (b["last_valid"] & (b["last_seq"] == b["seq"])
                                  & (b["last_cmd"] == cmd) & (b["last_addr"] == b["addr"])
                                  & (b["last_count"] == count))),
             "the retry check is up to date at the frame's end"),
            (~(st("CHECK") | st("CRC") & b["crc_idx"])
             | ((b["chk_info"] == (cmd == Cmd.INFO)) & (b["chk_open"] == (cmd == Cmd.OPEN))
                & (b["chk_new_session"] == (b["addr"] != b["session"]))
                & (b["chk_count_ok"] == b["count_ok"]) & (b["chk_read"] == mon["is_r"](cmd))
                & (b["chk_write"] == is_w(cmd))),
             "the request's decode is up to date at the frame's end"),
            (mon["session"] == b["session"], "the session is the monitor's"),
            (mon["busy"] == (executing | last_strobe), "the bridge executes the monitor's request"),
            (~mon["busy"] | ((mon["writing"] == is_w(cmd)) & count_good(count)),
             "a WRITE's execution writes; a request's count is good"),
            (~out | st("RD_WAIT"), "a read is outstanding only while the bridge waits for it"),
        ]
        for x in range(MB):
            stored = ((st("PAYLOAD", "PAYLOAD_STORE") & (x < widx))
                      | (st("CRC", "CHECK", "WR_FETCH", "WR_STROBE") & is_w(cmd) & (x < count)))
            ok.append((~stored | (buf[x] == mon["words"][x]),
                       f"burst buffer word {x} is the monitor's"))
        cur = b["cur_addr"] == at(widx)
        ok += [
            (~st("WR_FETCH") | (is_w(cmd) & (widx < count) & (mon["done"] + bus.w_stb == widx)
                                & cur & ~bus.r_stb), "WR_FETCH: the word index"),
            (~st("WR_STROBE") | (is_w(cmd) & (widx < count) & (mon["done"] == widx) & cur
                                 & ~bus.w_stb & ~bus.r_stb
                                 & (rd_data == Array(buf)[widx[:_bits(len(buf))]])),
             "WR_STROBE: the word index, the word read"),
            (~last_strobe | (mon["done"] + 1 == count), "the last write is on the bus"),
            (~bus.w_stb | st("WR_FETCH", "TX"), "a write strobe follows WR_STROBE"),
            (~bus.r_stb | st("RD_WAIT"), "a read strobe follows RD_STROBE"),
            (~st("RD_STROBE") | (mon["is_r"](cmd) & (widx < count) & (mon["issued"] == widx)
                                 & (mon["done"] == widx) & cur & ~out & ~bus.r_stb & ~bus.w_stb),
             "RD_STROBE: the word index"),
            (~st("RD_WAIT") | (mon["is_r"](cmd) & (widx < count) & (mon["done"] == widx) & cur
                               & ~bus.w_stb
                               & Mux(bus.r_stb, (mon["issued"] == widx) & ~out & (b["wait"] == 0),
                                     (mon["issued"] == widx + 1) & out & (b["wait"] == age + 1)
                                     & (age < self.read_latency))),
             "RD_WAIT: the word index, the read outstanding"),
        ]
        same_last = ((b["last_seq"] == mon["last"][0]) & (b["last_cmd"] == mon["last"][1])
                     & (b["last_addr"] == mon["last"][2]) & (b["last_count"] == mon["last"][3]))
        is_current = ((b["last_seq"] == b["seq"]) & (b["last_cmd"] == cmd)
                      & (b["last_addr"] == b["addr"]) & (b["last_count"] == count))
        ok += [
            (mon["busy"] | ((mon["last_valid"] == b["last_valid"])
                            & (~b["last_valid"] | same_last)),
             "the last request is the monitor's"),
            (~executing | (~b["last_valid"] & is_current), "while executing: no last request yet"),
            (~last_strobe | (b["last_valid"] & is_current),
             "the last write: the request is the last"),
        ]
        for inv, text in ok:
            m.d.comb += Assert(inv, f"invariant: {text}")
