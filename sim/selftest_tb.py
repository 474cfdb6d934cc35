"""cocotb testbench for the toolchain self-test (``tests/test_sim_runner.py``).

The design is a free-running counter with a synchronous clear (:func:`counter_component`). The
testbench checks the count cycle by cycle against a Python model, and writes what it saw to the
file named by ``EIE_SELFTEST_OUT`` so the pytest side can check the run really happened.
"""

from __future__ import annotations

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, ReadOnly

__all__ = ["counter_component"]


def counter_component(width: int = 8):
    """A ``width``-bit counter: ``count`` increments every cycle, ``clear`` resets it to 0."""
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Counter(wiring.Component):
        def __init__(self):
            super().__init__({"clear": In(1), "count": Out(width)})

        def elaborate(self, platform):
            m = Module()
            with m.If(self.clear):
                m.d.sync += self.count.eq(0)
            with m.Else():
                m.d.sync += self.count.eq(self.count + 1)
            return m

    return Counter()


@cocotb.test()
async def counter_counts(dut):
    """The count rises by one each cycle (mod 2**width) and ``clear`` zeroes it."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.clear.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    width = len(dut.count)
    seen = []
    for cycle in range(300):
        await RisingEdge(dut.clk)
        await ReadOnly()
        seen.append(int(dut.count.value))
        if cycle:
            assert seen[-1] == (seen[-2] + 1) % (1 << width), f"cycle {cycle}: {seen[-2:]}"
    await RisingEdge(dut.clk)
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    await ReadOnly()
    assert int(dut.count.value) == 0, f"count {int(dut.count.value)} after clear"
    with open(os.environ["EIE_SELFTEST_OUT"], "w") as f:
        f.write(" ".join(map(str, seen)))
