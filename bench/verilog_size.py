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
import subprocess
import tempfile
import time
from pathlib import Path

from eie.hw.eie.config import EIEConfig
from eie.hw.eie.top import EIETop
from eie.sim.eie_run import eie_verilog_text
from eie.sim.runner import verilator_env
from eie.sim.verilog import verilog_text


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
    counts = lambda s: [int(v) for v in s.split(",") if v]
    build = set(counts(args.verilator))
    rows = [(n, False) for n in counts(args.pes)] + [(n, True) for n in counts(args.flat)]
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
