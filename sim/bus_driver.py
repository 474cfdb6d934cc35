"""Drive the host bus (:mod:`eie.hw.common.bus`) from an Amaranth-simulator testbench.

``bus`` is the slave-side interface object of the design under test (its ``addr``, ``w_data``,
``w_stb``, ``r_stb`` are inputs of the design, ``r_data``/``r_ack`` outputs).
"""

from __future__ import annotations

__all__ = ["bus_write", "bus_read"]


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
