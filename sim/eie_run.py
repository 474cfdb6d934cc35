"""Run EIE images on a simulator: the one entry point the CLI, the tests and the benchmarks call.

:func:`run_eie` runs one image on a batch of int16 inputs and returns the outputs and the
hardware counters; :func:`run_eie_jobs` runs several images (each with its own inputs) on one
design, built once. Three simulators:

* ``"amaranth"`` -- the Amaranth Python simulator, in this process;
* ``"verilator"`` / ``"icarus"`` -- the design exported to Verilog and driven by the cocotb
  testbench :mod:`eie.sim.eie_tb` in the simulator's own process.

All three drive the host bus with the same :class:`eie.hw.eie.host_program.HostProgram`
sequence: load the image, then per sample write the input, start, poll ``STATUS.done``, read the
outputs and every counter.

Builds are cached. The Verilog of a configuration is keyed by the configuration and a hash of
the gateware sources (``hw/eie``, ``hw/common``) and the Amaranth version; a simulator build is
keyed by a hash of the Verilog text. The cache lives in ``$EIE_BUILD_DIR`` if set, else
``$XDG_CACHE_HOME/eie`` (``~/.cache/eie``). Each entry is built under an exclusive ``fcntl``
lock and marked complete only afterwards, so pytest-xdist workers (or two shells) that want the
same build wait for one another instead of building over each other; runs use private scratch
directories and never write into a shared build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..common.errors import EieError
from .backdoor import LOADS
from .runner import verilator_pch_fix
from .verilog import icarus_source

__all__ = ["SIMULATORS", "LOADS", "TOPLEVEL", "RunResult", "EieJob", "run_eie", "run_eie_jobs",
           "config_for_images", "cache_dir", "split_run", "icarus_source", "verilog_for_config",
           "build_simulator",
           "check_inputs"]

SIMULATORS = ("amaranth", "verilator", "icarus")
TOPLEVEL = "eie_top"
PERIOD_NS = 10      # the testbench clock: 100 MHz, one cycle = 10 ns of simulated time

# Verilator warnings that Amaranth's Verilog backend (Yosys write_verilog) produces by
# construction; docs/eie-verification.md explains each. Everything else stays on.
VERILATOR_WAIVERS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
                     "-Wno-ASCRANGE")


@dataclass
class RunResult:
    """What one run of one image gives back."""

    outputs: np.ndarray                                  # int16 (batch, n_out)
    counters: list[list[dict[str, Any]]]     # per sample, per layer (HostProgram.decode)
    run_cycles: list[int] = field(default_factory=list)  # per sample: STATUS cycles, start to done
    sim_cycles: int = 0          # clock cycles simulated for this job (loading, runs, reads)
    simulator: str = ""
    build_seconds: float = 0.0   # wall time to export Verilog and build the simulator (0 if cached)
    sim_seconds: float = 0.0     # wall time of the simulation of this job, build excluded
    compute_cycles: int = 0      # of sim_cycles: those from each start to done (no bus traffic)
    compute_seconds: float = 0.0 # wall time of those cycles

    def layer_counters(self, layer: int) -> list[dict[str, Any]]:
        """The counters of ``layer`` for every sample."""
        return [c[layer] for c in self.counters]


@dataclass
class EieJob:
    """One image and its int16 inputs ``(batch, n_in)``; ``result`` is filled by the run."""

    image: Any
    x: np.ndarray
    result: RunResult | None = None


# ----------------------------------------------------------------------------- inputs

def check_inputs(image, x) -> np.ndarray:
    """``x`` as a C-contiguous int16 ``(batch, n_in)`` array, or :class:`EieError` saying why
    not."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise EieError(f"inputs must be int16 fixed point, got dtype {a.dtype} (quantise with "
                       f"act_frac {image.act_frac} first)")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != image.n_in:
        raise EieError(f"inputs have shape {a.shape} but the image's first layer takes "
                       f"{image.n_in} inputs (expected (batch, {image.n_in}))")
    if a.size and (int(a.min()) < -32768 or int(a.max()) > 32767):
        raise EieError(f"inputs hold {int(a.min())}..{int(a.max())}, outside int16 "
                       "[-32768, 32767]")
    if a.shape[0] == 0:
        raise EieError("the input batch is empty (need at least one sample)")
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


# ----------------------------------------------------------------------------- cache

def cache_dir(build_dir: str | os.PathLike | None = None) -> Path:
    """The build cache: ``build_dir``, else ``$EIE_BUILD_DIR``, else ``$XDG_CACHE_HOME/eie``."""
    if build_dir is not None:
        return Path(build_dir).expanduser().resolve()
    env = os.environ.get("EIE_BUILD_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "eie").resolve()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _sources_digest() -> str:
    """Hash of the gateware sources and the Amaranth version (what the Verilog depends on)."""
    import amaranth

    hw = Path(__file__).resolve().parent.parent / "hw"
    h = hashlib.sha256(f"amaranth {amaranth.__version__}\n".encode())
    for sub in ("eie", "common"):
        for p in sorted((hw / sub).glob("*.py")):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _verilog_header(config) -> str:
    from ..hw.eie.memory_map import MemoryMap

    mm = MemoryMap(config)
    return (f"EIE sparse accelerator, {config.n_pe} PEs, FIFO depth {config.fifo_depth}\n"
            f"parameters: {json.dumps(config.to_json(), separators=(',', ':'))}\n"
            f"host bus: {mm.addr_width}-bit word address, 32-bit data, read latency 2")


def verilog_for_config(config, *, build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
    """The Verilog file of ``config`` (module :data:`TOPLEVEL`), from the cache or exported now.

    Returns ``(path, seconds spent exporting)``.
    """
    from ..hw.eie.top import EIETop
    from .verilog import export_verilog

    key = hashlib.sha256((json.dumps(config.to_json(), sort_keys=True) + _sources_digest())
                         .encode()).hexdigest()[:20]
    vdir = cache_dir(build_dir) / "verilog"
    path = vdir / f"eie_{key}.v"
    with _locked(vdir / f"eie_{key}.lock"):
        if path.exists():
            return path, 0.0
        t0 = time.perf_counter()
        export_verilog(EIETop(config), path, name=TOPLEVEL, header=_verilog_header(config))
        return path, time.perf_counter() - t0


def _runner(simulator: str):
    from cocotb_tools.runner import Icarus, get_runner

    if simulator != "icarus":
        return get_runner(simulator)

    class _IcarusVcd(Icarus):
        """Icarus whose wave dump is VCD (cocotb's runner asks vvp for FST)."""

        def _test_command(self):
            cmds = super()._test_command()
            return [["-vcd" if a == "-fst" else a for a in cmd] for cmd in cmds]

    return _IcarusVcd()


def _build_args(simulator: str, waves: bool) -> list[str]:
    if simulator == "verilator":
        jobs = max(1, min(4, os.cpu_count() or 1))
        return ["-Wno-fatal", *VERILATOR_WAIVERS, "--x-assign", "0", "--x-initial", "0",
                "-O3", "--build-jobs", str(jobs)]
    return []


def build_simulator(simulator: str, verilog: Path, *, waves: bool = False,
                    build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
    """Build ``verilog`` for ``simulator`` (cached by the Verilog's hash, under a file lock).

    Returns ``(build directory, seconds spent building)``; ``(dir, 0.0)`` when cached.
    """
    from .runner import check_simulator

    check_simulator(simulator)
    text = Path(verilog).read_bytes()
    if simulator == "icarus":
        text = icarus_source(text)
    flavour = simulator + ("-waves" if waves else "")
    # the Python environment too: the built model links that venv's cocotb and Verilator runtime
    key = hashlib.sha256(text + " ".join([sys.prefix, *_build_args(simulator, waves)]).encode()
                         ).hexdigest()[:20]
    root = cache_dir(build_dir) / flavour
    bdir = root / key
    stamp = bdir / "eie_build.ok"
    with _locked(root / f"{key}.lock"):
        if stamp.exists():
            return bdir, 0.0
        if bdir.exists():           # an interrupted build: start again from nothing
            shutil.rmtree(bdir)
        bdir.mkdir(parents=True)
        src = bdir / f"{TOPLEVEL}.v"
        src.write_bytes(text)
        log = bdir / "build.log"
        t0 = time.perf_counter()
        try:
            with verilator_pch_fix(simulator):
                _runner(simulator).build(sources=[src], hdl_toplevel=TOPLEVEL, build_dir=bdir,
                                         always=True, build_args=_build_args(simulator, waves),
                                         timescale=("1ns", "1ps"), waves=waves, log_file=log)
        except (SystemExit, RuntimeError) as exc:   # cocotb reports build failures so
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{simulator} build of {verilog} failed:\n{tail}") from exc
        seconds = time.perf_counter() - t0
        stamp.write_text(f"{seconds:.3f}\n")
        return bdir, seconds


# ----------------------------------------------------------------------------- running

def split_run(ops: list, ctrl_addr: int) -> tuple[list, list]:
    """Split :meth:`HostProgram.run`'s ops at the ``CTRL`` write: (input words, start + poll),
    so a runner can time the accelerator's work apart from the bus traffic."""
    from ..hw.eie.host_program import Write

    for i, op in enumerate(ops):
        if isinstance(op, Write) and op.addr == ctrl_addr:
            return ops[:i], ops[i:]
    raise ValueError("the run program has no CTRL write")


def run_eie(image, x_int16, *, sim: str = "verilator", config=None,
            build_dir: str | os.PathLike | None = None, vcd: str | os.PathLike | None = None,
            progress: bool = False, load: str = "bus") -> RunResult:
    """Run ``image`` on ``x_int16`` (int16 ``(batch, n_in)`` or ``(n_in,)``) on ``sim``.

    The design is ``config`` or, by default, the smallest that holds the image
    (:meth:`EIEConfig.for_image`). ``vcd`` writes a waveform of the whole run (the Verilator
    build then includes tracing, a separate cached build). ``progress`` shows a tqdm bar over
    the samples. ``load`` is ``"bus"`` (the host program writes the whole image, as a host
    does) or ``"backdoor"`` (Verilator and Icarus only: the pointer and sparse-matrix words are
    deposited into the memories and a sample is read back, :mod:`eie.sim.backdoor`; the run and
    its counters are the same, the load takes seconds instead of one cycle a word). Returns a
    :class:`RunResult`.
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
    if sim not in SIMULATORS:
        raise EieError(f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}")
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
    if vcd is None and os.environ.get("EIE_VCD"):
        vcd = os.environ["EIE_VCD"] if os.environ["EIE_VCD"] != "1" else f"eie_{sim}.vcd"
    total = sum(j.x.shape[0] for j in jobs)
    bar = _progress_bar(total, sim) if progress else None
    try:
        if sim == "amaranth":
            _run_amaranth(config, jobs, vcd, bar)
        else:
            _run_cocotb(sim, config, jobs, build_dir, vcd, bar, load)
    finally:
        if bar is not None:
            bar.close()
    return [j.result for j in jobs]


def _progress_bar(total: int, sim: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"eie run ({sim})", unit="sample", leave=False)


def _run_amaranth(config, jobs: list[EieJob], vcd, bar) -> None:
    from amaranth.sim import Simulator

    from ..hw.eie.host_program import HostProgram, execute_async
    from ..hw.eie.top import EIETop
    from .bus_driver import bus_read, bus_write

    t0 = time.perf_counter()
    dut = EIETop(config)
    programs = [HostProgram(config, j.image) for j in jobs]
    cycles = [0]
    marks: list[tuple[int, float]] = []      # (cycle, wall) at each job's start and end

    async def bench(ctx):
        async def write(addr, data):
            await bus_write(ctx, dut.bus, addr, data)

        async def read(addr):
            return await bus_read(ctx, dut.bus, addr)

        for job, prog in zip(jobs, programs):
            marks.append((cycles[0], time.perf_counter()))
            res = RunResult(outputs=np.zeros((job.x.shape[0], job.image.n_out), np.int16),
                            counters=[], simulator="amaranth")
            await execute_async(prog.load(), write, read)
            for s in range(job.x.shape[0]):
                inputs, start = split_run(prog.run(job.x[s]), prog.map.reg("CTRL"))
                await execute_async(inputs, write, read)
                c0, w0 = cycles[0], time.perf_counter()
                await execute_async(start, write, read)
                res.compute_cycles += cycles[0] - c0
                res.compute_seconds += time.perf_counter() - w0
                values = await execute_async(prog.collect(), write, read)
                y, counters = prog.decode(values)
                res.outputs[s] = y
                res.counters.append(counters)
                res.run_cycles.append(int(values[("run_cycles",)]))
                if bar is not None:
                    bar.update(1)
            c1, w1 = cycles[0], time.perf_counter()
            res.sim_cycles, res.sim_seconds = c1 - marks[-1][0], w1 - marks[-1][1]
            job.result = res

    async def clock_count(ctx):
        async for _ in ctx.tick():
            cycles[0] += 1

    sim = Simulator(dut)                 # elaborates and compiles the design: the "build"
    elaborate_s = time.perf_counter() - t0
    sim.add_clock(PERIOD_NS * 1e-9)
    sim.add_testbench(bench)
    sim.add_process(clock_count)
    if vcd:
        with sim.write_vcd(str(Path(vcd))):
            sim.run()
    else:
        sim.run()
    jobs[0].result.build_seconds = elaborate_s


def _run_cocotb(sim: str, config, jobs: list[EieJob], build_dir, vcd, bar,
                load: str = "bus") -> None:
    from ..sw.image import write_image
    from .runner import check_simulator

    check_simulator(sim)
    waves = vcd is not None
    verilog, export_s = verilog_for_config(config, build_dir=build_dir)
    bdir, build_s = build_simulator(sim, verilog, waves=waves, build_dir=build_dir)
    with tempfile.TemporaryDirectory(prefix="eie_run_") as tmp:
        tmp = Path(tmp)
        spec: dict[str, Any] = {"config": dataclasses.asdict(config), "period_ns": PERIOD_NS,
                                "progress": str(tmp / "progress"), "load": load, "jobs": []}
        for k, job in enumerate(jobs):
            d = tmp / f"job{k}"
            write_image(job.image, d / "image")
            np.save(d / "x.npy", job.x)
            spec["jobs"].append({"image": str(d / "image"), "x": str(d / "x.npy"),
                                 "y": str(d / "y.npy"), "result": str(d / "result.json")})
        (tmp / "jobs.json").write_text(json.dumps(spec))
        _cocotb_test(sim, bdir, tmp, {"EIE_RTL_JOBS": str(tmp / "jobs.json")}, waves, vcd,
                     bar, tmp / "progress")
        for k, job in enumerate(jobs):
            d = tmp / f"job{k}"
            info = json.loads((d / "result.json").read_text())
            job.result = RunResult(outputs=np.load(d / "y.npy"), counters=info["counters"],
                                   run_cycles=info["run_cycles"], sim_cycles=info["sim_cycles"],
                                   simulator=sim, sim_seconds=info["wall_seconds"],
                                   compute_cycles=info["compute_cycles"],
                                   compute_seconds=info["compute_seconds"])
    jobs[0].result.build_seconds = export_s + build_s


def _cocotb_test(sim: str, bdir: Path, tmp: Path, env: dict[str, str], waves: bool, vcd,
                 bar, progress_file: Path) -> None:
    from cocotb_tools.check_results import get_results

    from .runner import verilator_env

    run_dir = tmp / "run"
    run_dir.mkdir()
    env = dict(env)
    env.setdefault("COCOTB_RANDOM_SEED", "1")
    env.setdefault("COCOTB_LOG_LEVEL", "WARNING")
    if sim == "verilator":
        env.update(verilator_env())
    test_args: list[str] = []
    plusargs: list[str] = []
    if waves:
        vcd_path = str(Path(vcd).expanduser().resolve())
        if sim == "verilator":
            test_args = ["--trace-file", vcd_path]
        else:
            plusargs = [f"+dumpfile_path={vcd_path}"]
    log = tmp / "sim.log"
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["xml"] = _runner(sim).test(
                test_module="eie.sim.eie_tb", hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                build_dir=bdir,
                test_dir=run_dir, extra_env=env, waves=waves, test_args=test_args,
                plusargs=plusargs, results_xml=str(run_dir / "results.xml"),
                timescale=("1ns", "1ps"), log_file=log)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"eie-{sim}", daemon=True)
    thread.start()
    done = 0
    while thread.is_alive():
        thread.join(0.25)
        if bar is not None:
            done = _update_bar(bar, progress_file, done)
    if bar is not None:
        _update_bar(bar, progress_file, done)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    if "error" in outcome:
        raise RuntimeError(f"{sim} run failed: {outcome['error']!r}\n{tail}") from outcome["error"]
    n_tests, n_fail = get_results(Path(outcome["xml"]))
    if n_tests == 0 or n_fail:
        raise RuntimeError(f"the {sim} testbench failed ({n_fail} of {n_tests} tests):\n{tail}")


def _update_bar(bar, progress_file: Path, done: int) -> int:
    try:
        now = int(progress_file.read_text() or 0)
    except (OSError, ValueError):
        return done
    if now > done:
        bar.update(now - done)
    return max(now, done)
