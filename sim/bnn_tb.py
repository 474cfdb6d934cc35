"""cocotb testbench of the BNN top (``bnn_top``), driven by :mod:`eie.hw.bnn.host_program`.

The job list comes from the JSON file named by ``EIE_BNN_JOBS`` (written by
:func:`eie.sim.bnn_run.run_rtl`): for each job the testbench loads the image through the host
bus, streams the input bits and saves the results and the counters where the job says. It does
not judge the results: the pytest side compares them with the golden model. It checks the bus
protocol on the way (``r_ack`` arrives, ERRORS stays 0).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer

from ..hw.bnn import host_program as hp
from ..hw.bnn.memory_map import BnnMemoryMap
from ..hw.bnn.folding import LayerFold
from ..sw.bnn.image import read_image

__all__ = ["CocotbBus"]

PERIOD_NS = 10


class CocotbBus:
    """The host bus of ``dut`` (ports ``bus__*``) as the host program's bus object.

    Every method starts and ends at a point where inputs may be driven for the next clock edge.
    """

    def __init__(self, dut):
        self.dut = dut
        self.clk = dut.clk

    async def write(self, addr: int, data: int) -> None:
        d = self.dut
        d.bus__addr.value = addr
        d.bus__w_data.value = data
        d.bus__w_stb.value = 1
        await RisingEdge(self.clk)
        d.bus__w_stb.value = 0

    async def read(self, addr: int, timeout: int = 64) -> int:
        d = self.dut
        d.bus__addr.value = addr
        d.bus__r_stb.value = 1
        await RisingEdge(self.clk)
        d.bus__r_stb.value = 0
        for _ in range(timeout):
            await ReadOnly()
            if int(d.bus__r_ack.value):
                value = int(d.bus__r_data.value)
                await Timer(1, unit="ns")  # leave the read-only phase before the next edge
                return value
            await RisingEdge(self.clk)
        raise AssertionError(f"no r_ack within {timeout} cycles of a read at {addr:#x}")

    async def idle(self, cycles: int) -> None:
        await ClockCycles(self.clk, cycles)


@cocotb.test()
async def bnn_jobs(dut):
    """Load each job's image, stream its samples, save results and counters."""
    with open(os.environ["EIE_BNN_JOBS"]) as f:
        spec = json.load(f)
    folds = [LayerFold(*f) for f in spec["folding"]]
    mm = BnnMemoryMap(folds, in_depth=spec["in_depth"], out_depth=spec["out_depth"])
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    dut.bus__w_stb.value = 0
    dut.bus__r_stb.value = 0
    dut.bus__addr.value = 0
    dut.bus__w_data.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    bus = CocotbBus(dut)
    await hp.check_config(bus, mm)
    for job in spec["jobs"]:
        image = read_image(job["image"])
        x = np.load(job["x"])
        if job["load"]:
            await hp.load_image(bus, mm, image)
        gap = None
        if job["backpressure"] > 0:
            gap = hp.random_gap(random.Random(job["seed"]), job["backpressure"], job["max_gap"])
        y, counters = await hp.run_samples(bus, mm, x, preload=job["preload"], read_gap=gap,
                                          poll_gap=job.get("poll_gap", 0))
        np.save(job["y"], y)
        with open(job["counters"], "w") as f:
            json.dump(counters, f)
