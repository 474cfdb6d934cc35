"""Verilator build time and C++ size of the EIE model, built the way the runners build it.

`python bench/verilator_build.py [--pes 16,64] [--mode runner,dfg,before] [--args "FLAGS"]... [--set F=V]...`

For each PE count, each `--mode` and each `--args` set, the EIE's Verilog (the simulators'
export: one `eie_top_pe` module instantiated `n_pe` times) is built into a C++ model with
:func:`eie.sim.runner.build_simulator` -- cocotb's Verilator runner as the cocotb runs use it, the
runner's flags (`-O3 --x-assign 0 --x-initial 0`, the waivers, `--build-jobs <cores>`) -- in a
scratch cache, nothing reused. Printed per build: wall time (Verilation and C++ compilation), the
model's C++ (`Vtop*.cpp`/`.h`: size, files, the largest), and the entries of Verilator's VPI
symbol table (`varInsert` calls in `Vtop__Syms*.cpp`) and of the PE's functions (`pe fns`: once
for all instances, or once an instance).

Modes: `runner` is the runners' build: public only the top's ports, the memories and the PE's
ports, DFG off, the PE's logic once (:func:`eie.sim.verilog.verilator_source`). `dfg` the same
with Verilator's DFG optimisation back on (`-fdfg`): it names its temporaries per instance, so
the PE's logic is emitted once a PE. `before` adds `--public-flat-rw -fdfg`, cocotb's own build:
every signal of every instance public, the PE's logic once a PE (the build before issue 18).
`--args` adds Verilator flags (e.g. `--args "--output-split 5000 --output-split-cfuncs 5000"`);
repeat it to compare sets (`--args ""` is the plain build). `--set FIELD=VALUE`: an `EIEConfig`
field other than `n_pe` (default depths otherwise, as `eie generate`). Builds take both cores:
run it on an otherwise idle machine for comparable times.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

from eie.app.cmd_bench import parse_set
from eie.common.errors import EieError
from eie.hw.eie.config import MAX_PE, EIEConfig
from eie.hw.eie.top import PE_MODULE
from eie.sim.eie_run import TOPLEVEL, verilog_for_config
from eie.sim.runner import build_simulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_options as check  # noqa: E402  (the option checks bench/ shares)

MODES = {"runner": [], "dfg": ["-fdfg"], "before": ["--public-flat-rw", "-fdfg"]}


def model_files(bdir: Path) -> list[Path]:
    """The C++ of a Verilator build (the model, not Verilator's runtime)."""
    return sorted(p for p in bdir.iterdir()
                  if p.name.startswith("Vtop") and p.suffix in (".cpp", ".h"))


def symbol_entries(bdir: Path) -> int:
    """Variables in the model's VPI symbol table."""
    return sum(p.read_text(errors="replace").count("varInsert(")
               for p in bdir.glob("Vtop__Syms*.cpp"))


def pe_functions(bdir: Path) -> int:
    """Functions in the C++ of the PE's class (once for all instances: a dozen)."""
    return sum(len(re.findall(r"^void \w+\(", p.read_text(errors="replace"), re.M))
               for p in bdir.glob(f"Vtop_{PE_MODULE}__*.cpp"))


def build(n_pe: int, mode: str, args: list[str], fields: dict[str, int]) -> dict:
    config = EIEConfig(n_pe=n_pe, **fields)
    with tempfile.TemporaryDirectory(prefix="eie_vbuild_") as d:
        verilog, _ = verilog_for_config(config, build_dir=d)
        t0 = time.perf_counter()
        bdir, _ = build_simulator("verilator", verilog, toplevel=TOPLEVEL, build_dir=d,
                                  build_args=[*MODES[mode], *args])
        seconds = time.perf_counter() - t0
        files = model_files(bdir)
        biggest = max(files, key=lambda p: p.stat().st_size)
        return {"verilog_mb": verilog.stat().st_size / 1e6, "seconds": seconds,
                "cpp_mb": sum(p.stat().st_size for p in files) / 1e6, "files": len(files),
                "biggest": f"{biggest.name} {biggest.stat().st_size / 1e6:.2f}M",
                "symbols": symbol_entries(bdir), "pe_fns": pe_functions(bdir)}


def check_options(ap: argparse.ArgumentParser, opts: argparse.Namespace
                  ) -> tuple[list[int], list[str], dict[str, int]]:
    """Every option before the first build (exit 2 with what to give): the PE counts, the
    modes and the ``--set`` fields."""
    pes = check.int_list(ap, "--pes", opts.pes, 1, MAX_PE, "PE counts")
    modes = check.names(ap, "--mode", opts.mode, list(MODES), "mode")
    try:
        fields = parse_set(opts.set)                # eie bench's --set: the same FIELD=VALUE
    except EieError as exc:
        ap.error(str(exc))
    if "n_pe" in fields:
        ap.error("--set n_pe: the PE counts are --pes")
    for n in pes:
        try:
            EIEConfig(n_pe=n, **fields)
        except ValueError as exc:
            ap.error(f"--set {' '.join(opts.set)}: {exc}")
    for flags in opts.args or []:
        try:
            shlex.split(flags)
        except ValueError as exc:
            ap.error(f"--args {flags!r}: {exc}; quote the flags as the shell would")
    check.simulator(ap, "verilator")
    return pes, modes, fields


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pes", default="16", help="PE counts, comma-separated (default 16)")
    ap.add_argument("--mode", default="runner,dfg,before",
                    help="runner (the runners' build), dfg (DFG on), before (--public-flat-rw -fdfg)")
    ap.add_argument("--args", action="append", default=None, metavar="FLAGS",
                    help="extra Verilator flags (repeatable; default: none)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="an EIEConfig field (repeatable)")
    opts = ap.parse_args(argv)
    pes, modes, fields = check_options(ap, opts)
    print(f"{'PEs':>4} {'mode':6} {'flags':24} {'Verilog':>8} {'build':>7} {'C++':>8} "
          f"{'files':>5} {'symbols':>7} {'pe fns':>6}  largest C++ file")
    for n in pes:
        for mode in modes:
            for flags in opts.args or [""]:
                r = build(n, mode, shlex.split(flags), fields)
                print(f"{n:4d} {mode:6} {flags or '-':24} {r['verilog_mb']:7.2f}M "
                      f"{r['seconds']:6.0f}s {r['cpp_mb']:7.2f}M {r['files']:5d} "
                      f"{r['symbols']:7d} {r['pe_fns']:6d}  {r['biggest']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
