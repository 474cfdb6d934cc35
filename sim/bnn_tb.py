"""cocotb testbench of the BNN top (``bnn_top``), driven by :mod:`eie.hw.bnn.host_program`.

The job list (:func:`eie.sim.cocotb_tb.job_spec`, written by :func:`eie.sim.bnn_run.run_rtl`)
holds the folding and FIFO depths and, per job, an image directory, the input bits and how to
stream them. Each job runs as on the Amaranth simulator (:func:`eie.sim.bnn_run.run_job`: load
the image through the host bus, stream the input bits), and its results and counters are saved.
It does not judge the results: the caller compares them with the golden model. It checks the
bus protocol on the way (``r_ack`` arrives, ERRORS stays 0). Clock, reset, the bus adapter and
the job loop are the ones every core's testbench uses (:mod:`eie.sim.cocotb_tb`).
"""

from __future__ import annotations

import cocotb
import numpy as np

from ..hw.bnn import host_program as hp
from ..hw.bnn.folding import LayerFold
from ..hw.bnn.memory_map import BnnMemoryMap
from ..sw.bnn.image import read_image
from .bnn_run import JOB_OPTIONS, BnnJob, run_job
from .cocotb_tb import CocotbBus, job_spec, run_jobs, start

__all__: list[str] = []


@cocotb.test()
async def bnn_jobs(dut):
    """Load each job's image, stream its samples, save results and counters."""
    spec = job_spec()
    folds = [LayerFold(*f) for f in spec["folding"]]
    mm = BnnMemoryMap(folds, in_depth=spec["in_depth"], out_depth=spec["out_depth"])
    period = int(spec["period_ns"])
    await start(dut, period)
    bus = CocotbBus(dut, period_ns=period)
    await hp.check_config(bus, mm)

    async def one(job, advance):
        y, counters = await run_job(bus, mm, BnnJob(read_image(job["image"]), np.load(job["x"]),
                                                    **{k: job[k] for k in JOB_OPTIONS}))
        advance()
        return y, {"counters": counters}

    await run_jobs(spec, one)
