"""A bus-slave RAM: the smallest "core" a bridge can talk to (tests, the CI bitstream).

Per cycle: ``w_stb`` writes ``w_data`` at ``addr`` (addresses at or above ``depth`` are ignored);
``r_stb`` reads ``addr`` and raises ``r_ack`` with the word one cycle later (``latency`` extra
cycles when asked, to exercise the bridge's wait); unmapped addresses read 0. ``writes`` counts
bus write strobes (mapped or not), so a test can tell that nothing at all was written.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hw.common.bus import BusSignature

__all__ = ["BusRAM"]


class BusRAM(wiring.Component):
    """``depth`` words of 32 bits on a host bus of ``addr_width`` bits; read latency
    ``1 + latency`` cycles. ``init`` gives initial contents."""

    def __init__(self, *, addr_width: int = 16, depth: int = 256, latency: int = 0, init=()):
        if not isinstance(depth, int) or not 1 <= depth <= 2 ** addr_width:
            raise ValueError(f"RAM depth must be from 1 to 2**addr_width = {2 ** addr_width}, "
                             f"not {depth!r}")
        if not isinstance(latency, int) or latency < 0:
            raise ValueError(f"extra read latency must be a non-negative integer, not {latency!r}")
        self._depth = depth
        self._latency = latency
        self.mem = Memory(shape=32, depth=depth, init=list(init))
        super().__init__({"bus": In(BusSignature(addr_width)), "writes": Out(32)})

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = self.mem
        rd = mem.read_port()
        wr = mem.write_port()
        bus = self.bus
        in_range = Signal()
        m.d.comb += in_range.eq(bus.addr < self._depth)
        m.d.comb += [rd.addr.eq(bus.addr), wr.addr.eq(bus.addr), wr.data.eq(bus.w_data),
                     wr.en.eq(bus.w_stb & in_range)]
        with m.If(bus.w_stb):
            m.d.sync += self.writes.eq(self.writes + 1)
        ack = Signal()
        valid = Signal()
        m.d.sync += [ack.eq(bus.r_stb), valid.eq(in_range)]
        stages = [(ack, valid)]
        for i in range(self._latency):
            a, v = Signal(name=f"ack{i}"), Signal(name=f"valid{i}")
            m.d.sync += [a.eq(stages[-1][0]), v.eq(stages[-1][1])]
            stages.append((a, v))
        data = Signal(32)
        if self._latency:
            # hold the word read at the first stage until the ack leaves the pipeline
            with m.If(ack):
                m.d.sync += data.eq(rd.data)
            m.d.comb += bus.r_data.eq(stages[-1][1].replicate(32) & data)
        else:
            m.d.comb += bus.r_data.eq(valid.replicate(32) & rd.data)
        m.d.comb += bus.r_ack.eq(stages[-1][0])
        return m
