"""Run an EIE image on the Amaranth simulator, through the host bus, with the shared host program.

``run_image_amaranth(config, image, x)`` builds :class:`eie.hw.eie.top.EIETop`, loads the image
with :class:`eie.hw.eie.host_program.HostProgram` (the same bus sequence the cocotb testbenches
and the board driver use), runs every sample, and returns the outputs and the hardware counters.
Set ``vcd`` (a path), or the environment variable ``EIE_VCD`` to a path, to dump a waveform.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunResult", "run_image_amaranth"]


@dataclass
class RunResult:
    outputs: np.ndarray                               # int16 (batch, n_out)
    counters: list[list[dict[str, Any]]]              # per sample, per layer
    run_cycles: list[int] = field(default_factory=list)   # per sample, start to done
    sim_cycles: int = 0                               # simulated clock cycles, loading included


def run_image_amaranth(config, image, x_int16, *, vcd: str | os.PathLike | None = None) -> RunResult:
    from amaranth.sim import Simulator

    from eie.hw.eie.host_program import HostProgram, execute_async
    from eie.hw.eie.top import EIETop
    from eie.sim.bus_driver import bus_read, bus_write

    from eie.sw.golden import check_input

    x = check_input(x_int16, image.n_in)          # EieError on a bad shape, dtype or range
    prog = HostProgram(config, image)
    dut = EIETop(config)
    result = RunResult(outputs=np.zeros((x.shape[0], image.n_out), dtype=np.int16), counters=[])
    cycles = [0]

    async def bench(ctx):
        async def write(addr, data):
            await bus_write(ctx, dut.bus, addr, data)

        async def read(addr):
            return await bus_read(ctx, dut.bus, addr)

        await execute_async(prog.load(), write, read)
        for s in range(x.shape[0]):
            await execute_async(prog.run(x[s]), write, read)
            values = await execute_async(prog.collect(), write, read)
            y, counters = prog.decode(values)
            result.outputs[s] = y
            result.counters.append(counters)
            result.run_cycles.append(int(values[("run_cycles",)]))

    async def clock_count(ctx):
        async for _ in ctx.tick():
            cycles[0] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(clock_count)
    vcd = vcd or os.environ.get("EIE_VCD") or None
    if vcd:
        with sim.write_vcd(str(Path(vcd))):
            sim.run()
    else:
        sim.run()
    result.sim_cycles = cycles[0]
    return result
