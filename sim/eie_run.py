"""Run EIE images on a simulator: the one entry point the CLI, the tests and the benchmarks call.

:func:`run_eie` runs one image on a batch of int16 inputs and returns the outputs and the
hardware counters; :func:`run_eie_jobs` runs several images (each with its own inputs) on one
design, built once. Three simulators:

* ``"amaranth"`` -- the Amaranth Python simulator, in this process;
* ``"verilator"`` / ``"icarus"`` -- the design exported to Verilog and driven by the one cocotb
  testbench of every core (:mod:`eie.sim.cocotb_tb`) in the simulator's own process.

:class:`EieCore` is what the shared runner (:func:`eie.sim.runner.run_core_jobs`, the BNN's
too) needs of this core; its job, the same coroutine on every simulator, drives the host bus
with the :class:`eie.hw.eie.host_program.HostProgram` sequence: load the image (through the bus,
or with ``load="backdoor"`` partly deposited through the VPI: :mod:`eie.sim.backdoor`), then per
sample write the input, start, poll ``STATUS.done``, read the outputs and every counter
(:func:`run_samples`). Results are :class:`eie.sim.runner.SimResult` (``RunResult`` here).

Builds are cached (:mod:`eie.sim.runner`, shared with the BNN runner). The Verilog of a
configuration is keyed by the configuration and a hash of the gateware sources (``hw/eie``,
``hw/common``) and the Amaranth version; a simulator build is keyed by a hash of the Verilog
text, the build flags and the Python environment. The cache lives in ``$EIE_BUILD_DIR`` if
set, else ``$XDG_CACHE_HOME/eie`` (``~/.cache/eie``). Each entry is built under an exclusive
``fcntl`` lock and marked complete only afterwards, so pytest-xdist workers (or two shells)
that want the same build wait for one another instead of building over each other; runs use
private scratch directories and never write into a shared build.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..common.errors import EieError
from ..common.outputs import env_waveform
from ..common.progress import progress_bar
from .backdoor import LOADS
from .runner import ALL_SIMULATORS, VERILATOR_WAIVERS, SimResult, cache_dir, run_core_jobs
from .verilog import icarus_source

__all__ = ["ALL_SIMULATORS", "LOADS", "TOPLEVEL", "RunResult", "EieJob", "EieCore", "run_eie",
           "run_eie_jobs", "run_samples", "config_for_images", "cache_dir", "split_run",
           "icarus_source", "eie_verilog_text", "verilog_for_config", "build_simulator",
           "check_inputs", "cycle_budget", "VERILATOR_WAIVERS"]

TOPLEVEL = "eie_top"

#: What one run of one image gives back: the shared :class:`eie.sim.runner.SimResult`
#: (``outputs`` int16 ``(batch, n_out)``, ``counters`` per sample, per layer, ``run_cycles``,
#: ``compute_cycles``, ``compute_seconds``, ...).
RunResult = SimResult


@dataclass
class EieJob:
    """One image and its int16 inputs ``(batch, n_in)``; ``result`` is filled by the run."""

    image: Any
    x: np.ndarray
    result: RunResult | None = None


# ----------------------------------------------------------------------------- inputs

def check_inputs(image, x) -> np.ndarray:
    """``x`` as a C-contiguous int16 ``(batch, n_in)`` array of at least one sample, or
    :class:`EieError` saying why not (the rules of :func:`eie.sw.inputs.check_activations`)."""
    from ..sw.inputs import IMAGE_LAYER, check_activations

    a = check_activations(x, image.n_in, consumer=IMAGE_LAYER, allow_empty=False,
                          hint=f"quantise real values with act_frac {image.act_frac} first")
    return np.ascontiguousarray(a, dtype=np.int16)


def config_for_images(images: Sequence[Any], **overrides):
    """The smallest :class:`EIEConfig` that holds every image (``overrides`` replace fields and
    are checked against each image)."""
    from ..hw.eie.config import EIEConfig

    images = list(images)
    if not images:
        raise ValueError("config_for_images needs at least one image")
    n_pes = sorted({img.n_pe for img in images})
    if len(n_pes) > 1:
        raise EieError(f"images for different PE counts ({n_pes}) cannot share one design")
    accs = sorted({img.acc_bits for img in images})
    if len(accs) > 1:
        raise EieError(f"images with different acc_bits ({accs}) cannot share one design")
    fitted = [EIEConfig.for_image(img) for img in images]
    sizes = {f.name: max(getattr(c, f.name) for c in fitted) for f in dataclasses.fields(EIEConfig)}
    sizes.update(overrides)
    try:
        cfg = EIEConfig(**sizes)
    except ValueError as exc:
        raise EieError(str(exc)) from None
    for img in images:
        cfg.check_image(img)
    return cfg


# ----------------------------------------------------------------------------- builds

def _verilog_header(config) -> str:
    from ..hw.eie.memory_map import READ_LATENCY, MemoryMap

    mm = MemoryMap(config)
    return (f"EIE sparse accelerator, {config.n_pe} PEs, FIFO depth {config.fifo_depth}\n"
            f"parameters: {json.dumps(config.to_json(), separators=(',', ':'))}\n"
            f"host bus: {mm.addr_width}-bit word address, 32-bit data, read latency "
            f"{READ_LATENCY}")


def eie_verilog_text(config, *, name: str = TOPLEVEL, pe_module: str | None = None,
                     header: str = "") -> str:
    """The Verilog of the EIE core of ``config``: module ``name``, which instantiates one PE
    module, ``pe_module`` (default :data:`eie.hw.eie.top.PE_MODULE`), ``n_pe`` times, so the
    text grows with ``n_pe`` only in the top (docs/eie-hardware.md, "Verilog: one PE module");
    ``header``: comment lines at the top. What ``eie generate`` writes, the simulators build
    and ``bench/verilog_size.py`` measures."""
    from ..hw.eie.top import PE_MODULE, EIETop
    from .verilog import verilog_text

    pe_module = pe_module or PE_MODULE
    top = EIETop(config, pe_module=pe_module)
    return verilog_text(top, name=name, header=header,
                        definitions=[(top.pe_definition(), pe_module)])


def verilog_for_config(config, *, build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
    """The Verilog file of ``config`` (module :data:`TOPLEVEL`), from the cache or exported now
    (keyed by the configuration and the gateware sources ``hw/eie``, ``hw/common``).

    Returns ``(path, seconds spent exporting)``.
    """
    from ..common.atomic import atomic_file
    from .runner import cached_verilog, sources_digest

    def export(path):
        with atomic_file(path) as f:
            f.write(eie_verilog_text(config, header=_verilog_header(config)))
        return Path(path)

    return cached_verilog(
        "eie", json.dumps(config.to_json(), sort_keys=True) + sources_digest("eie", "common"),
        export, build_dir=build_dir)


def build_simulator(simulator: str, verilog: Path, *, waves: bool = False,
                    build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
    """Build ``verilog`` (module :data:`TOPLEVEL`) for ``simulator``, cached
    (:func:`eie.sim.runner.build_simulator`).

    Returns ``(build directory, seconds spent building)``; ``(dir, 0.0)`` when cached.
    """
    from . import runner

    return runner.build_simulator(simulator, verilog, toplevel=TOPLEVEL, waves=waves,
                                  build_dir=build_dir)


# ----------------------------------------------------------------------------- running

def split_run(ops: list, ctrl_addr: int) -> tuple[list, list]:
    """Split :meth:`HostProgram.run`'s ops at the ``CTRL`` write: (input words, start + poll),
    so a runner can time the accelerator's work apart from the bus traffic."""
    from ..hw.eie.host_program import Write

    for i, op in enumerate(ops):
        if isinstance(op, Write) and op.addr == ctrl_addr:
            return ops[:i], ops[i:]
    raise ValueError("the run program has no CTRL write")


async def run_samples(prog, x: np.ndarray, bus,
                      advance: Callable[[], Any] | None = None) -> tuple[np.ndarray, dict]:
    """Run every sample of ``x`` with the host program ``prog`` (image loaded) over the host-bus
    driver ``bus`` (any simulator's: ``bus.cycles`` counts the clock cycles simulated) and read
    back outputs and counters; ``advance()`` is called after each sample.

    Returns (int16 outputs, ``{"counters", "run_cycles", "compute_cycles",
    "compute_seconds"}``), the compute figures counting from each start to done."""
    from ..hw.eie.host_program import execute

    y = np.zeros((x.shape[0], prog.image.n_out), dtype=np.int16)
    info: dict[str, Any] = {"counters": [], "run_cycles": [], "compute_cycles": 0,
                            "compute_seconds": 0.0}
    for s in range(x.shape[0]):
        inputs, begin = split_run(prog.run(x[s]), prog.map.reg("CTRL"))
        await execute(bus, inputs)
        c0, w0 = bus.cycles, time.perf_counter()
        await execute(bus, begin)
        info["compute_cycles"] += bus.cycles - c0
        info["compute_seconds"] += time.perf_counter() - w0
        values = await execute(bus, prog.collect())
        y[s], counters = prog.decode(values)
        info["counters"].append(counters)
        info["run_cycles"].append(int(values[("run_cycles",)]))
        if advance is not None:
            advance()
    return y, info


def cycle_budget(image) -> int:
    """A generous bound on the cycles of one sample: 16 times every column, entry and output of
    every layer in the busiest PE, plus a constant. A run beyond it is a hang."""
    total = 1000
    for l, d in enumerate(image.layers):
        entries = max(int(image.layer_pointers(l, k)[-1]) for k in range(image.n_pe))
        total += 16 * (d.n_in + entries + d.n_out + 16)
    return total


@dataclass
class EieCore:
    """The EIE as the shared runner (:func:`eie.sim.runner.run_core_jobs`) runs it: the design
    ``config``, images loaded through the bus or (``load="backdoor"``, Verilator and Icarus
    only) partly deposited into the memories (:mod:`eie.sim.backdoor`)."""

    config: Any
    load: str = "bus"
    name = "eie"
    toplevel = TOPLEVEL

    @property
    def status_addr(self) -> int:
        from ..hw.eie.memory_map import MemoryMap

        return MemoryMap(self.config).reg("STATUS")

    def spec(self) -> dict[str, Any]:
        return {"core": self.name, "config": dataclasses.asdict(self.config), "load": self.load}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "EieCore":
        from ..hw.eie.config import EIEConfig

        return cls(EIEConfig(**spec["config"]), spec.get("load", "bus"))

    def design(self):
        from ..hw.eie.top import EIETop

        return EIETop(self.config)

    def verilog(self, *, build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
        return verilog_for_config(self.config, build_dir=build_dir)

    async def check(self, bus) -> None:
        from ..hw.eie.host_program import check_config

        await check_config(bus, self.config)

    def write_job(self, job: EieJob, d: Path) -> dict[str, Any]:
        from ..sw.image import write_image

        write_image(job.image, d / "image")
        np.save(d / "x.npy", job.x)
        return {"image": str(d / "image"), "x": str(d / "x.npy")}

    def read_job(self, files: Mapping[str, Any]) -> EieJob:
        from ..sw.image import read_image

        return EieJob(read_image(files["image"]), np.load(files["x"]))

    def cycle_budget(self, job: EieJob) -> int:
        return cycle_budget(job.image)

    async def run(self, bus, job: EieJob, advance: Callable[[], Any]) -> tuple[np.ndarray, dict]:
        from ..hw.eie.host_program import HostProgram, execute

        prog = HostProgram(self.config, job.image)
        if self.load == "backdoor":
            from .backdoor import deposit, split_load, verify_reads

            split = split_load(self.config, prog.load())
            await execute(bus, split.front)
            deposit(split, self.toplevel)
            verify_reads(split.checks, [await bus.read(a) for a, _ in split.checks])
        else:
            await execute(bus, prog.load())
        return await run_samples(prog, job.x, bus, advance)


def run_eie(image, x_int16, *, sim: str = "verilator", config=None,
            build_dir: str | os.PathLike | None = None, vcd: str | os.PathLike | None = None,
            progress: bool = False, load: str = "bus") -> RunResult:
    """Run ``image`` on ``x_int16`` (int16 ``(batch, n_in)`` or ``(n_in,)``) on ``sim``.

    The design is ``config`` or, by default, the smallest that holds the image
    (:meth:`EIEConfig.for_image`). ``vcd`` writes a waveform of the whole run (the Verilator
    build then includes tracing, a separate cached build). ``progress`` shows a tqdm bar over
    the samples when stderr is a terminal. ``load`` is ``"bus"`` (the host program writes the
    whole image, as a host does) or ``"backdoor"`` (Verilator and Icarus only: the pointer and
    sparse-matrix words are deposited into the memories and a sample is read back,
    :mod:`eie.sim.backdoor`; the run and its counters are the same, the load takes seconds
    instead of one cycle a word). Returns a :class:`RunResult`.
    """
    job = EieJob(image, x_int16)
    run_eie_jobs([job], sim=sim, config=config, build_dir=build_dir, vcd=vcd, progress=progress,
                 load=load)
    assert job.result is not None
    return job.result


def run_eie_jobs(jobs: Sequence[EieJob], *, sim: str = "verilator", config=None,
                 build_dir: str | os.PathLike | None = None, vcd: str | os.PathLike | None = None,
                 progress: bool = False, load: str = "bus") -> list[RunResult]:
    """Run several images, each on its own inputs, one after the other on one design (built
    once; by default the smallest that holds them all). Fills ``job.result`` of each job.
    ``load`` as in :func:`run_eie`."""
    if sim not in ALL_SIMULATORS:
        raise EieError(f"unknown simulator {sim!r}; choose one of {', '.join(ALL_SIMULATORS)}")
    if load not in LOADS:
        raise EieError(f"unknown load {load!r}; choose one of {', '.join(LOADS)}")
    if load == "backdoor" and sim == "amaranth":
        raise EieError("the backdoor load deposits words through a Verilog simulator's VPI: "
                       "use --sim verilator or icarus, or --load bus with amaranth")
    jobs = list(jobs)
    if not jobs:
        raise ValueError("run_eie_jobs needs at least one job")
    for job in jobs:
        job.x = check_inputs(job.image, job.x)
    if config is None:
        config = config_for_images([j.image for j in jobs])
    else:
        for job in jobs:
            config.check_image(job.image)
    if vcd is None:
        vcd = env_waveform(f"eie_{sim}.vcd")
    total = sum(j.x.shape[0] for j in jobs)
    # the samples' bar (on a terminal only, common.progress's rule)
    bar = progress_bar(total, desc=f"eie run ({sim})", unit="sample") if progress else None
    try:
        run_core_jobs(EieCore(config, load), jobs, sim=sim, build_dir=build_dir, waves=vcd,
                      wave_format="vcd", env={"COCOTB_LOG_LEVEL": "WARNING"},
                      on_progress=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    return [j.result for j in jobs]
