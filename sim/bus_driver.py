"""Drive the host bus (:mod:`eie.hw.common.bus`) from an Amaranth-simulator testbench.

``bus`` is the slave-side interface object of the design under test (its ``addr``, ``w_data``,
``w_stb``, ``r_stb`` are inputs of the design, ``r_data``/``r_ack`` outputs).
:class:`AmaranthBus` is the bus object the host programs take (``write``, ``read``, ``idle``,
like the cocotb testbenches' :class:`eie.sim.cocotb_tb.CocotbBus`); :func:`simulate` runs a
design with one such testbench and counts the clock cycles.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

__all__ = ["bus_write", "bus_read", "AmaranthBus", "simulate"]


async def bus_write(ctx, bus, addr: int, data: int) -> None:
    """One write cycle: the word takes effect at the next clock edge."""
    ctx.set(bus.addr, addr)
    ctx.set(bus.w_data, data)
    ctx.set(bus.w_stb, 1)
    await ctx.tick()
    ctx.set(bus.w_stb, 0)


async def bus_read(ctx, bus, addr: int, timeout: int = 64) -> int:
    """Pulse ``r_stb`` and wait for ``r_ack``; return ``r_data``."""
    ctx.set(bus.addr, addr)
    ctx.set(bus.r_stb, 1)
    await ctx.tick()
    ctx.set(bus.r_stb, 0)
    for _ in range(timeout):
        if ctx.get(bus.r_ack):
            return ctx.get(bus.r_data)
        await ctx.tick()
    raise TimeoutError(f"no r_ack within {timeout} cycles of a read at address {addr:#x}")


class AmaranthBus:
    """The host bus ``bus`` of a design simulated by Amaranth, for the host programs.

    ``cycles``: the clock cycles simulated so far (counted by :func:`simulate`).
    """

    def __init__(self, ctx, bus, counter: list[int] | None = None):
        self.ctx, self.bus = ctx, bus
        self._counter = counter if counter is not None else [0]

    @property
    def cycles(self) -> int:
        return self._counter[0]

    async def write(self, addr: int, data: int) -> None:
        await bus_write(self.ctx, self.bus, addr, data)

    async def read(self, addr: int) -> int:
        return await bus_read(self.ctx, self.bus, addr)

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
