"""The Amaranth-simulator driver of the host bus (:mod:`eie.hw.common.bus`), for every core.

:class:`AmaranthBus` is the host-bus driver (:class:`eie.hw.common.host.HostBus`: ``write``,
``read``, ``idle``, ``cycles``) of a design simulated by Amaranth, whose host bus is the
slave-side interface ``bus`` (its ``addr``, ``w_data``, ``w_stb``, ``r_stb`` are inputs of the
design, ``r_data``/``r_ack`` outputs); the cocotb driver is
:class:`eie.sim.cocotb_tb.CocotbBus`, the UART bridge's :class:`eie.app.host.BridgeBus`.
:func:`simulate` runs a design with one testbench over such a bus and counts the clock cycles.

A read waits for ``r_ack`` (never a fixed count of cycles: each core's memory map states its
latency), at most :data:`eie.hw.common.host.READ_TIMEOUT` cycles.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from ..hw.common.host import READ_TIMEOUT

__all__ = ["AmaranthBus", "simulate"]


class AmaranthBus:
    """The host bus ``bus`` of a design simulated by Amaranth, in testbench ``ctx``.

    ``cycles``: the clock cycles simulated so far (counted by :func:`simulate`).
    """

    def __init__(self, ctx, bus, counter: list[int] | None = None):
        self.ctx, self.bus = ctx, bus
        self._counter = counter if counter is not None else [0]

    @property
    def cycles(self) -> int:
        return self._counter[0]

    async def write(self, addr: int, data: int) -> None:
        """One write cycle: the word takes effect at the next clock edge."""
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.addr, addr)
        ctx.set(bus.w_data, data)
        ctx.set(bus.w_stb, 1)
        await ctx.tick()
        ctx.set(bus.w_stb, 0)

    async def read(self, addr: int, timeout: int = READ_TIMEOUT) -> int:
        """Pulse ``r_stb`` and wait for ``r_ack``; return ``r_data``."""
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.addr, addr)
        ctx.set(bus.r_stb, 1)
        await ctx.tick()
        ctx.set(bus.r_stb, 0)
        for _ in range(timeout):
            if ctx.get(bus.r_ack):
                return ctx.get(bus.r_data)
            await ctx.tick()
        raise TimeoutError(f"no r_ack within {timeout} cycles of a read at address {addr:#x}")

    async def idle(self, cycles: int) -> None:
        await self.ctx.tick().repeat(cycles)


def simulate(dut, bench: Callable[[AmaranthBus], Awaitable[Any]], *, period_ns: int,
             vcd: str | os.PathLike | None = None) -> tuple[int, float]:
    """Simulate ``dut`` (its host bus is ``dut.bus``) with the testbench ``bench(bus)`` until
    it returns; ``vcd`` writes a waveform. Returns (clock cycles simulated, seconds spent
    setting the simulator up: elaboration)."""
    from amaranth.sim import Simulator

    counter = [0]

    async def testbench(ctx):
        await bench(AmaranthBus(ctx, dut.bus, counter))

    async def count(ctx):
        async for _ in ctx.tick():
            counter[0] += 1

    t0 = time.perf_counter()
    sim = Simulator(dut)                 # elaborates and compiles the design: the "build"
    setup_s = time.perf_counter() - t0
    sim.add_clock(period_ns * 1e-9)
    sim.add_testbench(testbench)
    sim.add_process(count)
    if vcd:
        with sim.write_vcd(str(Path(vcd))):
            sim.run()
    else:
        sim.run()
    return counter[0], setup_s
