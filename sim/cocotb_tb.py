"""The one cocotb testbench of every core (Verilator or Icarus): the host-bus driver, clock and
reset, and the job loop (job list in, results out, progress), all running inside the
simulator's Python.

The runner side is :func:`eie.sim.runner.run_core_jobs` (through
:func:`eie.sim.runner.run_cocotb_jobs`): it names the job list (JSON) in ``$EIE_SIM_JOBS``. The
test :func:`core_jobs` reads it, makes the core it names (``spec["core"]``:
:func:`eie.sim.runner.core_from_spec`, the EIE's :class:`eie.sim.eie_run.EieCore` or the BNN's
:class:`eie.sim.bnn_run.BnnCore`), starts the clock, resets the design, checks that it answers as
that core, and for each job runs the core's job coroutine (the very one the Amaranth-simulator
runs use), times it (simulated cycles and wall seconds, :func:`eie.sim.runner.run_job_timed`)
and saves what it returns where the job says (``y``: the outputs as ``.npy``, ``result``: the
rest as JSON). It does not judge the outputs: the caller compares them with the golden model.

What it reaches through the VPI: the top's ports (``clk``, ``rst``, ``bus__*``, ``busy``) and,
for a backdoor load, memories (:mod:`eie.sim.backdoor`). On Verilator only those are public
(:func:`eie.sim.verilog.verilator_source`): a handle on any other signal needs it marked there.

Bus timing (:class:`CocotbBus`): inputs are driven just after a falling clock edge and outputs
sampled there too (half a cycle after the rising edge, when every register output is stable),
so a write takes one cycle and a read the design's read latency, as in the Amaranth driver
:mod:`eie.sim.bus_driver`. The design samples each input at the same rising edges as if it were
driven just after the edge before, so what the design sees, and counts, does not depend on the
choice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer, with_timeout
from cocotb.utils import get_sim_time

from ..hw.common.host import READ_TIMEOUT
from .runner import Core, core_from_spec, run_job_timed

__all__ = ["CocotbBus", "job_spec", "start", "run_jobs", "now_cycles", "core_jobs"]


class CocotbBus:
    """The host-bus driver (:class:`eie.hw.common.host.HostBus`) of ``dut`` (ports ``bus__*``):
    ``write``, ``read``, ``idle``, ``cycles``. Every method starts and returns just after a
    falling clock edge.

    A read waits for ``r_ack`` (never a fixed count of cycles), looking from the first falling
    edge after the request on: the bus gives ``r_ack`` for exactly one cycle, a fixed latency of
    at least one cycle after ``r_stb`` (each core's memory map states it: ``READ_LATENCY``, BNN
    1, EIE 7), so no earlier look can see it, nor the previous read's. ``status_addr``: a read
    of that register while the design's ``busy`` port is high first waits for ``busy`` to fall
    (at most ``budget_cycles``): the same bus transaction, minus the polls that would all read
    "busy", and no Python runs while the design works.
    """

    def __init__(self, dut, *, period_ns: int, status_addr: int | None = None,
                 budget_cycles: int = 1000):
        self.dut = dut
        self.period_ns = period_ns
        self.status_addr = status_addr
        self.budget_cycles = budget_cycles

    async def write(self, addr: int, data: int) -> None:
        d = self.dut
        d.bus__addr.value = addr
        d.bus__w_data.value = data
        d.bus__w_stb.value = 1
        await FallingEdge(d.clk)
        d.bus__w_stb.value = 0

    @property
    def cycles(self) -> int:
        """Clock cycles simulated so far."""
        return now_cycles(self.period_ns)

    async def read(self, addr: int, timeout: int = READ_TIMEOUT) -> int:
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
            if int(d.bus__r_ack.value):
                value = d.bus__r_data.value
                if not value.is_resolvable:
                    raise AssertionError(f"the read at {addr:#x} returned undefined bits "
                                         f"{value} (an uninitialised register or memory word)")
                return int(value)
            await FallingEdge(d.clk)
        raise AssertionError(f"no r_ack within {timeout} cycles of a read at {addr:#x}")

    async def idle(self, cycles: int) -> None:
        """``cycles`` clock cycles, from one falling edge to the ``cycles``-th next. Long waits
        sleep on a timer to a quarter period past the last but one edge (no edge is due then,
        so the order of events in that time step does not matter) instead of waking Python on
        every edge: a BNN host idling for II x samples cycles runs several times faster."""
        if cycles > 2:
            await Timer((cycles - 1) * self.period_ns * 1000 + self.period_ns * 250, "ps")
            await FallingEdge(self.dut.clk)
        elif cycles > 0:
            await ClockCycles(self.dut.clk, cycles, FallingEdge)


def job_spec() -> dict[str, Any]:
    """The job list :func:`eie.sim.runner.run_cocotb_jobs` wrote (``$EIE_SIM_JOBS``)."""
    return json.loads(Path(os.environ["EIE_SIM_JOBS"]).read_text())


def now_cycles(period_ns: int) -> int:
    """Clock cycles simulated so far."""
    return int(round(get_sim_time("ns") / period_ns))


async def start(dut, period_ns: int) -> None:
    """Start the clock and hold ``rst`` (synchronous, active high) for three cycles with the bus
    idle; return just after the falling edge that follows the first rising edge out of reset."""
    cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())
    dut.rst.value = 1
    dut.bus__w_stb.value = 0
    dut.bus__r_stb.value = 0
    dut.bus__addr.value = 0
    dut.bus__w_data.value = 0
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)


async def run_jobs(spec: dict[str, Any], core: Core, bus: CocotbBus) -> None:
    """For each job of ``spec``: run it with :func:`eie.sim.runner.run_job_timed` (the core's
    ``advance()`` counts one unit of progress, a sample say, in the file the runner watches),
    then save its outputs and the rest of its result."""
    progress = Path(spec["progress"])
    done = [0]

    def advance() -> None:
        done[0] += 1
        progress.write_text(str(done[0]))

    for files in spec["jobs"]:
        job = core.read_job(files)
        bus.budget_cycles = core.cycle_budget(job)
        y, result = await run_job_timed(core, bus, job, advance)
        np.save(files["y"], y)
        Path(files["result"]).write_text(json.dumps(result))


@cocotb.test()
async def core_jobs(dut):
    """Reset the design, check it answers as the spec's core, run every job, save results."""
    spec = job_spec()
    core = core_from_spec(spec)
    period = int(spec["period_ns"])
    await start(dut, period)
    bus = CocotbBus(dut, period_ns=period, status_addr=core.status_addr)
    await core.check(bus)
    await run_jobs(spec, core, bus)
