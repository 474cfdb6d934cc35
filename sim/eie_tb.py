"""cocotb testbench of the EIE top (``eie_top``) on Verilator or Icarus.

The job list is the JSON file named by ``EIE_RTL_JOBS`` (written by
:func:`eie.sim.eie_run.run_eie_jobs`): the design's configuration and, per job, an image
directory, an int16 input array and where to put the results. For each job the testbench loads
the image through the host bus (or, with ``"load": "backdoor"``, deposits the pointer and
sparse-matrix words through the VPI and reads a sample back: :mod:`eie.sim.backdoor`) and runs every sample with the shared
:class:`eie.hw.eie.host_program.HostProgram` sequence (``load``, then ``run`` and ``collect``
per sample, executed by :func:`execute_async`), and saves the outputs (``y.npy``) and the
counters, cycles and wall time (``result.json``). It does not judge the outputs: the caller
compares them with the golden model. It checks the bus protocol on the way (``r_ack`` arrives,
the ID register reads ``EIE1``, the run finishes within a generous cycle budget).

Bus timing: the testbench drives the bus inputs just after a falling clock edge and samples
the outputs there too (half a cycle after the rising edge, when every register output is
stable), so one write costs one cycle and a read the design's latency (2 cycles), as in the
Amaranth driver :mod:`eie.sim.bus_driver`. While the ``busy`` port is high the testbench waits
for it to fall instead of reading ``STATUS`` over and over: the same bus transactions, minus
the redundant polls, and no Python code runs in the simulator while the accelerator works.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, with_timeout
from cocotb.utils import get_sim_time

from ..hw.eie.config import EIEConfig
from ..hw.eie.host_program import HostProgram, execute_async
from ..hw.eie.memory_map import EIE_ID, MemoryMap
from ..sw.image import read_image
from .backdoor import deposit, split_load, verify_reads
from .eie_run import TOPLEVEL, split_run

__all__ = ["CocotbEieBus", "cycle_budget"]


class CocotbEieBus:
    """The host bus of ``dut`` (ports ``bus__*``) for :func:`execute_async`.

    Every method starts and returns just after a falling clock edge.
    """

    def __init__(self, dut, status_addr: int, period_ns: int, budget_cycles: int):
        self.dut = dut
        self.status_addr = status_addr
        self.period_ns = period_ns
        self.budget_cycles = budget_cycles

    async def write(self, addr: int, data: int) -> None:
        d = self.dut
        d.bus__addr.value = addr
        d.bus__w_data.value = data
        d.bus__w_stb.value = 1
        await FallingEdge(d.clk)
        d.bus__w_stb.value = 0

    async def read(self, addr: int, timeout: int = 64) -> int:
        d = self.dut
        if addr == self.status_addr and int(d.busy.value):
            try:
                await with_timeout(FallingEdge(d.busy), self.budget_cycles * self.period_ns, "ns")
            except cocotb.triggers.SimTimeoutError:
                raise AssertionError(f"the accelerator stayed busy for {self.budget_cycles} "
                                     "cycles (the budget for this image): hung?") from None
            await FallingEdge(d.clk)
        d.bus__addr.value = addr
        d.bus__r_stb.value = 1
        await FallingEdge(d.clk)
        d.bus__r_stb.value = 0
        for _ in range(timeout):
            await FallingEdge(d.clk)
            if int(d.bus__r_ack.value):
                value = d.bus__r_data.value
                if not value.is_resolvable:
                    raise AssertionError(f"the read at {addr:#x} returned undefined bits "
                                         f"{value} (an uninitialised register or memory word)")
                return int(value)
        raise AssertionError(f"no r_ack within {timeout} cycles of a read at {addr:#x}")


def cycle_budget(image) -> int:
    """A generous bound on the cycles of one sample: 16 times every column, entry and output of
    every layer in the busiest PE, plus a constant. A run beyond it is a hang."""
    total = 1000
    for l, d in enumerate(image.layers):
        entries = max(int(image.layer_pointers(l, k)[-1]) for k in range(image.n_pe))
        total += 16 * (d.n_in + entries + d.n_out + 16)
    return total


def _now_cycles(period_ns: int) -> int:
    return int(round(get_sim_time("ns") / period_ns))


@cocotb.test()
async def eie_jobs(dut):
    """Load each job's image, run its samples, save outputs, counters and cycle counts."""
    spec = json.loads(Path(os.environ["EIE_RTL_JOBS"]).read_text())
    config = EIEConfig(**spec["config"])
    period = int(spec["period_ns"])
    mm = MemoryMap(config)
    progress = Path(spec["progress"])
    cocotb.start_soon(Clock(dut.clk, period, unit="ns").start())
    dut.rst.value = 1
    dut.bus__w_stb.value = 0
    dut.bus__r_stb.value = 0
    dut.bus__addr.value = 0
    dut.bus__w_data.value = 0
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    bus = CocotbEieBus(dut, mm.reg("STATUS"), period, 1000)
    ident = await bus.read(mm.reg("ID"))
    assert ident == EIE_ID, f"ID register reads {ident:#x}, expected {EIE_ID:#x}: not this design?"
    done = 0
    for job in spec["jobs"]:
        image = read_image(job["image"])
        x = np.load(job["x"])
        prog = HostProgram(config, image)
        bus.budget_cycles = cycle_budget(image)
        c0, w0 = _now_cycles(period), time.perf_counter()
        if spec.get("load", "bus") == "backdoor":
            split = split_load(config, prog.load())
            await execute_async(split.front, bus.write, bus.read)
            deposit(split, TOPLEVEL)
            verify_reads(split.checks, [await bus.read(a) for a, _ in split.checks])
        else:
            await execute_async(prog.load(), bus.write, bus.read)
        y = np.zeros((x.shape[0], image.n_out), dtype=np.int16)
        counters, run_cycles = [], []
        compute_cycles, compute_wall = 0, 0.0
        for s in range(x.shape[0]):
            inputs, start = split_run(prog.run(x[s]), mm.reg("CTRL"))
            await execute_async(inputs, bus.write, bus.read)
            c1, w1 = _now_cycles(period), time.perf_counter()
            await execute_async(start, bus.write, bus.read)
            compute_cycles += _now_cycles(period) - c1
            compute_wall += time.perf_counter() - w1
            values = await execute_async(prog.collect(), bus.write, bus.read)
            y[s], c = prog.decode(values)
            counters.append(c)
            run_cycles.append(int(values[("run_cycles",)]))
            done += 1
            progress.write_text(str(done))
        wall = time.perf_counter() - w0
        np.save(job["y"], y)
        Path(job["result"]).write_text(json.dumps({
            "counters": counters, "run_cycles": run_cycles,
            "sim_cycles": _now_cycles(period) - c0, "wall_seconds": wall,
            "compute_cycles": compute_cycles, "compute_seconds": compute_wall}))
