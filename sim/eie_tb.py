"""cocotb testbench of the EIE top (``eie_top``) on Verilator or Icarus.

The job list (:func:`eie.sim.cocotb_tb.job_spec`, written by :func:`eie.sim.eie_run.run_eie_jobs`)
holds the design's configuration and, per job, an image directory, an int16 input array and
where to put the results. For each job the testbench loads the image through the host bus (or,
with ``"load": "backdoor"``, deposits the pointer and sparse-matrix words through the VPI and
reads a sample back: :mod:`eie.sim.backdoor`) and runs every sample with the shared
:class:`eie.hw.eie.host_program.HostProgram` sequence (``load``, then ``run`` and ``collect``
per sample, executed by :func:`execute_async`), and saves the outputs and the counters, cycles
and wall time. It does not judge the outputs: the caller compares them with the golden model.
It checks the bus protocol on the way (``r_ack`` arrives, the ID register reads ``EIE1``, the
run finishes within a generous cycle budget).

Clock, reset, the bus adapter and the job loop are the ones every core's testbench uses
(:mod:`eie.sim.cocotb_tb`). While the ``busy`` port is high a ``STATUS`` read waits for it to
fall instead of reading ``STATUS`` over and over: the same bus transactions, minus the redundant
polls, and no Python code runs in the simulator while the accelerator works.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np

from ..hw.eie.config import EIEConfig
from ..hw.eie.host_program import HostProgram, execute_async
from ..hw.eie.memory_map import EIE_ID, MemoryMap
from ..sw.image import read_image
from .backdoor import deposit, split_load, verify_reads
from .cocotb_tb import CocotbBus, job_spec, now_cycles, run_jobs, start
from .eie_run import TOPLEVEL, split_run

__all__ = ["cycle_budget"]


def cycle_budget(image) -> int:
    """A generous bound on the cycles of one sample: 16 times every column, entry and output of
    every layer in the busiest PE, plus a constant. A run beyond it is a hang."""
    total = 1000
    for l, d in enumerate(image.layers):
        entries = max(int(image.layer_pointers(l, k)[-1]) for k in range(image.n_pe))
        total += 16 * (d.n_in + entries + d.n_out + 16)
    return total


@cocotb.test()
async def eie_jobs(dut):
    """Load each job's image, run its samples, save outputs, counters and cycle counts."""
    spec = job_spec()
    config = EIEConfig(**spec["config"])
    period = int(spec["period_ns"])
    mm = MemoryMap(config)
    await start(dut, period)
    bus = CocotbBus(dut, period_ns=period, status_addr=mm.reg("STATUS"))
    ident = await bus.read(mm.reg("ID"))
    assert ident == EIE_ID, f"ID register reads {ident:#x}, expected {EIE_ID:#x}: not this design?"

    async def run_job(job, advance):
        image = read_image(job["image"])
        x = np.load(job["x"])
        prog = HostProgram(config, image)
        bus.budget_cycles = cycle_budget(image)
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
            inputs, begin = split_run(prog.run(x[s]), mm.reg("CTRL"))
            await execute_async(inputs, bus.write, bus.read)
            c1, w1 = now_cycles(period), time.perf_counter()
            await execute_async(begin, bus.write, bus.read)
            compute_cycles += now_cycles(period) - c1
            compute_wall += time.perf_counter() - w1
            values = await execute_async(prog.collect(), bus.write, bus.read)
            y[s], c = prog.decode(values)
            counters.append(c)
            run_cycles.append(int(values[("run_cycles",)]))
            advance()
        return y, {"counters": counters, "run_cycles": run_cycles,
                   "compute_cycles": compute_cycles, "compute_seconds": compute_wall}

    await run_jobs(spec, run_job)
